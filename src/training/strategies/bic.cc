#include "continua/training/plugins/bic.h"

#include <torch/torch.h>

#include "continua/errors.h"
#include "continua/training/registry.h"

namespace continua {

namespace {
int64_t validation_size(const BiCPlugin::Options& o) { return int64_t(double(o.mem_size) * o.val_fraction + 0.5); }
}  // namespace

BiCPlugin::BiCPlugin(Options options)
    : options_(options),
      memory_(MemoryOptions()
                  .size(options.mem_size - validation_size(options))
                  .policy("class-balanced")
                  .seed(options.seed)),
      validation_(MemoryOptions().size(validation_size(options)).policy("class-balanced").seed(options.seed + 17)) {
  if (options_.val_fraction <= 0 || options_.val_fraction >= 1) {
    throw InvalidArgument("--bic-val-fraction must be in (0, 1)");
  }
  if (!(options_.temperature > 0)) throw InvalidArgument("--bic-temperature must be > 0");
  if (options_.stage2_epochs < 0) throw InvalidArgument("--bic-epochs must be >= 0");
}

void BiCPlugin::attached(Strategy& s) {
  previous_.set_prototype(s.model_ptr());
  s.set_criterion([this](Strategy& st) { return loss(st); });
}

void BiCPlugin::before_training_exp(Strategy& s) {
  // The validation memory takes its share of the new classes first.
  validation_.update(*s.experience());
  for (int64_t c : s.experience()->classes()) seen_classes_.insert(c);
}

namespace {
// Positions of experience e that the memory holds.
at::Tensor held_positions(const Memory& m, int64_t e) {
  if (m.size() == 0) return at::empty({0}, at::kLong);
  return m.positions().index_select(0, m.experiences().eq(e).nonzero().flatten());
}
}  // namespace

void BiCPlugin::adapt_train_set(Strategy& s, TrainingSet& set) {
  // The experience without its validation samples, then the training memory.
  const Experience& e = *s.experience();
  const at::Tensor val = held_positions(validation_, e.index());
  if (val.numel() > 0) {
    at::Tensor keep = at::ones({e.size()}, at::kBool);
    keep.index_fill_(0, val, false);
    set.segments[0].positions = set.segments[0].positions.index_select(0, keep.index_select(0, set.segments[0].positions).nonzero().flatten());
  }
  append_memory_segments(memory_, set);
}

at::Tensor BiCPlugin::corrected(const at::Tensor& logits, const std::vector<BiasLayer>& layers) {
  if (layers.empty()) return logits;
  at::Tensor out = logits.clone();
  for (const BiasLayer& l : layers) {
    std::vector<int64_t> cols;
    for (int64_t c : l.classes) {
      if (c < out.size(1)) cols.push_back(c);
    }
    if (cols.empty()) continue;
    const at::Tensor idx = at::tensor(cols, at::kLong).to(out.device());
    out.index_copy_(1, idx, logits.index_select(1, idx) * l.alpha + l.beta);
  }
  return out;
}

at::Tensor BiCPlugin::loss(Strategy& s) const {
  namespace F = torch::nn::functional;
  const at::Tensor ce = F::cross_entropy(s.mb_output, s.mb.y);
  if (!previous_ || old_classes_.empty()) return ce;
  std::vector<int64_t> cols;
  at::Tensor old;
  {
    torch::NoGradGuard ng;
    // The previous model as it answered: with the bias layer of its own last experience.
    old = previous_.model()->forward(s.mb.x, s.mb.t);
    if (!previous_layers_.empty()) old = corrected(old, {previous_layers_.back()});
  }
  for (int64_t c : old_classes_) {
    if (c < old.size(1) && c < s.mb_output.size(1)) cols.push_back(c);
  }
  const at::Tensor idx = at::tensor(cols, at::kLong).to(old.device());
  const double T = options_.temperature;
  const at::Tensor q = torch::softmax(old.index_select(1, idx) / T, 1);
  const at::Tensor log_p = torch::log_softmax(s.mb_output.index_select(1, idx) / T, 1);
  const at::Tensor kd = -(q * log_p).sum(1).mean();
  const double lambda = double(old_classes_.size()) / double(seen_classes_.size());
  return (1 - lambda) * ce + lambda * kd;
}

void BiCPlugin::fit_bias_layer(Strategy& s, BiasLayer& layer) {
  if (validation_.size() == 0 || options_.stage2_epochs == 0) return;
  Model& model = s.model();
  const bool was_training = model.is_training();
  model.eval();
  const MiniBatch val = validation_.get(at::arange(validation_.size(), at::kLong)).to(s.device());
  at::Tensor logits;
  {
    torch::NoGradGuard ng;
    logits = model.forward(val.x, val.t);  // the model's own logits: earlier layers corrected older models
  }
  model.train(was_training);
  std::vector<int64_t> cols;
  for (int64_t c : layer.classes) {
    if (c < logits.size(1)) cols.push_back(c);
  }
  if (cols.empty()) return;
  const at::Tensor idx = at::tensor(cols, at::kLong).to(logits.device());
  at::Tensor ab = torch::tensor({1.0f, 0.0f}, torch::TensorOptions().device(logits.device()).requires_grad(true));
  torch::optim::SGD opt({ab}, torch::optim::SGDOptions(options_.stage2_lr).momentum(0.9));
  at::Tensor mask = at::zeros({logits.size(1)}, logits.options());
  mask.index_fill_(0, idx, 1.0);
  for (int64_t epoch = 0; epoch < options_.stage2_epochs; ++epoch) {
    opt.zero_grad();
    const at::Tensor q = logits * (1 - mask) + (logits * ab[0] + ab[1]) * mask;
    torch::nn::functional::cross_entropy(q, val.y).backward();
    opt.step();
  }
  layer.alpha = ab[0].item<double>();
  layer.beta = ab[1].item<double>();
}

void BiCPlugin::after_training_exp(Strategy& s) {
  const Experience& e = *s.experience();
  // The training memory's candidates: the experience minus its validation samples.
  at::Tensor keep = at::ones({e.size()}, at::kBool);
  const at::Tensor val = held_positions(validation_, e.index());
  if (val.numel() > 0) keep.index_fill_(0, val, false);
  memory_.update(e, {}, keep.nonzero().flatten());
  std::vector<int64_t> fresh;
  for (int64_t c : e.classes()) {
    if (!old_classes_.count(c)) fresh.push_back(c);
  }
  if (!old_classes_.empty() && !fresh.empty()) {
    BiasLayer layer;
    layer.classes = fresh;
    fit_bias_layer(s, layer);
    layers_.push_back(layer);
  }
  for (int64_t c : e.classes()) old_classes_.insert(c);
  previous_.take(s.model());
  previous_layers_ = layers_;
}

void BiCPlugin::after_eval_forward(Strategy& s) {
  // The model answers with the bias layer of its last experience: the classes
  // of earlier experiences were retrained (distilled) since their layer.
  if (!layers_.empty()) s.mb_output = corrected(s.mb_output, {layers_.back()});
}

namespace {
nlohmann::json layers_json(const std::vector<BiCPlugin::BiasLayer>& layers) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& l : layers) j.push_back({{"classes", l.classes}, {"alpha", l.alpha}, {"beta", l.beta}});
  return j;
}
std::vector<BiCPlugin::BiasLayer> read_layers(const StateReader& r, const char* key) {
  std::vector<BiCPlugin::BiasLayer> out;
  const nlohmann::json& j = r.json(key);
  if (!j.is_array()) r.fail(key, "not a list of bias layers");
  try {
    for (const auto& l : j) {
      BiCPlugin::BiasLayer b;
      b.classes = l.at("classes").get<std::vector<int64_t>>();
      b.alpha = l.at("alpha").get<double>();
      b.beta = l.at("beta").get<double>();
      for (int64_t c : b.classes) {
        if (c < 0 || c > (1 << 24)) r.fail(key, "class " + std::to_string(c) + " out of range");
      }
      out.push_back(b);
    }
  } catch (const nlohmann::json::exception& e) {
    r.fail(key, std::string("malformed: ") + e.what());
  }
  return out;
}
}  // namespace

