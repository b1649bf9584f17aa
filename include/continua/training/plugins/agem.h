// Averaged GEM (Chaudhry et al. 2019); strategy "agem".
//
// A memory of --mem-size / (number of experiences) random samples per past
// experience. Every iteration draws --agem-sample-size samples from the
// memory (--agem-sampling experience-balanced, the default: the same number
// from each past experience, uniform within it, as Avalanche's
// GroupBalancedInfiniteDataLoader; uniform: uniform over the whole memory,
// the paper's words) and computes their loss gradient g_ref; a new
// gradient g with g · g_ref < 0 is replaced by g − (g·g_ref / g_ref·g_ref) g_ref,
// the closest vector that does not increase the reference loss to first order.
//
//   strategy.add_plugin(std::make_shared<continua::AGEMPlugin>(continua::AGEMPlugin::Options{500, 64, seed}));
#pragma once

#include "continua/training/memory.h"
#include "continua/training/strategy.h"

namespace continua {

at::Tensor agem_project(const at::Tensor& g, const at::Tensor& g_ref);

class AGEMPlugin : public Plugin {
 public:
  struct Options {
    int64_t mem_size = 500;
    int64_t sample_size = 64;
    uint64_t seed = 0;
    bool balanced = true;  // --agem-sampling experience-balanced
  };
  explicit AGEMPlugin(Options options);
  std::string name() const override { return "agem"; }
  void before_training_iteration(Strategy& s) override;
  void after_backward(Strategy& s) override;
  void iteration_failed(Strategy& s) override;
  void after_training_exp(Strategy& s) override;
  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;

  const Memory& memory() const { return memory_; }
  int64_t projections() const { return projections_; }

 private:
  Options options_;
  Memory memory_;
  at::Tensor reference_grad_;  // of the current iteration
  int64_t projections_ = 0;
};

}  // namespace continua
