#include "continua/evaluation/evaluator.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <iostream>

#include <fmt/format.h>

#include "continua/errors.h"
#include "continua/io/console.h"

namespace continua {

// ------------------------------------------------------------ FileLogger

FileLogger::FileLogger(std::string path) : path_(std::move(path)) {}

FileLogger::~FileLogger() {
  if (fd_ >= 0) ::close(fd_);
}

void FileLogger::open_if_needed() {
  if (fd_ >= 0) return;
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw IoError("cannot open log file '" + path_ + "': " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd_, &st) == 0 && uint64_t(st.st_size) < bytes_) {
    io::ErrLine() << "continua: warning: log file '" << path_ << "' is shorter (" << st.st_size
              << " bytes) than when the checkpoint was saved (" << bytes_
              << " bytes); rows written before the checkpoint are missing\n";
    bytes_ = uint64_t(st.st_size);
  }
  // Drop what a run that was killed wrote after its last checkpoint (or an
  // old run's file, for a fresh start): the rows are written again.
  if (::ftruncate(fd_, off_t(bytes_)) != 0) {
    throw IoError("cannot truncate log file '" + path_ + "': " + std::strerror(errno));
  }
}

void FileLogger::append(const std::string& text) {
  open_if_needed();
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::pwrite(fd_, text.data() + done, text.size() - done, off_t(bytes_ + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw IoError("cannot write log file '" + path_ + "': " + std::strerror(errno) +
                    (errno == ENOSPC ? " (disk full)" : ""));
    }
    done += size_t(n);
  }
  bytes_ += text.size();
}

void FileLogger::save_state(StateWriter& writer) const {
  writer.write("path", path_);
  writer.write("bytes", bytes_);
}

void FileLogger::load_state(const StateReader& reader) { load_staged(*this, reader); }

void FileLogger::stage_load(const StateReader& reader, LoadTransaction& tx) {
  const uint64_t bytes = reader.get<uint64_t>("bytes");
  tx.then([this, bytes] {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
    bytes_ = bytes;
  });
}

// ------------------------------------------------------------ CSV / JSONL

namespace {
// Shortest text that reads back as the same double.
std::string num(double v) { return fmt::format("{}", v); }
}  // namespace

void CsvLogger::header_if_needed() {
  if (empty()) append("event,trained_experiences,experience,epoch,iterations,samples,accuracy,loss\n");
}

void CsvLogger::log_epoch(const EpochRecord& r) {
  header_if_needed();
  append(fmt::format("train_epoch,{},{},{},{},{},{},{}\n", r.experience, r.experience, r.epoch,
                     r.iterations, r.samples, num(r.accuracy), num(r.loss)));
}

void CsvLogger::log_eval(const EvalRecord& r) {
  header_if_needed();
  std::string rows;
  for (const EvalResult& e : r.results) {
    rows += fmt::format("eval_{},{},{},,,{},{},{}\n", r.stream, r.trained_experiences,
                        e.experience, e.samples, num(e.accuracy), num(e.loss));
  }
  append(rows);
}

void JsonlLogger::log_epoch(const EpochRecord& r) {
  nlohmann::json j = {{"event", "train_epoch"}, {"experience", r.experience},
                      {"epoch", r.epoch},        {"iterations", r.iterations},
                      {"samples", r.samples},    {"accuracy", r.accuracy},
                      {"loss", r.loss}};
  append(j.dump() + "\n");
}

void JsonlLogger::log_eval(const EvalRecord& r) {
  std::string rows;
  for (const EvalResult& e : r.results) {
    nlohmann::json j = {{"event", "eval"},
                        {"stream", r.stream},
                        {"trained_experiences", r.trained_experiences},
                        {"experience", e.experience},
                        {"samples", e.samples},
                        {"accuracy", e.accuracy},
                        {"loss", e.loss},
                        {"task", e.task}};
    rows += j.dump() + "\n";
  }
  append(rows);
}

// ------------------------------------------------------------ console

ConsoleLogger::ConsoleLogger(Verbosity verbosity)
    : verbosity_(verbosity), tty_(::isatty(STDERR_FILENO) == 1) {}

