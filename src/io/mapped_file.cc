#include "continua/io/mapped_file.h"

#include <algorithm>

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

#include "continua/errors.h"

namespace continua::io {
namespace {

// data() of an empty file: non-null so callers may form [data, data+0).
const uint8_t kEmpty[1] = {0};

IoError open_error(std::string_view what, const std::string& path, const std::string& reason) {
  std::string msg = "cannot open ";
  msg.append(what);
  msg += " '" + path + "': " + reason;
  return IoError(msg);
}

}  // namespace

MappedFile MappedFile::open(const std::string& path, std::string_view what) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) throw open_error(what, path, std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw open_error(what, path, std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw open_error(what, path, "not a regular file");
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    return MappedFile(kEmpty, 0, path);
  }
  void* p = ::mmap(nullptr, static_cast<size_t>(size), PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (p == MAP_FAILED) throw open_error(what, path, std::string("mmap: ") + std::strerror(err));
  return MappedFile(static_cast<const uint8_t*>(p), size, path);
}

MappedFile MappedFile::copy_of(const void* data, uint64_t n, std::string path) {
  if (n == 0) return MappedFile(kEmpty, 0, std::move(path));
  if (n > uint64_t(SIZE_MAX)) throw std::bad_alloc();
  static const size_t page = size_t(::sysconf(_SC_PAGESIZE));
  void* p = nullptr;
  if (::posix_memalign(&p, page, static_cast<size_t>(n)) != 0) throw std::bad_alloc();
  std::memcpy(p, data, static_cast<size_t>(n));
  return MappedFile(static_cast<const uint8_t*>(p), n, std::move(path), /*copy=*/true);
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      path_(std::move(other.path_)),
      copy_(std::exchange(other.copy_, false)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    unmap();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    path_ = std::move(other.path_);
    copy_ = std::exchange(other.copy_, false);
  }
  return *this;
}

MappedFile::~MappedFile() { unmap(); }

void MappedFile::unmap() noexcept {
  if (data_ != nullptr && size_ > 0) {
    if (copy_) {
      std::free(const_cast<uint8_t*>(data_));
    } else {
      ::munmap(const_cast<uint8_t*>(data_), static_cast<size_t>(size_));
    }
  }
  data_ = nullptr;
  size_ = 0;
  copy_ = false;
}

void MappedFile::drop_pages(const void* p, uint64_t length) const noexcept {
  static const uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE));
  const auto* at = static_cast<const uint8_t*>(p);
  // MADV_DONTNEED on our own heap pages would zero them, not re-read them.
  if (copy_) return;
  if (data_ == nullptr || size_ == 0 || at < data_ || at >= data_ + size_) return;
  const uint64_t offset = uint64_t(at - data_);
  const uint64_t end = std::min(size_, offset + std::min(length, size_ - offset));
  // The mapping starts on a page boundary: round inward to whole pages.
  const uint64_t first = (offset + page - 1) / page * page;
  const uint64_t last = end == size_ ? end : end / page * page;
  if (last <= first) return;
  ::madvise(const_cast<uint8_t*>(data_) + first, static_cast<size_t>(last - first), MADV_DONTNEED);
}

}  // namespace continua::io
