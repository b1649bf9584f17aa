#include "continua/training/plugins/ewc.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "continua/errors.h"
#include "continua/training/registry.h"

namespace continua {

// ---------------------------------------------------------------- EWC

EWCPlugin::EWCPlugin(Options options) : options_(std::move(options)) {
  if (options_.mode != "separate" && options_.mode != "online") {
    throw InvalidArgument("--ewc-mode: unknown mode '" + options_.mode + "' (known: separate, online)");
  }
  if (options_.lambda < 0) throw InvalidArgument("--ewc-lambda must be >= 0");
}

namespace {
// The part of `current` that an older, smaller tensor covers (grown heads).
at::Tensor overlap(const at::Tensor& current, const at::Tensor& old) {
  if (current.sizes() == old.sizes()) return current;
  return current.narrow(0, 0, old.size(0));
}
}  // namespace

void EWCPlugin::before_backward(Strategy& s) {
  if (snapshots_.empty() || options_.lambda == 0) return;
  at::Tensor penalty = at::zeros({}, s.loss.options());
  for (const auto& p : s.model().named_parameters()) {
    for (const Snapshot& snap : snapshots_) {
      auto it = snap.importances.find(p.key());
      if (it == snap.importances.end()) continue;
      const at::Tensor& saved = snap.params.at(p.key());
      at::Tensor cur = overlap(p.value(), saved);
      penalty = penalty + (it->second * (cur - saved).pow(2)).sum();
    }
  }
  s.loss = s.loss + options_.lambda * penalty;
}

void EWCPlugin::after_training_exp(Strategy& s) {
  const Experience& exp = *s.experience();
  Model& model = s.model();
  const bool was_training = model.is_training();
  model.eval();  // no dropout: the importances use no random numbers
  std::map<std::string, at::Tensor> imp;
  for (const auto& p : model.named_parameters()) imp[p.key()] = at::zeros_like(p.value());
  const int64_t mb = s.options().train_mb_size_;
  int64_t batches = 0;
  const c10::Device dev = s.device();
  for (int64_t pos = 0; pos < exp.size(); pos += mb) {
    const int64_t take = std::min(mb, exp.size() - pos);
    Batch b = exp.get(at::arange(pos, pos + take, at::kLong));
    s.optimizer().zero_grad();
    at::Tensor loss = torch::nn::functional::cross_entropy(model.forward(b.x.to(dev)), b.y.to(dev));
    loss.backward();
    torch::NoGradGuard ng;
    for (const auto& p : model.named_parameters()) {
      if (p.value().grad().defined()) imp[p.key()].add_(p.value().grad().pow(2));
    }
    ++batches;
  }
  s.optimizer().zero_grad();
  model.train(was_training);
  torch::NoGradGuard ng;
  Snapshot snap;
  for (const auto& p : model.named_parameters()) {
    snap.importances[p.key()] = batches ? imp[p.key()] / double(batches) : imp[p.key()];
    snap.params[p.key()] = p.value().detach().clone();
  }
  if (options_.mode == "separate" || snapshots_.empty()) {
    snapshots_.push_back(std::move(snap));
    return;
  }
  // Online: decayed sum of importances, the latest parameters.
  Snapshot& old = snapshots_.front();
  for (auto& [name, t] : snap.importances) {
    auto it = old.importances.find(name);
    if (it == old.importances.end()) continue;
    at::Tensor region = overlap(t, it->second);
    region.add_(it->second * options_.decay);
  }
  old = std::move(snap);
}

void EWCPlugin::save_state(StateWriter& w) const {
  w.write("mode", options_.mode);
  w.write("count", int64_t(snapshots_.size()));
  for (size_t i = 0; i < snapshots_.size(); ++i) {
    StateWriter sw = w.child(std::to_string(i));
    nlohmann::json names = nlohmann::json::array();
    for (const auto& [name, t] : snapshots_[i].importances) {
      names.push_back(name);
      sw.child("importances").write(name, t);
      sw.child("params").write(name, snapshots_[i].params.at(name));
    }
    sw.write("names", names);
  }
}

void EWCPlugin::load_state(const StateReader& r) { load_staged(*this, r); }

void EWCPlugin::stage_load(const StateReader& r, LoadTransaction& tx) {
  if (r.get<std::string>("mode") != options_.mode) {
    r.fail("mode", "saved mode '" + r.get<std::string>("mode") + "', this run uses '" +
                       options_.mode + "'");
  }
  const int64_t count = r.get<int64_t>("count");
  if (count < 0 || count > 1000000) r.fail("count", "out of range");
  std::vector<std::vector<std::string>> names(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    StateReader sr = r.child(std::to_string(i));
    for (const auto& name : sr.json("names")) {
      if (!name.is_string()) sr.fail("names", "not a list of names");
      const std::string n = name.get<std::string>();
      const at::Tensor& imp = sr.child("importances").tensor(n);
      const at::Tensor& par = sr.child("params").tensor(n);
      if (imp.sizes() != par.sizes()) sr.child("importances").fail(n, "shape differs from params");
      names[size_t(i)].push_back(n);
    }
  }
  tx.then([this, r, names] {
    // Tensors of the same shape, dtype and device are reused: the load
    // copies into them instead of holding old and new at once.
    auto load = [](const StateReader& from, const std::string& n, const at::Tensor* live) {
      const at::Tensor& saved = from.tensor(n);
      if (live && live->sizes() == saved.sizes() && live->dtype() == saved.dtype() &&
          live->device() == saved.device()) {
        from.copy_into(n, *live);
        return *live;
      }
      return from.copy_out(n);
    };
    std::vector<Snapshot> snaps(names.size());
    for (size_t i = 0; i < names.size(); ++i) {
      StateReader sr = r.child(std::to_string(i));
      const Snapshot* old = i < snapshots_.size() ? &snapshots_[i] : nullptr;
      auto live = [&](const std::map<std::string, at::Tensor> Snapshot::*member,
                      const std::string& n) -> const at::Tensor* {
        if (!old) return nullptr;
        auto it = (old->*member).find(n);
        return it == (old->*member).end() ? nullptr : &it->second;
      };
      for (const std::string& n : names[i]) {
        snaps[i].importances[n] = load(sr.child("importances"), n, live(&Snapshot::importances, n));
        snaps[i].params[n] = load(sr.child("params"), n, live(&Snapshot::params, n));
      }
    }
    snapshots_ = std::move(snaps);
  });
}


CONTINUA_REGISTER_STRATEGY(StrategyInfo{
    "ewc",
    "Elastic Weight Consolidation (Kirkpatrick et al. 2017): a quadratic penalty weighted by the "
    "diagonal Fisher information of each past experience",
    {StrategyOption::real("ewc-lambda", 1.0, "weight of the penalty"),
     StrategyOption::text("ewc-mode", "separate",
                          "separate: a penalty per experience; online: one, with decayed importances",
                          {"separate", "online"}, true),
     StrategyOption::real("ewc-decay", 1.0, "online mode: old importances are multiplied by this")},
    [](Strategy& s, const StrategyConfig& c) {
      s.add_plugin(std::make_shared<EWCPlugin>(
          EWCPlugin::Options{c.real("ewc-lambda"), c.text("ewc-mode"), c.real("ewc-decay")}));
    }});

}  // namespace continua
