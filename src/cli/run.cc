#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>

#include "cli/commands.h"
#include "cli/config.h"
#include "cli/signals.h"
#include "continua/checkpoint/checkpoint.h"
#include "continua/checkpoint/manager.h"
#include "continua/data/benchmark.h"
#include "continua/data/transforms.h"
#include "continua/distributed/distributed.h"
#include "continua/errors.h"
#include "continua/format/safetensors.h"
#include "continua/io/console.h"
#include "continua/io/file_lock.h"
#include "continua/evaluation/evaluator.h"
#include "continua/models/model.h"
#include "continua/training/registry.h"
#include "continua/training/strategy.h"
#include "continua/training/threads.h"

namespace continua::cli {

namespace {

void check(const RunOptions& o) {
  auto positive = [](int64_t v, const char* name) {
    if (v <= 0) throw InvalidArgument(std::string(name) + " must be > 0, got " + std::to_string(v));
  };
  positive(o.experiences, "--experiences");
  positive(o.epochs, "--epochs");
  positive(o.train_mb_size, "--train-mb-size");
  positive(o.eval_mb_size, "--eval-mb-size");
  positive(o.hidden, "--hidden");
  if (o.layers < 0) throw InvalidArgument("--layers must be >= 0");
  if (o.subset < 0) throw InvalidArgument("--subset must be >= 0, got " + std::to_string(o.subset));
  if (o.threads < 0) throw InvalidArgument("--threads must be >= 0");
  if (o.nproc < 0) throw InvalidArgument("--nproc must be >= 0, got " + std::to_string(o.nproc));
  if (o.max_experiences == 0 || o.max_experiences < -1) {
    throw InvalidArgument("--max-experiences must be > 0");
  }
  if (o.verbosity != "quiet" && o.verbosity != "normal" && o.verbosity != "verbose") {
    throw InvalidArgument("--verbosity must be quiet, normal or verbose");
  }
  parse_augment(o.augment);  // the names, before anything is built
  if (!o.checkpoint.empty() && !o.checkpoint_dir.empty()) {
    throw InvalidArgument("--checkpoint and --checkpoint-dir: give one of them, not both");
  }
  if (o.checkpoint_every < 0) {
    throw InvalidArgument("--checkpoint-every must be >= 0, got " + std::to_string(o.checkpoint_every));
  }
  if (!(o.checkpoint_every_seconds >= 0)) throw InvalidArgument("--checkpoint-every-seconds must be >= 0");
  if (o.keep_last < 1) throw InvalidArgument("--keep-last must be >= 1, got " + std::to_string(o.keep_last));
  if ((o.checkpoint_every > 0 || o.checkpoint_every_seconds > 0) && o.checkpoint.empty() &&
      o.checkpoint_dir.empty()) {
    throw InvalidArgument("--checkpoint-every and --checkpoint-every-seconds need --checkpoint-dir or --checkpoint");
  }
}

// Runs `scontrol requeue <job>`; returns whether it succeeded. SLURM ends
// the processes of a job it requeues, scontrol included, sometimes before
// scontrol has printed or exited: scontrol ended by a signal means the
// requeue is under way (seen in the package test: "JOB 1 CANCELLED DUE TO
// JOB REQUEUE" before scontrol returned).
bool requeue_slurm_job(const std::string& job) {
  std::vector<std::string> args = {"scontrol", "requeue", job};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  if (const int rc = ::posix_spawnp(&pid, "scontrol", nullptr, nullptr, argv.data(), environ); rc != 0) {
    io::ErrLine() << "continua: --requeue: cannot run scontrol: " << std::strerror(rc) << "\n";
    return false;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status)) {
    io::ErrLine() << "continua: --requeue: scontrol was ended by " << signal_name(WTERMSIG(status))
                  << ", as SLURM ends the job's processes when it requeues it";
    return true;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    io::ErrLine() << "continua: --requeue: 'scontrol requeue " << job << "' failed (SLURM may be requeuing the job already)\n";
    return false;
  }
  return true;
}

// The number of ranks that wrote a checkpoint ("world_size" in its
// metadata; 1 for files written before that key existed, or by the library
// API, which writes one state whatever the ranks).
int checkpoint_world_size(const std::string& path) {
  const auto reader = format::SafetensorsReader::open_file(path);
  const auto it = reader.metadata().find("world_size");
  if (it == reader.metadata().end()) return 1;
  try {
    return std::stoi(it->second);
  } catch (const std::exception&) {
    throw CorruptionError("checkpoint '" + path + "': world_size '" + it->second + "' is not a number");
  }
}

// Times training iterations the way DataParallelPlugin does (from before
// the first plugin's before_training_iteration to after the step), so
// `--verbosity verbose` reports comparable ms/iteration for one process.
class IterationTimer final : public Plugin {
 public:
  std::string name() const override { return "iteration_timer"; }
  bool part_of_state() const override { return false; }
  void before_training_iteration(Strategy&) override { start_ = std::chrono::steady_clock::now(); }
  void after_training_iteration(Strategy&) override {
    seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    ++iterations_;
  }
  double seconds() const { return seconds_; }
  int64_t iterations() const { return iterations_; }

