// `continua bench` runs on a small state and prints the documented keys. It
// never checks speed: benchmarks are not unit tests (docs/benchmarks.md).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace continua::testing {
namespace {

// `continua bench --bytes BYTES --repeat 1 --json` in `dir`: its JSON.
nlohmann::json bench_json(const TempDir& dir, const std::string& bytes) {
  const auto r = run_command(continua_bin() + " bench --bytes " + bytes + " --repeat 1 --json --dir " +
                             dir.path() + " 2>/dev/null");
  EXPECT_EQ(r.status, 0) << r.output;
  return nlohmann::json::parse(r.output, nullptr, /*allow_exceptions=*/false);
}

TEST(BenchCommand, SmallRunPrintsTheRatiosAsJson) {
  TempDir dir;
  const auto j = bench_json(dir, "8M");
  ASSERT_TRUE(j.is_object()) << j;
  for (const char* k : {"save_vs_raw_write", "load_vs_raw_read", "save_vs_torch_save",
                        "load_vs_torch_load", "load_vs_torch_load_warm", "async_stall_vs_memcpy"}) {
    ASSERT_TRUE(j.contains(k)) << k << "\n" << j;
    EXPECT_TRUE(j[k].is_number()) << k;
    EXPECT_GT(j[k].get<double>(), 0.0) << k;
  }
  EXPECT_GE(j["state_bytes"].get<double>(), 7.5 * 1024 * 1024);
  EXPECT_LE(j["state_bytes"].get<double>(), 8.5 * 1024 * 1024);
  for (const char* f : {"memcpy", "raw_write_fsync", "continua_save", "torch_save_fsync",
                        "raw_read_cold", "continua_load_cold", "continua_load_warm",
                        "torch_load_cold", "torch_load_warm", "async_stall"}) {
    EXPECT_TRUE(j["figures"].contains(f)) << f;
  }
  // Peak memory is measured for the save and the load (clear_refs works here).
  EXPECT_GE(j["figures"]["continua_save"]["peak_extra_bytes"].get<int64_t>(), 0);
  EXPECT_GT(j["figures"]["continua_load_cold"]["peak_extra_bytes"].get<int64_t>(), 0);  // the mapping
  // Its scratch files are gone; the directory it was given is kept.
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(BenchCommand, ASizeListMeasuresEachAndHowTimesScale) {
  TempDir dir;
  const auto j = bench_json(dir, "1M,2M");
  ASSERT_TRUE(j.is_object()) << j;
  ASSERT_EQ(j["sizes"].size(), 2u) << j;
  EXPECT_LT(j["sizes"][0]["state_bytes"].get<double>(), j["sizes"][1]["state_bytes"].get<double>());
  for (const char* k : {"continua_save", "continua_load_cold", "torch_save_fsync", "torch_load_cold"}) {
    ASSERT_EQ(j["scaling"][k].size(), 2u) << k;
    EXPECT_GT(j["scaling"][k][1]["seconds_per_gib"].get<double>(), 0.0) << k;
  }
  const auto bad = run_command(continua_bin() + " bench --bytes 1M,,2M 2>&1");
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.output.find("--bytes"), std::string::npos) << bad.output;
}

TEST(BenchCommand, BadSizesAreRefusedWithAMessage) {
  for (const char* bad : {"12Q", "abc", "0", "-5M"}) {
    const auto r = run_command(continua_bin() + " bench --bytes " + bad + " 2>&1");
    EXPECT_NE(r.status, 0) << bad;
    EXPECT_NE(r.output.find("--bytes"), std::string::npos) << r.output;
  }
}

}  // namespace
}  // namespace continua::testing
