// NumPy .npy files (format versions 1.0, 2.0, 3.0) and the .npz archives
// that hold them (libzip).
//
// .npy layout: "\x93NUMPY", major and minor version bytes, the header length
// (u16 little-endian in 1.0, u32 in 2.0 and 3.0), a header that is a Python
// dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
// padded with spaces and ended by '\n', then the data. The header is parsed
// here by a small grammar of its own, never evaluated.
#include <zip.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string_view>

#include "data/readers/common.h"

namespace continua::readers {

namespace {

constexpr uint8_t kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
constexpr size_t kMaxDims = 32;  // NumPy's own limit (NPY_MAXDIMS) in 1.x

[[noreturn]] void corrupt(const std::string& name, const std::string& what) {
  internal::corrupt(".npy file", name, what);
}

struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<int64_t> shape;
};

// The header dict: string keys; values that are strings, True/False or
// tuples of non-negative integers.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& name) : s_(text), name_(name) {}

  NpyHeader parse() {
    NpyHeader h;
    bool have_descr = false, have_order = false, have_shape = false;
    skip_space();
    expect('{');
    while (true) {
      skip_space();
      if (peek() == '}') break;
      const std::string key = string_literal();
      skip_space();
      expect(':');
      skip_space();
      if (key == "descr") {
        if (have_descr) fail("repeats the key 'descr'");
        if (peek() != '\'' && peek() != '"') fail("'descr' is not a string (structured dtypes are not supported)");
        h.descr = string_literal();
        have_descr = true;
      } else if (key == "fortran_order") {
        if (have_order) fail("repeats the key 'fortran_order'");
        if (s_.substr(pos_, 4) == "True") {
          h.fortran_order = true;
          pos_ += 4;
        } else if (s_.substr(pos_, 5) == "False") {
          pos_ += 5;
        } else {
          fail("'fortran_order' is neither True nor False");
        }
        have_order = true;
      } else if (key == "shape") {
        if (have_shape) fail("repeats the key 'shape'");
        h.shape = tuple();
        have_shape = true;
      } else {
        fail("has an unknown key '" + key + "'");
      }
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      skip_space();
      if (peek() != '}') fail("expected ',' or '}' at byte " + std::to_string(pos_));
    }
    ++pos_;  // '}'
    skip_space();
    if (pos_ != s_.size()) fail("has text after the closing '}'");
    if (!have_descr || !have_order || !have_shape) {
      fail("lacks the key '" + std::string(!have_descr ? "descr" : !have_order ? "fortran_order" : "shape") + "'");
    }
    return h;
  }

 private:
  [[noreturn]] void fail(const std::string& what) { corrupt(name_, "header " + what); }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\t' || s_[pos_] == '\r')) ++pos_;
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "' at byte " + std::to_string(pos_));
    ++pos_;
  }
  std::string string_literal() {
    const char q = peek();
    if (q != '\'' && q != '"') fail("expected a quoted string at byte " + std::to_string(pos_));
    const size_t end = s_.find(q, pos_ + 1);
    if (end == std::string_view::npos) fail("has an unterminated string");
    std::string v(s_.substr(pos_ + 1, end - pos_ - 1));
    if (v.find('\\') != std::string::npos) fail("has an escape sequence in a string");
    pos_ = end + 1;
    return v;
  }
  std::vector<int64_t> tuple() {
    expect('(');
    std::vector<int64_t> dims;
    while (true) {
      skip_space();
      if (peek() == ')') break;
      if (peek() < '0' || peek() > '9') fail("'shape' holds something other than non-negative integers");
      int64_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        if (v > (int64_t(1) << 56)) fail("'shape' has a dimension too large");
        v = v * 10 + (peek() - '0');
        ++pos_;
      }
      if (peek() == 'L') ++pos_;  // Python 2 longs
      dims.push_back(v);
      if (dims.size() > kMaxDims) fail("'shape' has more than " + std::to_string(kMaxDims) + " dimensions");
      skip_space();
      if (peek() == ',') {
        ++pos_;
      } else if (peek() != ')') {
        fail("'shape' is not a tuple of integers");
      }
    }
    ++pos_;  // ')'
    return dims;
  }

  std::string_view s_;
  const std::string& name_;
  size_t pos_ = 0;
};

