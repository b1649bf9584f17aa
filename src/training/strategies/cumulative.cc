#include "continua/training/plugins/cumulative.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "continua/errors.h"
#include "continua/training/registry.h"
#include "training/internal/benchmark_ref.h"

namespace continua {

// ---------------------------------------------------------------- cumulative

void CumulativePlugin::adapt_train_set(Strategy& s, TrainingSet& set) {
  if (seen_.empty()) return;
  internal::check_same_benchmark(benchmark_, *s.experience(), "cumulative");
  for (int64_t e : seen_) {
    const Experience& exp = benchmark_->train_stream().at(e);
    set.segments.push_back({&exp, at::arange(exp.size(), at::kLong)});
  }
}

void CumulativePlugin::after_training_exp(Strategy& s) {
  internal::check_same_benchmark(benchmark_, *s.experience(), "cumulative");
  if (!benchmark_) benchmark_ = internal::origin_of(*s.experience());
  seen_.push_back(s.experience()->index());
}

void CumulativePlugin::save_state(StateWriter& w) const {
  if (benchmark_) w.write_object("benchmark", benchmark_);
  w.write("seen", seen_);
}

void CumulativePlugin::load_state(const StateReader& r) { load_staged(*this, r); }

void CumulativePlugin::stage_load(const StateReader& r, LoadTransaction& tx) {
  std::shared_ptr<const Benchmark> bench;
  if (r.has("benchmark")) bench = internal::read_benchmark(r, "benchmark");
  auto seen = r.get<std::vector<int64_t>>("seen");
  for (int64_t e : seen) {
    if (!bench || e < 0 || e >= int64_t(bench->train_stream().size())) {
      r.fail("seen", "experience " + std::to_string(e) + " is outside the benchmark");
    }
  }
  tx.then([this, bench, seen] {
    benchmark_ = bench;
    seen_ = seen;
  });
}


CONTINUA_REGISTER_STRATEGY(StrategyInfo{
    "cumulative",
    "Cumulative (joint training on every experience seen so far): the upper bound of rehearsal",
    {},
    [](Strategy& s, const StrategyConfig&) { s.add_plugin(std::make_shared<CumulativePlugin>()); }});

}  // namespace continua
