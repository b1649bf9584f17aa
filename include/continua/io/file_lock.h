// FileLock: an exclusive lock on a lock file, held for the object's lifetime,
// so that two processes never write the same checkpoint (directory or file).
//
// Usage:
//   continua::io::FileLock lock("/ckpt/run1/LOCK", "checkpoint directory '/ckpt/run1'",
//                               "two runs must not write into the same checkpoint directory");
//   // ... write; the lock is released when `lock` is destroyed or the process dies.
//
// Contract: the constructor creates `lock_path` if needed, takes a
// non-blocking flock(LOCK_EX) on it and writes this process's pid into it.
// When another open file description holds the lock (another process, or
// another FileLock of this process), it throws IoError:
//   "<what> is locked by another process (pid <holder>[, this process],
//    lock file '<lock_path>'): <advice>"
// (pid "unknown" if the holder has not written its pid yet, or could not: a
// full disk does not prevent locking). Any other failure to open or lock (no
// such directory, permissions) throws IoError naming the file and the cause. The lock file is left in place on release: removing it would let
// a process that opened it before the removal and one that opens it after
// hold "the" lock at once. The kernel releases the lock of a killed process.
#pragma once

#include <string>

namespace continua::io {

class FileLock {
 public:
  FileLock(const std::string& lock_path, const std::string& what, const std::string& advice);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

}  // namespace continua::io
