// Training-loop overhead on real split Fashion-MNIST, in one run:
//   1. Strategy::train against a bare LibTorch loop with the same model
//      (SimpleMLP), batch size, optimizer (SGD, momentum) and data order
//      source; iterations per second of each, alternated, medians.
//   2. The same Strategy run with an asynchronous checkpoint after every
//      experience (AsyncCheckpointer), against no checkpoint.
//   3. Checkpoint size and save time for two dataset sizes (--subset A and
//      B): registered datasets are stored by reference, so neither grows.
// Usage: continua_train_overhead [--subset N] [--repeat R] [--threads T] [--dir D]
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
#include <vector>

#include "continua/checkpoint/async_save.h"
#include "continua/checkpoint/checkpoint.h"
#include "continua/data/benchmark.h"
#include "continua/models/model.h"
#include "continua/training/strategy.h"

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

constexpr int64_t kBatch = 64;
constexpr int64_t kHidden = 512;
constexpr double kLr = 0.01, kMomentum = 0.9;

std::shared_ptr<continua::Model> model_for(const continua::Benchmark& b) {
  torch::manual_seed(0);
  return continua::make_model(continua::ModelOptions().input_size(b.input_size()).hidden(kHidden));
}

std::unique_ptr<continua::Strategy> strategy_for(const continua::Benchmark& b) {
  return std::make_unique<continua::Strategy>(
      model_for(b), continua::StrategyOptions().train_mb_size(kBatch).seed(0).optimizer(
                        continua::OptimizerOptions().lr(kLr).momentum(kMomentum)));
}

struct Timed {
  double seconds;
  int64_t iterations;
  double stall_seconds = 0;  // inside AsyncCheckpointer::save, and the final wait
};

// The strategy; with `checkpointer`, an async save after every experience
// (the time includes waiting for the last one to be durable).
Timed run_strategy(const continua::Benchmark& b, continua::AsyncCheckpointer* checkpointer,
                   const std::string& path) {
  auto s = strategy_for(b);
  double stall = 0;
  const auto t0 = Clock::now();
  for (const auto& exp : b.train_stream()) {
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
  return {since(t0), s->clock().train_iterations, stall};
}

// What a user would write with LibTorch alone: the same model, SGD, batches.
Timed run_bare(const continua::Benchmark& b) {
  auto model = model_for(b);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
  int64_t iterations = 0;
  const auto t0 = Clock::now();
  for (const auto& exp : b.train_stream()) {
    model->adapt(exp.classes());
    model->train();
    torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(kLr).momentum(kMomentum));
    const int64_t n = exp.size();
    const at::Tensor order = at::randperm(n, gen, at::kLong);
    for (int64_t pos = 0; pos < n; pos += kBatch) {
      const int64_t take = std::min(kBatch, n - pos);
      continua::Batch batch = exp.get(order.narrow(0, pos, take));
      opt.zero_grad();
      at::Tensor loss = torch::nn::functional::cross_entropy(model->forward(batch.x), batch.y);
      loss.backward();
      opt.step();
      ++iterations;
    }
  }
  return {since(t0), iterations};
}

}  // namespace

