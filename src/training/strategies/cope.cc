#include "continua/training/plugins/cope.h"

#include <torch/torch.h>

#include "continua/errors.h"
#include "continua/training/registry.h"

namespace continua {

namespace {
at::Tensor normalized(const at::Tensor& f) {
  return torch::nn::functional::normalize(f, torch::nn::functional::NormalizeFuncOptions().dim(1));
}
}  // namespace

at::Tensor ppp_loss(const at::Tensor& x, const at::Tensor& y, const at::Tensor& prototypes, const at::Tensor& classes,
                    double T) {
  const int64_t bs = x.size(0);
  const at::Tensor labels = std::get<0>(at::_unique(y, /*sorted=*/true));
  const bool repel = labels.size(0) > 1;
  const at::Tensor protos = prototypes.detach();
  at::Tensor loss = at::zeros({}, x.options());
  for (int64_t li = 0; li < labels.size(0); ++li) {
    const int64_t c = labels[li].item<int64_t>();
    const at::Tensor in_c = y.eq(c);
    const at::Tensor Bc = x.index_select(0, in_c.nonzero().flatten());
    const at::Tensor Bk = x.index_select(0, in_c.logical_not().nonzero().flatten());
    const at::Tensor is_c = classes.eq(c);
    const at::Tensor pc = protos.index_select(0, is_c.nonzero().flatten());
    const at::Tensor pk = protos.index_select(0, is_c.logical_not().nonzero().flatten());
    const int64_t nc = Bc.size(0);
    // Attractor: P(c | x_i) against each pseudo-prototype (the other samples
    // of c, then c's prototype), over the other classes' prototypes.
    {
      const at::Tensor m = at::cat({Bc, pc, pk}).detach();
      at::Tensor D = m.mm(Bc.t()).div(T).exp();  // [nc + 1 + K, nc]
      D = D.masked_fill(at::eye(D.size(0), D.size(1), D.options().dtype(at::kBool)), 0);
      const at::Tensor num = D.narrow(0, 0, nc + 1);
      const at::Tensor den = D.narrow(0, nc + 1, D.size(0) - nc - 1).sum(0);
      const at::Tensor P = num / (num + den);
      loss = loss - (P.sum(0) / double(nc)).log().sum();
    }
    // Repellor: for the other classes' samples, 1 − P(c | x_j), with c's
    // samples and prototype as (pseudo-)prototypes.
    if (repel) {
      const at::Tensor u = at::cat({Bc, pc, pk}).detach();
      const at::Tensor D = u.mm(Bk.t()).div(T).exp();  // [nc + 1 + K, nk]
      const at::Tensor den = D.narrow(0, nc + 1, D.size(0) - nc - 1).sum(0, /*keepdim=*/true);
      const at::Tensor num = D.narrow(0, 0, nc + 1);
      const at::Tensor P = num / (num + den);
      const at::Tensor E = (P.narrow(0, 0, nc) + P.narrow(0, nc, 1)) / 2;
      loss = loss - (1 - E).log().sum();
    }
  }
  return loss / double(bs);
}

CoPEPlugin::CoPEPlugin(Options options)
    : options_(options),
      memory_(MemoryOptions().size(options.mem_size).policy("class-balanced").seed(options.seed)) {
  if (options_.mem_mb_size < 0) throw InvalidArgument("--mem-mb-size must be >= 0");
  if (options_.alpha < 0 || options_.alpha > 1) throw InvalidArgument("--cope-alpha must be in [0, 1]");
  if (!(options_.temperature > 0)) throw InvalidArgument("--cope-temperature must be > 0");
}

void CoPEPlugin::attached(Strategy& s) {
  s.set_criterion([this](Strategy& st) { return loss(st); });
}

void CoPEPlugin::before_training_exp(Strategy& s) {
  // A prototype for each class the experience brings: zero until the
  // class's first batch sets it to its mean embedding.
  std::vector<int64_t> known = classes_.defined() ? std::vector<int64_t>(classes_.data_ptr<int64_t>(),
                                                                          classes_.data_ptr<int64_t>() + classes_.numel())
                                                  : std::vector<int64_t>();
  std::vector<int64_t> add;
  for (int64_t c : s.experience()->classes()) {
    if (std::find(known.begin(), known.end(), c) == known.end()) add.push_back(c);
  }
  if (add.empty()) return;
  const int64_t d = s.model().feature_size();
  at::Tensor fresh = at::zeros({int64_t(add.size()), d}, at::kFloat);
  prototypes_ = prototypes_.defined() ? at::cat({prototypes_, fresh}) : fresh;
  known.insert(known.end(), add.begin(), add.end());
  classes_ = at::tensor(known, at::kLong);
}

void CoPEPlugin::adapt_batch(Strategy& s, MiniBatch& batch) {
  append_memory_batch(memory_, s, batch, options_.mem_mb_size);
}

at::Tensor CoPEPlugin::loss(Strategy& s) const {
  return ppp_loss(normalized(s.mb_features), s.mb.y, prototypes_.to(s.mb_features.device()), classes_.to(s.mb.y.device()),
                  options_.temperature);
}

void CoPEPlugin::after_training_iteration(Strategy& s) {
  torch::NoGradGuard ng;
  const at::Tensor x = normalized(s.mb_features.detach()).to(at::kCPU, at::kFloat);
  const at::Tensor y = s.mb.y.to(at::kCPU);
  for (int64_t i = 0; i < classes_.size(0); ++i) {
    const at::Tensor rows = y.eq(classes_[i]).nonzero().flatten();
    if (rows.numel() == 0) continue;
    const at::Tensor mean = x.index_select(0, rows).mean(0);
    const bool unset = prototypes_[i].abs().sum().item<double>() == 0;
    at::Tensor p = unset ? mean : prototypes_[i] * options_.alpha + mean * (1 - options_.alpha);
    prototypes_[i].copy_(p / p.norm().clamp_min(1e-12));
  }
}

void CoPEPlugin::after_training_exp(Strategy& s) { memory_.update(*s.experience()); }

void CoPEPlugin::after_eval_forward(Strategy& s) {
  if (!prototypes_.defined()) return;
  const at::Tensor sim = normalized(s.mb_features).mm(prototypes_.to(s.mb_features.device()).t());
  const int64_t width = std::max(s.mb_output.size(1), classes_.max().item<int64_t>() + 1);
  at::Tensor out = at::full({sim.size(0), width}, kMaskValue, sim.options());
  out.index_copy_(1, classes_.to(sim.device()), sim);
  s.mb_output = out;
}

void CoPEPlugin::save_state(StateWriter& w) const {
  StateWriter mw = w.child("memory");
  memory_.save_state(mw);
  w.write("has_prototypes", prototypes_.defined());
  if (prototypes_.defined()) {
    w.write("prototypes", prototypes_);
    w.write("classes", classes_);
  }
}

void CoPEPlugin::load_state(const StateReader& r) { load_staged(*this, r); }

void CoPEPlugin::stage_load(const StateReader& r, LoadTransaction& tx) {
  memory_.stage_load(r.child("memory"), tx);
  at::Tensor protos, classes;
  if (r.get<bool>("has_prototypes")) {
    protos = r.copy_out("prototypes").to(at::kCPU, at::kFloat);
    classes = r.copy_out("classes").to(at::kCPU, at::kLong);
    if (protos.dim() != 2 || classes.dim() != 1 || protos.size(0) != classes.size(0) || classes.numel() == 0 ||
        classes.min().item<int64_t>() < 0) {
      r.fail("prototypes", "prototypes and their classes do not fit");
    }
  }
  tx.then([this, protos, classes] {
    prototypes_ = protos;
    classes_ = classes;
  });
}

CONTINUA_REGISTER_STRATEGY(StrategyInfo{
    "cope",
    "Continual Prototype Evolution (De Lange & Tuytelaars 2021): class prototypes that follow the "
    "embeddings, the pseudo-prototypical proxy loss, nearest-prototype prediction",
    {memory_options()[0], memory_options()[1],
     StrategyOption::real("cope-alpha", 0.99, "momentum of the prototypes"),
     StrategyOption::real("cope-temperature", 0.1, "temperature of the PPP loss")},
    [](Strategy& s, const StrategyConfig& c) {
      s.add_plugin(std::make_shared<CoPEPlugin>(CoPEPlugin::Options{c.integer("mem-size"), c.integer("mem-mb-size"),
                                                                    c.real("cope-alpha"),
                                                                    c.real("cope-temperature"), c.seed()}));
    }});

}  // namespace continua
