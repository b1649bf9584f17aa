#include "continua/io/file_system.h"

#include <errno.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "continua/io/fault_injection.h"
#include "continua/io/file_lock.h"
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

TEST(MappedFile, CopyOfHoldsTheBytesAndIgnoresDropPages) {
  const std::string bytes(10000, 'c');
  MappedFile m = MappedFile::copy_of(bytes.data(), bytes.size(), "/x/copy");
  ASSERT_EQ(m.size(), bytes.size());
  EXPECT_TRUE(m.is_copy());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(m.data()) % 4096, 0u);  // page-aligned, as a mapping
  m.drop_pages(m.data(), m.size());  // must not zero our own memory
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(m.data()), m.size()), bytes);
  MappedFile moved = std::move(m);
  EXPECT_TRUE(moved.is_copy());
  EXPECT_EQ(moved.path(), "/x/copy");
  EXPECT_EQ(MappedFile::copy_of(nullptr, 0, "e").size(), 0u);
}

TEST(PosixFileSystem, ReadSideOpensReadsListsAndLocks) {
  TempDir dir;
  FileSystem& fs = default_file_system();
  continua::testing::write_all(dir.file("a"), "0123456789");
  continua::testing::write_all(dir.file("b"), "");
  auto f = fs.open_read(dir.file("a"), "file");
  EXPECT_EQ(f->size(), 10u);
  char buf[16] = {};
  EXPECT_EQ(f->read(3, buf, 4), 4u);
  EXPECT_EQ(std::string(buf, 4), "3456");
  EXPECT_EQ(f->read(8, buf, 16), 2u);  // fewer only at the end of the file
  EXPECT_EQ(std::string(buf, 2), "89");
  EXPECT_EQ(f->read(10, buf, 16), 0u);
  MappedFile m = fs.map(dir.file("a"), "file");
  EXPECT_FALSE(m.is_copy());  // the default maps
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(m.data()), m.size()), "0123456789");
  auto names = fs.list_dir(dir.path());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"a", "b"}));
  {
    auto held = fs.lock(dir.file("LOCK"), "dir", "advice");
    EXPECT_THROW(fs.lock(dir.file("LOCK"), "dir", "advice"), IoError);
  }
  EXPECT_NO_THROW(fs.lock(dir.file("LOCK"), "dir", "advice"));
  try {
    fs.open_read(dir.file("missing"), "checkpoint");
    FAIL();
  } catch (const IoError& e) {
    EXPECT_EQ(std::string(e.what()), "cannot open checkpoint '" + dir.file("missing") + "': No such file or directory");
  }
  try {
    fs.open_read(dir.path(), "checkpoint");
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("not a regular file"), std::string::npos) << e.what();
  }
  try {
    fs.list_dir(dir.file("missing"));
    FAIL();
  } catch (const IoError& e) {
    EXPECT_EQ(std::string(e.what()), "cannot list directory '" + dir.file("missing") + "': No such file or directory");
  }
}

TEST(FaultInjection, ReadFaultsFailFlipOrShortenWhatIsRead) {
  TempDir dir;
  std::string bytes(10000, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = char('a' + i % 26);
  continua::testing::write_all(dir.file("f"), bytes);
  FaultInjectingFileSystem fs(default_file_system());
  auto as_string = [](const MappedFile& m) { return std::string(reinterpret_cast<const char*>(m.data()), m.size()); };

  // No fault: the same bytes, read as a map call and 3 reads of 4096.
  MappedFile clean = fs.map(dir.file("f"), "checkpoint");
  EXPECT_TRUE(clean.is_copy());
  EXPECT_EQ(as_string(clean), bytes);
  ASSERT_EQ(fs.read_calls(), 4u);
  EXPECT_EQ(fs.read_call_name(0), "map '" + dir.file("f") + "'");
  EXPECT_EQ(fs.read_call_name(2), "read '" + dir.file("f") + "' at 4096");

  fs.clear();
  fs.fail_read_at(0, EIO);
  try {
    fs.map(dir.file("f"), "checkpoint");
    FAIL();
  } catch (const IoError& e) {
    EXPECT_EQ(std::string(e.what()), "cannot open checkpoint '" + dir.file("f") + "': Input/output error");
  }
  fs.clear();
  fs.fail_read_at(2, EIO);
  try {
    fs.map(dir.file("f"), "checkpoint");
    FAIL();
  } catch (const IoError& e) {
    EXPECT_EQ(std::string(e.what()), "cannot read '" + dir.file("f") + "': Input/output error");
  }

  fs.clear();
  fs.flip_read_at(2, 8 * 100 + 3);  // byte 100 of the second read, bit 3
  std::string flipped = bytes;
  flipped[4096 + 100] = char(flipped[4096 + 100] ^ 8);
  EXPECT_EQ(as_string(fs.map(dir.file("f"), "checkpoint")), flipped);

  fs.clear();
  fs.short_read_at(2);  // the second read returns half: the file seems to end there
  EXPECT_EQ(as_string(fs.map(dir.file("f"), "checkpoint")), bytes.substr(0, 4096 + 2048));

  fs.clear();
  fs.flip_read_at(1);  // the middle of the first read
  auto r = fs.open_read(dir.file("f"), "file");
  char buf[10];
  EXPECT_EQ(r->read(0, buf, 10), 10u);
  EXPECT_EQ(std::string(buf, 10), bytes.substr(0, 5) + char(bytes[5] ^ 1) + bytes.substr(6, 4));

  fs.clear();
  fs.fail_read_at(0, EIO);
  EXPECT_THROW(fs.list_dir(dir.path()), IoError);
  fs.clear();
  fs.short_read_at(0);  // not a read: an error
  try {
    fs.lock(dir.file("LOCK"), "dir", "advice");
    FAIL();
  } catch (const IoError& e) {
    EXPECT_EQ(std::string(e.what()), "cannot lock '" + dir.file("LOCK") + "': Input/output error");
  }
  fs.clear();
  EXPECT_NO_THROW(fs.lock(dir.file("LOCK"), "dir", "advice"));
  EXPECT_EQ(fs.read_calls(), 1u);
  EXPECT_EQ(fs.calls(), 0u);  // reads never count as writes
}

}  // namespace
}  // namespace continua::io
