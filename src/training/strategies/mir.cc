#include "continua/training/plugins/mir.h"

#include <torch/torch.h>

#include "continua/errors.h"
#include "continua/training/parameter_map.h"
#include "continua/training/registry.h"

namespace continua {

MIRPlugin::MIRPlugin(Options options)
    : options_(options), memory_(MemoryOptions().size(options.mem_size).policy("reservoir").seed(options.seed)) {
  if (options_.mem_mb_size < 0) throw InvalidArgument("--mem-mb-size must be >= 0");
  if (options_.candidates < 0) throw InvalidArgument("--mir-candidates must be >= 0");
}

void MIRPlugin::adapt_batch(Strategy& s, MiniBatch& batch) {
  memory_rows_ = 0;
  if (memory_.size() == 0 || batch.size() == 0) return;
  namespace F = torch::nn::functional;
  const int64_t k = options_.mem_mb_size > 0 ? options_.mem_mb_size : s.options().train_mb_size_;
  const int64_t n = options_.candidates > 0 ? options_.candidates : 2 * k;
  const at::Tensor slots = memory_.sample(n);
  const MiniBatch cand = memory_.get(slots).to(s.device());
  const MiniBatch fresh = batch.to(s.device());
  Model& model = s.model();
  // The virtual step leaves no trace: its forward in train mode moves
  // BatchNorm's running statistics, which are put back afterwards (the real
  // step's forward then updates them once, on the whole batch).
  std::vector<at::Tensor> buffers;
  for (const auto& b : model.buffers()) buffers.push_back(b.clone());
  // The virtual step's gradient, on the new rows as the step will see them.
  s.optimizer().zero_grad();
  F::cross_entropy(model.forward(fresh.x, fresh.t), fresh.y).backward();
  const ParameterMap saved = parameter_values(model);
  at::Tensor before, after;
  {
    torch::NoGradGuard ng;
    const bool was_training = model.is_training();
    model.eval();
    const auto none = F::CrossEntropyFuncOptions().reduction(torch::kNone);
    before = F::cross_entropy(model.forward(cand.x, cand.t), cand.y, none);
    const double lr = s.optimizer().lr();
    for (const auto& p : model.named_parameters()) {
      if (p.value().grad().defined()) p.value().sub_(p.value().grad() * lr);
    }
    after = F::cross_entropy(model.forward(cand.x, cand.t), cand.y, none);
    for (const auto& p : model.named_parameters()) p.value().copy_(saved.at(p.key()));
    const auto live = model.buffers();
    for (size_t i = 0; i < live.size(); ++i) live[i].copy_(buffers[i]);
    model.train(was_training);
  }
  s.optimizer().zero_grad();
  last_candidates_ = slots;
  last_scores_ = (after - before).to(at::kCPU);
  const int64_t take = std::min<int64_t>(k, slots.size(0));
  last_chosen_ = slots.index_select(0, std::get<1>(last_scores_.topk(take)));
  MiniBatch rows = memory_.get(last_chosen_);
  memory_rows_ = rows.size();
  batch.append(rows);
}

void MIRPlugin::after_training_iteration(Strategy& s) {
  const int64_t fresh = s.mb.size() - memory_rows_;
  memory_rows_ = 0;
  observe_new_rows(memory_, s, fresh);
}

void MIRPlugin::iteration_failed(Strategy&) { memory_rows_ = 0; }

void MIRPlugin::save_state(StateWriter& w) const {
  StateWriter mw = w.child("memory");
  memory_.save_state(mw);
}

void MIRPlugin::load_state(const StateReader& r) { load_staged(*this, r); }

void MIRPlugin::stage_load(const StateReader& r, LoadTransaction& tx) { memory_.stage_load(r.child("memory"), tx); }

CONTINUA_REGISTER_STRATEGY(StrategyInfo{
    "mir",
    "Maximally Interfered Retrieval (Aljundi et al. 2019): replay of the memory samples whose loss a "
    "virtual step on the new batch would raise most",
    {memory_options()[0], memory_options()[1],
     StrategyOption::integer("mir-candidates", 0, "memory samples scored per iteration (0: twice --mem-mb-size)")},
    [](Strategy& s, const StrategyConfig& c) {
      s.add_plugin(std::make_shared<MIRPlugin>(MIRPlugin::Options{
          c.integer("mem-size"), c.integer("mem-mb-size"), c.integer("mir-candidates"), c.seed()}));
    }});

}  // namespace continua
