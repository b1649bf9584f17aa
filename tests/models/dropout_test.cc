#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>

#include "continua/errors.h"
#include "continua/models/dropout.h"

namespace continua {
namespace {

// The state of the default generator, to compare two streams.
at::Tensor generator_state() {
  at::Generator g = at::detail::getDefaultCPUGenerator();
  return g.get_state();
}

// continua::Dropout against torch::dropout from the same generator state:
// the same output, the same gradient, the same generator state after. The
// shapes cross the engine's 624-word twists at odd offsets; a draw before
// moves the start inside a twist.
TEST(Dropout, EqualsTorchDropoutBitForBit) {
  for (double p : {0.5, 0.3, 0.1, 0.9, 0.77}) {
    for (std::vector<int64_t> shape : std::vector<std::vector<int64_t>>{{128, 512}, {1, 1}, {3, 701}, {1000, 3}, {7}}) {
      for (int64_t shift : {0, 1, 311}) {
        torch::manual_seed(uint64_t(shape[0] * 31 + shift));
        if (shift) at::rand({shift});  // start mid-stream
        const at::Tensor start = generator_state();
        at::Tensor x = torch::randn(shape).requires_grad_(true);
        const at::Tensor after_x = generator_state();

        at::Generator g = at::detail::getDefaultCPUGenerator();
        g.set_state(after_x);
        at::Tensor ref = torch::dropout(x, p, true);
        ref.sum().backward();
        const at::Tensor ref_grad = x.grad().clone();
        const at::Tensor ref_state = generator_state();
        x.mutable_grad().reset();

        g.set_state(after_x);
        Dropout d(p);
        d->train();
        at::Tensor out = d->forward(x);
        out.sum().backward();
        SCOPED_TRACE("p " + std::to_string(p) + " numel " + std::to_string(x.numel()) + " shift " +
                     std::to_string(shift));
        EXPECT_TRUE(out.equal(ref));
        EXPECT_TRUE(x.grad().equal(ref_grad));
        EXPECT_TRUE(generator_state().equal(ref_state));
        EXPECT_FALSE(start.equal(ref_state));
      }
    }
  }
}

TEST(Dropout, BernoulliFillEqualsBernoulli) {
  torch::manual_seed(5);
  at::rand({17});
  const at::Tensor s = generator_state();
  at::Tensor ref = at::empty({5000}).bernoulli_(0.25);
  at::Generator g = at::detail::getDefaultCPUGenerator();
  g.set_state(s);
  at::Tensor mine = at::empty({5000});
  bernoulli_fill(mine, 0.25);
  EXPECT_TRUE(mine.equal(ref));
  // Not a constant: about a quarter ones.
  EXPECT_NEAR(mine.mean().item<double>(), 0.25, 0.03);
}

TEST(Dropout, EvalModeAndEdgeProbabilities) {
  torch::manual_seed(1);
  at::Tensor x = torch::randn({4, 6});
  Dropout d(0.5);
  d->eval();
  EXPECT_TRUE(d->forward(x).equal(x));
  Dropout zero(0.0);
  zero->train();
  EXPECT_TRUE(zero->forward(x).equal(x));
  Dropout one(1.0);
  one->train();
  EXPECT_TRUE(one->forward(x).equal(torch::zeros_like(x)));
  EXPECT_THROW(Dropout(1.5), InvalidArgument);
  EXPECT_THROW(Dropout(-0.1), InvalidArgument);
  at::Tensor ints = at::zeros({3}, at::kLong);
  EXPECT_THROW(bernoulli_fill(ints, 0.5), InvalidArgument);
}

TEST(Dropout, CloneKeepsProbabilityAndMode) {
  Dropout d(0.3);
  auto c = std::dynamic_pointer_cast<DropoutImpl>(d->clone());
  ASSERT_TRUE(c);
  EXPECT_DOUBLE_EQ(c->p(), 0.3);
}

}  // namespace
}  // namespace continua
