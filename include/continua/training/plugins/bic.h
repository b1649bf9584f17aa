// Bias Correction, BiC (Wu et al. 2019, "Large scale incremental learning");
// strategy "bic".
//
// - Memories: a class-balanced training memory (--mem-size minus the
//   validation share) and a class-balanced validation memory
//   (--bic-val-fraction of --mem-size), both references into the stream. An
//   experience's samples that the validation memory takes are left out of
//   its training.
// - Stage 1: trains on the experience plus the training memory with
//   (1 − λ) CE + λ KD, λ = old classes / all classes seen, KD the
//   temperature-T cross-entropy between the previous model's (bias-
//   corrected) softmax over the old classes and the model's.
// - Stage 2, after each experience from the second on: a bias layer
//   (α, β) on the experience's new classes, q = α o + β, fitted on the
//   validation memory alone (the model frozen, full-batch SGD for
//   --bic-epochs, lr --bic-lr).
// - Evaluation applies the last experience's bias layer; the previous model
//   distils through the layer of its own last experience.
//
//   strategy.add_plugin(std::make_shared<continua::BiCPlugin>(continua::BiCPlugin::Options{...}));
#pragma once

#include <set>
#include <vector>

#include "continua/training/memory.h"
#include "continua/training/model_snapshot.h"
#include "continua/training/strategy.h"

namespace continua {

class BiCPlugin : public Plugin {
 public:
  struct Options {
    int64_t mem_size = 500;
    double val_fraction = 0.1;
    double temperature = 2.0;
    int64_t stage2_epochs = 200;
    double stage2_lr = 0.1;
    uint64_t seed = 0;
  };
  struct BiasLayer {
    std::vector<int64_t> classes;  // the classes it corrects
    double alpha = 1.0, beta = 0.0;
  };
  explicit BiCPlugin(Options options);
  std::string name() const override { return "bic"; }
  void attached(Strategy& s) override;
  void before_training_exp(Strategy& s) override;
  void adapt_train_set(Strategy& s, TrainingSet& set) override;
  void after_training_exp(Strategy& s) override;
  void after_eval_forward(Strategy& s) override;
  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;

  at::Tensor loss(Strategy& s) const;
  // Logits with the given bias layers applied.
  static at::Tensor corrected(const at::Tensor& logits, const std::vector<BiasLayer>& layers);
  const Memory& train_memory() const { return memory_; }
  const Memory& validation_memory() const { return validation_; }
  // One per experience from the second on; the last one is in use.
  const std::vector<BiasLayer>& bias_layers() const { return layers_; }

 private:
  void fit_bias_layer(Strategy& s, BiasLayer& layer);
  Options options_;
  Memory memory_, validation_;
  ModelSnapshot previous_;
  std::vector<BiasLayer> layers_;  // of the model now
  std::vector<BiasLayer> previous_layers_;  // of the previous model
  std::set<int64_t> old_classes_, seen_classes_;
};

}  // namespace continua
