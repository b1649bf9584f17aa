// The `continua` command: run, inspect, verify, bench, strategies, report.
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "cli/commands.h"
#include "continua/errors.h"
#include "continua/io/console.h"

int main(int argc, char** argv) {
  CLI::App app{"continua: continual learning on LibTorch whose training survives preemption"};
  app.require_subcommand(1);
  continua::cli::RunOptions run;
  CLI::App* run_cmd = app.add_subcommand("run", "train a benchmark with a strategy");
  continua::cli::add_run_options(*run_cmd, run);

  std::string inspect_file;
  bool inspect_json = false;
  CLI::App* inspect_cmd = app.add_subcommand("inspect", "describe a checkpoint");
  inspect_cmd->add_option("file", inspect_file, "checkpoint file")->required();
  inspect_cmd->add_flag("--json", inspect_json, "print JSON");

  std::string verify_file;
  CLI::App* verify_cmd = app.add_subcommand("verify", "exit 0 for a sound checkpoint, non-zero otherwise");
  verify_cmd->add_option("file", verify_file, "checkpoint file")->required();

  continua::cli::BenchOptions bench;
  CLI::App* bench_cmd = app.add_subcommand("bench", "measure checkpoint speed against the machine's limits");
  continua::cli::add_bench_options(*bench_cmd, bench);

  bool strategies_json = false;
  CLI::App* strategies_cmd = app.add_subcommand("strategies", "list every registered strategy with its options");
  strategies_cmd->add_flag("--json", strategies_json, "print JSON: [{name, description, options}]");

  continua::cli::ReportOptions report;
  CLI::App* report_cmd = app.add_subcommand(
      "report", "an HTML page of a run's --out DIR (DIR/report.html), or comparing several runs (comparison.html)");
  report_cmd->add_option("dirs", report.dirs, "the --out folders of runs (single or --seeds runs)")->required();
  report_cmd->add_option("--out", report.out,
                         "the page to write (default: DIR/report.html for one folder, comparison.html for several)");
  report_cmd->add_flag("--json", report.json, "print the comparison table as JSON instead of writing a page");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help prints and exits 0; every usage error (including a bad --config
    // file) exits 2, as documented, not with CLI11's own codes.
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    if (*run_cmd) return continua::cli::run(run);
    if (*inspect_cmd) return continua::cli::inspect(inspect_file, inspect_json);
    if (*verify_cmd) return continua::cli::verify(verify_file);
    if (*bench_cmd) return continua::cli::bench(bench);
    if (*report_cmd) return continua::cli::report(report);
    if (*strategies_cmd) return continua::cli::strategies(strategies_json);
  } catch (const continua::Error& e) {
    continua::io::ErrLine() << "continua: error: " << e.what() << "\n";
    return 1;
  } catch (const c10::Error& e) {
    continua::io::ErrLine() << "continua: error (LibTorch): " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    continua::io::ErrLine() << "continua: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
