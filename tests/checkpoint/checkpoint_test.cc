#include <gtest/gtest.h>

#include <set>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "continua/checkpoint/checkpoint.h"
#include "continua/errors.h"
#include "continua/format/safetensors.h"
#include "continua/io/file_system.h"
#include "continua/training/plugins.h"
#include "continua/training/registry.h"
#include "test_util.h"

namespace continua {
namespace {

using testing::make_test_strategy;
using testing::synthetic_benchmark;
using testing::TempDir;

// Every registered strategy, the ones tests register too (training/registry.h).
const std::vector<std::string> kStrategies = strategy_names();

struct Outcome {
  std::string digest;
  std::vector<std::vector<double>> matrix;
};

// Trains experiences [from, to) with evaluation after each, as the CLI does.
void train_range(Strategy& s, const Benchmark& b, int64_t from, int64_t to) {
  for (int64_t i = from; i < to; ++i) {
    ASSERT_TRUE(s.train(b.train_stream()[i]));
    s.eval(b.test_stream());
  }
}

Outcome uninterrupted(const std::string& name, const Benchmark& b) {
  auto s = make_test_strategy(name, b);
  train_range(*s, b, 0, 5);
  return {s->state_digest(), s->evaluator().accuracy_matrix()};
}

// Runs to experience k, saves, and finishes in a fresh strategy that loads the
// checkpoint (with `exclude` left out of the file).
Outcome interrupted_at(const std::string& name, const Benchmark& b, int64_t k,
                       const std::string& path, std::vector<std::string> exclude = {}) {
  {
    auto first = make_test_strategy(name, b);
    train_range(*first, b, 0, k);
    save_checkpoint(*first, path, SaveOptions().exclude(exclude));
  }
  // A fresh strategy: new model (torch's generator reseeded), new optimizer.
  auto second = make_test_strategy(name, b);
  auto [s, initial] = maybe_load_checkpoint(*second, path, {}, {b.shared_from_this()});
  EXPECT_EQ(initial, k);
  train_range(s, b, initial, 5);
  return {s.state_digest(), s.evaluator().accuracy_matrix()};
}

TEST(Checkpoint, MissingFileLeavesStrategyUnchangedAndReturnsZero) {
  auto b = synthetic_benchmark();
  auto s = make_test_strategy("replay", *b);
  const std::string before = s->state_digest();
  TempDir d;
  auto [same, initial] = maybe_load_checkpoint(*s, d.file("nope.safetensors"));
  EXPECT_EQ(&same, s.get());
  EXPECT_EQ(initial, 0);
  EXPECT_EQ(s->state_digest(), before);
}

TEST(Checkpoint, ResumeAfterEachExperienceIsBitExactForEveryStrategy) {
  auto b = synthetic_benchmark(11);
  TempDir d;
  for (const std::string& name : kStrategies) {
    const Outcome ref = uninterrupted(name, *b);
    for (int64_t k = 1; k < 5; ++k) {
      Outcome got = interrupted_at(name, *b, k, d.file(name + ".st"));
      EXPECT_EQ(got.digest, ref.digest) << name << " interrupted after " << k;
      EXPECT_EQ(got.matrix, ref.matrix) << name << " interrupted after " << k;
    }
  }
}

TEST(Checkpoint, ResumeInsideAnExperienceIsBitExact) {
  auto b = synthetic_benchmark(12);
  TempDir d;
  for (const std::string& name : kStrategies) {
    // Two epochs so a stop can land in either.
    auto full = make_test_strategy(name, *b, 1, 2);
    train_range(*full, *b, 0, 3);
    const int64_t n = testing::iterations_in_experience(name, *b, 1, 1, 2);
    ASSERT_GE(n, 2) << name;
    for (int64_t stop_at : std::set<int64_t>{std::min<int64_t>(3, n - 1), std::min<int64_t>(37, n - 1)}) {
      auto part = make_test_strategy(name, *b, 1, 2);
      train_range(*part, *b, 0, 1);
      int calls = 0;
      part->set_iteration_callback([&](Strategy& s) {
        if (++calls == stop_at) s.request_stop();
      });
      EXPECT_FALSE(part->train(b->train_stream()[1]));
      save_checkpoint(*part, d.file("mid.st"));
      auto fresh = make_test_strategy(name, *b, 1, 2);
      auto [s, initial] = maybe_load_checkpoint(*fresh, d.file("mid.st"), {}, {b});
      ASSERT_EQ(initial, 1);
      ASSERT_TRUE(s.in_experience());
      train_range(s, *b, 1, 3);
      EXPECT_EQ(s.state_digest(), full->state_digest()) << name << " stopped at " << stop_at;
      EXPECT_EQ(s.evaluator().accuracy_matrix(), full->evaluator().accuracy_matrix()) << name;
    }
  }
}

// The resume test has teeth: leaving out the restore of one component (the
// random generators, the optimizer, a plugin) changes the result.
TEST(Checkpoint, SkippingTheRestoreOfAComponentIsDetected) {
  auto b = synthetic_benchmark(13);
  TempDir d;
  const Outcome ref = uninterrupted("replay", *b);
  EXPECT_EQ(interrupted_at("replay", *b, 2, d.file("a.st")).digest, ref.digest);
  for (const char* part : {"rng", "optimizer", "plugins.replay", "evaluator"}) {
    Outcome got = interrupted_at("replay", *b, 2, d.file("a.st"), {part});
    EXPECT_NE(got.digest, ref.digest) << "skipping '" << part << "' went unnoticed";
  }
  const Outcome ewc = uninterrupted("ewc", *b);
  EXPECT_NE(interrupted_at("ewc", *b, 2, d.file("e.st"), {"plugins.ewc"}).digest, ewc.digest);
  const Outcome lwf = uninterrupted("lwf", *b);
  EXPECT_NE(interrupted_at("lwf", *b, 2, d.file("l.st"), {"plugins.lwf"}).digest, lwf.digest);
}

TEST(Checkpoint, StreamRoundTrip) {
  auto b = synthetic_benchmark(14);
  auto s = make_test_strategy("ewc", *b);
  train_range(*s, *b, 0, 2);
  std::stringstream ss;
  save_checkpoint(*s, ss);
  auto fresh = make_test_strategy("ewc", *b);
  ss.seekg(0);
  auto [loaded, initial] = maybe_load_checkpoint(*fresh, ss, {}, {b});
  EXPECT_EQ(initial, 2);
  EXPECT_EQ(loaded.state_digest(), s->state_digest());
  // The stream holds a valid checkpoint file byte for byte.
  TempDir d;
  save_checkpoint(*s, d.file("f.st"));
  EXPECT_EQ(testing::read_file(d.file("f.st")), ss.str());
}

TEST(Checkpoint, GrownHeadLoadsIntoFreshModel) {
  auto b = synthetic_benchmark(15);
  auto s = make_test_strategy("naive", *b);
  train_range(*s, *b, 0, 3);
  const int64_t grown = s->model().num_outputs();
  TempDir d;
  save_checkpoint(*s, d.file("g.st"));
  auto fresh = make_test_strategy("naive", *b);
  ASSERT_EQ(fresh->model().num_outputs(), 2);
  maybe_load_checkpoint(*fresh, d.file("g.st"));
  EXPECT_EQ(fresh->model().num_outputs(), grown);
  EXPECT_GT(grown, 2);
  EXPECT_EQ(fresh->state_digest(), s->state_digest());
}

TEST(Checkpoint, MapLocationInEachForm) {
  auto b = synthetic_benchmark(16);
  auto s = make_test_strategy("replay", *b);
  train_range(*s, *b, 0, 1);
  TempDir d;
  save_checkpoint(*s, d.file("m.st"));
  const std::string want = s->state_digest();
  auto load_with = [&](const MapLocation& m) {
    auto fresh = make_test_strategy("replay", *b);
    maybe_load_checkpoint(*fresh, d.file("m.st"), m, {b});
    return fresh->state_digest();
  };
  EXPECT_EQ(load_with({}), want);
  EXPECT_EQ(load_with("cpu"), want);
  EXPECT_EQ(load_with(std::string("cpu")), want);
  EXPECT_EQ(load_with(c10::Device(c10::kCPU)), want);
  EXPECT_EQ(load_with(std::map<std::string, std::string>{{"cuda:0", "cpu"}}), want);
  int calls = 0;
  std::set<std::string> saved_devices;
  EXPECT_EQ(load_with(MapLocation::Function([&](const at::Tensor& t, const std::string& dev) {
              ++calls;
              saved_devices.insert(dev);
              return t;
            })),
            want);
  auto reader = format::SafetensorsReader::open_file(d.file("m.st"));
  EXPECT_EQ(calls, int(reader.tensors().size()));
  EXPECT_EQ(saved_devices, std::set<std::string>{"cpu"});
  EXPECT_THROW(MapLocation("not-a-device"), InvalidArgument);
}

// Rewrites a checkpoint as if it had been saved on CUDA: the tensors'
// recorded device and the strategy's device say cuda:0.
std::string fake_cuda_checkpoint(const std::string& src, const std::string& dst) {
  auto r = format::SafetensorsReader::open_file(src);
  std::vector<format::TensorView> views;
  nlohmann::json devices = nlohmann::json::object();
  for (const auto& t : r.tensors()) {
    views.push_back({t.name, t.dtype, t.shape, r.data(t), t.nbytes});
    if (t.name.rfind("strategy.model.", 0) == 0) devices[t.name] = "cuda:0";
  }
  auto meta = r.metadata();
  meta["continua.devices"] = devices.dump();
  auto state = nlohmann::json::parse(meta["continua.state"]);
  state["strategy.device"] = "cuda:0";
  meta["continua.state"] = state.dump();
  format::save_file(io::default_file_system(), dst, views, meta);
  return dst;
}

TEST(Checkpoint, CudaCheckpointWithoutMapLocationFailsClearly) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "this machine has CUDA";
  auto b = synthetic_benchmark(17);
  auto s = make_test_strategy("naive", *b);
  train_range(*s, *b, 0, 1);
  TempDir d;
  save_checkpoint(*s, d.file("cpu.st"));
  fake_cuda_checkpoint(d.file("cpu.st"), d.file("cuda.st"));
  auto fresh = make_test_strategy("naive", *b);
  const std::string before = fresh->state_digest();
  try {
    maybe_load_checkpoint(*fresh, d.file("cuda.st"));
    FAIL() << "loaded a CUDA checkpoint on a CPU-only build";
  } catch (const InvalidArgument& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("cuda:0"), std::string::npos) << m;
    EXPECT_NE(m.find("map_location"), std::string::npos) << m;
    EXPECT_NE(m.find(d.file("cuda.st")), std::string::npos) << m;
  }
  EXPECT_EQ(fresh->state_digest(), before);
  // With a mapping it loads, and the strategy's device is mapped too.
  // A callable that keeps every tensor where the loader put it (the CPU)
  // decides for the recorded cuda:0 too.
  std::set<std::string> seen;
  const MapLocation keep(MapLocation::Function([&](const at::Tensor& t, const std::string& dev) {
    seen.insert(dev);
    return t;
  }));
  for (MapLocation m : {MapLocation("cpu"), MapLocation(std::map<std::string, std::string>{{"cuda:0", "cpu"}}), keep}) {
    auto f2 = make_test_strategy("naive", *b);
    maybe_load_checkpoint(*f2, d.file("cuda.st"), m);
    EXPECT_EQ(f2->options().device_, "cpu");
    EXPECT_EQ(f2->state_digest(), s->state_digest());
  }
  EXPECT_EQ(seen, (std::set<std::string>{"cpu", "cuda:0"}));  // the function saw both
}

