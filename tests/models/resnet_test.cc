// The reduced ResNet-18 (--model resnet18): shapes, size against the
// reference architecture, BatchNorm state and modes.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "continua/errors.h"
#include "continua/models/model.h"

namespace continua {
namespace {

ModelOptions resnet_options(int64_t channels, int64_t side) {
  return ModelOptions().type("resnet18").input_size(channels * side * side).channels(channels).image_size(side);
}

int64_t count(const std::vector<at::Tensor>& ts) {
  int64_t n = 0;
  for (const auto& t : ts) n += t.numel();
  return n;
}

TEST(ResNet18, ShapesForCifarAndMnistSizedImages) {
  torch::manual_seed(0);
  auto cifar = make_model(resnet_options(3, 32));
  cifar->adapt({0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  EXPECT_EQ(cifar->feature_size(), 160);
  EXPECT_EQ(cifar->features(torch::randn({4, 3, 32, 32})).sizes(), (std::vector<int64_t>{4, 160}));
  EXPECT_EQ(cifar->forward(torch::randn({4, 3, 32, 32})).sizes(), (std::vector<int64_t>{4, 10}));
  // Flattened rows are taken as the options' images.
  EXPECT_EQ(cifar->forward(torch::randn({2, 3 * 32 * 32})).sizes(), (std::vector<int64_t>{2, 10}));
  auto mnist = make_model(resnet_options(1, 28));
  EXPECT_EQ(mnist->features(torch::randn({5, 1, 28, 28})).sizes(), (std::vector<int64_t>{5, 160}));
  EXPECT_EQ(mnist->forward(torch::randn({5, 784})).sizes(), (std::vector<int64_t>{5, 2}));
  // Width from nf: 8 * nf features.
  auto wide = make_model(resnet_options(3, 32).nf(8));
  EXPECT_EQ(wide->features(torch::randn({2, 3, 32, 32})).size(1), 64);
  // The wrong number of channels is an error naming the expected shape.
  try {
    cifar->forward(torch::randn({2, 1, 32, 32}));
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("[B, 3, H, W]"), std::string::npos) << e.what();
  }
}

TEST(ResNet18, ParameterCountMatchesTheReferenceArchitecture) {
  // GEM's model/common.py ResNet18(nclasses=10, nf=20) (Avalanche's
  // SlimResNet18): 1,094,750 parameters, of which the linear layer 160*10+10;
  // 3,020 buffer values (60 buffers: running mean, variance and
  // num_batches_tracked of 20 BatchNorms). Counted by hand: stem 540+40,
  // stages 14,560 + 51,600 + 205,600 + 820,800.
  torch::manual_seed(0);
  auto m = make_model(resnet_options(3, 32));
  m->adapt({9});
  EXPECT_EQ(count(m->parameters()), 1094750);
  EXPECT_EQ(count(m->buffers()), 3020);
  EXPECT_EQ(m->buffers().size(), 60u);
  // One input channel: the stem's 3x3 convolution has 20*1*9 weights, not 20*3*9.
  auto gray = make_model(resnet_options(1, 28));
  gray->adapt({9});
  EXPECT_EQ(count(gray->parameters()), 1094750 - 2 * 180);
  // The reference's names, under features.
  const auto params = m->named_parameters();
  for (const char* key : {"features.conv1.weight", "features.bn1.weight", "features.layer1.0.conv1.weight",
                          "features.layer2.0.shortcut.0.weight", "features.layer2.0.shortcut.1.bias",
                          "features.layer4.1.bn2.weight", "classifier.head.weight"}) {
    EXPECT_TRUE(params.contains(key)) << key;
  }
  EXPECT_FALSE(params.contains("features.layer1.0.shortcut.0.weight")) << "identity shortcut in layer1";
  EXPECT_FALSE(params.contains("features.conv1.bias")) << "convolutions have no bias";
}

TEST(ResNet18, BatchNormBuffersAreStateAndLoad) {
  torch::manual_seed(1);
  auto m = make_model(resnet_options(3, 8));
  m->train();
  m->forward(torch::randn({6, 3, 8, 8}));  // moves the running statistics
  StateTree tree;
  StateWriter w(tree, "m");
  m->save_state(w);
  for (const char* key : {"m.features.bn1.running_mean", "m.features.bn1.running_var",
                          "m.features.bn1.num_batches_tracked", "m.features.layer3.0.shortcut.1.running_var"}) {
    EXPECT_TRUE(tree.contains(key)) << key;
  }
  const at::Tensor& tracked = std::get<at::Tensor>(tree.entries().at("m.features.bn1.num_batches_tracked"));
  EXPECT_EQ(tracked.item<int64_t>(), 1);
  EXPECT_EQ(StateReader(tree, "m").json("options").at("nf").get<int64_t>(), 20);
  // A fresh model takes the buffers: its eval-mode output is the same.
  torch::manual_seed(2);
  auto fresh = make_model(resnet_options(3, 8));
  fresh->load_state(StateReader(tree, "m"));
  m->eval();
  fresh->eval();
  const at::Tensor x = torch::randn({3, 3, 8, 8});
  EXPECT_TRUE(fresh->forward(x).equal(m->forward(x)));
  EXPECT_EQ(fresh->named_buffers()["features.bn1.num_batches_tracked"].item<int64_t>(), 1);
  // The buffers are what made the difference (teeth: fresh statistics differ).
  torch::manual_seed(2);
  auto only_params = make_model(resnet_options(3, 8));
  for (auto& p : only_params->named_parameters()) p.value().data().copy_(m->named_parameters()[p.key()]);
  only_params->eval();
  EXPECT_FALSE(only_params->forward(x).equal(m->forward(x)));
}

TEST(ResNet18, OptionsWithoutNfLoadAndOtherModelsDoNotWriteIt) {
  nlohmann::json j = resnet_options(3, 32).to_json();
  ASSERT_EQ(j.at("nf").get<int64_t>(), 20);
  j.erase("nf");  // a checkpoint written before nf existed
  EXPECT_EQ(ModelOptions::from_json(j).nf_, 20);
  EXPECT_EQ(ModelOptions::from_json(resnet_options(3, 32).nf(12).to_json()).nf_, 12);
  // mlp and cnn options are what they were (their digests do not change).
  EXPECT_FALSE(ModelOptions().to_json().contains("nf"));
  EXPECT_FALSE(ModelOptions().type("cnn").to_json().contains("nf"));
}

TEST(ResNet18, EvalModeUsesRunningStatisticsSoASampleIgnoresItsBatch) {
  torch::manual_seed(3);
  auto m = make_model(resnet_options(3, 16));
  m->train();
  for (int i = 0; i < 3; ++i) m->forward(torch::randn({8, 3, 16, 16}) * 2 + 1);
  const at::Tensor x = torch::randn({5, 3, 16, 16});
  m->eval();
  const auto before = m->named_buffers()["features.bn1.running_mean"].clone();
  at::Tensor alone = m->forward(x.narrow(0, 0, 1));
  at::Tensor in_batch = m->forward(x).narrow(0, 0, 1);
  EXPECT_TRUE(torch::allclose(alone, in_batch, 1e-5, 1e-6)) << alone << in_batch;
  EXPECT_TRUE(m->named_buffers()["features.bn1.running_mean"].equal(before)) << "eval must not update statistics";
  // In train mode the same sample's output depends on its batch (teeth).
  m->train();
  at::Tensor alone_train = m->forward(x.narrow(0, 0, 2)).narrow(0, 0, 1);
  at::Tensor batch_train = m->forward(x).narrow(0, 0, 1);
  EXPECT_FALSE(torch::allclose(alone_train, batch_train, 1e-5, 1e-6));
  EXPECT_FALSE(m->named_buffers()["features.bn1.running_mean"].equal(before));
}

TEST(ResNet18, CloneCopiesBuffersAndNonImageInputsAreRefused) {
  torch::manual_seed(4);
  auto m = make_model(resnet_options(3, 8));
  m->forward(torch::randn({4, 3, 8, 8}));
  m->eval();
  auto copy = m->clone_model();
  EXPECT_FALSE(copy->is_training());
  const at::Tensor x = torch::randn({2, 3, 8, 8});
  EXPECT_TRUE(copy->forward(x).equal(m->forward(x)));
  // 1-d inputs (split-synthetic: 32 features, as the CLI passes them).
  try {
    make_model(ModelOptions().type("resnet18").input_size(32).channels(1).image_size(1));
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("resnet18 needs image inputs"), std::string::npos) << e.what();
  }
  EXPECT_THROW(make_model(resnet_options(3, 32).nf(0)), InvalidArgument);
  EXPECT_THROW(make_model(resnet_options(3, 32).nf(kMaxResNetFilters + 1)), InvalidArgument);
}

}  // namespace
}  // namespace continua
