// `continua run` under signals: SIGTERM/SIGINT/SIGUSR1 stop it at the next
// iteration with a checkpoint and exit status 75; a second signal during the
// save changes nothing; the resumed run equals an uninterrupted one. Also the
// directory lock and the preemption options' validation, from the CLI.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/signals.h"
#include "continua/errors.h"
#include "test_util.h"

namespace continua {
namespace {

using testing::TempDir;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// A training run long enough to signal (about 2-4 s on this machine).
std::vector<std::string> long_run(const std::string& out) {
  return {testing::continua_bin(), "run", "--benchmark", "split-synthetic", "--experiences", "2",
          "--epochs", "30", "--train-mb-size", "8", "--hidden", "64", "--seed", "5",
          "--strategy", "replay", "--threads", "1", "--verbosity", "quiet", "--out", out};
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& a : v) s += (s.empty() ? "" : " ") + a;
  return s;
}

// A child process with its stderr in a file.
class Child {
 public:
  Child(std::vector<std::string> args, const std::string& err_path,
        std::vector<std::string> extra_env = {}) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_store;
    for (char** e = environ; *e; ++e) env_store.push_back(*e);
    for (auto& e : extra_env) env_store.push_back(e);
    std::vector<char*> envp;
    for (auto& e : env_store) envp.push_back(e.data());
    envp.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), envp.data()) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
  }
  ~Child() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      wait();
    }
  }
  pid_t pid() const { return pid_; }
  void signal(int s) const { ::kill(pid_, s); }
  // Exit status, or -signal when killed.
  int wait() {
    int st = 0;
    while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
  }

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
};

bool wait_for(const std::function<bool()>& cond, double seconds) {
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return cond();
}

bool has_checkpoint(const std::string& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const auto n = e.path().filename().string();
    if (n.rfind("ckpt-", 0) == 0 && n.size() > 12 && n.substr(n.size() - 12) == ".safetensors") return true;
  }
  return false;
}

bool has_temp(const std::string& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().filename().string().find(".tmp.") != std::string::npos) return true;
  }
  return false;
}

nlohmann::json results(const std::string& out) {
  return nlohmann::json::parse(testing::read_file(out + "/results.json"));
}

// The uninterrupted run's results, computed once.
const nlohmann::json& reference() {
  static const nlohmann::json r = [] {
    TempDir dir;
    auto res = testing::run_command(join(long_run(dir.file("out"))));
    EXPECT_EQ(res.status, 0) << res.output;
    return results(dir.file("out"));
  }();
  return r;
}

// Sends `signo` once training has saved its first periodic checkpoint, checks
// the stop, then resumes to the end and compares with the reference.
void stop_and_resume(int signo, const std::vector<std::string>& extra, bool second_signal) {
  TempDir dir;
  const std::string ck = dir.file("ck"), out = dir.file("out"), err = dir.file("err");
  auto args = long_run(out);
  // With a second signal, no periodic saves: the save in progress must be
  // the one the first signal asked for.
  for (const auto& a : std::vector<std::string>{"--checkpoint-dir", ck, "--checkpoint-every",
                                                second_signal ? "0" : "50"}) {
    args.push_back(a);
  }
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<std::string> env;
  if (second_signal) env.push_back("CONTINUA_TEST_SAVE_DELAY_MS=400");
  Child child(args, err, env);
  ASSERT_GT(child.pid(), 0);
  if (second_signal) {
    // Training has started once the first epoch is logged.
    ASSERT_TRUE(wait_for([&] { return fs::exists(out + "/metrics.csv"); }, 60)) << testing::read_file(err);
  } else {
    ASSERT_TRUE(wait_for([&] { return has_checkpoint(ck); }, 60)) << testing::read_file(err);
  }
  const auto t0 = Clock::now();
  child.signal(signo);
  if (second_signal) {
    ASSERT_TRUE(wait_for([&] { return has_temp(ck); }, 10)) << "no save after the signal";
    child.signal(signo);
    child.signal(SIGINT);
    child.signal(SIGTERM);
  }
  const int status = child.wait();
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  const std::string msg = testing::read_file(err);
  ASSERT_EQ(status, cli::kExitStoppedBySignal) << msg;
  EXPECT_NE(msg.find("stopped by " + cli::signal_name(signo)), std::string::npos) << msg;
  EXPECT_LT(seconds, 10.0);
  std::cout << "[ figure ] " << cli::signal_name(signo) << " to exit: " << seconds << " s\n";
  EXPECT_FALSE(results(out)["complete"].get<bool>());
  EXPECT_FALSE(has_temp(ck));

  // Every checkpoint left verifies.
  for (const auto& e : fs::directory_iterator(ck)) {
    if (e.path().filename() == "LOCK") continue;
    auto v = testing::run_command(testing::continua_bin() + " verify " + e.path().string());
    EXPECT_EQ(v.status, 0) << v.output;
  }
  // Resume to the end: equals the uninterrupted run.
  auto res = testing::run_command(join(args));
  ASSERT_EQ(res.status, 0) << res.output;
  EXPECT_NE(res.output.find("resumed from"), std::string::npos) << res.output;
  const auto r = results(out);
  EXPECT_TRUE(r["complete"].get<bool>());
  EXPECT_EQ(r["state_digest"], reference()["state_digest"]);
  EXPECT_EQ(r["accuracy_matrix"], reference()["accuracy_matrix"]);
}

