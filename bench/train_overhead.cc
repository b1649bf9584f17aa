// Training-loop overhead, in one run:
//   1. Strategy::train against a bare LibTorch loop with the same model,
//      batch size, optimizer (SGD, momentum), batches and data order
//      source; iterations per second of each, alternated, medians of the
//      whole runs and of the single iterations.
//   2. The same Strategy run with an asynchronous checkpoint after every
//      experience (AsyncCheckpointer), against no checkpoint.
//   3. (mlp) Checkpoint size and save time for two dataset sizes (--subset
//      A and B): registered datasets are stored by reference, so neither
//      grows.
// Models: --model mlp (default) trains SimpleMLP on real split
// Fashion-MNIST (--subset N samples per experience); --model resnet18 the
// reduced ResNet-18 on CIFAR-sized random images (3x32x32, 10 classes in 5
// experiences of 2, --subset N samples per experience).
// --augment crop,flip (resnet18): both loops augment every batch, the
// strategy through StrategyOptions::train_transform.
// Usage: continua_train_overhead [--model mlp|resnet18] [--subset N] [--batch B]
//          [--repeat R] [--threads T] [--async 0|1] [--augment SPEC] [--dir D]
// Threads as `continua run --threads T`: LibTorch T threads, OpenBLAS 1.
// Prints a table and a JSON line. Not run by the tests (docs/benchmarks.md).
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "continua/checkpoint/async_save.h"
#include "continua/checkpoint/checkpoint.h"
#include "continua/data/benchmark.h"
#include "continua/data/transforms.h"
#include "continua/models/model.h"
#include "continua/training/strategy.h"
#include "continua/training/threads.h"

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

constexpr int64_t kHidden = 512;
constexpr double kLr = 0.01, kMomentum = 0.9;

// What is trained: a stream of experiences and the model for it.
struct Workload {
  std::string model = "mlp";
  int64_t batch = 64;
  std::shared_ptr<continua::Benchmark> bench;       // mlp: split Fashion-MNIST
  std::shared_ptr<continua::TensorDataset> images;  // resnet18: random CIFAR-sized images
  std::vector<continua::Experience> own_stream;
  std::shared_ptr<const continua::Transform> augment;  // --augment: both loops apply it

  const std::vector<continua::Experience>& stream() const { return bench ? bench->train_stream() : own_stream; }
};

Workload make_workload(const std::string& model, int64_t subset, int64_t batch) {
  Workload w;
  w.model = model;
  w.batch = batch;
  if (model == "mlp") {
    w.bench = continua::make_benchmark(continua::BenchmarkOptions().subset(subset));
    return w;
  }
  // 3x32x32 images, uniform in [0, 1), labels 0..9; experience e has the
  // `subset` samples of classes 2e and 2e+1. The data's values do not change
  // the time of a step.
  const int64_t per_class = (subset + 1) / 2;
  torch::manual_seed(123);
  const at::Tensor x = torch::rand({10 * per_class, 3, 32, 32});
  const at::Tensor y = torch::arange(10, at::kLong).repeat_interleave(per_class);
  w.images = std::make_shared<continua::TensorDataset>(x, y);
  for (int64_t e = 0; e < 5; ++e) {
    const at::Tensor idx = torch::arange(2 * e * per_class, 2 * e * per_class + std::min(subset, 2 * per_class), at::kLong);
    w.own_stream.emplace_back(nullptr, "train", e, std::vector<int64_t>{2 * e, 2 * e + 1}, w.images, idx);
  }
  return w;
}

std::shared_ptr<continua::Model> model_for(const Workload& w) {
  torch::manual_seed(0);
  if (w.model == "resnet18") {
    return continua::make_model(
        continua::ModelOptions().type("resnet18").input_size(3 * 32 * 32).channels(3).image_size(32));
  }
  return continua::make_model(continua::ModelOptions().input_size(w.bench->input_size()).hidden(kHidden));
}

std::unique_ptr<continua::Strategy> strategy_for(const Workload& w) {
  return std::make_unique<continua::Strategy>(
      model_for(w), continua::StrategyOptions()
                        .train_mb_size(w.batch)
                        .seed(0)
                        .optimizer(continua::OptimizerOptions().lr(kLr).momentum(kMomentum))
                        .train_transform(w.augment));
}

struct Timed {
  double seconds;
  int64_t iterations;
  double stall_seconds = 0;  // inside AsyncCheckpointer::save, and the final wait
  // Each iteration's time: for the strategy from the end of the previous
  // one (or the start of train()) to the iteration callback, for the bare
  // loop from the batch's gather to the step. Medians of these resist the
  // bursts of the machine's other users better than whole-run times.
  std::vector<double> iteration_seconds;
  double augment_seconds = 0;  // bare loop: inside the transform
};

