// Read faults under a load (io/fault_injection.h, read side): every read-side
// call of a load — the map of the file, each 4 KiB read of it, each listing
// of the checkpoint directory, its lock — made to fail with EIO, to return a
// short read, or to flip a bit of what it returns. A load then fails
// cleanly, with the error type of its cause naming the file, and leaves the
// live strategy exactly as it was (state_digest equal); CheckpointManager
// falls back to the newest checkpoint that reads and verifies.
#include <gtest/gtest.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "continua/checkpoint/checkpoint.h"
#include "continua/checkpoint/manager.h"
#include "continua/io/fault_injection.h"
#include "reliability_util.h"

namespace continua::testing {
namespace {

namespace stdfs = std::filesystem;

enum class Kind { kEio, kShort, kFlip };

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kEio: return "EIO";
    case Kind::kShort: return "short read";
    case Kind::kFlip: return "bit flip";
  }
  return "?";
}

// Plans the fault on read-side call i; a flip at the given bit of what it returns.
void plan(io::FaultInjectingFileSystem& fs, Kind kind, size_t i, uint64_t bit = io::FaultInjectingFileSystem::kMiddle) {
  switch (kind) {
    case Kind::kEio: fs.fail_read_at(i, EIO); break;
    case Kind::kShort: fs.short_read_at(i); break;
    case Kind::kFlip: fs.flip_read_at(i, bit); break;
  }
}

// A strategy trained one experience and saved to `path`, then trained on:
// the live state differs from the file. (Its state includes torch's global
// generator: building or loading another strategy changes its digest, so
// the tests take the digest to compare with after doing so.)
struct SavedAndMovedOn {
  std::shared_ptr<Benchmark> bench = synthetic_benchmark(1, 5);
  std::unique_ptr<Strategy> live;
  std::string saved_digest;
  SavedAndMovedOn(const std::string& path) {
    live = trained_strategy("replay", *bench, 1);
    save_checkpoint(*live, path);
    saved_digest = live->state_digest();
    live->train(bench->train_stream()[1]);
  }
};

class ReadFaults : public ::testing::TestWithParam<Kind> {};

// Every read-side call of a single-file load, with each fault: the load
// throws (IoError for EIO, CorruptionError for a short read or a flipped
// bit), the message names the file and the cause, the strategy is unchanged.
TEST_P(ReadFaults, EveryReadOfALoadFailsCleanly) {
  const Kind kind = GetParam();
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  SavedAndMovedOn s(path);
  io::FaultInjectingFileSystem fs(io::default_file_system());
  {
    auto probe = make_test_strategy("replay", *s.bench);
    maybe_load_checkpoint(*probe, path, {}, {s.bench}, &fs);  // dry run: count the reads
    ASSERT_EQ(probe->state_digest(), s.saved_digest);
  }
  const size_t calls = fs.read_calls();
  const std::string live_digest = s.live->state_digest();
  ASSERT_NE(live_digest, s.saved_digest);
  const uint64_t size = stdfs::file_size(path);
  ASSERT_EQ(calls, 1 + (size + 4095) / 4096);  // the map, then one read per 4 KiB
  size_t failures = 0;
  for (size_t i = 0; i < calls; ++i) {
    // Flips: the first bit, the middle one and the last one each read returns.
    std::vector<uint64_t> bits = {io::FaultInjectingFileSystem::kMiddle};
    if (kind == Kind::kFlip) bits = {0, io::FaultInjectingFileSystem::kMiddle, 8 * 4096 - 1};
    for (uint64_t bit : bits) {
      fs.clear();
      plan(fs, kind, i, bit);
      const std::string where = std::string(kind_name(kind)) + " at read-side call " + std::to_string(i) + " (" +
                                (i == 0 ? "map" : "read " + std::to_string(i - 1)) + ")" +
                                (kind == Kind::kFlip ? ", bit " + std::to_string(bit) : "");
      std::string message;
      const bool io_error_expected = kind == Kind::kEio || i == 0;  // a short read or flip planned on the map: EIO
      try {
        maybe_load_checkpoint(*s.live, path, {}, {s.bench}, &fs);
        ADD_FAILURE() << where << ": the load succeeded";
      } catch (const IoError& e) {
        message = e.what();
        EXPECT_TRUE(io_error_expected) << where << ": IoError " << message;
        EXPECT_NE(message.find("Input/output error"), std::string::npos) << where << ": " << message;
      } catch (const CorruptionError& e) {
        message = e.what();
        EXPECT_FALSE(io_error_expected) << where << ": CorruptionError " << message;
        EXPECT_NE(message.find("corrupt checkpoint '" + path + "'"), std::string::npos) << where << ": " << message;
        // A short read is a file that ends early: the reader says so.
        if (kind == Kind::kShort) EXPECT_NE(message.find("past the end"), std::string::npos) << where << ": " << message;
      } catch (const std::exception& e) {
        ADD_FAILURE() << where << ": " << e.what();
      }
      if (!message.empty()) ++failures;
      EXPECT_NE(message.find(path), std::string::npos) << where << ": " << message;
      ASSERT_EQ(s.live->state_digest(), live_digest) << where << ": the failed load changed the strategy";
    }
  }
  EXPECT_EQ(failures, calls * (kind == Kind::kFlip ? 3 : 1));
  std::cout << kind_name(kind) << ": a load of a " << size << "-byte checkpoint makes " << calls
            << " read-side calls (the map, then 4 KiB reads); " << failures << " faulted loads, each failed cleanly\n";
  // The file itself was never damaged: without faults it loads.
  fs.clear();
  maybe_load_checkpoint(*s.live, path, {}, {s.bench}, &fs);
  EXPECT_EQ(s.live->state_digest(), s.saved_digest);
}

