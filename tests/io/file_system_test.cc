#include "continua/io/file_system.h"

#include <errno.h>
#include <gtest/gtest.h>

#include "continua/io/fault_injection.h"
#include "continua/io/mapped_file.h"
#include "temp_dir.h"

namespace continua::io {
namespace {

using continua::testing::read_all;
using continua::testing::TempDir;

TEST(PosixFileSystem, CreateAppendPwriteSyncCloseRename) {
  TempDir dir;
  FileSystem& fs = default_file_system();
  const std::string a = dir.file("a"), b = dir.file("b");
  EXPECT_FALSE(fs.exists(a));
  auto f = fs.create_exclusive(a);
  EXPECT_TRUE(fs.exists(a));
  f->append("hello world", 11);
  f->pwrite(0, "J", 1);
  f->append("!", 1);
  f->sync();
  f->close();
  EXPECT_EQ(read_all(a), "Jello world!");
  fs.rename(a, b);
  fs.sync_dir(dir.path());
  EXPECT_FALSE(fs.exists(a));
  EXPECT_EQ(read_all(b), "Jello world!");
  EXPECT_GT(fs.free_bytes(dir.path()), 0u);
  fs.remove(b);
  EXPECT_FALSE(fs.exists(b));
  fs.remove(b);  // best effort: a missing file is not an error
}

TEST(PosixFileSystem, CreateExclusiveRefusesExistingFile) {
  TempDir dir;
  FileSystem& fs = default_file_system();
  fs.create_exclusive(dir.file("x"))->close();
  try {
    fs.create_exclusive(dir.file("x"));
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot create '" + dir.file("x") + "': File exists"),
              std::string::npos)
        << e.what();
  }
}

TEST(PosixFileSystem, ErrorsNameOperationPathAndReason) {
  TempDir dir;
  FileSystem& fs = default_file_system();
  const std::string missing = dir.file("no/such/dir/f");
  EXPECT_THROW(fs.create_exclusive(missing), IoError);
  try {
    fs.rename(dir.file("nope"), dir.file("other"));
    FAIL();
  } catch (const IoError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("cannot rename '" + dir.file("nope") + "' to '" + dir.file("other") + "'"),
              std::string::npos)
        << m;
    EXPECT_NE(m.find("No such file or directory"), std::string::npos) << m;
  }
  EXPECT_THROW(fs.sync_dir(dir.file("nope")), IoError);
  EXPECT_THROW(fs.free_bytes(dir.file("nope")), IoError);
}

TEST(PosixFileSystem, DiskFullMessage) {
  EXPECT_STREQ(make_io_error("write", "/x/y.tmp", ENOSPC).what(),
               "cannot write '/x/y.tmp': No space left on device (disk full)");
  EXPECT_NE(std::string(make_io_error("write", "/x", EDQUOT).what()).find("(disk full)"),
            std::string::npos);
  EXPECT_EQ(std::string(make_io_error("sync", "/x", EIO).what()).find("disk full"),
            std::string::npos);
}

TEST(PosixFileSystem, DirnameOf) {
  EXPECT_EQ(dirname_of("a/b/c"), "a/b");
  EXPECT_EQ(dirname_of("c"), ".");
  EXPECT_EQ(dirname_of("/c"), "/");
  EXPECT_EQ(dirname_of("/a/c"), "/a");
}

TEST(FaultInjection, CountsCallsAndFailsTheChosenOne) {
  TempDir dir;
  FaultInjectingFileSystem fs(default_file_system());
  auto f = fs.create_exclusive(dir.file("f"));  // 0
  f->append("abcd", 4);                         // 1
  f->pwrite(0, "X", 1);                         // 2
  f->sync();                                    // 3
  f->close();                                   // 4
  fs.rename(dir.file("f"), dir.file("g"));      // 5
  fs.sync_dir(dir.path());                      // 6
  EXPECT_EQ(fs.calls(), 7u);
  EXPECT_EQ(fs.call_name(1), "append");
  EXPECT_EQ(fs.call_name(6), "sync_dir");
  EXPECT_TRUE(fs.exists(dir.file("g")));  // not counted
  EXPECT_EQ(fs.calls(), 7u);

  fs.clear();
  fs.fail_at(1, ENOSPC, /*short_write=*/true);
  auto h = fs.create_exclusive(dir.file("h"));
  try {
    h->append("abcdefgh", 8);
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("(disk full)"), std::string::npos);
  }
  h->close();
  EXPECT_EQ(read_all(dir.file("h")), "abcd");  // half, then the failure

  fs.clear();
  fs.fail_at(0, EIO);
  EXPECT_THROW(fs.create_exclusive(dir.file("i")), IoError);
  EXPECT_FALSE(fs.exists(dir.file("i")));
}

TEST(MappedFile, MapsContentAndEmptyFiles) {
  TempDir dir;
  continua::testing::write_all(dir.file("a"), "0123456789");
  continua::testing::write_all(dir.file("empty"), "");
  MappedFile m = MappedFile::open(dir.file("a"));
  ASSERT_EQ(m.size(), 10u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(m.data()), m.size()), "0123456789");
  MappedFile moved = std::move(m);
  EXPECT_EQ(moved.size(), 10u);
  EXPECT_EQ(m.size(), 0u);  // NOLINT(bugprone-use-after-move): moved-from is empty
  MappedFile e = MappedFile::open(dir.file("empty"));
  EXPECT_EQ(e.size(), 0u);
  EXPECT_NE(e.data(), nullptr);
}

TEST(MappedFile, ErrorsNameThePath) {
  TempDir dir;
  try {
    MappedFile::open(dir.file("missing"), "checkpoint");
    FAIL();
  } catch (const IoError& e) {
    EXPECT_EQ(std::string(e.what()),
              "cannot open checkpoint '" + dir.file("missing") + "': No such file or directory");
  }
  try {
    MappedFile::open(dir.path());
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("not a regular file"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace continua::io