// The strategy; with `checkpointer`, an async save after every experience
// (the time includes waiting for the last one to be durable).
Timed run_strategy(const Workload& w, continua::AsyncCheckpointer* checkpointer, const std::string& path) {
  auto s = strategy_for(w);
  double stall = 0;
  std::vector<double> per_iteration;
  Clock::time_point last;
  s->set_iteration_callback([&](continua::Strategy&) {
    const auto now = Clock::now();
    per_iteration.push_back(std::chrono::duration<double>(now - last).count());
    last = now;
  });
  const auto t0 = Clock::now();
  for (const auto& exp : w.stream()) {
    last = Clock::now();
    s->train(exp);
    if (checkpointer) {
      const auto t = Clock::now();
      checkpointer->save(*s, path);
      stall += since(t);
    }
  }
  if (checkpointer) {
    const auto t = Clock::now();
    checkpointer->wait();
    stall += since(t);
  }
  return {since(t0), s->clock().train_iterations, stall, per_iteration};
}

// What a user would write with LibTorch alone: the same model, SGD, batches.
Timed run_bare(const Workload& w) {
  auto model = model_for(w);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
  at::Generator augment_gen = at::make_generator<at::CPUGeneratorImpl>(1);
  double augment_seconds = 0;
  int64_t iterations = 0;
  std::vector<double> per_iteration;
  const auto t0 = Clock::now();
  for (const auto& exp : w.stream()) {
    model->adapt(exp.classes());
    model->train();
    torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(kLr).momentum(kMomentum));
    const int64_t n = exp.size();
    const at::Tensor order = at::randperm(n, gen, at::kLong);
    for (int64_t pos = 0; pos < n; pos += w.batch) {
      const int64_t take = std::min(w.batch, n - pos);
      const auto ti = Clock::now();
      continua::Batch batch = exp.get(order.narrow(0, pos, take));
      if (w.augment) {
        const auto ta = Clock::now();
        batch.x = (*w.augment)(batch.x, augment_gen);
        augment_seconds += since(ta);
      }
      opt.zero_grad();
      at::Tensor loss = torch::nn::functional::cross_entropy(model->forward(batch.x), batch.y);
      loss.backward();
      opt.step();
      per_iteration.push_back(since(ti));
      ++iterations;
    }
  }
  return {since(t0), iterations, 0, per_iteration, augment_seconds};
}

double spread(const std::vector<double>& v) {
  return *std::max_element(v.begin(), v.end()) - *std::min_element(v.begin(), v.end());
}

}  // namespace

