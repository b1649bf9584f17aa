#include "cli/config.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <set>

#include <variant>

#include "cli/commands.h"
#include "continua/data/benchmark.h"
#include "continua/errors.h"
#include "continua/format/safetensors.h"
#include "continua/training/registry.h"

namespace continua::cli {

// ---------------------------------------------------------------- the run options

namespace {

struct RunField {
  const char* name;  // without "--"; its configuration key has '_' for '-'
  std::variant<std::string RunOptions::*, int64_t RunOptions::*, double RunOptions::*,
               uint64_t RunOptions::*, bool RunOptions::*>
      member;
  const char* help;
  bool in_config;  // part of the resolved configuration
  bool shape;      // a resume with another value is refused
};

const std::vector<RunField>& run_fields() {
  using R = RunOptions;
  static const std::vector<RunField> fields = {
      {"benchmark", &R::benchmark, "", true, true},  // help: the benchmark names
      {"dataset", &R::dataset,
       "the dataset of a scenario named alone (--benchmark split|permuted|rotated|instances): fmnist, mnist, "
       "cifar10, cifar100, synthetic, or FORMAT:PATH (FORMAT: idx, cifar, npy, csv, images; docs/datasets.md)", true, true},
      {"data-dir", &R::data_dir,
       "folder with the built-in dataset's files (default for Fashion-MNIST: /usr/share/datasets/fashion-mnist; "
       "CIFAR: the binary distribution's folder)", true, false},
      {"strategy", &R::strategy, "", true, true},  // help: the registry's names
      {"model", &R::model, "mlp, cnn, resnet18 (the reduced ResNet-18: image inputs)", true, true},
      {"augment", &R::augment,
       "training augmentation, in this order: crop (random crop, padding 4), flip (horizontal, p 0.5), e.g. "
       "crop,flip; default none", true, true},
      {"experiences", &R::experiences, "experiences in the stream", true, true},
      {"epochs", &R::epochs, "epochs per experience", true, false},
      {"train-mb-size", &R::train_mb_size, "training mini-batch size", true, false},
      {"eval-mb-size", &R::eval_mb_size, "evaluation mini-batch size", true, false},
      {"optimizer", &R::optimizer, "sgd, adam", true, true},
      {"lr", &R::lr, "learning rate", true, false},
      {"momentum", &R::momentum, "SGD momentum", true, false},
      {"hidden", &R::hidden, "hidden units per layer", true, true},
      {"layers", &R::layers, "hidden layers (mlp)", true, true},
      {"dropout", &R::dropout, "dropout probability after each hidden layer (Avalanche's SimpleMLP: 0.5)", true, false},
      {"seed", &R::seed, "seed of every random generator", true, false},
      {"seeds", &R::seeds,
       "run once per seed, one after another (1,2,3): --out DIR/seed-S per seed and mean and std in "
       "DIR/results.json; a checkpoint per seed", false, false},
      {"subset", &R::subset, "at most N training samples per experience (0: all)", true, false},
      {"class-order", &R::class_order,
       "the classes in the order the experiences bring them, comma-separated (a class split; "
       "default: drawn from the seed)", true, true},
      {"task-labels", &R::task_labels,
       "task-incremental: experience i is task i, one head per task (multi-head)", true, true},
      {"rotations", &R::rotations,
       "rotated benchmarks: each experience's angle in degrees, comma-separated (default: drawn from the seed "
       "in [-180, 180])", true, true},
      {"online-chunk", &R::online_chunk,
       "online (task-free): cut each training experience into experiences of N samples, trained in one pass; "
       "evaluation and checkpoints at the original experiences' ends (0: off)", true, true},
      {"online-boundaries", &R::online_boundaries,
       "online: let strategies see which original experience a chunk comes from", true, true},
      {"validation-split", &R::validation_split,
       "move this class-balanced fraction of each training experience into a validation stream, evaluated "
       "like the test stream", true, true},
      {"device", &R::device, "cpu, cuda, cuda:N", true, false},
      {"threads", &R::threads,
       "LibTorch threads (0: auto, the fastest measured: OpenBLAS's pool gets the cores)", false, false},
      {"out", &R::out, "folder for metrics.jsonl, metrics.csv, results.json", false, false},
      {"checkpoint", &R::checkpoint, "save after every experience and resume from this file when it exists",
       false, false},
      {"max-experiences", &R::max_experiences, "train at most K experiences in this invocation, then exit 0 (online: K original experiences)",
       false, false},
      {"verbosity", &R::verbosity, "quiet, normal, verbose", false, false},
      {"checkpoint-dir", &R::checkpoint_dir,
       "managed checkpoints: keep the last K in DIR, resume from the newest that verifies", false, false},
      {"checkpoint-every", &R::checkpoint_every,
       "also save every N training iterations (0: only after each experience)", false, false},
      {"checkpoint-every-seconds", &R::checkpoint_every_seconds,
       "also save when S seconds passed since the last save (0: off)", false, false},
      {"keep-last", &R::keep_last, "checkpoints kept in --checkpoint-dir", false, false},
      {"requeue", &R::requeue,
       "under SLURM, after the checkpoint a signal asked for, run 'scontrol requeue $SLURM_JOB_ID'", false,
       false},
      {"signal", &R::signals,
       "signals that stop the run at the next iteration with a checkpoint (comma list, 'none')", false, false},
      {"nproc", &R::nproc, "data-parallel: start N local ranks of this command (docs/distributed.md)", false,
       false},
  };
  return fields;
}

std::string config_key(std::string name) {
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

}  // namespace

void add_run_options(CLI::App& app, RunOptions& o) {
  for (const RunField& f : run_fields()) {
    const std::string flag = "--" + std::string(f.name);
    std::string help = f.help;
    if (std::string(f.name) == "strategy") help = joined(strategy_names()) + " (`continua strategies`)";
    if (std::string(f.name) == "benchmark") help = joined(benchmark_names());
    std::visit(
        [&](auto member) {
          using T = std::decay_t<decltype(o.*member)>;
          if constexpr (std::is_same_v<T, bool>) {
            app.add_flag(flag, o.*member, help);
          } else {
            app.add_option(flag, o.*member, help)->capture_default_str();
          }
        },
        f.member);
  }
  for (const OptionUse& use : all_strategy_options()) {
    const StrategyOption& opt = use.option;
    const std::string def = opt.default_text();
    std::string help = opt.help;
    if (!opt.choices.empty()) help += " (" + joined(opt.choices) + ")";
    app.add_option("--" + opt.name, o.strategy_options[opt.name], help)
        ->default_str(def)
        ->group("Options of " + joined(use.strategies));
  }
  app.get_option("--seeds")->excludes(app.get_option("--seed"));
  add_config_file_option(app, o.config);  // last: it checks its keys against the options above
}

nlohmann::json strategy_option_values(const RunOptions& o) {
  nlohmann::json given = nlohmann::json::object();
  for (const auto& [name, text] : o.strategy_options) {
    if (!text.empty()) given[name] = text;
  }
  return resolve_strategy_options(o.strategy, given);
}

nlohmann::json to_json(const RunOptions& o) {
  nlohmann::json j = nlohmann::json::object();
  for (const RunField& f : run_fields()) {
    if (!f.in_config) continue;
    std::visit([&](auto member) { j[config_key(f.name)] = o.*member; }, f.member);
  }
  const nlohmann::json values = strategy_option_values(o);
  for (const auto& [name, value] : values.items()) j[config_key(name)] = value;
  return j;
}

std::vector<std::string> shape_config_keys() {
  std::vector<std::string> keys;
  for (const RunField& f : run_fields()) {
    if (f.shape) keys.push_back(config_key(f.name));
  }
  for (const OptionUse& use : all_strategy_options()) {
    if (use.option.fixed_at_resume) keys.push_back(use.option.config_key());
  }
  return keys;
}

namespace {

std::string scalar_text(const nlohmann::json& v) {
  if (v.is_null()) return "(none)";
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

}  // namespace


std::string config_difference(const nlohmann::json& stored, const nlohmann::json& current) {
  std::string diff;
  for (const std::string& key : shape_config_keys()) {
    if (!stored.contains(key) || !current.contains(key)) continue;
    const auto& a = stored[key];
    const auto& b = current[key];
    if (a == b) continue;
    std::string option = "--" + key;
    std::replace(option.begin(), option.end(), '_', '-');
    if (!diff.empty()) diff += "; ";
    diff += option + ": checkpoint " + scalar_text(a) + ", this run " + scalar_text(b);
  }
  return diff;
}

void check_resume_config(const std::string& checkpoint_path, const nlohmann::json& current) {
  std::error_code ec;
  if (checkpoint_path.empty() || !std::filesystem::is_regular_file(checkpoint_path, ec)) return;
  std::string text;
  try {
    auto reader = format::SafetensorsReader::open_file(checkpoint_path);
    auto it = reader.metadata().find("config");
    if (it == reader.metadata().end()) return;
    text = it->second;
  } catch (const Error&) {
    return;  // damaged or unreadable: the loader reports it (or falls back to an older one)
  }
  const nlohmann::json stored = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!stored.is_object()) return;
  const std::string diff = config_difference(stored, current);
  if (!diff.empty()) {
    throw InvalidArgument("cannot resume from '" + checkpoint_path +
                          "': it was written with a configuration that changes the shape of the state: " + diff +
                          " (use the checkpoint's options, or another --checkpoint/--checkpoint-dir)");
  }
}

}  // namespace continua::cli