INSTANTIATE_TEST_SUITE_P(Kinds, ReadFaults, ::testing::Values(Kind::kEio, Kind::kShort, Kind::kFlip),
                         [](const auto& info) {
                           return std::string(info.param == Kind::kEio     ? "Eio"
                                              : info.param == Kind::kShort ? "ShortRead"
                                                                           : "BitFlip");
                         });

// Three checkpoints in a managed directory (steps 4, 8, 12 of experience 0),
// with their bytes, to put back after a load moved one aside.
struct ManagedDir {
  TempDir dir;
  std::shared_ptr<Benchmark> bench = synthetic_benchmark(1, 5);
  std::vector<std::string> paths, digests, bytes;
  ManagedDir() {
    auto s = make_test_strategy("replay", *bench);
    CheckpointManager m(CheckpointManagerOptions().directory(dir.path()).keep_last(3));
    s->set_iteration_callback([&](Strategy& st) {
      if (st.clock().train_iterations % 4 == 0) {
        paths.push_back(m.save(st));
        digests.push_back(st.state_digest());
        if (paths.size() == 3) st.request_stop();
      }
    });
    s->train(bench->train_stream()[0]);
    for (const auto& p : paths) bytes.push_back(read_file(p));
  }
  // The directory as written: the three checkpoints and the lock, nothing set aside.
  void restore() const {
    for (const auto& name : list_dir(dir.path())) {
      if (name != "LOCK") std::remove(dir.file(name).c_str());
    }
    for (size_t i = 0; i < paths.size(); ++i) std::ofstream(paths[i], std::ios::binary) << bytes[i];
  }
};

// A fault on the newest checkpoint's reads: the manager skips it and loads
// the previous one. A read error leaves the file in place (it may read next
// time); damage in what was read sets it aside as `.corrupt`.
TEST(ReadFaultsManager, FallsBackToTheNewestCheckpointThatReadsAndVerifies) {
  ManagedDir d;
  ASSERT_EQ(d.paths.size(), 3u);
  const std::string newest = d.paths[2];
  for (Kind kind : {Kind::kEio, Kind::kShort, Kind::kFlip}) {
    d.restore();
    io::FaultInjectingFileSystem fs(io::default_file_system());
    std::vector<std::string> warnings;
    auto opts = CheckpointManagerOptions().directory(d.dir.path()).keep_last(3).file_system(&fs).warning(
        [&](const std::string& w) { warnings.push_back(w); });
    // The first read of the newest file's bytes (after the lock, the listings and its map).
    size_t first_read = 0;
    {
      CheckpointManager m(opts);
      auto probe = make_test_strategy("replay", *d.bench);
      m.maybe_load(*probe, {}, {d.bench});
      ASSERT_EQ(probe->state_digest(), d.digests[2]);
      for (size_t i = 0; i < fs.read_calls(); ++i) {
        if (fs.read_call_name(i).rfind("read '" + newest + "'", 0) == 0) {
          first_read = i;
          break;
        }
      }
      ASSERT_GT(first_read, 0u);
    }
    fs.clear();
    plan(fs, kind, first_read);
    const std::string where = kind_name(kind);
    CheckpointManager m(opts);
    auto fresh = make_test_strategy("replay", *d.bench);
    m.maybe_load(*fresh, {}, {d.bench});
    EXPECT_EQ(m.loaded_path(), d.paths[1]) << where;
    EXPECT_EQ(fresh->state_digest(), d.digests[1]) << where;
    ASSERT_EQ(warnings.size(), 1u) << where;
    EXPECT_NE(warnings[0].find("skipping checkpoint '" + newest + "'"), std::string::npos) << warnings[0];
    if (kind == Kind::kEio) {
      EXPECT_NE(warnings[0].find("Input/output error"), std::string::npos) << warnings[0];
      EXPECT_NE(warnings[0].find("left in place"), std::string::npos) << warnings[0];
      EXPECT_TRUE(stdfs::exists(newest)) << where;
      EXPECT_FALSE(stdfs::exists(newest + ".corrupt")) << where;
    } else {
      EXPECT_NE(warnings[0].find("corrupt checkpoint"), std::string::npos) << warnings[0];
      EXPECT_FALSE(stdfs::exists(newest)) << where;
      EXPECT_TRUE(stdfs::exists(newest + ".corrupt")) << where;
    }
  }
}

