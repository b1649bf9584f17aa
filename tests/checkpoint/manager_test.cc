// CheckpointManager: numbering, retention, newest-valid fallback, free-space
// check, lock, leftover temporary files; and mid-experience resume through it
// for every strategy.
#include "continua/checkpoint/manager.h"
#include "continua/training/registry.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "continua/errors.h"
#include "continua/io/file_system.h"
#include "test_util.h"

namespace continua {
namespace {

using testing::TempDir;
namespace fs = std::filesystem;

std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// Trains experience 0 partly: stops after `iterations` iterations.
void train_iterations(Strategy& s, const Benchmark& bench, int64_t iterations) {
  s.set_iteration_callback([&](Strategy& st) {
    if (st.clock().train_iterations >= iterations) st.request_stop();
  });
  EXPECT_FALSE(s.train(bench.train_stream()[0]));
  s.set_iteration_callback(nullptr);
  s.clear_stop();
}

// A file system whose free space is whatever the test says.
class SmallDisk final : public io::FileSystem {
 public:
  explicit SmallDisk(uint64_t free) : free_(free) {}
  std::unique_ptr<io::WritableFile> create_exclusive(const std::string& p) override {
    ++creates;
    return base().create_exclusive(p);
  }
  void rename(const std::string& a, const std::string& b) override { base().rename(a, b); }
  void sync_dir(const std::string& d) override { base().sync_dir(d); }
  void remove(const std::string& p) noexcept override {
    ++removes;
    base().remove(p);
  }
  bool exists(const std::string& p) override { return base().exists(p); }
  uint64_t free_bytes(const std::string&) override { return free_; }
  int creates = 0, removes = 0;

 private:
  static io::FileSystem& base() { return io::default_file_system(); }
  uint64_t free_;
};

TEST(CheckpointManager, ParsesStepsAsIntegers) {
  EXPECT_EQ(CheckpointManager::parse_step("ckpt-000000001234.safetensors"), 1234);
  EXPECT_EQ(CheckpointManager::parse_step("ckpt-9.safetensors"), 9);
  EXPECT_EQ(CheckpointManager::parse_step("ckpt-10.safetensors"), 10);
  EXPECT_EQ(CheckpointManager::parse_step("ckpt-1234567890123.safetensors"), 1234567890123);
  EXPECT_EQ(CheckpointManager::parse_step("ckpt-.safetensors"), -1);
  EXPECT_EQ(CheckpointManager::parse_step("ckpt-12a.safetensors"), -1);
  EXPECT_EQ(CheckpointManager::parse_step("ckpt--1.safetensors"), -1);
  EXPECT_EQ(CheckpointManager::parse_step("ckpt-1.safetensors.tmp.12.ab"), -1);
  EXPECT_EQ(CheckpointManager::parse_step("ckpt-1.safetensors.corrupt"), -1);
  EXPECT_EQ(CheckpointManager::parse_step("ckpt-1234567890123456789.safetensors"), -1);
  EXPECT_EQ(CheckpointManager::parse_step("LOCK"), -1);
}

TEST(CheckpointManager, KeepsTheLastKAndNamesFilesByStep) {
  TempDir dir;
  auto bench = testing::synthetic_benchmark();
  auto s = testing::make_test_strategy("naive", *bench);
  CheckpointManager m(CheckpointManagerOptions().directory(dir.path()).keep_last(2));
  std::vector<std::string> saved;
  s->set_iteration_callback([&](Strategy& st) {
    if (st.clock().train_iterations % 3 == 0) saved.push_back(m.save(st));
  });
  ASSERT_TRUE(s->train(bench->train_stream()[0]));
  ASSERT_GE(saved.size(), 3u);
  auto entries = m.list();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[1].path, saved.back());
  EXPECT_EQ(entries[0].path, saved[saved.size() - 2]);
  EXPECT_EQ(fs::path(saved.back()).filename().string(),
            fmt::format("ckpt-{:012d}.safetensors", entries[1].step));
  EXPECT_EQ(entries[1].step % 3, 0);
  // Nothing else in the directory but the lock.
  EXPECT_EQ(names_in(dir.path()).size(), 3u);
}

TEST(CheckpointManager, NewestIsChosenByNumberNotByString) {
  TempDir dir;
  auto bench = testing::synthetic_benchmark();
  auto s = testing::make_test_strategy("naive", *bench);
  std::string digest9, digest10;
  s->set_iteration_callback([&](Strategy& st) {
    // Unpadded names: as strings "ckpt-9" > "ckpt-10".
    if (st.clock().train_iterations == 9) {
      save_checkpoint(st, dir.file("ckpt-9.safetensors"));
      digest9 = st.state_digest();
    }
    if (st.clock().train_iterations == 10) {
      save_checkpoint(st, dir.file("ckpt-10.safetensors"));
      digest10 = st.state_digest();
      st.request_stop();
    }
  });
  ASSERT_FALSE(s->train(bench->train_stream()[0]));
  ASSERT_NE(digest9, digest10);
  CheckpointManager m(CheckpointManagerOptions().directory(dir.path()));
  auto entries = m.list();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].step, 9);
  EXPECT_EQ(entries[1].step, 10);
  auto fresh = testing::make_test_strategy("naive", *bench);
  m.maybe_load(*fresh, {}, {bench});
  EXPECT_EQ(m.loaded_path(), dir.file("ckpt-10.safetensors"));
  EXPECT_EQ(fresh->state_digest(), digest10);
}

