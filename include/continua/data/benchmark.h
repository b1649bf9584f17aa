// Benchmarks: streams of experiences for continual learning.
//
// A benchmark has a train stream and a test stream; experience i of each
// brings the same classes (class-incremental splits) or the same input
// permutation (permuted benchmarks). An experience is a view: a dataset plus
// the indices of its samples in it and, for permuted benchmarks, a pixel
// permutation — never a copy of the samples.
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
// for an unknown benchmark or impossible sizes, and what IdxDataset::open
// throws when the data files are missing or damaged.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "continua/data/dataset.h"

namespace continua {

class Benchmark;

class Experience {
 public:
  Experience(const Benchmark* origin, std::string stream, int64_t index,
             std::vector<int64_t> classes, std::shared_ptr<const Dataset> dataset,
             at::Tensor indices, at::Tensor permutation = {}, int64_t task_label = 0,
             std::pair<double, double> normalization = {0.0, 1.0});

  int64_t index() const { return index_; }
  // The task this experience belongs to: 0 in class- and domain-incremental
  // streams, the experience index in task-incremental ones.
  int64_t task_label() const { return task_label_; }
  const std::string& stream() const { return stream_; }
  const std::vector<int64_t>& classes() const { return classes_; }
  int64_t size() const;
  // Samples at the given positions (0 <= p < size()), inputs permuted if the
  // experience has a permutation and normalised ((x - mean) / std, the
  // benchmark's), with the experience's task label.
  Batch get(const at::Tensor& positions) const;
  const at::Tensor& targets() const { return targets_; }  // int64 [size()]

  const Benchmark* origin() const { return origin_; }
  const std::shared_ptr<const Dataset>& dataset() const { return dataset_; }
  const at::Tensor& indices() const { return indices_; }
  const at::Tensor& permutation() const { return permutation_; }

 private:
  const Benchmark* origin_;
  std::string stream_;
  int64_t index_;
  std::vector<int64_t> classes_;
  std::shared_ptr<const Dataset> dataset_;
  at::Tensor indices_;
  at::Tensor permutation_;
  at::Tensor targets_;
  int64_t task_label_ = 0;
  std::pair<double, double> normalization_;  // mean, std
};

struct BenchmarkOptions {
  BenchmarkOptions& name(std::string v) { name_ = std::move(v); return *this; }
  BenchmarkOptions& data_dir(std::string v) { data_dir_ = std::move(v); return *this; }
  BenchmarkOptions& experiences(int64_t v) { experiences_ = v; return *this; }
  BenchmarkOptions& seed(uint64_t v) { seed_ = v; return *this; }
  BenchmarkOptions& subset(int64_t v) { subset_ = v; return *this; }
  // The classes in the order the experiences bring them (a class split):
  // experience i has classes [i*k, (i+1)*k) of this list. Empty: an order
  // drawn from the seed.
  BenchmarkOptions& class_order(std::vector<int64_t> v) { class_order_ = std::move(v); return *this; }
  // Task-incremental: experience i is task i (Avalanche's return_task_id=True).
  BenchmarkOptions& task_labels(bool v) { task_labels_ = v; return *this; }

  std::string name_ = "split-fmnist";  // split-fmnist, permuted-fmnist, split-synthetic
  std::string data_dir_ = "/usr/share/datasets/fashion-mnist";
  int64_t experiences_ = 5;
  uint64_t seed_ = 0;
  int64_t subset_ = 0;  // at most this many training samples per experience; 0: all
  std::vector<int64_t> class_order_;
  bool task_labels_ = false;
};

class Benchmark : public SerializableObject, public std::enable_shared_from_this<Benchmark> {
 public:
  Benchmark(const Benchmark&) = delete;
  Benchmark& operator=(const Benchmark&) = delete;
  Benchmark(std::string type_name, nlohmann::json args, std::shared_ptr<const Dataset> train,
            std::shared_ptr<const Dataset> test);

  const std::vector<Experience>& train_stream() const { return train_stream_; }
  const std::vector<Experience>& test_stream() const { return test_stream_; }
  const std::vector<Experience>& stream(const std::string& name) const;
  int64_t num_classes() const { return num_classes_; }
  // Distinct task labels of the train stream (1 unless task-incremental).
  int64_t num_tasks() const;
  std::vector<int64_t> sample_shape() const { return train_->sample_shape(); }
  int64_t input_size() const;

  std::string type_name() const override { return type_name_; }
  nlohmann::json constructor_args() const override { return args_; }
  std::vector<std::shared_ptr<const SerializableObject>> children() const override;

  const std::shared_ptr<const Dataset>& train_dataset() const { return train_; }
  const std::shared_ptr<const Dataset>& test_dataset() const { return test_; }

 protected:
  friend std::shared_ptr<Benchmark> build_benchmark(const std::string&, const nlohmann::json&,
                                                    ObjectPool&);
  void add_experience(int64_t index, std::vector<int64_t> classes, at::Tensor train_indices,
                      at::Tensor test_indices, at::Tensor permutation);
  std::string type_name_;
  nlohmann::json args_;
  std::shared_ptr<const Dataset> train_;
  std::shared_ptr<const Dataset> test_;
  std::vector<Experience> train_stream_;
  std::vector<Experience> test_stream_;
  int64_t num_classes_ = 0;
};

// The samples at (experiences[which[i]], positions[i]) for every i, in that
// order: one gather per experience, then the rows put back in order.
Batch gather_samples(const std::vector<const Experience*>& experiences, const at::Tensor& which,
                     const at::Tensor& positions);

// Builds a benchmark, resolving its datasets through the pool (so live
// datasets are reused when the pool was given them).
std::shared_ptr<Benchmark> make_benchmark(const BenchmarkOptions& options);
std::shared_ptr<Benchmark> make_benchmark(const BenchmarkOptions& options, ObjectPool& pool);

}  // namespace continua
