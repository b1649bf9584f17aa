#include "continua/training/parameter_map.h"

#include <torch/torch.h>

#include "continua/models/model.h"

namespace continua {

ParameterMap parameter_values(Model& model) {
  torch::NoGradGuard ng;
  ParameterMap out;
  for (const auto& p : model.named_parameters()) out[p.key()] = p.value().detach().clone();
  return out;
}

ParameterMap parameter_zeros(Model& model) {
  ParameterMap out;
  for (const auto& p : model.named_parameters()) out[p.key()] = at::zeros_like(p.value()).detach();
  return out;
}

at::Tensor overlap(const at::Tensor& current, const at::Tensor& old) {
  if (current.sizes() == old.sizes()) return current;
  return current.narrow(0, 0, old.size(0));
}

at::Tensor quadratic_penalty(Model& model, const ParameterMap& weights, const ParameterMap& reference) {
  at::Tensor penalty;
  for (const auto& p : model.named_parameters()) {
    auto w = weights.find(p.key());
    auto r = reference.find(p.key());
    if (w == weights.end() || r == reference.end()) continue;
    at::Tensor term = (w->second * (overlap(p.value(), r->second) - r->second).pow(2)).sum();
    penalty = penalty.defined() ? penalty + term : term;
  }
  if (!penalty.defined()) {
    const at::Tensor& any = model.parameters().front();
    penalty = at::zeros({}, any.options().requires_grad(false));
  }
  return penalty;
}

void add_quadratic_penalty_gradient(Model& model, const ParameterMap& weights, const ParameterMap& reference,
                                    double lambda) {
  if (lambda == 0) return;
  torch::NoGradGuard ng;
  for (const auto& p : model.named_parameters()) {
    auto w = weights.find(p.key());
    auto r = reference.find(p.key());
    if (w == weights.end() || r == reference.end() || !p.value().grad().defined()) continue;
    const at::Tensor& ref = r->second;
    overlap(p.value().mutable_grad(), ref)
        .add_(2.0 * lambda * overlap(w->second, ref) * (overlap(p.value(), ref) - ref));
  }
}

void StepRecord::record(Model& model) {
  torch::NoGradGuard ng;
  clear();
  for (const auto& p : model.named_parameters()) {
    if (!p.value().grad().defined()) continue;
    grad_[p.key()] = p.value().grad().clone();
    start_[p.key()] = p.value().detach().clone();
  }
}

void StepRecord::accumulate_decrease(Model& model, ParameterMap& into) {
  torch::NoGradGuard ng;
  for (const auto& p : model.named_parameters()) {
    auto g = grad_.find(p.key());
    auto w = into.find(p.key());
    if (g == grad_.end() || w == into.end() || w->second.sizes() != p.value().sizes()) continue;
    w->second.sub_(g->second * (p.value() - start_.at(p.key())));
  }
  clear();
}

void StepRecord::clear() {
  grad_.clear();
  start_.clear();
}

void fit_to(ParameterMap& map, Model& model) {
  torch::NoGradGuard ng;
  for (const auto& p : model.named_parameters()) {
    auto it = map.find(p.key());
    if (it == map.end()) {
      map[p.key()] = at::zeros_like(p.value()).detach();
    } else if (it->second.sizes() != p.value().sizes()) {
      at::Tensor grown = at::zeros_like(p.value()).detach();
      grown.narrow(0, 0, it->second.size(0)).copy_(it->second);
      it->second = grown;
    }
  }
}

at::Tensor flat_gradient(Model& model) {
  std::vector<at::Tensor> parts;
  for (const auto& p : model.parameters()) {
    parts.push_back(p.grad().defined() ? p.grad().detach().flatten() : at::zeros({p.numel()}, p.options()));
  }
  return at::cat(parts);
}

void set_flat_gradient(Model& model, const at::Tensor& flat) {
  torch::NoGradGuard ng;
  int64_t at_ = 0;
  for (auto& p : model.parameters()) {
    const int64_t n = p.numel();
    at::Tensor part = flat.narrow(0, at_, n).view(p.sizes());
    if (p.grad().defined()) {
      p.mutable_grad().copy_(part);
    } else {
      p.mutable_grad() = part.clone();
    }
    at_ += n;
  }
}

void save_parameter_map(StateWriter w, const ParameterMap& map) {
  nlohmann::json names = nlohmann::json::array();
  StateWriter tw = w.child("tensors");
  for (const auto& [name, t] : map) {
    names.push_back(name);
    tw.write(name, t);
  }
  w.write("names", names);
}

ParameterMap read_parameter_map(const StateReader& r) {
  const nlohmann::json& names = r.json("names");
  if (!names.is_array()) r.fail("names", "not a list of parameter names");
  ParameterMap out;
  const StateReader tr = r.child("tensors");
  for (const auto& n : names) {
    if (!n.is_string()) r.fail("names", "not a list of parameter names");
    out[n.get<std::string>()] = tr.copy_out(n.get<std::string>());
  }
  return out;
}

}  // namespace continua
