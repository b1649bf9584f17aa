// A load is all or nothing without a copy of the live state: every component
// stages (checks) its part before any changes (LoadTransaction), the commit
// copies into the live tensors, and the file's pages leave memory as they
// are copied (docs/reliability.md, docs/benchmarks.md).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "continua/checkpoint/checkpoint.h"
#include "continua/errors.h"
#include "continua/io/process_memory.h"
#include "continua/training/plugins.h"
#include "test_util.h"

namespace continua::testing {
namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif

void train_experiences(Strategy& s, const Benchmark& b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) ASSERT_TRUE(s.train(b.train_stream()[i]));
}

// Loads a tree that was tampered with into `s`; expects a refusal naming
// `key` and no change at all.
void expect_refused_unchanged(Strategy& s, const LoadedCheckpoint& ck, const std::string& key) {
  const std::string before = s.state_digest();
  try {
    load_state_tree(s, ck);
    ADD_FAILURE() << "loaded a checkpoint with a bad '" << key << "'";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
  }
  EXPECT_EQ(s.state_digest(), before) << key;
}

// The model stages fine, the optimizer refuses: nothing changes, although
// the model comes first.
TEST(StagedLoad, OptimizerThatDoesNotFitChangesNothingAfterAFittingModel) {
  auto b = synthetic_benchmark(31);
  TempDir d;
  auto a = make_test_strategy("naive", *b, 1);
  train_experiences(*a, *b, 2);
  save_checkpoint(*a, d.file("a.st"));
  LoadedCheckpoint ck = read_checkpoint(d.file("a.st"));
  const std::string key = "strategy.optimizer.state.features.0.weight.momentum_buffer";
  ASSERT_TRUE(ck.tree.contains(key));
  ck.tree.set(key, torch::zeros({3, 3}));
  auto victim = make_test_strategy("naive", *b, 2);
  train_experiences(*victim, *b, 1);
  expect_refused_unchanged(*victim, ck, key);
  // A head of another size in the optimizer: checked against the head the
  // model will have after its commit, not the live one.
  LoadedCheckpoint ck2 = read_checkpoint(d.file("a.st"));
  const std::string head = "strategy.optimizer.state.classifier.head.weight.momentum_buffer";
  const at::Tensor saved = std::get<at::Tensor>(*ck2.tree.find(head));
  ck2.tree.set(head, torch::zeros({saved.size(0) + 1, saved.size(1)}));
  expect_refused_unchanged(*victim, ck2, head);
  // The untouched checkpoint loads, growing the victim's head.
  load_state_tree(*victim, read_checkpoint(d.file("a.st")));
  EXPECT_EQ(victim->state_digest(), a->state_digest());
}

// The last components to stage (plugins) refuse: the model, optimizer and
// evaluator staged before them change nothing.
TEST(StagedLoad, PluginThatRefusesLastChangesNothing) {
  auto b = synthetic_benchmark(32);
  TempDir d;
  for (const std::string name : {"replay", "ewc", "lwf"}) {
    auto a = make_test_strategy(name, *b, 1);
    train_experiences(*a, *b, 2);
    save_checkpoint(*a, d.file(name + ".st"));
    LoadedCheckpoint ck = read_checkpoint(d.file(name + ".st"), {}, {b});
    std::string key;
    if (name == "replay") {
      key = "strategy.plugins.replay.memory.positions";
      ck.tree.set(key, torch::full({std::get<at::Tensor>(*ck.tree.find(key)).size(0)}, 1 << 30, torch::kInt));
    } else if (name == "ewc") {
      key = "strategy.plugins.ewc.0.importances.features.0.weight";
      ck.tree.set(key, torch::zeros({2, 2}));
    } else {
      key = "strategy.plugins.lwf.previous_model.features.0.weight";
      ck.tree.set(key, torch::zeros({2, 2}));
    }
    auto victim = make_test_strategy(name, *b, 2);
    train_experiences(*victim, *b, 1);
    SCOPED_TRACE(name);
    expect_refused_unchanged(*victim, ck, key);
  }
}

// A user plugin that does not stage: loaded by load_state before any staged
// component, backed up and restored when it throws half-way.
struct Counter : Plugin {
  int64_t n = 0;
  std::string label = "fresh";
  std::string name() const override { return "counter"; }
  void save_state(StateWriter& w) const override {
    w.write("n", n);
    w.write("label", label);
  }
  void load_state(const StateReader& r) override {
    label = r.get<std::string>("label");  // changed before the refusal below
    n = r.get<int64_t>("n");
    if (n == 13) r.fail("n", "unlucky");
  }
};

