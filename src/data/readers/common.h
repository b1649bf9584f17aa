// Helpers shared by the readers of src/data/readers/ (torch-free).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "continua/data/readers.h"
#include "continua/errors.h"

namespace continua::readers::internal {

// "<kind> '<name>': <what>", as a CorruptionError.
[[noreturn]] void corrupt(const std::string& kind, const std::string& name, const std::string& what);

// The number of elements of `shape` if it needs at most `max_bytes` bytes of
// `element_size` each; -1 when a dimension is negative or it needs more. No
// product is formed that could overflow.
int64_t bounded_numel(const std::vector<int64_t>& shape, size_t element_size, uint64_t max_bytes);

// "[3, 32, 32]"
std::string shape_string(const std::vector<int64_t>& shape);

// A path joined to a name with one '/'.
std::string join(const std::string& folder, const std::string& name);
bool is_directory(const std::string& path);
bool is_regular_file(const std::string& path);

// The sorted names of a folder's entries that are directories (dirs=true)
// or regular files (dirs=false), symlinks followed. IoError naming the folder.
std::vector<std::string> list_folder(const std::string& folder, bool dirs);

}  // namespace continua::readers::internal
