// Readers of the data files people bring: IDX (MNIST, Fashion-MNIST), the
// CIFAR-10/100 binary distribution, NumPy .npy/.npz, CSV, and folders of PNG
// and JPEG images. They turn files into plain arrays, without LibTorch, so
// they build in seconds and can be fuzzed on their own; the Dataset classes
// of continua/data/dataset.h wrap their output in tensors.
//
//   namespace r = continua::readers;
//   r::RawSamples train = r::read_npy_split("/data/mine", r::Split::kTrain);
//   // train.inputs.shape = {N, ...}, dtype uint8 or float32; train.labels[i] >= 0
//   r::RawArray a = r::parse_npy(bytes.data(), bytes.size(), "in-memory.npy");
//
// Each format has a parse function over bytes in memory (what the fuzzers
// call) beside the function that reads files; `name` is what error messages
// call the bytes (a path, "x.npz:train_x.npy", ...).
//
// Contract (docs/datasets.md lists every check):
// - A file that cannot be opened or read, or a required file that is missing,
//   throws continua::IoError naming it.
// - Damaged content throws continua::CorruptionError naming the file and the
//   record, row, column or member: a wrong magic number or size, truncated
//   data, a label out of range, an unsupported dtype, images of different
//   shapes.
// - An impossible argument (a path that is not a data set of the format, an
//   unknown variant) throws continua::InvalidArgument.
// - Nothing is allocated that the input's size cannot back: counts and shapes
//   are bounded by the bytes present (for compressed data, by the
//   compression format's largest ratio and a fixed cap) before allocating.
// - Outputs are C-ordered, in the host's byte order (little-endian).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace continua::readers {

// ---- Arrays and samples ----

enum class DType { kBool, kUInt8, kInt8, kUInt16, kInt16, kUInt32, kInt32, kUInt64, kInt64,
                   kFloat16, kFloat32, kFloat64 };
size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);  // NumPy's: "uint8", "float32", "bool", ...

struct RawArray {
  std::vector<int64_t> shape;
  DType dtype = DType::kUInt8;
  std::vector<uint8_t> bytes;  // numel() * dtype_size(dtype) bytes, C order
  int64_t numel() const;
};

// A split of a data set: inputs [N, ...] of dtype uint8 (pixels) or float32,
// N labels in [0, kMaxLabel], and the classes' names when the format has
// them (class_names[label]; empty otherwise).
struct RawSamples {
  RawArray inputs;
  std::vector<int64_t> labels;
  std::vector<std::string> class_names;
};

enum class Split { kTrain, kTest };
const char* split_name(Split split);  // "train", "test"
// "train" or "test"; anything else throws InvalidArgument naming `what`.
Split parse_split(const std::string& name, const std::string& what);

// Labels become class indices (the size of a model's head): larger ones are
// refused as damage rather than allocated for.
inline constexpr int64_t kMaxLabel = (int64_t(1) << 20) - 1;
// No single decoded image may be larger (width x height x channels bytes).
inline constexpr uint64_t kMaxImageBytes = uint64_t(1) << 28;
// Deflate cannot expand data more than about 1032:1; compressed members and
// streams claiming more are refused before anything is allocated.
inline constexpr uint64_t kMaxDeflateRatio = 1032;

// The whole of a regular file (IoError if it is missing, not a regular file
// or unreadable). `what` names the kind of file in messages ("CSV file").
std::vector<uint8_t> read_file_bytes(const std::string& path, const std::string& what);

// Converts a numeric array to float32 (bool to 0/1, float16 widened).
RawArray to_float32(const RawArray& array);
// Labels from an integer (or integral-valued float) array of shape [N] or
// [N, 1]: each must be in [0, kMaxLabel]; CorruptionError naming `name` and
// the element otherwise.
std::vector<int64_t> to_labels(const RawArray& array, const std::string& name);

// ---- IDX (MNIST, Fashion-MNIST): unsigned-byte arrays, gzip-compressed or plain ----

struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;  // unsigned byte data only (type code 0x08)
};
IdxArray parse_idx(const uint8_t* data, size_t size, const std::string& name);
IdxArray read_idx_file(const std::string& path);
// A folder with train-images-idx3-ubyte, train-labels-idx1-ubyte,
// t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each plain or .gz: the
// images and labels files of `split` (IoError naming the missing one).
struct IdxFiles {
  std::string images;
  std::string labels;
};
IdxFiles locate_idx_files(const std::string& folder, Split split);

// ---- CIFAR-10 / CIFAR-100, binary distribution ----
//
// CIFAR-10: cifar-10-batches-bin/ holds data_batch_1.bin .. data_batch_5.bin
// (train) and test_batch.bin, records of a label byte (< 10) and 3072 pixel
// bytes (the R, G, B planes of a 32x32 image, row-major). CIFAR-100:
// cifar-100-binary/ holds train.bin and test.bin, records of a coarse label
// byte (< 20), a fine label byte (< 100) and 3072 pixel bytes. The names in
// batches.meta.txt / {fine,coarse}_label_names.txt become class names when
// the file is there. Inputs are uint8 [N, 3, 32, 32].

