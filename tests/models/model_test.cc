#include <gtest/gtest.h>
#include <torch/torch.h>

#include "continua/errors.h"
#include "continua/models/model.h"

namespace continua {
namespace {

TEST(Model, HeadGrowsAndKeepsOldWeights) {
  torch::manual_seed(0);
  auto m = make_model(ModelOptions().input_size(20).hidden(8));
  EXPECT_EQ(m->num_outputs(), 2);
  at::Tensor x = torch::randn({4, 20});
  at::Tensor before = m->forward(x).detach().clone();
  EXPECT_TRUE(m->adapt({0, 5}));
  EXPECT_EQ(m->num_outputs(), 6);
  at::Tensor after = m->forward(x).detach();
  EXPECT_TRUE(after.narrow(1, 0, 2).equal(before));
  EXPECT_FALSE(m->adapt({1, 3}));  // already covered
  EXPECT_EQ(m->num_outputs(), 6);
}

TEST(Model, GrownStateLoadsIntoFreshModel) {
  torch::manual_seed(1);
  auto grown = make_model(ModelOptions().input_size(10).hidden(4).layers(2));
  grown->adapt({9});
  StateTree tree;
  StateWriter w(tree, "m");
  grown->save_state(w);
  torch::manual_seed(2);
  auto fresh = make_model(ModelOptions().input_size(10).hidden(4).layers(2));
  ASSERT_EQ(fresh->num_outputs(), 2);
  fresh->load_state(StateReader(tree, "m"));
  EXPECT_EQ(fresh->num_outputs(), 10);
  at::Tensor x = torch::randn({3, 10});
  EXPECT_TRUE(fresh->forward(x).equal(grown->forward(x)));
}

TEST(Model, LoadRejectsWrongShapeBeforeChangingAnything) {
  auto a = make_model(ModelOptions().input_size(10).hidden(4));
  auto b = make_model(ModelOptions().input_size(10).hidden(5));
  b->adapt({7});
  StateTree tree;
  StateWriter w(tree);
  b->save_state(w);
  at::Tensor before = a->named_parameters()["features.0.weight"].clone();
  try {
    a->load_state(StateReader(tree));
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("features.0.weight"), std::string::npos) << e.what();
  }
  EXPECT_EQ(a->num_outputs(), 2) << "head must not grow on a failed load";
  EXPECT_TRUE(a->named_parameters()["features.0.weight"].equal(before));
}

TEST(Model, CnnAndCloneAndBadOptions) {
  torch::manual_seed(3);
  auto cnn = make_model(ModelOptions().type("cnn").input_size(784).hidden(16).image_size(28));
  at::Tensor x = torch::randn({2, 1, 28, 28});
  EXPECT_EQ(cnn->forward(x).sizes(), (std::vector<int64_t>{2, 2}));
  auto copy = cnn->clone_model();
  EXPECT_TRUE(copy->forward(x).equal(cnn->forward(x)));
  copy->named_parameters()["classifier.head.bias"].data().add_(1);
  EXPECT_FALSE(copy->forward(x).equal(cnn->forward(x))) << "clone must not share parameters";
  EXPECT_THROW(make_model(ModelOptions().type("rnn")), InvalidArgument);
  EXPECT_THROW(make_model(ModelOptions().hidden(0)), InvalidArgument);
  EXPECT_THROW(make_model(ModelOptions().dropout(1.5)), InvalidArgument);
}

TEST(Model, FeaturesAndHeadComposeToForward) {
  torch::manual_seed(5);
  auto m = make_model(ModelOptions().input_size(12).hidden(7));
  m->adapt({0, 3});
  at::Tensor x = torch::randn({5, 12});
  at::Tensor h = m->features(x);
  EXPECT_EQ(h.sizes(), (std::vector<int64_t>{5, 7}));
  EXPECT_EQ(m->feature_size(), 7);
  EXPECT_TRUE(m->head(h).equal(m->forward(x)));
}

// One head per task: a sample's logits come from its task's head, classes
// that task has not shown are masked, and the heads checkpoint.
TEST(Model, MultiHeadAnswersWithTheSamplesTaskHead) {
  torch::manual_seed(6);
  auto m = make_model(ModelOptions().input_size(6).hidden(5).multi_head(true));
  EXPECT_TRUE(m->adapt({0, 1}, /*task=*/0));
  EXPECT_TRUE(m->adapt({2, 3}, /*task=*/1));
  EXPECT_FALSE(m->adapt({0, 1}, 0));
  at::Tensor x = torch::randn({4, 6});
  at::Tensor tasks = torch::tensor({0, 1, 1, 0}, torch::kLong);
  at::Tensor out = m->forward(x, tasks);
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{4, 4}));
  // Task 0's rows: classes 2 and 3 masked; task 1's rows: 0 and 1 masked.
  EXPECT_TRUE(out[0].narrow(0, 2, 2).eq(-1000).all().item<bool>());
  EXPECT_TRUE(out[1].narrow(0, 0, 2).eq(-1000).all().item<bool>());
  EXPECT_TRUE(out[1].narrow(0, 2, 2).ne(-1000).all().item<bool>());
  EXPECT_EQ(out[0].argmax().item<int64_t>() < 2, true);
  EXPECT_EQ(out[1].argmax().item<int64_t>() >= 2, true);
  // A sample of a task with no head yet has no answer: every class masked.
  at::Tensor unseen = m->forward(x, torch::tensor({0, 1, 2, 0}, torch::kLong));
  EXPECT_TRUE(unseen[2].eq(-1000).all().item<bool>());
  EXPECT_TRUE(unseen[1].equal(out[1]));
  // The heads (and which classes each has shown) load into a fresh model.
  StateTree tree;
  StateWriter w(tree, "m");
  m->save_state(w);
  torch::manual_seed(7);
  auto fresh = make_model(ModelOptions().input_size(6).hidden(5).multi_head(true));
  fresh->load_state(StateReader(tree, "m"));
  EXPECT_TRUE(fresh->forward(x, tasks).equal(out));
  // A single-head model refuses a multi-head checkpoint.
  auto single = make_model(ModelOptions().input_size(6).hidden(5));
  EXPECT_THROW(single->load_state(StateReader(tree, "m")), InvalidArgument);
}

