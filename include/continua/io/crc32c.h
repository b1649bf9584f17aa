// CRC32C (Castagnoli, polynomial 0x1EDC6F41): the checksum of every record of a
// continua checkpoint.
//
// Uses the SSE4.2 crc32 instruction when the CPU has it (checked once at run
// time) and a table-driven software loop otherwise; both give the same result.
//
// Usage:
//   uint32_t crc = continua::io::crc32c(data, n);
//   // or piece by piece:
//   uint32_t crc = 0;
//   crc = continua::io::crc32c_extend(crc, a, na);
//   crc = continua::io::crc32c_extend(crc, b, nb);   // == crc32c(a ++ b)
//
// Contract: never throws; `data` may be null when `n` is 0.
// Known values: crc32c("123456789", 9) == 0xE3069283.
#pragma once

#include <cstddef>
#include <cstdint>

namespace continua::io {

// Returns the CRC32C of the bytes hashed so far (`crc`, 0 for none) followed by
// data[0, n). The value passed in and returned is the finished checksum, not an
// internal register, so results of crc32c() can be extended directly.
uint32_t crc32c_extend(uint32_t crc, const void* data, size_t n);

// CRC32C of data[0, n).
inline uint32_t crc32c(const void* data, size_t n) { return crc32c_extend(0, data, n); }

// Exposed for tests and benchmarks: the two implementations behind
// crc32c_extend. crc32c_extend_hardware must only be called when
// crc32c_hardware_available() is true.
bool crc32c_hardware_available();
uint32_t crc32c_extend_software(uint32_t crc, const void* data, size_t n);
uint32_t crc32c_extend_hardware(uint32_t crc, const void* data, size_t n);

}  // namespace continua::io
