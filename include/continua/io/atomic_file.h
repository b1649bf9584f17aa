// Atomic replacement of a file, and a buffered writer for many small appends.
//
// atomic_write() is how every checkpoint reaches disk: after it returns, `path`
// holds exactly what the callback wrote, durably; if it throws, `path` is as it
// was before (absent or the previous content) and no temporary file is left.
// A reader never sees a half-written file, even across a crash.
//
// Usage:
//   continua::io::atomic_write(continua::io::default_file_system(), "/ckpt/a.bin",
//                              [&](continua::io::WritableFile& f) {
//                                continua::io::BufferedWriter w(f);
//                                w.append(header.data(), header.size());
//                                w.append(big_tensor, big_nbytes);  // not copied
//                                w.flush();
//                              });
//
// Contract (atomic_write): writes `<path>.tmp.<pid>.<random>` in the same
// directory (created exclusively), runs the callback, syncs and closes it,
// renames it over `path`, then syncs the directory. Any exception — an IoError
// from the file system or whatever the callback throws — removes the temporary
// file and propagates unchanged. Exception: if only the final directory sync
// fails, the rename has already happened (the new content is visible) and an
// IoError naming `path` says it may not survive a crash.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "continua/io/file_system.h"

namespace continua::io {

void atomic_write(FileSystem& fs, const std::string& path,
                  const std::function<void(WritableFile&)>& write);

// The temporary name atomic_write uses for `path` (unique per call).
std::string temp_path_for(const std::string& path);

// Collects small appends into one buffer so that a file built from many small
// pieces costs few system calls; appends of at least the buffer's capacity go
// straight to the file without being copied. Call flush() before closing the
// file: the destructor does not write (it cannot report an error).
class BufferedWriter {
 public:
  static constexpr size_t kDefaultCapacity = size_t{1} << 20;  // 1 MiB

  explicit BufferedWriter(WritableFile& out, size_t capacity = kDefaultCapacity);
  BufferedWriter(const BufferedWriter&) = delete;
  BufferedWriter& operator=(const BufferedWriter&) = delete;

  void append(const void* data, size_t n);
  void flush();
  // Bytes accepted so far (buffered or written).
  uint64_t bytes_appended() const { return appended_; }

 private:
  WritableFile& out_;
  size_t capacity_;
  std::vector<char> buffer_;
  size_t used_ = 0;
  uint64_t appended_ = 0;
};

}  // namespace continua::io