// A user's own module as the feature extractor, continua's head on top: it
// trains, clones and checkpoints like the built-in models.
TEST(Model, UsersOwnFeatureExtractorCheckpointsAndClones) {
  torch::manual_seed(8);
  auto extractor = [] {
    return torch::nn::Sequential(torch::nn::Flatten(), torch::nn::Linear(16, 9), torch::nn::Tanh());
  };
  auto m = make_model_with_features(extractor(), 9);
  EXPECT_EQ(m->options().type_, "custom");
  m->adapt({0, 4});
  at::Tensor x = torch::randn({3, 1, 4, 4});
  EXPECT_EQ(m->forward(x).sizes(), (std::vector<int64_t>{3, 5}));
  auto copy = m->clone_model();
  EXPECT_TRUE(copy->forward(x).equal(m->forward(x)));
  copy->named_parameters()["features.1.weight"].data().add_(1);
  EXPECT_FALSE(copy->forward(x).equal(m->forward(x)));
  StateTree tree;
  StateWriter w(tree);
  m->save_state(w);
  auto fresh = make_model_with_features(extractor(), 9);
  fresh->load_state(StateReader(tree));
  EXPECT_TRUE(fresh->forward(x).equal(m->forward(x)));
  EXPECT_THROW(make_model_with_features(FeatureExtractor{}, 9), InvalidArgument);
  EXPECT_THROW(make_model_with_features(extractor(), 0), InvalidArgument);
}

}  // namespace
}  // namespace continua