TEST(Checkpoint, UniqueObjectsAreReusedNotRebuilt) {
  auto b = synthetic_benchmark(18);
  auto s = make_test_strategy("replay", *b);
  train_range(*s, *b, 0, 2);
  TempDir d;
  save_checkpoint(*s, d.file("u.st"));

  auto with = make_test_strategy("replay", *b);
  LoadedCheckpoint ck = read_checkpoint(d.file("u.st"), {}, {b});
  EXPECT_EQ(ck.objects_built, 0u);
  load_state_tree(*with, ck);
  EXPECT_EQ(with->plugin<ReplayPlugin>()->benchmark().get(), b.get());
  // The benchmark's own datasets are handed out too: passing only them
  // reuses them when the benchmark is rebuilt.
  LoadedCheckpoint by_dataset = read_checkpoint(d.file("u.st"), {}, b->children());
  EXPECT_EQ(by_dataset.objects_built, 1u);  // the benchmark, not its dataset
  auto rebuilt_bench = std::dynamic_pointer_cast<const Benchmark>(
      std::get<ObjectRef>(*by_dataset.tree.find("strategy.plugins.replay.memory.benchmark")));
  ASSERT_TRUE(rebuilt_bench);
  EXPECT_NE(rebuilt_bench.get(), b.get());
  EXPECT_EQ(rebuilt_bench->train_dataset().get(), b->train_dataset().get());

  auto without = make_test_strategy("replay", *b);
  LoadedCheckpoint ck2 = read_checkpoint(d.file("u.st"));
  EXPECT_EQ(ck2.objects_built, 2u);  // the benchmark and its dataset
  load_state_tree(*without, ck2);
  EXPECT_NE(without->plugin<ReplayPlugin>()->benchmark().get(), b.get());
  EXPECT_EQ(without->state_digest(), with->state_digest());
}

