#include "continua/training/registry.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <map>

#include "continua/errors.h"
#include "continua/training/strategy.h"

namespace continua {

StrategyOption StrategyOption::integer(std::string name, int64_t def, std::string help, bool fixed) {
  return {std::move(name), "int", def, std::move(help), fixed, {}};
}
StrategyOption StrategyOption::real(std::string name, double def, std::string help, bool fixed) {
  return {std::move(name), "real", def, std::move(help), fixed, {}};
}
StrategyOption StrategyOption::text(std::string name, std::string def, std::string help,
                                    std::vector<std::string> choices, bool fixed) {
  return {std::move(name), "string", std::move(def), std::move(help), fixed, std::move(choices)};
}
StrategyOption StrategyOption::flag(std::string name, bool def, std::string help, bool fixed) {
  return {std::move(name), "bool", def, std::move(help), fixed, {}};
}

std::string StrategyOption::config_key() const {
  std::string k = name;
  std::replace(k.begin(), k.end(), '-', '_');
  return k;
}

std::string StrategyOption::default_text() const {
  return default_value.is_string() ? default_value.get<std::string>() : default_value.dump();
}

nlohmann::json StrategyOption::to_json() const {
  nlohmann::json j = {{"name", name}, {"type", type}, {"default", default_value}, {"help", help},
                      {"fixed_at_resume", fixed_at_resume}};
  if (!choices.empty()) j["choices"] = choices;
  return j;
}

const std::vector<StrategyOption>& memory_options() {
  static const std::vector<StrategyOption> options = {
      StrategyOption::integer("mem-size", 500, "samples in the memory (indices into the datasets)", true),
      StrategyOption::integer("mem-mb-size", 0,
                              "memory samples replayed per iteration (0: the train mini-batch size)"),
      StrategyOption::text("replay-policy", "experience-balanced",
                           "which samples the memory keeps: experience-balanced (Avalanche's "
                           "ReplayPlugin default), class-balanced, reservoir",
                           {"experience-balanced", "class-balanced", "reservoir"}, true),
  };
  return options;
}

// ---------------------------------------------------------------- config

const nlohmann::json& StrategyConfig::at(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) throw InvalidArgument("strategy option --" + name + " is not declared");
  return *it;
}
int64_t StrategyConfig::integer(const std::string& name) const { return at(name).get<int64_t>(); }
double StrategyConfig::real(const std::string& name) const { return at(name).get<double>(); }
const std::string& StrategyConfig::text(const std::string& name) const {
  return at(name).get_ref<const std::string&>();
}
bool StrategyConfig::flag(const std::string& name) const { return at(name).get<bool>(); }

// ---------------------------------------------------------------- registry

nlohmann::json StrategyInfo::to_json() const {
  nlohmann::json opts = nlohmann::json::array();
  for (const auto& o : options) opts.push_back(o.to_json());
  return {{"name", name}, {"description", description}, {"options", opts}};
}

namespace {

std::map<std::string, StrategyInfo>& registry() {
  static std::map<std::string, StrategyInfo> r;
  return r;
}

bool same_declaration(const StrategyOption& a, const StrategyOption& b) {
  return a.type == b.type && a.default_value == b.default_value && a.choices == b.choices &&
         a.fixed_at_resume == b.fixed_at_resume;
}

// A value of the option's type from JSON, or from the text of a command line.
nlohmann::json parse_value(const StrategyOption& o, const nlohmann::json& v) {
  auto bad = [&](const std::string& why) -> nlohmann::json {
    throw InvalidArgument("--" + o.name + ": " + why);
  };
  if (v.is_string() && o.type != "string") {
    const std::string s = v.get<std::string>();
    if (o.type == "bool") {
      if (s == "true" || s == "1" || s == "yes") return true;
      if (s == "false" || s == "0" || s == "no") return false;
      return bad("expected true or false, got '" + s + "'");
    }
    errno = 0;
    char* end = nullptr;
    if (o.type == "int") {
      const long long x = std::strtoll(s.c_str(), &end, 10);
      if (s.empty() || *end != '\0' || errno) return bad("expected an integer, got '" + s + "'");
      return int64_t(x);
    }
    const double x = std::strtod(s.c_str(), &end);
    if (s.empty() || *end != '\0' || errno) return bad("expected a number, got '" + s + "'");
    return x;
  }
  if (o.type == "int" && v.is_number_integer()) return v;
  if (o.type == "real" && v.is_number()) return v.get<double>();
  if (o.type == "bool" && v.is_boolean()) return v;
  if (o.type == "string" && v.is_string()) {
    if (!o.choices.empty() &&
        std::find(o.choices.begin(), o.choices.end(), v.get<std::string>()) == o.choices.end()) {
      std::string known;
      for (const auto& c : o.choices) known += (known.empty() ? "" : ", ") + c;
      return bad("unknown value '" + v.get<std::string>() + "' (known: " + known + ")");
    }
    return v;
  }
  return bad("expected a value of type " + o.type + ", got " + v.dump());
}

}  // namespace

void register_strategy(StrategyInfo info) {
  auto& r = registry();
  if (info.name.empty() || !info.factory) throw InvalidArgument("a strategy needs a name and a factory");
  if (r.count(info.name)) throw InvalidArgument("strategy '" + info.name + "' is registered twice");
  for (const auto& o : info.options) {
    for (const auto& [other, oi] : r) {
      for (const auto& p : oi.options) {
        if (p.name == o.name && !same_declaration(p, o)) {
          throw InvalidArgument("strategy '" + info.name + "' declares --" + o.name +
                                " unlike strategy '" + other + "'");
        }
      }
    }
  }
  r.emplace(info.name, std::move(info));
}

std::vector<std::string> strategy_names() {
  std::vector<std::string> names;
  for (const auto& [name, info] : registry()) names.push_back(name);
  return names;
}

bool is_registered_strategy(const std::string& name) { return registry().count(name) > 0; }

const StrategyInfo& strategy_info(const std::string& name) {
  auto it = registry().find(name);
  if (it == registry().end()) {
    std::string known;
    for (const auto& n : strategy_names()) known += (known.empty() ? "" : ", ") + n;
    throw InvalidArgument("--strategy: unknown strategy '" + name + "' (known: " + known + ")");
  }
  return it->second;
}

std::vector<OptionUse> all_strategy_options() {
  std::map<std::string, OptionUse> uses;
  for (const auto& [name, info] : registry()) {
    for (const auto& o : info.options) {
      auto [it, fresh] = uses.emplace(o.name, OptionUse{o, {}});
      it->second.strategies.push_back(name);
    }
  }
  std::vector<OptionUse> out;
  for (auto& [n, u] : uses) out.push_back(std::move(u));
  return out;
}

nlohmann::json resolve_strategy_options(const std::string& strategy, const nlohmann::json& given) {
  const StrategyInfo& info = strategy_info(strategy);
  nlohmann::json values = nlohmann::json::object();
  for (const auto& o : info.options) {
    auto it = given.find(o.name);
    if (it == given.end()) it = given.find(o.config_key());
    values[o.name] = parse_value(o, it == given.end() ? o.default_value : *it);
  }
  return values;
}

void configure_strategy(Strategy& strategy, const std::string& name, const nlohmann::json& given,
                        uint64_t seed) {
  const StrategyInfo& info = strategy_info(name);
  StrategyConfig config(resolve_strategy_options(name, given), seed, strategy.options().train_mb_size_);
  info.factory(strategy, config);
}

}  // namespace continua
