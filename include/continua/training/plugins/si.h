// Synaptic Intelligence (Zenke, Poole & Ganguli 2017); strategy "si".
//
// Every parameter's contribution to the drop of the loss along the path
// training took, ω = −Σ_t g_t · Δθ_t (g: the gradient of the task's own loss,
// Δθ: the optimizer's actual step), is accumulated over an experience; at
// its end the importance grows by Ω += ω / ((θ_end − θ_start)² + ξ). Later
// experiences add the surrogate c Σ Ω (θ − θ*)², θ* the weights at the
// start of the experience. The surrogate's gradient is added in
// after_backward, so ω integrates the unregularised gradient as the paper
// does (Avalanche integrates the total one and caps Ω at 0.001). ξ = 0.1
// (the paper's value for CIFAR; 1e-3 for MNIST, trained there with Adam):
// with SGD at lr 0.01 and momentum 0.9, ξ = 1e-3 gives head importances
// above 190, where the heavy-ball step on the surrogate diverges.
//
//   strategy.add_plugin(std::make_shared<continua::SynapticIntelligencePlugin>(
//       continua::SynapticIntelligencePlugin::Options{.lambda = 1.0, .xi = 0.1}));
#pragma once

#include "continua/training/parameter_map.h"
#include "continua/training/strategy.h"

namespace continua {

class SynapticIntelligencePlugin : public Plugin {
 public:
  struct Options {
    double lambda = 1.0;  // c: weight of the surrogate loss
    double xi = 0.1;      // ξ: damping of the importance's denominator
  };
  explicit SynapticIntelligencePlugin(Options options);
  std::string name() const override { return "si"; }
  void before_training_exp(Strategy& s) override;
  void after_backward(Strategy& s) override;
  void after_update(Strategy& s) override;
  void iteration_failed(Strategy& s) override;
  void after_training_exp(Strategy& s) override;
  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;

  const ParameterMap& path_integral() const { return omega_; }  // ω of the current experience
  const ParameterMap& importance() const { return importance_; }  // Ω
  const ParameterMap& reference() const { return reference_; }    // θ*

 private:
  Options options_;
  ParameterMap omega_, importance_, reference_;
  StepRecord step_;  // within one iteration only
};

}  // namespace continua
