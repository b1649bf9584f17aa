// Test helpers: small files in the exact formats the readers read, written
// byte by byte (CIFAR records, .npy headers), with libpng and TurboJPEG
// (images), libzip (.npz archives), or by NumPy itself (python3).
#pragma once

#include <png.h>
#include <turbojpeg.h>
#include <zip.h>

#include <algorithm>
#include <csetjmp>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace continua::testing {

inline std::string bytes_of(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }

inline void write_file(const std::string& path, const std::string& bytes) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

// ---- CIFAR ----

// The pixel byte k (0..3071) of record i: distinct across records and planes.
inline uint8_t cifar_pixel(size_t i, size_t k) { return uint8_t((i * 7 + k * 13 + k / 1024) % 256); }

// Records for `labels` (CIFAR-10: {label}; CIFAR-100: {coarse, fine}), with
// the pixels of records first..first+n-1.
inline std::string cifar_records(const std::vector<std::vector<uint8_t>>& labels, size_t first = 0) {
  std::string s;
  for (size_t i = 0; i < labels.size(); ++i) {
    for (uint8_t l : labels[i]) s.push_back(char(l));
    for (size_t k = 0; k < 3072; ++k) s.push_back(char(cifar_pixel(first + i, k)));
  }
  return s;
}

// ---- .npy ----

// An .npy file with the given header fields, padded as NumPy pads (the
// preamble and header a multiple of 64 bytes), in format `major`.0.
inline std::string npy_bytes(const std::string& descr, bool fortran, const std::string& shape,
                             const std::string& data, int major = 1) {
  std::string header = "{'descr': '" + descr + "', 'fortran_order': " +
                       (fortran ? "True" : "False") + ", 'shape': " + shape + ", }";
  const size_t preamble = major == 1 ? 10 : 12;
  while ((preamble + header.size() + 1) % 64 != 0) header.push_back(' ');
  header.push_back('\n');
  std::string s = "\x93NUMPY";
  s.push_back(char(major));
  s.push_back(0);
  const size_t n = header.size();
  s.push_back(char(n & 0xFF));
  s.push_back(char((n >> 8) & 0xFF));
  if (major != 1) {
    s.push_back(char((n >> 16) & 0xFF));
    s.push_back(char((n >> 24) & 0xFF));
  }
  return s + header + data;
}

template <typename T>
std::string le_bytes(const std::vector<T>& values) {
  std::string s(values.size() * sizeof(T), '\0');
  if (!values.empty()) std::memcpy(&s[0], values.data(), s.size());
  return s;
}

template <typename T>
std::string be_bytes(const std::vector<T>& values) {
  std::string s = le_bytes(values);
  for (size_t i = 0; i < s.size(); i += sizeof(T)) std::reverse(s.begin() + i, s.begin() + i + sizeof(T));
  return s;
}

// ---- .npz (zip) ----

struct ZipMember {
  std::string name;
  std::string bytes;
  bool deflate = false;
};

inline void write_zip(const std::string& path, const std::vector<ZipMember>& members) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  int err = 0;
  zip_t* z = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  if (!z) throw std::runtime_error("zip_open failed for " + path);
  for (const ZipMember& m : members) {
    // libzip reads the buffer at zip_close: keep a copy alive until then.
    void* copy = std::malloc(m.bytes.size() ? m.bytes.size() : 1);
    std::memcpy(copy, m.bytes.data(), m.bytes.size());
    zip_source_t* src = zip_source_buffer(z, copy, m.bytes.size(), 1);
    const zip_int64_t i = zip_file_add(z, m.name.c_str(), src, ZIP_FL_OVERWRITE);
    if (i < 0) throw std::runtime_error("zip_file_add failed");
    zip_set_file_compression(z, zip_uint64_t(i), m.deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0);
  }
  if (zip_close(z) != 0) throw std::runtime_error("zip_close failed for " + path);
}

// ---- PNG ----

struct PngSpec {
  uint32_t width = 0, height = 0;
  int color_type = PNG_COLOR_TYPE_GRAY;
  int bit_depth = 8;
  bool interlace = false;
  std::vector<png_color> palette;  // PNG_COLOR_TYPE_PALETTE
  std::vector<uint8_t> trns;       // palette transparency
  std::vector<uint8_t> rows;       // height rows of packed samples, big-endian 16-bit
};

inline void png_write_cb(png_structp png, png_bytep data, size_t n) {
  auto* out = static_cast<std::string*>(png_get_io_ptr(png));
  out->append(reinterpret_cast<const char*>(data), n);
}
inline void png_flush_cb(png_structp) {}

inline std::string png_bytes(const PngSpec& spec) {
  std::string out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    throw std::runtime_error("libpng failed to write a test image");
  }
  png_set_write_fn(png, &out, png_write_cb, png_flush_cb);
  png_set_IHDR(png, info, spec.width, spec.height, spec.bit_depth, spec.color_type,
               spec.interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (!spec.palette.empty()) png_set_PLTE(png, info, spec.palette.data(), int(spec.palette.size()));
  if (!spec.trns.empty()) png_set_tRNS(png, info, spec.trns.data(), int(spec.trns.size()), nullptr);
  png_write_info(png, info);
  const size_t row_bytes = spec.rows.size() / spec.height;
  std::vector<png_bytep> rows(spec.height);
  for (uint32_t y = 0; y < spec.height; ++y) rows[y] = const_cast<png_bytep>(spec.rows.data() + y * row_bytes);
  png_write_image(png, rows.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

// ---- JPEG ----

// Interleaved pixels (1 or 3 channels, or 4 for CMYK) at quality 100, 4:4:4.
inline std::string jpeg_bytes(const std::vector<uint8_t>& pixels, int w, int h, int pixel_format) {
  tjhandle tj = tjInitCompress();
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  const int subsamp = pixel_format == TJPF_GRAY ? TJSAMP_GRAY : TJSAMP_444;
  if (tjCompress2(tj, pixels.data(), w, 0, h, pixel_format, &buf, &size, subsamp, 100, 0) != 0) {
    tjDestroy(tj);
    throw std::runtime_error("tjCompress2 failed");
  }
  std::string out(reinterpret_cast<const char*>(buf), size);
  tjFree(buf);
  tjDestroy(tj);
  return out;
}

}  // namespace continua::testing
