#include "continua/data/transforms.h"

#include <ATen/ATen.h>

#include <cmath>
#include <set>
#include <sstream>

#include "continua/errors.h"

namespace continua {

namespace {

void check_images(const at::Tensor& x, const char* what) {
  if (!x.defined() || x.dim() != 4 || !x.is_floating_point()) {
    throw InvalidArgument(std::string("augment: ") + what + " needs a float image batch [B, C, H, W], got " +
                          (x.defined() ? c10::str(x.sizes()) + " " + std::string(c10::toString(x.scalar_type()))
                                       : std::string("an undefined tensor")));
  }
}

// [1, C, 1, 1] from one value per channel, or one value for all.
at::Tensor per_channel(const std::vector<double>& v, int64_t channels, const at::TensorOptions& options,
                       const char* what) {
  if (v.size() != 1 && int64_t(v.size()) != channels) {
    throw InvalidArgument(std::string("augment: ") + what + " has " + std::to_string(v.size()) +
                          " values for images of " + std::to_string(channels) + " channel(s)");
  }
  at::Tensor t = at::tensor(v, at::kDouble).to(options.dtype());
  if (v.size() == 1) t = t.expand({channels});
  return t.to(options.device()).reshape({1, channels, 1, 1});
}

void check_finite(const std::vector<double>& v, const char* what) {
  if (v.empty()) throw InvalidArgument(std::string(what) + ": no values");
  for (double d : v) {
    if (!std::isfinite(d)) throw InvalidArgument(std::string(what) + ": values must be finite");
  }
}

std::string joined(const std::vector<double>& v) {
  std::ostringstream s;
  for (size_t i = 0; i < v.size(); ++i) s << (i ? "," : "") << v[i];
  return s.str();
}

}  // namespace

Normalize::Normalize(std::vector<double> mean, std::vector<double> stddev) : mean_(std::move(mean)), std_(std::move(stddev)) {
  check_finite(mean_, "Normalize: mean");
  check_finite(std_, "Normalize: std");
  for (double s : std_) {
    if (s <= 0) throw InvalidArgument("Normalize: std must be > 0");
  }
}

at::Tensor Normalize::operator()(const at::Tensor& x, at::Generator&) const {
  check_images(x, "normalize");
  const int64_t c = x.size(1);
  return (x - per_channel(mean_, c, x.options(), "normalize's mean")) / per_channel(std_, c, x.options(), "normalize's std");
}

std::string Normalize::describe() const { return "normalize(mean=" + joined(mean_) + ", std=" + joined(std_) + ")"; }

RandomCrop::RandomCrop(int64_t padding, std::vector<double> fill, int64_t size)
    : padding_(padding), size_(size), fill_(std::move(fill)) {
  if (padding_ < 0) throw InvalidArgument("RandomCrop: padding must be >= 0");
  if (size_ < 0) throw InvalidArgument("RandomCrop: size must be >= 0 (0: the input's own size)");
  check_finite(fill_, "RandomCrop: fill");
}

at::Tensor RandomCrop::operator()(const at::Tensor& x, at::Generator& generator) const {
  check_images(x, "crop");
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t ph = h + 2 * padding_, pw = w + 2 * padding_;
  const int64_t th = size_ > 0 ? size_ : h, tw = size_ > 0 ? size_ : w;
  if (th > ph || tw > pw) {
    throw InvalidArgument("augment: crop of " + std::to_string(th) + "x" + std::to_string(tw) +
                          " is larger than the padded " + std::to_string(ph) + "x" + std::to_string(pw) + " image");
  }
  // The padded batch: the fill value per channel, the images in the middle.
  at::Tensor canvas = per_channel(fill_, c, x.options(), "crop's fill").expand({b, c, ph, pw}).contiguous();
  canvas.narrow(2, padding_, h).narrow(3, padding_, w).copy_(x);
  // One offset per sample, as torchvision's RandomCrop.get_params: top in
  // [0, ph - th], left in [0, pw - tw]. Drawn on the CPU whatever the device.
  const auto cpu_long = at::TensorOptions().dtype(at::kLong);
  const at::Tensor top = at::randint(ph - th + 1, {b}, generator, cpu_long).to(x.device());
  const at::Tensor left = at::randint(pw - tw + 1, {b}, generator, cpu_long).to(x.device());
  const auto dev_long = cpu_long.device(x.device());
  // Two gathers: the rows of each sample's window, then its columns.
  const at::Tensor rows = (top.view({b, 1}) + at::arange(th, dev_long)).view({b, 1, th, 1}).expand({b, c, th, pw});
  const at::Tensor cols = (left.view({b, 1}) + at::arange(tw, dev_long)).view({b, 1, 1, tw}).expand({b, c, th, tw});
  return canvas.gather(2, rows).gather(3, cols);
}

std::string RandomCrop::describe() const {
  return "crop(padding=" + std::to_string(padding_) + (size_ > 0 ? ", size=" + std::to_string(size_) : "") +
         ", fill=" + joined(fill_) + ")";
}

RandomHorizontalFlip::RandomHorizontalFlip(double p) : p_(p) {
  if (!(p_ >= 0 && p_ <= 1)) throw InvalidArgument("RandomHorizontalFlip: p must be in [0, 1]");
}

at::Tensor RandomHorizontalFlip::operator()(const at::Tensor& x, at::Generator& generator) const {
  check_images(x, "flip");
  const int64_t b = x.size(0);
  // torchvision: flip when torch.rand(1) < p, one draw per sample here.
  const at::Tensor flip = at::rand({b}, generator, at::TensorOptions().dtype(at::kFloat)).lt(p_).to(x.device());
  return at::where(flip.view({b, 1, 1, 1}), x.flip({3}), x);
}

std::string RandomHorizontalFlip::describe() const {
  std::ostringstream s;
  s << "flip(p=" << p_ << ")";
  return s.str();
}

Compose::Compose(std::vector<std::shared_ptr<const Transform>> transforms) : transforms_(std::move(transforms)) {
  for (const auto& t : transforms_) {
    if (!t) throw InvalidArgument("Compose: a transform is null");
  }
}

at::Tensor Compose::operator()(const at::Tensor& x, at::Generator& generator) const {
  at::Tensor out = x;
  for (const auto& t : transforms_) out = (*t)(out, generator);
  return out;
}

std::string Compose::describe() const {
  std::string s;
  for (const auto& t : transforms_) s += (s.empty() ? "" : ", ") + t->describe();
  return "[" + s + "]";
}

std::shared_ptr<const Transform> parse_augment(const std::string& spec, const AugmentOptions& options) {
  auto trimmed = [](const std::string& t) {
    const size_t a = t.find_first_not_of(" \t"), e = t.find_last_not_of(" \t");
    return a == std::string::npos ? std::string() : t.substr(a, e - a + 1);
  };
  if (trimmed(spec).empty() || trimmed(spec) == "none") return nullptr;
  std::vector<std::shared_ptr<const Transform>> parts;
  std::set<std::string> seen;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const std::string name = trimmed(item);
    if (name.empty()) throw InvalidArgument("--augment: an empty name in '" + spec + "' (e.g. crop,flip)");
    if (!seen.insert(name).second) throw InvalidArgument("--augment: '" + name + "' is given twice");
    if (name == "crop") {
      parts.push_back(std::make_shared<RandomCrop>(options.padding_, options.fill_));
    } else if (name == "flip") {
      parts.push_back(std::make_shared<RandomHorizontalFlip>(options.flip_probability_));
    } else {
      throw InvalidArgument("--augment: unknown transform '" + name + "' (known: crop, flip; e.g. crop,flip)");
    }
  }
  if (parts.size() == 1) return parts[0];
  return std::make_shared<Compose>(std::move(parts));
}

std::vector<double> normalized_black(const std::vector<double>& mean, const std::vector<double>& stddev) {
  check_finite(mean, "normalized_black: mean");
  check_finite(stddev, "normalized_black: std");
  if (mean.size() != stddev.size() && mean.size() != 1 && stddev.size() != 1) {
    throw InvalidArgument("normalized_black: mean and std differ in length");
  }
  const size_t n = std::max(mean.size(), stddev.size());
  std::vector<double> out(n);
  for (size_t i = 0; i < n; ++i) {
    const double m = mean[mean.size() == 1 ? 0 : i], s = stddev[stddev.size() == 1 ? 0 : i];
    if (s <= 0) throw InvalidArgument("normalized_black: std must be > 0");
    out[i] = (0.0 - m) / s;
  }
  return out;
}

}  // namespace continua
