// Less-Forgetful Learning (Jung et al. 2016); strategy "lfl".
//
// From the second experience on, the loss adds λ · mean((h(x) − h_old(x))²),
// h the features (the input of the head) of the model and h_old those of the
// model as it was after the previous experience, on the current mini-batch;
// and the head stays as it was at the start of the experience (the paper
// freezes the softmax layer: only the features adapt), as Avalanche's
// LFLPlugin does. --lfl-freeze-head false trains the head too.
//
//   strategy.add_plugin(std::make_shared<continua::LFLPlugin>(continua::LFLPlugin::Options{1.0, true}));
#pragma once

#include "continua/training/model_snapshot.h"
#include "continua/training/parameter_map.h"
#include "continua/training/strategy.h"

namespace continua {

class LFLPlugin : public Plugin {
 public:
  struct Options {
    double lambda = 1.0;
    bool freeze_head = true;
  };
  explicit LFLPlugin(Options options);
  std::string name() const override { return "lfl"; }
  void attached(Strategy& s) override;
  void before_training_exp(Strategy& s) override;
  void before_backward(Strategy& s) override;
  void after_update(Strategy& s) override;
  void after_training_exp(Strategy& s) override;
  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;

  const std::shared_ptr<Model>& previous_model() const { return previous_.model(); }
  // The loss term for features h of inputs x: λ · mean((h − h_old(x))²).
  at::Tensor feature_loss(const at::Tensor& features, const at::Tensor& x) const;

 private:
  Options options_;
  ModelSnapshot previous_;
  ParameterMap frozen_head_;  // the head's values at the start of the experience
};

}  // namespace continua
