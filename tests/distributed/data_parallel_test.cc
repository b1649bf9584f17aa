// Data-parallel training with real processes on loopback: `continua run
// --nproc 2` (DataParallelPlugin over c10d Gloo).
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <sstream>
#include <thread>

#include "continua/distributed/distributed.h"
#include "continua/errors.h"
#include "continua/training/strategy.h"
#include "test_util.h"

namespace continua {
namespace {

using testing::continua_bin;
using testing::read_file;
using testing::run_command;
using testing::TempDir;

const std::string kBase = " --benchmark split-synthetic --experiences 5 --hidden 64 --threads 1 --verbosity quiet";
const std::string kSmall = kBase + " --train-mb-size 32";

std::string digest(const std::string& dir, int rank) {
  std::string d = read_file(dir + "/rank-" + std::to_string(rank) + ".digest");
  while (!d.empty() && d.back() == '\n') d.pop_back();
  return d;
}

nlohmann::json results(const std::string& dir) { return nlohmann::json::parse(read_file(dir + "/results.json")); }

TEST(DataParallel, TwoRanksEndIdenticalAndMatchOneProcess) {
  TempDir d;
  // No dropout: with it each rank draws its own masks, and the accuracies
  // of one process and two ranks differ by the masks' luck, not the method.
  const std::string options = kSmall + " --dropout 0";
  for (const std::string strategy : {"replay", "ewc", "lwf"}) {
    const std::string two = d.file(strategy + "-2"), one = d.file(strategy + "-1");
    auto r2 = run_command(continua_bin() + " run --nproc 2 --strategy " + strategy + options + " --out " + two + " 2>&1");
    ASSERT_EQ(r2.status, 0) << r2.output;
    auto r1 = run_command(continua_bin() + " run --strategy " + strategy + options + " --out " + one + " 2>&1");
    ASSERT_EQ(r1.status, 0) << r1.output;
    // Every rank ends with the same state (parameters, optimizer, memories,
    // importances, previous model, generators, metrics).
    const std::string d0 = digest(two, 0), d1 = digest(two, 1);
    EXPECT_EQ(d0.size(), 64u);
    EXPECT_EQ(d0, d1) << strategy;
    EXPECT_EQ(results(two).at("state_digest").get<std::string>(), d0);
    EXPECT_FALSE(std::filesystem::exists(one + "/rank-0.digest"));  // single process: no ranks
    // The same global batch: the same mean gradient up to rounding.
    const double a2 = results(two).at("average_accuracy").get<double>();
    const double a1 = results(one).at("average_accuracy").get<double>();
    EXPECT_NEAR(a2, a1, 0.03) << strategy;
    EXPECT_GT(a2, 0.5) << strategy;
  }
}

TEST(DataParallel, UnevenLastBatchKeepsRanksIdentical) {
  // Batches of 133 on 3 ranks: chunks of 44/44/45, and experiences of 400
  // samples end with a batch of 1: chunks 0/0/1 (two ranks have nothing).
  TempDir d;
  auto r = run_command(continua_bin() + " run --nproc 3 --strategy naive" + kBase +
                       " --train-mb-size 133 --out " + d.path() + " 2>&1");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(digest(d.path(), 0), digest(d.path(), 1));
  EXPECT_EQ(digest(d.path(), 0), digest(d.path(), 2));
  EXPECT_GT(results(d.path()).at("average_accuracy").get<double>(), 0.5);
}

TEST(DataParallel, ResumeAtExperienceBoundaryIsBitExact) {
  TempDir d;
  const std::string base = continua_bin() + " run --nproc 2 --strategy replay" + kSmall;
  auto full = run_command(base + " --checkpoint " + d.file("full.st") + " --out " + d.file("full") + " 2>&1");
  ASSERT_EQ(full.status, 0) << full.output;
  auto part = run_command(base + " --checkpoint " + d.file("part.st") + " --max-experiences 1 --out " +
                          d.file("part") + " 2>&1");
  ASSERT_EQ(part.status, 0) << part.output;
  EXPECT_EQ(results(d.file("part")).at("trained_experiences").get<int>(), 1);
  EXPECT_NE(digest(d.file("part"), 0), digest(d.file("full"), 0));
  auto rest = run_command(base + " --checkpoint " + d.file("part.st") + " --out " + d.file("part") + " 2>&1");
  ASSERT_EQ(rest.status, 0) << rest.output;
  EXPECT_NE(rest.output.find("resumed from"), std::string::npos) << rest.output;
  EXPECT_EQ(digest(d.file("part"), 0), digest(d.file("full"), 0));
  EXPECT_EQ(digest(d.file("part"), 1), digest(d.file("full"), 1));
  EXPECT_EQ(results(d.file("part")).at("state_digest"), results(d.file("full")).at("state_digest"));
}

TEST(DataParallel, SignalToOneRankStopsAllAtTheSameIterationAndResumesBitExact) {
  TempDir d;
  // Long enough to be signalled mid-experience: 10 epochs of 400 samples.
  const std::string base = continua_bin() + " run --nproc 2 --strategy ewc" + kSmall + " --epochs 10";
  auto full = run_command(base + " --out " + d.file("full") + " >/dev/null 2>&1");
  ASSERT_EQ(full.status, 0) << full.output;

  const std::string log = d.file("stop.log");
  const std::string cmd = base + " --checkpoint-dir " + d.file("ck") + " --out " + d.file("stop");
  const pid_t launcher = ::fork();
  ASSERT_GE(launcher, 0);
  if (launcher == 0) {
    ::execl("/bin/sh", "sh", "-c", ("exec " + cmd + " >" + log + " 2>&1").c_str(), (char*)nullptr);
    ::_exit(127);
  }
  // Wait until training runs (the metrics file has lines), then signal rank 1 only.
  pid_t rank1 = 0;
  for (int i = 0; i < 600 && rank1 == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::error_code ec;
    if (std::filesystem::file_size(d.file("stop") + "/metrics.jsonl", ec) == 0 || ec) continue;
    auto children = run_command("pgrep -P " + std::to_string(launcher));
    std::vector<pid_t> pids;
    std::istringstream in(children.output);
    for (pid_t p; in >> p;) pids.push_back(p);
    if (pids.size() == 2) rank1 = std::max(pids[0], pids[1]);  // forked second
  }
  ASSERT_NE(rank1, 0) << read_file(log);
  ASSERT_EQ(::kill(rank1, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(launcher, &status, 0), launcher);
  ASSERT_TRUE(WIFEXITED(status)) << read_file(log);
  ASSERT_EQ(WEXITSTATUS(status), 75) << read_file(log);
  const std::string out = read_file(log);
  EXPECT_NE(out.find("stopped by a stop on another rank"), std::string::npos) << out;
  // Both ranks stopped at the same iteration with the same state.
  EXPECT_EQ(digest(d.file("stop"), 0), digest(d.file("stop"), 1));
  EXPECT_FALSE(results(d.file("stop")).at("complete").get<bool>());

  auto rest = run_command(base + " --checkpoint-dir " + d.file("ck") + " --out " + d.file("stop") + " 2>&1");
  ASSERT_EQ(rest.status, 0) << rest.output;
  EXPECT_NE(rest.output.find("resumed from"), std::string::npos) << rest.output;
  EXPECT_EQ(digest(d.file("stop"), 0), digest(d.file("full"), 0));
  EXPECT_EQ(digest(d.file("stop"), 1), digest(d.file("full"), 1));
}

// Dropout draws per-rank random numbers, on chunks of unequal size (33 on 2
// ranks: 16 and 17 rows). The ranks' replicated generator must not drift
// apart, and a resume in the middle of an experience (and of an epoch) must
// give every rank its own random stream back: the resumed run equals the
// uninterrupted one bit for bit on both ranks.
TEST(DataParallel, DropoutOnUnevenChunksResumesMidExperienceBitExact) {
  TempDir d;
  const std::string base = continua_bin() + " run --nproc 2 --strategy naive" + kBase +
                           " --train-mb-size 33 --dropout 0.3 --epochs 2";
  // 400 samples per experience: 13 iterations per epoch, 26 per experience.
  auto full = run_command(base + " --checkpoint-dir " + d.file("ck") +
                          " --checkpoint-every 5 --keep-last 1000 --out " + d.file("full") + " 2>&1");
  ASSERT_EQ(full.status, 0) << full.output;
  EXPECT_EQ(digest(d.file("full"), 0), digest(d.file("full"), 1));
  // Keep the checkpoints up to iteration 20: experience 0, epoch 1, position 7 of 13.
  int kept = 0;
  for (const auto& e : std::filesystem::directory_iterator(d.file("ck"))) {
    const std::string name = e.path().filename().string();
    if (name.rfind("ckpt-", 0) != 0) continue;  // the directory's LOCK file
    if (std::stoll(name.substr(5)) > 20) {
      std::filesystem::remove(e.path());
    } else {
      ++kept;
    }
  }
  ASSERT_EQ(kept, 4);  // iterations 5, 10, 15, 20
  auto rest = run_command(base + " --checkpoint-dir " + d.file("ck") + " --out " + d.file("rest") + " 2>&1");
  ASSERT_EQ(rest.status, 0) << rest.output;
  EXPECT_NE(rest.output.find("at experience 0, iteration 20"), std::string::npos) << rest.output;
  EXPECT_EQ(rest.output.find("re-derived"), std::string::npos) << rest.output;  // same rank count
  EXPECT_EQ(digest(d.file("rest"), 0), digest(d.file("full"), 0));
  EXPECT_EQ(digest(d.file("rest"), 1), digest(d.file("full"), 1));
}

// A checkpoint of 2 ranks resumes as a single process and one of a single
// process resumes on 2 ranks: the replicated state loads, the launcher says
// what it re-derives, and training completes with an accuracy like that of an
// uninterrupted run.
TEST(DataParallel, ResumesWithAnotherNumberOfRanks) {
  TempDir d;
  const std::string run = continua_bin() + " run --strategy replay" + kSmall;
  auto whole = run_command(run + " --out " + d.file("whole") + " 2>&1");
  ASSERT_EQ(whole.status, 0) << whole.output;
  const double reference = results(d.file("whole")).at("average_accuracy").get<double>();

  struct Case {
    std::string first, second, name;
    int second_world;
  };
  for (const Case& c : {Case{" --nproc 2", "", "2to1", 1}, Case{"", " --nproc 2", "1to2", 2}}) {
    const std::string ck = d.file(c.name + ".st"), out = d.file(c.name);
    auto part = run_command(run + c.first + " --checkpoint " + ck + " --max-experiences 2 --out " + out + " 2>&1");
    ASSERT_EQ(part.status, 0) << part.output;
    auto rest = run_command(run + c.second + " --checkpoint " + ck + " --out " + out + " 2>&1");
    ASSERT_EQ(rest.status, 0) << c.name << ": " << rest.output;
    EXPECT_NE(rest.output.find("resumed from"), std::string::npos) << rest.output;
    const std::string note = "written by " + std::string(c.second_world == 1 ? "2" : "1") +
                             " rank(s), this run has " + std::to_string(c.second_world);
    EXPECT_NE(rest.output.find(note), std::string::npos) << rest.output;
    EXPECT_NE(rest.output.find("re-derived"), std::string::npos) << rest.output;
    const auto r = results(out);
    EXPECT_TRUE(r.at("complete").get<bool>()) << c.name;
    EXPECT_EQ(r.at("trained_experiences").get<int>(), 5) << c.name;
    EXPECT_NEAR(r.at("average_accuracy").get<double>(), reference, 0.05) << c.name;
    if (c.second_world == 2) EXPECT_EQ(digest(out, 0), digest(out, 1));
  }
}

// `--verbosity verbose` reports the time per iteration for one process as
// for each rank, so the two can be compared (docs/distributed.md).
TEST(DataParallel, VerboseReportsTimePerIterationForOneProcessAndForRanks) {
  TempDir d;
  const std::string run = continua_bin() + " run --strategy naive --benchmark split-synthetic --experiences 1"
                          " --hidden 32 --threads 1 --train-mb-size 32 --verbosity verbose";
  auto one = run_command(run + " --out " + d.file("one") + " 2>&1");
  ASSERT_EQ(one.status, 0) << one.output;
  auto iterations = [](const std::string& out, const std::string& prefix) {
    const size_t at = out.find(prefix);
    if (at == std::string::npos) return int64_t{-1};
    return int64_t(std::stoll(out.substr(at + prefix.size())));
  };
  const int64_t n = iterations(one.output, "continua: 1 process: ");
  EXPECT_GT(n, 0) << one.output;
  EXPECT_NE(one.output.find(" ms/iteration"), std::string::npos) << one.output;
  auto two = run_command(run + " --nproc 2 --out " + d.file("two") + " 2>&1");
  ASSERT_EQ(two.status, 0) << two.output;
  // The same global mini-batches: as many iterations on each rank.
  EXPECT_EQ(iterations(two.output, "rank 1 of 2: "), n) << two.output;
  EXPECT_NE(two.output.find("gradient all-reduce"), std::string::npos) << two.output;
  // The timer is not part of the state: the digest is that of a quiet run.
  auto quiet = run_command(continua_bin() + " run --strategy naive --benchmark split-synthetic --experiences 1"
                           " --hidden 32 --threads 1 --train-mb-size 32 --verbosity quiet --out " + d.file("q"));
  ASSERT_EQ(quiet.status, 0) << quiet.output;
  EXPECT_EQ(results(d.file("q")).at("state_digest"), results(d.file("one")).at("state_digest"));
}

TEST(DataParallel, EnvironmentIsReadAndCheckedAndFailuresPropagate) {
  ::setenv("RANK", "1", 1);
  ::setenv("WORLD_SIZE", "2", 1);
  ::setenv("MASTER_ADDR", "10.1.2.3", 1);
  ::setenv("MASTER_PORT", "12345", 1);
  auto e = DistributedEnv::from_environment();
  EXPECT_EQ(e.source, "env");
  EXPECT_EQ(e.rank, 1);
  EXPECT_EQ(e.world_size, 2);
  EXPECT_EQ(e.master_addr, "10.1.2.3");
  EXPECT_EQ(e.master_port, 12345);
  ::setenv("RANK", "2", 1);
  EXPECT_THROW(DistributedEnv::from_environment(), InvalidArgument);
  ::setenv("RANK", "x", 1);
  try {
    DistributedEnv::from_environment();
    ADD_FAILURE() << "RANK=x accepted";
  } catch (const InvalidArgument& err) {
    EXPECT_NE(std::string(err.what()).find("RANK"), std::string::npos);
  }
  for (const char* v : {"RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}) ::unsetenv(v);
  ::setenv("SLURM_PROCID", "0", 1);
  ::setenv("SLURM_NTASKS", "2", 1);
  ::setenv("SLURM_LOCALID", "0", 1);
  ::setenv("SLURM_JOB_ID", "4242", 1);
  ::setenv("SLURM_JOB_NODELIST", "nodeA", 1);
  // The batch script of a 2-task job is not a rank: no step.
  EXPECT_EQ(DistributedEnv::from_environment().world_size, 1);
  ::setenv("SLURM_STEP_ID", "0", 1);
  e = DistributedEnv::from_environment();
  EXPECT_EQ(e.source, "slurm");
  EXPECT_EQ(e.world_size, 2);
  EXPECT_EQ(e.master_addr, "nodeA");
  EXPECT_EQ(e.master_port, 20000 + 4242);
  for (const char* v : {"SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_JOB_ID", "SLURM_JOB_NODELIST",
                        "SLURM_STEP_ID"}) {
    ::unsetenv(v);
  }
  // A rank that fails makes the launcher fail (and stop the other).
  auto r = run_command(continua_bin() + " run --nproc 2 --benchmark no-such-benchmark 2>&1");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("no-such-benchmark"), std::string::npos) << r.output;
}

// A plugin that throws in the middle of iteration `at` (after the forward,
// which drew dropout masks from the rank's stream).
struct ThrowAt : Plugin {
  explicit ThrowAt(int64_t at) : at(at) {}
  int64_t at;
  std::string name() const override { return "throw_at"; }
  bool part_of_state() const override { return false; }
  void after_forward(Strategy& s) override {
    if (s.clock().train_iterations == at) throw std::runtime_error("boom");
  }
};

// An iteration that throws under DataParallelPlugin leaves torch's generator
// on the replicated stream (Plugin::iteration_failed), so a caller that
// catches the error and saves stores the replicated state, not the rank's.
TEST(DataParallel, GeneratorGoesBackToTheReplicatedStreamWhenAnIterationThrows) {
  DistributedEnv env;  // one rank, in this process
  env.master_port = free_local_port();
  auto ctx = std::make_shared<DistributedContext>(env);
  auto b = testing::synthetic_benchmark(41, 1);
  auto s = testing::make_test_strategy("naive", *b);  // dropout 0.1: the forward draws
  s->add_plugin(std::make_shared<DataParallelPlugin>(ctx));
  s->add_plugin(std::make_shared<ThrowAt>(3));
  at::Tensor before;
  s->set_iteration_callback([&](Strategy& st) {
    if (st.clock().train_iterations == 3) before = at::detail::getDefaultCPUGenerator().get_state();
  });
  EXPECT_THROW(s->train(b->train_stream()[0]), std::runtime_error);
  ASSERT_TRUE(before.defined());
  EXPECT_TRUE(at::detail::getDefaultCPUGenerator().get_state().equal(before));
}

}  // namespace
}  // namespace continua
