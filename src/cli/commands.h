// The subcommands of the `continua` executable.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace CLI {
class App;
}
namespace continua {
class Benchmark;
class Transform;
}  // namespace continua

namespace continua::cli {

struct RunOptions {
  std::string config;
  std::string benchmark = "split-fmnist";
  std::string dataset;   // for a scenario name alone: fmnist, ..., or FORMAT:PATH
  std::string data_dir;  // empty: the dataset's default folder (Fashion-MNIST's Debian package)
  std::string strategy = "naive";
  std::string model = "mlp";
  std::string augment;  // training transforms: "crop,flip"; empty: none
  int64_t experiences = 5;
  int64_t epochs = 1;
  int64_t train_mb_size = 64;
  int64_t eval_mb_size = 256;
  double lr = 0.01;
  double momentum = 0.9;
  std::string optimizer = "sgd";
  int64_t hidden = 512;
  int64_t layers = 1;
  double dropout = 0.5;  // Avalanche's SimpleMLP: Dropout(0.5) after each hidden layer
  uint64_t seed = 0;
  // "1,2,3": run the configuration once per seed (a folder per seed under
  // --out, a checkpoint per seed); empty: one run with --seed.
  std::string seeds;
  int64_t subset = 0;
  std::string class_order;  // "4,5,8,2,..."; empty: drawn from the seed
  bool task_labels = false;
  std::string rotations;        // "0,90,-45"; empty: drawn from the seed
  int64_t online_chunk = 0;     // 0: not online
  bool online_boundaries = false;
  double validation_split = 0;
  // The options of the registered strategies (training/registry.h) given on
  // the command line or in the config file: name without "--" -> text.
  std::map<std::string, std::string> strategy_options;
  std::string device = "cpu";
  int64_t threads = 0;
  std::string out;
  std::string checkpoint;
  int64_t max_experiences = -1;
  // Preemption (docs/preemption.md).
  std::string checkpoint_dir;
  int64_t checkpoint_every = 0;          // iterations; 0: only at experience ends
  double checkpoint_every_seconds = 0;   // 0: off
  int64_t keep_last = 2;
  bool requeue = false;
  std::string signals = "TERM,INT,USR1";
  std::string verbosity = "normal";
  // Data-parallel (docs/distributed.md): local ranks to start; 0: none.
  int64_t nproc = 0;
};

// `continua bench`: checkpoint speed against the machine's limits (bench.cc).
struct BenchOptions {
  std::string bytes = "1G";  // state size; suffixes K, M, G (powers of 1024)
  bool json = false;
  int64_t repeat = 3;
  std::string dir;  // scratch directory; default: a temporary one in the working directory
};
void add_bench_options(CLI::App& app, BenchOptions& o);
int bench(const BenchOptions& o);

void add_run_options(CLI::App& app, RunOptions& o);
int run(const RunOptions& o);
// The training transform of o.augment on this benchmark (null for none): the
// crop pads with black as the benchmark normalises it (run.cc).
std::shared_ptr<const Transform> run_transform(const RunOptions& o, const Benchmark& bench);
int inspect(const std::string& path, bool json);
int verify(const std::string& path);
// `continua report DIR [DIR...] [--out FILE] [--json]` (report.cc): one run's
// page (DIR/report.html) from DIR/results.json and metrics.jsonl, or, for a
// multi-seed run or several runs, a comparison page (DIR/report.html for one
// folder, comparison.html for several); --json prints the comparison table.
struct ReportOptions {
  std::vector<std::string> dirs;
  std::string out;
  bool json = false;
};
int report(const ReportOptions& o);
// `continua strategies [--json]`: every registered strategy with its options.
int strategies(bool json);

}  // namespace continua::cli
