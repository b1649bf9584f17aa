// ER-ACE: experience replay with the asymmetric cross-entropy (Caccia et
// al. 2022, "New insights on reducing abrupt representation change in
// online continual learning"); strategy "er-ace".
//
// A reservoir memory over the stream. Each iteration draws a memory batch;
// the loss is CE over every class seen on the memory rows plus CE on the
// new rows over only the classes present in the new rows (the others'
// logits masked out), so new classes do not push the old ones' logits down.
// The paper sums the two terms (Avalanche averages them).
//
//   strategy.add_plugin(std::make_shared<continua::ERACEPlugin>(continua::ERACEPlugin::Options{500, 0, seed}));
#pragma once

#include "continua/training/memory.h"
#include "continua/training/strategy.h"

namespace continua {

class ERACEPlugin : public Plugin {
 public:
  struct Options {
    int64_t mem_size = 500;
    int64_t mem_mb_size = 0;  // 0: the train mini-batch size
    uint64_t seed = 0;
  };
  explicit ERACEPlugin(Options options);
  std::string name() const override { return "er_ace"; }
  void attached(Strategy& s) override;
  void adapt_batch(Strategy& s, MiniBatch& batch) override;
  void after_training_iteration(Strategy& s) override;
  void iteration_failed(Strategy& s) override;
  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;

  // The new rows' logits as the asymmetric loss sees them: the classes
  // absent from the new rows masked.
  static at::Tensor masked_new_logits(const at::Tensor& logits, const at::Tensor& labels);
  at::Tensor loss(Strategy& s) const;
  const Memory& memory() const { return memory_; }

 private:
  Options options_;
  Memory memory_;
  int64_t memory_rows_ = 0;
};

}  // namespace continua
