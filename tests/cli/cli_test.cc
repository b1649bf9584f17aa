// The `continua` executable, run as a user runs it, in separate processes.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "test_util.h"

namespace continua {
namespace {

using testing::run_command;
using testing::TempDir;

// Small and quick: 500 samples per experience, real Fashion-MNIST.
const std::string kQuick = " --subset 500 --hidden 64 --threads 1 --verbosity quiet";

nlohmann::json results(const std::string& dir) {
  return nlohmann::json::parse(testing::read_file(dir + "/results.json"));
}

// metrics.jsonl without its "costs" rows, whose wall times differ between
// runs, and the number of those rows.
std::pair<std::string, int> without_costs(const std::string& path) {
  std::istringstream in(testing::read_file(path));
  std::string kept;
  int costs = 0;
  for (std::string line; std::getline(in, line);) {
    if (nlohmann::json::parse(line).value("event", "") == "costs") {
      ++costs;
    } else {
      kept += line + "\n";
    }
  }
  return {kept, costs};
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::have_fmnist()) GTEST_SKIP() << "Fashion-MNIST not installed";
  }
  std::string bin = testing::continua_bin();
};

TEST_F(Cli, SameSeedSameDigestAcrossProcesses) {
  TempDir d;
  for (const char* out : {"a", "b"}) {
    auto r = run_command(bin + " run --strategy replay --seed 3" + kQuick + " --out " + d.file(out));
    ASSERT_EQ(r.status, 0) << r.output;
  }
  auto a = results(d.file("a")), b = results(d.file("b"));
  EXPECT_EQ(a["state_digest"].get<std::string>().size(), 64u);
  EXPECT_EQ(a["state_digest"], b["state_digest"]);
  EXPECT_EQ(a["accuracy_matrix"], b["accuracy_matrix"]);
  EXPECT_EQ(a["accuracy_matrix"].size(), 5u);
  auto c = run_command(bin + " run --strategy replay --seed 4" + kQuick + " --out " + d.file("c"));
  ASSERT_EQ(c.status, 0) << c.output;
  EXPECT_NE(results(d.file("c"))["state_digest"], a["state_digest"]);
  // metrics files: a header and one row per epoch and per evaluated experience,
  // the initial model's evaluation (before the first experience) included
  std::ifstream csv(d.file("a") + "/metrics.csv");
  int lines = 0;
  for (std::string l; std::getline(csv, l);) ++lines;
  EXPECT_EQ(lines, 1 + 5 + 5 + 5 * 5);
}

TEST_F(Cli, DefaultRunPrintsAccuracyPerTestExperience) {
  auto r = run_command(bin + " run --subset 300 --hidden 32 --threads 1");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("after 1 experience(s), test accuracy:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("after 5 experience(s), test accuracy:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("state digest"), std::string::npos) << r.output;
}

// Interrupted after every experience (--max-experiences 1, five processes)
// equals one uninterrupted process, for every strategy.
// The strategies the executable registers (`continua strategies --json`).
std::vector<std::string> cli_strategies(const std::string& bin) {
  auto r = run_command(bin + " strategies --json");
  std::vector<std::string> names;
  if (r.status != 0) return names;
  for (const auto& s : nlohmann::json::parse(r.output)) names.push_back(s.at("name"));
  return names;
}

TEST_F(Cli, ResumeAcrossProcessesIsBitExactForEveryStrategy) {
  TempDir d;
  const auto strategies = cli_strategies(bin);
  ASSERT_GE(strategies.size(), 5u);
  for (const std::string& strategy : strategies) {
    const std::string common = bin + " run --strategy " + strategy + kQuick;
    const std::string ref = d.file(std::string(strategy) + "-ref");
    auto r = run_command(common + " --out " + ref);
    ASSERT_EQ(r.status, 0) << r.output;
    const std::string out = d.file(std::string(strategy) + "-resumed");
    const std::string ck = d.file(std::string(strategy) + ".st");
    for (int i = 0; i < 5; ++i) {
      auto step = run_command(common + " --checkpoint " + ck + " --max-experiences 1 --out " + out);
      ASSERT_EQ(step.status, 0) << step.output;
      EXPECT_EQ(results(out)["trained_experiences"], i + 1);
    }
    // A further call has nothing left to train and changes nothing.
    auto again = run_command(common + " --checkpoint " + ck + " --out " + out);
    ASSERT_EQ(again.status, 0) << again.output;
    EXPECT_EQ(results(out)["state_digest"], results(ref)["state_digest"]) << strategy;
    EXPECT_EQ(results(out)["accuracy_matrix"], results(ref)["accuracy_matrix"]) << strategy;
    EXPECT_EQ(testing::read_file(out + "/metrics.csv"), testing::read_file(ref + "/metrics.csv"));
    EXPECT_EQ(without_costs(out + "/metrics.jsonl"), without_costs(ref + "/metrics.jsonl"));
    // The initial model was evaluated once, before the first experience, and kept across the resumes.
    EXPECT_EQ(results(out)["initial_accuracy"], results(ref)["initial_accuracy"]) << strategy;
    EXPECT_EQ(results(out)["forward_transfer"], results(ref)["forward_transfer"]) << strategy;
  }
}

