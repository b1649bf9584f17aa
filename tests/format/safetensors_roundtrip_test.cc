#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <numeric>
#include <sstream>

#include <nlohmann/json.hpp>

#include "../io/temp_dir.h"
#include "continua/errors.h"
#include "continua/format/safetensors.h"
#include "continua/io/fault_injection.h"
#include "continua/io/file_system.h"

namespace continua::format {
namespace {

using continua::testing::read_all;
using continua::testing::TempDir;

// Owns the bytes of a set of tensors to write.
struct Fixture {
  std::vector<std::vector<uint8_t>> storage;
  std::vector<TensorView> views;

  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, uint8_t seed) {
    int64_t numel = 1;
    for (auto d : shape) numel *= d;
    std::vector<uint8_t> bytes(static_cast<size_t>(numel) * dtype_size(dtype));
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(seed + i * 7);
    if (dtype == DType::BOOL) {
      for (auto& b : bytes) b &= 1;
    }
    storage.push_back(std::move(bytes));
    views.push_back({name, dtype, std::move(shape), storage.back().data(), storage.back().size()});
  }
  void add_zeros(const std::string& name, DType dtype, std::vector<int64_t> shape) {
    add(name, dtype, shape, 0);
    std::fill(storage.back().begin(), storage.back().end(), 0);
  }
};

Fixture every_dtype() {
  Fixture f;
  f.storage.reserve(32);  // views point into storage: no reallocation
  f.add("model.fc1.weight", DType::F32, {4, 3}, 1);
  f.add("model.fc1.bias", DType::F32, {3}, 2);
  f.add("optim.step", DType::I64, {}, 3);
  f.add("a.f64", DType::F64, {2, 2}, 4);
  f.add("b.f16", DType::F16, {5}, 5);
  f.add("c.bf16", DType::BF16, {3}, 6);
  f.add("d.i32", DType::I32, {7}, 7);
  f.add("e.i16", DType::I16, {3}, 8);
  f.add("f.i8", DType::I8, {5}, 9);
  f.add("g.u8", DType::U8, {9}, 10);
  f.add("h.bool", DType::BOOL, {3}, 11);
  f.add("empty.f32", DType::F32, {0}, 0);
  f.add("empty2.i64", DType::I64, {3, 0, 2}, 0);
  f.add_zeros("zeros.f64", DType::F64, {16});
  f.add("unicode.µ", DType::F32, {1}, 12);
  return f;
}

void expect_same(const SafetensorsReader& r, const Fixture& f) {
  ASSERT_EQ(r.tensors().size(), f.views.size());
  for (const TensorView& v : f.views) {
    const TensorInfo* t = r.find(v.name);
    ASSERT_NE(t, nullptr) << v.name;
    EXPECT_EQ(t->dtype, v.dtype) << v.name;
    EXPECT_EQ(t->shape, v.shape) << v.name;
    ASSERT_EQ(t->nbytes, v.nbytes) << v.name;
    if (v.nbytes > 0) {
      EXPECT_EQ(std::memcmp(r.data(*t), v.data, v.nbytes), 0) << v.name;
    }
  }
}

TEST(Safetensors, RoundTripThroughFile) {
  TempDir dir;
  const Fixture f = every_dtype();
  const std::string path = dir.file("ckpt.safetensors");
  const std::map<std::string, std::string> meta = {{"step", "100"}, {"note", "a \"quoted\"\nline"}};
  save_file(io::default_file_system(), path, f.views, meta);
  const auto r = SafetensorsReader::open_file(path);
  r.verify_all();
  expect_same(r, f);
  EXPECT_EQ(r.metadata(), meta);  // continua's reserved keys are stripped
  EXPECT_EQ(r.format_version(), kFormatVersion);
  EXPECT_EQ(r.file_size(), read_all(path).size());
  EXPECT_EQ(r.find("missing"), nullptr);
  EXPECT_EQ(dir.entries().size(), 1u);
}

TEST(Safetensors, EveryTensorIsAlignedAndOrderedBySizeThenName) {
  const Fixture f = every_dtype();
  std::ostringstream out;
  write_safetensors(out, f.views, {});
  auto bytes = std::make_shared<const std::string>(out.str());
  const auto r = SafetensorsReader::from_memory(bytes, "mem");
  uint64_t n = 0;
  std::memcpy(&n, bytes->data(), 8);
  EXPECT_EQ((8 + n) % kDataAlignment, 0u);
  const auto& ts = r.tensors();
  for (size_t i = 0; i < ts.size(); ++i) {
    EXPECT_EQ(ts[i].offset % dtype_size(ts[i].dtype), 0u) << ts[i].name;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(r.data(ts[i])) % dtype_size(ts[i].dtype), 0u);
    if (i > 0) {
      const size_t a = dtype_size(ts[i - 1].dtype), b = dtype_size(ts[i].dtype);
      EXPECT_TRUE(a > b || (a == b && ts[i - 1].name < ts[i].name) || ts[i].nbytes == 0 ||
                  ts[i - 1].nbytes == 0)
          << ts[i - 1].name << " before " << ts[i].name;
    }
  }
  // The header is plain JSON whose first key is __metadata__ and whose first
  // metadata key is header_crc32c; only spaces pad it.
  const std::string header = bytes->substr(8, n);
  EXPECT_EQ(header.rfind(std::string(kHeaderPrefix), 0), 0u);
  EXPECT_EQ(header.find_last_not_of(' '), header.rfind('}'));
  const auto j = nlohmann::json::parse(header);
  EXPECT_EQ(j["__metadata__"]["format"], "continua-checkpoint");
  EXPECT_EQ(j["__metadata__"]["format_version"], "1");
  EXPECT_EQ(j.size(), f.views.size() + 1);
  const auto crcs = nlohmann::json::parse(j["__metadata__"]["tensor_crc32c"].get<std::string>());
  EXPECT_EQ(crcs.size(), f.views.size());
  EXPECT_EQ(crcs["optim.step"].get<std::string>().size(), 8u);
}