enum class CifarLabel { kFine, kCoarse };  // CIFAR-100's two label sets
const char* cifar_label_name(CifarLabel label);  // "fine", "coarse"
CifarLabel parse_cifar_label(const std::string& name, const std::string& what);

// The records of one batch file; `variant` is 10 or 100.
RawSamples parse_cifar(const uint8_t* data, size_t size, const std::string& name, int variant,
                       CifarLabel label = CifarLabel::kFine);
// The folder that holds the batch files and its variant: `path` is that
// folder or its parent; `variant` 0 detects it (InvalidArgument when path
// holds neither or both), 10 or 100 asks for one.
struct CifarLocation {
  std::string folder;
  int variant = 0;
};
CifarLocation locate_cifar(const std::string& path, int variant = 0);
RawSamples read_cifar(const std::string& path, Split split, int variant = 0,
                      CifarLabel label = CifarLabel::kFine);

// ---- NumPy .npy (format 1.0, 2.0, 3.0) and .npz ----
//
// dtypes b1, u1, i1, u2, i2, u4, i4, u8, i8, f2, f4, f8 in either byte
// order; Fortran-ordered arrays are converted to C order.

inline constexpr size_t kMaxNpyHeaderSize = 65536;
RawArray parse_npy(const uint8_t* data, size_t size, const std::string& name);
RawArray read_npy_file(const std::string& path);
// The named members of an .npz archive (a zip file, stored or deflated) in
// the order asked; "x" finds the member "x.npy" (or "x"). CorruptionError
// naming the archive and the member for a missing or damaged one.
std::vector<RawArray> parse_npz(const uint8_t* data, size_t size, const std::string& name,
                                const std::vector<std::string>& members);
std::vector<RawArray> read_npz_file(const std::string& path,
                                    const std::vector<std::string>& members);
// Checks an inputs array [N, ...] against a labels array [N] or [N, 1] and
// makes samples: inputs stay uint8, any other numeric dtype becomes float32.
RawSamples make_samples(const RawArray& x, const RawArray& y, const std::string& x_name,
                        const std::string& y_name);
// `path` is a folder with {train,test}_{x,y}.npy or an .npz file with the
// members train_x, train_y, test_x, test_y.
RawSamples read_npy_split(const std::string& path, Split split);

// ---- CSV: feature columns, then a label column ----
//
// A first row whose feature fields are not all numbers is a header. Labels
// are non-negative integers when every label of train.csv is a number, else
// names, numbered in their sorted order over train.csv. Inputs are float32
// [N, F]. Rows are counted from 1, the header included.

// What a CSV file must agree with: nothing for train.csv (its label kind is
// detected), train.csv's label kind, names and feature count for test.csv.
struct CsvSpec {
  static CsvSpec detect() { return {}; }
  static CsvSpec like(const RawSamples& train);
  bool detect_labels = true;
  std::vector<std::string> names;  // sorted; empty (and !detect_labels): integer labels
  int64_t features = -1;           // -1: any
};
RawSamples parse_csv(const uint8_t* data, size_t size, const std::string& name,
                     const CsvSpec& spec = CsvSpec::detect());
RawSamples read_csv_file(const std::string& path, const CsvSpec& spec = CsvSpec::detect());
// `folder` has train.csv and test.csv; the test split reads train.csv first
// for its labels and feature count (pass CsvSpec::like(train samples) in
// `test_spec` to skip that).
RawSamples read_csv_split(const std::string& folder, Split split,
                          const CsvSpec* test_spec = nullptr);

// ---- Image folders: PNG and JPEG ----
//
// root/train/<class>/<image> and root/test/<class>/<image>; classes are the
// sorted sub-folder names of train/ (test/ may not have others), images the
// files ending .png, .jpg or .jpeg (any case), sorted by name; other files
// are ignored. Every image of a split has the first one's height, width and
// channels: 1 (grey) or 3 (RGB); palettes are expanded, 16-bit samples
// scaled to 8 bits, alpha channels dropped, no gamma applied. Inputs are
// uint8 [N, C, H, W].

// One PNG or JPEG (told apart by their signatures) as uint8 [C, H, W].
RawArray decode_image(const uint8_t* data, size_t size, const std::string& name);
std::vector<std::string> image_folder_classes(const std::string& root);
RawSamples read_image_folder(const std::string& root, Split split);

}  // namespace continua::readers

namespace continua {
// read_idx_file and IdxArray predate the readers' namespace.
using readers::IdxArray;
using readers::read_idx_file;
}  // namespace continua
