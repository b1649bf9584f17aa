#include "continua/io/crc32c.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace continua::io {
namespace {

TEST(Crc32c, KnownVectors) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c(nullptr, 0), 0u);
  std::vector<uint8_t> zeros(32, 0);
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  std::vector<uint8_t> ones(32, 0xFF);
  EXPECT_EQ(crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  std::vector<uint8_t> inc(32);
  for (size_t i = 0; i < inc.size(); ++i) inc[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(crc32c(inc.data(), inc.size()), 0x46DD794Eu);
  std::vector<uint8_t> dec(32);
  for (size_t i = 0; i < dec.size(); ++i) dec[i] = static_cast<uint8_t>(31 - i);
  EXPECT_EQ(crc32c(dec.data(), dec.size()), 0x113FDB5Cu);
}

TEST(Crc32c, SoftwareMatchesKnownVectors) {
  EXPECT_EQ(crc32c_extend_software(0, "123456789", 9), 0xE3069283u);
  std::vector<uint8_t> zeros(32, 0);
  EXPECT_EQ(crc32c_extend_software(0, zeros.data(), zeros.size()), 0x8A9136AAu);
}

TEST(Crc32c, ExtendEqualsWhole) {
  const std::string s = "hello, continual world: the quick brown fox jumps";
  for (size_t cut = 0; cut <= s.size(); ++cut) {
    const uint32_t a = crc32c(s.data(), cut);
    EXPECT_EQ(crc32c_extend(a, s.data() + cut, s.size() - cut), crc32c(s.data(), s.size()))
        << "cut " << cut;
  }
}

TEST(Crc32c, HardwareEqualsSoftwareAllLengthsAndAlignments) {
  if (!crc32c_hardware_available()) GTEST_SKIP() << "no SSE4.2 on this CPU";
  std::mt19937_64 rng(42);
  std::vector<uint8_t> buf(300 + 16);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  for (size_t misalign = 0; misalign < 8; ++misalign) {
    for (size_t n = 0; n <= 300; ++n) {
      const uint8_t* p = buf.data() + misalign;
      const uint32_t seed = static_cast<uint32_t>(rng());
      ASSERT_EQ(crc32c_extend_hardware(seed, p, n), crc32c_extend_software(seed, p, n))
          << "n=" << n << " misalign=" << misalign;
    }
  }
}

TEST(Crc32c, DetectsSingleBitFlips) {
  std::vector<uint8_t> buf(64, 0x5A);
  const uint32_t base = crc32c(buf.data(), buf.size());
  for (size_t i = 0; i < buf.size() * 8; ++i) {
    buf[i / 8] ^= static_cast<uint8_t>(1u << (i % 8));
    EXPECT_NE(crc32c(buf.data(), buf.size()), base);
    buf[i / 8] ^= static_cast<uint8_t>(1u << (i % 8));
  }
}

}  // namespace
}  // namespace continua::io
