// Crafted hostile files at the checkpoint level: each is fed to
// maybe_load_checkpoint and must be refused with a clear error, in bounded
// memory, leaving the strategy unchanged. Format-level cases are built with
// tests/format/handcraft.h; checkpoint-level ones rewrite a real replay
// checkpoint with valid CRCs but hostile metadata or tensors, so they get
// past the byte checks and reach the state validation.
#include <gtest/gtest.h>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>

#include "../format/handcraft.h"
#include "continua/format/safetensors.h"
#include "continua/io/process_memory.h"
#include "reliability_util.h"

namespace continua::testing {
namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif
#else
constexpr bool kAsan = false;
#endif

// Runs `fn` in a forked child whose address space may grow by at most
// `budget` bytes (RLIMIT_AS). Returns fn's result, 100 + signal if killed,
// 99 if it threw. Only for code that needs no torch thread pool.
int run_with_memory_budget(size_t budget, const std::function<int()>& fn) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const rlim_t limit = size_t(std::max<int64_t>(0, io::address_space_bytes())) + budget;
    rlimit rl{limit, limit};
    if (::setrlimit(RLIMIT_AS, &rl) != 0) ::_exit(98);
    int rc = 99;
    try {
      rc = fn();
    } catch (...) {
    }
    ::_exit(rc);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

struct Fixture {
  std::shared_ptr<Benchmark> bench = synthetic_benchmark(1, 5);
  std::unique_ptr<Strategy> strategy = trained_strategy("replay", *bench, 2);
  std::string bytes = checkpoint_bytes(*strategy);
  std::string digest = strategy->state_digest();
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

// Loads `file` and expects `outcome` with `needle` in the message, the
// strategy unchanged.
void expect_refused(const std::string& file, LoadOutcome outcome, const std::string& needle) {
  Fixture& fx = fixture();
  fx.digest = fx.strategy->state_digest();
  std::string message;
  const LoadOutcome got = try_load(*fx.strategy, file, {fx.bench}, &message);
  EXPECT_EQ(outcome_name(got), std::string(outcome_name(outcome))) << message;
  EXPECT_NE(message.find(needle), std::string::npos)
      << "message: " << message << "\nwanted: " << needle;
  EXPECT_EQ(fx.strategy->state_digest(), fx.digest) << "the failed load changed the strategy";
}

// The real checkpoint, rewritten with valid CRCs after `edit` changed its
// metadata (continua.* keys included) or its tensors.
struct Editable {
  std::map<std::string, std::string> meta;
  std::map<std::string, std::tuple<format::DType, std::vector<int64_t>, std::string>> tensors;
};
std::string rewrite(const std::function<void(Editable&)>& edit) {
  auto r = format::SafetensorsReader::from_memory(std::make_shared<const std::string>(fixture().bytes),
                                                  "orig");
  Editable e;
  e.meta = r.metadata();
  for (const auto& t : r.tensors()) {
    e.tensors[t.name] = {t.dtype, t.shape,
                         std::string(reinterpret_cast<const char*>(r.data(t)), t.nbytes)};
  }
  edit(e);
  std::vector<format::TensorView> views;
  for (const auto& [name, t] : e.tensors) {
    views.push_back({name, std::get<0>(t), std::get<1>(t), std::get<2>(t).data(),
                     std::get<2>(t).size()});
  }
  std::ostringstream out;
  format::write_safetensors(out, views, e.meta);
  return out.str();
}

nlohmann::json state_of(const Editable& e) { return nlohmann::json::parse(e.meta.at("continua.state")); }

// ---------------------------------------------------------------- format level

std::string one_entry(const std::string& entries, const std::string& data = "",
                      const std::string& crcs = "{}") {
  return seal(continua_header(crcs, entries), data);
}

TEST(Crafted, TerabyteTensorIsRefusedInBoundedMemory) {
  const std::string f = one_entry(
      R"(,"strategy.x":{"dtype":"F32","shape":[274877906944],"data_offsets":[0,1099511627776]})");
  expect_refused(f, LoadOutcome::kCorruption, "run past the end of the data");
  if (kAsan) GTEST_SKIP() << "RLIMIT_AS does not work under AddressSanitizer";
  // Positive control: the budget really limits allocations.
  EXPECT_NE(run_with_memory_budget(size_t{64} << 20,
                                   [] {
                                     std::string big(size_t{256} << 20, 'x');
                                     return big[12345] == 'x' ? 0 : 1;
                                   }),
            0);
  EXPECT_EQ(run_with_memory_budget(size_t{64} << 20,
                                   [&] {
                                     return try_load(*fixture().strategy, f, {}) ==
                                                    LoadOutcome::kCorruption
                                                ? 0
                                                : 1;
                                   }),
            0);
}

TEST(Crafted, NegativeAndOverflowingOffsets) {
  expect_refused(one_entry(R"(,"strategy.x":{"dtype":"U8","shape":[8],"data_offsets":[-8,0]})"),
                 LoadOutcome::kCorruption, "not a pair of non-negative integers");
  expect_refused(
      one_entry(R"(,"strategy.x":{"dtype":"U8","shape":[8],"data_offsets":[0,18446744073709551616]})"),
      LoadOutcome::kCorruption, "not a pair of non-negative integers");
  expect_refused(
      one_entry(
          R"(,"strategy.x":{"dtype":"U8","shape":[8],"data_offsets":[18446744073709551608,18446744073709551615]})"),
      LoadOutcome::kCorruption, "run past the end");
  expect_refused(
      one_entry(
          R"(,"strategy.x":{"dtype":"F64","shape":[2305843009213693952,8],"data_offsets":[0,0]})"),
      LoadOutcome::kCorruption, "overflows 64 bits");
}

TEST(Crafted, OverlappingTensorsAndDuplicateKeys) {
  const std::string data(16, '\0');
  const std::string crc = hex8(io::crc32c(data.data(), 16));
  expect_refused(one_entry(R"(,"strategy.a":{"dtype":"U8","shape":[16],"data_offsets":[0,16]})"
                           R"(,"strategy.b":{"dtype":"U8","shape":[8],"data_offsets":[8,16]})",
                           data, "{\"strategy.a\":\"" + crc + "\",\"strategy.b\":\"" + crc + "\"}"),
                 LoadOutcome::kCorruption, "overlaps");
  expect_refused(one_entry(R"(,"strategy.a":{"dtype":"U8","shape":[16],"data_offsets":[0,16]})"
                           R"(,"strategy.a":{"dtype":"U8","shape":[16],"data_offsets":[0,16]})",
                           data, "{\"strategy.a\":\"" + crc + "\"}"),
                 LoadOutcome::kCorruption, "twice");
}

TEST(Crafted, DeeplyNestedHeader) {
  std::string deep = ",\"strategy.x\":";
  for (int i = 0; i < 100000; ++i) deep += "[";
  expect_refused(one_entry(deep), LoadOutcome::kCorruption, "nests deeper than");
}

TEST(Crafted, UnknownDtype) {
  for (const char* dtype : {"F8_E4M3", "Q4_0", "", "f32"}) {
    expect_refused(one_entry(std::string(R"(,"strategy.x":{"dtype":")") + dtype +
                             R"(","shape":[0],"data_offsets":[0,0]})"),
                   LoadOutcome::kCorruption, "unknown dtype");
  }
}

TEST(Crafted, PlainSafetensorsIsNotAContinuaCheckpoint) {
  const std::string f =
      seal(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0'), false);
  expect_refused(f, LoadOutcome::kCorruption, "not a continua checkpoint");
}

TEST(Crafted, ContinuaFileThatIsNotAStrategyCheckpoint) {
  std::ostringstream out;
  const float w[2] = {1, 2};
  format::write_safetensors(out, {{"w", format::DType::F32, {2}, w, 8}}, {{"step", "1"}});
  expect_refused(out.str(), LoadOutcome::kCorruption, "not a strategy checkpoint");
}

// ---------------------------------------------------------------- checkpoint level

TEST(Crafted, RewriteHelperKeepsTheCheckpointValid) {
  Fixture& fx = fixture();
  fx.digest = fx.strategy->state_digest();
  EXPECT_EQ(try_load(*fx.strategy, rewrite([](Editable&) {}), {fx.bench}), LoadOutcome::kLoaded);
  EXPECT_EQ(fx.strategy->state_digest(), fx.digest);
}

TEST(Crafted, DeeplyNestedMetadataDocument) {
  expect_refused(rewrite([](Editable& e) { e.meta["continua.state"] = std::string(100000, '['); }),
                 LoadOutcome::kCorruption, "metadata 'continua.state' nests deeper than");
  expect_refused(rewrite([](Editable& e) { e.meta["continua.objects"] = "]]]]]" + std::string(80, '['); }),
                 LoadOutcome::kCorruption, "metadata 'continua.objects' is not valid JSON");
}

TEST(Crafted, HugeMetadataStringIsRefusedInBoundedMemory) {
  const size_t n = size_t{50} << 20;
  const std::string f = rewrite([&](Editable& e) {
    e.meta["continua.state"] = "\"" + std::string(n, 'a') + "\"";
  });
  expect_refused(f, LoadOutcome::kCorruption, "'continua.state' has the wrong JSON type");
  if (kAsan) GTEST_SKIP() << "RLIMIT_AS does not work under AddressSanitizer";
  // The reader holds the bytes, the metadata map a copy, the parser one
  // string: a few times the file, never more.
  const size_t budget = 8 * f.size();
  EXPECT_EQ(run_with_memory_budget(budget,
                                   [&] {
                                     std::string msg;
                                     return try_load(*fixture().strategy, f, {}, &msg) ==
                                                    LoadOutcome::kCorruption
                                                ? 0
                                                : 1;
                                   }),
            0)
      << "needs more than " << budget / (1 << 20) << " MiB for a " << f.size() / (1 << 20)
      << " MiB file";
}

TEST(Crafted, HundredThousandStateKeys) {
  std::string message;
  const std::string f = rewrite([](Editable& e) {
    nlohmann::json s = state_of(e);
    for (int i = 0; i < 100000; ++i) s["strategy.junk.k" + std::to_string(i)] = i;
    e.meta["continua.state"] = s.dump();
  });
  Fixture& fx = fixture();
  fx.digest = fx.strategy->state_digest();
  // Unknown keys under "strategy." are not read by any component; what matters
  // is a bounded, prompt answer and an unchanged or fully loaded strategy.
  const auto t0 = std::chrono::steady_clock::now();
  const LoadOutcome o = try_load(*fx.strategy, f, {fx.bench}, &message);
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(dt, 10.0);
  EXPECT_TRUE(o == LoadOutcome::kLoaded || o == LoadOutcome::kCorruption ||
              o == LoadOutcome::kInvalidArgument)
      << outcome_name(o) << " " << message;
  EXPECT_EQ(fx.strategy->state_digest(), fx.digest);
}

TEST(Crafted, StateKeysOutsideTheStrategy) {
  expect_refused(rewrite([](Editable& e) {
                   nlohmann::json s = state_of(e);
                   s["evil"] = 1;
                   e.meta["continua.state"] = s.dump();
                 }),
                 LoadOutcome::kCorruption, "state key 'evil'");
}

TEST(Crafted, WrongJsonTypesInTheState) {
  expect_refused(rewrite([](Editable& e) {
                   nlohmann::json s = state_of(e);
                   s["strategy.clock.train_iterations"] = std::to_string(s["strategy.clock.train_iterations"].get<int64_t>());
                   e.meta["continua.state"] = s.dump();
                 }),
                 LoadOutcome::kInvalidArgument, "strategy.clock.train_iterations");
  expect_refused(rewrite([](Editable& e) { e.meta["continua.state"] = "[]"; }),
                 LoadOutcome::kCorruption, "'continua.state' has the wrong JSON type");
  expect_refused(rewrite([](Editable& e) { e.meta["continua.devices"] = R"({"strategy.model.x": 3})"; }),
                 LoadOutcome::kCorruption, "not a device string");
  expect_refused(rewrite([](Editable& e) { e.meta["continua.excluded"] = R"([1])"; }),
                 LoadOutcome::kCorruption, "non-string");
  expect_refused(rewrite([](Editable& e) { e.meta.erase("continua.objects"); }),
                 LoadOutcome::kCorruption, "metadata 'continua.objects' is missing");
}

TEST(Crafted, NextExperienceMustBeADecimal) {
  for (const char* v : {"-1", "12abc", " 3", "", "99999999999999999999", "1e3"}) {
    expect_refused(rewrite([&](Editable& e) { e.meta["continua.next_experience"] = v; }),
                   LoadOutcome::kCorruption, "continua.next_experience");
  }
}

TEST(Crafted, NegativeSizesAndCounts) {
  expect_refused(rewrite([](Editable& e) {
                   nlohmann::json s = state_of(e);
                   s["strategy.loop.epoch"] = -5;
                   s["strategy.loop.experience"] = 1;
                   e.meta["continua.state"] = s.dump();
                 }),
                 LoadOutcome::kInvalidArgument, "strategy.loop.epoch");
}

TEST(Crafted, ReplayPositionsOutOfRange) {
  for (int64_t bad : {int64_t{-1}, int64_t{1} << 40, int64_t{2147483647}}) {
    expect_refused(rewrite([&](Editable& e) {
                     auto& t = e.tensors.at("strategy.plugins.replay.memory.positions");
                     std::string& raw = std::get<2>(t);
                     // Whatever integer type the plugin saves positions as.
                     if (std::get<0>(t) == format::DType::I32) {
                       const int32_t v = static_cast<int32_t>(std::max<int64_t>(
                           std::min<int64_t>(bad, 2147483647), -2147483648LL));
                       ASSERT_GE(raw.size(), 4u);
                       std::memcpy(&raw[0], &v, 4);
                     } else {
                       ASSERT_EQ(std::get<0>(t), format::DType::I64);
                       ASSERT_GE(raw.size(), 8u);
                       std::memcpy(&raw[0], &bad, 8);
                     }
                   }),
                   LoadOutcome::kInvalidArgument, "strategy.plugins.replay.memory.positions");
  }
}

TEST(Crafted, TensorOfTheWrongShapeOrType) {
  auto model_weight = [](Editable& e) -> std::string {
    for (const auto& [k, t] : e.tensors) {
      if (k.rfind("strategy.model.", 0) == 0 && std::get<1>(t).size() == 2) return k;
    }
    ADD_FAILURE() << "no 2-d model tensor";
    return e.tensors.begin()->first;
  };
  std::string key;
  expect_refused(rewrite([&](Editable& e) {
                   key = model_weight(e);
                   auto& shape = std::get<1>(e.tensors.at(key));
                   shape = {shape[0] * shape[1]};
                 }),
                 LoadOutcome::kInvalidArgument, "");
  expect_refused(rewrite([&](Editable& e) {
                   key = model_weight(e);
                   std::get<0>(e.tensors.at(key)) = format::DType::I32;
                 }),
                 LoadOutcome::kInvalidArgument, "");
  expect_refused(rewrite([&](Editable& e) { e.tensors.erase(model_weight(e)); }),
                 LoadOutcome::kInvalidArgument, "");
}

}  // namespace
}  // namespace continua::testing
