// A real full disk: a size-limited tmpfs is mounted (root only; the test
// skips, saying why, where mounting is not allowed), a checkpoint that fits
// is saved, the disk is filled, and the next save must fail with an error
// that says the disk is full, keep the previous checkpoint byte for byte and
// leave no temporary file. `continua run --checkpoint` on the full disk must
// exit non-zero with a message, not die by a signal.
#include <gtest/gtest.h>

#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "reliability_util.h"

namespace continua::testing {
namespace {

class FullDisk : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "mounting a tmpfs needs root";
    bench_ = synthetic_benchmark(1, 5);
    strategy_ = trained_strategy("replay", *bench_, 1);
    ckpt_size_ = checkpoint_bytes(*strategy_).size();
    // Room for the checkpoint and its temporary copy, with some slack.
    const size_t size_kb = (3 * ckpt_size_ + (1 << 20)) / 1024;
    const std::string opts = "size=" + std::to_string(size_kb) + "k,mode=0755";
    if (::mount("tmpfs", mount_.path().c_str(), "tmpfs", 0, opts.c_str()) != 0) {
      GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(errno)
                   << "): the real full-disk test needs mount permission";
    }
    mounted_ = true;
  }
  void TearDown() override {
    if (mounted_ && ::umount2(mount_.path().c_str(), MNT_DETACH) != 0) {
      ADD_FAILURE() << "umount " << mount_.path() << ": " << std::strerror(errno);
    }
  }

  // Writes a filler file until the file system refuses more bytes.
  void fill() {
    std::FILE* f = std::fopen(file("filler").c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::string block(4096, 'z');
    size_t written = 0;
    while (std::fwrite(block.data(), 1, block.size(), f) == block.size()) written += block.size();
    // One byte at a time for the last partial page.
    while (std::fwrite("z", 1, 1, f) == 1 && std::fflush(f) == 0) ++written;
    std::fclose(f);
    ASSERT_GT(written, 0u);
  }

  std::string file(const std::string& name) const { return mount_.path() + "/" + name; }

  TempDir mount_;
  bool mounted_ = false;
  std::shared_ptr<Benchmark> bench_;
  std::unique_ptr<Strategy> strategy_;
  size_t ckpt_size_ = 0;
};

TEST_F(FullDisk, SaveOnAFullDiskKeepsThePreviousCheckpoint) {
  const std::string path = file("ckpt.safetensors");
  save_checkpoint(*strategy_, path);
  const std::string previous = read_file(path);
  ASSERT_EQ(previous.size(), ckpt_size_);

  strategy_->train(bench_->train_stream()[1]);
  const std::string digest = strategy_->state_digest();
  fill();
  try {
    save_checkpoint(*strategy_, path);
    FAIL() << "save on a full disk succeeded";
  } catch (const IoError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("disk full"), std::string::npos) << m;
    EXPECT_NE(m.find(path), std::string::npos) << m;
  }
  EXPECT_EQ(read_file(path), previous);
  EXPECT_EQ((list_dir(mount_.path())), (std::vector<std::string>{"ckpt.safetensors", "filler"}));
  EXPECT_EQ(strategy_->state_digest(), digest);

  // The previous checkpoint still loads.
  auto probe = make_test_strategy("replay", *bench_);
  auto [s, next] = maybe_load_checkpoint(*probe, path, {}, {bench_});
  EXPECT_EQ(next, 1);

  // Space again: the next save succeeds.
  std::remove(file("filler").c_str());
  // (the probe moved torch's global generator, which the digest covers)
  const std::string saved_digest = strategy_->state_digest();
  save_checkpoint(*strategy_, path);
  auto fresh = make_test_strategy("replay", *bench_);
  maybe_load_checkpoint(*fresh, path, {}, {bench_});
  EXPECT_EQ(fresh->state_digest(), saved_digest);
}

TEST_F(FullDisk, CliRunOnAFullDiskExitsNonZeroWithAMessage) {
  fill();
  const std::string cmd = continua_bin() +
                          " run --benchmark split-synthetic --strategy replay --experiences 5"
                          " --subset 200 --max-experiences 1 --threads 1 --checkpoint " +
                          file("cli.safetensors");
  const CommandResult r = run_command(cmd);
  EXPECT_GT(r.status, 0) << "status " << r.status << " (-1: killed by a signal)\n" << r.output;
  EXPECT_NE(r.output.find("disk full"), std::string::npos) << r.output;
  // No checkpoint and no temporary file; only the run's lock file, which
  // locking still created (an inode, no data) on the full disk.
  EXPECT_EQ((list_dir(mount_.path())), (std::vector<std::string>{"cli.safetensors.lock", "filler"})) << r.output;
  EXPECT_NE(r.output.find("cannot write '" + file("cli.safetensors")), std::string::npos) << r.output;
}

}  // namespace
}  // namespace continua::testing
