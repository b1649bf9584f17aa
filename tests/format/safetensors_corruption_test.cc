// Handcrafted bad files, one case per failure mode: each must be refused with
// the right exception type and a message naming the damaged record.
#include <gtest/gtest.h>

#include <cstring>
#include <sstream>

#include "../io/temp_dir.h"
#include "continua/errors.h"
#include "continua/format/safetensors.h"
#include "handcraft.h"

namespace continua::format {
namespace {

using continua::testing::continua_header;
using continua::testing::hex8;
using continua::testing::le64;
using continua::testing::reseal;
using continua::testing::seal;

std::shared_ptr<const std::string> bytes_of(std::string s) {
  return std::make_shared<const std::string>(std::move(s));
}

// Expects from_memory to throw CorruptionError whose message starts with the
// standard prefix and contains `needle`.
void expect_corrupt(const std::string& file, const std::string& needle) {
  try {
    SafetensorsReader::from_memory(bytes_of(file), "bad.safetensors");
    ADD_FAILURE() << "accepted a file that should fail with: " << needle;
  } catch (const CorruptionError& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.rfind("corrupt checkpoint 'bad.safetensors': ", 0), 0u) << m;
    EXPECT_NE(m.find(needle), std::string::npos) << "message: " << m << "\nwanted: " << needle;
  }
}

// A valid two-tensor file: "a" F32[2] = {1,2} and "b" U8[3].
std::string good_file() {
  const float a[2] = {1.0f, 2.0f};
  const uint8_t b[3] = {7, 8, 9};
  std::string data(reinterpret_cast<const char*>(a), 8);
  data.append(reinterpret_cast<const char*>(b), 3);
  const std::string crcs = "{\"a\":\"" + hex8(io::crc32c(a, 8)) + "\",\"b\":\"" +
                           hex8(io::crc32c(b, 3)) + "\"}";
  return seal(continua_header(crcs,
                              R"(,"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})"
                              R"(,"b":{"dtype":"U8","shape":[3],"data_offsets":[8,11]})"),
              data);
}

uint64_t header_len(const std::string& f) {
  uint64_t n;
  std::memcpy(&n, f.data(), 8);
  return n;
}

// A file with one F32 tensor "a" whose entry is `entry`, data `data`, and a
// correct CRC for it.
std::string one_tensor(const std::string& entry, const std::string& data) {
  const std::string crcs = "{\"a\":\"" + hex8(io::crc32c(data.data(), data.size())) + "\"}";
  return seal(continua_header(crcs, ",\"a\":" + entry), data);
}

TEST(SafetensorsCorruption, HandcraftedGoodFileIsAccepted) {
  const auto r = SafetensorsReader::from_memory(bytes_of(good_file()), "good");
  r.verify_all();
  ASSERT_EQ(r.tensors().size(), 2u);
  EXPECT_EQ(r.tensors()[0].name, "a");
  EXPECT_EQ(r.data(r.tensors()[1])[2], 9);
}

TEST(SafetensorsCorruption, ShortLengthPrefix) {
  const std::string f = good_file();
  for (size_t len = 0; len < 8; ++len) {
    expect_corrupt(f.substr(0, len), "shorter than the 8-byte header length");
  }
}

TEST(SafetensorsCorruption, HeaderLengthOverTheCap) {
  std::string f = good_file();
  std::memcpy(&f[0], le64(uint64_t{1} << 62).data(), 8);
  expect_corrupt(f, "exceeds the limit");
}

TEST(SafetensorsCorruption, HeaderLengthPastEndOfFile) {
  std::string f = good_file();
  std::memcpy(&f[0], le64(f.size()).data(), 8);
  expect_corrupt(f, "runs past the end of the file");
}

TEST(SafetensorsCorruption, HeaderCrcMismatch) {
  std::string f = good_file();
  const size_t pos = 8 + kHeaderCrcOffset;
  f[pos] = f[pos] == '0' ? '1' : '0';
  expect_corrupt(f, "header fails its CRC32C check");
}

TEST(SafetensorsCorruption, FlippedByteInHeader) {
  std::string f = good_file();
  const size_t pos = f.find("\"dtype\":\"U8\"") + 10;  // U8 -> V8
  f[pos] ^= 0x03;
  expect_corrupt(f, "header fails its CRC32C check");
}

