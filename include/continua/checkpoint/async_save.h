// Asynchronous checkpoints: training pauses only while the state is copied
// into host memory; the file is written by a background thread.
//
// Usage:
//   continua::AsyncCheckpointer checkpointer(
//       continua::AsyncCheckpointerOptions().host_memory_budget(size_t{4} << 30));
//   for (size_t i = 0; i < stream.size(); ++i) {
//     strategy.train(stream[i]);
//     auto handle = checkpointer.save(strategy, "ckpt.safetensors");
//     // ...training goes on while the file is written...
//   }
//   checkpointer.wait();  // the last checkpoint is durable (or this throws)
//
// Contract:
// - save() returns once the state is snapshotted: strategy_state() is
//   collected and every tensor copied into a host buffer owned by the
//   checkpointer (reused from one save to the next, so after the first save
//   the copy runs into memory that is already faulted in). Changing the live
//   state after save() returns does not affect the file. That copy is the
//   training stall.
// - The file is written with write_checkpoint(), hence atomically: until the
//   handle reports done, `path` holds the previous checkpoint (or nothing), and
//   a crash at any instant leaves either the old or the new file in force.
// - Saves never interleave: save() first waits for the running write to finish
//   (its write starts as soon as its snapshot is taken, so there is never a
//   queued save to supersede). The wait is part of the stall only when saves
//   come faster than the disk takes them.
// - Budget: if the state's tensors exceed host_memory_budget bytes (or some
//   live on an accelerator), save() falls back to a synchronous save (the returned handle is
//   already done and synchronous() is true): memory never exceeds the budget
//   plus the format writer's two 8 MiB staging blocks.
// - Errors of the background write (IoError, disk full, ...) and of a
//   synchronous fallback are reported by handle.wait() (and by
//   AsyncCheckpointer::wait() for the last save), which rethrow the original
//   exception; save() itself throws only if the snapshot fails
//   (InvalidArgument for a state that cannot be saved).
// - The destructor waits for the running write and swallows its error (call
//   wait() first to see it).
#pragma once

#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <string>

#include "continua/checkpoint/checkpoint.h"

namespace continua {

struct AsyncCheckpointerOptions {
  // Host memory, in bytes, the snapshot buffer may use (default 8 GiB).
  AsyncCheckpointerOptions& host_memory_budget(uint64_t v) {
    host_memory_budget_ = v;
    return *this;
  }
  uint64_t host_memory_budget_ = uint64_t{8} << 30;
};

// Tells when one checkpoint is durable.
class AsyncSaveHandle {
 public:
  AsyncSaveHandle() = default;
  // Blocks until the file is durable; rethrows the write's exception.
  void wait() const;
  // True once the write has finished (successfully or not); never blocks.
  bool done() const;
  // True when the save ran synchronously (its state exceeded the budget).
  bool synchronous() const { return synchronous_; }
  // Seconds training was paused in save() (snapshot, or the whole save).
  double stall_seconds() const { return stall_seconds_; }
  // Bytes of tensors in the snapshot.
  uint64_t snapshot_bytes() const { return snapshot_bytes_; }

 private:
  friend class AsyncCheckpointer;
  std::shared_future<void> future_;
  bool synchronous_ = false;
  double stall_seconds_ = 0;
  uint64_t snapshot_bytes_ = 0;
};

class AsyncCheckpointer {
 public:
  explicit AsyncCheckpointer(AsyncCheckpointerOptions options = {});
  ~AsyncCheckpointer();
  AsyncCheckpointer(const AsyncCheckpointer&) = delete;
  AsyncCheckpointer& operator=(const AsyncCheckpointer&) = delete;

  AsyncSaveHandle save(const Checkpointable& strategy, const std::string& path,
                       const SaveOptions& options = {});
  // Waits for the last save; rethrows its exception.
  void wait();
  // Bytes held for snapshots (the largest state saved so far, within budget).
  uint64_t buffer_bytes() const;

 private:
  struct Buffer;
  AsyncCheckpointerOptions options_;
  std::unique_ptr<Buffer> buffer_;
  std::shared_future<void> running_;
  std::mutex mu_;  // one save() at a time
};

}  // namespace continua
