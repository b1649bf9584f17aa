// Training the reduced ResNet-18 (BatchNorm) and augmenting its batches:
// modes, running statistics and the augment generator across a resume.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "continua/checkpoint/checkpoint.h"
#include "continua/data/transforms.h"
#include "continua/errors.h"
#include "continua/models/model.h"
#include "continua/training/plugins.h"
#include "continua/training/registry.h"
#include "image_data.h"
#include "test_util.h"

namespace continua {
namespace {

using testing::TempDir;

// Random images [3, S, S] of 4 classes in 2 experiences of 2 classes,
// written as IDX files and read by split-fmnist (its normalisation applies).
// The folder lives as long as the test binary.
std::shared_ptr<Benchmark> image_benchmark(int64_t side = 32, int64_t per_class = 16) {
  static std::vector<std::unique_ptr<TempDir>> dirs;
  dirs.push_back(std::make_unique<TempDir>());
  testing::write_idx_benchmark(dirs.back()->path(), 4, per_class, per_class / 2 + 1, 3, side);
  return make_benchmark(
      BenchmarkOptions().name("split-fmnist").data_dir(dirs.back()->path()).experiences(2).class_order({0, 1, 2, 3}));
}

std::unique_ptr<Strategy> resnet_strategy(const std::string& name, const Benchmark& b,
                                          std::shared_ptr<const Transform> transform = nullptr, int64_t epochs = 1) {
  torch::manual_seed(1);
  const auto shape = b.sample_shape();
  auto model = make_model(
      ModelOptions().type("resnet18").input_size(b.input_size()).channels(shape[0]).image_size(shape[1]).nf(8));
  auto s = std::make_unique<Strategy>(model, StrategyOptions()
                                                 .train_mb_size(8)
                                                 .eval_mb_size(32)
                                                 .epochs(epochs)
                                                 .seed(1)
                                                 .optimizer(OptimizerOptions().lr(0.05).momentum(0.9))
                                                 .train_transform(std::move(transform)));
  configure_strategy(*s, name, {{"mem-size", 16}, {"mem-mb-size", 8}}, 1);
  return s;
}

void train_all(Strategy& s, const Benchmark& b, int64_t from = 0) {
  for (int64_t i = from; i < int64_t(b.train_stream().size()); ++i) {
    ASSERT_TRUE(s.train(b.train_stream()[size_t(i)]));
    s.eval(b.test_stream());
  }
}

// Experience 0, then experience 1 stopped after `stop_at` iterations, saved,
// loaded into a fresh strategy (`exclude` kept from it) and finished.
std::string resumed_digest(const std::string& name, const std::shared_ptr<Benchmark>& b,
                           std::shared_ptr<const Transform> transform, int64_t stop_at, const std::string& path,
                           std::vector<std::string> exclude = {}) {
  {
    auto part = resnet_strategy(name, *b, transform, 2);
    EXPECT_TRUE(part->train(b->train_stream()[0]));
    part->eval(b->test_stream());
    int calls = 0;
    part->set_iteration_callback([&](Strategy& s) {
      if (++calls == stop_at) s.request_stop();
    });
    EXPECT_FALSE(part->train(b->train_stream()[1]));
    save_checkpoint(*part, path, SaveOptions().exclude(exclude));
  }
  auto fresh = resnet_strategy(name, *b, transform, 2);
  auto [s, initial] = maybe_load_checkpoint(*fresh, path, {}, {b});
  EXPECT_EQ(initial, 1);
  EXPECT_TRUE(s.in_experience());
  train_all(s, *b, 1);
  return s.state_digest();
}

TEST(ResNetTraining, MidExperienceResumeIsBitExactWithBatchNorm) {
  auto b = image_benchmark();
  TempDir d;
  for (const std::string name : {"naive", "replay"}) {
    auto full = resnet_strategy(name, *b, nullptr, 2);
    train_all(*full, *b);
    const std::string want = full->state_digest();
    // Two epochs of 4 iterations: stops in the first and in the second.
    for (int64_t stop_at : {3, 6}) {
      EXPECT_EQ(resumed_digest(name, b, nullptr, stop_at, d.file("bn.st")), want) << name << " " << stop_at;
    }
    // The checkpoint holds the running statistics, and they matter: a resume
    // that keeps the fresh model's statistics of one BatchNorm ends elsewhere.
    const StateTree tree = read_checkpoint(d.file("bn.st"), {}, {b}).tree;
    EXPECT_TRUE(tree.contains("strategy.model.features.layer2.0.shortcut.1.running_var"));
    EXPECT_TRUE(tree.contains("strategy.model.features.bn1.num_batches_tracked"));
    EXPECT_NE(resumed_digest(name, b, nullptr, 3, d.file("bn2.st"), {"model.features.layer4.1.bn2.running_mean"}),
              want)
        << name;
  }
}

TEST(ResNetTraining, AugmentedResumeIsBitExactAndNeedsTheAugmentGenerator) {
  auto b = image_benchmark();
  TempDir d;
  const auto augment = parse_augment("crop,flip");
  auto full = resnet_strategy("replay", *b, augment, 2);
  train_all(*full, *b);
  const std::string want = full->state_digest();
  auto plain = resnet_strategy("replay", *b, nullptr, 2);
  train_all(*plain, *b);
  EXPECT_NE(plain->state_digest(), want) << "the augmentation changed nothing";
  for (int64_t stop_at : {2, 5}) {
    EXPECT_EQ(resumed_digest("replay", b, augment, stop_at, d.file("aug.st")), want) << stop_at;
  }
  // The same with the augment generator's restore skipped must differ.
  EXPECT_NE(resumed_digest("replay", b, augment, 2, d.file("aug2.st"), {"rng.augment"}), want);
}

TEST(ResNetTraining, AugmentGeneratorIsStateOnlyWithATransform) {
  auto b = image_benchmark(8, 4);
  auto plain = resnet_strategy("naive", *b);
  auto augmented = resnet_strategy("naive", *b, parse_augment("flip"));
  TempDir d;
  save_checkpoint(*plain, d.file("plain.st"));
  save_checkpoint(*augmented, d.file("aug.st"));
  EXPECT_FALSE(read_checkpoint(d.file("plain.st")).tree.contains("strategy.rng.augment"));
  EXPECT_TRUE(read_checkpoint(d.file("aug.st")).tree.contains("strategy.rng.augment"));
  // A checkpoint of the other kind is refused, naming the key, and changes nothing.
  auto check_refused = [&](Strategy& s, const std::string& file) {
    const std::string before = s.state_digest();
    try {
      maybe_load_checkpoint(s, d.file(file));
      ADD_FAILURE() << file;
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("rng.augment"), std::string::npos) << e.what();
    }
    EXPECT_EQ(s.state_digest(), before);
  };
  check_refused(*augmented, "plain.st");
  check_refused(*plain, "aug.st");
}

// A transform that records what it is given and what it returns.
class RecordingTransform : public Transform {
 public:
  at::Tensor operator()(const at::Tensor& x, at::Generator& g) const override {
    rows.push_back(x.size(0));
    last = flip_(x, g);
    return last;
  }
  std::string describe() const override { return "recording"; }
  mutable std::vector<int64_t> rows;
  mutable at::Tensor last;