TEST(SafetensorsCorruption, EveryFlippedByteInPrefixAndHeaderIsCaught) {
  const std::string good = good_file();
  const size_t end = 8 + header_len(good);
  for (size_t i = 0; i < end; ++i) {
    for (uint8_t bit : {uint8_t{0x01}, uint8_t{0x80}}) {
      std::string f = good;
      f[i] = static_cast<char>(f[i] ^ bit);
      EXPECT_THROW(SafetensorsReader::from_memory(bytes_of(f), "x"), CorruptionError)
          << "byte " << i;
    }
  }
}

TEST(SafetensorsCorruption, FlippedByteInDataNamesTheTensor) {
  const std::string good = good_file();
  const size_t start = 8 + header_len(good);
  for (size_t i = start; i < good.size(); ++i) {
    std::string f = good;
    f[i] ^= 0x10;
    const auto r = SafetensorsReader::from_memory(bytes_of(f), "bad.safetensors");
    const char* damaged = i < start + 8 ? "a" : "b";
    const char* intact = i < start + 8 ? "b" : "a";
    EXPECT_NO_THROW(r.verify_tensor(*r.find(intact)));
    try {
      r.verify_tensor(*r.find(damaged));
      ADD_FAILURE() << "byte " << i;
    } catch (const CorruptionError& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("tensor '") + damaged +
                                           "' fails its CRC32C check"),
                std::string::npos)
          << e.what();
    }
    EXPECT_THROW(r.verify_all(), CorruptionError);
    EXPECT_THROW(SafetensorsReader::from_memory(bytes_of(f), "x", ReadOptions().verify(true)),
                 CorruptionError);
  }
}

TEST(SafetensorsCorruption, TruncationAtEveryLength) {
  const std::string good = good_file();
  const uint64_t n = header_len(good);
  // Record boundaries first, for readable failures, then every other length.
  for (size_t len : {size_t{0}, size_t{8}, size_t{8 + n}, size_t{8 + n + 8}, good.size() - 1}) {
    EXPECT_THROW(SafetensorsReader::from_memory(bytes_of(good.substr(0, len)), "x"),
                 CorruptionError)
        << len;
  }
  expect_corrupt(good.substr(0, 8 + n + 8), "run past the end of the data");
  for (size_t len = 0; len < good.size(); ++len) {
    EXPECT_THROW(SafetensorsReader::from_memory(bytes_of(good.substr(0, len)), "x"),
                 CorruptionError)
        << len;
  }
}

TEST(SafetensorsCorruption, TrailingBytes) {
  expect_corrupt(good_file() + "x", "belong to no tensor");
}

TEST(SafetensorsCorruption, OversizedShapeClaimsOneTerabyte) {
  expect_corrupt(one_tensor(R"({"dtype":"U8","shape":[1000000000000],"data_offsets":[0,4]})",
                            "abcd"),
                 "needs 1000000000000 bytes");
  expect_corrupt(
      one_tensor(R"({"dtype":"U8","shape":[1000000000000],"data_offsets":[0,1000000000000]})",
                 "abcd"),
      "run past the end of the data");
}

TEST(SafetensorsCorruption, OverflowingShapeProduct) {
  expect_corrupt(
      one_tensor(R"({"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]})",
                 "abcd"),
      "overflows");
  expect_corrupt(
      one_tensor(R"({"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,4]})", "abcd"),
      "overflows");
  expect_corrupt(one_tensor(R"({"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,4]})",
                            "abcd"),
                 "too large");
  expect_corrupt(one_tensor(R"({"dtype":"U8","shape":[1e30],"data_offsets":[0,4]})", "abcd"),
                 "non-integer");
}

TEST(SafetensorsCorruption, NegativeDimension) {
  expect_corrupt(one_tensor(R"({"dtype":"F32","shape":[-1],"data_offsets":[0,4]})", "abcd"),
                 "negative dimension");
}

TEST(SafetensorsCorruption, OffsetsPastEndAndReversed) {
  expect_corrupt(one_tensor(R"({"dtype":"F32","shape":[1],"data_offsets":[4,8]})", "abcd"),
                 "data_offsets [4, 8] run past the end of the data");
  expect_corrupt(one_tensor(R"({"dtype":"F32","shape":[1],"data_offsets":[4,0]})", "abcd"),
                 "reversed");
  expect_corrupt(one_tensor(R"({"dtype":"F32","shape":[1],"data_offsets":[-4,0]})", "abcd"),
                 "not a pair of non-negative integers");
  expect_corrupt(one_tensor(R"({"dtype":"F32","shape":[1],"data_offsets":[0]})", "abcd"),
                 "not a pair");
}

