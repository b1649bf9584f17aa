#include "continua/io/fault_injection.h"

#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include "continua/io/file_lock.h"

namespace continua::io {
namespace {

class FaultInjectingFile final : public WritableFile {
 public:
  FaultInjectingFile(FaultInjectingFileSystem& fs, std::unique_ptr<WritableFile> base,
                     std::string path)
      : fs_(fs), base_(std::move(base)), path_(std::move(path)) {}

  void append(const void* data, size_t n) override {
    FaultInjectingFileSystem::Fault f;
    if (fs_.next_call("append", &f)) {
      if (f.short_write) base_->append(data, n / 2);
      throw make_io_error("write", path_, f.err);
    }
    base_->append(data, n);
  }

  void pwrite(uint64_t offset, const void* data, size_t n) override {
    FaultInjectingFileSystem::Fault f;
    if (fs_.next_call("pwrite", &f)) {
      if (f.short_write) base_->pwrite(offset, data, n / 2);
      throw make_io_error("write", path_, f.err);
    }
    base_->pwrite(offset, data, n);
  }

  void sync() override {
    FaultInjectingFileSystem::Fault f;
    if (fs_.next_call("sync", &f)) throw make_io_error("sync", path_, f.err);
    base_->sync();
  }

  void close() override {
    FaultInjectingFileSystem::Fault f;
    const bool fail = fs_.next_call("close", &f);
    base_->close();  // the descriptor is gone even when close reports an error
    if (fail) throw make_io_error("close", path_, f.err);
  }

 private:
  FaultInjectingFileSystem& fs_;
  std::unique_ptr<WritableFile> base_;
  std::string path_;
};

// A read-side call that is not a read fails with its planned error (EIO for
// a short read or a flip planned on it).
int error_of(const FaultInjectingFileSystem::ReadFault& f) {
  return f.kind == FaultInjectingFileSystem::ReadFaultKind::kError ? f.err : EIO;
}

class FaultInjectingReadableFile final : public ReadableFile {
 public:
  FaultInjectingReadableFile(FaultInjectingFileSystem& fs, std::unique_ptr<ReadableFile> base,
                             std::string path)
      : fs_(fs), base_(std::move(base)), path_(std::move(path)) {}

  uint64_t size() const override { return base_->size(); }

  size_t read(uint64_t offset, void* buf, size_t n) override {
    FaultInjectingFileSystem::ReadFault f;
    if (!fs_.next_read_call("read '" + path_ + "' at " + std::to_string(offset), &f)) {
      return base_->read(offset, buf, n);
    }
    using Kind = FaultInjectingFileSystem::ReadFaultKind;
    switch (f.kind) {
      case Kind::kError:
        throw make_io_error("read", path_, f.err);
      case Kind::kShortRead:
        return base_->read(offset, buf, n / 2);
      case Kind::kFlip: {
        const size_t got = base_->read(offset, buf, n);
        if (got > 0) {
          const uint64_t bits = uint64_t(got) * 8;
          const uint64_t bit = f.bit == FaultInjectingFileSystem::kMiddle ? uint64_t(got / 2) * 8 : f.bit % bits;
          static_cast<uint8_t*>(buf)[bit / 8] ^= uint8_t(1u << (bit % 8));
        }
        return got;
      }
    }
    return 0;
  }

 private:
  FaultInjectingFileSystem& fs_;
  std::unique_ptr<ReadableFile> base_;
  std::string path_;
};

}  // namespace

void FaultInjectingFileSystem::fail_at(size_t call_index, int err, bool short_write) {
  std::lock_guard<std::mutex> lock(mu_);
  faults_[call_index] = Fault{err, short_write};
}

void FaultInjectingFileSystem::fail_read_at(size_t read_index, int err) {
  std::lock_guard<std::mutex> lock(mu_);
  read_faults_[read_index] = ReadFault{ReadFaultKind::kError, err, kMiddle};
}

void FaultInjectingFileSystem::short_read_at(size_t read_index) {
  std::lock_guard<std::mutex> lock(mu_);
  read_faults_[read_index] = ReadFault{ReadFaultKind::kShortRead, 0, kMiddle};
}

void FaultInjectingFileSystem::flip_read_at(size_t read_index, uint64_t bit) {
  std::lock_guard<std::mutex> lock(mu_);
  read_faults_[read_index] = ReadFault{ReadFaultKind::kFlip, 0, bit};
}

void FaultInjectingFileSystem::clear() {
  std::lock_guard<std::mutex> lock(mu_);
  faults_.clear();
  names_.clear();
  calls_ = 0;
  read_faults_.clear();
  read_names_.clear();
  read_calls_ = 0;
}

void FaultInjectingFileSystem::reset_calls() {
  std::lock_guard<std::mutex> lock(mu_);
  names_.clear();
  calls_ = 0;
  read_names_.clear();
  read_calls_ = 0;
}

size_t FaultInjectingFileSystem::calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_;
}

