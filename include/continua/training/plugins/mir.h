// Maximally Interfered Retrieval (Aljundi et al. 2019); strategy "mir".
//
// A reservoir memory over the stream. Each iteration draws --mir-candidates
// samples of the memory, takes a virtual SGD step on the new mini-batch
// (θ_v = θ − lr ∇L_new(θ)), and replays the --mem-mb-size candidates whose
// loss that step would raise most, L(θ_v) − L(θ) (scored without dropout),
// beside the new mini-batch.
//
//   strategy.add_plugin(std::make_shared<continua::MIRPlugin>(continua::MIRPlugin::Options{500, 10, 50, seed}));
#pragma once

#include "continua/training/memory.h"
#include "continua/training/strategy.h"

namespace continua {

class MIRPlugin : public Plugin {
 public:
  struct Options {
    int64_t mem_size = 500;
    int64_t mem_mb_size = 0;  // replayed per iteration; 0: the train mini-batch size
    int64_t candidates = 0;   // drawn per iteration; 0: twice the replayed number
    uint64_t seed = 0;
  };
  explicit MIRPlugin(Options options);
  std::string name() const override { return "mir"; }
  void adapt_batch(Strategy& s, MiniBatch& batch) override;
  void after_training_iteration(Strategy& s) override;
  void iteration_failed(Strategy& s) override;
  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;

  const Memory& memory() const { return memory_; }
  // The last iteration's candidates (memory slots), their interference
  // scores and the slots replayed (for tests).
  const at::Tensor& last_candidates() const { return last_candidates_; }
  const at::Tensor& last_scores() const { return last_scores_; }
  const at::Tensor& last_chosen() const { return last_chosen_; }

 private:
  Options options_;
  Memory memory_;
  int64_t memory_rows_ = 0;
  at::Tensor last_candidates_, last_scores_, last_chosen_;
};

}  // namespace continua
