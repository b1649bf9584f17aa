// Continual learning on your own NumPy arrays: a class split of the arrays
// NumPy saved, trained with replay, checkpointed after each experience and
// resumed where the last run stopped.
//
//   own_npy DATA CKPT [--experiences N] [--stop-after K]
//
// DATA is a folder with train_x.npy, train_y.npy, test_x.npy, test_y.npy
// (or an .npz file holding those four arrays), as written by
//
//   np.save("DATA/train_x.npy", x.astype(np.float32))   # [N, ...] any shape
//   np.save("DATA/train_y.npy", y)                      # [N] integer labels 0..C-1
//
// The checkpoint stores the data set as its path, never its samples.
#include <continua/continua.h>
#include <torch/torch.h>

#include <cstdlib>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: own_npy DATA CKPT [--experiences N] [--stop-after K]\n";
    return 2;
  }
  const std::string data = argv[1], ckpt = argv[2];
  int64_t experiences = 3, stop_after = -1;
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--experiences") experiences = std::atoll(value.c_str());
    else if (flag == "--stop-after") stop_after = std::atoll(value.c_str());
    else { std::cerr << "own_npy: unknown option " << flag << "\n"; return 2; }
  }
  try {
    // "split": a class split of the data set FORMAT:PATH.
    auto bench = continua::make_benchmark(
        continua::BenchmarkOptions().name("split").dataset("npy:" + data).experiences(experiences).seed(1));
    std::cout << bench->train_dataset()->size() << " training samples of shape "
              << at::IntArrayRef(bench->sample_shape()) << ", " << bench->num_classes() << " classes, "
              << bench->train_stream().size() << " experiences\n";
    torch::manual_seed(1);  // the model's initial weights (a resumed run loads them instead)
    continua::Strategy strategy(
        continua::make_model(continua::ModelOptions().input_size(bench->input_size()).hidden(64)),
        continua::StrategyOptions().epochs(10).train_mb_size(16).seed(1).optimizer(
            continua::OptimizerOptions().lr(0.05)));
    strategy.add_plugin(std::make_shared<continua::ReplayPlugin>(continua::ReplayPlugin::Options{60}));

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
    const auto& m = s.evaluator().accuracy_matrix();
    std::cout << "accuracy on each experience after the last:";
    for (double a : m.back()) std::cout << " " << a;
    std::cout << "\naverage accuracy " << s.evaluator().average_accuracy() << "\n"
              << "state digest " << s.state_digest() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "own_npy: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
