// The checkpointing loop of continua's README: train a stream of experiences,
// save after each, and resume where the last run stopped.
//
//   quickstart CKPT [--benchmark split-synthetic] [--subset N] [--stop-after K]
//
// Run it, stop it (Ctrl-C, a kill, or --stop-after K), run it again: it goes
// on from the checkpoint, and the final state digest is the one of a run that
// never stopped.
#include <continua/continua.h>
#include <torch/torch.h>

#include <cstdlib>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: quickstart CKPT [--benchmark NAME] [--subset N] [--stop-after K]\n";
    return 2;
  }
  const std::string ckpt = argv[1];
  std::string benchmark = "split-synthetic";
  int64_t subset = 0, stop_after = -1;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--benchmark") benchmark = value;
    else if (flag == "--subset") subset = std::atoll(value.c_str());
    else if (flag == "--stop-after") stop_after = std::atoll(value.c_str());
    else { std::cerr << "quickstart: unknown option " << flag << "\n"; return 2; }
  }
  try {
    torch::manual_seed(1);  // the model's initial weights (a resumed run loads them instead)
    auto bench = continua::make_benchmark(
        continua::BenchmarkOptions().name(benchmark).seed(1).subset(subset));
    continua::Strategy strategy(
        continua::make_model(continua::ModelOptions().input_size(bench->input_size()).hidden(64)),
        continua::StrategyOptions().epochs(1).seed(1));
    strategy.add_plugin(std::make_shared<continua::ReplayPlugin>(continua::ReplayPlugin::Options{100}));

    // Resumes from ckpt when it exists; `bench` is matched, not restored.
    auto [s, initial_exp] = continua::maybe_load_checkpoint(strategy, ckpt, /*map_location=*/"cpu",
                                                            /*unique_objects=*/{bench});
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
    std::cout << "average accuracy " << s.evaluator().average_accuracy() << "\n"
              << "state digest " << s.state_digest() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "quickstart: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
