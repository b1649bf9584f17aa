#include "continua/training/plugins/er_aml.h"

#include <torch/torch.h>

#include "continua/errors.h"
#include "continua/training/registry.h"

namespace continua {

at::Tensor supcon_loss(const at::Tensor& anchors, const at::Tensor& features, const at::Tensor& anchor_labels,
                       const at::Tensor& labels, double temperature, double base_temperature) {
  const at::Tensor pos = anchor_labels.reshape({-1, 1}).eq(labels.reshape({1, -1})).to(anchors.scalar_type());
  at::Tensor sim = anchors.mm(features.t()) / temperature;
  sim = sim - std::get<0>(sim.max(1, /*keepdim=*/true)).detach();
  const at::Tensor log_prob = sim - sim.exp().sum(1, /*keepdim=*/true).log();
  const at::Tensor mean_pos = (pos * log_prob).sum(1) / pos.sum(1);
  return -(temperature / base_temperature) * mean_pos.mean();
}

ERAMLPlugin::ERAMLPlugin(Options options)
    : options_(options), memory_(MemoryOptions().size(options.mem_size).policy("reservoir").seed(options.seed)) {
  if (options_.mem_mb_size < 0) throw InvalidArgument("--mem-mb-size must be >= 0");
  if (!(options_.temperature > 0) || !(options_.base_temperature > 0)) {
    throw InvalidArgument("--aml-temperature and --aml-base-temperature must be > 0");
  }
}

void ERAMLPlugin::attached(Strategy& s) {
  s.set_criterion([this](Strategy& st) { return loss(st); });
}

void ERAMLPlugin::adapt_batch(Strategy& s, MiniBatch& batch) {
  layout_ = Layout();
  layout_.fresh = batch.size();
  layout_.memory = append_memory_batch(memory_, s, batch, options_.mem_mb_size);
  if (layout_.memory == 0) return;
  // A positive and a negative per new row, uniform among the memory's
  // samples of its class and task / of another class and the same task.
  const at::Tensor labels = memory_.labels(), tasks = memory_.tasks();
  const at::Tensor y = batch.y.narrow(0, 0, layout_.fresh).to(at::kCPU), t = batch.t.narrow(0, 0, layout_.fresh).to(at::kCPU);
  const at::Tensor same_task = t.reshape({-1, 1}).eq(tasks.reshape({1, -1}));
  const at::Tensor same_class = y.reshape({-1, 1}).eq(labels.reshape({1, -1}));
  const at::Tensor valid_pos = same_class.logical_and(same_task);
  const at::Tensor valid_neg = same_class.logical_not().logical_and(same_task);
  // Uniform among the valid slots: the largest of independent uniforms.
  const at::Tensor u = at::rand({2, layout_.fresh, memory_.size()}, memory_.generator(), at::kFloat);
  const at::Tensor pos = u[0].masked_fill(valid_pos.logical_not(), -1).argmax(1);
  const at::Tensor neg = u[1].masked_fill(valid_neg.logical_not(), -1).argmax(1);
  const at::Tensor anchors = valid_pos.any(1).logical_and(valid_neg.any(1)).nonzero().flatten();
  if (anchors.numel() == 0) return;
  layout_.anchors = anchors;
  batch.append(memory_.get(pos.index_select(0, anchors)));
  batch.append(memory_.get(neg.index_select(0, anchors)));
}

at::Tensor ERAMLPlugin::loss(Strategy& s) const {
  namespace F = torch::nn::functional;
  const Layout& L = layout_;
  if (L.memory == 0) return F::cross_entropy(s.mb_output, s.mb.y);
  at::Tensor l = F::cross_entropy(s.mb_output.narrow(0, L.fresh, L.memory), s.mb.y.narrow(0, L.fresh, L.memory));
  if (!L.anchors.defined()) return l;
  const int64_t a = L.anchors.size(0), begin = L.fresh + L.memory;
  const auto norm = [](const at::Tensor& h) { return h / (h.norm(2, 1, /*keepdim=*/true) + 1e-5); };
  const at::Tensor idx = L.anchors.to(s.mb_features.device());
  const at::Tensor h_in = norm(s.mb_features.index_select(0, idx));
  const at::Tensor h_pn = norm(s.mb_features.narrow(0, begin, 2 * a));
  const at::Tensor y_in = s.mb.y.index_select(0, idx);
  return l + supcon_loss(h_in.repeat({2, 1}), h_pn, y_in.repeat({2}), s.mb.y.narrow(0, begin, 2 * a),
                         options_.temperature, options_.base_temperature);
}

void ERAMLPlugin::after_training_iteration(Strategy& s) {
  const int64_t fresh = layout_.fresh;
  layout_ = Layout();
  observe_new_rows(memory_, s, fresh);
}

void ERAMLPlugin::iteration_failed(Strategy&) { layout_ = Layout(); }

void ERAMLPlugin::save_state(StateWriter& w) const {
  StateWriter mw = w.child("memory");
  memory_.save_state(mw);
}

void ERAMLPlugin::load_state(const StateReader& r) { load_staged(*this, r); }

void ERAMLPlugin::stage_load(const StateReader& r, LoadTransaction& tx) { memory_.stage_load(r.child("memory"), tx); }

CONTINUA_REGISTER_STRATEGY(StrategyInfo{
    "er-aml",
    "ER-AML (Caccia et al. 2022): replay from a reservoir memory, new samples trained by a supervised "
    "contrastive loss against memory positives and negatives",
    {memory_options()[0], memory_options()[1],
     StrategyOption::real("aml-temperature", 0.1, "temperature of the contrastive loss"),
     StrategyOption::real("aml-base-temperature", 0.07, "base temperature (the loss is scaled by their ratio)")},
    [](Strategy& s, const StrategyConfig& c) {
      s.add_plugin(std::make_shared<ERAMLPlugin>(ERAMLPlugin::Options{c.integer("mem-size"), c.integer("mem-mb-size"),
                                                                      c.real("aml-temperature"),
                                                                      c.real("aml-base-temperature"), c.seed()}));
    }});

}  // namespace continua
