// The file-system interface under every checkpoint write and read.
//
// Every byte continua commits to disk, and every checkpoint file it maps,
// reads or lists, goes through a FileSystem, so tests can substitute one
// that fails any chosen call (fault_injection.h) or loses what a power cut
// would lose (power_loss.h) and prove that no failure leaves a damaged or
// half-written checkpoint behind, or is taken for a good one.
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
//   continua::io::MappedFile m = fs.map("/ckpt/a", "checkpoint");  // read it back
//   for (const std::string& name : fs.list_dir("/ckpt")) { ... }
//
// Contract: every failure throws continua::IoError whose message names the
// operation, the path and the system's reason, e.g.
//   cannot write '/ckpt/a.tmp': No space left on device (disk full)
// ENOSPC and EDQUOT always add "(disk full)". remove() never throws. A
// WritableFile destroyed without close() closes its descriptor silently.
//
// The read side (map, open_read, list_dir, lock) has default
// implementations that use the POSIX calls directly, so a FileSystem written
// for the write side alone reads as before; FileSystemWrapper forwards every
// call to another FileSystem and is the base of the test wrappers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "continua/errors.h"
#include "continua/io/mapped_file.h"

namespace continua::io {

class FileLock;

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

// A file opened for reading at explicit offsets.
class ReadableFile {
 public:
  virtual ~ReadableFile();
  // The file's size when it was opened.
  virtual uint64_t size() const = 0;
  // Reads up to n bytes at `offset` into `buf` and returns how many it read:
  // fewer than n only at the end of the file (short reads and EINTR are
  // retried). Safe to call from several threads at once.
  virtual size_t read(uint64_t offset, void* buf, size_t n) = 0;
};

class FileSystem {
 public:
  virtual ~FileSystem();
  // Creates a new file for writing (O_CREAT|O_EXCL|O_WRONLY|O_CLOEXEC, 0644);
  // fails if it exists.
  virtual std::unique_ptr<WritableFile> create_exclusive(const std::string& path) = 0;
  // Atomically replaces `to` with `from` (same file system).
  virtual void rename(const std::string& from, const std::string& to) = 0;
  // Makes the directory's entries (creations, renames, removals) durable.
  virtual void sync_dir(const std::string& dir) = 0;
  // Removes a file, best effort: errors are ignored.
  virtual void remove(const std::string& path) noexcept = 0;
  virtual bool exists(const std::string& path) = 0;
  // Bytes available to an unprivileged user (statvfs f_bavail * f_frsize).
  virtual uint64_t free_bytes(const std::string& dir) = 0;

  // ---- Reading (defaults: the POSIX calls) ----

  // The whole file, read-only: MappedFile::open (a private mmap). `what`
  // names the file's role in error messages ("checkpoint", ...). A file
  // system that cannot map returns MappedFile::copy_of its bytes.
  virtual MappedFile map(const std::string& path, std::string_view what);
  // Opens a regular file for reading; throws IoError
  // ("cannot open <what> '<path>': <reason>").
  virtual std::unique_ptr<ReadableFile> open_read(const std::string& path, std::string_view what);
  // The names in a directory ("." and ".." left out), in no particular
  // order; throws IoError ("cannot list directory '<dir>': <reason>").
  virtual std::vector<std::string> list_dir(const std::string& dir);
  // An exclusive lock on `lock_path`, held until the returned object is
  // destroyed (FileLock's contract, file_lock.h).
  virtual std::unique_ptr<FileLock> lock(const std::string& lock_path, const std::string& what,
                                         const std::string& advice);
};

// Forwards every call to `base`. Wrappers override what they change.
class FileSystemWrapper : public FileSystem {
 public:
  explicit FileSystemWrapper(FileSystem& base) : base_(base) {}
  FileSystem& base() const { return base_; }

  std::unique_ptr<WritableFile> create_exclusive(const std::string& path) override {
    return base_.create_exclusive(path);
  }
  void rename(const std::string& from, const std::string& to) override { base_.rename(from, to); }
  void sync_dir(const std::string& dir) override { base_.sync_dir(dir); }
  void remove(const std::string& path) noexcept override { base_.remove(path); }
  bool exists(const std::string& path) override { return base_.exists(path); }
  uint64_t free_bytes(const std::string& dir) override { return base_.free_bytes(dir); }
  MappedFile map(const std::string& path, std::string_view what) override { return base_.map(path, what); }
  std::unique_ptr<ReadableFile> open_read(const std::string& path, std::string_view what) override {
    return base_.open_read(path, what);
  }
  std::vector<std::string> list_dir(const std::string& dir) override { return base_.list_dir(dir); }
  std::unique_ptr<FileLock> lock(const std::string& lock_path, const std::string& what,
                                 const std::string& advice) override;

 private:
  FileSystem& base_;
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
