#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "continua/checkpoint/checkpoint.h"
#include "continua/errors.h"
#include "continua/format/checkpoint_metadata.h"
#include "continua/format/safetensors.h"

namespace continua::cli {

int inspect(const std::string& path, bool as_json) {
  // read_checkpoint verifies every checksum; the second open only lists the
  // tensors' layout, so the data is not checked twice.
  LoadedCheckpoint ck = read_checkpoint(path);
  auto reader = format::SafetensorsReader::open_file(path);
  nlohmann::json j;
  j["file"] = path;
  j["format_version"] = ck.format_version;
  j["file_size"] = ck.file_size;
  j["next_experience"] = ck.next_experience;
  j["excluded"] = ck.excluded;
  uint64_t tensor_bytes = 0;
  nlohmann::json tensors = nlohmann::json::array();
  for (const auto& t : reader.tensors()) {
    tensor_bytes += t.nbytes;
    tensors.push_back({{"name", t.name}, {"dtype", format::dtype_name(t.dtype)},
                       {"shape", t.shape}, {"bytes", t.nbytes}});
  }
  j["tensor_bytes"] = tensor_bytes;
  j["tensors"] = tensors;
  nlohmann::json values = nlohmann::json::object();
  nlohmann::json objects = nlohmann::json::object();
  for (const auto& [key, value] : ck.tree.entries()) {
    if (const auto* v = std::get_if<nlohmann::json>(&value)) values[key] = *v;
    if (const auto* o = std::get_if<ObjectRef>(&value)) objects[key] = describe(**o);
  }
  j["values"] = values;
  j["objects"] = objects;
  if (auto it = ck.metadata.find("config"); it != ck.metadata.end()) {
    try {
      j["config"] = nlohmann::json::parse(it->second);
    } catch (const nlohmann::json::exception&) {
      j["config"] = it->second;
    }
  }
  if (as_json) {
    std::cout << j.dump(2) << std::endl;
    return 0;
  }
  std::cout << fmt::format("checkpoint {}\n  format version {}, {} bytes, {} tensors ({} bytes)\n",
                           path, ck.format_version, ck.file_size, reader.tensors().size(), tensor_bytes);
  std::cout << fmt::format("  next experience {}\n", ck.next_experience);
  if (j.contains("config")) std::cout << "  config " << j["config"].dump() << "\n";
  std::cout << "tensors:\n";
  for (const auto& t : reader.tensors()) {
    std::string shape;
    for (size_t i = 0; i < t.shape.size(); ++i) shape += (i ? "x" : "") + std::to_string(t.shape[i]);
    std::cout << fmt::format("  {:<60} {:<5} [{}]\n", t.name, format::dtype_name(t.dtype), shape);
  }
  std::cout << "values:\n";
  for (auto it = values.begin(); it != values.end(); ++it) {
    std::string v = it.value().dump();
    if (v.size() > 100) v = v.substr(0, 97) + "...";
    std::cout << fmt::format("  {:<60} {}\n", it.key(), v);
  }
  std::cout << "objects:\n";
  for (auto it = objects.begin(); it != objects.end(); ++it) {
    std::cout << fmt::format("  {:<60} {}\n", it.key(), it.value().dump());
  }
  return 0;
}

int verify(const std::string& path) {
  try {
    auto reader = format::SafetensorsReader::open_file(path);
    reader.verify_all();
    // Parses and checks every metadata document with the loader's own
    // parser, without rebuilding datasets or touching LibTorch.
    format::parse_checkpoint_metadata(reader.metadata(), reader.name());
    std::cout << "ok: " << path << " (" << reader.file_size() << " bytes, " << reader.tensors().size()
              << " tensors, every checksum verified)\n";
    return 0;
  } catch (const Error& e) {
    std::cerr << "continua verify: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace continua::cli
