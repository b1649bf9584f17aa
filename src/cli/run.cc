#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <torch/torch.h>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>
#include <set>
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
#include "continua/io/process_memory.h"
#include "continua/evaluation/evaluator.h"
#include "continua/evaluation/metrics.h"
#include "continua/models/model.h"
#include "continua/training/memory.h"
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
                        // [C, H, W] or one channel [H, W] (e.g. a user's .npy images).
                        .channels(shape.size() == 3 ? shape[0] : 1)
                        .image_size(shape.size() == 3 ? shape[1] : shape.size() == 2 ? shape[0] : 1)
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

// Written to a temporary name, then renamed: a reader (a resumed run, the
// report) sees the old file or the new one.
void replace_file(const std::filesystem::path& path, const std::string& text) {
  const std::filesystem::path tmp = path.string() + ".tmp";
  write_file(tmp, text);
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw IoError("cannot rename '" + tmp.string() + "' to '" + path.string() + "': " + ec.message());
}

nlohmann::json optional_json(const std::optional<double>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

nlohmann::json costs_json(const ExperienceCosts& c) {
  nlohmann::json j = {{"experience", c.experience},
                      {"train_seconds", c.train_seconds},
                      {"eval_seconds", c.eval_seconds},
                      {"checkpoint_seconds", c.checkpoint_seconds},
                      {"load_seconds", c.load_seconds},
                      {"checkpoint_saves", c.checkpoint_saves},
                      {"checkpoint_bytes", c.checkpoint_bytes},
                      {"peak_resident_bytes", c.peak_resident_bytes}};
  if (c.memory_samples >= 0) {
    j["memory_samples"] = c.memory_samples;
    j["memory_bytes"] = c.memory_bytes;
  }
  return j;
}

// The content of results.json (docs/metrics.md): the accuracy matrix and the
// metrics derived from it, then the costs.
nlohmann::json results_json(const Strategy& strategy, bool complete, const nlohmann::json& config) {
  const Evaluator& ev = *strategy.evaluator_ptr();
  nlohmann::json per_task = nlohmann::json::object();
  for (const auto& [task, acc] : ev.task_accuracy()) per_task[std::to_string(task)] = acc;
  nlohmann::json per_class = nlohmann::json::object();
  for (const auto& [c, acc] : ev.class_accuracy()) per_class[std::to_string(c)] = acc;
  nlohmann::json confusion = nlohmann::json::array();
  for (size_t i = 0; i < ev.accuracy_matrix().size(); ++i) {
    nlohmann::json rows = nlohmann::json::array();
    if (const EvalRecord* r = ev.test_eval(int64_t(i) + 1); r && r->classes > 0) {
      for (int64_t c = 0; c < r->classes; ++c) {
        rows.push_back(std::vector<int64_t>(r->confusion.begin() + c * r->classes,
                                            r->confusion.begin() + (c + 1) * r->classes));
      }
    }
    confusion.push_back(rows);
  }
  // The training loss of each experience: the mean over its last epoch.
  std::map<int64_t, double> train_loss;
  for (const EpochRecord& e : ev.epoch_history()) train_loss[e.experience] = e.loss;
  nlohmann::json train_loss_json = nlohmann::json::array();
  for (const auto& [e, loss] : train_loss) train_loss_json.push_back(loss);
  const auto initial = ev.initial_accuracy();

  nlohmann::json per_experience = nlohmann::json::array();
  double train_s = 0, eval_s = ev.initial_eval_seconds(), checkpoint_s = 0, load_s = 0;
  int64_t saves = 0, last_bytes = 0, peak = io::peak_resident_bytes(), memory_samples = -1, memory_bytes = -1;
  for (const ExperienceCosts& c : ev.experience_costs()) {
    per_experience.push_back(costs_json(c));
    train_s += c.train_seconds;
    eval_s += c.eval_seconds;
    checkpoint_s += c.checkpoint_seconds;
    load_s += c.load_seconds;
    saves += c.checkpoint_saves;
    if (c.checkpoint_bytes > 0) last_bytes = c.checkpoint_bytes;
    peak = std::max(peak, c.peak_resident_bytes);
    if (c.memory_samples >= 0) memory_samples = c.memory_samples, memory_bytes = c.memory_bytes;
  }
  const auto valid_matrix = ev.stream_accuracy_matrix("valid");
  nlohmann::json results = {{"accuracy_matrix", ev.accuracy_matrix()},
                            {"average_accuracy", ev.average_accuracy()},
                            {"forgetting", ev.forgetting()},
                            {"backward_transfer", optional_json(ev.backward_transfer())},
                            {"forward_transfer", optional_json(ev.forward_transfer())},
                            {"average_incremental_accuracy", ev.average_incremental_accuracy()},
                            {"forgetting_per_experience", ev.forgetting_per_experience()},
                            {"initial_accuracy", initial ? nlohmann::json(*initial) : nlohmann::json(nullptr)},
                            {"loss_matrix", ev.loss_matrix()},
                            {"train_loss_per_experience", train_loss_json},
                            {"accuracy_per_task", per_task},
                            {"accuracy_per_class", per_class},
                            {"confusion_matrices", confusion},
                            {"train_seconds", train_s},
                            {"eval_seconds", eval_s},
                            {"checkpoint_seconds", checkpoint_s},
                            {"load_seconds", load_s},
                            {"checkpoint_saves", saves},
                            {"checkpoint_bytes", last_bytes},
                            {"peak_resident_bytes", peak},
                            {"costs", {{"initial_eval_seconds", ev.initial_eval_seconds()},
                                       {"per_experience", per_experience}}},
                            {"state_digest", strategy.state_digest()},
                            {"trained_experiences", strategy.clock().train_experiences},
                            {"complete", complete},
                            {"config", config}};
  if (memory_samples >= 0) {
    results["memory_samples"] = memory_samples;
    results["memory_bytes"] = memory_bytes;
  }
  if (!valid_matrix.empty()) {
    // --validation-split: the validation stream's matrix and its average.
    results["valid_accuracy_matrix"] = valid_matrix;
    results["valid_average_accuracy"] = metrics::average_accuracy(valid_matrix);
  }
  return results;
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

// Step 3: the costs (docs/metrics.md): wall times of training, evaluation
// and checkpointing, checkpoint bytes, peak memory and memory size, booked
// per experience in the evaluator's state (outside the state digest), so a
// resumed run reports the whole run.
class CostMeter {
 public:
  using Clock = std::chrono::steady_clock;
  explicit CostMeter(Strategy& s) : s_(s) {}
  static double seconds(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  }
  Evaluator& evaluator() { return s_.evaluator(); }

  void begin_training(int64_t experience) {
    experience_ = experience;
    training_ = true;
    since_ = Clock::now();
  }
  // Books the training time since the last mark: before a save, at the end.
  void book_training() {
    if (!training_) return;
    const auto now = Clock::now();
    evaluator().costs(experience_).train_seconds += seconds(since_, now);
    since_ = now;
  }
  void end_training() {
    book_training();
    training_ = false;
  }
  // After a save inside training: its time is not training time.
  void restart_mark() { since_ = Clock::now(); }

  void checkpoint_saved(int64_t experience, double secs, int64_t bytes) {
    ExperienceCosts& c = evaluator().costs(experience);
    c.checkpoint_seconds += secs;
    c.checkpoint_saves += 1;
    c.checkpoint_bytes = bytes;
  }

  // At an experience's end, before its save: the peak memory so far and
  // the size of the strategy's memories; logs the experience's costs row.
  void experience_end(int64_t experience) {
    ExperienceCosts& c = evaluator().costs(experience);
    c.peak_resident_bytes = std::max(c.peak_resident_bytes, io::peak_resident_bytes());
    StateTree tree;
    StateWriter w(tree, "strategy");
    s_.save_state(w);
    const auto memories = memory_footprints(tree);
    if (!memories.empty()) {
      c.memory_samples = c.memory_bytes = 0;
      for (const auto& m : memories) c.memory_samples += m.samples, c.memory_bytes += m.bytes;
    }
    evaluator().record_costs(experience);
  }

 private:
  Strategy& s_;
  bool training_ = false;
  int64_t experience_ = 0;
  Clock::time_point since_;
};

// Where a save's own time and size go: the file cannot hold them, so the
// run writes them beside its results (--out DIR/last_checkpoint.json) with
// the id it stored in the file's metadata; a run resumed from that file
// books them (resume_save_costs).
constexpr const char* kLastCheckpointFile = "last_checkpoint.json";

std::string new_save_id() {
  std::random_device rd;
  return fmt::format("{:08x}{:08x}", rd(), rd());
}

void resume_save_costs(const std::string& out, const std::string& checkpoint, CostMeter& meter) {
  namespace fs = std::filesystem;
  if (out.empty() || checkpoint.empty()) return;
  std::ifstream f(fs::path(out) / kLastCheckpointFile);
  if (!f) return;
  std::stringstream ss;
  ss << f.rdbuf();
  const auto j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("save_id") || !j["save_id"].is_string()) return;
  try {
    const auto reader = format::SafetensorsReader::open_file(checkpoint);
    const auto it = reader.metadata().find("save_id");
    if (it == reader.metadata().end() || it->second != j["save_id"].get<std::string>()) return;
    meter.checkpoint_saved(j.at("experience").get<int64_t>(), j.at("seconds").get<double>(),
                           j.at("bytes").get<int64_t>());
  } catch (const std::exception&) {
    // A damaged note only loses that save's time.
  }
}

// Step 4: the save policy. Saves at experience ends, every N iterations or
// seconds if asked, and at a stop (reusing the last file when nothing
// changed since it was written or loaded).
class SavePolicy {
 public:
  SavePolicy(const RunOptions& o, BuiltRun& r, CostMeter& meter) : o_(o), r_(r), meter_(meter) {
    metadata_ = {{"config", r.config.dump()}, {"world_size", std::to_string(r.world_size())}};
    last_save_ = Clock::now();
  }
  // The experience the next saves belong to (for the costs).
  void set_experience(int64_t experience) { experience_ = experience; }
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
    meter_.book_training();
    const std::string save_id = new_save_id();
    auto metadata = metadata_;
    metadata["save_id"] = save_id;
    SaveOptions save_options;
    save_options.metadata(metadata);
    const auto t0 = Clock::now();
    std::string path = o_.checkpoint;
    if (r_.manager) {
      path = r_.manager->save(*r_.strategy, save_options);
    } else {
      save_checkpoint(*r_.strategy, o_.checkpoint, save_options);
    }
    last_save_ = Clock::now();
    const double secs = std::chrono::duration<double>(last_save_ - t0).count();
    seconds_ += secs;
    ++saves_;
    dirty_ = false;
    std::error_code ec;
    const auto bytes = std::filesystem::file_size(path, ec);
    meter_.checkpoint_saved(experience_, secs, ec ? 0 : int64_t(bytes));
    if (!o_.out.empty()) {
      const nlohmann::json note = {{"save_id", save_id}, {"experience", experience_}, {"seconds", secs},
                                   {"bytes", ec ? 0 : int64_t(bytes)}, {"path", path}};
      replace_file(std::filesystem::path(o_.out) / kLastCheckpointFile, note.dump() + "\n");
    }
    meter_.restart_mark();
    return path;
  }

  const RunOptions& o_;
  BuiltRun& r_;
  CostMeter& meter_;
  std::map<std::string, std::string> metadata_;
  int64_t experience_ = 0;
  bool dirty_ = false;  // state changed since the last save
  Clock::time_point last_save_;
  int64_t saves_ = 0;
  double seconds_ = 0;
};

