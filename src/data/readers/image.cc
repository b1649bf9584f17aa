// PNG (libpng) and JPEG (TurboJPEG) images, and folders of them with one
// sub-folder per class.
#include <png.h>
#include <turbojpeg.h>

#include <algorithm>
#include <cctype>
#include <csetjmp>
#include <cstdio>
#include <cstring>

#include "data/readers/common.h"

namespace continua::readers {

namespace {

[[noreturn]] void corrupt(const std::string& name, const std::string& what) {
  internal::corrupt("image file", name, what);
}

constexpr uint64_t kMaxJpegRatio = 4096;

std::string dims_string(uint64_t w, uint64_t h, uint64_t c) {
  return std::to_string(w) + "x" + std::to_string(h) + "x" + std::to_string(c);
}

void check_size(uint64_t w, uint64_t h, uint64_t c, const std::string& name) {
  if (w == 0 || h == 0) corrupt(name, "has no pixels (" + dims_string(w, h, c) + ")");
  if (w > kMaxImageBytes || h > kMaxImageBytes || w * h > kMaxImageBytes / c) {
    corrupt(name, "width x height x channels " + dims_string(w, h, c) + " exceeds the limit of " +
                      std::to_string(kMaxImageBytes) + " bytes");
  }
}

// Interleaved rows [H, W, in_c] to planes [C, H, W], dropping alpha (the
// channel after the grey or RGB ones).
RawArray to_planes(const uint8_t* hwc, size_t row_bytes, uint32_t w, uint32_t h, int in_c) {
  const int c = in_c >= 3 ? 3 : 1;
  RawArray out;
  out.shape = {c, int64_t(h), int64_t(w)};
  out.dtype = DType::kUInt8;
  out.bytes.resize(size_t(c) * h * w);
  const size_t plane = size_t(h) * w;
  for (uint32_t y = 0; y < h; ++y) {
    const uint8_t* row = hwc + size_t(y) * row_bytes;
    for (uint32_t x = 0; x < w; ++x) {
      for (int k = 0; k < c; ++k) out.bytes[size_t(k) * plane + size_t(y) * w + x] = row[size_t(x) * in_c + k];
    }
  }
  return out;
}

// ---- PNG ----
//
// libpng reports errors by longjmp to the setjmp of the function that
// called it: the functions below that call setjmp hold no object with a
// destructor that a jump could skip, and keep all state in the decoder.

struct PngSource {
  const uint8_t* data;
  size_t size;
  size_t pos;
};

void png_read_cb(png_structp png, png_bytep out, size_t n) {
  auto* s = static_cast<PngSource*>(png_get_io_ptr(png));
  if (n > s->size - s->pos) png_error(png, "truncated: the PNG data ends early");
  std::memcpy(out, s->data + s->pos, n);
  s->pos += n;
}

void png_error_cb(png_structp png, png_const_charp msg) {
  char* buffer = static_cast<char*>(png_get_error_ptr(png));
  std::snprintf(buffer, 256, "%s", msg);
  png_longjmp(png, 1);
}

void png_warning_cb(png_structp, png_const_charp) {}

class PngDecoder {
 public:
  PngDecoder(const uint8_t* data, size_t size) : src_{data, size, 0} {
    png_ = png_create_read_struct(PNG_LIBPNG_VER_STRING, message_, png_error_cb, png_warning_cb);
    if (png_) info_ = png_create_info_struct(png_);
  }
  ~PngDecoder() { png_destroy_read_struct(&png_, info_ ? &info_ : nullptr, nullptr); }
  PngDecoder(const PngDecoder&) = delete;
  PngDecoder& operator=(const PngDecoder&) = delete;

  const char* message() const { return message_; }

