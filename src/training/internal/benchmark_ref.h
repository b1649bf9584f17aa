// Helpers for plugins that refer to the experiences of a benchmark.
#pragma once

#include <memory>
#include <string>

#include "continua/data/benchmark.h"
#include "continua/errors.h"
#include "continua/state/state_tree.h"

namespace continua::internal {

inline std::shared_ptr<const Benchmark> origin_of(const Experience& e) {
  if (!e.origin()) throw InvalidArgument("experience " + std::to_string(e.index()) + " has no benchmark");
  return e.origin()->shared_from_this();
}

inline void check_same_benchmark(const std::shared_ptr<const Benchmark>& held, const Experience& e,
                                 const char* plugin) {
  if (held && held.get() != e.origin()) {
    throw InvalidArgument(std::string(plugin) +
                          ": experiences come from another benchmark than the one in memory "
                          "(pass the live benchmark in unique_objects when loading)");
  }
}

inline std::shared_ptr<const Benchmark> read_benchmark(const StateReader& r, const char* key) {
  auto b = std::dynamic_pointer_cast<const Benchmark>(r.object(key));
  if (!b) r.fail(key, "is not a benchmark");
  return b;
}

}  // namespace continua::internal
