#include "continua/training/plugins/lwf.h"

#include <torch/torch.h>

#include <set>

#include "continua/errors.h"
#include "continua/training/registry.h"

namespace continua {

// ---------------------------------------------------------------- LwF

LwFPlugin::LwFPlugin(Options options) : options_(options) {
  if (options_.alpha < 0) throw InvalidArgument("--lwf-alpha must be >= 0");
  if (!(options_.temperature > 0)) throw InvalidArgument("--lwf-temperature must be > 0");
}

void LwFPlugin::attached(Strategy& s) { previous_.set_prototype(s.model_ptr()); }

void LwFPlugin::before_backward(Strategy& s) {
  if (!previous_ || options_.alpha == 0) return;
  at::Tensor old_logits;
  {
    torch::NoGradGuard ng;
    old_logits = previous_.model()->forward(s.mb.x, s.mb.t);
  }
  // Only the units of the classes the previous model was trained on (a
  // grown head has rows below its width that no experience brought yet).
  at::Tensor units = previous_classes_.empty()
                         ? at::arange(old_logits.size(1), at::kLong)
                         : at::tensor(std::vector<int64_t>(previous_classes_.begin(), previous_classes_.end()), at::kLong);
  units = units.to(old_logits.device());
  const double t = options_.temperature;
  at::Tensor log_p = torch::log_softmax(s.mb_output.index_select(1, units) / t, 1);
  at::Tensor q = torch::softmax(old_logits.index_select(1, units) / t, 1);
  // KL(q || p) averaged over the batch: the paper's modified cross-entropy
  // up to a constant, and Avalanche's loss (no T^2 factor).
  at::Tensor kd = torch::nn::functional::kl_div(
      log_p, q, torch::nn::functional::KLDivFuncOptions().reduction(torch::kBatchMean));
  s.loss = s.loss + options_.alpha * kd;
}

void LwFPlugin::after_training_exp(Strategy& s) {
  for (int64_t c : s.experience()->classes()) previous_classes_.insert(c);
  previous_.take(s.model());
}

void LwFPlugin::save_state(StateWriter& w) const {
  w.write("previous_classes", std::vector<int64_t>(previous_classes_.begin(), previous_classes_.end()));
  previous_.save_as_previous(w);
}

void LwFPlugin::load_state(const StateReader& r) { load_staged(*this, r); }

void LwFPlugin::stage_load(const StateReader& r, LoadTransaction& tx) {
  std::set<int64_t> classes;
  if (r.has("previous_classes")) {  // absent in checkpoints before it: every unit of the head
    for (int64_t c : r.get<std::vector<int64_t>>("previous_classes")) {
      if (c < 0 || c > (1 << 24)) r.fail("previous_classes", "class " + std::to_string(c) + " out of range");
      classes.insert(c);
    }
  }
  tx.then([this, classes] { previous_classes_ = classes; });
  if (r.get<bool>("has_previous")) {
    const StateReader mr = r.child("previous_model");
    if (!classes.empty() && mr.has("classifier.head.weight") &&
        *classes.rbegin() >= mr.tensor("classifier.head.weight").size(0)) {
      r.fail("previous_classes", "a class beyond the previous model's head");
    }
  }
  previous_.stage_load_as_previous(r, tx);
}


CONTINUA_REGISTER_STRATEGY(StrategyInfo{
    "lwf",
    "Learning without Forgetting (Li & Hoiem 2016): distillation of the previous model's outputs "
    "on the current data",
    {StrategyOption::real("lwf-alpha", 1.0, "weight of the distillation loss"),
     StrategyOption::real("lwf-temperature", 2.0, "softmax temperature of the distillation")},
    [](Strategy& s, const StrategyConfig& c) {
      s.add_plugin(std::make_shared<LwFPlugin>(LwFPlugin::Options{c.real("lwf-alpha"), c.real("lwf-temperature")}));
    }});

}  // namespace continua
