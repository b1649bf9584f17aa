// `continua report DIR [DIR...]`: the HTML page holds the plots, uses nothing
// from the network, and renders (headless Chromium) to a screenshot that is
// not blank; several runs (and --seeds runs) make a comparison page, and
// --json its table.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <sstream>

#include "test_util.h"

namespace continua {
namespace {

using testing::run_command;
using testing::TempDir;

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

class Report : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = run_command(bin + " run --benchmark split-synthetic --experiences 5 --epochs 2 --strategy replay"
                               " --threads 1 --verbosity quiet --out " + d.file("out"));
    ASSERT_EQ(r.status, 0) << r.output;
    r = run_command(bin + " report " + d.file("out"));
    ASSERT_EQ(r.status, 0) << r.output;
    html = testing::read_file(d.file("out") + "/report.html");
  }
  std::string bin = testing::continua_bin();
  TempDir d;
  std::string html;
};

TEST_F(Report, PageHoldsThePlotsAndTheConfiguration) {
  for (const char* id : {"accuracy-matrix", "accuracy-over-time", "forgetting", "loss-curve"}) {
    EXPECT_NE(html.find("<svg id=\"" + std::string(id) + "\""), std::string::npos) << id;
  }
  EXPECT_EQ(count(html, "<rect class=\"cell\""), 25u);  // 5 x 5 accuracy matrix
  EXPECT_EQ(count(html, "<rect class=\"bar\""), 4u);    // forgetting of the first 4 experiences
  EXPECT_EQ(count(html, "<polyline class=\"series\""), 5u + 1u);  // one per experience + the loss
  EXPECT_NE(html.find("Training loss"), std::string::npos);
  EXPECT_EQ(count(html, "<circle"), 15u + 10u);  // accuracy points (i >= j) + 2 epochs x 5 losses
  EXPECT_NE(html.find("<td>--strategy</td><td>replay</td>"), std::string::npos);
  EXPECT_NE(html.find("<td>--epochs</td><td>2</td>"), std::string::npos);
  // Self-contained: no scripts, no external resources.
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("src="), std::string::npos);
  EXPECT_EQ(html.find("href="), std::string::npos);
  EXPECT_EQ(html.find("@import"), std::string::npos);
}

TEST_F(Report, RendersInHeadlessChromiumToANonBlankPage) {
  std::string chromium;
  for (const char* c : {"/usr/bin/chromium", "/usr/bin/chromium-browser"}) {
    if (std::filesystem::exists(c)) chromium = c;
  }
  if (chromium.empty()) GTEST_SKIP() << "chromium is not installed (scripts/install.sh installs it)";
  const std::string png = d.file("report.png");
  auto r = run_command("HOME=" + d.path() + " " + chromium +
                       " --headless --no-sandbox --disable-gpu --hide-scrollbars --screenshot=" + png +
                       " --window-size=1200,1600 file://" + d.file("out") + "/report.html");
  ASSERT_EQ(r.status, 0) << r.output;
  ASSERT_TRUE(std::filesystem::exists(png)) << r.output;
  r = run_command(std::string("/usr/bin/python3 ") + CONTINUA_SOURCE_DIR + "/tests/cli/png_stats.py " + png);
  ASSERT_EQ(r.status, 0) << r.output;
  std::istringstream in(r.output);
  int width = 0, height = 0, colours = 0;
  double non_white = 0;
  in >> width >> height >> colours >> non_white;
  EXPECT_EQ(width, 1200) << r.output;
  EXPECT_EQ(height, 1600) << r.output;
  // A blank page is one colour; text, a heat map and coloured lines are many.
  EXPECT_GT(colours, 50) << r.output;
  EXPECT_GT(non_white, 0.03) << r.output;
}

// Renders `html` in headless Chromium; returns "WIDTH HEIGHT COLOURS NON_WHITE"
// of the screenshot, or an empty string (and skips) without Chromium.
std::string render(const std::string& html, const std::string& png, const std::string& home, int width, int height) {
  std::string chromium;
  for (const char* c : {"/usr/bin/chromium", "/usr/bin/chromium-browser"}) {
    if (std::filesystem::exists(c)) chromium = c;
  }
  if (chromium.empty()) return "";
  auto r = run_command("HOME=" + home + " " + chromium + " --headless --no-sandbox --disable-gpu --hide-scrollbars" +
                       " --screenshot=" + png + " --window-size=" + std::to_string(width) + "," +
                       std::to_string(height) + " file://" + html);
  EXPECT_EQ(r.status, 0) << r.output;
  r = run_command(std::string("/usr/bin/python3 ") + CONTINUA_SOURCE_DIR + "/tests/cli/png_stats.py " + png);
  EXPECT_EQ(r.status, 0) << r.output;
  return r.output;
}

// Five runs, two of them over seeds: the comparison page and its JSON table.
class Comparison : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    d = new TempDir;
    const std::string bin = testing::continua_bin();
    const std::string common = bin + " run --benchmark split-synthetic --hidden 32 --threads 1 --verbosity quiet";
    for (const auto& [name, args] : std::vector<std::pair<std::string, std::string>>{
             {"naive", "--strategy naive --seeds 1,2"},
             {"replay", "--strategy replay --mem-size 100 --seeds 1,2"},
             {"ewc", "--strategy ewc --ewc-lambda 10"},
             {"der", "--strategy der --mem-size 100"},
             {"er-ace", "--strategy er-ace --mem-size 100 --checkpoint " + d->file("er-ace.st")}}) {
      auto r = run_command(common + " " + args + " --out " + d->file(name));
      ASSERT_EQ(r.status, 0) << r.output;
    }
  }
  static void TearDownTestSuite() { delete d; }
  static std::string dirs() {
    std::string s;
    for (const char* n : {"naive", "replay", "ewc", "der", "er-ace"}) s += " " + d->file(n);
    return s;
  }
  static TempDir* d;
  std::string bin = testing::continua_bin();
};
TempDir* Comparison::d = nullptr;