// Whether the run still owes the evaluation of the initial model (forward
// transfer's reference): a fresh start; a resumed run has it in its state.
bool initial_evaluation_due(const Strategy& s) {
  return !s.evaluator_ptr()->initial_accuracy() && s.clock().train_iterations == 0 &&
         s.clock().train_experiences == 0 && !s.in_experience();
}

// Step 5: the loop over the stream from `initial`: train, evaluate on the
// test stream (and the validation stream), save. An online stream is
// evaluated and saved when a chunk ends one of the original experiences;
// its costs are booked to the original experience. Returns whether it
// stopped before the end.
bool train_stream(const RunOptions& o, BuiltRun& r, const StopSignals& signals, SavePolicy& saves,
                  CostMeter& meter, int64_t initial) {
  using Clock = CostMeter::Clock;
  Strategy& strategy = *r.strategy;
  const Benchmark& bench = *r.bench;
  const int64_t total = int64_t(bench.train_stream().size());
  saves.set_experience(bench.original_experiences_done(initial));
  if (initial_evaluation_due(strategy)) {
    const auto t0 = Clock::now();
    strategy.eval(bench.test_stream());
    strategy.evaluator().set_initial_eval_seconds(CostMeter::seconds(t0, Clock::now()));
    saves.changed();
  }
  int64_t done_here = 0;
  for (int64_t i = initial; i < total; ++i) {
    if (o.max_experiences > 0 && done_here >= o.max_experiences) break;
    if (r.stop_agreed(signals)) return true;
    saves.changed();  // train() changes the state even if it stops at once
    // The original experience this chunk belongs to (i itself when not online).
    const int64_t original = bench.original_experiences_done(i);
    saves.set_experience(original);
    meter.begin_training(original);
    const bool trained = strategy.train(bench.train_stream()[size_t(i)]);
    meter.end_training();
    if (!trained) return true;
    if (bench.original_experiences_done(i + 1) == original) continue;
    const auto t0 = Clock::now();
    strategy.eval(bench.test_stream());
    if (!bench.valid_stream().empty()) strategy.eval(bench.valid_stream());
    strategy.evaluator().costs(original).eval_seconds += CostMeter::seconds(t0, Clock::now());
    meter.experience_end(original);
    saves.experience_done();
    ++done_here;
  }
  // A signal during the last experience trained here: a stop, with its checkpoint.
  return strategy.clock().train_experiences < total && r.stop_agreed(signals);
}

