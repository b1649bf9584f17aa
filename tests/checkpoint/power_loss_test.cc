// Power loss under every save path (io/power_loss.h): single-file
// save_checkpoint, CheckpointManager with retention, AsyncCheckpointer and the
// 2-process data-parallel rank-0 save. Each path trains a small strategy
// that saves every few iterations and after each experience (power_loss_util.h).
// One uninterrupted run through an uncut PowerLossFileSystem numbers the
// file-system calls and records, for each save, its step, its state digest
// and the call count when it returned. Then, for each cut point k (every
// call, and after the last one), the run is repeated with the power cut at
// call k, the disk materialised in each of the three variants (unsynced data
// dropped; torn; directory entries kept with torn data), and loaded with the
// ordinary code and the default file system:
// - the checkpoint loaded is the newest whose save returned before the cut
//   (file and directory synced), or a newer complete one, never an older
//   one, never a damaged one (no load error, no corrupt-file warning);
// - the manager: every checkpoint its retention keeps at that save is still
//   there and verifies;
// - the loaded state resumes to the uninterrupted run's final digest (for
//   the data-parallel path: on both ranks, from the file rank 0 chose).
// Every cut point and variant is tried in the default run (about 25 s here
// for the four paths; the data-parallel one takes most of it).
#include <gtest/gtest.h>

#include <ATen/Parallel.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>

#include "continua/checkpoint/async_save.h"
#include "continua/checkpoint/checkpoint.h"
#include "continua/checkpoint/manager.h"
#include "continua/io/power_loss.h"
#include "power_loss_util.h"
#include "reliability_util.h"

extern char** environ;

namespace continua::testing {
namespace {

using namespace power_loss;
namespace stdfs = std::filesystem;

struct SaveRecord {
  int64_t step;
  std::string digest;
  size_t end_call;  // calls made when this save returned (its write completed)
};

// The uninterrupted run of a save path.
struct Reference {
  std::string initial_digest;
  std::vector<SaveRecord> saves;
  std::string final_digest;
  size_t calls = 0;

