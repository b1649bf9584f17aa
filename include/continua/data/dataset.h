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
// IdxDataset, SyntheticDataset and the data sets read from user files
// (CifarDataset, NpyDataset, CsvDataset, ImageFolderDataset; open_dataset_pair
// opens both splits of any of them) are constructor-serialized
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

#include "continua/data/readers.h"
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
  // The name of each class (class_names()[label]) when the data set has
  // them (image folders, CSV label names, CIFAR's names files); else empty.
  virtual std::vector<std::string> class_names() const { return {}; }
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

// ---- Data sets read from the files people bring (readers.h, docs/datasets.md) ----
//
// One split (train or test) of a data set on disk. Constructor-serialized:
// a checkpoint stores the type and {path, split, ...}, never the samples, and
// a live data set handed in as a unique object is reused on load. uint8
// pixels stay uint8 in memory (get() scales them by 1/255); other inputs are
// float32.
//
//   auto train = continua::CifarDataset::open("/data/cifar", continua::readers::Split::kTrain);
//   auto [tr, te] = continua::open_dataset_pair("npy", "/data/mine.npz", pool);
//
// Contract: open() and the factories throw what the readers throw (IoError,
// CorruptionError, InvalidArgument naming the file and record) and
// InvalidArgument for malformed constructor arguments.
class FileDataset : public TensorDataset, public SerializableObject {
 public:
  std::string type_name() const override { return type_; }
  nlohmann::json constructor_args() const override { return args_; }
  std::vector<std::string> class_names() const override { return class_names_; }

 protected:
  FileDataset(std::string type, nlohmann::json args, readers::RawSamples samples);

 private:
  FileDataset(std::string type, nlohmann::json args, std::pair<at::Tensor, at::Tensor> tensors,
              std::vector<std::string> class_names);
  std::string type_;
  nlohmann::json args_;
  std::vector<std::string> class_names_;
};

// "cifar-dataset" {path, variant: 10|100, split, label: "fine"|"coarse"}:
// CIFAR-10/100 binary batches, uint8 [N, 3, 32, 32]. `variant` 0 detects it
// from the folder; the arguments hold the variant found.
class CifarDataset : public FileDataset {
 public:
  static std::shared_ptr<CifarDataset> open(const std::string& path, readers::Split split,
                                            int variant = 0,
                                            readers::CifarLabel label = readers::CifarLabel::kFine);
  int variant() const { return variant_; }

  CifarDataset(const std::string& path, readers::Split split, int variant,
               readers::CifarLabel label, readers::RawSamples samples);

 private:
  int variant_;
};

// "npy-dataset" {path, split}: a folder of {train,test}_{x,y}.npy or an .npz.
class NpyDataset : public FileDataset {
 public:
  static std::shared_ptr<NpyDataset> open(const std::string& path, readers::Split split);
  NpyDataset(const std::string& path, readers::Split split, readers::RawSamples samples);
};

// "csv-dataset" {path, split}: a folder with train.csv and test.csv, float32
// [N, F]. The test split takes train.csv's labels and feature count, from
// `train` when given (else it reads train.csv).
class CsvDataset : public FileDataset {
 public:
  static std::shared_ptr<CsvDataset> open(const std::string& path, readers::Split split,
                                          const CsvDataset* train = nullptr);
  // What test.csv must agree with when this is the train split.
  readers::CsvSpec spec() const;
  CsvDataset(const std::string& path, readers::Split split, readers::RawSamples samples);
};

// "image-folder-dataset" {path, split}: PNG/JPEG images in
// path/{train,test}/<class>/, uint8 [N, C, H, W].
class ImageFolderDataset : public FileDataset {
 public:
  static std::shared_ptr<ImageFolderDataset> open(const std::string& path, readers::Split split);
  ImageFolderDataset(const std::string& path, readers::Split split, readers::RawSamples samples);
};

// The train and test splits of a data set, built through `pool` (so live
// objects it holds are reused). FORMAT: "idx" (PATH a folder with
// train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz],
// t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz], as MNIST and
// Fashion-MNIST ship), "cifar" (CIFAR-10 or -100 detected), "cifar10",
// "cifar100", "cifar100-coarse", "npy", "csv", "images".
// InvalidArgument for another format.
std::pair<std::shared_ptr<const Dataset>, std::shared_ptr<const Dataset>> open_dataset_pair(
    const std::string& format, const std::string& path, ObjectPool& pool);

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
