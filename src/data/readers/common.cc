// What every reader shares: dtypes, whole-file reads, conversions, folders.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "data/readers/common.h"

namespace continua::readers {

namespace internal {

void corrupt(const std::string& kind, const std::string& name, const std::string& what) {
  throw CorruptionError(kind + " '" + name + "': " + what);
}

int64_t bounded_numel(const std::vector<int64_t>& shape, size_t element_size, uint64_t max_bytes) {
  for (int64_t d : shape) {
    if (d < 0) return -1;
    if (d == 0) return 0;
  }
  uint64_t limit = max_bytes / element_size;  // elements the bytes can hold
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (uint64_t(d) > limit / n) return -1;
    n *= uint64_t(d);
  }
  return int64_t(n);
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string join(const std::string& folder, const std::string& name) {
  if (!folder.empty() && folder.back() == '/') return folder + name;
  return folder + "/" + name;
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::vector<std::string> list_folder(const std::string& folder, bool dirs) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::directory_iterator it(folder, ec), end;
  if (ec) throw IoError("cannot list folder '" + folder + "': " + ec.message());
  std::vector<std::string> names;
  for (; it != end; it.increment(ec)) {
    const std::string path = it->path().string();
    if (dirs ? is_directory(path) : is_regular_file(path)) {
      names.push_back(it->path().filename().string());
    }
  }
  if (ec) throw IoError("cannot list folder '" + folder + "': " + ec.message());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace internal

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kBool:
    case DType::kUInt8:
    case DType::kInt8:
      return 1;
    case DType::kUInt16:
    case DType::kInt16:
    case DType::kFloat16:
      return 2;
    case DType::kUInt32:
    case DType::kInt32:
    case DType::kFloat32:
      return 4;
    case DType::kUInt64:
    case DType::kInt64:
    case DType::kFloat64:
      return 8;
  }
  return 1;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kBool: return "bool";
    case DType::kUInt8: return "uint8";
    case DType::kInt8: return "int8";
    case DType::kUInt16: return "uint16";
    case DType::kInt16: return "int16";
    case DType::kUInt32: return "uint32";
    case DType::kInt32: return "int32";
    case DType::kUInt64: return "uint64";
    case DType::kInt64: return "int64";
    case DType::kFloat16: return "float16";
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
  }
  return "?";
}

int64_t RawArray::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const char* split_name(Split split) { return split == Split::kTrain ? "train" : "test"; }

Split parse_split(const std::string& name, const std::string& what) {
  if (name == "train") return Split::kTrain;
  if (name == "test") return Split::kTest;
  throw InvalidArgument(what + ": split '" + name + "' is neither 'train' nor 'test'");
}

std::vector<uint8_t> read_file_bytes(const std::string& path, const std::string& what) {
  // Paths may come from a checkpoint: only regular files, whose size backs
  // the allocation (not /dev/zero, not a FIFO that never ends).
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IoError("cannot open " + what + " '" + path + "': " + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    throw IoError("cannot stat " + what + " '" + path + "': " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) throw IoError(what + " '" + path + "' is not a regular file");
  std::vector<uint8_t> bytes(size_t(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t got = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw IoError("cannot read " + what + " '" + path + "': " + std::strerror(errno));
    if (got == 0) throw IoError(what + " '" + path + "' shrank while it was read");
    done += size_t(got);
  }
  return bytes;
}

namespace {

float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h >> 15) << 31;
  const uint32_t exp = (h >> 10) & 0x1F;
  const uint32_t mant = h & 0x3FF;
  float value;
  if (exp == 0) {
    value = std::ldexp(float(mant), -24);  // zero or subnormal
  } else if (exp == 31) {
    value = mant ? std::nanf("") : INFINITY;
  } else {
    value = std::ldexp(float(mant | 0x400), int(exp) - 25);
  }
  float out = value;
  if (sign) out = -out;
  return out;
}

// Element i of an array as a double (exact for every integer type up to
// 2^53; labels never come near that, they are bounded by kMaxLabel).
template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

double element(const RawArray& a, int64_t i) {
  const uint8_t* p = a.bytes.data() + size_t(i) * dtype_size(a.dtype);
  switch (a.dtype) {
    case DType::kBool: return *p ? 1.0 : 0.0;
    case DType::kUInt8: return *p;
    case DType::kInt8: return load<int8_t>(p);
    case DType::kUInt16: return load<uint16_t>(p);
    case DType::kInt16: return load<int16_t>(p);
    case DType::kUInt32: return load<uint32_t>(p);
    case DType::kInt32: return load<int32_t>(p);
    case DType::kUInt64: return double(load<uint64_t>(p));
    case DType::kInt64: return double(load<int64_t>(p));
    case DType::kFloat16: return half_to_float(load<uint16_t>(p));
    case DType::kFloat32: return load<float>(p);
    case DType::kFloat64: return load<double>(p);
  }
  return 0.0;
}

}  // namespace

RawArray to_float32(const RawArray& array) {
  RawArray out;
  out.shape = array.shape;
  out.dtype = DType::kFloat32;
  if (array.dtype == DType::kFloat32) {
    out.bytes = array.bytes;
    return out;
  }
  const int64_t n = int64_t(array.bytes.size() / dtype_size(array.dtype));
  out.bytes.resize(size_t(n) * sizeof(float));
  for (int64_t i = 0; i < n; ++i) {
    const float v = float(element(array, i));
    std::memcpy(out.bytes.data() + size_t(i) * sizeof v, &v, sizeof v);
  }
  return out;
}

namespace {
std::string number(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}
}  // namespace

std::vector<int64_t> to_labels(const RawArray& array, const std::string& name) {
  if (!(array.shape.size() == 1 || (array.shape.size() == 2 && array.shape[1] == 1))) {
    internal::corrupt("labels", name,
                      "shape " + internal::shape_string(array.shape) + " is neither [N] nor [N, 1]");
  }
  const int64_t n = array.shape[0];
  std::vector<int64_t> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double v = element(array, i);
    if (!(v >= 0)) {  // also NaN
      internal::corrupt("labels", name, "element " + std::to_string(i) + " is " +
                                            number(v) + ", a label must be >= 0");
    }
    if (v != std::floor(v)) {
      internal::corrupt("labels", name, "element " + std::to_string(i) + " is " +
                                            number(v) + ", not an integer");
    }
    if (v > double(kMaxLabel)) {
      internal::corrupt("labels", name, "element " + std::to_string(i) + " is " +
                                            number(v) + ", above the largest label " +
                                            std::to_string(kMaxLabel));
    }
    labels[size_t(i)] = int64_t(v);
  }
  return labels;
}

}  // namespace continua::readers
