#include "continua/io/file_system.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>

#include "continua/io/file_lock.h"

namespace continua::io {

WritableFile::~WritableFile() = default;
ReadableFile::~ReadableFile() = default;
FileSystem::~FileSystem() = default;

IoError make_io_error(std::string_view operation, const std::string& path, int err) {
  std::string msg = "cannot ";
  msg.append(operation);
  msg += " '";
  msg += path;
  msg += "': ";
  msg += std::strerror(err);
  if (err == ENOSPC
#ifdef EDQUOT
      || err == EDQUOT
#endif
  ) {
    msg += " (disk full)";
  }
  return IoError(msg);
}

std::string dirname_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

namespace {

// Large, page-aligned writes go through a second descriptor opened with
// O_DIRECT: measured here (gVisor, ext4 on virtio), buffered writes of a
// large file crawl at 0.1-0.25 GB/s while the machine is busy, O_DIRECT
// writes run at the disk's 1.3-1.6 GB/s (docs/benchmarks.md). Everything else
// (small or unaligned pieces) takes the ordinary buffered descriptor. Both
// write at explicit offsets, so the two never disagree about the position;
// sync() still makes everything durable (O_DIRECT alone does not flush the
// device's cache or the file's size). pwrite may run on several threads at
// once (disjoint ranges): the direct descriptor is opened once under a lock
// and, if the file system refuses O_DIRECT, only marked unusable; it is
// closed with the file, never while another thread may be writing through it.
class PosixWritableFile final : public WritableFile {
 public:
  static constexpr size_t kDirectAlignment = 4096;
  static constexpr size_t kDirectMinBytes = size_t{1} << 20;

  PosixWritableFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0) ::close(fd_);
    if (direct_fd_ >= 0) ::close(direct_fd_);
  }
  PosixWritableFile(const PosixWritableFile&) = delete;
  PosixWritableFile& operator=(const PosixWritableFile&) = delete;

  void append(const void* data, size_t n) override {
    write_at(pos_, data, n);
    pos_ += n;
  }

  void pwrite(uint64_t offset, const void* data, size_t n) override { write_at(offset, data, n); }

  void sync() override {
    // fdatasync also flushes the metadata needed to read the data back (the
    // size), which is all a file about to be renamed into place needs.
    int rc;
    do {
      rc = ::fdatasync(fd_);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) throw make_io_error("sync", path_, errno);
  }

  void close() override {
    const int fd = fd_;
    fd_ = -1;
    direct_usable_.store(false);
    if (direct_fd_ >= 0) {
      ::close(direct_fd_);
      direct_fd_ = -1;
    }
    // Never retry close on EINTR: on Linux the descriptor is already released
    // and a retry could close a descriptor another thread just opened.
    if (::close(fd) != 0 && errno != EINTR) throw make_io_error("close", path_, errno);
  }

 private:
  void write_at(uint64_t offset, const void* data, size_t n) {
    const auto* p = static_cast<const char*>(data);
    if (n >= kDirectMinBytes && offset % kDirectAlignment == 0 &&
        reinterpret_cast<uintptr_t>(p) % kDirectAlignment == 0 && direct_fd() >= 0) {
      const size_t aligned = n - n % kDirectAlignment;
      if (write_all(direct_fd_, offset, p, aligned, /*direct=*/true)) {
        p += aligned;
        n -= aligned;
        offset += aligned;
      }
    }
    write_all(fd_, offset, p, n, /*direct=*/false);
  }

  // Returns false (having written nothing) when a direct write is refused
  // with EINVAL: the file system does not take O_DIRECT after all.
  bool write_all(int fd, uint64_t offset, const char* p, size_t n, bool direct) {
    while (n > 0) {
      // Linux caps one write at ~2 GiB; larger tensors arrive as short writes.
      const ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(offset));
      if (w < 0) {
        if (errno == EINTR) continue;
        if (direct && errno == EINVAL) {
          direct_usable_.store(false);
          // Whatever went through before the refusal stays written; the
          // buffered descriptor rewrites the range from its start.
          return false;
        }
        throw make_io_error("write", path_, errno);
      }
      if (w == 0) throw make_io_error("write", path_, EIO);  // no progress: never spin
      if (direct && static_cast<size_t>(w) % kDirectAlignment != 0) {
        // A short direct write leaves an unaligned remainder: finish buffered.
        p += w;
        n -= static_cast<size_t>(w);
        offset += static_cast<uint64_t>(w);
        write_all(fd_, offset, p, n, false);
        return true;
      }
      p += w;
      n -= static_cast<size_t>(w);
      offset += static_cast<uint64_t>(w);
    }
    return true;
  }

  // Opened on first use; -1 once O_DIRECT has proved unavailable.
  int direct_fd() {
    std::call_once(direct_once_, [this] {
      int fd;
      do {
        fd = ::open(path_.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
      } while (fd < 0 && errno == EINTR);
      direct_fd_ = fd;
      direct_usable_.store(fd >= 0);
    });
    return direct_usable_.load() ? direct_fd_ : -1;
  }

  int fd_;
  int direct_fd_ = -1;
  std::once_flag direct_once_;
  std::atomic<bool> direct_usable_{false};
  uint64_t pos_ = 0;
  std::string path_;
};

