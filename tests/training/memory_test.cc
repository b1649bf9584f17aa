// Memories: the policies' shares, herding, online reservoir with payload,
// the memory mini-batch of replay, and the state.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "continua/checkpoint/checkpoint.h"
#include "continua/errors.h"
#include "continua/training/memory.h"
#include "continua/training/plugins/replay.h"
#include "continua/training/strategy.h"
#include "test_util.h"

namespace continua {
namespace {

using testing::synthetic_benchmark;

std::map<int64_t, int64_t> counts(const std::map<int64_t, at::Tensor>& groups) {
  std::map<int64_t, int64_t> c;
  for (const auto& [k, v] : groups) c[k] = v.size(0);
  return c;
}

TEST(Memory, BalancedSharesGiveTheRemainderToTheFirst) {
  EXPECT_EQ(balanced_shares(100, 3), (std::vector<int64_t>{34, 33, 33}));
  EXPECT_EQ(balanced_shares(10, 5), (std::vector<int64_t>{2, 2, 2, 2, 2}));
  EXPECT_EQ(balanced_shares(3, 5), (std::vector<int64_t>{1, 1, 1, 0, 0}));
}

TEST(Memory, ExperienceBalancedKeepsAnEqualShareOfEachExperience) {
  auto b = synthetic_benchmark(1);
  Memory m(MemoryOptions().size(100).policy("experience-balanced").seed(2));
  std::set<std::pair<int64_t, int64_t>> first_share;
  for (int64_t e = 0; e < 3; ++e) {
    m.update(b->train_stream()[size_t(e)]);
    if (e == 0) {
      EXPECT_EQ(counts(m.slots_by_experience()), (std::map<int64_t, int64_t>{{0, 100}}));
      for (int64_t i = 0; i < m.size(); ++i) first_share.insert({0, m.positions()[i].item<int64_t>()});
    }
  }
  EXPECT_EQ(counts(m.slots_by_experience()), (std::map<int64_t, int64_t>{{0, 34}, {1, 33}, {2, 33}}));
  // Shrinking a share keeps samples it had: a uniform sample stays one.
  for (int64_t i = 0; i < m.size(); ++i) {
    if (m.experiences()[i].item<int64_t>() == 0) {
      EXPECT_TRUE(first_share.count({0, m.positions()[i].item<int64_t>()}));
    }
  }
  // Labels are the samples' own.
  for (int64_t i = 0; i < m.size(); ++i) {
    const Experience& e = b->train_stream()[size_t(m.experiences()[i].item<int64_t>())];
    EXPECT_EQ(m.labels()[i].item<int64_t>(), e.targets()[m.positions()[i].item<int64_t>()].item<int64_t>());
  }
}

TEST(Memory, ClassBalancedKeepsAnEqualShareOfEachClass) {
  auto b = synthetic_benchmark(1);
  Memory m(MemoryOptions().size(60).policy("class-balanced").seed(2));
  for (int64_t e = 0; e < 3; ++e) m.update(b->train_stream()[size_t(e)]);
  auto c = counts(m.slots_by_class());
  ASSERT_EQ(c.size(), 6u);
  for (const auto& [cls, n] : c) EXPECT_EQ(n, 10) << "class " << cls;
}

TEST(Memory, ReservoirIsAUniformSampleOfEverythingSeen) {
  auto b = synthetic_benchmark(1);
  // Over many seeds, each of 5 experiences holds about a fifth of the memory.
  std::map<int64_t, int64_t> total;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Memory m(MemoryOptions().size(50).policy("reservoir").seed(seed));
    for (const auto& e : b->train_stream()) m.update(e);
    ASSERT_EQ(m.size(), 50);
    for (const auto& [e, n] : counts(m.slots_by_experience())) total[e] += n;
  }
  for (const auto& [e, n] : total) EXPECT_NEAR(double(n) / 1000.0, 0.2, 0.05) << "experience " << e;
}

TEST(Memory, HerdingPicksTheSampleThatBringsTheMeanClosest) {
  torch::manual_seed(4);
  at::Tensor f = torch::randn({40, 6}, torch::kDouble);
  at::Tensor picks = herding_order(f, 12);
  ASSERT_EQ(picks.size(0), 12);
  at::Tensor mu = f.mean(0);
  std::vector<int64_t> chosen;
  at::Tensor sum = torch::zeros({6}, torch::kDouble);
  for (int64_t k = 0; k < 12; ++k) {
    // Brute force: the remaining sample minimising |mu - mean(chosen + it)|.
    double best = 1e300;
    int64_t arg = -1;
    for (int64_t i = 0; i < 40; ++i) {
      if (std::find(chosen.begin(), chosen.end(), i) != chosen.end()) continue;
      const double d = (mu - (sum + f[i]) / double(k + 1)).pow(2).sum().item<double>();
      if (d < best) best = d, arg = i;
    }
    EXPECT_EQ(picks[k].item<int64_t>(), arg) << "pick " << k;
    chosen.push_back(arg);
    sum += f[arg];
  }
}

TEST(Memory, HerdingSelectionKeepsTheFirstPicksOfEachClass) {
  auto b = synthetic_benchmark(1);
  const Experience& e = b->train_stream()[0];
  auto features = [](const Batch& batch) { return batch.x.reshape({batch.x.size(0), -1}); };
  Memory m(MemoryOptions().size(10).policy("class-balanced").selection("herding"));
  m.update(e, features);
  for (const auto& [cls, slots] : m.slots_by_class()) {
    at::Tensor cand = e.targets().eq(cls).nonzero().flatten();
    at::Tensor expected = cand.index_select(0, herding_order(features(e.get(cand)), 5));
    std::set<int64_t> want, got;
    for (int64_t i = 0; i < 5; ++i) want.insert(expected[i].item<int64_t>());
    for (int64_t i = 0; i < slots.size(0); ++i) got.insert(m.positions()[slots[i]].item<int64_t>());
    EXPECT_EQ(got, want) << "class " << cls;
  }
  EXPECT_THROW(m.update(b->train_stream()[1]), InvalidArgument);  // herding without features
}

TEST(Memory, ObserveIsReservoirSamplingWithPayloadRows) {
  auto b = synthetic_benchmark(1);
  const Experience& e = b->train_stream()[0];
  Memory m(MemoryOptions().size(8).policy("reservoir").seed(1));
  at::Tensor pos = at::arange(0, 5, at::kLong);
  at::Tensor logits = at::arange(10, at::kFloat).reshape({5, 2});
  at::Tensor where = m.observe(e, pos, {{"logits", logits}});
  EXPECT_TRUE(torch::equal(where, at::arange(5, at::kLong)));  // room for all
  where = m.observe(e, at::arange(5, 10, at::kLong), {{"logits", logits + 100}});
  EXPECT_EQ(m.size(), 8);
  EXPECT_EQ(m.seen(), 10);
  // Each slot's payload row is the one observed with the sample in it.
  for (int64_t slot = 0; slot < m.size(); ++slot) {
    const int64_t p = m.positions()[slot].item<int64_t>();
    const float expect = p < 5 ? float(2 * p) : float(2 * (p - 5) + 100);
    EXPECT_EQ(m.payload("logits")[slot][0].item<float>(), expect) << "slot " << slot;
  }
  MiniBatch rows = m.get(at::arange(8, at::kLong));
  Batch direct = e.get(m.positions());
  EXPECT_TRUE(torch::equal(rows.x, direct.x));
  EXPECT_TRUE(torch::equal(rows.y, direct.y));
  EXPECT_TRUE(torch::equal(rows.memory_slot, at::arange(8, at::kLong)));
  EXPECT_TRUE(torch::equal(rows.payload.at("logits"), m.payload("logits")));
}

TEST(Memory, StateRoundTripsAndRefusesReferencesOutsideTheBenchmark) {
  auto b = synthetic_benchmark(1);
  Memory m(MemoryOptions().size(30).seed(3));
  for (int64_t e = 0; e < 2; ++e) m.update(b->train_stream()[size_t(e)]);
  m.observe(b->train_stream()[2], at::arange(3, at::kLong), {{"score", at::ones({3}, at::kFloat)}});
  StateTree tree;
  StateWriter w(tree, "m");
  m.save_state(w);
  Memory copy(MemoryOptions().size(30).seed(99));
  copy.load_state(StateReader(tree, "m"));
  EXPECT_TRUE(torch::equal(copy.experiences(), m.experiences()));
  EXPECT_TRUE(torch::equal(copy.positions(), m.positions()));
  EXPECT_TRUE(torch::equal(copy.labels(), m.labels()));
  EXPECT_TRUE(torch::equal(copy.payload("score"), m.payload("score")));
  EXPECT_TRUE(torch::equal(copy.sample(10), m.sample(10)));  // same generator state
  // A position beyond its experience is refused, naming the key.
  StateTree bad = tree.clone();
  at::Tensor pos = std::get<at::Tensor>(*tree.find("m.positions")).clone();
  pos[0] = 1 << 20;
  bad.set("m.positions", pos);
  Memory victim(MemoryOptions().size(30));
  try {
    victim.load_state(StateReader(bad, "m"));
    ADD_FAILURE() << "accepted a position outside the benchmark";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("m.positions"), std::string::npos) << e.what();
  }
  EXPECT_EQ(victim.size(), 0);
  Memory other_size(MemoryOptions().size(31));
  EXPECT_THROW(other_size.load_state(StateReader(tree, "m")), InvalidArgument);
}