// '<f4' -> (float32, little-endian); '|u1' -> (uint8, -).
struct Descr {
  DType dtype;
  bool big_endian;
};
Descr parse_descr(const std::string& d, const std::string& name) {
  auto unsupported = [&]() -> Descr {
    corrupt(name, "unsupported dtype '" + d +
                      "' (supported: b1, u1, i1, u2, i2, u4, i4, u8, i8, f2, f4, f8 in any byte order)");
  };
  if (d.size() < 2) unsupported();
  const char order = d[0];
  if (order != '<' && order != '>' && order != '|' && order != '=') unsupported();
  const std::string t = d.substr(1);
  static const struct {
    const char* code;
    DType dtype;
  } kTypes[] = {{"b1", DType::kBool},    {"?", DType::kBool},     {"u1", DType::kUInt8},
                {"i1", DType::kInt8},    {"u2", DType::kUInt16},  {"i2", DType::kInt16},
                {"u4", DType::kUInt32},  {"i4", DType::kInt32},   {"u8", DType::kUInt64},
                {"i8", DType::kInt64},   {"f2", DType::kFloat16}, {"f4", DType::kFloat32},
                {"f8", DType::kFloat64}};
  for (const auto& k : kTypes) {
    if (t == k.code) return {k.dtype, order == '>'};
  }
  return unsupported();
}

// Fortran order (first index fastest) to C order (last index fastest).
std::vector<uint8_t> fortran_to_c(const std::vector<uint8_t>& in, const std::vector<int64_t>& shape,
                                  size_t item) {
  std::vector<uint8_t> out(in.size());
  const size_t nd = shape.size();
  const size_t n = item ? in.size() / item : 0;
  if (n == 0) return out;
  std::vector<int64_t> stride(nd);  // Fortran strides, in elements
  int64_t s = 1;
  for (size_t k = 0; k < nd; ++k) {
    stride[k] = s;
    s *= shape[k];
  }
  std::vector<int64_t> idx(nd, 0);
  int64_t src = 0;
  for (size_t i = 0; i < n; ++i) {
    std::memcpy(out.data() + i * item, in.data() + size_t(src) * item, item);
    for (size_t k = nd; k-- > 0;) {  // C-order odometer
      if (++idx[k] < shape[k]) {
        src += stride[k];
        break;
      }
      src -= stride[k] * (idx[k] - 1);
      idx[k] = 0;
    }
  }
  return out;
}

constexpr bool kHostLittleEndian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;

}  // namespace

