// PowerLossFileSystem: a FileSystem wrapper for tests that simulates a power
// cut, modelled on leveldb's FaultInjectionTestEnv (db/fault_injection_test.cc)
// and SQLite's crash tests.
//
// SIGKILL keeps the page cache: what was written reaches the disk anyway. A
// power cut drops whatever no completed fsync covered. This wrapper passes
// every call through to its base, so the code under test writes, renames,
// maps and lists real files, and keeps beside them what a power cut would
// leave of each directory it has touched:
// - per file, its bytes as of its last completed sync() and the byte ranges
//   written since;
// - per directory, its entries (name -> file) as of its last completed
//   sync_dir(): a creation, rename or removal since then is not durable.
// A directory is adopted the first time a call touches it (a file in it is
// created, renamed, removed, or it is listed or synced); the regular files
// it holds then count as durable, their bytes and their names.
//
// A cut at call index k (cut_at) makes call k and every later call throw
// IoError (remove does nothing; reads and listings throw too): the machine
// has stopped. materialize(variant) then rewrites every adopted directory,
// through the base file system, to what the disk would hold after the
// reboot, and the test loads from it with the ordinary code. It can be
// called again with another variant: each starts from the same cut.
//
// Usage:
//   PowerLossFileSystem fs(default_file_system());
//   fs.cut_at(k);
//   try { save_checkpoint(s, path, SaveOptions().file_system(&fs)); } catch (const IoError&) {}
//   fs.materialize(PowerLossVariant::kTornUnsynced);
//   // now load `path` with the default file system: the last checkpoint
//   // whose save returned must be there, complete.
//
// Counted calls, one index from 0 across all files: create, append, pwrite,
// sync, close, rename, sync_dir, remove (call_name says which). exists,
// free_bytes, map, open_read, list_dir and lock pass through uncounted until
// the cut. The shadow holds every adopted file's bytes in memory twice:
// meant for test-sized directories. Thread-safe (the checkpoint writer's
// background pwrites and AsyncCheckpointer's thread); materialize() must not
// run while another call is in flight.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "continua/io/file_system.h"

namespace continua::io {

enum class PowerLossVariant {
  // Unsynced data lost: each file holds its bytes as of its last sync (a
  // file never synced is empty). Entries created, renamed or removed since
  // their directory's last sync undone: a renamed file is back under its old
  // name (absent if its creation was not synced either), a removed one back.
  kDropUnsynced,
  // The same entries undone; unsynced data torn: the file keeps the size it
  // was written to, the first half (in file order) of the bytes written
  // since its last sync reached the disk, every later one is garbage (a
  // value other than the one written).
  kTornUnsynced,
  // The entries since the last directory sync kept (a journaling file
  // system committed them before the cut), unsynced data torn as above: a
  // file renamed before its data was synced shows under its new name, torn.
  kKeepEntries,
};

// "drop unsynced", "torn unsynced", "keep entries, torn data".
const char* variant_name(PowerLossVariant variant);
// The three variants, in the order above.
const std::vector<PowerLossVariant>& all_power_loss_variants();

class PowerLossFileSystem final : public FileSystemWrapper {
 public:
  explicit PowerLossFileSystem(FileSystem& base);
  ~PowerLossFileSystem() override;

  // The power goes when call `call_index` starts (that call throws). A cut
  // beyond the last call never happens by itself: call cut().
  void cut_at(size_t call_index);
  // The power goes now.
  void cut();
  bool cut_happened() const;
  // Counted calls so far (those refused after the cut included).
  size_t calls() const;
  // "create '/d/f'", "sync_dir '/d'", ...: which call an index was.
  std::string call_name(size_t call_index) const;
  // The index of the call the cut refused first, or calls() if none was.
  size_t cut_index() const;

  // Cuts (if not cut yet) and rewrites every adopted directory to what the
  // disk holds after the cut: its regular files not in the surviving
  // entries are removed, each surviving entry is written with its surviving
  // bytes. Throws IoError if the base file system fails.
  void materialize(PowerLossVariant variant);
  // The adopted directories, normalized ("/tmp/x", no trailing slash).
  std::vector<std::string> directories() const;

  std::unique_ptr<WritableFile> create_exclusive(const std::string& path) override;
  void rename(const std::string& from, const std::string& to) override;
  void sync_dir(const std::string& dir) override;
  void remove(const std::string& path) noexcept override;
  bool exists(const std::string& path) override;
  uint64_t free_bytes(const std::string& dir) override;
  MappedFile map(const std::string& path, std::string_view what) override;
  std::unique_ptr<ReadableFile> open_read(const std::string& path, std::string_view what) override;
  std::vector<std::string> list_dir(const std::string& dir) override;
  std::unique_ptr<FileLock> lock(const std::string& lock_path, const std::string& what,
                                 const std::string& advice) override;

  // Internal, for the files it hands out.
  struct Inode;
  void begin(const char* operation, const char* name, const std::string& path);
  void record_write(Inode& inode, uint64_t offset, const void* data, size_t n);
  void record_sync(Inode& inode);

 private:
  struct Dir;
  Dir& adopt(const std::string& dir);  // mu_ held
  void refuse_if_cut(const char* operation, const std::string& path) const;

  mutable std::mutex mu_;
  size_t calls_ = 0;
  size_t cut_at_;
  bool cut_ = false;
  size_t cut_index_ = 0;
  std::map<size_t, std::string> names_;
  std::map<std::string, std::unique_ptr<Dir>> dirs_;
};

}  // namespace continua::io