TEST(StagedLoad, UnstagedUserPluginIsRestoredWhenItThrowsHalfWay) {
  auto b = synthetic_benchmark(33);
  TempDir d;
  auto a = make_test_strategy("naive", *b, 1);
  auto ca = std::make_shared<Counter>();
  a->add_plugin(ca);
  train_experiences(*a, *b, 1);
  ca->n = 13;
  ca->label = "saved";
  save_checkpoint(*a, d.file("13.st"));
  ca->n = 5;
  save_checkpoint(*a, d.file("5.st"));

  auto victim = make_test_strategy("naive", *b, 2);
  auto cv = std::make_shared<Counter>();
  victim->add_plugin(cv);
  cv->n = 7;
  cv->label = "live";
  const std::string before = victim->state_digest();
  try {
    maybe_load_checkpoint(*victim, d.file("13.st"));
    ADD_FAILURE() << "loaded";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("strategy.plugins.counter.n"), std::string::npos) << e.what();
  }
  EXPECT_EQ(cv->n, 7);
  EXPECT_EQ(cv->label, "live");
  EXPECT_EQ(victim->state_digest(), before);
  maybe_load_checkpoint(*victim, d.file("5.st"));
  EXPECT_EQ(cv->n, 5);
  EXPECT_EQ(cv->label, "saved");
  EXPECT_EQ(victim->state_digest(), a->state_digest());
}

// Adam's buffers (step, exp_avg, exp_avg_sq) are staged and copied into the
// live ones like SGD's momentum: a resumed Adam run ends bit-identical to an
// uninterrupted one, and a buffer of the wrong shape changes nothing.
TEST(StagedLoad, AdamResumesBitExactAndRefusesAWrongBuffer) {
  auto b = synthetic_benchmark(35, 5);
  TempDir d;
  auto make = [&](uint64_t seed) {
    torch::manual_seed(seed);
    return std::make_shared<Strategy>(
        make_model(ModelOptions().input_size(b->input_size()).hidden(32)),
        StrategyOptions().train_mb_size(16).seed(seed).optimizer(OptimizerOptions().type("adam").lr(0.01)));
  };
  auto whole = make(1);
  train_experiences(*whole, *b, 3);
  auto first = make(1);
  train_experiences(*first, *b, 1);
  save_checkpoint(*first, d.file("adam.st"));
  // Into a strategy that has trained (its Adam buffers exist and are reused).
  auto resumed = make(2);
  train_experiences(*resumed, *b, 1);
  maybe_load_checkpoint(*resumed, d.file("adam.st"));
  EXPECT_EQ(resumed->state_digest(), first->state_digest());
  for (int64_t i = 1; i < 3; ++i) ASSERT_TRUE(resumed->train(b->train_stream()[i]));
  EXPECT_EQ(resumed->state_digest(), whole->state_digest());

  LoadedCheckpoint ck = read_checkpoint(d.file("adam.st"));
  const std::string key = "strategy.optimizer.state.features.0.weight.exp_avg_sq";
  ASSERT_TRUE(ck.tree.contains(key));
  ck.tree.set(key, torch::zeros({3, 3}));
  expect_refused_unchanged(*resumed, ck, key);
}

// Peak memory of a load into a live strategy: the state plus bounded
// buffers, not a second copy of the state (no backup, no staged clones, the
// file's pages dropped once copied). 2.5x the state before the staged load.
TEST(StagedLoad, LoadIntoALiveStrategyHoldsNoSecondCopyOfTheState) {
  if (kAsan) GTEST_SKIP() << "AddressSanitizer's allocator changes the resident set";
  auto b = synthetic_benchmark(34, 2);
  TempDir d;
  auto make = [&](uint64_t seed) {
    torch::manual_seed(seed);
    return std::make_shared<Strategy>(
        make_model(ModelOptions().input_size(b->input_size()).hidden(3600).layers(2)),
        StrategyOptions().train_mb_size(64).seed(seed).optimizer(OptimizerOptions().lr(0.01).momentum(0.9)));
  };
  auto a = make(1);
  train_experiences(*a, *b, 1);
  save_checkpoint(*a, d.file("big.st"));
  int64_t state_bytes = 0;
  const StateTree tree = strategy_state(*a);
  for (const auto& [k, v] : tree.entries()) {
    if (const auto* t = std::get_if<at::Tensor>(&v)) state_bytes += int64_t(t->nbytes());
  }
  ASSERT_GT(state_bytes, int64_t{100} << 20);
  auto live = make(2);
  train_experiences(*live, *b, 1);  // momentum buffers exist: the load reuses them
  // Twice: the first load reads a file the O_DIRECT save left out of the
  // page cache; the second finds it cached, so verification's read-ahead
  // runs its full window ahead of the checksum.
  for (const char* pass : {"first", "second (file cached)"}) {
    if (!io::reset_peak_resident()) GTEST_SKIP() << "/proc/self/clear_refs is not writable here";
    const int64_t before = io::resident_bytes();
    maybe_load_checkpoint(*live, d.file("big.st"));
    const int64_t rise = io::peak_resident_bytes() - before;
    EXPECT_EQ(live->state_digest(), a->state_digest());
    std::printf("%s load: state %.1f MiB, peak rise %.1f MiB\n", pass, state_bytes / 1048576.0,
                rise / 1048576.0);
    EXPECT_LT(rise, state_bytes / 2) << pass << " load, state " << state_bytes << " bytes";
  }
}

}  // namespace
}  // namespace continua::testing
