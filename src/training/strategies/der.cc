#include "continua/training/plugins/der.h"

#include <torch/torch.h>

#include "continua/errors.h"
#include "continua/training/registry.h"

namespace continua {

DERPlugin::DERPlugin(Options options)
    : options_(options), memory_(MemoryOptions().size(options.mem_size).policy("reservoir").seed(options.seed)) {
  if (options_.mem_mb_size < 0) throw InvalidArgument("--mem-mb-size must be >= 0");
  if (options_.alpha < 0) throw InvalidArgument("--der-alpha must be >= 0");
  if (options_.beta < 0) throw InvalidArgument("--der-beta must be >= 0");
}

void DERPlugin::attached(Strategy& s) {
  s.set_criterion([this](Strategy& st) { return loss(st); });
}

void DERPlugin::adapt_batch(Strategy& s, MiniBatch& batch) {
  rows_a_ = append_memory_batch(memory_, s, batch, options_.mem_mb_size);
  rows_b_ = options_.beta > 0 ? append_memory_batch(memory_, s, batch, options_.mem_mb_size) : 0;
}

at::Tensor DERPlugin::loss(Strategy& s) const {
  namespace F = torch::nn::functional;
  const at::Tensor& out = s.mb_output;
  const int64_t fresh = s.mb.size() - rows_a_ - rows_b_;
  at::Tensor l = F::cross_entropy(out.narrow(0, 0, fresh), s.mb.y.narrow(0, 0, fresh));
  if (rows_a_ > 0) {
    const at::Tensor z = s.mb.payload.at("logits").narrow(0, fresh, rows_a_);
    const at::Tensor mask = s.mb.payload.at("logit_mask").narrow(0, fresh, rows_a_);
    const int64_t w = std::min(out.size(1), z.size(1));
    const at::Tensor m = mask.narrow(1, 0, w);
    const at::Tensor d = (out.narrow(0, fresh, rows_a_).narrow(1, 0, w) - z.narrow(1, 0, w)).pow(2) * m;
    l = l + options_.alpha * d.sum() / m.sum().clamp_min(1);
  }
  if (rows_b_ > 0) {
    l = l + options_.beta * F::cross_entropy(out.narrow(0, fresh + rows_a_, rows_b_),
                                             s.mb.y.narrow(0, fresh + rows_a_, rows_b_));
  }
  return l;
}

void DERPlugin::after_training_iteration(Strategy& s) {
  const int64_t fresh = s.mb.size() - rows_a_ - rows_b_;
  rows_a_ = rows_b_ = 0;
  at::Tensor logits = s.mb_output.narrow(0, 0, fresh).detach().to(at::kCPU, at::kFloat);
  const int64_t w = logits.size(1);
  // The stored logits grow with the head: columns a sample did not have are
  // zero and masked out of the distance.
  if (memory_.has_payload("logits") && memory_.payload("logits").size(1) < w) {
    for (const char* name : {"logits", "logit_mask"}) {
      const at::Tensor& old = memory_.payload(name);
      memory_.set_payload(name, at::cat({old, at::zeros({old.size(0), w - old.size(1)}, old.options())}, 1));
    }
  }
  if (memory_.has_payload("logits") && memory_.payload("logits").size(1) > w) {
    const int64_t extra = memory_.payload("logits").size(1) - w;
    logits = at::cat({logits, at::zeros({logits.size(0), extra}, logits.options())}, 1);
  }
  at::Tensor mask = at::zeros_like(logits);
  mask.narrow(1, 0, w).fill_(1);
  observe_new_rows(memory_, s, fresh, {{"logits", logits}, {"logit_mask", mask}});
}

void DERPlugin::iteration_failed(Strategy&) { rows_a_ = rows_b_ = 0; }

void DERPlugin::save_state(StateWriter& w) const {
  StateWriter mw = w.child("memory");
  memory_.save_state(mw);
}

void DERPlugin::load_state(const StateReader& r) { load_staged(*this, r); }

void DERPlugin::stage_load(const StateReader& r, LoadTransaction& tx) { memory_.stage_load(r.child("memory"), tx); }

namespace {
std::vector<StrategyOption> der_options(bool plus) {
  std::vector<StrategyOption> o = {memory_options()[0], memory_options()[1],
                                   StrategyOption::real("der-alpha", 0.1,
                                                        "weight of the distance to the stored logits")};
  if (plus) o.push_back(StrategyOption::real("der-beta", 0.5, "weight of the cross-entropy on memory labels"));
  return o;
}
}  // namespace

CONTINUA_REGISTER_STRATEGY(StrategyInfo{
    "der",
    "Dark Experience Replay (Buzzega et al. 2020): a reservoir memory of samples with their logits, "
    "the current logits kept close to the stored ones",
    der_options(false), [](Strategy& s, const StrategyConfig& c) {
      s.add_plugin(std::make_shared<DERPlugin>(DERPlugin::Options{
          c.integer("mem-size"), c.integer("mem-mb-size"), c.real("der-alpha"), 0.0, c.seed()}));
    }});

CONTINUA_REGISTER_STRATEGY(StrategyInfo{
    "derpp",
    "DER++ (Buzzega et al. 2020): DER plus a cross-entropy on a second memory batch's labels",
    der_options(true), [](Strategy& s, const StrategyConfig& c) {
      s.add_plugin(std::make_shared<DERPlugin>(DERPlugin::Options{
          c.integer("mem-size"), c.integer("mem-mb-size"), c.real("der-alpha"), c.real("der-beta"), c.seed()}));
    }});

}  // namespace continua
