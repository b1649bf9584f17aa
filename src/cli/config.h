// Configuration files for `continua run` and the resume-compatibility check.
//
// Usage:
//   CLI::App run_cmd;
//   continua::cli::add_run_options(run_cmd, options);   // adds --config last
//   // run.yaml:  strategy: replay
//   //            train-mb-size: 32     (train_mb_size is accepted too)
//   // `continua run --config run.yaml --lr 0.1`: the command line overrides the file.
//
//   continua::cli::check_resume_config("ckpt.safetensors", to_json(options));
//
// Contract: a configuration file is a YAML mapping of option names (without
// "--") to scalars; an unknown key, a nested value or a YAML syntax error is a
// CLI::ConfigError naming the file and the key (or line). check_resume_config
// throws continua::InvalidArgument naming the checkpoint and each
// shape-changing option that differs ("--hidden: checkpoint 512, this run
// 256") before anything is loaded; a file it cannot read, or one without a
// stored configuration, is left to the loader to judge.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace continua::cli {

struct RunOptions;

// The options of `continua run`, from one table: the common ones, then every
// registered strategy's (grouped by the strategies that use them), then
// --config. The same table maps the options to the resolved configuration
// (to_json) and names the ones a resume must not change.
void add_run_options(CLI::App& app, RunOptions& options);
// The resolved configuration: the common options that describe the run and
// the chosen strategy's options with their defaults filled in (keys with
// '_': "mem_size").
nlohmann::json to_json(const RunOptions& options);
// The chosen strategy's options, checked and typed (name -> value).
nlohmann::json strategy_option_values(const RunOptions& options);

// Adds `--config FILE` to `app`, read as YAML. Call after every other option
// is added: the keys are checked against the options `app` has then.
void add_config_file_option(CLI::App& app, std::string& config_path);

// The options whose change makes a checkpoint's state a different shape
// (configuration keys): the common ones and every strategy option declared
// fixed_at_resume.
std::vector<std::string> shape_config_keys();

// "--hidden: checkpoint 512, this run 256; --strategy: ..." for the
// shape-changing keys that differ between two resolved configurations
// (to_json(RunOptions) documents); empty when they agree.
std::string config_difference(const nlohmann::json& stored, const nlohmann::json& current);

// Throws InvalidArgument when `checkpoint_path` exists and holds a
// configuration whose shape-changing options differ from `current`.
void check_resume_config(const std::string& checkpoint_path, const nlohmann::json& current);

}  // namespace continua::cli
