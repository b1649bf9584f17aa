// The torch-free readers (include/continua/data/readers.h): every format read
// from small files written here in its exact layout (and, for .npy/.npz, by
// NumPy itself), values checked element by element; then one crafted bad
// file per failure mode, each raising the right continua error with a
// message that names the file and the record.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <functional>

#include "continua/data/readers.h"
#include "continua/errors.h"
#include "data/readers/writers.h"
#include "io/temp_dir.h"

namespace continua::readers {
namespace {

using testing::TempDir;
using testing::write_file;

// Runs f, which must throw E whose message holds every needle.
template <typename E>
void expect_error(const std::function<void()>& f, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one naming " << (needles.empty() ? "" : needles[0]);
  } catch (const E& e) {
    for (const std::string& n : needles) {
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << "'" << n << "' not in: " << e.what();
    }
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
}

template <typename T>
T at(const RawArray& a, size_t i) {
  T v;
  std::memcpy(&v, a.bytes.data() + i * sizeof(T), sizeof(T));
  return v;
}

const uint8_t* u8(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

// ======================= IDX (gzip in memory) =======================

std::string idx_bytes(std::vector<uint32_t> dims, size_t data_bytes) {
  std::string s = {0, 0, 0x08, char(dims.size())};
  for (uint32_t d : dims) {
    for (int k = 3; k >= 0; --k) s.push_back(char(d >> (8 * k)));
  }
  for (size_t i = 0; i < data_bytes; ++i) s.push_back(char(i % 251));
  return s;
}

std::string gzip(const std::string& plain) {
  z_stream z{};
  deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, uLong(plain.size())) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(plain.data()));
  z.avail_in = uInt(plain.size());
  z.next_out = reinterpret_cast<Bytef*>(&out[0]);
  z.avail_out = uInt(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

TEST(IdxParse, GzipInMemoryConcatenatedMembersAndBounds) {
  const std::string plain = idx_bytes({3, 2, 2}, 12);
  // Two gzip members, as `cat a.gz b.gz` makes: one IDX file split in two.
  const std::string two = gzip(plain.substr(0, 9)) + gzip(plain.substr(9));
  for (const std::string& bytes : {gzip(plain), two, plain}) {
    IdxArray a = parse_idx(u8(bytes), bytes.size(), "mem.idx");
    EXPECT_EQ(a.dims, (std::vector<int64_t>{3, 2, 2}));
    ASSERT_EQ(a.data.size(), 12u);
    for (size_t i = 0; i < 12; ++i) EXPECT_EQ(a.data[i], i % 251);
  }
  // A stream cut short is an error, not a short array.
  const std::string gz = gzip(idx_bytes({4, 100}, 400));
  expect_error<CorruptionError>([&] { parse_idx(u8(gz), gz.size() - 8, "cut.gz"); }, {"cut.gz", "decompress"});
  // Dims that ask for more than deflate can make of the bytes present are
  // refused before anything is allocated.
  const std::string bomb = gzip(idx_bytes({60000, 60000}, 0));
  expect_error<CorruptionError>([&] { parse_idx(u8(bomb), bomb.size(), "bomb.gz"); },
                                {"bomb.gz", "truncated", "compressed bytes can hold"});
}

// ======================= CIFAR =======================

// cifar-10-batches-bin/ with batches of 2 records (labels 2i, 2i+1 mod 10)
// and a test batch of 3.
void write_cifar10(const std::string& parent, bool names = true) {
  const std::string dir = parent + "/cifar-10-batches-bin";
  for (int b = 1; b <= 5; ++b) {
    write_file(dir + "/data_batch_" + std::to_string(b) + ".bin",
               testing::cifar_records({{uint8_t((2 * b - 2) % 10)}, {uint8_t((2 * b - 1) % 10)}},
                                      size_t(2 * (b - 1))));
  }
  write_file(dir + "/test_batch.bin", testing::cifar_records({{9}, {0}, {5}}, 100));
  if (names) {
    write_file(dir + "/batches.meta.txt",
               "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n");
  }
}

TEST(Cifar, Cifar10FromTheFolderOrItsParent) {
  TempDir d;
  write_cifar10(d.path());
  for (const std::string& path : {d.path(), d.path() + "/cifar-10-batches-bin"}) {
    EXPECT_EQ(locate_cifar(path).variant, 10);
    RawSamples train = read_cifar(path, Split::kTrain);
    EXPECT_EQ(train.inputs.shape, (std::vector<int64_t>{10, 3, 32, 32}));
    EXPECT_EQ(train.inputs.dtype, DType::kUInt8);
    ASSERT_EQ(train.inputs.bytes.size(), 10u * 3072);
    for (size_t i = 0; i < 10; ++i) {
      EXPECT_EQ(train.labels[i], int64_t(i % 10));
      for (size_t k = 0; k < 3072; ++k) {
        // channel k / 1024, row (k % 1024) / 32, column k % 32: the file's planes.
        ASSERT_EQ(train.inputs.bytes[i * 3072 + k], testing::cifar_pixel(i, k)) << i << " " << k;
      }
    }
    RawSamples test = read_cifar(path, Split::kTest);
    EXPECT_EQ(test.labels, (std::vector<int64_t>{9, 0, 5}));
    EXPECT_EQ(test.inputs.bytes[2 * 3072 + 1500], testing::cifar_pixel(102, 1500));
    ASSERT_EQ(test.class_names.size(), 10u);
    EXPECT_EQ(test.class_names[3], "cat");
  }
}

TEST(Cifar, Cifar100FineAndCoarse) {
  TempDir d;
  const std::string dir = d.path() + "/cifar-100-binary";
  write_file(dir + "/train.bin", testing::cifar_records({{3, 47}, {19, 99}, {0, 0}}));
  write_file(dir + "/test.bin", testing::cifar_records({{7, 12}}, 50));
  std::string coarse;
  for (int i = 0; i < 20; ++i) coarse += "c" + std::to_string(i) + "\n";
  write_file(dir + "/coarse_label_names.txt", coarse);
  EXPECT_EQ(locate_cifar(d.path()).variant, 100);
  RawSamples fine = read_cifar(d.path(), Split::kTrain);
  EXPECT_EQ(fine.labels, (std::vector<int64_t>{47, 99, 0}));
  EXPECT_TRUE(fine.class_names.empty());  // no fine_label_names.txt
  RawSamples c = read_cifar(dir, Split::kTrain, 100, CifarLabel::kCoarse);
  EXPECT_EQ(c.labels, (std::vector<int64_t>{3, 19, 0}));
  EXPECT_EQ(c.class_names[19], "c19");
  EXPECT_EQ(c.inputs.bytes[1 * 3072 + 2047], testing::cifar_pixel(1, 2047));
  RawSamples test = read_cifar(d.path(), Split::kTest, 100);
  EXPECT_EQ(test.labels, (std::vector<int64_t>{12}));
  EXPECT_EQ(test.inputs.bytes[3071], testing::cifar_pixel(50, 3071));
}

TEST(Cifar, BadFiles) {
  // Label out of range: record 1 of the batch.
  std::string bad10 = testing::cifar_records({{1}, {10}, {2}});
  expect_error<CorruptionError>([&] { parse_cifar(u8(bad10), bad10.size(), "b10.bin", 10); },
                                {"b10.bin", "record 1", "label 10"});
  std::string bad_fine = testing::cifar_records({{1, 1}, {1, 1}, {2, 100}});
  expect_error<CorruptionError>([&] { parse_cifar(u8(bad_fine), bad_fine.size(), "f.bin", 100); },
                                {"f.bin", "record 2", "fine label 100"});
  std::string bad_coarse = testing::cifar_records({{20, 1}});
  expect_error<CorruptionError>(
      [&] { parse_cifar(u8(bad_coarse), bad_coarse.size(), "c.bin", 100, CifarLabel::kCoarse); },
      {"c.bin", "record 0", "coarse label 20"});
  // A size that is not a multiple of the record: the last record is cut.
  std::string cut = testing::cifar_records({{1}, {2}}).substr(0, 3073 + 100);
  expect_error<CorruptionError>([&] { parse_cifar(u8(cut), cut.size(), "cut.bin", 10); },
                                {"cut.bin", "not a multiple of the 3073-byte", "record 1"});
  expect_error<CorruptionError>([&] { parse_cifar(u8(cut), 0, "empty.bin", 10); }, {"empty.bin", "empty"});
  expect_error<InvalidArgument>([&] { parse_cifar(u8(cut), 3073, "x.bin", 10, CifarLabel::kCoarse); },
                                {"coarse"});
  expect_error<InvalidArgument>([&] { parse_cifar(u8(cut), 3073, "x.bin", 7); }, {"variant 7"});

  TempDir d;
  write_cifar10(d.path(), false);
  std::filesystem::remove(d.path() + "/cifar-10-batches-bin/data_batch_3.bin");
  expect_error<IoError>([&] { read_cifar(d.path(), Split::kTrain); }, {"data_batch_3.bin"});
  EXPECT_NO_THROW(read_cifar(d.path(), Split::kTest));
  write_file(d.path() + "/cifar-10-batches-bin/batches.meta.txt", "a\nb\n");
  expect_error<CorruptionError>([&] { read_cifar(d.path(), Split::kTest); },
                                {"batches.meta.txt", "2 names, expected 10"});
  // Not a CIFAR folder; both variants at once.
  TempDir e;
  expect_error<InvalidArgument>([&] { locate_cifar(e.path()); }, {e.path(), "CIFAR-10 or CIFAR-100"});
  expect_error<InvalidArgument>([&] { locate_cifar(e.file("nope")); }, {"not a folder"});
  write_cifar10(e.path());
  write_file(e.path() + "/cifar-100-binary/train.bin", testing::cifar_records({{1, 1}}));
  expect_error<InvalidArgument>([&] { locate_cifar(e.path()); }, {"both"});
  EXPECT_EQ(locate_cifar(e.path(), 100).variant, 100);
  EXPECT_EQ(locate_cifar(e.path(), 10).folder, e.path() + "/cifar-10-batches-bin");
}

// ======================= .npy =======================

TEST(Npy, EveryDtypeInBothByteOrders) {
  const std::vector<int32_t> i4 = {1, -2, 300000, -7, 0, 2147483647};
  for (bool big : {false, true}) {
    const std::string order = big ? ">" : "<";
    auto bytes = [&](const auto& v) { return big ? testing::be_bytes(v) : testing::le_bytes(v); };
    struct Case {
      std::string descr;
      std::string data;
      DType dtype;
      std::vector<double> values;
    };
    const std::vector<Case> cases = {
        {order + "i4", bytes(i4), DType::kInt32, {1, -2, 300000, -7, 0, 2147483647}},
        {order + "i2", bytes(std::vector<int16_t>{-300, 2, 3, 4, 5, 32767}), DType::kInt16, {-300, 2, 3, 4, 5, 32767}},
        {order + "u2", bytes(std::vector<uint16_t>{65535, 2, 3, 4, 5, 6}), DType::kUInt16, {65535, 2, 3, 4, 5, 6}},
        {order + "i8", bytes(std::vector<int64_t>{-5, 1ll << 40, 3, 4, 5, 6}), DType::kInt64, {-5, double(1ll << 40), 3, 4, 5, 6}},
        {order + "u4", bytes(std::vector<uint32_t>{4000000000u, 2, 3, 4, 5, 6}), DType::kUInt32, {4e9, 2, 3, 4, 5, 6}},
        {order + "f4", bytes(std::vector<float>{1.5f, -2.25f, 0, 1e10f, 5, 6}), DType::kFloat32, {1.5, -2.25, 0, 1e10, 5, 6}},
        {order + "f8", bytes(std::vector<double>{1.5, -2.25, 0, 1e300, 5, 6}), DType::kFloat64, {1.5, -2.25, 0, 1e300, 5, 6}},
        // float16: 1.0, -2.0, 0.5, 65504, 2^-24 (the smallest subnormal), 0
        {order + "f2", bytes(std::vector<uint16_t>{0x3C00, 0xC000, 0x3800, 0x7BFF, 0x0001, 0}), DType::kFloat16,
         {1, -2, 0.5, 65504, std::ldexp(1.0, -24), 0}},
        {"|u1", std::string("\x01\x02\xFF\x04\x05\x06", 6), DType::kUInt8, {1, 2, 255, 4, 5, 6}},
        {"|i1", std::string("\x01\xFE\x7F\x80\x05\x06", 6), DType::kInt8, {1, -2, 127, -128, 5, 6}},
        {"|b1", std::string("\x01\x00\x01\x00\x00\x01", 6), DType::kBool, {1, 0, 1, 0, 0, 1}},
    };
    for (const Case& c : cases) {
      SCOPED_TRACE(c.descr);
      const std::string file = testing::npy_bytes(c.descr, false, "(2, 3)", c.data);
      RawArray a = parse_npy(u8(file), file.size(), "t.npy");
      EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
      EXPECT_EQ(a.dtype, c.dtype);
      RawArray f = to_float32(a);
      for (size_t i = 0; i < 6; ++i) EXPECT_EQ(at<float>(f, i), float(c.values[i])) << i;
    }
  }
}

TEST(Npy, VersionsFortranOrderAndScalars) {
  const std::vector<float> v = {0, 1, 2, 3, 4, 5};  // Fortran [2, 3]: column-major
  for (int major : {1, 2, 3}) {
    const std::string file = testing::npy_bytes("<f4", true, "(2, 3)", testing::le_bytes(v), major);
    RawArray a = parse_npy(u8(file), file.size(), "f.npy");
    // a[i][j] = v[i + 2 j]
    const std::vector<float> c_order = {0, 2, 4, 1, 3, 5};
    for (size_t i = 0; i < 6; ++i) EXPECT_EQ(at<float>(a, i), c_order[i]) << "version " << major;
  }
  // 3-D Fortran: element (i, j, k) at i + 2 j + 6 k.
  std::vector<int16_t> w(24);
  for (int i = 0; i < 24; ++i) w[size_t(i)] = int16_t(i);
  const std::string f3 = testing::npy_bytes("<i2", true, "(2, 3, 4)", testing::le_bytes(w));
  RawArray a3 = parse_npy(u8(f3), f3.size(), "f3.npy");
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) EXPECT_EQ(at<int16_t>(a3, size_t(i * 12 + j * 4 + k)), i + 2 * j + 6 * k);
  // A 1-tuple shape, a scalar, an empty array, Python 2's long suffix.
  const std::string one = testing::npy_bytes("<i8", false, "(3,)", testing::le_bytes(std::vector<int64_t>{7, 8, 9}));
  EXPECT_EQ(parse_npy(u8(one), one.size(), "1.npy").shape, (std::vector<int64_t>{3}));
  const std::string scalar = testing::npy_bytes("<f8", false, "()", testing::le_bytes(std::vector<double>{2.5}));
  EXPECT_EQ(parse_npy(u8(scalar), scalar.size(), "s.npy").numel(), 1);
  const std::string empty = testing::npy_bytes("<f4", false, "(0, 5)", "");
  EXPECT_EQ(parse_npy(u8(empty), empty.size(), "e.npy").shape, (std::vector<int64_t>{0, 5}));
  const std::string py2 = testing::npy_bytes("<i8", false, "(3L,)", testing::le_bytes(std::vector<int64_t>{7, 8, 9}));
  EXPECT_EQ(parse_npy(u8(py2), py2.size(), "py2.npy").shape, (std::vector<int64_t>{3}));
}

TEST(Npy, BadFiles) {
  const std::string data = testing::le_bytes(std::vector<float>{1, 2, 3, 4, 5, 6});
  const std::string good = testing::npy_bytes("<f4", false, "(2, 3)", data);
  auto bad = [&](const std::string& bytes, const std::vector<std::string>& needles) {
    expect_error<CorruptionError>([&] { parse_npy(u8(bytes), bytes.size(), "bad.npy"); }, needles);
  };
  std::string magic = good;
  magic[1] = 'X';
  bad(magic, {"bad.npy", "magic"});
  std::string version = good;
  version[6] = 4;
  bad(version, {"bad.npy", "version 4.0"});
  bad(good.substr(0, 7), {"bad.npy", "truncated"});
  std::string long_header = good;
  long_header[8] = char(0xFF);
  long_header[9] = char(0xFF);  // 65535 > the bytes present
  bad(long_header, {"bad.npy", "header needs 65535 bytes"});
  std::string huge_header = testing::npy_bytes("<f4", false, "(2, 3)", data, 2);
  huge_header[10] = 0x10;  // 1 MiB header
  bad(huge_header, {"bad.npy", "exceeds the limit"});
  bad(testing::npy_bytes("<c8", false, "(2, 3)", data), {"bad.npy", "unsupported dtype '<c8'"});
  bad(testing::npy_bytes("|O", false, "(2, 3)", data), {"bad.npy", "unsupported dtype '|O'"});
  bad(testing::npy_bytes("<U3", false, "(2, 3)", data), {"bad.npy", "unsupported dtype"});
  // A structured dtype: descr is a list.
  std::string structured = good;
  structured.replace(structured.find("'<f4'"), 5, "[('a',");
  bad(structured, {"bad.npy", "structured"});
  std::string no_shape = good;
  no_shape.replace(no_shape.find("'shape'"), 7, "'shapf'");
  bad(no_shape, {"bad.npy", "unknown key 'shapf'"});
  std::string order = good;
  order.replace(order.find("False"), 5, "Maybe");
  bad(order, {"bad.npy", "fortran_order"});
  bad(testing::npy_bytes("<f4", false, "(2, -3)", data), {"bad.npy", "shape"});
  bad(testing::npy_bytes("<f4", false, "[2, 3]", data), {"bad.npy", "expected '('"});
  // Truncated data, trailing data, and a shape claiming far more than the
  // bytes present (refused without allocating it).
  bad(good.substr(0, good.size() - 1), {"bad.npy", "truncated", "needs more than the 23 data bytes"});
  bad(good + "xy", {"bad.npy", "needs 24 data bytes, 26 are present"});
  bad(testing::npy_bytes("<f8", false, "(100000000000, 100000000)", data), {"bad.npy", "truncated", "needs more than"});
  std::string nul = good;
  nul[20] = '\0';
  bad(nul, {"bad.npy", "NUL"});
}

// ======================= NumPy itself =======================

// Runs a NumPy script with /usr/bin/python3; false when NumPy is not there.
bool run_numpy(const std::string& dir, const std::string& script) {
  write_file(dir + "/make.py", "import numpy as np, os\nos.chdir(" + std::string("'") + dir + "')\n" + script);
  const std::string cmd = std::string(CONTINUA_SYSTEM_PYTHON3) + " -c 'import numpy' 2>/dev/null && " +
                          CONTINUA_SYSTEM_PYTHON3 + " " + dir + "/make.py";
  return std::system(cmd.c_str()) == 0;
}

TEST(Npy, FilesWrittenByNumPy) {
  TempDir d;
  const std::string script = R"(
a = np.arange(24, dtype='<f4').reshape(2, 3, 4) / 4
np.save('f4.npy', a)
np.save('big_i4.npy', (np.arange(12) * 1000 - 5000).astype('>i4').reshape(3, 4))
np.save('fortran_f8.npy', np.asfortranarray(np.arange(12, dtype='<f8').reshape(3, 4) + 0.5))
np.save('bool.npy', np.array([True, False, True]))
np.save('u1.npy', np.arange(256, dtype=np.uint8))
np.save('f2.npy', np.array([0.5, -3.0, 1024.0], dtype='<f2'))
np.save('big_f8.npy', np.array([1.25, -2.5], dtype='>f8'))
from numpy.lib import format as fmt
with open('v2.npy', 'wb') as f: fmt.write_array(f, np.arange(5, dtype='<i8'), version=(2, 0))
with open('v3.npy', 'wb') as f: fmt.write_array(f, np.arange(5, dtype='<i8'), version=(3, 0))
x = np.arange(4 * 6, dtype=np.uint8).reshape(4, 2, 3)
y = np.array([0, 3, 1, 3])
tx = (np.arange(2 * 6, dtype=np.float64).reshape(2, 6) - 3) / 8
ty = np.array([[2], [0]], dtype=np.int16)
np.savez('plain.npz', train_x=x, train_y=y, test_x=tx, test_y=ty)
np.savez_compressed('compressed.npz', train_x=x, train_y=y, test_x=tx, test_y=ty)
)";
  if (!run_numpy(d.path(), script)) GTEST_SKIP() << "python3 with numpy is not installed";
  RawArray f4 = read_npy_file(d.file("f4.npy"));
  EXPECT_EQ(f4.shape, (std::vector<int64_t>{2, 3, 4}));
  for (size_t i = 0; i < 24; ++i) EXPECT_EQ(at<float>(f4, i), float(i) / 4);
  RawArray i4 = read_npy_file(d.file("big_i4.npy"));
  EXPECT_EQ(i4.dtype, DType::kInt32);
  for (size_t i = 0; i < 12; ++i) EXPECT_EQ(at<int32_t>(i4, i), int32_t(i) * 1000 - 5000);
  RawArray f8 = read_npy_file(d.file("fortran_f8.npy"));
  EXPECT_EQ(f8.shape, (std::vector<int64_t>{3, 4}));
  for (size_t i = 0; i < 12; ++i) EXPECT_EQ(at<double>(f8, i), double(i) + 0.5);
  RawArray b = read_npy_file(d.file("bool.npy"));
  EXPECT_EQ(b.dtype, DType::kBool);
  EXPECT_EQ(b.bytes, (std::vector<uint8_t>{1, 0, 1}));
  RawArray u = read_npy_file(d.file("u1.npy"));
  for (size_t i = 0; i < 256; ++i) EXPECT_EQ(u.bytes[i], i);
  RawArray h = to_float32(read_npy_file(d.file("f2.npy")));
  EXPECT_EQ(at<float>(h, 0), 0.5f);
  EXPECT_EQ(at<float>(h, 1), -3.0f);
  EXPECT_EQ(at<float>(h, 2), 1024.0f);
  RawArray bf = read_npy_file(d.file("big_f8.npy"));
  EXPECT_EQ(at<double>(bf, 1), -2.5);
  for (const char* v : {"v2.npy", "v3.npy"}) {
    RawArray a = read_npy_file(d.file(v));
    for (size_t i = 0; i < 5; ++i) EXPECT_EQ(at<int64_t>(a, i), int64_t(i)) << v;
  }
  for (const char* npz : {"plain.npz", "compressed.npz"}) {
    SCOPED_TRACE(npz);
    RawSamples train = read_npy_split(d.file(npz), Split::kTrain);
    EXPECT_EQ(train.inputs.shape, (std::vector<int64_t>{4, 2, 3}));
    EXPECT_EQ(train.inputs.dtype, DType::kUInt8);  // stays uint8
    for (size_t i = 0; i < 24; ++i) EXPECT_EQ(train.inputs.bytes[i], i);
    EXPECT_EQ(train.labels, (std::vector<int64_t>{0, 3, 1, 3}));
    RawSamples test = read_npy_split(d.file(npz), Split::kTest);
    EXPECT_EQ(test.inputs.dtype, DType::kFloat32);  // float64 becomes float32
    for (size_t i = 0; i < 12; ++i) EXPECT_EQ(at<float>(test.inputs, i), float((double(i) - 3) / 8));
    EXPECT_EQ(test.labels, (std::vector<int64_t>{2, 0}));  // [N, 1] int16
  }
}

TEST(Npy, FolderAndNpzSplits) {
  TempDir d;
  const std::string x = testing::npy_bytes("<f4", false, "(3, 2)", testing::le_bytes(std::vector<float>{1, 2, 3, 4, 5, 6}));
  const std::string y = testing::npy_bytes("<i8", false, "(3,)", testing::le_bytes(std::vector<int64_t>{4, 0, 2}));
  const std::string ty = testing::npy_bytes("<f8", false, "(3,)", testing::le_bytes(std::vector<double>{1, 2, 0}));
  for (const char* n : {"train_x.npy", "test_x.npy"}) write_file(d.file("dir/") + n, x);
  write_file(d.file("dir/train_y.npy"), y);
  write_file(d.file("dir/test_y.npy"), ty);  // integral floats are labels too
  RawSamples train = read_npy_split(d.file("dir"), Split::kTrain);
  EXPECT_EQ(train.labels, (std::vector<int64_t>{4, 0, 2}));
  EXPECT_EQ(at<float>(train.inputs, 5), 6.0f);
  EXPECT_EQ(read_npy_split(d.file("dir"), Split::kTest).labels, (std::vector<int64_t>{1, 2, 0}));
  // Hand-made archives, stored and deflated, members with or without ".npy".
  testing::write_zip(d.file("a.npz"), {{"train_x.npy", x, true}, {"train_y", y, false},
                                       {"test_x.npy", x, false}, {"test_y.npy", ty, true}});
  EXPECT_EQ(read_npy_split(d.file("a.npz"), Split::kTrain).labels, (std::vector<int64_t>{4, 0, 2}));
  EXPECT_EQ(read_npy_split(d.file("a.npz"), Split::kTest).labels, (std::vector<int64_t>{1, 2, 0}));
}

// Offsets of a zip's local header and central directory entry for a member.
void patch_zip_sizes(std::string& zip, uint32_t uncompressed) {
  for (const char* sig : {"PK\x03\x04", "PK\x01\x02"}) {
    const size_t at = zip.find(sig);
    ASSERT_NE(at, std::string::npos);
    const size_t off = at + (sig[2] == 3 ? 22 : 24);
    for (int k = 0; k < 4; ++k) zip[off + size_t(k)] = char(uncompressed >> (8 * k));
  }
}

TEST(Npy, BadArchivesAndSamples) {
  TempDir d;
  const std::string x = testing::npy_bytes("<f4", false, "(3, 2)", testing::le_bytes(std::vector<float>{1, 2, 3, 4, 5, 6}));
  const std::string y = testing::npy_bytes("<i8", false, "(3,)", testing::le_bytes(std::vector<int64_t>{4, 0, 2}));
  // A missing member.
  testing::write_zip(d.file("missing.npz"), {{"train_x.npy", x}, {"train_y.npy", y}, {"test_x.npy", x}});
  expect_error<CorruptionError>([&] { read_npy_split(d.file("missing.npz"), Split::kTest); },
                                {d.file("missing.npz"), "no member 'test_y.npy'"});
  // Not a zip at all.
  write_file(d.file("junk.npz"), "this is not a zip archive, just text");
  expect_error<CorruptionError>([&] { read_npy_split(d.file("junk.npz"), Split::kTrain); },
                                {d.file("junk.npz"), "zip"});
  // A damaged deflated member: its CRC or its deflate stream fails.
  std::string big(4096, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = char((i * 31) % 7);
  const std::string bx = testing::npy_bytes("|u1", false, "(1024, 4)", big);
  const std::string by = testing::npy_bytes("<i8", false, "(1024,)", std::string(8 * 1024, '\0'));
  testing::write_zip(d.file("ok.npz"), {{"train_x.npy", bx, true}, {"train_y.npy", by, true}});
  EXPECT_NO_THROW(read_npy_split(d.file("ok.npz"), Split::kTrain));
  std::string damaged = testing::read_all(d.file("ok.npz"));
  damaged[30 + std::strlen("train_x.npy") + 20] ^= 0x55;  // inside the first member's data
  write_file(d.file("damaged.npz"), damaged);
  expect_error<CorruptionError>([&] { read_npy_split(d.file("damaged.npz"), Split::kTrain); },
                                {d.file("damaged.npz"), "train_x.npy"});
  // A stored member claiming more bytes than it has: refused before allocating.
  testing::write_zip(d.file("liar.npz"), {{"train_x.npy", x}});
  std::string liar = testing::read_all(d.file("liar.npz"));
  patch_zip_sizes(liar, 0x7FFFFFFF);
  std::vector<uint8_t> lb(liar.begin(), liar.end());
  expect_error<CorruptionError>([&] { parse_npz(lb.data(), lb.size(), "liar.npz", {"train_x"}); },
                                {"liar.npz", "train_x.npy", "compressed bytes can hold"});
  // A member whose .npy header disagrees with its bytes: the npy check,
  // named by archive and member.
  testing::write_zip(d.file("short.npz"), {{"train_x.npy", x.substr(0, x.size() - 4), true}, {"train_y.npy", y}});
  expect_error<CorruptionError>([&] { read_npy_split(d.file("short.npz"), Split::kTrain); },
                                {d.file("short.npz") + ":train_x.npy", "truncated"});

  // Samples: N disagreeing, negative, non-integer and out-of-range labels, a
  // labels array of another shape, a scalar input.
  auto arr = [](const std::string& bytes) { return parse_npy(u8(bytes), bytes.size(), "a.npy"); };
  const RawArray ax = arr(x);
  const RawArray y2 = arr(testing::npy_bytes("<i8", false, "(2,)", testing::le_bytes(std::vector<int64_t>{1, 2})));
  expect_error<CorruptionError>([&] { make_samples(ax, y2, "x.npy", "y.npy"); }, {"x.npy", "y.npy", "disagree in N"});
  const RawArray neg = arr(testing::npy_bytes("<i4", false, "(3,)", testing::le_bytes(std::vector<int32_t>{1, -1, 2})));
  expect_error<CorruptionError>([&] { make_samples(ax, neg, "x.npy", "y.npy"); }, {"y.npy", "element 1", "-1", ">= 0"});
  const RawArray frac = arr(testing::npy_bytes("<f4", false, "(3,)", testing::le_bytes(std::vector<float>{1, 2, 2.5f})));
  expect_error<CorruptionError>([&] { make_samples(ax, frac, "x.npy", "y.npy"); }, {"y.npy", "element 2", "not an integer"});
  const RawArray big_label = arr(testing::npy_bytes("<i8", false, "(3,)", testing::le_bytes(std::vector<int64_t>{1, 2, 1ll << 40})));
  expect_error<CorruptionError>([&] { make_samples(ax, big_label, "x.npy", "y.npy"); }, {"y.npy", "element 2", "largest label"});
  const RawArray wide = arr(testing::npy_bytes("<i8", false, "(3, 2)", testing::le_bytes(std::vector<int64_t>{1, 2, 3, 4, 5, 6})));
  expect_error<CorruptionError>([&] { make_samples(ax, wide, "x.npy", "y.npy"); }, {"y.npy", "[3, 2]"});
  const RawArray scalar = arr(testing::npy_bytes("<f8", false, "()", testing::le_bytes(std::vector<double>{2})));
  expect_error<CorruptionError>([&] { make_samples(scalar, y2, "x.npy", "y.npy"); }, {"x.npy", "scalar"});
  // Missing files in a folder; a path that is neither.
  write_file(d.file("dir/train_x.npy"), x);
  expect_error<IoError>([&] { read_npy_split(d.file("dir"), Split::kTrain); }, {"train_y.npy"});
  expect_error<InvalidArgument>([&] { read_npy_split(d.file("nothing"), Split::kTrain); }, {d.file("nothing")});
  expect_error<IoError>([&] { read_npy_file("/dev/zero"); }, {"/dev/zero", "not a regular file"});
}

// ======================= CSV =======================

RawSamples csv(const std::string& text, const CsvSpec& spec = CsvSpec::detect()) {
  return parse_csv(u8(text), text.size(), "t.csv", spec);
}

TEST(Csv, WithAndWithoutHeaderQuotingAndLabels) {
  // No header, integer labels, CRLF, a blank last line.
  RawSamples a = csv("1.5,2,0\r\n-3,4e2,2\r\n+0.25, 7 ,1\r\n\r\n");
  EXPECT_EQ(a.inputs.shape, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(a.inputs.dtype, DType::kFloat32);
  const std::vector<float> want = {1.5f, 2, -3, 400, 0.25f, 7};
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(at<float>(a.inputs, i), want[i]);
  EXPECT_EQ(a.labels, (std::vector<int64_t>{0, 2, 1}));
  EXPECT_TRUE(a.class_names.empty());
  // A header (its feature fields are not numbers), quoted fields with a comma
  // and doubled quotes, string labels numbered in sorted order.
  RawSamples b = csv("\"width\",height,\"kind\"\n\"1\",2,\"dog, big\"\n3,\"4\",cat\n5,6,\"say \"\"hi\"\"\"\n7,8,cat\n");
  EXPECT_EQ(b.inputs.shape, (std::vector<int64_t>{4, 2}));
  EXPECT_EQ(at<float>(b.inputs, 3), 4.0f);
  EXPECT_EQ(b.class_names, (std::vector<std::string>{"cat", "dog, big", "say \"hi\""}));
  EXPECT_EQ(b.labels, (std::vector<int64_t>{1, 0, 2, 0}));
  // The test file is labelled as the train file is.
  RawSamples t = csv("3,4,\"say \"\"hi\"\"\"\n1,1,cat\n", CsvSpec::like(b));
  EXPECT_EQ(t.labels, (std::vector<int64_t>{2, 0}));
  RawSamples ti = csv("1,2,5\n", CsvSpec::like(a));
  EXPECT_EQ(ti.labels, (std::vector<int64_t>{5}));
  // A numeric header would be data: a first row of numbers is a data row.
  EXPECT_EQ(csv("1,2,3\n").inputs.shape[0], 1);
  // Labels that are all numbers but one: names.
  EXPECT_EQ(csv("1,2\n3,b\n4,10\n").class_names, (std::vector<std::string>{"10", "2", "b"}));
}

TEST(Csv, FolderSplits) {
  TempDir d;
  write_file(d.file("data/train.csv"), "f1,f2,label\n0,1,b\n2,3,a\n");
  write_file(d.file("data/test.csv"), "f1,f2,label\n4,5,a\n");
  RawSamples train = read_csv_split(d.file("data"), Split::kTrain);
  EXPECT_EQ(train.class_names, (std::vector<std::string>{"a", "b"}));
  RawSamples test = read_csv_split(d.file("data"), Split::kTest);
  EXPECT_EQ(test.labels, (std::vector<int64_t>{0}));
  EXPECT_EQ(test.class_names, train.class_names);
  write_file(d.file("data/test.csv"), "f1,f2,label\n4,5,zebra\n");
  expect_error<CorruptionError>([&] { read_csv_split(d.file("data"), Split::kTest); },
                                {d.file("data/test.csv"), "row 2", "'zebra'", "not one of the training file's 2 labels"});
  write_file(d.file("data/test.csv"), "4,5,6,a\n");
  expect_error<CorruptionError>([&] { read_csv_split(d.file("data"), Split::kTest); },
                                {d.file("data/test.csv"), "row 1 has 4 columns", "2 feature columns"});
  std::filesystem::remove(d.file("data/test.csv"));
  expect_error<IoError>([&] { read_csv_split(d.file("data"), Split::kTrain); }, {"test.csv"});
  expect_error<InvalidArgument>([&] { read_csv_split(d.file("none"), Split::kTrain); }, {d.file("none")});
}

TEST(Csv, BadFiles) {
  auto bad = [](const std::string& text, const std::vector<std::string>& needles,
                const CsvSpec& spec = CsvSpec::detect()) {
    expect_error<CorruptionError>([&] { csv(text, spec); }, needles);
  };
  bad("1,2,0\n3,4\n", {"t.csv", "row 2 has 2 columns, row 1 has 3"});
  bad("1,2,0\n3,4,5,1\n", {"t.csv", "row 2 has 4 columns, row 1 has 3"});
  bad("a,b,label\n1,2,0\n3,x7,1\n", {"t.csv", "row 3, column 2", "'x7' is not a number"});
  bad("1,2,0\n3,,1\n", {"t.csv", "row 2, column 2", "'' is not a number"});
  bad("1,inf,0\n", {"t.csv", "row 1, column 2", "not a finite number"});
  bad("", {"t.csv", "empty"});
  bad("\n\n", {"t.csv", "empty"});
  bad("a,b,label\n", {"t.csv", "no data rows"});
  bad("1,2,0\n1,2,-1\n", {"t.csv", "row 2", "'-1'", "not an integer in [0"});
  bad("1,2,0\n1,2,1.5\n", {"t.csv", "row 2", "'1.5'"});
  bad("1,2,0\n1,2,99999999\n", {"t.csv", "row 2", "99999999"});
  bad("1,2,0\n1,2,cat\n", {"t.csv", "row 2", "'cat' is not a number"}, CsvSpec::like(csv("1,2,0\n")));
  bad("1,2,0\n3,\"4,1\n", {"t.csv", "malformed CSV in row 2"});
  bad("1,2,0\n3,4\"x,1\n", {"t.csv", "malformed CSV in row 2"});
  bad("7\n8\n", {"t.csv", "row 1 has 1 column(s)"});
}

// ======================= Images =======================

testing::PngSpec grey_png(uint32_t w, uint32_t h, uint8_t base) {
  testing::PngSpec s;
  s.width = w;
  s.height = h;
  for (uint32_t i = 0; i < w * h; ++i) s.rows.push_back(uint8_t(base + i * 3));
  return s;
}

RawArray decode(const std::string& bytes, const std::string& name = "img") {
  return decode_image(u8(bytes), bytes.size(), name);
}

TEST(Images, PngGreyRgbPalette16BitAlphaInterlaced) {
  // Grey 8-bit.
  RawArray g = decode(testing::png_bytes(grey_png(5, 3, 10)));
  EXPECT_EQ(g.shape, (std::vector<int64_t>{1, 3, 5}));
  for (size_t i = 0; i < 15; ++i) EXPECT_EQ(g.bytes[i], uint8_t(10 + i * 3));
  // RGB 8-bit: interleaved in the file, planes in the array.
  testing::PngSpec rgb;
  rgb.width = 4;
  rgb.height = 2;
  rgb.color_type = PNG_COLOR_TYPE_RGB;
  for (uint32_t p = 0; p < 8; ++p)
    for (uint32_t c = 0; c < 3; ++c) rgb.rows.push_back(uint8_t(p * 10 + c * 100));
  for (bool interlace : {false, true}) {
    rgb.interlace = interlace;
    RawArray a = decode(testing::png_bytes(rgb));
    EXPECT_EQ(a.shape, (std::vector<int64_t>{3, 2, 4}));
    for (size_t c = 0; c < 3; ++c)
      for (size_t p = 0; p < 8; ++p) EXPECT_EQ(a.bytes[c * 8 + p], uint8_t(p * 10 + c * 100)) << interlace;
  }
  // RGBA: the alpha channel is dropped, not composited.
  testing::PngSpec rgba = rgb;
  rgba.interlace = false;
  rgba.color_type = PNG_COLOR_TYPE_RGB_ALPHA;
  rgba.rows.clear();
  for (uint32_t p = 0; p < 8; ++p) {
    for (uint32_t c = 0; c < 3; ++c) rgba.rows.push_back(uint8_t(p * 10 + c * 100));
    rgba.rows.push_back(uint8_t(p * 30));  // alpha
  }
  RawArray ra = decode(testing::png_bytes(rgba));
  EXPECT_EQ(ra.shape, (std::vector<int64_t>{3, 2, 4}));
  for (size_t c = 0; c < 3; ++c)
    for (size_t p = 0; p < 8; ++p) EXPECT_EQ(ra.bytes[c * 8 + p], uint8_t(p * 10 + c * 100));
  // Grey + alpha -> grey.
  testing::PngSpec ga = grey_png(3, 1, 0);
  ga.color_type = PNG_COLOR_TYPE_GRAY_ALPHA;
  ga.rows = {10, 255, 20, 0, 30, 128};
  RawArray gar = decode(testing::png_bytes(ga));
  EXPECT_EQ(gar.shape, (std::vector<int64_t>{1, 1, 3}));
  EXPECT_EQ(gar.bytes, (std::vector<uint8_t>{10, 20, 30}));
  // Palette (4-bit indices, with transparency) -> RGB.
  testing::PngSpec pal;
  pal.width = 4;
  pal.height = 1;
  pal.color_type = PNG_COLOR_TYPE_PALETTE;
  pal.bit_depth = 4;
  pal.palette = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {7, 8, 9}};
  pal.trns = {0, 128};
  pal.rows = {0x01, 0x23};  // indices 0, 1, 2, 3
  RawArray pr = decode(testing::png_bytes(pal));
  EXPECT_EQ(pr.shape, (std::vector<int64_t>{3, 1, 4}));
  EXPECT_EQ(pr.bytes, (std::vector<uint8_t>{255, 0, 0, 7, 0, 255, 0, 8, 0, 0, 255, 9}));
  // 16-bit grey and RGB -> 8 bits (v / 257, rounded: 1999 / 257 = 7.78 gives
  // 8, where keeping the high byte would give 7).
  testing::PngSpec g16;
  g16.width = 3;
  g16.height = 1;
  g16.bit_depth = 16;
  const uint16_t v16[3] = {65535, 257 * 100, 257 * 7 + 200};
  for (uint16_t v : v16) {
    g16.rows.push_back(uint8_t(v >> 8));
    g16.rows.push_back(uint8_t(v & 0xFF));
  }
  RawArray g16r = decode(testing::png_bytes(g16));
  EXPECT_EQ(g16r.bytes, (std::vector<uint8_t>{255, 100, 8}));
  testing::PngSpec rgb16 = g16;
  rgb16.width = 1;
  rgb16.color_type = PNG_COLOR_TYPE_RGB;
  RawArray r16 = decode(testing::png_bytes(rgb16));
  EXPECT_EQ(r16.shape, (std::vector<int64_t>{3, 1, 1}));
  EXPECT_EQ(r16.bytes, (std::vector<uint8_t>{255, 100, 8}));
  // 1-bit grey -> 0 / 255.
  testing::PngSpec g1;
  g1.width = 8;
  g1.height = 1;
  g1.bit_depth = 1;
  g1.rows = {0xA5};
  EXPECT_EQ(decode(testing::png_bytes(g1)).bytes, (std::vector<uint8_t>{255, 0, 255, 0, 0, 255, 0, 255}));
}

TEST(Images, JpegGreyAndRgb) {
  const int w = 16, h = 8;
  std::vector<uint8_t> grey(size_t(w * h)), rgb(size_t(w * h * 3));
  for (int i = 0; i < w * h; ++i) {
    grey[size_t(i)] = uint8_t(40 + (i % w) * 4);
    for (int c = 0; c < 3; ++c) rgb[size_t(i * 3 + c)] = uint8_t(30 + 60 * c + (i / w) * 5);
  }
  RawArray g = decode(testing::jpeg_bytes(grey, w, h, TJPF_GRAY));
  EXPECT_EQ(g.shape, (std::vector<int64_t>{1, h, w}));
  for (size_t i = 0; i < grey.size(); ++i) EXPECT_NEAR(g.bytes[i], grey[i], 2) << i;
  RawArray c = decode(testing::jpeg_bytes(rgb, w, h, TJPF_RGB));
  EXPECT_EQ(c.shape, (std::vector<int64_t>{3, h, w}));
  for (size_t k = 0; k < 3; ++k)
    for (size_t p = 0; p < size_t(w * h); ++p) EXPECT_NEAR(c.bytes[k * w * h + p], rgb[p * 3 + k], 3) << k << " " << p;
}

TEST(Images, BadImages) {
  const std::string png = testing::png_bytes(grey_png(8, 8, 0));
  expect_error<CorruptionError>([&] { decode(png.substr(0, png.size() - 30), "cut.png"); },
                                {"cut.png", "PNG"});
  std::string crc = png;
  crc[29] ^= 1;  // inside IHDR's CRC
  expect_error<CorruptionError>([&] { decode(crc, "crc.png"); }, {"crc.png", "PNG", "CRC"});
  // Headers claiming huge images are refused before the pixels are
  // allocated: by the bytes the file can inflate to, then by the fixed cap.
  auto with_ihdr = [](uint32_t w, uint32_t h, int color_type, size_t padding) {
    std::string b = testing::png_bytes(grey_png(1, 1, 0));
    auto put32 = [&](size_t off, uint32_t v) {
      for (int k = 0; k < 4; ++k) b[off + size_t(k)] = char(v >> (24 - 8 * k));
    };
    put32(16, w);
    put32(20, h);
    b[25] = char(color_type);
    put32(29, uint32_t(crc32(0, reinterpret_cast<const Bytef*>(b.data() + 12), 17)));
    if (padding) {  // an ancillary private chunk after IHDR, which libpng skips
      std::string chunk(4, '\0');
      chunk += "prVt" + std::string(padding, 'p') + std::string(4, '\0');
      for (int k = 0; k < 4; ++k) chunk[size_t(k)] = char(padding >> (24 - 8 * k));
      const uint32_t c = uint32_t(crc32(0, reinterpret_cast<const Bytef*>(chunk.data() + 4), uInt(4 + padding)));
      for (int k = 0; k < 4; ++k) chunk[8 + padding + size_t(k)] = char(c >> (24 - 8 * k));
      b.insert(33, chunk);
    }
    return b;
  };
  expect_error<CorruptionError>([&] { decode(with_ihdr(60000, 60000, PNG_COLOR_TYPE_RGB, 0), "huge.png"); },
                                {"huge.png", "60000x60000x3", "compressed bytes can hold"});
  // 16384 x 16385 grey is 2^28 + 16384 bytes; 300 KB of file may inflate to that.
  expect_error<CorruptionError>([&] { decode(with_ihdr(16384, 16385, PNG_COLOR_TYPE_GRAY, 300000), "cap.png"); },
                                {"cap.png", "16384x16385x1", "exceeds the limit"});
  // The same for JPEG: a frame header patched to 65000 x 65000, then to
  // 5000 x 5000 (25 MB from a few hundred bytes).
  auto with_sof = [](uint16_t w, uint16_t h) {
    std::string j = testing::jpeg_bytes(std::vector<uint8_t>(64, 9), 8, 8, TJPF_GRAY);
    const size_t sof = j.find("\xFF\xC0");
    j[sof + 5] = char(h >> 8);
    j[sof + 6] = char(h & 0xFF);
    j[sof + 7] = char(w >> 8);
    j[sof + 8] = char(w & 0xFF);
    return j;
  };
  expect_error<CorruptionError>([&] { decode(with_sof(65000, 65000), "huge.jpg"); },
                                {"huge.jpg", "65000x65000x1", "exceeds the limit"});
  expect_error<CorruptionError>([&] { decode(with_sof(5000, 5000), "ratio.jpg"); },
                                {"ratio.jpg", "5000x5000x1", "4096 times"});
  // A JPEG cut inside its entropy-coded data (noise makes that data most of
  // the file): the header reads, the decoder warns of the premature end.
  std::vector<uint8_t> noise(64 * 64);
  for (size_t i = 0; i < noise.size(); ++i) noise[i] = uint8_t((i * 2654435761u) >> 13);
  const std::string jpg = testing::jpeg_bytes(noise, 64, 64, TJPF_GRAY);
  ASSERT_GT(jpg.size(), 2000u);
  EXPECT_NO_THROW(decode(jpg, "whole.jpg"));
  expect_error<CorruptionError>([&] { decode(jpg.substr(0, jpg.size() - 500), "cut.jpg"); }, {"cut.jpg", "JPEG"});
  expect_error<CorruptionError>([&] { decode(jpg.substr(0, 20), "head.jpg"); }, {"head.jpg", "JPEG"});
  const std::string cmyk = testing::jpeg_bytes(std::vector<uint8_t>(8 * 8 * 4, 50), 8, 8, TJPF_CMYK);
  expect_error<CorruptionError>([&] { decode(cmyk, "cmyk.jpg"); }, {"cmyk.jpg", "CMYK"});
  expect_error<CorruptionError>([&] { decode("GIF89a......", "x.png"); }, {"x.png", "neither a PNG nor a JPEG"});
  expect_error<CorruptionError>([&] { decode("", "empty.png"); }, {"empty.png"});
}

void write_png(const std::string& path, const testing::PngSpec& s) { write_file(path, testing::png_bytes(s)); }

TEST(Images, FolderOfClasses) {
  TempDir d;
  const std::string root = d.file("imgs");
  write_png(root + "/train/cat/b.png", grey_png(4, 2, 1));
  write_png(root + "/train/cat/a.PNG", grey_png(4, 2, 2));
  write_file(root + "/train/cat/notes.txt", "not an image");
  write_file(root + "/train/cat/x.gif", "GIF89a");
  write_png(root + "/train/ant/z.png", grey_png(4, 2, 3));
  write_file(root + "/train/dog/c.jpg", testing::jpeg_bytes(std::vector<uint8_t>(8, 77), 4, 2, TJPF_GRAY));
  write_file(root + "/train/README", "ignored");
  write_png(root + "/test/dog/t.png", grey_png(4, 2, 5));
  RawSamples train = read_image_folder(root, Split::kTrain);
  EXPECT_EQ(train.class_names, (std::vector<std::string>{"ant", "cat", "dog"}));
  EXPECT_EQ(train.inputs.shape, (std::vector<int64_t>{4, 1, 2, 4}));
  // ant/z, cat/a.PNG, cat/b, dog/c: classes sorted, files sorted by name.
  EXPECT_EQ(train.labels, (std::vector<int64_t>{0, 1, 1, 2}));
  EXPECT_EQ(train.inputs.bytes[0], 3);
  EXPECT_EQ(train.inputs.bytes[8], 2);
  EXPECT_EQ(train.inputs.bytes[16 + 1], 1 + 3);
  EXPECT_NEAR(train.inputs.bytes[24 + 5], 77, 1);
  RawSamples test = read_image_folder(root, Split::kTest);
  EXPECT_EQ(test.labels, (std::vector<int64_t>{2}));  // the index of "dog" in train/
  EXPECT_EQ(test.class_names, train.class_names);
  // An RGB image among grey ones: named, with both shapes.
  testing::PngSpec rgb = grey_png(4, 2, 0);
  rgb.color_type = PNG_COLOR_TYPE_RGB;
  rgb.rows.resize(24);
  write_png(root + "/train/cat/c.png", rgb);
  expect_error<CorruptionError>([&] { read_image_folder(root, Split::kTrain); },
                                {root + "/train/cat/c.png", "[3, 2, 4]", "[1, 2, 4]", root + "/train/ant/z.png"});
  std::filesystem::remove(root + "/train/cat/c.png");
  write_png(root + "/test/dog/u.png", grey_png(5, 2, 0));
  expect_error<CorruptionError>([&] { read_image_folder(root, Split::kTest); },
                                {root + "/test/dog/u.png", "[1, 2, 5]"});
  std::filesystem::remove(root + "/test/dog/u.png");
  // A damaged image names its file.
  write_file(root + "/test/dog/v.png", "\x89PNG\r\n\x1a\n garbage");
  expect_error<CorruptionError>([&] { read_image_folder(root, Split::kTest); }, {root + "/test/dog/v.png"});
  std::filesystem::remove(root + "/test/dog/v.png");
  // A test class the training folder has not; an empty training class.
  write_png(root + "/test/emu/e.png", grey_png(4, 2, 0));
  expect_error<CorruptionError>([&] { read_image_folder(root, Split::kTest); }, {"'emu'"});
  std::filesystem::remove_all(root + "/test/emu");
  std::filesystem::create_directories(root + "/train/empty");
  expect_error<CorruptionError>([&] { read_image_folder(root, Split::kTrain); }, {root + "/train/empty", "no .png"});
  std::filesystem::remove_all(root + "/train/empty");
  EXPECT_NO_THROW(read_image_folder(root, Split::kTrain));
  // Missing test/, a root that is not a folder, a train/ without classes.
  std::filesystem::remove_all(root + "/test");
  expect_error<IoError>([&] { read_image_folder(root, Split::kTest); }, {root, "test/"});
  expect_error<InvalidArgument>([&] { read_image_folder(d.file("none"), Split::kTrain); }, {d.file("none")});
  std::filesystem::create_directories(d.file("bare/train"));
  expect_error<CorruptionError>([&] { read_image_folder(d.file("bare"), Split::kTrain); }, {"no class folders"});
}

}  // namespace
}  // namespace continua::readers
