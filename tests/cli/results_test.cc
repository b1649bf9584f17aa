// results.json's metrics and costs, and `continua run --seeds`, run as a user
// runs them, in separate processes.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <sstream>

#include "test_util.h"

namespace continua {
namespace {

using testing::run_command;
using testing::TempDir;

const std::string kQuick = " --benchmark split-synthetic --hidden 32 --threads 1 --verbosity quiet";

nlohmann::json results(const std::string& dir) {
  return nlohmann::json::parse(testing::read_file(dir + "/results.json"));
}

std::vector<nlohmann::json> jsonl(const std::string& path) {
  std::vector<nlohmann::json> rows;
  std::istringstream in(testing::read_file(path));
  for (std::string line; std::getline(in, line);) rows.push_back(nlohmann::json::parse(line));
  return rows;
}

std::vector<nlohmann::json> without_costs(const std::vector<nlohmann::json>& rows) {
  std::vector<nlohmann::json> kept;
  for (const auto& r : rows) {
    if (r.value("event", "") != "costs") kept.push_back(r);
  }
  return kept;
}

class Results : public ::testing::Test {
 protected:
  std::string bin = testing::continua_bin();
  TempDir d;
};

// Five processes of one experience each report what one process reports:
// the same metrics, the initial evaluation done once, and the costs of every
// experience (the training and checkpoint times of the earlier processes come
// back from the checkpoint and its note in --out).
TEST_F(Results, MetricsAndTheWholeRunsCostsSurviveResumes) {
  const std::string common = bin + " run --strategy replay --mem-size 100" + kQuick;
  auto r = run_command(common + " --out " + d.file("ref"));
  ASSERT_EQ(r.status, 0) << r.output;
  for (int i = 0; i < 6; ++i) {  // the sixth has nothing left to train
    r = run_command(common + " --checkpoint " + d.file("ck.st") + " --max-experiences 1 --out " + d.file("res"));
    ASSERT_EQ(r.status, 0) << r.output;
  }
  const auto ref = results(d.file("ref")), res = results(d.file("res"));
  EXPECT_EQ(res["state_digest"], ref["state_digest"]);
  for (const char* key : {"accuracy_matrix", "initial_accuracy", "backward_transfer", "forward_transfer",
                          "average_incremental_accuracy", "forgetting_per_experience", "loss_matrix",
                          "accuracy_per_class", "confusion_matrices", "train_loss_per_experience"}) {
    EXPECT_EQ(res[key], ref[key]) << key;
  }
  // The metrics are those of the accuracy matrix (docs/metrics.md).
  const auto a = ref["accuracy_matrix"].get<std::vector<std::vector<double>>>();
  const auto b = ref["initial_accuracy"].get<std::vector<double>>();
  ASSERT_EQ(a.size(), 5u);
  ASSERT_EQ(b.size(), 5u);
  double bwt = 0, fwt = 0;
  for (size_t j = 0; j < 4; ++j) bwt += (a[4][j] - a[j][j]) / 4;
  for (size_t j = 1; j < 5; ++j) fwt += (a[j - 1][j] - b[j]) / 4;
  EXPECT_NEAR(ref["backward_transfer"].get<double>(), bwt, 1e-12);
  EXPECT_NEAR(ref["forward_transfer"].get<double>(), fwt, 1e-12);
  EXPECT_EQ(ref["forgetting_per_experience"].size(), 4u);
  ASSERT_EQ(ref["confusion_matrices"].size(), 5u);
  EXPECT_EQ(ref["confusion_matrices"][4].size(), 10u);  // 10 classes
  EXPECT_EQ(ref["accuracy_per_class"].size(), 10u);

  // metrics.jsonl: equal but for the costs rows' times; the initial model
  // evaluated once (5 test experiences); a metrics row and a costs row per experience.
  const auto ref_rows = jsonl(d.file("ref") + "/metrics.jsonl"), res_rows = jsonl(d.file("res") + "/metrics.jsonl");
  EXPECT_EQ(without_costs(res_rows), without_costs(ref_rows));
  int initial = 0, metrics = 0, costs = 0;
  for (const auto& row : res_rows) {
    const std::string event = row.value("event", "");
    initial += event == "eval" && row.value("trained_experiences", -1) == 0;
    metrics += event == "metrics";
    costs += event == "costs";
  }
  EXPECT_EQ(initial, 5);
  EXPECT_EQ(metrics, 5);
  EXPECT_EQ(costs, 5);

  // Costs of every experience, from all six processes.
  const auto& per = res["costs"]["per_experience"];
  ASSERT_EQ(per.size(), 5u) << res["costs"].dump();
  double train = 0;
  for (size_t i = 0; i < 5; ++i) {
    const auto& c = per[i];
    EXPECT_EQ(c["experience"], i);
    EXPECT_GT(c["train_seconds"].get<double>(), 0) << c.dump();
    EXPECT_GT(c["eval_seconds"].get<double>(), 0) << c.dump();
    EXPECT_EQ(c["checkpoint_saves"], 1) << c.dump();  // the save after it, timed by the process that wrote it
    EXPECT_GT(c["checkpoint_seconds"].get<double>(), 0) << c.dump();
    EXPECT_GT(c["checkpoint_bytes"].get<int64_t>(), 0) << c.dump();
    EXPECT_GT(c["peak_resident_bytes"].get<int64_t>(), 0) << c.dump();
    EXPECT_EQ(c["memory_samples"], 100) << c.dump();  // --mem-size 100, full from the first experience
    EXPECT_EQ(c["memory_bytes"], 100 * 12) << c.dump();  // int32 experience and position, float32 priority
    if (i > 0) EXPECT_GT(c["load_seconds"].get<double>(), 0) << c.dump();
    train += c["train_seconds"].get<double>();
  }
  EXPECT_NEAR(res["train_seconds"].get<double>(), train, 1e-9);
  EXPECT_EQ(res["checkpoint_bytes"].get<int64_t>(), int64_t(std::filesystem::file_size(d.file("ck.st"))));
  EXPECT_EQ(res["checkpoint_saves"], 5);
  EXPECT_EQ(ref["checkpoint_saves"], 0);  // no checkpoint
  EXPECT_EQ(res["memory_samples"], 100);
}

// --seeds: each seed is the run --seed gives, in its own folder, and the top
// results.json holds mean and std (n - 1) of every scalar metric.
// Interrupted inside the second seed, the run resumes that seed.
TEST_F(Results, SeedsRunOncePerSeedAndResumeTheSeedThatStopped) {
  const std::string common = bin + " run --strategy ewc" + kQuick;
  auto r = run_command(common + " --seeds 1,2 --out " + d.file("s"));
  ASSERT_EQ(r.status, 0) << r.output;
  r = run_command(common + " --seed 2 --out " + d.file("single"));
  ASSERT_EQ(r.status, 0) << r.output;
  const auto top = results(d.file("s"));
  const auto s1 = results(d.file("s") + "/seed-1"), s2 = results(d.file("s") + "/seed-2");
  EXPECT_EQ(s2["state_digest"], results(d.file("single"))["state_digest"]);
  EXPECT_NE(s1["state_digest"], s2["state_digest"]);
  EXPECT_EQ(s1["config"]["seed"], 1);
  EXPECT_EQ(top["seeds"], nlohmann::json({1, 2}));
  EXPECT_TRUE(top["complete"].get<bool>());
  EXPECT_EQ(top["config"]["seeds"], nlohmann::json({1, 2}));
  EXPECT_FALSE(top["config"].contains("seed"));
  for (const char* key : {"average_accuracy", "forgetting", "backward_transfer", "forward_transfer",
                          "average_incremental_accuracy", "train_seconds", "peak_resident_bytes"}) {
    const double x = s1[key].get<double>(), y = s2[key].get<double>();
    const double mean = (x + y) / 2;
    EXPECT_NEAR(top["mean"][key].get<double>(), mean, 1e-12) << key;
    // n - 1 = 1: sqrt((x - m)^2 + (y - m)^2)
    EXPECT_NEAR(top["std"][key].get<double>(), std::sqrt(2 * (x - mean) * (x - mean)), 1e-12) << key;
  }
  EXPECT_NEAR(top["accuracy_matrix"][4][0].get<double>(),
              (s1["accuracy_matrix"][4][0].get<double>() + s2["accuracy_matrix"][4][0].get<double>()) / 2, 1e-12);

  // 7 experiences: seed 1 (5) and 2 of seed 2; then the rest.
  const std::string resumable = bin + " run --strategy ewc --benchmark split-synthetic --hidden 32 --threads 1" +
                                " --seeds 1,2 --checkpoint-dir " + d.file("ckd") + " --out " + d.file("t");
  r = run_command(resumable + " --max-experiences 7 --verbosity quiet");
  ASSERT_EQ(r.status, 0) << r.output;
  auto partial = results(d.file("t"));
  EXPECT_FALSE(partial["complete"].get<bool>());
  EXPECT_TRUE(partial["runs"][0]["complete"].get<bool>());
  EXPECT_EQ(partial["runs"][1]["trained_experiences"], 2);
  r = run_command(resumable + " --verbosity normal");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from '" + d.file("ckd") + "/seed-2/"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("ckd/seed-1/"), std::string::npos) << r.output;  // seed 1 was done
  EXPECT_NE(r.output.find("over 2 of 2 seed(s): average accuracy"), std::string::npos) << r.output;
  const auto resumed = results(d.file("t"));
  EXPECT_TRUE(resumed["complete"].get<bool>());
  EXPECT_EQ(resumed["runs"][0]["state_digest"], s1["state_digest"]);
  EXPECT_EQ(resumed["runs"][1]["state_digest"], s2["state_digest"]);
  EXPECT_EQ(resumed["mean"]["average_accuracy"], top["mean"]["average_accuracy"]);

  // --checkpoint PATH: a file per seed beside it.
  r = run_command(common + " --seeds 3 --checkpoint " + d.file("c.st") + " --out " + d.file("u"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(std::filesystem::exists(d.file("c.seed-3.st")));
}

TEST_F(Results, SeedsAndSeedTogetherAreAnErrorNamingBoth) {
  auto r = run_command(bin + " run --seeds 1,2 --seed 3" + kQuick);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--seeds"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--seed "), std::string::npos) << r.output;
  // One from the config file, one from the command line.
  run_command("printf 'seed: 3\\n' > " + d.file("c.yaml"));
  r = run_command(bin + " run --config " + d.file("c.yaml") + " --seeds 1,2" + kQuick);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--seeds"), std::string::npos) << r.output;
  for (const char* bad : {"1,,2", "1,x", "1,1", "-1"}) {
    r = run_command(bin + " run --seeds=" + bad + kQuick);
    EXPECT_EQ(r.status, 1) << bad << ": " << r.output;
    EXPECT_NE(r.output.find("--seeds"), std::string::npos) << r.output;
  }
}

}  // namespace
}  // namespace continua
