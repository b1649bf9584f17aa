// The continua checkpoint file: a valid safetensors file whose
// "__metadata__" carries continua's format version and CRC32C checksums.
// This one header holds the layout constants shared by the writer and the
// reader; docs/checkpoint-format.md is the byte-level specification.
//
// Layout (all integers little-endian):
//   u64 N | N bytes of JSON header, space-padded so 8 + N is a multiple of 64 |
//   byte buffer: the tensors, contiguous, ordered by element size descending
//   then by name, so each tensor is aligned to its element size.
// The header begins with exactly
//   {"__metadata__":{"header_crc32c":"xxxxxxxx","format":"continua-checkpoint",
//    "format_version":"1","tensor_crc32c":"{\"name\":\"xxxxxxxx\",...}", ...user keys}
// followed by one entry per tensor: "name":{"dtype":..,"shape":[..],"data_offsets":[b,e]}.
//
// Writing:
//   std::vector<TensorView> ts = {{"fc1.weight", DType::F32, {4, 3}, ptr, 48}};
//   continua::format::save_file(continua::io::default_file_system(),
//                               "/ckpt/a.safetensors", ts, {{"step", "100"}});
// Reading (verify before use):
//   auto r = SafetensorsReader::open_file("/ckpt/a.safetensors");
//   r.verify_all();
//   const TensorInfo* w = r.find("fc1.weight");
//   const float* p = reinterpret_cast<const float*>(r.data(*w));
//
// Contract:
// - Writers throw continua::InvalidArgument for impossible input (empty,
//   duplicate or "__"-prefixed names, nbytes not numel * element size, a
//   negative dimension, metadata keys reserved by continua) and
//   continua::IoError when the bytes cannot be written. save_file() is atomic.
// - Readers throw continua::IoError when the file cannot be opened,
//   continua::CorruptionError ("corrupt checkpoint '<path>': <record>: <why>")
//   for any file that is not a sound checkpoint, and continua::VersionError for
//   a sound header of another format version. open_* validate the whole
//   header and the layout; tensor bytes are checked against their CRC32C by
//   verify_tensor()/verify_all() (or eagerly with ReadOptions().verify(true)).
//   A reader never allocates more than the bytes present and runs no code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "continua/io/file_system.h"
#include "continua/io/mapped_file.h"

namespace continua::format {

// ---- Layout constants (see docs/checkpoint-format.md) ----
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr std::string_view kFormatName = "continua-checkpoint";
inline constexpr std::string_view kMetadataKey = "__metadata__";
inline constexpr std::string_view kFormatKey = "format";
inline constexpr std::string_view kFormatVersionKey = "format_version";
inline constexpr std::string_view kTensorCrcKey = "tensor_crc32c";
inline constexpr std::string_view kHeaderCrcKey = "header_crc32c";
// Every continua header starts with these bytes, then 8 lowercase hex digits
// (the header CRC) and a closing quote. Fixing the position lets a reader
// check the CRC before it parses any JSON.
inline constexpr std::string_view kHeaderPrefix = R"({"__metadata__":{"header_crc32c":")";
inline constexpr size_t kHeaderCrcOffset = kHeaderPrefix.size();  // within the header
inline constexpr size_t kLengthPrefixSize = 8;
// The data buffer starts at a multiple of this in the file.
inline constexpr size_t kDataAlignment = 64;
// The official safetensors readers refuse longer headers (100,000,000 bytes).
inline constexpr uint64_t kMaxHeaderSize = 100'000'000;
// JSON nesting deeper than this is rejected before parsing.
inline constexpr int kMaxJsonDepth = 64;

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

size_t dtype_size(DType dtype);
// The safetensors name: "F32", "BF16", "BOOL", ...
const char* dtype_name(DType dtype);
std::optional<DType> parse_dtype(std::string_view name);

// ---- Writing ----

