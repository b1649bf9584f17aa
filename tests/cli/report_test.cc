// `continua report DIR`: the HTML page holds the plots, uses nothing from the
// network, and renders (headless Chromium) to a screenshot that is not blank.
#include <gtest/gtest.h>

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