 private:
  std::chrono::steady_clock::time_point start_;
  double seconds_ = 0;
  int64_t iterations_ = 0;
};

// A comma-separated list of numbers ("4,5,8"); empty text, an empty list.
template <typename T>
std::vector<T> parse_list(const std::string& text, const char* option, const char* example) {
  std::vector<T> out;
  if (text.empty()) return out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      if constexpr (std::is_integral_v<T>) {
        out.push_back(T(std::stoll(item, &used)));
      } else {
        out.push_back(T(std::stod(item, &used)));
      }
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw InvalidArgument(std::string(option) + ": '" + item + "' is not a number (expected e.g. " + example + ")");
    }
  }
  return out;
}

// Step 1 of a run: the benchmark, the model on it, the evaluator.
std::shared_ptr<Benchmark> build_run_benchmark(const RunOptions& o) {
  return make_benchmark(BenchmarkOptions()
                            .name(o.benchmark)
                            .dataset(o.dataset)
                            .data_dir(o.data_dir)
                            .experiences(o.experiences)
                            .seed(o.seed)
                            .subset(o.subset)
                            .class_order(parse_list<int64_t>(o.class_order, "--class-order", "4,5,8,2,..."))
                            .task_labels(o.task_labels)
                            .rotations(parse_list<double>(o.rotations, "--rotations", "0,45,90"))
                            .online_chunk(o.online_chunk)
                            .online_boundaries(o.online_boundaries)
                            .validation_split(o.validation_split));
}

std::shared_ptr<Model> build_run_model(const RunOptions& o, const Benchmark& bench) {
  torch::manual_seed(o.seed);  // the model's initial weights
  const auto shape = bench.sample_shape();
  return make_model(ModelOptions()
                        .type(o.model)
                        .input_size(bench.input_size())
                        .hidden(o.hidden)
                        .layers(o.layers)
                        .dropout(o.dropout)
                        .channels(shape.size() == 3 ? shape[0] : 1)
                        .image_size(shape.size() == 3 ? shape[1] : 1)
                        .multi_head(o.task_labels));
}

}  // namespace

// The crop pads with black as the benchmark normalised it, (0 - mean) / std
// per channel, as torchvision pads the image before normalising it.
std::shared_ptr<const Transform> run_transform(const RunOptions& o, const Benchmark& bench) {
  if (!parse_augment(o.augment)) return nullptr;
  const auto shape = bench.sample_shape();
  if (shape.size() != 3) {
    throw InvalidArgument("--augment " + o.augment + ": needs image samples [C, H, W]; benchmark '" + o.benchmark +
                          "' has samples of shape " + c10::str(at::IntArrayRef(shape)));
  }
  // The benchmark's normalisation, as its experiences apply it.
  const Normalization n = bench.train_stream().empty() ? Normalization{} : bench.train_stream().front().normalization();
  return parse_augment(o.augment, AugmentOptions().fill(n.empty() ? std::vector<double>{0.0}
                                                                  : normalized_black(n.mean, n.std)));
}

