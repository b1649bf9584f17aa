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
#include <functional>
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
  // The clone has no release hook.
  StateTree clone() const;

  // What the tree's source does with the bytes of a tensor a component has
  // copied out (StateReader::copy_into): a checkpoint mapped from a file
  // returns those pages to the page cache, so that a load holds the state
  // plus one slice rather than the state plus the whole file. Copies of the
  // tree share the hook; it ignores memory that is not its source's.
  using ReleaseHook = std::function<void(const void* data, size_t bytes)>;
  void set_release_hook(ReleaseHook hook) { release_ = std::move(hook); }
  void release(const void* data, size_t bytes) const {
    if (release_) release_(data, bytes);
  }

  // SHA-256 in hex over every key, tensor (dtype, shape, bytes), JSON value
  // and object description, in key order.
  std::string digest() const;

 private:
  std::map<std::string, StateValue> entries_;
  std::string source_;
  ReleaseHook release_;
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

  // Copies the tensor at `key` into `dst`, which must have its shape
  // (InvalidArgument naming the key otherwise); dtype and device are
  // converted. Contiguous CPU tensors are copied in slices of 16 MiB, each
  // released to the tree's source once copied (StateTree::set_release_hook),
  // so a checkpoint is loaded into live tensors without holding the file.
  void copy_into(std::string_view key, const at::Tensor& dst) const;
  // The same into a new tensor of the saved shape on `options` (dtype and
  // device; by default those of the saved tensor).
  at::Tensor copy_out(std::string_view key) const;
  at::Tensor copy_out(std::string_view key, const at::TensorOptions& options) const;

  // Throws InvalidArgument with the full key path and the source.
  [[noreturn]] void fail(std::string_view key, const std::string& what) const;

 private:
  [[noreturn]] void type_error(std::string_view key, const char* expected) const;
  const StateValue& value(std::string_view key) const;

  const StateTree* tree_;
  std::string prefix_;
};

class Stateful;

// A load in two phases, so that a strategy loads a checkpoint all or nothing
// without keeping a copy of its live state (docs/reliability.md). Components
// stage (Stateful::stage_load): they check everything the reader holds for
// them and prepare it, changing nothing live, and add the steps that make it
// live; commit() then runs those steps, which throw nothing but resource
// errors (out of memory). Steps may refer to the reader's tree, which must
// outlive the commit.
//
// A component that does not stage (the default stage_load) is loaded by its
// load_state at commit, before any staged step; its own state is backed up
// first (save_state, cloned) and put back if its load_state, or that of a
// later unstaged component, throws. Components with large state should stage.
class LoadTransaction {
 public:
  void load_later(Stateful& component, const StateReader& reader);
  void then(std::function<void()> step);
  void commit();

 private:
  struct Unstaged {
    Stateful* component;
    StateReader reader;
  };
  std::vector<Unstaged> unstaged_;
  std::vector<std::function<void()>> steps_;
};

// Implemented by every component whose state is part of a checkpoint.
class Stateful {
 public:
  virtual ~Stateful() = default;
  virtual void save_state(StateWriter& writer) const = 0;
  virtual void load_state(const StateReader& reader) = 0;
  // See LoadTransaction. Throws like load_state, before changing anything.
  virtual void stage_load(const StateReader& reader, LoadTransaction& tx) { tx.load_later(*this, reader); }
};

// load_state of a component that stages: stage, then commit.
void load_staged(Stateful& component, const StateReader& reader);

}  // namespace continua
