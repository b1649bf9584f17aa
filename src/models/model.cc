#include "continua/models/model.h"

#include <torch/torch.h>

#include "continua/errors.h"
#include "continua/models/dropout.h"

namespace continua {

nlohmann::json ModelOptions::to_json() const {
  nlohmann::json j = {{"type", type_},       {"input_size", input_size_},
                      {"hidden", hidden_},   {"layers", layers_},
                      {"dropout", dropout_}, {"initial_classes", initial_classes_},
                      {"channels", channels_}, {"image_size", image_size_}, {"multi_head", multi_head_}};
  // Only where it means something: the options (and so the state digest) of
  // every other model stay what they were before resnet18 existed.
  if (type_ == "resnet18") j["nf"] = nf_;
  return j;
}

ModelOptions ModelOptions::from_json(const nlohmann::json& j) {
  ModelOptions o;
  o.type_ = j.at("type").get<std::string>();
  o.input_size_ = j.at("input_size").get<int64_t>();
  o.hidden_ = j.at("hidden").get<int64_t>();
  o.layers_ = j.at("layers").get<int64_t>();
  o.dropout_ = j.at("dropout").get<double>();
  o.initial_classes_ = j.at("initial_classes").get<int64_t>();
  o.channels_ = j.at("channels").get<int64_t>();
  o.image_size_ = j.at("image_size").get<int64_t>();
  o.multi_head_ = j.value("multi_head", false);  // absent in checkpoints before task labels
  o.nf_ = j.value("nf", int64_t(20));             // written for resnet18 only
  return o;
}

IncrementalClassifierImpl::IncrementalClassifierImpl(int64_t in_features, int64_t initial_classes)
    : in_features_(in_features) {
  head_ = register_module("head", torch::nn::Linear(in_features, initial_classes));
}

at::Tensor IncrementalClassifierImpl::forward(const at::Tensor& x) { return head_->forward(x); }

int64_t IncrementalClassifierImpl::out_features() const { return head_->weight.size(0); }

bool IncrementalClassifierImpl::grow_to(int64_t outputs) {
  if (outputs <= out_features()) return false;
  resize_to(outputs);
  return true;
}

void IncrementalClassifierImpl::resize_to(int64_t outputs) {
  const int64_t old = out_features();
  if (outputs == old) return;
  torch::nn::Linear resized(in_features_, outputs);
  resized->to(head_->weight.device());
  {
    torch::NoGradGuard no_grad;
    const int64_t keep = std::min(old, outputs);
    resized->weight.narrow(0, 0, keep).copy_(head_->weight.narrow(0, 0, keep));
    resized->bias.narrow(0, 0, keep).copy_(head_->bias.narrow(0, 0, keep));
  }
  head_ = replace_module("head", resized);
}

at::Tensor MultiHeadClassifierImpl::forward(const at::Tensor& x, const at::Tensor& tasks) {
  const int64_t width = out_features();
  at::Tensor out = at::full({x.size(0), width}, kMaskValue, x.options());
  const at::Tensor t = tasks.defined() ? tasks.to(at::kCPU) : at::zeros({x.size(0)}, at::kLong);
  for (auto& [task, head] : heads_) {
    at::Tensor rows = t.eq(task).nonzero().flatten();
    if (rows.numel() == 0) continue;
    rows = rows.to(x.device());
    at::Tensor logits = head->forward(x.index_select(0, rows));
    const at::Tensor& active = active_.at(task);
    logits = logits.masked_fill(active.logical_not(), kMaskValue);
    at::Tensor full = at::full({rows.size(0), width}, kMaskValue, logits.options());
    full.narrow(1, 0, logits.size(1)).copy_(logits);
    out = out.index_copy(0, rows, full);
  }
  // A sample of a task with no head yet (evaluating future tasks) keeps
  // every class at the mask value: the model has no answer for it.
  return out;
}

bool MultiHeadClassifierImpl::adapt(int64_t task, const std::vector<int64_t>& classes) {
  int64_t needed = 1;
  for (int64_t c : classes) needed = std::max(needed, c + 1);
  bool changed = false;
  auto it = heads_.find(task);
  const c10::Device dev = heads_.empty() ? c10::Device(c10::kCPU)
                                         : heads_.begin()->second->parameters().front().device();
  if (it == heads_.end()) {
    IncrementalClassifier head(in_features_, needed);
    head->to(dev);
    it = heads_.emplace(task, register_module("task" + std::to_string(task), head)).first;
    active_[task] = register_buffer("active" + std::to_string(task), at::zeros({needed}, at::dtype(at::kBool).device(dev)));
    changed = true;
  } else if (it->second->grow_to(needed)) {
    changed = true;
  }
  at::Tensor& active = active_[task];
  if (active.size(0) < needed) {
    at::Tensor grown = at::zeros({needed}, active.options());
    grown.narrow(0, 0, active.size(0)).copy_(active);
    active = register_buffer("active" + std::to_string(task), grown);
  }
  for (int64_t c : classes) active[c] = true;
  return changed;
}

void MultiHeadClassifierImpl::resize_to(const std::map<int64_t, int64_t>& widths) {
  // Heads are only added (the loader refuses a checkpoint that lacks one of
  // the live model's heads).
  for (const auto& [task, width] : widths) {
    auto it = heads_.find(task);
    if (it == heads_.end()) {
      adapt(task, {width - 1});
    } else {
      it->second->resize_to(width);
    }
    at::Tensor& active = active_[task];
    if (active.size(0) != width) {
      active = register_buffer("active" + std::to_string(task), at::zeros({width}, active.options()));
    }
  }
}

std::map<int64_t, int64_t> MultiHeadClassifierImpl::widths() const {
  std::map<int64_t, int64_t> w;
  for (const auto& [task, head] : heads_) w[task] = head->out_features();
  return w;
}

int64_t MultiHeadClassifierImpl::out_features() const {
  int64_t w = 0;
  for (const auto& [task, head] : heads_) w = std::max(w, head->out_features());
  return w;
}

void Model::make_classifier(int64_t feature_size) {
  feature_size_ = feature_size;
  if (options_.multi_head_) {
    multi_ = register_module("classifier", MultiHeadClassifier(feature_size));
  } else {
    classifier_ = register_module("classifier", IncrementalClassifier(feature_size, options_.initial_classes_));
  }
}

at::Tensor Model::forward(const at::Tensor& x, const at::Tensor& tasks) { return head(features(x), tasks); }

at::Tensor Model::head(const at::Tensor& h, const at::Tensor& tasks) {
  return multi_ ? multi_->forward(h, tasks) : classifier_->forward(h);
}

int64_t Model::feature_size() const { return feature_size_; }

int64_t Model::num_outputs() const { return multi_ ? multi_->out_features() : classifier_->out_features(); }

bool Model::adapt(const std::vector<int64_t>& classes, int64_t task) {
  if (multi_) return multi_->adapt(task, classes);
  int64_t needed = 0;
  for (int64_t c : classes) needed = std::max(needed, c + 1);
  return classifier_->grow_to(needed);
}

void Model::save_state(StateWriter& writer) const {
  writer.write("options", options_.to_json());
  if (multi_) {
    nlohmann::json w = nlohmann::json::object();
    for (const auto& [task, width] : multi_->widths()) w[std::to_string(task)] = width;
    writer.write("heads", w);
  }
  for (const auto& p : named_parameters()) writer.write(p.key(), p.value());
  for (const auto& b : named_buffers()) writer.write(b.key(), b.value());
}

void Model::load_state(const StateReader& reader) { load_staged(*this, reader); }

void Model::stage_load(const StateReader& reader, LoadTransaction& tx) {
  if (multi_) {
    stage_load_multi_head(reader, tx);
    return;
  }
  if (reader.has("heads")) reader.fail("heads", "the checkpoint's model has one head per task, this one a single head");
  // The head may have grown since this model was built: the commit resizes it
  // first so the shapes below match.
  const std::string head_key = "classifier.head.weight";
  const at::Tensor& saved_head = reader.tensor(head_key);
  if (saved_head.dim() != 2) reader.fail(head_key, "expected a 2-d tensor");
  if (saved_head.size(0) < 1) reader.fail(head_key, "the head has no outputs");
  // Check every shape before changing anything.
  auto check = [&](const std::string& name, const at::Tensor& live) {
    const at::Tensor& t = reader.tensor(name);
    auto expected = live.sizes().vec();
    if (name.rfind("classifier.head.", 0) == 0) expected[0] = saved_head.size(0);
    if (t.sizes().vec() != expected || t.scalar_type() != live.scalar_type()) {
      reader.fail(name, "shape " + c10::str(t.sizes()) + " " + std::string(c10::toString(t.scalar_type())) +
                            " does not fit the model's " + c10::str(live.sizes()) + " " +
                            std::string(c10::toString(live.scalar_type())));
    }
  };
  for (const auto& p : named_parameters()) check(p.key(), p.value());
  for (const auto& b : named_buffers()) check(b.key(), b.value());

  tx.then([this, reader, outputs = saved_head.size(0)] {
    // To the saved size, growing or shrinking: a checkpoint older than the
    // live model may have fewer classes. Then straight into the live tensors.
    classifier_->resize_to(outputs);
    for (auto& p : named_parameters()) reader.copy_into(p.key(), p.value());
    for (auto& b : named_buffers()) reader.copy_into(b.key(), b.value());
  });
}

void Model::stage_load_multi_head(const StateReader& reader, LoadTransaction& tx) {
  if (!reader.has("heads")) reader.fail("heads", "missing: this model has one head per task");
  std::map<int64_t, int64_t> widths;
  const nlohmann::json& heads = reader.json("heads");
  if (!heads.is_object() || heads.size() > 100000) reader.fail("heads", "not a map of task to width");
  for (const auto& [task, width] : heads.items()) {
    int64_t t = -1;
    try {
      t = std::stoll(task);
    } catch (const std::exception&) {
    }
    if (t < 0 || !width.is_number_integer() || width.get<int64_t>() < 1 || width.get<int64_t>() > (1 << 24)) {
      reader.fail("heads", "entry '" + task + "' is not a task and a width");
    }
    const std::string k = "classifier.task" + task + ".head.";
    const at::Tensor& w = reader.tensor(k + "weight");
    const at::Tensor& b = reader.tensor(k + "bias");
    const at::Tensor& a = reader.tensor("classifier.active" + task);
    if (w.dim() != 2 || w.size(0) != width.get<int64_t>() || w.size(1) != feature_size() ||
        b.dim() != 1 || b.size(0) != w.size(0) || a.dim() != 1 || a.size(0) != w.size(0) ||
        a.scalar_type() != at::kBool) {
      reader.fail(k + "weight", "head of task " + task + " does not fit width " + width.dump() +
                                    " on " + std::to_string(feature_size()) + " features");
    }
    widths[t] = width.get<int64_t>();
  }
  for (const auto& p : named_parameters()) {
    if (p.key().rfind("classifier.", 0) == 0) continue;
    const at::Tensor& t = reader.tensor(p.key());
    if (t.sizes() != p.value().sizes() || t.scalar_type() != p.value().scalar_type()) {
      reader.fail(p.key(), "shape " + c10::str(t.sizes()) + " does not fit the model's " + c10::str(p.value().sizes()));
    }
  }
  const auto live = multi_->widths();
  for (const auto& [task, width] : live) {
    if (!widths.count(task)) {
      reader.fail("heads", "the model has a head for task " + std::to_string(task) + " the checkpoint lacks");
    }
  }
  tx.then([this, reader, widths] {
    multi_->resize_to(widths);
    for (auto& p : named_parameters()) reader.copy_into(p.key(), p.value());
    for (auto& b : named_buffers()) reader.copy_into(b.key(), b.value());
  });
}

std::shared_ptr<Model> Model::clone_empty() const { return make_model(options_); }

std::shared_ptr<Model> Model::clone_model() const {
  auto copy = clone_empty();
  copy->to(parameters().front().device());
  StateTree tree;
  StateWriter w(tree);
  save_state(w);
  copy->load_state(StateReader(tree));
  copy->train(is_training());
  return copy;
}

SimpleMLP::SimpleMLP(const ModelOptions& o) : Model(o) {
  torch::nn::Sequential seq;
  int64_t in = o.input_size_;
  for (int64_t i = 0; i < o.layers_; ++i) {
    seq->push_back(torch::nn::Linear(in, o.hidden_));
    seq->push_back(torch::nn::ReLU());
    if (o.dropout_ > 0) seq->push_back(Dropout(o.dropout_));
    in = o.hidden_;
  }
  features_ = register_module("features", seq);
  make_classifier(in);
}

at::Tensor SimpleMLP::features(const at::Tensor& x) {
  at::Tensor h = x.reshape({x.size(0), -1});
  if (!features_->is_empty()) h = features_->forward(h);
  return h;
}

SimpleCNN::SimpleCNN(const ModelOptions& o) : Model(o) {
  torch::nn::Sequential seq(
      torch::nn::Conv2d(torch::nn::Conv2dOptions(o.channels_, 16, 3).padding(1)),
      torch::nn::ReLU(), torch::nn::MaxPool2d(2),
      torch::nn::Conv2d(torch::nn::Conv2dOptions(16, 32, 3).padding(1)), torch::nn::ReLU(),
      torch::nn::MaxPool2d(2), torch::nn::Flatten(),
      torch::nn::Linear(32 * (o.image_size_ / 4) * (o.image_size_ / 4), o.hidden_),
      torch::nn::ReLU());
  if (o.dropout_ > 0) seq->push_back(Dropout(o.dropout_));
  features_ = register_module("features", seq);
  make_classifier(o.hidden_);
}

at::Tensor SimpleCNN::features(const at::Tensor& x) {
  at::Tensor h = x;
  if (h.dim() == 2) {
    h = h.reshape({h.size(0), options_.channels_, options_.image_size_, options_.image_size_});
  }
  return features_->forward(h);
}

namespace {

torch::nn::Conv2d conv3x3(int64_t in, int64_t out, int64_t stride) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false));
}

