// IDX files (MNIST's format): a magic number with a type code and the
// number of dims, big-endian u32 dims, then the data; gzip-compressed or not.
#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "data/readers/common.h"

namespace continua::readers {

namespace {

// 4 GiB: far above any IDX data set, far below what would exhaust memory.
constexpr uint64_t kMaxIdxBytes = uint64_t(1) << 32;

[[noreturn]] void corrupt(const std::string& name, const std::string& what) {
  internal::corrupt("IDX file", name, what);
}

uint32_t big_endian_u32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

// The IDX bytes, read from plain data or inflated from gzip members on
// demand (so no more is inflated than the dims ask for). As zlib's gzread,
// which this replaces: members may be concatenated, and anything after the
// last one that is not another gzip member is ignored.
class IdxSource {
 public:
  IdxSource(const uint8_t* data, size_t size, const std::string& name)
      : data_(data), size_(size), name_(name) {
    gzip_ = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
    if (gzip_) {
      std::memset(&z_, 0, sizeof z_);
      if (inflateInit2(&z_, 16 + MAX_WBITS) != Z_OK) corrupt(name, "cannot start zlib");
    }
  }
  ~IdxSource() {
    if (gzip_) inflateEnd(&z_);
  }
  IdxSource(const IdxSource&) = delete;
  IdxSource& operator=(const IdxSource&) = delete;

  bool gzip() const { return gzip_; }
  size_t compressed_size() const { return size_; }

  // Reads n bytes, fewer only at the end of the data.
  size_t read(uint8_t* out, size_t n) {
    if (!gzip_) {
      const size_t got = std::min(n, size_ - pos_);
      if (got) std::memcpy(out, data_ + pos_, got);
      pos_ += got;
      return got;
    }
    size_t done = 0;
    while (done < n && !ended_) {
      if (z_.avail_in == 0 && pos_ < size_) {
        const size_t chunk = std::min<size_t>(size_ - pos_, 1u << 30);
        z_.next_in = const_cast<Bytef*>(data_ + pos_);
        z_.avail_in = uInt(chunk);
        pos_ += chunk;
      }
      const size_t want = std::min<size_t>(n - done, 1u << 30);
      z_.next_out = out + done;
      z_.avail_out = uInt(want);
      const int rc = inflate(&z_, Z_NO_FLUSH);
      done += want - z_.avail_out;
      if (rc == Z_STREAM_END) {
        // Another member follows, or the data ends here.
        const size_t rest = z_.avail_in + (size_ - pos_);
        const uint8_t* next = z_.avail_in ? z_.next_in : data_ + pos_;
        if (rest >= 2 && next[0] == 0x1f && next[1] == 0x8b) {
          inflateReset(&z_);
        } else {
          ended_ = true;
        }
      } else if (rc == Z_BUF_ERROR && z_.avail_in == 0 && pos_ == size_) {
        corrupt(name_, "cannot decompress: the gzip data ends in the middle of a stream");
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        corrupt(name_, std::string("cannot decompress: ") + (z_.msg ? z_.msg : zError(rc)));
      }
    }
    return done;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& name_;
  bool gzip_ = false;
  bool ended_ = false;
  z_stream z_{};
};

}  // namespace

IdxArray parse_idx(const uint8_t* data, size_t size, const std::string& name) {
  IdxSource in(data, size, name);
  uint8_t head[4 + 4 * 4];
  if (in.read(head, 4) < 4) corrupt(name, "truncated: shorter than the 4-byte magic number");
  if (head[0] != 0 || head[1] != 0) {
    corrupt(name, "wrong magic number (expected 0x0000 then a type code and the number of dims)");
  }
  if (head[2] != 0x08) {
    corrupt(name, "unsupported data type code " + std::to_string(head[2]) +
                      " (only unsigned byte, 0x08, is supported)");
  }
  const size_t ndims = head[3];
  if (ndims == 0 || ndims > 4) corrupt(name, "invalid number of dims " + std::to_string(ndims));
  if (in.read(head + 4, 4 * ndims) < 4 * ndims) corrupt(name, "truncated in the dimension list");
  IdxArray out;
  uint64_t count = 1;
  for (size_t i = 0; i < ndims; ++i) {
    const uint32_t d = big_endian_u32(&head[4 + 4 * i]);
    out.dims.push_back(d);
    count *= d;
    if (count > kMaxIdxBytes) {
      corrupt(name, "dimensions claim more than " + std::to_string(kMaxIdxBytes) + " bytes");
    }
  }
  // What the input can hold at most: its own bytes, or for gzip what
  // deflate's largest ratio makes of them. Beyond that the data must be
  // truncated: say so before allocating what the dims claim.
  const uint64_t header = 4 + 4 * ndims;
  const uint64_t can_hold = in.gzip() ? uint64_t(in.compressed_size()) * kMaxDeflateRatio + 1024
                                      : uint64_t(size) - header;
  if (count > can_hold) {
    corrupt(name, "truncated: dims need " + std::to_string(count) + " bytes of data, " +
                      (in.gzip() ? "more than the " + std::to_string(size) +
                                       " compressed bytes can hold"
                                 : "file has " + std::to_string(can_hold)));
  }
  out.data.resize(count);
  const size_t got = in.read(out.data.data(), count);
  if (got < count) {
    corrupt(name, "truncated: dims need " + std::to_string(count) + " bytes of data, file has " +
                      std::to_string(got));
  }
  uint8_t extra[4096];
  const size_t trailing = in.read(extra, sizeof extra);
  if (trailing > 0) {
    corrupt(name, "has " + std::string(trailing == sizeof extra ? "at least " : "") +
                      std::to_string(trailing) + " bytes after the data its dims describe");
  }
  return out;
}

IdxArray read_idx_file(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path, "IDX file");
  return parse_idx(bytes.data(), bytes.size(), path);
}

IdxFiles locate_idx_files(const std::string& folder, Split split) {
  if (!internal::is_directory(folder)) {
    throw InvalidArgument("IDX data set '" + folder + "' is not a folder");
  }
  auto file = [&](const std::string& stem) {
    for (const char* ext : {".gz", ""}) {
      const std::string p = internal::join(folder, stem + ext);
      if (internal::is_regular_file(p)) return p;
    }
    throw IoError("IDX data set '" + folder + "' has no file " + stem + "[.gz]");
  };
  const std::string prefix = split == Split::kTrain ? "train" : "t10k";
  return {file(prefix + "-images-idx3-ubyte"), file(prefix + "-labels-idx1-ubyte")};
}

}  // namespace continua::readers
