// Online streams (issue 14): every registered strategy trains on chunks and
// resumes bit-exactly from a checkpoint taken between two chunks of one
// original experience, and the evaluator keeps one accuracy row per
// original experience.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "continua/checkpoint/checkpoint.h"
#include "continua/training/registry.h"
#include "test_util.h"

namespace continua {
namespace {

std::shared_ptr<Benchmark> online_benchmark(bool boundaries) {
  return make_benchmark(BenchmarkOptions()
                            .name("split-synthetic")
                            .seed(6)
                            .subset(30)
                            .experiences(3)
                            .online_chunk(10)
                            .online_boundaries(boundaries));
}

class OnlineResume : public ::testing::TestWithParam<std::string> {};

TEST_P(OnlineResume, BetweenTwoChunksOfAnExperienceIsBitExact) {
  for (bool boundaries : {false, true}) {
    auto b = online_benchmark(boundaries);
    ASSERT_EQ(b->train_stream().size(), 9u);
    auto train_all = [&](Strategy& s, size_t from) {
      for (size_t i = from; i < b->train_stream().size(); ++i) {
        s.train(b->train_stream()[i]);
        if (b->original_experiences_done(int64_t(i) + 1) > b->original_experiences_done(int64_t(i))) {
          s.eval(b->test_stream());
        }
      }
    };
    auto ref = testing::make_test_strategy(GetParam(), *b, 2);
    train_all(*ref, 0);
    // Stop after chunk 4: inside the second original experience.
    auto first = testing::make_test_strategy(GetParam(), *b, 2);
    for (size_t i = 0; i < 5; ++i) {
      first->train(b->train_stream()[i]);
      if (i == 2) first->eval(b->test_stream());
    }
    testing::TempDir d;
    save_checkpoint(*first, d.file("online.st"));
    auto second = testing::make_test_strategy(GetParam(), *b, 77);
    auto [s, next] = maybe_load_checkpoint(*second, d.file("online.st"), {}, {b});
    ASSERT_EQ(next, 5);
    train_all(s, size_t(next));
    EXPECT_EQ(s.state_digest(), ref->state_digest()) << GetParam() << " boundaries " << boundaries;
    EXPECT_EQ(s.evaluator().accuracy_matrix(), ref->evaluator().accuracy_matrix());
    EXPECT_EQ(ref->evaluator().accuracy_matrix().size(), 3u);  // a row per original experience
  }
}

INSTANTIATE_TEST_SUITE_P(Registered, OnlineResume, ::testing::ValuesIn(strategy_names()),
                         [](const auto& info) { return testing::test_name(info.param); });

}  // namespace
}  // namespace continua
