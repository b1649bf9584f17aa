#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "continua/errors.h"
#include "continua/training/plugins.h"
#include "continua/training/registry.h"
#include "continua/training/strategy.h"
#include "test_util.h"

namespace continua {
namespace {

std::shared_ptr<Benchmark> fmnist(int64_t subset = 1000, uint64_t seed = 0) {
  return make_benchmark(BenchmarkOptions().seed(seed).subset(subset));
}

std::unique_ptr<Strategy> fmnist_strategy(const std::string& name, const Benchmark& b,
                                          uint64_t seed = 0, int64_t mem_size = 500,
                                          double lr = 0.05, int64_t epochs = 1) {
  torch::manual_seed(seed);
  auto model = make_model(ModelOptions().input_size(784).hidden(128));
  auto s = std::make_unique<Strategy>(
      model, StrategyOptions().train_mb_size(32).epochs(epochs).seed(seed).optimizer(
                 OptimizerOptions().lr(lr).momentum(0.9)));
  configure_strategy(*s, name, {{"mem-size", mem_size}}, seed);
  return s;
}

std::vector<std::vector<double>> run_all(Strategy& s, const Benchmark& b) {
  for (const auto& e : b.train_stream()) {
    EXPECT_TRUE(s.train(e));
    s.eval(b.test_stream());
  }
  return s.evaluator().accuracy_matrix();
}

class FmnistTraining : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::have_fmnist()) GTEST_SKIP() << "Fashion-MNIST not installed";
    torch::set_num_threads(2);
  }
};

TEST_F(FmnistTraining, EveryStrategyLearnsEachExperience) {
  auto b = fmnist(1000);
  for (const char* name : {"naive", "replay", "ewc", "lwf", "cumulative"}) {
    // Two epochs: cumulative's newest pair of classes is outnumbered 4:1.
    auto s = fmnist_strategy(name, *b, 0, 500, 0.05, 2);
    auto m = run_all(*s, *b);
    ASSERT_EQ(m.size(), 5u) << name;
    // Over the 10-way output chance is 0.1; a learner that keeps predicting
    // old classes scores near 0 on a new experience. LwF's distillation
    // (alpha 1, T^2-scaled) resists new classes more with every experience in
    // class-incremental learning: its diagonal falls from 0.99 to 0.40 by
    // experience 3, and experience 4 scored 0.17 on one machine and 0.001 on
    // another (the same code; OpenBLAS's kernels differ), so only its first
    // three experiences have a bar.
    const bool lwf = std::string(name) == "lwf";
    const double each = 0.3, mean_bar = lwf ? 0.55 : 0.75;
    double mean = 0;
    for (size_t k = 0; k < 5; ++k) {
      if (!lwf || k < 3) EXPECT_GT(m[k][k], each) << name << " experience " << k;
      mean += m[k][k] / 5;
    }
    EXPECT_GT(mean, mean_bar) << name;
  }
}

TEST_F(FmnistTraining, ReplayForgetsLessThanNaive) {
  auto b = fmnist(2000);
  auto naive = fmnist_strategy("naive", *b);
  auto replay = fmnist_strategy("replay", *b, 0, 1000);  // same seed, lr, model
  run_all(*naive, *b);
  run_all(*replay, *b);
  const double fn = naive->evaluator().forgetting(), fr = replay->evaluator().forgetting();
  const double an = naive->evaluator().average_accuracy(), ar = replay->evaluator().average_accuracy();
  std::cout << "naive: forgetting " << fn << " avg acc " << an << "; replay: forgetting " << fr
            << " avg acc " << ar << "\n";
  // Naive forgets almost everything in class-incremental learning; a memory
  // of 1000 samples keeps a large part. A no-op replay equals naive.
  EXPECT_GT(fn, 0.8);
  EXPECT_LT(fr, fn - 0.2);
  EXPECT_GT(ar, an + 0.15);
}

