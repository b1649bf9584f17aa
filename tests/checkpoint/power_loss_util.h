// The training run every power-loss sweep cuts (tests/checkpoint/power_loss_test.cc),
// shared with the rank-1 helper of the data-parallel sweep (power_loss_rank1.cc):
// a small strategy on the synthetic benchmark that saves every `save_every`
// iterations and after each experience's evaluation, as `continua run
// --checkpoint-every N` does.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>

#include "continua/data/benchmark.h"
#include "continua/distributed/distributed.h"
#include "continua/training/registry.h"
#include "continua/training/strategy.h"

namespace continua::testing::power_loss {

struct Scenario {
  std::string strategy = "replay";
  int64_t experiences = 2;
  int64_t subset = 160;    // training samples per experience: 10 iterations of 16
  int64_t save_every = 4;  // iterations
  uint64_t seed = 1;
};

inline std::shared_ptr<Benchmark> scenario_benchmark(const Scenario& sc) {
  return make_benchmark(BenchmarkOptions()
                            .name("split-synthetic")
                            .seed(sc.seed)
                            .experiences(sc.experiences)
                            .subset(sc.subset));
}

// make_test_strategy's strategy (tests/test_util.cc); with a context, a
// DataParallelPlugin comes first, as `continua run --nproc` adds it.
inline std::unique_ptr<Strategy> scenario_strategy(const Scenario& sc, const Benchmark& bench,
                                                   std::shared_ptr<DistributedContext> ctx = nullptr) {
  torch::manual_seed(sc.seed);
  auto model = make_model(ModelOptions().input_size(bench.input_size()).hidden(32).dropout(0.1));
  auto s = std::make_unique<Strategy>(model, StrategyOptions()
                                                 .train_mb_size(16)
                                                 .eval_mb_size(64)
                                                 .epochs(1)
                                                 .seed(sc.seed)
                                                 .optimizer(OptimizerOptions().lr(0.05).momentum(0.9)));
  if (ctx) s->add_plugin(std::make_shared<DataParallelPlugin>(ctx));
  configure_strategy(*s, sc.strategy, {{"mem-size", 50}, {"mem-mb-size", 16}}, sc.seed);
  return s;
}

// Trains the stream from where `s` stands (a loaded checkpoint continues an
// interrupted experience) to its end, evaluating after each experience.
// `save` (if any) runs every save_every iterations and after each
// evaluation; when it returns false the power is gone: training stops.
inline void run_stream(Strategy& s, const Benchmark& bench, const Scenario& sc,
                       const std::function<bool(Strategy&)>& save = nullptr) {
  bool alive = true;
  if (save) {
    s.set_iteration_callback([&](Strategy& st) {
      if (alive && st.clock().train_iterations % sc.save_every == 0 && !save(st)) {
        alive = false;
        st.request_stop();
      }
    });
  }
  const int64_t n = int64_t(bench.train_stream().size());
  for (int64_t i = s.next_experience(); i < n && alive; ++i) {
    if (!s.train(bench.train_stream()[size_t(i)])) break;
    s.eval(bench.test_stream());
    if (save && !save(s)) alive = false;
  }
  s.set_iteration_callback(nullptr);
  s.clear_stop();
}

}  // namespace continua::testing::power_loss
