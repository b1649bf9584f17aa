// Concurrent writers and readers of one checkpoint path or directory, with
// real processes.
// - Two processes save different states to the same file, many times, while
//   this process polls it: every read must be one complete checkpoint,
//   byte-identical to one of the two states' checkpoints and loadable; never
//   a mix, never partial. At the end no temporary file is left.
// - Several processes open a CheckpointManager on one directory at the same
//   instant: exactly one gets the lock, the others a clear IoError naming the
//   directory and the lock file.
// - Two `continua run --checkpoint-dir SAME` started at the same instant:
//   exactly one exits 1 with the lock error, the other completes, and the
//   directory holds only checkpoints that verify.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "continua/checkpoint/checkpoint.h"
#include "continua/checkpoint/manager.h"
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


// Reads until EOF or `n` bytes; returns what was read.
std::string read_fd(int fd, size_t n = SIZE_MAX) {
  std::string out;
  char buf[512];
  while (out.size() < n) {
    const ssize_t r = ::read(fd, buf, std::min(sizeof buf, n - out.size()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    out.append(buf, size_t(r));
  }
  return out;
}

int wait_status(pid_t pid) {
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
}

// kProcs processes, released together by closing a pipe, each construct a
// CheckpointManager on one directory. The one that gets the lock saves and
// then holds the lock until every process has answered, so a second holder
// (a broken lock) would be seen, not hidden by timing. Repeated kRounds times
// on fresh directories.
TEST(Concurrency, ManagersOpenedAtOnceOnOneDirectoryExactlyOneWins) {
  constexpr int kProcs = 4, kRounds = 10;
  auto bench = synthetic_benchmark(1, 2);
  auto strategy = trained_strategy("naive", *bench, 1);
  for (int round = 0; round < kRounds; ++round) {
    TempDir dir;
    const std::string ck = dir.file("ck");
    int go[2], release[2];
    ASSERT_EQ(::pipe(go), 0);
    ASSERT_EQ(::pipe(release), 0);
    struct Proc {
      pid_t pid;
      int answer;  // read end: 'W' (won the lock, saved) or 'L' + the error message
    };
    std::vector<Proc> procs;
    for (int i = 0; i < kProcs; ++i) {
      int answer[2];
      ASSERT_EQ(::pipe(answer), 0);
      std::fflush(nullptr);
      const pid_t pid = ::fork();
      ASSERT_GE(pid, 0);
      if (pid == 0) {
        ::close(go[1]);
        ::close(release[1]);
        ::close(answer[0]);
        read_fd(go[0]);  // EOF: everybody starts now
        std::string msg;
        int rc = 0;
        try {
          CheckpointManager m(CheckpointManagerOptions().directory(ck));
          m.save(*strategy);
          msg = "W";
          (void)!::write(answer[1], msg.data(), msg.size());
          ::close(answer[1]);
          read_fd(release[0]);  // hold the lock until the parent has all answers
        } catch (const std::exception& e) {
          msg = std::string("L") + e.what();
          (void)!::write(answer[1], msg.data(), msg.size());
          rc = 1;
        }
        ::_exit(rc);
      }
      ::close(answer[1]);
      procs.push_back({pid, answer[0]});
    }
    ::close(go[0]);
    ::close(release[0]);
    ::close(go[1]);  // go
    int winners = 0, losers = 0;
    std::vector<pid_t> winner_pids;
    for (auto& p : procs) {
      // A winner closes its pipe and waits; a loser writes and exits: EOF either way.
      const std::string a = read_fd(p.answer);
      ::close(p.answer);
      if (a == "W") {
        ++winners;
        winner_pids.push_back(p.pid);
      } else if (!a.empty() && a[0] == 'L') {
        ++losers;
        EXPECT_NE(a.find("is locked by another process"), std::string::npos) << a;
        EXPECT_NE(a.find("'" + ck + "'"), std::string::npos) << a;
        EXPECT_NE(a.find(ck + "/LOCK"), std::string::npos) << a;
      } else {
        ADD_FAILURE() << "process " << p.pid << " answered '" << a << "'";
      }
    }
    ::close(release[1]);  // let the winner go
    for (auto& p : procs) {
      const int st = wait_status(p.pid);
      const bool won = std::find(winner_pids.begin(), winner_pids.end(), p.pid) != winner_pids.end();
      EXPECT_EQ(st, won ? 0 : 1) << "round " << round << ", pid " << p.pid;
    }
    ASSERT_EQ(winners, 1) << "round " << round << ": " << winners << " processes held the lock at once";
    ASSERT_EQ(losers, kProcs - 1) << "round " << round;
    // The winner's checkpoint, nothing else but the lock file.
    const auto names = list_dir(ck);
    ASSERT_EQ(names.size(), 2u) << "round " << round;
    EXPECT_EQ(names[0], "LOCK");
    EXPECT_NO_THROW(read_checkpoint(ck + "/" + names[1], {}, {bench})) << names[1];
  }
}

// Two `continua run --checkpoint-dir SAME`, released at the same instant.
// Two `continua run` processes on one checkpoint directory, or on one
// checkpoint file, started at the same instant: exactly one runs, the other
// fails at once with a message naming the lock and its holder.
void two_runs_started_at_once(bool single_file) {
  constexpr int kRounds = 2;
  for (int round = 0; round < kRounds; ++round) {
    TempDir dir;
    const std::string ck = single_file ? dir.file("ck.safetensors") : dir.file("ck");
    const std::string lock = single_file ? ck + ".lock" : ck + "/LOCK";
    int go[2];
    ASSERT_EQ(::pipe(go), 0);
    std::vector<pid_t> pids;
    for (int i = 0; i < 2; ++i) {
      // About 2 s of training (more under ASan): long enough that the second
      // process reaches the lock while the first still holds it.
      const std::string out = dir.file("out" + std::to_string(i));
      const std::string err = dir.file("err" + std::to_string(i));
      std::vector<std::string> args = {continua_bin(), "run", "--benchmark", "split-synthetic",
                                       "--experiences", "2", "--epochs", "10", "--train-mb-size", "8",
                                       "--hidden", "32", "--seed", "5", "--strategy", "replay",
                                       "--threads", "1", "--verbosity", "quiet", "--out", out,
                                       "--checkpoint-every", "20"};
      if (single_file) {
        args.insert(args.end(), {"--checkpoint", ck});
      } else {
        args.insert(args.end(), {"--checkpoint-dir", ck, "--keep-last", "3"});
      }
      std::vector<char*> argv;  // built before fork: the child only calls async-signal-safe functions
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      std::fflush(nullptr);
      const pid_t pid = ::fork();
      ASSERT_GE(pid, 0);
      if (pid == 0) {
        ::close(go[1]);
        const int fd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        ::dup2(fd, 2);
        const int null = ::open("/dev/null", O_WRONLY);
        ::dup2(null, 1);
        char c;
        while (::read(go[0], &c, 1) < 0 && errno == EINTR) {
        }  // EOF: start
        ::execv(argv[0], argv.data());
        ::_exit(127);
      }
      pids.push_back(pid);
    }
    ::close(go[0]);
    ::close(go[1]);  // go
    int status[2];
    for (int i = 0; i < 2; ++i) status[i] = wait_status(pids[size_t(i)]);
    const std::string err[2] = {read_file(dir.file("err0")), read_file(dir.file("err1"))};
    ASSERT_TRUE((status[0] == 0 && status[1] == 1) || (status[0] == 1 && status[1] == 0))
        << "round " << round << ": exit statuses " << status[0] << ", " << status[1]
        << "\nfirst: " << err[0] << "\nsecond: " << err[1];
    const int loser = status[0] == 1 ? 0 : 1, winner = 1 - loser;
    const std::string& msg = err[loser];
    const std::string what = single_file ? "checkpoint '" + ck + "'" : "checkpoint directory '" + ck + "'";
    EXPECT_NE(msg.find(what + " is locked by another process"), std::string::npos) << msg;
    EXPECT_NE(msg.find("lock file '" + lock + "'"), std::string::npos) << msg;
    // The holder's pid, unless the loser looked between the winner's flock
    // and its writing the pid (then "pid unknown").
    EXPECT_TRUE(msg.find("(pid " + std::to_string(pids[size_t(winner)])) != std::string::npos ||
                msg.find("(pid unknown") != std::string::npos)
        << msg;
    EXPECT_TRUE(std::filesystem::exists(dir.file("out" + std::to_string(winner)) + "/results.json"));
    EXPECT_FALSE(std::filesystem::exists(dir.file("out" + std::to_string(loser)) + "/results.json"));
    if (single_file) {
      // The file is the winner's last checkpoint, whole; no temporary file beside it.
      EXPECT_NO_THROW(read_checkpoint(ck));
      for (const std::string& name : list_dir(dir.path())) {
        EXPECT_EQ(name.find(".tmp."), std::string::npos) << "temporary file left: " << name;
      }
      auto v = run_command(continua_bin() + " verify " + ck);
      EXPECT_EQ(v.status, 0) << v.output;
      continue;
    }
    // Only the lock and checkpoints that verify; no temporary file.
    int checkpoints = 0;
    for (const std::string& name : list_dir(ck)) {
      if (name == "LOCK") continue;
      ASSERT_GE(CheckpointManager::parse_step(name), 0) << "unexpected file " << name;
      EXPECT_NO_THROW(read_checkpoint(ck + "/" + name)) << name;
      ++checkpoints;
    }
    EXPECT_GE(checkpoints, 1);
    // The finished run's newest checkpoint is a clean `continua verify`.
    auto v = run_command(continua_bin() + " verify " + ck + "/" + list_dir(ck).back());
    EXPECT_EQ(v.status, 0) << v.output;
  }
}

TEST(Concurrency, TwoRunsStartedAtOnceOnOneCheckpointDirectory) { two_runs_started_at_once(false); }

TEST(Concurrency, TwoRunsStartedAtOnceOnOneCheckpointFile) { two_runs_started_at_once(true); }

}  // namespace
}  // namespace continua::testing
