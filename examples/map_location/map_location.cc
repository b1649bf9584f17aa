// map_location: where the tensors of a checkpoint go on load.
//
//   map_location DIR
//
// Trains one experience, saves DIR/cpu.safetensors, and loads it into fresh
// strategies with each form of continua::MapLocation: a torch device, a
// device string, a map from saved to target devices, and a callable that
// sees every tensor (here it logs them and keeps them on the CPU). Then it
// makes DIR/cuda.safetensors, the same checkpoint as a GPU machine would
// have written it (its metadata records cuda:0 for the model's tensors and
// the strategy's device), shows that loading it on this CPU-only machine
// without a map fails with a message naming the device, and loads it with
// {"cuda:0": "cpu"}. Each load is checked: the loaded state's digest equals
// the saved one. Exit status 1 if a check fails.
#include <continua/continua.h>
#include <continua/format/checkpoint_metadata.h>
#include <continua/format/safetensors.h>
#include <continua/io/file_system.h>

#include <ATen/Context.h>
#include <c10/core/Device.h>

#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <string>

namespace {

std::shared_ptr<continua::Benchmark> bench;

std::unique_ptr<continua::Strategy> make_strategy() {
  at::manual_seed(4);
  auto s = std::make_unique<continua::Strategy>(
      continua::make_model(continua::ModelOptions().input_size(bench->input_size()).hidden(32)),
      continua::StrategyOptions().epochs(1).seed(4));
  s->add_plugin(std::make_shared<continua::ReplayPlugin>(continua::ReplayPlugin::Options{100}));
  return s;
}

int failures = 0;

// Loads `path` with `map` into a fresh strategy; checks the digest.
void load_with(const std::string& label, const std::string& path, const continua::MapLocation& map,
               const std::string& want) {
  auto s = make_strategy();
  continua::maybe_load_checkpoint(*s, path, map, {bench});
  const bool ok = s->state_digest() == want && s->device() == c10::Device(c10::kCPU);
  std::cout << (ok ? "  ok: " : "  FAILED: ") << label << " -> strategy on " << s->device()
            << ", state " << (s->state_digest() == want ? "equals" : "DIFFERS FROM") << " the saved one\n";
  if (!ok) ++failures;
}

// The checkpoint a CUDA run would write: same tensors (safetensors stores
// bytes, not devices), and the metadata that records where they were. On a
// GPU machine, StrategyOptions().device("cuda:0") produces this for real.
void as_if_saved_on_cuda(const std::string& src, const std::string& dst) {
  namespace f = continua::format;
  auto r = f::SafetensorsReader::open_file(src);
  r.verify_all();
  std::vector<f::TensorView> views;
  nlohmann::json devices = nlohmann::json::object();
  for (const auto& t : r.tensors()) {
    views.push_back({t.name, t.dtype, t.shape, r.data(t), t.nbytes});
    if (t.name.rfind("strategy.model.", 0) == 0) devices[t.name] = "cuda:0";
  }
  auto meta = r.metadata();
  meta[f::kCheckpointDevicesKey] = devices.dump();
  auto state = nlohmann::json::parse(meta.at(f::kCheckpointStateKey));
  state["strategy.device"] = "cuda:0";
  meta[f::kCheckpointStateKey] = state.dump();
  f::save_file(continua::io::default_file_system(), dst, views, meta);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: map_location DIR\n";
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  try {
    std::filesystem::create_directories(dir);
    bench = continua::make_benchmark(continua::BenchmarkOptions().name("split-synthetic").seed(4));
    auto trained = make_strategy();
    trained->train(bench->train_stream()[0]);
    trained->eval(bench->test_stream());
    const std::string cpu = (dir / "cpu.safetensors").string();
    continua::save_checkpoint(*trained, cpu);
    const std::string want = trained->state_digest();
    std::cout << "saved " << cpu << " (state digest " << want.substr(0, 16) << "...)\n";

    std::cout << "loading " << cpu << " with each form of MapLocation:\n";
    load_with("no map_location ({})", cpu, {}, want);
    load_with("a device: c10::Device(c10::kCPU)", cpu, c10::Device(c10::kCPU), want);
    load_with("a string: \"cpu\"", cpu, "cpu", want);
    load_with("a map: {\"cuda:0\": \"cpu\"}", cpu, std::map<std::string, std::string>{{"cuda:0", "cpu"}},
              want);
    int64_t tensors = 0, bytes = 0;
    load_with("a callable that logs each tensor", cpu,
              continua::MapLocation::Function([&](const at::Tensor& t, const std::string& saved) {
                if (tensors < 3) {
                  std::cout << "    callable: " << t.sizes() << " " << t.dtype() << ", saved on " << saved
                            << ", kept on cpu\n";
                }
                ++tensors;
                bytes += int64_t(t.nbytes());
                return t.to(c10::Device(c10::kCPU));
              }),
              want);
    std::cout << "    callable: " << tensors << " tensors, " << bytes << " bytes in all\n";
    auto reader = continua::format::SafetensorsReader::open_file(cpu);
    if (tensors != int64_t(reader.tensors().size())) {
      std::cout << "  FAILED: the callable saw " << tensors << " tensors, the file has "
                << reader.tensors().size() << "\n";
      ++failures;
    }

    const std::string cuda = (dir / "cuda.safetensors").string();
    as_if_saved_on_cuda(cpu, cuda);
    std::cout << "made " << cuda << ": the same state, recorded as saved on cuda:0\n";
    {
      auto s = make_strategy();
      const std::string before = s->state_digest();
      try {
        continua::maybe_load_checkpoint(*s, cuda, {}, {bench});
        if (at::hasCUDA()) {
          std::cout << "  (this machine has CUDA: loaded on cuda:0 without a map)\n";
        } else {
          std::cout << "  FAILED: a cuda:0 checkpoint loaded without map_location on a CPU-only build\n";
          ++failures;
        }
      } catch (const continua::InvalidArgument& e) {
        const bool ok = s->state_digest() == before;
        std::cout << "  ok: without map_location: " << e.what() << "\n"
                  << (ok ? "  ok" : "  FAILED") << ": the failed load changed nothing\n";
        if (!ok) ++failures;
      }
    }
    load_with("the cuda:0 checkpoint with a map: {\"cuda:0\": \"cpu\"}", cuda,
              std::map<std::string, std::string>{{"cuda:0", "cpu"}}, want);
    load_with("the cuda:0 checkpoint with \"cpu\"", cuda, "cpu", want);
    load_with("the cuda:0 checkpoint with a callable that keeps tensors on the CPU", cuda,
              continua::MapLocation::Function(
                  [](const at::Tensor& t, const std::string&) { return t.to(c10::Device(c10::kCPU)); }),
              want);
  } catch (const std::exception& e) {
    std::cerr << "map_location: " << e.what() << "\n";
    return 1;
  }
  if (failures > 0) {
    std::cerr << "map_location: " << failures << " check(s) failed\n";
    return 1;
  }
  std::cout << "every form of map_location loaded the saved state: OK\n";
  return 0;
}
