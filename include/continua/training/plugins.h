// The plugins that make continual-learning strategies out of the Strategy
// template: replay, EWC, LwF and cumulative training.
//
//   strategy.add_plugin(std::make_shared<continua::ReplayPlugin>(
//       continua::ReplayPlugin::Options{.mem_size = 500, .policy = "class-balanced"}));
//
// Replay and cumulative memories hold references to experiences of a
// benchmark and positions inside them — never copies of samples — so their
// checkpoint size does not grow with the samples' size, and the benchmark is
// stored once, as its constructor arguments.
#pragma once

#include <ATen/core/Generator.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "continua/training/strategy.h"

namespace continua {

class ReplayPlugin : public Plugin {
 public:
  struct Options {
    int64_t mem_size = 200;
    std::string policy = "reservoir";  // reservoir, class-balanced
    uint64_t seed = 0;
  };
  explicit ReplayPlugin(Options options);
  std::string name() const override { return "replay"; }
  void adapt_train_set(Strategy& s, TrainingSet& set) override;
  void after_training_exp(Strategy& s) override;
  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;

  int64_t memory_size() const { return exps_.defined() ? exps_.size(0) : 0; }
  // Per memory sample: experience index, position in it, label.
  const at::Tensor& memory_experiences() const { return exps_; }
  const at::Tensor& memory_positions() const { return positions_; }
  at::Tensor memory_labels() const;
  const std::shared_ptr<const Benchmark>& benchmark() const { return benchmark_; }

 private:
  Options options_;
  at::Generator generator_;
  std::shared_ptr<const Benchmark> benchmark_;
  at::Tensor exps_, positions_, weights_;  // int64, int64, float32 (reservoir)
};

class EWCPlugin : public Plugin {
 public:
  struct Options {
    double lambda = 100.0;
    std::string mode = "separate";  // separate, online
    double decay = 1.0;             // online: old importances are scaled by this
  };
  explicit EWCPlugin(Options options);
  std::string name() const override { return "ewc"; }
  void before_backward(Strategy& s) override;
  void after_training_exp(Strategy& s) override;
  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;

  struct Snapshot {
    std::map<std::string, at::Tensor> importances;
    std::map<std::string, at::Tensor> params;
  };
  // separate: one per trained experience; online: at most one.
  const std::vector<Snapshot>& snapshots() const { return snapshots_; }

 private:
  Options options_;
  std::vector<Snapshot> snapshots_;
};

class LwFPlugin : public Plugin {
 public:
  struct Options {
    double alpha = 1.0;
    double temperature = 2.0;
  };
  explicit LwFPlugin(Options options);
  std::string name() const override { return "lwf"; }
  void before_backward(Strategy& s) override;
  void after_training_exp(Strategy& s) override;
  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;
  const std::shared_ptr<Model>& previous_model() const { return previous_; }

 private:
  Options options_;
  std::shared_ptr<Model> previous_;
};

class CumulativePlugin : public Plugin {
 public:
  std::string name() const override { return "cumulative"; }
  void adapt_train_set(Strategy& s, TrainingSet& set) override;
  void after_training_exp(Strategy& s) override;
  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;

 private:
  std::shared_ptr<const Benchmark> benchmark_;
  std::vector<int64_t> seen_;
};

}  // namespace continua