std::string FaultInjectingFileSystem::call_name(size_t call_index) const {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = names_.find(call_index);
  return it == names_.end() ? std::string("?") : it->second;
}

size_t FaultInjectingFileSystem::read_calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return read_calls_;
}

std::string FaultInjectingFileSystem::read_call_name(size_t read_index) const {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = read_names_.find(read_index);
  return it == read_names_.end() ? std::string("?") : it->second;
}

void FaultInjectingFileSystem::set_read_chunk(size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  read_chunk_ = bytes == 0 ? 1 : bytes;
}

size_t FaultInjectingFileSystem::read_chunk() const {
  std::lock_guard<std::mutex> lock(mu_);
  return read_chunk_;
}

bool FaultInjectingFileSystem::next_call(const char* name, Fault* fault) {
  std::lock_guard<std::mutex> lock(mu_);
  const size_t index = calls_++;
  names_[index] = name;
  const auto it = faults_.find(index);
  if (it == faults_.end()) return false;
  *fault = it->second;
  return true;
}

bool FaultInjectingFileSystem::next_read_call(std::string name, ReadFault* fault) {
  std::lock_guard<std::mutex> lock(mu_);
  const size_t index = read_calls_++;
  read_names_[index] = std::move(name);
  const auto it = read_faults_.find(index);
  if (it == read_faults_.end()) return false;
  *fault = it->second;
  return true;
}

std::unique_ptr<WritableFile> FaultInjectingFileSystem::create_exclusive(const std::string& path) {
  Fault f;
  if (next_call("create", &f)) throw make_io_error("create", path, f.err);
  return std::make_unique<FaultInjectingFile>(*this, base().create_exclusive(path), path);
}

void FaultInjectingFileSystem::rename(const std::string& from, const std::string& to) {
  Fault f;
  if (next_call("rename", &f)) throw make_io_error("rename", from + "' to '" + to, f.err);
  base().rename(from, to);
}

void FaultInjectingFileSystem::sync_dir(const std::string& dir) {
  Fault f;
  if (next_call("sync_dir", &f)) throw make_io_error("sync directory", dir, f.err);
  base().sync_dir(dir);
}

MappedFile FaultInjectingFileSystem::map(const std::string& path, std::string_view what) {
  ReadFault f;
  if (next_read_call("map '" + path + "'", &f)) {
    throw make_io_error("open " + std::string(what), path, error_of(f));
  }
  // Read through the counted reads, so that each of them can be failed.
  FaultInjectingReadableFile file(*this, base().open_read(path, what), path);
  const uint64_t size = file.size();
  const size_t chunk = read_chunk();
  std::string bytes;
  bytes.reserve(static_cast<size_t>(size));  // the file's own size: backed by the bytes present
  while (bytes.size() < size) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(chunk, size - bytes.size()));
    const size_t at = bytes.size();
    bytes.resize(at + want);
    const size_t got = file.read(at, bytes.data() + at, want);
    bytes.resize(at + got);
    if (got < want) break;  // the end of the file, as far as the reads say
  }
  return MappedFile::copy_of(bytes.data(), bytes.size(), path);
}

std::unique_ptr<ReadableFile> FaultInjectingFileSystem::open_read(const std::string& path,
                                                                  std::string_view what) {
  ReadFault f;
  if (next_read_call("open '" + path + "'", &f)) {
    throw make_io_error("open " + std::string(what), path, error_of(f));
  }
  return std::make_unique<FaultInjectingReadableFile>(*this, base().open_read(path, what), path);
}

std::vector<std::string> FaultInjectingFileSystem::list_dir(const std::string& dir) {
  ReadFault f;
  if (next_read_call("list '" + dir + "'", &f)) throw make_io_error("list directory", dir, error_of(f));
  return base().list_dir(dir);
}

std::unique_ptr<FileLock> FaultInjectingFileSystem::lock(const std::string& lock_path, const std::string& what,
                                                         const std::string& advice) {
  ReadFault f;
  if (next_read_call("lock '" + lock_path + "'", &f)) throw make_io_error("lock", lock_path, error_of(f));
  return base().lock(lock_path, what, advice);
}

}  // namespace continua::io