int main(int argc, char** argv) {
  int64_t subset = 2000, repeat = 3, threads = 2, small_subset = 500, large_subset = 6000, batch = 64, async = 1;
  std::string model = "mlp", augment;
  std::string dir = std::filesystem::current_path().string();
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--subset") subset = std::atoll(argv[i + 1]);
    else if (a == "--repeat") repeat = std::atoll(argv[i + 1]);
    else if (a == "--threads") threads = std::atoll(argv[i + 1]);
    else if (a == "--batch") batch = std::atoll(argv[i + 1]);
    else if (a == "--async") async = std::atoll(argv[i + 1]);
    else if (a == "--model") model = argv[i + 1];
    else if (a == "--augment") augment = argv[i + 1];
    else if (a == "--dir") dir = argv[i + 1];
    else {
      std::cerr << "unknown option " << a << "\n";
      return 2;
    }
  }
  if ((model != "mlp" && model != "resnet18") || subset <= 0 || repeat <= 0 || batch <= 0 || threads <= 0) {
    std::cerr << "--model mlp|resnet18, --subset, --repeat, --batch, --threads > 0\n";
    return 2;
  }
  const continua::ThreadSetting ts = continua::configure_threads(threads, std::thread::hardware_concurrency());
  Workload w = make_workload(model, subset, batch);
  if (!augment.empty() && model != "resnet18") {
    std::cerr << "--augment needs --model resnet18 (image batches)\n";
    return 2;
  }
  w.augment = continua::parse_augment(augment);
  const std::string path = dir + "/train_overhead.safetensors";

  // 1 and 2, alternated so that drifts in machine load hit all alike.
  run_bare(w);  // warm-up: allocator, OpenBLAS threads
  std::vector<double> t_strategy, t_bare, t_async, t_stall, ratio, it_strategy, it_bare, t_augment;
  int64_t iters = 0, bare_iters = 0;
  continua::AsyncCheckpointer checkpointer;
  for (int64_t r = 0; r < repeat; ++r) {
    Timed s = run_strategy(w, nullptr, path);
    Timed bare = run_bare(w);
    t_strategy.push_back(s.seconds);
    t_bare.push_back(bare.seconds);
    t_augment.push_back(bare.augment_seconds / double(bare.iterations));
    it_strategy.insert(it_strategy.end(), s.iteration_seconds.begin(), s.iteration_seconds.end());
    it_bare.insert(it_bare.end(), bare.iteration_seconds.begin(), bare.iteration_seconds.end());
    ratio.push_back((s.seconds / s.iterations) / (bare.seconds / bare.iterations) - 1.0);
    if (async) {
      Timed a = run_strategy(w, &checkpointer, path);
      t_async.push_back(a.seconds);
      t_stall.push_back(a.stall_seconds);
    }
    iters = s.iterations;
    bare_iters = bare.iterations;
  }
  const double ms = median(t_strategy), mb = median(t_bare);
  const double mis = median(it_strategy), mib = median(it_bare);
  const double ma = async ? median(t_async) : 0, mstall = async ? median(t_stall) : 0;
  const double ckpt_bytes = async ? static_cast<double>(std::filesystem::file_size(path)) : 0;

  // 3. Checkpoint size and time against the dataset's size.
  nlohmann::json by_dataset = nlohmann::json::array();
  for (int64_t n : {small_subset, large_subset}) {
    if (model != "mlp") break;
    const Workload wn = make_workload(model, n, batch);
    auto s = strategy_for(wn);
    s->train(wn.stream()[0]);
    std::vector<double> t;
    for (int64_t r = 0; r < repeat; ++r) {
      const auto t0 = Clock::now();
      continua::save_checkpoint(*s, path, continua::SaveOptions());
      t.push_back(since(t0));
    }
    by_dataset.push_back({{"subset", n},
                          {"train_samples", wn.stream()[0].size()},
                          {"file_bytes", std::filesystem::file_size(path)},
                          {"save_seconds", median(t)}});
  }
  std::filesystem::remove(path);

  if (model == "mlp") {
    std::printf("split-fmnist, subset %lld per experience, SimpleMLP hidden %lld, ", static_cast<long long>(subset),
                static_cast<long long>(kHidden));
  } else {
    std::printf("random 3x32x32 images, 5 experiences of %lld, reduced ResNet-18 (nf 20), ",
                static_cast<long long>(w.stream()[0].size()));
  }
  std::printf("batch %lld, SGD lr %.2f momentum %.1f, %s, median of %lld\n", static_cast<long long>(batch), kLr,
              kMomentum, ts.describe().c_str(), static_cast<long long>(repeat));
  std::printf("%-40s %10s %12s\n", "loop", "seconds", "iter/s");
  std::printf("%-40s %10.3f %12.2f\n", "bare LibTorch", mb, bare_iters / mb);
  std::printf("%-40s %10.3f %12.2f\n", "Strategy::train", ms, iters / ms);
  if (async) std::printf("%-40s %10.3f %12.2f\n", "Strategy::train + async save per exp", ma, iters / ma);
  if (w.augment) {
    std::printf("augmentation %s: %.3f ms per batch (bare loop, median over repetitions), %.2f%% of its iteration\n",
                w.augment->describe().c_str(), 1000.0 * median(t_augment), 100.0 * median(t_augment) / mib);
  }
  std::printf("median iteration: bare %.2f ms, Strategy::train %.2f ms (%zu iterations each): %+.1f%%\n",
              1000.0 * mib, 1000.0 * mis, it_bare.size(), 100.0 * (mis / mib - 1.0));
  std::printf("strategy overhead vs bare: %+.1f%% per iteration (medians); per repetition %+.1f%% to %+.1f%%\n",
              100.0 * ((ms / iters) / (mb / bare_iters) - 1.0), 100.0 * *std::min_element(ratio.begin(), ratio.end()),
              100.0 * *std::max_element(ratio.begin(), ratio.end()));
  if (async) {
    std::printf("async checkpoint after every experience: %+.1f%% of training time (file %.1f MiB)\n",
                100.0 * (ma / ms - 1.0), ckpt_bytes / 1048576.0);
    std::printf("  of which training waited in save() and the final wait: %.1f ms, %.2f%% of the run\n",
                1000.0 * mstall, 100.0 * mstall / ma);
  }
  for (const auto& d : by_dataset) {
    std::printf("dataset subset %6lld: checkpoint %lld bytes, save %.4f s\n",
                static_cast<long long>(d["subset"].get<int64_t>()),
                static_cast<long long>(d["file_bytes"].get<int64_t>()),
                d["save_seconds"].get<double>());
  }
  nlohmann::json j = {{"model", model},
                      {"batch", batch},
                      {"threads", ts.describe()},
                      {"strategy_seconds", ms},
                      {"bare_seconds", mb},
                      {"strategy_seconds_spread", spread(t_strategy)},
                      {"bare_seconds_spread", spread(t_bare)},
                      {"iterations", iters},
                      {"bare_iterations", bare_iters},
                      {"strategy_overhead", (ms / iters) / (mb / bare_iters) - 1.0},
                      {"strategy_overhead_per_repeat", ratio},
                      {"median_iteration_seconds_strategy", mis},
                      {"median_iteration_seconds_bare", mib},
                      {"median_iteration_overhead", mis / mib - 1.0},
                      {"augment", augment},
                      {"augment_seconds_per_batch", median(t_augment)},
                      {"by_dataset", by_dataset}};
  if (async) {
    j["async_seconds"] = ma;
    j["async_checkpoint_overhead"] = ma / ms - 1.0;
    j["async_stall_seconds"] = mstall;
    j["async_stall_fraction"] = mstall / ma;
    j["checkpoint_bytes"] = ckpt_bytes;
  }
  std::cout << j.dump() << std::endl;
  return 0;
}
