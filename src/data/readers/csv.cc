// CSV files of feature columns and a last label column, split into fields
// by libcsv (RFC 4180 quoting, strict mode).
#include <csv.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <map>

#include "data/readers/common.h"

namespace continua::readers {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// A whole field as a number (NumPy-style text: "1", "-2.5e3", "+.5").
template <typename T>
bool parse_number(std::string_view field, T* out) {
  field = trim(field);
  if (!field.empty() && field.front() == '+') field.remove_prefix(1);
  if (field.empty()) return false;
  const auto r = std::from_chars(field.data(), field.data() + field.size(), *out);
  return r.ec == std::errc() && r.ptr == field.data() + field.size();
}

// A field as messages quote it: at most 40 characters.
std::string quoted(std::string_view field) {
  if (field.size() > 40) return "'" + std::string(field.substr(0, 40)) + "...'";
  return "'" + std::string(field) + "'";
}

struct CsvState {
  const std::string* name;
  std::vector<std::string> row;
  size_t rows = 0;  // records seen, the header included
  size_t columns = 0;
  int64_t features_expected = -1;
  bool header = false;
  bool failed = false;
  std::string error;
  std::vector<uint8_t> features;  // float32, row-major
  int64_t samples = 0;
  std::map<std::string, int32_t, std::less<>> label_ids;
  std::vector<const std::string*> label_names;  // by id
  std::vector<size_t> label_first_row;          // by id
  std::vector<int32_t> labels;                  // by sample

  void fail(const std::string& what) {
    if (!failed) error = what;
    failed = true;
  }

  void end_row() {
    ++rows;
    if (rows == 1) {
      columns = row.size();
      if (columns < 2) {
        return fail("row 1 has " + std::to_string(columns) +
                    " column(s): a CSV data set needs feature columns and a label column");
      }
      for (size_t j = 0; j + 1 < columns; ++j) {
        float v;
        if (!parse_number(row[j], &v)) header = true;
      }
      if (features_expected >= 0 && int64_t(columns) != features_expected + 1) {
        return fail("row 1 has " + std::to_string(columns) + " columns, the training file " +
                    std::to_string(features_expected) + " feature columns and a label");
      }
      if (header) return;
    }
    if (row.size() != columns) {
      return fail("row " + std::to_string(rows) + " has " + std::to_string(row.size()) +
                  " columns, row 1 has " + std::to_string(columns));
    }
    const size_t at = features.size();
    features.resize(at + (columns - 1) * sizeof(float));
    for (size_t j = 0; j + 1 < columns; ++j) {
      float v;
      if (!parse_number(row[j], &v)) {
        return fail("row " + std::to_string(rows) + ", column " + std::to_string(j + 1) + ": " +
                    quoted(row[j]) + " is not a number");
      }
      if (!std::isfinite(v)) {
        return fail("row " + std::to_string(rows) + ", column " + std::to_string(j + 1) + ": " +
                    quoted(row[j]) + " is not a finite number");
      }
      std::memcpy(features.data() + at + j * sizeof v, &v, sizeof v);
    }
    const std::string label(trim(row.back()));
    auto it = label_ids.find(label);
    if (it == label_ids.end()) {
      it = label_ids.emplace(label, int32_t(label_names.size())).first;
      label_names.push_back(&it->first);
      label_first_row.push_back(rows);
    }
    labels.push_back(it->second);
    ++samples;
  }
};

void on_field(void* s, size_t len, void* data) {
  auto* st = static_cast<CsvState*>(data);
  if (st->failed) return;
  st->row.emplace_back(s ? static_cast<const char*>(s) : "", s ? len : 0);
}

void on_row(int, void* data) {
  auto* st = static_cast<CsvState*>(data);
  if (!st->failed) st->end_row();
  st->row.clear();
}

}  // namespace

