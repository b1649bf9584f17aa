// Checks that a continua checkpoint is read correctly by an independent
// reader written from the published safetensors layout
// (tools/read_safetensors.py, json + numpy only).
#include <gtest/gtest.h>
#include <stdio.h>
#include <sys/wait.h>

#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../io/temp_dir.h"
#include "continua/format/safetensors.h"
#include "continua/io/file_system.h"

namespace continua::format {
namespace {

// The repository root: CMake compiles tests with absolute paths, so __FILE__
// is <root>/tests/format/python_reader_test.cc. CONTINUA_SOURCE_DIR overrides.
std::string source_root() {
  if (const char* env = std::getenv("CONTINUA_SOURCE_DIR")) return env;
  return CONTINUA_SOURCE_DIR;  // set by tests/CMakeLists.txt
}

bool have_numpy() {
  return std::system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0;
}

std::string run(const std::string& cmd, int* status) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) {
    *status = -1;
    return out;
  }
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  *status = ::pclose(p);
  return out;
}

struct Case {
  std::vector<TensorView> views;
  std::map<std::string, double> sums;
  std::vector<float> f32 = {1.5f, -2.25f, 3.0f, 100.0f, 0.125f, 7.0f};
  std::vector<double> f64 = {1e10, -0.5, 3.25};
  std::vector<uint16_t> f16 = {0x3C00, 0x4000, 0x3800, 0xC200};   // 1, 2, 0.5, -3
  std::vector<uint16_t> bf16 = {0x3F80, 0x4000, 0xC040, 0x3E80};  // 1, 2, -3, 0.25
  std::vector<int64_t> i64 = {int64_t{1} << 40, -5, 7};
  std::vector<int32_t> i32 = {-100000, 3, 4, 5};
  std::vector<int16_t> i16 = {-300, 200, 1};
  std::vector<int8_t> i8 = {-128, 127, -1, 2};
  std::vector<uint8_t> u8 = {255, 1, 2, 3, 4};
  std::vector<uint8_t> b = {1, 0, 1, 1};
  std::vector<float> zeros = std::vector<float>(10, 0.0f);

  Case() {
    auto add = [&](const char* name, DType d, std::vector<int64_t> shape, const void* p,
                   size_t nbytes, double sum) {
      views.push_back({name, d, std::move(shape), p, nbytes});
      sums[name] = sum;
    };
    add("model.w", DType::F32, {2, 3}, f32.data(), 24, 1.5 - 2.25 + 3 + 100 + 0.125 + 7);
    add("f64", DType::F64, {3}, f64.data(), 24, 1e10 - 0.5 + 3.25);
    add("f16", DType::F16, {2, 2}, f16.data(), 8, 1 + 2 + 0.5 - 3);
    add("bf16", DType::BF16, {4}, bf16.data(), 8, 1 + 2 - 3 + 0.25);
    add("i64", DType::I64, {3}, i64.data(), 24, static_cast<double>((int64_t{1} << 40) + 2));
    add("i32", DType::I32, {4}, i32.data(), 16, -100000 + 12);
    add("i16", DType::I16, {3}, i16.data(), 6, -99);
    add("i8", DType::I8, {4}, i8.data(), 4, 0);
    add("u8", DType::U8, {5}, u8.data(), 5, 265);
    add("bool", DType::BOOL, {4}, b.data(), 4, 3);
    add("zeros", DType::F32, {10}, zeros.data(), 40, 0);
    add("empty", DType::F32, {0, 4}, nullptr, 0, 0);
    add("scalar", DType::I64, {}, i64.data(), 8, static_cast<double>(int64_t{1} << 40));
  }
};

TEST(PythonReader, SourceTreeHasTheTool) {
  // Written by C++ so the Python test below has something to read even when
  // it is skipped; also checks the tool is where the test expects it.
  continua::testing::TempDir dir;
  Case c;
  save_file(io::default_file_system(), dir.file("t.safetensors"), c.views, {{"k", "v"}});
  const auto r = SafetensorsReader::open_file(dir.file("t.safetensors"), ReadOptions().verify(true));
  EXPECT_EQ(r.tensors().size(), c.views.size());
  EXPECT_TRUE(io::default_file_system().exists(source_root() + "/tools/read_safetensors.py"))
      << source_root();
}

TEST(PythonReader, NumpyReaderAgreesWithCxx) {
  if (!have_numpy()) GTEST_SKIP() << "/usr/bin/python3 with numpy not available";
  continua::testing::TempDir dir;
  Case c;
  const std::string path = dir.file("t.safetensors");
  save_file(io::default_file_system(), path, c.views, {{"k", "v"}});
  int status = 0;
  const std::string out =
      run("/usr/bin/python3 '" + source_root() + "/tools/read_safetensors.py' '" + path + "' 2>&1",
          &status);
  ASSERT_EQ(status, 0) << out;
  const auto j = nlohmann::json::parse(out);
  ASSERT_EQ(j.size(), c.sums.size()) << out;
  for (const auto& [name, sum] : c.sums) {
    ASSERT_TRUE(j.contains(name)) << name << " missing from " << out;
    EXPECT_NEAR(j[name].get<double>(), sum, 1e-9 * std::max(1.0, std::abs(sum))) << name;
  }
}

}  // namespace
}  // namespace continua::format
