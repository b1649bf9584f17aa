#include "continua/training/optimizer.h"

#include <algorithm>
#include <set>

#include <torch/optim/adam.h>
#include <torch/optim/sgd.h>
#include <torch/torch.h>

#include <cmath>
#include <sstream>

#include "continua/errors.h"

namespace continua {
namespace {

// LibTorch keys an optimizer's per-parameter state by the address of the
// parameter's TensorImpl, printed (torch/optim/optimizer.h).
std::string state_key(const at::Tensor& p) {
  std::ostringstream os;
  os << p.unsafeGetTensorImpl();
  return os.str();
}

}  // namespace

nlohmann::json OptimizerOptions::to_json() const {
  return {{"type", type_},   {"lr", lr_},       {"momentum", momentum_},
          {"weight_decay", weight_decay_}, {"beta1", beta1_}, {"beta2", beta2_},
          {"eps", eps_}};
}

OptimizerOptions OptimizerOptions::from_json(const nlohmann::json& j) {
  OptimizerOptions o;
  o.type_ = j.at("type").get<std::string>();
  o.lr_ = j.at("lr").get<double>();
  o.momentum_ = j.at("momentum").get<double>();
  o.weight_decay_ = j.at("weight_decay").get<double>();
  o.beta1_ = j.at("beta1").get<double>();
  o.beta2_ = j.at("beta2").get<double>();
  o.eps_ = j.at("eps").get<double>();
  return o;
}

NamedOptimizer::NamedOptimizer(OptimizerOptions options) : options_(std::move(options)) {
  if (options_.type_ != "sgd" && options_.type_ != "adam") {
    throw InvalidArgument("--optimizer: unknown optimizer '" + options_.type_ + "' (known: sgd, adam)");
  }
  if (!(options_.lr_ > 0) || !std::isfinite(options_.lr_)) throw InvalidArgument("--lr must be > 0");
  if (options_.momentum_ < 0 || options_.momentum_ >= 1) {
    throw InvalidArgument("--momentum must be in [0, 1)");
  }
  if (options_.weight_decay_ < 0) throw InvalidArgument("weight decay must be >= 0");
}

NamedOptimizer::~NamedOptimizer() = default;

void NamedOptimizer::bind(const torch::OrderedDict<std::string, at::Tensor>& named_parameters) {
  // Carry buffers across by name for parameters whose shape did not change.
  std::map<std::string, std::unique_ptr<torch::optim::OptimizerParamState>> carried;
  if (optimizer_) {
    auto& st = optimizer_->state();
    for (size_t i = 0; i < names_.size(); ++i) {
      auto it = st.find(state_key(params_[i]));
      if (it == st.end()) continue;
      const at::Tensor* now = named_parameters.find(names_[i]);
      // Moved, not cloned: the old optimizer is replaced below.
      if (now && now->sizes() == params_[i].sizes()) carried[names_[i]] = std::move(it->second);
    }
  }
  double lr = optimizer_ ? this->lr() : options_.lr_;
  names_.clear();
  params_.clear();
  for (const auto& p : named_parameters) {
    names_.push_back(p.key());
    params_.push_back(p.value());
  }
  if (options_.type_ == "sgd") {
    optimizer_ = std::make_unique<torch::optim::SGD>(
        params_, torch::optim::SGDOptions(lr)
                     .momentum(options_.momentum_)
                     .weight_decay(options_.weight_decay_));
  } else {
    optimizer_ = std::make_unique<torch::optim::Adam>(
        params_, torch::optim::AdamOptions(lr)
                     .betas({options_.beta1_, options_.beta2_})
                     .eps(options_.eps_)
                     .weight_decay(options_.weight_decay_));
  }
  for (size_t i = 0; i < names_.size(); ++i) {
    auto it = carried.find(names_[i]);
    if (it != carried.end()) optimizer_->state()[state_key(params_[i])] = std::move(it->second);
  }
}

void NamedOptimizer::reset_state() { optimizer_->state().clear(); }

void NamedOptimizer::zero_grad() {
  // Zero in place rather than set to none: freeing the gradients makes the
  // next backward allocate them again, and fresh pages cost more than the
  // whole step on this machine (measured: +60% per iteration).
  // Every parameter gets a gradient, zero where it had none: whether a
  // gradient exists is then no hidden state. (A parameter outside this
  // iteration's graph, another task's head, still takes its momentum step in
  // a run resumed from a checkpoint, where its gradient was never made, as in
  // the run that never stopped.)
  for (auto& p : params_) {
    if (p.grad().defined()) {
      p.mutable_grad().detach_();
      p.mutable_grad().zero_();
    } else {
      p.mutable_grad() = at::zeros_like(p);
    }
  }
}

void NamedOptimizer::step() { optimizer_->step(); }

double NamedOptimizer::lr() const { return optimizer_->param_groups()[0].options().get_lr(); }

void NamedOptimizer::set_lr(double lr) {
  for (auto& g : optimizer_->param_groups()) g.options().set_lr(lr);
}

void NamedOptimizer::save_state(StateWriter& writer) const {
  nlohmann::json hp = options_.to_json();
  hp["current_lr"] = lr();
  writer.write("hyperparameters", hp);
  const auto& st = optimizer_->state();
  for (size_t i = 0; i < names_.size(); ++i) {
    auto it = st.find(state_key(params_[i]));
    if (it == st.end()) continue;
    StateWriter w = writer.child("state").child(names_[i]);
    if (options_.type_ == "sgd") {
      const auto& s = static_cast<const torch::optim::SGDParamState&>(*it->second);
      if (s.momentum_buffer().defined()) w.write("momentum_buffer", s.momentum_buffer());
    } else {
      const auto& s = static_cast<const torch::optim::AdamParamState&>(*it->second);
      w.write("step", s.step());
      w.write("exp_avg", s.exp_avg());
      w.write("exp_avg_sq", s.exp_avg_sq());
      if (s.max_exp_avg_sq().defined()) w.write("max_exp_avg_sq", s.max_exp_avg_sq());
    }
  }
}

void NamedOptimizer::load_state(const StateReader& reader) { load_staged(*this, reader); }

void NamedOptimizer::stage_load(const StateReader& reader, LoadTransaction& tx) {
  stage(reader, nullptr, tx);
}

void NamedOptimizer::stage_load(const StateReader& reader, const StateReader& model, LoadTransaction& tx) {
  stage(reader, &model, tx);
}

void NamedOptimizer::stage(const StateReader& reader, const StateReader* model, LoadTransaction& tx) {
  const nlohmann::json& hp = reader.json("hyperparameters");
  OptimizerOptions saved;
  try {
    saved = OptimizerOptions::from_json(hp);
  } catch (const nlohmann::json::exception& e) {
    reader.fail("hyperparameters", std::string("malformed: ") + e.what());
  }
  if (saved.type_ != options_.type_) {
    reader.fail("hyperparameters", "saved optimizer '" + saved.type_ + "' but this strategy uses '" +
                                       options_.type_ + "'");
  }
  const double current_lr =
      hp.contains("current_lr") && hp["current_lr"].is_number() ? hp["current_lr"].get<double>()
                                                                : saved.lr_;

  // Check every buffer against the shape its parameter will have: the saved
  // model's when the model loads in the same transaction (its head may grow),
  // else the live one.
  struct Staged {
    int64_t step = 0;             // adam
    bool max_exp_avg_sq = false;  // adam with amsgrad
  };
  std::map<std::string, Staged> staged;
  StateReader sr = reader.child("state");
  // The parameters with saved buffers: the saved model's, which may have
  // parameters the live one does not have yet (a multi-head model's heads).
  std::set<std::string> saved_names;
  {
    const std::string prefix = sr.prefix().empty() ? std::string() : sr.prefix() + ".";
    const auto& entries = sr.tree().entries();
    for (auto it = entries.lower_bound(prefix); it != entries.end() && it->first.rfind(prefix, 0) == 0; ++it) {
      const std::string rest = it->first.substr(prefix.size());
      const size_t dot = rest.rfind('.');
      if (dot != std::string::npos) saved_names.insert(rest.substr(0, dot));
    }
  }
  for (const std::string& name : saved_names) {
    const auto live = std::find(names_.begin(), names_.end(), name);
    if (!model && live == names_.end()) sr.fail(name, "buffers for a parameter the model does not have");
    if (model && !model->has(name)) sr.fail(name, "buffers for a parameter the checkpoint's model does not have");
    StateReader r = sr.child(name);
    const at::IntArrayRef shape = model ? model->tensor(name).sizes() : params_[size_t(live - names_.begin())].sizes();
    Staged st;
    auto fit = [&](const char* key) {
      const at::Tensor& t = r.tensor(key);
      if (t.sizes() != shape) {
        r.fail(key, "shape " + c10::str(t.sizes()) + " does not fit parameter " + c10::str(shape));
      }
    };
    if (saved.type_ == "sgd") {
      if (!r.has("momentum_buffer")) continue;
      fit("momentum_buffer");
    } else {
      st.step = r.get<int64_t>("step");
      fit("exp_avg");
      fit("exp_avg_sq");
      st.max_exp_avg_sq = r.has("max_exp_avg_sq");
      if (st.max_exp_avg_sq) fit("max_exp_avg_sq");
    }
    staged[name] = std::move(st);
  }

  tx.then([this, sr, saved, current_lr, staged = std::move(staged)] {
    // The parameters are those after the model's commit (Strategy rebinds
    // them first). Buffers of the right shape are reused: loading copies
    // into them instead of holding old and new at once.
    options_ = saved;
    auto& st = optimizer_->state();
    std::map<std::string, std::unique_ptr<torch::optim::OptimizerParamState>> next;
    for (size_t i = 0; i < names_.size(); ++i) {
      auto it = staged.find(names_[i]);
      if (it == staged.end()) continue;
      const at::Tensor& p = params_[i];
      StateReader r = sr.child(names_[i]);
      auto old = st.find(state_key(p));
      auto buffer = [&](const at::Tensor& live, const std::string& key) {
        at::Tensor b = live;
        if (!b.defined() || b.sizes() != p.sizes() || b.dtype() != p.dtype() || b.device() != p.device()) {
          b = at::empty(p.sizes(), p.options());
        }
        r.copy_into(key, b);
        return b;
      };
      if (saved.type_ == "sgd") {
        auto s = std::make_unique<torch::optim::SGDParamState>();
        at::Tensor live;
        if (old != st.end()) live = static_cast<torch::optim::SGDParamState&>(*old->second).momentum_buffer();
        s->momentum_buffer(buffer(live, "momentum_buffer"));
        next[names_[i]] = std::move(s);
      } else {
        auto s = std::make_unique<torch::optim::AdamParamState>();
        torch::optim::AdamParamState none;
        const auto& l = old != st.end() ? static_cast<torch::optim::AdamParamState&>(*old->second) : none;
        s->step(it->second.step);
        s->exp_avg(buffer(l.exp_avg(), "exp_avg"));
        s->exp_avg_sq(buffer(l.exp_avg_sq(), "exp_avg_sq"));
        if (it->second.max_exp_avg_sq) s->max_exp_avg_sq(buffer(l.max_exp_avg_sq(), "max_exp_avg_sq"));
        next[names_[i]] = std::move(s);
      }
    }
    st.clear();
    for (size_t i = 0; i < names_.size(); ++i) {
      auto it = next.find(names_[i]);
      if (it != next.end()) st[state_key(params_[i])] = std::move(it->second);
    }
    for (auto& g : optimizer_->param_groups()) {
      if (options_.type_ == "sgd") {
        auto& o = static_cast<torch::optim::SGDOptions&>(g.options());
        o.momentum(options_.momentum_).weight_decay(options_.weight_decay_);
      } else {
        auto& o = static_cast<torch::optim::AdamOptions&>(g.options());
        o.betas({options_.beta1_, options_.beta2_}).eps(options_.eps_).weight_decay(options_.weight_decay_);
      }
      g.options().set_lr(current_lr);
    }
  });
}

void StepScheduler::reset(NamedOptimizer& optimizer) {
  if (!enabled()) return;
  if (base_lr_ < 0) base_lr_ = optimizer.options().lr_;
  epochs_ = 0;
  optimizer.set_lr(base_lr_);
}

void StepScheduler::step(NamedOptimizer& optimizer) {
  if (!enabled()) return;
  if (base_lr_ < 0) base_lr_ = optimizer.options().lr_;
  ++epochs_;
  optimizer.set_lr(base_lr_ * std::pow(options_.gamma_, double(epochs_ / options_.step_size_)));
}

void StepScheduler::save_state(StateWriter& writer) const {
  writer.write("epochs", epochs_);
  writer.write("base_lr", base_lr_);
  writer.write("step_size", options_.step_size_);
  writer.write("gamma", options_.gamma_);
}

void StepScheduler::load_state(const StateReader& reader) { load_staged(*this, reader); }

void StepScheduler::stage_load(const StateReader& reader, LoadTransaction& tx) {
  const int64_t epochs = reader.get<int64_t>("epochs");
  const double base_lr = reader.get<double>("base_lr");
  const int64_t step_size = reader.get<int64_t>("step_size");
  const double gamma = reader.get<double>("gamma");
  tx.then([=] {
    options_.step_size_ = step_size;
    options_.gamma_ = gamma;
    epochs_ = epochs;
    base_lr_ = base_lr;
  });
}

}  // namespace continua
