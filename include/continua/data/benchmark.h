// Benchmarks: streams of experiences for continual learning.
//
// A benchmark is a dataset (train and test parts) cut into experiences by a
// scenario:
//
//   split      class-incremental: each experience brings its own classes, in
//              a class order drawn from the seed or given (--class-order);
//              with task_labels, task-incremental (experience i is task i)
//   permuted   domain-incremental: every class in every experience, the
//              inputs' pixels permuted by one permutation per experience
//   rotated    domain-incremental: the images rotated by one angle per
//              experience (drawn from the seed in [-180, 180] or given)
//   instances  new instances: every class in every experience, each class's
//              training samples divided evenly among the experiences; the test
//              stream is one experience holding the whole test set
//
// and the dataset is one of fmnist, mnist, cifar10, cifar100 (files in
// data_dir), synthetic (generated), or FORMAT:PATH (a user's files: idx,
// cifar, npy, csv, images; see docs/datasets.md). Names join the two:
// "split-fmnist", "rotated-mnist", "split-cifar10", "instances-fmnist"; the
// scenario alone ("split") takes the dataset from dataset().
//
// Two options apply to any scenario: validation_split(F) moves a
// class-balanced fraction F of each training experience into a "valid"
// stream, evaluated like the test stream; online_chunk(N) cuts each training
// experience into experiences of N samples (Avalanche's split_online_stream),
// trained one after another. The chunks know their original experience
// (origin_experience(), first/last in it), but a strategy may read that only
// when online_boundaries(true): otherwise it is hidden (task-free learning).
//
// An experience is a view: a dataset plus the indices of its samples in it
// and, for permuted and rotated benchmarks, a pixel map — never a copy of the
// samples.
//
//   auto bench = continua::make_benchmark(continua::BenchmarkOptions()
//                                             .name("split-fmnist").seed(1));
//   for (const continua::Experience& exp : bench->train_stream()) {
//     strategy.train(exp);
//   }
//
// Benchmarks are constructor-serialized: a checkpoint stores
// {"type": "split-fmnist", "args": {...}}, and a live benchmark passed as a
// unique object is reused on load, with its datasets.
//
// Contract: make_benchmark throws continua::InvalidArgument naming the option
// for an unknown benchmark or impossible sizes, and what the dataset readers
// throw (IoError, CorruptionError, naming the file) for missing or damaged
// data files.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "continua/data/dataset.h"

namespace continua {

class Benchmark;
std::shared_ptr<Benchmark> build_benchmark(const std::string& type, const nlohmann::json& args, ObjectPool& pool);

// Per-channel normalisation, (x - mean[c]) / std[c]; one value for every
// channel when the vectors have one element. Empty: none.
struct Normalization {
  std::vector<double> mean, std;
  bool empty() const { return mean.empty(); }
};

// Where an online chunk comes from (split_online_stream's attributes).
struct OnlineOrigin {
  int64_t experience = -1;  // the original experience; -1 when not a chunk
  bool first = false;       // the first chunk of it
  bool last = false;        // the last chunk of it
  bool visible = false;     // may strategies read it (online_boundaries)
};

class Experience {
 public:
  Experience(const Benchmark* origin, std::string stream, int64_t index,
             std::vector<int64_t> classes, std::shared_ptr<const Dataset> dataset,
             at::Tensor indices, at::Tensor pixel_map = {}, int64_t task_label = 0,
             Normalization normalization = {}, OnlineOrigin online = {});

  int64_t index() const { return index_; }
  // The task this experience belongs to: 0 in class- and domain-incremental
  // streams, the experience index in task-incremental ones.
  int64_t task_label() const { return task_label_; }
  const std::string& stream() const { return stream_; }
  // The classes among this experience's samples, ascending.
  const std::vector<int64_t>& classes() const { return classes_; }
  int64_t size() const;
  // Samples at the given positions (0 <= p < size()), inputs mapped by the
  // pixel map if there is one and normalised, with the task label.
  Batch get(const at::Tensor& positions) const;
  const at::Tensor& targets() const { return targets_; }  // int64 [size()]

  const Benchmark* origin() const { return origin_; }
  const std::shared_ptr<const Dataset>& dataset() const { return dataset_; }
  const at::Tensor& indices() const { return indices_; }
  // int64 [sample numel]: output element i takes input element map[i], or 0
  // (before normalisation) where map[i] is -1. Undefined: the identity.
  const at::Tensor& pixel_map() const { return pixel_map_; }
  const Normalization& normalization() const { return normalization_; }

  // Online chunks: whether this is one, and (when the benchmark shows the
  // boundaries; else InvalidArgument) its original experience.
  bool is_online_chunk() const { return online_.experience >= 0; }
  const OnlineOrigin& online_origin() const;