RawSamples parse_csv(const uint8_t* data, size_t size, const std::string& name,
                     const CsvSpec& spec) {
  auto corrupt = [&](const std::string& what) { internal::corrupt("CSV file", name, what); };
  csv_parser p;
  if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI) != 0) corrupt("cannot start the CSV parser");
  struct Freer {
    csv_parser* p;
    ~Freer() { csv_free(p); }
  } freer{&p};
  CsvState st;
  st.name = &name;
  st.features_expected = spec.features;
  // In slices, so a failure stops the parse early.
  constexpr size_t kSlice = 1 << 20;
  for (size_t at = 0; at < size && !st.failed; at += kSlice) {
    const size_t n = std::min(kSlice, size - at);
    if (csv_parse(&p, data + at, n, on_field, on_row, &st) != n) {
      st.fail("malformed CSV in row " + std::to_string(st.rows + 1) + ": " +
              csv_strerror(csv_error(&p)));
    }
  }
  if (!st.failed && csv_fini(&p, on_field, on_row, &st) != 0) {
    st.fail("malformed CSV in row " + std::to_string(st.rows + 1) + ": " +
            csv_strerror(csv_error(&p)));
  }
  if (st.failed) corrupt(st.error);
  if (st.rows == 0) corrupt("is empty");
  if (st.samples == 0) corrupt("has a header row but no data rows");

  // Labels: integers, or names numbered in sorted order.
  bool integers = !spec.detect_labels && spec.names.empty();
  if (spec.detect_labels) {
    integers = true;
    for (const std::string* l : st.label_names) {
      double v;
      if (!parse_number(*l, &v)) integers = false;
    }
  }
  const size_t distinct = st.label_names.size();
  std::vector<int64_t> value(distinct);
  RawSamples out;
  if (integers) {
    for (size_t id = 0; id < distinct; ++id) {
      const std::string& l = *st.label_names[id];
      const std::string where = "row " + std::to_string(st.label_first_row[id]) + ": label " + quoted(l);
      double v;
      if (!parse_number(l, &v)) corrupt(where + " is not a number (the training file's labels are integers)");
      if (!(v >= 0) || v != std::floor(v) || v > double(kMaxLabel)) {
        corrupt(where + " is not an integer in [0, " + std::to_string(kMaxLabel) + "]");
      }
      value[id] = int64_t(v);
    }
  } else {
    std::vector<std::string> names;
    if (spec.detect_labels) {
      for (const auto& kv : st.label_ids) names.push_back(kv.first);  // sorted by the map
      if (int64_t(names.size()) > kMaxLabel + 1) corrupt("has more than " + std::to_string(kMaxLabel + 1) + " label names");
    } else {
      names = spec.names;
    }
    for (size_t id = 0; id < distinct; ++id) {
      const std::string& l = *st.label_names[id];
      auto it = std::lower_bound(names.begin(), names.end(), l);
      if (it == names.end() || *it != l) {
        corrupt("row " + std::to_string(st.label_first_row[id]) + ": label " + quoted(l) +
                " is not one of the training file's " + std::to_string(names.size()) + " labels");
      }
      value[id] = it - names.begin();
    }
    out.class_names = std::move(names);
  }
  out.inputs.shape = {st.samples, int64_t(st.columns - 1)};
  out.inputs.dtype = DType::kFloat32;
  out.inputs.bytes = std::move(st.features);
  out.labels.resize(size_t(st.samples));
  for (int64_t i = 0; i < st.samples; ++i) out.labels[size_t(i)] = value[size_t(st.labels[size_t(i)])];
  return out;
}

RawSamples read_csv_file(const std::string& path, const CsvSpec& spec) {
  const std::vector<uint8_t> bytes = read_file_bytes(path, "CSV file");
  return parse_csv(bytes.data(), bytes.size(), path, spec);
}

CsvSpec CsvSpec::like(const RawSamples& train) {
  CsvSpec spec;
  spec.detect_labels = false;
  spec.names = train.class_names;
  spec.features = train.inputs.shape.size() == 2 ? train.inputs.shape[1] : -1;
  return spec;
}

RawSamples read_csv_split(const std::string& folder, Split split, const CsvSpec* test_spec) {
  if (!internal::is_directory(folder)) {
    throw InvalidArgument("CSV data set '" + folder + "' is not a folder with train.csv and test.csv");
  }
  const std::string train_path = internal::join(folder, "train.csv");
  const std::string test_path = internal::join(folder, "test.csv");
  for (const std::string& p : {train_path, test_path}) {
    if (!internal::is_regular_file(p)) {
      throw IoError("CSV data set '" + folder + "' has no file " + p.substr(p.rfind('/') + 1));
    }
  }
  if (split == Split::kTrain) return read_csv_file(train_path);
  if (test_spec) return read_csv_file(test_path, *test_spec);
  return read_csv_file(test_path, CsvSpec::like(read_csv_file(train_path)));
}

}  // namespace continua::readers