TEST(CheckpointManager, EmptyDirectoryLeavesTheStrategyAlone) {
  TempDir dir;
  auto bench = testing::synthetic_benchmark();
  auto s = testing::make_test_strategy("naive", *bench);
  const std::string before = s->state_digest();
  CheckpointManager m(CheckpointManagerOptions().directory(dir.file("sub/dir")));
  EXPECT_EQ(m.maybe_load(*s, {}, {bench}).second, 0);
  EXPECT_EQ(s->state_digest(), before);
  EXPECT_TRUE(m.loaded_path().empty());
}

enum class Damage { kFlipByte, kTruncate, kEmpty, kGarbage };

class Fallback : public ::testing::TestWithParam<Damage> {};

TEST_P(Fallback, SkipsADamagedNewestCheckpointWithAWarningAndUsesThePrevious) {
  TempDir dir;
  auto bench = testing::synthetic_benchmark();
  auto s = testing::make_test_strategy("replay", *bench);
  std::vector<std::string> warnings;
  std::string older_digest, older, newer;
  {
    CheckpointManager m(CheckpointManagerOptions().directory(dir.path()).keep_last(3));
    s->set_iteration_callback([&](Strategy& st) {
      if (st.clock().train_iterations == 4) {
        older = m.save(st);
        older_digest = st.state_digest();
      }
      if (st.clock().train_iterations == 8) {
        newer = m.save(st);
        st.request_stop();
      }
    });
    ASSERT_FALSE(s->train(bench->train_stream()[0]));
  }
  const auto size = fs::file_size(newer);
  switch (GetParam()) {
    case Damage::kFlipByte: {
      std::fstream f(newer, std::ios::in | std::ios::out | std::ios::binary);
      f.seekg(std::streamoff(size - 100));
      char c;
      f.get(c);
      f.seekp(std::streamoff(size - 100));
      f.put(char(c ^ 0x40));
      break;
    }
    case Damage::kTruncate: fs::resize_file(newer, size / 2); break;
    case Damage::kEmpty: fs::resize_file(newer, 0); break;
    case Damage::kGarbage: std::ofstream(newer, std::ios::binary) << "not a checkpoint at all"; break;
  }
  auto fresh = testing::make_test_strategy("replay", *bench);
  CheckpointManager m(CheckpointManagerOptions().directory(dir.path()).warning(
      [&](const std::string& w) { warnings.push_back(w); }));
  EXPECT_EQ(m.maybe_load(*fresh, {}, {bench}).second, 0);
  EXPECT_EQ(m.loaded_path(), older);
  EXPECT_EQ(fresh->state_digest(), older_digest);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find(newer), std::string::npos) << warnings[0];
  EXPECT_TRUE(fs::exists(newer + ".corrupt"));
  EXPECT_FALSE(fs::exists(newer));
}

INSTANTIATE_TEST_SUITE_P(Damages, Fallback,
                         ::testing::Values(Damage::kFlipByte, Damage::kTruncate, Damage::kEmpty,
                                           Damage::kGarbage));

