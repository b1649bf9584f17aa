#include "continua/data/dataset.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <sys/stat.h>
#include <zlib.h>

#include <cerrno>
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

// 4 GiB: far above any IDX data set, far below what would exhaust memory.
constexpr uint64_t kMaxIdxBytes = uint64_t(1) << 32;

[[noreturn]] void corrupt(const std::string& path, const std::string& what) {
  throw CorruptionError("IDX file '" + path + "': " + what);
}

uint32_t big_endian_u32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

}  // namespace

namespace {

// Reads exactly n bytes (fewer only at the end of the data).
size_t gz_read_fully(gzFile f, uint8_t* out, size_t n, const std::string& path) {
  size_t done = 0;
  while (done < n) {
    const unsigned want = unsigned(std::min<size_t>(n - done, 1u << 30));
    const int got = gzread(f, out + done, want);
    if (got < 0) {
      int err = 0;
      std::string msg = gzerror(f, &err);
      corrupt(path, "cannot decompress: " + msg);
    }
    if (got == 0) break;
    done += size_t(got);
  }
  return done;
}

}  // namespace

IdxArray read_idx_file(const std::string& path) {
  // Paths may come from a checkpoint: only regular files, and never more
  // memory than the dims declare (bounded below), so /dev/zero or a gzip
  // bomb cannot take the process over.
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw IoError("cannot open IDX file '" + path + "': " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) throw IoError("IDX file '" + path + "' is not a regular file");
  // gzread reads plain files as they are, so one path serves .gz and raw IDX.
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) {
    throw IoError("cannot open IDX file '" + path + "': " + std::strerror(errno ? errno : ENOENT));
  }
  std::unique_ptr<gzFile_s, int (*)(gzFile)> closer(f, gzclose);
  uint8_t head[4 + 4 * 4];
  if (gz_read_fully(f, head, 4, path) < 4) corrupt(path, "truncated: shorter than the 4-byte magic number");
  if (head[0] != 0 || head[1] != 0) {
    corrupt(path, "wrong magic number (expected 0x0000 then a type code and the number of dims)");
  }
  if (head[2] != 0x08) {
    corrupt(path, "unsupported data type code " + std::to_string(head[2]) +
                      " (only unsigned byte, 0x08, is supported)");
  }
  const size_t ndims = head[3];
  if (ndims == 0 || ndims > 4) corrupt(path, "invalid number of dims " + std::to_string(ndims));
  if (gz_read_fully(f, head + 4, 4 * ndims, path) < 4 * ndims) {
    corrupt(path, "truncated in the dimension list");
  }
  IdxArray out;
  uint64_t count = 1;
  for (size_t i = 0; i < ndims; ++i) {
    uint32_t d = big_endian_u32(&head[4 + 4 * i]);
    out.dims.push_back(d);
    count *= d;
    if (count > kMaxIdxBytes) {
      corrupt(path, "dimensions claim more than " + std::to_string(kMaxIdxBytes) + " bytes");
    }
  }
  out.data.resize(count);
  const size_t got = gz_read_fully(f, out.data.data(), count, path);
  if (got < count) {
    corrupt(path, "truncated: dims need " + std::to_string(count) + " bytes of data, file has " +
                      std::to_string(got));
  }
  uint8_t extra[4096];
  const size_t trailing = gz_read_fully(f, extra, sizeof extra, path);
  if (trailing > 0) {
    corrupt(path, "has " + std::string(trailing == sizeof extra ? "at least " : "") +
                      std::to_string(trailing) + " bytes after the data its dims describe");
  }
  return out;
}

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
