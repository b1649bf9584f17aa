// Helpers shared by the LibTorch-facing tests.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "continua/data/benchmark.h"
#include "continua/training/strategy.h"

namespace continua::testing {

// A fresh, empty temporary directory, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Runs a shell command, returns its exit status (-1 if killed by a signal)
// and its combined output.
struct CommandResult {
  int status;
  std::string output;
};
CommandResult run_command(const std::string& command);

std::string continua_bin();
bool have_fmnist();
std::string read_file(const std::string& path);

// A gtest-safe name for a strategy ("er-ace" -> "er_ace").
std::string test_name(std::string strategy);

// A small synthetic benchmark and a strategy on it, seeded.
std::shared_ptr<Benchmark> synthetic_benchmark(uint64_t seed = 1, int64_t experiences = 5);
std::unique_ptr<Strategy> make_test_strategy(const std::string& name, const Benchmark& bench,
                                             uint64_t seed = 1, int64_t epochs = 1);
// The training iterations the strategy runs on experience `exp` (after the
// ones before it): a method that trains on its memory alone (GDumb) runs
// few, and a stop "in the middle" must land inside them.
int64_t iterations_in_experience(const std::string& name, const Benchmark& bench, int64_t exp,
                                 uint64_t seed = 1, int64_t epochs = 1);

}  // namespace continua::testing
