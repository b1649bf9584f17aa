// Writes continua checkpoints (see include/continua/format/safetensors.h and
// docs/checkpoint-format.md). The header is built by hand rather than through
// nlohmann::json objects because the key order is part of the format: the
// header CRC must sit at a fixed offset, and readers that keep insertion
// order should see the tensors in buffer order.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <ostream>
#include <set>

#include <nlohmann/json.hpp>

#include "continua/errors.h"
#include "continua/format/safetensors.h"
#include "continua/io/atomic_file.h"
#include "continua/io/crc32c.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "tensor bytes are written in host order and the format is little-endian");

namespace continua::format {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::F64:
    case DType::I64:
      return 8;
    case DType::F32:
    case DType::I32:
      return 4;
    case DType::F16:
    case DType::BF16:
    case DType::I16:
      return 2;
    case DType::I8:
    case DType::U8:
    case DType::BOOL:
      return 1;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F64: return "F64";
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::I16: return "I16";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    case DType::BOOL: return "BOOL";
  }
  return "?";
}

std::optional<DType> parse_dtype(std::string_view name) {
  static constexpr DType kAll[] = {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64,
                                   DType::I32, DType::I16, DType::I8,  DType::U8,   DType::BOOL};
  for (DType d : kAll) {
    if (name == dtype_name(d)) return d;
  }
  return std::nullopt;
}

namespace {

using Sink = std::function<void(const void*, size_t)>;

std::string hex8(uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return std::string(buf, 8);
}

// A JSON string literal; safetensors headers must be UTF-8.
std::string json_string(const std::string& s, const char* what) {
  try {
    return nlohmann::json(s).dump();
  } catch (const nlohmann::json::exception&) {
    throw InvalidArgument(std::string(what) + " is not valid UTF-8");
  }
}

uint64_t checked_nbytes(const TensorView& t) {
  uint64_t numel = 1;
  for (int64_t d : t.shape) {
    if (d < 0) throw InvalidArgument("tensor '" + t.name + "' has a negative dimension");
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel)) {
      throw InvalidArgument("tensor '" + t.name + "': element count overflows");
    }
  }
  uint64_t nbytes;
  if (__builtin_mul_overflow(numel, dtype_size(t.dtype), &nbytes)) {
    throw InvalidArgument("tensor '" + t.name + "': byte size overflows");
  }
  return nbytes;
}

void validate(const std::vector<TensorView>& tensors,
              const std::map<std::string, std::string>& metadata) {
  std::set<std::string_view> names;
  for (const TensorView& t : tensors) {
    if (t.name.empty()) throw InvalidArgument("tensor name is empty");
    if (t.name.rfind("__", 0) == 0) {
      throw InvalidArgument("tensor name '" + t.name + "' starts with \"__\", which is reserved");
    }
    if (!names.insert(t.name).second) {
      throw InvalidArgument("duplicate tensor name '" + t.name + "'");
    }
    const uint64_t expected = checked_nbytes(t);
    if (t.nbytes != expected) {
      throw InvalidArgument("tensor '" + t.name + "': nbytes is " + std::to_string(t.nbytes) +
                            " but its shape and dtype need " + std::to_string(expected));
    }
    if (t.nbytes > 0 && t.data == nullptr) {
      throw InvalidArgument("tensor '" + t.name + "' has no data");
    }
  }
  for (const auto& [key, value] : metadata) {
    (void)value;
    if (key == kFormatKey || key == kFormatVersionKey || key == kTensorCrcKey ||
        key == kHeaderCrcKey) {
      throw InvalidArgument("metadata key '" + key + "' is reserved by continua");
    }
  }
}