void ConsoleLogger::log_progress(const ProgressRecord& r) {
  if (verbosity_ == Verbosity::kQuiet || !tty_) return;
  auto now = std::chrono::steady_clock::now();
  if (start_position_ < 0 || r.position < start_position_) {
    start_position_ = r.position;
    iterations_ = 0;
    epoch_start_ = now;
    last_draw_ = now - std::chrono::seconds(1);
  }
  if (now - last_draw_ < std::chrono::milliseconds(100) && r.position < r.total) {
    ++iterations_;
    return;
  }
  last_draw_ = now;
  const double elapsed = std::chrono::duration<double>(now - epoch_start_).count();
  const double frac = r.total ? double(r.position) / double(r.total) : 1.0;
  const int width = 30;
  const int filled = int(frac * width);
  ++iterations_;
  const double done = double(r.position - start_position_);
  const double it_rate = elapsed > 0 ? double(iterations_) / elapsed : 0;
  const double rate = elapsed > 0 ? done / elapsed : 0;  // samples/s
  const double left = rate > 0 ? double(r.total - r.position) / rate : 0;
  std::string bar(filled, '#');
  bar.resize(width, '.');
  std::cerr << fmt::format("\rexp {} epoch {}/{} [{}] {:3.0f}% {:.1f} it/s, {:.0f}s left, loss {:.4f} ",
                           r.experience, r.epoch + 1, r.epochs, bar, 100 * frac, it_rate, left, r.loss)
            << std::flush;
  if (r.position >= r.total) {
    std::cerr << "\n";
    start_position_ = -1;
  }
}

void ConsoleLogger::log_epoch(const EpochRecord& r) {
  if (verbosity_ == Verbosity::kQuiet) return;
  if (verbosity_ == Verbosity::kVerbose || !tty_) {
    io::ErrLine() << fmt::format("train exp {} epoch {}: loss {:.4f}, accuracy {:.4f}\n", r.experience,
                             r.epoch, r.loss, r.accuracy);
  }
}

void ConsoleLogger::log_eval(const EvalRecord& r) {
  if (verbosity_ == Verbosity::kQuiet) return;
  std::string line = fmt::format("after {} experience(s), {} accuracy:", r.trained_experiences, r.stream);
  for (const EvalResult& e : r.results) line += fmt::format(" {:.4f}", e.accuracy);
  line += fmt::format("  (stream {:.4f})", r.stream_accuracy);
  std::cout << line << std::endl;
}

// ------------------------------------------------------------ Evaluator

void Evaluator::add_logger(std::shared_ptr<Logger> logger) {
  for (const auto& l : loggers_) {
    if (l->name() == logger->name()) {
      throw InvalidArgument("a logger named '" + logger->name() + "' is already attached");
    }
  }
  loggers_.push_back(std::move(logger));
}

void Evaluator::record_epoch(const EpochRecord& r) {
  epochs_.push_back(r);
  for (auto& l : loggers_) l->log_epoch(r);
}

void Evaluator::record_eval(const EvalRecord& r) {
  evals_.push_back(r);
  if (r.stream == "test" && r.trained_experiences > 0) {
    std::vector<double> row;
    for (const EvalResult& e : r.results) row.push_back(e.accuracy);
    const size_t i = size_t(r.trained_experiences - 1);
    if (matrix_.size() <= i) matrix_.resize(i + 1);
    matrix_[i] = row;
  }
  for (auto& l : loggers_) l->log_eval(r);
}

void Evaluator::record_progress(const ProgressRecord& r) {
  for (auto& l : loggers_) l->log_progress(r);
}

double Evaluator::average_accuracy() const {
  if (matrix_.empty()) return 0;
  const auto& last = matrix_.back();
  const size_t seen = std::min(matrix_.size(), last.size());
  if (seen == 0) return 0;
  double sum = 0;
  for (size_t j = 0; j < seen; ++j) sum += last[j];
  return sum / double(seen);
}