  // The newest save that completed before a cut at call k (-1: none).
  int newest_durable(size_t k) const {
    int d = -1;
    for (size_t j = 0; j < saves.size(); ++j)
      if (saves[j].end_call <= k) d = int(j);
    return d;
  }
  // The newest save with this digest (-1: none).
  int save_with_digest(const std::string& digest) const {
    for (size_t j = saves.size(); j-- > 0;)
      if (saves[j].digest == digest) return int(j);
    return -1;
  }
};

struct Counts {
  size_t cuts = 0, loads = 0, resumes = 0;
  std::map<int, size_t> loaded;  // save index (-1: none) -> times loaded
  std::string summary(const std::string& path, size_t calls, size_t saves) const {
    std::string s = path + ": " + std::to_string(saves) + " saves, " + std::to_string(calls) + " calls, " +
                    std::to_string(cuts) + " cut points x 3 variants = " + std::to_string(loads) + " loads, " +
                    std::to_string(resumes) + " resumed to the end; times each save was the one loaded (-1: none):";
    for (const auto& [j, n] : loaded) s += " " + std::to_string(j) + ":" + std::to_string(n);
    return s;
  }
};

// Checks what a load after a cut at k produced: `digest` with the file
// present or not. Returns the save index it equals (-1: nothing loaded).
int check_loaded(const Reference& ref, size_t k, bool loaded_something, const std::string& digest,
                 const std::string& where) {
  const int durable = ref.newest_durable(k);
  if (!loaded_something) {
    EXPECT_EQ(durable, -1) << where << ": nothing loaded, but save " << durable << " (step "
                           << ref.saves[size_t(durable)].step << ") had returned before the cut";
    EXPECT_EQ(digest, ref.initial_digest) << where << ": nothing loaded, yet the strategy changed";
    return -1;
  }
  const int j = ref.save_with_digest(digest);
  EXPECT_GE(j, 0) << where << ": the loaded state is none of the saved states";
  EXPECT_GE(j, durable) << where << ": loaded save " << j << ", older than save " << durable
                        << ", whose save had returned before the cut";
  return j;
}

// Resumes `s` (just loaded) to the end of the stream and compares with the
// uninterrupted run.
void check_resume(Strategy& s, const Benchmark& bench, const Scenario& sc, const Reference& ref, Counts& counts,
                  const std::string& where) {
  run_stream(s, bench, sc);
  EXPECT_EQ(s.state_digest(), ref.final_digest) << where << ": the resumed run differs from the uninterrupted one";
  ++counts.resumes;
}

std::string where_of(size_t k, const io::PowerLossFileSystem& fs, size_t calls, io::PowerLossVariant v) {
  return "cut at call " + std::to_string(k) + (k < calls ? " (" + fs.call_name(k) + ")" : " (after the last call)") +
         ", " + io::variant_name(v);
}

// The digest of the checkpoint at `path` loaded into a fresh strategy.
std::string digest_of_file(const std::string& path, const Scenario& sc, const std::shared_ptr<Benchmark>& bench) {
  auto s = scenario_strategy(sc, *bench);
  maybe_load_checkpoint(*s, path, {}, {bench});
  return s->state_digest();
}

// After a cut at k: for each variant of the cut, the disk as it would be,
// the single file at `path` loaded into a fresh strategy, checked against
// the saves that had returned, and resumed to the end.
void load_every_variant(io::PowerLossFileSystem& fs, const std::string& path, const Scenario& sc,
                        const std::shared_ptr<Benchmark>& bench, const Reference& ref, size_t k, Counts& counts) {
  for (io::PowerLossVariant v : io::all_power_loss_variants()) {
    const std::string where = where_of(k, fs, ref.calls, v);
    fs.materialize(v);
    const bool present = stdfs::exists(path);
    auto fresh = scenario_strategy(sc, *bench);
    try {
      maybe_load_checkpoint(*fresh, path, {}, {bench});
    } catch (const Error& e) {
      ADD_FAILURE() << where << ": the load failed: " << e.what();
      continue;
    }
    ++counts.loads;
    const int j = check_loaded(ref, k, present, fresh->state_digest(), where);
    ++counts.loaded[j];
    check_resume(*fresh, *bench, sc, ref, counts, where);
  }
}

// ------------------------------------------------------------ single file

Reference single_file_reference(const Scenario& sc, const std::shared_ptr<Benchmark>& bench) {
  Reference ref;
  TempDir dir;
  io::PowerLossFileSystem fs(io::default_file_system());
  auto s = scenario_strategy(sc, *bench);
  ref.initial_digest = s->state_digest();
  run_stream(*s, *bench, sc, [&](Strategy& st) {
    save_checkpoint(st, dir.file("ckpt.safetensors"), SaveOptions().file_system(&fs));
    ref.saves.push_back({st.step(), st.state_digest(), fs.calls()});
    return true;
  });
  ref.final_digest = s->state_digest();
  ref.calls = fs.calls();
  return ref;
}

TEST(PowerLoss, SingleFileSaveCutAtEveryCall) {
  const Scenario sc;
  auto bench = scenario_benchmark(sc);
  const Reference ref = single_file_reference(sc, bench);
  ASSERT_GE(ref.saves.size(), 5u);
  ASSERT_EQ(ref.calls, ref.saves.back().end_call);
  Counts counts;
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t k = 0; k <= ref.calls; ++k) {
    TempDir dir;
    const std::string path = dir.file("ckpt.safetensors");
    io::PowerLossFileSystem fs(io::default_file_system());
    fs.cut_at(k);
    auto s = scenario_strategy(sc, *bench);
    run_stream(*s, *bench, sc, [&](Strategy& st) {
      try {
        save_checkpoint(st, path, SaveOptions().file_system(&fs));
        return true;
      } catch (const IoError&) {
        if (!fs.cut_happened()) throw;
        return false;  // the machine is dead
      }
    });
    fs.cut();
    ASSERT_EQ(fs.cut_index(), k);
    ++counts.cuts;
    load_every_variant(fs, path, sc, bench, ref, k, counts);
  }
  std::cout << counts.summary("save_checkpoint (one file)", ref.calls, ref.saves.size()) << "; "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s\n";
  EXPECT_EQ(counts.loads, 3 * (ref.calls + 1));
}

// The directory fsync after the rename is what makes a returned save
// durable: without it the rename is undone by a cut right after the save
// returned, and the previous checkpoint comes back.
TEST(PowerLoss, ASaveThatReturnedSurvivesACutRightAfterIt) {
  const Scenario sc;
  auto bench = scenario_benchmark(sc);
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  io::PowerLossFileSystem fs(io::default_file_system());
  auto s = scenario_strategy(sc, *bench);
  s->train(bench->train_stream()[0]);
  save_checkpoint(*s, path, SaveOptions().file_system(&fs));
  s->train(bench->train_stream()[1]);
  save_checkpoint(*s, path, SaveOptions().file_system(&fs));
  const std::string saved = s->state_digest();
  for (io::PowerLossVariant v : io::all_power_loss_variants()) {
    fs.materialize(v);  // the power goes right after the second save returned
    EXPECT_EQ(digest_of_file(path, sc, bench), saved) << io::variant_name(v);
  }
}

// A writer that renames a file whose data it never synced leaves, after a
// cut, a torn or empty file under the checkpoint's name: it must fail
// verification (never load), leave the strategy as it was, and the manager
// must set it aside and fall back to the previous checkpoint.
class SkipFileSync final : public io::FileSystemWrapper {
 public:
  using FileSystemWrapper::FileSystemWrapper;
  std::unique_ptr<io::WritableFile> create_exclusive(const std::string& path) override {
    struct File final : io::WritableFile {
      std::unique_ptr<io::WritableFile> f;
      void append(const void* d, size_t n) override { f->append(d, n); }
      void pwrite(uint64_t o, const void* d, size_t n) override { f->pwrite(o, d, n); }
      void sync() override {}  // the bug
      void close() override { f->close(); }
    };
    auto file = std::make_unique<File>();
    file->f = base().create_exclusive(path);
    return file;
  }
};

TEST(PowerLoss, ATornCheckpointFailsVerificationAndTheManagerFallsBack) {
  const Scenario sc;
  auto bench = scenario_benchmark(sc);
  TempDir dir;
  io::PowerLossFileSystem fs(io::default_file_system());
  SkipFileSync unsynced(fs);
  auto s = scenario_strategy(sc, *bench);
  std::string good, torn, good_digest;
  {
    CheckpointManager m(CheckpointManagerOptions().directory(dir.path()).keep_last(3).file_system(&fs));
    s->train(bench->train_stream()[0]);
    good = m.save(*s);
    good_digest = s->state_digest();
    s->train(bench->train_stream()[1]);
    torn = m.save(*s, SaveOptions().file_system(&unsynced));  // renamed and dir-synced, data never synced
  }
  for (io::PowerLossVariant v : io::all_power_loss_variants()) {
    const std::string where = io::variant_name(v);
    fs.materialize(v);
    ASSERT_TRUE(stdfs::exists(torn)) << where;
    auto fresh = scenario_strategy(sc, *bench);
    const std::string before = fresh->state_digest();
    EXPECT_THROW(maybe_load_checkpoint(*fresh, torn, {}, {bench}), CorruptionError) << where;
    EXPECT_EQ(fresh->state_digest(), before) << where;
    std::vector<std::string> warnings;
    CheckpointManager m(CheckpointManagerOptions().directory(dir.path()).warning(
        [&](const std::string& w) { warnings.push_back(w); }));
    m.maybe_load(*fresh, {}, {bench});
    EXPECT_EQ(m.loaded_path(), good) << where;
    EXPECT_EQ(fresh->state_digest(), good_digest) << where;
    ASSERT_EQ(warnings.size(), 1u) << where;
    EXPECT_NE(warnings[0].find(torn), std::string::npos) << warnings[0];
    EXPECT_NE(warnings[0].find("corrupt checkpoint"), std::string::npos) << warnings[0];
  }
}

// ------------------------------------------------------------ manager

constexpr int64_t kKeepLast = 2;

// The manager's file name for a step (manager.h): ckpt-000000000012.safetensors.
std::string checkpoint_name(int64_t step) {
  std::string digits = std::to_string(step);
  if (digits.size() < 12) digits.insert(0, 12 - digits.size(), '0');
  return "ckpt-" + digits + ".safetensors";
}

// The steps whose files the manager keeps once save `durable` is done, and
// for each the saves whose content the file may hold (a later save of the
// same step may have replaced it).
std::map<int64_t, std::set<std::string>> kept_at(const Reference& ref, int durable) {
  std::map<int64_t, std::set<std::string>> kept;
  if (durable < 0) return kept;
  std::vector<int64_t> steps;
  for (int j = 0; j <= durable; ++j) {
    const int64_t st = ref.saves[size_t(j)].step;
    if (steps.empty() || steps.back() != st) steps.push_back(st);
  }
  for (size_t i = steps.size() > size_t(kKeepLast) ? steps.size() - size_t(kKeepLast) : 0; i < steps.size(); ++i) {
    const int64_t st = steps[i];
    int last = -1;  // the newest save of this step up to `durable`
    for (int j = 0; j <= durable; ++j)
      if (ref.saves[size_t(j)].step == st) last = j;
    for (size_t j = size_t(last); j < ref.saves.size(); ++j)
      if (ref.saves[j].step == st) kept[st].insert(ref.saves[j].digest);
  }
  return kept;
}

TEST(PowerLoss, CheckpointManagerWithRetentionCutAtEveryCall) {
  const Scenario sc;
  auto bench = scenario_benchmark(sc);
  Reference ref;
  {
    TempDir dir;
    io::PowerLossFileSystem fs(io::default_file_system());
    CheckpointManager m(CheckpointManagerOptions().directory(dir.path()).keep_last(kKeepLast).file_system(&fs));
    auto s = scenario_strategy(sc, *bench);
    ref.initial_digest = s->state_digest();
    run_stream(*s, *bench, sc, [&](Strategy& st) {
      m.save(st);
      ref.saves.push_back({st.step(), st.state_digest(), fs.calls()});
      return true;
    });
    ref.final_digest = s->state_digest();
    ref.calls = fs.calls();
    size_t removes = 0;
    for (size_t i = 0; i < ref.calls; ++i) removes += fs.call_name(i).rfind("remove", 0) == 0;
    ASSERT_GE(removes, 3u);  // retention pruned
  }
  Counts counts;
  size_t kept_checked = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t k = 0; k <= ref.calls; ++k) {
    TempDir dir;
    io::PowerLossFileSystem fs(io::default_file_system());
    fs.cut_at(k);
    {
      CheckpointManager m(CheckpointManagerOptions().directory(dir.path()).keep_last(kKeepLast).file_system(&fs));
      auto s = scenario_strategy(sc, *bench);
      run_stream(*s, *bench, sc, [&](Strategy& st) {
        try {
          m.save(st);
          return true;
        } catch (const IoError&) {
          if (!fs.cut_happened()) throw;
          return false;
        }
      });
    }  // the lock goes with the process
    fs.cut();
    ASSERT_EQ(fs.cut_index(), k);
    ++counts.cuts;
    const int durable = ref.newest_durable(k);
    for (io::PowerLossVariant v : io::all_power_loss_variants()) {
      const std::string where = where_of(k, fs, ref.calls, v);
      fs.materialize(v);
      // Nothing the retention of the newest durable save keeps is lost.
      for (const auto& [step, digests] : kept_at(ref, durable)) {
        const std::string file = dir.file(checkpoint_name(step));
        ASSERT_TRUE(stdfs::exists(file)) << where << ": lost the checkpoint of step " << step;
        EXPECT_EQ(digests.count(digest_of_file(file, sc, bench)), 1u) << where << ": step " << step;
        ++kept_checked;
      }
      std::vector<std::string> warnings;
      CheckpointManager m(CheckpointManagerOptions().directory(dir.path()).keep_last(kKeepLast).warning(
          [&](const std::string& w) { warnings.push_back(w); }));
      auto fresh = scenario_strategy(sc, *bench);
      try {
        m.maybe_load(*fresh, {}, {bench});
      } catch (const Error& e) {
        ADD_FAILURE() << where << ": the load failed: " << e.what();
        continue;
      }
      EXPECT_TRUE(warnings.empty()) << where << ": " << warnings.front();
      ++counts.loads;
      const int j = check_loaded(ref, k, !m.loaded_path().empty(), fresh->state_digest(), where);
      ++counts.loaded[j];
      check_resume(*fresh, *bench, sc, ref, counts, where);
    }
  }
  std::cout << counts.summary("CheckpointManager keep_last 2", ref.calls, ref.saves.size()) << "; " << kept_checked
            << " retained files verified; "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s\n";
  EXPECT_EQ(counts.loads, 3 * (ref.calls + 1));
}

