// Image transforms (data/transforms.h) against computations by hand.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "continua/data/transforms.h"
#include "continua/errors.h"

namespace continua {
namespace {

at::Generator generator(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

TEST(Transforms, FlipMirrorsTheDrawnSamplesByHand) {
  const at::Tensor x = torch::arange(16 * 2 * 2 * 3, at::kFloat).reshape({16, 2, 2, 3});
  const at::Tensor keep = x.clone();
  at::Generator g = generator(3), same = generator(3);
  const at::Tensor out = RandomHorizontalFlip(0.5)(x, g);
  EXPECT_TRUE(x.equal(keep)) << "the input must not change";
  // The documented draws: one uniform per sample, flipped when < p.
  const at::Tensor u = at::rand({16}, same, at::TensorOptions().dtype(at::kFloat));
  int flipped = 0;
  for (int64_t b = 0; b < 16; ++b) {
    const bool f = u[b].item<float>() < 0.5f;
    flipped += f;
    for (int64_t c = 0; c < 2; ++c)
      for (int64_t i = 0; i < 2; ++i)
        for (int64_t j = 0; j < 3; ++j) {
          const float want = x[b][c][i][f ? 2 - j : j].item<float>();
          ASSERT_EQ(out[b][c][i][j].item<float>(), want) << b << " " << c << " " << i << " " << j;
        }
  }
  EXPECT_GT(flipped, 0);
  EXPECT_LT(flipped, 16);
  at::Generator g2 = generator(1);
  EXPECT_TRUE(RandomHorizontalFlip(1.0)(x, g2).equal(x.flip({3})));
  EXPECT_TRUE(RandomHorizontalFlip(0.0)(x, g2).equal(x));
}

TEST(Transforms, CropPadsWithTheFillAndCutsAtTheDrawnOffsetByHand) {
  // Two 3x3 images of two channels, padding 2: offsets in [0, 4].
  const at::Tensor x = torch::arange(6 * 2 * 3 * 3, at::kFloat).reshape({6, 2, 3, 3}) + 1;
  const std::vector<double> fill = {-1.5, -7.0};
  at::Generator g = generator(11), same = generator(11);
  const at::Tensor out = RandomCrop(2, fill)(x, g);
  ASSERT_EQ(out.sizes(), x.sizes());
  // The documented draws: the B rows, then the B columns.
  const at::Tensor top = at::randint(5, {6}, same, at::TensorOptions().dtype(at::kLong));
  const at::Tensor left = at::randint(5, {6}, same, at::TensorOptions().dtype(at::kLong));
  bool some_padding = false, some_moved = false;
  for (int64_t b = 0; b < 6; ++b) {
    const int64_t t = top[b].item<int64_t>(), l = left[b].item<int64_t>();
    some_moved |= t != 2 || l != 2;
    for (int64_t c = 0; c < 2; ++c)
      for (int64_t i = 0; i < 3; ++i)
        for (int64_t j = 0; j < 3; ++j) {
          // Padded coordinates (t + i, l + j); the image sits at [2, 5).
          const int64_t r = t + i - 2, s = l + j - 2;
          const bool inside = r >= 0 && r < 3 && s >= 0 && s < 3;
          some_padding |= !inside;
          const float want = inside ? x[b][c][r][s].item<float>() : float(fill[c]);
          ASSERT_EQ(out[b][c][i][j].item<float>(), want) << b << " " << c << " " << i << " " << j;
        }
  }
  EXPECT_TRUE(some_padding && some_moved) << "the draw must exercise the padding";
  // A smaller window (torchvision's RandomCrop(size, padding)).
  at::Generator g3 = generator(2);
  EXPECT_EQ(RandomCrop(1, {0.0}, 2)(x, g3).sizes(), (std::vector<int64_t>{6, 2, 2, 2}));
}

TEST(Transforms, CropOfNormalisedDataPadsWithNormalisedBlack) {
  // torchvision: RandomCrop pads the raw image with 0, then Normalize. A
  // crop after normalisation must give the same result when it pads with
  // (0 - mean) / std per channel.
  torch::manual_seed(0);
  const at::Tensor raw = torch::rand({8, 3, 6, 6});
  const std::vector<double> mean = {0.49, 0.48, 0.45}, sd = {0.25, 0.24, 0.26};
  at::Generator g1 = generator(5), g2 = generator(5), g3 = generator(5);
  const Normalize norm(mean, sd);
  at::Generator none = generator(0);
  const at::Tensor torchvision_order = norm(RandomCrop(4)(raw, g1), none);
  const at::Tensor ours = RandomCrop(4, normalized_black(mean, sd))(norm(raw, none), g2);
  EXPECT_TRUE(torch::allclose(ours, torchvision_order, 1e-5, 1e-6));
  // Padding normalised data with 0 is not black (teeth).
  const at::Tensor zero_fill = RandomCrop(4)(norm(raw, none), g3);
  EXPECT_FALSE(torch::allclose(zero_fill, torchvision_order, 1e-5, 1e-6));
  const auto black = normalized_black(mean, sd);
  EXPECT_DOUBLE_EQ(black[1], -0.48 / 0.24);
}

TEST(Transforms, TheSameGeneratorStateGivesTheSameBatch) {
  torch::manual_seed(1);
  const at::Tensor x = torch::randn({32, 3, 8, 8});
  auto augment = parse_augment("crop,flip");
  at::Generator a = generator(9);
  a.set_current_seed(1234);
  const at::Tensor state = a.get_state();
  const at::Tensor first = (*augment)(x, a);
  at::Generator b = generator(77);
  b.set_state(state);
  EXPECT_TRUE((*augment)(x, b).equal(first));
  // The generator moved on: the next batch is drawn differently.
  EXPECT_FALSE((*augment)(x, a).equal(first));
}

TEST(Transforms, ParseAugmentAndBadInputs) {
  EXPECT_EQ(parse_augment(""), nullptr);
  EXPECT_EQ(parse_augment("none"), nullptr);
  auto both = std::dynamic_pointer_cast<const Compose>(parse_augment("crop, flip"));
  ASSERT_TRUE(both);
  ASSERT_EQ(both->transforms().size(), 2u);
  EXPECT_NE(both->describe().find("crop(padding=4"), std::string::npos) << both->describe();
  EXPECT_LT(both->describe().find("crop"), both->describe().find("flip"));
  EXPECT_TRUE(std::dynamic_pointer_cast<const RandomHorizontalFlip>(parse_augment("flip")));
  for (const char* bad : {"crop,crop", "rotate", "crop,,flip", "none,crop"}) {
    try {
      parse_augment(bad);
      FAIL() << bad;
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("--augment"), std::string::npos) << e.what();
    }
  }
  at::Generator g = generator(0);
  EXPECT_THROW(RandomCrop(4)(torch::randn({4, 784}), g), InvalidArgument);  // not images
  EXPECT_THROW(RandomCrop(4, {0.0, 0.0})(torch::randn({4, 3, 8, 8}), g), InvalidArgument);  // 2 fills, 3 channels
  EXPECT_THROW(RandomCrop(1, {0.0}, 20)(torch::randn({4, 3, 8, 8}), g), InvalidArgument);  // window too large
  EXPECT_THROW(RandomCrop(-1), InvalidArgument);
  EXPECT_THROW(RandomHorizontalFlip(1.5), InvalidArgument);
  EXPECT_THROW(Normalize({0.5}, {0.0}), InvalidArgument);
}

}  // namespace
}  // namespace continua
