// `continua report DIR [DIR...]`: self-contained HTML pages, no network, no
// scripts: every plot is inline SVG written here.
// - One run's --out folder: DIR/report.html with the plots of the run, from
//   DIR/results.json and DIR/metrics.jsonl.
// - Several folders, or a --seeds run's folder: a comparison page (a table
//   of the runs with mean ± std over seeds, the average accuracy of every
//   run over the experiences in one plot, the accuracy matrices side by side,
//   the configurations), comparison.html or DIR/report.html; --json prints
//   the table instead.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "continua/errors.h"
#include "continua/training/registry.h"

namespace continua::cli {
namespace {

namespace fs = std::filesystem;

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string num(double v, int digits = 3) {
  if (!std::isfinite(v)) return "nan";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

// A categorical palette (colour-blind friendly, Okabe-Ito).
const char* color(size_t i) {
  static const char* kColors[] = {"#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7",
                                  "#56B4E9", "#F0E442", "#000000"};
  return kColors[i % (sizeof kColors / sizeof kColors[0])];
}

// Accuracy in [0,1] -> white to dark blue.
std::string heat(double v) {
  v = std::clamp(std::isfinite(v) ? v : 0.0, 0.0, 1.0);
  const int r = int(std::lround(247 - v * (247 - 8)));
  const int g = int(std::lround(251 - v * (251 - 48)));
  const int b = int(std::lround(255 - v * (255 - 107)));
  char buf[16];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", r, g, b);
  return buf;
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream f(path);
  if (!f) throw IoError("report: cannot open '" + path.string() + "' (run 'continua run --out DIR' first)");
  std::stringstream ss;
  ss << f.rdbuf();
  auto j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) throw Error("report: '" + path.string() + "' is not a JSON object");
  return j;
}

std::vector<std::vector<double>> read_matrix(const nlohmann::json& results, const std::string& file) {
  std::vector<std::vector<double>> m;
  const auto it = results.find("accuracy_matrix");
  if (it == results.end() || !it->is_array()) throw Error("report: '" + file + "' has no accuracy_matrix");
  for (const auto& row : *it) {
    if (!row.is_array()) throw Error("report: '" + file + "': accuracy_matrix rows must be arrays");
    std::vector<double> r;
    for (const auto& v : row) {
      if (!v.is_number()) throw Error("report: '" + file + "': accuracy_matrix holds a non-number");
      r.push_back(v.get<double>());
    }
    m.push_back(std::move(r));
  }
  return m;
}

struct Frame {  // a plot area with axes
  double w = 520, h = 300, left = 60, right = 20, top = 40, bottom = 50;
  double x0, x1, y0, y1;  // data range
  double px(double x) const { return left + (x1 == x0 ? 0.5 : (x - x0) / (x1 - x0)) * (w - left - right); }
  double py(double y) const { return h - bottom - (y1 == y0 ? 0.5 : (y - y0) / (y1 - y0)) * (h - top - bottom); }
};

std::string axes(const Frame& f, const std::string& title, const std::string& xlabel, const std::string& ylabel,
                 const std::vector<double>& xticks, int ydigits) {
  std::ostringstream s;
  s << "<text class=\"title\" x=\"" << f.w / 2 << "\" y=\"22\" text-anchor=\"middle\">" << escape(title)
    << "</text>\n";
  s << "<line x1=\"" << f.left << "\" y1=\"" << f.h - f.bottom << "\" x2=\"" << f.w - f.right << "\" y2=\""
    << f.h - f.bottom << "\" stroke=\"#333\"/>\n";
  s << "<line x1=\"" << f.left << "\" y1=\"" << f.top << "\" x2=\"" << f.left << "\" y2=\"" << f.h - f.bottom
    << "\" stroke=\"#333\"/>\n";
  for (int k = 0; k <= 4; ++k) {
    const double y = f.y0 + (f.y1 - f.y0) * k / 4;
    s << "<line x1=\"" << f.left << "\" y1=\"" << f.py(y) << "\" x2=\"" << f.w - f.right << "\" y2=\"" << f.py(y)
      << "\" stroke=\"#ddd\"/>\n";
    s << "<text x=\"" << f.left - 6 << "\" y=\"" << f.py(y) + 4 << "\" text-anchor=\"end\">" << num(y, ydigits)
      << "</text>\n";
  }
  for (double x : xticks) {
    s << "<text x=\"" << f.px(x) << "\" y=\"" << f.h - f.bottom + 16 << "\" text-anchor=\"middle\">"
      << num(x, 0) << "</text>\n";
  }
  s << "<text x=\"" << (f.left + f.w - f.right) / 2 << "\" y=\"" << f.h - 12 << "\" text-anchor=\"middle\">"
    << escape(xlabel) << "</text>\n";
  s << "<text transform=\"translate(16," << (f.top + f.h - f.bottom) / 2
    << ") rotate(-90)\" text-anchor=\"middle\">" << escape(ylabel) << "</text>\n";
  return s.str();
}

std::string svg_open(const Frame& f, const std::string& id) {
  std::ostringstream s;
  s << "<svg id=\"" << id << "\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" << f.w << "\" height=\"" << f.h
    << "\" viewBox=\"0 0 " << f.w << " " << f.h << "\">\n";
  return s.str();
}

std::string heat_map(const std::vector<std::vector<double>>& m, const std::string& id = "accuracy-matrix",
                     const std::string& title = "Accuracy matrix", double max_side = 360.0) {
  size_t cols = 0;
  for (const auto& r : m) cols = std::max(cols, r.size());
  const double cell = std::clamp(max_side / double(std::max<size_t>(1, std::max(cols, m.size()))), 24.0, 64.0);
  Frame f;
  f.left = 90, f.top = 60, f.right = 20, f.bottom = 20;
  f.w = f.left + cell * double(cols) + f.right;
  f.h = f.top + cell * double(m.size()) + f.bottom + 30;
  f.w = std::max(f.w, 320.0);
  std::ostringstream s;
  s << svg_open(f, id);
  s << "<text class=\"title\" x=\"" << f.w / 2 << "\" y=\"20\" text-anchor=\"middle\">" << escape(title)
    << "</text>\n";
  s << "<text x=\"" << f.left + cell * double(cols) / 2 << "\" y=\"" << f.top - 22
    << "\" text-anchor=\"middle\">test experience</text>\n";
  for (size_t j = 0; j < cols; ++j) {
    s << "<text x=\"" << f.left + cell * (double(j) + 0.5) << "\" y=\"" << f.top - 6
      << "\" text-anchor=\"middle\">" << j << "</text>\n";
  }
  for (size_t i = 0; i < m.size(); ++i) {
    const double y = f.top + cell * double(i);
    s << "<text x=\"" << f.left - 6 << "\" y=\"" << y + cell / 2 + 4 << "\" text-anchor=\"end\">after " << i
      << "</text>\n";
    for (size_t j = 0; j < m[i].size(); ++j) {
      const double x = f.left + cell * double(j);
      const double v = m[i][j];
      s << "<rect class=\"cell\" x=\"" << x << "\" y=\"" << y << "\" width=\"" << cell << "\" height=\"" << cell
        << "\" fill=\"" << heat(v) << "\" stroke=\"#fff\"><title>after experience " << i << ", test experience "
        << j << ": " << num(v, 4) << "</title></rect>\n";
      s << "<text x=\"" << x + cell / 2 << "\" y=\"" << y + cell / 2 + 4 << "\" text-anchor=\"middle\" fill=\""
        << (v > 0.55 ? "#fff" : "#111") << "\" font-size=\"" << (cell < 36 ? 9 : 12) << "\">" << num(v, 2)
        << "</text>\n";
    }
  }
  s << "<text x=\"" << f.left << "\" y=\"" << f.h - 10 << "\">rows: after training experience i</text>\n";
  s << "</svg>\n";
  return s.str();
}

std::string accuracy_over_time(const std::vector<std::vector<double>>& m) {
  Frame f;
  f.w = 560;
  f.right = 110;
  f.x0 = 1, f.x1 = double(std::max<size_t>(1, m.size())), f.y0 = 0, f.y1 = 1;
  std::vector<double> ticks;
  for (size_t i = 1; i <= m.size(); ++i) ticks.push_back(double(i));
  std::ostringstream s;
  s << svg_open(f, "accuracy-over-time");
  s << axes(f, "Accuracy on each experience over time", "experiences trained", "test accuracy", ticks, 2);
  size_t cols = 0;
  for (const auto& r : m) cols = std::max(cols, r.size());
  for (size_t j = 0; j < cols; ++j) {
    std::string points;
    for (size_t i = j; i < m.size(); ++i) {
      if (j >= m[i].size()) continue;
      points += num(f.px(double(i + 1)), 1) + "," + num(f.py(m[i][j]), 1) + " ";
      s << "<circle cx=\"" << f.px(double(i + 1)) << "\" cy=\"" << f.py(m[i][j]) << "\" r=\"3\" fill=\""
        << color(j) << "\"/>\n";
    }
    if (!points.empty()) {
      s << "<polyline class=\"series\" fill=\"none\" stroke=\"" << color(j) << "\" stroke-width=\"2\" points=\""
        << points << "\"/>\n";
    }
    s << "<rect x=\"" << f.w - f.right + 12 << "\" y=\"" << f.top + 16 * double(j) << "\" width=\"10\" height=\"10\" fill=\""
      << color(j) << "\"/><text x=\"" << f.w - f.right + 26 << "\" y=\"" << f.top + 16 * double(j) + 9
      << "\">experience " << j << "</text>\n";
  }
  s << "</svg>\n";
  return s.str();
}

std::string forgetting_bars(const std::vector<std::vector<double>>& m, double average) {
  Frame f;
  std::vector<double> values;
  if (!m.empty()) {
    const auto& last = m.back();
    for (size_t j = 0; j + 1 < m.size() && j < last.size() && j < m[j].size(); ++j) {
      values.push_back(m[j][j] - last[j]);
    }
  }
  double lo = 0, hi = 0.1;
  for (double v : values) lo = std::min(lo, v), hi = std::max(hi, v);
  f.x0 = -0.5, f.x1 = double(std::max<size_t>(1, values.size())) - 0.5, f.y0 = lo, f.y1 = hi;
  std::vector<double> ticks;
  for (size_t j = 0; j < values.size(); ++j) ticks.push_back(double(j));
  std::ostringstream s;
  s << svg_open(f, "forgetting");
  s << axes(f, "Forgetting per experience (average " + num(average, 3) + ")", "experience",
            "A[j][j] - A[last][j]", ticks, 2);
  const double bw = (f.w - f.left - f.right) / double(std::max<size_t>(1, values.size())) * 0.6;
  for (size_t j = 0; j < values.size(); ++j) {
    const double x = f.px(double(j)) - bw / 2;
    const double y = std::min(f.py(values[j]), f.py(0));
    const double h = std::abs(f.py(values[j]) - f.py(0));
    s << "<rect class=\"bar\" x=\"" << x << "\" y=\"" << y << "\" width=\"" << bw << "\" height=\""
      << std::max(h, 0.5) << "\" fill=\"" << (values[j] >= 0 ? "#D55E00" : "#009E73")
      << "\"><title>experience " << j << ": " << num(values[j], 4) << "</title></rect>\n";
    s << "<text x=\"" << x + bw / 2 << "\" y=\"" << y - 4 << "\" text-anchor=\"middle\">" << num(values[j], 2)
      << "</text>\n";
  }
  if (values.empty()) {
    s << "<text x=\"" << f.w / 2 << "\" y=\"" << f.h / 2 << "\" text-anchor=\"middle\">"
      << "needs two or more trained experiences</text>\n";
  }
  s << "</svg>\n";
  return s.str();
}

struct EpochPoint {
  int64_t experience;
  double loss, accuracy;
};

std::vector<EpochPoint> read_train_epochs(const fs::path& path) {
  std::vector<EpochPoint> points;
  std::ifstream f(path);
  if (!f) return points;
  std::string line;
  for (int64_t n = 1; std::getline(f, line); ++n) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      throw Error("report: '" + path.string() + "' line " + std::to_string(n) + " is not a JSON object");
    }
    if (j.value("event", "") != "train_epoch") continue;
    const auto loss = j.find("loss");
    if (loss == j.end() || !loss->is_number()) continue;
    const auto acc = j.find("accuracy");
    const auto exp = j.find("experience");
    points.push_back({exp != j.end() && exp->is_number_integer() ? exp->get<int64_t>() : 0, loss->get<double>(),
                      acc != j.end() && acc->is_number() ? acc->get<double>() : NAN});
  }
  return points;
}

