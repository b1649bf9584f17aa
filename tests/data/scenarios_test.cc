// Scenarios (issue 14): rotations, new instances, validation streams, online
// chunks, and the byte path of Experience::get.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "continua/errors.h"
#include "continua/data/benchmark.h"
#include "data/readers/writers.h"
#include "test_util.h"

namespace continua {
namespace {

std::vector<int64_t> to_vec(const at::Tensor& t) {
  at::Tensor c = t.to(at::kCPU, at::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

// The rotation map against rotations computed by hand: a quarter turn
// counter-clockwise of a 3x3 image, a half turn, none.
TEST(Rotation, QuarterAndHalfTurnsMoveEachPixelWhereExpected) {
  // 0 1 2          2 5 8
  // 3 4 5   -90->  1 4 7   (counter-clockwise: the right column goes up top)
  // 6 7 8          0 3 6
  EXPECT_EQ(to_vec(rotation_pixel_map(1, 3, 3, 90)), (std::vector<int64_t>{2, 5, 8, 1, 4, 7, 0, 3, 6}));
  EXPECT_EQ(to_vec(rotation_pixel_map(1, 3, 3, -90)), (std::vector<int64_t>{6, 3, 0, 7, 4, 1, 8, 5, 2}));
  EXPECT_EQ(to_vec(rotation_pixel_map(1, 3, 3, 180)), (std::vector<int64_t>{8, 7, 6, 5, 4, 3, 2, 1, 0}));
  EXPECT_EQ(to_vec(rotation_pixel_map(1, 3, 3, 0)), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8}));
  // Channels rotate alike, each within itself.
  EXPECT_EQ(to_vec(rotation_pixel_map(2, 1, 2, 180)), (std::vector<int64_t>{1, 0, 3, 2}));
  // 45 degrees on 5x5: corners come from outside the image (-1), the centre stays.
  const auto m = to_vec(rotation_pixel_map(1, 5, 5, 45));
  EXPECT_EQ(m[0], -1);
  EXPECT_EQ(m[24], -1);
  EXPECT_EQ(m[12], 12);
  // A rotation by 90 equals torch's rot90 of the image.
  const at::Tensor img = torch::arange(16, torch::kFloat).view({1, 4, 4});
  at::Tensor map = rotation_pixel_map(1, 4, 4, 90);
  EXPECT_TRUE(img.reshape({-1}).index_select(0, map).view({1, 4, 4}).equal(torch::rot90(img, 1, {1, 2})));
}

// Bytes take their values from a table made by the float path: for random
// uint8 images of 3 channels, a per-channel normalisation and a rotation,
// get() equals the dataset's floats, mapped and normalised by hand.
TEST(ExperienceGet, BytesGiveTheFloatPathsBits) {
  torch::manual_seed(3);
  at::Tensor x = torch::randint(0, 256, {20, 3, 5, 4}, torch::kLong).to(torch::kByte);
  at::Tensor y = torch::randint(0, 4, {20}, torch::kLong);
  auto data = std::make_shared<TensorDataset>(x, y);
  const Normalization norm{{0.4914, 0.4822, 0.4465}, {0.2023, 0.1994, 0.2010}};
  const at::Tensor map = rotation_pixel_map(3, 5, 4, 30);
  Experience e(nullptr, "train", 0, {0, 1, 2, 3}, data, torch::arange(20, torch::kLong), map, 0, norm);
  const at::Tensor pos = torch::tensor({3, 0, 17, 9}, torch::kLong);
  const Batch got = e.get(pos);
  // By hand: floats, then the map (0 where it points outside), then per channel.
  at::Tensor f = data->get(pos).x.reshape({4, -1});
  f = torch::cat({f, torch::zeros({4, 1})}, 1).index_select(1, torch::where(map.ge(0), map, torch::full({}, 60, torch::kLong)));
  f = f.view({4, 3, 5, 4});
  at::Tensor mean = torch::tensor(norm.mean, torch::kDouble).to(torch::kFloat).view({1, 3, 1, 1});
  at::Tensor std = torch::tensor(norm.std, torch::kDouble).to(torch::kFloat).view({1, 3, 1, 1});
  EXPECT_TRUE(got.x.equal((f - mean) / std));
  EXPECT_TRUE(got.y.equal(y.index_select(0, pos)));
  // Without a map, one scalar normalisation: the formula the benchmarks used before.
  Experience plain(nullptr, "test", 0, {0, 1, 2, 3}, data, torch::arange(20, torch::kLong), {}, 2,
                   Normalization{{0.2860}, {0.3530}});
  const Batch b = plain.get(pos);
  EXPECT_TRUE(b.x.equal((data->get(pos).x - 0.2860) / 0.3530));
  EXPECT_TRUE(b.t.eq(2).all().item<bool>());
}

TEST(Scenarios, NewInstancesShareEveryClassAmongExperiences) {
  auto b = make_benchmark(BenchmarkOptions().name("instances-synthetic").seed(2).experiences(4));
  ASSERT_EQ(b->train_stream().size(), 4u);
  ASSERT_EQ(b->test_stream().size(), 1u);  // the whole test set, once
  EXPECT_EQ(b->test_stream()[0].size(), 2000);
  std::set<int64_t> seen;
  for (const Experience& e : b->train_stream()) {
    EXPECT_EQ(e.classes().size(), 10u);
    // 200 training samples per class, 50 of each in each experience.
    for (int64_t c = 0; c < 10; ++c) EXPECT_EQ(e.targets().eq(c).sum().item<int64_t>(), 50);
    for (int64_t i : to_vec(e.indices())) EXPECT_TRUE(seen.insert(i).second) << "sample " << i << " twice";
  }
  EXPECT_EQ(seen.size(), 2000u);
  auto again = make_benchmark(BenchmarkOptions().name("instances-synthetic").seed(2).experiences(4));
  auto other = make_benchmark(BenchmarkOptions().name("instances-synthetic").seed(3).experiences(4));
  EXPECT_TRUE(again->train_stream()[1].indices().equal(b->train_stream()[1].indices()));
  EXPECT_FALSE(other->train_stream()[1].indices().equal(b->train_stream()[1].indices()));
}

TEST(Scenarios, ValidationSplitIsClassBalancedAndDisjoint) {
  auto full = make_benchmark(BenchmarkOptions().name("split-synthetic").seed(5));
  auto b = make_benchmark(BenchmarkOptions().name("split-synthetic").seed(5).validation_split(0.25));
  ASSERT_EQ(b->valid_stream().size(), 5u);
  EXPECT_TRUE(full->valid_stream().empty());
  for (size_t e = 0; e < 5; ++e) {
    const Experience& tr = b->train_stream()[e];
    const Experience& va = b->stream("valid")[e];
    EXPECT_EQ(va.classes(), tr.classes());
    EXPECT_EQ(va.stream(), "valid");
    // 200 samples of each class: 50 to validation, 150 stay.
    for (int64_t c : tr.classes()) {
      EXPECT_EQ(va.targets().eq(c).sum().item<int64_t>(), 50);
      EXPECT_EQ(tr.targets().eq(c).sum().item<int64_t>(), 150);
    }
    std::set<int64_t> a;
    for (int64_t i : to_vec(tr.indices())) a.insert(i);
    for (int64_t i : to_vec(va.indices())) EXPECT_TRUE(a.insert(i).second) << "in both streams: " << i;
    std::set<int64_t> whole;
    for (int64_t i : to_vec(full->train_stream()[e].indices())) whole.insert(i);
    EXPECT_EQ(a, whole);
  }
  EXPECT_THROW(make_benchmark(BenchmarkOptions().name("split-synthetic").validation_split(1.0)), InvalidArgument);
}

TEST(Scenarios, OnlineChunksCoverEachExperienceAndHideTheirOrigin) {
  auto base = make_benchmark(BenchmarkOptions().name("split-synthetic").seed(4).subset(60));
  auto b = make_benchmark(BenchmarkOptions().name("split-synthetic").seed(4).subset(60).online_chunk(7));
  EXPECT_TRUE(b->online());
  EXPECT_FALSE(base->online());
  EXPECT_EQ(b->original_experiences(), 5);
  // 60 samples per experience: 8 chunks of 7 and one of 4.
  ASSERT_EQ(b->train_stream().size(), 5u * 9u);
  EXPECT_EQ(b->test_stream().size(), 5u);
  for (size_t e = 0; e < 5; ++e) {
    std::set<int64_t> got;
    for (size_t k = 0; k < 9; ++k) {
      const Experience& c = b->train_stream()[e * 9 + k];
      EXPECT_EQ(c.index(), int64_t(e * 9 + k));
      EXPECT_EQ(c.size(), k < 8 ? 7 : 4);
      EXPECT_TRUE(c.is_online_chunk());
      EXPECT_THROW(c.online_origin(), InvalidArgument);  // hidden by default
      for (int64_t i : to_vec(c.indices())) got.insert(i);
      // A chunk's classes are the ones among its samples.
      std::set<int64_t> labels;
      for (int64_t t : to_vec(c.targets())) labels.insert(t);
      EXPECT_EQ(std::vector<int64_t>(labels.begin(), labels.end()), c.classes());
    }
    std::set<int64_t> whole;
    for (int64_t i : to_vec(base->train_stream()[e].indices())) whole.insert(i);
    EXPECT_EQ(got, whole);
  }
  EXPECT_EQ(b->original_experiences_done(0), 0);
  EXPECT_EQ(b->original_experiences_done(8), 0);
  EXPECT_EQ(b->original_experiences_done(9), 1);
  EXPECT_EQ(b->original_experiences_done(45), 5);
  // With the boundaries shown, a chunk tells its origin.
  auto v = make_benchmark(
      BenchmarkOptions().name("split-synthetic").seed(4).subset(60).online_chunk(7).online_boundaries(true));
  const OnlineOrigin& o = v->train_stream()[17].online_origin();
  EXPECT_EQ(o.experience, 1);
  EXPECT_FALSE(o.first);
  EXPECT_TRUE(o.last);
  EXPECT_TRUE(v->train_stream()[9].online_origin().first);
  EXPECT_THROW(make_benchmark(BenchmarkOptions().name("split-synthetic").online_boundaries(true)), InvalidArgument);
}

TEST(Scenarios, NamesAndDatasetsCombine) {
  auto names = benchmark_names();
  for (const char* n : {"split-fmnist", "permuted-mnist", "rotated-fmnist", "instances-synthetic", "split"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  }
  // A scenario alone takes --dataset; the combined name is the same benchmark.
  auto a = make_benchmark(BenchmarkOptions().name("split").dataset("synthetic").seed(1));
  auto b = make_benchmark(BenchmarkOptions().name("split-synthetic").seed(1));
  EXPECT_EQ(a->type_name(), "split-synthetic");
  EXPECT_EQ(a->constructor_args(), b->constructor_args());
  auto expect_msg = [](const BenchmarkOptions& o, const std::string& needle) {
    try {
      make_benchmark(o);
      FAIL() << needle;
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_msg(BenchmarkOptions().name("split"), "--dataset");
  expect_msg(BenchmarkOptions().name("split").dataset("nope"), "--dataset");
  expect_msg(BenchmarkOptions().name("split-synthetic").dataset("mnist"), "--dataset");
  expect_msg(BenchmarkOptions().name("split-mnist"), "--data-dir");
  expect_msg(BenchmarkOptions().name("rotated-synthetic"), "images");
  expect_msg(BenchmarkOptions().name("permuted-synthetic").class_order({0, 1}), "--class-order");
  expect_msg(BenchmarkOptions().name("split-synthetic").rotations({1, 2}), "--rotations");
  expect_msg(BenchmarkOptions().name("split-synthetic").online_chunk(-1), "--online-chunk");
}

// split-cifar10 over CIFAR-10's binary batches: three channels, each
// normalised by Avalanche's CIFAR-10 mean and std; a checkpoint's arguments
// rebuild it; rotated-cifar10 rotates each channel.
TEST(Scenarios, Cifar10IsNormalisedPerChannel) {
  testing::TempDir d;
  std::vector<std::vector<uint8_t>> labels;
  for (int i = 0; i < 20; ++i) labels.push_back({uint8_t(i % 10)});
  for (int b = 1; b <= 5; ++b) {
    testing::write_file(d.file("data_batch_" + std::to_string(b) + ".bin"), testing::cifar_records(labels, 20 * b));
  }
  testing::write_file(d.file("test_batch.bin"), testing::cifar_records(labels, 0));
  auto bench = make_benchmark(BenchmarkOptions().name("split-cifar10").data_dir(d.path()).seed(2));
  EXPECT_EQ(bench->sample_shape(), (std::vector<int64_t>{3, 32, 32}));
  EXPECT_EQ(bench->num_classes(), 10);
  ASSERT_EQ(bench->train_stream().size(), 5u);
  const Experience& e = bench->test_stream()[0];
  const at::Tensor x = e.get(at::arange(0, 1, at::kLong)).x[0];
  const int64_t row = e.indices()[0].item<int64_t>();  // the record in test_batch.bin
  const double mean[3] = {0.4914, 0.4822, 0.4465}, stddev[3] = {0.2023, 0.1994, 0.2010};
  for (int c = 0; c < 3; ++c) {
    for (int k : {0, 77, 1023}) {
      const double byte = testing::cifar_pixel(size_t(row), size_t(c * 1024 + k));
      EXPECT_NEAR(x[c].reshape({-1})[k].item<double>(), (byte / 255.0 - mean[c]) / stddev[c], 1e-5) << c << " " << k;
    }
  }
  auto rebuilt = std::dynamic_pointer_cast<const Benchmark>(
      ObjectPool().get(bench->type_name(), bench->constructor_args()));
  ASSERT_TRUE(rebuilt);
  EXPECT_TRUE(rebuilt->train_stream()[3].indices().equal(bench->train_stream()[3].indices()));
  auto rotated = make_benchmark(BenchmarkOptions().name("rotated-cifar10").data_dir(d.path()).rotations({90, 0, 0, 0, 0}));
  const Experience& r = rotated->test_stream()[0];
  const at::Tensor all = r.get(at::arange(0, 1, at::kLong)).x[0];
  const at::Tensor plain = rotated->test_stream()[1].get(at::arange(0, 1, at::kLong)).x[0];
  EXPECT_TRUE(all.equal(torch::rot90(plain, 1, {1, 2})));
}

// A user's arrays, --dataset npy:PATH: the benchmark's type is the scenario
// alone, its arguments hold the absolute path, no normalisation applies.
TEST(Scenarios, UserFilesAsFormatAndPath) {
  testing::TempDir d;
  std::vector<float> x;
  std::vector<int64_t> y;
  for (int i = 0; i < 12; ++i) {
    for (int f = 0; f < 3; ++f) x.push_back(float(i * 3 + f));
    y.push_back(i % 3);
  }
  for (const char* split : {"train", "test"}) {
    testing::write_file(d.file(std::string(split) + "_x.npy"), testing::npy_bytes("<f4", false, "(12, 3)", testing::le_bytes(x)));
    testing::write_file(d.file(std::string(split) + "_y.npy"), testing::npy_bytes("<i8", false, "(12,)", testing::le_bytes(y)));
  }
  auto bench = make_benchmark(BenchmarkOptions().name("split").dataset("npy:" + d.path()).experiences(3).class_order({2, 0, 1}));
  EXPECT_EQ(bench->type_name(), "split");
  EXPECT_EQ(bench->constructor_args()["dataset"], "npy:" + d.path());
  EXPECT_FALSE(bench->constructor_args().contains("normalize"));
  ASSERT_EQ(bench->train_stream().size(), 3u);
  EXPECT_EQ(bench->train_stream()[0].classes(), (std::vector<int64_t>{2}));
  const Experience& e = bench->train_stream()[0];
  const auto batch = e.get(at::arange(0, e.size(), at::kLong));
  for (int64_t i = 0; i < e.size(); ++i) {
    const int64_t row = e.indices()[i].item<int64_t>();
    EXPECT_EQ(batch.y[i].item<int64_t>(), 2);
    EXPECT_EQ(batch.x[i][1].item<float>(), float(row * 3 + 1));  // as the file holds it
  }
  auto rebuilt = std::dynamic_pointer_cast<const Benchmark>(ObjectPool().get("split", bench->constructor_args()));
  ASSERT_TRUE(rebuilt);
  EXPECT_TRUE(rebuilt->train_stream()[1].indices().equal(bench->train_stream()[1].indices()));
  // A damaged argument in a checkpoint is an error, not a crash.
  nlohmann::json bad = bench->constructor_args();
  bad["dataset"] = "zip:" + d.path();
  EXPECT_THROW(ObjectPool().get("split", bad), InvalidArgument);
  bad.erase("dataset");
  EXPECT_THROW(ObjectPool().get("split", bad), InvalidArgument);
}

class FmnistScenarios : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::have_fmnist()) GTEST_SKIP() << "Fashion-MNIST not installed";
  }
};

// Rotated Fashion-MNIST: each experience shows every class, its images
// rotated by its angle (drawn as Avalanche draws them, integers in
// [-180, 180], or given), the same angle in train and test.
TEST_F(FmnistScenarios, RotatedAppliesOneAnglePerExperience) {
  auto b = make_benchmark(BenchmarkOptions().name("rotated-fmnist").seed(1).subset(50).experiences(3).rotations({0, 90, -30}));
  ASSERT_EQ(b->train_stream().size(), 3u);
  const Experience& e = b->train_stream()[1];
  EXPECT_EQ(e.classes().size(), 10u);
  EXPECT_TRUE(e.pixel_map().equal(rotation_pixel_map(1, 28, 28, 90)));
  EXPECT_TRUE(b->test_stream()[1].pixel_map().equal(e.pixel_map()));
  const Batch got = e.get(torch::tensor({0}, torch::kLong));
  const Batch base = e.dataset()->get(e.indices().narrow(0, 0, 1));
  const at::Tensor expected = torch::rot90((base.x - 0.2860) / 0.3530, 1, {2, 3});
  EXPECT_TRUE(got.x.equal(expected));
  // Drawn angles: a map of one of the 361 integer angles, another per seed.
  auto d1 = make_benchmark(BenchmarkOptions().name("rotated-fmnist").seed(1).subset(50).experiences(2));
  auto d2 = make_benchmark(BenchmarkOptions().name("rotated-fmnist").seed(2).subset(50).experiences(2));
  EXPECT_FALSE(d1->train_stream()[0].pixel_map().equal(d2->train_stream()[0].pixel_map()));
  bool found = false;
  for (int angle = -180; angle <= 180 && !found; ++angle) {
    found = d1->train_stream()[0].pixel_map().equal(rotation_pixel_map(1, 28, 28, angle));
  }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace continua