// The reference's BasicBlock: two 3x3 convolutions with BatchNorm, and a
// 1x1 convolution + BatchNorm on the shortcut when the shape changes.
class BasicBlockImpl : public torch::nn::Module {
 public:
  BasicBlockImpl(int64_t in, int64_t planes, int64_t stride) {
    conv1_ = register_module("conv1", conv3x3(in, planes, stride));
    bn1_ = register_module("bn1", torch::nn::BatchNorm2d(planes));
    conv2_ = register_module("conv2", conv3x3(planes, planes, 1));
    bn2_ = register_module("bn2", torch::nn::BatchNorm2d(planes));
    if (stride != 1 || in != planes) {
      shortcut_ = register_module(
          "shortcut",
          torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, planes, 1).stride(stride).bias(false)),
                                torch::nn::BatchNorm2d(planes)));
    }
  }
  at::Tensor forward(const at::Tensor& x) {
    // In place where autograd allows it, as the reference (out += ...) and
    // torchvision (ReLU(inplace=True)) do: fewer allocations per step.
    at::Tensor out = bn1_->forward(conv1_->forward(x)).relu_();
    out = bn2_->forward(conv2_->forward(out));
    out += shortcut_ ? shortcut_->forward(x) : x;
    return out.relu_();
  }

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr};
  torch::nn::Sequential shortcut_{nullptr};  // identity when null (the reference's empty Sequential)
};
TORCH_MODULE(BasicBlock);

}  // namespace