 private:
  friend class Benchmark;
  friend std::shared_ptr<Benchmark> build_benchmark(const std::string&, const nlohmann::json&, ObjectPool&);
  const Benchmark* origin_;
  std::string stream_;
  int64_t index_;
  std::vector<int64_t> classes_;
  std::shared_ptr<const Dataset> dataset_;
  at::Tensor indices_;
  at::Tensor pixel_map_;
  at::Tensor targets_;
  int64_t task_label_ = 0;
  Normalization normalization_;
  OnlineOrigin online_;
  // uint8 datasets: the float value of each byte, normalised, per channel
  // ([channels * 256]); computed with the same float operations as the
  // general path, so both give the same bits.
  at::Tensor byte_values_;
};

struct BenchmarkOptions {
  BenchmarkOptions& name(std::string v) { name_ = std::move(v); return *this; }
  // For a scenario name alone ("split"): the dataset, a built-in name
  // (fmnist, mnist, cifar10, cifar100, synthetic) or FORMAT:PATH.
  BenchmarkOptions& dataset(std::string v) { dataset_ = std::move(v); return *this; }
  // The built-in datasets' folder; empty: the default one (Fashion-MNIST's
  // Debian package), an error for the others.
  BenchmarkOptions& data_dir(std::string v) { data_dir_ = std::move(v); return *this; }
  BenchmarkOptions& experiences(int64_t v) { experiences_ = v; return *this; }
  BenchmarkOptions& seed(uint64_t v) { seed_ = v; return *this; }
  BenchmarkOptions& subset(int64_t v) { subset_ = v; return *this; }
  // The classes in the order the experiences bring them (a class split).
  // Empty: an order drawn from the seed.
  BenchmarkOptions& class_order(std::vector<int64_t> v) { class_order_ = std::move(v); return *this; }
  // Task-incremental: experience i is task i (Avalanche's return_task_id=True).
  BenchmarkOptions& task_labels(bool v) { task_labels_ = v; return *this; }
  // Rotated: the angle of each experience in degrees; empty: drawn.
  BenchmarkOptions& rotations(std::vector<double> v) { rotations_ = std::move(v); return *this; }
  BenchmarkOptions& online_chunk(int64_t v) { online_chunk_ = v; return *this; }
  BenchmarkOptions& online_boundaries(bool v) { online_boundaries_ = v; return *this; }
  BenchmarkOptions& validation_split(double v) { validation_split_ = v; return *this; }

  std::string name_ = "split-fmnist";
  std::string dataset_;
  std::string data_dir_;
  int64_t experiences_ = 5;
  uint64_t seed_ = 0;
  int64_t subset_ = 0;  // at most this many training samples per experience; 0: all
  std::vector<int64_t> class_order_;
  bool task_labels_ = false;
  std::vector<double> rotations_;
  int64_t online_chunk_ = 0;  // 0: not online
  bool online_boundaries_ = false;
  double validation_split_ = 0;
};

class Benchmark : public SerializableObject, public std::enable_shared_from_this<Benchmark> {
 public:
  Benchmark(const Benchmark&) = delete;
  Benchmark& operator=(const Benchmark&) = delete;
  Benchmark(std::string type_name, nlohmann::json args, std::shared_ptr<const Dataset> train,
            std::shared_ptr<const Dataset> test);

  const std::vector<Experience>& train_stream() const { return train_stream_; }
  const std::vector<Experience>& test_stream() const { return test_stream_; }
  // Empty without validation_split.
  const std::vector<Experience>& valid_stream() const { return valid_stream_; }
  // "train", "test" or "valid".
  const std::vector<Experience>& stream(const std::string& name) const;
  int64_t num_classes() const { return num_classes_; }
  // Distinct task labels of the train stream (1 unless task-incremental).
  int64_t num_tasks() const;
  std::vector<int64_t> sample_shape() const { return train_->sample_shape(); }
  int64_t input_size() const;
  // The experiences before online chunking (the train stream's length when
  // not online), and how many of them the first `trained` experiences of the
  // train stream complete.
  int64_t original_experiences() const { return original_experiences_; }
  int64_t original_experiences_done(int64_t trained) const;
  bool online() const;
  // Online: whether strategies may read a chunk's original experience.
  bool online_boundaries() const { return args_.value("online_boundaries", false); }

  std::string type_name() const override { return type_name_; }
  nlohmann::json constructor_args() const override { return args_; }
  std::vector<std::shared_ptr<const SerializableObject>> children() const override;

  const std::shared_ptr<const Dataset>& train_dataset() const { return train_; }
  const std::shared_ptr<const Dataset>& test_dataset() const { return test_; }

 private:
  friend std::shared_ptr<Benchmark> build_benchmark(const std::string&, const nlohmann::json&,
                                                    ObjectPool&);
  std::string type_name_;
  nlohmann::json args_;
  std::shared_ptr<const Dataset> train_;
  std::shared_ptr<const Dataset> test_;
  std::vector<Experience> train_stream_;
  std::vector<Experience> test_stream_;
  std::vector<Experience> valid_stream_;
  int64_t num_classes_ = 0;
  int64_t original_experiences_ = 0;
  std::vector<int64_t> originals_done_;  // online: [i] = originals the first i chunks complete
};

// The samples at (experiences[which[i]], positions[i]) for every i, in that
// order: one gather per experience, then the rows put back in order.
Batch gather_samples(const std::vector<const Experience*>& experiences, const at::Tensor& which,
                     const at::Tensor& positions);

// The nearest-neighbour rotation of an image [channels, height, width] by
// `degrees` counter-clockwise about its centre, as a pixel map (see
// Experience::pixel_map): pixels from outside the image are 0.
at::Tensor rotation_pixel_map(int64_t channels, int64_t height, int64_t width, double degrees);

// Builds a benchmark, resolving its datasets through the pool (so live
// datasets are reused when the pool was given them).
std::shared_ptr<Benchmark> make_benchmark(const BenchmarkOptions& options);
std::shared_ptr<Benchmark> make_benchmark(const BenchmarkOptions& options, ObjectPool& pool);

// The benchmark names make_benchmark knows ("split-fmnist", ..., "split").
std::vector<std::string> benchmark_names();

}  // namespace continua
