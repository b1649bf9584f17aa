#include "continua/io/fault_injection.h"

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

}  // namespace

void FaultInjectingFileSystem::fail_at(size_t call_index, int err, bool short_write) {
  std::lock_guard<std::mutex> lock(mu_);
  faults_[call_index] = Fault{err, short_write};
}

void FaultInjectingFileSystem::clear() {
  std::lock_guard<std::mutex> lock(mu_);
  faults_.clear();
  names_.clear();
  calls_ = 0;
}

void FaultInjectingFileSystem::reset_calls() {
  std::lock_guard<std::mutex> lock(mu_);
  names_.clear();
  calls_ = 0;
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

bool FaultInjectingFileSystem::next_call(const char* name, Fault* fault) {
  std::lock_guard<std::mutex> lock(mu_);
  const size_t index = calls_++;
  names_[index] = name;
  const auto it = faults_.find(index);
  if (it == faults_.end()) return false;
  *fault = it->second;
  return true;
}

std::unique_ptr<WritableFile> FaultInjectingFileSystem::create_exclusive(const std::string& path) {
  Fault f;
  if (next_call("create", &f)) throw make_io_error("create", path, f.err);
  return std::make_unique<FaultInjectingFile>(*this, base_.create_exclusive(path), path);
}

void FaultInjectingFileSystem::rename(const std::string& from, const std::string& to) {
  Fault f;
  if (next_call("rename", &f)) throw make_io_error("rename", from + "' to '" + to, f.err);
  base_.rename(from, to);
}

void FaultInjectingFileSystem::sync_dir(const std::string& dir) {
  Fault f;
  if (next_call("sync_dir", &f)) throw make_io_error("sync directory", dir, f.err);
  base_.sync_dir(dir);
}

}  // namespace continua::io
