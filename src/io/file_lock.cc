#include "continua/io/file_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>

#include "continua/errors.h"
#include "continua/io/file_system.h"

namespace continua::io {
namespace {

std::string read_lock_holder(int fd) {
  char buf[32] = {};
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  std::string s = n > 0 ? std::string(buf, size_t(n)) : std::string();
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s.empty() ? "unknown" : s;
}

}  // namespace

FileLock::FileLock(const std::string& lock_path, const std::string& what, const std::string& advice)
    : path_(lock_path) {
  do {
    fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  } while (fd_ < 0 && errno == EINTR);
  if (fd_ < 0) throw make_io_error("open lock file", lock_path, errno);
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    const std::string holder = read_lock_holder(fd_);
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK) {
      const bool self = holder == std::to_string(::getpid());
      throw IoError(what + " is locked by another process (pid " + holder + (self ? ", this process" : "") +
                    ", lock file '" + lock_path + "'): " + advice);
    }
    throw make_io_error("lock", lock_path, err);
  }
  // The pid is for the message of whoever is refused; the lock does not
  // depend on it. On a full disk it cannot be written: the lock still holds
  // (the holder shows as "unknown") and the run's first save reports the
  // full disk, which is the error that matters.
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) == 0 && ::pwrite(fd_, pid.data(), pid.size(), 0) != ssize_t(pid.size())) {
    (void)::ftruncate(fd_, 0);
  }
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

}  // namespace continua::io