std::string loss_curve(const std::vector<EpochPoint>& points) {
  Frame f;
  f.w = 560;
  double hi = 0;
  for (const auto& p : points) {
    if (std::isfinite(p.loss)) hi = std::max(hi, p.loss);
  }
  f.x0 = 1, f.x1 = double(std::max<size_t>(2, points.size())), f.y0 = 0, f.y1 = hi > 0 ? hi * 1.05 : 1;
  std::vector<double> ticks;
  const size_t step = std::max<size_t>(1, points.size() / 10);
  for (size_t i = 1; i <= points.size(); i += step) ticks.push_back(double(i));
  std::ostringstream s;
  s << svg_open(f, "loss-curve");
  s << axes(f, "Training loss (mean per epoch)", "epoch (all experiences)", "loss", ticks, 3);
  std::string line;
  for (size_t i = 0; i < points.size(); ++i) {
    if (!std::isfinite(points[i].loss)) continue;
    const double x = f.px(double(i + 1)), y = f.py(points[i].loss);
    line += num(x, 1) + "," + num(y, 1) + " ";
    s << "<circle cx=\"" << x << "\" cy=\"" << y << "\" r=\"3\" fill=\"" << color(size_t(points[i].experience))
      << "\"><title>experience " << points[i].experience << ": loss " << num(points[i].loss, 4)
      << "</title></circle>\n";
  }
  if (!line.empty()) {
    s << "<polyline class=\"series\" fill=\"none\" stroke=\"#444\" stroke-width=\"1.5\" points=\"" << line
      << "\"/>\n";
  } else {
    s << "<text x=\"" << f.w / 2 << "\" y=\"" << f.h / 2 << "\" text-anchor=\"middle\">"
      << "no training epochs in metrics.jsonl</text>\n";
  }
  s << "</svg>\n";
  return s.str();
}

