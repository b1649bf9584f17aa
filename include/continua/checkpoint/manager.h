// CheckpointManager: a directory of numbered checkpoints with retention,
// newest-valid fallback, a free-space check and an exclusive lock.
//
// What a preemptible training job needs around save_checkpoint: keep the last
// few checkpoints, resume from the newest one that verifies (a file damaged
// on disk is skipped, not fatal), refuse to start a save that cannot fit, and
// make sure two processes never write into the same directory.
//
// Usage:
//   continua::CheckpointManager manager(
//       continua::CheckpointManagerOptions().directory("/ckpt/run1").keep_last(2));
//   auto [s, first] = manager.maybe_load(strategy, "cpu", {bench});
//   strategy.set_iteration_callback([&](continua::Strategy& s) {
//     if (s.clock().train_iterations % 100 == 0) manager.save(s);
//   });
//   for (int64_t i = first; i < n; ++i) {
//     if (!strategy.train(bench->train_stream()[i])) break;  // stop requested
//     strategy.eval(bench->test_stream());
//     manager.save(strategy);
//   }
//
// Files: `<dir>/ckpt-<step>.safetensors`, where step is the strategy's
// clock().train_iterations, written with 12 digits at least
// (ckpt-000000001234.safetensors); names are parsed as integers, never
// compared as strings, so unpadded or longer numbers order correctly. A save
// at a step that already has a file replaces it atomically (the save after
// an experience's evaluation follows the periodic save at its last
// iteration). `<dir>/LOCK` holds the lock and the holder's pid.
//
// Contract:
// - The constructor creates the directory if needed, takes an exclusive
//   flock on `<dir>/LOCK` for the manager's lifetime (released by the kernel
//   if the process dies), and removes the `ckpt-*.tmp.*` files a killed
//   process left, and the checkpoints beyond the newest keep_last (left by a
//   process killed between a commit and its retention). A directory locked by another live manager (in this or
//   another process) throws IoError naming the directory and the holder's pid.
// - save() checks free space first: when the estimated file size (the
//   state's tensor bytes plus its metadata) does not fit, it throws IoError
//   containing "not enough space" and changes nothing. Otherwise it writes
//   atomically (save_checkpoint's guarantees), and only once the new file is
//   durable deletes the older checkpoints beyond keep_last. Files with a
//   higher step than the one saved are left alone.
// - maybe_load() tries checkpoints newest first. One that fails to verify
//   (CorruptionError, VersionError) is renamed to `<name>.corrupt` (kept for
//   inspection, never tried again) with a warning naming it and the reason,
//   and the previous one is tried. One that cannot be read (IoError: EIO, a
//   map or open that fails) is skipped with a warning and left in place (it
//   may read on another attempt). No checkpoint: the strategy unchanged and
//   0. Checkpoints present but none usable: CorruptionError naming each
//   (IoError when every one failed to read). A checkpoint that verifies but
//   does not fit the strategy (InvalidArgument) propagates: an older one
//   would not fit either. Load is all-or-nothing as in
//   maybe_load_checkpoint. Listing the directory, taking the lock and
//   reading the files go through the file system of the options: a failure
//   there is an IoError naming the directory or file.
// - Test-only hook: when the environment variable
//   CONTINUA_TEST_SAVE_DELAY_MS is a positive number, every save sleeps that
//   long while the temporary file is open and again between the rename and
//   the directory fsync, so a crash test can land a SIGKILL in those windows.
//   Never set it in production.
// Not thread-safe: one thread saves and loads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "continua/checkpoint/checkpoint.h"
#include "continua/io/file_lock.h"

namespace continua {

struct CheckpointManagerOptions {
  // The directory of the checkpoints (created if missing). Required.
  CheckpointManagerOptions& directory(std::string v) { directory_ = std::move(v); return *this; }
  // How many checkpoints to keep (>= 1).
  CheckpointManagerOptions& keep_last(int64_t v) { keep_last_ = v; return *this; }
  // The file system every write and read (listing, lock, the files' bytes)
  // goes through (tests inject faults and power cuts here); null: the POSIX one.
  CheckpointManagerOptions& file_system(io::FileSystem* v) { fs_ = v; return *this; }
  // Receives warnings (a skipped corrupt checkpoint); default: stderr.
  CheckpointManagerOptions& warning(std::function<void(const std::string&)> v) {
    warning_ = std::move(v);
    return *this;
  }

  std::string directory_;
  int64_t keep_last_ = 2;
  io::FileSystem* fs_ = nullptr;
  std::function<void(const std::string&)> warning_;
};

class CheckpointManager {
 public:
  struct Entry {
    int64_t step;
    std::string path;
  };

  explicit CheckpointManager(const CheckpointManagerOptions& options);
  ~CheckpointManager();
  CheckpointManager(const CheckpointManager&) = delete;
  CheckpointManager& operator=(const CheckpointManager&) = delete;

  // Saves the strategy as the checkpoint of its current step; returns its path.
  std::string save(const Checkpointable& strategy, const SaveOptions& options = {});

  // Loads the newest checkpoint that verifies (see the contract above);
  // returns the strategy and the index of the experience to train next.
  int64_t load_newest(Checkpointable& strategy, const MapLocation& map_location = {},
                      const UniqueObjects& unique_objects = {});
  template <typename S>
  std::pair<S&, int64_t> maybe_load(S& strategy, const MapLocation& map_location = {},
                                    const UniqueObjects& unique_objects = {}) {
    return {strategy, load_newest(strategy, map_location, unique_objects)};
  }

  // The checkpoints in the directory, oldest (lowest step) first.
  std::vector<Entry> list() const;
  // The file a checkpoint of this step is saved to.
  std::string path_for(int64_t step) const;
  // The step a file name denotes ("ckpt-12.safetensors" -> 12), or -1.
  static int64_t parse_step(const std::string& file_name);
  // The bytes a checkpoint of this state needs on disk, over-estimated.
  static uint64_t estimate_size(const StateTree& tree, const SaveOptions& options = {});

  const std::string& directory() const { return options_.directory_; }
  // The file the last maybe_load() loaded, or empty.
  const std::string& loaded_path() const { return loaded_path_; }
  // The last file save() wrote, or empty.
  const std::string& last_saved_path() const { return last_saved_path_; }

 private:
  void warn(const std::string& message) const;
  io::FileSystem& fs() const;

  CheckpointManagerOptions options_;
  std::unique_ptr<io::FileLock> lock_;
  std::string loaded_path_;
  std::string last_saved_path_;
};

}  // namespace continua
