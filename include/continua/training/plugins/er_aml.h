// ER-AML: experience replay with the asymmetric metric loss (Caccia et al.
// 2022, "New insights on reducing abrupt representation change in online
// continual learning"); strategy "er-aml".
//
// A reservoir memory over the stream. Each iteration draws a memory batch,
// trained with CE over every class seen; each new row gets, from the
// memory, a positive (a sample of its class and task) and a negative (another
// class, same task), and the new rows are trained by the supervised
// contrastive loss of their L2-normalised features against those positives
// and negatives, −(τ/τ_base) mean_i mean_{p ∈ pos(i)} log softmax_j(⟨h_i, h_j⟩/τ)_p
// (as Avalanche's AMLCriterion). New rows whose class has no sample in the
// memory yet have no positive and are left out of the metric loss (before
// the memory holds any, the iteration is plain CE).
//
//   strategy.add_plugin(std::make_shared<continua::ERAMLPlugin>(continua::ERAMLPlugin::Options{...}));
#pragma once

#include "continua/training/memory.h"
#include "continua/training/strategy.h"

namespace continua {

// The supervised contrastive loss of anchors [A, D] against features [F, D]
// (both normalised), positives where the labels agree.
at::Tensor supcon_loss(const at::Tensor& anchors, const at::Tensor& features, const at::Tensor& anchor_labels,
                       const at::Tensor& labels, double temperature, double base_temperature);

class ERAMLPlugin : public Plugin {
 public:
  struct Options {
    int64_t mem_size = 500;
    int64_t mem_mb_size = 0;  // 0: the train mini-batch size
    double temperature = 0.1;
    double base_temperature = 0.07;
    uint64_t seed = 0;
  };
  explicit ERAMLPlugin(Options options);
  std::string name() const override { return "er_aml"; }
  void attached(Strategy& s) override;
  void adapt_batch(Strategy& s, MiniBatch& batch) override;
  void after_training_iteration(Strategy& s) override;
  void iteration_failed(Strategy& s) override;
  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;

  at::Tensor loss(Strategy& s) const;
  const Memory& memory() const { return memory_; }
  // This iteration's layout of s.mb: new rows, the memory batch, then one
  // positive and one negative row for each anchor (a new row's index).
  struct Layout {
    int64_t fresh = 0, memory = 0;
    at::Tensor anchors;  // int64: new-row indices with a positive and a negative
  };
  const Layout& layout() const { return layout_; }

 private:
  Options options_;
  Memory memory_;
  Layout layout_;
};

}  // namespace continua
