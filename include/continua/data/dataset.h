// Datasets: random-access, in-memory collections of (input, target) samples.
//
// A Dataset hands out mini-batches by index. Inputs are returned as float32
// (uint8 pixels scaled to [0, 1]); targets as int64 class labels.
//
//   auto train = continua::IdxDataset::open(
//       "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz",
//       "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz");
//   continua::Batch b = train->get(torch::arange(0, 32));  // b.x: [32, 1, 28, 28]
//
// IdxDataset and SyntheticDataset are constructor-serialized
// (SerializableObject): a checkpoint stores their paths or generating
// parameters, never their samples.
//
// Contract: IdxDataset::open throws continua::IoError when a file cannot be
// read and continua::CorruptionError, naming the file, for a wrong magic
// number, a truncated file or image and label counts that differ.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "continua/state/object_registry.h"

namespace continua {

struct Batch {
  at::Tensor x;  // float32 [B, sample_shape...]
  at::Tensor y;  // int64 [B]
  at::Tensor t;  // int64 [B], task labels (set by an experience; undefined from a dataset)
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual std::vector<int64_t> sample_shape() const = 0;
  virtual Batch get(const at::Tensor& indices) const = 0;
  // int64 [size()]: every sample's label, for class splits and balancing.
  virtual const at::Tensor& targets() const = 0;
};

// uint8 pixels as float32 in [0, 1] (x / 255, as torchvision's ToTensor):
// the one conversion every dataset and benchmark uses.
at::Tensor bytes_to_float(const at::Tensor& bytes);

// Samples held as tensors: inputs of any dtype (uint8 is scaled by 1/255) and
// int64 targets.
class TensorDataset : public Dataset {
 public:
  TensorDataset(at::Tensor inputs, at::Tensor targets);
  int64_t size() const override;
  std::vector<int64_t> sample_shape() const override;
  Batch get(const at::Tensor& indices) const override;
  const at::Tensor& targets() const override { return targets_; }
  const at::Tensor& inputs() const { return inputs_; }

 private:
  at::Tensor inputs_;
  at::Tensor targets_;
};

// Raw contents of one IDX file (MNIST format), gzip-compressed or plain.
struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;  // unsigned byte data only (type code 0x08)
};
IdxArray read_idx_file(const std::string& path);

// An images file and a labels file in IDX format, e.g. Fashion-MNIST.
class IdxDataset : public TensorDataset, public SerializableObject {
 public:
  static std::shared_ptr<IdxDataset> open(const std::string& images_path,
                                          const std::string& labels_path);
  std::string type_name() const override { return "idx-dataset"; }
  nlohmann::json constructor_args() const override;

  const std::string& images_path() const { return images_path_; }
  const std::string& labels_path() const { return labels_path_; }

  IdxDataset(at::Tensor inputs, at::Tensor targets, std::string images_path,
             std::string labels_path);

 private:
  std::string images_path_;
  std::string labels_path_;
};

// Gaussian class clusters, generated from a seed: small, learnable, and
// rebuilt bit-identically from its arguments. For tests and quick runs.
struct SyntheticOptions {
  int64_t samples_per_class = 100;
  int64_t classes = 10;
  int64_t features = 32;
  double noise = 1.0;
  uint64_t seed = 0;
};
class SyntheticDataset : public TensorDataset, public SerializableObject {
 public:
  explicit SyntheticDataset(const SyntheticOptions& options);
  std::string type_name() const override { return "synthetic-dataset"; }
  nlohmann::json constructor_args() const override;
  const SyntheticOptions& options() const { return options_; }

 private:
  SyntheticDataset(const SyntheticOptions& options, std::pair<at::Tensor, at::Tensor> samples);
  SyntheticOptions options_;
};

}  // namespace continua