TEST(CheckpointManager, NoUsableCheckpointIsAnErrorNamingEachFile) {
  TempDir dir;
  std::ofstream(dir.file("ckpt-3.safetensors")) << "garbage";
  std::ofstream(dir.file("ckpt-5.safetensors")) << "more garbage";
  auto bench = testing::synthetic_benchmark();
  auto s = testing::make_test_strategy("naive", *bench);
  const std::string before = s->state_digest();
  CheckpointManager m(CheckpointManagerOptions().directory(dir.path()).warning([](const std::string&) {}));
  try {
    m.maybe_load(*s, {}, {bench});
    FAIL() << "expected CorruptionError";
  } catch (const CorruptionError& e) {
    EXPECT_NE(std::string(e.what()).find("ckpt-3.safetensors"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("ckpt-5.safetensors"), std::string::npos) << e.what();
  }
  EXPECT_EQ(s->state_digest(), before);
}

TEST(CheckpointManager, ASaveThatCannotFitFailsEarlyAndDeletesNothing) {
  TempDir dir;
  auto bench = testing::synthetic_benchmark();
  auto s = testing::make_test_strategy("naive", *bench);
  train_iterations(*s, *bench, 3);
  const std::string first = [&] {
    CheckpointManager m(CheckpointManagerOptions().directory(dir.path()).keep_last(1));
    return m.save(*s);
  }();
  const auto need = CheckpointManager::estimate_size(strategy_state(*s));
  EXPECT_GE(need, fs::file_size(first));  // an estimate must not be short
  EXPECT_LT(need, fs::file_size(first) * 4 + 256 * 1024);
  train_iterations(*s, *bench, 6);
  SmallDisk disk(need / 2);
  CheckpointManager m(CheckpointManagerOptions().directory(dir.path()).keep_last(1).file_system(&disk));
  try {
    m.save(*s);
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("not enough space"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(dir.path()), std::string::npos) << e.what();
  }
  EXPECT_EQ(disk.creates, 0);
  EXPECT_EQ(disk.removes, 0);
  EXPECT_EQ(names_in(dir.path()), (std::vector<std::string>{"LOCK", fs::path(first).filename().string()}));
}

TEST(CheckpointManager, ASecondManagerOnTheSameDirectoryIsRefused) {
  TempDir dir;
  {
    CheckpointManager first(CheckpointManagerOptions().directory(dir.path()));
    try {
      CheckpointManager second(CheckpointManagerOptions().directory(dir.path()));
      FAIL() << "expected IoError";
    } catch (const IoError& e) {
      const std::string w = e.what();
      EXPECT_NE(w.find(dir.path()), std::string::npos) << w;
      EXPECT_NE(w.find("pid " + std::to_string(::getpid())), std::string::npos) << w;
    }
  }
  // Released with the first manager.
  EXPECT_NO_THROW(CheckpointManager{CheckpointManagerOptions().directory(dir.path())});
}

TEST(CheckpointManager, ALockHeldByAnotherProcessIsRefused) {
  TempDir dir;
  if (testing::run_command("command -v flock").status != 0) GTEST_SKIP() << "no flock(1)";
  // flock(1) holds the same kind of lock (flock(2)) in another process.
  const std::string lock = dir.file("LOCK");
  std::ofstream(lock) << "";
  const std::string ready = dir.file("ready");
  // (Its output goes to /dev/null: run_command reads until every writer is gone.)
  testing::run_command("(flock -x " + lock + " -c 'touch " + ready + "; sleep 3' >/dev/null 2>&1 &)");
  for (int i = 0; i < 100 && !fs::exists(ready); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(fs::exists(ready));
  EXPECT_THROW(CheckpointManager{CheckpointManagerOptions().directory(dir.path())}, IoError);
}

TEST(CheckpointManager, RemovesTemporaryFilesOfAKilledSaveOnOpen) {
  TempDir dir;
  std::ofstream(dir.file("ckpt-000000000007.safetensors.tmp.4242.00000000deadbeef")) << "partial";
  std::ofstream(dir.file("notes.txt")) << "mine";
  CheckpointManager m(CheckpointManagerOptions().directory(dir.path()));
  EXPECT_EQ(names_in(dir.path()), (std::vector<std::string>{"LOCK", "notes.txt"}));
}

// A process killed between a commit and its retention leaves one file too
// many; killed again, two. Opening the directory prunes to keep_last, so
// repeated kills never pile up more than keep_last + 1 (seen in the SIGKILL
// torture: 4 files with --keep-last 2 after two kills in a row).
TEST(CheckpointManager, OpeningPrunesCheckpointsBeyondKeepLast) {
  TempDir dir;
  auto bench = testing::synthetic_benchmark();
  auto s = testing::make_test_strategy("naive", *bench);
  std::vector<std::string> saved;
  {
    CheckpointManager m(CheckpointManagerOptions().directory(dir.path()).keep_last(5));
    s->set_iteration_callback([&](Strategy& st) {
      if (st.clock().train_iterations % 2 == 0 && saved.size() < 4) saved.push_back(m.save(st));
    });
    ASSERT_TRUE(s->train(bench->train_stream()[0]));
  }
  ASSERT_EQ(saved.size(), 4u);
  CheckpointManager m(CheckpointManagerOptions().directory(dir.path()).keep_last(2));
  auto entries = m.list();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].path, saved[2]);
  EXPECT_EQ(entries[1].path, saved[3]);
}

