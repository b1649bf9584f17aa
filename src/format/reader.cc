// Reads and validates continua checkpoints. Order of checks matters: nothing
// from the file is trusted (lengths, offsets, JSON) until the check before it
// has bounded it, and the header's CRC is checked before any JSON is parsed,
// so the JSON parser only ever sees bytes the writer produced.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <cstring>
#include <istream>
#include <limits>
#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include "continua/errors.h"
#include "continua/format/safetensors.h"
#include "continua/io/crc32c.h"
#include "continua/io/mapped_file.h"

namespace continua::format {
namespace {

using nlohmann::json;

std::string hex8(uint32_t v) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s(8, '0');
  for (int i = 7; i >= 0; --i, v >>= 4) s[static_cast<size_t>(i)] = kHex[v & 0xF];
  return s;
}

// Exactly 8 lowercase hex digits, as the writer emits them.
bool parse_hex8(std::string_view s, uint32_t* out) {
  if (s.size() != 8) return false;
  uint32_t v = 0;
  for (char c : s) {
    uint32_t d;
    if (c >= '0' && c <= '9') {
      d = static_cast<uint32_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      d = static_cast<uint32_t>(c - 'a' + 10);
    } else {
      return false;
    }
    v = (v << 4) | d;
  }
  *out = v;
  return true;
}

// nlohmann::json recurses once per nesting level; bound the depth on the raw
// bytes first so a hostile header cannot exhaust the stack.
bool nests_deeper_than(std::string_view s, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace

// Throws CorruptionError("corrupt checkpoint '<name>': <what>").
#define CONTINUA_CORRUPT(what) \
  throw CorruptionError("corrupt checkpoint '" + name_ + "': " + (what))

SafetensorsReader SafetensorsReader::open_file(const std::string& path,
                                               const ReadOptions& options) {
  io::FileSystem& fs = options.fs_ ? *options.fs_ : io::default_file_system();
  auto file = std::make_shared<io::MappedFile>(fs.map(path, "checkpoint"));
  SafetensorsReader r;
  r.base_ = file->data();
  r.size_ = file->size();
  r.mapped_ = file;
  r.owner_ = std::move(file);
  r.name_ = path;
  r.parse(options);
  return r;
}

SafetensorsReader SafetensorsReader::from_memory(std::shared_ptr<const std::string> bytes,
                                                 std::string name_for_errors,
                                                 const ReadOptions& options) {
  if (!bytes) throw InvalidArgument("SafetensorsReader::from_memory: null buffer");
  SafetensorsReader r;
  r.base_ = reinterpret_cast<const uint8_t*>(bytes->data());
  r.size_ = bytes->size();
  r.owner_ = std::move(bytes);
  r.name_ = std::move(name_for_errors);
  r.parse(options);
  return r;
}

SafetensorsReader SafetensorsReader::from_stream(std::istream& in, std::string name_for_errors,
                                                 const ReadOptions& options) {
  // Grow with what arrives rather than with what the header claims: a
  // length field of 2^60 costs nothing until the bytes are really there.
  auto bytes = std::make_shared<std::string>();
  std::vector<char> chunk(size_t{1} << 20);
  while (true) {
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    const auto got = in.gcount();
    if (got > 0) bytes->append(chunk.data(), static_cast<size_t>(got));
    if (!in) break;
  }
  if (in.bad()) throw IoError("cannot read checkpoint '" + name_for_errors + "'");
  return from_memory(std::move(bytes), std::move(name_for_errors), options);
}

const TensorInfo* SafetensorsReader::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

void SafetensorsReader::verify_tensor(const TensorInfo& info) const {
  const uint32_t actual = io::crc32c(data(info), info.nbytes);
  if (actual != info.crc32c) {
    CONTINUA_CORRUPT("tensor '" + info.name + "' fails its CRC32C check (stored " +
                     hex8(info.crc32c) + ", computed " + hex8(actual) + ")");
  }
}

// Verifying a large mapped file is dominated by faulting its pages in from
// disk. A helper thread walks the mapping ahead, one touch per page, so the
// disk reads ahead while this thread checksums what has arrived: the CRC
// costs nothing beyond the read itself (docs/benchmarks.md). The helper stays
// at most kWindow ahead, and checked chunks leave the resident set, so the
// check of a 1 GiB file holds about kWindow of it.
void SafetensorsReader::verify_all() const {
  constexpr uint64_t kPrefetchMin = uint64_t{32} << 20;
  constexpr uint64_t kChunk = uint64_t{4} << 20;
  constexpr uint64_t kWindow = uint64_t{16} << 20;
  if (size_ < kPrefetchMin) {
    for (const TensorInfo& t : tensors_) verify_tensor(t);
    return;
  }
  std::mutex mu;
  std::condition_variable cv;
  uint64_t ready = 0;  // bytes [0, ready) are resident
  uint64_t needed = 0;  // the checksum is at (or waiting for) offset `needed`
  bool stop = false;
  std::thread helper([&] {
    volatile uint8_t sink = 0;
    for (uint64_t off = 0; off < size_; off += kChunk) {
      {
        std::unique_lock<std::mutex> lock(mu);
        // Relative to where the checksum is, not to what it has checked:
        // a header or a gap larger than the window is walked through.
        cv.wait(lock, [&] { return stop || off < needed + kWindow; });
        if (stop) break;
      }
      const uint64_t end = std::min(size_, off + kChunk);
      for (uint64_t q = off; q < end; q += 4096) sink = sink + base_[q];
      {
        std::lock_guard<std::mutex> lock(mu);
        ready = end;
      }
      cv.notify_all();
    }
    (void)sink;
  });
  struct Join {
    std::thread& t;
    std::mutex& mu;
    std::condition_variable& cv;
    bool& stop;
    ~Join() {
      {
        std::lock_guard<std::mutex> lock(mu);
        stop = true;
      }
      cv.notify_all();
      t.join();
    }
  } join{helper, mu, cv, stop};
  for (const TensorInfo& t : tensors_) {
    uint32_t crc = 0;
    for (uint64_t done = 0; done < t.nbytes;) {
      const uint64_t n = std::min(kChunk, t.nbytes - done);
      const uint64_t end = t.offset + done + n;
      {
        std::unique_lock<std::mutex> lock(mu);
        needed = t.offset + done;  // end - needed <= kChunk < kWindow: the helper gets there
        cv.notify_all();
        cv.wait(lock, [&] { return ready >= end; });
      }
      crc = io::crc32c_extend(crc, base_ + t.offset + done, static_cast<size_t>(n));
      drop_pages(base_ + t.offset + done, n);
      done += n;
    }
    if (crc != t.crc32c) {
      CONTINUA_CORRUPT("tensor '" + t.name + "' fails its CRC32C check (stored " +
                       hex8(t.crc32c) + ", computed " + hex8(crc) + ")");
    }
  }
}

void SafetensorsReader::drop_pages(const void* data, uint64_t bytes) const {
  if (mapped_) mapped_->drop_pages(data, bytes);
}

std::function<void(const void*, size_t)> SafetensorsReader::page_dropper() const {
  if (!mapped_) return {};
  return [mapped = mapped_](const void* data, size_t bytes) { mapped->drop_pages(data, bytes); };
}

void SafetensorsReader::parse(const ReadOptions& options) {
  // 1. Length prefix.
  if (size_ < kLengthPrefixSize) {
    CONTINUA_CORRUPT("file is " + std::to_string(size_) +
                     " bytes, shorter than the 8-byte header length");
  }
  uint64_t n = 0;
  for (size_t i = 0; i < kLengthPrefixSize; ++i) n |= static_cast<uint64_t>(base_[i]) << (8 * i);
  if (n > kMaxHeaderSize) {
    CONTINUA_CORRUPT("header length " + std::to_string(n) + " exceeds the limit of " +
                     std::to_string(kMaxHeaderSize) + " bytes");
  }
  if (n > size_ - kLengthPrefixSize) {
    CONTINUA_CORRUPT("header length " + std::to_string(n) + " runs past the end of the file (" +
                     std::to_string(size_) + " bytes)");
  }
  const std::string_view header(reinterpret_cast<const char*>(base_ + kLengthPrefixSize),
                                static_cast<size_t>(n));

  // 2. Header CRC, located textually before any parsing.
  uint32_t stored_crc = 0;
  if (header.size() < kHeaderCrcOffset + 9 || header.substr(0, kHeaderPrefix.size()) != kHeaderPrefix ||
      header[kHeaderCrcOffset + 8] != '"' ||
      !parse_hex8(header.substr(kHeaderCrcOffset, 8), &stored_crc)) {
    CONTINUA_CORRUPT("not a continua checkpoint (the header does not begin with " +
                     std::string(kHeaderPrefix) + "xxxxxxxx\")");
  }
  const size_t crc_pos = kLengthPrefixSize + kHeaderCrcOffset;
  uint32_t crc = io::crc32c(base_, crc_pos);
  crc = io::crc32c_extend(crc, "00000000", 8);
  crc = io::crc32c_extend(crc, base_ + crc_pos + 8,
                          static_cast<size_t>(kLengthPrefixSize + n - crc_pos - 8));
  if (crc != stored_crc) {
    CONTINUA_CORRUPT("header fails its CRC32C check (stored " + hex8(stored_crc) +
                     ", computed " + hex8(crc) + ")");
  }

  // 3. JSON, with bounded depth and no duplicate keys.
  auto parse_json = [&](std::string_view text, const std::string& what) {
    if (nests_deeper_than(text, kMaxJsonDepth)) {
      CONTINUA_CORRUPT(what + " nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    }
    std::vector<std::set<std::string>> open_objects;
    json::parser_callback_t on_event = [&](int, json::parse_event_t event, json& parsed) {
      if (event == json::parse_event_t::object_start) {
        open_objects.emplace_back();
      } else if (event == json::parse_event_t::object_end) {
        open_objects.pop_back();
      } else if (event == json::parse_event_t::key) {
        const auto& key = parsed.get_ref<const std::string&>();
        // nlohmann keeps one of two equal keys silently; another reader may
        // keep the other, so a duplicate makes the file ambiguous.
        if (!open_objects.back().insert(key).second) {
          CONTINUA_CORRUPT(what + " has the key '" + key + "' twice");
        }
      }
      return true;
    };
    try {
      return json::parse(text.begin(), text.end(), on_event, /*allow_exceptions=*/true,
                         /*ignore_comments=*/false);
    } catch (const json::exception& e) {
      CONTINUA_CORRUPT(what + " is not valid JSON: " + e.what());
    }
  };
  const json top = parse_json(header, "header");
  if (!top.is_object()) CONTINUA_CORRUPT("header is not a JSON object");

  // 4. __metadata__: format and version first, so a file of another version
  // is reported as such, not as corrupt.
  const auto meta_it = top.find(std::string(kMetadataKey));
  if (meta_it == top.end() || !meta_it->is_object()) {
    CONTINUA_CORRUPT("not a continua checkpoint (no __metadata__ object)");
  }
  std::map<std::string, std::string> meta;
  for (const auto& [key, value] : meta_it->items()) {
    if (!value.is_string()) CONTINUA_CORRUPT("__metadata__ value '" + key + "' is not a string");
    meta[key] = value.get<std::string>();
  }
  const auto format_it = meta.find(std::string(kFormatKey));
  if (format_it == meta.end() || format_it->second != kFormatName) {
    CONTINUA_CORRUPT("not a continua checkpoint (__metadata__ has no \"format\": \"" +
                     std::string(kFormatName) + "\")");
  }
  const auto version_it = meta.find(std::string(kFormatVersionKey));
  if (version_it == meta.end()) CONTINUA_CORRUPT("__metadata__ has no format_version");
  const std::string& vs = version_it->second;
  if (vs.empty() || vs.size() > 9 || !std::all_of(vs.begin(), vs.end(), [](char c) {
        return c >= '0' && c <= '9';
      })) {
    CONTINUA_CORRUPT("format_version '" + vs + "' is not a version number");
  }
  const auto version = static_cast<uint32_t>(std::stoul(vs));
  if (version != kFormatVersion) {
    throw VersionError("checkpoint '" + name_ + "' has format version " + std::to_string(version) +
                       ", but this build of continua reads format version " +
                       std::to_string(kFormatVersion));
  }
  format_version_ = version;

  if ((kLengthPrefixSize + n) % kDataAlignment != 0) {
    CONTINUA_CORRUPT("header length " + std::to_string(n) + " does not start the data at a multiple of " +
                     std::to_string(kDataAlignment) + " bytes");
  }
  const uint64_t data_start = kLengthPrefixSize + n;
  const uint64_t buffer_size = size_ - data_start;

  // 5. Tensor entries: every number is bounded before it is used.
  std::vector<TensorInfo> infos;
  for (const auto& [name, entry] : top.items()) {
    if (name == kMetadataKey) continue;
    const std::string rec = "tensor '" + name + "'";
    if (name.empty() || name.rfind("__", 0) == 0) CONTINUA_CORRUPT(rec + ": invalid tensor name");
    if (!entry.is_object()) CONTINUA_CORRUPT(rec + ": entry is not an object");
    for (const auto& [key, unused] : entry.items()) {
      (void)unused;
      if (key != "dtype" && key != "shape" && key != "data_offsets") {
        CONTINUA_CORRUPT(rec + ": unknown field '" + key + "'");
      }
    }
    TensorInfo info;
    info.name = name;
    const auto dt = entry.find("dtype");
    if (dt == entry.end() || !dt->is_string()) CONTINUA_CORRUPT(rec + ": missing dtype");
    const auto dtype = parse_dtype(dt->get_ref<const std::string&>());
    if (!dtype) CONTINUA_CORRUPT(rec + ": unknown dtype '" + dt->get<std::string>() + "'");
    info.dtype = *dtype;

    const auto sh = entry.find("shape");
    if (sh == entry.end() || !sh->is_array()) CONTINUA_CORRUPT(rec + ": missing shape");
    uint64_t numel = 1;
    for (const json& d : *sh) {
      if (!d.is_number_integer()) CONTINUA_CORRUPT(rec + ": shape has a non-integer dimension");
      if (!d.is_number_unsigned()) CONTINUA_CORRUPT(rec + ": shape has a negative dimension");
      const auto v = d.get<uint64_t>();
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        CONTINUA_CORRUPT(rec + ": shape has a dimension too large");
      }
      if (__builtin_mul_overflow(numel, v, &numel)) {
        CONTINUA_CORRUPT(rec + ": the element count of its shape overflows 64 bits");
      }
      info.shape.push_back(static_cast<int64_t>(v));
    }
    if (__builtin_mul_overflow(numel, dtype_size(info.dtype), &info.nbytes)) {
      CONTINUA_CORRUPT(rec + ": the byte size of its shape overflows 64 bits");
    }

    const auto off = entry.find("data_offsets");
    if (off == entry.end() || !off->is_array() || off->size() != 2 ||
        !(*off)[0].is_number_unsigned() || !(*off)[1].is_number_unsigned()) {
      CONTINUA_CORRUPT(rec + ": data_offsets is not a pair of non-negative integers");
    }
    const auto begin = (*off)[0].get<uint64_t>();
    const auto end = (*off)[1].get<uint64_t>();
    const std::string range = "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
    if (begin > end) CONTINUA_CORRUPT(rec + ": data_offsets " + range + " are reversed");
    if (end > buffer_size) {
      CONTINUA_CORRUPT(rec + ": data_offsets " + range + " run past the end of the data (" +
                       std::to_string(buffer_size) + " bytes; file truncated?)");
    }
    if (end - begin != info.nbytes) {
      CONTINUA_CORRUPT(rec + ": shape " + shape_string(info.shape) + " of " +
                       dtype_name(info.dtype) + " needs " + std::to_string(info.nbytes) +
                       " bytes but data_offsets " + range + " hold " +
                       std::to_string(end - begin));
    }
    if (begin % dtype_size(info.dtype) != 0) {
      CONTINUA_CORRUPT(rec + ": offset " + std::to_string(begin) +
                       " is not aligned to its element size");
    }
    info.offset = data_start + begin;
    infos.push_back(std::move(info));
  }

  // 6. Layout: tensors tile the buffer exactly, in offset order.
  std::sort(infos.begin(), infos.end(), [](const TensorInfo& a, const TensorInfo& b) {
    if (a.offset != b.offset) return a.offset < b.offset;
    if (a.nbytes != b.nbytes) return a.nbytes < b.nbytes;
    return a.name < b.name;
  });
  uint64_t expected = data_start;
  const TensorInfo* prev = nullptr;
  for (const TensorInfo& t : infos) {
    if (t.offset < expected) {
      CONTINUA_CORRUPT("tensor '" + t.name + "' overlaps tensor '" + prev->name + "'");
    }
    if (t.offset > expected) {
      CONTINUA_CORRUPT("gap of " + std::to_string(t.offset - expected) +
                       " bytes in the data before tensor '" + t.name + "'");
    }
    expected = t.offset + t.nbytes;
    prev = &t;
  }
  if (expected != size_) {
    CONTINUA_CORRUPT(std::to_string(size_ - expected) +
                     " bytes in the data buffer belong to no tensor");
  }

  // 7. One CRC per tensor, no more, no less.
  const auto crc_it = meta.find(std::string(kTensorCrcKey));
  if (crc_it == meta.end()) CONTINUA_CORRUPT("__metadata__ has no tensor_crc32c");
  const json crcs = parse_json(crc_it->second, "tensor_crc32c");
  if (!crcs.is_object()) CONTINUA_CORRUPT("tensor_crc32c is not a JSON object");
  for (TensorInfo& t : infos) {
    const auto it = crcs.find(t.name);
    if (it == crcs.end()) CONTINUA_CORRUPT("tensor '" + t.name + "' has no entry in tensor_crc32c");
    if (!it->is_string() || !parse_hex8(it->get_ref<const std::string&>(), &t.crc32c)) {
      CONTINUA_CORRUPT("tensor '" + t.name + "': tensor_crc32c entry is not 8 lowercase hex digits");
    }
  }
  if (crcs.size() != infos.size()) {
    for (const auto& [key, unused] : crcs.items()) {
      (void)unused;
      if (!top.contains(key) || key == kMetadataKey) {
        CONTINUA_CORRUPT("tensor_crc32c names '" + key + "', which is not a tensor");
      }
    }
  }

  for (const auto& key : {kFormatKey, kFormatVersionKey, kTensorCrcKey, kHeaderCrcKey}) {
    meta.erase(std::string(key));
  }
  metadata_ = std::move(meta);
  tensors_ = std::move(infos);
  for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
  if (options.verify_) verify_all();
}

#undef CONTINUA_CORRUPT

}  // namespace continua::format
