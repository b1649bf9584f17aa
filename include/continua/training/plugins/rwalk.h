// Riemannian Walk (Chaudhry et al. 2018); strategy "rwalk".
//
// - Fisher: a running average over iterations, F ← α g² + (1 − α) F
//   (EWC++), g the task loss's gradient of the iteration.
// - Path scores: the loss's decrease −g·Δθ summed over windows of
//   --rwalk-delta-t iterations, divided by ½ F (θ_end − θ_start)² + ε of the
//   window, summed over the experience; an experience's scores are averaged
//   with the previous ones, ½(old + new).
// - After each experience: P = F / max F + relu(S) / max S and the reference
//   θ* ← θ; later experiences add λ Σ P (θ − θ*)², its gradient added in
//   after_backward so that F and the scores see the task's own gradient.
//
//   strategy.add_plugin(std::make_shared<continua::RWalkPlugin>(continua::RWalkPlugin::Options{0.1, 0.9, 10}));
#pragma once

#include "continua/training/parameter_map.h"
#include "continua/training/strategy.h"

namespace continua {

class RWalkPlugin : public Plugin {
 public:
  struct Options {
    double lambda = 0.1;
    double alpha = 0.9;   // weight of the new squared gradient in the Fisher's running average
    int64_t delta_t = 10;  // iterations per path-score window
  };
  explicit RWalkPlugin(Options options);
  std::string name() const override { return "rwalk"; }
  void before_training_exp(Strategy& s) override;
  void after_backward(Strategy& s) override;
  void after_update(Strategy& s) override;
  void iteration_failed(Strategy& s) override;
  void after_training_exp(Strategy& s) override;
  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;

  const ParameterMap& fisher() const { return fisher_; }
  const ParameterMap& scores() const { return scores_; }        // of the current experience
  const ParameterMap& importance() const { return importance_; }  // P
  const ParameterMap& reference() const { return reference_; }

 private:
  Options options_;
  ParameterMap fisher_, scores_, exp_scores_, importance_, reference_;
  ParameterMap window_loss_, window_start_;  // the current window
  int64_t window_steps_ = 0;
  StepRecord step_;  // within one iteration only
};

}  // namespace continua