namespace {

std::shared_ptr<Evaluator> build_run_evaluator(const RunOptions& o, bool rank0) {
  namespace fs = std::filesystem;
  auto evaluator = std::make_shared<Evaluator>();
  const auto verbosity = o.verbosity == "quiet"   ? ConsoleLogger::Verbosity::kQuiet
                         : o.verbosity == "verbose" ? ConsoleLogger::Verbosity::kVerbose
                                                    : ConsoleLogger::Verbosity::kNormal;
  evaluator->add_logger(std::make_shared<ConsoleLogger>(rank0 ? verbosity : ConsoleLogger::Verbosity::kQuiet));
  if (!o.out.empty() && rank0) {
    evaluator->add_logger(std::make_shared<CsvLogger>((fs::path(o.out) / "metrics.csv").string()));
    evaluator->add_logger(std::make_shared<JsonlLogger>((fs::path(o.out) / "metrics.jsonl").string()));
  }
  return evaluator;
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  f.flush();
  if (!f) throw IoError("cannot write '" + path.string() + "'");
}

// Last step of a run: results.json.
void write_results(const std::string& out, Strategy& strategy, bool complete, const nlohmann::json& config) {
  const Evaluator& ev = strategy.evaluator();
  nlohmann::json per_task = nlohmann::json::object();
  for (const auto& [task, acc] : ev.task_accuracy()) per_task[std::to_string(task)] = acc;
  nlohmann::json results = {{"accuracy_matrix", ev.accuracy_matrix()},
                            {"average_accuracy", ev.average_accuracy()},
                            {"forgetting", ev.forgetting()},
                            {"accuracy_per_task", per_task},
                            {"state_digest", strategy.state_digest()},
                            {"trained_experiences", strategy.clock().train_experiences},
                            {"complete", complete},
                            {"config", config}};
  write_file(std::filesystem::path(out) / "results.json", results.dump(2) + "\n");
}

}  // namespace

int strategies(bool json) {
  if (json) {
    nlohmann::json all = nlohmann::json::array();
    for (const auto& name : strategy_names()) all.push_back(strategy_info(name).to_json());
    std::cout << all.dump(2) << std::endl;
    return 0;
  }
  for (const auto& name : strategy_names()) {
    const StrategyInfo& info = strategy_info(name);
    std::cout << name << ": " << info.description << "\n";
    for (const auto& opt : info.options) {
      const std::string def = opt.default_text();
      std::cout << "  --" << opt.name << " (" << opt.type << ", default " << def << "): " << opt.help << "\n";
    }
  }
  std::cout << std::flush;
  return 0;
}

