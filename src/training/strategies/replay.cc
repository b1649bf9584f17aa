#include "continua/training/plugins/replay.h"

#include "continua/errors.h"
#include "continua/training/registry.h"

namespace continua {

ReplayPlugin::ReplayPlugin(Options options)
    : options_(std::move(options)),
      memory_(MemoryOptions().size(options_.mem_size).policy(options_.policy).seed(options_.seed)) {
  if (options_.mem_mb_size < 0) {
    throw InvalidArgument("--mem-mb-size must be >= 0, got " + std::to_string(options_.mem_mb_size));
  }
}

void ReplayPlugin::adapt_batch(Strategy& s, MiniBatch& batch) {
  append_memory_batch(memory_, s, batch, options_.mem_mb_size);
}

void ReplayPlugin::after_training_exp(Strategy& s) { memory_.update(*s.experience()); }

void ReplayPlugin::save_state(StateWriter& w) const {
  StateWriter mw = w.child("memory");
  memory_.save_state(mw);
}

void ReplayPlugin::load_state(const StateReader& r) { load_staged(*this, r); }

void ReplayPlugin::stage_load(const StateReader& r, LoadTransaction& tx) {
  memory_.stage_load(r.child("memory"), tx);
}

CONTINUA_REGISTER_STRATEGY(StrategyInfo{
    "replay",
    "Experience replay (Chaudhry et al. 2019, 'On tiny episodic memories'): a memory mini-batch "
    "beside every mini-batch, the memory updated after each experience",
    memory_options(),
    [](Strategy& s, const StrategyConfig& c) {
      s.add_plugin(std::make_shared<ReplayPlugin>(ReplayPlugin::Options{
          c.integer("mem-size"), c.text("replay-policy"), c.seed(), c.integer("mem-mb-size")}));
    }});

}  // namespace continua