TEST(Safetensors, EmptyCheckpoint) {
  std::ostringstream out;
  write_safetensors(out, {}, {{"k", "v"}});
  const auto r = SafetensorsReader::from_memory(std::make_shared<const std::string>(out.str()), "e");
  EXPECT_TRUE(r.tensors().empty());
  EXPECT_EQ(r.metadata().at("k"), "v");
  r.verify_all();
}

TEST(Safetensors, StreamRoundTrip) {
  const Fixture f = every_dtype();
  std::stringstream s;
  write_safetensors(s, f.views, {{"x", "y"}});
  const auto r = SafetensorsReader::from_stream(s, "stream", ReadOptions().verify(true));
  expect_same(r, f);
  EXPECT_EQ(r.metadata().at("x"), "y");
  // keep_alive owns the bytes beyond the reader's lifetime.
  auto owner = r.keep_alive();
  EXPECT_NE(owner, nullptr);
}

TEST(Safetensors, StreamTruncatedIsCorrupt) {
  const Fixture f = every_dtype();
  std::ostringstream out;
  write_safetensors(out, f.views, {});
  const std::string full = out.str();
  for (size_t len : {size_t{0}, size_t{5}, size_t{8}, size_t{100}, full.size() - 1}) {
    std::istringstream in(full.substr(0, len));
    EXPECT_THROW(SafetensorsReader::from_stream(in, "stream", {}), CorruptionError) << len;
  }
}

TEST(Safetensors, StreamLargeTensorCrossesChunks) {
  std::vector<float> big(700000);
  std::iota(big.begin(), big.end(), 0.5f);
  std::vector<TensorView> ts = {{"big", DType::F32, {700000}, big.data(), big.size() * 4}};
  std::stringstream s;
  write_safetensors(s, ts, {});
  const auto r = SafetensorsReader::from_stream(s, "stream");
  r.verify_all();
  EXPECT_EQ(std::memcmp(r.data(r.tensors()[0]), big.data(), big.size() * 4), 0);
}

