// libFuzzer target: the readers of users' data files (src/data/readers/),
// torch-free, over bytes in memory.
//
// The first input byte picks the reader, the rest is the file:
//   0: IDX (gzip or plain)      1: CIFAR-10 batch     2: CIFAR-100 batch (fine)
//   3: CIFAR-100 (coarse)       4: .npy               5: .npz (train_x, train_y
//      through make_samples, as a benchmark reads them)
//   6: CSV (labels detected)    7: CSV against a spec (3 features, integer
//      labels: test.csv after train.csv)             8: PNG or JPEG image
// Every file must either be accepted or raise continua::Error; anything else
// (a crash, a sanitizer report, a foreign exception, an allocation over
// -rss_limit_mb/-malloc_limit_mb) is a finding. Accepted results are checked
// for the invariants the data sets rely on (sizes agree with shapes).
//
// Build and run: fuzz/run_fuzz.sh --target dataset.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "continua/data/readers.h"
#include "continua/errors.h"

namespace {

using namespace continua;
namespace r = continua::readers;

size_t elements(const std::vector<int64_t>& shape) {
  size_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) std::abort();
    n *= size_t(d);
  }
  return n;
}

// What every accepted array must satisfy: its bytes are its shape's size.
void check(const r::RawArray& a) {
  if (a.bytes.size() != elements(a.shape) * r::dtype_size(a.dtype)) std::abort();
}

void check(const r::RawSamples& s) {
  check(s.inputs);
  if (s.inputs.shape.empty() || size_t(s.inputs.shape[0]) != s.labels.size()) std::abort();
  for (int64_t l : s.labels) {
    if (l < 0) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0] % 9;
  const uint8_t* p = data + 1;
  const size_t n = size - 1;
  try {
    switch (mode) {
      case 0: {
        const r::IdxArray a = r::parse_idx(p, n, "fuzz.idx");
        if (a.data.size() != elements(a.dims)) std::abort();
        break;
      }
      case 1: check(r::parse_cifar(p, n, "fuzz.bin", 10)); break;
      case 2: check(r::parse_cifar(p, n, "fuzz.bin", 100, r::CifarLabel::kFine)); break;
      case 3: check(r::parse_cifar(p, n, "fuzz.bin", 100, r::CifarLabel::kCoarse)); break;
      case 4: check(r::parse_npy(p, n, "fuzz.npy")); break;
      case 5: {
        const auto arrays = r::parse_npz(p, n, "fuzz.npz", {"train_x", "train_y"});
        if (arrays.size() != 2) std::abort();
        check(r::make_samples(arrays[0], arrays[1], "train_x", "train_y"));
        break;
      }
      case 6: check(r::parse_csv(p, n, "fuzz.csv")); break;
      case 7: {
        r::CsvSpec spec;
        spec.detect_labels = false;
        spec.features = 3;
        check(r::parse_csv(p, n, "test.csv", spec));
        break;
      }
      case 8: {
        const r::RawArray img = r::decode_image(p, n, "fuzz.png");
        check(img);
        if (img.shape.size() != 3) std::abort();
        break;
      }
    }
  } catch (const continua::Error&) {
    // A clear refusal: what the readers must do with a bad file.
  }
  return 0;
}
