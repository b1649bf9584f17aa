// save_checkpoint / maybe_load_checkpoint: the whole training state of a
// strategy in one verified, atomically written file.
//
// The API continual-learning users know from Python, in C++:
//
//   auto bench = continua::make_benchmark(continua::BenchmarkOptions().seed(1));
//   continua::Strategy strategy(model, options);
//   auto [s, initial_exp] = continua::maybe_load_checkpoint(
//       strategy, "ckpt.safetensors", "cpu", {bench});
//   for (size_t i = initial_exp; i < bench->train_stream().size(); ++i) {
//     s.train(bench->train_stream()[i]);
//     s.eval(bench->test_stream());
//     continua::save_checkpoint(s, "ckpt.safetensors");
//   }
//
// A checkpoint is a safetensors file (docs/checkpoint-format.md): every tensor
// of the state readable by any safetensors reader, the rest of the state
// (counters, hyper-parameters, constructor-serialized datasets and
// benchmarks) in its metadata, every byte under a CRC32C.
//
// Guarantees:
// - save_checkpoint to a path is atomic: the file is either the old one or the
//   new one, complete and synced; no temporary file is left on failure.
// - maybe_load_checkpoint verifies every checksum before using anything, runs
//   no code from the file, allocates nothing the file's size does not back,
//   and is all-or-nothing: on any error the strategy is exactly as it was.
// - A path that does not exist: the strategy unchanged and 0.
//
// Errors: IoError (cannot read or write, disk full), CorruptionError (damaged
// or not a checkpoint), VersionError (another format version),
// InvalidArgument (the state does not fit this strategy, a device this build
// does not have without map_location); each message names the file and the
// key path of the state involved.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "continua/state/checkpointable.h"
#include "continua/state/object_registry.h"
#include "continua/state/state_tree.h"

namespace continua {

namespace io {
class FileSystem;
}

// Where the tensors of a checkpoint go on load: no remapping (default); a
// device; a device string ("cpu", "cuda:1"); a map from saved device strings
// to target device strings; or a callable (tensor, saved device) -> tensor.
// It applies to every tensor and to the strategy's own device. The callable
// receives each tensor on the CPU with the device it was saved on, and
// decides where it goes: a checkpoint saved on cuda:0 loads on a CPU-only
// machine through `[](const at::Tensor& t, const std::string&) { return t; }`.
class MapLocation {
 public:
  using Function = std::function<at::Tensor(const at::Tensor&, const std::string& saved_device)>;
  MapLocation() = default;
  MapLocation(c10::Device device);
  MapLocation(const char* device);
  MapLocation(const std::string& device);
  MapLocation(std::map<std::string, std::string> devices);
  MapLocation(Function function);

  // The device a tensor saved on `saved` goes to (the callable form returns
  // `saved`: the loader sets the strategy's device to where the function put
  // the model's tensors).
  std::string map_device(const std::string& saved) const;
  at::Tensor apply(const at::Tensor& loaded_on_cpu, const std::string& saved) const;
  bool empty() const { return kind_ == Kind::kNone; }
  bool is_function() const { return kind_ == Kind::kFunction; }

 private:
  enum class Kind { kNone, kDevice, kMap, kFunction } kind_ = Kind::kNone;
  std::string device_;
  std::map<std::string, std::string> devices_;
  Function function_;
};

using UniqueObjects = std::vector<std::shared_ptr<const SerializableObject>>;

struct SaveOptions {
  // Parts of the strategy's state not to save, as key paths relative to the
  // strategy ("optimizer", "plugins.replay", "evaluator"). On load, those
  // parts keep their live values.
  SaveOptions& exclude(std::vector<std::string> v) { exclude_ = std::move(v); return *this; }
  // Extra string metadata stored in the file (the CLI stores its resolved
  // configuration under "config").
  SaveOptions& metadata(std::map<std::string, std::string> v) { metadata_ = std::move(v); return *this; }
  // The file system every write goes through (tests inject faults here).
  SaveOptions& file_system(io::FileSystem* v) { fs_ = v; return *this; }

  std::vector<std::string> exclude_;
  std::map<std::string, std::string> metadata_;
  io::FileSystem* fs_ = nullptr;
};

void save_checkpoint(const Checkpointable& strategy, const std::string& path,
                     const SaveOptions& options = {});
void save_checkpoint(const Checkpointable& strategy, std::ostream& out, const SaveOptions& options = {});

// Loads the checkpoint into `strategy` and returns its next experience; 0,
// with the strategy unchanged, when `path` does not exist. Every read (the
// existence check, the file's bytes) goes through `file_system` (null: the
// POSIX one; tests inject read faults there).
int64_t load_checkpoint_if_present(Checkpointable& strategy, const std::string& path,
                                   const MapLocation& map_location = {},
                                   const UniqueObjects& unique_objects = {},
                                   io::FileSystem* file_system = nullptr);
int64_t load_checkpoint_from_stream(Checkpointable& strategy, std::istream& in,
                                    const MapLocation& map_location = {},
                                    const UniqueObjects& unique_objects = {});

// The Python API: {strategy, initial_exp}, with the caller's own type.
template <typename S>
std::pair<S&, int64_t> maybe_load_checkpoint(S& strategy, const std::string& path,
                                             const MapLocation& map_location = {},
                                             const UniqueObjects& unique_objects = {},
                                             io::FileSystem* file_system = nullptr) {
  return {strategy, load_checkpoint_if_present(strategy, path, map_location, unique_objects, file_system)};
}
template <typename S>
std::pair<S&, int64_t> maybe_load_checkpoint(S& strategy, std::istream& in,
                                             const MapLocation& map_location = {},
                                             const UniqueObjects& unique_objects = {}) {
  return {strategy, load_checkpoint_from_stream(strategy, in, map_location, unique_objects)};
}

// Lower level: a verified checkpoint as a state tree plus its metadata.
struct LoadedCheckpoint {
  StateTree tree;  // keys "strategy.*"
  std::map<std::string, std::string> metadata;  // caller metadata (e.g. "config")
  std::vector<std::string> excluded;
  int64_t next_experience = 0;
  uint64_t file_size = 0;
  uint32_t format_version = 0;
  size_t objects_built = 0;  // objects rebuilt rather than reused
};
LoadedCheckpoint read_checkpoint(const std::string& path, const MapLocation& map_location = {},
                                 const UniqueObjects& unique_objects = {},
                                 io::FileSystem* file_system = nullptr);
LoadedCheckpoint read_checkpoint(std::istream& in, const std::string& name,
                                 const MapLocation& map_location = {},
                                 const UniqueObjects& unique_objects = {});
// Loads a tree into the strategy, all or nothing.
int64_t load_state_tree(Checkpointable& strategy, const LoadedCheckpoint& checkpoint);

// The whole state of the strategy as the tree a checkpoint stores.
StateTree strategy_state(const Checkpointable& strategy);

// Writes a state tree as a checkpoint (what save_checkpoint does after
// collecting the state).
void write_checkpoint(const StateTree& tree, int64_t next_experience, const std::string& path,
                      const SaveOptions& options = {});

}  // namespace continua