namespace {

// Step 1: what a run is made of, built from its options.
struct BuiltRun {
  std::shared_ptr<DistributedContext> dist;  // null for one process
  bool rank0 = true;
  nlohmann::json config;
  std::shared_ptr<Benchmark> bench;
  std::unique_ptr<Strategy> strategy;
  std::shared_ptr<DataParallelPlugin> data_parallel;
  std::shared_ptr<IterationTimer> timer;
  std::optional<CheckpointManager> manager;
  std::optional<io::FileLock> checkpoint_lock;  // one writer per checkpoint file
  int world_size() const { return dist ? dist->world_size() : 1; }
  // Whether a stop (a signal here, or on any rank) ends the loop now.
  bool stop_agreed(const StopSignals& signals) const {
    return dist ? data_parallel->agree_stop(signals.received() != 0 || strategy->stop_requested())
                : signals.received() != 0;
  }
};

void build_run(const RunOptions& o, const DistributedEnv& dist_env, StopSignals& signals, BuiltRun& r) {
  if (dist_env.world_size > 1) r.dist = std::make_shared<DistributedContext>(dist_env);
  r.rank0 = !r.dist || r.dist->rank() == 0;
  if (!o.out.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(o.out, ec);
    if (ec) throw IoError("--out: cannot create '" + o.out + "': " + ec.message());
  }
  r.config = to_json(o);  // checks the strategy's options first
  r.bench = build_run_benchmark(o);
  r.strategy = std::make_unique<Strategy>(
      build_run_model(o, *r.bench),
      StrategyOptions()
          .train_mb_size(o.train_mb_size)
          .eval_mb_size(o.eval_mb_size)
          .epochs(o.epochs)
          .seed(o.seed)
          .device(o.device)
          .optimizer(OptimizerOptions().type(o.optimizer).lr(o.lr).momentum(o.momentum))
          .train_transform(run_transform(o, *r.bench)),
      build_run_evaluator(o, r.rank0));
  if (r.dist) {
    // First: it slices the mini-batch the other plugins see.
    r.data_parallel = std::make_shared<DataParallelPlugin>(r.dist);
    r.data_parallel->set_stop_source([&signals] { return signals.received() != 0; });
    r.strategy->add_plugin(r.data_parallel);
  }
  if (!r.dist && o.verbosity == "verbose") {
    r.timer = std::make_shared<IterationTimer>();
    r.strategy->add_plugin(r.timer);
  }
  configure_strategy(*r.strategy, o.strategy, strategy_option_values(o), o.seed);
  if (!o.checkpoint_dir.empty() && r.rank0) {
    r.manager.emplace(CheckpointManagerOptions().directory(o.checkpoint_dir).keep_last(o.keep_last));
  }
  if (!o.checkpoint.empty() && r.rank0) {
    r.checkpoint_lock.emplace(o.checkpoint + ".lock", "checkpoint '" + o.checkpoint + "'",
                              "two runs must not write the same checkpoint file");
  }
}

// Step 2: the resume. Loads the newest checkpoint (every rank the one rank 0
// chose) and returns the experience to continue from; `resumed_from` is the
// file, empty for a fresh start.
int64_t resume(const RunOptions& o, BuiltRun& r, std::string& resumed_from) {
  Strategy& strategy = *r.strategy;
  int64_t initial = 0;
  // A checkpoint of another shape (--hidden, --strategy, ...) fails here, naming the difference.
  if (r.manager) {
    const auto entries = r.manager->list();
    if (!entries.empty()) check_resume_config(entries.back().path, r.config);
  } else {
    check_resume_config(o.checkpoint, r.config);
  }
  if (r.manager) {
    initial = r.manager->maybe_load(strategy, {}, {r.bench}).second;
    resumed_from = r.manager->loaded_path();
  } else if (!o.checkpoint.empty() && r.rank0) {
    initial = maybe_load_checkpoint(strategy, o.checkpoint, {}, {r.bench}).second;
    if (initial > 0 || strategy.in_experience()) resumed_from = o.checkpoint;
  }
  if (r.dist) {
    // Every rank loads the file rank 0 chose, then they check the resume point.
    const std::string chosen = r.dist->broadcast_string(resumed_from);
    if (!r.rank0 && !chosen.empty()) {
      initial = maybe_load_checkpoint(strategy, chosen, {}, {r.bench}).second;
      resumed_from = chosen;
    }
    std::vector<at::Tensor> point = {torch::tensor({initial, strategy.clock().train_iterations}, torch::kLong)};
    std::vector<at::Tensor> rank0_point = {point[0].clone()};
    r.dist->broadcast(rank0_point);
    if (!torch::equal(point[0], rank0_point[0])) {
      throw Error("rank " + std::to_string(r.dist->rank()) + " resumed from '" + resumed_from +
                  "' at experience " + std::to_string(initial) + ", iteration " +
                  std::to_string(strategy.clock().train_iterations) + ", but rank 0 at experience " +
                  std::to_string(rank0_point[0][0].item<int64_t>()) + ", iteration " +
                  std::to_string(rank0_point[0][1].item<int64_t>()));
    }
    broadcast_parameters(*r.dist, strategy.model());
  }
  const int world_size = r.world_size();
  if (!resumed_from.empty() && r.rank0) {
    io::ErrLine() << "continua: resumed from '" << resumed_from << "' at experience " << initial
                  << ", iteration " << strategy.clock().train_iterations << "\n";
    const int saved_world = checkpoint_world_size(resumed_from);
    if (saved_world != world_size) {
      io::ErrLine() << "continua: the checkpoint was written by " << saved_world << " rank(s), this run has "
                    << world_size << ": the replicated state (model, optimizer, plugins, generators, position "
                    << "in the stream) is loaded as saved; each rank's share of a mini-batch and its random "
                    << "stream are re-derived for " << world_size << " rank(s), so from here the run follows a "
                    << world_size << "-rank run (equal up to the order of floating-point sums), not the "
                    << saved_world << "-rank run bit for bit\n";
    }
  }
  return initial;
}

// Step 3: the save policy. Saves at experience ends, every N iterations or
// seconds if asked, and at a stop (reusing the last file when nothing
// changed since it was written or loaded).
class SavePolicy {
 public:
  SavePolicy(const RunOptions& o, BuiltRun& r) : o_(o), r_(r) {
    save_options_.metadata({{"config", r.config.dump()}, {"world_size", std::to_string(r.world_size())}});
    last_save_ = Clock::now();
  }
  bool checkpointing() const { return !o_.checkpoint_dir.empty() || !o_.checkpoint.empty(); }

