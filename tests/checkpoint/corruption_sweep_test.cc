// Corruption sweeps over real checkpoints of every strategy: single-bit flips
// (every bit of the length prefix and header, >= 10,000 sampled bits of the
// data), truncations, random overwrites and random files. Each damaged file
// must be reported as corruption by maybe_load_checkpoint, never crash, hang
// or load silently, and the strategy must be exactly as it was afterwards.
// A last sweep re-seals the header CRC after each flip, so the JSON parser
// and the state validation behind the CRC see damaged input too (there a
// load may succeed: a flipped digit of a float is still a float).
//
// Runs in about 1-2 s per strategy and sweep here. CONTINUA_LONG_SWEEPS=N
// multiplies the sampled counts by N (the exhaustive header sweep is always
// exhaustive).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <streambuf>

#include "../format/handcraft.h"
#include "continua/format/safetensors.h"
#include "continua/training/registry.h"
#include "reliability_util.h"

namespace continua::testing {
namespace {

size_t scale() {
  const char* v = std::getenv("CONTINUA_LONG_SWEEPS");
  const long n = v ? std::atol(v) : 1;
  return n > 1 ? static_cast<size_t>(n) : 1;
}

// An istream over a buffer, without copying it.
struct MemBuf : std::streambuf {
  MemBuf(const char* p, size_t n) {
    char* b = const_cast<char*>(p);
    setg(b, b, b + n);
  }
};

struct Subject {
  std::shared_ptr<Benchmark> bench;
  std::unique_ptr<Strategy> strategy;
  std::string bytes;
  std::string digest;
  size_t header_end = 0;  // 8 + header length: where the data starts
};

// One trained strategy per name, built once per process.
Subject& subject(const std::string& name) {
  static std::map<std::string, Subject> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  Subject s;
  s.bench = synthetic_benchmark(1, 5);
  s.strategy = trained_strategy(name, *s.bench, 2);
  s.bytes = checkpoint_bytes(*s.strategy);
  s.digest = s.strategy->state_digest();
  uint64_t n = 0;
  std::memcpy(&n, s.bytes.data(), 8);
  s.header_end = 8 + static_cast<size_t>(n);
  return cache.emplace(name, std::move(s)).first->second;
}

// Loads `bytes` into the subject's strategy and checks the outcome. With
// `must_fail`, anything but CorruptionError/VersionError is a failure;
// otherwise a successful load is allowed and the original state restored.
class Sweep {
 public:
  Sweep(Subject& s, std::string label) : s_(s), label_(std::move(label)) {
    // The digest covers torch's global generator, which other tests in this
    // process move: start from the checkpoint's own state.
    std::istringstream original(s_.bytes);
    maybe_load_checkpoint(*s_.strategy, original, {}, {s_.bench});
    s_.digest = s_.strategy->state_digest();
  }
  ~Sweep() {
    check_digest();
    std::printf("[ sweep    ] %s: %zu cases, %.2f s, slowest %.1f ms, %zu loaded\n", label_.c_str(),
                cases_, total_, max_ * 1e3, loaded_);
  }