std::string config_table(const nlohmann::json& config) {
  std::ostringstream s;
  s << "<table id=\"configuration\"><tr><th>option</th><th>value</th></tr>\n";
  if (config.is_object()) {
    for (const auto& [k, v] : config.items()) {
      std::string key = "--" + k;
      std::replace(key.begin(), key.end(), '_', '-');
      s << "<tr><td>" << escape(key) << "</td><td>" << escape(v.is_string() ? v.get<std::string>() : v.dump())
        << "</td></tr>\n";
    }
  }
  s << "</table>\n";
  return s.str();
}

// ---------------------------------------------------------------- one run

std::string bytes_text(double b) {
  if (!std::isfinite(b) || b < 0) return "-";
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) b /= 1024, ++u;
  return u == 0 ? num(b, 0) + " B" : num(b, 1) + " " + units[u];
}

double number_or_nan(const nlohmann::json& j, const std::string& key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : NAN;
}

void write_page(const fs::path& out, const std::string& html) {
  const fs::path tmp = out.string() + ".tmp";
  {
    std::ofstream f(tmp);
    f << html;
    f.flush();
    if (!f) throw IoError("report: cannot write '" + tmp.string() + "'");
  }
  std::error_code ec;
  fs::rename(tmp, out, ec);
  if (ec) throw IoError("report: cannot rename '" + tmp.string() + "' to '" + out.string() + "': " + ec.message());
  std::cout << out.string() << "\n";
}

