// Helpers shared by the reliability tests of tests/checkpoint (fault
// injection, corruption sweeps, crafted files, full disk, concurrency).
#pragma once

#include <dirent.h>

#include <algorithm>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "continua/checkpoint/checkpoint.h"
#include "continua/errors.h"
#include "test_util.h"

namespace continua::testing {

// A strategy trained on the first `experiences` experiences of `bench`.
inline std::unique_ptr<Strategy> trained_strategy(const std::string& name, const Benchmark& bench,
                                                  int64_t experiences, uint64_t seed = 1) {
  auto s = make_test_strategy(name, bench, seed);
  for (int64_t i = 0; i < experiences; ++i) s->train(bench.train_stream()[static_cast<size_t>(i)]);
  return s;
}

// The checkpoint bytes save_checkpoint writes for `s`.
inline std::string checkpoint_bytes(const Strategy& s) {
  std::ostringstream out;
  save_checkpoint(s, out);
  return out.str();
}

// Names in a directory, "." and ".." excluded, sorted.
inline std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

// Outcome of loading bytes into a strategy through maybe_load_checkpoint.
enum class LoadOutcome { kLoaded, kCorruption, kVersion, kInvalidArgument, kIoError, kOther };

inline const char* outcome_name(LoadOutcome o) {
  switch (o) {
    case LoadOutcome::kLoaded: return "loaded";
    case LoadOutcome::kCorruption: return "CorruptionError";
    case LoadOutcome::kVersion: return "VersionError";
    case LoadOutcome::kInvalidArgument: return "InvalidArgument";
    case LoadOutcome::kIoError: return "IoError";
    case LoadOutcome::kOther: return "a non-continua exception";
  }
  return "?";
}

inline LoadOutcome try_load(Strategy& s, const std::string& bytes, const UniqueObjects& unique,
                            std::string* message = nullptr) {
  std::istringstream in(bytes);
  try {
    maybe_load_checkpoint(s, in, {}, unique);
    return LoadOutcome::kLoaded;
  } catch (const CorruptionError& e) {
    if (message) *message = e.what();
    return LoadOutcome::kCorruption;
  } catch (const VersionError& e) {
    if (message) *message = e.what();
    return LoadOutcome::kVersion;
  } catch (const InvalidArgument& e) {
    if (message) *message = e.what();
    return LoadOutcome::kInvalidArgument;
  } catch (const IoError& e) {
    if (message) *message = e.what();
    return LoadOutcome::kIoError;
  } catch (const std::exception& e) {
    if (message) *message = e.what();
    return LoadOutcome::kOther;
  }
}

}  // namespace continua::testing
