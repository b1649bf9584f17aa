// A plugin with its own state that checkpoints carry: it counts the training
// labels seen per class and the iterations, and stores both under
// strategy.plugins.label_counter.{counts,iterations}.
//
//   custom_plugin CKPT
//
// Trains 2 experiences, saves, loads the file into a fresh strategy with a
// fresh plugin, checks the plugin's state came back, and trains on.
#include <continua/continua.h>

#include <iostream>
#include <string>

class LabelCounter : public continua::Plugin {
 public:
  std::string name() const override { return "label_counter"; }

  void after_training_iteration(continua::Strategy& s) override {
    const auto seen = at::bincount(s.mb.y.to(at::kCPU).to(at::kLong));
    if (seen.size(0) > counts_.size(0)) {
      counts_ = at::cat({counts_, at::zeros({seen.size(0) - counts_.size(0)}, at::kLong)});
    }
    counts_.narrow(0, 0, seen.size(0)) += seen;
    ++iterations_;
  }

  // Everything the plugin needs to continue exactly: tensors and JSON values.
  void save_state(continua::StateWriter& w) const override {
    w.write("counts", counts_);
    w.write("iterations", iterations_);
  }
  void load_state(const continua::StateReader& r) override {
    counts_ = r.tensor("counts").clone();
    iterations_ = r.get<int64_t>("iterations");
  }

  const at::Tensor& counts() const { return counts_; }
  int64_t iterations() const { return iterations_; }

 private:
  at::Tensor counts_ = at::zeros({0}, at::kLong);
  int64_t iterations_ = 0;
};

namespace {

struct Run {
  std::shared_ptr<continua::Benchmark> bench;
  std::unique_ptr<continua::Strategy> strategy;
  std::shared_ptr<LabelCounter> counter;
};

Run make_run() {
  Run r;
  r.bench = continua::make_benchmark(continua::BenchmarkOptions().name("split-synthetic").seed(2));
  r.strategy = std::make_unique<continua::Strategy>(
      continua::make_model(continua::ModelOptions().input_size(r.bench->input_size()).hidden(32)),
      continua::StrategyOptions().epochs(1).seed(2));
  r.counter = std::make_shared<LabelCounter>();
  r.strategy->add_plugin(r.counter);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: custom_plugin CKPT\n";
    return 2;
  }
  const std::string ckpt = argv[1];
  try {
    Run a = make_run();
    for (int i = 0; i < 2; ++i) a.strategy->train(a.bench->train_stream()[i]);
    continua::save_checkpoint(*a.strategy, ckpt);
    std::cout << "saved: " << a.counter->iterations() << " iterations, "
              << a.counter->counts().sum().item<int64_t>() << " labels over " << a.counter->counts().size(0)
              << " classes\n";

    Run b = make_run();  // a new process would start like this
    auto [s, next] = continua::maybe_load_checkpoint(*b.strategy, ckpt, "cpu", {b.bench});
    std::cout << "loaded: " << b.counter->iterations() << " iterations, next experience " << next << "\n";
    if (b.counter->iterations() != a.counter->iterations() || !at::equal(b.counter->counts(), a.counter->counts())) {
      std::cerr << "custom_plugin: the plugin's state did not come back from the checkpoint\n";
      return 1;
    }
    for (size_t i = next; i < b.bench->train_stream().size(); ++i) s.train(b.bench->train_stream()[i]);
    std::cout << "after all experiences: " << b.counter->iterations() << " iterations, "
              << b.counter->counts().sum().item<int64_t>() << " labels counted\n";
  } catch (const std::exception& e) {
    std::cerr << "custom_plugin: " << e.what() << "\n";
    return 1;
  }
  std::cout << "plugin state checkpointed and restored: OK\n";
  return 0;
}
