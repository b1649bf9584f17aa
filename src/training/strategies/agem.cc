#include "continua/training/plugins/agem.h"

#include <torch/torch.h>

#include "continua/errors.h"
#include "continua/training/parameter_map.h"
#include "continua/training/plugins/gem.h"
#include "continua/training/registry.h"

namespace continua {

at::Tensor agem_project(const at::Tensor& g, const at::Tensor& g_ref) {
  const at::Tensor dot = g.dot(g_ref);
  if (dot.item<double>() >= 0) return g;
  return g - (dot / g_ref.dot(g_ref)) * g_ref;
}

AGEMPlugin::AGEMPlugin(Options options)
    : options_(options),
      memory_(MemoryOptions().size(options.mem_size).per_experience(-1).seed(options.seed)) {
  if (options_.mem_size <= 0) throw InvalidArgument("--mem-size must be > 0 for agem");
  if (options_.sample_size <= 0) throw InvalidArgument("--agem-sample-size must be > 0");
}

void AGEMPlugin::before_training_iteration(Strategy& s) {
  reference_grad_ = at::Tensor();
  if (memory_.size() == 0) return;
  const at::Tensor slots = options_.balanced ? memory_.sample_per_experience(options_.sample_size)
                                             : memory_.sample(options_.sample_size);
  reference_grad_ = memory_gradients(s, {memory_.get(slots)})[0];
}

void AGEMPlugin::after_backward(Strategy& s) {
  if (!reference_grad_.defined()) return;
  const at::Tensor g = flat_gradient(s.model());
  if (g.dot(reference_grad_).item<double>() < 0) {
    set_flat_gradient(s.model(), agem_project(g, reference_grad_));
    ++projections_;
  }
  reference_grad_ = at::Tensor();
}

void AGEMPlugin::iteration_failed(Strategy&) { reference_grad_ = at::Tensor(); }

void AGEMPlugin::after_training_exp(Strategy& s) { memory_.update(*s.experience()); }

void AGEMPlugin::save_state(StateWriter& w) const {
  StateWriter mw = w.child("memory");
  memory_.save_state(mw);
  w.write("projections", projections_);
}

void AGEMPlugin::load_state(const StateReader& r) { load_staged(*this, r); }

void AGEMPlugin::stage_load(const StateReader& r, LoadTransaction& tx) {
  memory_.stage_load(r.child("memory"), tx);
  const int64_t projections = r.get<int64_t>("projections");
  tx.then([this, projections] { projections_ = projections; });
}

CONTINUA_REGISTER_STRATEGY(StrategyInfo{
    "agem",
    "Averaged GEM (Chaudhry et al. 2019): the gradient projected so that the loss on a memory sample does "
    "not increase",
    {memory_options()[0],
     StrategyOption::integer("agem-sample-size", 64, "memory samples drawn for the reference gradient"),
     StrategyOption::text("agem-sampling", "experience-balanced",
                          "how the reference batch is drawn: the same number from each past experience "
                          "(Avalanche) or uniformly over the memory",
                          {"experience-balanced", "uniform"})},
    [](Strategy& s, const StrategyConfig& c) {
      s.add_plugin(std::make_shared<AGEMPlugin>(AGEMPlugin::Options{
          c.integer("mem-size"), c.integer("agem-sample-size"), c.seed(), c.text("agem-sampling") == "experience-balanced"}));
    }});

}  // namespace continua
