// Parsing of a strategy checkpoint's metadata documents. Everything here runs
// after the header CRC has matched, but a CRC proves only that the writer
// (or someone who recomputed it) produced the bytes, so every type, key and
// number is still checked before the loader uses it.
#include "continua/format/checkpoint_metadata.h"

#include "continua/errors.h"
#include "continua/format/safetensors.h"

namespace continua::format {
namespace {

[[noreturn]] void corrupt(const std::string& name, const std::string& what) {
  throw CorruptionError("corrupt checkpoint '" + name + "': " + what);
}

const std::string& require(const std::map<std::string, std::string>& m, const char* key,
                           const std::string& name) {
  auto it = m.find(key);
  if (it == m.end()) corrupt(name, "metadata '" + std::string(key) + "' is missing");
  return it->second;
}

}  // namespace

bool is_checkpoint_key(std::string_view key) {
  const std::string_view root = kCheckpointRoot;
  return key.size() > root.size() + 1 && key.substr(0, root.size()) == root &&
         key[root.size()] == '.';
}

nlohmann::json parse_bounded_json(std::string_view text, const std::string& what,
                                  const std::string& name) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) {
        corrupt(name, what + " nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
      }
    } else if (c == ']' || c == '}') {
      // A closer without its opener is invalid JSON; stop here so that it
      // cannot buy depth for the openers after it.
      if (--depth < 0) corrupt(name, what + " is not valid JSON: unbalanced '" + c + "'");
    }
  }
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    corrupt(name, what + " is not valid JSON: " + e.what());
  }
}

CheckpointMetadata parse_checkpoint_metadata(const std::map<std::string, std::string>& metadata,
                                             const std::string& name) {
  auto kind = metadata.find(kCheckpointKindKey);
  if (kind == metadata.end() || kind->second != kCheckpointKindStrategy) {
    corrupt(name, "not a strategy checkpoint (metadata 'continua.kind' is missing or not 'strategy')");
  }
  auto doc = [&](const char* key) {
    return parse_bounded_json(require(metadata, key, name), "metadata '" + std::string(key) + "'",
                              name);
  };
  CheckpointMetadata out;
  for (const auto& [k, v] : metadata) {
    if (k.rfind("continua.", 0) != 0) out.user[k] = v;
  }
  out.state = doc(kCheckpointStateKey);
  out.objects = doc(kCheckpointObjectsKey);
  const nlohmann::json devices = doc(kCheckpointDevicesKey);
  const nlohmann::json excluded = doc(kCheckpointExcludedKey);
  auto wrong_type = [&](const char* key, const char* expected) {
    corrupt(name, "metadata '" + std::string(key) + "' has the wrong JSON type (expected " +
                      expected + ")");
  };
  if (!out.state.is_object()) wrong_type(kCheckpointStateKey, "an object");
  if (!out.objects.is_object()) wrong_type(kCheckpointObjectsKey, "an object");
  if (!devices.is_object()) wrong_type(kCheckpointDevicesKey, "an object");
  if (!excluded.is_array()) wrong_type(kCheckpointExcludedKey, "an array");

  for (const auto& e : excluded) {
    if (!e.is_string()) corrupt(name, "metadata 'continua.excluded' holds a non-string");
    out.excluded.push_back(e.get<std::string>());
  }
  for (auto it = devices.begin(); it != devices.end(); ++it) {
    if (!is_checkpoint_key(it.key())) {
      corrupt(name, "metadata 'continua.devices': key '" + it.key() + "' is outside '" +
                        kCheckpointRoot + "'");
    }
    if (!it.value().is_string()) {
      corrupt(name, "metadata 'continua.devices': '" + it.key() + "' is not a device string");
    }
    out.devices[it.key()] = it.value().get<std::string>();
  }
  for (const nlohmann::json* d : {&out.state, &out.objects}) {
    const char* key = d == &out.state ? kCheckpointStateKey : kCheckpointObjectsKey;
    for (auto it = d->begin(); it != d->end(); ++it) {
      if (!is_checkpoint_key(it.key())) {
        corrupt(name, "state key '" + it.key() + "' (in metadata '" + key + "') is outside '" +
                          kCheckpointRoot + "'");
      }
    }
  }
  for (auto it = out.objects.begin(); it != out.objects.end(); ++it) {
    const nlohmann::json& o = it.value();
    if (!o.is_object() || !o.contains("type") || !o["type"].is_string() || !o.contains("args")) {
      corrupt(name, "metadata 'continua.objects': '" + it.key() +
                        "' is not an object description {\"type\": ..., \"args\": ...}");
    }
  }

  // Strictly decimal: std::stoll would accept " 12abc" as 12.
  const std::string& ne = require(metadata, kCheckpointNextExperienceKey, name);
  if (ne.empty() || ne.size() > 18 ||
      ne.find_first_not_of("0123456789") != std::string::npos) {
    corrupt(name, "metadata 'continua.next_experience' is '" + ne.substr(0, 32) +
                      "', not a non-negative decimal number");
  }
  out.next_experience = std::stoll(ne);
  return out;
}

}  // namespace continua::format
