// `continua bench`: how close continua's checkpoints come to the machine's
// limits. Every figure is measured in the same run on the same state (a
// SimpleMLP and its SGD momentum buffers, sized by --bytes), each the median
// of --repeat runs; ratios are formed from those medians. docs/benchmarks.md
// explains each row.
#include <CLI/CLI.hpp>
#include <torch/serialize.h>
#include <torch/torch.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "continua/checkpoint/async_save.h"
#include "continua/checkpoint/checkpoint.h"
#include "continua/errors.h"
#include "continua/io/file_system.h"
#include "continua/io/process_memory.h"
#include "continua/models/model.h"
#include "continua/training/strategy.h"

namespace continua::cli {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

uint64_t parse_bytes(const std::string& s) {
  if (s.empty()) throw InvalidArgument("--bytes: empty");
  size_t pos = 0;
  double v;
  try {
    v = std::stod(s, &pos);
  } catch (const std::exception&) {
    throw InvalidArgument("--bytes: '" + s + "' is not a size (examples: 8M, 1G, 1048576)");
  }
  std::string suffix = s.substr(pos);
  if (!suffix.empty() && (suffix.back() == 'B' || suffix.back() == 'b')) suffix.pop_back();
  if (suffix.size() == 2 && (suffix[1] == 'i' || suffix[1] == 'I')) suffix.pop_back();
  double mult = 1;
  if (suffix.empty()) {
    mult = 1;
  } else if (suffix == "K" || suffix == "k") {
    mult = 1024.0;
  } else if (suffix == "M" || suffix == "m") {
    mult = 1024.0 * 1024;
  } else if (suffix == "G" || suffix == "g") {
    mult = 1024.0 * 1024 * 1024;
  } else {
    throw InvalidArgument("--bytes: unknown suffix in '" + s + "' (use K, M or G)");
  }
  const double bytes = v * mult;
  if (!(bytes >= 64 * 1024) || bytes > 64.0 * (uint64_t{1} << 30)) {
    throw InvalidArgument("--bytes: '" + s + "' must be between 64K and 64G");
  }
  return static_cast<uint64_t>(bytes);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Empties the page cache so the next read comes from the disk. Returns the
// reason when that is not allowed.
std::string drop_caches() {
  ::sync();
  const int fd = ::open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return std::string("cannot open /proc/sys/vm/drop_caches: ") + std::strerror(errno);
  const bool ok = ::write(fd, "3", 1) == 1;
  const int err = errno;
  ::close(fd);
  if (!ok) return std::string("cannot write /proc/sys/vm/drop_caches: ") + std::strerror(err);
  return "";
}

void fsync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw io::make_io_error("open", path, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw io::make_io_error("sync", path, err);
}

// Raw write of `n` bytes from `p` into a new file, then fsync.
void raw_write(const std::string& path, const char* p, size_t n, bool direct) {
  ::unlink(path.c_str());
  const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC | (direct ? O_DIRECT : 0), 0644);
  if (fd < 0) throw io::make_io_error("create", path, errno);
  constexpr size_t kChunk = size_t{64} << 20;
  size_t done = 0;
  while (done < n) {
    size_t k = std::min(kChunk, n - done);
    if (direct && k % 4096 != 0) {
      // The tail: O_DIRECT needs whole blocks; write it through the cache.
      const int flags = ::fcntl(fd, F_GETFL);
      ::fcntl(fd, F_SETFL, flags & ~O_DIRECT);
    }
    const ssize_t w = ::write(fd, p + done, k);
    if (w <= 0) {
      const int err = errno;
      ::close(fd);
      throw io::make_io_error("write", path, w < 0 ? err : EIO);
    }
    done += static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    throw io::make_io_error("sync", path, err);
  }
  ::close(fd);
}

enum class ReadMode { kRead, kDirect, kMmap };

// Reads the whole file; returns a value derived from the bytes so the
// compiler cannot drop the reads.
uint64_t raw_read(const std::string& path, ReadMode mode, char* chunk, size_t chunk_size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (mode == ReadMode::kDirect ? O_DIRECT : 0));
  if (fd < 0) throw io::make_io_error("open", path, errno);
  uint64_t sum = 0;
  if (mode == ReadMode::kMmap) {
    struct stat st;
    ::fstat(fd, &st);
    const size_t n = static_cast<size_t>(st.st_size);
    void* m = ::mmap(nullptr, n, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      ::close(fd);
      throw io::make_io_error("mmap", path, errno);
    }
    const auto* p = static_cast<const uint8_t*>(m);
    for (size_t q = 0; q < n; q += 4096) sum += p[q];
    ::munmap(m, n);
  } else {
    while (true) {
      const ssize_t r = ::read(fd, chunk, chunk_size);
      if (r < 0) {
        const int err = errno;
        ::close(fd);
        throw io::make_io_error("read", path, err);
      }
      if (r == 0) break;
      sum += static_cast<uint8_t>(chunk[0]);
    }
  }
  ::close(fd);
  return sum;
}

