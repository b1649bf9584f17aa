#include "continua/state/object_registry.h"

#include <mutex>

#include "continua/errors.h"

namespace continua {
namespace {

struct Registry {
  std::mutex mutex;
  std::map<std::string, ObjectFactory> factories;
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

nlohmann::json describe(const SerializableObject& object) {
  return {{"type", object.type_name()}, {"args", object.constructor_args()}};
}

void register_object_type(const std::string& type_name, ObjectFactory factory) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.factories[type_name] = std::move(factory);
}

bool is_registered_object_type(const std::string& type_name) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return r.factories.count(type_name) > 0;
}

ObjectPool::ObjectPool(const std::vector<std::shared_ptr<const SerializableObject>>& unique_objects) {
  for (const auto& o : unique_objects) add(o);
}

void ObjectPool::add(std::shared_ptr<const SerializableObject> object) {
  if (!object) return;
  for (const auto& child : object->children()) add(child);
  by_description_.emplace(describe(*object).dump(), std::move(object));
}

std::shared_ptr<const SerializableObject> ObjectPool::get(const nlohmann::json& description) {
  if (!description.is_object() || !description.contains("type") ||
      !description["type"].is_string() || !description.contains("args")) {
    throw InvalidArgument("object description must be {\"type\": string, \"args\": ...}, got " +
                          description.dump().substr(0, 200));
  }
  return get(description["type"].get<std::string>(), description["args"]);
}

std::shared_ptr<const SerializableObject> ObjectPool::get(const std::string& type,
                                                          const nlohmann::json& args) {
  nlohmann::json description = {{"type", type}, {"args", args}};
  std::string key = description.dump();
  if (auto it = by_description_.find(key); it != by_description_.end()) return it->second;
  ObjectFactory factory;
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.factories.find(type);
    if (it == r.factories.end()) {
      throw InvalidArgument("no constructor is registered for object type '" + type + "'");
    }
    factory = it->second;
  }
  auto object = factory(args, *this);
  if (!object) throw InvalidArgument("the constructor of object type '" + type + "' returned null");
  ++built_;
  // Keyed by the saved description, so a second reference reuses this object.
  by_description_.emplace(key, object);
  return object;
}

}  // namespace continua