RawArray parse_npy(const uint8_t* data, size_t size, const std::string& name) {
  if (size < 10) corrupt(name, "truncated: shorter than the 10-byte preamble");
  if (std::memcmp(data, kMagic, sizeof kMagic) != 0) corrupt(name, "wrong magic (expected \\x93NUMPY)");
  const int major = data[6], minor = data[7];
  if ((major != 1 && major != 2 && major != 3) || minor != 0) {
    corrupt(name, "unsupported format version " + std::to_string(major) + "." +
                      std::to_string(minor) + " (1.0, 2.0 and 3.0 are read)");
  }
  size_t header_len, offset;
  if (major == 1) {
    header_len = size_t(data[8]) | size_t(data[9]) << 8;
    offset = 10;
  } else {
    if (size < 12) corrupt(name, "truncated: shorter than the 12-byte preamble");
    header_len = size_t(data[8]) | size_t(data[9]) << 8 | size_t(data[10]) << 16 | size_t(data[11]) << 24;
    offset = 12;
  }
  if (header_len > kMaxNpyHeaderSize) {
    corrupt(name, "header length " + std::to_string(header_len) + " exceeds the limit of " +
                      std::to_string(kMaxNpyHeaderSize));
  }
  if (header_len > size - offset) {
    corrupt(name, "truncated: the header needs " + std::to_string(header_len) + " bytes, " +
                      std::to_string(size - offset) + " remain");
  }
  const std::string_view text(reinterpret_cast<const char*>(data + offset), header_len);
  for (char c : text) {
    if (c == '\0') corrupt(name, "header has a NUL byte");
  }
  const NpyHeader h = HeaderParser(text, name).parse();
  const Descr descr = parse_descr(h.descr, name);
  const size_t item = dtype_size(descr.dtype);
  const size_t available = size - offset - header_len;
  const int64_t numel = internal::bounded_numel(h.shape, item, available);
  if (numel < 0) {
    corrupt(name, "truncated: shape " + internal::shape_string(h.shape) + " of " +
                      dtype_name(descr.dtype) + " needs more than the " +
                      std::to_string(available) + " data bytes present");
  }
  const size_t nbytes = size_t(numel) * item;
  if (nbytes != available) {
    corrupt(name, (nbytes > available ? "truncated: " : "") + std::string("shape ") +
                      internal::shape_string(h.shape) + " of " + dtype_name(descr.dtype) +
                      " needs " + std::to_string(nbytes) + " data bytes, " +
                      std::to_string(available) + " are present");
  }
  RawArray out;
  out.shape = h.shape;
  out.dtype = descr.dtype;
  out.bytes.assign(data + offset + header_len, data + size);
  if (item > 1 && descr.big_endian == kHostLittleEndian) {
    for (size_t i = 0; i < nbytes; i += item) std::reverse(&out.bytes[i], &out.bytes[i] + item);
  }
  if (h.fortran_order && h.shape.size() > 1) out.bytes = fortran_to_c(out.bytes, h.shape, item);
  return out;
}

RawArray read_npy_file(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path, ".npy file");
  return parse_npy(bytes.data(), bytes.size(), path);
}

namespace {

[[noreturn]] void corrupt_npz(const std::string& name, const std::string& what) {
  internal::corrupt(".npz file", name, what);
}

struct ZipCloser {
  void operator()(zip_t* z) const { zip_discard(z); }
};
struct ZipFileCloser {
  void operator()(zip_file_t* f) const { zip_fclose(f); }
};

std::vector<uint8_t> read_member(zip_t* za, zip_int64_t index, const std::string& name,
                                 const std::string& member) {
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat_index(za, zip_uint64_t(index), 0, &st) != 0) {
    corrupt_npz(name, "member '" + member + "': " + zip_strerror(za));
  }
  const zip_uint64_t needed = ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE | ZIP_STAT_COMP_METHOD;
  if ((st.valid & needed) != needed) corrupt_npz(name, "member '" + member + "' has no sizes");
  if ((st.valid & ZIP_STAT_ENCRYPTION_METHOD) && st.encryption_method != ZIP_EM_NONE) {
    corrupt_npz(name, "member '" + member + "' is encrypted");
  }
  // Bound the uncompressed size by what the compressed bytes can make.
  uint64_t can_hold;
  if (st.comp_method == ZIP_CM_STORE) {
    can_hold = st.comp_size;
  } else if (st.comp_method == ZIP_CM_DEFLATE) {
    can_hold = st.comp_size > (uint64_t(1) << 52) ? uint64_t(1) << 62 : st.comp_size * kMaxDeflateRatio + 1024;
  } else {
    corrupt_npz(name, "member '" + member + "' uses compression method " +
                          std::to_string(st.comp_method) + " (only stored and deflated are read)");
  }
  if (st.size > can_hold) {
    corrupt_npz(name, "member '" + member + "' claims " + std::to_string(st.size) +
                          " bytes, more than its " + std::to_string(st.comp_size) +
                          " compressed bytes can hold");
  }
  std::unique_ptr<zip_file_t, ZipFileCloser> f(zip_fopen_index(za, zip_uint64_t(index), 0));
  if (!f) corrupt_npz(name, "member '" + member + "': " + zip_strerror(za));
  std::vector<uint8_t> bytes(size_t(st.size));
  size_t done = 0;
  while (true) {
    // One byte more than declared is asked for, to see a member that is longer.
    uint8_t extra;
    uint8_t* dst = done < bytes.size() ? bytes.data() + done : &extra;
    const size_t want = done < bytes.size() ? bytes.size() - done : 1;
    const zip_int64_t got = zip_fread(f.get(), dst, want);
    if (got < 0) {
      corrupt_npz(name, "member '" + member + "' is damaged: " + zip_file_strerror(f.get()));
    }
    if (got == 0) break;
    if (done >= bytes.size()) {
      corrupt_npz(name, "member '" + member + "' is longer than its declared " +
                            std::to_string(st.size) + " bytes");
    }
    done += size_t(got);
  }
  if (done != bytes.size()) {
    corrupt_npz(name, "member '" + member + "' is truncated: " + std::to_string(done) + " of " +
                          std::to_string(st.size) + " bytes");
  }
  return bytes;
}

}  // namespace