// Task-incremental: a head per task, accuracy per task in results.json, and
// replay (whose memory rows carry their tasks) resumes bit-exactly.
TEST_F(Cli, TaskLabelsGiveAHeadPerTaskAndAccuracyPerTask) {
  TempDir d;
  const std::string common = bin + " run --benchmark split-synthetic --task-labels --strategy replay" + kQuick;
  auto r = run_command(common + " --out " + d.file("ref"));
  ASSERT_EQ(r.status, 0) << r.output;
  const auto ref = results(d.file("ref"));
  ASSERT_EQ(ref["accuracy_per_task"].size(), 5u) << ref.dump();
  for (const auto& [task, acc] : ref["accuracy_per_task"].items()) {
    // With its task's head, each task is a 2-class problem the model learned.
    EXPECT_GT(acc.get<double>(), 0.6) << "task " << task;
  }
  EXPECT_TRUE(ref["config"]["task_labels"].get<bool>());
  for (int i = 0; i < 2; ++i) {
    auto step = run_command(common + " --checkpoint " + d.file("t.st") + " --max-experiences 3 --out " + d.file("res"));
    ASSERT_EQ(step.status, 0) << step.output;
  }
  EXPECT_EQ(results(d.file("res"))["state_digest"], ref["state_digest"]);
  auto inspect = run_command(bin + " inspect " + d.file("t.st"));
  EXPECT_NE(inspect.output.find("classifier.task4.head.weight"), std::string::npos) << inspect.output;
  // A checkpoint of the task-incremental run does not resume a class-incremental one.
  auto mixed = run_command(bin + " run --benchmark split-synthetic --strategy replay" + kQuick +
                           " --checkpoint " + d.file("t.st"));
  EXPECT_NE(mixed.status, 0);
  EXPECT_NE(mixed.output.find("--task-labels"), std::string::npos) << mixed.output;
}

// --validation-split: the validation stream is evaluated after each
// experience like the test stream; an online stream (chunks of 100) books
// its rows and costs to the original experiences.
TEST_F(Cli, ValidationStreamAndOnlineChunksInResults) {
  TempDir d;
  auto r = run_command(bin + " run --strategy replay --validation-split 0.2 --online-chunk 100" + kQuick +
                       " --out " + d.file("o"));
  ASSERT_EQ(r.status, 0) << r.output;
  const auto j = results(d.file("o"));
  ASSERT_EQ(j["accuracy_matrix"].size(), 5u) << j.dump();
  ASSERT_EQ(j["valid_accuracy_matrix"].size(), 5u) << j.dump();
  double sum = 0;
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(j["valid_accuracy_matrix"][i].size(), 5u);
    sum += j["valid_accuracy_matrix"][4][i].get<double>() / 5;
  }
  EXPECT_DOUBLE_EQ(j["valid_average_accuracy"].get<double>(), sum);
  EXPECT_NE(j["valid_accuracy_matrix"], j["accuracy_matrix"]);
  // 500 samples, 20% held out, in chunks of 100: 4 chunks per experience.
  EXPECT_EQ(j["trained_experiences"], 20);
  EXPECT_EQ(j["costs"]["per_experience"].size(), 5u) << j["costs"].dump();
  // Without the option there is no validation matrix.
  auto plain = run_command(bin + " run --strategy naive --max-experiences 1" + kQuick + " --out " + d.file("p"));
  ASSERT_EQ(plain.status, 0) << plain.output;
  EXPECT_FALSE(results(d.file("p")).contains("valid_accuracy_matrix"));
}

