// libFuzzer target: `continua run --config FILE`, the YAML configuration.
//
// The input is the file. It goes through the code the CLI runs
// (add_config_file_option: yaml-cpp, the key checks, CLI11's typed
// conversions) on an app with one option of each kind `continua run` has:
// integers, floats, strings, flags, lists. Every file must either be applied
// or raise a CLI11 error (ConfigError, ParseError) or continua::Error;
// anything else (a crash, a sanitizer report, a foreign exception such as a
// yaml-cpp one escaping) is a finding.
//
// Build and run: fuzz/run_fuzz.sh --target config.
#include <CLI/CLI.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <unistd.h>

#include "cli/config.h"
#include "continua/errors.h"

namespace {

std::string temp_path() {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir && *dir ? dir : "/tmp") + "/continua-config-fuzz-" + std::to_string(getpid()) + ".yaml";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = temp_path();
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);

  CLI::App app("fuzz");
  int64_t experiences = 5, mem_size = 200;
  double lr = 0.01, validation_split = 0;
  std::string strategy = "naive", benchmark = "split-fmnist", class_order, rotations;
  bool task_labels = false, online_boundaries = false;
  std::string config;
  app.add_option("--experiences", experiences)->check(CLI::PositiveNumber);
  app.add_option("--mem-size", mem_size);
  app.add_option("--lr", lr);
  app.add_option("--validation-split", validation_split)->check(CLI::Range(0.0, 1.0));
  app.add_option("--strategy", strategy)->check(CLI::IsMember({"naive", "replay", "ewc", "gem"}));
  app.add_option("--benchmark", benchmark);
  app.add_option("--class-order", class_order);
  app.add_option("--rotations", rotations);
  app.add_flag("--task-labels", task_labels);
  app.add_flag("--online-boundaries", online_boundaries);
  continua::cli::add_config_file_option(app, config);
  try {
    app.parse(std::vector<std::string>{path, "--config"});  // CLI11 reads the vector back to front
  } catch (const CLI::Error&) {
  } catch (const continua::Error&) {
  }
  return 0;
}
