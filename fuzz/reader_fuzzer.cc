// libFuzzer target: the checkpoint reader and what `continua inspect` and
// `continua verify` parse, torch-free.
//
// The first input byte picks a mode, the rest is the payload:
//   0: the payload is a checkpoint file, read as is (the CRCs stop most
//      mutations early: this mode tortures the length/prefix/CRC checks);
//   1: the same, but the header CRC is recomputed first when the payload
//      has the continua prefix, so mutations reach the JSON parser, the
//      layout checks, verify_all and the metadata documents;
//   2: the payload is a metadata map ("key\0value\0key\0value..."), fed to
//      parse_checkpoint_metadata directly.
// Every file must either be accepted or raise continua::Error; anything else
// (a crash, a sanitizer report, a foreign exception) is a finding.
//
// Build: fuzz/run_fuzz.sh (clang++ -fsanitize=fuzzer,address,undefined).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "continua/errors.h"
#include "continua/format/checkpoint_metadata.h"
#include "continua/format/safetensors.h"
#include "continua/io/crc32c.h"

namespace {

using namespace continua;

// CONTINUA_FUZZ_VERBOSE=1: say what happened to each input (to check seeds).
void note(const char* stage, const char* what) {
  static const bool verbose = std::getenv("CONTINUA_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "%s: %s\n", stage, what);
}

void reseal_header(std::string& f) {
  if (f.size() < format::kLengthPrefixSize) return;
  uint64_t n = 0;
  for (size_t i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<uint8_t>(f[i])) << (8 * i);
  const size_t crc_pos = format::kLengthPrefixSize + format::kHeaderCrcOffset;
  if (n > f.size() - 8 || n < format::kHeaderCrcOffset + 9) return;
  if (f.compare(8, format::kHeaderPrefix.size(), format::kHeaderPrefix) != 0) return;
  std::memcpy(&f[crc_pos], "00000000", 8);
  uint32_t crc = io::crc32c(f.data(), static_cast<size_t>(8 + n));
  static const char kHex[] = "0123456789abcdef";
  for (int i = 7; i >= 0; --i, crc >>= 4) f[crc_pos + static_cast<size_t>(i)] = kHex[crc & 0xF];
}

void read_file(std::shared_ptr<const std::string> bytes) {
  std::unique_ptr<format::SafetensorsReader> r;
  try {
    r = std::make_unique<format::SafetensorsReader>(
        format::SafetensorsReader::from_memory(bytes, "fuzz"));
  } catch (const Error& e) {
    note("open", e.what());
    return;
  }
  // What inspect shows: every tensor, its bytes (touched, so ASan sees any
  // out-of-bounds view), find() by name.
  volatile uint8_t sink = 0;
  for (const auto& t : r->tensors()) {
    if (r->find(t.name) != &t) std::abort();
    if (t.nbytes > 0) sink = sink + r->data(t)[0] + r->data(t)[t.nbytes - 1];
  }
  try {
    r->verify_all();
    note("verify", "ok");
  } catch (const Error& e) {
    note("verify", e.what());
  }
  try {
    format::parse_checkpoint_metadata(r->metadata(), r->name());
    note("metadata", "ok");
  } catch (const Error& e) {
    note("metadata", e.what());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0] % 3;
  auto payload = std::make_shared<std::string>(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (mode) {
    case 0:
      read_file(payload);
      break;
    case 1:
      reseal_header(*payload);
      read_file(payload);
      break;
    case 2: {
      std::map<std::string, std::string> meta;
      size_t pos = 0;
      while (pos < payload->size()) {
        size_t k_end = payload->find('\0', pos);
        if (k_end == std::string::npos) k_end = payload->size();
        size_t v_end = k_end < payload->size() ? payload->find('\0', k_end + 1) : std::string::npos;
        if (v_end == std::string::npos) v_end = payload->size();
        const std::string key = payload->substr(pos, k_end - pos);
        meta[key] = k_end < payload->size() ? payload->substr(k_end + 1, v_end - k_end - 1) : "";
        pos = v_end + 1;
      }
      try {
        format::parse_checkpoint_metadata(meta, "fuzz");
        note("metadata", "ok");
      } catch (const Error& e) {
        note("metadata", e.what());
      }
      break;
    }
  }
  return 0;
}
