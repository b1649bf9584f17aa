#include "continua/data/benchmark.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <filesystem>
#include <set>

#include "continua/errors.h"

namespace continua {

Experience::Experience(const Benchmark* origin, std::string stream, int64_t index,
                       std::vector<int64_t> classes, std::shared_ptr<const Dataset> dataset,
                       at::Tensor indices, at::Tensor permutation, int64_t task_label,
                       std::pair<double, double> normalization)
    : origin_(origin),
      stream_(std::move(stream)),
      index_(index),
      classes_(std::move(classes)),
      dataset_(std::move(dataset)),
      indices_(std::move(indices)),
      permutation_(std::move(permutation)),
      task_label_(task_label),
      normalization_(normalization) {
  targets_ = dataset_->targets().index_select(0, indices_);
}

int64_t Experience::size() const { return indices_.size(0); }

Batch Experience::get(const at::Tensor& positions) const {
  Batch b = dataset_->get(indices_.index_select(0, positions));
  if (permutation_.defined()) {
    auto shape = b.x.sizes().vec();
    b.x = b.x.reshape({b.x.size(0), -1}).index_select(1, permutation_).reshape(shape);
  }
  if (normalization_.first != 0.0 || normalization_.second != 1.0) {
    b.x = (b.x - normalization_.first) / normalization_.second;
  }
  b.t = at::full({b.y.size(0)}, task_label_, at::kLong);
  return b;
}

Benchmark::Benchmark(std::string type_name, nlohmann::json args,
                     std::shared_ptr<const Dataset> train, std::shared_ptr<const Dataset> test)
    : type_name_(std::move(type_name)),
      args_(std::move(args)),
      train_(std::move(train)),
      test_(std::move(test)) {
  num_classes_ = std::max(train_->targets().max().item<int64_t>(),
                          test_->targets().max().item<int64_t>()) + 1;
}

const std::vector<Experience>& Benchmark::stream(const std::string& name) const {
  if (name == "train") return train_stream_;
  if (name == "test") return test_stream_;
  throw InvalidArgument("benchmark '" + type_name_ + "' has no stream '" + name + "'");
}

Batch gather_samples(const std::vector<const Experience*>& experiences, const at::Tensor& which,
                     const at::Tensor& positions) {
  const at::Tensor w = which.to(at::kCPU, at::kLong), p = positions.to(at::kCPU, at::kLong);
  std::vector<at::Tensor> xs, ys, ts, rows;
  for (size_t e = 0; e < experiences.size(); ++e) {
    at::Tensor mine = w.eq(int64_t(e)).nonzero().flatten();
    if (mine.numel() == 0) continue;
    Batch b = experiences[e]->get(p.index_select(0, mine));
    xs.push_back(b.x);
    ys.push_back(b.y);
    ts.push_back(b.t);
    rows.push_back(mine);
  }
  if (xs.empty()) throw InvalidArgument("gather_samples: no samples asked for");
  if (xs.size() == 1) return {xs[0], ys[0], ts[0]};
  at::Tensor order = at::cat(rows);
  at::Tensor inverse = at::empty_like(order);
  inverse.index_put_({order}, at::arange(order.size(0), order.options()));
  return {at::cat(xs).index_select(0, inverse), at::cat(ys).index_select(0, inverse),
          at::cat(ts).index_select(0, inverse)};
}

int64_t Benchmark::num_tasks() const {
  std::set<int64_t> tasks;
  for (const auto& e : train_stream_) tasks.insert(e.task_label());
  return int64_t(tasks.size());
}

int64_t Benchmark::input_size() const {
  int64_t n = 1;
  for (int64_t d : sample_shape()) n *= d;
  return n;
}

std::vector<std::shared_ptr<const SerializableObject>> Benchmark::children() const {
  std::vector<std::shared_ptr<const SerializableObject>> out;
  for (const auto& d : {train_, test_}) {
    if (auto s = std::dynamic_pointer_cast<const SerializableObject>(d)) out.push_back(s);
  }
  return out;
}

void Benchmark::add_experience(int64_t index, std::vector<int64_t> classes,
                               at::Tensor train_indices, at::Tensor test_indices,
                               at::Tensor permutation) {
  const int64_t task = args_.value("task_labels", false) ? index : 0;
  std::pair<double, double> norm{0.0, 1.0};
  if (args_.contains("normalize")) {
    norm = {args_["normalize"].at(0).get<double>(), args_["normalize"].at(1).get<double>()};
  }
  train_stream_.emplace_back(this, "train", index, classes, train_, std::move(train_indices),
                             permutation, task, norm);
  test_stream_.emplace_back(this, "test", index, std::move(classes), test_,
                            std::move(test_indices), permutation, task, norm);
}

namespace {

// Indices (ascending) of the samples whose target is in `classes`.
at::Tensor class_indices(const at::Tensor& targets, const std::vector<int64_t>& classes) {
  at::Tensor mask = at::zeros_like(targets, at::kBool);
  for (int64_t c : classes) mask |= targets.eq(c);
  return mask.nonzero().flatten();
}

// At most `subset` of the indices, drawn with the generator, kept ascending.
at::Tensor take_subset(const at::Tensor& indices, int64_t subset, at::Generator& gen) {
  if (subset <= 0 || indices.size(0) <= subset) return indices;
  at::Tensor pick = at::randperm(indices.size(0), gen, at::kLong).narrow(0, 0, subset);
  return indices.index_select(0, std::get<0>(pick.sort()));
}

struct CommonArgs {
  int64_t experiences;
  uint64_t seed;
  int64_t subset;
};

CommonArgs common_args(const nlohmann::json& a) {
  CommonArgs c{a.at("experiences").get<int64_t>(), a.at("seed").get<uint64_t>(),
               a.at("subset").get<int64_t>()};
  if (c.experiences <= 0) throw InvalidArgument("--experiences must be > 0");
  if (c.subset < 0) throw InvalidArgument("--subset must be >= 0");
  return c;
}

std::pair<std::shared_ptr<const Dataset>, std::shared_ptr<const Dataset>> fmnist(
    const std::string& dir, ObjectPool& pool) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir)) {
    throw InvalidArgument("--data-dir '" + dir + "' is not a directory");
  }
  auto file = [&](const char* stem) {
    for (const char* ext : {".gz", ""}) {
      fs::path p = fs::path(dir) / (std::string(stem) + ext);
      if (fs::exists(p)) return p.string();
    }
    throw InvalidArgument("--data-dir '" + dir + "' has no Fashion-MNIST file " + stem +
                          "[.gz] (install the Debian package dataset-fashion-mnist)");
  };
  auto get = [&](const char* images, const char* labels) {
    auto obj = pool.get("idx-dataset",
                        {{"images", file(images)}, {"labels", file(labels)}});
    return std::dynamic_pointer_cast<const Dataset>(obj);
  };
  return {get("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          get("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")};
}

}  // namespace