const char* kStyle =
    "<style>body{font-family:sans-serif;margin:24px;color:#111;background:#fff}"
    "svg{background:#fff;border:1px solid #ccc;margin:8px}svg text{font-size:11px;font-family:sans-serif}"
    "svg text.title{font-size:14px;font-weight:bold}.grid{display:flex;flex-wrap:wrap}"
    "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}td.differs{background:#fff3cd}"
    "tr.run td:first-child{white-space:nowrap}"
    ".swatch{display:inline-block;width:12px;height:12px;margin-right:6px;vertical-align:middle}"
    "</style>";

std::string single_run_page(const fs::path& d, const nlohmann::json& results,
                            const std::vector<std::vector<double>>& matrix) {
  const auto epochs = read_train_epochs(d / "metrics.jsonl");
  const double average = results.value("average_accuracy", NAN);
  const double forgetting = results.value("forgetting", NAN);
  const nlohmann::json config = results.value("config", nlohmann::json::object());
  const auto opt = [&](const char* key) {
    const double v = number_or_nan(results, key);
    return std::isfinite(v) ? num(v, 4) : std::string("n/a");
  };
  std::ostringstream html;
  html << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
       << "<title>continua report: " << escape(d.filename().string()) << "</title>\n"
       << kStyle << "</head><body>\n"
       << "<h1>continua run report</h1>\n"
       << "<p>" << escape(fs::absolute(d).string()) << ": average accuracy <b>" << num(average, 4)
       << "</b>, forgetting <b>" << num(forgetting, 4) << "</b>, " << matrix.size() << " experience(s) trained"
       << (results.value("complete", true) ? "" : " (incomplete run)") << ".</p>\n"
       << "<p>backward transfer <b>" << opt("backward_transfer") << "</b>, forward transfer <b>"
       << opt("forward_transfer") << "</b>, average incremental accuracy <b>" << opt("average_incremental_accuracy")
       << "</b>; training " << num(number_or_nan(results, "train_seconds"), 1) << " s, evaluation "
       << num(number_or_nan(results, "eval_seconds"), 1) << " s, checkpoints "
       << num(number_or_nan(results, "checkpoint_seconds"), 2) << " s (last "
       << bytes_text(number_or_nan(results, "checkpoint_bytes")) << "), peak memory "
       << bytes_text(number_or_nan(results, "peak_resident_bytes")) << ".</p>\n"
       << "<p>state digest <code>" << escape(results.value("state_digest", std::string("-"))) << "</code></p>\n"
       << "<div class=\"grid\">\n"
       << heat_map(matrix) << accuracy_over_time(matrix) << forgetting_bars(matrix, forgetting)
       << loss_curve(epochs) << "</div>\n<h2>Configuration</h2>\n"
       << config_table(config) << "</body></html>\n";
  return html.str();
}

