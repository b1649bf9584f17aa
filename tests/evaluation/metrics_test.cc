// Each metric of evaluation/metrics.h on an accuracy matrix whose values
// were computed by hand (the arithmetic is in the comments), so that a
// change of a formula fails its test.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>

#include "continua/errors.h"
#include "continua/evaluation/evaluator.h"
#include "continua/evaluation/metrics.h"
#include "test_util.h"

namespace continua {
namespace {

// Three experiences. Row i: after training experience i.
//           exp 0  exp 1  exp 2
//   after 0  0.90   0.20   0.10
//   after 1  0.60   0.80   0.30
//   after 2  0.50   0.70   0.95
const metrics::Matrix kA = {{0.90, 0.20, 0.10}, {0.60, 0.80, 0.30}, {0.50, 0.70, 0.95}};
// The initial (untrained) model on each experience.
const std::vector<double> kB = {0.40, 0.05, 0.25};

TEST(Metrics, AverageAccuracyIsTheMeanOfTheLastRowOverSeenExperiences) {
  // (0.50 + 0.70 + 0.95) / 3 = 2.15 / 3
  EXPECT_NEAR(metrics::average_accuracy(kA), 2.15 / 3, 1e-12);
  // After two experiences: (0.60 + 0.80) / 2, the unseen third ignored.
  EXPECT_NEAR(metrics::average_accuracy({kA[0], kA[1]}), 0.70, 1e-12);
  EXPECT_EQ(metrics::average_accuracy({}), 0.0);
}

TEST(Metrics, AverageIncrementalAccuracyAveragesEveryStep) {
  // step 0: 0.90; step 1: (0.60 + 0.80) / 2 = 0.70; step 2: 2.15 / 3
  // mean: (0.90 + 0.70 + 0.716666...) / 3 = 0.772222...
  EXPECT_NEAR(metrics::average_incremental_accuracy(kA), (0.90 + 0.70 + 2.15 / 3) / 3, 1e-12);
  EXPECT_NEAR(metrics::average_incremental_accuracy(kA), 0.7722222222222223, 1e-12);
}

TEST(Metrics, ForgettingPerExperienceAndItsMean) {
  // exp 0: 0.90 - 0.50 = 0.40; exp 1: 0.80 - 0.70 = 0.10; the last has none.
  const auto f = metrics::forgetting_per_experience(kA);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_NEAR(f[0], 0.40, 1e-12);
  EXPECT_NEAR(f[1], 0.10, 1e-12);
  EXPECT_NEAR(metrics::forgetting(kA), 0.25, 1e-12);
  EXPECT_EQ(metrics::forgetting({kA[0]}), 0.0);
  // A later improvement is negative forgetting.
  EXPECT_NEAR(metrics::forgetting({{0.5, 0.0}, {0.7, 0.9}}), -0.2, 1e-12);
}

TEST(Metrics, BackwardTransferOfLopezPazAndRanzato) {
  // (1/2) [(0.50 - 0.90) + (0.70 - 0.80)] = (1/2)(-0.40 - 0.10) = -0.25
  const auto bwt = metrics::backward_transfer(kA);
  ASSERT_TRUE(bwt.has_value());
  EXPECT_NEAR(*bwt, -0.25, 1e-12);
  // One experience: undefined.
  EXPECT_FALSE(metrics::backward_transfer({kA[0]}).has_value());
  // Not the negative of forgetting by accident of a symmetric matrix: an
  // asymmetric case, (0.3 - 0.1) = 0.2 on two experiences.
  EXPECT_NEAR(*metrics::backward_transfer({{0.1, 0.0}, {0.3, 0.6}}), 0.2, 1e-12);
}

TEST(Metrics, ForwardTransferAgainstTheInitialModel) {
  // (1/2) [(A[0][1] - b[1]) + (A[1][2] - b[2])] = (1/2)[(0.20 - 0.05) + (0.30 - 0.25)]
  //   = (1/2)(0.15 + 0.05) = 0.10
  const auto fwt = metrics::forward_transfer(kA, kB);
  ASSERT_TRUE(fwt.has_value());
  EXPECT_NEAR(*fwt, 0.10, 1e-12);
  EXPECT_FALSE(metrics::forward_transfer(kA, {}).has_value());  // no initial evaluation
  EXPECT_FALSE(metrics::forward_transfer({kA[0]}, kB).has_value());
}

TEST(Metrics, ClassAccuracyFromTheConfusionMatrix) {
  // 3 classes; rows: true class, columns: predicted.
  //   class 0: 8 right, 2 as class 1, 0 unanswered -> 8 / 10
  //   class 1: 1 as 0, 3 right, 1 as 2, 5 unanswered -> 3 / 10
  //   class 2: no samples -> absent
  const std::vector<int64_t> confusion = {8, 2, 0, 1, 3, 1, 0, 0, 0};
  const std::vector<int64_t> unanswered = {0, 5, 0};
  const auto acc = metrics::class_accuracy(confusion, unanswered, 3);
  ASSERT_EQ(acc.size(), 2u);
  EXPECT_NEAR(acc.at(0), 0.8, 1e-12);
  EXPECT_NEAR(acc.at(1), 0.3, 1e-12);
  EXPECT_TRUE(metrics::class_accuracy(confusion, unanswered, 2).empty());  // wrong size: nothing
}

EvalRecord test_eval(int64_t trained, std::vector<double> acc, std::vector<double> loss) {
  EvalRecord r;
  r.trained_experiences = trained;
  r.stream = "test";
  for (size_t j = 0; j < acc.size(); ++j) r.results.push_back({int64_t(j), 10, acc[j], loss[j], 0});
  return r;
}

// The evaluator feeds its history into the same formulas: the initial
// evaluation (before training) is forward transfer's reference, the loss
// matrix follows the test evaluations, and a reloaded evaluator agrees.
TEST(Metrics, EvaluatorDerivesTheMetricsFromItsHistory) {
  Evaluator ev;
  EXPECT_FALSE(ev.forward_transfer().has_value());
  ev.record_eval(test_eval(0, kB, {2.0, 2.1, 2.2}));
  EvalRecord e1 = test_eval(1, kA[0], {0.1, 3.0, 3.1});
  e1.classes = 2;
  e1.confusion = {9, 1, 4, 6};
  e1.unanswered = {0, 10};
  ev.record_eval(e1);
  ev.record_eval(test_eval(2, kA[1], {0.5, 0.2, 2.5}));
  ev.record_eval(test_eval(3, kA[2], {0.7, 0.4, 0.1}));
  EXPECT_EQ(ev.accuracy_matrix(), kA);
  ASSERT_TRUE(ev.initial_accuracy().has_value());
  EXPECT_EQ(*ev.initial_accuracy(), kB);
  EXPECT_NEAR(*ev.forward_transfer(), 0.10, 1e-12);
  EXPECT_NEAR(*ev.backward_transfer(), -0.25, 1e-12);
  const std::vector<std::vector<double>> loss = {{0.1, 3.0, 3.1}, {0.5, 0.2, 2.5}, {0.7, 0.4, 0.1}};
  EXPECT_EQ(ev.loss_matrix(), loss);
  // Per class after experience 1: class 0 9/10, class 1 6/20.
  const MetricsRecord m1 = [&] {
    Evaluator first;
    first.record_eval(test_eval(0, kB, {0, 0, 0}));
    first.record_eval(e1);
    return first.metrics();
  }();
  EXPECT_NEAR(m1.accuracy_per_class.at(0), 0.9, 1e-12);
  EXPECT_NEAR(m1.accuracy_per_class.at(1), 0.3, 1e-12);

  ev.costs(1).train_seconds = 2.5;
  ev.costs(0).checkpoint_bytes = 1234;
  StateTree tree;
  StateWriter w(tree, "evaluator");
  ev.save_state(w);
  Evaluator loaded;
  loaded.load_state(StateReader(tree, "evaluator"));
  EXPECT_EQ(loaded.accuracy_matrix(), kA);
  EXPECT_NEAR(*loaded.forward_transfer(), 0.10, 1e-12);
  ASSERT_NE(loaded.test_eval(1), nullptr);
  EXPECT_EQ(loaded.test_eval(1)->confusion, e1.confusion);
  EXPECT_EQ(loaded.test_eval(1)->unanswered, e1.unanswered);
  ASSERT_EQ(loaded.experience_costs().size(), 2u);  // sorted by experience
  EXPECT_EQ(loaded.experience_costs()[0].checkpoint_bytes, 1234);
  EXPECT_EQ(loaded.experience_costs()[1].train_seconds, 2.5);
}

TEST(Metrics, LoadRefusesAMalformedConfusionMatrix) {
  Evaluator ev;
  EvalRecord e = test_eval(1, {0.5}, {0.1});
  e.classes = 2;
  e.confusion = {1, 2, 3, 4};
  e.unanswered = {0, 0};
  ev.record_eval(e);
  StateTree tree;
  StateWriter w(tree, "evaluator");
  ev.save_state(w);
  tree.set("evaluator.confusion.0", at::zeros({2, 2}, at::kInt));  // lacks the unanswered column
  Evaluator loaded;
  try {
    loaded.load_state(StateReader(tree, "evaluator"));
    FAIL() << "loaded a 2x2 confusion matrix";
  } catch (const InvalidArgument& err) {
    EXPECT_NE(std::string(err.what()).find("evaluator.confusion.0"), std::string::npos) << err.what();
  }
  EXPECT_TRUE(loaded.accuracy_matrix().empty());  // nothing loaded
}

// Strategy::eval counts every sample once: in its confusion cell when the
// model answered, as unanswered otherwise; the diagonal is the correct
// answers, so per-class accuracy pooled by samples is the stream accuracy.
TEST(Metrics, EvaluationConfusionMatrixCountsEverySampleOnce) {
  auto bench = testing::synthetic_benchmark(1, 5);
  auto s = testing::make_test_strategy("naive", *bench, 1);
  auto before = s->eval(bench->test_stream());  // the untrained model: classes without a head are masked
  s->train(bench->train_stream()[0]);
  s->eval(bench->test_stream());
  for (int64_t trained : {0, 1}) {
    const EvalRecord* r = s->evaluator().test_eval(trained);
    ASSERT_NE(r, nullptr);
    ASSERT_GT(r->classes, 0);
    ASSERT_EQ(r->confusion.size(), size_t(r->classes * r->classes));
    int64_t counted = 0, diagonal = 0, samples = 0;
    double correct = 0;
    for (int64_t c = 0; c < r->classes; ++c) {
      counted += r->unanswered[size_t(c)];
      for (int64_t p = 0; p < r->classes; ++p) counted += r->confusion[size_t(c * r->classes + p)];
      diagonal += r->confusion[size_t(c * r->classes + c)];
    }
    for (const EvalResult& e : r->results) samples += e.samples, correct += e.accuracy * double(e.samples);
    EXPECT_EQ(counted, samples) << "after " << trained;
    EXPECT_EQ(double(diagonal), std::round(correct)) << "after " << trained;
  }
  (void)before;
}

}  // namespace
}  // namespace continua
