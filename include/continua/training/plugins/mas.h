// Memory Aware Synapses (Aljundi et al. 2018); strategy "mas".
//
// After each experience, a parameter's importance is the mean, over the
// experience's mini-batches, of the magnitude of the gradient of the L2 norm
// of the model's output, |∂ mean_b ||f(x_b)|| / ∂θ| (unsupervised: no
// labels), computed without dropout; --mas-squared-norm takes the paper's
// squared norm, whose importances are 2||f|| times larger (with SGD at
// lr 0.01 and momentum 0.9 that diverges at λ = 1, as Avalanche's MAS does); it is merged into the running
// importance as Ω = α Ω_old + (1 − α) Ω_new (Avalanche's running average;
// the first experience's Ω is its own). Later experiences add
// λ Σ Ω (θ − θ*)², θ* the weights after the last experience.
//
//   strategy.add_plugin(std::make_shared<continua::MASPlugin>(continua::MASPlugin::Options{1.0, 0.5}));
#pragma once

#include "continua/training/parameter_map.h"
#include "continua/training/strategy.h"

namespace continua {

class MASPlugin : public Plugin {
 public:
  struct Options {
    double lambda = 1.0;
    double alpha = 0.5;  // weight of the old importance in the running average
    bool squared = false;  // the squared L2 norm of the output
  };
  explicit MASPlugin(Options options);
  std::string name() const override { return "mas"; }
  void before_backward(Strategy& s) override;
  void after_training_exp(Strategy& s) override;
  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;

  // The importance of one experience's data (what after_training_exp merges).
  static ParameterMap importance_on(Strategy& s, const Experience& e, bool squared = false);
  const ParameterMap& importance() const { return importance_; }
  const ParameterMap& reference() const { return reference_; }

 private:
  Options options_;
  ParameterMap importance_, reference_;
};

}  // namespace continua