std::shared_ptr<Benchmark> build_benchmark(const std::string& type, const nlohmann::json& a,
                                           ObjectPool& pool) {
  CommonArgs c = common_args(a);
  if (a.contains("normalize")) {
    const auto& n = a["normalize"];
    if (!n.is_array() || n.size() != 2 || !n[0].is_number() || !n[1].is_number() || !(n[1].get<double>() > 0)) {
      throw InvalidArgument("benchmark '" + type + "': normalize must be [mean, std > 0]");
    }
  }
  std::shared_ptr<const Dataset> train, test;
  if (type == "split-fmnist" || type == "permuted-fmnist") {
    std::tie(train, test) = fmnist(a.at("data_dir").get<std::string>(), pool);
  } else if (type == "split-synthetic") {
    // Train and test must share the class centers, so both come from one
    // dataset of twice the samples, split even/odd below.
    nlohmann::json d = a.at("dataset");
    nlohmann::json dall = d;
    dall["samples_per_class"] = d.at("samples_per_class").get<int64_t>() * 2;
    auto all = std::dynamic_pointer_cast<const Dataset>(pool.get("synthetic-dataset", dall));
    train = all;
    test = all;
  } else {
    throw InvalidArgument("unknown benchmark '" + type +
                          "' (known: split-fmnist, permuted-fmnist, split-synthetic)");
  }
  auto bench = std::shared_ptr<Benchmark>(new Benchmark(type, a, train, test));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(c.seed);
  const int64_t n_classes = bench->num_classes();

  if (type == "permuted-fmnist") {
    const int64_t pixels = bench->input_size();
    at::Tensor all_train = at::arange(train->size(), at::kLong);
    at::Tensor all_test = at::arange(test->size(), at::kLong);
    std::vector<int64_t> classes(n_classes);
    for (int64_t i = 0; i < n_classes; ++i) classes[i] = i;
    for (int64_t e = 0; e < c.experiences; ++e) {
      at::Tensor perm = at::randperm(pixels, gen, at::kLong);
      bench->add_experience(e, classes, take_subset(all_train, c.subset, gen), all_test, perm);
    }
    return bench;
  }

  if (n_classes % c.experiences != 0) {
    throw InvalidArgument("--experiences " + std::to_string(c.experiences) +
                          " does not divide the " + std::to_string(n_classes) + " classes");
  }
  at::Tensor order = at::randperm(n_classes, gen, at::kLong);
  if (a.contains("class_order")) {
    std::vector<int64_t> given = a.at("class_order").get<std::vector<int64_t>>();
    std::set<int64_t> distinct(given.begin(), given.end());
    if (int64_t(given.size()) != n_classes || int64_t(distinct.size()) != n_classes ||
        *distinct.begin() != 0 || *distinct.rbegin() != n_classes - 1) {
      throw InvalidArgument("--class-order must list each of the " + std::to_string(n_classes) +
                            " classes 0.." + std::to_string(n_classes - 1) + " once");
    }
    order = at::tensor(given, at::kLong);
  }
  const int64_t per = n_classes / c.experiences;
  // split-synthetic: the even/odd samples of each class form train/test.
  at::Tensor train_pool, test_pool;
  if (type == "split-synthetic") {
    at::Tensor idx = at::arange(train->size(), at::kLong);
    train_pool = idx.index_select(0, at::arange(0, train->size(), 2, at::kLong));
    test_pool = idx.index_select(0, at::arange(1, train->size(), 2, at::kLong));
  }
  for (int64_t e = 0; e < c.experiences; ++e) {
    std::vector<int64_t> classes;
    for (int64_t k = 0; k < per; ++k) classes.push_back(order[e * per + k].item<int64_t>());
    std::sort(classes.begin(), classes.end());
    at::Tensor tr, te;
    if (type == "split-synthetic") {
      tr = train_pool.index_select(0, class_indices(train->targets().index_select(0, train_pool), classes));
      te = test_pool.index_select(0, class_indices(test->targets().index_select(0, test_pool), classes));
    } else {
      tr = class_indices(train->targets(), classes);
      te = class_indices(test->targets(), classes);
    }
    bench->add_experience(e, classes, take_subset(tr, c.subset, gen), te, {});
  }
  return bench;
}

