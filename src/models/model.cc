#include "continua/models/model.h"

#include <torch/torch.h>

#include "continua/errors.h"

namespace continua {

nlohmann::json ModelOptions::to_json() const {
  return {{"type", type_},       {"input_size", input_size_},
          {"hidden", hidden_},   {"layers", layers_},
          {"dropout", dropout_}, {"initial_classes", initial_classes_},
          {"channels", channels_}, {"image_size", image_size_}};
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

bool Model::adapt(const std::vector<int64_t>& classes) {
  int64_t needed = 0;
  for (int64_t c : classes) needed = std::max(needed, c + 1);
  return classifier_->grow_to(needed);
}

void Model::save_state(StateWriter& writer) const {
  writer.write("options", options_.to_json());
  for (const auto& p : named_parameters()) writer.write(p.key(), p.value());
  for (const auto& b : named_buffers()) writer.write(b.key(), b.value());
}

void Model::load_state(const StateReader& reader) { load_staged(*this, reader); }

void Model::stage_load(const StateReader& reader, LoadTransaction& tx) {
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

std::shared_ptr<Model> Model::clone_model() const {
  auto copy = make_model(options_);
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
    if (o.dropout_ > 0) seq->push_back(torch::nn::Dropout(o.dropout_));
    in = o.hidden_;
  }
  features_ = register_module("features", seq);
  classifier_ = register_module("classifier", IncrementalClassifier(in, o.initial_classes_));
}

at::Tensor SimpleMLP::forward(const at::Tensor& x) {
  at::Tensor h = x.reshape({x.size(0), -1});
  if (!features_->is_empty()) h = features_->forward(h);
  return classifier_->forward(h);
}

SimpleCNN::SimpleCNN(const ModelOptions& o) : Model(o) {
  torch::nn::Sequential seq(
      torch::nn::Conv2d(torch::nn::Conv2dOptions(o.channels_, 16, 3).padding(1)),
      torch::nn::ReLU(), torch::nn::MaxPool2d(2),
      torch::nn::Conv2d(torch::nn::Conv2dOptions(16, 32, 3).padding(1)), torch::nn::ReLU(),
      torch::nn::MaxPool2d(2), torch::nn::Flatten(),
      torch::nn::Linear(32 * (o.image_size_ / 4) * (o.image_size_ / 4), o.hidden_),
      torch::nn::ReLU());
  if (o.dropout_ > 0) seq->push_back(torch::nn::Dropout(o.dropout_));
  features_ = register_module("features", seq);
  classifier_ = register_module("classifier", IncrementalClassifier(o.hidden_, o.initial_classes_));
}

at::Tensor SimpleCNN::forward(const at::Tensor& x) {
  at::Tensor h = x;
  if (h.dim() == 2) {
    h = h.reshape({h.size(0), options_.channels_, options_.image_size_, options_.image_size_});
  }
  return classifier_->forward(features_->forward(h));
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
  throw InvalidArgument("--model: unknown model '" + o.type_ + "' (known: mlp, cnn)");
}

}  // namespace continua