// The reduced ResNet-18 without its classifier: stem, four stages of two
// BasicBlocks, global average pooling.
class ResNetFeaturesImpl : public torch::nn::Module {
 public:
  ResNetFeaturesImpl(int64_t channels, int64_t nf) {
    conv1_ = register_module("conv1", conv3x3(channels, nf, 1));
    bn1_ = register_module("bn1", torch::nn::BatchNorm2d(nf));
    int64_t in = nf;
    const int64_t widths[4] = {nf, 2 * nf, 4 * nf, 8 * nf};
    const int64_t strides[4] = {1, 2, 2, 2};
    for (int k = 0; k < 4; ++k) {
      torch::nn::Sequential stage(BasicBlock(in, widths[k], strides[k]), BasicBlock(widths[k], widths[k], 1));
      layers_[k] = register_module("layer" + std::to_string(k + 1), stage);
      in = widths[k];
    }
  }
  at::Tensor forward(const at::Tensor& x) {
    at::Tensor out = bn1_->forward(conv1_->forward(x)).relu_();
    for (auto& stage : layers_) out = stage->forward(out);
    // Adaptive: 4x4 maps of 32x32 inputs (the reference's avg_pool2d(out, 4))
    // and the 4x4 maps of 28x28 ones alike.
    return at::adaptive_avg_pool2d(out, {1, 1}).flatten(1);
  }