int main(int argc, char** argv) {
  int64_t subset = 2000, repeat = 3, threads = 2, small_subset = 500, large_subset = 6000;
  std::string dir = std::filesystem::current_path().string();
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--subset") subset = std::atoll(argv[i + 1]);
    else if (a == "--repeat") repeat = std::atoll(argv[i + 1]);
    else if (a == "--threads") threads = std::atoll(argv[i + 1]);
    else if (a == "--dir") dir = argv[i + 1];
    else {
      std::cerr << "unknown option " << a << "\n";
      return 2;
    }
  }
  torch::set_num_threads(static_cast<int>(threads));
  auto b = continua::make_benchmark(continua::BenchmarkOptions().subset(subset));
  const std::string path = dir + "/train_overhead.safetensors";

  // 1 and 2, alternated so that drifts in machine load hit all alike.
  run_bare(*b);  // warm-up: allocator, OpenBLAS threads
  std::vector<double> t_strategy, t_bare, t_async, t_stall;
  int64_t iters = 0, bare_iters = 0;
  continua::AsyncCheckpointer checkpointer;
  for (int64_t r = 0; r < repeat; ++r) {
    Timed s = run_strategy(*b, nullptr, path);
    Timed bare = run_bare(*b);
    Timed a = run_strategy(*b, &checkpointer, path);
    t_strategy.push_back(s.seconds);
    t_bare.push_back(bare.seconds);
    t_async.push_back(a.seconds);
    t_stall.push_back(a.stall_seconds);
    iters = s.iterations;
    bare_iters = bare.iterations;
  }
  const double ms = median(t_strategy), mb = median(t_bare), ma = median(t_async), mstall = median(t_stall);
  const double ckpt_bytes = static_cast<double>(std::filesystem::file_size(path));

  // 3. Checkpoint size and time against the dataset's size.
  nlohmann::json by_dataset = nlohmann::json::array();
  for (int64_t n : {small_subset, large_subset}) {
    auto bn = continua::make_benchmark(continua::BenchmarkOptions().subset(n));
    auto s = strategy_for(*bn);
    s->train(bn->train_stream()[0]);
    std::vector<double> t;
    for (int64_t r = 0; r < repeat; ++r) {
      const auto t0 = Clock::now();
      continua::save_checkpoint(*s, path, continua::SaveOptions());
      t.push_back(since(t0));
    }
    by_dataset.push_back({{"subset", n},
                          {"train_samples", bn->train_stream()[0].size()},
                          {"file_bytes", std::filesystem::file_size(path)},
                          {"save_seconds", median(t)}});
  }
  std::filesystem::remove(path);

  std::printf("split-fmnist, subset %lld per experience, SimpleMLP hidden %lld, batch %lld, SGD "
              "lr %.2f momentum %.1f, %lld threads, median of %lld\n",
              static_cast<long long>(subset), static_cast<long long>(kHidden),
              static_cast<long long>(kBatch), kLr, kMomentum, static_cast<long long>(threads),
              static_cast<long long>(repeat));
  std::printf("%-40s %10s %12s\n", "loop", "seconds", "iter/s");
  std::printf("%-40s %10.3f %12.1f\n", "bare LibTorch", mb, bare_iters / mb);
  std::printf("%-40s %10.3f %12.1f\n", "Strategy::train", ms, iters / ms);
  std::printf("%-40s %10.3f %12.1f\n", "Strategy::train + async save per exp", ma, iters / ma);
  std::printf("strategy overhead vs bare: %+.1f%% per iteration\n",
              100.0 * ((ms / iters) / (mb / bare_iters) - 1.0));
  std::printf("async checkpoint after every experience: %+.1f%% of training time (file %.1f MiB)\n",
              100.0 * (ma / ms - 1.0), ckpt_bytes / 1048576.0);
  std::printf("  of which training waited in save() and the final wait: %.1f ms, %.2f%% of the run\n",
              1000.0 * mstall, 100.0 * mstall / ma);
  for (const auto& d : by_dataset) {
    std::printf("dataset subset %6lld: checkpoint %lld bytes, save %.4f s\n",
                static_cast<long long>(d["subset"].get<int64_t>()),
                static_cast<long long>(d["file_bytes"].get<int64_t>()),
                d["save_seconds"].get<double>());
  }
  nlohmann::json j = {{"strategy_seconds", ms},
                      {"bare_seconds", mb},
                      {"async_seconds", ma},
                      {"iterations", iters},
                      {"bare_iterations", bare_iters},
                      {"strategy_overhead", (ms / iters) / (mb / bare_iters) - 1.0},
                      {"async_checkpoint_overhead", ma / ms - 1.0},
                      {"async_stall_seconds", mstall},
                      {"async_stall_fraction", mstall / ma},
                      {"checkpoint_bytes", ckpt_bytes},
                      {"by_dataset", by_dataset}};
  std::cout << j.dump() << std::endl;
  return 0;
}
