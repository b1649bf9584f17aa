// Experience replay: every training iteration draws a memory mini-batch
// beside the experience's mini-batch and trains on both (Avalanche's
// ReplayPlugin with its ReplayDataLoader; Mammoth's ER); after each
// experience the memory is updated by its policy. Strategy "replay".
//
//   strategy.add_plugin(std::make_shared<continua::ReplayPlugin>(
//       continua::ReplayPlugin::Options{.mem_size = 500, .policy = "class-balanced"}));
//
// The memory holds references to the benchmark's experiences, never copies
// of samples (training/memory.h), so the checkpoint does not grow with the
// samples' size; its draws come from its generator, in the state, so a run
// resumed mid-experience replays the same memory batches.
#pragma once

#include <memory>
#include <string>

#include "continua/training/memory.h"
#include "continua/training/strategy.h"

namespace continua {

class ReplayPlugin : public Plugin {
 public:
  struct Options {
    int64_t mem_size = 500;
    std::string policy = "experience-balanced";  // experience-balanced, class-balanced, reservoir
    uint64_t seed = 0;
    int64_t mem_mb_size = 0;  // memory samples per iteration; 0: the train mini-batch size
  };
  explicit ReplayPlugin(Options options);
  std::string name() const override { return "replay"; }
  void adapt_batch(Strategy& s, MiniBatch& batch) override;
  void after_training_exp(Strategy& s) override;
  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;

  const Memory& memory() const { return memory_; }
  int64_t memory_size() const { return memory_.size(); }
  // Per memory sample: experience index, position in it, label.
  const at::Tensor& memory_experiences() const { return memory_.experiences(); }
  const at::Tensor& memory_positions() const { return memory_.positions(); }
  const at::Tensor& memory_labels() const { return memory_.labels(); }
  const std::shared_ptr<const Benchmark>& benchmark() const { return memory_.benchmark(); }

 private:
  Options options_;
  Memory memory_;
};

}  // namespace continua