TEST_F(FmnistTraining, StrategiesAreDeterministicInProcess) {
  auto b = fmnist(300);
  std::string first;
  for (int i = 0; i < 2; ++i) {
    auto s = fmnist_strategy("replay", *b, 5);
    run_all(*s, *b);
    if (i == 0) first = s->state_digest();
    else EXPECT_EQ(first, s->state_digest());
  }
  auto other = fmnist_strategy("replay", *b, 6);
  run_all(*other, *b);
  EXPECT_NE(first, other->state_digest());
}

TEST(Replay, MemoryHoldsIndicesWithinBudget) {
  auto b = testing::synthetic_benchmark(1);
  for (const char* policy : {"reservoir", "class-balanced"}) {
    ReplayPlugin::Options o;
    o.mem_size = 60;
    o.policy = policy;
    auto replay = std::make_shared<ReplayPlugin>(o);
    auto s = testing::make_test_strategy("naive", *b);
    s->add_plugin(replay);
    std::set<int64_t> seen_classes;
    for (int k = 0; k < 3; ++k) {
      s->train(b->train_stream()[k]);
      for (int64_t c : b->train_stream()[k].classes()) seen_classes.insert(c);
      EXPECT_EQ(replay->memory_size(), 60) << policy;
      at::Tensor labels = replay->memory_labels();
      std::set<int64_t> mem_classes;
      for (int64_t i = 0; i < labels.size(0); ++i) mem_classes.insert(labels[i].item<int64_t>());
      EXPECT_EQ(mem_classes, seen_classes) << policy;
      if (std::string(policy) == "class-balanced") {
        for (int64_t c : seen_classes) {
          EXPECT_EQ(labels.eq(c).sum().item<int64_t>(), 60 / int64_t(seen_classes.size())) << c;
        }
      }
      EXPECT_EQ(replay->memory_experiences().scalar_type(), torch::kLong);
      EXPECT_EQ(replay->benchmark().get(), b.get()) << "memory refers to the live benchmark";
    }
  }
}

TEST(Cumulative, TrainingSetIncludesEarlierExperiences) {
  auto b = testing::synthetic_benchmark(2);
  auto s = testing::make_test_strategy("cumulative", *b);
  s->train(b->train_stream()[0]);
  auto cumulative = s->plugin<CumulativePlugin>();
  ASSERT_TRUE(cumulative);
  TrainingSet set;
  set.segments.push_back({&b->train_stream()[1], torch::arange(b->train_stream()[1].size())});
  // adapt_train_set needs the strategy's current experience.
  cumulative->adapt_train_set(*s, set);
  EXPECT_EQ(set.size(), b->train_stream()[1].size() + b->train_stream()[0].size());
  // Batches mixing segments come back in the requested order.
  const int64_t n = set.size();
  at::Tensor idx = torch::tensor({n - 1, int64_t(0), n - 2, int64_t(1)}, torch::kLong);
  Batch mixed = set.get(idx);
  for (int i = 0; i < 4; ++i) {
    Batch one = set.get(idx.narrow(0, i, 1));
    EXPECT_TRUE(mixed.x[i].equal(one.x[0]));
    EXPECT_EQ(mixed.y[i].item<int64_t>(), one.y[0].item<int64_t>());
    EXPECT_EQ(mixed.t[i].item<int64_t>(), one.t[0].item<int64_t>());
  }
}

