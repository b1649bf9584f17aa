#include "continua/training/plugins/rwalk.h"

#include <torch/torch.h>

#include "continua/errors.h"
#include "continua/training/registry.h"

namespace continua {

namespace {
constexpr double kEps = 1.1920928955078125e-07;  // float32 epsilon, as Avalanche's

double max_of(const ParameterMap& m, bool relu) {
  double most = 0;
  for (const auto& [name, t] : m) {
    if (t.numel() == 0) continue;
    most = std::max(most, (relu ? t.clamp_min(0) : t).max().item<double>());
  }
  return most;
}
}  // namespace

RWalkPlugin::RWalkPlugin(Options options) : options_(options) {
  if (options_.lambda < 0) throw InvalidArgument("--rwalk-lambda must be >= 0");
  if (options_.alpha < 0 || options_.alpha > 1) throw InvalidArgument("--rwalk-alpha must be in [0, 1]");
  if (options_.delta_t < 1) throw InvalidArgument("--rwalk-delta-t must be >= 1");
}

void RWalkPlugin::before_training_exp(Strategy& s) {
  if (fisher_.empty()) fisher_ = parameter_zeros(s.model());
  fit_to(fisher_, s.model());
  if (!importance_.empty()) fit_to(importance_, s.model());
  scores_ = parameter_zeros(s.model());
  window_loss_ = parameter_zeros(s.model());
  window_start_ = parameter_values(s.model());
  window_steps_ = 0;
}

void RWalkPlugin::after_backward(Strategy& s) {
  torch::NoGradGuard ng;
  step_.record(s.model());  // the task's own gradient
  for (const auto& [name, g] : step_.gradients()) {
    auto f = fisher_.find(name);
    if (f != fisher_.end() && f->second.sizes() == g.sizes()) {
      f->second.mul_(1 - options_.alpha).add_(g.pow(2) * options_.alpha);
    }
  }
  add_quadratic_penalty_gradient(s.model(), importance_, reference_, options_.lambda);
}

void RWalkPlugin::after_update(Strategy& s) {
  torch::NoGradGuard ng;
  step_.accumulate_decrease(s.model(), window_loss_);
  if (++window_steps_ < options_.delta_t) return;
  // The window's scores: its loss decrease over ½ F Δ² + ε.
  for (const auto& p : s.model().named_parameters()) {
    auto w = window_loss_.find(p.key());
    if (w == window_loss_.end() || w->second.sizes() != p.value().sizes()) continue;
    const at::Tensor delta = p.value() - window_start_.at(p.key());
    scores_.at(p.key()).add_(w->second / (0.5 * fisher_.at(p.key()) * delta.pow(2) + kEps));
    w->second.zero_();
  }
  window_start_ = parameter_values(s.model());
  window_steps_ = 0;
}

void RWalkPlugin::iteration_failed(Strategy&) { step_.clear(); }

void RWalkPlugin::after_training_exp(Strategy& s) {
  torch::NoGradGuard ng;
  if (exp_scores_.empty()) {
    exp_scores_ = scores_;
  } else {
    fit_to(exp_scores_, s.model());
    for (auto& [name, t] : exp_scores_) t.add_(scores_.at(name)).mul_(0.5);
  }
  const double fmax = max_of(fisher_, false), smax = max_of(exp_scores_, true);
  importance_.clear();
  for (const auto& [name, f] : fisher_) {
    at::Tensor p = fmax > 0 ? f / fmax : at::zeros_like(f);
    if (smax > 0) p = p + exp_scores_.at(name).clamp_min(0) / smax;
    importance_[name] = p;
  }
  reference_ = parameter_values(s.model());
  scores_ = parameter_zeros(s.model());
  window_loss_.clear();
  window_start_.clear();
  window_steps_ = 0;
}

void RWalkPlugin::save_state(StateWriter& w) const {
  save_parameter_map(w.child("fisher"), fisher_);
  save_parameter_map(w.child("scores"), scores_);
  save_parameter_map(w.child("exp_scores"), exp_scores_);
  save_parameter_map(w.child("importance"), importance_);
  save_parameter_map(w.child("reference"), reference_);
  save_parameter_map(w.child("window_loss"), window_loss_);
  save_parameter_map(w.child("window_start"), window_start_);
  w.write("window_steps", window_steps_);
}

void RWalkPlugin::load_state(const StateReader& r) { load_staged(*this, r); }

void RWalkPlugin::stage_load(const StateReader& r, LoadTransaction& tx) {
  ParameterMap f = read_parameter_map(r.child("fisher")), sc = read_parameter_map(r.child("scores")),
               es = read_parameter_map(r.child("exp_scores")), imp = read_parameter_map(r.child("importance")),
               ref = read_parameter_map(r.child("reference")), wl = read_parameter_map(r.child("window_loss")),
               ws = read_parameter_map(r.child("window_start"));
  const int64_t steps = r.get<int64_t>("window_steps");
  if (steps < 0 || steps >= options_.delta_t) r.fail("window_steps", "out of range for --rwalk-delta-t");
  for (const auto& [name, t] : imp) {
    // The importance grows with the head at an experience's start; the
    // reference keeps the rows it had.
    auto it = ref.find(name);
    const bool fits = it != ref.end() && it->second.dim() == t.dim() && it->second.dim() > 0 &&
                      it->second.size(0) <= t.size(0) &&
                      it->second.sizes().slice(1) == t.sizes().slice(1);
    if (!fits) r.child("reference").fail(name, "missing or of a shape the importance does not cover");
  }
  tx.then([=] {
    fisher_ = f;
    scores_ = sc;
    exp_scores_ = es;
    importance_ = imp;
    reference_ = ref;
    window_loss_ = wl;
    window_start_ = ws;
    window_steps_ = steps;
  });
}

CONTINUA_REGISTER_STRATEGY(StrategyInfo{
    "rwalk",
    "Riemannian Walk (Chaudhry et al. 2018): a quadratic penalty weighted by a running-average Fisher "
    "plus path scores of the loss's decrease",
    {StrategyOption::real("rwalk-lambda", 0.1, "weight of the penalty"),
     StrategyOption::real("rwalk-alpha", 0.9, "weight of the new squared gradient in the Fisher's running average"),
     StrategyOption::integer("rwalk-delta-t", 10, "iterations per path-score window", true)},
    [](Strategy& s, const StrategyConfig& c) {
      s.add_plugin(std::make_shared<RWalkPlugin>(
          RWalkPlugin::Options{c.real("rwalk-lambda"), c.real("rwalk-alpha"), c.integer("rwalk-delta-t")}));
    }});

}  // namespace continua
