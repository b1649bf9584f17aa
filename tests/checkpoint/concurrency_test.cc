// Concurrent writers and readers of one checkpoint path. Two processes save
// different states to the same file, many times, while this process polls
// it: every read must be one complete checkpoint, byte-identical to one of
// the two states' checkpoints and loadable; never a mix, never partial. At
// the end no temporary file is left.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "continua/checkpoint/checkpoint.h"
#include "reliability_util.h"

namespace continua::testing {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(Concurrency, TwoWritersOneReaderNeverSeeAMix) {
  auto bench = synthetic_benchmark(1, 5);
  auto a = trained_strategy("replay", *bench, 1);
  auto b = trained_strategy("replay", *bench, 2);
  const std::string bytes_a = checkpoint_bytes(*a), bytes_b = checkpoint_bytes(*b);
  ASSERT_NE(bytes_a, bytes_b);
  ASSERT_EQ(checkpoint_bytes(*a), bytes_a) << "saving is not deterministic";
  const std::string digest_a = a->state_digest(), digest_b = b->state_digest();

  TempDir dir;
  const std::string path = dir.file("shared.safetensors");
  save_checkpoint(*a, path);
  constexpr int kSaves = 150;
  std::vector<pid_t> writers;
  for (Strategy* s : {a.get(), b.get()}) {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int rc = 0;
      try {
        for (int i = 0; i < kSaves; ++i) save_checkpoint(*s, path);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "writer: %s\n", e.what());
        rc = 1;
      }
      ::_exit(rc);
    }
    writers.push_back(pid);
  }

  // Poll until both writers are done.
  size_t reads = 0, seen_a = 0, seen_b = 0, loads = 0, bad = 0;
  auto probe = make_test_strategy("replay", *bench);
  int running = 2;
  std::vector<int> statuses;
  while (running > 0) {
    const std::string now = slurp(path);
    ++reads;
    if (now == bytes_a) {
      ++seen_a;
    } else if (now == bytes_b) {
      ++seen_b;
    } else if (bad++ < 5) {
      ADD_FAILURE() << "read " << reads << ": " << now.size() << " bytes, neither checkpoint";
    }
    if (reads % 20 == 0) {
      // A real load through the path (mmap): either state, never an error.
      try {
        maybe_load_checkpoint(*probe, path, {}, {bench});
        const std::string d = probe->state_digest();
        EXPECT_TRUE(d == digest_a || d == digest_b);
        ++loads;
      } catch (const std::exception& e) {
        ADD_FAILURE() << "load while writers write: " << e.what();
      }
    }
    int st = 0;
    const pid_t done = ::waitpid(-1, &st, WNOHANG);
    if (done > 0) {
      --running;
      statuses.push_back(st);
    }
  }
  for (int st : statuses) {
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "writer status " << st;
  }
  std::printf("%zu reads (%zu A, %zu B), %zu loads while 2 x %d saves ran\n", reads, seen_a,
              seen_b, loads, kSaves);
  EXPECT_EQ(bad, 0u);
  EXPECT_GT(seen_a + seen_b, 0u);
  const std::string final_bytes = slurp(path);
  EXPECT_TRUE(final_bytes == bytes_a || final_bytes == bytes_b);
  EXPECT_EQ(list_dir(dir.path()), std::vector<std::string>{"shared.safetensors"});
}

}  // namespace
}  // namespace continua::testing
