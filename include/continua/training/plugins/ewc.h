// EWC (Kirkpatrick et al. 2017): separate or online importances; strategy "ewc".
//
//   strategy.add_plugin(std::make_shared<continua::EWCPlugin>(continua::EWCPlugin::Options{1.0, "online", 0.9}));
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "continua/training/strategy.h"

namespace continua {

class EWCPlugin : public Plugin {
 public:
  struct Options {
    double lambda = 100.0;
    std::string mode = "separate";  // separate, online
    double decay = 1.0;             // online: old importances are scaled by this
  };
  explicit EWCPlugin(Options options);
  std::string name() const override { return "ewc"; }
  void before_backward(Strategy& s) override;
  void after_training_exp(Strategy& s) override;
  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;

  struct Snapshot {
    std::map<std::string, at::Tensor> importances;
    std::map<std::string, at::Tensor> params;
  };
  // separate: one per trained experience; online: at most one.
  const std::vector<Snapshot>& snapshots() const { return snapshots_; }

 private:
  Options options_;
  std::vector<Snapshot> snapshots_;
};

}  // namespace continua
