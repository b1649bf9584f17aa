// LwF (Li & Hoiem 2016): distillation from the previous model; strategy "lwf".
//
//   strategy.add_plugin(std::make_shared<continua::LwFPlugin>(continua::LwFPlugin::Options{1.0, 2.0}));
#pragma once

#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include "continua/training/model_snapshot.h"
#include "continua/training/strategy.h"

namespace continua {

class LwFPlugin : public Plugin {
 public:
  struct Options {
    double alpha = 1.0;
    double temperature = 2.0;
  };
  explicit LwFPlugin(Options options);
  std::string name() const override { return "lwf"; }
  void attached(Strategy& s) override;
  void before_backward(Strategy& s) override;
  void after_training_exp(Strategy& s) override;
  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;
  const std::shared_ptr<Model>& previous_model() const { return previous_.model(); }

 private:
  Options options_;
  ModelSnapshot previous_;
  std::set<int64_t> previous_classes_;  // the units distilled
};

}  // namespace continua
