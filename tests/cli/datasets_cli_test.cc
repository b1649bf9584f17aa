// `continua run` on data sets in the formats users bring, written by the
// test in their exact formats: split-cifar10 (CIFAR-10's binary batches)
// with the reduced ResNet-18, augmentation and replay, interrupted
// mid-experience and resumed; a user's NumPy arrays through
// --benchmark split --dataset npy:PATH; the errors of impossible choices.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "data/readers/writers.h"
#include "test_util.h"

namespace continua {
namespace {

namespace fs = std::filesystem;
using testing::read_file;
using testing::run_command;
using testing::TempDir;

nlohmann::json results(const std::string& out) { return nlohmann::json::parse(read_file(out + "/results.json")); }

// CIFAR-10's binary distribution in dir/cifar-10-batches-bin: five training
// batches of `per_batch` records and a test batch of `test` records, labels
// cycling 0..9, pixels noisy but brighter for higher classes in the red plane.
void write_cifar10(const std::string& dir, int per_batch, int test) {
  std::mt19937 gen(7);
  auto records = [&](int n) {
    std::string s;
    for (int i = 0; i < n; ++i) {
      const int label = i % 10;
      s.push_back(char(label));
      for (int k = 0; k < 3072; ++k) {
        const int plane = k / 1024;
        s.push_back(char(int(gen() % 100) + (plane == 0 ? label * 15 : 60)));
      }
    }
    return s;
  };
  const std::string folder = dir + "/cifar-10-batches-bin";
  for (int b = 1; b <= 5; ++b) testing::write_file(folder + "/data_batch_" + std::to_string(b) + ".bin", records(per_batch));
  testing::write_file(folder + "/test_batch.bin", records(test));
}

// A user's arrays: 4 classes of `per_class` float32 feature vectors of
// length 8 around a class centre, int64 labels, as NumPy's save writes them.
void write_npy(const std::string& dir, int per_class_train, int per_class_test) {
  std::mt19937 gen(3);
  std::normal_distribution<float> noise(0.0f, 0.5f);
  auto arrays = [&](int per_class, const std::string& prefix) {
    std::vector<float> x;
    std::vector<int64_t> y;
    for (int i = 0; i < 4 * per_class; ++i) {
      const int c = i % 4;
      for (int f = 0; f < 8; ++f) x.push_back((f % 4 == c ? 2.0f : 0.0f) + noise(gen));
      y.push_back(c);
    }
    const std::string n = std::to_string(y.size());
    testing::write_file(dir + "/" + prefix + "_x.npy", testing::npy_bytes("<f4", false, "(" + n + ", 8)", testing::le_bytes(x)));
    testing::write_file(dir + "/" + prefix + "_y.npy", testing::npy_bytes("<i8", false, "(" + n + ",)", testing::le_bytes(y)));
  };
  arrays(per_class_train, "train");
  arrays(per_class_test, "test");
}

std::string run(const std::string& args) {
  auto r = run_command(testing::continua_bin() + " run --threads 1 --verbosity quiet " + args + " 2>&1");
  return std::to_string(r.status) + "\n" + r.output;
}
bool ok(const std::string& r) { return r.rfind("0\n", 0) == 0; }

TEST(DatasetsCli, SplitCifar10ResNetAugmentReplayResumesMidExperienceToTheSameDigest) {
  TempDir data, work;
  // 10 classes x 6 training images (5 batches of 12), 20 test images; 5
  // experiences of 12 images: 3 iterations of 4 each.
  write_cifar10(data.path(), 12, 20);
  const std::string opts = "--benchmark split-cifar10 --data-dir " + data.path() +
                           " --model resnet18 --augment crop,flip --strategy replay --mem-size 20 --train-mb-size 4 ";
  std::string r = run(opts + "--out " + work.file("full"));
  ASSERT_TRUE(ok(r)) << r;
  const auto full = results(work.file("full"));
  ASSERT_EQ(full["accuracy_matrix"].size(), 5u);
  EXPECT_EQ(full["config"]["benchmark"], "split-cifar10");

  // The same run checkpointing every 2 iterations, all checkpoints kept.
  r = run(opts + "--checkpoint-dir " + work.file("ck") + " --checkpoint-every 2 --keep-last 100 --out " +
          work.file("ckrun"));
  ASSERT_TRUE(ok(r)) << r;
  EXPECT_EQ(results(work.file("ckrun"))["state_digest"], full["state_digest"]);
  // Keep only the checkpoint of iteration 4: one iteration into the second
  // experience (the crash came after it).
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(work.file("ck"))) names.push_back(e.path().filename().string());
  bool kept = false;
  for (const std::string& n : names) {
    if (n.rfind("ckpt-", 0) != 0) continue;
    if (std::stoll(n.substr(5)) == 4) {
      kept = true;
      continue;
    }
    fs::remove(work.file("ck") + "/" + n);
  }
  ASSERT_TRUE(kept) << "no checkpoint at iteration 4";
  r = run_command(testing::continua_bin() + " run --threads 1 " + opts + "--checkpoint-dir " + work.file("ck") +
                  " --out " + work.file("resumed") + " 2>&1")
          .output;
  EXPECT_NE(r.find("resumed from"), std::string::npos) << r;
  EXPECT_NE(r.find("ckpt-"), std::string::npos) << r;
  ASSERT_TRUE(results(work.file("resumed"))["complete"].get<bool>()) << r;
  EXPECT_EQ(results(work.file("resumed"))["state_digest"], full["state_digest"]) << r;
  EXPECT_EQ(results(work.file("resumed"))["accuracy_matrix"], full["accuracy_matrix"]);
}

TEST(DatasetsCli, UsersNpyArraysTrainThroughTheCliAndResume) {
  TempDir data, work;
  write_npy(data.file("mine"), 50, 20);
  // A relative path: the checkpoint holds it made absolute.
  const std::string opts = "--benchmark split --dataset npy:mine --experiences 2 --strategy replay --hidden 32 --epochs 3 --lr 0.1 --train-mb-size 10 ";
  auto full = run_command("cd " + data.path() + " && " + testing::continua_bin() +
                          " run --threads 1 --verbosity quiet " + opts + "--out " + work.file("full") + " 2>&1");
  ASSERT_EQ(full.status, 0) << full.output;
  const auto j = results(work.file("full"));
  ASSERT_EQ(j["accuracy_matrix"].size(), 2u);
  ASSERT_EQ(j["accuracy_matrix"][1].size(), 2u);
  // Separable clusters: both experiences well above chance after training.
  EXPECT_GT(j["accuracy_matrix"][0][0].get<double>(), 0.9) << j["accuracy_matrix"].dump();
  EXPECT_GT(j["average_accuracy"].get<double>(), 0.6) << j["accuracy_matrix"].dump();
  EXPECT_EQ(j["config"]["dataset"], "npy:mine");

  auto part = run_command("cd " + data.path() + " && " + testing::continua_bin() +
                          " run --threads 1 --verbosity quiet " + opts + "--checkpoint " + work.file("ck.st") +
                          " --max-experiences 1 2>&1");
  ASSERT_EQ(part.status, 0) << part.output;
  const auto meta = run_command(testing::continua_bin() + " inspect " + work.file("ck.st") + " 2>&1");
  EXPECT_NE(meta.output.find("npy:" + data.file("mine")), std::string::npos) << meta.output;
  // Resumed in a new process.
  auto rest = run_command("cd " + data.path() + " && " + testing::continua_bin() +
                          " run --threads 1 --verbosity quiet " + opts + "--checkpoint " + work.file("ck.st") +
                          " --out " + work.file("resumed") + " 2>&1");
  ASSERT_EQ(rest.status, 0) << rest.output;
  EXPECT_EQ(results(work.file("resumed"))["state_digest"], j["state_digest"]);

  // The same arrays in an .npz archive give the same run.
  std::vector<testing::ZipMember> members;
  for (const char* n : {"train_x", "train_y", "test_x", "test_y"}) {
    members.push_back({std::string(n) + ".npy", read_file(data.file("mine") + "/" + n + ".npy"), true});
  }
  testing::write_zip(data.file("mine.npz"), members);
  std::string r = run("--benchmark split --dataset npy:" + data.file("mine.npz") +
                      " --experiences 2 --strategy replay --hidden 32 --epochs 3 --lr 0.1 --train-mb-size 10 --out " + work.file("npz"));
  ASSERT_TRUE(ok(r)) << r;
  EXPECT_EQ(results(work.file("npz"))["accuracy_matrix"], j["accuracy_matrix"]);
}

TEST(DatasetsCli, ImpossibleDatasetChoicesAreClearErrors) {
  TempDir data;
  write_npy(data.path(), 5, 2);
  struct Case {
    std::string args, expect;
  };
  const std::vector<Case> cases = {
      {"--benchmark split --dataset parquet:" + data.path(), "FORMAT:PATH with FORMAT one of idx, cifar, npy, csv, images"},
      {"--benchmark split --dataset cifar10x", "unknown dataset 'cifar10x'"},
      {"--benchmark split --dataset npy:" + data.path() + " --data-dir /tmp", "--data-dir is for the built-in datasets"},
      {"--benchmark split", "needs --dataset"},
      {"--benchmark split-fmnist --dataset npy:" + data.path(), "already names its dataset"},
      {"--benchmark split --dataset npy:" + data.file("absent"), "absent"},
      {"--benchmark split-cifar10", "--data-dir: give the folder with the cifar10 files"},
      {"--benchmark split-cifar100 --data-dir " + data.path(), "CIFAR-100"},
      {"--benchmark split --dataset csv:" + data.path(), "train.csv"},
      {"--benchmark split --dataset npy:" + data.path() + " --experiences 2 --model cnn", "cnn"},
  };
  for (const Case& c : cases) {
    const std::string r = run(c.args);
    EXPECT_FALSE(ok(r)) << c.args;
    EXPECT_NE(r.find(c.expect), std::string::npos) << c.args << "\n" << r;
    EXPECT_EQ(r.find("terminate called"), std::string::npos) << r;
  }
}

}  // namespace
}  // namespace continua
