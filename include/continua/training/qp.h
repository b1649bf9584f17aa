// A small convex quadratic program with non-negativity constraints, solved
// exactly by a primal active-set method (Lawson & Hanson's NNLS scheme
// applied to a quadratic): GEM's dual has one variable per past experience.
//
//   min_u  ½ uᵀ P u + cᵀ u   subject to  u ≥ 0,   P symmetric positive definite
//
//   std::vector<double> u = continua::solve_nonnegative_qp(P, c);  // P row-major n×n
//
// Contract: throws InvalidArgument for sizes that do not match, or for a P
// that is not positive definite on the free variables.
#pragma once

#include <vector>

namespace continua {

std::vector<double> solve_nonnegative_qp(const std::vector<double>& P, const std::vector<double>& c);
// The objective ½ uᵀ P u + cᵀ u.
double qp_objective(const std::vector<double>& P, const std::vector<double>& c, const std::vector<double>& u);
// Solves A x = b for a symmetric positive-definite A (n×n row-major) by Cholesky.
std::vector<double> solve_spd(std::vector<double> A, std::vector<double> b);

}  // namespace continua
