// Test helper: builds checkpoint bytes by hand, including impossible ones,
// with a correct header CRC so that each test reaches the check it targets.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstring>
#include <string>

#include "continua/format/safetensors.h"
#include "continua/io/crc32c.h"

namespace continua::testing {

inline std::string hex8(uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

// A continua header: `crcs` is the tensor_crc32c object (as JSON text),
// `entries` the tensor entries each starting with a comma.
inline std::string continua_header(const std::string& crcs, const std::string& entries,
                                   const std::string& version = "1",
                                   const std::string& extra_meta = "") {
  return std::string(format::kHeaderPrefix) +
         "00000000\",\"format\":\"continua-checkpoint\",\"format_version\":\"" + version +
         "\",\"tensor_crc32c\":" + nlohmann::json(crcs).dump() + extra_meta + "}" + entries + "}";
}

inline std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return s;
}

// Length prefix + header (space-padded to align the data to 64 when `pad`)
// + data, with the header CRC patched in when the header has the prefix.
inline std::string seal(std::string header, const std::string& data, bool pad = true) {
  if (pad) {
    const size_t mis = (8 + header.size()) % 64;
    if (mis) header.append(64 - mis, ' ');
  }
  std::string file = le64(header.size()) + header;
  if (header.rfind(std::string(format::kHeaderPrefix), 0) == 0) {
    const size_t pos = 8 + format::kHeaderCrcOffset;
    std::memcpy(&file[pos], "00000000", 8);
    const std::string crc = hex8(io::crc32c(file.data(), file.size()));
    std::memcpy(&file[pos], crc.data(), 8);
  }
  return file + data;
}

// Recomputes the header CRC of a complete file after a test edited its header.
inline std::string reseal(std::string file) {
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<uint8_t>(file[i])) << (8 * i);
  const size_t pos = 8 + format::kHeaderCrcOffset;
  std::memcpy(&file[pos], "00000000", 8);
  const std::string crc = hex8(io::crc32c(file.data(), 8 + n));
  std::memcpy(&file[pos], crc.data(), 8);
  return file;
}

}  // namespace continua::testing
