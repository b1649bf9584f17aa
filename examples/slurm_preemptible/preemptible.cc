// A preemptible training program with continua's library API, for a SLURM
// job that may be preempted, requeued or hit its time limit (job_cpp.sh).
//
//   preemptible CKPT_DIR [--epochs N] [--save-every N] [--requeue]
//
// What it does, and what `continua run --checkpoint-dir DIR --requeue` does
// the same way (src/cli/run.cc):
// - SIGUSR1, SIGTERM and SIGINT call Strategy::request_stop(), which is
//   async-signal-safe: train() returns false at the next iteration boundary,
//   with the state describing the exact point to resume from.
// - A CheckpointManager keeps the last 2 checkpoints in CKPT_DIR, saves every
//   N iterations (Strategy::set_iteration_callback) and after each experience,
//   and on start resumes from the newest checkpoint that verifies.
// - On a stop: save, then with --requeue under SLURM run
//   `scontrol requeue $SLURM_JOB_ID`, and exit 75 ("try again later").
// - When done: print `state digest ...`, the same as a run never stopped.
#include <continua/checkpoint/manager.h>
#include <continua/continua.h>

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

namespace {

constexpr int kExitStopped = 75;  // EX_TEMPFAIL: run again to continue

std::atomic<continua::Strategy*> g_strategy{nullptr};
volatile sig_atomic_t g_signal = 0;

extern "C" void on_stop_signal(int signo) {
  if (g_signal == 0) g_signal = signo;
  if (auto* s = g_strategy.load()) s->request_stop();  // an atomic store: signal-safe
}

void install_handlers() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int signo : {SIGUSR1, SIGTERM, SIGINT}) sigaction(signo, &sa, nullptr);
}

// `scontrol requeue JOB`, without a shell.
bool requeue(const std::string& job) {
  const pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    execlp("scontrol", "scontrol", "requeue", job.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
  }
  // SLURM ends the job's processes when it requeues it, scontrol included,
  // sometimes before scontrol exits: ended by a signal, the requeue is under way.
  return WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

}  // namespace

int main(int argc, char** argv) {
  // First, so a signal while the data loads is not lost (it stops the
  // strategy as soon as there is one).
  install_handlers();
  if (argc < 2) {
    std::cerr << "usage: preemptible CKPT_DIR [--epochs N] [--save-every N] [--requeue]\n";
    return 2;
  }
  const std::string dir = argv[1];
  int64_t epochs = 40, save_every = 40;
  bool requeue_on_stop = false;
  for (int i = 2; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--requeue") requeue_on_stop = true;
    else if (flag == "--epochs" && i + 1 < argc) epochs = std::atoll(argv[++i]);
    else if (flag == "--save-every" && i + 1 < argc) save_every = std::atoll(argv[++i]);
    else { std::cerr << "preemptible: bad option " << flag << "\n"; return 2; }
  }
  try {
    at::set_num_threads(1);
    at::manual_seed(6);
    auto bench = continua::make_benchmark(
        continua::BenchmarkOptions().name("split-synthetic").experiences(2).seed(6));
    continua::Strategy strategy(
        continua::make_model(continua::ModelOptions().input_size(bench->input_size()).hidden(64)),
        continua::StrategyOptions().epochs(epochs).train_mb_size(8).seed(6));
    strategy.add_plugin(std::make_shared<continua::ReplayPlugin>(continua::ReplayPlugin::Options{200}));

    continua::CheckpointManager manager(continua::CheckpointManagerOptions().directory(dir).keep_last(2));
    auto [s, first] = manager.maybe_load(strategy, "cpu", {bench});
    if (!manager.loaded_path().empty()) {
      std::cout << "resumed from " << manager.loaded_path() << " at experience " << first << ", iteration "
                << s.clock().train_iterations << std::endl;
    }
    // Periodic saves from the iteration callback: outside the state, so
    // checkpointing never changes what is trained.
    s.set_iteration_callback([&](continua::Strategy& st) {
      if (save_every > 0 && st.clock().train_iterations % save_every == 0) manager.save(st);
    });
    g_strategy.store(&s);
    if (g_signal != 0) s.request_stop();  // arrived before there was a strategy

    bool stopped = false;
    for (size_t i = first; i < bench->train_stream().size() && !stopped; ++i) {
      if (!s.train(bench->train_stream()[i])) {
        stopped = true;
        break;
      }
      s.eval(bench->test_stream());
      manager.save(s);
      stopped = g_signal != 0;  // a signal during the evaluation
    }
    g_strategy.store(nullptr);
    if (stopped) {
      const std::string path = manager.save(s);
      std::cout << "stopped by signal " << g_signal << " (" << strsignal(g_signal) << ") at iteration "
                << s.clock().train_iterations << "; checkpoint " << path << std::endl;
      const char* job = std::getenv("SLURM_JOB_ID");
      if (requeue_on_stop && job) {
        if (requeue(job)) std::cout << "requeued SLURM job " << job << std::endl;
        else std::cerr << "preemptible: 'scontrol requeue " << job << "' failed" << std::endl;
      }
      return kExitStopped;
    }
    std::cout << "done: " << s.clock().train_iterations << " iterations\n"
              << "state digest " << s.state_digest() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "preemptible: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
