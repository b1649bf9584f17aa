// `continua run --config FILE` (YAML) and the resume check of the stored
// configuration, run as a user runs them, in separate processes.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "test_util.h"

namespace continua {
namespace {

using testing::run_command;
using testing::TempDir;

const std::string kSynthetic = " --benchmark split-synthetic --experiences 2 --threads 1 --verbosity quiet";

void write(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
}

nlohmann::json config_of(const std::string& out) {
  return nlohmann::json::parse(testing::read_file(out + "/results.json"))["config"];
}

class Config : public ::testing::Test {
 protected:
  std::string bin = testing::continua_bin();
  TempDir d;
};

TEST_F(Config, FileSetsOptionsAndCommandLineOverrides) {
  write(d.file("run.yaml"),
        "# a run\n"
        "benchmark: split-synthetic\n"
        "experiences: 2\n"
        "strategy: replay\n"
        "train-mb-size: 32\n"
        "eval_mb_size: 100\n"  // underscores are accepted too
        "hidden: 24\n"
        "lr: 0.05\n"
        "mem-size: 50\n"
        "threads: 1\n"
        "verbosity: quiet\n");
  auto r = run_command(bin + " run --config " + d.file("run.yaml") + " --out " + d.file("a"));
  ASSERT_EQ(r.status, 0) << r.output;
  auto c = config_of(d.file("a"));
  EXPECT_EQ(c["strategy"], "replay");
  EXPECT_EQ(c["benchmark"], "split-synthetic");
  EXPECT_EQ(c["train_mb_size"], 32);
  EXPECT_EQ(c["eval_mb_size"], 100);
  EXPECT_EQ(c["hidden"], 24);
  EXPECT_EQ(c["mem_size"], 50);
  EXPECT_DOUBLE_EQ(c["lr"].get<double>(), 0.05);

  // The command line wins over the file, whichever side of --config it is on.
  r = run_command(bin + " run --hidden 40 --config " + d.file("run.yaml") + " --strategy naive --out " +
                  d.file("b"));
  ASSERT_EQ(r.status, 0) << r.output;
  c = config_of(d.file("b"));
  EXPECT_EQ(c["hidden"], 40);
  EXPECT_EQ(c["strategy"], "naive");
  EXPECT_EQ(c["train_mb_size"], 32);  // still from the file
}

TEST_F(Config, UnknownKeyIsAnErrorNamingTheKey) {
  write(d.file("bad.yaml"), "strategy: replay\nhiden: 24\n");
  auto r = run_command(bin + " run --config " + d.file("bad.yaml") + kSynthetic);
  EXPECT_EQ(r.status, 2) << r.output;  // a usage error
  EXPECT_NE(r.output.find("unknown key 'hiden'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("bad.yaml"), std::string::npos) << r.output;
}

TEST_F(Config, BadYamlAndMissingFileAreErrors) {
  write(d.file("broken.yaml"), "strategy: [replay\n");
  auto r = run_command(bin + " run --config " + d.file("broken.yaml") + kSynthetic);
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("not valid YAML"), std::string::npos) << r.output;

  write(d.file("nested.yaml"), "strategy:\n  name: replay\n");
  r = run_command(bin + " run --config " + d.file("nested.yaml") + kSynthetic);
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("'strategy' must be a single value"), std::string::npos) << r.output;

  r = run_command(bin + " run --config " + d.file("missing.yaml") + kSynthetic);
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("missing.yaml"), std::string::npos) << r.output;
}

TEST_F(Config, ResumeWithAnotherShapeFailsNamingTheDifferenceBeforeLoading) {
  const std::string ckpt = d.file("c.safetensors");
  auto r = run_command(bin + " run" + kSynthetic + " --hidden 16 --max-experiences 1 --checkpoint " + ckpt);
  ASSERT_EQ(r.status, 0) << r.output;
  const std::string before = testing::read_file(ckpt);

  r = run_command(bin + " run" + kSynthetic + " --hidden 32 --strategy replay --checkpoint " + ckpt);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("--hidden: checkpoint 16, this run 32"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--strategy: checkpoint naive, this run replay"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("c.safetensors"), std::string::npos) << r.output;
  EXPECT_EQ(testing::read_file(ckpt), before);  // untouched

  // The same holds for managed checkpoints.
  r = run_command(bin + " run" + kSynthetic + " --hidden 16 --max-experiences 1 --checkpoint-dir " + d.file("m"));
  ASSERT_EQ(r.status, 0) << r.output;
  r = run_command(bin + " run" + kSynthetic + " --hidden 16 --layers 2 --checkpoint-dir " + d.file("m"));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("--layers: checkpoint 1, this run 2"), std::string::npos) << r.output;

  // Options that do not change the shape may change on resume.
  r = run_command(bin + " run" + kSynthetic + " --hidden 16 --lr 0.05 --checkpoint " + ckpt + " --out " +
                  d.file("o"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(nlohmann::json::parse(testing::read_file(d.file("o") + "/results.json"))["trained_experiences"], 2);
}

}  // namespace
}  // namespace continua
