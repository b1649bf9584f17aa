#include "continua/training/plugins/gdumb.h"

#include <torch/torch.h>

#include "continua/errors.h"
#include "continua/training/registry.h"

namespace continua {

GDumbPlugin::GDumbPlugin(Options options)
    : options_(options), memory_(MemoryOptions().size(options.mem_size).policy("class-balanced").seed(options.seed)) {}

void GDumbPlugin::before_training_exp(Strategy& s) {
  memory_.update(*s.experience());
  torch::NoGradGuard ng;
  for (const auto& p : s.model().named_parameters()) {
    const at::Tensor& live = p.value();
    auto it = initial_.find(p.key());
    if (it == initial_.end()) {
      initial_[p.key()] = live.detach().clone();  // its first weights: the initial ones
    } else if (it->second.sizes() != live.sizes()) {
      at::Tensor grown = live.detach().clone();  // new head rows as the head grew them
      grown.narrow(0, 0, it->second.size(0)).copy_(it->second);
      it->second = grown;
    }
    live.copy_(initial_.at(p.key()));
  }
  // BatchNorm's running statistics start again with the weights (Avalanche's
  // GDumb copies the whole initial model). The heads' buffers (the task
  // masks of a multi-head model) say which classes exist: kept. A model
  // without other buffers keeps the state it had before BatchNorm existed.
  for (const auto& b : s.model().named_buffers()) {
    if (b.key().rfind("classifier.", 0) == 0) continue;
    auto it = initial_.find(b.key());
    if (it == initial_.end()) {
      initial_[b.key()] = b.value().detach().clone();
    } else {
      b.value().copy_(it->second);
    }
  }
  s.optimizer().reset_state();
}

void GDumbPlugin::adapt_train_set(Strategy&, TrainingSet& set) {
  set.segments.clear();
  append_memory_segments(memory_, set);
}

void GDumbPlugin::save_state(StateWriter& w) const {
  StateWriter mw = w.child("memory");
  memory_.save_state(mw);
  save_parameter_map(w.child("initial"), initial_);
}

void GDumbPlugin::load_state(const StateReader& r) { load_staged(*this, r); }

void GDumbPlugin::stage_load(const StateReader& r, LoadTransaction& tx) {
  memory_.stage_load(r.child("memory"), tx);
  ParameterMap initial = read_parameter_map(r.child("initial"));
  tx.then([this, initial] { initial_ = initial; });
}

CONTINUA_REGISTER_STRATEGY(StrategyInfo{
    "gdumb",
    "GDumb (Prabhu et al. 2020): a greedy class-balanced memory; the model retrained from its initial "
    "weights on the memory alone at every experience",
    {memory_options()[0]},
    [](Strategy& s, const StrategyConfig& c) {
      s.add_plugin(std::make_shared<GDumbPlugin>(GDumbPlugin::Options{c.integer("mem-size"), c.seed()}));
    }});

}  // namespace continua
