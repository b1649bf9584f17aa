#include "continua/training/plugins/gss.h"

#include <torch/torch.h>

#include "continua/errors.h"
#include "continua/training/plugins/gem.h"
#include "continua/training/registry.h"

namespace continua {

at::Tensor max_cosine_similarity(const at::Tensor& grads, const at::Tensor& reference) {
  const at::Tensor a = grads / grads.norm(2, 1, /*keepdim=*/true).clamp_min(1e-8);
  const at::Tensor b = reference / reference.norm(2, 1, /*keepdim=*/true).clamp_min(1e-8);
  return std::get<0>(a.mm(b.t()).max(1));
}

GSSPlugin::GSSPlugin(Options options)
    : options_(options), memory_(MemoryOptions().size(options.mem_size).policy("reservoir").seed(options.seed)) {
  if (options_.mem_mb_size < 0) throw InvalidArgument("--mem-mb-size must be >= 0");
  if (options_.mem_strength < 1) throw InvalidArgument("--gss-mem-strength must be >= 1");
}

at::Tensor GSSPlugin::scores() const {
  return memory_.has_payload("score") ? memory_.payload("score") : at::zeros({memory_.size()}, at::kFloat);
}

void GSSPlugin::adapt_batch(Strategy& s, MiniBatch& batch) {
  memory_rows_ = append_memory_batch(memory_, s, batch, options_.mem_mb_size);
}

at::Tensor GSSPlugin::subset_gradients(Strategy& s, int64_t batch) {
  const int64_t per = std::min(batch, memory_.size());
  const int64_t subsets = std::min(options_.mem_strength, per > 0 ? memory_.size() / per : 0);
  if (subsets == 0) return at::Tensor();
  const at::Tensor order = at::randperm(memory_.size(), memory_.generator(), at::kLong);
  std::vector<MiniBatch> parts;
  for (int64_t k = 0; k < subsets; ++k) parts.push_back(memory_.get(order.narrow(0, k * per, per)));
  return memory_gradients(s, parts);
}

void GSSPlugin::after_training_iteration(Strategy& s) {
  const int64_t fresh = s.mb.size() - memory_rows_;
  memory_rows_ = 0;
  const at::Tensor pos_all = s.mb_positions.narrow(0, 0, fresh).to(at::kCPU);
  const at::Tensor keep = pos_all.ge(0).nonzero().flatten();
  if (keep.numel() == 0 || memory_.capacity() == 0) return;
  const MiniBatch rows = s.mb.narrow(0, fresh);
  const at::Tensor pos = pos_all.index_select(0, keep);
  const int64_t b = keep.size(0);
  Model& model = s.model();
  const bool was_training = model.is_training();
  model.eval();  // gradients without dropout
  auto per_sample = [&](const at::Tensor& which) {
    std::vector<MiniBatch> one;
    for (int64_t i = 0; i < which.size(0); ++i) one.push_back(rows.narrow(keep[which[i].item<int64_t>()].item<int64_t>(), 1));
    return memory_gradients(s, one);
  };
  const int64_t room = memory_.capacity() - memory_.size();
  if (room > 0) {
    const int64_t take = std::min(room, b);
    const at::Tensor first = at::arange(take, at::kLong);
    at::Tensor score;
    if (memory_.size() == 0) {
      score = at::full({take}, 0.1f, at::kFloat);
    } else {
      const at::Tensor ref = subset_gradients(s, fresh);
      score = ref.defined() ? max_cosine_similarity(per_sample(first), ref).to(at::kCPU, at::kFloat)
                            : at::full({take}, 0.1f, at::kFloat);
    }
    memory_.put(*s.experience(), at::arange(memory_.size(), memory_.size() + take, at::kLong), pos.narrow(0, 0, take),
                {{"score", score}});
  } else {
    const at::Tensor ref = subset_gradients(s, fresh);
    if (ref.defined()) {
      MiniBatch all;
      all.x = rows.x.index_select(0, keep.to(rows.x.device()));
      all.y = rows.y.index_select(0, keep.to(rows.y.device()));
      all.t = rows.t.index_select(0, keep.to(rows.t.device()));
      all.memory_slot = at::full({b}, -1, at::kLong);
      std::vector<MiniBatch> whole = {all};
      const double batch_sim = max_cosine_similarity(memory_gradients(s, whole), ref)[0].item<double>();
      if (batch_sim < 0) {
        const at::Tensor sc = scores();
        const at::Tensor weight = (sc - sc.min()) / ((sc.max() - sc.min()) + 0.01);
        const int64_t draws = std::min<int64_t>(b, (weight > 0).sum().item<int64_t>());
        if (draws > 0) {
          const at::Tensor slots = at::multinomial(weight, draws, /*replacement=*/false, memory_.generator());
          const at::Tensor mine = max_cosine_similarity(per_sample(at::arange(draws, at::kLong)), ref).to(at::kCPU, at::kFloat);
          const at::Tensor theirs = sc.index_select(0, slots);
          // Replace slot j by row i with probability (s_j + 1) / ((c_i + 1) + (s_j + 1)).
          const at::Tensor p_replace = (theirs + 1) / ((mine + 1) + (theirs + 1));
          const at::Tensor u = at::rand({draws}, memory_.generator(), at::kFloat);
          const at::Tensor yes = u.lt(p_replace).nonzero().flatten();
          if (yes.numel() > 0) {
            memory_.put(*s.experience(), slots.index_select(0, yes), pos.narrow(0, 0, draws).index_select(0, yes),
                        {{"score", mine.index_select(0, yes)}});
          }
        }
      }
    }
  }
  model.train(was_training);
}

void GSSPlugin::iteration_failed(Strategy&) { memory_rows_ = 0; }

void GSSPlugin::save_state(StateWriter& w) const {
  StateWriter mw = w.child("memory");
  memory_.save_state(mw);
}

void GSSPlugin::load_state(const StateReader& r) { load_staged(*this, r); }

void GSSPlugin::stage_load(const StateReader& r, LoadTransaction& tx) { memory_.stage_load(r.child("memory"), tx); }

CONTINUA_REGISTER_STRATEGY(StrategyInfo{
    "gss",
    "Gradient-based Sample Selection, greedy (Aljundi et al. 2019): a memory of samples with diverse "
    "gradients, replayed beside every mini-batch",
    {memory_options()[0], memory_options()[1],
     StrategyOption::integer("gss-mem-strength", 5, "random memory subsets whose gradients score a sample")},
    [](Strategy& s, const StrategyConfig& c) {
      s.add_plugin(std::make_shared<GSSPlugin>(GSSPlugin::Options{c.integer("mem-size"), c.integer("mem-mb-size"),
                                                                  c.integer("gss-mem-strength"), c.seed()}));
    }});

}  // namespace continua
