#include <gtest/gtest.h>
#include <torch/torch.h>
#include <zlib.h>

#include <fstream>
#include <set>

#include "continua/data/benchmark.h"
#include "continua/data/dataset.h"
#include "continua/errors.h"
#include "test_util.h"

namespace continua {
namespace {

using testing::TempDir;

std::string idx_bytes(std::vector<uint32_t> dims, size_t data_bytes, uint8_t type = 0x08) {
  std::string s = {0, 0, char(type), char(dims.size())};
  for (uint32_t d : dims) {
    s.push_back(char(d >> 24));
    s.push_back(char(d >> 16));
    s.push_back(char(d >> 8));
    s.push_back(char(d));
  }
  for (size_t i = 0; i < data_bytes; ++i) s.push_back(char(i % 251));
  return s;
}

void write(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, bytes.data(), unsigned(bytes.size()));
  gzclose(f);
}

TEST(Idx, ReadsPlainAndGzip) {
  TempDir d;
  write(d.file("a.idx"), idx_bytes({3, 2, 2}, 12));
  write_gz(d.file("a.idx.gz"), idx_bytes({3, 2, 2}, 12));
  for (const char* f : {"a.idx", "a.idx.gz"}) {
    IdxArray a = read_idx_file(d.file(f));
    EXPECT_EQ(a.dims, (std::vector<int64_t>{3, 2, 2}));
    ASSERT_EQ(a.data.size(), 12u);
    EXPECT_EQ(a.data[5], 5);
  }
}

void expect_corrupt(const std::string& path, const std::string& needle) {
  try {
    read_idx_file(path);
    FAIL() << "no exception for " << path;
  } catch (const CorruptionError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST(Idx, WrongMagicTruncatedAndTrailing) {
  TempDir d;
  std::string good = idx_bytes({4, 3}, 12);
  std::string bad = good;
  bad[0] = 1;
  write(d.file("magic"), bad);
  expect_corrupt(d.file("magic"), "magic");
  write(d.file("type"), idx_bytes({4, 3}, 12, 0x0D));
  expect_corrupt(d.file("type"), "type code");
  write(d.file("trunc"), good.substr(0, good.size() - 1));
  expect_corrupt(d.file("trunc"), "truncated");
  write(d.file("trunc_dims"), good.substr(0, 6));
  expect_corrupt(d.file("trunc_dims"), "truncated");
  write(d.file("tiny"), "ab");
  expect_corrupt(d.file("tiny"), "truncated");
  write(d.file("trailing"), good + "xx");
  expect_corrupt(d.file("trailing"), "after the data");
  EXPECT_THROW(read_idx_file(d.file("does-not-exist")), IoError);
}

TEST(Idx, ImageAndLabelCountsMustAgree) {
  TempDir d;
  write(d.file("img"), idx_bytes({5, 2, 2}, 20));
  write(d.file("lbl"), idx_bytes({4}, 4));
  try {
    IdxDataset::open(d.file("img"), d.file("lbl"));
    FAIL();
  } catch (const CorruptionError& e) {
    EXPECT_NE(std::string(e.what()).find("5 images"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("4 labels"), std::string::npos) << e.what();
  }
  write(d.file("lbl5"), idx_bytes({5}, 5));
  auto ds = IdxDataset::open(d.file("img"), d.file("lbl5"));
  EXPECT_EQ(ds->size(), 5);
  EXPECT_EQ(ds->sample_shape(), (std::vector<int64_t>{1, 2, 2}));
  Batch b = ds->get(torch::tensor({1, 3}, torch::kLong));
  EXPECT_EQ(b.x.scalar_type(), torch::kFloat);
  EXPECT_FLOAT_EQ(b.x[0][0][0][0].item<float>(), 4.0f / 255.0f);
  EXPECT_EQ(b.y[1].item<int64_t>(), 3);
}

TEST(Idx, PathsFromACheckpointAreBounded) {
  // An IDX path named by a checkpoint must not read forever or allocate
  // what the dims claim beyond the cap.
  EXPECT_THROW(read_idx_file("/dev/zero"), IoError);
  TempDir d;
  write(d.file("huge"), idx_bytes({100000, 100000, 1000}, 16));
  expect_corrupt(d.file("huge"), "dimensions claim more than");
  EXPECT_THROW(read_idx_file(d.path()), IoError);
}

TEST(Idx, SyntheticArgumentsAreBounded) {
  SyntheticOptions o;
  o.samples_per_class = 1000000000;
  EXPECT_THROW(SyntheticDataset{o}, InvalidArgument);
  o.samples_per_class = 1 << 20;
  o.classes = 1 << 10;
  o.features = 1 << 10;  // the product overflows 32 bits, not 64
  EXPECT_THROW(SyntheticDataset{o}, InvalidArgument);
  ObjectPool pool;
  EXPECT_THROW(pool.get("synthetic-dataset", {{"samples_per_class", int64_t(1) << 40},
                                              {"classes", 10}, {"features", 32}, {"noise", 1.0},
                                              {"seed", 0}}),
               InvalidArgument);
}

TEST(Benchmark, SplitSyntheticClassesAreDisjointAndSeeded) {
  auto a = testing::synthetic_benchmark(3);
  auto b = testing::synthetic_benchmark(3);
  auto c = testing::synthetic_benchmark(4);
  ASSERT_EQ(a->train_stream().size(), 5u);
  std::set<int64_t> all;
  bool differs = false;
  for (size_t i = 0; i < 5; ++i) {
    const Experience& e = a->train_stream()[i];
    EXPECT_EQ(e.index(), int64_t(i));
    EXPECT_EQ(e.classes().size(), 2u);
    EXPECT_EQ(e.classes(), a->test_stream()[i].classes());
    EXPECT_EQ(e.classes(), b->train_stream()[i].classes());
    differs |= e.classes() != c->train_stream()[i].classes();
    for (int64_t k : e.classes()) EXPECT_TRUE(all.insert(k).second);
    // every sample's label is one of the experience's classes
    std::set<int64_t> labels;
    for (int64_t j = 0; j < e.size(); ++j) labels.insert(e.targets()[j].item<int64_t>());
    EXPECT_EQ(labels, std::set<int64_t>(e.classes().begin(), e.classes().end()));
  }
  EXPECT_EQ(all.size(), 10u);
  EXPECT_TRUE(differs) << "another seed should give another class order";
}

TEST(Benchmark, ClassOrderFixesWhichClassesEachExperienceBrings) {
  auto b = make_benchmark(BenchmarkOptions().name("split-synthetic").seed(3).class_order({4, 5, 8, 2, 9, 6, 1, 7, 0, 3}));
  const std::vector<std::vector<int64_t>> expected = {{4, 5}, {2, 8}, {6, 9}, {1, 7}, {0, 3}};
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(b->train_stream()[i].classes(), expected[i]) << "experience " << i;
    EXPECT_EQ(b->test_stream()[i].classes(), expected[i]);
    EXPECT_EQ(b->train_stream()[i].task_label(), 0);
  }
  // Another seed, the same order: the order does not come from the seed.
  auto c = make_benchmark(BenchmarkOptions().name("split-synthetic").seed(4).class_order({4, 5, 8, 2, 9, 6, 1, 7, 0, 3}));
  EXPECT_EQ(c->train_stream()[1].classes(), expected[1]);
  EXPECT_EQ(b->num_tasks(), 1);
}

TEST(Benchmark, ClassesThatDoNotDivideEvenlyGoToTheFirstExperiences) {
  auto b = make_benchmark(BenchmarkOptions().name("split-synthetic").seed(3).experiences(3).class_order({4, 5, 8, 2, 9, 6, 1, 7, 0, 3}));
  ASSERT_EQ(b->train_stream().size(), 3u);
  EXPECT_EQ(b->train_stream()[0].classes(), (std::vector<int64_t>{2, 4, 5, 8}));
  EXPECT_EQ(b->train_stream()[1].classes(), (std::vector<int64_t>{1, 6, 9}));
  EXPECT_EQ(b->train_stream()[2].classes(), (std::vector<int64_t>{0, 3, 7}));
}

TEST(Benchmark, TaskLabelsMakeEachExperienceATask) {
  auto b = make_benchmark(BenchmarkOptions().name("split-synthetic").seed(3).task_labels(true));
  EXPECT_EQ(b->num_tasks(), 5);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(b->train_stream()[i].task_label(), int64_t(i));
    Batch batch = b->test_stream()[i].get(torch::arange(3));
    EXPECT_TRUE(batch.t.eq(int64_t(i)).all().item<bool>());
  }
}

TEST(Benchmark, ImpossibleOptionsNameTheOption) {
  auto expect_msg = [](const BenchmarkOptions& o, const std::string& needle) {
    try {
      make_benchmark(o);
      FAIL() << needle;
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_msg(BenchmarkOptions().name("nope"), "--benchmark");
  expect_msg(BenchmarkOptions().name("split-synthetic").experiences(11), "--experiences");
  expect_msg(BenchmarkOptions().name("split-synthetic").experiences(-1), "--experiences");
  expect_msg(BenchmarkOptions().name("split-synthetic").subset(-2), "--subset");
  expect_msg(BenchmarkOptions().name("split-synthetic").class_order({0, 1, 2}), "--class-order");
  expect_msg(BenchmarkOptions().name("split-synthetic").class_order({0, 1, 2, 3, 4, 5, 6, 7, 8, 8}), "--class-order");
  TempDir d;
  expect_msg(BenchmarkOptions().data_dir(d.path()), "--data-dir");
  expect_msg(BenchmarkOptions().data_dir(d.file("missing")), "--data-dir");
}

class Fmnist : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::have_fmnist()) GTEST_SKIP() << "Fashion-MNIST not installed";
  }
};

TEST_F(Fmnist, SplitHasFiveExperiencesOfTwoClasses) {
  auto b = make_benchmark(BenchmarkOptions().seed(7).subset(500));
  EXPECT_EQ(b->num_classes(), 10);
  EXPECT_EQ(b->input_size(), 784);
  std::set<int64_t> all;
  for (const Experience& e : b->train_stream()) {
    EXPECT_EQ(e.size(), 500);
    for (int64_t c : e.classes()) all.insert(c);
    auto t = e.targets();
    EXPECT_TRUE(t.eq(e.classes()[0]).logical_or(t.eq(e.classes()[1])).all().item<bool>());
  }
  EXPECT_EQ(all.size(), 10u);
  // Test stream: all 1000 test samples of each pair of classes.
  for (const Experience& e : b->test_stream()) EXPECT_EQ(e.size(), 2000);
  auto full = make_benchmark(BenchmarkOptions().seed(7));
  EXPECT_EQ(full->train_stream()[0].size(), 12000);
}

TEST_F(Fmnist, PermutedAppliesOnePermutationPerExperience) {
  auto b = make_benchmark(BenchmarkOptions().name("permuted-fmnist").seed(1).subset(100).experiences(3));
  ASSERT_EQ(b->train_stream().size(), 3u);
  const auto& p0 = b->train_stream()[0].pixel_map();
  const auto& p1 = b->train_stream()[1].pixel_map();
  EXPECT_TRUE(std::get<0>(p0.sort()).equal(torch::arange(784, torch::kLong)));
  EXPECT_FALSE(p0.equal(p1));
  EXPECT_TRUE(b->test_stream()[1].pixel_map().equal(p1));
  // The pixels of a sample are the base image's pixels, permuted, and
  // normalised with Fashion-MNIST's mean and deviation (as Avalanche's).
  const Experience& e = b->train_stream()[1];
  Batch got = e.get(torch::tensor({0}, torch::kLong));
  Batch base = e.dataset()->get(e.indices().narrow(0, 0, 1));
  at::Tensor expected = ((base.x - 0.2860) / 0.3530).reshape({-1}).index_select(0, p1);
  EXPECT_TRUE(got.x.reshape({-1}).equal(expected));
  EXPECT_EQ(e.classes().size(), 10u);
}

}  // namespace
}  // namespace continua