TEST(Signals, SigtermStopsWithACheckpointAndTheResumeIsExact) { stop_and_resume(SIGTERM, {}, false); }
TEST(Signals, SigintStopsWithACheckpoint) { stop_and_resume(SIGINT, {}, false); }
TEST(Signals, Sigusr1StopsWithACheckpoint) { stop_and_resume(SIGUSR1, {}, false); }
TEST(Signals, TheSignalSetIsConfigurable) { stop_and_resume(SIGUSR2, {"--signal", "USR2"}, false); }
TEST(Signals, SecondSignalsDuringTheSaveChangeNothing) { stop_and_resume(SIGTERM, {}, true); }

TEST(Signals, WithoutACheckpointTheRunStopsWith128PlusTheSignal) {
  TempDir dir;
  Child child(long_run(dir.file("out")), dir.file("err"));
  ASSERT_TRUE(wait_for([&] { return fs::exists(dir.file("out/metrics.csv")); }, 60));
  child.signal(SIGINT);
  EXPECT_EQ(child.wait(), 128 + SIGINT) << testing::read_file(dir.file("err"));
  EXPECT_NE(testing::read_file(dir.file("err")).find("no checkpoint"), std::string::npos);
}

TEST(Signals, RequeueOutsideSlurmSaysSo) {
  TempDir dir;
  auto args = long_run(dir.file("out"));
  for (const auto& a : std::vector<std::string>{"--checkpoint-dir", dir.file("ck"), "--requeue"}) args.push_back(a);
  Child child(args, dir.file("err"), {"SLURM_JOB_ID="});
  ASSERT_TRUE(wait_for([&] { return fs::exists(dir.file("out/metrics.csv")); }, 60));
  child.signal(SIGTERM);
  EXPECT_EQ(child.wait(), cli::kExitStoppedBySignal);
  EXPECT_NE(testing::read_file(dir.file("err")).find("not under SLURM"), std::string::npos)
      << testing::read_file(dir.file("err"));
}

TEST(Signals, ASecondRunOnTheSameCheckpointDirectoryIsRefused) {
  TempDir dir;
  const std::string ck = dir.file("ck");
  auto args = long_run(dir.file("out"));
  args.insert(args.end(), {"--checkpoint-dir", ck, "--checkpoint-every", "50"});
  Child first(args, dir.file("err"));
  ASSERT_TRUE(wait_for([&] { return has_checkpoint(ck); }, 60));
  auto second = long_run(dir.file("out2"));
  second.insert(second.end(), {"--checkpoint-dir", ck});
  auto res = testing::run_command(join(second));
  EXPECT_EQ(res.status, 1) << res.output;
  EXPECT_NE(res.output.find("locked by another process (pid " + std::to_string(first.pid())),
            std::string::npos)
      << res.output;
  EXPECT_NE(res.output.find(ck), std::string::npos) << res.output;
  first.signal(SIGTERM);
  EXPECT_EQ(first.wait(), cli::kExitStoppedBySignal);
}

TEST(Signals, BadPreemptionOptionsAreRefused) {
  const std::string base = testing::continua_bin() + " run --benchmark split-synthetic --verbosity quiet ";
  for (const std::string bad : {"--keep-last 0 --checkpoint-dir /tmp/x", "--signal FOO",
                                "--checkpoint-every 5", "--checkpoint-every -1 --checkpoint-dir /tmp/x",
                                "--checkpoint a --checkpoint-dir b"}) {
    auto res = testing::run_command(base + bad);
    EXPECT_EQ(res.status, 1) << bad << ": " << res.output;
    EXPECT_NE(res.output.find("error"), std::string::npos) << bad << ": " << res.output;
  }
}

TEST(Signals, ParseSignals) {
  EXPECT_EQ(cli::parse_signals("TERM,INT,USR1"), (std::vector<int>{SIGTERM, SIGINT, SIGUSR1}));
  EXPECT_EQ(cli::parse_signals("sigusr2, term"), (std::vector<int>{SIGUSR2, SIGTERM}));
  EXPECT_EQ(cli::parse_signals("none"), std::vector<int>{});
  EXPECT_EQ(cli::parse_signals("10"), std::vector<int>{SIGUSR1});
  EXPECT_THROW(cli::parse_signals("KILL"), InvalidArgument);
  EXPECT_THROW(cli::parse_signals("TERM,BOGUS"), InvalidArgument);
}

}  // namespace
}  // namespace continua
