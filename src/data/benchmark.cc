#include "continua/data/benchmark.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include "continua/errors.h"

namespace continua {

namespace {

// (x - mean) / std per channel of samples [B, C, ...] (one value: every
// element). The scalar form is the one every benchmark used before
// per-channel values existed: its float results are the reference.
at::Tensor normalize(const at::Tensor& x, const Normalization& n) {
  if (n.empty()) return x;
  if (n.mean.size() == 1) return (x - n.mean[0]) / n.std[0];
  std::vector<int64_t> shape(size_t(x.dim()), 1);
  shape[1] = int64_t(n.mean.size());
  const at::Tensor mean = at::tensor(n.mean, at::kDouble).to(x.scalar_type()).view(shape);
  const at::Tensor std = at::tensor(n.std, at::kDouble).to(x.scalar_type()).view(shape);
  return (x - mean) / std;
}

// x [B, D...] mapped by a pixel map (see Experience::pixel_map).
at::Tensor apply_pixel_map(const at::Tensor& x, const at::Tensor& map) {
  const auto shape = x.sizes().vec();
  at::Tensor flat = x.reshape({x.size(0), -1});
  const int64_t d = flat.size(1);
  // -1 takes the appended zero column.
  flat = at::cat({flat, at::zeros({flat.size(0), 1}, flat.options())}, 1);
  return flat.index_select(1, map.where(map.ge(0), at::full({}, d, map.options()))).reshape(shape);
}

int64_t channels_of(const std::vector<int64_t>& sample_shape) {
  return sample_shape.size() == 3 ? sample_shape[0] : 1;
}

}  // namespace

Experience::Experience(const Benchmark* origin, std::string stream, int64_t index,
                       std::vector<int64_t> classes, std::shared_ptr<const Dataset> dataset,
                       at::Tensor indices, at::Tensor pixel_map, int64_t task_label,
                       Normalization normalization, OnlineOrigin online)
    : origin_(origin),
      stream_(std::move(stream)),
      index_(index),
      classes_(std::move(classes)),
      dataset_(std::move(dataset)),
      indices_(std::move(indices)),
      pixel_map_(std::move(pixel_map)),
      task_label_(task_label),
      normalization_(std::move(normalization)),
      online_(online) {
  targets_ = dataset_->targets().index_select(0, indices_);
  // Bytes become floats through a table of their 256 values per channel,
  // made by the general path itself (TensorDataset's scaling, then
  // normalize), so both give the same bits; a gather instead of three
  // passes over every batch.
  const auto* td = dynamic_cast<const TensorDataset*>(dataset_.get());
  if (td && td->inputs().scalar_type() == at::kByte) {
    const auto shape = td->sample_shape();
    const int64_t channels = channels_of(shape);
    if (normalization_.mean.size() <= 1 || int64_t(normalization_.mean.size()) == channels) {
      at::Tensor bytes = at::arange(256, at::kLong).to(at::kByte).repeat({channels}).view({1, channels, 256});
      byte_values_ = normalize(bytes_to_float(bytes), normalization_).reshape({-1}).contiguous();
    }
  }
}

int64_t Experience::size() const { return indices_.size(0); }

const OnlineOrigin& Experience::online_origin() const {
  if (is_online_chunk() && !online_.visible) {
    throw InvalidArgument("experience " + std::to_string(index_) +
                          " of an online stream: its original experience is hidden (online boundaries are off)");
  }
  return online_;
}

Batch Experience::get(const at::Tensor& positions) const {
  const at::Tensor idx = indices_.index_select(0, positions);
  Batch b;
  if (byte_values_.defined()) {
    const auto& td = static_cast<const TensorDataset&>(*dataset_);
    const at::Tensor raw = td.inputs().index_select(0, idx).contiguous();
    const int64_t rows = raw.size(0), d = raw.numel() / std::max<int64_t>(rows, 1);
    const int64_t channels = byte_values_.size(0) / 256, per_channel = d / channels;
    b.x = at::empty(raw.sizes(), at::kFloat);
    const uint8_t* r = raw.data_ptr<uint8_t>();
    const float* values = byte_values_.data_ptr<float>();
    const int64_t* map = pixel_map_.defined() ? pixel_map_.data_ptr<int64_t>() : nullptr;
    float* o = b.x.data_ptr<float>();
    for (int64_t n = 0; n < rows; ++n, r += d, o += d) {
      for (int64_t c = 0; c < channels; ++c) {
        const float* v = values + 256 * c;
        const int64_t begin = c * per_channel, end = begin + per_channel;
        if (map) {
          for (int64_t i = begin; i < end; ++i) o[i] = v[map[i] < 0 ? 0 : r[map[i]]];
        } else {
          for (int64_t i = begin; i < end; ++i) o[i] = v[r[i]];
        }
      }
    }
    b.y = td.targets().index_select(0, idx);
  } else {
    b = dataset_->get(idx);
    if (pixel_map_.defined()) b.x = apply_pixel_map(b.x, pixel_map_);
    b.x = normalize(b.x, normalization_);
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
  if (train_->size() == 0 || test_->size() == 0) {
    throw InvalidArgument("benchmark '" + type_name_ + "': the " +
                          std::string(train_->size() == 0 ? "training" : "test") + " set is empty");
  }
  num_classes_ = std::max(train_->targets().max().item<int64_t>(),
                          test_->targets().max().item<int64_t>()) + 1;
}

const std::vector<Experience>& Benchmark::stream(const std::string& name) const {
  if (name == "train") return train_stream_;
  if (name == "test") return test_stream_;
  if (name == "valid") return valid_stream_;
  throw InvalidArgument("benchmark '" + type_name_ + "' has no stream '" + name + "'");
}

bool Benchmark::online() const { return !train_stream_.empty() && train_stream_.front().is_online_chunk(); }

int64_t Benchmark::original_experiences_done(int64_t trained) const {
  trained = std::clamp<int64_t>(trained, 0, int64_t(train_stream_.size()));
  return online() ? originals_done_[size_t(trained)] : trained;
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

at::Tensor rotation_pixel_map(int64_t channels, int64_t height, int64_t width, double degrees) {
  if (channels <= 0 || height <= 0 || width <= 0) throw InvalidArgument("rotation_pixel_map: empty image");
  const double theta = degrees * M_PI / 180.0, c = std::cos(theta), s = std::sin(theta);
  const double cy = double(height - 1) / 2, cx = double(width - 1) / 2;
  at::Tensor map = at::empty({channels * height * width}, at::kLong);
  int64_t* m = map.data_ptr<int64_t>();
  for (int64_t y = 0; y < height; ++y) {
    for (int64_t x = 0; x < width; ++x) {
      // The output pixel (x, y) shows the input pixel that a rotation by
      // `degrees` counter-clockwise (as seen, rows going down) brings there.
      const double dx = double(x) - cx, dy = double(y) - cy;
      const double sx = std::nearbyint(cx + dx * c - dy * s), sy = std::nearbyint(cy + dx * s + dy * c);
      const bool inside = sx >= 0 && sx < double(width) && sy >= 0 && sy < double(height);
      for (int64_t ch = 0; ch < channels; ++ch) {
        m[(ch * height + y) * width + x] =
            inside ? (ch * height + int64_t(sy)) * width + int64_t(sx) : -1;
      }
    }
  }
  return map;
}

namespace {

const std::vector<std::string>& scenarios() {
  static const std::vector<std::string> v = {"split", "permuted", "rotated", "instances"};
  return v;
}
const std::vector<std::string>& builtin_datasets() {
  static const std::vector<std::string> v = {"fmnist", "mnist", "cifar10", "cifar100", "synthetic"};
  return v;
}
// The formats of a user's data set, FORMAT:PATH (open_dataset_pair).
const std::vector<std::string>& user_formats() {
  static const std::vector<std::string> v = {"idx", "cifar", "npy", "csv", "images"};
  return v;
}
bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// "rotated-mnist" -> {"rotated", "mnist"}; "split" -> {"split", ""}; unknown -> {"", ""}.
std::pair<std::string, std::string> parse_name(const std::string& name) {
  if (contains(scenarios(), name)) return {name, ""};
  const size_t dash = name.find('-');
  if (dash == std::string::npos) return {"", ""};
  std::string scenario = name.substr(0, dash), dataset = name.substr(dash + 1);
  if (!contains(scenarios(), scenario) || !contains(builtin_datasets(), dataset)) return {"", ""};
  return {scenario, dataset};
}

std::string known_names() {
  std::string s;
  for (const auto& n : benchmark_names()) s += (s.empty() ? "" : ", ") + n;
  return s;
}

// The Avalanche transforms' normalisation of each built-in dataset.
Normalization default_normalization(const std::string& dataset) {
  if (dataset == "fmnist") return {{0.2860}, {0.3530}};
  if (dataset == "mnist") return {{0.1307}, {0.3081}};
  // Avalanche's SplitCIFAR10/100 transforms.
  if (dataset == "cifar10") return {{0.4914, 0.4822, 0.4465}, {0.2023, 0.1994, 0.2010}};
  if (dataset == "cifar100") return {{0.5071, 0.4865, 0.4409}, {0.2673, 0.2564, 0.2762}};
  return {};
}

Normalization normalization_from_args(const nlohmann::json& a, const std::string& type) {
  if (!a.contains("normalize")) return {};
  const auto& n = a["normalize"];
  auto values = [&](const nlohmann::json& v) {
    std::vector<double> out;
    if (v.is_number()) out.push_back(v.get<double>());
    if (v.is_array()) {
      for (const auto& x : v) {
        if (!x.is_number()) out.clear();
        if (!x.is_number()) break;
        out.push_back(x.get<double>());
      }
    }
    return out;
  };
  Normalization out;
  if (n.is_array() && n.size() == 2) {
    out.mean = values(n[0]);
    out.std = values(n[1]);
  }
  bool ok = !out.mean.empty() && out.mean.size() == out.std.size();
  for (double s : out.std) ok = ok && s > 0;
  if (!ok) throw InvalidArgument("benchmark '" + type + "': normalize must be [mean, std > 0] (numbers or lists of one per channel)");
  return out;
}

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

std::vector<int64_t> classes_among(const at::Tensor& targets) {
  if (targets.numel() == 0) return {};
  const at::Tensor u = std::get<0>(at::_unique(targets.to(at::kCPU, at::kLong), /*sorted=*/true));
  return std::vector<int64_t>(u.data_ptr<int64_t>(), u.data_ptr<int64_t>() + u.numel());
}

// A user's data set, "FORMAT:PATH": its format (idx, cifar, npy, csv,
// images) and path; InvalidArgument naming `what` otherwise.
std::pair<std::string, std::string> split_user_dataset(const std::string& spec, const std::string& what) {
  const size_t colon = spec.find(':');
  const std::string format = colon == std::string::npos ? "" : spec.substr(0, colon);
  if (!contains(user_formats(), format) || colon + 1 >= spec.size()) {
    std::string formats;
    for (const auto& f : user_formats()) formats += (formats.empty() ? "" : ", ") + f;
    throw InvalidArgument(what + " '" + spec + "': expected a built-in dataset or FORMAT:PATH with FORMAT one of " +
                          formats);
  }
  return {format, spec.substr(colon + 1)};
}

struct Built {
  std::shared_ptr<const Dataset> train, test;
  bool paired_synthetic = false;  // one dataset: even samples train, odd test
};

Built open_datasets(const std::string& type, const std::string& dataset, const nlohmann::json& a,
                    ObjectPool& pool) {
  if (dataset.empty()) {
    // A scenario named alone: a user's files.
    if (!a.contains("dataset") || !a["dataset"].is_string()) {
      throw InvalidArgument("benchmark '" + type + "' needs a dataset FORMAT:PATH (argument 'dataset')");
    }
    const auto [format, path] = split_user_dataset(a["dataset"].get<std::string>(), "benchmark '" + type + "': dataset");
    auto [train, test] = open_dataset_pair(format, path, pool);
    return {train, test, false};
  }
  if (dataset == "fmnist" || dataset == "mnist" || dataset == "cifar10" || dataset == "cifar100") {
    const std::string dir = a.at("data_dir").get<std::string>();
    if (!std::filesystem::is_directory(dir)) throw InvalidArgument("--data-dir '" + dir + "' is not a directory");
    try {
      auto [train, test] = open_dataset_pair(dataset == "fmnist" || dataset == "mnist" ? "idx" : dataset, dir, pool);
      return {train, test, false};
    } catch (const IoError& e) {
      // A missing file: say which option names the folder.
      throw InvalidArgument(std::string("--data-dir: ") + e.what() +
                            (dataset == "fmnist" ? " (install the Debian package dataset-fashion-mnist)" : ""));
    }
  }
  if (dataset == "synthetic") {
    // Train and test must share the class centers, so both come from one
    // dataset of twice the samples, split even/odd.
    nlohmann::json d = a.at("dataset");
    nlohmann::json dall = d;
    dall["samples_per_class"] = d.at("samples_per_class").get<int64_t>() * 2;
    auto all = std::dynamic_pointer_cast<const Dataset>(pool.get("synthetic-dataset", dall));
    return {all, all, true};
  }
  throw InvalidArgument("benchmark '" + type + "': unknown dataset '" + dataset + "'");
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

// One experience of the scenario, before validation split and chunking.
struct Part {
  std::vector<int64_t> classes;
  at::Tensor train, test, map;  // indices; pixel map
};

// The class-balanced positions (ascending) of a fraction of an experience's
// samples: round(fraction * n) of each class's n, drawn with the generator.
at::Tensor validation_positions(const at::Tensor& targets, double fraction, at::Generator& gen) {
  std::vector<at::Tensor> picked;
  for (int64_t c : classes_among(targets)) {
    const at::Tensor mine = targets.eq(c).nonzero().flatten();
    const int64_t k = int64_t(std::llround(fraction * double(mine.size(0))));
    if (k == 0) continue;
    picked.push_back(mine.index_select(0, at::randperm(mine.size(0), gen, at::kLong).narrow(0, 0, k)));
  }
  if (picked.empty()) return at::empty({0}, at::kLong);
  return std::get<0>(at::cat(picked).sort());
}

}  // namespace

std::vector<std::string> benchmark_names() {
  std::vector<std::string> names;
  for (const auto& s : scenarios()) {
    for (const auto& d : builtin_datasets()) names.push_back(s + "-" + d);
  }
  for (const auto& s : scenarios()) names.push_back(s);
  return names;
}

std::shared_ptr<Benchmark> build_benchmark(const std::string& type, const nlohmann::json& a,
                                           ObjectPool& pool) {
  const auto [scenario, named_dataset] = parse_name(type);
  if (scenario.empty()) throw InvalidArgument("unknown benchmark '" + type + "' (known: " + known_names() + ")");
  CommonArgs c = common_args(a);
  const Normalization norm = normalization_from_args(a, type);
  const std::string dataset = named_dataset;
  Built data = open_datasets(type, dataset, a, pool);
  auto bench = std::shared_ptr<Benchmark>(new Benchmark(type, a, data.train, data.test));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(c.seed);
  const int64_t n_classes = bench->num_classes();
  const bool task_labels = a.value("task_labels", false);

  // The train and test pools: every sample, or (synthetic) the even and odd ones.
  at::Tensor train_pool = at::arange(data.train->size(), at::kLong);
  at::Tensor test_pool = at::arange(data.test->size(), at::kLong);
  if (data.paired_synthetic) {
    train_pool = at::arange(0, data.train->size(), 2, at::kLong);
    test_pool = at::arange(1, data.train->size(), 2, at::kLong);
  }
  const at::Tensor train_targets = data.train->targets().index_select(0, train_pool);
  const at::Tensor test_targets = data.test->targets().index_select(0, test_pool);
  std::vector<int64_t> all_classes(static_cast<size_t>(n_classes));
  for (int64_t i = 0; i < n_classes; ++i) all_classes[size_t(i)] = i;

  std::vector<Part> parts;
  if (scenario == "split") {
    if (c.experiences > n_classes) {
      throw InvalidArgument("--experiences " + std::to_string(c.experiences) + " is more than the " +
                            std::to_string(n_classes) + " classes");
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
    // n_classes / experiences each; the first n_classes % experiences one more.
    int64_t next = 0;
    for (int64_t e = 0; e < c.experiences; ++e) {
      const int64_t count = n_classes / c.experiences + (e < n_classes % c.experiences ? 1 : 0);
      Part p;
      for (int64_t k = 0; k < count; ++k) p.classes.push_back(order[next++].item<int64_t>());
      std::sort(p.classes.begin(), p.classes.end());
      p.train = train_pool.index_select(0, class_indices(train_targets, p.classes));
      p.test = test_pool.index_select(0, class_indices(test_targets, p.classes));
      p.train = take_subset(p.train, c.subset, gen);
      parts.push_back(std::move(p));
    }
  } else if (scenario == "permuted" || scenario == "rotated") {
    const auto shape = bench->sample_shape();
    std::vector<double> angles;
    if (scenario == "rotated") {
      if (shape.size() != 3) {
        throw InvalidArgument("benchmark '" + type + "': rotations need images [channels, height, width]");
      }
      if (a.contains("rotations")) {
        angles = a.at("rotations").get<std::vector<double>>();
        if (int64_t(angles.size()) != c.experiences) {
          throw InvalidArgument("--rotations: " + std::to_string(angles.size()) + " angles for " +
                                std::to_string(c.experiences) + " experiences");
        }
      }
    }
    for (int64_t e = 0; e < c.experiences; ++e) {
      Part p;
      p.classes = all_classes;
      if (scenario == "permuted") {
        p.map = at::randperm(bench->input_size(), gen, at::kLong);
      } else {
        // Avalanche's RotatedMNIST: an integer angle in [-180, 180].
        const double angle = angles.empty()
                                 ? double(at::randint(-180, 181, {1}, gen, at::kLong).item<int64_t>())
                                 : angles[size_t(e)];
        p.map = rotation_pixel_map(shape[0], shape[1], shape[2], angle);
      }
      p.train = take_subset(train_pool, c.subset, gen);
      p.test = test_pool;
      parts.push_back(std::move(p));
    }
  } else {  // instances
    std::vector<std::vector<at::Tensor>> shares(size_t(c.experiences));
    for (int64_t k : all_classes) {
      const at::Tensor mine = train_pool.index_select(0, train_targets.eq(k).nonzero().flatten());
      const at::Tensor shuffled = mine.index_select(0, at::randperm(mine.size(0), gen, at::kLong));
      const int64_t n = shuffled.size(0);
      for (int64_t e = 0; e < c.experiences; ++e) {
        const int64_t begin = n * e / c.experiences, end = n * (e + 1) / c.experiences;
        shares[size_t(e)].push_back(shuffled.narrow(0, begin, end - begin));
      }
    }
    for (int64_t e = 0; e < c.experiences; ++e) {
      Part p;
      p.classes = all_classes;
      p.train = take_subset(std::get<0>(at::cat(shares[size_t(e)]).sort()), c.subset, gen);
      if (p.train.size(0) == 0) {
        throw InvalidArgument("--experiences " + std::to_string(c.experiences) +
                              ": experience " + std::to_string(e) + " of new instances gets no sample");
      }
      p.test = test_pool;
      parts.push_back(std::move(p));
    }
  }

  // Validation: a class-balanced fraction of each experience's training samples.
  const double fraction = a.value("validation_split", 0.0);
  if (!(fraction >= 0 && fraction < 1)) throw InvalidArgument("--validation-split must be in [0, 1)");
  std::vector<at::Tensor> valid(parts.size());
  if (fraction > 0) {
    for (size_t e = 0; e < parts.size(); ++e) {
      const at::Tensor t = data.train->targets().index_select(0, parts[e].train);
      const at::Tensor pos = validation_positions(t, fraction, gen);
      at::Tensor keep = at::ones({parts[e].train.size(0)}, at::kBool);
      keep.index_fill_(0, pos, false);
      valid[e] = parts[e].train.index_select(0, pos);
      parts[e].train = parts[e].train.index_select(0, keep.nonzero().flatten());
      if (parts[e].train.size(0) == 0) {
        throw InvalidArgument("--validation-split " + std::to_string(fraction) + " leaves experience " +
                              std::to_string(e) + " no training sample");
      }
    }
  }

  const int64_t chunk = a.value("online_chunk", int64_t(0));
  if (chunk < 0) throw InvalidArgument("--online-chunk must be >= 0");
  const bool visible = a.value("online_boundaries", false);
  const bool instances = scenario == "instances";
  bench->original_experiences_ = int64_t(parts.size());
  for (size_t e = 0; e < parts.size(); ++e) {
    const Part& p = parts[e];
    const int64_t task = task_labels ? int64_t(e) : 0;
    if (!instances || e == 0) {
      // New instances: one test experience, the whole test set.
      bench->test_stream_.emplace_back(bench.get(), "test", int64_t(e), instances ? all_classes : p.classes,
                                       data.test, p.test, p.map, task, norm);
    }
    if (fraction > 0) {
      bench->valid_stream_.emplace_back(bench.get(), "valid", int64_t(e), p.classes, data.train, valid[e],
                                        p.map, task, norm);
    }
    if (chunk == 0) {
      bench->train_stream_.emplace_back(bench.get(), "train", int64_t(e), p.classes, data.train, p.train,
                                        p.map, task, norm);
      continue;
    }
    // Online: the experience's samples in a random order, cut into chunks.
    const at::Tensor shuffled = p.train.index_select(0, at::randperm(p.train.size(0), gen, at::kLong));
    const int64_t n = shuffled.size(0);
    for (int64_t begin = 0; begin < n; begin += chunk) {
      const at::Tensor idx = shuffled.narrow(0, begin, std::min(chunk, n - begin));
      OnlineOrigin o{int64_t(e), begin == 0, begin + chunk >= n, visible};
      bench->train_stream_.emplace_back(bench.get(), "train", int64_t(bench->train_stream_.size()),
                                        classes_among(data.train->targets().index_select(0, idx)), data.train,
                                        idx, p.map, task, norm, o);
    }
  }
  bench->originals_done_.assign(1, 0);
  for (const Experience& e : bench->train_stream_) {
    bench->originals_done_.push_back(bench->originals_done_.back() + (e.online_.last ? 1 : 0));
  }
  return bench;
}

namespace {

nlohmann::json benchmark_args(const BenchmarkOptions& o, const std::string& dataset) {
  nlohmann::json a = {{"experiences", o.experiences_}, {"seed", o.seed_}, {"subset", o.subset_}};
  // Only when set: checkpoints written before these options describe the
  // same benchmark without them.
  if (!o.class_order_.empty()) a["class_order"] = o.class_order_;
  if (o.task_labels_) a["task_labels"] = true;
  if (!o.rotations_.empty()) a["rotations"] = o.rotations_;
  if (o.validation_split_ != 0) a["validation_split"] = o.validation_split_;
  if (o.online_chunk_ != 0) a["online_chunk"] = o.online_chunk_;
  if (o.online_boundaries_) a["online_boundaries"] = true;
  if (dataset.find(':') != std::string::npos) {
    // A user's files: the path made absolute, so that a checkpoint resumes
    // from another working directory. No normalisation: uint8 inputs are
    // scaled to [0, 1], others kept as the files hold them.
    if (!o.data_dir_.empty()) {
      throw InvalidArgument("--data-dir is for the built-in datasets; --dataset " + dataset + " names its path");
    }
    const auto [format, path] = split_user_dataset(dataset, "--dataset");
    a["dataset"] = format + ":" + std::filesystem::absolute(path).lexically_normal().string();
    return a;
  }
  if (dataset == "synthetic") {
    a["dataset"] = {{"samples_per_class", 200}, {"classes", 10}, {"features", 32},
                    {"noise", 1.0}, {"seed", o.seed_}};
  } else {
    std::string dir = o.data_dir_;
    if (dir.empty()) {
      if (dataset != "fmnist") {
        throw InvalidArgument("--data-dir: give the folder with the " + dataset + " files");
      }
      dir = "/usr/share/datasets/fashion-mnist";
    }
    a["data_dir"] = std::filesystem::path(dir).lexically_normal().string();
  }
  const Normalization n = default_normalization(dataset);
  if (n.mean.size() == 1) {
    a["normalize"] = {n.mean[0], n.std[0]};
  } else if (!n.empty()) {
    a["normalize"] = {n.mean, n.std};
  }
  return a;
}

}  // namespace

std::shared_ptr<Benchmark> make_benchmark(const BenchmarkOptions& options, ObjectPool& pool) {
  if (options.experiences_ <= 0) throw InvalidArgument("--experiences must be > 0");
  if (options.subset_ < 0) throw InvalidArgument("--subset must be >= 0");
  if (options.online_chunk_ < 0) throw InvalidArgument("--online-chunk must be >= 0");
  if (!(options.validation_split_ >= 0 && options.validation_split_ < 1)) {
    throw InvalidArgument("--validation-split must be in [0, 1), got " + std::to_string(options.validation_split_));
  }
  auto [scenario, dataset] = parse_name(options.name_);
  if (scenario.empty()) {
    throw InvalidArgument("--benchmark: unknown benchmark '" + options.name_ + "' (known: " + known_names() + ")");
  }
  std::string type = options.name_;
  if (dataset.empty()) {
    dataset = options.dataset_;
    if (dataset.empty()) throw InvalidArgument("--benchmark " + options.name_ + " needs --dataset");
    // FORMAT:PATH (a user's files, checked by benchmark_args): the type
    // stays the scenario's name.
    if (dataset.find(':') == std::string::npos) {
      if (!contains(builtin_datasets(), dataset)) {
        std::string names;
        for (const auto& d : builtin_datasets()) names += d + ", ";
        throw InvalidArgument("--dataset: unknown dataset '" + dataset + "' (known: " + names + "or FORMAT:PATH)");
      }
      type = scenario + "-" + dataset;
    }
  } else if (!options.dataset_.empty() && options.dataset_ != dataset) {
    throw InvalidArgument("--dataset " + options.dataset_ + ": --benchmark " + options.name_ +
                          " already names its dataset");
  }
  if (!options.class_order_.empty() && scenario != "split") {
    throw InvalidArgument("--class-order: " + type + " is not a class split (every experience has every class)");
  }
  if (!options.rotations_.empty() && scenario != "rotated") {
    throw InvalidArgument("--rotations: " + type + " is not a rotated benchmark");
  }
  if (options.online_boundaries_ && options.online_chunk_ == 0) {
    throw InvalidArgument("--online-boundaries needs --online-chunk");
  }
  auto obj = pool.get(type, benchmark_args(options, dataset));
  return std::const_pointer_cast<Benchmark>(std::dynamic_pointer_cast<const Benchmark>(obj));
}

std::shared_ptr<Benchmark> make_benchmark(const BenchmarkOptions& options) {
  ObjectPool pool;
  return make_benchmark(options, pool);
}

namespace {
// Every name of benchmark_names() builds through build_benchmark.
const bool kRegistered = [] {
  for (const auto& name : benchmark_names()) {
    register_object_type(name, [name](const nlohmann::json& a, ObjectPool& pool) {
      return std::static_pointer_cast<const SerializableObject>(build_benchmark(name, a, pool));
    });
  }
  return true;
}();
}  // namespace

}  // namespace continua
