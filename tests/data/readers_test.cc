// The data sets over the readers (CifarDataset, NpyDataset, CsvDataset,
// ImageFolderDataset, open_dataset_pair): tensors as the files hold them,
// class names, constructor arguments, a round trip through a checkpoint that
// stores arguments only, and reuse of live data sets (unique_objects).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <torch/torch.h>

#include <filesystem>

#include "continua/checkpoint/checkpoint.h"
#include "continua/data/dataset.h"
#include "continua/errors.h"
#include "continua/state/state_tree.h"
#include "data/readers/writers.h"
#include "test_util.h"

namespace continua {
namespace {

using testing::TempDir;
using testing::write_file;
namespace r = readers;

// CIFAR-10: 5 batches of 2 records and a test batch of 3, as the
// torch-free test writes them; labels i % 10.
std::string make_cifar10(const TempDir& d) {
  const std::string dir = d.file("cifar-10-batches-bin");
  for (int b = 1; b <= 5; ++b) {
    write_file(dir + "/data_batch_" + std::to_string(b) + ".bin",
               testing::cifar_records({{uint8_t(2 * b - 2)}, {uint8_t(2 * b - 1)}}, size_t(2 * (b - 1))));
  }
  write_file(dir + "/test_batch.bin", testing::cifar_records({{9}, {0}, {5}}, 100));
  return d.path();
}

std::string make_npy(const TempDir& d) {
  const std::string x = testing::npy_bytes("<f8", false, "(4, 3)",
                                           testing::le_bytes(std::vector<double>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}));
  const std::string y = testing::npy_bytes("<i8", false, "(4,)", testing::le_bytes(std::vector<int64_t>{3, 1, 0, 2}));
  const std::string tx = testing::npy_bytes("|u1", false, "(2, 3)", std::string("\x00\x80\xff\x01\x02\x03", 6));
  const std::string ty = testing::npy_bytes("<i4", false, "(2, 1)", testing::le_bytes(std::vector<int32_t>{1, 1}));
  testing::write_zip(d.file("data.npz"), {{"train_x.npy", x, true}, {"train_y.npy", y}, {"test_x.npy", x}, {"test_y.npy", y, true}});
  for (auto [n, b] : {std::pair{"train_x", x}, {"train_y", y}, {"test_x", tx}, {"test_y", ty}}) {
    write_file(d.file(std::string("npy/") + n + ".npy"), b);
    // npy2/: test inputs of another shape than the train inputs.
    write_file(d.file(std::string("npy2/") + n + ".npy"),
               std::string(n) == "test_x" ? testing::npy_bytes("|u1", false, "(2, 2)", "abcd") : b);
  }
  return d.file("data.npz");
}

std::string make_csv(const TempDir& d) {
  write_file(d.file("csv/train.csv"), "a,b,kind\n1,2,dog\n3,4,cat\n5,6,dog\n");
  write_file(d.file("csv/test.csv"), "a,b,kind\n7,8,cat\n");
  return d.file("csv");
}

std::string make_images(const TempDir& d) {
  const std::string root = d.file("images");
  auto png = [&](const std::string& path, uint8_t base) {
    testing::PngSpec s;
    s.width = 3;
    s.height = 2;
    s.color_type = PNG_COLOR_TYPE_RGB;
    for (int i = 0; i < 18; ++i) s.rows.push_back(uint8_t(base + i));
    write_file(root + path, testing::png_bytes(s));
  };
  png("/train/zebra/1.png", 10);
  png("/train/ant/1.png", 20);
  png("/train/ant/2.png", 30);
  png("/test/zebra/1.png", 40);
  return root;
}

std::vector<int64_t> targets_of(const Dataset& d) {
  const at::Tensor t = d.targets();
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
}

TEST(FileDatasets, CifarKeepsBytesAndScalesOnGet) {
  TempDir d;
  ObjectPool pool;
  auto [train, test] = open_dataset_pair("cifar", make_cifar10(d), pool);
  auto cifar = std::dynamic_pointer_cast<const CifarDataset>(train);
  ASSERT_TRUE(cifar);
  EXPECT_EQ(cifar->variant(), 10);
  EXPECT_EQ(cifar->inputs().scalar_type(), at::kByte);  // uint8 in memory
  EXPECT_EQ(train->size(), 10);
  EXPECT_EQ(train->sample_shape(), (std::vector<int64_t>{3, 32, 32}));
  EXPECT_EQ(targets_of(*train), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(targets_of(*test), (std::vector<int64_t>{9, 0, 5}));
  Batch b = train->get(torch::tensor({7}, torch::kLong));
  EXPECT_EQ(b.x.scalar_type(), at::kFloat);
  // Channel 1 (G), row 5, column 9: byte 1024 + 5 * 32 + 9 of record 7.
  EXPECT_FLOAT_EQ(b.x[0][1][5][9].item<float>(), testing::cifar_pixel(7, 1024 + 5 * 32 + 9) / 255.0f);
  EXPECT_EQ(cifar->constructor_args(),
            (nlohmann::json{{"path", d.path()}, {"variant", 10}, {"split", "train"}, {"label", "fine"}}));
  EXPECT_EQ(pool.built(), 2u);
}

TEST(FileDatasets, NpyFolderAndNpz) {
  TempDir d;
  const std::string npz = make_npy(d);
  auto train = NpyDataset::open(npz, r::Split::kTrain);
  EXPECT_EQ(train->inputs().scalar_type(), at::kFloat);  // float64 -> float32
  EXPECT_EQ(train->sample_shape(), (std::vector<int64_t>{3}));
  EXPECT_FLOAT_EQ(train->get(torch::tensor({2}, torch::kLong)).x[0][1].item<float>(), 7.0f);
  EXPECT_EQ(targets_of(*train), (std::vector<int64_t>{3, 1, 0, 2}));
  auto test = NpyDataset::open(d.file("npy"), r::Split::kTest);
  EXPECT_EQ(test->inputs().scalar_type(), at::kByte);
  EXPECT_FLOAT_EQ(test->get(torch::tensor({0}, torch::kLong)).x[0][2].item<float>(), 1.0f);
  EXPECT_EQ(targets_of(*test), (std::vector<int64_t>{1, 1}));
  EXPECT_TRUE(test->class_names().empty());
  EXPECT_EQ(test->type_name(), "npy-dataset");
  ObjectPool pool;
  EXPECT_NO_THROW(open_dataset_pair("npy", d.file("npy"), pool));
  // Train and test inputs of other shapes: the pair is refused.
  try {
    open_dataset_pair("npy", d.file("npy2"), pool);
    FAIL();
  } catch (const CorruptionError& e) {
    EXPECT_NE(std::string(e.what()).find("shape [3], test samples [2]"), std::string::npos) << e.what();
  }
}

TEST(FileDatasets, CsvAndImagesHaveClassNames) {
  TempDir d;
  ObjectPool pool;
  auto [train, test] = open_dataset_pair("csv", make_csv(d), pool);
  EXPECT_EQ(train->class_names(), (std::vector<std::string>{"cat", "dog"}));
  EXPECT_EQ(targets_of(*train), (std::vector<int64_t>{1, 0, 1}));
  EXPECT_EQ(targets_of(*test), (std::vector<int64_t>{0}));
  EXPECT_EQ(test->class_names(), train->class_names());
  EXPECT_FLOAT_EQ(test->get(torch::tensor({0}, torch::kLong)).x[0][1].item<float>(), 8.0f);

  auto [itrain, itest] = open_dataset_pair("images", make_images(d), pool);
  EXPECT_EQ(itrain->class_names(), (std::vector<std::string>{"ant", "zebra"}));
  EXPECT_EQ(targets_of(*itrain), (std::vector<int64_t>{0, 0, 1}));
  EXPECT_EQ(targets_of(*itest), (std::vector<int64_t>{1}));
  auto images = std::dynamic_pointer_cast<const ImageFolderDataset>(itrain);
  ASSERT_TRUE(images);
  EXPECT_EQ(images->inputs().scalar_type(), at::kByte);
  EXPECT_EQ(images->inputs().sizes().vec(), (std::vector<int64_t>{3, 3, 2, 3}));
  // Image 1 (ant/2.png, base 30): channel 2 of pixel (1, 0) is byte (3 * 1 + 0) * 3 + 2.
  EXPECT_EQ(images->inputs()[1][2][1][0].item<int64_t>(), 30 + 11);
}

TEST(FileDatasets, IdxFolderAsMnistShipsIt) {
  TempDir d;
  auto idx = [](std::vector<uint32_t> dims, size_t n) {
    std::string s = {0, 0, 0x08, char(dims.size())};
    for (uint32_t v : dims)
      for (int k = 3; k >= 0; --k) s.push_back(char(v >> (8 * k)));
    for (size_t i = 0; i < n; ++i) s.push_back(char(i % 10));
    return s;
  };
  write_file(d.file("train-images-idx3-ubyte"), idx({4, 2, 2}, 16));
  write_file(d.file("train-labels-idx1-ubyte"), idx({4}, 4));
  write_file(d.file("t10k-images-idx3-ubyte"), idx({2, 2, 2}, 8));
  ObjectPool pool;
  try {
    open_dataset_pair("idx", d.path(), pool);
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("t10k-labels-idx1-ubyte"), std::string::npos) << e.what();
  }
  write_file(d.file("t10k-labels-idx1-ubyte"), idx({2}, 2));
  auto [train, test] = open_dataset_pair("idx", d.path(), pool);
  EXPECT_EQ(train->sample_shape(), (std::vector<int64_t>{1, 2, 2}));
  EXPECT_EQ(targets_of(*test), (std::vector<int64_t>{0, 1}));
  EXPECT_TRUE(std::dynamic_pointer_cast<const IdxDataset>(train));
}

TEST(FileDatasets, ImpossibleArgumentsAreNamed) {
  TempDir d;
  ObjectPool pool;
  EXPECT_THROW(open_dataset_pair("parquet", d.path(), pool), InvalidArgument);
  EXPECT_THROW(open_dataset_pair("cifar", d.path(), pool), InvalidArgument);
  EXPECT_THROW(open_dataset_pair("cifar10", make_cifar10(d) + "/nope", pool), InvalidArgument);
  // Constructor arguments from a checkpoint are data: malformed ones are
  // InvalidArgument, never a JSON library exception.
  EXPECT_THROW(pool.get("cifar-dataset", {{"path", d.path()}, {"variant", 7}, {"split", "train"}, {"label", "fine"}}),
               InvalidArgument);
  EXPECT_THROW(pool.get("cifar-dataset", {{"path", d.path()}, {"variant", "10"}, {"split", "train"}, {"label", "fine"}}),
               InvalidArgument);
  EXPECT_THROW(pool.get("npy-dataset", {{"path", 3}, {"split", "train"}}), InvalidArgument);
  EXPECT_THROW(pool.get("csv-dataset", {{"path", d.path()}, {"split", "validation"}}), InvalidArgument);
  EXPECT_THROW(pool.get("image-folder-dataset", nlohmann::json::array()), InvalidArgument);
}

// Every kind of file data set, saved in a checkpoint and loaded back: the
// file holds the constructor arguments only; without unique objects the
// data sets are rebuilt from the files with equal samples, with them the
// live objects are reused.
TEST(FileDatasets, CheckpointRoundTripStoresArgumentsOnly) {
  TempDir d;
  ObjectPool pool;
  std::vector<std::pair<std::string, std::string>> kinds = {
      {"cifar", make_cifar10(d)}, {"npy", make_npy(d)}, {"csv", make_csv(d)}, {"images", make_images(d)}};
  StateTree tree;
  StateWriter w(tree, "strategy");
  std::vector<std::shared_ptr<const Dataset>> live;
  for (const auto& [format, path] : kinds) {
    auto [train, test] = open_dataset_pair(format, path, pool);
    w.write_object(format + ".train", std::dynamic_pointer_cast<const SerializableObject>(train));
    w.write_object(format + ".test", std::dynamic_pointer_cast<const SerializableObject>(test));
    live.push_back(train);
    live.push_back(test);
  }
  const std::string ckpt = d.file("c.safetensors");
  write_checkpoint(tree, 0, ckpt);
  EXPECT_LT(std::filesystem::file_size(ckpt), 8192u) << "the samples (CIFAR alone is 40 KB) are not in the file";

  LoadedCheckpoint rebuilt = read_checkpoint(ckpt);
  EXPECT_EQ(rebuilt.objects_built, live.size());
  UniqueObjects unique;
  for (const auto& l : live) unique.push_back(std::dynamic_pointer_cast<const SerializableObject>(l));
  LoadedCheckpoint reused = read_checkpoint(ckpt, {}, unique);
  EXPECT_EQ(reused.objects_built, 0u);
  size_t i = 0;
  for (const auto& kv : kinds) {
    for (const char* split : {"train", "test"}) {
      SCOPED_TRACE(kv.first + "." + split);
      const std::string key = "strategy." + kv.first + "." + split;
      auto a = std::dynamic_pointer_cast<const FileDataset>(StateReader(rebuilt.tree).object(key));
      auto b = std::dynamic_pointer_cast<const FileDataset>(live[i]);
      ASSERT_TRUE(a && b);
      EXPECT_NE(a.get(), b.get());
      EXPECT_EQ(a->constructor_args(), b->constructor_args());
      EXPECT_TRUE(a->inputs().equal(b->inputs()));
      EXPECT_TRUE(a->targets().equal(b->targets()));
      EXPECT_EQ(a->class_names(), b->class_names());
      EXPECT_EQ(StateReader(reused.tree).object(key).get(), std::dynamic_pointer_cast<const SerializableObject>(live[i]).get());
      ++i;
    }
  }
}

}  // namespace
}  // namespace continua
