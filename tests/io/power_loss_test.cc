// The power-cut model (io/power_loss.h) on its own: what each variant keeps
// of unsynced data and of directory entries not covered by a directory
// sync, the dead file system after the cut, and atomic_write cut at every
// call: whatever the variant, the target holds the old or the new content,
// complete, and once atomic_write has returned, the new one.
#include "continua/io/power_loss.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "continua/io/atomic_file.h"
#include "temp_dir.h"

namespace continua::io {
namespace {

using continua::testing::read_all;
using continua::testing::TempDir;
using continua::testing::write_all;

std::vector<std::string> sorted_entries(const TempDir& dir) {
  auto e = dir.entries();
  std::sort(e.begin(), e.end());
  return e;
}

void write_file(FileSystem& fs, const std::string& path, const std::string& bytes, bool sync) {
  auto f = fs.create_exclusive(path);
  f->append(bytes.data(), bytes.size());
  if (sync) f->sync();
  f->close();
}

TEST(PowerLoss, UnsyncedDataIsDroppedOrTornAndSyncedDataStays) {
  TempDir dir;
  PowerLossFileSystem fs(default_file_system());
  const std::string synced(1000, 's'), unsynced(1000, 'u');
  write_file(fs, dir.file("a"), synced, /*sync=*/true);
  auto f = fs.create_exclusive(dir.file("b"));
  f->append(synced.data(), synced.size());
  f->sync();
  f->append(unsynced.data(), unsynced.size());  // after the sync: not durable
  f->close();
  fs.sync_dir(dir.path());  // both names durable
  EXPECT_EQ(read_all(dir.file("b")), synced + unsynced);  // the live file has everything

  fs.materialize(PowerLossVariant::kDropUnsynced);
  EXPECT_EQ(read_all(dir.file("a")), synced);
  EXPECT_EQ(read_all(dir.file("b")), synced);

  fs.materialize(PowerLossVariant::kTornUnsynced);
  EXPECT_EQ(read_all(dir.file("a")), synced);
  const std::string torn = read_all(dir.file("b"));
  ASSERT_EQ(torn.size(), 2000u);
  EXPECT_EQ(torn.substr(0, 1500), synced + unsynced.substr(0, 500));  // the first half of the unsynced part
  for (size_t i = 1500; i < 2000; ++i) ASSERT_NE(torn[i], 'u') << i;  // then garbage, every byte
}

TEST(PowerLoss, EntriesNotCoveredByADirectorySyncAreUndone) {
  TempDir dir;
  write_all(dir.file("old"), "existing");  // there before: durable
  write_all(dir.file("doomed"), "removed later");
  PowerLossFileSystem fs(default_file_system());
  write_file(fs, dir.file("created"), "data", /*sync=*/true);
  fs.rename(dir.file("old"), dir.file("renamed"));
  fs.remove(dir.file("doomed"));
  EXPECT_EQ(sorted_entries(dir), (std::vector<std::string>{"created", "renamed"}));

  fs.materialize(PowerLossVariant::kDropUnsynced);
  // The creation undone, the file back under its old name, the removed one back.
  EXPECT_EQ(sorted_entries(dir), (std::vector<std::string>{"doomed", "old"}));
  EXPECT_EQ(read_all(dir.file("old")), "existing");
  EXPECT_EQ(read_all(dir.file("doomed")), "removed later");

  fs.materialize(PowerLossVariant::kKeepEntries);  // the journal got them all
  EXPECT_EQ(sorted_entries(dir), (std::vector<std::string>{"created", "renamed"}));
  EXPECT_EQ(read_all(dir.file("created")), "data");
  EXPECT_EQ(read_all(dir.file("renamed")), "existing");
}

TEST(PowerLoss, ADirectorySyncMakesTheEntriesDurable) {
  TempDir dir;
  write_all(dir.file("doomed"), "x");
  PowerLossFileSystem fs(default_file_system());
  write_file(fs, dir.file("tmp"), "new", /*sync=*/true);
  fs.rename(dir.file("tmp"), dir.file("final"));
  fs.remove(dir.file("doomed"));
  fs.sync_dir(dir.path() + "/");  // the same directory, spelled differently
  write_file(fs, dir.file("later"), "late", /*sync=*/true);  // after the sync: undone
  for (PowerLossVariant v : {PowerLossVariant::kDropUnsynced, PowerLossVariant::kTornUnsynced}) {
    fs.materialize(v);
    EXPECT_EQ(sorted_entries(dir), std::vector<std::string>{"final"}) << variant_name(v);
    EXPECT_EQ(read_all(dir.file("final")), "new") << variant_name(v);
  }
  EXPECT_EQ(fs.directories(), std::vector<std::string>{dir.path()});
}

// A rename whose data was never synced: the new name may survive with
// nothing (drop) or garbage (torn) in it: what atomic_write's sync prevents.
TEST(PowerLoss, ARenamedFileWithoutItsSyncIsEmptyOrTorn) {
  TempDir dir;
  PowerLossFileSystem fs(default_file_system());
  write_file(fs, dir.file("tmp"), std::string(100, 'd'), /*sync=*/false);
  fs.rename(dir.file("tmp"), dir.file("final"));
  fs.sync_dir(dir.path());
  fs.materialize(PowerLossVariant::kDropUnsynced);
  EXPECT_EQ(read_all(dir.file("final")), "");
  fs.materialize(PowerLossVariant::kTornUnsynced);
  const std::string torn = read_all(dir.file("final"));
  EXPECT_EQ(torn.substr(0, 50), std::string(50, 'd'));
  EXPECT_EQ(torn.size(), 100u);
  EXPECT_EQ(torn.find('d', 50), std::string::npos);
}

TEST(PowerLoss, AfterTheCutEveryCallFailsAndNothingChanges) {
  TempDir dir;
  PowerLossFileSystem fs(default_file_system());
  auto f = fs.create_exclusive(dir.file("a"));  // 0
  f->append("abc", 3);                          // 1
  fs.cut_at(2);
  try {
    f->sync();  // 2: refused
    FAIL() << "sync after the cut";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot sync '" + dir.file("a") + "'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("simulated power cut at call 2"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(fs.cut_happened());
  EXPECT_EQ(fs.cut_index(), 2u);
  EXPECT_THROW(f->append("d", 1), IoError);
  EXPECT_THROW(fs.create_exclusive(dir.file("b")), IoError);
  EXPECT_THROW(fs.rename(dir.file("a"), dir.file("c")), IoError);
  EXPECT_THROW(fs.sync_dir(dir.path()), IoError);
  EXPECT_THROW(fs.list_dir(dir.path()), IoError);
  EXPECT_THROW(fs.map(dir.file("a"), "file"), IoError);
  EXPECT_THROW(fs.exists(dir.file("a")), IoError);
  fs.remove(dir.file("a"));  // does nothing, throws nothing
  EXPECT_EQ(read_all(dir.file("a")), "abc");
  EXPECT_EQ(fs.call_name(0), "create '" + dir.file("a") + "'");
  EXPECT_EQ(fs.call_name(1), "append '" + dir.file("a") + "'");
  // Nothing was durable: the unsynced creation is undone.
  fs.materialize(PowerLossVariant::kDropUnsynced);
  EXPECT_TRUE(dir.entries().empty());
}

// atomic_write cut at every call, every variant: the old content or the new
// one, whole; the new one whenever the cut came after atomic_write returned.
TEST(PowerLoss, AtomicWriteCutAtEveryCallLeavesTheOldOrTheNewFile) {
  const std::string old_content(5000, 'o');
  std::string new_content(3 * 4096 + 17, 'n');
  new_content[0] = 'N';
  auto write_new = [&](WritableFile& f) {  // the body, then a header patched in place, as the writer does
    f.append("?", 1);
    f.append(new_content.data() + 1, new_content.size() - 1);
    f.pwrite(0, "N", 1);
  };
  size_t n = 0;
  {
    TempDir dir;
    write_all(dir.file("ckpt"), old_content);
    PowerLossFileSystem fs(default_file_system());
    atomic_write(fs, dir.file("ckpt"), write_new);
    n = fs.calls();
  }
  ASSERT_EQ(n, 8u);  // create, append, append, pwrite, sync, close, rename, sync_dir
  size_t cuts = 0;
  for (size_t k = 0; k <= n; ++k) {
    TempDir dir;
    write_all(dir.file("ckpt"), old_content);
    PowerLossFileSystem fs(default_file_system());
    fs.cut_at(k);
    bool returned = false;
    try {
      atomic_write(fs, dir.file("ckpt"), write_new);
      returned = true;
    } catch (const IoError&) {
    }
    EXPECT_EQ(returned, k == n) << "cut at " << k;
    for (PowerLossVariant v : all_power_loss_variants()) {
      fs.materialize(v);
      const std::string now = read_all(dir.file("ckpt"));
      const std::string where = "cut at call " + std::to_string(k) + ", " + variant_name(v);
      EXPECT_TRUE(now == old_content || now == new_content) << where << ": " << now.size() << " bytes";
      if (returned) EXPECT_TRUE(now == new_content) << where << ": " << now.size() << " bytes";
      ++cuts;
    }
  }
  EXPECT_EQ(cuts, (n + 1) * 3);
}

}  // namespace
}  // namespace continua::io
