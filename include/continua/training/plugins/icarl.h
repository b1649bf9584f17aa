// iCaRL (Rebuffi et al. 2017); strategy "icarl".
//
// - Training set: the experience plus the exemplars of the past classes.
// - Loss: binary cross-entropy on every output, the targets of the past
//   classes being the previous model's sigmoid outputs (distillation), the
//   others the one-hot label.
// - Exemplars: after each experience, --mem-size / (classes seen) per class,
//   chosen by herding on L2-normalised features (each pick brings the mean
//   of the exemplars closest to the class mean); old classes keep the first
//   picks of their herding order.
// - Classification: nearest mean of exemplars, -||φ(x) − μ_c|| with φ and
//   μ_c L2-normalised (after_eval_forward), once the first class means exist.
//
//   strategy.add_plugin(std::make_shared<continua::ICaRLPlugin>(continua::ICaRLPlugin::Options{500, seed}));
#pragma once

#include <set>

#include "continua/training/memory.h"
#include "continua/training/model_snapshot.h"
#include "continua/training/strategy.h"

namespace continua {

class ICaRLPlugin : public Plugin {
 public:
  struct Options {
    int64_t mem_size = 500;
    uint64_t seed = 0;
  };
  explicit ICaRLPlugin(Options options);
  std::string name() const override { return "icarl"; }
  void attached(Strategy& s) override;
  void adapt_train_set(Strategy& s, TrainingSet& set) override;
  void after_training_exp(Strategy& s) override;
  void after_eval_forward(Strategy& s) override;
  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;

  at::Tensor loss(Strategy& s) const;
  // Nearest-mean-of-exemplars scores of inputs x: [B, width], classes
  // without a mean at the mask value.
  at::Tensor nme_scores(Model& model, const at::Tensor& x, int64_t width) const;
  at::Tensor nme_scores_of(const at::Tensor& features, int64_t width) const;
  const Memory& memory() const { return memory_; }
  const at::Tensor& class_means() const { return means_; }      // [C, D], L2-normalised
  const at::Tensor& mean_classes() const { return mean_classes_; }  // [C]

 private:
  void compute_means(Strategy& s);
  Options options_;
  Memory memory_;
  ModelSnapshot previous_;
  std::set<int64_t> old_classes_;
  at::Tensor means_, mean_classes_;
};

}  // namespace continua