TEST(CheckpointManager, RejectsBadOptions) {
  TempDir dir;
  EXPECT_THROW(CheckpointManager{CheckpointManagerOptions()}, InvalidArgument);
  EXPECT_THROW(CheckpointManager{CheckpointManagerOptions().directory(dir.path()).keep_last(0)},
               InvalidArgument);
  std::ofstream(dir.file("file")) << "x";
  EXPECT_THROW(CheckpointManager{CheckpointManagerOptions().directory(dir.file("file"))}, IoError);
}

// Mid-experience resume through the manager, for every strategy: train k
// iterations, save, load into a fresh strategy, finish; must equal an
// uninterrupted run bit for bit (and differ when the load is skipped).
class MidExperience : public ::testing::TestWithParam<std::string> {};

TEST_P(MidExperience, ResumeIsBitExact) {
  const std::string name = GetParam();
  auto bench = testing::synthetic_benchmark(1, 5);
  auto run_all = [&](Strategy& s, int64_t from_exp) {
    for (int64_t i = from_exp; i < 3; ++i) {
      EXPECT_TRUE(s.train(bench->train_stream()[i]));
      s.eval(bench->test_stream());
    }
  };
  // First: it builds strategies, which reseeds torch's generator.
  const int64_t n = testing::iterations_in_experience(name, *bench, 1, 1, 2);
  ASSERT_GE(n, 2) << name;
  auto reference = testing::make_test_strategy(name, *bench, 1, 2);
  run_all(*reference, 0);

  TempDir dir;
  {
    auto first = testing::make_test_strategy(name, *bench, 1, 2);
    EXPECT_TRUE(first->train(bench->train_stream()[0]));
    first->eval(bench->test_stream());
    // Stop in the middle of experience 1 (second epoch).
    const int64_t stop_at = first->clock().train_iterations + std::min<int64_t>(11, n - 1);
    CheckpointManager m(CheckpointManagerOptions().directory(dir.path()));
    first->set_iteration_callback([&](Strategy& st) {
      if (st.clock().train_iterations == stop_at) {
        m.save(st);
        st.request_stop();
      }
    });
    EXPECT_FALSE(first->train(bench->train_stream()[1]));
  }
  auto resumed = testing::make_test_strategy(name, *bench, 1, 2);
  CheckpointManager m(CheckpointManagerOptions().directory(dir.path()));
  const int64_t next = m.maybe_load(*resumed, {}, {bench}).second;
  EXPECT_EQ(next, 1);
  EXPECT_TRUE(resumed->in_experience());
  run_all(*resumed, next);
  EXPECT_EQ(resumed->state_digest(), reference->state_digest());
  EXPECT_EQ(resumed->evaluator().accuracy_matrix(), reference->evaluator().accuracy_matrix());

  // Without the load the run differs: the test can fail.
  auto skipped = testing::make_test_strategy(name, *bench, 1, 2);
  run_all(*skipped, 1);
  EXPECT_NE(skipped->state_digest(), reference->state_digest());
}

INSTANTIATE_TEST_SUITE_P(Strategies, MidExperience, ::testing::ValuesIn(strategy_names()),
                         [](const auto& info) { return testing::test_name(info.param); });

// A stop requested before the first iteration of an experience (a signal
// during the evaluation) must resume exactly, too.
TEST(MidExperienceStop, StopBeforeTheFirstIterationResumesExactly) {
  auto bench = testing::synthetic_benchmark(1, 2);
  auto reference = testing::make_test_strategy("replay", *bench, 1, 2);
  for (int64_t i = 0; i < 2; ++i) {
    ASSERT_TRUE(reference->train(bench->train_stream()[i]));
  }
  auto first = testing::make_test_strategy("replay", *bench, 1, 2);
  ASSERT_TRUE(first->train(bench->train_stream()[0]));
  first->request_stop();
  ASSERT_FALSE(first->train(bench->train_stream()[1]));
  std::stringstream ss;
  save_checkpoint(*first, ss);
  auto resumed = testing::make_test_strategy("replay", *bench, 1, 2);
  maybe_load_checkpoint(*resumed, ss, {}, {bench});
  ASSERT_TRUE(resumed->train(bench->train_stream()[1]));
  EXPECT_EQ(resumed->state_digest(), reference->state_digest());
}

}  // namespace
}  // namespace continua