// ---------------------------------------------------------------- comparison

struct Stat {
  double mean = NAN;
  double sd = NAN;  // NaN for a single run
};

// One row of the comparison: a single run, or a --seeds run over its seeds.
struct RunSummary {
  std::string dir, name, strategy;
  nlohmann::json config;
  std::vector<uint64_t> seeds;  // empty: a single run
  bool complete = true;
  std::map<std::string, Stat> stats;
  std::vector<std::vector<double>> matrix;  // mean over seeds
  // Average accuracy on the experiences seen, after each experience.
  std::vector<double> curve, curve_sd;
};

const std::vector<std::string>& table_metrics() {
  static const std::vector<std::string> keys = {
      "average_accuracy", "forgetting",  "backward_transfer", "forward_transfer", "average_incremental_accuracy",
      "train_seconds",    "eval_seconds", "checkpoint_seconds", "checkpoint_bytes", "peak_resident_bytes",
      "memory_samples"};
  return keys;
}

std::vector<double> seen_average_curve(const std::vector<std::vector<double>>& m) {
  std::vector<double> c;
  for (size_t i = 0; i < m.size(); ++i) {
    const size_t seen = std::min(i + 1, m[i].size());
    double sum = 0;
    for (size_t j = 0; j < seen; ++j) sum += m[i][j];
    c.push_back(seen ? sum / double(seen) : NAN);
  }
  return c;
}

RunSummary load_run(const std::string& dir) {
  const fs::path d(dir);
  const fs::path results_path = d / "results.json";
  const nlohmann::json results = read_json(results_path);
  RunSummary r;
  r.dir = dir;
  r.name = fs::absolute(d).lexically_normal().filename().string();
  if (r.name.empty()) r.name = fs::absolute(d).lexically_normal().parent_path().filename().string();
  r.config = results.value("config", nlohmann::json::object());
  if (!r.config.is_object()) throw Error("report: '" + results_path.string() + "': config is not an object");
  r.strategy = r.config.value("strategy", std::string("?"));
  r.complete = results.value("complete", true);
  if (results.contains("seeds")) {  // a --seeds run: mean and std over the seeds
    const auto& seeds = results["seeds"];
    if (!seeds.is_array() || seeds.empty()) {
      throw Error("report: '" + results_path.string() + "': seeds is not a list of seeds");
    }
    for (const auto& s : seeds) {
      if (!s.is_number_unsigned()) throw Error("report: '" + results_path.string() + "': seeds holds a non-seed");
      r.seeds.push_back(s.get<uint64_t>());
    }
    const nlohmann::json mean = results.value("mean", nlohmann::json::object());
    const nlohmann::json sd = results.value("std", nlohmann::json::object());
    for (const auto& key : table_metrics()) r.stats[key] = {number_or_nan(mean, key), number_or_nan(sd, key)};
    r.matrix = read_matrix(results, results_path.string());
    // The curve per seed, from the seeds' own results where they are.
    std::vector<std::vector<double>> curves;
    for (const auto& run : results.value("runs", nlohmann::json::array())) {
      if (!run.is_object() || !run.value("complete", false) || !run.contains("dir") || !run["dir"].is_string()) {
        continue;
      }
      const fs::path seed_results = d / run["dir"].get<std::string>() / "results.json";
      if (!fs::exists(seed_results)) continue;
      curves.push_back(seen_average_curve(read_matrix(read_json(seed_results), seed_results.string())));
    }
    r.curve = seen_average_curve(r.matrix);
    r.curve_sd.assign(r.curve.size(), 0.0);
    if (curves.size() > 1) {
      for (size_t i = 0; i < r.curve.size(); ++i) {
        double m = 0, ss = 0;
        size_t n = 0;
        for (const auto& c : curves) {
          if (i < c.size()) m += c[i], ++n;
        }
        if (n < 2) continue;
        m /= double(n);
        for (const auto& c : curves) {
          if (i < c.size()) ss += (c[i] - m) * (c[i] - m);
        }
        r.curve[i] = m;
        r.curve_sd[i] = std::sqrt(ss / double(n - 1));
      }
    }
  } else {
    for (const auto& key : table_metrics()) r.stats[key] = {number_or_nan(results, key), NAN};
    r.matrix = read_matrix(results, results_path.string());
    r.curve = seen_average_curve(r.matrix);
  }
  return r;
}

