// Transforms of image batches: per-channel normalisation, random crop with
// padding and random horizontal flip (torchvision's Normalize,
// RandomCrop(size, padding) and RandomHorizontalFlip), applied to a whole
// mini-batch [B, C, H, W] at once, each sample with its own random draw.
//
// Every random draw comes from the generator the caller passes, never from
// torch's global one: the training loop passes a generator that is part of
// the strategy's state (strategy.rng.augment), so a run resumed from any
// iteration draws the same crops and flips as one that never stopped.
//
//   auto augment = continua::parse_augment("crop,flip", continua::AugmentOptions()
//                                              .fill(continua::normalized_black({0.5}, {0.25})));
//   at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
//   at::Tensor out = (*augment)(batch.x, gen);   // same shape as batch.x
//
//   continua::StrategyOptions().train_transform(augment);  // every training batch
//
// Padding value: torchvision pads the image before ToTensor/Normalize, with 0
// (black). continua's benchmarks hand out normalised inputs, so a crop of
// normalised data must pad with black as normalised, (0 - mean) / std per
// channel: normalized_black() gives it, RandomCrop takes it as `fill`.
//
// Contract: a transform throws continua::InvalidArgument for an input that is
// not a 4-d float batch or whose channels do not match its per-channel
// values; constructors and parse_augment throw continua::InvalidArgument
// naming the option. Draws: RandomCrop draws 2*B integers (rows, then
// columns), RandomHorizontalFlip B uniforms, in this order, whatever the
// device; Normalize draws nothing. A transform never changes its input.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

namespace continua {

class Transform {
 public:
  virtual ~Transform() = default;
  // x: [B, C, H, W]; the transformed batch (a new tensor).
  virtual at::Tensor operator()(const at::Tensor& x, at::Generator& generator) const = 0;
  // A short description ("crop(padding=4)", "flip(p=0.5)").
  virtual std::string describe() const = 0;
};

// (x - mean[c]) / std[c] per channel; one value stands for every channel.
class Normalize : public Transform {
 public:
  Normalize(std::vector<double> mean, std::vector<double> stddev);
  at::Tensor operator()(const at::Tensor& x, at::Generator& generator) const override;
  std::string describe() const override;

 private:
  std::vector<double> mean_, std_;
};

// Pads every side by `padding` with fill[c] (one value: every channel), then
// crops a window of the input's own size (or size x size when size > 0) at
// an offset drawn per sample, uniform in [0, 2*padding] (torchvision's
// RandomCrop(size, padding)).
class RandomCrop : public Transform {
 public:
  explicit RandomCrop(int64_t padding, std::vector<double> fill = {0.0}, int64_t size = 0);
  at::Tensor operator()(const at::Tensor& x, at::Generator& generator) const override;
  std::string describe() const override;

 private:
  int64_t padding_, size_;
  std::vector<double> fill_;
};

// Mirrors each sample left-right with probability p.
class RandomHorizontalFlip : public Transform {
 public:
  explicit RandomHorizontalFlip(double p = 0.5);
  at::Tensor operator()(const at::Tensor& x, at::Generator& generator) const override;
  std::string describe() const override;

 private:
  double p_;
};

// The transforms one after the other.
class Compose : public Transform {
 public:
  explicit Compose(std::vector<std::shared_ptr<const Transform>> transforms);
  at::Tensor operator()(const at::Tensor& x, at::Generator& generator) const override;
  std::string describe() const override;
  const std::vector<std::shared_ptr<const Transform>>& transforms() const { return transforms_; }

 private:
  std::vector<std::shared_ptr<const Transform>> transforms_;
};

// What parse_augment builds its transforms with.
struct AugmentOptions {
  AugmentOptions& padding(int64_t v) { padding_ = v; return *this; }
  AugmentOptions& fill(std::vector<double> v) { fill_ = std::move(v); return *this; }
  AugmentOptions& flip_probability(double v) { flip_probability_ = v; return *this; }

  int64_t padding_ = 4;            // crop: torchvision's CIFAR recipe, RandomCrop(32, padding=4)
  std::vector<double> fill_ = {0};  // crop: the padding value per channel
  double flip_probability_ = 0.5;   // flip
};

// "crop,flip" (the names in the order they apply): crop = RandomCrop, flip =
// RandomHorizontalFlip. Empty or "none": nullptr (no transform). Unknown or
// repeated names throw InvalidArgument naming --augment.
std::shared_ptr<const Transform> parse_augment(const std::string& spec, const AugmentOptions& options = {});

// Black (0) after normalisation with these per-channel values: -mean/std.
std::vector<double> normalized_black(const std::vector<double>& mean, const std::vector<double>& stddev);

}  // namespace continua
