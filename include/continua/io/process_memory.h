// This process's memory, as Linux reports it in /proc/self/status: how
// `continua bench` and the tests measure the peak memory of a save or a load,
// and how tests bound a child's address space.
//
// Usage:
//   const bool reset = continua::io::reset_peak_resident();
//   const int64_t before = continua::io::resident_bytes();
//   load();
//   const int64_t rise = continua::io::peak_resident_bytes() - before;
//
// Contract: resident_bytes() is VmRSS, peak_resident_bytes() VmHWM and
// address_space_bytes() VmSize, in bytes, -1 when unavailable. reset_peak_resident() sets VmHWM to the current
// VmRSS ("5" into /proc/self/clear_refs) and returns false when the system
// does not allow it (then the peak is that of the whole process so far).
// File pages mapped and touched count as resident until unmapped or dropped.
#pragma once

#include <cstdint>

namespace continua::io {

int64_t resident_bytes();
int64_t peak_resident_bytes();
int64_t address_space_bytes();
bool reset_peak_resident();

}  // namespace continua::io