  void run(const char* data, size_t size, const std::string& what, bool must_fail = true) {
    ++cases_;
    MemBuf buf(data, size);
    std::istream in(&buf);
    std::string message;
    const auto t0 = std::chrono::steady_clock::now();
    LoadOutcome o;
    try {
      maybe_load_checkpoint(*s_.strategy, in, {}, {s_.bench});
      o = LoadOutcome::kLoaded;
    } catch (const CorruptionError& e) {
      o = LoadOutcome::kCorruption;
      message = e.what();
    } catch (const VersionError& e) {
      o = LoadOutcome::kVersion;
      message = e.what();
    } catch (const InvalidArgument& e) {
      o = LoadOutcome::kInvalidArgument;
      message = e.what();
    } catch (const std::exception& e) {
      o = LoadOutcome::kOther;
      message = e.what();
    }
    last_case_ = what + " -> " + outcome_name(o) + " " + message;
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    total_ += dt;
    max_ = std::max(max_, dt);
    EXPECT_LT(dt, 2.0) << label_ << ": " << what << " took " << dt << " s";
    if (must_fail) {
      if (o != LoadOutcome::kCorruption && o != LoadOutcome::kVersion && failures_++ < 10) {
        ADD_FAILURE() << label_ << ": " << what << ": " << outcome_name(o) << " " << message;
      }
    } else if (o == LoadOutcome::kOther && failures_++ < 10) {
      ADD_FAILURE() << label_ << ": " << what << ": non-continua exception: " << message;
    }
    if (o == LoadOutcome::kCorruption && message.rfind("corrupt checkpoint '<stream>': ", 0) != 0 &&
        failures_++ < 10) {
      ADD_FAILURE() << label_ << ": " << what << ": message without the source: " << message;
    }
    if (o == LoadOutcome::kLoaded) {
      ++loaded_;
      // Put the original state back (and check that this works).
      std::istringstream original(s_.bytes);
      maybe_load_checkpoint(*s_.strategy, original, {}, {s_.bench});
      check_digest();
    } else if (!must_fail || cases_ % 997 == 0) {
      // A failed load changes nothing, and a change would persist, so a
      // periodic check (and the one at the end) catches any.
      check_digest();
    }
  }

 private:
  void check_digest() {
    if (s_.strategy->state_digest() != s_.digest && failures_++ < 10) {
      ADD_FAILURE() << label_ << ": the strategy changed (after case " << cases_ << "), last case: " << last_case_;
    }
  }

