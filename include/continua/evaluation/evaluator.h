// Evaluation: accuracy and loss per experience, the accuracy matrix, the
// continual-learning metrics derived from it (evaluation/metrics.h,
// docs/metrics.md), the confusion matrix of each evaluation, the costs of a
// run, and the loggers that record them.
//
// The evaluator receives, from the strategy, each training epoch's loss and
// accuracy and each evaluation of a stream; it keeps the history (part of the
// checkpoint) and passes every record to its loggers. An evaluation of the
// test stream before any training (trained_experiences 0) is the initial
// model's accuracy that forward transfer compares against.
//
//   auto evaluator = std::make_shared<continua::Evaluator>();
//   evaluator->add_logger(std::make_shared<continua::CsvLogger>("out/metrics.csv"));
//   strategy.eval(bench->test_stream());   // before training: the initial accuracy
//   ... strategy.train(exp); strategy.eval(bench->test_stream()) ...
//   evaluator->accuracy_matrix();   // row i: after training experience i
//   evaluator->backward_transfer(); evaluator->forward_transfer();
//
// Costs (wall times, checkpoint bytes, peak memory, memory size) are
// measured by the program that runs the loop (the CLI) and kept here so that
// a resumed run reports the whole run; they are state (saved under "costs")
// but not training state: Strategy::state_digest leaves them out, as it
// leaves out the loggers' file lengths.
//
// File loggers remember how many bytes they had written when the state was
// saved; after a load, they cut the file back to that length before writing,
// so a resumed run's file has no duplicated and no missing rows.
//
// Contract: file loggers throw continua::IoError naming the file when it
// cannot be written; a load refuses (InvalidArgument naming the key) a
// malformed history, confusion matrix or cost record.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "continua/state/state_tree.h"

namespace continua {

struct EvalResult {
  int64_t experience = 0;
  int64_t samples = 0;
  double accuracy = 0;
  double loss = 0;
  int64_t task = 0;  // the experience's task label
};

struct EpochRecord {
  int64_t experience = 0;  // index of the experience being trained
  int64_t epoch = 0;
  int64_t iterations = 0;  // total iterations so far
  int64_t samples = 0;
  double loss = 0;
  double accuracy = 0;
};

struct EvalRecord {
  int64_t trained_experiences = 0;  // how many experiences had been trained
  std::string stream;
  std::vector<EvalResult> results;
  double stream_accuracy = 0;
  double stream_loss = 0;
  // Over the whole stream: confusion[true * classes + predicted] (row-major,
  // classes x classes) and, per true class, the samples the model gave no
  // answer for (every class masked: a task without a head yet). Empty
  // (classes 0) when not computed, or above kMaxConfusionClasses.
  int64_t classes = 0;
  std::vector<int64_t> confusion;
  std::vector<int64_t> unanswered;
};

// The largest number of classes a confusion matrix is kept for.
inline constexpr int64_t kMaxConfusionClasses = 256;

// What the evaluator derives after each evaluation of the test stream that
// follows training (the metrics of evaluation/metrics.h at that point).
struct MetricsRecord {
  int64_t trained_experiences = 0;
  double average_accuracy = 0;
  double average_incremental_accuracy = 0;
  double forgetting = 0;
  std::vector<double> forgetting_per_experience;
  std::optional<double> backward_transfer;
  std::optional<double> forward_transfer;
  std::map<int64_t, double> accuracy_per_class;
  int64_t classes = 0;
  std::vector<int64_t> confusion;  // classes x classes, as EvalRecord's
};

// Wall time and resources spent on one experience, measured by the program
// that runs the loop. Seconds of work a killed run did after its last
// checkpoint are not counted: that work is done again and counted then.
struct ExperienceCosts {
  int64_t experience = 0;
  double train_seconds = 0;       // Strategy::train, without the saves inside it
  double eval_seconds = 0;        // evaluations after training it
  double checkpoint_seconds = 0;  // saves during it and the save after it
  double load_seconds = 0;        // loads of a checkpoint that resumed it
  int64_t checkpoint_saves = 0;
  int64_t checkpoint_bytes = 0;       // size of the last checkpoint written for it
  int64_t peak_resident_bytes = -1;   // the process's peak (VmHWM) when it ended; -1: unknown
  int64_t memory_samples = -1;        // samples in the strategy's memories; -1: no memory
  int64_t memory_bytes = -1;          // their state's bytes in a checkpoint
};

struct ProgressRecord {
  int64_t experience = 0;
  int64_t epoch = 0;
  int64_t epochs = 0;
  int64_t position = 0;  // samples of this epoch done
  int64_t total = 0;     // samples per epoch
  double loss = 0;
};

class Logger : public Stateful {
 public:
  virtual std::string name() const = 0;
  virtual void log_epoch(const EpochRecord&) {}
  virtual void log_eval(const EvalRecord&) {}
  virtual void log_progress(const ProgressRecord&) {}
  virtual void log_metrics(const MetricsRecord&) {}
  virtual void log_costs(const ExperienceCosts&) {}
  void save_state(StateWriter&) const override {}
  void load_state(const StateReader&) override {}
};

// Appends lines to a file; keeps its length in the state (see above).
class FileLogger : public Logger {
 public:
  explicit FileLogger(std::string path);
  ~FileLogger() override;
  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;
  const std::string& path() const { return path_; }

