// The power-cut model of include/continua/io/power_loss.h. The real files
// are written as usual; beside them a shadow keeps, per file ("inode": it
// keeps its bytes across renames), what its last sync made durable and what
// was written since, and per directory the entries its last sync_dir made
// durable. materialize() turns that shadow back into files.
#include "continua/io/power_loss.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "continua/io/file_lock.h"
#include "continua/io/mix64.h"

namespace continua::io {

struct PowerLossFileSystem::Inode {
  std::string data;    // what was written (the live file's bytes)
  std::string synced;  // its bytes as of the last completed sync()
  // [begin, end) written since the last sync, sorted, disjoint.
  std::vector<std::pair<uint64_t, uint64_t>> dirty;
};

struct PowerLossFileSystem::Dir {
  std::map<std::string, std::shared_ptr<Inode>> now;      // the live entries
  std::map<std::string, std::shared_ptr<Inode>> durable;  // as of the last sync_dir
};

namespace {

// "/a/b/" and "/a//b" are the directory "/a/b": one shadow per directory.
std::string normalize_dir(const std::string& dir) {
  std::string d = std::filesystem::path(dir.empty() ? "." : dir).lexically_normal().string();
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  return d;
}

std::string basename_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string join(const std::string& dir, const std::string& name) {
  return dir == "/" ? "/" + name : dir + "/" + name;
}

void add_range(std::vector<std::pair<uint64_t, uint64_t>>& ranges, uint64_t begin, uint64_t end) {
  if (begin >= end) return;
  ranges.emplace_back(begin, end);
  std::sort(ranges.begin(), ranges.end());
  std::vector<std::pair<uint64_t, uint64_t>> merged;
  for (const auto& r : ranges) {
    if (!merged.empty() && r.first <= merged.back().second) {
      merged.back().second = std::max(merged.back().second, r.second);
    } else {
      merged.push_back(r);
    }
  }
  ranges = std::move(merged);
}

// What a torn write leaves: the synced bytes, the file at its written size,
// the first half of the unsynced bytes (in file order) as written and the
// rest garbage that differs from what was written.
std::string torn_bytes(const PowerLossFileSystem::Inode& inode) {
  std::string out = inode.synced;
  out.resize(inode.data.size(), '\0');
  uint64_t total = 0;
  for (const auto& [b, e] : inode.dirty) total += std::min<uint64_t>(e, inode.data.size()) - std::min<uint64_t>(b, e);
  const uint64_t keep = total / 2;
  uint64_t seen = 0;
  for (const auto& [b, e] : inode.dirty) {
    for (uint64_t i = b; i < std::min<uint64_t>(e, inode.data.size()); ++i, ++seen) {
      const auto written = static_cast<uint8_t>(inode.data[i]);
      const auto noise = static_cast<uint8_t>(finalize64(i + 0x5eed) | 1);  // never 0: always a change
      out[i] = static_cast<char>(seen < keep ? written : written ^ noise);
    }
  }
  return out;
}

std::string read_whole(FileSystem& fs, const std::string& path) {
  auto f = fs.open_read(path, "file");
  std::string bytes(static_cast<size_t>(f->size()), '\0');
  bytes.resize(f->read(0, bytes.data(), bytes.size()));
  return bytes;
}

class PowerLossFile final : public WritableFile {
 public:
  PowerLossFile(PowerLossFileSystem& fs, std::unique_ptr<WritableFile> base,
                std::shared_ptr<PowerLossFileSystem::Inode> inode, std::string path)
      : fs_(fs), base_(std::move(base)), inode_(std::move(inode)), path_(std::move(path)) {}

  void append(const void* data, size_t n) override {
    fs_.begin("write", "append", path_);
    base_->append(data, n);
    fs_.record_write(*inode_, pos_, data, n);
    pos_ += n;
  }

  void pwrite(uint64_t offset, const void* data, size_t n) override {
    fs_.begin("write", "pwrite", path_);
    base_->pwrite(offset, data, n);
    fs_.record_write(*inode_, offset, data, n);
  }

  void sync() override {
    fs_.begin("sync", "sync", path_);
    base_->sync();
    fs_.record_sync(*inode_);
  }

  void close() override {
    fs_.begin("close", "close", path_);  // refused: the destructor releases the descriptor
    base_->close();
  }