struct Row {
  std::string key;
  std::string what;
  double seconds;
  uint64_t bytes;
  int64_t peak_extra = -1;  // bytes of resident memory above the start, -1: not measured
};


}  // namespace

void add_bench_options(CLI::App& app, BenchOptions& o) {
  app.add_option("--bytes", o.bytes, "size of the state (model + optimizer tensors), e.g. 64M, 1G; a list (64M,256M,1G) measures each and how times scale")
      ->capture_default_str();
  app.add_flag("--json", o.json, "print a JSON object instead of a table");
  app.add_option("--repeat", o.repeat, "repetitions of each measurement (medians are reported)")
      ->capture_default_str();
  app.add_option("--dir", o.dir,
                 "scratch directory, on the disk to measure (default: a temporary directory in "
                 "the working directory)");
}

namespace {

// One size: measures, prints its table (unless --json) and returns its JSON.
nlohmann::json bench_one(const BenchOptions& o, uint64_t target) {
  const int repeat = static_cast<int>(o.repeat);
  torch::set_num_threads(1);  // the copies and I/O below are single-threaded; make torch match

  namespace fs = std::filesystem;
  std::string dir = o.dir;
  bool remove_dir = false;
  if (dir.empty()) {
    std::string templ = (fs::current_path() / "continua-bench.XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) throw io::make_io_error("create directory", templ, errno);
    dir = templ;
    remove_dir = true;
  } else {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw IoError("--dir: cannot create '" + dir + "': " + ec.message());
  }
  struct Cleanup {
    std::string dir;
    bool remove_dir;
    ~Cleanup() {
      std::error_code ec;
      for (const char* f : {"raw.bin", "continua.safetensors", "torch.pt", "async.safetensors"}) {
        fs::remove(fs::path(dir) / f, ec);
      }
      if (remove_dir) fs::remove_all(dir, ec);
    }
  } cleanup{dir, remove_dir};
  const std::string raw_path = dir + "/raw.bin";
  const std::string ck_path = dir + "/continua.safetensors";
  const std::string torch_path = dir + "/torch.pt";
  const std::string async_path = dir + "/async.safetensors";

  // ---- The state: SimpleMLP (784 -> h -> h -> 2) and SGD momentum buffers,
  // as many bytes of tensors as asked (parameters and buffers are half each).
  const double params = static_cast<double>(target) / 8.0;  // floats per half
  const auto hidden = static_cast<int64_t>(
      std::max(1.0, std::floor((-788.0 + std::sqrt(788.0 * 788.0 + 4.0 * (params - 2.0))) / 2.0)));
  torch::manual_seed(0);
  auto model = make_model(ModelOptions().input_size(784).hidden(hidden).layers(2));
  Strategy strategy(model, StrategyOptions().optimizer(OptimizerOptions().lr(0.01).momentum(0.9)));
  {
    // One step creates the momentum buffers (grad = 1e-3 everywhere).
    for (auto& p : model->parameters()) p.mutable_grad() = torch::full_like(p, 1e-3);
    strategy.optimizer().step();
    strategy.optimizer().zero_grad();
  }
  StateTree tree = strategy_state(strategy);
  std::vector<at::Tensor> tensors;
  std::vector<std::string> names;
  uint64_t state_bytes = 0;
  for (const auto& [key, value] : tree.entries()) {
    if (const auto* t = std::get_if<at::Tensor>(&value); t && t->defined()) {
      tensors.push_back(*t);
      names.push_back(key);
      state_bytes += t->nbytes();
    }
  }
  tree = StateTree();

  std::vector<Row> rows;
  auto measure = [&](const std::string& key, const std::string& what, uint64_t bytes,
                     const std::function<void()>& before, const std::function<void()>& body) {
    std::vector<double> t;
    int64_t peak = -1;
    for (int i = 0; i < repeat; ++i) {
      if (before) before();
      const bool peak_ok = io::reset_peak_resident();
      const int64_t rss0 = io::resident_bytes();
      const auto t0 = Clock::now();
      body();
      t.push_back(seconds_since(t0));
      const int64_t hwm = io::peak_resident_bytes();
      if (peak_ok && rss0 >= 0 && hwm >= 0) peak = std::max(peak, std::max<int64_t>(0, hwm - rss0));
    }
    rows.push_back({key, what, median(t), bytes, peak});
    if (!o.json) std::cerr << "  measured " << key << "\n";
    return rows.back().seconds;
  };

  // memcpy of the state into a buffer that is already faulted in.
  void* raw = nullptr;
  if (::posix_memalign(&raw, 4096, state_bytes) != 0) throw std::bad_alloc();
  std::unique_ptr<char, decltype(&std::free)> copy(static_cast<char*>(raw), &std::free);
  std::memset(copy.get(), 0, state_bytes);
  auto memcpy_state = [&] {
    size_t off = 0;
    for (const auto& t : tensors) {
      std::memcpy(copy.get() + off, t.data_ptr(), t.nbytes());
      off += t.nbytes();
    }
  };
  const double t_memcpy = measure("memcpy", "memcpy of the state (into faulted-in memory)",
                                  state_bytes, nullptr, memcpy_state);

  // Writes.
  const double t_raw_buffered = measure("raw_write_fsync", "raw write + fsync (page cache)",
                                        state_bytes, nullptr,
                                        [&] { raw_write(raw_path, copy.get(), state_bytes, false); });
  const double t_raw_direct = measure("raw_write_direct_fsync", "raw write + fsync (O_DIRECT)",
                                      state_bytes, nullptr,
                                      [&] { raw_write(raw_path, copy.get(), state_bytes, true); });
  ::unlink(raw_path.c_str());
  const double t_save = measure("continua_save", "continua save_checkpoint (durable, atomic)",
                                state_bytes, nullptr, [&] { save_checkpoint(strategy, ck_path); });
  const double t_torch_save =
      measure("torch_save_fsync", "torch::save + fsync", state_bytes, nullptr, [&] {
        torch::serialize::OutputArchive archive;
        for (size_t i = 0; i < tensors.size(); ++i) archive.write(names[i], tensors[i]);
        archive.save_to(torch_path);
        fsync_path(torch_path);
      });

  // Reads: each cold measurement starts from an empty page cache.
  const std::string drop_error = drop_caches();
  const bool cold = drop_error.empty();
  auto drop = [&] {
    if (cold) drop_caches();
  };
  std::vector<char> chunk_storage((size_t{8} << 20) + 4096);
  char* chunk = chunk_storage.data() + (4096 - reinterpret_cast<uintptr_t>(chunk_storage.data()) % 4096) % 4096;
  const size_t chunk_size = size_t{8} << 20;
  uint64_t sink = 0;
  const uint64_t file_bytes = fs::file_size(ck_path);
  const double t_read = measure("raw_read_cold", "raw read() of the checkpoint, 8 MiB chunks (cold)",
                                file_bytes, drop,
                                [&] { sink += raw_read(ck_path, ReadMode::kRead, chunk, chunk_size); });
  const double t_read_direct =
      measure("raw_read_direct_cold", "raw read() with O_DIRECT (cold)", file_bytes, drop,
              [&] { sink += raw_read(ck_path, ReadMode::kDirect, chunk, chunk_size); });
  const double t_read_mmap =
      measure("raw_mmap_cold", "raw mmap, one touch per page (cold)", file_bytes, drop,
              [&] { sink += raw_read(ck_path, ReadMode::kMmap, chunk, chunk_size); });
  const double t_load_cold =
      measure("continua_load_cold", "continua read_checkpoint, verified, zero-copy tensors (cold)",
              file_bytes, drop, [&] {
                LoadedCheckpoint c = read_checkpoint(ck_path);
                sink += c.tree.size();
              });
  const double t_load_warm =
      measure("continua_load_warm", "continua read_checkpoint (warm)", file_bytes, nullptr, [&] {
        LoadedCheckpoint c = read_checkpoint(ck_path);
        sink += c.tree.size();
      });
  measure("continua_load_into_strategy_cold", "maybe_load_checkpoint into the strategy (cold)",
          file_bytes, drop, [&] { sink += maybe_load_checkpoint(strategy, ck_path).second; });
  // The usual resume: a new process builds the strategy (fresh weights, no
  // momentum buffers yet) and loads into it.
  std::unique_ptr<Strategy> fresh;
  measure("continua_load_into_fresh_strategy_cold",
          "maybe_load_checkpoint into a newly built strategy (cold), as a resumed process does", file_bytes,
          [&] {
            fresh.reset();
            fresh = std::make_unique<Strategy>(make_model(ModelOptions().input_size(784).hidden(hidden).layers(2)),
                                               StrategyOptions().optimizer(OptimizerOptions().lr(0.01).momentum(0.9)));
            drop();
          },
          [&] { sink += maybe_load_checkpoint(*fresh, ck_path).second; });
  fresh.reset();
  auto torch_load = [&] {
    torch::serialize::InputArchive archive;
    archive.load_from(torch_path);
    for (const auto& n : names) {
      at::Tensor t;
      archive.read(n, t);
      sink += t.numel() > 0;
    }
  };
  const double t_torch_load =
      measure("torch_load_cold", "torch::load of the same tensors (cold)", state_bytes, drop, torch_load);
  // Warm: what each costs beyond the disk (both cold reads are disk-bound).
  const double t_torch_load_warm =
      measure("torch_load_warm", "torch::load of the same tensors (warm)", state_bytes, nullptr, torch_load);

  // Async save: the stall of save(), in steady state (the snapshot buffer
  // already allocated by a first, unmeasured save), each write waited for
  // before the next save so the stall never includes a previous write.
  AsyncCheckpointer checkpointer;
  double first_stall;
  {
    auto h = checkpointer.save(strategy, async_path);
    first_stall = h.stall_seconds();
    h.wait();
  }
  std::vector<double> stalls;
  std::vector<double> durable;
  for (int i = 0; i < repeat; ++i) {
    const auto t0 = Clock::now();
    auto h = checkpointer.save(strategy, async_path);
    stalls.push_back(h.stall_seconds());
    h.wait();
    durable.push_back(seconds_since(t0));
  }
  checkpointer.wait();
  rows.push_back({"async_stall", "async save: training stall (snapshot)", median(stalls), state_bytes});
  rows.push_back({"async_first_stall", "async save: stall of the first save (allocates its buffer)",
                  first_stall, state_bytes});
  rows.push_back({"async_durable", "async save: until durable", median(durable), state_bytes});
  const double t_stall = median(stalls);

  const double t_raw_write = std::min(t_raw_buffered, t_raw_direct);
  const double t_raw_read = std::min({t_read, t_read_direct, t_read_mmap});
  // Throughput ratios: the same bytes, so a ratio of times.
  nlohmann::json j;
  j["bytes_requested"] = target;
  j["state_bytes"] = state_bytes;
  j["file_bytes"] = file_bytes;
  j["repeat"] = repeat;
  j["dir"] = dir;
  j["cold_reads"] = cold;
  if (!cold) j["cold_reads_note"] = drop_error;
  j["save_vs_raw_write"] = t_raw_write / t_save * static_cast<double>(file_bytes) / state_bytes;
  j["load_vs_raw_read"] = t_raw_read / t_load_cold;
  j["save_vs_torch_save"] = t_torch_save / t_save;
  j["load_vs_torch_load"] = t_torch_load / t_load_cold;
  j["load_vs_torch_load_warm"] = t_torch_load_warm / t_load_warm;
  j["async_stall_vs_memcpy"] = t_stall / t_memcpy;
  j["raw_write_baseline"] = t_raw_buffered <= t_raw_direct ? "page cache" : "O_DIRECT";
  j["raw_read_baseline"] = t_raw_read == t_read ? "read()" : t_raw_read == t_read_direct ? "O_DIRECT read()" : "mmap";
  nlohmann::json figures = nlohmann::json::object();
  for (const Row& r : rows) {
    figures[r.key] = {{"seconds", r.seconds},
                      {"bytes", r.bytes},
                      {"gb_per_s", r.seconds > 0 ? r.bytes / r.seconds / 1e9 : 0.0},
                      {"what", r.what}};
    if (r.peak_extra >= 0) figures[r.key]["peak_extra_bytes"] = r.peak_extra;
  }
  j["figures"] = figures;
  if (sink == 42) std::cerr << "";  // keep the reads

  if (o.json) return j;
  std::printf("continua bench: state %.1f MiB (SimpleMLP hidden %lld + SGD momentum), file %.1f MiB, "
              "median of %d, scratch dir %s\n",
              state_bytes / 1048576.0, static_cast<long long>(hidden), file_bytes / 1048576.0,
              repeat, dir.c_str());
  if (!cold) std::printf("note: cold reads are NOT cold: %s\n", drop_error.c_str());
  std::printf("%-40s %10s %10s %10s  %s\n", "measurement", "seconds", "GB/s", "peak+MiB", "what");
  for (const Row& r : rows) {
    char peak[32] = "-";
    if (r.peak_extra >= 0) std::snprintf(peak, sizeof peak, "%.0f", r.peak_extra / 1048576.0);
    std::printf("%-40s %10.4f %10.3f %10s  %s\n", r.key.c_str(), r.seconds,
                r.seconds > 0 ? r.bytes / r.seconds / 1e9 : 0.0, peak, r.what.c_str());
  }
  std::printf("(peak+MiB: the largest rise of the resident set over its size before the step, file\n"
              " pages mapped by a load included; a save that needs no buffer of the state's size\n"
              " stays near the writer's 64 MiB of staging blocks)\n");
  std::printf("\nratios (throughput, higher is better; raw = the faster raw method):\n");
  for (const char* k : {"save_vs_raw_write", "load_vs_raw_read", "save_vs_torch_save", "load_vs_torch_load",
                        "load_vs_torch_load_warm"}) {
    std::printf("  %-24s %.2f\n", k, j[k].get<double>());
  }
  std::printf("  %-24s %.2f  (stall time / memcpy time, lower is better)\n", "async_stall_vs_memcpy",
              j["async_stall_vs_memcpy"].get<double>());
  std::fflush(stdout);
  return j;
}

}  // namespace

int bench(const BenchOptions& o) {
  // --bytes 64M,256M,1G: one full measurement per size, then how the times scale.
  std::vector<uint64_t> sizes;
  for (size_t start = 0;;) {
    const size_t comma = o.bytes.find(',', start);
    sizes.push_back(parse_bytes(o.bytes.substr(start, comma == std::string::npos ? std::string::npos : comma - start)));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (o.repeat < 1 || o.repeat > 100) throw InvalidArgument("--repeat must be between 1 and 100");
  std::vector<nlohmann::json> results;
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (i > 0 && !o.json) std::printf("\n");
    results.push_back(bench_one(o, sizes[i]));
  }
  if (sizes.size() == 1) {
    if (o.json) std::cout << results[0].dump(2) << std::endl;
    return 0;
  }
  // Scaling: seconds per GiB of state for each step; flat rows mean linear growth.
  const char* keys[] = {"continua_save", "continua_load_cold", "continua_load_into_strategy_cold",
                        "continua_load_into_fresh_strategy_cold",
                        "torch_save_fsync", "torch_load_cold", "raw_write_direct_fsync", "raw_read_cold"};
  nlohmann::json scaling = nlohmann::json::object();
  for (const char* k : keys) {
    nlohmann::json per = nlohmann::json::array();
    for (const auto& r : results) {
      const auto& f = r["figures"][k];
      const double gib = f["bytes"].get<double>() / double(uint64_t{1} << 30);
      per.push_back({{"state_bytes", r["state_bytes"]},
                     {"seconds", f["seconds"]},
                     {"seconds_per_gib", f["seconds"].get<double>() / gib},
                     {"peak_extra_bytes", f.value("peak_extra_bytes", int64_t{-1})}});
    }
    scaling[k] = per;
  }
  if (o.json) {
    nlohmann::json all;
    all["sizes"] = results;
    all["scaling"] = scaling;
    std::cout << all.dump(2) << std::endl;
    return 0;
  }
  std::printf("\nscaling: seconds per GiB of state (flat across a row = time linear in size)\n");
  std::printf("%-40s", "measurement");
  for (const auto& r : results) std::printf(" %9.0fM", r["state_bytes"].get<double>() / 1048576.0);
  std::printf("\n");
  for (const char* k : keys) {
    std::printf("%-40s", k);
    for (const auto& e : scaling[k]) std::printf(" %10.3f", e["seconds_per_gib"].get<double>());
    std::printf("\n");
  }
  return 0;
}

}  // namespace continua::cli
