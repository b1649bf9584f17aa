#include "cli/config.h"

#include <CLI/CLI.hpp>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <set>

#include "continua/errors.h"
#include "continua/format/safetensors.h"

namespace continua::cli {
namespace {

struct Item {
  std::string name;   // option name without "--"
  std::string value;
};

// Reads a flat YAML mapping of option names to scalars.
std::vector<Item> read_config_file(const std::string& file, const std::set<std::string>& known) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(file);
  } catch (const YAML::BadFile&) {
    throw CLI::ConfigError("config file '" + file + "': cannot be read");
  } catch (const YAML::Exception& e) {
    throw CLI::ConfigError("config file '" + file + "': not valid YAML: " + e.what());
  }
  std::vector<Item> items;
  if (root.IsNull()) return items;  // an empty file
  if (!root.IsMap()) {
    throw CLI::ConfigError("config file '" + file + "': expected a mapping of option names to values");
  }
  for (const auto& kv : root) {
    if (!kv.first.IsScalar()) throw CLI::ConfigError("config file '" + file + "': keys must be option names");
    const std::string raw = kv.first.as<std::string>();
    std::string key = raw;
    if (key.rfind("--", 0) == 0) key = key.substr(2);
    std::replace(key.begin(), key.end(), '_', '-');
    if (!known.count(key)) {
      throw CLI::ConfigError("config file '" + file + "': unknown key '" + raw +
                             "' (not an option of 'continua run')");
    }
    if (!kv.second.IsScalar()) {
      throw CLI::ConfigError("config file '" + file + "': key '" + raw + "' must be a single value");
    }
    items.push_back({key, kv.second.as<std::string>()});
  }
  return items;
}

}  // namespace

namespace {

std::string scalar_text(const nlohmann::json& v) {
  if (v.is_null()) return "(none)";
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

}  // namespace

void add_config_file_option(CLI::App& app, std::string& config_path) {
  std::set<std::string> known;
  for (const CLI::Option* opt : app.get_options()) {
    for (const std::string& n : opt->get_lnames()) known.insert(n);
  }
  known.erase("help");
  // CLI11 (2.1) reads config files only for the top-level app, so the file is
  // applied here: this option is added last, so its callback runs after every
  // option given on the command line; each key of the file sets only an option
  // the command line did not give.
  CLI::App* owner = &app;
  app.add_option_function<std::string>(
         "--config",
         [owner, known, &config_path](const std::string& file) {
           config_path = file;
           for (const Item& item : read_config_file(file, known)) {
             CLI::Option* opt = owner->get_option_no_throw("--" + item.name);
             if (opt == nullptr || opt->count() > 0) continue;  // the command line wins
             opt->add_result(item.value);
             try {
               opt->run_callback();
             } catch (const CLI::ParseError& e) {
               throw CLI::ConfigError("config file '" + file + "': key '" + item.name + "': " + e.what());
             }
           }
         },
         "read options from this YAML file (the command line overrides it)")
      ->check(CLI::ExistingFile);
}

const std::vector<std::string>& shape_config_keys() {
  static const std::vector<std::string> keys = {"benchmark", "experiences", "strategy", "model", "hidden",
                                                "layers", "optimizer", "mem_size", "replay_policy",
                                                "ewc_mode"};
  return keys;
}

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