void BiCPlugin::save_state(StateWriter& w) const {
  StateWriter mw = w.child("memory");
  memory_.save_state(mw);
  StateWriter vw = w.child("validation");
  validation_.save_state(vw);
  w.write("layers", layers_json(layers_));
  w.write("previous_layers", layers_json(previous_layers_));
  w.write("old_classes", std::vector<int64_t>(old_classes_.begin(), old_classes_.end()));
  w.write("seen_classes", std::vector<int64_t>(seen_classes_.begin(), seen_classes_.end()));
  previous_.save_as_previous(w);
}

void BiCPlugin::load_state(const StateReader& r) { load_staged(*this, r); }

void BiCPlugin::stage_load(const StateReader& r, LoadTransaction& tx) {
  memory_.stage_load(r.child("memory"), tx);
  validation_.stage_load(r.child("validation"), tx);
  auto layers = read_layers(r, "layers");
  auto previous_layers = read_layers(r, "previous_layers");
  const auto old_v = r.get<std::vector<int64_t>>("old_classes");
  const auto seen_v = r.get<std::vector<int64_t>>("seen_classes");
  std::set<int64_t> old(old_v.begin(), old_v.end()), seen(seen_v.begin(), seen_v.end());
  for (int64_t c : old) {
    if (!seen.count(c)) r.fail("old_classes", "class " + std::to_string(c) + " was never seen");
  }
  tx.then([this, layers, previous_layers, old, seen] {
    layers_ = layers;
    previous_layers_ = previous_layers;
    old_classes_ = old;
    seen_classes_ = seen;
  });
  previous_.stage_load_as_previous(r, tx);
}

CONTINUA_REGISTER_STRATEGY(StrategyInfo{
    "bic",
    "Bias Correction (Wu et al. 2019): replay with distillation, then a bias layer on the new classes fitted "
    "on a validation memory",
    {memory_options()[0],
     StrategyOption::real("bic-val-fraction", 0.1, "share of --mem-size kept as the validation memory", true),
     StrategyOption::real("bic-temperature", 2.0, "temperature of the distillation"),
     StrategyOption::integer("bic-epochs", 200, "full-batch SGD steps fitting each bias layer"),
     StrategyOption::real("bic-lr", 0.1, "learning rate of the bias layer")},
    [](Strategy& s, const StrategyConfig& c) {
      s.add_plugin(std::make_shared<BiCPlugin>(BiCPlugin::Options{c.integer("mem-size"), c.real("bic-val-fraction"),
                                                                  c.real("bic-temperature"), c.integer("bic-epochs"),
                                                                  c.real("bic-lr"), c.seed()}));
    }});

}  // namespace continua
