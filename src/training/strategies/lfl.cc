#include "continua/training/plugins/lfl.h"

#include <torch/torch.h>

#include "continua/errors.h"
#include "continua/training/registry.h"

namespace continua {

namespace {
bool is_head(const std::string& name) { return name.rfind("classifier.", 0) == 0; }
}  // namespace

LFLPlugin::LFLPlugin(Options options) : options_(options) {
  if (options_.lambda < 0) throw InvalidArgument("--lfl-lambda must be >= 0");
}

void LFLPlugin::attached(Strategy& s) { previous_.set_prototype(s.model_ptr()); }

void LFLPlugin::before_training_exp(Strategy& s) {
  frozen_head_.clear();
  if (!previous_ || !options_.freeze_head) return;
  torch::NoGradGuard ng;
  for (const auto& p : s.model().named_parameters()) {
    if (is_head(p.key())) frozen_head_[p.key()] = p.value().detach().clone();
  }
}

at::Tensor LFLPlugin::feature_loss(const at::Tensor& features, const at::Tensor& x) const {
  at::Tensor old;
  {
    torch::NoGradGuard ng;
    old = previous_.model()->features(x);
  }
  return options_.lambda * (features - old).pow(2).mean();
}

void LFLPlugin::before_backward(Strategy& s) {
  if (!previous_ || options_.lambda == 0) return;
  // The features of the iteration's own forward (s.mb_features).
  s.loss = s.loss + feature_loss(s.mb_features, s.mb.x);
}

void LFLPlugin::after_update(Strategy& s) {
  if (frozen_head_.empty()) return;
  torch::NoGradGuard ng;
  for (const auto& p : s.model().named_parameters()) {
    auto it = frozen_head_.find(p.key());
    if (it != frozen_head_.end() && it->second.sizes() == p.value().sizes()) p.value().copy_(it->second);
  }
}

void LFLPlugin::after_training_exp(Strategy& s) {
  previous_.take(s.model());
  frozen_head_.clear();
}

void LFLPlugin::save_state(StateWriter& w) const {
  save_parameter_map(w.child("frozen_head"), frozen_head_);
  previous_.save_as_previous(w);
}

void LFLPlugin::load_state(const StateReader& r) { load_staged(*this, r); }

void LFLPlugin::stage_load(const StateReader& r, LoadTransaction& tx) {
  ParameterMap head = read_parameter_map(r.child("frozen_head"));
  tx.then([this, head] { frozen_head_ = head; });
  previous_.stage_load_as_previous(r, tx);
}

CONTINUA_REGISTER_STRATEGY(StrategyInfo{
    "lfl",
    "Less-Forgetful Learning (Jung et al. 2016): the features kept close to the previous model's, "
    "the head frozen",
    {StrategyOption::real("lfl-lambda", 1.0, "weight of the feature distance"),
     StrategyOption::flag("lfl-freeze-head", true, "keep the head as it was at the start of each experience "
                                                   "after the first (the paper's frozen softmax layer)")},
    [](Strategy& s, const StrategyConfig& c) {
      s.add_plugin(std::make_shared<LFLPlugin>(LFLPlugin::Options{c.real("lfl-lambda"), c.flag("lfl-freeze-head")}));
    }});

}  // namespace continua
