// CIFAR-10 and CIFAR-100 in their binary distribution: fixed-size records
// of label bytes and 3x32x32 pixel planes, nothing else in the file.
#include <cstring>

#include "data/readers/common.h"

namespace continua::readers {

namespace {

constexpr size_t kPixels = 3 * 32 * 32;
constexpr const char* kCifar10Folder = "cifar-10-batches-bin";
constexpr const char* kCifar100Folder = "cifar-100-binary";

[[noreturn]] void corrupt(const std::string& name, const std::string& what) {
  internal::corrupt("CIFAR file", name, what);
}

bool looks_like(const std::string& folder, int variant) {
  if (variant == 10) {
    return internal::is_regular_file(internal::join(folder, "data_batch_1.bin")) ||
           internal::is_regular_file(internal::join(folder, "test_batch.bin"));
  }
  return internal::is_regular_file(internal::join(folder, "train.bin")) ||
         internal::is_regular_file(internal::join(folder, "test.bin"));
}

// Non-empty lines of a names file, when there is one with `expected` of them.
std::vector<std::string> read_names(const std::string& path, size_t expected) {
  if (!internal::is_regular_file(path)) return {};
  const std::vector<uint8_t> bytes = read_file_bytes(path, "CIFAR names file");
  std::vector<std::string> names;
  std::string line;
  auto flush = [&] {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) names.push_back(line);
    line.clear();
  };
  for (uint8_t c : bytes) {
    if (c == '\n') {
      flush();
      if (names.size() > expected) break;
    } else {
      line.push_back(char(c));
    }
  }
  flush();
  if (names.size() != expected) {
    internal::corrupt("CIFAR names file", path,
                      "has " + std::to_string(names.size()) + " names, expected " +
                          std::to_string(expected));
  }
  return names;
}

}  // namespace

const char* cifar_label_name(CifarLabel label) {
  return label == CifarLabel::kFine ? "fine" : "coarse";
}

CifarLabel parse_cifar_label(const std::string& name, const std::string& what) {
  if (name == "fine") return CifarLabel::kFine;
  if (name == "coarse") return CifarLabel::kCoarse;
  throw InvalidArgument(what + ": CIFAR label set '" + name + "' is neither 'fine' nor 'coarse'");
}

RawSamples parse_cifar(const uint8_t* data, size_t size, const std::string& name, int variant,
                       CifarLabel label) {
  if (variant != 10 && variant != 100) {
    throw InvalidArgument("CIFAR variant " + std::to_string(variant) + " is neither 10 nor 100");
  }
  if (variant == 10 && label == CifarLabel::kCoarse) {
    throw InvalidArgument("CIFAR-10 has no coarse labels (file '" + name + "')");
  }
  const size_t label_bytes = variant == 10 ? 1 : 2;
  const size_t record = label_bytes + kPixels;
  if (size == 0) corrupt(name, "is empty");
  if (size % record != 0) {
    corrupt(name, "size " + std::to_string(size) + " is not a multiple of the " +
                      std::to_string(record) + "-byte CIFAR-" + std::to_string(variant) +
                      " record (record " + std::to_string(size / record) + " is truncated)");
  }
  const size_t n = size / record;
  RawSamples out;
  out.inputs.shape = {int64_t(n), 3, 32, 32};
  out.inputs.dtype = DType::kUInt8;
  out.inputs.bytes.resize(n * kPixels);
  out.labels.resize(n);
  // CIFAR-100 records: coarse then fine label.
  const size_t which = variant == 10 ? 0 : (label == CifarLabel::kCoarse ? 0 : 1);
  const int limit = variant == 10 ? 10 : (label == CifarLabel::kCoarse ? 20 : 100);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* r = data + i * record;
    if (variant == 100 && (r[0] >= 20 || r[1] >= 100)) {
      const bool coarse_bad = r[0] >= 20;
      corrupt(name, "record " + std::to_string(i) + " (byte " + std::to_string(i * record) +
                        ") has " + (coarse_bad ? "coarse" : "fine") + " label " +
                        std::to_string(coarse_bad ? r[0] : r[1]) + ", not below " +
                        (coarse_bad ? "20" : "100"));
    }
    if (r[which] >= limit) {
      corrupt(name, "record " + std::to_string(i) + " (byte " + std::to_string(i * record) +
                        ") has label " + std::to_string(r[which]) + ", not below " +
                        std::to_string(limit));
    }
    out.labels[i] = r[which];
    std::memcpy(out.inputs.bytes.data() + i * kPixels, r + label_bytes, kPixels);
  }
  return out;
}