// Online chunks: experience-balanced shares per chunk when the boundaries
// are hidden (each chunk is an experience, as Avalanche's buffer sees it),
// per original experience when the benchmark shows them.
TEST(Memory, OnlineSharesGoByOriginalExperienceOnlyWhenBoundariesShow) {
  auto hidden = make_benchmark(BenchmarkOptions().name("split-synthetic").seed(1).subset(40).experiences(2).online_chunk(10));
  auto shown = make_benchmark(
      BenchmarkOptions().name("split-synthetic").seed(1).subset(40).experiences(2).online_chunk(10).online_boundaries(true));
  ASSERT_EQ(hidden->train_stream().size(), 8u);
  Memory h(MemoryOptions().size(16).seed(2)), v(MemoryOptions().size(16).seed(2));
  for (const auto& e : hidden->train_stream()) h.update(e);
  for (const auto& e : shown->train_stream()) v.update(e);
  // Hidden: 8 chunks, 2 slots each.
  ASSERT_EQ(h.slots_by_experience().size(), 8u);
  for (const auto& [e, slots] : h.slots_by_experience()) EXPECT_EQ(slots.numel(), 2) << e;
  EXPECT_EQ(h.slots_by_original_experience().size(), 8u);
  // Shown: 2 original experiences, 8 slots each, spread over their chunks.
  const auto by_origin = v.slots_by_original_experience();
  ASSERT_EQ(by_origin.size(), 2u);
  for (const auto& [e, slots] : by_origin) EXPECT_EQ(slots.numel(), 8) << e;
  EXPECT_GT(v.slots_by_experience().size(), 2u);
}

