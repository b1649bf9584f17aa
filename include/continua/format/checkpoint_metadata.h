// The metadata documents of a strategy checkpoint, parsed and type-checked
// without LibTorch: the one implementation the loader (src/checkpoint) and
// the fuzzer (fuzz/) share.
//
// A strategy checkpoint's "__metadata__" holds, besides the caller's keys,
// "continua.kind" = "strategy", JSON documents under "continua.state",
// "continua.objects", "continua.devices", "continua.excluded", and the
// decimal "continua.next_experience" (docs/checkpoint-format.md).
//
// Usage:
//   auto r = continua::format::SafetensorsReader::open_file(path);
//   r.verify_all();
//   continua::format::CheckpointMetadata m =
//       continua::format::parse_checkpoint_metadata(r.metadata(), r.name());
//   for (auto& [key, value] : m.state.items()) ...  // keys start "strategy."
//
// Contract: throws continua::CorruptionError ("corrupt checkpoint '<name>':
// metadata '<key>' ...") for a missing key, a document that is not JSON,
// nests deeper than kMaxJsonDepth, has the wrong JSON type, a state or
// object key outside "strategy.", a device that is not a string, or a
// next_experience that is not a non-negative decimal. Runs no code from the
// file; memory is bounded by a small multiple of the documents' size.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace continua::format {

inline constexpr const char* kCheckpointKindKey = "continua.kind";
inline constexpr const char* kCheckpointKindStrategy = "strategy";
inline constexpr const char* kCheckpointStateKey = "continua.state";
inline constexpr const char* kCheckpointObjectsKey = "continua.objects";
inline constexpr const char* kCheckpointDevicesKey = "continua.devices";
inline constexpr const char* kCheckpointNextExperienceKey = "continua.next_experience";
inline constexpr const char* kCheckpointExcludedKey = "continua.excluded";
// Every key of the state, objects and devices documents (and every tensor
// name) starts with this and a dot.
inline constexpr const char* kCheckpointRoot = "strategy";

struct CheckpointMetadata {
  nlohmann::json state = nlohmann::json::object();    // key path -> JSON value
  nlohmann::json objects = nlohmann::json::object();  // key path -> {"type","args"}
  std::map<std::string, std::string> devices;         // tensor key -> saved device
  std::vector<std::string> excluded;
  int64_t next_experience = 0;
  std::map<std::string, std::string> user;  // the caller's keys (not "continua.*")
};

CheckpointMetadata parse_checkpoint_metadata(const std::map<std::string, std::string>& metadata,
                                             const std::string& name_for_errors);

// True if `key` is a key path under kCheckpointRoot ("strategy.x...").
bool is_checkpoint_key(std::string_view key);

// Parses one JSON document after bounding its nesting depth (the parser
// would otherwise recurse on hostile input); throws CorruptionError naming
// `what` and the file.
nlohmann::json parse_bounded_json(std::string_view text, const std::string& what,
                                  const std::string& name_for_errors);

}  // namespace continua::format
