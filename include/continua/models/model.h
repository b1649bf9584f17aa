// Models: a feature extractor and a classifier head on top of it. The head
// grows when an experience brings new classes; with multi_head(true) there
// is one head per task (task-incremental learning), each grown with its
// task's classes, the other classes masked.
//
//   auto model = continua::make_model(continua::ModelOptions()
//                                         .type("mlp").input_size(784).hidden(512));
//   model->adapt({0, 1, 7});          // head now has 8 outputs, old rows kept
//   at::Tensor logits = model->forward(x);
//   at::Tensor h = model->features(x);  // what plugins read (iCaRL, LFL, ...)
//   at::Tensor same = model->head(h);
//
// The reduced ResNet-18 of the continual-learning papers (GEM's code,
// Avalanche's SlimResNet18): BasicBlocks [2, 2, 2, 2], nf = 20 base filters,
// BatchNorm after every convolution, global average pooling to 8*nf = 160
// features, continua's growing head on top. Its BatchNorm running statistics
// are buffers, saved and loaded with the parameters:
//
//   auto resnet = continua::make_model(continua::ModelOptions()
//                                          .type("resnet18").input_size(3 * 32 * 32)
//                                          .channels(3).image_size(32));
//   at::Tensor logits = resnet->forward(x);  // x: [B, 3, 32, 32] (or [B, 3072])
//
// A user's own torch::nn::Module is the feature extractor through
// make_model_with_features (its forward maps a batch to [B, feature_size]);
// continua's head goes on top, and it checkpoints like the built-in models:
//
//   auto model = continua::make_model_with_features(
//       torch::nn::Sequential(torch::nn::Flatten(), torch::nn::Linear(784, 64), torch::nn::ReLU()),
//       /*feature_size=*/64);
//
// A model's state (save_state) is its named parameters and buffers with their
// current shapes; load_state first grows the head to the saved shape, so a
// checkpoint of a grown model loads into a freshly built one.
//
// Contract: make_model throws continua::InvalidArgument for an unknown type,
// a non-positive size, or (cnn, resnet18) inputs that are not square images
// (channels * image_size^2 != input_size); load_state throws
// continua::InvalidArgument naming the key whose shape does not fit. Models
// with BatchNorm (resnet18) use batch statistics in train() mode and update
// their running statistics; in eval() mode they use the running statistics,
// so a sample's output does not depend on the rest of its batch.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "continua/state/state_tree.h"

namespace continua {

// The score of a class a head does not have (yet): never predicted, a finite
// loss (Avalanche's masking value).
constexpr double kMaskValue = -1000.0;

// The widest resnet18 make_model builds (nf; the full-width ResNet-18 is 64).
constexpr int64_t kMaxResNetFilters = 256;

struct ModelOptions {
  ModelOptions& type(std::string v) { type_ = std::move(v); return *this; }
  ModelOptions& input_size(int64_t v) { input_size_ = v; return *this; }
  ModelOptions& hidden(int64_t v) { hidden_ = v; return *this; }
  ModelOptions& layers(int64_t v) { layers_ = v; return *this; }
  ModelOptions& dropout(double v) { dropout_ = v; return *this; }
  ModelOptions& initial_classes(int64_t v) { initial_classes_ = v; return *this; }
  ModelOptions& channels(int64_t v) { channels_ = v; return *this; }
  ModelOptions& image_size(int64_t v) { image_size_ = v; return *this; }
  ModelOptions& multi_head(bool v) { multi_head_ = v; return *this; }
  ModelOptions& nf(int64_t v) { nf_ = v; return *this; }

  nlohmann::json to_json() const;
  static ModelOptions from_json(const nlohmann::json& j);

  std::string type_ = "mlp";  // mlp, cnn, resnet18; "custom" for make_model_with_features
  int64_t input_size_ = 784;
  int64_t hidden_ = 512;
  int64_t layers_ = 1;
  double dropout_ = 0.0;
  int64_t initial_classes_ = 2;
  int64_t channels_ = 1;     // cnn, resnet18
  int64_t image_size_ = 28;  // cnn, resnet18: square images
  bool multi_head_ = false;  // one head per task
  // resnet18: base filters (widths nf, 2nf, 4nf, 8nf). Written to the
  // options JSON of a resnet18 only, so other models' state is as before.
  int64_t nf_ = 20;
};

// A linear output layer that grows to cover every class seen so far.
class IncrementalClassifierImpl : public torch::nn::Module {
 public:
  IncrementalClassifierImpl(int64_t in_features, int64_t initial_classes);
  at::Tensor forward(const at::Tensor& x);
  // Grows to max(classes)+1 outputs if needed; old rows are kept. Returns
  // true if it grew (the head's parameters are then new tensors).
  bool grow_to(int64_t out_features);
  // Exactly `outputs` rows (the first min(old, new) kept): for loads.
  void resize_to(int64_t outputs);
  int64_t out_features() const;
  int64_t in_features() const { return in_features_; }

