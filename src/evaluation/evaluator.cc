#include "continua/evaluation/evaluator.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <cmath>
#include <cstring>
#include <iostream>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "continua/errors.h"
#include "continua/evaluation/metrics.h"
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

namespace {
nlohmann::json optional_json(const std::optional<double>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

nlohmann::json confusion_json(int64_t classes, const std::vector<int64_t>& confusion) {
  nlohmann::json rows = nlohmann::json::array();
  if (classes <= 0 || confusion.size() != size_t(classes * classes)) return rows;
  for (int64_t c = 0; c < classes; ++c) {
    rows.push_back(std::vector<int64_t>(confusion.begin() + c * classes, confusion.begin() + (c + 1) * classes));
  }
  return rows;
}
}  // namespace

void JsonlLogger::log_metrics(const MetricsRecord& r) {
  nlohmann::json per_class = nlohmann::json::object();
  for (const auto& [c, acc] : r.accuracy_per_class) per_class[std::to_string(c)] = acc;
  nlohmann::json j = {{"event", "metrics"},
                      {"trained_experiences", r.trained_experiences},
                      {"average_accuracy", r.average_accuracy},
                      {"average_incremental_accuracy", r.average_incremental_accuracy},
                      {"forgetting", r.forgetting},
                      {"forgetting_per_experience", r.forgetting_per_experience},
                      {"backward_transfer", optional_json(r.backward_transfer)},
                      {"forward_transfer", optional_json(r.forward_transfer)},
                      {"accuracy_per_class", per_class},
                      {"confusion_matrix", confusion_json(r.classes, r.confusion)}};
  append(j.dump() + "\n");
}

void JsonlLogger::log_costs(const ExperienceCosts& r) {
  nlohmann::json j = {{"event", "costs"},
                      {"experience", r.experience},
                      {"train_seconds", r.train_seconds},
                      {"eval_seconds", r.eval_seconds},
                      {"checkpoint_seconds", r.checkpoint_seconds},
                      {"load_seconds", r.load_seconds},
                      {"checkpoint_saves", r.checkpoint_saves},
                      {"checkpoint_bytes", r.checkpoint_bytes},
                      {"peak_resident_bytes", r.peak_resident_bytes},
                      {"memory_samples", r.memory_samples},
                      {"memory_bytes", r.memory_bytes}};
  append(j.dump() + "\n");
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

namespace {

// The accuracy on each experience of an evaluation.
std::vector<double> accuracies(const EvalRecord& r) {
  std::vector<double> row;
  for (const EvalResult& e : r.results) row.push_back(e.accuracy);
  return row;
}

// Row trained_experiences - 1 of an accuracy matrix: the evaluation's accuracies.
void put_row(std::vector<std::vector<double>>& m, const EvalRecord& r) {
  const size_t i = size_t(r.trained_experiences - 1);
  if (m.size() <= i) m.resize(i + 1);
  m[i] = accuracies(r);
}

}  // namespace

void Evaluator::record_eval(const EvalRecord& r) {
  evals_.push_back(r);
  const bool after_training = r.stream == "test" && r.trained_experiences > 0;
  if (after_training) put_row(matrix_, r);
  for (auto& l : loggers_) l->log_eval(r);
  if (after_training && !loggers_.empty()) {
    const MetricsRecord m = metrics();
    for (auto& l : loggers_) l->log_metrics(m);
  }
}

void Evaluator::record_progress(const ProgressRecord& r) {
  for (auto& l : loggers_) l->log_progress(r);
}

const EvalRecord* Evaluator::test_eval(int64_t trained) const {
  for (auto it = evals_.rbegin(); it != evals_.rend(); ++it) {
    if (it->stream == "test" && it->trained_experiences == trained) return &*it;
  }
  return nullptr;
}

std::vector<std::vector<double>> Evaluator::loss_matrix() const {
  std::vector<std::vector<double>> m(matrix_.size());
  for (size_t i = 0; i < matrix_.size(); ++i) {
    if (const EvalRecord* r = test_eval(int64_t(i) + 1)) {
      for (const EvalResult& e : r->results) m[i].push_back(e.loss);
    }
  }
  return m;
}

std::vector<std::vector<double>> Evaluator::stream_accuracy_matrix(const std::string& stream) const {
  std::vector<std::vector<double>> m;
  for (const EvalRecord& r : evals_) {
    if (r.stream == stream && r.trained_experiences > 0) put_row(m, r);
  }
  return m;
}

std::optional<std::vector<double>> Evaluator::initial_accuracy() const {
  const EvalRecord* r = test_eval(0);
  if (!r) return std::nullopt;
  return accuracies(*r);
}

double Evaluator::average_accuracy() const { return metrics::average_accuracy(matrix_); }
double Evaluator::average_incremental_accuracy() const { return metrics::average_incremental_accuracy(matrix_); }
double Evaluator::forgetting() const { return metrics::forgetting(matrix_); }
std::vector<double> Evaluator::forgetting_per_experience() const {
  return metrics::forgetting_per_experience(matrix_);
}
std::optional<double> Evaluator::backward_transfer() const { return metrics::backward_transfer(matrix_); }
std::optional<double> Evaluator::forward_transfer() const {
  const auto initial = initial_accuracy();
  if (!initial) return std::nullopt;
  return metrics::forward_transfer(matrix_, *initial);
}

std::map<int64_t, double> Evaluator::class_accuracy() const {
  for (auto it = evals_.rbegin(); it != evals_.rend(); ++it) {
    if (it->stream == "test") return metrics::class_accuracy(it->confusion, it->unanswered, it->classes);
  }
  return {};
}

MetricsRecord Evaluator::metrics() const {
  MetricsRecord m;
  m.trained_experiences = int64_t(matrix_.size());
  m.average_accuracy = average_accuracy();
  m.average_incremental_accuracy = average_incremental_accuracy();
  m.forgetting = forgetting();
  m.forgetting_per_experience = forgetting_per_experience();
  m.backward_transfer = backward_transfer();
  m.forward_transfer = forward_transfer();
  if (const EvalRecord* r = test_eval(m.trained_experiences)) {
    m.accuracy_per_class = metrics::class_accuracy(r->confusion, r->unanswered, r->classes);
    m.classes = r->classes;
    m.confusion = r->confusion;
  }
  return m;
}

ExperienceCosts& Evaluator::costs(int64_t experience) {
  auto it = std::lower_bound(costs_.begin(), costs_.end(), experience,
                             [](const ExperienceCosts& c, int64_t e) { return c.experience < e; });
  if (it == costs_.end() || it->experience != experience) {
    ExperienceCosts c;
    c.experience = experience;
    it = costs_.insert(it, c);
  }
  return *it;
}

void Evaluator::record_costs(int64_t experience) {
  const ExperienceCosts& c = costs(experience);
  for (auto& l : loggers_) l->log_costs(c);
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
  // Confusion matrices as tensors [classes, classes + 1] (the last column:
  // unanswered), keyed by the evaluation's index; int32 unless a count needs more.
  for (size_t k = 0; k < evals_.size(); ++k) {
    const EvalRecord& r = evals_[k];
    if (r.classes <= 0 || r.confusion.size() != size_t(r.classes * r.classes) ||
        r.unanswered.size() != size_t(r.classes)) {
      continue;
    }
    at::Tensor t = at::empty({r.classes, r.classes + 1}, at::kLong);
    int64_t* p = t.data_ptr<int64_t>();
    for (int64_t c = 0; c < r.classes; ++c) {
      for (int64_t q = 0; q < r.classes; ++q) *p++ = r.confusion[size_t(c * r.classes + q)];
      *p++ = r.unanswered[size_t(c)];
    }
    if (t.max().item<int64_t>() <= std::numeric_limits<int32_t>::max()) t = t.to(at::kInt);
    writer.write("confusion." + std::to_string(k), t);
  }
  nlohmann::json costs = nlohmann::json::array();
  for (const auto& c : costs_) {
    costs.push_back({c.experience, c.train_seconds, c.eval_seconds, c.checkpoint_seconds, c.load_seconds,
                     c.checkpoint_saves, c.checkpoint_bytes, c.peak_resident_bytes, c.memory_samples,
                     c.memory_bytes});
  }
  StateWriter cw = writer.child("costs");
  cw.write("experiences", costs);
  cw.write("initial_eval_seconds", initial_eval_seconds_);
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
  for (size_t k = 0; k < evals.size(); ++k) {
    const std::string key = "confusion." + std::to_string(k);
    if (!reader.has(key)) continue;  // none computed, or a checkpoint from before confusion matrices
    const at::Tensor& t = reader.tensor(key);
    if (t.dim() != 2 || t.size(0) < 1 || t.size(0) > kMaxConfusionClasses || t.size(1) != t.size(0) + 1 ||
        (t.scalar_type() != at::kInt && t.scalar_type() != at::kLong)) {
      reader.fail(key, "expected an integer confusion matrix [classes, classes + 1] with at most " +
                           std::to_string(kMaxConfusionClasses) + " classes");
    }
    const at::Tensor v = t.to(at::kCPU, at::kLong).contiguous();
    if (v.numel() > 0 && v.min().item<int64_t>() < 0) reader.fail(key, "negative count");
    EvalRecord& r = evals[k];
    r.classes = v.size(0);
    const int64_t* p = v.data_ptr<int64_t>();
    r.confusion.reserve(size_t(r.classes * r.classes));
    for (int64_t c = 0; c < r.classes; ++c) {
      for (int64_t q = 0; q < r.classes; ++q) r.confusion.push_back(*p++);
      r.unanswered.push_back(*p++);
    }
  }
  std::vector<ExperienceCosts> costs;
  double initial_eval_seconds = 0;
  if (reader.has_child("costs")) {  // absent in checkpoints from before cost metrics
    const StateReader cr = reader.child("costs");
    try {
      for (const auto& e : cr.json("experiences")) {
        ExperienceCosts c;
        c.experience = e.at(0).get<int64_t>();
        c.train_seconds = e.at(1).get<double>();
        c.eval_seconds = e.at(2).get<double>();
        c.checkpoint_seconds = e.at(3).get<double>();
        c.load_seconds = e.at(4).get<double>();
        c.checkpoint_saves = e.at(5).get<int64_t>();
        c.checkpoint_bytes = e.at(6).get<int64_t>();
        c.peak_resident_bytes = e.at(7).get<int64_t>();
        c.memory_samples = e.at(8).get<int64_t>();
        c.memory_bytes = e.at(9).get<int64_t>();
        if (c.experience < 0 || (!costs.empty() && c.experience <= costs.back().experience)) {
          cr.fail("experiences", "experience indices must be >= 0 and increasing");
        }
        costs.push_back(c);
      }
      initial_eval_seconds = cr.get<double>("initial_eval_seconds");
    } catch (const nlohmann::json::exception& e) {
      cr.fail("experiences", std::string("malformed cost record: ") + e.what());
    }
  }
  // Loggers absent from the checkpoint (added since) start from an empty file.
  for (auto& l : loggers_) {
    StateReader lr = reader.child("loggers").child(l->name());
    if (reader.child("loggers").has_child(l->name())) l->stage_load(lr, tx);
  }
  tx.then([this, matrix = std::move(matrix), epochs = std::move(epochs), evals = std::move(evals),
           costs = std::move(costs), initial_eval_seconds]() mutable {
    matrix_ = std::move(matrix);
    epochs_ = std::move(epochs);
    evals_ = std::move(evals);
    costs_ = std::move(costs);
    initial_eval_seconds_ = initial_eval_seconds;
  });
}

}  // namespace continua
