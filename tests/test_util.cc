#include "test_util.h"

#include <torch/torch.h>

#include <array>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <sys/wait.h>

#include "continua/training/registry.h"

namespace continua::testing {

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "continua-test-XXXXXX").string();
  char* p = ::mkdtemp(tmpl.data());
  if (!p) throw std::runtime_error("mkdtemp failed");
  path_ = p;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

CommandResult run_command(const std::string& command) {
  CommandResult r{0, ""};
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return {-1, "popen failed"};
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  int st = ::pclose(pipe);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

std::string continua_bin() { return CONTINUA_BIN; }

bool have_fmnist() {
  return std::filesystem::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string test_name(std::string strategy) {
  for (char& c : strategy)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return strategy;
}

std::shared_ptr<Benchmark> synthetic_benchmark(uint64_t seed, int64_t experiences) {
  return make_benchmark(
      BenchmarkOptions().name("split-synthetic").seed(seed).experiences(experiences));
}

std::unique_ptr<Strategy> make_test_strategy(const std::string& name, const Benchmark& bench,
                                             uint64_t seed, int64_t epochs) {
  torch::manual_seed(seed);
  auto model = make_model(ModelOptions().input_size(bench.input_size()).hidden(32).dropout(0.1));
  auto s = std::make_unique<Strategy>(
      model, StrategyOptions()
                 .train_mb_size(16)
                 .eval_mb_size(64)
                 .epochs(epochs)
                 .seed(seed)
                 .optimizer(OptimizerOptions().lr(0.05).momentum(0.9)));
  configure_strategy(*s, name, {{"mem-size", 50}, {"mem-mb-size", 16}}, seed);
  return s;
}

int64_t iterations_in_experience(const std::string& name, const Benchmark& bench, int64_t exp, uint64_t seed,
                                 int64_t epochs) {
  auto s = make_test_strategy(name, bench, seed, epochs);
  for (int64_t i = 0; i < exp; ++i) s->train(bench.train_stream()[size_t(i)]);
  const int64_t before = s->clock().train_iterations;
  s->train(bench.train_stream()[size_t(exp)]);
  return s->clock().train_iterations - before;
}

}  // namespace continua::testing
