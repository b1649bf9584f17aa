// Gradient-based Sample Selection, greedy (Aljundi et al. 2019); strategy
// "gss".
//
// The memory keeps samples whose gradients are diverse. After each
// iteration its new rows are offered:
// - while the memory has room, they are stored, each with its score: the
//   largest cosine similarity between its gradient and the gradients of up
//   to --gss-mem-strength random memory subsets of the batch's size (0.1 for
//   the first samples stored);
// - once it is full, if the whole batch's gradient has a negative largest
//   cosine similarity with those subsets' gradients, each new row i draws a
//   memory slot j with probability rising with its score and replaces it
//   with probability (s_j + 1) / ((c_i + 1) + (s_j + 1)), c_i its own score:
//   samples similar to the rest give way. (The greedy algorithm of the paper,
//   as in Mai et al.'s reference code that Avalanche adapts.)
// Gradients are computed without dropout, after the iteration's step. Each
// iteration replays a --mem-mb-size memory batch beside the new rows. The
// scores are a payload of the memory, in the state.
//
//   strategy.add_plugin(std::make_shared<continua::GSSPlugin>(continua::GSSPlugin::Options{500, 0, 5, seed}));
#pragma once

#include "continua/training/memory.h"
#include "continua/training/strategy.h"

namespace continua {

// The largest cosine similarity of each row of `grads` [N, P] with the rows
// of `reference` [K, P].
at::Tensor max_cosine_similarity(const at::Tensor& grads, const at::Tensor& reference);

class GSSPlugin : public Plugin {
 public:
  struct Options {
    int64_t mem_size = 500;
    int64_t mem_mb_size = 0;  // 0: the train mini-batch size
    int64_t mem_strength = 5;  // random memory subsets whose gradients score a sample
    uint64_t seed = 0;
  };
  explicit GSSPlugin(Options options);
  std::string name() const override { return "gss"; }
  void adapt_batch(Strategy& s, MiniBatch& batch) override;
  void after_training_iteration(Strategy& s) override;
  void iteration_failed(Strategy& s) override;
  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;

  const Memory& memory() const { return memory_; }
  // The scores of the memory's samples (the "score" payload).
  at::Tensor scores() const;
  // Gradients of random memory subsets of `batch` samples each (for tests).
  at::Tensor subset_gradients(Strategy& s, int64_t batch);

 private:
  Options options_;
  Memory memory_;
  int64_t memory_rows_ = 0;
};

}  // namespace continua
