// AsyncCheckpointer: the file is the state at save() time, whatever happens
// to the live state afterwards; handles report completion and errors; saves
// never interleave; over budget, saves are synchronous.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "continua/checkpoint/async_save.h"
#include "continua/io/fault_injection.h"
#include "reliability_util.h"

namespace continua::testing {
namespace {

// A file system whose create_exclusive blocks until released: holds a
// background write at its very start.
class GatedFileSystem final : public io::FileSystem {
 public:
  explicit GatedFileSystem(io::FileSystem& base) : base_(base) {}
  void release() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }
  int creates() const { return creates_.load(); }
  std::unique_ptr<io::WritableFile> create_exclusive(const std::string& path) override {
    ++creates_;
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return open_; });
    return base_.create_exclusive(path);
  }
  void rename(const std::string& a, const std::string& b) override { base_.rename(a, b); }
  void sync_dir(const std::string& d) override { base_.sync_dir(d); }
  void remove(const std::string& p) noexcept override { base_.remove(p); }
  bool exists(const std::string& p) override { return base_.exists(p); }
  uint64_t free_bytes(const std::string& d) override { return base_.free_bytes(d); }

 private:
  io::FileSystem& base_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
  std::atomic<int> creates_{0};
};

void perturb(Strategy& s) {
  torch::NoGradGuard no_grad;
  for (auto& p : s.model().parameters()) p.add_(1.0);
}

TEST(AsyncSave, RoundTripEqualsASynchronousSave) {
  auto bench = synthetic_benchmark(1, 5);
  auto s = trained_strategy("replay", *bench, 2);
  TempDir dir;
  const std::string path = dir.file("a.safetensors");
  const std::string expected = checkpoint_bytes(*s);
  AsyncCheckpointer cp;
  AsyncSaveHandle h = cp.save(*s, path);
  EXPECT_FALSE(h.synchronous());
  EXPECT_GT(h.snapshot_bytes(), 0u);
  h.wait();
  EXPECT_TRUE(h.done());
  EXPECT_TRUE(read_file(path) == expected);

  auto fresh = make_test_strategy("replay", *bench, 7);
  maybe_load_checkpoint(*fresh, path, {}, {bench});
  EXPECT_EQ(fresh->state_digest(), s->state_digest());
  EXPECT_EQ(list_dir(dir.path()), std::vector<std::string>{"a.safetensors"});
}

TEST(AsyncSave, LiveStateChangedRightAfterSaveDoesNotReachTheFile) {
  auto bench = synthetic_benchmark(1, 5);
  auto s = trained_strategy("naive", *bench, 1);
  TempDir dir;
  const std::string path = dir.file("a.safetensors");
  const std::string expected = checkpoint_bytes(*s);
  GatedFileSystem gate(io::default_file_system());
  AsyncCheckpointer cp;
  AsyncSaveHandle h = cp.save(*s, path, SaveOptions().file_system(&gate));
  // The write has not even created its file: change the live state now.
  perturb(*s);
  s->train(bench->train_stream()[1]);
  ASSERT_NE(checkpoint_bytes(*s), expected);
  EXPECT_FALSE(h.done());
  gate.release();
  h.wait();
  EXPECT_TRUE(read_file(path) == expected);
}

TEST(AsyncSave, DoneIsFalseUntilTheFileIsDurable) {
  auto bench = synthetic_benchmark(1, 5);
  auto s = trained_strategy("naive", *bench, 1);
  TempDir dir;
  const std::string path = dir.file("a.safetensors");
  GatedFileSystem gate(io::default_file_system());
  AsyncCheckpointer cp;
  AsyncSaveHandle h = cp.save(*s, path, SaveOptions().file_system(&gate));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(h.done());
  EXPECT_FALSE(std::filesystem::exists(path));
  gate.release();
  h.wait();
  EXPECT_TRUE(h.done());
  EXPECT_TRUE(std::filesystem::exists(path));
  cp.wait();
}

TEST(AsyncSave, WriteErrorsSurfaceInWaitAndKeepThePreviousCheckpoint) {
  auto bench = synthetic_benchmark(1, 5);
  auto s = trained_strategy("naive", *bench, 1);
  TempDir dir;
  const std::string path = dir.file("a.safetensors");
  AsyncCheckpointer cp;
  cp.save(*s, path).wait();
  const std::string previous = read_file(path);

  s->train(bench->train_stream()[1]);
  io::FaultInjectingFileSystem fs(io::default_file_system());
  fs.fail_at(1, ENOSPC);  // the first write after create
  AsyncSaveHandle h = cp.save(*s, path, SaveOptions().file_system(&fs));
  try {
    h.wait();
    FAIL() << "wait() did not rethrow the write error";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("disk full"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  EXPECT_TRUE(h.done());
  EXPECT_THROW(cp.wait(), IoError);
  EXPECT_TRUE(read_file(path) == previous);
  EXPECT_EQ(list_dir(dir.path()), std::vector<std::string>{"a.safetensors"});

  // The checkpointer is still usable.
  const std::string expected = checkpoint_bytes(*s);
  cp.save(*s, path).wait();
  EXPECT_TRUE(read_file(path) == expected);
}

TEST(AsyncSave, TwoSavesInARowNeverInterleave) {
  auto bench = synthetic_benchmark(1, 5);
  auto s = trained_strategy("naive", *bench, 1);
  TempDir dir;
  const std::string path = dir.file("a.safetensors");
  GatedFileSystem gate(io::default_file_system());
  AsyncCheckpointer cp;
  AsyncSaveHandle first = cp.save(*s, path, SaveOptions().file_system(&gate));
  s->train(bench->train_stream()[1]);
  const std::string second_expected = checkpoint_bytes(*s);
  std::atomic<bool> second_returned{false};
  AsyncSaveHandle second;
  std::thread t([&] {
    second = cp.save(*s, path, SaveOptions().file_system(&gate));
    second_returned = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  // The second save waits for the first write, which is held at its start.
  EXPECT_FALSE(second_returned.load());
  EXPECT_EQ(gate.creates(), 1);
  gate.release();
  t.join();
  EXPECT_TRUE(first.done());
  second.wait();
  EXPECT_EQ(gate.creates(), 2);
  EXPECT_TRUE(read_file(path) == second_expected);
  EXPECT_EQ(list_dir(dir.path()), std::vector<std::string>{"a.safetensors"});
}

TEST(AsyncSave, OverBudgetTheSaveIsSynchronous) {
  auto bench = synthetic_benchmark(1, 5);
  auto s = trained_strategy("naive", *bench, 1);
  TempDir dir;
  const std::string path = dir.file("a.safetensors");
  const std::string expected = checkpoint_bytes(*s);
  AsyncCheckpointer cp(AsyncCheckpointerOptions().host_memory_budget(16));
  AsyncSaveHandle h = cp.save(*s, path);
  EXPECT_TRUE(h.synchronous());
  EXPECT_TRUE(h.done());
  EXPECT_EQ(cp.buffer_bytes(), 0u);
  h.wait();
  EXPECT_TRUE(read_file(path) == expected);
}

}  // namespace
}  // namespace continua::testing
