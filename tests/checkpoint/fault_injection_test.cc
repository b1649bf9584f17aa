// Fault injection under save_checkpoint: for every file-system call of a save
// of a real strategy checkpoint, make that call fail (ENOSPC, EIO, a short
// write followed by ENOSPC) and check that the previous checkpoint survives
// byte for byte, the error names the cause and the file, no temporary file is
// left, the live strategy is untouched, and the next save works. The byte
// layer's own sweep (tests/io/atomic_file_test.cc) uses a callback; this one
// runs the whole save path: state collection, metadata, format writer.
#include <gtest/gtest.h>

#include <cerrno>
#include <fstream>

#include "continua/checkpoint/checkpoint.h"
#include "continua/io/fault_injection.h"
#include "reliability_util.h"

namespace continua::testing {
namespace {

struct FaultKind {
  const char* label;
  int err;
  bool short_write;
  const char* cause;  // what the message must say
};

constexpr FaultKind kFaults[] = {
    {"ENOSPC", ENOSPC, false, "No space left on device (disk full)"},
    {"EIO", EIO, false, "Input/output error"},
    {"short write + ENOSPC", ENOSPC, true, "No space left on device (disk full)"},
};

class SaveFaults : public ::testing::TestWithParam<const char*> {};

TEST_P(SaveFaults, EveryFailingCallKeepsThePreviousCheckpoint) {
  const std::string name = GetParam();
  auto bench = synthetic_benchmark(1, 5);
  auto strategy = trained_strategy(name, *bench, 1);
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  save_checkpoint(*strategy, path);
  const std::string previous = read_file(path);
  const std::string previous_digest = strategy->state_digest();

  // Move on: the live state now differs from the file.
  strategy->train(bench->train_stream()[1]);
  const std::string live_digest = strategy->state_digest();
  ASSERT_NE(live_digest, previous_digest);

  io::FaultInjectingFileSystem fs(io::default_file_system());
  // Dry run into another file to count the calls of one save.
  save_checkpoint(*strategy, dir.file("count.safetensors"), SaveOptions().file_system(&fs));
  const size_t calls = fs.calls();
  std::vector<std::string> call_names;
  std::string names;
  for (size_t i = 0; i < calls; ++i) {
    call_names.push_back(fs.call_name(i));
    names += call_names.back() + " ";
  }
  ASSERT_GE(calls, 6u) << names;  // create, append..., sync, close, rename, sync_dir
  ASSERT_EQ(fs.call_name(calls - 1), "sync_dir") << names;
  std::remove(dir.file("count.safetensors").c_str());

  size_t failures = 0;
  for (const FaultKind& fault : kFaults) {
    for (size_t i = 0; i < calls; ++i) {
      const std::string where = std::string(fault.label) + " at call " + std::to_string(i) + " (" +
                                call_names[i] + ") of [" + names + "]";
      fs.clear();
      fs.fail_at(i, fault.err, fault.short_write);
      std::string message;
      try {
        save_checkpoint(*strategy, path, SaveOptions().file_system(&fs));
        ADD_FAILURE() << "save succeeded despite " << where;
      } catch (const IoError& e) {
        message = e.what();
        ++failures;
      }
      EXPECT_NE(message.find(fault.cause), std::string::npos) << where << ": " << message;
      EXPECT_NE(message.find(path), std::string::npos) << where << ": " << message;
      EXPECT_EQ(list_dir(dir.path()), std::vector<std::string>{"ckpt.safetensors"}) << where;
      EXPECT_EQ(strategy->state_digest(), live_digest) << where;

      const std::string now = read_file(path);
      if (i == calls - 1) {
        // Only the directory sync failed: the rename happened, so the new
        // file is in place, and the message says it may not survive a crash.
        EXPECT_NE(message.find("may not survive a crash"), std::string::npos) << message;
        EXPECT_NE(now, previous) << where;
        auto probe = make_test_strategy(name, *bench);
        maybe_load_checkpoint(*probe, path, {}, {bench});
        EXPECT_EQ(probe->state_digest(), live_digest) << where;
        // Put the previous file back for the next index.
        std::ofstream(path, std::ios::binary | std::ios::trunc) << previous;
      } else {
        ASSERT_EQ(now, previous) << "previous checkpoint changed after " << where;
      }
    }
  }
  EXPECT_EQ(failures, calls * std::size(kFaults));

  // The previous checkpoint still loads, to the state it was saved from.
  {
    auto probe = make_test_strategy(name, *bench);
    maybe_load_checkpoint(*probe, path, {}, {bench});
    EXPECT_EQ(probe->state_digest(), previous_digest);
  }

  // Training continues and, the fault gone, the next save succeeds through
  // the same file system; the loaded state is the saved one.
  fs.clear();
  strategy->train(bench->train_stream()[2]);
  save_checkpoint(*strategy, path, SaveOptions().file_system(&fs));
  const std::string saved_digest = strategy->state_digest();
  EXPECT_EQ(list_dir(dir.path()), std::vector<std::string>{"ckpt.safetensors"});
  auto fresh = make_test_strategy(name, *bench);
  auto [s, next] = maybe_load_checkpoint(*fresh, path, {}, {bench});
  EXPECT_EQ(next, 3);
  EXPECT_EQ(fresh->state_digest(), saved_digest);
}

INSTANTIATE_TEST_SUITE_P(Strategies, SaveFaults, ::testing::Values("replay", "ewc"),
                         [](const auto& info) { return std::string(info.param); });

// A first save that fails at any call leaves nothing at all behind.
TEST(SaveFaults, FailingFirstSaveLeavesNoFile) {
  auto bench = synthetic_benchmark(1, 5);
  auto strategy = trained_strategy("replay", *bench, 1);
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  io::FaultInjectingFileSystem fs(io::default_file_system());
  save_checkpoint(*strategy, dir.file("count"), SaveOptions().file_system(&fs));
  const size_t calls = fs.calls();
  std::vector<std::string> call_names;
  for (size_t i = 0; i < calls; ++i) call_names.push_back(fs.call_name(i));
  std::remove(dir.file("count").c_str());
  // Up to the rename: after it, the new file exists by design.
  for (size_t i = 0; i + 1 < calls; ++i) {
    fs.clear();
    fs.fail_at(i, EIO);
    EXPECT_THROW(save_checkpoint(*strategy, path, SaveOptions().file_system(&fs)), IoError);
    EXPECT_TRUE(list_dir(dir.path()).empty()) << "call " << i << " (" << call_names[i] << ")";
  }
}

}  // namespace
}  // namespace continua::testing