  // The image's size in libpng's output after the transforms: 8-bit grey,
  // grey+alpha, RGB or RGBA rows of row_bytes.
  bool read_header(uint32_t* w, uint32_t* h, int* channels, size_t* row_bytes, uint64_t* raw_bytes) {
    if (!png_ || !info_) {
      std::snprintf(message_, sizeof message_, "cannot start libpng");
      return false;
    }
    if (setjmp(png_jmpbuf(png_))) return false;
    png_set_read_fn(png_, &src_, png_read_cb);
    png_set_user_limits(png_, 1u << 16, 1u << 16);
    png_set_chunk_malloc_max(png_, 8u << 20);
    png_read_info(png_, info_);
    const int depth = png_get_bit_depth(png_, info_);
    const int type = png_get_color_type(png_, info_);
    // The filtered pixel data the IDAT chunks must inflate to (a filter byte
    // a row; interlacing adds at most one more a row per pass).
    const uint64_t bits = uint64_t(png_get_image_width(png_, info_)) * png_get_channels(png_, info_) * depth;
    *raw_bytes = uint64_t(png_get_image_height(png_, info_)) * ((bits + 7) / 8 + 1);
    if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png_);
    if (type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png_);
    if (depth == 16) png_set_scale_16(png_);
    passes_ = png_set_interlace_handling(png_);
    png_read_update_info(png_, info_);
    *w = png_get_image_width(png_, info_);
    *h = png_get_image_height(png_, info_);
    *channels = png_get_channels(png_, info_);
    *row_bytes = png_get_rowbytes(png_, info_);
    return true;
  }

  bool read_pixels(uint8_t* out, size_t row_bytes, uint32_t h) {
    if (setjmp(png_jmpbuf(png_))) return false;
    for (int pass = 0; pass < passes_; ++pass) {
      for (uint32_t y = 0; y < h; ++y) png_read_row(png_, out + size_t(y) * row_bytes, nullptr);
    }
    png_read_end(png_, nullptr);
    return true;
  }

 private:
  png_structp png_ = nullptr;
  png_infop info_ = nullptr;
  PngSource src_;
  int passes_ = 1;
  char message_[256] = {};
};

RawArray decode_png(const uint8_t* data, size_t size, const std::string& name) {
  PngDecoder png(data, size);
  uint32_t w = 0, h = 0;
  int channels = 0;
  size_t row_bytes = 0;
  uint64_t raw_bytes = 0;
  if (!png.read_header(&w, &h, &channels, &row_bytes, &raw_bytes)) {
    corrupt(name, std::string("PNG: ") + png.message());
  }
  if (raw_bytes > uint64_t(size) * kMaxDeflateRatio + 1024) {
    corrupt(name, "PNG: truncated: " + dims_string(w, h, uint64_t(channels)) + " pixels need " +
                      std::to_string(raw_bytes) + " bytes of image data, more than the file's " +
                      std::to_string(size) + " compressed bytes can hold");
  }
  if (channels < 1 || channels > 4 || row_bytes != size_t(w) * size_t(channels)) {
    corrupt(name, "PNG: unexpected decoded layout (" + std::to_string(channels) + " channels, " +
                      std::to_string(row_bytes) + " bytes a row)");
  }
  check_size(w, h, uint64_t(channels), name);
  std::vector<uint8_t> hwc(row_bytes * h);
  if (!png.read_pixels(hwc.data(), row_bytes, h)) corrupt(name, std::string("PNG: ") + png.message());
  return to_planes(hwc.data(), row_bytes, w, h, channels);
}

// ---- JPEG ----

RawArray decode_jpeg(const uint8_t* data, size_t size, const std::string& name) {
  struct Handle {
    tjhandle h = tjInitDecompress();
    ~Handle() {
      if (h) tjDestroy(h);
    }
  } tj;
  if (!tj.h) corrupt(name, "cannot start TurboJPEG");
  int w = 0, h = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(tj.h, data, static_cast<unsigned long>(size), &w, &h, &subsamp, &colorspace) != 0) {
    corrupt(name, std::string("JPEG: ") + tjGetErrorStr2(tj.h));
  }
  if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK) {
    corrupt(name, "JPEG: CMYK images are not supported (only greyscale and RGB)");
  }
  const int channels = colorspace == TJCS_GRAY ? 1 : 3;
  if (w <= 0 || h <= 0) corrupt(name, "JPEG: the header gives no image size (truncated or damaged)");
  check_size(uint64_t(w), uint64_t(h), uint64_t(channels), name);
  // JPEG has no hard ratio as deflate has; a photo decodes to a few hundred
  // times its size. Beyond 16 MiB decoded, more than 4096 times is refused.
  const uint64_t decoded = uint64_t(w) * uint64_t(h) * uint64_t(channels);
  if (decoded > (uint64_t(16) << 20) && decoded > uint64_t(size) * kMaxJpegRatio) {
    corrupt(name, "JPEG: " + dims_string(uint64_t(w), uint64_t(h), uint64_t(channels)) +
                      " pixels from " + std::to_string(size) + " bytes is more than " +
                      std::to_string(kMaxJpegRatio) + " times the file's size");
  }
  std::vector<uint8_t> hwc(static_cast<size_t>(decoded));
  // A warning is an error too: a truncated file decodes to grey with only a
  // warning. (TurboJPEG returns -1 after a warning anyway; the flag stops at
  // the first one instead of decoding on.)
  const int flags = TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS;
  if (tjDecompress2(tj.h, data, static_cast<unsigned long>(size), hwc.data(), w, 0, h,
                    channels == 1 ? TJPF_GRAY : TJPF_RGB, flags) != 0) {
    corrupt(name, std::string("JPEG: ") + tjGetErrorStr2(tj.h));
  }
  return to_planes(hwc.data(), size_t(w) * size_t(channels), uint32_t(w), uint32_t(h), channels);
}