TEST(Checkpoint, LoadIsAllOrNothing) {
  auto b = synthetic_benchmark(19);
  TempDir d;
  auto ewc = make_test_strategy("ewc", *b);
  train_range(*ewc, *b, 0, 2);
  save_checkpoint(*ewc, d.file("ewc.st"));
  // Another strategy's checkpoint.
  auto replay = make_test_strategy("replay", *b);
  train_range(*replay, *b, 0, 1);
  const std::string before = replay->state_digest();
  EXPECT_THROW(maybe_load_checkpoint(*replay, d.file("ewc.st"), {}, {b}), InvalidArgument);
  EXPECT_EQ(replay->state_digest(), before);
  // A model of another width: the model fails after the head would grow.
  torch::manual_seed(1);
  auto wide = std::make_shared<Strategy>(
      make_model(ModelOptions().input_size(b->input_size()).hidden(33)), StrategyOptions().seed(1));
  configure_strategy(*wide, "ewc");
  const std::string wide_before = wide->state_digest();
  try {
    maybe_load_checkpoint(*wide, d.file("ewc.st"), {}, {b});
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("strategy.model.features.0.weight"), std::string::npos) << e.what();
  }
  EXPECT_EQ(wide->state_digest(), wide_before);
  EXPECT_EQ(wide->model().num_outputs(), 2);
}