 private:
  RandomHorizontalFlip flip_{0.5};
};

class ForwardInputCheck : public Plugin {
 public:
  explicit ForwardInputCheck(const RecordingTransform& t) : t_(t) {}
  std::string name() const override { return "forward_input_check"; }
  void after_forward(Strategy& s) override {
    ++forwards;
    if (!s.mb.x.equal(t_.last)) ++mismatches;
  }
  void after_eval_forward(Strategy&) override { ++eval_forwards; }
  int forwards = 0, mismatches = 0, eval_forwards = 0;

 private:
  const RecordingTransform& t_;
};

TEST(ResNetTraining, TheTransformSeesEveryTrainingRowIncludingMemoryRowsAndNoEvalRow) {
  auto b = image_benchmark(8, 16);
  auto t = std::make_shared<RecordingTransform>();
  auto s = resnet_strategy("replay", *b, t);
  auto check = std::make_shared<ForwardInputCheck>(*t);
  s->add_plugin(check);
  s->train(b->train_stream()[0]);
  ASSERT_EQ(t->rows, (std::vector<int64_t>{8, 8, 8, 8}));
  s->eval(b->test_stream());
  EXPECT_EQ(t->rows.size(), 4u) << "evaluation must not augment";
  EXPECT_GT(check->eval_forwards, 0);
  t->rows.clear();
  s->train(b->train_stream()[1]);
  // 8 rows of the experience and 8 replayed from the memory in each batch.
  EXPECT_EQ(t->rows, (std::vector<int64_t>{16, 16, 16, 16}));
  EXPECT_EQ(check->forwards, 8);
  EXPECT_EQ(check->mismatches, 0) << "the model must be given the transformed rows";
}

// Checks the model's mode wherever the loop runs it: every module in train
// mode during training iterations, in eval mode during evaluation.
class ModeCheck : public Plugin {
 public:
  std::string name() const override { return "mode_check"; }
  static bool all(Model& m, bool training) {
    for (const auto& module : m.modules()) {
      if (module->is_training() != training) return false;
    }
    return true;
  }
  void before_training_iteration(Strategy& s) override { bad += !all(s.model(), true); }
  void after_forward(Strategy& s) override { bad += !all(s.model(), true); }
  void after_update(Strategy& s) override { bad += !all(s.model(), true); }
  void after_eval_forward(Strategy& s) override { bad += !all(s.model(), false); }
  bool part_of_state() const override { return false; }
  int bad = 0;
};

TEST(ResNetTraining, EveryStrategyTrainsResNetAndLeavesBatchNormInTheLoopsMode) {
  auto b = image_benchmark(8, 8);
  for (const std::string& name : strategy_names()) {
    auto s = resnet_strategy(name, *b);
    auto check = std::make_shared<ModeCheck>();
    s->add_plugin(check);
    train_all(*s, *b);
    EXPECT_EQ(check->bad, 0) << name << ": a hook ran with the model in the wrong mode";
    EXPECT_TRUE(ModeCheck::all(s->model(), true)) << name << ": training mode not restored after eval";
    EXPECT_GT(s->clock().train_iterations, 0) << name;
  }
}

// Records the running statistics each experience starts with.
class StatisticsAtStart : public Plugin {
 public:
  std::string name() const override { return "statistics_at_start"; }
  bool part_of_state() const override { return false; }
  void before_training_exp(Strategy& s) override {
    tracked.push_back(s.model().named_buffers()["features.bn1.num_batches_tracked"].item<int64_t>());
    var.push_back(s.model().named_buffers()["features.layer4.1.bn2.running_var"].clone());
  }
  std::vector<int64_t> tracked;
  std::vector<at::Tensor> var;
};

TEST(ResNetTraining, GDumbRetrainsFromTheInitialRunningStatisticsToo) {
  auto b = image_benchmark(8, 8);
  auto s = resnet_strategy("gdumb", *b);
  auto probe = std::make_shared<StatisticsAtStart>();
  s->add_plugin(probe);  // after GDumb's reset
  train_all(*s, *b);
  ASSERT_EQ(probe->tracked, (std::vector<int64_t>{0, 0}));
  EXPECT_TRUE(probe->var[1].equal(probe->var[0]));
  EXPECT_TRUE(probe->var[0].equal(torch::ones_like(probe->var[0])));
  EXPECT_GT(s->model().named_buffers()["features.bn1.num_batches_tracked"].item<int64_t>(), 0);
}

TEST(ResNetTraining, MIRsVirtualStepLeavesTheRunningStatisticsAsTheyWere) {
  auto b = image_benchmark(8, 16);
  auto s = resnet_strategy("mir", *b);
  ASSERT_TRUE(s->train(b->train_stream()[0]));  // fills the memory
  const auto plugins = s->plugins();
  ASSERT_EQ(plugins.size(), 1u);
  std::vector<at::Tensor> before;
  for (const auto& t : s->model().buffers()) before.push_back(t.clone());
  s->model().train();
  MiniBatch batch = MiniBatch::from(b->train_stream()[0].get(torch::arange(8, at::kLong)));
  plugins[0]->adapt_batch(*s, batch);
  EXPECT_EQ(batch.size(), 16) << "MIR should have appended its memory rows";
  const auto after = s->model().buffers();
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) EXPECT_TRUE(after[i].equal(before[i])) << "buffer " << i;
}

}  // namespace
}  // namespace continua