std::string two_f32(uint64_t b_begin, size_t data_size) {
  std::string data(data_size, '\x01');
  const std::string crc = hex8(io::crc32c("\x01\x01\x01\x01\x01\x01\x01\x01", 8));
  const std::string crcs = "{\"a\":\"" + crc + "\",\"b\":\"" + crc + "\"}";
  return seal(continua_header(crcs,
                              R"(,"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})"
                              R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[)" +
                                  std::to_string(b_begin) + "," + std::to_string(b_begin + 8) +
                                  "]}"),
              data);
}

TEST(SafetensorsCorruption, OverlappingTensors) {
  expect_corrupt(two_f32(4, 12), "tensor 'b' overlaps tensor 'a'");
}

TEST(SafetensorsCorruption, GapBetweenTensors) {
  expect_corrupt(two_f32(12, 20), "gap of 4 bytes in the data before tensor 'b'");
}

TEST(SafetensorsCorruption, MisalignedTensor) {
  const std::string crcs = "{\"a\":\"" + hex8(io::crc32c("\x01", 1)) + "\",\"b\":\"" +
                           hex8(io::crc32c("\x02\x02\x02\x02", 4)) + "\"}";
  expect_corrupt(seal(continua_header(crcs,
                                      R"(,"a":{"dtype":"I8","shape":[1],"data_offsets":[0,1]})"
                                      R"(,"b":{"dtype":"F32","shape":[1],"data_offsets":[1,5]})"),
                      std::string("\x01\x02\x02\x02\x02", 5)),
                 "not aligned");
}

TEST(SafetensorsCorruption, DataNotStartingAt64ByteBoundary) {
  const std::string data = "abcd";
  const std::string crcs = "{\"a\":\"" + hex8(io::crc32c(data.data(), 4)) + "\"}";
  std::string header =
      continua_header(crcs, R"(,"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})");
  if ((8 + header.size()) % 64 == 0) header += ' ';
  expect_corrupt(seal(header, data, /*pad=*/false), "multiple of 64");
}

TEST(SafetensorsCorruption, DuplicateKeys) {
  const std::string e = R"({"dtype":"U8","shape":[4],"data_offsets":[0,4]})";
  const std::string crc = hex8(io::crc32c("abcd", 4));
  expect_corrupt(seal(continua_header("{\"a\":\"" + crc + "\"}", ",\"a\":" + e + ",\"a\":" + e),
                      "abcd"),
                 "header has the key 'a' twice");
  expect_corrupt(seal(continua_header("{\"a\":\"" + crc + "\"}", ",\"a\":" + e, "1",
                                      R"(,"k":"1","k":"2")"),
                      "abcd"),
                 "header has the key 'k' twice");
  expect_corrupt(one_tensor(R"({"dtype":"U8","dtype":"F32","shape":[4],"data_offsets":[0,4]})",
                            "abcd"),
                 "twice");
  expect_corrupt(seal(continua_header("{\"a\":\"" + crc + "\",\"a\":\"" + crc + "\"}",
                                      ",\"a\":" + e),
                      "abcd"),
                 "tensor_crc32c has the key 'a' twice");
}

TEST(SafetensorsCorruption, DeeplyNestedJson) {
  const std::string deep(10000, '[');
  expect_corrupt(seal(continua_header("{}", ",\"x\":" + deep), ""), "nests deeper than 64");
  // Inside the tensor_crc32c string too.
  expect_corrupt(seal(continua_header(deep, ""), ""), "tensor_crc32c nests deeper than 64");
  // Brackets inside strings do not count.
  const std::string crcs = "{\"a\":\"" + hex8(io::crc32c("abcd", 4)) + "\"}";
  const auto r = SafetensorsReader::from_memory(
      bytes_of(seal(continua_header(crcs, R"(,"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]})",
                                    "1", ",\"k\":\"" + deep + "\""),
                    "abcd")),
      "x");
  EXPECT_EQ(r.metadata().at("k"), deep);
}

TEST(SafetensorsCorruption, InvalidJson) {
  expect_corrupt(seal(std::string(kHeaderPrefix) + "00000000\", nonsense", ""),
                 "header is not valid JSON");
  expect_corrupt(seal(continua_header("{not json", ""), ""), "tensor_crc32c is not valid JSON");
}

TEST(SafetensorsCorruption, UnknownDtype) {
  expect_corrupt(one_tensor(R"({"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]})", "abcd"),
                 "tensor 'a': unknown dtype 'F8_E4M3'");
}

