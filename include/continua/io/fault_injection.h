// A FileSystem wrapper for tests that makes any chosen call fail.
//
// It numbers every mutating call (create, append, pwrite, sync, close,
// rename, sync_dir) with one global index starting at 0, so a test can run an
// operation once to count its calls, then rerun it failing at each index in
// turn and check that nothing is ever left half-done.
//
// Usage:
//   FaultInjectingFileSystem fs(default_file_system());
//   atomic_write(fs, path, write);            // dry run
//   const size_t n = fs.calls();
//   for (size_t i = 0; i < n; ++i) {
//     fs.reset_calls();
//     fs.fail_at(i, ENOSPC);
//     EXPECT_THROW(atomic_write(fs, path, write), IoError);
//     fs.clear();
//   }
//
// Contract: a failing call throws the same IoError the POSIX file system would
// (make_io_error). A failing create creates nothing; a failing append/pwrite
// with short_write writes the first half of its bytes first; a failing close
// still releases the descriptor (as Linux does); a failing rename renames
// nothing; a failing sync_dir happens after the rename it follows.
// remove, exists and free_bytes are passed through and not counted.
// Thread-safe.
#pragma once

#include <cstddef>
#include <map>
#include <mutex>
#include <string>

#include "continua/io/file_system.h"

namespace continua::io {

class FaultInjectingFileSystem final : public FileSystem {
 public:
  explicit FaultInjectingFileSystem(FileSystem& base) : base_(base) {}

  // Makes the call with this index fail with `err` (ENOSPC, EIO, ...).
  void fail_at(size_t call_index, int err, bool short_write = false);
  // Forgets every planned failure and resets the call count.
  void clear();
  // Resets the call count only.
  void reset_calls();
  // Number of counted calls since construction, clear() or reset_calls().
  size_t calls() const;
  // Human-readable description of the calls made ("create", "append", ...),
  // in order: helps a failing sweep say which call it broke.
  std::string call_name(size_t call_index) const;

  std::unique_ptr<WritableFile> create_exclusive(const std::string& path) override;
  void rename(const std::string& from, const std::string& to) override;
  void sync_dir(const std::string& dir) override;
  void remove(const std::string& path) noexcept override { base_.remove(path); }
  bool exists(const std::string& path) override { return base_.exists(path); }
  uint64_t free_bytes(const std::string& dir) override { return base_.free_bytes(dir); }

  // Internal: counts one call and returns the fault planned for it, if any.
  struct Fault {
    int err = 0;
    bool short_write = false;
  };
  bool next_call(const char* name, Fault* fault);

 private:
  FileSystem& base_;
  mutable std::mutex mu_;
  size_t calls_ = 0;
  std::map<size_t, Fault> faults_;
  std::map<size_t, std::string> names_;
};

}  // namespace continua::io
