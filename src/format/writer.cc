// Writes continua checkpoints (see include/continua/format/safetensors.h and
// docs/checkpoint-format.md). The header is built by hand rather than through
// nlohmann::json objects because the key order is part of the format: the
// header CRC must sit at a fixed offset, and readers that keep insertion
// order should see the tensors in buffer order.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <future>
#include <mutex>
#include <cstdlib>
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

// Largest element first, then by name: with a 64-byte aligned buffer start
// every tensor's offset is a multiple of its element size.
std::vector<size_t> buffer_order(const std::vector<TensorView>& tensors) {
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const size_t sa = dtype_size(tensors[a].dtype), sb = dtype_size(tensors[b].dtype);
    if (sa != sb) return sa > sb;
    return tensors[a].name < tensors[b].name;
  });
  return order;
}

// The length prefix and the padded JSON header, header CRC included, for the
// tensors in `order` with their CRCs in `crcs` (same order). Every CRC is 8
// hex digits, so the size does not depend on the CRC values: the streaming
// writer builds it once with zeros to learn the size, once with the truth.
std::string build_header(const std::vector<TensorView>& tensors, const std::vector<size_t>& order,
                         const std::vector<uint32_t>& crcs,
                         const std::map<std::string, std::string>& metadata) {
  std::string crc_json = "{";
  for (size_t k = 0; k < order.size(); ++k) {
    const TensorView& t = tensors[order[k]];
    if (k > 0) crc_json += ',';
    crc_json += json_string(t.name, "tensor name");
    crc_json += ":\"" + hex8(crcs[k]) + "\"";
  }
  crc_json += '}';

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
  h += "\":" + json_string(crc_json, "tensor name");
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
  return head;
}

// Writes the whole file through `sink`. The data is read twice (CRC pass,
// then write pass) instead of being staged: memory stays bounded by the
// header. Used for streams, which cannot seek back to patch the header.
void write_two_pass(const Sink& sink, const std::vector<TensorView>& tensors,
                    const std::map<std::string, std::string>& metadata) {
  validate(tensors, metadata);
  const std::vector<size_t> order = buffer_order(tensors);
  std::vector<uint32_t> crcs;
  crcs.reserve(order.size());
  for (size_t i : order) crcs.push_back(io::crc32c(tensors[i].data, tensors[i].nbytes));
  const std::string head = build_header(tensors, order, crcs, metadata);
  sink(head.data(), head.size());
  for (size_t i : order) {
    if (tensors[i].nbytes > 0) sink(tensors[i].data, tensors[i].nbytes);
  }
}

// ---- The single-pass file writer ----
//
// The file is cut into an initial region that holds the header, rounded up
// to a page, and then blocks of kBlockSize bytes at page-aligned offsets. The
// tensors are copied into page-aligned staging blocks, their CRCs computed
// on the bytes just copied (still in cache); a full block is handed to a
// background thread that writes it (with O_DIRECT, see io/file_system.cc)
// while the next block is filled. Up to kBlocks - 1 writes are in flight at
// once: this disk (virtio under gVisor) reaches its write speed only with
// several requests queued; one block in flight at a time measured 0.5x a raw
// O_DIRECT write, 4 x 16 MiB measured 0.95-1.05x (docs/benchmarks.md). The
// initial region is written last, once the CRCs are known. Memory: at most
// kBlocks blocks (64 MiB) plus the header, whatever the size of the state.

constexpr size_t kPage = 4096;
constexpr size_t kBlockSize = size_t{16} << 20;
constexpr size_t kBlocks = 4;
// Pieces in which a block is filled: copy a piece, then CRC it while it is
// still in L2.
constexpr size_t kPiece = size_t{256} << 10;

struct AlignedFree {
  void operator()(char* p) const { std::free(p); }
};
using AlignedBuffer = std::unique_ptr<char, AlignedFree>;

AlignedBuffer aligned_buffer(size_t n) {
  void* p = nullptr;
  if (::posix_memalign(&p, kPage, std::max(n, kPage)) != 0) throw std::bad_alloc();
  return AlignedBuffer(static_cast<char*>(p));
}