class PosixReadableFile final : public ReadableFile {
 public:
  PosixReadableFile(int fd, uint64_t size, std::string path) : fd_(fd), size_(size), path_(std::move(path)) {}
  ~PosixReadableFile() override { ::close(fd_); }
  PosixReadableFile(const PosixReadableFile&) = delete;
  PosixReadableFile& operator=(const PosixReadableFile&) = delete;

  uint64_t size() const override { return size_; }

  size_t read(uint64_t offset, void* buf, size_t n) override {
    auto* p = static_cast<char*>(buf);
    size_t done = 0;
    while (done < n) {
      const ssize_t r = ::pread(fd_, p + done, n - done, static_cast<off_t>(offset + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        throw make_io_error("read", path_, errno);
      }
      if (r == 0) break;  // end of file
      done += static_cast<size_t>(r);
    }
    return done;
  }

 private:
  int fd_;
  uint64_t size_;
  std::string path_;
};

class PosixFileSystem final : public FileSystem {
 public:
  std::unique_ptr<WritableFile> create_exclusive(const std::string& path) override {
    int fd;
    do {
      fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) throw make_io_error("create", path, errno);
    return std::make_unique<PosixWritableFile>(fd, path);
  }

  void rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      const int err = errno;
      throw make_io_error("rename", from + "' to '" + to, err);
    }
  }

  void sync_dir(const std::string& dir) override {
    int fd;
    do {
      fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) throw make_io_error("open directory", dir, errno);
    int rc;
    do {
      rc = ::fsync(fd);
    } while (rc != 0 && errno == EINTR);
    const int err = errno;
    ::close(fd);
    // Some file systems (certain FUSE and network mounts) cannot fsync a
    // directory and say so with EINVAL; there is nothing more to make durable.
    if (rc != 0 && err != EINVAL) throw make_io_error("sync directory", dir, err);
  }

  void remove(const std::string& path) noexcept override { ::unlink(path.c_str()); }

  bool exists(const std::string& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) == 0) return true;
    if (errno == ENOENT || errno == ENOTDIR) return false;
    throw make_io_error("stat", path, errno);
  }

  uint64_t free_bytes(const std::string& dir) override {
    struct statvfs st;
    if (::statvfs(dir.c_str(), &st) != 0) throw make_io_error("statvfs", dir, errno);
    return static_cast<uint64_t>(st.f_bavail) * static_cast<uint64_t>(st.f_frsize);
  }
};

}  // namespace

MappedFile FileSystem::map(const std::string& path, std::string_view what) { return MappedFile::open(path, what); }

std::unique_ptr<ReadableFile> FileSystem::open_read(const std::string& path, std::string_view what) {
  const std::string op = "open " + std::string(what);
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) throw make_io_error(op, path, errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw make_io_error(op, path, err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw IoError("cannot " + op + " '" + path + "': not a regular file");
  }
  return std::make_unique<PosixReadableFile>(fd, static_cast<uint64_t>(st.st_size), path);
}

std::vector<std::string> FileSystem::list_dir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) throw make_io_error("list directory", dir, errno);
  std::vector<std::string> names;
  while (true) {
    errno = 0;
    const dirent* e = ::readdir(d);
    if (e == nullptr) {
      const int err = errno;
      ::closedir(d);
      if (err != 0) throw make_io_error("list directory", dir, err);
      break;
    }
    const std::string_view n = e->d_name;
    if (n != "." && n != "..") names.emplace_back(n);
  }
  return names;
}

std::unique_ptr<FileLock> FileSystem::lock(const std::string& lock_path, const std::string& what,
                                           const std::string& advice) {
  return std::make_unique<FileLock>(lock_path, what, advice);
}

std::unique_ptr<FileLock> FileSystemWrapper::lock(const std::string& lock_path, const std::string& what,
                                                  const std::string& advice) {
  return base_.lock(lock_path, what, advice);
}

FileSystem& default_file_system() {
  static PosixFileSystem fs;
  return fs;
}

}  // namespace continua::io
