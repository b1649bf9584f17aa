// Replay with datasets that are referenced, not copied: a checkpoint stores
// the benchmark as its constructor arguments and the replay buffer as
// indices into it; on resume, `unique_objects` hands the live benchmark to
// the loader, which reuses it (and its datasets) instead of building copies.
//
//   replay_unique_objects CKPT [--benchmark split-synthetic|split-fmnist] [--subset N]
//                              [--stop-after K]
//
// First start: trains (stopping after K experiences with --stop-after K) and
// saves CKPT after each experience. A later start finds CKPT, rebuilds the
// benchmark as a new process would, loads with unique_objects = {benchmark},
// prints and checks that the replay buffer refers to the live benchmark and
// datasets (pointer identity) and that the file holds no sample bytes, then
// trains on. The last line, `state digest ...`, is the one of a run that
// never stopped. Exit status 1 if a check fails.
#include <continua/continua.h>
#include <continua/format/safetensors.h>

#include <ATen/Context.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

namespace {

// The bytes of a dataset's samples held in memory (inputs and targets).
int64_t sample_bytes(const continua::Dataset& d) {
  const auto* t = dynamic_cast<const continua::TensorDataset*>(&d);
  if (!t) return 0;
  return int64_t(t->inputs().nbytes() + t->targets().nbytes());
}

bool check(bool ok, const std::string& what) {
  std::cout << (ok ? "  ok: " : "  FAILED: ") << what << "\n";
  return ok;
}

// Prints what the checkpoint holds and checks it: the benchmark and its
// dataset as constructor arguments only, the memory as a few bytes per sample.
bool check_loaded(const std::string& ckpt, const continua::Benchmark& bench,
                  const continua::ReplayPlugin& replay) {
  bool ok = true;
  std::cout << "loaded replay memory: " << replay.memory_size() << " samples\n";
  std::cout << "  replay benchmark " << replay.benchmark().get() << ", live benchmark " << &bench
            << "\n";
  ok &= check(replay.benchmark().get() == &bench,
              "the replay buffer refers to the live benchmark object (unique_objects reused it)");
  ok &= check(replay.benchmark() && replay.benchmark()->train_dataset() == bench.train_dataset(),
              "and to the live training dataset (" +
                  std::to_string(sample_bytes(*bench.train_dataset())) + " bytes of samples, held once)");

  // What the file holds, tensor by tensor (any safetensors reader sees the same).
  auto reader = continua::format::SafetensorsReader::open_file(ckpt);
  uint64_t replay_bytes = 0;
  for (const auto& t : reader.tensors()) {
    if (t.name.rfind("strategy.plugins.replay.", 0) == 0) replay_bytes += t.nbytes;
  }
  const int64_t per_sample = bench.train_dataset()->size() > 0
                                 ? sample_bytes(*bench.train_dataset()) / bench.train_dataset()->size()
                                 : 0;
  const int64_t memory_sample_bytes = replay.memory_size() * per_sample;
  int64_t dataset_bytes = sample_bytes(*bench.train_dataset());
  if (bench.test_dataset() != bench.train_dataset()) dataset_bytes += sample_bytes(*bench.test_dataset());
  std::cout << "checkpoint " << ckpt << ": " << reader.file_size() << " bytes, "
            << reader.tensors().size() << " tensors\n"
            << "  replay memory in the file: " << replay_bytes << " bytes of indices (its samples: "
            << memory_sample_bytes << " bytes)\n"
            << "  datasets: " << dataset_bytes << " bytes of samples, stored as "
            << reader.metadata().at("continua.objects").size() << " bytes of constructor arguments\n";
  ok &= check(replay_bytes * 4 < uint64_t(memory_sample_bytes),
              "the replay memory is stored as indices, not as samples");
  ok &= check(reader.file_size() < uint64_t(dataset_bytes),
              "the checkpoint is smaller than the datasets' samples: it holds none of them");
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: replay_unique_objects CKPT [--benchmark NAME] [--subset N] [--stop-after K]\n";
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
    else { std::cerr << "replay_unique_objects: unknown option " << flag << "\n"; return 2; }
  }
  try {
    // What every start does: build the benchmark (this loads its datasets),
    // the model and the strategy from the configuration.
    at::manual_seed(3);
    auto bench = continua::make_benchmark(
        continua::BenchmarkOptions().name(benchmark).seed(3).subset(subset));
    continua::Strategy strategy(
        continua::make_model(continua::ModelOptions().input_size(bench->input_size()).hidden(64)),
        continua::StrategyOptions().epochs(1).seed(3));
    auto replay = std::make_shared<continua::ReplayPlugin>(
        continua::ReplayPlugin::Options{/*mem_size=*/300, /*policy=*/"class-balanced", /*seed=*/3});
    strategy.add_plugin(replay);

    const bool resuming = std::filesystem::exists(ckpt);
    // The live benchmark goes in as a unique object: the checkpoint names it
    // by {"type": "split-synthetic", "args": {...}}, the loader finds the
    // live object with that description and reuses it, and its children
    // (the datasets) too. Without it the loader would build a second copy.
    auto [s, initial_exp] = continua::maybe_load_checkpoint(strategy, ckpt, /*map_location=*/"cpu",
                                                            /*unique_objects=*/{bench});
    std::cout << "starting at experience " << initial_exp << "\n";
    if (resuming && !check_loaded(ckpt, *bench, *replay)) {
      std::cerr << "replay_unique_objects: a check failed\n";
      return 1;
    }
    if (resuming) {
      // For contrast: the same file read without unique objects builds its own
      // benchmark and dataset (2 objects), with only the datasets just the
      // benchmark (1 object, over the live dataset).
      const auto alone = continua::read_checkpoint(ckpt, "cpu");
      const auto datasets_only = continua::read_checkpoint(ckpt, "cpu", bench->children());
      const auto with_bench = continua::read_checkpoint(ckpt, "cpu", {bench});
      std::cout << "objects built on load: " << alone.objects_built << " without unique_objects, "
                << datasets_only.objects_built << " given the datasets, " << with_bench.objects_built
                << " given the benchmark\n";
      if (with_bench.objects_built != 0 || alone.objects_built == 0) {
        std::cerr << "replay_unique_objects: unexpected object counts\n";
        return 1;
      }
    }

    int64_t done = 0;
    for (size_t i = initial_exp; i < bench->train_stream().size(); ++i) {
      if (stop_after >= 0 && done == stop_after) {
        std::cout << "stopping after " << done << " experience(s) with " << replay->memory_size()
                  << " samples in the replay memory; run again to resume\n";
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
    std::cerr << "replay_unique_objects: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