std::vector<RawArray> parse_npz(const uint8_t* data, size_t size, const std::string& name,
                                const std::vector<std::string>& members) {
  static const uint8_t kEmpty = 0;
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* src = zip_source_buffer_create(size ? data : &kEmpty, size, 0, &error);
  if (!src) {
    std::string msg = zip_error_strerror(&error);
    zip_error_fini(&error);
    corrupt_npz(name, msg);
  }
  zip_t* raw = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &error);
  if (!raw) {
    zip_source_free(src);
    std::string msg = zip_error_strerror(&error);
    zip_error_fini(&error);
    corrupt_npz(name, "not a readable zip archive: " + msg);
  }
  zip_error_fini(&error);
  std::unique_ptr<zip_t, ZipCloser> za(raw);
  std::vector<RawArray> out;
  for (const std::string& m : members) {
    std::string member = m + ".npy";
    zip_int64_t index = zip_name_locate(za.get(), member.c_str(), 0);
    if (index < 0) {
      member = m;
      index = zip_name_locate(za.get(), member.c_str(), 0);
    }
    if (index < 0) corrupt_npz(name, "has no member '" + m + ".npy'");
    const std::vector<uint8_t> bytes = read_member(za.get(), index, name, member);
    out.push_back(parse_npy(bytes.data(), bytes.size(), name + ":" + member));
  }
  return out;
}

std::vector<RawArray> read_npz_file(const std::string& path, const std::vector<std::string>& members) {
  const std::vector<uint8_t> bytes = read_file_bytes(path, ".npz file");
  return parse_npz(bytes.data(), bytes.size(), path, members);
}

RawSamples make_samples(const RawArray& x, const RawArray& y, const std::string& x_name,
                        const std::string& y_name) {
  if (x.shape.empty()) {
    throw CorruptionError("inputs '" + x_name + "': a scalar, not an array of samples [N, ...]");
  }
  if (y.shape.empty() || y.shape[0] != x.shape[0]) {
    throw CorruptionError("inputs '" + x_name + "' have shape " + internal::shape_string(x.shape) +
                          " but labels '" + y_name + "' have shape " +
                          internal::shape_string(y.shape) + ": they disagree in N");
  }
  RawSamples out;
  out.labels = to_labels(y, y_name);
  out.inputs = x.dtype == DType::kUInt8 ? x : to_float32(x);
  return out;
}

RawSamples read_npy_split(const std::string& path, Split split) {
  const std::string s = split_name(split);
  const std::string xs = s + "_x", ys = s + "_y";
  if (internal::is_directory(path)) {
    const std::string xp = internal::join(path, xs + ".npy"), yp = internal::join(path, ys + ".npy");
    for (const std::string& p : {xp, yp}) {
      if (!internal::is_regular_file(p)) throw IoError("NumPy data set '" + path + "' has no file " + p.substr(p.rfind('/') + 1));
    }
    return make_samples(read_npy_file(xp), read_npy_file(yp), xp, yp);
  }
  if (internal::is_regular_file(path)) {
    std::vector<RawArray> a = read_npz_file(path, {xs, ys});
    return make_samples(a[0], a[1], path + ":" + xs + ".npy", path + ":" + ys + ".npy");
  }
  throw InvalidArgument("NumPy data set '" + path +
                        "' is neither a folder with train_x.npy, train_y.npy, test_x.npy, "
                        "test_y.npy nor an .npz file");
}

}  // namespace continua::readers
