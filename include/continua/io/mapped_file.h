// A read-only memory map of a whole file: how checkpoints are read, so that
// tensors can alias the file's pages instead of being copied.
//
// Usage:
//   auto f = std::make_shared<continua::io::MappedFile>(
//       continua::io::MappedFile::open("/ckpt/a.safetensors", "checkpoint"));
//   const uint8_t* p = f->data();  // f->size() bytes, page-aligned
//   // A FileSystem that cannot map (a test wrapper that damages what is
//   // read, an in-memory store) hands out a copy with the same interface:
//   auto c = continua::io::MappedFile::copy_of(bytes.data(), bytes.size(), "/ckpt/a");
//
// Contract: open() throws continua::IoError naming the path when the file
// cannot be opened, is not a regular file, or cannot be mapped, e.g.
//   cannot open checkpoint '/x': No such file or directory
// An empty file maps to size() == 0 and a non-null data(). The mapping is
// private and read-only; it lives until the object (move-only) is destroyed.
// Truncating the file while it is mapped makes reads of the lost pages raise
// SIGBUS: checkpoints are only ever replaced by rename, never rewritten.
// drop_pages(p, length) gives the pages of the mapping wholly inside
// [p, p + length) back to the page cache (madvise MADV_DONTNEED): they leave
// the resident set and are read again from the file if touched, with the
// same bytes. Addresses outside the mapping are ignored. copy_of() holds its
// bytes in page-aligned heap memory (is_copy() is true): drop_pages does
// nothing there, since those pages have no file to come back from.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace continua::io {

class MappedFile {
 public:
  // `what` names the file's role in error messages ("file", "checkpoint", ...).
  static MappedFile open(const std::string& path, std::string_view what = "file");
  // A copy of n bytes, named `path` in messages. Throws std::bad_alloc.
  static MappedFile copy_of(const void* data, uint64_t n, std::string path);

  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
  bool is_copy() const { return copy_; }
  void drop_pages(const void* p, uint64_t length) const noexcept;

 private:
  MappedFile(const uint8_t* data, uint64_t size, std::string path, bool copy = false)
      : data_(data), size_(size), path_(std::move(path)), copy_(copy) {}
  void unmap() noexcept;

  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  std::string path_;
  bool copy_ = false;  // data_ is heap memory of ours (copy_of), not a mapping
};

}  // namespace continua::io