CifarLocation locate_cifar(const std::string& path, int variant) {
  if (variant != 0 && variant != 10 && variant != 100) {
    throw InvalidArgument("CIFAR variant " + std::to_string(variant) +
                          " is none of 0 (detect), 10, 100");
  }
  if (!internal::is_directory(path)) {
    throw InvalidArgument("CIFAR data set '" + path + "' is not a folder");
  }
  std::vector<CifarLocation> found;
  for (int v : {10, 100}) {
    if (variant != 0 && v != variant) continue;
    const std::string sub = internal::join(path, v == 10 ? kCifar10Folder : kCifar100Folder);
    if (looks_like(path, v)) {
      found.push_back({path, v});
    } else if (internal::is_directory(sub)) {
      found.push_back({sub, v});
    }
  }
  if (found.size() == 1) return found[0];
  if (found.empty()) {
    const std::string want = variant == 10    ? "CIFAR-10 (data_batch_1.bin..data_batch_5.bin, "
                                                "test_batch.bin, or a folder cifar-10-batches-bin)"
                             : variant == 100 ? "CIFAR-100 (train.bin, test.bin, or a folder "
                                                "cifar-100-binary)"
                                              : "CIFAR-10 or CIFAR-100 binary files (or a folder "
                                                "cifar-10-batches-bin or cifar-100-binary)";
    throw InvalidArgument("'" + path + "' holds no " + want);
  }
  throw InvalidArgument("'" + path + "' holds both CIFAR-10 and CIFAR-100: say which (cifar10 or cifar100)");
}

RawSamples read_cifar(const std::string& path, Split split, int variant, CifarLabel label) {
  const CifarLocation where = locate_cifar(path, variant);
  std::vector<std::string> files;
  if (where.variant == 10) {
    if (split == Split::kTrain) {
      for (int i = 1; i <= 5; ++i) files.push_back("data_batch_" + std::to_string(i) + ".bin");
    } else {
      files.push_back("test_batch.bin");
    }
  } else {
    files.push_back(split == Split::kTrain ? "train.bin" : "test.bin");
  }
  RawSamples all;
  all.inputs.shape = {0, 3, 32, 32};
  for (const std::string& f : files) {
    const std::string file = internal::join(where.folder, f);
    if (!internal::is_regular_file(file)) {
      throw IoError("CIFAR-" + std::to_string(where.variant) + " folder '" + where.folder +
                    "' has no batch file " + f);
    }
    const std::vector<uint8_t> bytes = read_file_bytes(file, "CIFAR file");
    RawSamples part = parse_cifar(bytes.data(), bytes.size(), file, where.variant, label);
    if (files.size() == 1) {
      all = std::move(part);
      continue;
    }
    all.inputs.shape[0] += part.inputs.shape[0];
    all.inputs.bytes.insert(all.inputs.bytes.end(), part.inputs.bytes.begin(), part.inputs.bytes.end());
    all.labels.insert(all.labels.end(), part.labels.begin(), part.labels.end());
  }
  if (where.variant == 10) {
    all.class_names = read_names(internal::join(where.folder, "batches.meta.txt"), 10);
  } else {
    all.class_names = read_names(
        internal::join(where.folder, label == CifarLabel::kFine ? "fine_label_names.txt"
                                                                : "coarse_label_names.txt"),
        label == CifarLabel::kFine ? 100 : 20);
  }
  return all;
}

}  // namespace continua::readers
