#include "continua/training/qp.h"

#include <cmath>
#include <string>

#include "continua/errors.h"

namespace continua {

std::vector<double> solve_spd(std::vector<double> A, std::vector<double> b) {
  const size_t n = b.size();
  if (A.size() != n * n) throw InvalidArgument("solve_spd: matrix and vector sizes differ");
  // A = L Lᵀ, L stored in the lower triangle of A.
  for (size_t j = 0; j < n; ++j) {
    double d = A[j * n + j];
    for (size_t k = 0; k < j; ++k) d -= A[j * n + k] * A[j * n + k];
    if (!(d > 0)) throw InvalidArgument("solve_spd: the matrix is not positive definite");
    d = std::sqrt(d);
    A[j * n + j] = d;
    for (size_t i = j + 1; i < n; ++i) {
      double v = A[i * n + j];
      for (size_t k = 0; k < j; ++k) v -= A[i * n + k] * A[j * n + k];
      A[i * n + j] = v / d;
    }
  }
  for (size_t i = 0; i < n; ++i) {  // L y = b
    for (size_t k = 0; k < i; ++k) b[i] -= A[i * n + k] * b[k];
    b[i] /= A[i * n + i];
  }
  for (size_t i = n; i-- > 0;) {  // Lᵀ x = y
    for (size_t k = i + 1; k < n; ++k) b[i] -= A[k * n + i] * b[k];
    b[i] /= A[i * n + i];
  }
  return b;
}

double qp_objective(const std::vector<double>& P, const std::vector<double>& c, const std::vector<double>& u) {
  const size_t n = c.size();
  double f = 0;
  for (size_t i = 0; i < n; ++i) {
    double pu = 0;
    for (size_t j = 0; j < n; ++j) pu += P[i * n + j] * u[j];
    f += 0.5 * u[i] * pu + c[i] * u[i];
  }
  return f;
}

namespace {
// The minimiser over the free set F (the others held at 0): P_FF z_F = −c_F.
std::vector<double> free_solution(const std::vector<double>& P, const std::vector<double>& c,
                                  const std::vector<bool>& free) {
  const size_t n = c.size();
  std::vector<size_t> idx;
  for (size_t i = 0; i < n; ++i) {
    if (free[i]) idx.push_back(i);
  }
  std::vector<double> A(idx.size() * idx.size()), b(idx.size());
  for (size_t a = 0; a < idx.size(); ++a) {
    b[a] = -c[idx[a]];
    for (size_t d = 0; d < idx.size(); ++d) A[a * idx.size() + d] = P[idx[a] * n + idx[d]];
  }
  std::vector<double> zf = idx.empty() ? std::vector<double>() : solve_spd(A, b);
  std::vector<double> z(n, 0.0);
  for (size_t a = 0; a < idx.size(); ++a) z[idx[a]] = zf[a];
  return z;
}
}  // namespace

std::vector<double> solve_nonnegative_qp(const std::vector<double>& P, const std::vector<double>& c) {
  const size_t n = c.size();
  if (P.size() != n * n) throw InvalidArgument("solve_nonnegative_qp: P is not n×n for c of size n");
  double scale = 1e-300;
  for (double v : P) scale = std::max(scale, std::fabs(v));
  for (double v : c) scale = std::max(scale, std::fabs(v));
  const double tol = 1e-12 * scale;
  std::vector<double> u(n, 0.0);
  std::vector<bool> free(n, false);
  for (size_t outer = 0; outer < 10 * n + 10; ++outer) {
    // The negative gradient at u; optimal when it is <= 0 on every bound variable.
    size_t best = n;
    double most = tol;
    for (size_t i = 0; i < n; ++i) {
      if (free[i]) continue;
      double w = -c[i];
      for (size_t j = 0; j < n; ++j) w -= P[i * n + j] * u[j];
      if (w > most) {
        most = w;
        best = i;
      }
    }
    if (best == n) return u;
    free[best] = true;
    for (size_t inner = 0; inner <= n; ++inner) {
      std::vector<double> z = free_solution(P, c, free);
      bool feasible = true;
      for (size_t i = 0; i < n; ++i) feasible = feasible && (!free[i] || z[i] > 0);
      if (feasible) {
        u = z;
        break;
      }
      // Step from u towards z until the first free variable reaches 0.
      double alpha = 1.0;
      for (size_t i = 0; i < n; ++i) {
        if (free[i] && z[i] <= 0) alpha = std::min(alpha, u[i] / (u[i] - z[i]));
      }
      for (size_t i = 0; i < n; ++i) {
        u[i] += alpha * (z[i] - u[i]);
        if (free[i] && u[i] <= tol) {
          free[i] = false;
          u[i] = 0;
        }
      }
    }
  }
  return u;
}

}  // namespace continua