 private:
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr};
  torch::nn::Sequential layers_[4] = {nullptr, nullptr, nullptr, nullptr};
};

ReducedResNet18::ReducedResNet18(const ModelOptions& o) : Model(o) {
  features_ = register_module("features", std::make_shared<ResNetFeaturesImpl>(o.channels_, o.nf_));
  make_classifier(8 * o.nf_);
}

at::Tensor ReducedResNet18::features(const at::Tensor& x) {
  at::Tensor h = x;
  const int64_t c = options_.channels_, side = options_.image_size_;
  if (h.dim() == 2 && h.size(1) == c * side * side) h = h.reshape({h.size(0), c, side, side});
  if (h.dim() != 4 || h.size(1) != c) {
    throw InvalidArgument("resnet18: inputs must be images [B, " + std::to_string(c) + ", H, W] (or [B, " +
                          std::to_string(c * side * side) + "]), got " + c10::str(h.sizes()));
  }
  return features_->forward(h);
}

namespace {
class CustomFeaturesModel : public Model {
 public:
  CustomFeaturesModel(FeatureExtractor extractor, const ModelOptions& o)
      : Model(o), extractor_(std::move(extractor)) {
    register_module("features", extractor_.module);
    make_classifier(o.hidden_);
  }
  at::Tensor features(const at::Tensor& x) override { return extractor_.forward(*extractor_.module, x); }
  std::shared_ptr<Model> clone_empty() const override {
    // A deep copy of the extractor (its weights are overwritten by the
    // caller's load), a fresh head.
    return std::make_shared<CustomFeaturesModel>(FeatureExtractor{extractor_.module->clone(), extractor_.forward},
                                                 options_);
  }