// A-GEM's reference batch: the same number of distinct slots from each
// experience in the memory, uniform within each.
TEST(Memory, SamplePerExperienceTakesEqualDistinctSharesOfEachExperience) {
  auto b = make_benchmark(BenchmarkOptions().name("split-synthetic").seed(1));
  Memory m(MemoryOptions().size(100).per_experience(-1).seed(4));
  for (size_t e = 0; e < 4; ++e) m.update(b->train_stream()[e]);
  ASSERT_EQ(m.size(), 80);
  std::map<int64_t, std::set<int64_t>> hits;
  for (int round = 0; round < 50; ++round) {
    const at::Tensor slots = m.sample_per_experience(64);
    ASSERT_EQ(slots.numel(), 64);
    std::set<int64_t> distinct;
    std::map<int64_t, int> per;
    for (int64_t i = 0; i < 64; ++i) {
      const int64_t slot = slots[i].item<int64_t>();
      EXPECT_TRUE(distinct.insert(slot).second);
      ++per[m.experiences()[slot].item<int64_t>()];
      hits[m.experiences()[slot].item<int64_t>()].insert(slot);
    }
    for (int64_t e = 0; e < 4; ++e) EXPECT_EQ(per[e], 16) << e;
  }
  // Over the rounds every slot of every experience comes up: not a fixed subset.
  for (const auto& [e, slots] : hits) EXPECT_EQ(slots.size(), 20u) << e;
  EXPECT_EQ(m.sample_per_experience(3).numel(), 4);  // at least one of each
}

