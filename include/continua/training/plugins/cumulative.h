// Cumulative training: every experience seen so far joins the training set;
// strategy "cumulative". The experiences are references into the benchmark.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "continua/training/strategy.h"

namespace continua {

class CumulativePlugin : public Plugin {
 public:
  std::string name() const override { return "cumulative"; }
  void adapt_train_set(Strategy& s, TrainingSet& set) override;
  void after_training_exp(Strategy& s) override;
  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;

 private:
  std::shared_ptr<const Benchmark> benchmark_;
  std::vector<int64_t> seen_;
};

}  // namespace continua
