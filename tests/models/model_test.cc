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

}  // namespace
}  // namespace continua