  // Installs the per-iteration part on the strategy.
  void attach() {
    if (checkpointing() && (o_.checkpoint_every > 0 || o_.checkpoint_every_seconds > 0)) {
      r_.strategy->set_iteration_callback([this](Strategy& s) {
        dirty_ = true;
        // A stop is handled by the loop's owner, which saves right after.
        if (s.stop_requested()) return;
        const bool by_count = o_.checkpoint_every > 0 && s.clock().train_iterations % o_.checkpoint_every == 0;
        const bool by_time = o_.checkpoint_every_seconds > 0 &&
                             std::chrono::duration<double>(Clock::now() - last_save_).count() >=
                                 o_.checkpoint_every_seconds;
        if (by_count || by_time) save();
      });
    } else {
      r_.strategy->set_iteration_callback([this](Strategy&) { dirty_ = true; });
    }
  }
  void changed() { dirty_ = true; }
  void experience_done() {
    dirty_ = true;
    if (checkpointing()) save();
  }
  // The checkpoint that holds the state at a stop: the last file if nothing
  // changed since it, else a new save.
  std::string at_stop() {
    if (!checkpointing()) return std::string();
    std::string existing;
    if (r_.manager) {
      existing = r_.manager->last_saved_path().empty() ? r_.manager->loaded_path() : r_.manager->last_saved_path();
    } else if (std::filesystem::exists(o_.checkpoint)) {
      existing = o_.checkpoint;
    }
    return (dirty_ || existing.empty()) ? save() : existing;
  }
  int64_t saves() const { return saves_; }
  double seconds() const { return seconds_; }

 private:
  using Clock = std::chrono::steady_clock;
  std::string save() {
    if (!r_.rank0) {  // the state is replicated: rank 0 writes it
      dirty_ = false;
      return std::string();
    }
    const auto t0 = Clock::now();
    std::string path = o_.checkpoint;
    if (r_.manager) {
      path = r_.manager->save(*r_.strategy, save_options_);
    } else {
      save_checkpoint(*r_.strategy, o_.checkpoint, save_options_);
    }
    last_save_ = Clock::now();
    seconds_ += std::chrono::duration<double>(last_save_ - t0).count();
    ++saves_;
    dirty_ = false;
    return path;
  }

