// A user's own torch::nn::Module as the feature extractor, continua's
// growing head on top: trained with replay, checkpointed, resumed.
//
//   custom_model CKPT [--stop-after K]
#include <continua/continua.h>
#include <torch/torch.h>

#include <cstdlib>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: custom_model CKPT [--stop-after K]\n";
    return 2;
  }
  const std::string ckpt = argv[1];
  int64_t stop_after = -1;
  if (argc == 4 && std::string(argv[2]) == "--stop-after") stop_after = std::atoll(argv[3]);
  try {
    torch::manual_seed(1);
    auto bench = continua::make_benchmark(continua::BenchmarkOptions().name("split-synthetic").seed(1));
    // Any cloneable module whose forward maps a batch to [B, 24] features.
    torch::nn::Sequential extractor(torch::nn::Flatten(), torch::nn::Linear(bench->input_size(), 48),
                                    torch::nn::Tanh(), torch::nn::Linear(48, 24), torch::nn::ReLU());
    auto model = continua::make_model_with_features(extractor, /*feature_size=*/24);
    continua::Strategy strategy(model, continua::StrategyOptions().epochs(1).seed(1));
    continua::configure_strategy(strategy, "replay", {{"mem-size", 100}}, /*seed=*/1);

    auto [s, initial_exp] = continua::maybe_load_checkpoint(strategy, ckpt, "cpu", {bench});
    std::cout << "starting at experience " << initial_exp << "\n";
    int64_t done = 0;
    for (size_t i = initial_exp; i < bench->train_stream().size(); ++i) {
      if (stop_after >= 0 && done == stop_after) {
        std::cout << "stopping after " << done << " experience(s); run again to resume\n";
        return 0;
      }
      s.train(bench->train_stream()[i]);
      s.eval(bench->test_stream());
      continua::save_checkpoint(s, ckpt);
      ++done;
    }
    const at::Tensor x = bench->test_stream()[0].get(torch::arange(4)).x;
    std::cout << "features of 4 samples: " << s.model().features(x).sizes() << ", logits: "
              << s.model().forward(x).sizes() << "\n"
              << "average accuracy " << s.evaluator().average_accuracy() << "\n"
              << "state digest " << s.state_digest() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "custom_model: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
