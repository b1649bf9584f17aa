#include "continua/checkpoint/manager.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <iostream>
#include <thread>

#include "continua/errors.h"
#include "continua/io/console.h"
#include "continua/io/file_system.h"
#include "continua/state/object_registry.h"

namespace continua {
namespace {

constexpr const char* kPrefix = "ckpt-";
constexpr const char* kSuffix = ".safetensors";
constexpr const char* kLockName = "LOCK";
constexpr int kStepDigits = 12;
// Header bytes per entry (name, dtype, shape, offsets, CRC) and a fixed
// allowance for the rest: the estimate must not be short.
constexpr uint64_t kPerEntryBytes = 256;
constexpr uint64_t kFixedBytes = 64 * 1024;

// CONTINUA_TEST_SAVE_DELAY_MS (test-only, see manager.h): sleeps while the
// temporary file is open and between the rename and the directory fsync.
int64_t test_save_delay_ms() {
  const char* v = std::getenv("CONTINUA_TEST_SAVE_DELAY_MS");
  if (!v || !*v) return 0;
  char* end = nullptr;
  const long long ms = std::strtoll(v, &end, 10);
  return (end && *end == '\0' && ms > 0) ? int64_t(ms) : 0;
}

class DelayingFileSystem final : public io::FileSystemWrapper {
 public:
  DelayingFileSystem(io::FileSystem& base, int64_t ms) : FileSystemWrapper(base), ms_(ms) {}
  std::unique_ptr<io::WritableFile> create_exclusive(const std::string& path) override {
    auto f = base().create_exclusive(path);
    pause();
    return f;
  }
  void sync_dir(const std::string& dir) override {
    pause();  // the rename is done, the directory not yet synced
    base().sync_dir(dir);
  }

 private:
  void pause() const { std::this_thread::sleep_for(std::chrono::milliseconds(ms_)); }
  int64_t ms_;
};

}  // namespace

CheckpointManager::CheckpointManager(const CheckpointManagerOptions& options) : options_(options) {
  namespace stdfs = std::filesystem;
  if (options_.directory_.empty()) throw InvalidArgument("CheckpointManager: directory is empty");
  if (options_.keep_last_ < 1) {
    throw InvalidArgument("CheckpointManager: keep_last must be >= 1, got " +
                          std::to_string(options_.keep_last_));
  }
  std::error_code ec;
  stdfs::create_directories(options_.directory_, ec);
  if (ec || !stdfs::is_directory(options_.directory_)) {
    throw IoError("cannot create checkpoint directory '" + options_.directory_ +
                  "': " + (ec ? ec.message() : std::string("not a directory")));
  }
  lock_ = fs().lock((stdfs::path(options_.directory_) / kLockName).string(),
                    "checkpoint directory '" + options_.directory_ + "'",
                    "two runs must not write into the same checkpoint directory");
  // Temporary files of a process killed in the middle of a save: we hold the
  // lock, so no live writer owns them.
  for (const std::string& name : fs().list_dir(options_.directory_)) {
    if (name.rfind(kPrefix, 0) == 0 && name.find(std::string(kSuffix) + ".tmp.") != std::string::npos) {
      fs().remove((stdfs::path(options_.directory_) / name).string());
    }
  }
  // Checkpoints beyond keep_last: a process killed between a commit and its
  // retention left them. Pruned now, so that repeated kills never pile up
  // more than keep_last + 1 files (the one being committed).
  const std::vector<Entry> entries = list();
  for (size_t i = 0; i + size_t(options_.keep_last_) < entries.size(); ++i) fs().remove(entries[i].path);
}

CheckpointManager::~CheckpointManager() = default;  // the lock is released with lock_

io::FileSystem& CheckpointManager::fs() const {
  return options_.fs_ ? *options_.fs_ : io::default_file_system();
}

void CheckpointManager::warn(const std::string& message) const {
  if (options_.warning_) {
    options_.warning_(message);
  } else {
    io::ErrLine() << "continua: warning: " << message;
  }
}

int64_t CheckpointManager::parse_step(const std::string& name) {
  const size_t p = std::strlen(kPrefix), s = std::strlen(kSuffix);
  if (name.size() <= p + s || name.compare(0, p, kPrefix) != 0 ||
      name.compare(name.size() - s, s, kSuffix) != 0) {
    return -1;
  }
  const std::string digits = name.substr(p, name.size() - p - s);
  // 18 digits always fit in int64_t.
  if (digits.empty() || digits.size() > 18) return -1;
  int64_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}

std::string CheckpointManager::path_for(int64_t step) const {
  if (step < 0) throw InvalidArgument("checkpoint step must be >= 0, got " + std::to_string(step));
  std::string digits = std::to_string(step);
  if (digits.size() < size_t(kStepDigits)) digits.insert(0, size_t(kStepDigits) - digits.size(), '0');
  return (std::filesystem::path(options_.directory_) / (kPrefix + digits + kSuffix)).string();
}

std::vector<CheckpointManager::Entry> CheckpointManager::list() const {
  std::vector<Entry> out;
  for (const std::string& name : fs().list_dir(options_.directory_)) {
    const int64_t step = parse_step(name);
    if (step >= 0) out.push_back({step, (std::filesystem::path(options_.directory_) / name).string()});
  }
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) {
    return a.step != b.step ? a.step < b.step : a.path < b.path;
  });
  return out;
}

