// Dark Experience Replay and DER++ (Buzzega et al. 2020); strategies "der"
// and "derpp".
//
// A reservoir memory over the stream: every training sample is offered to
// it with the logits the model gave it in that iteration (its "dark
// knowledge"). Each iteration draws a memory batch A and adds
// α · mean((f(x_A) − z_A)²), the distance between the current and the
// stored logits (over the classes the head had when the logits were
// stored); DER++ draws a second batch B and adds β · CE(f(x_B), y_B).
//
//   strategy.add_plugin(std::make_shared<continua::DERPlugin>(continua::DERPlugin::Options{...}));
#pragma once

#include "continua/training/memory.h"
#include "continua/training/strategy.h"

namespace continua {

class DERPlugin : public Plugin {
 public:
  struct Options {
    int64_t mem_size = 500;
    int64_t mem_mb_size = 0;  // 0: the train mini-batch size
    double alpha = 0.1;
    double beta = 0.0;  // > 0: DER++
    uint64_t seed = 0;
  };
  explicit DERPlugin(Options options);
  std::string name() const override { return options_.beta > 0 ? "derpp" : "der"; }
  void attached(Strategy& s) override;
  void adapt_batch(Strategy& s, MiniBatch& batch) override;
  void after_training_iteration(Strategy& s) override;
  void iteration_failed(Strategy& s) override;
  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;

  // The loss of s.mb (new rows, then batch A, then batch B).
  at::Tensor loss(Strategy& s) const;
  const Memory& memory() const { return memory_; }

 private:
  Options options_;
  Memory memory_;
  int64_t rows_a_ = 0, rows_b_ = 0;  // of the current iteration
};

}  // namespace continua
