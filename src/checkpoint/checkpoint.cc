#include "continua/checkpoint/checkpoint.h"

#include <ATen/ATen.h>
#include <torch/cuda.h>

#include <filesystem>
#include <fstream>

#include "continua/errors.h"
#include "continua/format/checkpoint_metadata.h"
#include "continua/format/safetensors.h"
#include "continua/io/file_system.h"

namespace continua {
namespace {

// Metadata keys of a strategy checkpoint (docs/checkpoint-format.md).
// One definition, shared with the torch-free parser.
constexpr const char* kKindKey = format::kCheckpointKindKey;
constexpr const char* kKindStrategy = format::kCheckpointKindStrategy;
constexpr const char* kStateKey = format::kCheckpointStateKey;
constexpr const char* kObjectsKey = format::kCheckpointObjectsKey;
constexpr const char* kDevicesKey = format::kCheckpointDevicesKey;
constexpr const char* kNextExperienceKey = format::kCheckpointNextExperienceKey;
constexpr const char* kExcludedKey = format::kCheckpointExcludedKey;
constexpr const char* kRoot = format::kCheckpointRoot;

format::DType to_dtype(at::ScalarType t, const std::string& key) {
  switch (t) {
    case at::kDouble: return format::DType::F64;
    case at::kFloat: return format::DType::F32;
    case at::kHalf: return format::DType::F16;
    case at::kBFloat16: return format::DType::BF16;
    case at::kLong: return format::DType::I64;
    case at::kInt: return format::DType::I32;
    case at::kShort: return format::DType::I16;
    case at::kChar: return format::DType::I8;
    case at::kByte: return format::DType::U8;
    case at::kBool: return format::DType::BOOL;
    default:
      throw InvalidArgument("'" + key + "': tensors of type " + std::string(c10::toString(t)) +
                            " cannot be saved");
  }
}

at::ScalarType to_scalar_type(format::DType t) {
  switch (t) {
    case format::DType::F64: return at::kDouble;
    case format::DType::F32: return at::kFloat;
    case format::DType::F16: return at::kHalf;
    case format::DType::BF16: return at::kBFloat16;
    case format::DType::I64: return at::kLong;
    case format::DType::I32: return at::kInt;
    case format::DType::I16: return at::kShort;
    case format::DType::I8: return at::kChar;
    case format::DType::U8: return at::kByte;
    case format::DType::BOOL: return at::kBool;
  }
  return at::kByte;
}

bool excluded(const std::string& key, const std::vector<std::string>& prefixes) {
  for (const auto& p : prefixes) {
    const std::string full = std::string(kRoot) + "." + p;
    if (key.compare(0, full.size(), full) == 0 && (key.size() == full.size() || key[full.size()] == '.')) {
      return true;
    }
  }
  return false;
}

// What a checkpoint file holds, prepared for the format writer.
struct Prepared {
  std::vector<at::Tensor> keep;  // CPU, contiguous copies that back the views
  std::vector<format::TensorView> views;
  std::map<std::string, std::string> metadata;
};

Prepared prepare(const StateTree& tree, int64_t next_experience, const SaveOptions& options) {
  for (const auto& [k, v] : options.metadata_) {
    if (k.rfind("continua.", 0) == 0) {
      throw InvalidArgument("metadata key '" + k + "' is reserved (keys starting with 'continua.')");
    }
  }
  Prepared p;
  nlohmann::json state = nlohmann::json::object();
  nlohmann::json objects = nlohmann::json::object();
  nlohmann::json devices = nlohmann::json::object();
  for (const auto& [key, value] : tree.entries()) {
    if (excluded(key, options.exclude_)) continue;
    if (const auto* t = std::get_if<at::Tensor>(&value)) {
      if (!t->defined()) continue;
      at::Tensor c = t->detach();
      if (!c.device().is_cpu()) devices[key] = c.device().str();
      c = c.to(at::kCPU).contiguous();
      p.views.push_back({key, to_dtype(c.scalar_type(), key), c.sizes().vec(), c.data_ptr(),
                         uint64_t(c.nbytes())});
      p.keep.push_back(std::move(c));
    } else if (const auto* j = std::get_if<nlohmann::json>(&value)) {
      state[key] = *j;
    } else if (const auto& o = std::get<ObjectRef>(value)) {
      objects[key] = describe(*o);
    }
  }
  p.metadata = options.metadata_;
  p.metadata[kKindKey] = kKindStrategy;
  p.metadata[kStateKey] = state.dump();
  p.metadata[kObjectsKey] = objects.dump();
  p.metadata[kDevicesKey] = devices.dump();
  p.metadata[kNextExperienceKey] = std::to_string(next_experience);
  p.metadata[kExcludedKey] = nlohmann::json(options.exclude_).dump();
  return p;
}

[[noreturn]] void corrupt(const std::string& name, const std::string& what) {
  throw CorruptionError("corrupt checkpoint '" + name + "': " + what);
}

LoadedCheckpoint read(const format::SafetensorsReader& r, const MapLocation& map_location,
                      const UniqueObjects& unique_objects) {
  const std::string& name = r.name();
  r.verify_all();
  // The metadata documents are parsed and checked torch-free, by the same
  // code the fuzzer runs (src/format/checkpoint_metadata.cc).
  format::CheckpointMetadata meta = format::parse_checkpoint_metadata(r.metadata(), name);
  LoadedCheckpoint out;
  out.file_size = r.file_size();
  out.format_version = r.format_version();
  out.tree.set_source(name);
  out.tree.set_release_hook(r.page_dropper());  // copied tensors leave memory
  out.metadata = std::move(meta.user);
  out.excluded = std::move(meta.excluded);
  out.next_experience = meta.next_experience;
  const nlohmann::json& state = meta.state;
  const nlohmann::json& objects = meta.objects;

  auto check_key = [&](const std::string& key) {
    if (key.rfind(std::string(kRoot) + ".", 0) != 0) {
      corrupt(name, "state key '" + key + "' is outside '" + kRoot + "'");
    }
  };
  // Tensors: views of the file's bytes (the consumers copy what they keep),
  // moved where map_location says.
  auto owner = r.keep_alive();
  std::string function_model_device;  // a callable map_location: where it put the model
  for (const format::TensorInfo& info : r.tensors()) {
    check_key(info.name);
    std::string saved_device = "cpu";
    if (auto d = meta.devices.find(info.name); d != meta.devices.end()) saved_device = d->second;
    at::Tensor t = at::from_blob(const_cast<uint8_t*>(r.data(info)), info.shape,
                                 [owner](void*) {}, at::TensorOptions().dtype(to_scalar_type(info.dtype)));
    if (map_location.is_function()) {
      // The function places the tensor itself; a failure names the tensor.
      try {
        at::Tensor placed = map_location.apply(t, saved_device);
        if (function_model_device.empty() && info.name.rfind(std::string(kRoot) + ".model.", 0) == 0) {
          function_model_device = placed.device().str();
        }
        out.tree.set(info.name, std::move(placed));
      } catch (const c10::Error& e) {
        throw InvalidArgument("checkpoint '" + name + "': tensor '" + info.name + "' (saved on " + saved_device +
                              "): map_location function failed: " + e.what_without_backtrace());
      }
      continue;
    }
    std::string target = map_location.map_device(saved_device);
    c10::Device target_device(c10::kCPU);
    try {
      target_device = c10::Device(target);
    } catch (const c10::Error&) {
      throw InvalidArgument("checkpoint '" + name + "': '" + info.name + "': map_location gives '" +
                            target + "', which is not a device");
    }
    if (target_device.is_cuda() && !torch::cuda::is_available()) {
      throw InvalidArgument("checkpoint '" + name + "': tensor '" + info.name + "' was saved on " +
                            saved_device + ", which this build or machine does not have; pass " +
                            "map_location (for example \"cpu\") to load it elsewhere");
    }
    out.tree.set(info.name, map_location.apply(t, saved_device));
  }
  for (auto it = state.begin(); it != state.end(); ++it) {
    check_key(it.key());
    nlohmann::json v = it.value();
    if (it.key() == std::string(kRoot) + ".device" && v.is_string()) {
      v = map_location.is_function() && !function_model_device.empty()
              ? function_model_device
              : map_location.map_device(v.get<std::string>());
    }
    out.tree.set(it.key(), std::move(v));
  }
  ObjectPool pool(unique_objects);
  for (auto it = objects.begin(); it != objects.end(); ++it) {
    check_key(it.key());
    try {
      out.tree.set(it.key(), pool.get(it.value()));
    } catch (const std::exception& e) {  // factories may throw JSON or torch errors too
      throw InvalidArgument("checkpoint '" + name + "': '" + it.key() +
                            "': cannot rebuild the object: " + e.what());
    }
  }
  out.objects_built = pool.built();
  return out;
}

}  // namespace

// ------------------------------------------------------------ MapLocation

MapLocation::MapLocation(c10::Device device) : kind_(Kind::kDevice), device_(device.str()) {}
MapLocation::MapLocation(const char* device) : MapLocation(std::string(device)) {}
MapLocation::MapLocation(const std::string& device) : kind_(Kind::kDevice), device_(device) {
  try {
    c10::Device d(device);
    device_ = d.str();
  } catch (const c10::Error&) {
    throw InvalidArgument("map_location: not a device: '" + device + "'");
  }
}
MapLocation::MapLocation(std::map<std::string, std::string> devices)
    : kind_(Kind::kMap), devices_(std::move(devices)) {}
MapLocation::MapLocation(Function function) : kind_(Kind::kFunction), function_(std::move(function)) {}

std::string MapLocation::map_device(const std::string& saved) const {
  switch (kind_) {
    case Kind::kNone:
    case Kind::kFunction:  // the loader uses where the function put the model's tensors
      return saved;
    case Kind::kDevice:
      return device_;
    case Kind::kMap: {
      auto it = devices_.find(saved);
      return it == devices_.end() ? saved : it->second;
    }
  }
  return saved;
}

at::Tensor MapLocation::apply(const at::Tensor& t, const std::string& saved) const {
  if (kind_ == Kind::kFunction) {
    at::Tensor out = function_(t, saved);
    if (!out.defined()) throw InvalidArgument("map_location function returned an undefined tensor");
    return out;
  }
  const std::string target = map_device(saved);
  if (target == "cpu") return t;
  return t.to(c10::Device(target));
}

// ------------------------------------------------------------ save

StateTree strategy_state(const Checkpointable& strategy) {
  StateTree tree;
  StateWriter w(tree, kRoot);
  strategy.save_state(w);
  return tree;
}

void write_checkpoint(const StateTree& tree, int64_t next_experience, const std::string& path,
                      const SaveOptions& options) {
  Prepared p = prepare(tree, next_experience, options);
  io::FileSystem& fs = options.fs_ ? *options.fs_ : io::default_file_system();
  format::save_file(fs, path, p.views, p.metadata);
}

void save_checkpoint(const Checkpointable& strategy, const std::string& path, const SaveOptions& options) {
  write_checkpoint(strategy_state(strategy), strategy.next_experience(), path, options);
}

void save_checkpoint(const Checkpointable& strategy, std::ostream& out, const SaveOptions& options) {
  Prepared p = prepare(strategy_state(strategy), strategy.next_experience(), options);
  format::write_safetensors(out, p.views, p.metadata);
  out.flush();
  if (!out) throw IoError("cannot write checkpoint to stream");
}

// ------------------------------------------------------------ load

LoadedCheckpoint read_checkpoint(const std::string& path, const MapLocation& map_location,
                                 const UniqueObjects& unique_objects, io::FileSystem* file_system) {
  return read(format::SafetensorsReader::open_file(path, format::ReadOptions().file_system(file_system)),
              map_location, unique_objects);
}

LoadedCheckpoint read_checkpoint(std::istream& in, const std::string& name,
                                 const MapLocation& map_location,
                                 const UniqueObjects& unique_objects) {
  return read(format::SafetensorsReader::from_stream(in, name), map_location, unique_objects);
}

int64_t load_state_tree(Checkpointable& strategy, const LoadedCheckpoint& checkpoint) {
  // All or nothing without a copy of the live state: every component checks
  // and stages its part (Stateful::stage_load) before any changes; the
  // commit then copies into the live tensors.
  StateTree merged = checkpoint.tree;  // handles only; shares the release hook
  if (!checkpoint.excluded.empty()) {
    // Excluded parts keep their live values (handles, not copies).
    const StateTree live = strategy_state(strategy);
    for (const auto& [key, value] : live.entries()) {
      if (excluded(key, checkpoint.excluded)) merged.set(key, value);
    }
  }
  const std::string refused = "checkpoint '" + checkpoint.tree.source() + "': the state does not fit this strategy: ";
  LoadTransaction tx;
  try {
    strategy.stage_load(StateReader(merged, kRoot), tx);
    // Components that do not stage (user plugins) load first, restored if
    // they throw; the staged steps throw nothing but resource errors.
    tx.commit();
  } catch (const Error&) {
    throw;
  } catch (const c10::Error& e) {
    // A component let a foreign exception through (a torch error on a tensor
    // of the wrong shape or type): same contract, one of our types.
    throw InvalidArgument(refused + e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {  // e.g. a JSON type error
    throw InvalidArgument(refused + e.what());
  }
  return checkpoint.next_experience;
}

int64_t load_checkpoint_if_present(Checkpointable& strategy, const std::string& path,
                                   const MapLocation& map_location, const UniqueObjects& unique_objects,
                                   io::FileSystem* file_system) {
  io::FileSystem& fs = file_system ? *file_system : io::default_file_system();
  if (!fs.exists(path)) return 0;
  return load_state_tree(strategy, read_checkpoint(path, map_location, unique_objects, &fs));
}

int64_t load_checkpoint_from_stream(Checkpointable& strategy, std::istream& in,
                                    const MapLocation& map_location, const UniqueObjects& unique_objects) {
  return load_state_tree(strategy, read_checkpoint(in, "<stream>", map_location, unique_objects));
}

}  // namespace continua