TEST(Safetensors, WriterRejectsImpossibleInput) {
  float x[2] = {1, 2};
  auto expect_invalid = [&](std::vector<TensorView> ts, std::map<std::string, std::string> m,
                            const std::string& needle) {
    std::ostringstream out;
    try {
      write_safetensors(out, ts, m);
      ADD_FAILURE() << "accepted: " << needle;
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_invalid({{"a", DType::F32, {2}, x, 8}, {"a", DType::F32, {2}, x, 8}}, {}, "duplicate");
  expect_invalid({{"", DType::F32, {2}, x, 8}}, {}, "empty");
  expect_invalid({{"__x", DType::F32, {2}, x, 8}}, {}, "reserved");
  expect_invalid({{"a", DType::F32, {3}, x, 8}}, {}, "nbytes");
  expect_invalid({{"a", DType::F32, {-2}, x, 8}}, {}, "negative");
  expect_invalid({{"a", DType::F32, {int64_t{1} << 62, 16}, x, 8}}, {}, "overflow");
  expect_invalid({{"bad\xff", DType::F32, {2}, x, 8}}, {}, "UTF-8");
  for (const char* key : {"format", "format_version", "tensor_crc32c", "header_crc32c"}) {
    expect_invalid({}, {{key, "x"}}, "reserved");
  }
}

TEST(Safetensors, SaveFileRejectsBadInputWithoutTouchingDisk) {
  TempDir dir;
  float x[2] = {1, 2};
  EXPECT_THROW(save_file(io::default_file_system(), dir.file("c"),
                         {{"a", DType::F32, {3}, x, 8}}, {}),
               InvalidArgument);
  EXPECT_TRUE(dir.entries().empty());
}

TEST(Safetensors, DtypeNames) {
  for (DType d : {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64, DType::I32,
                  DType::I16, DType::I8, DType::U8, DType::BOOL}) {
    EXPECT_EQ(parse_dtype(dtype_name(d)), d);
  }
  EXPECT_EQ(parse_dtype("f32"), std::nullopt);
  EXPECT_EQ(parse_dtype("F8_E4M3"), std::nullopt);
  EXPECT_EQ(dtype_size(DType::BF16), 2u);
}

// save_file under a failing file system: every failure keeps the previous
// checkpoint readable and byte-identical.
TEST(Safetensors, SaveFileFaultSweepKeepsPreviousCheckpoint) {
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  std::vector<float> big((3u << 20) / 4, 1.5f);  // > the writer's buffer: written directly
  std::vector<TensorView> v1 = {{"w", DType::F32, {static_cast<int64_t>(big.size())}, big.data(),
                                 big.size() * 4}};
  std::vector<float> big2(big.size(), 2.5f);
  std::vector<TensorView> v2 = v1;
  v2[0].data = big2.data();
  save_file(io::default_file_system(), path, v1, {{"v", "1"}});
  const std::string before = read_all(path);

  io::FaultInjectingFileSystem fs(io::default_file_system());
  save_file(fs, path, v2, {{"v", "2"}});
  const size_t n = fs.calls();
  EXPECT_GE(n, 7u);
  for (size_t i = 0; i < n; ++i) {
    save_file(io::default_file_system(), path, v1, {{"v", "1"}});
    fs.clear();
    fs.fail_at(i, ENOSPC, /*short_write=*/true);
    EXPECT_THROW(save_file(fs, path, v2, {{"v", "2"}}), IoError) << "call " << i;
    if (fs.call_name(i) != "sync_dir") {
      EXPECT_EQ(read_all(path), before) << "call " << i;
    }
    const auto r = SafetensorsReader::open_file(path, ReadOptions().verify(true));
    EXPECT_EQ(dir.entries().size(), 1u);
  }
}

TEST(Safetensors, OpenMissingFileIsIoError) {
  TempDir dir;
  try {
    SafetensorsReader::open_file(dir.file("nope"));
    FAIL();
  } catch (const IoError& e) {
    EXPECT_EQ(std::string(e.what()),
              "cannot open checkpoint '" + dir.file("nope") + "': No such file or directory");
  }
}

// verify_all reads ahead of the checksum within a window of where the
// checksum is: a header larger than that window (a 24 MiB metadata value)
// and tensors spanning several windows are walked through (a window counted
// from the last checked byte deadlocked on such a header), and a damaged
// byte in the last tensor is still found.
TEST(Safetensors, VerifyAllWalksPastAHeaderLargerThanItsReadAheadWindow) {
  TempDir dir;
  Fixture f;
  f.add("a", DType::F32, {10 << 20}, 1);  // 40 MiB
  f.add("b", DType::U8, {5 << 20}, 2);
  const std::string path = dir.file("big");
  save_file(io::default_file_system(), path, f.views, {{"note", std::string(24 << 20, 'x')}});
  {
    auto r = SafetensorsReader::open_file(path);
    r.verify_all();
    expect_same(r, f);
  }
  auto r = SafetensorsReader::open_file(path);
  const TensorInfo* b = r.find("b");
  ASSERT_NE(b, nullptr);
  ASSERT_GT(b->offset, uint64_t{24} << 20);
  {
    std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(std::streamoff(b->offset + b->nbytes - 3));
    io.put('\x5a');
  }
  auto damaged = SafetensorsReader::open_file(path);
  EXPECT_THROW(damaged.verify_all(), CorruptionError);
}

}  // namespace
}  // namespace continua::format