 private:
  int64_t in_features_;
  torch::nn::Linear head_{nullptr};
};
TORCH_MODULE(IncrementalClassifier);

// One IncrementalClassifier per task (Avalanche's MultiHeadClassifier): the
// rows of task t's output are its head's logits for the classes task t has
// shown, every other class at the mask value. Parameters
// "task<t>.head.weight" and "task<t>.head.bias"; the buffer "active<t>"
// (bool, the classes task t has shown).
class MultiHeadClassifierImpl : public torch::nn::Module {
 public:
  explicit MultiHeadClassifierImpl(int64_t in_features) : in_features_(in_features) {}
  // tasks: int64 [B]; the output is as wide as the widest head.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& tasks);
  // Makes room for the classes in task's head; true if parameters changed.
  bool adapt(int64_t task, const std::vector<int64_t>& classes);
  // Exactly these tasks with these widths (loads); active masks are then
  // copied in by the loader.
  void resize_to(const std::map<int64_t, int64_t>& widths);
  std::map<int64_t, int64_t> widths() const;
  int64_t out_features() const;

 private:
  int64_t in_features_;
  std::map<int64_t, IncrementalClassifier> heads_;
  std::map<int64_t, at::Tensor> active_;
};
TORCH_MODULE(MultiHeadClassifier);

class Model : public torch::nn::Module, public Stateful {
 public:
  explicit Model(ModelOptions options) : options_(std::move(options)) {}
  // The classifier's logits. tasks (int64 [B]) chooses each sample's head
  // in a multi-head model; a single-head model ignores it.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& tasks = {});
  // [B, feature_size()]: the input to the head.
  virtual at::Tensor features(const at::Tensor& x) = 0;
  at::Tensor head(const at::Tensor& features, const at::Tensor& tasks = {});
  int64_t feature_size() const;

  // Makes room for the classes (in task's head for a multi-head model);
  // true if the parameter set changed.
  bool adapt(const std::vector<int64_t>& classes, int64_t task = 0);
  int64_t num_outputs() const;
  bool multi_head() const { return options_.multi_head_; }
  const ModelOptions& options() const { return options_; }

  // A new model of the same options with a copy of this one's state.
  std::shared_ptr<Model> clone_model() const;
  // A new model of the same architecture (its own initial weights, drawn
  // from torch's generator for the built-in models).
  virtual std::shared_ptr<Model> clone_empty() const;

  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;

 protected:
  void stage_load_multi_head(const StateReader& reader, LoadTransaction& tx);
  // Registers the head(s) on top of features of this size.
  void make_classifier(int64_t feature_size);
  ModelOptions options_;
  int64_t feature_size_ = 0;
  IncrementalClassifier classifier_{nullptr};
  MultiHeadClassifier multi_{nullptr};
};

class SimpleMLP : public Model {
 public:
  explicit SimpleMLP(const ModelOptions& options);
  at::Tensor features(const at::Tensor& x) override;

 private:
  torch::nn::Sequential features_{nullptr};
};

class SimpleCNN : public Model {
 public:
  explicit SimpleCNN(const ModelOptions& options);
  at::Tensor features(const at::Tensor& x) override;

 private:
  torch::nn::Sequential features_{nullptr};
};

class ResNetFeaturesImpl;

// The reduced ResNet-18 (type "resnet18"). Parameter and buffer names follow
// the reference code under "features." (conv1, bn1, layer1.0.conv1, ...,
// layer2.0.shortcut.0 / .1); the head is "classifier." as in every model.
// Inputs [B, C, H, W] of any size (average pooling is adaptive), or [B,
// C*S*S] reshaped to the options' square images.
class ReducedResNet18 : public Model {
 public:
  explicit ReducedResNet18(const ModelOptions& options);
  at::Tensor features(const at::Tensor& x) override;

 private:
  std::shared_ptr<ResNetFeaturesImpl> features_;
};

std::shared_ptr<Model> make_model(const ModelOptions& options);

// A user's module as a feature extractor: the module (cloneable: a
// torch::nn::Sequential or a module deriving from torch::nn::Cloneable) and
// how to call its forward, which maps a batch to [B, feature_size].
struct FeatureExtractor {
  std::shared_ptr<torch::nn::Module> module;
  std::function<at::Tensor(torch::nn::Module&, const at::Tensor&)> forward;

  template <typename Holder>
  static FeatureExtractor of(Holder holder) {
    using Impl = typename Holder::ContainedType;
    return {holder.ptr(), [](torch::nn::Module& m, const at::Tensor& x) -> at::Tensor {
              return dynamic_cast<Impl&>(m).forward(x);
            }};
  }
};

// A model whose feature extractor is the user's module, continua's head on
// top. Options' type becomes "custom"; hidden is the feature size.
std::shared_ptr<Model> make_model_with_features(FeatureExtractor extractor, int64_t feature_size,
                                                ModelOptions options = ModelOptions());
template <typename Holder, typename = typename Holder::ContainedType>
std::shared_ptr<Model> make_model_with_features(Holder module, int64_t feature_size,
                                                ModelOptions options = ModelOptions()) {
  return make_model_with_features(FeatureExtractor::of(std::move(module)), feature_size, std::move(options));
}

}  // namespace continua
