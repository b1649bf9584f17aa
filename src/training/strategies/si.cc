#include "continua/training/plugins/si.h"

#include <torch/torch.h>

#include "continua/errors.h"
#include "continua/training/registry.h"

namespace continua {

SynapticIntelligencePlugin::SynapticIntelligencePlugin(Options options) : options_(options) {
  if (options_.lambda < 0) throw InvalidArgument("--si-lambda must be >= 0");
  if (!(options_.xi > 0)) throw InvalidArgument("--si-xi must be > 0");
}

void SynapticIntelligencePlugin::before_training_exp(Strategy& s) {
  reference_ = parameter_values(s.model());
  omega_ = parameter_zeros(s.model());
  if (!importance_.empty()) fit_to(importance_, s.model());
}

void SynapticIntelligencePlugin::after_backward(Strategy& s) {
  step_.record(s.model());  // the task's own gradient
  add_quadratic_penalty_gradient(s.model(), importance_, reference_, options_.lambda);  // c Σ Ω (θ − θ*)²
}

void SynapticIntelligencePlugin::after_update(Strategy& s) { step_.accumulate_decrease(s.model(), omega_); }

void SynapticIntelligencePlugin::iteration_failed(Strategy&) { step_.clear(); }

void SynapticIntelligencePlugin::after_training_exp(Strategy& s) {
  torch::NoGradGuard ng;
  fit_to(importance_, s.model());
  for (const auto& p : s.model().named_parameters()) {
    auto w = omega_.find(p.key());
    if (w == omega_.end() || w->second.sizes() != p.value().sizes()) continue;
    const at::Tensor delta = p.value() - reference_.at(p.key());
    importance_.at(p.key()).add_(w->second / (delta.pow(2) + options_.xi));
  }
  reference_ = parameter_values(s.model());
  omega_ = parameter_zeros(s.model());
}

void SynapticIntelligencePlugin::save_state(StateWriter& w) const {
  save_parameter_map(w.child("omega"), omega_);
  save_parameter_map(w.child("importance"), importance_);
  save_parameter_map(w.child("reference"), reference_);
}

void SynapticIntelligencePlugin::load_state(const StateReader& r) { load_staged(*this, r); }

void SynapticIntelligencePlugin::stage_load(const StateReader& r, LoadTransaction& tx) {
  ParameterMap omega = read_parameter_map(r.child("omega"));
  ParameterMap importance = read_parameter_map(r.child("importance"));
  ParameterMap reference = read_parameter_map(r.child("reference"));
  for (const auto& [name, t] : omega) {
    auto ref = reference.find(name);
    if (ref == reference.end() || ref->second.sizes() != t.sizes()) {
      r.child("reference").fail(name, "missing or of another shape than the path integral");
    }
  }
  tx.then([this, omega, importance, reference] {
    omega_ = omega;
    importance_ = importance;
    reference_ = reference;
  });
}

CONTINUA_REGISTER_STRATEGY(StrategyInfo{
    "si",
    "Synaptic Intelligence (Zenke et al. 2017): a quadratic penalty weighted by each parameter's path "
    "integral of the loss's decrease",
    {StrategyOption::real("si-lambda", 1.0, "c: weight of the surrogate loss"),
     StrategyOption::real("si-xi", 0.1, "xi: damping of the importance's denominator (Avalanche's eps is 1e-7, with importances capped at 0.001)")},
    [](Strategy& s, const StrategyConfig& c) {
      s.add_plugin(std::make_shared<SynapticIntelligencePlugin>(
          SynapticIntelligencePlugin::Options{c.real("si-lambda"), c.real("si-xi")}));
    }});

}  // namespace continua