// ------------------------------------------------------------ async

TEST(PowerLoss, AsyncCheckpointerCutAtEveryCall) {
  const Scenario sc;
  auto bench = scenario_benchmark(sc);
  Reference ref;
  {
    TempDir dir;
    io::PowerLossFileSystem fs(io::default_file_system());
    AsyncCheckpointer checkpointer;
    auto s = scenario_strategy(sc, *bench);
    ref.initial_digest = s->state_digest();
    run_stream(*s, *bench, sc, [&](Strategy& st) {
      const std::string digest = st.state_digest();
      checkpointer.save(st, dir.file("ckpt.safetensors"), SaveOptions().file_system(&fs)).wait();
      ref.saves.push_back({st.step(), digest, fs.calls()});  // the writes of one save end before the next's
      return true;
    });
    ref.final_digest = s->state_digest();
    ref.calls = fs.calls();
  }
  Counts counts;
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t k = 0; k <= ref.calls; ++k) {
    TempDir dir;
    const std::string path = dir.file("ckpt.safetensors");
    io::PowerLossFileSystem fs(io::default_file_system());
    fs.cut_at(k);
    {
      AsyncCheckpointer checkpointer;
      auto s = scenario_strategy(sc, *bench);
      // Training does not wait for the writes: it learns of the cut at the
      // next save at the earliest.
      run_stream(*s, *bench, sc, [&](Strategy& st) {
        if (fs.cut_happened()) return false;
        checkpointer.save(st, path, SaveOptions().file_system(&fs));
        return true;
      });
      try {
        checkpointer.wait();
      } catch (const IoError&) {
        EXPECT_TRUE(fs.cut_happened());
      }
    }
    fs.cut();
    ASSERT_EQ(fs.cut_index(), k);
    ++counts.cuts;
    load_every_variant(fs, path, sc, bench, ref, k, counts);
  }
  std::cout << counts.summary("AsyncCheckpointer", ref.calls, ref.saves.size()) << "; "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s\n";
  EXPECT_EQ(counts.loads, 3 * (ref.calls + 1));
}

