// Optimizers keyed by parameter name, and learning-rate schedulers.
//
// NamedOptimizer wraps LibTorch's SGD (with momentum) or Adam and saves its
// hyper-parameters and per-parameter buffers under the parameters' names
// (LibTorch 1.13's torch::load(optimizer) drops the hyper-parameters, and
// its state is keyed by tensor address). When the model grows, bind() moves
// the optimizer to the new parameter set, carrying each unchanged parameter's
// buffers across.
//
//   continua::NamedOptimizer opt(continua::OptimizerOptions().type("sgd").lr(0.01).momentum(0.9));
//   opt.bind(model->named_parameters());
//   loss.backward(); opt.step(); opt.zero_grad();
//
// Contract: load_state throws continua::InvalidArgument naming the key when a
// buffer's shape does not fit its parameter or the saved type differs.
#pragma once

#include <torch/optim/optimizer.h>
#include <torch/ordered_dict.h>

#include <memory>
#include <string>
#include <vector>

#include "continua/state/state_tree.h"

namespace continua {

struct OptimizerOptions {
  OptimizerOptions& type(std::string v) { type_ = std::move(v); return *this; }
  OptimizerOptions& lr(double v) { lr_ = v; return *this; }
  OptimizerOptions& momentum(double v) { momentum_ = v; return *this; }
  OptimizerOptions& weight_decay(double v) { weight_decay_ = v; return *this; }
  OptimizerOptions& beta1(double v) { beta1_ = v; return *this; }
  OptimizerOptions& beta2(double v) { beta2_ = v; return *this; }
  OptimizerOptions& eps(double v) { eps_ = v; return *this; }

  nlohmann::json to_json() const;
  static OptimizerOptions from_json(const nlohmann::json& j);

  std::string type_ = "sgd";  // sgd, adam
  double lr_ = 0.01;
  double momentum_ = 0.0;
  double weight_decay_ = 0.0;
  double beta1_ = 0.9, beta2_ = 0.999, eps_ = 1e-8;  // adam
};

class NamedOptimizer : public Stateful {
 public:
  explicit NamedOptimizer(OptimizerOptions options);
  ~NamedOptimizer() override;

  void bind(const torch::OrderedDict<std::string, at::Tensor>& named_parameters);
  void zero_grad();
  void step();
  // Forgets every parameter's buffers (momentum, Adam's moments): the next
  // step is the first of a fresh optimizer (GDumb's retraining).
  void reset_state();
  double lr() const;
  void set_lr(double lr);
  const OptimizerOptions& options() const { return options_; }
  torch::optim::Optimizer& torch_optimizer() { return *optimizer_; }

  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;
  // Staged with the model of the same checkpoint (`model`): buffers are
  // checked against the shapes the parameters will have once the model's
  // commit ran (its head may grow). The strategy rebinds the optimizer
  // (bind) between the two commits.
  void stage_load(const StateReader& reader, const StateReader& model, LoadTransaction& tx);

 private:
  void stage(const StateReader& reader, const StateReader* model, LoadTransaction& tx);
  OptimizerOptions options_;
  std::vector<std::string> names_;
  std::vector<at::Tensor> params_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
};

// Step decay of the learning rate every `step_size` epochs (0: constant).
struct SchedulerOptions {
  SchedulerOptions& step_size(int64_t v) { step_size_ = v; return *this; }
  SchedulerOptions& gamma(double v) { gamma_ = v; return *this; }
  int64_t step_size_ = 0;
  double gamma_ = 0.1;
};

class StepScheduler : public Stateful {
 public:
  explicit StepScheduler(SchedulerOptions options) : options_(options) {}
  // Called once per epoch; sets the optimizer's learning rate.
  void step(NamedOptimizer& optimizer);
  void reset(NamedOptimizer& optimizer);  // at the start of an experience
  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;
  bool enabled() const { return options_.step_size_ > 0; }

 private:
  SchedulerOptions options_;
  int64_t epochs_ = 0;
  double base_lr_ = -1;
};

}  // namespace continua
