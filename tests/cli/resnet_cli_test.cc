// `continua run --model resnet18 --augment crop,flip` on a tiny data set in
// Fashion-MNIST's IDX format that the test writes (split-fmnist's
// normalisation applies), and the errors of non-image benchmarks.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "cli/commands.h"
#include "continua/data/benchmark.h"
#include "continua/data/transforms.h"
#include "image_data.h"
#include "test_util.h"

namespace continua {
namespace {

using testing::read_file;
using testing::run_command;
using testing::TempDir;

class ResNetCli : public ::testing::Test {
 protected:
  void SetUp() override {
    // Fashion-MNIST's shape: 10 classes of 1x28x28 images.
    testing::write_idx_benchmark(data.path(), 10, 12, 3, 1, 28);
  }
  std::string run(const std::string& args) {
    auto r = run_command(testing::continua_bin() + " run --benchmark split-fmnist --data-dir " + data.path() +
                         " --threads 1 --verbosity quiet --train-mb-size 8 " + args + " 2>&1");
    last_status = r.status;
    return r.output;
  }
  static std::string digest_of(const std::string& out) {
    return nlohmann::json::parse(read_file(out + "/results.json")).at("state_digest").get<std::string>();
  }
  TempDir data, work;
  int last_status = 0;
};

TEST_F(ResNetCli, ResumedAugmentedReplayRunEndsAtTheUninterruptedDigest) {
  const std::string opts = "--model resnet18 --augment crop,flip --strategy replay --mem-size 20 ";
  std::string out = run(opts + "--out " + work.file("full"));
  ASSERT_EQ(last_status, 0) << out;
  const auto results = nlohmann::json::parse(read_file(work.file("full") + "/results.json"));
  EXPECT_EQ(results.at("config").at("augment"), "crop,flip");
  EXPECT_EQ(results.at("config").at("model"), "resnet18");
  // Interrupted after two experiences, then resumed in a new process.
  out = run(opts + "--checkpoint " + work.file("ck.st") + " --max-experiences 2");
  ASSERT_EQ(last_status, 0) << out;
  // Another augmentation cannot resume this checkpoint.
  out = run("--model resnet18 --augment flip --strategy replay --mem-size 20 --checkpoint " + work.file("ck.st"));
  EXPECT_NE(last_status, 0);
  EXPECT_NE(out.find("--augment: checkpoint crop,flip, this run flip"), std::string::npos) << out;
  out = run(opts + "--checkpoint " + work.file("ck.st") + " --out " + work.file("resumed"));
  ASSERT_EQ(last_status, 0) << out;
  EXPECT_EQ(digest_of(work.file("resumed")), digest_of(work.file("full")));
  // Without augmentation the run ends elsewhere (the transform ran).
  out = run("--model resnet18 --strategy replay --mem-size 20 --out " + work.file("plain"));
  ASSERT_EQ(last_status, 0) << out;
  EXPECT_NE(digest_of(work.file("plain")), digest_of(work.file("full")));
}

TEST_F(ResNetCli, DataParallelRanksKeepTheSameBatchNormStatistics) {
  // Each rank normalises its own chunk; the running statistics are averaged
  // with the gradients, so every rank ends with the same state. The batch is
  // augmented before it is split: every rank draws the same crops and flips.
  const std::string out = run("--model resnet18 --augment crop,flip --nproc 2 --experiences 5 --out " + work.path());
  ASSERT_EQ(last_status, 0) << out;
  std::string d0 = read_file(work.file("rank-0.digest")), d1 = read_file(work.file("rank-1.digest"));
  EXPECT_EQ(d0.size(), 65u);
  EXPECT_EQ(d0, d1);
}

TEST_F(ResNetCli, NonImageBenchmarksAndUnknownTransformsAreClearErrors) {
  auto synthetic = [&](const std::string& args) {
    auto r = run_command(testing::continua_bin() + " run --benchmark split-synthetic --threads 1 " + args + " 2>&1");
    last_status = r.status;
    return r.output;
  };
  std::string out = synthetic("--model resnet18");
  EXPECT_EQ(last_status, 1) << out;
  EXPECT_NE(out.find("--model resnet18 needs image inputs"), std::string::npos) << out;
  out = synthetic("--augment crop");
  EXPECT_EQ(last_status, 1) << out;
  EXPECT_NE(out.find("--augment crop: needs image samples"), std::string::npos) << out;
  out = run("--augment crop,rotate");
  EXPECT_EQ(last_status, 1) << out;
  EXPECT_NE(out.find("--augment: unknown transform 'rotate'"), std::string::npos) << out;
}

TEST_F(ResNetCli, CropPadsWithTheBenchmarksNormalisedBlack) {
  auto bench = make_benchmark(BenchmarkOptions().name("split-fmnist").data_dir(data.path()));
  cli::RunOptions o;
  o.augment = "crop";
  auto crop = cli::run_transform(o, *bench);
  ASSERT_TRUE(crop);
  // A black image as the benchmark hands it out: (0 - 0.2860) / 0.3530.
  const at::Tensor black = torch::full({16, 1, 28, 28}, (0.0 - 0.2860) / 0.3530);
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(3);
  const at::Tensor out = (*crop)(black, g);
  EXPECT_TRUE(torch::allclose(out, black)) << "the padding is not black";
  o.augment = "";
  EXPECT_EQ(cli::run_transform(o, *bench), nullptr);
}

}  // namespace
}  // namespace continua