// ------------------------------------------------------------ data parallel

// Rank 1 (power_loss_rank1.cc) in its own process.
class Rank1Process {
 public:
  Rank1Process(int port, const std::string& strategy, const std::string& log) {
    std::vector<std::string> env;
    auto ours = [](const std::string& v) {
      for (const char* k : {"RANK=", "WORLD_SIZE=", "LOCAL_RANK=", "LOCAL_WORLD_SIZE=", "MASTER_ADDR=", "MASTER_PORT="})
        if (v.rfind(k, 0) == 0) return true;
      return false;
    };
    for (char** e = environ; *e; ++e)
      if (!ours(*e)) env.emplace_back(*e);
    env.insert(env.end(), {"RANK=1", "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + std::to_string(port)});
    std::vector<char*> envp;
    for (auto& v : env) envp.push_back(v.data());
    envp.push_back(nullptr);
    std::string program = CONTINUA_POWERLOSS_RANK1, arg = strategy;
    char* argv[] = {program.data(), arg.data(), nullptr};
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    if (posix_spawn(&pid_, program.c_str(), &actions, nullptr, argv, envp.data()) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
  }
  ~Rank1Process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  bool started() const { return pid_ > 0; }
  // Its exit status (-1: killed by a signal).
  int wait() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  pid_t pid_ = -1;
};

TEST(PowerLoss, DataParallelRank0SaveCutAtEveryCall) {
  const Scenario sc;
  auto bench = scenario_benchmark(sc);
  const int threads = at::get_num_threads();
  at::set_num_threads(1);  // as the rank-1 process: bit-identical ranks
  struct RestoreThreads {
    int n;
    ~RestoreThreads() { at::set_num_threads(n); }
  } restore{threads};
  TempDir logs;
  DistributedEnv env;
  env.rank = 0;
  env.world_size = 2;
  env.master_port = free_local_port();
  Rank1Process rank1(env.master_port, sc.strategy, logs.file("rank1.log"));
  ASSERT_TRUE(rank1.started());
  auto ctx = std::make_shared<DistributedContext>(env, DistributedOptions().timeout_seconds(120));
  // One run on both ranks; returns rank 1's final digest.
  auto round = [&](const std::string& command, Strategy& s, const std::function<bool(Strategy&)>& save) {
    ctx->broadcast_string(command);
    broadcast_parameters(*ctx, s.model());
    run_stream(s, *bench, sc, save);
    return ctx->broadcast_string("", 1);
  };

  Reference ref;
  {
    TempDir dir;
    io::PowerLossFileSystem fs(io::default_file_system());
    CheckpointManager m(CheckpointManagerOptions().directory(dir.path()).keep_last(kKeepLast).file_system(&fs));
    auto s = scenario_strategy(sc, *bench, ctx);
    ref.initial_digest = s->state_digest();
    const std::string other = round("train", *s, [&](Strategy& st) {
      m.save(st);  // rank 0 alone writes the replicated state
      ref.saves.push_back({st.step(), st.state_digest(), fs.calls()});
      return true;
    });
    ref.final_digest = s->state_digest();
    ref.calls = fs.calls();
    ASSERT_EQ(other, ref.final_digest) << read_file(logs.file("rank1.log"));
  }
  Counts counts;
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t k = 0; k <= ref.calls; ++k) {
    TempDir dir;
    io::PowerLossFileSystem fs(io::default_file_system());
    fs.cut_at(k);
    {
      CheckpointManager m(CheckpointManagerOptions().directory(dir.path()).keep_last(kKeepLast).file_system(&fs));
      auto s = scenario_strategy(sc, *bench, ctx);
      // The ranks go on in step after the cut (what they compute no longer
      // reaches the disk); rank 0 stops saving.
      const std::string other = round("train", *s, [&](Strategy& st) {
        if (fs.cut_happened()) return true;
        try {
          m.save(st);
        } catch (const IoError&) {
          if (!fs.cut_happened()) throw;
        }
        return true;
      });
      ASSERT_EQ(other, ref.final_digest) << read_file(logs.file("rank1.log"));
    }
    fs.cut();
    ASSERT_EQ(fs.cut_index(), k);
    ++counts.cuts;
    const int durable = ref.newest_durable(k);
    for (io::PowerLossVariant v : io::all_power_loss_variants()) {
      const std::string where = where_of(k, fs, ref.calls, v);
      fs.materialize(v);
      for (const auto& [step, digests] : kept_at(ref, durable)) {
        const std::string file = dir.file(checkpoint_name(step));
        ASSERT_TRUE(stdfs::exists(file)) << where << ": lost the checkpoint of step " << step;
        EXPECT_EQ(digests.count(digest_of_file(file, sc, bench)), 1u) << where << ": step " << step;
      }
      std::vector<std::string> warnings;
      CheckpointManager m(CheckpointManagerOptions().directory(dir.path()).keep_last(kKeepLast).warning(
          [&](const std::string& w) { warnings.push_back(w); }));
      auto fresh = scenario_strategy(sc, *bench, ctx);
      try {
        m.maybe_load(*fresh, {}, {bench});
      } catch (const Error& e) {
        ADD_FAILURE() << where << ": the load failed: " << e.what();
        continue;
      }
      EXPECT_TRUE(warnings.empty()) << where << ": " << warnings.front();
      ++counts.loads;
      const int j = check_loaded(ref, k, !m.loaded_path().empty(), fresh->state_digest(), where);
      ++counts.loaded[j];
      // Both ranks resume from the file rank 0 chose, as `continua run --nproc` does.
      const std::string other = round("resume " + m.loaded_path(), *fresh, nullptr);
      EXPECT_EQ(fresh->state_digest(), ref.final_digest) << where << ": rank 0 resumed to another state";
      EXPECT_EQ(other, ref.final_digest) << where << ": rank 1 resumed to another state";
      ++counts.resumes;
    }
  }
  ctx->broadcast_string("exit");
  EXPECT_EQ(rank1.wait(), 0) << read_file(logs.file("rank1.log"));
  std::cout << counts.summary("2-process data-parallel, rank 0 saves (CheckpointManager keep_last 2)", ref.calls,
                              ref.saves.size())
            << "; "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s\n";
  EXPECT_EQ(counts.loads, 3 * (ref.calls + 1));
}

}  // namespace
}  // namespace continua::testing