double Evaluator::forgetting() const {
  if (matrix_.size() < 2) return 0;
  const size_t last = matrix_.size() - 1;
  double sum = 0;
  size_t n = 0;
  for (size_t j = 0; j < last; ++j) {
    if (j < matrix_[j].size() && j < matrix_[last].size()) {
      sum += matrix_[j][j] - matrix_[last][j];
      ++n;
    }
  }
  return n ? sum / double(n) : 0;
}

std::map<int64_t, double> Evaluator::task_accuracy() const {
  std::map<int64_t, std::pair<double, int64_t>> sums;  // correct, samples
  for (auto it = evals_.rbegin(); it != evals_.rend(); ++it) {
    if (it->stream != "test") continue;
    for (const EvalResult& e : it->results) {
      sums[e.task].first += e.accuracy * double(e.samples);
      sums[e.task].second += e.samples;
    }
    break;
  }
  std::map<int64_t, double> out;
  for (const auto& [task, s] : sums) out[task] = s.second ? s.first / double(s.second) : 0.0;
  return out;
}

void Evaluator::save_state(StateWriter& writer) const {
  writer.write("accuracy_matrix", matrix_);
  nlohmann::json epochs = nlohmann::json::array();
  for (const auto& r : epochs_) {
    epochs.push_back({r.experience, r.epoch, r.iterations, r.samples, r.loss, r.accuracy});
  }
  writer.write("epochs", epochs);
  nlohmann::json evals = nlohmann::json::array();
  for (const auto& r : evals_) {
    nlohmann::json res = nlohmann::json::array();
    for (const auto& e : r.results) {
      nlohmann::json row = {e.experience, e.samples, e.accuracy, e.loss};
      if (e.task != 0) row.push_back(e.task);  // older checkpoints: 4 columns, task 0
      res.push_back(row);
    }
    evals.push_back({{"trained", r.trained_experiences}, {"stream", r.stream},
                     {"accuracy", r.stream_accuracy}, {"loss", r.stream_loss}, {"results", res}});
  }
  writer.write("evals", evals);
  for (const auto& l : loggers_) {
    StateWriter lw = writer.child("loggers").child(l->name());
    l->save_state(lw);
  }
}

void Evaluator::load_state(const StateReader& reader) { load_staged(*this, reader); }

void Evaluator::stage_load(const StateReader& reader, LoadTransaction& tx) {
  std::vector<std::vector<double>> matrix;
  std::vector<EpochRecord> epochs;
  std::vector<EvalRecord> evals;
  try {
    matrix = reader.json("accuracy_matrix").get<std::vector<std::vector<double>>>();
    for (const auto& e : reader.json("epochs")) {
      epochs.push_back({e.at(0).get<int64_t>(), e.at(1).get<int64_t>(), e.at(2).get<int64_t>(),
                        e.at(3).get<int64_t>(), e.at(4).get<double>(), e.at(5).get<double>()});
    }
    for (const auto& v : reader.json("evals")) {
      EvalRecord r;
      r.trained_experiences = v.at("trained").get<int64_t>();
      r.stream = v.at("stream").get<std::string>();
      r.stream_accuracy = v.at("accuracy").get<double>();
      r.stream_loss = v.at("loss").get<double>();
      for (const auto& e : v.at("results")) {
        r.results.push_back({e.at(0).get<int64_t>(), e.at(1).get<int64_t>(), e.at(2).get<double>(),
                             e.at(3).get<double>(), e.size() > 4 ? e.at(4).get<int64_t>() : 0});
      }
      evals.push_back(std::move(r));
    }
  } catch (const nlohmann::json::exception& e) {
    reader.fail("evals", std::string("malformed metric history: ") + e.what());
  }
  // Loggers absent from the checkpoint (added since) start from an empty file.
  for (auto& l : loggers_) {
    StateReader lr = reader.child("loggers").child(l->name());
    if (reader.child("loggers").has_child(l->name())) l->stage_load(lr, tx);
  }
  tx.then([this, matrix = std::move(matrix), epochs = std::move(epochs), evals = std::move(evals)]() mutable {
    matrix_ = std::move(matrix);
    epochs_ = std::move(epochs);
    evals_ = std::move(evals);
  });
}

}  // namespace continua