// A memory of 5,000 costs its indices in the checkpoint, not its samples.
TEST(Memory, CheckpointGrowsOnlyByIndicesAndPayload) {
  auto b = make_benchmark(BenchmarkOptions().name("split-synthetic").seed(1));
  Memory m(MemoryOptions().size(5000).policy("reservoir"));
  for (const auto& e : b->train_stream()) m.update(e);
  StateTree tree;
  StateWriter w(tree);
  m.save_state(w);
  int64_t bytes = 0;
  for (const auto& [k, v] : tree.entries())
    if (const auto* t = std::get_if<at::Tensor>(&v)) bytes += int64_t(t->nbytes());
  // 4 + 4 + 4 bytes a sample (experience, position, priority) plus the
  // generator's state; the samples themselves (32 floats each) are not there.
  EXPECT_LT(bytes, m.size() * 12 + 8000);
  EXPECT_GT(m.size(), 1000);
}

// Replay's iteration: a memory mini-batch beside the experience's, the rows
// marked with their memory slots.
class BatchProbe : public Plugin {
 public:
  std::string name() const override { return "probe"; }
  bool part_of_state() const override { return false; }
  void before_training_iteration(Strategy& s) override {
    sizes.push_back(s.mb.size());
    from_memory.push_back(s.mb.from_memory().sum().item<int64_t>());
    if (from_memory.back() > 0) {
      // Memory rows come after the experience's rows, each with its slot.
      const int64_t n = s.mb.new_samples();
      EXPECT_TRUE(s.mb.memory_slot.narrow(0, 0, n).lt(0).all().item<bool>());
      EXPECT_TRUE(s.mb.memory_slot.narrow(0, n, s.mb.size() - n).ge(0).all().item<bool>());
    }
  }
  std::vector<int64_t> sizes, from_memory;
};

TEST(Replay, EveryIterationTrainsOnAMemoryMiniBatchBesideTheNewOne) {
  auto b = synthetic_benchmark(1);
  torch::manual_seed(1);
  Strategy s(make_model(ModelOptions().input_size(b->input_size()).hidden(16)),
             StrategyOptions().train_mb_size(20).seed(1));
  auto probe = std::make_shared<BatchProbe>();
  s.add_plugin(std::make_shared<ReplayPlugin>(ReplayPlugin::Options{50, "experience-balanced", 1, 12}));
  s.add_plugin(probe);
  ASSERT_TRUE(s.train(b->train_stream()[0]));
  for (int64_t m : probe->from_memory) EXPECT_EQ(m, 0);  // nothing in memory yet
  probe->sizes.clear();
  probe->from_memory.clear();
  ASSERT_TRUE(s.train(b->train_stream()[1]));
  ASSERT_FALSE(probe->sizes.empty());
  for (size_t i = 0; i < probe->sizes.size(); ++i) {
    EXPECT_EQ(probe->from_memory[i], 12) << "iteration " << i;
  }
  EXPECT_EQ(probe->sizes[0], 32);
  EXPECT_EQ(s.plugin<ReplayPlugin>()->memory_size(), 50);
}

// The CLI's memory size: memory_footprints finds every memory in a state
// tree, with its samples and the bytes of its references and payload.
TEST(Memory, FootprintsFindEveryMemoryInTheState) {
  auto b = synthetic_benchmark(1);
  for (const std::string name : {"replay", "der", "bic", "naive"}) {
    auto s = testing::make_test_strategy(name, *b, 1);
    ASSERT_TRUE(s->train(b->train_stream()[0]));
    StateTree tree;
    StateWriter w(tree, "strategy");
    s->save_state(w);
    const auto found = memory_footprints(tree);
    int64_t samples = 0, bytes = 0;
    int64_t expected_bytes = 0;
    for (const auto& f : found) {
      samples += f.samples;
      bytes += f.bytes;
      // references (int32 experience, int32 position), float32 priority, and payload rows
      const auto& refs = std::get<at::Tensor>(*tree.find(f.key + ".experiences"));
      expected_bytes += refs.numel() * (4 + 4 + 4);
      for (const auto& [key, value] : tree.entries()) {
        if (key.rfind(f.key + ".payload.", 0) == 0) expected_bytes += int64_t(std::get<at::Tensor>(value).nbytes());
      }
    }
    if (name == "naive") {
      EXPECT_TRUE(found.empty());
      continue;
    }
    EXPECT_EQ(found.size(), name == "bic" ? 2u : 1u) << name;  // BiC: training and validation memories
    EXPECT_GT(samples, 0) << name;
    EXPECT_EQ(bytes, expected_bytes) << name;
  }
}

}  // namespace
}  // namespace continua