// The options worth a column: the strategy's own, and those that differ
// between the runs compared.
std::map<std::string, nlohmann::json> key_options(const RunSummary& r, const std::vector<RunSummary>& all) {
  static const std::set<std::string> kSkip = {"strategy", "seed", "seeds", "data_dir"};
  std::set<std::string> strategy_keys;
  for (const auto& use : all_strategy_options()) strategy_keys.insert(use.option.config_key());
  std::map<std::string, nlohmann::json> out;
  for (const auto& [key, value] : r.config.items()) {
    if (kSkip.count(key)) continue;
    bool differs = false;
    for (const auto& other : all) {
      const auto it = other.config.find(key);
      if (it == other.config.end() || *it != value) differs = true;
    }
    if (strategy_keys.count(key) || (differs && all.size() > 1)) out[key] = value;
  }
  return out;
}

std::string value_text(const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

nlohmann::json table_json(const std::vector<RunSummary>& runs) {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& r : runs) {
    nlohmann::json row = {{"run", r.name}, {"dir", r.dir}, {"strategy", r.strategy}, {"complete", r.complete}};
    row["seeds"] = r.seeds.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.seeds);
    nlohmann::json opts = nlohmann::json::object();
    for (const auto& [k, v] : key_options(r, runs)) opts[k] = v;
    row["key_options"] = opts;
    for (const auto& key : table_metrics()) {
      const Stat& st = r.stats.at(key);
      row[key] = {{"mean", std::isfinite(st.mean) ? nlohmann::json(st.mean) : nlohmann::json(nullptr)},
                  {"std", std::isfinite(st.sd) ? nlohmann::json(st.sd) : nlohmann::json(nullptr)}};
    }
    row["accuracy_matrix"] = r.matrix;
    rows.push_back(row);
  }
  return rows;
}

std::string stat_text(const Stat& s, int digits) {
  if (!std::isfinite(s.mean)) return "n/a";
  std::string t = num(s.mean, digits);
  if (std::isfinite(s.sd)) t += " ± " + num(s.sd, digits);
  return t;
}

// A marker shape per run, beside its colour, so five lines stay apart in grey too.
std::string marker(size_t k, double x, double y, const char* fill) {
  std::ostringstream s;
  switch (k % 5) {
    case 0: s << "<circle cx=\"" << x << "\" cy=\"" << y << "\" r=\"4\" fill=\"" << fill << "\"/>"; break;
    case 1: s << "<rect x=\"" << x - 4 << "\" y=\"" << y - 4 << "\" width=\"8\" height=\"8\" fill=\"" << fill << "\"/>"; break;
    case 2:
      s << "<polygon points=\"" << x << "," << y - 5 << " " << x + 5 << "," << y + 4 << " " << x - 5 << "," << y + 4
        << "\" fill=\"" << fill << "\"/>";
      break;
    case 3:
      s << "<polygon points=\"" << x << "," << y - 5 << " " << x + 5 << "," << y << " " << x << "," << y + 5 << " "
        << x - 5 << "," << y << "\" fill=\"" << fill << "\"/>";
      break;
    default:
      s << "<path d=\"M" << x - 4 << "," << y - 4 << "L" << x + 4 << "," << y + 4 << "M" << x - 4 << "," << y + 4
        << "L" << x + 4 << "," << y - 4 << "\" stroke=\"" << fill << "\" stroke-width=\"2.5\"/>";
  }
  return s.str();
}

const char* kDashes[] = {"", "6,3", "2,3", "8,3,2,3", "1,0"};

