#include "continua/io/atomic_file.h"
#include "continua/io/mix64.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>

namespace continua::io {

std::string temp_path_for(const std::string& path) {
  // The pid keeps concurrent processes apart; the random part keeps threads
  // (and a pid reused after a crash left a stale temp file) apart.
  static std::atomic<uint64_t> counter{0};
  static const uint64_t seed = [] {
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd() ^
           static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }();
  // Consecutive counters give unrelated names.
  const uint64_t x = io::finalize64(seed + 0x9E3779B97F4A7C15ull * (counter.fetch_add(1) + 1));
  char buf[64];
  std::snprintf(buf, sizeof buf, ".tmp.%ld.%016llx", static_cast<long>(::getpid()),
                static_cast<unsigned long long>(x));
  return path + buf;
}

void atomic_write(FileSystem& fs, const std::string& path,
                  const std::function<void(WritableFile&)>& write) {
  const std::string tmp = temp_path_for(path);
  std::unique_ptr<WritableFile> file = fs.create_exclusive(tmp);
  try {
    write(*file);
    file->sync();
    file->close();
    fs.rename(tmp, path);
  } catch (...) {
    file.reset();  // release the descriptor before unlinking
    fs.remove(tmp);
    throw;
  }
  try {
    fs.sync_dir(dirname_of(path));
  } catch (const IoError& e) {
    throw IoError(std::string(e.what()) + " after renaming the new file to '" + path +
                  "'; it may not survive a crash");
  }
}

BufferedWriter::BufferedWriter(WritableFile& out, size_t capacity)
    : out_(out), capacity_(capacity == 0 ? 1 : capacity) {}

void BufferedWriter::append(const void* data, size_t n) {
  if (n == 0) return;
  if (n >= capacity_) {
    flush();
    out_.append(data, n);
  } else {
    if (used_ + n > capacity_) flush();
    // Allocated on first use so a writer that only forwards big pieces costs nothing.
    if (buffer_.empty()) buffer_.resize(capacity_);
    std::memcpy(buffer_.data() + used_, data, n);
    used_ += n;
  }
  appended_ += n;
}

void BufferedWriter::flush() {
  if (used_ == 0) return;
  const size_t n = used_;
  used_ = 0;  // a failed write is not retried by a later flush
  out_.append(buffer_.data(), n);
}

}  // namespace continua::io