// Writes the whole file through `sink`. The data is read twice (CRC pass,
// then write pass) instead of being staged: memory stays bounded by the header.
void write_impl(const Sink& sink, const std::vector<TensorView>& tensors,
                const std::map<std::string, std::string>& metadata) {
  validate(tensors, metadata);

  // Largest element first, then by name: with a 64-byte aligned buffer start
  // every tensor's offset is a multiple of its element size.
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const size_t sa = dtype_size(tensors[a].dtype), sb = dtype_size(tensors[b].dtype);
    if (sa != sb) return sa > sb;
    return tensors[a].name < tensors[b].name;
  });

  std::string crcs = "{";
  for (size_t k = 0; k < order.size(); ++k) {
    const TensorView& t = tensors[order[k]];
    if (k > 0) crcs += ',';
    crcs += json_string(t.name, "tensor name");
    crcs += ":\"" + hex8(io::crc32c(t.data, t.nbytes)) + "\"";
  }
  crcs += '}';

  std::string h;
  h += kHeaderPrefix;
  h += "00000000\"";  // the header CRC, patched in below
  h += ",\"";
  h += kFormatKey;
  h += "\":\"";
  h += kFormatName;
  h += "\",\"";
  h += kFormatVersionKey;
  h += "\":\"" + std::to_string(kFormatVersion) + "\",\"";
  h += kTensorCrcKey;
  h += "\":" + json_string(crcs, "tensor name");
  for (const auto& [key, value] : metadata) {
    h += ',' + json_string(key, "metadata key") + ':' + json_string(value, "metadata value");
  }
  h += '}';
  uint64_t offset = 0;
  for (size_t i : order) {
    const TensorView& t = tensors[i];
    h += ',' + json_string(t.name, "tensor name") + ":{\"dtype\":\"" + dtype_name(t.dtype) +
         "\",\"shape\":[";
    for (size_t d = 0; d < t.shape.size(); ++d) {
      if (d > 0) h += ',';
      h += std::to_string(t.shape[d]);
    }
    h += "],\"data_offsets\":[" + std::to_string(offset) + ',' +
         std::to_string(offset + t.nbytes) + "]}";
    offset += t.nbytes;
  }
  h += '}';
  // Spaces are the padding the safetensors spec allows at the end of the header.
  const size_t misalign = (kLengthPrefixSize + h.size()) % kDataAlignment;
  if (misalign != 0) h.append(kDataAlignment - misalign, ' ');
  if (h.size() > kMaxHeaderSize) {
    throw InvalidArgument("checkpoint header would be " + std::to_string(h.size()) +
                          " bytes, over the limit of " + std::to_string(kMaxHeaderSize));
  }

  std::string head(kLengthPrefixSize, '\0');
  uint64_t n = h.size();
  for (size_t i = 0; i < kLengthPrefixSize; ++i) head[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  head += h;
  const uint32_t header_crc = io::crc32c(head.data(), head.size());
  const std::string hex = hex8(header_crc);
  std::memcpy(&head[kLengthPrefixSize + kHeaderCrcOffset], hex.data(), 8);

  sink(head.data(), head.size());
  for (size_t i : order) {
    if (tensors[i].nbytes > 0) sink(tensors[i].data, tensors[i].nbytes);
  }
}

}  // namespace

void write_safetensors(io::WritableFile& out, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  io::BufferedWriter w(out);
  write_impl([&](const void* p, size_t n) { w.append(p, n); }, tensors, metadata);
  w.flush();
}

void write_safetensors(std::ostream& out, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  write_impl(
      [&](const void* p, size_t n) {
        // ostream::write takes a signed count; feed giant tensors in pieces.
        const auto* c = static_cast<const char*>(p);
        constexpr size_t kMaxPiece = size_t{1} << 30;
        while (n > 0) {
          const size_t k = std::min(n, kMaxPiece);
          out.write(c, static_cast<std::streamsize>(k));
          if (!out) throw IoError("cannot write checkpoint to stream");
          c += k;
          n -= k;
        }
      },
      tensors, metadata);
  out.flush();
  if (!out) throw IoError("cannot write checkpoint to stream");
}

void save_file(io::FileSystem& fs, const std::string& path,
               const std::vector<TensorView>& tensors,
               const std::map<std::string, std::string>& metadata) {
  // Validate before touching the disk: a bad argument must not even create a temp file.
  validate(tensors, metadata);
  io::atomic_write(fs, path,
                   [&](io::WritableFile& f) { write_safetensors(f, tensors, metadata); });
}

}  // namespace continua::format
