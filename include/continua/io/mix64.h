// splitmix64's finalizer: a bijection on 64-bit words that sends neighbouring
// inputs to unrelated outputs. For deriving seeds and names from counters,
// never for security.
//
// Usage:
//   uint64_t seed = continua::io::mix64(base + iteration);
//
// Contract: mix64(x) = splitmix64's output for the state x; finalize64 is its
// last three steps alone (mix64(x) == finalize64(x + 0x9E3779B97F4A7C15)).
#pragma once

#include <cstdint>

namespace continua::io {

constexpr uint64_t finalize64(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

constexpr uint64_t mix64(uint64_t x) { return finalize64(x + 0x9E3779B97F4A7C15ull); }

}  // namespace continua::io