 private:
  PowerLossFileSystem& fs_;
  std::unique_ptr<WritableFile> base_;
  std::shared_ptr<PowerLossFileSystem::Inode> inode_;
  std::string path_;
  uint64_t pos_ = 0;
};

}  // namespace

const char* variant_name(PowerLossVariant variant) {
  switch (variant) {
    case PowerLossVariant::kDropUnsynced: return "drop unsynced";
    case PowerLossVariant::kTornUnsynced: return "torn unsynced";
    case PowerLossVariant::kKeepEntries: return "keep entries, torn data";
  }
  return "?";
}

const std::vector<PowerLossVariant>& all_power_loss_variants() {
  static const std::vector<PowerLossVariant> all = {
      PowerLossVariant::kDropUnsynced, PowerLossVariant::kTornUnsynced, PowerLossVariant::kKeepEntries};
  return all;
}

PowerLossFileSystem::PowerLossFileSystem(FileSystem& base)
    : FileSystemWrapper(base), cut_at_(~size_t{0}) {}

PowerLossFileSystem::~PowerLossFileSystem() = default;

void PowerLossFileSystem::cut_at(size_t call_index) {
  std::lock_guard<std::mutex> lock(mu_);
  cut_at_ = call_index;
  if (!cut_ && calls_ > call_index) {
    cut_ = true;
    cut_index_ = calls_;
  }
}

void PowerLossFileSystem::cut() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!cut_) {
    cut_ = true;
    cut_index_ = calls_;
  }
}

bool PowerLossFileSystem::cut_happened() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cut_;
}

size_t PowerLossFileSystem::calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_;
}

size_t PowerLossFileSystem::cut_index() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cut_ ? cut_index_ : calls_;
}

std::string PowerLossFileSystem::call_name(size_t call_index) const {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = names_.find(call_index);
  return it == names_.end() ? std::string("?") : it->second;
}

std::vector<std::string> PowerLossFileSystem::directories() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const auto& [d, unused] : dirs_) out.push_back(d);
  return out;
}

// Counts a call; after the cut (or when this is the call the cut is planned
// at) it throws the IoError a dead disk would give. mu_ must NOT be held.
void PowerLossFileSystem::begin(const char* operation, const char* name, const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  const size_t index = calls_++;
  names_[index] = std::string(name) + " '" + path + "'";
  if (!cut_ && index >= cut_at_) {
    cut_ = true;
    cut_index_ = index;
  }
  if (cut_) {
    throw IoError(std::string(make_io_error(operation, path, EIO).what()) + " (simulated power cut at call " +
                  std::to_string(cut_index_) + ")");
  }
}

void PowerLossFileSystem::refuse_if_cut(const char* operation, const std::string& path) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (cut_) {
    throw IoError(std::string(make_io_error(operation, path, EIO).what()) + " (simulated power cut at call " +
                  std::to_string(cut_index_) + ")");
  }
}

void PowerLossFileSystem::record_write(Inode& inode, uint64_t offset, const void* data, size_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  if (inode.data.size() < offset + n) inode.data.resize(static_cast<size_t>(offset + n), '\0');
  if (n > 0) std::memcpy(inode.data.data() + offset, data, n);
  add_range(inode.dirty, offset, offset + n);
}

void PowerLossFileSystem::record_sync(Inode& inode) {
  std::lock_guard<std::mutex> lock(mu_);
  inode.synced = inode.data;
  inode.dirty.clear();
}

PowerLossFileSystem::Dir& PowerLossFileSystem::adopt(const std::string& dir_path) {
  const std::string key = normalize_dir(dir_path);
  auto it = dirs_.find(key);
  if (it != dirs_.end()) return *it->second;
  auto dir = std::make_unique<Dir>();
  // What is there before this file system first touches the directory is
  // taken as durable. (A missing directory: nothing to adopt yet.)
  std::vector<std::string> names;
  try {
    names = base().list_dir(key);
  } catch (const IoError&) {
  }
  for (const std::string& name : names) {
    const std::string path = join(key, name);
    std::string bytes;
    try {
      bytes = read_whole(base(), path);
    } catch (const IoError&) {
      continue;  // not a regular file (a subdirectory), or gone meanwhile
    }
    auto inode = std::make_shared<Inode>();
    inode->data = bytes;
    inode->synced = std::move(bytes);
    dir->now[name] = inode;
    dir->durable[name] = inode;
  }
  return *dirs_.emplace(key, std::move(dir)).first->second;
}

