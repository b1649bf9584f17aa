// `continua run --model resnet18 --augment crop,flip` on a tiny data set in
// Fashion-MNIST's IDX format that the test writes (split-fmnist's
// normalisation applies), and the errors of non-image benchmarks.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <fstream>

#include "cli/commands.h"
#include "continua/data/benchmark.h"
#include "continua/data/transforms.h"
#include "test_util.h"

namespace continua {
namespace {

using testing::read_file;
using testing::run_command;
using testing::TempDir;

void put_u32(std::ofstream& f, uint32_t v) {
  const unsigned char b[4] = {uint8_t(v >> 24), uint8_t(v >> 16), uint8_t(v >> 8), uint8_t(v)};
  f.write(reinterpret_cast<const char*>(b), 4);
}

// `per_class` 28x28 images of each of 10 classes (random pixels, brighter
// for higher classes) and their labels, as IDX files named like Fashion-MNIST's.
void write_idx(const std::string& dir, const std::string& prefix, int per_class, uint64_t seed) {
  const int n = 10 * per_class;
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(seed);
  const at::Tensor labels = torch::arange(10, at::kLong).repeat_interleave(per_class);
  const at::Tensor pixels =
      (at::rand({n, 28, 28}, g, at::kFloat) * 128 + labels.to(at::kFloat).view({-1, 1, 1}) * 12).to(at::kByte).contiguous();
  std::ofstream images(dir + "/" + prefix + "-images-idx3-ubyte", std::ios::binary);
  put_u32(images, 0x00000803);
  put_u32(images, uint32_t(n));
  put_u32(images, 28);
  put_u32(images, 28);
  images.write(reinterpret_cast<const char*>(pixels.data_ptr<uint8_t>()), n * 28 * 28);
  std::ofstream lab(dir + "/" + prefix + "-labels-idx1-ubyte", std::ios::binary);
  put_u32(lab, 0x00000801);
  put_u32(lab, uint32_t(n));
  const at::Tensor l8 = labels.to(at::kByte).contiguous();
  lab.write(reinterpret_cast<const char*>(l8.data_ptr<uint8_t>()), n);
}

class ResNetCli : public ::testing::Test {
 protected:
  void SetUp() override {
    write_idx(data.path(), "train", 12, 1);
    write_idx(data.path(), "t10k", 3, 2);
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
  // with the gradients, so every rank ends with the same state.
  const std::string out = run("--model resnet18 --nproc 2 --experiences 5 --out " + work.path());
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