TEST(EWC, PenaltyPullsTowardsOldParameters) {
  // What EWC minimises: the importance-weighted distance to the parameters
  // after the first experience, sum F * (theta - theta*)^2.
  auto b = testing::synthetic_benchmark(3);
  double max_importance = 0;
  auto weighted_distance = [&](double lambda) {
    torch::manual_seed(1);
    auto model = make_model(ModelOptions().input_size(b->input_size()).hidden(32));
    Strategy s(model, StrategyOptions().train_mb_size(16).seed(1).optimizer(OptimizerOptions().lr(0.05)));
    s.add_plugin(std::make_shared<EWCPlugin>(EWCPlugin::Options{lambda, "separate", 1.0}));
    s.train(b->train_stream()[0]);
    const EWCPlugin::Snapshot first = s.plugin<EWCPlugin>()->snapshots().at(0);
    for (const auto& [name, imp] : first.importances) {
      max_importance = std::max(max_importance, imp.max().item<double>());
    }
    s.train(b->train_stream()[1]);
    EXPECT_EQ(s.plugin<EWCPlugin>()->snapshots().size(), 2u);
    double d = 0;
    for (const auto& p : model->named_parameters()) {
      const at::Tensor& old = first.params.at(p.key());
      at::Tensor cur = p.value().narrow(0, 0, old.size(0));
      d += (first.importances.at(p.key()) * (cur - old).pow(2)).sum().item<double>();
    }
    return d;
  };
  const double free = weighted_distance(0.0);
  ASSERT_GT(max_importance, 0.0);
  // The strongest pull plain SGD stays stable with: lr * 2 * lambda * F <= 0.5.
  const double lambda = 0.25 / (0.05 * max_importance);
  const double held = weighted_distance(lambda);
  EXPECT_LT(held, 0.5 * free) << "free " << free << " held " << held << " lambda " << lambda;
}

TEST(EWC, OnlineModeKeepsOneSnapshot) {
  auto b = testing::synthetic_benchmark(3);
  torch::manual_seed(1);
  auto model = make_model(ModelOptions().input_size(b->input_size()).hidden(16));
  Strategy s(model, StrategyOptions().seed(1));
  s.add_plugin(std::make_shared<EWCPlugin>(EWCPlugin::Options{10.0, "online", 0.5}));
  for (int k = 0; k < 3; ++k) s.train(b->train_stream()[k]);
  EXPECT_EQ(s.plugin<EWCPlugin>()->snapshots().size(), 1u);
  EXPECT_THROW(EWCPlugin(EWCPlugin::Options{1.0, "offline", 1.0}), InvalidArgument);
}

TEST(LwF, DistillationKeepsOldOutputsCloser) {
  // What LwF minimises: the divergence KL(q || p), at temperature T, between
  // the previous model's outputs and the current model's on the units of the
  // classes the previous model learned.
  auto b = testing::synthetic_benchmark(4);
  auto divergence = [&](double alpha) {
    torch::manual_seed(2);
    auto model = make_model(ModelOptions().input_size(b->input_size()).hidden(32));
    Strategy s(model, StrategyOptions().train_mb_size(16).seed(2).optimizer(OptimizerOptions().lr(0.05)));
    s.add_plugin(std::make_shared<LwFPlugin>(LwFPlugin::Options{alpha, 2.0}));
    s.train(b->train_stream()[0]);
    auto prev = s.plugin<LwFPlugin>()->previous_model();
    EXPECT_TRUE(prev);
    EXPECT_FALSE(prev->is_training());
    Batch x = b->train_stream()[1].get(torch::arange(100));
    at::Tensor units = torch::tensor(b->train_stream()[0].classes(), torch::kLong);
    at::Tensor q = torch::softmax(prev->forward(x.x).index_select(1, units) / 2.0, 1).detach();
    s.train(b->train_stream()[1]);
    torch::NoGradGuard ng;
    model->eval();
    at::Tensor log_p = torch::log_softmax(model->forward(x.x).index_select(1, units) / 2.0, 1);
    return (q * (q.log() - log_p)).sum(1).mean().item<double>();
  };
  // Deterministic (seeded): the divergence falls as the weight rises (at
  // 10 the step overshoots on this tiny problem).
  const double naive = divergence(0.0), lwf = divergence(1.0), strong = divergence(4.0);
  EXPECT_LT(lwf, 0.85 * naive) << "naive " << naive << " lwf " << lwf;
  EXPECT_LT(strong, 0.7 * naive) << "naive " << naive << " alpha 4 " << strong;
}

