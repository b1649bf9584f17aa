#include "continua/training/plugins/mas.h"

#include <torch/torch.h>

#include "continua/errors.h"
#include "continua/training/registry.h"

namespace continua {

MASPlugin::MASPlugin(Options options) : options_(options) {
  if (options_.lambda < 0) throw InvalidArgument("--mas-lambda must be >= 0");
  if (options_.alpha < 0 || options_.alpha > 1) throw InvalidArgument("--mas-alpha must be in [0, 1]");
}

void MASPlugin::before_backward(Strategy& s) {
  if (importance_.empty() || options_.lambda == 0) return;
  s.loss = s.loss + options_.lambda * quadratic_penalty(s.model(), importance_, reference_);
}

ParameterMap MASPlugin::importance_on(Strategy& s, const Experience& exp, bool squared) {
  Model& model = s.model();
  const bool was_training = model.is_training();
  model.eval();  // no dropout: the importance uses no random numbers
  ParameterMap imp = parameter_zeros(model);
  const int64_t mb = s.options().train_mb_size_;
  const c10::Device dev = s.device();
  int64_t batches = 0;
  for (int64_t pos = 0; pos < exp.size(); pos += mb) {
    const int64_t take = std::min(mb, exp.size() - pos);
    Batch b = exp.get(at::arange(pos, pos + take, at::kLong));
    s.optimizer().zero_grad();
    const at::Tensor t = b.t.defined() ? b.t.to(dev) : at::Tensor();
    const at::Tensor out = model.forward(b.x.to(dev), t);
    (squared ? out.pow(2).sum(1) : out.norm(2, 1)).mean().backward();
    torch::NoGradGuard ng;
    for (const auto& p : model.named_parameters()) {
      if (p.value().grad().defined()) imp[p.key()].add_(p.value().grad().abs());
    }
    ++batches;
  }
  s.optimizer().zero_grad();
  model.train(was_training);
  if (batches > 0) {
    for (auto& [name, t] : imp) t.div_(double(batches));
  }
  return imp;
}

void MASPlugin::after_training_exp(Strategy& s) {
  ParameterMap now = importance_on(s, *s.experience(), options_.squared);
  if (importance_.empty()) {
    importance_ = std::move(now);
  } else {
    fit_to(importance_, s.model());
    for (auto& [name, t] : importance_) t.mul_(options_.alpha).add_(now.at(name) * (1.0 - options_.alpha));
  }
  reference_ = parameter_values(s.model());
}

void MASPlugin::save_state(StateWriter& w) const {
  save_parameter_map(w.child("importance"), importance_);
  save_parameter_map(w.child("reference"), reference_);
}

void MASPlugin::load_state(const StateReader& r) { load_staged(*this, r); }

void MASPlugin::stage_load(const StateReader& r, LoadTransaction& tx) {
  ParameterMap importance = read_parameter_map(r.child("importance"));
  ParameterMap reference = read_parameter_map(r.child("reference"));
  for (const auto& [name, t] : importance) {
    auto ref = reference.find(name);
    if (ref == reference.end() || ref->second.sizes() != t.sizes()) {
      r.child("reference").fail(name, "missing or of another shape than the importance");
    }
  }
  tx.then([this, importance, reference] {
    importance_ = importance;
    reference_ = reference;
  });
}

CONTINUA_REGISTER_STRATEGY(StrategyInfo{
    "mas",
    "Memory Aware Synapses (Aljundi et al. 2018): a quadratic penalty weighted by the gradient "
    "magnitude of the output's squared L2 norm",
    {StrategyOption::real("mas-lambda", 1.0, "weight of the penalty"),
     StrategyOption::real("mas-alpha", 0.5, "weight of the old importance in the running average"),
     StrategyOption::flag("mas-squared-norm", false, "the gradient of the squared L2 norm of the output (the "
                                                     "paper's formula; diverges at lambda 1 with SGD lr 0.01 "
                                                     "momentum 0.9)")},
    [](Strategy& s, const StrategyConfig& c) {
      s.add_plugin(std::make_shared<MASPlugin>(
          MASPlugin::Options{c.real("mas-lambda"), c.real("mas-alpha"), c.flag("mas-squared-norm")}));
    }});

}  // namespace continua