std::string comparison_plot(const std::vector<RunSummary>& runs) {
  Frame f;
  f.w = 900, f.h = 420, f.right = 240, f.top = 44;
  size_t steps = 1;
  double lo = 1;
  for (const auto& r : runs) {
    steps = std::max(steps, r.curve.size());
    for (size_t i = 0; i < r.curve.size(); ++i) {
      if (std::isfinite(r.curve[i])) lo = std::min(lo, r.curve[i] - (i < r.curve_sd.size() ? r.curve_sd[i] : 0));
    }
  }
  // The lowest of 0.8, 0.6, 0.4, 0.2, 0 below every point: four grid steps of round size.
  double y0 = 0.8;
  while (y0 > 0 && y0 > lo - 0.02) y0 -= 0.2;
  // A margin beside the first and last experience for the spread-out points.
  f.x0 = 0.9, f.x1 = double(std::max<size_t>(2, steps)) + 0.1, f.y0 = std::max(0.0, y0), f.y1 = 1;
  std::vector<double> ticks;
  for (size_t i = 1; i <= steps; ++i) ticks.push_back(double(i));
  std::ostringstream s;
  s << svg_open(f, "comparison-accuracy");
  s << axes(f, "Average accuracy on the experiences seen", "experiences trained", "accuracy", ticks, 2);
  for (size_t k = 0; k < runs.size(); ++k) {
    const auto& r = runs[k];
    const char* c = color(k);
    // Each run's points a few pixels apart, so runs with equal accuracies stay visible.
    const double dx = (double(k) - double(runs.size() - 1) / 2) * 4;
    const auto px = [&](size_t i) { return f.px(double(i + 1)) + dx; };
    // The ± std band over seeds.
    if (!r.seeds.empty() && r.curve_sd.size() == r.curve.size()) {
      std::string upper, lower;
      for (size_t i = 0; i < r.curve.size(); ++i) {
        if (!std::isfinite(r.curve[i])) continue;
        upper += num(px(i), 1) + "," + num(f.py(std::min(1.0, r.curve[i] + r.curve_sd[i])), 1) + " ";
      }
      for (size_t i = r.curve.size(); i-- > 0;) {
        if (!std::isfinite(r.curve[i])) continue;
        lower += num(px(i), 1) + "," + num(f.py(std::max(f.y0, r.curve[i] - r.curve_sd[i])), 1) + " ";
      }
      s << "<polygon class=\"band\" points=\"" << upper << lower << "\" fill=\"" << c
        << "\" fill-opacity=\"0.10\" stroke=\"none\"/>\n";
    }
    std::string points;
    for (size_t i = 0; i < r.curve.size(); ++i) {
      if (!std::isfinite(r.curve[i])) continue;
      points += num(px(i), 1) + "," + num(f.py(r.curve[i]), 1) + " ";
    }
    s << "<polyline class=\"series\" fill=\"none\" stroke=\"" << c << "\" stroke-width=\"2\""
      << (*kDashes[k % 5] ? std::string(" stroke-dasharray=\"") + kDashes[k % 5] + "\"" : std::string())
      << " points=\"" << points << "\"/>\n";
    for (size_t i = 0; i < r.curve.size(); ++i) {
      if (!std::isfinite(r.curve[i])) continue;
      s << "<g class=\"point\">" << marker(k, px(i), f.py(r.curve[i]), c) << "<title>"
        << escape(r.name) << ", after " << i + 1 << ": " << num(r.curve[i], 4)
        << (r.seeds.empty() ? "" : " ± " + num(r.curve_sd[i], 4)) << "</title></g>\n";
    }
    // Legend: marker, line and name.
    const double ly = f.top + 8 + 22 * double(k);
    const double lx = f.w - f.right + 14;
    s << "<line x1=\"" << lx << "\" y1=\"" << ly << "\" x2=\"" << lx + 26 << "\" y2=\"" << ly << "\" stroke=\"" << c
      << "\" stroke-width=\"2\""
      << (*kDashes[k % 5] ? std::string(" stroke-dasharray=\"") + kDashes[k % 5] + "\"" : std::string()) << "/>"
      << marker(k, lx + 13, ly, c) << "<text class=\"legend\" x=\"" << lx + 34 << "\" y=\"" << ly + 4 << "\">"
      << escape(r.name.size() > 28 ? r.name.substr(0, 27) + "…" : r.name) << "</text>\n";
  }
  if (std::any_of(runs.begin(), runs.end(), [](const RunSummary& r) { return !r.seeds.empty(); })) {
    s << "<text x=\"" << f.w - f.right + 14 << "\" y=\"" << f.top + 8 + 22 * double(runs.size()) + 8
      << "\">bands: ± 1 std over seeds</text>\n";
  }
  s << "</svg>\n";
  return s.str();
}

std::string comparison_table(const std::vector<RunSummary>& runs) {
  std::ostringstream s;
  s << "<table id=\"runs\"><tr><th>run</th><th>strategy</th><th>key options</th><th>seeds</th>"
    << "<th>average accuracy</th><th>forgetting</th><th>BWT</th><th>FWT</th><th>train time (s)</th>"
    << "<th>checkpoint</th></tr>\n";
  for (size_t k = 0; k < runs.size(); ++k) {
    const auto& r = runs[k];
    std::string opts;
    for (const auto& [key, v] : key_options(r, runs)) {
      std::string flag = "--" + key;
      std::replace(flag.begin(), flag.end(), '_', '-');
      opts += (opts.empty() ? "" : " ") + flag + " " + value_text(v);
    }
    std::string seeds;
    for (uint64_t x : r.seeds) seeds += (seeds.empty() ? "" : ",") + std::to_string(x);
    s << "<tr class=\"run\"><td><span class=\"swatch\" style=\"background:" << color(k) << "\"></span>"
      << escape(r.name) << (r.complete ? "" : " (incomplete)") << "</td><td>" << escape(r.strategy) << "</td><td>"
      << escape(opts) << "</td><td>" << (seeds.empty() ? "1 run" : escape(seeds)) << "</td><td class=\"num\">"
      << stat_text(r.stats.at("average_accuracy"), 4) << "</td><td class=\"num\">"
      << stat_text(r.stats.at("forgetting"), 4) << "</td><td class=\"num\">"
      << stat_text(r.stats.at("backward_transfer"), 4) << "</td><td class=\"num\">"
      << stat_text(r.stats.at("forward_transfer"), 4) << "</td><td class=\"num\">"
      << stat_text(r.stats.at("train_seconds"), 2) << "</td><td class=\"num\">"
      << (r.stats.at("checkpoint_bytes").mean > 0 ? bytes_text(r.stats.at("checkpoint_bytes").mean) : "-")
      << "</td></tr>\n";
  }
  s << "</table>\n";
  return s.str();
}