  const RunOptions& o_;
  BuiltRun& r_;
  SaveOptions save_options_;
  bool dirty_ = false;  // state changed since the last save
  Clock::time_point last_save_;
  int64_t saves_ = 0;
  double seconds_ = 0;
};

// Step 4: the loop over the stream from `initial`: train, evaluate on the
// test stream (and the validation stream), save. An online stream is
// evaluated and saved when a chunk ends one of the original experiences.
// Returns whether it stopped before the end.
bool train_stream(const RunOptions& o, BuiltRun& r, const StopSignals& signals, SavePolicy& saves,
                  int64_t initial) {
  Strategy& strategy = *r.strategy;
  const Benchmark& bench = *r.bench;
  const int64_t total = int64_t(bench.train_stream().size());
  int64_t done_here = 0;
  for (int64_t i = initial; i < total; ++i) {
    if (o.max_experiences > 0 && done_here >= o.max_experiences) break;
    if (r.stop_agreed(signals)) return true;
    saves.changed();  // train() changes the state even if it stops at once
    if (!strategy.train(bench.train_stream()[size_t(i)])) return true;
    if (bench.original_experiences_done(i + 1) == bench.original_experiences_done(i)) continue;
    strategy.eval(bench.test_stream());
    if (!bench.valid_stream().empty()) strategy.eval(bench.valid_stream());
    saves.experience_done();
    ++done_here;
  }
  // A signal during the last experience trained here: a stop, with its checkpoint.
  return strategy.clock().train_experiences < total && r.stop_agreed(signals);
}

// Step 5: the results: timings, results.json, the summary line, and at a
// stop the checkpoint's name and the requeue. Returns the exit status.
int finish_run(const RunOptions& o, BuiltRun& r, const StopSignals& signals, SavePolicy& saves, bool stopped,
               double train_seconds) {
  Strategy& strategy = *r.strategy;
  const std::string stop_checkpoint = stopped ? saves.at_stop() : std::string();
  if (o.verbosity == "verbose" && saves.checkpointing()) {
    io::ErrLine() << "continua: " << saves.saves() << " checkpoint saves took " << saves.seconds() << " s of "
                  << train_seconds << " s\n";
  }
  const bool complete = strategy.clock().train_experiences >= int64_t(r.bench->train_stream().size());
  if (r.dist) {
    if (!o.out.empty()) {
      write_file(std::filesystem::path(o.out) / ("rank-" + std::to_string(r.dist->rank()) + ".digest"),
                 strategy.state_digest() + "\n");
    }
    if (o.verbosity == "verbose") {
      auto& dp = *r.data_parallel;
      const double it = double(std::max<int64_t>(1, dp.iterations()));
      io::ErrLine() << "continua: rank " << r.dist->rank() << " of " << r.dist->world_size() << ": "
                    << dp.iterations() << " iterations, " << 1000 * dp.iteration_seconds() / it
                    << " ms/iteration, gradient all-reduce " << 1000 * dp.gradient_seconds() / it
                    << " ms/iteration; all collectives " << r.dist->collective_seconds() << " s in "
                    << r.dist->collective_calls() << " calls; " << train_seconds << " s in the loop\n";
    }
    r.dist->barrier();  // rank 0's files are written when any rank returns
  } else if (r.timer) {
    const double it = double(std::max<int64_t>(1, r.timer->iterations()));
    io::ErrLine() << "continua: 1 process: " << r.timer->iterations() << " iterations, "
                  << 1000 * r.timer->seconds() / it << " ms/iteration; " << train_seconds << " s in the loop\n";
  }
  if (!o.out.empty() && r.rank0) write_results(o.out, strategy, complete, r.config);
  if (complete && o.verbosity != "quiet" && r.rank0) {
    std::cout << "average accuracy " << strategy.evaluator().average_accuracy() << ", forgetting "
              << strategy.evaluator().forgetting() << "\nstate digest " << strategy.state_digest()
              << std::endl;
  }
  if (!stopped) return 0;
  const std::string sig =
      signals.received() ? signal_name(signals.received()) : std::string("a stop on another rank");
  if (!saves.checkpointing()) {
    io::ErrLine() << "continua: stopped by " << sig << " at iteration " << strategy.clock().train_iterations
                  << "; no checkpoint (no --checkpoint or --checkpoint-dir)\n";
    return 128 + (signals.received() ? signals.received() : SIGTERM);
  }
  if (r.rank0) {
    io::ErrLine() << "continua: stopped by " << sig << " at iteration " << strategy.clock().train_iterations
                  << " (experience " << strategy.next_experience() << "); checkpoint '" << stop_checkpoint
                  << "' saved\n";
  }
  if (o.requeue && r.rank0) {
    const char* job = std::getenv("SLURM_JOB_ID");
    if (job && *job) {
      if (requeue_slurm_job(job)) io::ErrLine() << "continua: requeued SLURM job " << job << "\n";
    } else {
      io::ErrLine() << "continua: --requeue: not under SLURM (SLURM_JOB_ID is unset); not requeuing\n";
    }
  }
  return kExitStoppedBySignal;
}

}  // namespace

int run(const RunOptions& o) {
  check(o);
  // --nproc N: this process only starts N ranks of itself (which see
  // WORLD_SIZE in their environment) and waits for them.
  if (o.nproc > 0 && !std::getenv("WORLD_SIZE")) {
    return run_local_ranks("/proc/self/exe", own_arguments(), int(o.nproc), kExitStoppedBySignal);
  }
  // Under --nproc, srun or torchrun: data-parallel ranks (distributed.h).
  const DistributedEnv dist_env = DistributedEnv::from_environment();
  // Signals stop the loop at the next iteration boundary (signals.h).
  // Installed first: a signal while the data loads is not lost.
  StopSignals signals(parse_signals(o.signals));
  configure_threads(o.threads, int64_t(std::thread::hardware_concurrency()) / dist_env.local_world_size);

  BuiltRun r;
  build_run(o, dist_env, signals, r);
  // Ranks stop together at an iteration they agree on (DataParallelPlugin),
  // so a signal must not stop one rank's loop by itself.
  if (!r.dist) signals.attach(r.strategy.get());
  struct Detach {
    StopSignals& s;
    ~Detach() { s.attach(nullptr); }
  } detach{signals};

  std::string resumed_from;
  const int64_t initial = resume(o, r, resumed_from);
  SavePolicy saves(o, r);
  saves.attach();
  const auto t_start = std::chrono::steady_clock::now();
  const bool stopped = train_stream(o, r, signals, saves, initial);
  const double train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return finish_run(o, r, signals, saves, stopped, train_seconds);
}

}  // namespace continua::cli
