// GDumb (Prabhu et al. 2020); strategy "gdumb".
//
// A greedy class-balanced memory takes each experience's samples as it
// arrives (an equal share of --mem-size per class seen, a uniform sample of
// each class); then the model is reset to its initial weights (the same
// ones every experience; a head row that appears later keeps the weights it
// was first given; BatchNorm's running statistics too) with a fresh
// optimizer, and trained on the memory only.
// Evaluation uses the model so trained.
//
//   strategy.add_plugin(std::make_shared<continua::GDumbPlugin>(continua::GDumbPlugin::Options{500, seed}));
#pragma once

#include "continua/training/memory.h"
#include "continua/training/parameter_map.h"
#include "continua/training/strategy.h"

namespace continua {

class GDumbPlugin : public Plugin {
 public:
  struct Options {
    int64_t mem_size = 500;
    uint64_t seed = 0;
  };
  explicit GDumbPlugin(Options options);
  std::string name() const override { return "gdumb"; }
  void before_training_exp(Strategy& s) override;
  void adapt_train_set(Strategy& s, TrainingSet& set) override;
  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;

  const Memory& memory() const { return memory_; }
  // The initial parameters, and the initial buffers outside the head.
  const ParameterMap& initial_weights() const { return initial_; }

 private:
  Options options_;
  Memory memory_;
  ParameterMap initial_;
};

}  // namespace continua
