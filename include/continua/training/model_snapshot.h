// A frozen copy of a model: the previous model that LwF, LFL and iCaRL
// distil from. Eval mode, no gradients; checkpointed as the model's own
// state and rebuilt on load from the saved options (a user's own feature
// extractor from the live model's architecture, set_prototype).
//
//   ModelSnapshot previous;
//   previous.set_prototype(strategy.model_ptr());   // in attached()
//   previous.take(strategy.model());                // after an experience
//   at::Tensor old = previous.model()->forward(x);
//
// Contract: stage_load changes nothing until the commit (torch's generator,
// which building a model draws from, is left as it was); a saved model that
// does not fit throws, naming the key.
#pragma once

#include <memory>

#include "continua/state/state_tree.h"

namespace continua {

class Model;

class ModelSnapshot {
 public:
  void set_prototype(std::shared_ptr<Model> live) { prototype_ = std::move(live); }
  // Holds a frozen copy of `model` (its weights now).
  void take(const Model& model);
  void reset() { model_.reset(); }
  const std::shared_ptr<Model>& model() const { return model_; }
  explicit operator bool() const { return bool(model_); }

  // The held model's state (nothing when none is held).
  void save_state(StateWriter& writer) const;
  // Stages the model saved under `reader`; held from the commit on. The live
  // copy of the same architecture and device is loaded in place.
  void stage_load(const StateReader& reader, LoadTransaction& tx);
  // In the state of the plugin that owns it: "has_previous", and the model
  // under "previous_model" (LwF, LFL, iCaRL, BiC); a load of has_previous
  // false drops the held model at the commit.
  void save_as_previous(StateWriter& owner) const;
  void stage_load_as_previous(const StateReader& owner, LoadTransaction& tx);

 private:
  std::shared_ptr<Model> model_;
  std::shared_ptr<Model> prototype_;  // the strategy's model: the architecture of loads
};

}  // namespace continua
