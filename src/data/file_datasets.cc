// The data sets read from user files: the readers' plain arrays (readers.h)
// as tensors, constructor-serialized, and open_dataset_pair for benchmarks.
#include <ATen/ATen.h>

#include <cstring>

#include "continua/data/dataset.h"
#include "continua/errors.h"

namespace continua {

namespace {

namespace r = readers;

// The reader's bytes become the tensor's storage (no copy): uint8 stays
// uint8, anything else is float32.
at::Tensor tensor_of(r::RawArray array) {
  if (array.dtype != r::DType::kUInt8 && array.dtype != r::DType::kFloat32) {
    array = r::to_float32(array);
  }
  const at::ScalarType type = array.dtype == r::DType::kUInt8 ? at::kByte : at::kFloat;
  auto owned = std::make_unique<std::vector<uint8_t>>(std::move(array.bytes));
  void* data = owned->empty() ? nullptr : owned->data();
  std::vector<uint8_t>* raw = owned.get();
  at::Tensor t = at::from_blob(data, array.shape, [raw](void*) { delete raw; },
                               at::TensorOptions().dtype(type));
  owned.release();
  return t;
}

std::pair<at::Tensor, at::Tensor> tensors_of(r::RawSamples& s) {
  at::Tensor y = at::empty({int64_t(s.labels.size())}, at::kLong);
  if (!s.labels.empty()) std::memcpy(y.data_ptr(), s.labels.data(), s.labels.size() * sizeof(int64_t));
  return {tensor_of(std::move(s.inputs)), y};
}

// Constructor arguments, checked: a checkpoint's JSON is data, not trusted.
std::string arg_string(const nlohmann::json& a, const char* key, const std::string& type) {
  if (!a.is_object() || !a.contains(key) || !a[key].is_string()) {
    throw InvalidArgument(type + ": constructor argument '" + key + "' must be a string");
  }
  return a[key].get<std::string>();
}

int64_t arg_int(const nlohmann::json& a, const char* key, const std::string& type) {
  if (!a.is_object() || !a.contains(key) || !a[key].is_number_integer()) {
    throw InvalidArgument(type + ": constructor argument '" + key + "' must be an integer");
  }
  return a[key].get<int64_t>();
}

nlohmann::json path_split(const std::string& path, r::Split split) {
  return {{"path", path}, {"split", r::split_name(split)}};
}

}  // namespace

FileDataset::FileDataset(std::string type, nlohmann::json args, r::RawSamples samples)
    : FileDataset(std::move(type), std::move(args), tensors_of(samples),
                  std::move(samples.class_names)) {}

FileDataset::FileDataset(std::string type, nlohmann::json args,
                         std::pair<at::Tensor, at::Tensor> tensors,
                         std::vector<std::string> class_names)
    : TensorDataset(std::move(tensors.first), std::move(tensors.second)),
      type_(std::move(type)),
      args_(std::move(args)),
      class_names_(std::move(class_names)) {}

// ---- CIFAR ----

CifarDataset::CifarDataset(const std::string& path, r::Split split, int variant,
                           r::CifarLabel label, r::RawSamples samples)
    : FileDataset("cifar-dataset",
                  {{"path", path},
                   {"variant", variant},
                   {"split", r::split_name(split)},
                   {"label", r::cifar_label_name(label)}},
                  std::move(samples)),
      variant_(variant) {}

std::shared_ptr<CifarDataset> CifarDataset::open(const std::string& path, r::Split split,
                                                 int variant, r::CifarLabel label) {
  const int found = r::locate_cifar(path, variant).variant;
  return std::make_shared<CifarDataset>(path, split, found, label,
                                        r::read_cifar(path, split, found, label));
}

CONTINUA_REGISTER_OBJECT("cifar-dataset", [](const nlohmann::json& a, ObjectPool&) {
  const std::string t = "cifar-dataset";
  const int64_t variant = arg_int(a, "variant", t);
  if (variant != 10 && variant != 100) {
    throw InvalidArgument(t + ": variant " + std::to_string(variant) + " is neither 10 nor 100");
  }
  return std::static_pointer_cast<const SerializableObject>(CifarDataset::open(
      arg_string(a, "path", t), r::parse_split(arg_string(a, "split", t), t), int(variant),
      r::parse_cifar_label(arg_string(a, "label", t), t)));
});

// ---- NumPy ----

NpyDataset::NpyDataset(const std::string& path, r::Split split, r::RawSamples samples)
    : FileDataset("npy-dataset", path_split(path, split), std::move(samples)) {}

std::shared_ptr<NpyDataset> NpyDataset::open(const std::string& path, r::Split split) {
  return std::make_shared<NpyDataset>(path, split, r::read_npy_split(path, split));
}

CONTINUA_REGISTER_OBJECT("npy-dataset", [](const nlohmann::json& a, ObjectPool&) {
  const std::string t = "npy-dataset";
  return std::static_pointer_cast<const SerializableObject>(
      NpyDataset::open(arg_string(a, "path", t), r::parse_split(arg_string(a, "split", t), t)));
});

// ---- CSV ----

CsvDataset::CsvDataset(const std::string& path, r::Split split, r::RawSamples samples)
    : FileDataset("csv-dataset", path_split(path, split), std::move(samples)) {}

r::CsvSpec CsvDataset::spec() const {
  r::CsvSpec s;
  s.detect_labels = false;
  s.names = class_names();
  s.features = sample_shape().at(0);
  return s;
}

std::shared_ptr<CsvDataset> CsvDataset::open(const std::string& path, r::Split split,
                                             const CsvDataset* train) {
  if (split == r::Split::kTest && train) {
    const r::CsvSpec spec = train->spec();
    return std::make_shared<CsvDataset>(path, split, r::read_csv_split(path, split, &spec));
  }
  return std::make_shared<CsvDataset>(path, split, r::read_csv_split(path, split));
}

CONTINUA_REGISTER_OBJECT("csv-dataset", [](const nlohmann::json& a, ObjectPool& pool) {
  const std::string t = "csv-dataset";
  const std::string path = arg_string(a, "path", t);
  const r::Split split = r::parse_split(arg_string(a, "split", t), t);
  std::shared_ptr<const CsvDataset> train;
  if (split == r::Split::kTest) {
    // The test split is labelled as train.csv is: reuse (or build) the train split.
    train = std::dynamic_pointer_cast<const CsvDataset>(pool.get(t, path_split(path, r::Split::kTrain)));
  }
  return std::static_pointer_cast<const SerializableObject>(CsvDataset::open(path, split, train.get()));
});

// ---- Image folders ----

ImageFolderDataset::ImageFolderDataset(const std::string& path, r::Split split,
                                       r::RawSamples samples)
    : FileDataset("image-folder-dataset", path_split(path, split), std::move(samples)) {}

std::shared_ptr<ImageFolderDataset> ImageFolderDataset::open(const std::string& path,
                                                             r::Split split) {
  return std::make_shared<ImageFolderDataset>(path, split, r::read_image_folder(path, split));
}

CONTINUA_REGISTER_OBJECT("image-folder-dataset", [](const nlohmann::json& a, ObjectPool&) {
  const std::string t = "image-folder-dataset";
  return std::static_pointer_cast<const SerializableObject>(ImageFolderDataset::open(
      arg_string(a, "path", t), r::parse_split(arg_string(a, "split", t), t)));
});

// ---- Both splits ----

std::pair<std::shared_ptr<const Dataset>, std::shared_ptr<const Dataset>> open_dataset_pair(
    const std::string& format, const std::string& path, ObjectPool& pool) {
  auto dataset = [&](const std::string& type, const nlohmann::json& args) {
    return std::dynamic_pointer_cast<const Dataset>(pool.get(type, args));
  };
  const r::Split kSplits[2] = {r::Split::kTrain, r::Split::kTest};
  std::shared_ptr<const Dataset> out[2];
  if (format == "idx") {
    for (int i = 0; i < 2; ++i) {
      const r::IdxFiles f = r::locate_idx_files(path, kSplits[i]);
      out[i] = dataset("idx-dataset", {{"images", f.images}, {"labels", f.labels}});
    }
  } else if (format == "cifar" || format == "cifar10" || format == "cifar100" ||
             format == "cifar100-coarse") {
    const int want = format == "cifar" ? 0 : format == "cifar10" ? 10 : 100;
    const int variant = r::locate_cifar(path, want).variant;
    const char* label = format == "cifar100-coarse" ? "coarse" : "fine";
    for (int i = 0; i < 2; ++i) {
      out[i] = dataset("cifar-dataset", {{"path", path},
                                         {"variant", variant},
                                         {"split", r::split_name(kSplits[i])},
                                         {"label", label}});
    }
  } else if (format == "npy" || format == "csv" || format == "images") {
    const std::string type = format == "npy"   ? "npy-dataset"
                             : format == "csv" ? "csv-dataset"
                                               : "image-folder-dataset";
    for (int i = 0; i < 2; ++i) out[i] = dataset(type, path_split(path, kSplits[i]));
  } else {
    throw InvalidArgument("unknown data set format '" + format +
                          "' (idx, cifar, cifar10, cifar100, cifar100-coarse, npy, csv, images)");
  }
  if (out[0]->sample_shape() != out[1]->sample_shape()) {
    auto shape = [](const std::vector<int64_t>& v) {
      std::string s = "[";
      for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
      return s + "]";
    };
    throw CorruptionError(format + " data set '" + path + "': train samples have shape " +
                          shape(out[0]->sample_shape()) + ", test samples " +
                          shape(out[1]->sample_shape()));
  }
  return {out[0], out[1]};
}

}  // namespace continua
