#include "continua/evaluation/metrics.h"

#include <algorithm>

namespace continua::metrics {

namespace {
// A[i][j], or nullopt where the row is shorter.
std::optional<double> cell(const Matrix& a, size_t i, size_t j) {
  if (i >= a.size() || j >= a[i].size()) return std::nullopt;
  return a[i][j];
}
}  // namespace

double average_accuracy(const Matrix& a) {
  if (a.empty()) return 0;
  const auto& last = a.back();
  const size_t seen = std::min(a.size(), last.size());
  if (seen == 0) return 0;
  double sum = 0;
  for (size_t j = 0; j < seen; ++j) sum += last[j];
  return sum / double(seen);
}

double average_incremental_accuracy(const Matrix& a) {
  double sum = 0;
  size_t steps = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const size_t seen = std::min(i + 1, a[i].size());
    if (seen == 0) continue;
    double row = 0;
    for (size_t j = 0; j < seen; ++j) row += a[i][j];
    sum += row / double(seen);
    ++steps;
  }
  return steps ? sum / double(steps) : 0;
}

std::vector<double> forgetting_per_experience(const Matrix& a) {
  std::vector<double> out;
  if (a.size() < 2) return out;
  const size_t last = a.size() - 1;
  for (size_t j = 0; j < last; ++j) {
    const auto first = cell(a, j, j), now = cell(a, last, j);
    if (first && now) out.push_back(*first - *now);
  }
  return out;
}

double forgetting(const Matrix& a) {
  const auto f = forgetting_per_experience(a);
  if (f.empty()) return 0;
  double sum = 0;
  for (double v : f) sum += v;
  return sum / double(f.size());
}

std::optional<double> backward_transfer(const Matrix& a) {
  if (a.size() < 2) return std::nullopt;
  const size_t last = a.size() - 1;
  double sum = 0;
  size_t n = 0;
  for (size_t j = 0; j < last; ++j) {
    const auto first = cell(a, j, j), now = cell(a, last, j);
    if (!first || !now) continue;
    sum += *now - *first;
    ++n;
  }
  if (n == 0) return std::nullopt;
  return sum / double(n);
}

std::optional<double> forward_transfer(const Matrix& a, const std::vector<double>& initial) {
  if (a.size() < 2 || initial.empty()) return std::nullopt;
  double sum = 0;
  size_t n = 0;
  for (size_t j = 1; j < a.size(); ++j) {
    const auto before = cell(a, j - 1, j);
    if (!before || j >= initial.size()) continue;
    sum += *before - initial[j];
    ++n;
  }
  if (n == 0) return std::nullopt;
  return sum / double(n);
}

std::map<int64_t, double> class_accuracy(const std::vector<int64_t>& confusion,
                                         const std::vector<int64_t>& unanswered, int64_t classes) {
  std::map<int64_t, double> out;
  if (classes <= 0 || confusion.size() != size_t(classes) * size_t(classes)) return out;
  for (int64_t c = 0; c < classes; ++c) {
    int64_t samples = size_t(c) < unanswered.size() ? unanswered[size_t(c)] : 0;
    for (int64_t p = 0; p < classes; ++p) samples += confusion[size_t(c * classes + p)];
    if (samples > 0) out[c] = double(confusion[size_t(c * classes + c)]) / double(samples);
  }
  return out;
}

}  // namespace continua::metrics