uint64_t CheckpointManager::estimate_size(const StateTree& tree, const SaveOptions& options) {
  uint64_t bytes = kFixedBytes;
  for (const auto& [key, value] : tree.entries()) {
    bytes += kPerEntryBytes + 2 * key.size();
    if (const auto* t = std::get_if<at::Tensor>(&value)) {
      if (t->defined()) bytes += uint64_t(t->numel()) * uint64_t(t->element_size());
    } else if (const auto* j = std::get_if<nlohmann::json>(&value)) {
      // Metadata is JSON inside the JSON header: escaping can double it.
      bytes += 2 * j->dump().size();
    } else if (const auto& o = std::get<ObjectRef>(value)) {
      bytes += 2 * describe(*o).dump().size();
    }
  }
  for (const auto& [k, v] : options.metadata_) bytes += 2 * (k.size() + v.size()) + 16;
  return bytes;
}

std::string CheckpointManager::save(const Checkpointable& strategy, const SaveOptions& options) {
  const int64_t step = strategy.step();
  const std::string path = path_for(step);
  StateTree tree = strategy_state(strategy);
  SaveOptions o = options;
  io::FileSystem& base = o.fs_ ? *o.fs_ : fs();
  const uint64_t need = estimate_size(tree, o);
  const uint64_t available = base.free_bytes(options_.directory_);
  if (need > available) {
    throw IoError("not enough space in '" + options_.directory_ + "' for checkpoint '" + path +
                  "': it needs about " + std::to_string(need) + " bytes and " +
                  std::to_string(available) + " are free; nothing was written or deleted");
  }
  std::unique_ptr<DelayingFileSystem> delaying;
  if (const int64_t ms = test_save_delay_ms(); ms > 0) {
    delaying = std::make_unique<DelayingFileSystem>(base, ms);
    o.fs_ = delaying.get();
  } else {
    o.fs_ = &base;
  }
  // Durable when this returns (atomic_write syncs the file and the directory).
  write_checkpoint(tree, strategy.next_experience(), path, o);
  last_saved_path_ = path;

  // Retention: the new file plus the keep_last - 1 newest below it; higher
  // steps are not ours to judge.
  std::vector<Entry> entries = list();
  int64_t kept_below = 0;
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    if (it->step >= step) continue;
    if (++kept_below < options_.keep_last_) continue;
    base.remove(it->path);
  }
  return path;
}

int64_t CheckpointManager::load_newest(Checkpointable& strategy, const MapLocation& map_location,
                                       const UniqueObjects& unique_objects) {
  std::vector<Entry> entries = list();
  std::vector<std::string> failures;
  bool only_read_errors = true;
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    LoadedCheckpoint checkpoint;
    std::string failure;
    bool read_error = false;
    try {
      checkpoint = read_checkpoint(it->path, map_location, unique_objects, &fs());
    } catch (const CorruptionError& e) {
      failure = e.what();
    } catch (const VersionError& e) {
      failure = e.what();
    } catch (const IoError& e) {
      failure = e.what();
      read_error = true;
    }
    if (!failure.empty()) {
      failures.push_back(failure);
      only_read_errors = only_read_errors && read_error;
      const char* next = std::next(it) != entries.rend() ? ", trying the previous checkpoint" : "";
      if (read_error) {
        // A file that cannot be read now may read later (a flaky disk, a
        // network mount): it is skipped, not set aside.
        warn("skipping checkpoint '" + it->path + "': " + failure + "; left in place" + next);
        continue;
      }
      const std::string corrupt = it->path + ".corrupt";
      std::string where = "'" + corrupt + "'";
      try {
        fs().rename(it->path, corrupt);
      } catch (const IoError& e) {
        where = "nowhere (" + std::string(e.what()) + ")";
      }
      warn("skipping checkpoint '" + it->path + "': " + failure + "; moved it to " + where + next);
      continue;
    }
    const int64_t next = load_state_tree(strategy, checkpoint);
    loaded_path_ = it->path;
    return next;
  }
  if (!failures.empty()) {
    std::string all;
    for (const auto& f : failures) all += "\n  " + f;
    const std::string message = "no usable checkpoint in '" + options_.directory_ + "':" + all;
    if (only_read_errors) throw IoError(message);
    throw CorruptionError(message);
  }
  return 0;
}

}  // namespace continua
