// continua's exception types: one per category of failure.
//
// Every public function of continua reports failure by throwing one of these.
// Messages name the file and, where there is one, the key path of the state
// involved, e.g.
//   corrupt checkpoint '/ckpt/run.safetensors': tensor
//   'strategy.model.fc1.weight' fails its CRC32C check
//
// Usage:
//   try { continua::maybe_load_checkpoint(strategy, path); }
//   catch (const continua::CorruptionError& e) { ... fall back ... }
//   catch (const continua::Error& e) { ... any other continua failure ... }
//
// This header does not depend on LibTorch.
#pragma once

#include <stdexcept>
#include <string>

namespace continua {

// Base of every continua exception.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The operating system refused an operation: open, write, fsync, rename,
// a full disk (the message then says so), a lock held by another process.
class IoError : public Error {
 public:
  using Error::Error;
};

// A file or stream is not a sound checkpoint: bad magic, bad checksum,
// truncated, lengths or offsets out of bounds, malformed header.
class CorruptionError : public Error {
 public:
  using Error::Error;
};

// A well-formed checkpoint of a format version this build does not read.
class VersionError : public Error {
 public:
  using Error::Error;
};

// A caller's argument is impossible: an unknown strategy, a negative size,
// a checkpoint whose state does not fit the strategy it is loaded into.
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

}  // namespace continua
