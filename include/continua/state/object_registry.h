// Constructor-based serialization: objects stored as their type name and
// constructor arguments, rebuilt from them on load, never stored as bytes.
//
// Datasets and benchmarks implement SerializableObject and register a factory
// under their type name. A checkpoint then stores, for each such object, only
// {"type": ..., "args": {...}}. On load, the object is looked up first among
// the live objects the caller hands in (unique_objects): a live object with the
// same type and the same arguments is reused, so a resumed process holds each
// dataset once; otherwise the registered factory rebuilds it.
//
// Usage:
//   class MyDataset : public continua::SerializableObject {
//     std::string type_name() const override { return "my-dataset"; }
//     nlohmann::json constructor_args() const override { return {{"path", path_}}; }
//   };
//   CONTINUA_REGISTER_OBJECT("my-dataset", [](const nlohmann::json& a, continua::ObjectPool&) {
//     return std::make_shared<MyDataset>(a.at("path").get<std::string>());
//   });
//
// Contract: ObjectPool::get throws continua::InvalidArgument for a type that no
// factory is registered under; factories run only code of this program, chosen
// by name — the file supplies data, never code.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace continua {

class SerializableObject {
 public:
  virtual ~SerializableObject() = default;
  virtual std::string type_name() const = 0;
  // Everything needed to rebuild the object with its factory. Must be
  // deterministic: equal objects give equal arguments.
  virtual nlohmann::json constructor_args() const = 0;
  // Objects this one owns and exposes for reuse (a benchmark's datasets).
  virtual std::vector<std::shared_ptr<const SerializableObject>> children() const { return {}; }
};

// {"type": type_name(), "args": constructor_args()}: what a checkpoint stores
// and what unique_objects are matched by.
nlohmann::json describe(const SerializableObject& object);

class ObjectPool;
using ObjectFactory = std::function<std::shared_ptr<const SerializableObject>(
    const nlohmann::json& args, ObjectPool& pool)>;

void register_object_type(const std::string& type_name, ObjectFactory factory);
bool is_registered_object_type(const std::string& type_name);

// Resolves object descriptions to live objects: reuses the unique objects it
// was given (and their children) when the description matches, else builds
// with the registered factory and remembers the result, so one description
// yields one object.
class ObjectPool {
 public:
  ObjectPool() = default;
  explicit ObjectPool(const std::vector<std::shared_ptr<const SerializableObject>>& unique_objects);

  void add(std::shared_ptr<const SerializableObject> object);
  std::shared_ptr<const SerializableObject> get(const nlohmann::json& description);
  std::shared_ptr<const SerializableObject> get(const std::string& type, const nlohmann::json& args);

  // How many objects get() built rather than reused (for tests and logs).
  size_t built() const { return built_; }

 private:
  std::map<std::string, std::shared_ptr<const SerializableObject>> by_description_;
  size_t built_ = 0;
};

namespace internal {
struct ObjectRegistrar {
  ObjectRegistrar(const std::string& type_name, ObjectFactory factory) {
    register_object_type(type_name, std::move(factory));
  }
};
}  // namespace internal

#define CONTINUA_REGISTER_OBJECT_CAT2(a, b) a##b
#define CONTINUA_REGISTER_OBJECT_CAT(a, b) CONTINUA_REGISTER_OBJECT_CAT2(a, b)
#define CONTINUA_REGISTER_OBJECT(type_name, factory)              \
  static ::continua::internal::ObjectRegistrar CONTINUA_REGISTER_OBJECT_CAT( \
      continua_object_registrar_, __LINE__)(type_name, factory)

}  // namespace continua