  Subject& s_;
  std::string label_;
  size_t cases_ = 0, loaded_ = 0, failures_ = 0;
  double total_ = 0, max_ = 0;
  std::string last_case_;
};

class CorruptionSweep : public ::testing::TestWithParam<std::string> {
 protected:
  Subject& s() { return subject(GetParam()); }
};

TEST_P(CorruptionSweep, OriginalLoads) {
  Subject& sub = s();
  EXPECT_EQ(try_load(*sub.strategy, sub.bytes, {sub.bench}), LoadOutcome::kLoaded);
  EXPECT_EQ(sub.strategy->state_digest(), sub.digest);
  std::printf("checkpoint of '%s': %zu bytes, header %zu bytes\n", GetParam().c_str(), sub.bytes.size(),
              sub.header_end);
}

TEST_P(CorruptionSweep, EveryBitOfTheHeader) {
  Subject& sub = s();
  std::string f = sub.bytes;
  Sweep sweep(sub, GetParam() + " header bits");
  for (size_t byte = 0; byte < sub.header_end; ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      f[byte] ^= static_cast<char>(1 << bit);
      sweep.run(f.data(), f.size(), "bit " + std::to_string(bit) + " of byte " + std::to_string(byte));
      f[byte] ^= static_cast<char>(1 << bit);
    }
  }
}

TEST_P(CorruptionSweep, SampledBitsOfTheData) {
  Subject& sub = s();
  std::string f = sub.bytes;
  const size_t data_bits = (f.size() - sub.header_end) * 8;
  const size_t samples = std::min<size_t>(10000 * scale(), data_bits);
  std::mt19937_64 rng(42);
  Sweep sweep(sub, GetParam() + " data bits");
  for (size_t i = 0; i < samples; ++i) {
    // Exhaustive when the data is small, else uniform samples.
    const size_t b = samples == data_bits ? i : rng() % data_bits;
    const size_t byte = sub.header_end + b / 8;
    f[byte] ^= static_cast<char>(1 << (b % 8));
    sweep.run(f.data(), f.size(), "data bit " + std::to_string(b));
    f[byte] ^= static_cast<char>(1 << (b % 8));
  }
}

TEST_P(CorruptionSweep, Truncations) {
  Subject& sub = s();
  const std::string& f = sub.bytes;
  std::mt19937_64 rng(7);
  std::vector<size_t> lengths;
  for (size_t n = 0; n <= sub.header_end; n += (n < 64 ? 1 : 13)) lengths.push_back(n);
  for (size_t i = 0; i < 500 * scale(); ++i) lengths.push_back(sub.header_end + rng() % (f.size() - sub.header_end));
  lengths.push_back(f.size() - 1);
  Sweep sweep(sub, GetParam() + " truncations");
  for (size_t n : lengths) sweep.run(f.data(), n, "truncated to " + std::to_string(n) + " bytes");
  // Appended bytes are damage too.
  std::string longer = f + std::string(1, '\0');
  sweep.run(longer.data(), longer.size(), "one byte appended");
}

TEST_P(CorruptionSweep, RandomOverwrites) {
  Subject& sub = s();
  std::mt19937_64 rng(1234);
  Sweep sweep(sub, GetParam() + " overwrites");
  std::string f = sub.bytes;
  for (size_t i = 0; i < 2000 * scale(); ++i) {
    const size_t pos = rng() % f.size();
    const size_t len = std::min<size_t>(1 + rng() % 256, f.size() - pos);
    const std::string saved = f.substr(pos, len);
    for (size_t k = 0; k < len; ++k) f[pos + k] = static_cast<char>(rng());
    if (f.compare(pos, len, saved) != 0) {
      sweep.run(f.data(), f.size(),
                std::to_string(len) + " random bytes at " + std::to_string(pos));
    }
    f.replace(pos, len, saved);
  }
}

TEST_P(CorruptionSweep, RandomFiles) {
  Subject& sub = s();
  std::mt19937_64 rng(99);
  Sweep sweep(sub, GetParam() + " random files");
  for (size_t i = 0; i < 500 * scale(); ++i) {
    std::string f(rng() % 8192, '\0');
    for (char& c : f) c = static_cast<char>(rng());
    if (i % 2 == 1) {
      // Past the first checks: a plausible length and the continua prefix.
      const std::string head = le64(std::min<uint64_t>(rng() % 4096, f.size())) +
                               std::string(format::kHeaderPrefix);
      f = head + f;
    }
    sweep.run(f.data(), f.size(), "random file " + std::to_string(i));
  }
  // Real checkpoints of the other strategies are not this strategy's.
  std::vector<std::string> others;
  for (const std::string& other : strategy_names()) {
    if (other == GetParam()) continue;
    others.push_back(checkpoint_bytes(*trained_strategy(other, *sub.bench, 1)));
  }
  // Training the others moved torch's global generator: reload our own state.
  std::istringstream original(sub.bytes);
  maybe_load_checkpoint(*sub.strategy, original, {}, {sub.bench});
  for (const std::string& bytes : others) {
    // Loading another strategy's checkpoint: refused (InvalidArgument), not loaded.
    std::string message;
    EXPECT_EQ(try_load(*sub.strategy, bytes, {sub.bench}, &message), LoadOutcome::kInvalidArgument)
        << message;
    EXPECT_NE(message.find("plugin"), std::string::npos) << message;
  }
  EXPECT_EQ(sub.strategy->state_digest(), sub.digest) << "a refused load changed the strategy";
}

// Behind the header CRC: flip a bit, re-seal, and the parser and the state
// validation must cope. A load may succeed; no crash, no foreign exception,
// and a failed load changes nothing.
TEST_P(CorruptionSweep, ResealedHeaderBits) {
  Subject& sub = s();
  std::mt19937_64 rng(5);
  Sweep sweep(sub, GetParam() + " resealed header bits");
  const size_t first = 8 + format::kHeaderCrcOffset + 9;  // after the CRC field
  for (size_t i = 0; i < 2000 * scale(); ++i) {
    std::string f = sub.bytes;
    const size_t byte = first + rng() % (sub.header_end - first);
    f[byte] ^= static_cast<char>(1 << (rng() % 8));
    f = reseal(std::move(f));
    sweep.run(f.data(), f.size(), "resealed flip of byte " + std::to_string(byte), /*must_fail=*/false);
  }
}

INSTANTIATE_TEST_SUITE_P(Strategies, CorruptionSweep, ::testing::ValuesIn(strategy_names()),
                         [](const auto& info) { return test_name(info.param); });

}  // namespace
}  // namespace continua::testing
