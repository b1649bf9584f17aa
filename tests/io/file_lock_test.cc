// io::FileLock: one holder at a time, a message naming the lock and its
// holder, released with the object.
#include <gtest/gtest.h>

#include <unistd.h>

#include "continua/errors.h"
#include "continua/io/file_lock.h"
#include "temp_dir.h"

namespace continua::io {
namespace {

using continua::testing::TempDir;

TEST(FileLock, OneHolderAtATimeAndReleasedWithTheObject) {
  TempDir dir;
  const std::string path = dir.file("x.lock");
  {
    FileLock first(path, "thing 'x'", "one at a time");
    EXPECT_EQ(first.path(), path);
    try {
      FileLock second(path, "thing 'x'", "one at a time");
      FAIL() << "a second lock on the same file was granted";
    } catch (const IoError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("thing 'x' is locked by another process (pid " + std::to_string(::getpid()) +
                       ", this process, lock file '" + path + "'): one at a time"),
                std::string::npos)
          << m;
    }
  }
  FileLock again(path, "thing 'x'", "one at a time");  // released: granted again
}

TEST(FileLock, AMissingDirectoryIsAnErrorNamingTheFile) {
  TempDir dir;
  const std::string path = dir.file("no/such/dir/x.lock");
  try {
    FileLock lock(path, "thing", "advice");
    FAIL() << "locked a file in a missing directory";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace continua::io
