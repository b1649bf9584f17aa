// The registry of strategies: every continual-learning method continua knows,
// by name, with a one-line description, its typed options and a factory.
//
// A strategy is the Strategy template plus the plugins (and criterion) that
// make the method. Adding one is one source file that registers itself:
//
//   CONTINUA_REGISTER_STRATEGY(continua::StrategyInfo{
//       "my-method", "My method (Author et al. 2024): what it does",
//       {continua::StrategyOption::real("my-method-lambda", 1.0, "penalty weight")},
//       [](continua::Strategy& s, const continua::StrategyConfig& c) {
//         s.add_plugin(std::make_shared<MyPlugin>(c.real("my-method-lambda")));
//       }});
//
// The CLI's --strategy choices and per-strategy options (grouped in
// `continua run --help`), the YAML configuration keys, the options a resume
// checks against the checkpoint, `continua strategies [--json]` and the tests
// that go through every strategy all read this registry: no list of names is
// written twice.
//
// Contract: an option shared by several strategies (--mem-size) is declared
// with the same type and default everywhere (register_strategy throws
// InvalidArgument otherwise, as it does for a name registered twice);
// configure_strategy throws InvalidArgument naming the option for a value of
// the wrong type or outside its choices, and for an unknown strategy.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace continua {

class Strategy;

struct StrategyOption {
  std::string name;  // as on the command line without "--": "ewc-lambda"
  std::string type;  // "int", "real", "string", "bool"
  nlohmann::json default_value;
  std::string help;
  // A change of it makes a checkpoint's state another shape (a memory of
  // another size): a resume with another value is refused.
  bool fixed_at_resume = false;
  std::vector<std::string> choices;  // strings: the allowed values; empty: any

  static StrategyOption integer(std::string name, int64_t def, std::string help, bool fixed = false);
  static StrategyOption real(std::string name, double def, std::string help, bool fixed = false);
  static StrategyOption text(std::string name, std::string def, std::string help,
                             std::vector<std::string> choices = {}, bool fixed = false);
  static StrategyOption flag(std::string name, bool def, std::string help, bool fixed = false);
  // The key in configurations and checkpoints: "ewc_lambda".
  std::string config_key() const;
  std::string default_text() const;  // "500", "experience-balanced"
  nlohmann::json to_json() const;
};

// The options shared by every strategy that owns a memory: --mem-size,
// --mem-mb-size, --replay-policy.
const std::vector<StrategyOption>& memory_options();

// The values of one strategy's options, checked and completed with defaults.
class StrategyConfig {
 public:
  StrategyConfig() = default;
  StrategyConfig(nlohmann::json values, uint64_t seed, int64_t train_mb_size)
      : values_(std::move(values)), seed_(seed), train_mb_size_(train_mb_size) {}
  int64_t integer(const std::string& name) const;
  double real(const std::string& name) const;
  const std::string& text(const std::string& name) const;
  bool flag(const std::string& name) const;
  // Seed of the strategy's own generators (the run's --seed).
  uint64_t seed() const { return seed_; }
  int64_t train_mb_size() const { return train_mb_size_; }
  // option name -> value, for the options the strategy declares.
  const nlohmann::json& values() const { return values_; }

 private:
  const nlohmann::json& at(const std::string& name) const;
  nlohmann::json values_ = nlohmann::json::object();
  uint64_t seed_ = 0;
  int64_t train_mb_size_ = 64;
};

using StrategyFactory = std::function<void(Strategy&, const StrategyConfig&)>;

struct StrategyInfo {
  std::string name;
  std::string description;  // one line, with the paper
  std::vector<StrategyOption> options;
  StrategyFactory factory;
  nlohmann::json to_json() const;  // {name, description, options: [...]}
};

void register_strategy(StrategyInfo info);
// Registered strategies, in name order.
std::vector<std::string> strategy_names();
const StrategyInfo& strategy_info(const std::string& name);
bool is_registered_strategy(const std::string& name);
// Every distinct option of every strategy, each once, in name order; with the
// strategies that declare it.
struct OptionUse {
  StrategyOption option;
  std::vector<std::string> strategies;
};
std::vector<OptionUse> all_strategy_options();

// Checks `given` (option name -> value; JSON numbers, strings or booleans,
// or strings to parse as the option's type) against the strategy's options,
// keeps only the strategy's own, and fills in defaults.
nlohmann::json resolve_strategy_options(const std::string& strategy, const nlohmann::json& given);
// Attaches the method's plugins and criterion to the strategy.
void configure_strategy(Strategy& strategy, const std::string& name,
                        const nlohmann::json& given = nlohmann::json::object(), uint64_t seed = 0);

namespace internal {
struct StrategyRegistrar {
  explicit StrategyRegistrar(StrategyInfo info) { register_strategy(std::move(info)); }
};
}  // namespace internal

#define CONTINUA_REGISTER_STRATEGY_CAT2(a, b) a##b
#define CONTINUA_REGISTER_STRATEGY_CAT(a, b) CONTINUA_REGISTER_STRATEGY_CAT2(a, b)
#define CONTINUA_REGISTER_STRATEGY(...)                                                 \
  static ::continua::internal::StrategyRegistrar CONTINUA_REGISTER_STRATEGY_CAT(      \
      continua_strategy_registrar_, __LINE__)(__VA_ARGS__)

}  // namespace continua
