// The single-pass file writer (staging blocks, background writes, header
// written last) must produce exactly the bytes of the two-pass stream writer,
// for files larger than its staging blocks and tensors that straddle them.
#include <gtest/gtest.h>

#include <cstring>
#include <sstream>

#include "../io/temp_dir.h"
#include "continua/errors.h"
#include "continua/format/safetensors.h"
#include "continua/io/fault_injection.h"
#include "continua/io/file_system.h"

namespace continua::format {
namespace {

using continua::testing::read_all;
using continua::testing::TempDir;

struct Big {
  std::vector<std::vector<uint8_t>> storage;
  std::vector<TensorView> views;
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, uint32_t seed) {
    int64_t numel = 1;
    for (auto d : shape) numel *= d;
    std::vector<uint8_t> bytes(static_cast<size_t>(numel) * dtype_size(dtype));
    uint32_t x = seed * 2654435761u + 1;
    for (auto& b : bytes) {
      x = x * 1664525u + 1013904223u;
      b = static_cast<uint8_t>(x >> 24);
    }
    storage.push_back(std::move(bytes));
    views.push_back({name, dtype, std::move(shape), storage.back().data(), storage.back().size()});
  }
};

// About 69 MiB: more than the writer's four 16 MiB staging blocks, so the
// ring of blocks in flight wraps around; odd sizes so that tensors start and
// end anywhere within a block and the file's length is not a multiple of a
// page.
Big big_state() {
  Big b;
  b.storage.reserve(8);
  b.add("w1", DType::F32, {2053, 4099}, 1);  // 32.1 MiB: spans block boundaries
  b.add("m1", DType::F32, {2053, 4099}, 2);
  b.add("small", DType::F64, {3}, 3);
  b.add("w2", DType::F16, {777, 3001}, 4);
  b.add("u8", DType::U8, {12345}, 5);
  b.add("empty", DType::F32, {0}, 6);
  return b;
}

TEST(StreamingWriter, FileBytesEqualTheStreamWritersBytes) {
  TempDir dir;
  Big b = big_state();
  const std::map<std::string, std::string> meta = {{"step", "7"}};
  const std::string path = dir.file("big.safetensors");
  save_file(io::default_file_system(), path, b.views, meta);
  std::ostringstream s;
  write_safetensors(s, b.views, meta);
  const std::string file = read_all(path);
  ASSERT_EQ(file.size(), s.str().size());
  EXPECT_TRUE(file == s.str());

  auto r = SafetensorsReader::open_file(path);
  r.verify_all();  // the large-file path, with its prefetching helper
  for (size_t i = 0; i < b.views.size(); ++i) {
    const TensorInfo* t = r.find(b.views[i].name);
    ASSERT_NE(t, nullptr);
    ASSERT_EQ(t->nbytes, b.views[i].nbytes);
    // memcmp with a null pointer is undefined even for 0 bytes (UBSan reports it).
    if (t->nbytes == 0) continue;
    EXPECT_EQ(0, std::memcmp(r.data(*t), b.views[i].data, t->nbytes)) << b.views[i].name;
  }
}

TEST(StreamingWriter, DamageInALargeFileIsFoundByVerifyAll) {
  TempDir dir;
  Big b = big_state();
  const std::string path = dir.file("big.safetensors");
  save_file(io::default_file_system(), path, b.views, {});
  std::string bytes = read_all(path);
  bytes[bytes.size() - 20000] ^= 0x10;  // inside the last large tensors
  auto r = SafetensorsReader::from_memory(std::make_shared<const std::string>(bytes), "mem");
  EXPECT_THROW(r.verify_all(), CorruptionError);
}

// Every write, sync, close and rename of a large save fails in turn: the
// previous file survives untouched and no temporary file is left.
TEST(StreamingWriter, EveryFailureOfALargeSaveKeepsThePreviousFile) {
  TempDir dir;
  Big b = big_state();
  const std::string path = dir.file("c.safetensors");
  std::vector<uint8_t> old_bytes = {1, 2, 3, 4};
  TensorView old{"old", DType::U8, {4}, old_bytes.data(), 4};
  save_file(io::default_file_system(), path, {old}, {});
  const std::string before = read_all(path);

  io::FaultInjectingFileSystem fs(io::default_file_system());
  const std::string scratch = dir.file("scratch.safetensors");
  save_file(fs, scratch, b.views, {});
  const size_t calls = fs.calls();
  ASSERT_GE(calls, 5u);
  for (size_t i = 0; i + 1 < calls; ++i) {  // the last call is the directory sync
    fs.clear();
    fs.fail_at(i, EIO, /*short_write=*/i % 2 == 0);
    EXPECT_THROW(save_file(fs, path, b.views, {}), IoError) << fs.call_name(i);
    EXPECT_EQ(read_all(path), before) << "failing " << fs.call_name(i);
  }
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 2u);  // c.safetensors and scratch.safetensors, no temporaries
}

}  // namespace
}  // namespace continua::format
