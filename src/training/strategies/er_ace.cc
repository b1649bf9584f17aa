#include "continua/training/plugins/er_ace.h"

#include <torch/torch.h>

#include "continua/errors.h"
#include "continua/training/registry.h"

namespace continua {

ERACEPlugin::ERACEPlugin(Options options)
    : options_(options), memory_(MemoryOptions().size(options.mem_size).policy("reservoir").seed(options.seed)) {
  if (options_.mem_mb_size < 0) throw InvalidArgument("--mem-mb-size must be >= 0");
}

void ERACEPlugin::attached(Strategy& s) {
  s.set_criterion([this](Strategy& st) { return loss(st); });
}

void ERACEPlugin::adapt_batch(Strategy& s, MiniBatch& batch) {
  memory_rows_ = append_memory_batch(memory_, s, batch, options_.mem_mb_size);
}

at::Tensor ERACEPlugin::masked_new_logits(const at::Tensor& logits, const at::Tensor& labels) {
  at::Tensor absent = at::ones({logits.size(1)}, logits.options().dtype(at::kBool));
  absent.index_fill_(0, labels, false);
  return logits.masked_fill(absent.unsqueeze(0), -1e9);
}

at::Tensor ERACEPlugin::loss(Strategy& s) const {
  namespace F = torch::nn::functional;
  const int64_t fresh = s.mb.size() - memory_rows_;
  const at::Tensor y_new = s.mb.y.narrow(0, 0, fresh);
  at::Tensor l = F::cross_entropy(masked_new_logits(s.mb_output.narrow(0, 0, fresh), y_new), y_new);
  if (memory_rows_ > 0) {
    l = l + F::cross_entropy(s.mb_output.narrow(0, fresh, memory_rows_), s.mb.y.narrow(0, fresh, memory_rows_));
  }
  return l;
}

void ERACEPlugin::after_training_iteration(Strategy& s) {
  const int64_t fresh = s.mb.size() - memory_rows_;
  memory_rows_ = 0;
  observe_new_rows(memory_, s, fresh);
}

void ERACEPlugin::iteration_failed(Strategy&) { memory_rows_ = 0; }

void ERACEPlugin::save_state(StateWriter& w) const {
  StateWriter mw = w.child("memory");
  memory_.save_state(mw);
}

void ERACEPlugin::load_state(const StateReader& r) { load_staged(*this, r); }

void ERACEPlugin::stage_load(const StateReader& r, LoadTransaction& tx) { memory_.stage_load(r.child("memory"), tx); }

CONTINUA_REGISTER_STRATEGY(StrategyInfo{
    "er-ace",
    "ER-ACE (Caccia et al. 2022): replay from a reservoir memory with the asymmetric cross-entropy "
    "(new samples compete only with the classes of their batch)",
    {memory_options()[0], memory_options()[1]},
    [](Strategy& s, const StrategyConfig& c) {
      s.add_plugin(std::make_shared<ERACEPlugin>(
          ERACEPlugin::Options{c.integer("mem-size"), c.integer("mem-mb-size"), c.seed()}));
    }});

}  // namespace continua