// Fresh anonymous memory is expensive to fault in here (about 0.15 GB/s
// under gVisor), so the staging blocks are kept for the next checkpoint.
// At most kPoolMax blocks stay allocated (64 MiB).
class BlockPool {
 public:
  static constexpr size_t kPoolMax = kBlocks;
  AlignedBuffer get() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_.empty()) {
        AlignedBuffer b = std::move(free_.back());
        free_.pop_back();
        return b;
      }
    }
    return aligned_buffer(kBlockSize);
  }
  void put(AlignedBuffer b) {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.size() < kPoolMax) free_.push_back(std::move(b));
  }

 private:
  std::mutex mu_;
  std::vector<AlignedBuffer> free_;
};

BlockPool& block_pool() {
  static BlockPool* pool = new BlockPool;  // never destroyed: used from any thread at exit
  return *pool;
}

void write_streaming(io::WritableFile& out, const std::vector<TensorView>& tensors,
                     const std::map<std::string, std::string>& metadata) {
  validate(tensors, metadata);
  const std::vector<size_t> order = buffer_order(tensors);
  std::vector<uint32_t> crcs(order.size(), 0);
  const size_t header_size = build_header(tensors, order, crcs, metadata).size();
  uint64_t data_size = 0;
  for (size_t i : order) data_size += tensors[i].nbytes;
  const uint64_t file_size = header_size + data_size;
  // The initial region: the header and the first data bytes up to a page
  // boundary (or the end of the file).
  const uint64_t initial_size =
      std::min<uint64_t>(file_size, (header_size + kPage - 1) / kPage * kPage);
  AlignedBuffer initial = aligned_buffer(static_cast<size_t>(initial_size));

  // The background writers: up to kBlocks - 1 blocks in flight while the
  // next one is filled.
  // Taken from the pool when first needed: a small checkpoint touches one.
  AlignedBuffer blocks[kBlocks];
  std::future<void> in_flight[kBlocks];
  struct Drain {  // never leave a thread writing from a freed buffer
    std::future<void>* f;
    ~Drain() {
      for (size_t i = 0; i < kBlocks; ++i)
        if (f[i].valid()) f[i].wait();
    }
  } drain{in_flight};
  size_t current = 0;
  size_t used = 0;           // bytes in blocks[current]
  uint64_t block_offset = initial_size;  // file offset of blocks[current]
  auto submit = [&]() {
    if (used == 0) return;
    const char* p = blocks[current].get();
    const size_t n = used;
    const uint64_t off = block_offset;
    in_flight[current] = std::async(std::launch::async, [&out, p, n, off] { out.pwrite(off, p, n); });
    current = (current + 1) % kBlocks;
    block_offset += used;
    used = 0;
    if (in_flight[current].valid()) in_flight[current].get();  // rethrows that write's error
  };

  uint64_t pos = header_size;  // file offset of the next data byte
  for (size_t k = 0; k < order.size(); ++k) {
    const TensorView& t = tensors[order[k]];
    const char* src = static_cast<const char*>(t.data);
    uint64_t left = t.nbytes;
    uint32_t crc = 0;
    while (left > 0) {
      char* dst;
      size_t room;
      if (pos < initial_size) {
        dst = initial.get() + pos;
        room = static_cast<size_t>(initial_size - pos);
      } else {
        if (used == kBlockSize) submit();
        if (!blocks[current]) blocks[current] = block_pool().get();
        dst = blocks[current].get() + used;
        room = kBlockSize - used;
      }
      const size_t n = static_cast<size_t>(std::min<uint64_t>({left, room, kPiece}));
      std::memcpy(dst, src, n);
      crc = io::crc32c_extend(crc, dst, n);
      if (pos >= initial_size) used += n;
      src += n;
      left -= n;
      pos += n;
    }
    crcs[k] = crc;
  }
  submit();
  for (std::future<void>& f : in_flight)
    if (f.valid()) f.get();
  for (AlignedBuffer& b : blocks)
    if (b) block_pool().put(std::move(b));

  const std::string head = build_header(tensors, order, crcs, metadata);
  if (head.size() != header_size) {
    throw std::logic_error("checkpoint writer: the header changed size when its CRCs were filled in");
  }
  std::memcpy(initial.get(), head.data(), head.size());
  out.pwrite(0, initial.get(), static_cast<size_t>(initial_size));
}

}  // namespace

void write_safetensors(io::WritableFile& out, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  write_streaming(out, tensors, metadata);
}

void write_safetensors(std::ostream& out, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  write_two_pass(
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
