#include "continua/training/plugins/gem.h"

#include <torch/torch.h>

#include "continua/errors.h"
#include "continua/training/parameter_map.h"
#include "continua/training/qp.h"
#include "continua/training/registry.h"

namespace continua {

at::Tensor gem_project(const at::Tensor& G, const at::Tensor& g, double margin, double eps, const at::Tensor& Gg) {
  // The K×K dual in double; the products with G in G's own precision. GGᵀ
  // as K(K+1)/2 dot products: BLAS's matrix product of a [K, P] by a
  // [P, K] matrix (K <= experiences, P the parameters) is several times
  // slower than the dots for the K of continual learning.
  const int64_t k = G.size(0);
  at::Tensor P = at::empty({k, k}, at::kDouble);
  auto p = P.accessor<double, 2>();
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t j = i; j < k; ++j) p[i][j] = p[j][i] = G[i].dot(G[j]).item<double>();
  }
  P += eps * at::eye(k, at::kDouble);
  const at::Tensor q = (Gg.defined() ? Gg : G.mv(g)).to(at::kCPU, at::kDouble);
  // v = γ + u with u >= 0: min ½ uᵀPu + (q + Pγ1)ᵀu.
  const at::Tensor c = q + P.mv(at::full({k}, margin, at::kDouble));
  const at::Tensor Pc = P.contiguous(), cc = c.contiguous();
  std::vector<double> pv(Pc.data_ptr<double>(), Pc.data_ptr<double>() + k * k);
  std::vector<double> cv(cc.data_ptr<double>(), cc.data_ptr<double>() + k);
  std::vector<double> u = solve_nonnegative_qp(pv, cv);
  const at::Tensor v = (at::tensor(u, at::kDouble) + margin).to(G.options());
  return G.t().mv(v) + g;
}

at::Tensor memory_gradients(Strategy& s, const std::vector<MiniBatch>& batches) {
  // torch::autograd::grad rather than backward(): the gradients come out as
  // new tensors, written straight into their row, and the parameters' .grad
  // (zeroed before every iteration's own backward) is left alone.
  const c10::Device dev = s.device();
  const std::vector<at::Tensor> params = s.model().parameters();
  int64_t total = 0;
  for (const auto& p : params) total += p.numel();
  at::Tensor G = at::empty({int64_t(batches.size()), total}, params.front().options());
  for (size_t k = 0; k < batches.size(); ++k) {
    const MiniBatch m = batches[k].to(dev);
    const at::Tensor loss = torch::nn::functional::cross_entropy(s.model().forward(m.x, m.t), m.y);
    const auto grads = torch::autograd::grad({loss}, params, {}, /*retain_graph=*/false,
                                             /*create_graph=*/false, /*allow_unused=*/true);
    at::Tensor row = G[int64_t(k)];
    int64_t at_ = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      const int64_t n = params[i].numel();
      at::Tensor part = row.narrow(0, at_, n);
      if (grads[i].defined()) {
        part.copy_(grads[i].reshape({n}));
      } else {
        part.zero_();
      }
      at_ += n;
    }
  }
  return G;
}

GEMPlugin::GEMPlugin(Options options)
    : options_(options),
      memory_(MemoryOptions().size(options.mem_size).per_experience(-1).seed(options.seed)) {
  if (options_.mem_size <= 0) throw InvalidArgument("--mem-size must be > 0 for gem");
  if (options_.strength < 0) throw InvalidArgument("--gem-strength must be >= 0");
}

void GEMPlugin::before_training_iteration(Strategy& s) {
  past_grads_ = at::Tensor();
  if (memory_.size() == 0) return;
  // The memory changes only between experiences: its batches are gathered
  // once (not state: rebuilt from the memory after a load).
  if (batches_.empty()) {
    for (const auto& [exp, slots] : memory_.slots_by_original_experience()) batches_.push_back(memory_.get(slots));
  }
  past_grads_ = memory_gradients(s, batches_);
}

void GEMPlugin::after_backward(Strategy& s) {
  if (!past_grads_.defined()) return;
  const at::Tensor g = flat_gradient(s.model());
  const at::Tensor Gg = past_grads_.mv(g);
  if (Gg.lt(0).any().item<bool>()) {
    set_flat_gradient(s.model(), gem_project(past_grads_, g, options_.strength, 1e-3, Gg));
    ++projections_;
  }
  past_grads_ = at::Tensor();
}

void GEMPlugin::iteration_failed(Strategy&) { past_grads_ = at::Tensor(); }

void GEMPlugin::after_training_exp(Strategy& s) {
  memory_.update(*s.experience());
  batches_.clear();
}

void GEMPlugin::save_state(StateWriter& w) const {
  StateWriter mw = w.child("memory");
  memory_.save_state(mw);
  w.write("projections", projections_);
}

void GEMPlugin::load_state(const StateReader& r) { load_staged(*this, r); }

void GEMPlugin::stage_load(const StateReader& r, LoadTransaction& tx) {
  memory_.stage_load(r.child("memory"), tx);
  const int64_t projections = r.get<int64_t>("projections");
  tx.then([this, projections] {
    projections_ = projections;
    batches_.clear();
  });
}

CONTINUA_REGISTER_STRATEGY(StrategyInfo{
    "gem",
    "Gradient Episodic Memory (Lopez-Paz & Ranzato 2017): the gradient projected by a quadratic program so "
    "that no past experience's memory loss increases",
    {memory_options()[0],
     StrategyOption::real("gem-strength", 0.5, "margin gamma of the projection (Avalanche's memory_strength)")},
    [](Strategy& s, const StrategyConfig& c) {
      s.add_plugin(std::make_shared<GEMPlugin>(
          GEMPlugin::Options{c.integer("mem-size"), c.real("gem-strength"), c.seed()}));
    }});

}  // namespace continua