TEST(Checkpoint, DamagedFilesAreCorruptionAndChangeNothing) {
  auto b = synthetic_benchmark(20);
  auto s = make_test_strategy("replay", *b);
  train_range(*s, *b, 0, 2);
  TempDir d;
  save_checkpoint(*s, d.file("ok.st"));
  const std::string good = testing::read_file(d.file("ok.st"));
  auto reader = format::SafetensorsReader::open_file(d.file("ok.st"));
  std::vector<size_t> cuts = {0, 4, 8, 9, good.size() / 2, good.size() - 1};
  for (const auto& t : reader.tensors()) cuts.push_back(t.offset);
  auto victim = make_test_strategy("replay", *b);
  train_range(*victim, *b, 0, 1);
  const std::string before = victim->state_digest();
  auto expect_corrupt = [&](const std::string& bytes, const std::string& what) {
    std::ofstream(d.file("bad.st"), std::ios::binary | std::ios::trunc) << bytes;
    try {
      maybe_load_checkpoint(*victim, d.file("bad.st"), {}, {b});
      ADD_FAILURE() << what << ": loaded";
    } catch (const CorruptionError& e) {
      EXPECT_NE(std::string(e.what()).find(d.file("bad.st")), std::string::npos) << e.what();
    }
    EXPECT_EQ(victim->state_digest(), before) << what;
  };
  for (size_t cut : cuts) expect_corrupt(good.substr(0, cut), "truncated at " + std::to_string(cut));
  for (size_t pos : {size_t(0), size_t(20), size_t(200), size_t(reader.tensors()[0].offset),
                     good.size() - 1}) {
    std::string bad = good;
    bad[pos] ^= 0x10;
    expect_corrupt(bad, "flipped byte at " + std::to_string(pos));
  }
}

