#include "continua/models/dropout.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/MT19937RNGEngine.h>

#include <mutex>
#include <string>
#include <vector>

#include "continua/errors.h"

namespace continua {

namespace {

// One MT19937 state twist, as at::mt19937_engine::next_state.
void twist(uint32_t* s) {
  constexpr int n = at::MERSENNE_STATE_N, m = at::MERSENNE_STATE_M;
  auto mix = [](uint32_t u, uint32_t v) {
    return (((u & at::UMASK) | (v & at::LMASK)) >> 1) ^ ((v & 1u) ? at::MATRIX_A : 0u);
  };
  int i = 0;
  for (; i < n - m; ++i) s[i] = s[i + m] ^ mix(s[i], s[i + 1]);
  for (; i < n - 1; ++i) s[i] = s[i + m - n] ^ mix(s[i], s[i + 1]);
  s[n - 1] = s[m - 1] ^ mix(s[n - 1], s[0]);
}

inline uint32_t temper(uint32_t y) {
  y ^= (y >> 11);
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= (y >> 18);
  return y;
}

// The next `count` outputs of the engine whose state is `d`, advancing it
// exactly as `count` calls of at::mt19937_engine::operator() would: a call
// decrements left_ and twists when it reaches 0, then reads state_[next_++].
void generate(at::mt19937_data_pod& d, uint32_t* out, int64_t count) {
  while (count > 0) {
    if (d.left_ <= 1) {
      twist(d.state_.data());
      d.left_ = at::MERSENNE_STATE_N + 1;
      d.next_ = 0;
    }
    const int64_t take = std::min<int64_t>(count, d.left_ - 1);
    const uint32_t* s = d.state_.data() + d.next_;
    for (int64_t k = 0; k < take; ++k) out[k] = temper(s[k]);
    d.next_ += uint32_t(take);
    d.left_ -= int(take);
    out += take;
    count -= take;
  }
}

}  // namespace

void bernoulli_fill(at::Tensor& out, double p) {
  if (!out.is_cpu() || out.scalar_type() != at::kFloat || !out.is_contiguous()) {
    throw InvalidArgument("bernoulli_fill: needs a contiguous float32 CPU tensor");
  }
  const int64_t n = out.numel();
  if (n == 0) return;
  // at::bernoulli_distribution<double>: uniform = (random64() & (2^53 - 1)) *
  // 2^-53, true when uniform < p. Both sides scaled by 2^53 (exact), the
  // test is an integer one: m < p * 2^53, i.e. m < ceil(p * 2^53).
  const double scaled = p * double(uint64_t(1) << 53);
  const uint64_t threshold = scaled <= 0 ? 0 : uint64_t(std::ceil(scaled));
  constexpr uint64_t kMask = (uint64_t(1) << 53) - 1;
  std::vector<uint32_t> words(size_t(std::min<int64_t>(n, 1 << 14)) * 2);
  float* o = out.data_ptr<float>();
  auto* gen = at::check_generator<at::CPUGeneratorImpl>(at::detail::getDefaultCPUGenerator());
  std::lock_guard<std::mutex> lock(gen->mutex_);
  at::mt19937 engine = gen->engine();
  at::mt19937_data_pod d = engine.data();
  for (int64_t begin = 0; begin < n;) {
    const int64_t take = std::min<int64_t>(n - begin, int64_t(words.size() / 2));
    generate(d, words.data(), 2 * take);
    for (int64_t k = 0; k < take; ++k) {
      // random64(): the first output is the high word.
      const uint64_t r = (uint64_t(words[2 * k]) << 32) | words[2 * k + 1];
      o[begin + k] = (r & kMask) < threshold ? 1.0f : 0.0f;
    }
    begin += take;
  }
  engine.set_data(d);
  gen->set_engine(engine);
}

DropoutImpl::DropoutImpl(double p) : p_(p) {
  if (!(p >= 0.0 && p <= 1.0)) throw InvalidArgument("dropout probability must be in [0, 1], got " + std::to_string(p));
}

at::Tensor DropoutImpl::forward(const at::Tensor& x) {
  // at::native::_dropout_impl for CPU tensors: noise ~ Bernoulli(1 - p),
  // divided by 1 - p, times the input.
  if (!is_training() || p_ == 0 || x.numel() == 0) return x;
  if (!x.is_cpu() || x.scalar_type() != at::kFloat || !x.is_contiguous() || p_ == 1) {
    return at::dropout(x, p_, true);
  }
  at::Tensor noise = at::empty_like(x, at::MemoryFormat::Contiguous);
  bernoulli_fill(noise, 1 - p_);
  noise.div_(1 - p_);
  return x * noise;
}

}  // namespace continua
