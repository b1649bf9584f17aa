#include "continua/training/model_snapshot.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "continua/models/model.h"

namespace continua {

namespace {
void freeze(Model& m) {
  m.eval();
  for (auto& p : m.parameters()) p.set_requires_grad(false);
}
}  // namespace

void ModelSnapshot::take(const Model& model) {
  model_ = model.clone_model();
  freeze(*model_);
}

void ModelSnapshot::save_state(StateWriter& w) const {
  if (model_) model_->save_state(w);
}

void ModelSnapshot::stage_load(const StateReader& mr, LoadTransaction& tx) {
  ModelOptions mo;
  try {
    mo = ModelOptions::from_json(mr.json("options"));
  } catch (const nlohmann::json::exception& e) {
    mr.fail("options", std::string("malformed: ") + e.what());
  }
  // The device the model was saved from: that of its first tensor (a
  // multi-head model has no single head key).
  c10::Device device(c10::kCPU);
  const std::string prefix = mr.prefix().empty() ? "" : mr.prefix() + ".";
  for (auto it = mr.tree().entries().lower_bound(prefix); it != mr.tree().entries().end(); ++it) {
    if (it->first.compare(0, prefix.size(), prefix) != 0) break;
    if (const auto* t = std::get_if<at::Tensor>(&it->second)) {
      device = t->device();
      break;
    }
  }
  std::shared_ptr<Model> m = model_;
  if (!m || m->options().to_json() != mo.to_json() || m->parameters().front().device() != device) {
    // Building a model draws its initial weights from torch's generator,
    // which is part of the strategy's state: staging leaves it as it was.
    at::Generator global = at::detail::getDefaultCPUGenerator();
    const at::Tensor rng = global.get_state();
    try {
      // A user's own feature extractor cannot be built from options: a
      // copy of the live model's architecture is.
      m = mo.type_ == "custom" && prototype_ ? prototype_->clone_empty() : make_model(mo);
      m->to(device);
    } catch (...) {
      global.set_state(rng);
      throw;
    }
    global.set_state(rng);
  }
  m->stage_load(mr, tx);
  tx.then([this, m] {
    freeze(*m);
    model_ = m;
  });
}

void ModelSnapshot::save_as_previous(StateWriter& w) const {
  w.write("has_previous", bool(model_));
  if (model_) {
    StateWriter mw = w.child("previous_model");
    save_state(mw);
  }
}

void ModelSnapshot::stage_load_as_previous(const StateReader& r, LoadTransaction& tx) {
  if (!r.get<bool>("has_previous")) {
    tx.then([this] { model_.reset(); });
    return;
  }
  stage_load(r.child("previous_model"), tx);
}

}  // namespace continua