// Every checkpoint unreadable: an IoError naming each (no file set aside),
// the strategy unchanged.
TEST(ReadFaultsManager, NoCheckpointThatReadsIsAnIoErrorAndChangesNothing) {
  ManagedDir d;
  io::FaultInjectingFileSystem fs(io::default_file_system());
  auto s = trained_strategy("replay", *d.bench, 1);
  const std::string before = s->state_digest();
  // The read-side calls before the first map: the lock, the constructor's
  // listings and the load's listing. Then one map per file, newest first.
  size_t first_map = 0;
  {
    CheckpointManager probe(CheckpointManagerOptions().directory(d.dir.path()).keep_last(3).file_system(&fs));
    (void)probe.list();
    first_map = fs.read_calls();
  }
  fs.clear();
  for (size_t i = first_map; i < first_map + d.paths.size(); ++i) fs.fail_read_at(i, EIO);
  std::vector<std::string> warnings;
  CheckpointManager m(CheckpointManagerOptions().directory(d.dir.path()).keep_last(3).file_system(&fs).warning(
      [&](const std::string& w) { warnings.push_back(w); }));
  try {
    m.maybe_load(*s, {}, {d.bench});
    FAIL() << "loaded although no checkpoint could be read";
  } catch (const IoError& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find("no usable checkpoint in '" + d.dir.path() + "'"), std::string::npos) << w;
    for (const auto& p : d.paths) EXPECT_NE(w.find("cannot open checkpoint '" + p + "'"), std::string::npos) << w;
  }
  EXPECT_EQ(warnings.size(), 3u);
  EXPECT_EQ(s->state_digest(), before);
  for (const auto& p : d.paths) EXPECT_TRUE(stdfs::exists(p)) << p;  // none set aside
}

// Every read-side call of opening a manager and loading from it, with each
// fault: a failing lock or listing is an IoError naming the lock file or the
// directory, with the strategy unchanged; a fault on the newest file's map
// or reads makes the manager load the previous checkpoint.
TEST(ReadFaultsManager, EveryReadCallOfAManagedLoad) {
  ManagedDir d;
  io::FaultInjectingFileSystem fs(io::default_file_system());
  auto opts = CheckpointManagerOptions().directory(d.dir.path()).keep_last(3).file_system(&fs).warning(
      [](const std::string&) {});
  std::vector<std::string> names;
  {
    CheckpointManager m(opts);
    auto probe = make_test_strategy("replay", *d.bench);
    m.maybe_load(*probe, {}, {d.bench});
    for (size_t i = 0; i < fs.read_calls(); ++i) names.push_back(fs.read_call_name(i));
  }
  ASSERT_GE(names.size(), 6u);
  EXPECT_EQ(names[0].rfind("lock '", 0), 0u) << names[0];
  size_t errors = 0, fallbacks = 0;
  auto live = trained_strategy("replay", *d.bench, 1);
  for (Kind kind : {Kind::kEio, Kind::kShort, Kind::kFlip}) {
    for (size_t i = 0; i < names.size(); ++i) {
      d.restore();
      fs.clear();
      plan(fs, kind, i);
      const std::string where = std::string(kind_name(kind)) + " at " + names[i];
      const bool on_newest = names[i].find(d.paths[2]) != std::string::npos;
      try {
        CheckpointManager m(opts);
        auto fresh = make_test_strategy("replay", *d.bench);
        m.maybe_load(*fresh, {}, {d.bench});
        EXPECT_TRUE(on_newest) << where << ": loaded " << m.loaded_path();
        EXPECT_EQ(m.loaded_path(), d.paths[1]) << where;
        EXPECT_EQ(fresh->state_digest(), d.digests[1]) << where;
        ++fallbacks;
      } catch (const IoError& e) {
        const std::string w = e.what();
        EXPECT_FALSE(on_newest) << where << ": " << w;
        EXPECT_NE(w.find("Input/output error"), std::string::npos) << where << ": " << w;
        const bool names_lock = w.find(d.dir.file("LOCK")) != std::string::npos;
        const bool names_dir = w.find("cannot list directory '" + d.dir.path() + "'") != std::string::npos;
        EXPECT_TRUE(names_lock || names_dir) << where << ": " << w;
        ++errors;
      }
    }
    // A listing that fails under a live strategy leaves it as it was.
    d.restore();
    fs.clear();
    CheckpointManager m(opts);
    plan(fs, kind, fs.read_calls());  // the next read-side call: the load's listing
    const std::string live_digest = live->state_digest();
    EXPECT_THROW(m.maybe_load(*live, {}, {d.bench}), IoError) << kind_name(kind);
    EXPECT_EQ(live->state_digest(), live_digest) << kind_name(kind);
  }
  size_t newest_calls = 0;
  for (const auto& n : names) newest_calls += n.find(d.paths[2]) != std::string::npos;
  EXPECT_EQ(fallbacks, 3 * newest_calls);
  EXPECT_EQ(errors, 3 * (names.size() - newest_calls));
  std::cout << "managed load: " << names.size() << " read-side calls (" << newest_calls
            << " on the newest file) x 3 faults: " << fallbacks << " fell back to the previous checkpoint, "
            << errors << " IoErrors\n";
}

}  // namespace
}  // namespace continua::testing
