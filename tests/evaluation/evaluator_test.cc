#include <gtest/gtest.h>

#include <algorithm>

#include "continua/evaluation/evaluator.h"
#include "test_util.h"

namespace continua {
namespace {

EvalRecord test_eval(int64_t trained, std::vector<double> acc) {
  EvalRecord r;
  r.trained_experiences = trained;
  r.stream = "test";
  for (size_t j = 0; j < acc.size(); ++j) r.results.push_back({int64_t(j), 100, acc[j], 0.5});
  return r;
}

TEST(Evaluator, AccuracyMatrixAverageAndForgetting) {
  Evaluator ev;
  ev.record_eval(test_eval(1, {0.9, 0.0, 0.0}));
  ev.record_eval(test_eval(2, {0.5, 0.8, 0.0}));
  ev.record_eval(test_eval(3, {0.3, 0.6, 0.95}));
  ASSERT_EQ(ev.accuracy_matrix().size(), 3u);
  EXPECT_DOUBLE_EQ(ev.average_accuracy(), (0.3 + 0.6 + 0.95) / 3);
  // mean over j < last of A[j][j] - A[last][j]
  EXPECT_DOUBLE_EQ(ev.forgetting(), ((0.9 - 0.3) + (0.8 - 0.6)) / 2);
  // An evaluation of another stream does not enter the matrix.
  EvalRecord train = test_eval(3, {1, 1, 1});
  train.stream = "train";
  ev.record_eval(train);
  EXPECT_EQ(ev.accuracy_matrix().size(), 3u);
  EXPECT_DOUBLE_EQ(ev.accuracy_matrix()[2][0], 0.3);
}

TEST(Evaluator, StateRoundTripAndLoggerTruncatesBackOnLoad) {
  testing::TempDir d;
  const std::string csv = d.file("m.csv");
  auto logger = std::make_shared<CsvLogger>(csv);
  Evaluator ev;
  ev.add_logger(logger);
  ev.record_epoch({0, 0, 10, 100, 0.7, 0.8});
  ev.record_eval(test_eval(1, {0.9, 0.1}));
  StateTree saved;
  StateWriter w(saved, "evaluator");
  ev.save_state(w);
  const std::string at_save = testing::read_file(csv);
  // Rows written after the save (a run killed before its next checkpoint).
  ev.record_eval(test_eval(2, {0.4, 0.7}));
  EXPECT_GT(testing::read_file(csv).size(), at_save.size());

  auto logger2 = std::make_shared<CsvLogger>(csv);
  Evaluator resumed;
  resumed.add_logger(logger2);
  resumed.load_state(StateReader(saved, "evaluator"));
  const std::vector<std::vector<double>> want = {{0.9, 0.1}};
  EXPECT_EQ(resumed.accuracy_matrix(), want);
  ASSERT_EQ(resumed.epoch_history().size(), 1u);
  EXPECT_DOUBLE_EQ(resumed.epoch_history()[0].loss, 0.7);
  resumed.record_eval(test_eval(2, {0.4, 0.7}));
  // The file is the saved prefix plus the rows written again: no duplicate.
  const std::string after = testing::read_file(csv);
  EXPECT_EQ(after.substr(0, at_save.size()), at_save);
  EXPECT_EQ(std::count(after.begin(), after.end(), '\n'), 1 + 1 + 2 + 2);
}

}  // namespace
}  // namespace continua