// Step 6: the results: timings, results.json, the summary line, and at a
// stop the checkpoint's name and the requeue. Returns the exit status;
// `results` gets results.json's content (on rank 0).
int finish_run(const RunOptions& o, BuiltRun& r, const StopSignals& signals, SavePolicy& saves, bool stopped,
               double train_seconds, nlohmann::json& results) {
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
  if (r.rank0) {
    results = results_json(strategy, complete, r.config);
    if (!o.out.empty()) write_file(std::filesystem::path(o.out) / "results.json", results.dump(2) + "\n");
  }
  if (complete && o.verbosity != "quiet" && r.rank0) {
    const Evaluator& ev = strategy.evaluator();
    const auto fmt_opt = [](const std::optional<double>& v) { return v ? fmt::format("{:.4f}", *v) : "n/a"; };
    std::cout << "average accuracy " << ev.average_accuracy() << ", forgetting " << ev.forgetting()
              << ", backward transfer " << fmt_opt(ev.backward_transfer()) << ", forward transfer "
              << fmt_opt(ev.forward_transfer()) << "\nstate digest " << strategy.state_digest() << std::endl;
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

namespace {

struct RunOutcome {
  nlohmann::json results;    // results.json's content (rank 0)
  int64_t trained_here = 0;  // experiences this call completed
  bool complete = false;     // every experience trained
};

// One run: steps 1 to 6.
int run_one(const RunOptions& o, const DistributedEnv& dist_env, StopSignals& signals, RunOutcome& outcome) {
  BuiltRun r;
  build_run(o, dist_env, signals, r);
  // Ranks stop together at an iteration they agree on (DataParallelPlugin),
  // so a signal must not stop one rank's loop by itself.
  if (!r.dist) signals.attach(r.strategy.get());
  struct Detach {
    StopSignals& s;
    ~Detach() { s.attach(nullptr); }
  } detach{signals};

  CostMeter meter(*r.strategy);
  std::string resumed_from;
  const auto t_load = CostMeter::Clock::now();
  const int64_t initial = resume(o, r, resumed_from);
  const int64_t total = int64_t(r.bench->train_stream().size());
  if (!resumed_from.empty() && r.rank0) {
    resume_save_costs(o.out, resumed_from, meter);
    if (r.strategy->next_experience() < total) {
      meter.evaluator().costs(r.bench->original_experiences_done(r.strategy->next_experience())).load_seconds +=
          CostMeter::seconds(t_load, CostMeter::Clock::now());
    }
  }
  const int64_t trained_before = r.strategy->clock().train_experiences;
  SavePolicy saves(o, r, meter);
  saves.attach();
  const auto t_start = std::chrono::steady_clock::now();
  const bool stopped = train_stream(o, r, signals, saves, meter, initial);
  const double train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  outcome.trained_here = r.strategy->clock().train_experiences - trained_before;
  outcome.complete = r.strategy->clock().train_experiences >= total;
  return finish_run(o, r, signals, saves, stopped, train_seconds, outcome.results);
}

std::vector<uint64_t> parse_seeds(const std::string& text) {
  std::vector<uint64_t> seeds;
  std::set<uint64_t> seen;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    uint64_t v = 0;
    try {
      size_t used = 0;
      if (item.empty() || item[0] == '-') throw std::invalid_argument(item);
      v = std::stoull(item, &used);
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw InvalidArgument("--seeds: '" + item + "' is not a seed (expected e.g. 1,2,3)");
    }
    if (!seen.insert(v).second) throw InvalidArgument("--seeds: seed " + item + " is given twice");
    seeds.push_back(v);
  }
  if (seeds.empty()) throw InvalidArgument("--seeds: no seed given (expected e.g. 1,2,3)");
  return seeds;
}

// The options of seed `seed`'s run: its own --out folder and checkpoint.
RunOptions seed_options(const RunOptions& o, uint64_t seed) {
  namespace fs = std::filesystem;
  RunOptions so = o;
  so.seeds.clear();
  so.seed = seed;
  const std::string name = "seed-" + std::to_string(seed);
  if (!o.out.empty()) so.out = (fs::path(o.out) / name).string();
  if (!o.checkpoint_dir.empty()) so.checkpoint_dir = (fs::path(o.checkpoint_dir) / name).string();
  if (!o.checkpoint.empty()) {
    const fs::path p(o.checkpoint);
    so.checkpoint = (p.parent_path() / (p.stem().string() + "." + name + p.extension().string())).string();
  }
  return so;
}

// A seed whose results.json says it finished with this configuration.
std::optional<nlohmann::json> finished_seed(const RunOptions& so) {
  if (so.out.empty()) return std::nullopt;
  std::ifstream f(std::filesystem::path(so.out) / "results.json");
  if (!f) return std::nullopt;
  std::stringstream ss;
  ss << f.rdbuf();
  auto j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.value("complete", false) || j.value("config", nlohmann::json()) != to_json(so)) {
    return std::nullopt;
  }
  return j;
}

// mean and std (sample standard deviation, n - 1; 0 for one seed) of every
// metric (number) at the top of the per-seed results.
void mean_and_std(const std::vector<nlohmann::json>& runs, nlohmann::json& mean, nlohmann::json& sd) {
  mean = nlohmann::json::object();
  sd = nlohmann::json::object();
  if (runs.empty()) return;
  for (const auto& [key, value] : runs.front().items()) {
    if (!value.is_number() || key == "trained_experiences") continue;
    std::vector<double> v;
    for (const auto& run : runs) {
      const auto it = run.find(key);
      if (it != run.end() && it->is_number()) v.push_back(it->get<double>());
    }
    if (v.size() != runs.size()) continue;
    double m = 0;
    for (double x : v) m += x;
    m /= double(v.size());
    double ss = 0;
    for (double x : v) ss += (x - m) * (x - m);
    mean[key] = m;
    sd[key] = v.size() > 1 ? std::sqrt(ss / double(v.size() - 1)) : 0.0;
  }
}

// Element-wise mean and std of the runs' accuracy matrices (all of one shape).
void matrix_mean_and_std(const std::vector<nlohmann::json>& runs, nlohmann::json& mean, nlohmann::json& sd) {
  mean = sd = nlohmann::json::array();
  if (runs.empty()) return;
  std::vector<std::vector<std::vector<double>>> ms;
  for (const auto& run : runs) {
    ms.push_back(run.value("accuracy_matrix", nlohmann::json::array()).get<std::vector<std::vector<double>>>());
    if (ms.back().size() != ms.front().size()) return;
    for (size_t i = 0; i < ms.back().size(); ++i) {
      if (ms.back()[i].size() != ms.front()[i].size()) return;
    }
  }
  for (size_t i = 0; i < ms.front().size(); ++i) {
    std::vector<double> mrow, srow;
    for (size_t j = 0; j < ms.front()[i].size(); ++j) {
      double m = 0, ss = 0;
      for (const auto& x : ms) m += x[i][j];
      m /= double(ms.size());
      for (const auto& x : ms) ss += (x[i][j] - m) * (x[i][j] - m);
      mrow.push_back(m);
      srow.push_back(ms.size() > 1 ? std::sqrt(ss / double(ms.size() - 1)) : 0.0);
    }
    mean.push_back(mrow);
    sd.push_back(srow);
  }
}

// --seeds: the configuration once per seed, one after another, each a run
// that resumes like a single one; then --out/results.json over the seeds.
int run_seeds(const RunOptions& o, const DistributedEnv& dist_env, StopSignals& signals) {
  const std::vector<uint64_t> seeds = parse_seeds(o.seeds);
  const bool rank0 = dist_env.rank == 0;
  int64_t budget = o.max_experiences;  // -1: no limit
  std::vector<nlohmann::json> results(seeds.size());
  std::vector<bool> have(seeds.size(), false);
  for (size_t k = 0; k < seeds.size(); ++k) {
    RunOptions so = seed_options(o, seeds[k]);
    // Without a checkpoint, a finished seed would train again: its results say it is done.
    if (dist_env.world_size <= 1) {
      if (auto done = finished_seed(so)) {
        results[k] = *done;
        have[k] = true;
        continue;
      }
    }
    if (budget == 0) break;
    so.max_experiences = budget;
    if (rank0 && o.verbosity != "quiet") io::ErrLine() << "continua: seed " << seeds[k] << " (" << k + 1 << " of " << seeds.size() << ")\n";
    RunOutcome outcome;
    const int rc = run_one(so, dist_env, signals, outcome);
    if (rc != 0) return rc;
    results[k] = std::move(outcome.results);
    have[k] = rank0;
    if (budget > 0) budget = std::max<int64_t>(0, budget - outcome.trained_here);
    if (!outcome.complete) break;  // --max-experiences ended inside this seed
  }
  if (!rank0) return 0;
  std::vector<nlohmann::json> complete;
  nlohmann::json runs = nlohmann::json::array();
  for (size_t k = 0; k < seeds.size(); ++k) {
    const bool done = have[k] && results[k].value("complete", false);
    nlohmann::json entry = {{"seed", seeds[k]}, {"dir", "seed-" + std::to_string(seeds[k])}, {"complete", done}};
    if (have[k]) {
      entry["state_digest"] = results[k].value("state_digest", "");
      entry["trained_experiences"] = results[k].value("trained_experiences", 0);
    }
    runs.push_back(entry);
    if (done) complete.push_back(results[k]);
  }
  nlohmann::json top = {{"seeds", seeds}, {"runs", runs}, {"complete", complete.size() == seeds.size()}};
  mean_and_std(complete, top["mean"], top["std"]);
  matrix_mean_and_std(complete, top["accuracy_matrix"], top["accuracy_matrix_std"]);
  nlohmann::json config = to_json(seed_options(o, seeds.front()));
  config.erase("seed");
  config["seeds"] = seeds;
  top["config"] = config;
  if (!o.out.empty()) write_file(std::filesystem::path(o.out) / "results.json", top.dump(2) + "\n");
  if (o.verbosity != "quiet" && !complete.empty()) {
    const auto line = [&](const char* key, const char* label) {
      if (!top["mean"].contains(key)) return std::string();
      return fmt::format("{} {:.4f} ± {:.4f}", label, top["mean"][key].get<double>(), top["std"][key].get<double>());
    };
    std::cout << "over " << complete.size() << " of " << seeds.size() << " seed(s): "
              << line("average_accuracy", "average accuracy") << ", " << line("forgetting", "forgetting");
    const std::string bwt = line("backward_transfer", "backward transfer"), fwt = line("forward_transfer", "forward transfer");
    if (!bwt.empty()) std::cout << ", " << bwt;
    if (!fwt.empty()) std::cout << ", " << fwt;
    std::cout << std::endl;
  }
  return 0;
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
  if (!o.seeds.empty()) return run_seeds(o, dist_env, signals);
  RunOutcome outcome;
  return run_one(o, dist_env, signals, outcome);
}

}  // namespace continua::cli
