// Dropout whose results are torch's own, bit for bit, drawn faster on the CPU.
//
// torch's CPU dropout (without MKL, as Debian's LibTorch is built) draws its
// mask with bernoulli_(1 - p): for every element, two outputs of the default
// generator's MT19937 engine make one 53-bit uniform number, compared with
// 1 - p. That loop costs about as much as the layer's matrix product in
// Avalanche's SimpleMLP. continua::Dropout makes the same draws from the same
// generator in bulk (the engine's state twisted 624 words at a time), then
// scales and multiplies exactly as torch does: the same output, the same
// gradient, the same generator state afterwards, so runs, checkpoints and
// state digests do not change. Tensors that are not float32 on the CPU go to
// torch::dropout itself.
//
//   torch::nn::Sequential seq(torch::nn::Linear(784, 512), torch::nn::ReLU(),
//                             continua::Dropout(0.5));
//
// Contract: Dropout throws continua::InvalidArgument for p outside [0, 1].
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

namespace continua {

// Fills `out` (float32, contiguous, on the CPU) with 1 or 0, the values
// `out.bernoulli_(p)` writes, drawing from the default CPU generator.
void bernoulli_fill(at::Tensor& out, double p);

class DropoutImpl : public torch::nn::Cloneable<DropoutImpl> {
 public:
  explicit DropoutImpl(double p = 0.5);
  void reset() override {}
  at::Tensor forward(const at::Tensor& x);
  double p() const { return p_; }

 private:
  double p_;
};
TORCH_MODULE(Dropout);

}  // namespace continua