TEST(Checkpoint, ReplayMemoryIsStoredAsIndicesNotSamples) {
  if (!testing::have_fmnist()) GTEST_SKIP() << "Fashion-MNIST not installed";
  auto b = make_benchmark(BenchmarkOptions().seed(1).subset(6000));
  TempDir d;
  std::map<int64_t, uint64_t> sizes;
  for (int64_t mem : {200, 5000}) {
    torch::manual_seed(1);
    Strategy s(make_model(ModelOptions().input_size(784).hidden(64)),
               StrategyOptions().train_mb_size(256).seed(1));
    configure_strategy(s, "replay", {{"mem-size", mem}});
    s.train(b->train_stream()[0]);
    s.train(b->train_stream()[1]);
    EXPECT_EQ(s.plugin<ReplayPlugin>()->memory_size(), mem);
    save_checkpoint(s, d.file("r.st"));
    sizes[mem] = std::filesystem::file_size(d.file("r.st"));
  }
  std::cout << "checkpoint with memory 200: " << sizes[200] << " bytes, 5000: " << sizes[5000]
            << " bytes\n";
  EXPECT_LT(sizes[5000] - sizes[200], 100u * 1000u);
  // 5,000 Fashion-MNIST samples would be 3.9 MB as bytes.
}

TEST(Checkpoint, PythonSafetensorsReaderSeesTheModelWeights) {
  if (testing::run_command("/usr/bin/python3 -c 'import numpy'").status != 0) {
    GTEST_SKIP() << "/usr/bin/python3 with numpy is not available";
  }
  auto b = synthetic_benchmark(21);
  auto s = make_test_strategy("lwf", *b);
  train_range(*s, *b, 0, 2);
  TempDir d;
  save_checkpoint(*s, d.file("py.st"));
  auto r = testing::run_command("/usr/bin/python3 " CONTINUA_SOURCE_DIR "/tools/read_safetensors.py " +
                                d.file("py.st"));
  ASSERT_EQ(r.status, 0) << r.output;
  nlohmann::json sums = nlohmann::json::parse(r.output);
  int checked = 0;
  for (const auto& p : s->model().named_parameters()) {
    const std::string key = "strategy.model." + p.key();
    ASSERT_TRUE(sums.contains(key)) << key << " in " << r.output.substr(0, 500);
    const double want = p.value().to(torch::kDouble).sum().item<double>();
    EXPECT_NEAR(sums[key].get<double>(), want, 1e-6 * (1 + std::abs(want))) << key;
    ++checked;
  }
  EXPECT_GE(checked, 4);
}

}  // namespace
}  // namespace continua
