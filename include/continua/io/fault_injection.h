// A FileSystem wrapper for tests that makes any chosen call fail.
//
// Writes: it numbers every mutating call (create, append, pwrite, sync,
// close, rename, sync_dir) with one global index starting at 0, so a test can
// run an operation once to count its calls, then rerun it failing at each
// index in turn and check that nothing is ever left half-done.
//
// Reads: it numbers the read-side calls with a second index (open and map
// of a file, each read, each directory listing, each lock), and a test can
// make one fail with an error (EIO), return a short read, or flip a bit in
// the bytes it returns, and check that a load then fails cleanly or falls
// back to a checkpoint that reads and verifies.
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
//   // Reads:
//   fs.clear();
//   fs.flip_read_at(3);                      // the 4th read-side call
//   EXPECT_THROW(read_checkpoint(path, {}, {}, &fs), CorruptionError);
//
// Contract (writes): a failing call throws the same IoError the POSIX file
// system would (make_io_error). A failing create creates nothing; a failing
// append/pwrite with short_write writes the first half of its bytes first; a
// failing close still releases the descriptor (as Linux does); a failing
// rename renames nothing; a failing sync_dir happens after the rename it
// follows. remove, exists and free_bytes are passed through and not counted.
//
// Contract (reads): map() does not map: it opens the file (one "map" call)
// and reads it in read_chunk() pieces (one "read" call each) through the
// base file system's open_read, and returns MappedFile::copy_of what it
// read, so every fault below reaches the reader exactly as planned:
// - fail_read_at(i, err): call i throws make_io_error(...) with err (a map
//   or open: "cannot open <what> '<path>': ..."; a read: "cannot read ...";
//   a listing: "cannot list directory ..."; a lock: "cannot lock ...").
// - short_read_at(i): read call i returns the first half of the bytes asked
//   for, as a file that ends there would (ReadableFile::read returns fewer
//   bytes only at the end of the file), so a map holds a truncated file.
// - flip_read_at(i, bit): read call i returns its bytes with one bit
//   flipped: bit `bit` of what it returns, modulo its length in bits
//   (default: the middle byte's lowest bit).
// A short read or a flip planned on a call that is not a read makes it fail
// with EIO. open_read's files count their reads the same way.
// Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "continua/io/file_system.h"

namespace continua::io {

class FaultInjectingFileSystem final : public FileSystemWrapper {
 public:
  explicit FaultInjectingFileSystem(FileSystem& base) : FileSystemWrapper(base) {}

  // ---- Writes ----
  // Makes the call with this index fail with `err` (ENOSPC, EIO, ...).
  void fail_at(size_t call_index, int err, bool short_write = false);
  // Forgets every planned failure, write and read, and resets both counts.
  void clear();
  // Resets both call counts only.
  void reset_calls();
  // Number of counted write calls since construction, clear() or reset_calls().
  size_t calls() const;
  // Human-readable description of the calls made ("create", "append", ...),
  // in order: helps a failing sweep say which call it broke.
  std::string call_name(size_t call_index) const;

  // ---- Reads ----
  static constexpr uint64_t kMiddle = ~uint64_t{0};
  void fail_read_at(size_t read_index, int err);
  void short_read_at(size_t read_index);
  void flip_read_at(size_t read_index, uint64_t bit = kMiddle);
  // Number of counted read-side calls, and their names ("map", "read",
  // "open", "list", "lock") with the path, e.g. "read '/d/a' at 4096".
  size_t read_calls() const;
  std::string read_call_name(size_t read_index) const;
  // The piece map() reads at a time (default 4096 bytes; at least 1).
  void set_read_chunk(size_t bytes);
  size_t read_chunk() const;

  std::unique_ptr<WritableFile> create_exclusive(const std::string& path) override;
  void rename(const std::string& from, const std::string& to) override;
  void sync_dir(const std::string& dir) override;
  MappedFile map(const std::string& path, std::string_view what) override;
  std::unique_ptr<ReadableFile> open_read(const std::string& path, std::string_view what) override;
  std::vector<std::string> list_dir(const std::string& dir) override;
  std::unique_ptr<FileLock> lock(const std::string& lock_path, const std::string& what,
                                 const std::string& advice) override;

  // Internal: counts one call and returns the fault planned for it, if any.
  struct Fault {
    int err = 0;
    bool short_write = false;
  };
  bool next_call(const char* name, Fault* fault);
  enum class ReadFaultKind { kError, kShortRead, kFlip };
  struct ReadFault {
    ReadFaultKind kind = ReadFaultKind::kError;
    int err = 0;
    uint64_t bit = kMiddle;
  };
  bool next_read_call(std::string name, ReadFault* fault);

 private:
  mutable std::mutex mu_;
  size_t calls_ = 0;
  std::map<size_t, Fault> faults_;
  std::map<size_t, std::string> names_;
  size_t read_calls_ = 0;
  std::map<size_t, ReadFault> read_faults_;
  std::map<size_t, std::string> read_names_;
  size_t read_chunk_ = 4096;
};

}  // namespace continua::io
