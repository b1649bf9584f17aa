// Continual-learning metrics computed from an accuracy matrix: the formulas
// of docs/metrics.md, as pure functions the evaluator, the CLI and the tests
// share.
//
// A is the accuracy matrix: A[i][j] is the accuracy on test experience j
// after training experience i (rows: experiences trained, 0-based; a row may
// be longer than the number of rows: the experiences not trained yet). b[j]
// is the accuracy of the initial (untrained) model on test experience j.
// The definitions follow Lopez-Paz & Ranzato 2017 (GEM: backward and
// forward transfer), Avalanche (forgetting: accuracy right after training
// minus now), Rebuffi et al. 2017 (average incremental accuracy).
//
//   std::vector<std::vector<double>> A = {{0.9, 0.1}, {0.6, 0.8}};
//   continua::metrics::backward_transfer(A);            // 0.6 - 0.9 = -0.3
//   continua::metrics::forward_transfer(A, {0.5, 0.0}); // 0.1 - 0.0 = 0.1
//
// Contract: no function throws or reads outside A: cells a row lacks are
// skipped. A metric that needs two trained experiences (backward and forward
// transfer) returns std::nullopt with fewer, as does forward transfer
// without b; the averages of an empty matrix are 0.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

namespace continua::metrics {

using Matrix = std::vector<std::vector<double>>;

// Mean of the last row over the experiences trained so far:
// (1/T) sum_{j<T} A[T-1][j], T = rows.
double average_accuracy(const Matrix& a);

// Mean over steps of the average accuracy on the experiences seen at that
// step: (1/T) sum_{i<T} (1/(i+1)) sum_{j<=i} A[i][j].
double average_incremental_accuracy(const Matrix& a);

// Per earlier experience j < T-1: A[j][j] - A[T-1][j] (its accuracy right
// after training it minus its accuracy now; positive: forgotten).
std::vector<double> forgetting_per_experience(const Matrix& a);
// Mean of forgetting_per_experience; 0 with fewer than two rows.
double forgetting(const Matrix& a);

// (1/(T-1)) sum_{j<T-1} (A[T-1][j] - A[j][j]): the influence of later
// experiences on earlier ones (negative: forgetting).
std::optional<double> backward_transfer(const Matrix& a);

// (1/(T-1)) sum_{1<=j<T} (A[j-1][j] - b[j]): the accuracy on an experience
// before training on it, against the initial model's.
std::optional<double> forward_transfer(const Matrix& a, const std::vector<double>& initial);

// Per class c with samples: correct answers / samples, from a confusion
// matrix confusion[true][predicted] (classes x classes, row-major) and the
// samples of each class the model gave no answer for (unanswered[true]).
std::map<int64_t, double> class_accuracy(const std::vector<int64_t>& confusion,
                                         const std::vector<int64_t>& unanswered, int64_t classes);

}  // namespace continua::metrics
