// `continua report DIR`: a self-contained HTML page (DIR/report.html) with
// the plots of a run, from DIR/results.json and DIR/metrics.jsonl. No
// network, no scripts: every plot is inline SVG written here.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "continua/errors.h"

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

std::string heat_map(const std::vector<std::vector<double>>& m) {
  size_t cols = 0;
  for (const auto& r : m) cols = std::max(cols, r.size());
  const double cell = std::clamp(360.0 / double(std::max<size_t>(1, std::max(cols, m.size()))), 24.0, 64.0);
  Frame f;
  f.left = 90, f.top = 60, f.right = 20, f.bottom = 20;
  f.w = f.left + cell * double(cols) + f.right;
  f.h = f.top + cell * double(m.size()) + f.bottom + 30;
  f.w = std::max(f.w, 320.0);
  std::ostringstream s;
  s << svg_open(f, "accuracy-matrix");
  s << "<text class=\"title\" x=\"" << f.w / 2 << "\" y=\"20\" text-anchor=\"middle\">Accuracy matrix</text>\n";
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

}  // namespace

int report(const std::string& dir) {
  const fs::path d(dir);
  const fs::path results_path = d / "results.json";
  const nlohmann::json results = read_json(results_path);
  const auto matrix = read_matrix(results, results_path.string());
  const auto epochs = read_train_epochs(d / "metrics.jsonl");
  const double average = results.value("average_accuracy", NAN);
  const double forgetting = results.value("forgetting", NAN);
  const nlohmann::json config = results.value("config", nlohmann::json::object());

  std::ostringstream html;
  html << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
       << "<title>continua report: " << escape(d.filename().string()) << "</title>\n"
       << "<style>body{font-family:sans-serif;margin:24px;color:#111;background:#fff}"
       << "svg{background:#fff;border:1px solid #ccc;margin:8px}svg text{font-size:11px;font-family:sans-serif}"
       << "svg text.title{font-size:14px;font-weight:bold}.grid{display:flex;flex-wrap:wrap}"
       << "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
       << "</style></head><body>\n"
       << "<h1>continua run report</h1>\n"
       << "<p>" << escape(fs::absolute(d).string()) << ": average accuracy <b>" << num(average, 4)
       << "</b>, forgetting <b>" << num(forgetting, 4) << "</b>, " << matrix.size() << " experience(s) trained"
       << (results.value("complete", true) ? "" : " (incomplete run)") << ".</p>\n"
       << "<p>state digest <code>" << escape(results.value("state_digest", std::string("-"))) << "</code></p>\n"
       << "<div class=\"grid\">\n"
       << heat_map(matrix) << accuracy_over_time(matrix) << forgetting_bars(matrix, forgetting)
       << loss_curve(epochs) << "</div>\n<h2>Configuration</h2>\n"
       << config_table(config) << "</body></html>\n";

  const fs::path out = d / "report.html";
  const fs::path tmp = d / "report.html.tmp";
  {
    std::ofstream f(tmp);
    f << html.str();
    f.flush();
    if (!f) throw IoError("report: cannot write '" + tmp.string() + "'");
  }
  std::error_code ec;
  fs::rename(tmp, out, ec);
  if (ec) throw IoError("report: cannot rename '" + tmp.string() + "' to '" + out.string() + "': " + ec.message());
  std::cout << out.string() << "\n";
  return 0;
}

}  // namespace continua::cli