namespace {

nlohmann::json benchmark_args(const BenchmarkOptions& o) {
  nlohmann::json a = {{"experiences", o.experiences_}, {"seed", o.seed_}, {"subset", o.subset_}};
  // Only when set: checkpoints written before these options describe the
  // same benchmark without them.
  if (!o.class_order_.empty()) a["class_order"] = o.class_order_;
  if (o.task_labels_) a["task_labels"] = true;
  if (o.name_ == "split-synthetic") {
    a["dataset"] = {{"samples_per_class", 200}, {"classes", 10}, {"features", 32},
                    {"noise", 1.0}, {"seed", o.seed_}};
  } else {
    a["data_dir"] = std::filesystem::path(o.data_dir_).lexically_normal().string();
    // Avalanche's (and torchvision's customary) Fashion-MNIST normalisation.
    a["normalize"] = {0.2860, 0.3530};
  }
  return a;
}

}  // namespace

std::shared_ptr<Benchmark> make_benchmark(const BenchmarkOptions& options, ObjectPool& pool) {
  if (options.experiences_ <= 0) throw InvalidArgument("--experiences must be > 0");
  if (options.subset_ < 0) throw InvalidArgument("--subset must be >= 0");
  if (options.name_ != "split-fmnist" && options.name_ != "permuted-fmnist" &&
      options.name_ != "split-synthetic") {
    throw InvalidArgument("--benchmark: unknown benchmark '" + options.name_ +
                          "' (known: split-fmnist, permuted-fmnist, split-synthetic)");
  }
  if (!options.class_order_.empty() && options.name_ == "permuted-fmnist") {
    throw InvalidArgument("--class-order: permuted-fmnist is not a class split (every experience has every class)");
  }
  auto obj = pool.get(options.name_, benchmark_args(options));
  auto b = std::const_pointer_cast<Benchmark>(std::dynamic_pointer_cast<const Benchmark>(obj));
  return b;
}

std::shared_ptr<Benchmark> make_benchmark(const BenchmarkOptions& options) {
  ObjectPool pool;
  return make_benchmark(options, pool);
}

namespace {
ObjectFactory benchmark_factory(const std::string& type) {
  return [type](const nlohmann::json& a, ObjectPool& pool) {
    return std::static_pointer_cast<const SerializableObject>(build_benchmark(type, a, pool));
  };
}
}  // namespace

CONTINUA_REGISTER_OBJECT("split-fmnist", benchmark_factory("split-fmnist"));
CONTINUA_REGISTER_OBJECT("permuted-fmnist", benchmark_factory("permuted-fmnist"));
CONTINUA_REGISTER_OBJECT("split-synthetic", benchmark_factory("split-synthetic"));

}  // namespace continua
