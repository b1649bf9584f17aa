// Per-parameter tensors keyed by a model's parameter names: the importances,
// reference weights and accumulators of the regularisation methods (SI, MAS,
// RWalk, GDumb's initial weights), with their checkpoint form.
//
//   ParameterMap reference = parameter_values(model);      // θ* now
//   ParameterMap omega = parameter_zeros(model);
//   at::Tensor pen = quadratic_penalty(model, omega, reference);  // Σ Ω (θ − θ*)²
//
// A head that grew since a map was taken is covered by the map's rows only
// (overlap); fit_to(map, model) pads a map with zero rows (and zero tensors
// for new parameters) to the model's current shapes.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>

#include "continua/state/state_tree.h"

namespace continua {

class Model;

using ParameterMap = std::map<std::string, at::Tensor>;

ParameterMap parameter_values(Model& model);  // detached copies
ParameterMap parameter_zeros(Model& model);
// The part of `current` that an older tensor with fewer rows covers.
at::Tensor overlap(const at::Tensor& current, const at::Tensor& old);
// Σ_p Σ_i w_p,i (θ_p,i − ref_p,i)² over the parameters both maps hold.
at::Tensor quadratic_penalty(Model& model, const ParameterMap& weights, const ParameterMap& reference);
// Adds the gradient of λ Σ w (θ − ref)², 2λ w (θ − ref), to the parameters'
// gradients, on the rows `reference` covers (SI's and RWalk's surrogate,
// added after the task's own gradient was read).
void add_quadratic_penalty_gradient(Model& model, const ParameterMap& weights, const ParameterMap& reference,
                                    double lambda);
// One optimizer step of a path integral (SI's ω, RWalk's scores): record()
// keeps each parameter's gradient and value right after backward (before a
// surrogate's gradient is added); accumulate_decrease() then adds the step's
// loss decrease −g ⊙ Δθ into a map (of the model's current shapes) and
// forgets the record.
class StepRecord {
 public:
  void record(Model& model);
  void accumulate_decrease(Model& model, ParameterMap& into);
  void clear();
  const ParameterMap& gradients() const { return grad_; }

 private:
  ParameterMap grad_, start_;
};

// Pads every tensor to the model's shape of that parameter (zero rows for a
// grown head) and adds zeros for parameters the map lacks.
void fit_to(ParameterMap& map, Model& model);

// Every parameter's gradient, flattened and concatenated in the model's
// parameter order (zeros where a parameter has none): GEM's and A-GEM's g.
at::Tensor flat_gradient(Model& model);
// Writes a vector of that layout back into the gradients.
void set_flat_gradient(Model& model, const at::Tensor& flat);

// Checkpoint form: the names under "names", the tensors under "tensors".
void save_parameter_map(StateWriter writer, const ParameterMap& map);
// Reads (copies out) a map saved by save_parameter_map; throws naming the key
// for a missing tensor or a malformed name list.
ParameterMap read_parameter_map(const StateReader& reader);

}  // namespace continua
