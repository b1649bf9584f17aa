// The file-system interface under every checkpoint write.
//
// Every byte continua commits to disk goes through a FileSystem, so tests can
// substitute one that fails any chosen call (see fault_injection.h) and prove
// that no failure leaves a damaged or half-written checkpoint behind.
//
// Usage:
//   continua::io::FileSystem& fs = continua::io::default_file_system();
//   auto f = fs.create_exclusive("/ckpt/a.tmp");
//   f->append(bytes, n);
//   f->sync();
//   f->close();
//   fs.rename("/ckpt/a.tmp", "/ckpt/a");
//   fs.sync_dir("/ckpt");
//   // ...or simply use atomic_write() from atomic_file.h.
//
// Contract: every failure throws continua::IoError whose message names the
// operation, the path and the system's reason, e.g.
//   cannot write '/ckpt/a.tmp': No space left on device (disk full)
// ENOSPC and EDQUOT always add "(disk full)". remove() never throws. A
// WritableFile destroyed without close() closes its descriptor silently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "continua/errors.h"

namespace continua::io {

class WritableFile {
 public:
  virtual ~WritableFile();
  // Appends all n bytes at the end of what was written (retries short writes).
  virtual void append(const void* data, size_t n) = 0;
  // Writes all n bytes at `offset`; does not move the append position.
  // Several threads may call pwrite at once on disjoint ranges (the
  // checkpoint writer keeps several blocks in flight); nothing else may
  // run concurrently with it.
  virtual void pwrite(uint64_t offset, const void* data, size_t n) = 0;
  // Makes the written bytes durable.
  virtual void sync() = 0;
  // Closes the file; further calls are invalid.
  virtual void close() = 0;
};

class FileSystem {
 public:
  virtual ~FileSystem();
  // Creates a new file for writing (O_CREAT|O_EXCL|O_WRONLY|O_CLOEXEC, 0644);
  // fails if it exists.
  virtual std::unique_ptr<WritableFile> create_exclusive(const std::string& path) = 0;
  // Atomically replaces `to` with `from` (same file system).
  virtual void rename(const std::string& from, const std::string& to) = 0;
  // Makes the directory's entries (creations, renames) durable.
  virtual void sync_dir(const std::string& dir) = 0;
  // Removes a file, best effort: errors are ignored.
  virtual void remove(const std::string& path) noexcept = 0;
  virtual bool exists(const std::string& path) = 0;
  // Bytes available to an unprivileged user (statvfs f_bavail * f_frsize).
  virtual uint64_t free_bytes(const std::string& dir) = 0;
};

// The POSIX file system. Thread-safe; lives for the whole program.
FileSystem& default_file_system();

// The IoError every FileSystem throws: "cannot <operation> '<path>': <strerror(err)>",
// plus " (disk full)" for ENOSPC and EDQUOT. Shared so that wrappers (fault
// injection, remote stores) produce the same messages.
IoError make_io_error(std::string_view operation, const std::string& path, int err);

// The directory part of a path: "a/b/c" -> "a/b", "c" -> ".", "/c" -> "/".
std::string dirname_of(const std::string& path);

}  // namespace continua::io
