// Continual Prototype Evolution (De Lange & Tuytelaars 2021); strategy "cope".
//
// - Embeddings: the model's features (the head's input), L2-normalised.
// - Prototypes: one unit vector per class seen, set to the mean embedding of
//   the class's first batch, then moved after every iteration towards the
//   mean embedding of its class in the batch: p ← normalise(α p + (1 − α) mean).
// - Loss: the pseudo-prototypical proxy loss (PPP) on the batch (new rows
//   and a memory batch): each sample is attracted to its class's prototype
//   and to the other samples of its class (pseudo-prototypes), against the
//   other classes' prototypes, and repelled from the other classes'
//   prototypes and samples; temperature --cope-temperature.
// - Memory: class-balanced, updated after each experience; replayed from
//   the second experience on.
// - Prediction: the nearest prototype (cosine similarity).
//
//   strategy.add_plugin(std::make_shared<continua::CoPEPlugin>(continua::CoPEPlugin::Options{...}));
#pragma once

#include "continua/training/memory.h"
#include "continua/training/strategy.h"

namespace continua {

// The PPP loss of normalised embeddings x [B, D] with labels y against the
// prototypes [C, D] of the classes `classes` [C] (every label among them).
at::Tensor ppp_loss(const at::Tensor& x, const at::Tensor& y, const at::Tensor& prototypes,
                    const at::Tensor& classes, double temperature);

class CoPEPlugin : public Plugin {
 public:
  struct Options {
    int64_t mem_size = 500;
    int64_t mem_mb_size = 0;  // 0: the train mini-batch size
    double alpha = 0.99;      // prototype momentum
    double temperature = 0.1;
    uint64_t seed = 0;
  };
  explicit CoPEPlugin(Options options);
  std::string name() const override { return "cope"; }
  void attached(Strategy& s) override;
  void before_training_exp(Strategy& s) override;
  void adapt_batch(Strategy& s, MiniBatch& batch) override;
  void after_training_iteration(Strategy& s) override;
  void after_training_exp(Strategy& s) override;
  void after_eval_forward(Strategy& s) override;
  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;

  at::Tensor loss(Strategy& s) const;
  const at::Tensor& prototypes() const { return prototypes_; }  // [C, D]
  const at::Tensor& classes() const { return classes_; }        // [C]
  const Memory& memory() const { return memory_; }

 private:
  Options options_;
  Memory memory_;
  at::Tensor prototypes_, classes_;
};

}  // namespace continua