bool has_image_extension(const std::string& file) {
  std::string lower = file;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  auto ends = [&](const char* ext) {
    const size_t n = std::strlen(ext);
    return lower.size() > n && lower.compare(lower.size() - n, n, ext) == 0;
  };
  return ends(".png") || ends(".jpg") || ends(".jpeg");
}

std::string split_folder(const std::string& root, Split split) {
  if (!internal::is_directory(root)) {
    throw InvalidArgument("image folder data set '" + root + "' is not a folder with train/ and test/");
  }
  const std::string dir = internal::join(root, split_name(split));
  if (!internal::is_directory(dir)) {
    throw IoError("image folder data set '" + root + "' has no folder " + split_name(split) + "/");
  }
  return dir;
}

}  // namespace

RawArray decode_image(const uint8_t* data, size_t size, const std::string& name) {
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  if (size >= 8 && std::memcmp(data, kPng, 8) == 0) return decode_png(data, size, name);
  if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return decode_jpeg(data, size, name);
  corrupt(name, "is neither a PNG nor a JPEG (no signature of either)");
}

std::vector<std::string> image_folder_classes(const std::string& root) {
  const std::string train = split_folder(root, Split::kTrain);
  std::vector<std::string> classes = internal::list_folder(train, true);
  if (classes.empty()) {
    throw CorruptionError("image folder '" + train + "' has no class folders");
  }
  if (int64_t(classes.size()) > kMaxLabel + 1) {
    throw CorruptionError("image folder '" + train + "' has more than " +
                          std::to_string(kMaxLabel + 1) + " class folders");
  }
  return classes;
}

RawSamples read_image_folder(const std::string& root, Split split) {
  const std::vector<std::string> classes = image_folder_classes(root);
  const std::string dir = split_folder(root, split);
  RawSamples out;
  out.inputs.dtype = DType::kUInt8;
  std::string first;  // the first image, whose shape all others share
  int64_t n = 0;
  for (const std::string& cls : internal::list_folder(dir, true)) {
    const auto it = std::lower_bound(classes.begin(), classes.end(), cls);
    if (it == classes.end() || *it != cls) {
      throw CorruptionError("image folder '" + dir + "' has a class folder '" + cls +
                            "' that the training folder has not");
    }
    const int64_t label = it - classes.begin();
    const std::string class_dir = internal::join(dir, cls);
    int64_t in_class = 0;
    for (const std::string& f : internal::list_folder(class_dir, false)) {
      if (!has_image_extension(f)) continue;
      const std::string path = internal::join(class_dir, f);
      const std::vector<uint8_t> bytes = read_file_bytes(path, "image file");
      RawArray img = decode_image(bytes.data(), bytes.size(), path);
      if (first.empty()) {
        first = path;
        out.inputs.shape = {0, img.shape[0], img.shape[1], img.shape[2]};
      } else if (!std::equal(img.shape.begin(), img.shape.end(), out.inputs.shape.begin() + 1)) {
        const std::vector<int64_t> want(out.inputs.shape.begin() + 1, out.inputs.shape.end());
        corrupt(path, "has shape " + internal::shape_string(img.shape) + " (channels, height, width), the first image '" +
                          first + "' has " + internal::shape_string(want));
      }
      out.inputs.bytes.insert(out.inputs.bytes.end(), img.bytes.begin(), img.bytes.end());
      out.labels.push_back(label);
      ++n;
      ++in_class;
    }
    if (in_class == 0 && split == Split::kTrain) {
      throw CorruptionError("image folder '" + class_dir + "' has no .png, .jpg or .jpeg file");
    }
  }
  if (n == 0) throw CorruptionError("image folder '" + dir + "' has no images");
  out.inputs.shape[0] = n;
  out.class_names = classes;
  return out;
}

}  // namespace continua::readers
