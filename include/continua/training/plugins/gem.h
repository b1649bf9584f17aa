// Gradient Episodic Memory (Lopez-Paz & Ranzato 2017); strategy "gem".
//
// A memory of --mem-size / (number of experiences) random samples per past
// experience (Avalanche's patterns_per_exp). Every iteration computes the
// gradient g_k of the loss on each past experience's memory; when the new
// gradient g has a negative dot product with any g_k, it is replaced by the
// closest vector g̃ with g̃ · g_k >= 0 for all k, found through the dual
// quadratic program of the paper's code: min_v ½ vᵀ(GGᵀ + εI)v + (Gg)ᵀv
// subject to v >= γ (γ = --gem-strength, the paper's margin), g̃ = Gᵀv + g,
// solved exactly (training/qp.h).
//
//   strategy.add_plugin(std::make_shared<continua::GEMPlugin>(continua::GEMPlugin::Options{500, 0.5, seed}));
#pragma once

#include "continua/training/memory.h"
#include "continua/training/strategy.h"

namespace continua {

// g̃ for the gradients of the past experiences G [K, P] and the new one g [P].
// Gg: G·g when the caller has it already (GEM's violation check).
at::Tensor gem_project(const at::Tensor& G, const at::Tensor& g, double margin, double eps = 1e-3,
                       const at::Tensor& Gg = {});

class GEMPlugin : public Plugin {
 public:
  struct Options {
    int64_t mem_size = 500;
    double strength = 0.5;  // γ
    uint64_t seed = 0;
  };
  explicit GEMPlugin(Options options);
  std::string name() const override { return "gem"; }
  void before_training_iteration(Strategy& s) override;
  void after_backward(Strategy& s) override;
  void iteration_failed(Strategy& s) override;
  void after_training_exp(Strategy& s) override;
  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;

  const Memory& memory() const { return memory_; }
  int64_t projections() const { return projections_; }  // iterations whose gradient was projected

 private:
  Options options_;
  Memory memory_;
  at::Tensor past_grads_;  // G of the current iteration
  std::vector<MiniBatch> batches_;  // the memory of each past experience, gathered
  int64_t projections_ = 0;
};

// The loss gradient on each given batch, one row per batch (G for GEM, the
// reference gradient for A-GEM), with the model as it is now.
at::Tensor memory_gradients(Strategy& s, const std::vector<MiniBatch>& batches);

}  // namespace continua
