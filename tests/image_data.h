// Tiny image data sets for tests, written as IDX files with the names the
// fmnist/mnist benchmarks read from --data-dir: [C, S, S] images (a 3-d IDX
// file for one channel, as MNIST's; 4-d for more), so that `split-fmnist`
// with data_dir = the folder is a real, registered benchmark of images of any
// shape (3x32x32 stands in for CIFAR until its reader exists).
#pragma once

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cstdint>
#include <fstream>
#include <string>

#include "continua/data/benchmark.h"

namespace continua::testing {

inline void put_u32(std::ofstream& f, uint32_t v) {
  const unsigned char b[4] = {uint8_t(v >> 24), uint8_t(v >> 16), uint8_t(v >> 8), uint8_t(v)};
  f.write(reinterpret_cast<const char*>(b), 4);
}

// `per_class` images of each of `classes` classes (random pixels, brighter
// for higher classes) in <dir>/<prefix>-images-idx3-ubyte and their labels
// in <dir>/<prefix>-labels-idx1-ubyte.
inline void write_idx_images(const std::string& dir, const std::string& prefix, int64_t classes, int64_t per_class,
                             int64_t channels, int64_t side, uint64_t seed) {
  const int64_t n = classes * per_class;
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(seed);
  const at::Tensor labels = torch::arange(classes, at::kLong).repeat_interleave(per_class);
  const at::Tensor brightness = labels.to(at::kFloat).view({-1, 1, 1, 1}) * (120.0 / double(classes));
  const at::Tensor pixels =
      (at::rand({n, channels, side, side}, g, at::kFloat) * 128 + brightness).to(at::kByte).contiguous();
  std::ofstream images(dir + "/" + prefix + "-images-idx3-ubyte", std::ios::binary);
  put_u32(images, channels == 1 ? 0x00000803 : 0x00000804);
  put_u32(images, uint32_t(n));
  if (channels != 1) put_u32(images, uint32_t(channels));
  put_u32(images, uint32_t(side));
  put_u32(images, uint32_t(side));
  images.write(reinterpret_cast<const char*>(pixels.data_ptr<uint8_t>()), std::streamsize(pixels.numel()));
  std::ofstream lab(dir + "/" + prefix + "-labels-idx1-ubyte", std::ios::binary);
  put_u32(lab, 0x00000801);
  put_u32(lab, uint32_t(n));
  const at::Tensor l8 = labels.to(at::kByte).contiguous();
  lab.write(reinterpret_cast<const char*>(l8.data_ptr<uint8_t>()), std::streamsize(n));
}

// A train and a test set in `dir`, for `--benchmark split-fmnist --data-dir dir`.
inline void write_idx_benchmark(const std::string& dir, int64_t classes, int64_t train_per_class,
                                int64_t test_per_class, int64_t channels, int64_t side) {
  write_idx_images(dir, "train", classes, train_per_class, channels, side, 1);
  write_idx_images(dir, "t10k", classes, test_per_class, channels, side, 2);
}

}  // namespace continua::testing
