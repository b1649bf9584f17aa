#include "continua/training/plugins/icarl.h"

#include <torch/torch.h>

#include "continua/errors.h"
#include "continua/training/registry.h"

namespace continua {

namespace {
at::Tensor normalized(const at::Tensor& f) {
  return torch::nn::functional::normalize(f, torch::nn::functional::NormalizeFuncOptions().dim(1));
}
}  // namespace

ICaRLPlugin::ICaRLPlugin(Options options)
    : options_(options),
      memory_(MemoryOptions().size(options.mem_size).policy("class-balanced").selection("herding").seed(options.seed)) {
  if (options_.mem_size <= 0) throw InvalidArgument("--mem-size must be > 0 for icarl");
}

void ICaRLPlugin::attached(Strategy& s) {
  previous_.set_prototype(s.model_ptr());
  s.set_criterion([this](Strategy& st) { return loss(st); });
}

void ICaRLPlugin::adapt_train_set(Strategy&, TrainingSet& set) {
  append_memory_segments(memory_, set);
}

at::Tensor ICaRLPlugin::loss(Strategy& s) const {
  const at::Tensor& logits = s.mb_output;
  at::Tensor target = torch::nn::functional::one_hot(s.mb.y, logits.size(1)).to(logits.scalar_type());
  if (previous_ && !old_classes_.empty()) {
    torch::NoGradGuard ng;
    const at::Tensor old = torch::sigmoid(previous_.model()->forward(s.mb.x, s.mb.t));
    std::vector<int64_t> cols;
    for (int64_t c : old_classes_) {
      if (c < old.size(1) && c < logits.size(1)) cols.push_back(c);
    }
    const at::Tensor idx = at::tensor(cols, at::kLong).to(logits.device());
    target.index_copy_(1, idx, old.index_select(1, idx));
  }
  return torch::nn::functional::binary_cross_entropy_with_logits(logits, target);
}

void ICaRLPlugin::after_training_exp(Strategy& s) {
  Model& model = s.model();
  const bool was_training = model.is_training();
  model.eval();
  const c10::Device dev = s.device();
  {
    torch::NoGradGuard ng;
    memory_.update(*s.experience(), [&](const Batch& b) { return normalized(model.features(b.x.to(dev))); });
  }
  for (int64_t c : s.experience()->classes()) old_classes_.insert(c);
  previous_.take(model);
  compute_means(s);
  model.train(was_training);
}

void ICaRLPlugin::compute_means(Strategy& s) {
  torch::NoGradGuard ng;
  Model& model = s.model();
  const c10::Device dev = s.device();
  std::vector<at::Tensor> means;
  std::vector<int64_t> classes;
  for (const auto& [c, slots] : memory_.slots_by_class()) {
    const MiniBatch b = memory_.get(slots);
    const at::Tensor f = normalized(model.features(b.x.to(dev)));
    means.push_back(normalized(f.mean(0, /*keepdim=*/true))[0]);
    classes.push_back(c);
  }
  if (means.empty()) return;
  means_ = at::stack(means);
  mean_classes_ = at::tensor(classes, at::kLong);
}

at::Tensor ICaRLPlugin::nme_scores(Model& model, const at::Tensor& x, int64_t width) const {
  return nme_scores_of(model.features(x), width);
}

at::Tensor ICaRLPlugin::nme_scores_of(const at::Tensor& features, int64_t width) const {
  const at::Tensor f = normalized(features);
  const at::Tensor d = at::cdist(f, means_.to(f.device()));
  width = std::max(width, mean_classes_.max().item<int64_t>() + 1);
  at::Tensor out = at::full({f.size(0), width}, kMaskValue, f.options());
  out.index_copy_(1, mean_classes_.to(f.device()), -d);
  return out;
}

void ICaRLPlugin::after_eval_forward(Strategy& s) {
  if (!means_.defined()) return;
  s.mb_output = nme_scores_of(s.mb_features, s.mb_output.size(1));
}

void ICaRLPlugin::save_state(StateWriter& w) const {
  StateWriter mw = w.child("memory");
  memory_.save_state(mw);
  w.write("old_classes", std::vector<int64_t>(old_classes_.begin(), old_classes_.end()));
  w.write("has_means", means_.defined());
  if (means_.defined()) {
    w.write("means", means_);
    w.write("mean_classes", mean_classes_);
  }
  previous_.save_as_previous(w);
}

void ICaRLPlugin::load_state(const StateReader& r) { load_staged(*this, r); }

void ICaRLPlugin::stage_load(const StateReader& r, LoadTransaction& tx) {
  memory_.stage_load(r.child("memory"), tx);
  std::set<int64_t> classes;
  for (int64_t c : r.get<std::vector<int64_t>>("old_classes")) {
    if (c < 0 || c > (1 << 24)) r.fail("old_classes", "class " + std::to_string(c) + " out of range");
    classes.insert(c);
  }
  at::Tensor means, mean_classes;
  if (r.get<bool>("has_means")) {
    means = r.copy_out("means");
    mean_classes = r.copy_out("mean_classes").to(at::kCPU, at::kLong);
    if (means.dim() != 2 || mean_classes.dim() != 1 || means.size(0) != mean_classes.size(0) ||
        mean_classes.size(0) == 0 || mean_classes.min().item<int64_t>() < 0) {
      r.fail("means", "class means and their classes do not fit");
    }
  }
  tx.then([this, classes, means, mean_classes] {
    old_classes_ = classes;
    means_ = means;
    mean_classes_ = mean_classes;
  });
  previous_.stage_load_as_previous(r, tx);
}

CONTINUA_REGISTER_STRATEGY(StrategyInfo{
    "icarl",
    "iCaRL (Rebuffi et al. 2017): herding exemplars, distillation with a sigmoid loss, "
    "nearest-mean-of-exemplars classification",
    {memory_options()[0]},
    [](Strategy& s, const StrategyConfig& c) {
      s.add_plugin(std::make_shared<ICaRLPlugin>(ICaRLPlugin::Options{c.integer("mem-size"), c.seed()}));
    }});

}  // namespace continua