// The term LwF adds is exactly alpha * KL(q || p) at temperature T over the
// units of the classes the previous model learned (Avalanche's
// _distillation_loss, the paper's L_old up to a constant).
TEST(LwF, AddsAlphaTimesTheDivergenceOnThePreviousClasses) {
  auto b = testing::synthetic_benchmark(4);
  torch::manual_seed(3);
  Strategy s(make_model(ModelOptions().input_size(b->input_size()).hidden(16)),
             StrategyOptions().train_mb_size(16).seed(3));
  s.add_plugin(std::make_shared<LwFPlugin>(LwFPlugin::Options{0.7, 3.0}));
  ASSERT_TRUE(s.train(b->train_stream()[0]));
  s.model().adapt(b->train_stream()[1].classes());
  {
    torch::NoGradGuard ng;  // move away from the previous model
    for (auto& p : s.model().parameters()) p.add_(torch::randn_like(p) * 0.3);
  }
  s.mb = MiniBatch::from(b->train_stream()[1].get(torch::arange(8)));
  s.mb_output = s.model().forward(s.mb.x);
  s.loss = torch::zeros({});
  s.plugin<LwFPlugin>()->before_backward(s);
  at::Tensor units = torch::tensor(b->train_stream()[0].classes(), torch::kLong);
  at::Tensor q = torch::softmax(s.plugin<LwFPlugin>()->previous_model()->forward(s.mb.x).index_select(1, units) / 3.0, 1);
  at::Tensor log_p = torch::log_softmax(s.mb_output.index_select(1, units) / 3.0, 1);
  const double expected = 0.7 * (q * (q.log() - log_p)).sum(1).mean().item<double>();
  EXPECT_NEAR(s.loss.item<double>(), expected, 1e-6);
  EXPECT_GT(expected, 1e-4);
}

TEST(Cumulative, TrainsOnEverythingSeen) {
  auto b = testing::synthetic_benchmark(5);
  auto s = testing::make_test_strategy("cumulative", *b);
  s->train(b->train_stream()[0]);
  s->train(b->train_stream()[1]);
  const int64_t n = b->train_stream()[0].size() + b->train_stream()[1].size() + b->train_stream()[2].size();
  // One epoch of experience 2 runs ceil(n / 16) iterations.
  const int64_t before = s->clock().train_iterations;
  s->train(b->train_stream()[2]);
  EXPECT_EQ(s->clock().train_iterations - before, (n + 15) / 16);
}

TEST(Strategy, StopRequestStopsAtIterationBoundaryAndResumes) {
  auto b = testing::synthetic_benchmark(6);
  auto full = testing::make_test_strategy("replay", *b, 9, 2);
  for (int k = 0; k < 2; ++k) full->train(b->train_stream()[k]);
  auto part = testing::make_test_strategy("replay", *b, 9, 2);
  part->train(b->train_stream()[0]);
  int calls = 0;
  part->set_iteration_callback([&](Strategy& s) {
    if (++calls == 5) s.request_stop();
  });
  EXPECT_FALSE(part->train(b->train_stream()[1]));
  EXPECT_TRUE(part->in_experience());
  EXPECT_EQ(part->next_experience(), 1);
  part->clear_stop();
  EXPECT_TRUE(part->train(b->train_stream()[1]));
  EXPECT_EQ(part->state_digest(), full->state_digest());
}

TEST(Strategy, InvalidOptionsNameTheOption) {
  auto model = make_model(ModelOptions().input_size(4).hidden(4));
  auto expect_msg = [&](StrategyOptions o, const std::string& needle) {
    try {
      Strategy s(model, o);
      FAIL() << needle;
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_msg(StrategyOptions().train_mb_size(0), "--train-mb-size");
  expect_msg(StrategyOptions().epochs(-1), "--epochs");
  expect_msg(StrategyOptions().device("gpu7"), "--device");
  expect_msg(StrategyOptions().device("cuda:0"), "--device");
  expect_msg(StrategyOptions().optimizer(OptimizerOptions().lr(-1)), "--lr");
  expect_msg(StrategyOptions().optimizer(OptimizerOptions().type("rmsprop")), "--optimizer");
  EXPECT_THROW(configure_strategy(*testing::make_test_strategy("naive", *testing::synthetic_benchmark()), "no-such-method"),
               InvalidArgument);
}

}  // namespace
}  // namespace continua