 protected:
  void append(const std::string& text);
  bool empty() const { return bytes_ == 0; }

 private:
  void open_if_needed();
  std::string path_;
  int fd_ = -1;
  uint64_t bytes_ = 0;
};

class CsvLogger : public FileLogger {
 public:
  using FileLogger::FileLogger;
  std::string name() const override { return "csv"; }
  void log_epoch(const EpochRecord& r) override;
  void log_eval(const EvalRecord& r) override;

 private:
  void header_if_needed();
};

class JsonlLogger : public FileLogger {
 public:
  using FileLogger::FileLogger;
  std::string name() const override { return "jsonl"; }
  void log_epoch(const EpochRecord& r) override;
  void log_eval(const EvalRecord& r) override;
  // {"event": "metrics", ...} and {"event": "costs", ...} rows.
  void log_metrics(const MetricsRecord& r) override;
  void log_costs(const ExperienceCosts& r) override;
};

// A progress bar with iterations/s and time left on a terminal; plain lines
// otherwise. Writes to stderr, accuracies to stdout.
class ConsoleLogger : public Logger {
 public:
  enum class Verbosity { kQuiet = 0, kNormal = 1, kVerbose = 2 };
  explicit ConsoleLogger(Verbosity verbosity = Verbosity::kNormal);
  std::string name() const override { return "console"; }
  void log_epoch(const EpochRecord& r) override;
  void log_eval(const EvalRecord& r) override;
  void log_progress(const ProgressRecord& r) override;

 private:
  Verbosity verbosity_;
  bool tty_;
  std::chrono::steady_clock::time_point epoch_start_;
  std::chrono::steady_clock::time_point last_draw_;
  int64_t start_position_ = -1;
  int64_t iterations_ = 0;
};

class Evaluator : public Stateful {
 public:
  void add_logger(std::shared_ptr<Logger> logger);
  const std::vector<std::shared_ptr<Logger>>& loggers() const { return loggers_; }

  void record_epoch(const EpochRecord& r);
  // An evaluation of the test stream after training also logs the
  // MetricsRecord at that point.
  void record_eval(const EvalRecord& r);
  void record_progress(const ProgressRecord& r);

  // Row i: accuracy on each test experience after training experience i
  // (only rows for evaluations of the "test" stream).
  const std::vector<std::vector<double>>& accuracy_matrix() const { return matrix_; }
  // Row i: mean loss on each test experience after training experience i.
  std::vector<std::vector<double>> loss_matrix() const;
  // The accuracy matrix of another evaluated stream (e.g. "valid"): row i
  // from the last evaluation of `stream` after training experience i; empty
  // when that stream was never evaluated after training.
  std::vector<std::vector<double>> stream_accuracy_matrix(const std::string& stream) const;
  // The initial model's accuracy on each test experience (the last test
  // evaluation before any training); nullopt if there was none.
  std::optional<std::vector<double>> initial_accuracy() const;
  // Accuracy per task label in the last evaluation of the test stream
  // (samples of a task's experiences pooled): task -> accuracy.
  std::map<int64_t, double> task_accuracy() const;
  // Accuracy per class in the last evaluation of the test stream (classes
  // with samples; empty without a confusion matrix).
  std::map<int64_t, double> class_accuracy() const;
  // The last test evaluation after `trained` experiences; null if none.
  const EvalRecord* test_eval(int64_t trained) const;
  const std::vector<EpochRecord>& epoch_history() const { return epochs_; }
  const std::vector<EvalRecord>& eval_history() const { return evals_; }
  // The metrics of evaluation/metrics.h on accuracy_matrix() (and
  // initial_accuracy() for forward transfer).
  double average_accuracy() const;
  double average_incremental_accuracy() const;
  double forgetting() const;
  std::vector<double> forgetting_per_experience() const;
  std::optional<double> backward_transfer() const;
  std::optional<double> forward_transfer() const;
  MetricsRecord metrics() const;

  // Costs (see above): the record of one experience, created on first use.
  ExperienceCosts& costs(int64_t experience);
  const std::vector<ExperienceCosts>& experience_costs() const { return costs_; }
  double initial_eval_seconds() const { return initial_eval_seconds_; }
  void set_initial_eval_seconds(double s) { initial_eval_seconds_ = s; }
  // Passes the experience's costs record to the loggers.
  void record_costs(int64_t experience);

  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;

 private:
  std::vector<std::shared_ptr<Logger>> loggers_;
  std::vector<std::vector<double>> matrix_;
  std::vector<EpochRecord> epochs_;
  std::vector<EvalRecord> evals_;
  std::vector<ExperienceCosts> costs_;  // sorted by experience
  double initial_eval_seconds_ = 0;
};

}  // namespace continua
