// The state tree: one typed, named tree holding the whole training state.
//
// Every stateful component of continua (models, optimizers, plugins, the
// evaluator, loggers, the clock, random generators) writes its state into a
// StateTree through a StateWriter and reads it back through a StateReader.
// Keys are stable dotted paths built from names ("strategy.model.fc1.weight",
// "strategy.clock.iteration"), never from pointers or positions, so the tree
// of a resumed run is comparable key by key with an uninterrupted one.
//
// A value is one of: a tensor, a JSON scalar or small JSON document (counters,
// hyper-parameters, names), or a reference to a constructor-serialized object
// (see object_registry.h: datasets and benchmarks are stored as their type and
// constructor arguments, never as bytes).
//
// Usage:
//   struct Counter : continua::Stateful {
//     int64_t n = 0;
//     void save_state(continua::StateWriter& w) const override { w.write("n", n); }
//     void load_state(const continua::StateReader& r) override { n = r.get<int64_t>("n"); }
//   };
//   continua::StateTree tree;
//   continua::StateWriter w(tree, "counter");
//   counter.save_state(w);        // tree holds "counter.n"
//
// Contract: StateReader accessors throw continua::InvalidArgument naming the
// full key path (and the source, e.g. the checkpoint file) when a key is
// missing or holds a value of another kind.
#pragma once

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace continua {

class SerializableObject;

using ObjectRef = std::shared_ptr<const SerializableObject>;
using StateValue = std::variant<at::Tensor, nlohmann::json, ObjectRef>;

// A flat, sorted map from key path to value. Sorted so that iteration order,
// and therefore serialization and digests, never depend on insertion order.
class StateTree {
 public:
  void set(const std::string& key, StateValue value);
  const StateValue* find(const std::string& key) const;
  bool contains(const std::string& key) const { return find(key) != nullptr; }
  void erase_prefix(const std::string& prefix);  // removes prefix and prefix.*

  const std::map<std::string, StateValue>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }

  // Name of the source the tree came from (a checkpoint path), for messages.
  const std::string& source() const { return source_; }
  void set_source(std::string source) { source_ = std::move(source); }

  // A deep copy: tensors are cloned, so the copy does not alias live state.
  StateTree clone() const;

  // SHA-256 in hex over every key, tensor (dtype, shape, bytes), JSON value
  // and object description, in key order.
  std::string digest() const;

 private:
  std::map<std::string, StateValue> entries_;
  std::string source_;
};

// Joins a key path: join_key("a.b", "c") == "a.b.c"; join_key("", "c") == "c".
std::string join_key(std::string_view prefix, std::string_view name);

class StateWriter {
 public:
  explicit StateWriter(StateTree& tree, std::string prefix = "");

  StateWriter child(std::string_view name) const;
  const std::string& prefix() const { return prefix_; }

  // Stores the tensor as it is (no copy); a save serializes it before the
  // next training step changes it.
  void write(std::string_view key, const at::Tensor& tensor);
  void write(std::string_view key, nlohmann::json value);
  void write(std::string_view key, const char* value) { write(key, nlohmann::json(value)); }
  void write_object(std::string_view key, ObjectRef object);

 private:
  StateTree* tree_;
  std::string prefix_;
};

class StateReader {
 public:
  explicit StateReader(const StateTree& tree, std::string prefix = "");

  StateReader child(std::string_view name) const;
  const std::string& prefix() const { return prefix_; }
  const StateTree& tree() const { return *tree_; }

  bool has(std::string_view key) const;
  // True if any key lies under prefix.name.
  bool has_child(std::string_view name) const;

  const at::Tensor& tensor(std::string_view key) const;
  const nlohmann::json& json(std::string_view key) const;
  template <typename T>
  T get(std::string_view key) const {
    const nlohmann::json& j = json(key);
    try {
      return j.get<T>();
    } catch (const nlohmann::json::exception&) {
      type_error(key, "a value of another type");
    }
  }
  const ObjectRef& object(std::string_view key) const;

  // Throws InvalidArgument with the full key path and the source.
  [[noreturn]] void fail(std::string_view key, const std::string& what) const;

 private:
  [[noreturn]] void type_error(std::string_view key, const char* expected) const;
  const StateValue& value(std::string_view key) const;

  const StateTree* tree_;
  std::string prefix_;
};

// Implemented by every component whose state is part of a checkpoint.
class Stateful {
 public:
  virtual ~Stateful() = default;
  virtual void save_state(StateWriter& writer) const = 0;
  virtual void load_state(const StateReader& reader) = 0;
};

}  // namespace continua
