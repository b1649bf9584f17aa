// tools/to_state_dict.py: a checkpoint's model, converted to a PyTorch
// state_dict, loads into the equivalent torch.nn module (Debian's
// python3-torch) and predicts what continua predicts.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <fstream>

#include "continua/checkpoint/checkpoint.h"
#include "test_util.h"

namespace continua {
namespace {

using testing::run_command;
using testing::TempDir;

TEST(PythonInterop, ConvertedStateDictGivesContinuasPredictions) {
  if (run_command("/usr/bin/python3 -c 'import torch'").status != 0) {
    GTEST_SKIP() << "python3-torch is not installed (scripts/install.sh installs it)";
  }
  TempDir d;
  auto bench = testing::synthetic_benchmark(3);
  auto s = testing::make_test_strategy("replay", *bench, 3);
  for (int i = 0; i < 2; ++i) s->train(bench->train_stream()[i]);  // the head grows with the classes
  save_checkpoint(*s, d.file("c.safetensors"));

  // continua's logits on a few test samples of two experiences.
  const auto& e0 = bench->test_stream()[0];
  const auto& e1 = bench->test_stream()[1];
  at::Tensor x = torch::cat({e0.get(torch::arange(5)).x, e1.get(torch::arange(5)).x});
  s->model().eval();
  at::Tensor logits;
  {
    torch::NoGradGuard no_grad;
    logits = s->model().forward(x);
  }
  ASSERT_GE(logits.size(1), 4);  // the head grew past the first classes
  auto to_list = [](const at::Tensor& t) {
    nlohmann::json rows = nlohmann::json::array();
    auto c = t.reshape({t.size(0), -1}).contiguous();
    for (int64_t i = 0; i < c.size(0); ++i) {
      nlohmann::json row = nlohmann::json::array();
      for (int64_t j = 0; j < c.size(1); ++j) row.push_back(double(c[i][j].item<float>()));
      rows.push_back(row);
    }
    return rows;
  };
  {
    std::ofstream f(d.file("expected.json"));
    f << nlohmann::json{{"x", to_list(x)}, {"logits", to_list(logits)}}.dump();
  }

  auto r = run_command(std::string("/usr/bin/python3 ") + CONTINUA_SOURCE_DIR + "/tools/to_state_dict.py " +
                       d.file("c.safetensors") + " " + d.file("model.pt"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("classifier.head.weight\tfloat32\t[" + std::to_string(logits.size(1)) + ", 32]"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("model options:"), std::string::npos) << r.output;
  r = run_command(std::string("/usr/bin/python3 ") + CONTINUA_SOURCE_DIR + "/tests/cli/python_interop_check.py " +
                  d.file("model.pt") + " " + d.file("expected.json"));
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("same_predictions True"), std::string::npos) << r.output;

  // Teeth: other weights (a differently seeded model) do not pass the check.
  auto other = testing::make_test_strategy("replay", *bench, 4);
  for (int i = 0; i < 2; ++i) other->train(bench->train_stream()[i]);
  save_checkpoint(*other, d.file("other.safetensors"));
  r = run_command(std::string("/usr/bin/python3 ") + CONTINUA_SOURCE_DIR + "/tools/to_state_dict.py " +
                  d.file("other.safetensors") + " " + d.file("other.pt"));
  ASSERT_EQ(r.status, 0) << r.output;
  r = run_command(std::string("/usr/bin/python3 ") + CONTINUA_SOURCE_DIR + "/tests/cli/python_interop_check.py " +
                  d.file("other.pt") + " " + d.file("expected.json"));
  EXPECT_NE(r.status, 0) << r.output;

  // Not a checkpoint: a message naming the file, no traceback.
  run_command("echo garbage > " + d.file("bad.safetensors"));
  r = run_command(std::string("/usr/bin/python3 ") + CONTINUA_SOURCE_DIR + "/tools/to_state_dict.py " +
                  d.file("bad.safetensors") + " " + d.file("bad.pt"));
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("bad.safetensors"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("Traceback"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace continua
