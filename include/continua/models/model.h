// Models: SimpleMLP, a small CNN, and the incremental classifier head they
// share, which grows when an experience brings new classes.
//
//   auto model = continua::make_model(continua::ModelOptions()
//                                         .type("mlp").input_size(784).hidden(512));
//   model->adapt({0, 1, 7});          // head now has 8 outputs, old rows kept
//   at::Tensor logits = model->forward(x);
//
// A model's state (save_state) is its named parameters and buffers with their
// current shapes; load_state first grows the head to the saved shape, so a
// checkpoint of a grown model loads into a freshly built one.
//
// Contract: make_model throws continua::InvalidArgument for an unknown type or
// a non-positive size; load_state throws continua::InvalidArgument naming the
// key whose shape does not fit.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>

#include <memory>
#include <string>
#include <vector>

#include "continua/state/state_tree.h"

namespace continua {

struct ModelOptions {
  ModelOptions& type(std::string v) { type_ = std::move(v); return *this; }
  ModelOptions& input_size(int64_t v) { input_size_ = v; return *this; }
  ModelOptions& hidden(int64_t v) { hidden_ = v; return *this; }
  ModelOptions& layers(int64_t v) { layers_ = v; return *this; }
  ModelOptions& dropout(double v) { dropout_ = v; return *this; }
  ModelOptions& initial_classes(int64_t v) { initial_classes_ = v; return *this; }
  ModelOptions& channels(int64_t v) { channels_ = v; return *this; }
  ModelOptions& image_size(int64_t v) { image_size_ = v; return *this; }

  nlohmann::json to_json() const;
  static ModelOptions from_json(const nlohmann::json& j);

  std::string type_ = "mlp";  // mlp, cnn
  int64_t input_size_ = 784;
  int64_t hidden_ = 512;
  int64_t layers_ = 1;
  double dropout_ = 0.0;
  int64_t initial_classes_ = 2;
  int64_t channels_ = 1;     // cnn
  int64_t image_size_ = 28;  // cnn: square images
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

 private:
  int64_t in_features_;
  torch::nn::Linear head_{nullptr};
};
TORCH_MODULE(IncrementalClassifier);

class Model : public torch::nn::Module, public Stateful {
 public:
  explicit Model(ModelOptions options) : options_(std::move(options)) {}
  virtual at::Tensor forward(const at::Tensor& x) = 0;

  // Makes room for the classes; true if the parameter set changed.
  bool adapt(const std::vector<int64_t>& classes);
  int64_t num_outputs() const { return classifier_->out_features(); }
  const ModelOptions& options() const { return options_; }

  // A new model of the same options with a copy of this one's state.
  std::shared_ptr<Model> clone_model() const;

  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;

 protected:
  ModelOptions options_;
  IncrementalClassifier classifier_{nullptr};
};

class SimpleMLP : public Model {
 public:
  explicit SimpleMLP(const ModelOptions& options);
  at::Tensor forward(const at::Tensor& x) override;

 private:
  torch::nn::Sequential features_{nullptr};
};

class SimpleCNN : public Model {
 public:
  explicit SimpleCNN(const ModelOptions& options);
  at::Tensor forward(const at::Tensor& x) override;

 private:
  torch::nn::Sequential features_{nullptr};
};

std::shared_ptr<Model> make_model(const ModelOptions& options);

}  // namespace continua