TEST_F(Cli, ImpossibleOptionsAreClearErrors) {
  struct Case {
    std::string args, needle;
  };
  TempDir d;
  for (const Case& c : std::vector<Case>{
           {"--strategy no-such-method", "--strategy"},
           {"--subset -5", "--subset"},
           {"--hidden 0", "--hidden"},
           {"--epochs -1", "--epochs"},
           {"--benchmark imagenet", "--benchmark"},
           {"--data-dir " + d.path(), "--data-dir"},
           {"--data-dir /nonexistent/x", "--data-dir"},
           {"--experiences 11", "--experiences"},
           {"--online-chunk -1", "--online-chunk"},
           {"--online-boundaries", "--online-boundaries"},
           {"--validation-split 1.5", "--validation-split"},
           {"--benchmark rotated-fmnist --rotations 1,x", "--rotations"},
           {"--benchmark rotated-fmnist --rotations 1,2", "--rotations"},
           {"--benchmark split", "--dataset"},
           {"--benchmark split-mnist", "--data-dir"},
           {"--mem-size -1 --strategy replay", "--mem-size"},
           {"--replay-policy fifo --strategy replay", "--replay-policy"},
           {"--ewc-lambda much --strategy ewc", "--ewc-lambda"},
           {"--class-order 1,2,x --benchmark split-synthetic", "--class-order"},
           {"--class-order 0,1,2 --benchmark split-synthetic", "--class-order"},
           {"--device cuda:3", "--device"},
           {"--max-experiences 0", "--max-experiences"},
           {"--lr abc", "--lr"},
       }) {
    auto r = run_command(bin + " run --threads 1 --verbosity quiet " + c.args);
    EXPECT_GT(r.status, 0) << c.args << ": " << r.output;  // an exit code, not a signal
    EXPECT_NE(r.output.find(c.needle), std::string::npos) << c.args << ": " << r.output;
  }
}

TEST_F(Cli, CorruptCheckpointIsAnErrorAndLeftAsItIs) {
  TempDir d;
  const std::string ck = d.file("c.st");
  auto r = run_command(bin + " run" + kQuick + " --checkpoint " + ck + " --max-experiences 1");
  ASSERT_EQ(r.status, 0) << r.output;
  std::string bytes = testing::read_file(ck);
  bytes[bytes.size() / 2] ^= 1;
  std::ofstream(ck, std::ios::binary | std::ios::trunc) << bytes;
  auto bad = run_command(bin + " run" + kQuick + " --checkpoint " + ck);
  EXPECT_EQ(bad.status, 1) << bad.output;
  EXPECT_NE(bad.output.find("corrupt checkpoint"), std::string::npos) << bad.output;
  EXPECT_NE(bad.output.find(ck), std::string::npos) << bad.output;
  EXPECT_EQ(testing::read_file(ck), bytes) << "the corrupt file must be left as it was";

  auto v = run_command(bin + " verify " + ck);
  EXPECT_EQ(v.status, 1) << v.output;
  EXPECT_NE(v.output.find("CRC32C"), std::string::npos) << v.output;
}

TEST_F(Cli, VerifyAndInspect) {
  TempDir d;
  const std::string ck = d.file("c.st");
  auto r = run_command(bin + " run --strategy ewc" + kQuick + " --checkpoint " + ck + " --max-experiences 2");
  ASSERT_EQ(r.status, 0) << r.output;
  auto v = run_command(bin + " verify " + ck);
  EXPECT_EQ(v.status, 0) << v.output;
  auto j = run_command(bin + " inspect --json " + ck + " 2>/dev/null");
  ASSERT_EQ(j.status, 0) << j.output;
  auto info = nlohmann::json::parse(j.output);
  EXPECT_EQ(info["format_version"], 1);
  EXPECT_EQ(info["next_experience"], 2);
  EXPECT_EQ(info["config"]["strategy"], "ewc");
  EXPECT_EQ(info["values"]["strategy.clock.train_experiences"], 2);
  bool has_importance = false;
  for (const auto& t : info["tensors"]) {
    if (t["name"].get<std::string>().find("plugins.ewc") != std::string::npos) has_importance = true;
  }
  EXPECT_TRUE(has_importance);
  auto text = run_command(bin + " inspect " + ck);
  EXPECT_EQ(text.status, 0);
  EXPECT_NE(text.output.find("strategy.model.features.0.weight"), std::string::npos);

  // verify: non-zero with the reason for anything that is not a checkpoint.
  std::ofstream(d.file("text")) << "hello world, not a checkpoint";
  std::ofstream(d.file("empty"));
  for (const std::string& f : {d.file("text"), d.file("empty"), d.file("missing"), d.path()}) {
    auto bad = run_command(bin + " verify " + f);
    EXPECT_EQ(bad.status, 1) << f << ": " << bad.output;
    EXPECT_NE(bad.output.find(f), std::string::npos) << bad.output;
  }
  std::string bytes = testing::read_file(ck);
  for (size_t cut : {size_t(3), size_t(100), bytes.size() - 5}) {
    std::ofstream(d.file("cut"), std::ios::binary | std::ios::trunc) << bytes.substr(0, cut);
    EXPECT_EQ(run_command(bin + " verify " + d.file("cut")).status, 1) << cut;
  }
}

}  // namespace
}  // namespace continua