TEST_F(Comparison, PageComparesEveryRunAndRendersReadably) {
  // Default: comparison.html in the current folder.
  auto r = run_command("cd " + d->path() + " && " + bin + " report" + dirs());
  ASSERT_EQ(r.status, 0) << r.output;
  const std::string html = testing::read_file(d->file("comparison.html"));
  EXPECT_EQ(count(html, "<tr class=\"run\">"), 5u);
  EXPECT_NE(html.find("<svg id=\"comparison-accuracy\""), std::string::npos);
  EXPECT_EQ(count(html, "<polyline class=\"series\""), 5u);  // one line per run in one plot
  EXPECT_EQ(count(html, "<polygon class=\"band\""), 2u);     // ± std for the two --seeds runs
  for (int k = 0; k < 5; ++k) {
    EXPECT_NE(html.find("<svg id=\"accuracy-matrix-" + std::to_string(k) + "\""), std::string::npos) << k;
  }
  EXPECT_EQ(count(html, "<rect class=\"cell\""), 5u * 25u);  // five 5 x 5 matrices side by side
  EXPECT_NE(html.find("naive (mean of 2 seeds)"), std::string::npos);
  EXPECT_NE(html.find("<table id=\"configurations\">"), std::string::npos);
  EXPECT_NE(html.find("--ewc-lambda 10"), std::string::npos);  // a key option in the table
  EXPECT_NE(html.find(" ± "), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("src="), std::string::npos);
  EXPECT_EQ(html.find("href="), std::string::npos);

  const std::string stats = render(d->file("comparison.html"), d->file("comparison.png"), d->path(), 1400, 1300);
  if (stats.empty()) GTEST_SKIP() << "chromium is not installed (scripts/install.sh installs it)";
  std::istringstream in(stats);
  int width = 0, height = 0, colours = 0;
  double non_white = 0;
  in >> width >> height >> colours >> non_white;
  EXPECT_EQ(width, 1400) << stats;
  EXPECT_GT(colours, 50) << stats;
  EXPECT_GT(non_white, 0.05) << stats;
}

TEST_F(Comparison, JsonTableHoldsMeanAndStdOverSeeds) {
  auto r = run_command(bin + " report --json" + dirs() + " 2>/dev/null");
  ASSERT_EQ(r.status, 0) << r.output;
  const auto rows = nlohmann::json::parse(r.output);
  ASSERT_EQ(rows.size(), 5u);
  const auto top = nlohmann::json::parse(testing::read_file(d->file("naive") + "/results.json"));
  EXPECT_EQ(rows[0]["run"], "naive");
  EXPECT_EQ(rows[0]["strategy"], "naive");
  EXPECT_EQ(rows[0]["seeds"], nlohmann::json({1, 2}));
  for (const char* key : {"average_accuracy", "forgetting", "backward_transfer", "forward_transfer", "train_seconds"}) {
    EXPECT_EQ(rows[0][key]["mean"], top["mean"][key]) << key;
    EXPECT_EQ(rows[0][key]["std"], top["std"][key]) << key;
  }
  const auto single = nlohmann::json::parse(testing::read_file(d->file("ewc") + "/results.json"));
  EXPECT_EQ(rows[2]["seeds"], nullptr);
  EXPECT_EQ(rows[2]["average_accuracy"]["mean"], single["average_accuracy"]);
  EXPECT_EQ(rows[2]["average_accuracy"]["std"], nullptr);
  EXPECT_EQ(rows[2]["key_options"]["ewc_lambda"], 10.0);
  EXPECT_GT(rows[4]["checkpoint_bytes"]["mean"].get<double>(), 0);  // er-ace wrote a checkpoint
  EXPECT_EQ(rows[1]["accuracy_matrix"], nlohmann::json::parse(testing::read_file(d->file("replay") + "/results.json"))["accuracy_matrix"]);
}

TEST_F(Comparison, OneSeedsFolderOrAnOutFile) {
  // A --seeds folder alone: DIR/report.html compares its seeds' mean.
  auto r = run_command(bin + " report " + d->file("naive"));
  ASSERT_EQ(r.status, 0) << r.output;
  const std::string html = testing::read_file(d->file("naive") + "/report.html");
  EXPECT_EQ(count(html, "<tr class=\"run\">"), 1u);
  EXPECT_EQ(count(html, "<polygon class=\"band\""), 1u);
  r = run_command(bin + " report " + d->file("ewc") + " " + d->file("der") + " --out " + d->file("two.html"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(count(testing::read_file(d->file("two.html")), "<tr class=\"run\">"), 2u);
  // A folder without results among several is named.
  r = run_command(bin + " report " + d->file("ewc") + " " + d->file("nothing-here"));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("nothing-here/results.json"), std::string::npos) << r.output;
}

TEST(ReportErrors, MissingOrDamagedResultsNameTheFile) {
  TempDir d;
  const std::string bin = testing::continua_bin();
  auto r = run_command(bin + " report " + d.path());
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("results.json"), std::string::npos) << r.output;
  run_command("echo '{\"accuracy_matrix\": [[1, \"x\"]]}' > " + d.file("results.json"));
  r = run_command(bin + " report " + d.path());
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("non-number"), std::string::npos) << r.output;
  run_command("echo '{nope' > " + d.file("results.json"));
  r = run_command(bin + " report " + d.path());
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("not a JSON object"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace continua