TEST(SafetensorsCorruption, UnknownFieldAndBadEntries) {
  expect_corrupt(one_tensor(R"({"dtype":"U8","shape":[4],"data_offsets":[0,4],"x":1})", "abcd"),
                 "unknown field 'x'");
  expect_corrupt(one_tensor(R"([1,2])", "abcd"), "entry is not an object");
  expect_corrupt(one_tensor(R"({"shape":[4],"data_offsets":[0,4]})", "abcd"), "missing dtype");
  expect_corrupt(one_tensor(R"({"dtype":"U8","data_offsets":[0,4]})", "abcd"), "missing shape");
}

TEST(SafetensorsCorruption, UnknownVersionIsVersionError) {
  const std::string crcs = "{\"a\":\"" + hex8(io::crc32c("abcd", 4)) + "\"}";
  const std::string f = seal(
      continua_header(crcs, R"(,"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]})", "2"),
      "abcd");
  try {
    SafetensorsReader::from_memory(bytes_of(f), "future.safetensors");
    FAIL();
  } catch (const VersionError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("future.safetensors"), std::string::npos) << m;
    EXPECT_NE(m.find("format version 2"), std::string::npos) << m;
    EXPECT_NE(m.find("reads format version 1"), std::string::npos) << m;
  }
  expect_corrupt(seal(continua_header(crcs, "", "one"), ""), "not a version number");
}

TEST(SafetensorsCorruption, PlainSafetensorsIsNotAContinuaCheckpoint) {
  // Valid for any safetensors reader, but carries no continua metadata.
  expect_corrupt(seal(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", "abcd"),
                 "not a continua checkpoint");
  expect_corrupt(seal(R"({"__metadata__":{"format":"pt"},"a":{"dtype":"U8","shape":[4],)"
                      R"("data_offsets":[0,4]}})",
                      "abcd"),
                 "not a continua checkpoint");
  // The right prefix but another format.
  expect_corrupt(seal(std::string(kHeaderPrefix) + R"(00000000","format":"pt"}})", ""),
                 "not a continua checkpoint");
  expect_corrupt(std::string(64, '\0'), "not a continua checkpoint");
}

TEST(SafetensorsCorruption, CrcTableMustMatchTensorsExactly) {
  const std::string e = R"(,"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]})";
  const std::string crc = hex8(io::crc32c("abcd", 4));
  expect_corrupt(seal(continua_header("{}", e), "abcd"), "tensor 'a' has no entry in tensor_crc32c");
  expect_corrupt(seal(continua_header("{\"a\":\"" + crc + "\",\"z\":\"" + crc + "\"}", e), "abcd"),
                 "tensor_crc32c names 'z', which is not a tensor");
  expect_corrupt(seal(continua_header("{\"a\":\"ABCDEF12\"}", e), "abcd"),
                 "not 8 lowercase hex digits");
  expect_corrupt(seal(continua_header("[]", e), "abcd"), "tensor_crc32c is not a JSON object");
}

TEST(SafetensorsCorruption, ReservedTensorNamesAndMetadataTypes) {
  const std::string crc = hex8(io::crc32c("abcd", 4));
  expect_corrupt(
      seal(continua_header("{\"__x\":\"" + crc + "\"}",
                           R"(,"__x":{"dtype":"U8","shape":[4],"data_offsets":[0,4]})"),
           "abcd"),
      "invalid tensor name");
  expect_corrupt(seal(continua_header("{}", "", "1", R"(,"n":5)"), ""),
                 "__metadata__ value 'n' is not a string");
}

TEST(SafetensorsCorruption, CorruptFileOnDisk) {
  continua::testing::TempDir dir;
  const std::string path = dir.file("c.safetensors");
  std::string f = good_file();
  f[20] ^= 1;
  continua::testing::write_all(path, f);
  try {
    SafetensorsReader::open_file(path);
    FAIL();
  } catch (const CorruptionError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("corrupt checkpoint '" + path + "': ", 0), 0u)
        << e.what();
  }
  continua::testing::write_all(path, "");
  EXPECT_THROW(SafetensorsReader::open_file(path), CorruptionError);
  EXPECT_THROW(SafetensorsReader::open_file(dir.path()), IoError);
}

TEST(SafetensorsCorruption, ResealHelperKeepsGoodFilesGood) {
  // Guards the helpers the other tests rely on.
  EXPECT_EQ(reseal(good_file()), good_file());
}

}  // namespace
}  // namespace continua::format
