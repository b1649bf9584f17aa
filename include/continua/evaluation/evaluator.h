// Evaluation: accuracy and loss per experience, the accuracy matrix,
// forgetting, and the loggers that record them.
//
// The evaluator receives, from the strategy, each training epoch's loss and
// accuracy and each evaluation of a stream; it keeps the history (part of the
// checkpoint) and passes every record to its loggers.
//
//   auto evaluator = std::make_shared<continua::Evaluator>();
//   evaluator->add_logger(std::make_shared<continua::CsvLogger>("out/metrics.csv"));
//   ... strategy.eval(bench->test_stream()) ...
//   evaluator->accuracy_matrix();   // row i: after training experience i
//
// File loggers remember how many bytes they had written when the state was
// saved; after a load, they cut the file back to that length before writing,
// so a resumed run's file has no duplicated and no missing rows.
//
// Contract: file loggers throw continua::IoError naming the file when it
// cannot be written.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
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
  void record_eval(const EvalRecord& r);
  void record_progress(const ProgressRecord& r);

  // Row i: accuracy on each test experience after training experience i
  // (only rows for evaluations of the "test" stream).
  const std::vector<std::vector<double>>& accuracy_matrix() const { return matrix_; }
  // Accuracy per task label in the last evaluation of the test stream
  // (samples of a task's experiences pooled): task -> accuracy.
  std::map<int64_t, double> task_accuracy() const;
  const std::vector<EpochRecord>& epoch_history() const { return epochs_; }
  const std::vector<EvalRecord>& eval_history() const { return evals_; }
  // Mean accuracy of the last row over the experiences trained so far.
  double average_accuracy() const;
  // Mean over experiences j before the last trained one of
  // A[j][j] - A[last][j].
  double forgetting() const;

  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;

 private:
  std::vector<std::shared_ptr<Logger>> loggers_;
  std::vector<std::vector<double>> matrix_;
  std::vector<EpochRecord> epochs_;
  std::vector<EvalRecord> evals_;
};

}  // namespace continua