 private:
  FeatureExtractor extractor_;
};
}  // namespace

std::shared_ptr<Model> make_model_with_features(FeatureExtractor extractor, int64_t feature_size,
                                                ModelOptions options) {
  if (!extractor.module || !extractor.forward) {
    throw InvalidArgument("make_model_with_features: the extractor is empty");
  }
  if (feature_size <= 0) throw InvalidArgument("make_model_with_features: feature_size must be > 0");
  options.type("custom").hidden(feature_size);
  return std::make_shared<CustomFeaturesModel>(std::move(extractor), options);
}

std::shared_ptr<Model> make_model(const ModelOptions& o) {
  if (o.input_size_ <= 0) throw InvalidArgument("model input size must be > 0");
  if (o.hidden_ <= 0) throw InvalidArgument("--hidden must be > 0");
  if (o.layers_ < 0) throw InvalidArgument("model layers must be >= 0");
  if (o.dropout_ < 0 || o.dropout_ >= 1) throw InvalidArgument("dropout must be in [0, 1)");
  if (o.initial_classes_ <= 0) throw InvalidArgument("initial classes must be > 0");
  if (o.type_ == "mlp") return std::make_shared<SimpleMLP>(o);
  if (o.type_ == "cnn") {
    if (o.image_size_ < 4 || o.image_size_ * o.image_size_ * o.channels_ != o.input_size_) {
      throw InvalidArgument("cnn needs square images: channels*image_size^2 == input size");
    }
    return std::make_shared<SimpleCNN>(o);
  }
  if (o.type_ == "resnet18") {
    if (o.channels_ < 1 || o.image_size_ < 1 || o.channels_ * o.image_size_ * o.image_size_ != o.input_size_) {
      throw InvalidArgument("--model resnet18 needs image inputs (channels x S x S): the input is " +
                            std::to_string(o.input_size_) + " values, not " + std::to_string(o.channels_) +
                            " channel(s) of " + std::to_string(o.image_size_) + "x" +
                            std::to_string(o.image_size_));
    }
    // Bounded: the options come from checkpoints too, and the widths set the
    // allocation (8*nf channels in the last stage).
    if (o.nf_ < 1 || o.nf_ > kMaxResNetFilters) {
      throw InvalidArgument("resnet18: nf must be in [1, " + std::to_string(kMaxResNetFilters) + "], got " +
                            std::to_string(o.nf_));
    }
    return std::make_shared<ReducedResNet18>(o);
  }
  if (o.type_ == "custom") {
    throw InvalidArgument("a model of type 'custom' is built by make_model_with_features, not make_model");
  }
  throw InvalidArgument("--model: unknown model '" + o.type_ + "' (known: mlp, cnn, resnet18)");
}

}  // namespace continua