// One tensor to write. `data` points to nbytes contiguous bytes in the host's
// (little-endian) order; nbytes must equal numel(shape) * dtype_size(dtype).
struct TensorView {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;
  uint64_t nbytes;
};

// Writes a checkpoint into `out`, which must be empty (the file is written at
// explicit offsets from 0). One pass over the data: each piece is copied into
// a page-aligned staging block and checksummed there, full blocks are written
// by a background thread (O_DIRECT when the file system takes it) while the
// next is filled, and the header, whose CRCs are only then known, is written
// last at offset 0. Memory beyond the header: two 8 MiB staging blocks, kept
// for the next call. The stream overload reads the data twice (CRC pass, then
// write pass) because a stream cannot seek back to the header.
void write_safetensors(io::WritableFile& out, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata);
void write_safetensors(std::ostream& out, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata);
// atomic_write + write_safetensors.
void save_file(io::FileSystem& fs, const std::string& path,
               const std::vector<TensorView>& tensors,
               const std::map<std::string, std::string>& metadata);

// ---- Reading ----

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t offset;  // absolute, from the start of the file
  uint64_t nbytes;
  uint32_t crc32c;
};

struct ReadOptions {
  // Check every tensor's CRC32C while opening (one pass over the data).
  ReadOptions& verify(bool v) {
    verify_ = v;
    return *this;
  }
  // The file system open_file maps the file through (tests inject read
  // faults here); null: the POSIX one.
  ReadOptions& file_system(io::FileSystem* v) {
    fs_ = v;
    return *this;
  }
  bool verify_ = false;
  io::FileSystem* fs_ = nullptr;
};

class SafetensorsReader {
 public:
  // Maps the file read-only (FileSystem::map of options.file_system); tensors
  // point into the mapping.
  static SafetensorsReader open_file(const std::string& path, const ReadOptions& options = {});
  // Reads the stream to its end into memory, in chunks, so allocation never
  // exceeds (about twice) the bytes actually present.
  static SafetensorsReader from_stream(std::istream& in, std::string name_for_errors,
                                       const ReadOptions& options = {});
  static SafetensorsReader from_memory(std::shared_ptr<const std::string> bytes,
                                       std::string name_for_errors,
                                       const ReadOptions& options = {});

  // The caller's metadata only: continua's reserved keys (format,
  // format_version, tensor_crc32c, header_crc32c) are stripped.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // In file order (by offset).
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(const std::string& name) const;
  // The tensor's bytes, aligned to its element size. Valid while this reader
  // or keep_alive() lives.
  const uint8_t* data(const TensorInfo& info) const { return base_ + info.offset; }
  // Throws CorruptionError naming the tensor if its bytes fail their CRC32C.
  void verify_tensor(const TensorInfo& info) const;
  // Every tensor. On a mapped file the pages are read ahead by a helper
  // thread at most 16 MiB ahead and given back to the page cache once
  // checked, so verifying holds a bounded part of the file in memory.
  void verify_all() const;

  // Gives the pages wholly inside [data, data + bytes) back to the page cache
  // when this reader maps a file (io::MappedFile::drop_pages); they read back
  // with the same bytes. Anything else (memory, other addresses): nothing.
  void drop_pages(const void* data, uint64_t bytes) const;
  // The same as a function that keeps the mapping alive (for
  // StateTree::set_release_hook).
  std::function<void(const void*, size_t)> page_dropper() const;

  uint64_t file_size() const { return size_; }
  uint32_t format_version() const { return format_version_; }
  const std::string& name() const { return name_; }
  // The owner of the bytes, so tensors can alias them zero-copy.
  std::shared_ptr<const void> keep_alive() const { return owner_; }

 private:
  SafetensorsReader() = default;
  void parse(const ReadOptions& options);

  std::shared_ptr<const void> owner_;
  std::shared_ptr<const io::MappedFile> mapped_;  // when the bytes are a mapping
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  std::string name_;
  uint32_t format_version_ = 0;
  std::map<std::string, std::string> metadata_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
};

}  // namespace continua::format