std::unique_ptr<WritableFile> PowerLossFileSystem::create_exclusive(const std::string& path) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    adopt(dirname_of(path));
  }
  begin("create", "create", path);
  auto file = base().create_exclusive(path);
  auto inode = std::make_shared<Inode>();
  {
    std::lock_guard<std::mutex> lock(mu_);
    adopt(dirname_of(path)).now[basename_of(path)] = inode;
  }
  return std::make_unique<PowerLossFile>(*this, std::move(file), std::move(inode), path);
}

void PowerLossFileSystem::rename(const std::string& from, const std::string& to) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    adopt(dirname_of(from));
    adopt(dirname_of(to));
  }
  begin("rename", "rename", from + "' to '" + to);
  base().rename(from, to);
  std::lock_guard<std::mutex> lock(mu_);
  Dir& a = adopt(dirname_of(from));
  Dir& b = adopt(dirname_of(to));
  std::shared_ptr<Inode> inode;
  if (auto it = a.now.find(basename_of(from)); it != a.now.end()) {
    inode = it->second;
    a.now.erase(it);
  } else {
    // A file made behind this file system's back after it adopted the
    // directory: its bytes as they are now, durable but under no name.
    inode = std::make_shared<Inode>();
    try {
      inode->data = read_whole(base(), to);
    } catch (const IoError&) {
    }
    inode->synced = inode->data;
  }
  b.now[basename_of(to)] = std::move(inode);
}

void PowerLossFileSystem::sync_dir(const std::string& dir) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    adopt(dir);
  }
  begin("sync directory", "sync_dir", dir);
  base().sync_dir(dir);
  std::lock_guard<std::mutex> lock(mu_);
  Dir& d = adopt(dir);
  d.durable = d.now;
}

void PowerLossFileSystem::remove(const std::string& path) noexcept {
  try {
    {
      std::lock_guard<std::mutex> lock(mu_);
      adopt(dirname_of(path));
    }
    begin("remove", "remove", path);
    base().remove(path);
    std::lock_guard<std::mutex> lock(mu_);
    adopt(dirname_of(path)).now.erase(basename_of(path));
  } catch (...) {
    // remove() never throws: after the cut it does nothing.
  }
}

bool PowerLossFileSystem::exists(const std::string& path) {
  refuse_if_cut("stat", path);
  return base().exists(path);
}

uint64_t PowerLossFileSystem::free_bytes(const std::string& dir) {
  refuse_if_cut("statvfs", dir);
  return base().free_bytes(dir);
}

MappedFile PowerLossFileSystem::map(const std::string& path, std::string_view what) {
  refuse_if_cut("open", path);
  return base().map(path, what);
}

std::unique_ptr<ReadableFile> PowerLossFileSystem::open_read(const std::string& path, std::string_view what) {
  refuse_if_cut("open", path);
  return base().open_read(path, what);
}

std::vector<std::string> PowerLossFileSystem::list_dir(const std::string& dir) {
  refuse_if_cut("list directory", dir);
  {
    std::lock_guard<std::mutex> lock(mu_);
    adopt(dir);
  }
  return base().list_dir(dir);
}

std::unique_ptr<FileLock> PowerLossFileSystem::lock(const std::string& lock_path, const std::string& what,
                                                    const std::string& advice) {
  refuse_if_cut("lock", lock_path);
  return base().lock(lock_path, what, advice);
}

void PowerLossFileSystem::materialize(PowerLossVariant variant) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!cut_) {
    cut_ = true;
    cut_index_ = calls_;
  }
  for (const auto& [path, dir] : dirs_) {
    const auto& entries = variant == PowerLossVariant::kKeepEntries ? dir->now : dir->durable;
    for (const std::string& name : base().list_dir(path)) {
      if (entries.count(name) == 0) base().remove(join(path, name));  // a subdirectory stays: unlink fails
    }
    for (const auto& [name, inode] : entries) {
      const std::string file = join(path, name);
      const std::string bytes = variant == PowerLossVariant::kDropUnsynced ? inode->synced : torn_bytes(*inode);
      base().remove(file);
      auto f = base().create_exclusive(file);
      if (!bytes.empty()) f->append(bytes.data(), bytes.size());
      f->close();
    }
  }
}

}  // namespace continua::io
