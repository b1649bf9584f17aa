#include "continua/io/atomic_file.h"

#include <errno.h>
#include <gtest/gtest.h>

#include <stdexcept>

#include "continua/io/fault_injection.h"
#include "temp_dir.h"

namespace continua::io {
namespace {

using continua::testing::read_all;
using continua::testing::TempDir;

bool has_temp_files(const TempDir& dir) {
  for (const auto& name : dir.entries()) {
    if (name.find(".tmp.") != std::string::npos) return true;
  }
  return false;
}

TEST(AtomicWrite, WritesAndReplaces) {
  TempDir dir;
  const std::string path = dir.file("ckpt.bin");
  atomic_write(default_file_system(), path, [](WritableFile& f) { f.append("first", 5); });
  EXPECT_EQ(read_all(path), "first");
  atomic_write(default_file_system(), path, [](WritableFile& f) { f.append("second", 6); });
  EXPECT_EQ(read_all(path), "second");
  EXPECT_EQ(dir.entries().size(), 1u);
}

TEST(AtomicWrite, TempNameIsInTheSameDirectoryAndUnique) {
  const std::string a = temp_path_for("/d/ckpt"), b = temp_path_for("/d/ckpt");
  EXPECT_EQ(a.rfind("/d/ckpt.tmp.", 0), 0u) << a;
  EXPECT_NE(a, b);
}

TEST(AtomicWrite, CallbackExceptionLeavesTargetAndNoTemp) {
  TempDir dir;
  const std::string path = dir.file("ckpt.bin");
  atomic_write(default_file_system(), path, [](WritableFile& f) { f.append("old", 3); });
  EXPECT_THROW(atomic_write(default_file_system(), path,
                            [](WritableFile& f) {
                              f.append("partial", 7);
                              throw std::logic_error("callback failed");
                            }),
               std::logic_error);
  EXPECT_EQ(read_all(path), "old");
  EXPECT_FALSE(has_temp_files(dir));
}

// Fails every counted call of an atomic write in turn, with each kind of
// fault, and checks the guarantees after each one.
TEST(AtomicWrite, EveryFailingCallLeavesThePreviousFileIntact) {
  TempDir dir;
  const std::string path = dir.file("ckpt.bin");
  const std::string old_content = "previous checkpoint contents";
  std::string new_content(3 * 4096 + 17, 'n');
  auto write_new = [&](WritableFile& f) {
    f.append(new_content.data(), 4096);
    f.append(new_content.data() + 4096, new_content.size() - 4096);
    f.pwrite(0, "N", 1);  // patch a header in place, as writers do
  };
  new_content[0] = 'N';
  auto reset_old = [&] {
    atomic_write(default_file_system(), path,
                 [&](WritableFile& f) { f.append(old_content.data(), old_content.size()); });
  };

  FaultInjectingFileSystem fs(default_file_system());
  atomic_write(fs, path, write_new);
  ASSERT_EQ(read_all(path), new_content);
  const size_t n = fs.calls();
  ASSERT_EQ(n, 8u);  // create, append, append, pwrite, sync, close, rename, sync_dir

  struct Kind {
    int err;
    bool short_write;
  };
  int sync_dir_failures = 0;
  for (const Kind kind : {Kind{ENOSPC, false}, Kind{EIO, false}, Kind{ENOSPC, true}}) {
    for (size_t i = 0; i < n; ++i) {
      reset_old();
      fs.clear();
      fs.fail_at(i, kind.err, kind.short_write);
      const std::string where = "failing call " + std::to_string(i) + " with errno " +
                                std::to_string(kind.err) + (kind.short_write ? " (short)" : "");
      try {
        atomic_write(fs, path, write_new);
        ADD_FAILURE() << "no exception when " << where;
      } catch (const IoError& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find(path), std::string::npos) << where << ": " << m;
        if (kind.err == ENOSPC) {
          EXPECT_NE(m.find("disk full"), std::string::npos) << m;
        }
      }
      EXPECT_FALSE(has_temp_files(dir)) << where;
      if (fs.call_name(i) == "sync_dir") {
        // The rename is done: the new file is in place, only its durability failed.
        EXPECT_EQ(read_all(path), new_content) << where;
        ++sync_dir_failures;
      } else {
        EXPECT_EQ(read_all(path), old_content) << where;
      }
    }
  }
  EXPECT_EQ(sync_dir_failures, 3);
  fs.clear();
  fs.fail_at(n, EIO);  // past the last call: nothing fails
  atomic_write(fs, path, write_new);
  EXPECT_EQ(read_all(path), new_content);
}

TEST(AtomicWrite, FailureWithoutPreviousFileLeavesNothing) {
  TempDir dir;
  FaultInjectingFileSystem fs(default_file_system());
  for (size_t i = 0; i < 5; ++i) {  // create .. rename
    fs.clear();
    fs.fail_at(i, EIO);
    EXPECT_THROW(atomic_write(fs, dir.file("x"), [](WritableFile& f) { f.append("x", 1); }),
                 IoError);
    EXPECT_TRUE(dir.entries().empty()) << "call " << i;
  }
}

class RecordingFile final : public WritableFile {
 public:
  void append(const void* data, size_t n) override {
    sizes.push_back(n);
    content.append(static_cast<const char*>(data), n);
    last_ptr = data;
  }
  void pwrite(uint64_t, const void*, size_t) override {}
  void sync() override {}
  void close() override {}
  std::vector<size_t> sizes;
  std::string content;
  const void* last_ptr = nullptr;
};

TEST(BufferedWriter, CoalescesSmallAndForwardsLargeWithoutCopy) {
  RecordingFile f;
  BufferedWriter w(f, 16);
  w.append("abc", 3);
  w.append("defg", 4);
  EXPECT_TRUE(f.sizes.empty());
  std::string big(40, 'B');
  w.append(big.data(), big.size());
  ASSERT_EQ(f.sizes, (std::vector<size_t>{7, 40}));
  EXPECT_EQ(f.last_ptr, big.data());  // not copied
  w.append("0123456789", 10);
  w.append("0123456789", 10);  // does not fit: flushes the first ten
  EXPECT_EQ(f.sizes.back(), 10u);
  w.flush();
  w.flush();
  EXPECT_EQ(f.content, "abcdefg" + big + "01234567890123456789");
  EXPECT_EQ(w.bytes_appended(), f.content.size());
  EXPECT_EQ(BufferedWriter::kDefaultCapacity, size_t{1} << 20);
}

}  // namespace
}  // namespace continua::io
