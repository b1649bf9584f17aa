// Checkpointable: what the checkpoint layer saves and loads. A strategy is
// one; so is anything else with a state tree, a position in the stream of
// experiences and a step counter. The checkpoint layer depends on this
// interface, not on the training layer above it.
//
//   class MyLoop : public continua::Checkpointable {
//     void save_state(continua::StateWriter& w) const override { ... }
//     void load_state(const continua::StateReader& r) override { ... }
//     int64_t next_experience() const override { return experiences_done_; }
//     int64_t step() const override { return iterations_; }
//   };
//   continua::save_checkpoint(loop, "loop.safetensors");
//
// Contract: save_state writes the whole state under the writer it is given
// (the checkpoint layer roots it at "strategy"); stage_load (Stateful) checks
// everything before the transaction commits.
#pragma once

#include <cstdint>

#include "continua/state/state_tree.h"

namespace continua {

class Checkpointable : public Stateful {
 public:
  // The index of the next experience to train (the one in progress, or the
  // number trained): what maybe_load_checkpoint returns as initial_exp.
  virtual int64_t next_experience() const = 0;
  // A counter that grows with every training step: checkpoint managers name
  // and order their files by it.
  virtual int64_t step() const = 0;
};

}  // namespace continua
