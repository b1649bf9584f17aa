// `--config FILE` of `continua run`: a flat YAML mapping of option names to
// scalars, applied to a CLI11 app (declared in cli/config.h). Torch-free, so
// that fuzz/config_fuzzer.cc can drive it with the same code the CLI runs.
#include <CLI/CLI.hpp>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "cli/config.h"

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

}  // namespace continua::cli
