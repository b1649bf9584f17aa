#include "continua/data/dataset.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <cstring>

#include "continua/errors.h"

namespace continua {

TensorDataset::TensorDataset(at::Tensor inputs, at::Tensor targets)
    : inputs_(std::move(inputs)), targets_(std::move(targets)) {
  if (!inputs_.defined() || !targets_.defined() || inputs_.dim() < 1 || targets_.dim() != 1 ||
      inputs_.size(0) != targets_.size(0)) {
    throw InvalidArgument("TensorDataset: inputs [N, ...] and targets [N] must agree in N");
  }
  targets_ = targets_.to(at::kLong).contiguous();
  inputs_ = inputs_.contiguous();
}

int64_t TensorDataset::size() const { return inputs_.size(0); }

std::vector<int64_t> TensorDataset::sample_shape() const {
  auto s = inputs_.sizes().vec();
  s.erase(s.begin());
  return s;
}

at::Tensor bytes_to_float(const at::Tensor& bytes) { return bytes.to(at::kFloat).mul_(1.0f / 255.0f); }

Batch TensorDataset::get(const at::Tensor& indices) const {
  at::Tensor x = inputs_.index_select(0, indices);
  if (x.scalar_type() == at::kByte) {
    x = bytes_to_float(x);
  } else if (x.scalar_type() != at::kFloat) {
    x = x.to(at::kFloat);
  }
  return {x, targets_.index_select(0, indices), at::Tensor()};
}

namespace {

[[noreturn]] void corrupt(const std::string& path, const std::string& what) {
  throw CorruptionError("IDX file '" + path + "': " + what);
}

}  // namespace

IdxDataset::IdxDataset(at::Tensor inputs, at::Tensor targets, std::string images_path,
                       std::string labels_path)
    : TensorDataset(std::move(inputs), std::move(targets)),
      images_path_(std::move(images_path)),
      labels_path_(std::move(labels_path)) {}

std::shared_ptr<IdxDataset> IdxDataset::open(const std::string& images_path,
                                             const std::string& labels_path) {
  IdxArray images = read_idx_file(images_path);
  IdxArray labels = read_idx_file(labels_path);
  if (images.dims.size() < 2) corrupt(images_path, "an images file needs at least 2 dims");
  if (labels.dims.size() != 1) corrupt(labels_path, "a labels file needs exactly 1 dim");
  if (images.dims[0] != labels.dims[0]) {
    throw CorruptionError("IDX files disagree: '" + images_path + "' has " +
                          std::to_string(images.dims[0]) + " images but '" + labels_path +
                          "' has " + std::to_string(labels.dims[0]) + " labels");
  }
  std::vector<int64_t> shape = images.dims;
  if (shape.size() == 3) shape.insert(shape.begin() + 1, 1);  // [N, 1, H, W]
  at::Tensor x = at::empty(shape, at::kByte);
  std::memcpy(x.data_ptr(), images.data.data(), images.data.size());
  at::Tensor y = at::empty({labels.dims[0]}, at::kByte);
  std::memcpy(y.data_ptr(), labels.data.data(), labels.data.size());
  return std::make_shared<IdxDataset>(x, y.to(at::kLong), images_path, labels_path);
}

nlohmann::json IdxDataset::constructor_args() const {
  return {{"images", images_path_}, {"labels", labels_path_}};
}

CONTINUA_REGISTER_OBJECT("idx-dataset", [](const nlohmann::json& a, ObjectPool&) {
  return std::static_pointer_cast<const SerializableObject>(
      IdxDataset::open(a.at("images").get<std::string>(), a.at("labels").get<std::string>()));
});

namespace {

std::pair<at::Tensor, at::Tensor> synthesize(const SyntheticOptions& o) {
  if (o.samples_per_class <= 0 || o.classes <= 0 || o.features <= 0) {
    throw InvalidArgument("SyntheticDataset: samples_per_class, classes and features must be > 0");
  }
  // Arguments may come from a checkpoint: bound what they make us allocate
  // (2^28 floats, 1 GiB) before multiplying anything that could overflow.
  constexpr int64_t kMaxElements = int64_t(1) << 28;
  if (o.samples_per_class > kMaxElements || o.classes > 100000 || o.features > kMaxElements ||
      o.samples_per_class * o.classes > kMaxElements / o.features) {
    throw InvalidArgument("SyntheticDataset: " + std::to_string(o.samples_per_class) + " x " +
                          std::to_string(o.classes) + " samples of " + std::to_string(o.features) +
                          " features exceed the limit of 2^28 values");
  }
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  at::Tensor centers = at::randn({o.classes, o.features}, gen, at::kFloat) * 2.0;
  at::Tensor y = at::arange(o.classes, at::kLong).repeat_interleave(o.samples_per_class);
  at::Tensor noise = at::randn({y.size(0), o.features}, gen, at::kFloat) * o.noise;
  at::Tensor x = centers.index_select(0, y) + noise;
  return {x, y};
}

}  // namespace

SyntheticDataset::SyntheticDataset(const SyntheticOptions& options)
    : SyntheticDataset(options, synthesize(options)) {}

SyntheticDataset::SyntheticDataset(const SyntheticOptions& options,
                                   std::pair<at::Tensor, at::Tensor> samples)
    : TensorDataset(std::move(samples.first), std::move(samples.second)), options_(options) {}

nlohmann::json SyntheticDataset::constructor_args() const {
  return {{"samples_per_class", options_.samples_per_class},
          {"classes", options_.classes},
          {"features", options_.features},
          {"noise", options_.noise},
          {"seed", options_.seed}};
}

CONTINUA_REGISTER_OBJECT("synthetic-dataset", [](const nlohmann::json& a, ObjectPool&) {
  SyntheticOptions o;
  o.samples_per_class = a.at("samples_per_class").get<int64_t>();
  o.classes = a.at("classes").get<int64_t>();
  o.features = a.at("features").get<int64_t>();
  o.noise = a.at("noise").get<double>();
  o.seed = a.at("seed").get<uint64_t>();
  return std::static_pointer_cast<const SerializableObject>(std::make_shared<SyntheticDataset>(o));
});

}  // namespace continua