std::string configurations_table(const std::vector<RunSummary>& runs) {
  std::set<std::string> keys;
  for (const auto& r : runs) {
    for (const auto& [k, v] : r.config.items()) keys.insert(k);
  }
  std::ostringstream s;
  s << "<table id=\"configurations\"><tr><th>option</th>";
  for (const auto& r : runs) s << "<th>" << escape(r.name) << "</th>";
  s << "</tr>\n";
  for (const auto& key : keys) {
    std::vector<std::string> cells;
    for (const auto& r : runs) cells.push_back(r.config.contains(key) ? value_text(r.config[key]) : "");
    const bool differs = std::any_of(cells.begin(), cells.end(), [&](const std::string& c) { return c != cells[0]; });
    std::string flag = "--" + key;
    std::replace(flag.begin(), flag.end(), '_', '-');
    s << "<tr><td>" << escape(flag) << "</td>";
    for (const auto& c : cells) s << "<td" << (differs ? " class=\"differs\"" : "") << ">" << escape(c) << "</td>";
    s << "</tr>\n";
  }
  s << "</table>\n";
  return s.str();
}

std::string comparison_page(const std::vector<RunSummary>& runs) {
  std::ostringstream html;
  html << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
       << "<title>continua comparison: " << runs.size() << " run(s)</title>\n"
       << kStyle << "</head><body>\n<h1>continua comparison</h1>\n"
       << "<p>" << runs.size() << " run(s). Accuracy, forgetting, backward transfer (BWT) and forward transfer "
       << "(FWT) as in docs/metrics.md; with several seeds: mean ± standard deviation over the seeds. "
       << "Checkpoint: the size of the last checkpoint written.</p>\n"
       << comparison_table(runs) << "<div class=\"grid\">\n" << comparison_plot(runs) << "</div>\n"
       << "<h2>Accuracy matrices</h2>\n<div class=\"grid\">\n";
  for (size_t k = 0; k < runs.size(); ++k) {
    const auto& r = runs[k];
    html << heat_map(r.matrix, "accuracy-matrix-" + std::to_string(k),
                     r.name + (r.seeds.empty() ? "" : " (mean of " + std::to_string(r.seeds.size()) + " seeds)"),
                     200.0);
  }
  html << "</div>\n<h2>Configurations</h2>\n<p>Highlighted: options that differ between the runs.</p>\n"
       << configurations_table(runs) << "</body></html>\n";
  return html.str();
}

}  // namespace

int report(const ReportOptions& o) {
  if (o.dirs.empty()) throw InvalidArgument("report: give at least one run folder");
  if (o.dirs.size() == 1 && !o.json) {
    const fs::path d(o.dirs.front());
    const fs::path results_path = d / "results.json";
    const nlohmann::json results = read_json(results_path);
    if (!results.contains("seeds")) {  // one run: its own page
      const auto matrix = read_matrix(results, results_path.string());
      write_page(o.out.empty() ? d / "report.html" : fs::path(o.out), single_run_page(d, results, matrix));
      return 0;
    }
  }
  std::vector<RunSummary> runs;
  std::map<std::string, int> names;
  for (const auto& dir : o.dirs) {
    runs.push_back(load_run(dir));
    // Two folders of one name (a/out, b/out): number them.
    if (const int n = ++names[runs.back().name]; n > 1) runs.back().name += " (" + std::to_string(n) + ")";
  }
  if (o.json) {
    std::cout << table_json(runs).dump(2) << std::endl;
    return 0;
  }
  const fs::path out = !o.out.empty()        ? fs::path(o.out)
                       : o.dirs.size() == 1 ? fs::path(o.dirs.front()) / "report.html"
                                            : fs::path("comparison.html");
  write_page(out, comparison_page(runs));
  return 0;
}

}  // namespace continua::cli
