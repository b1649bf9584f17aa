#include "continua/training/memory.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <set>

#include "continua/errors.h"
#include "continua/training/strategy.h"
#include "training/internal/benchmark_ref.h"

namespace continua {

std::vector<int64_t> balanced_shares(int64_t total, int64_t groups) {
  std::vector<int64_t> shares(size_t(std::max<int64_t>(groups, 0)), groups > 0 ? total / groups : 0);
  for (int64_t i = 0; i < total - (groups > 0 ? total / groups * groups : 0); ++i) ++shares[size_t(i)];
  return shares;
}

at::Tensor herding_order(const at::Tensor& features, int64_t m) {
  const int64_t n = features.size(0);
  m = std::min(m, n);
  // In the features' own precision (float32 features: float32 scores,
  // twice as fast for iCaRL's thousands of candidates).
  at::Tensor f = features.is_floating_point() ? features : features.to(at::kDouble);
  at::Tensor mu = f.mean(0);
  at::Tensor norms = f.pow(2).sum(1);
  at::Tensor sum = at::zeros_like(mu);
  at::Tensor taken = at::zeros({n}, at::kBool);
  std::vector<int64_t> picks;
  picks.reserve(size_t(m));
  for (int64_t k = 0; k < m; ++k) {
    // The candidate whose addition brings the running mean closest to mu:
    // ||(sum + f_i)/(k+1) − mu||² is, up to a constant,
    // ||f_i||²/(k+1)² + 2 f_i · (sum/(k+1)² − mu/(k+1)): one mat-vec a pick.
    const double a = 1.0 / double(k + 1);
    at::Tensor dist = norms * (a * a) + 2.0 * f.mv(sum * (a * a) - mu * a);
    dist.masked_fill_(taken, std::numeric_limits<double>::infinity());
    const int64_t i = dist.argmin().item<int64_t>();
    picks.push_back(i);
    taken[i] = true;
    sum += f[i];
  }
  return at::tensor(picks, at::kLong);
}

Memory::Memory(MemoryOptions options)
    : options_(std::move(options)),
      generator_(at::make_generator<at::CPUGeneratorImpl>(options_.seed_ + 0x5eed)) {
  if (options_.size_ < 0) throw InvalidArgument("--mem-size must be >= 0, got " + std::to_string(options_.size_));
  const auto& p = options_.policy_;
  if (p != "experience-balanced" && p != "class-balanced" && p != "reservoir") {
    throw InvalidArgument("--replay-policy: unknown policy '" + p +
                          "' (known: experience-balanced, class-balanced, reservoir)");
  }
  if (options_.per_experience_ < -1) throw InvalidArgument("memory: samples per experience must be >= -1");
  if (options_.per_experience_ != 0 && p != "experience-balanced") {
    throw InvalidArgument("memory: samples per experience need the experience-balanced policy");
  }
  if (options_.selection_ != "random" && options_.selection_ != "herding") {
    throw InvalidArgument("memory selection: unknown '" + options_.selection_ + "' (known: random, herding)");
  }
  experiences_ = positions_ = labels_ = at::empty({0}, at::kLong);
  priorities_ = at::empty({0}, at::kFloat);
}

namespace {
// Online chunks whose boundaries the benchmark shows count as their original
// experience: shares and quotas go by those.
bool grouped_by_origin(const Benchmark* b) { return b && b->online() && b->online_boundaries(); }
}  // namespace

int64_t Memory::quota() const {
  if (options_.per_experience_ > 0) return options_.per_experience_;
  const int64_t n = !benchmark_                           ? 1
                    : grouped_by_origin(benchmark_.get()) ? benchmark_->original_experiences()
                                                          : int64_t(benchmark_->train_stream().size());
  return options_.size_ / std::max<int64_t>(n, 1);
}

at::Tensor Memory::group_of(const at::Tensor& experiences) const {
  if (!grouped_by_origin(benchmark_.get())) return experiences;
  std::vector<int64_t> table;
  for (const auto& e : benchmark_->train_stream()) table.push_back(e.online_origin().experience);
  return at::tensor(table, at::kLong).index_select(0, experiences);
}

void Memory::bind(const Experience& e) {
  internal::check_same_benchmark(benchmark_, e, "memory");
  if (!benchmark_) benchmark_ = internal::origin_of(e);
}

at::Tensor Memory::tasks() const {
  if (!benchmark_ || size() == 0) return at::zeros({size()}, at::kLong);
  std::vector<int64_t> table;
  for (const auto& e : benchmark_->train_stream()) table.push_back(e.task_label());
  return at::tensor(table, at::kLong).index_select(0, experiences_);
}

namespace {
std::map<int64_t, at::Tensor> slots_by(const at::Tensor& keys) {
  std::map<int64_t, at::Tensor> out;
  if (keys.numel() == 0) return out;
  at::Tensor uniq = std::get<0>(at::_unique(keys, /*sorted=*/true));
  for (int64_t i = 0; i < uniq.size(0); ++i) {
    const int64_t k = uniq[i].item<int64_t>();
    out[k] = keys.eq(k).nonzero().flatten();
  }
  return out;
}
}  // namespace

std::map<int64_t, at::Tensor> Memory::slots_by_class() const { return slots_by(labels_); }
std::map<int64_t, at::Tensor> Memory::slots_by_experience() const { return slots_by(experiences_); }
std::map<int64_t, at::Tensor> Memory::slots_by_original_experience() const { return slots_by(group_of(experiences_)); }

void Memory::take(const at::Tensor& slots) {
  experiences_ = experiences_.index_select(0, slots);
  positions_ = positions_.index_select(0, slots);
  labels_ = labels_.index_select(0, slots);
  priorities_ = priorities_.index_select(0, slots);
  for (auto& [name, t] : payload_) t = t.index_select(0, slots.to(t.device()));
}

void Memory::select(const std::vector<at::Tensor>& groups, const std::vector<int64_t>& caps) {
  std::vector<at::Tensor> keep;
  for (size_t g = 0; g < groups.size(); ++g) {
    const at::Tensor& slots = groups[g];
    if (slots.numel() == 0 || caps[g] == 0) continue;
    at::Tensor pr = priorities_.index_select(0, slots);
    at::Tensor order = std::get<1>(pr.sort(/*stable=*/true, 0, /*descending=*/true));
    keep.push_back(slots.index_select(0, order.narrow(0, 0, std::min<int64_t>(caps[g], slots.size(0)))));
  }
  take(keep.empty() ? at::empty({0}, at::kLong) : at::cat(keep));
}

void Memory::update(const Experience& exp, const FeatureFunction& features, const at::Tensor& candidates) {
  bind(exp);
  const at::Tensor pos = candidates.defined() ? candidates.to(at::kCPU, at::kLong) : at::arange(exp.size(), at::kLong);
  if (pos.numel() > 0 && (pos.min().item<int64_t>() < 0 || pos.max().item<int64_t>() >= exp.size())) {
    throw InvalidArgument("memory: a candidate position is outside experience " + std::to_string(exp.index()));
  }
  const int64_t n = pos.size(0);
  const at::Tensor cand_labels = exp.targets().index_select(0, pos).to(at::kLong);
  at::Tensor pr;
  if (options_.selection_ == "herding") {
    if (!features) throw InvalidArgument("memory: herding selection needs a feature function");
    // Herding rank within each candidate group of the policy: the share's
    // first picks get the highest priorities.
    pr = at::zeros({n}, at::kFloat);
    std::map<int64_t, at::Tensor> groups;
    if (options_.policy_ == "class-balanced") {
      groups = slots_by(cand_labels);
    } else {
      groups[0] = at::arange(n, at::kLong);
    }
    for (const auto& [key, cand] : groups) {
      at::Tensor f;
      {
        std::vector<at::Tensor> parts;
        for (int64_t b = 0; b < cand.size(0); b += 1024) {
          const at::Tensor chunk = cand.narrow(0, b, std::min<int64_t>(1024, cand.size(0) - b));
          parts.push_back(features(exp.get(pos.index_select(0, chunk))).to(at::kCPU));
        }
        f = at::cat(parts);
      }
      // No share can exceed size() over the groups there will be.
      int64_t most = options_.per_experience_ != 0 ? quota() : options_.size_;
      if (options_.policy_ == "class-balanced") {
        std::set<int64_t> classes;
        for (const auto& [c, slots] : slots_by(labels_)) classes.insert(c);
        for (const auto& [c, slots] : groups) classes.insert(c);
        most = (options_.size_ + int64_t(classes.size()) - 1) / int64_t(classes.size());
      } else if (options_.policy_ == "experience-balanced" && options_.per_experience_ == 0) {
        std::set<int64_t> exps;
        for (const auto& [e, slots] : slots_by(group_of(experiences_))) exps.insert(e);
        exps.insert(group_of(at::full({1}, exp.index(), at::kLong))[0].item<int64_t>());
        most = (options_.size_ + int64_t(exps.size()) - 1) / int64_t(exps.size());
      }
      at::Tensor picks = herding_order(f, std::min<int64_t>(most, cand.size(0)));
      const int64_t m = picks.size(0);
      at::Tensor ranks = at::arange(m, 0, -1, at::kFloat) / float(m) + 1.0f;  // (1, 2]
      pr.index_put_({cand.index_select(0, picks)}, ranks);
    }
  } else {
    pr = at::rand({n}, generator_, at::kFloat);
  }
  experiences_ = at::cat({experiences_, at::full({n}, exp.index(), at::kLong)});
  positions_ = at::cat({positions_, pos});
  labels_ = at::cat({labels_, cand_labels});
  priorities_ = at::cat({priorities_, pr});
  for (auto& [name, t] : payload_) {
    auto shape = t.sizes().vec();
    shape[0] = n;
    t = at::cat({t, at::zeros(shape, t.options())});
  }
  std::vector<at::Tensor> groups;
  if (options_.policy_ == "reservoir") {
    groups.push_back(at::arange(size(), at::kLong));
  } else {
    for (auto& [key, slots] : slots_by(options_.policy_ == "class-balanced" ? labels_ : group_of(experiences_))) {
      groups.push_back(slots);
    }
  }
  select(groups, options_.per_experience_ != 0
                     ? std::vector<int64_t>(groups.size(), quota())
                     : balanced_shares(options_.size_, int64_t(groups.size())));
}

at::Tensor Memory::observe(const Experience& exp, const at::Tensor& positions,
                           const std::map<std::string, at::Tensor>& payload) {
  bind(exp);
  const int64_t k = positions.size(0);
  at::Tensor where = at::full({k}, -1, at::kLong);
  if (options_.size_ == 0 || k == 0) {
    seen_ += k;
    return where;
  }
  at::Tensor u = at::rand({k}, generator_, at::kDouble);
  at::Tensor pos = positions.to(at::kCPU, at::kLong);
  for (const auto& [name, t] : payload) {
    if (t.size(0) != k) throw InvalidArgument("memory: payload '" + name + "' has another number of rows");
  }
  // Algorithm R, decided on plain numbers first, then written by put(): the
  // first samples fill free slots; each later one replaces slot
  // j = floor(u * (seen + 1)) when j < size (the last of several writes to
  // a slot wins, as one sample after another would).
  const int64_t cap = options_.size_;
  const double* uu = u.data_ptr<double>();
  int64_t* wh = where.data_ptr<int64_t>();
  int64_t n_seen = seen_;
  const int64_t fill = std::min<int64_t>(k, std::max<int64_t>(0, cap - size()));
  std::map<int64_t, int64_t> written;  // slot -> row of this batch
  for (int64_t i = 0; i < k; ++i, ++n_seen) {
    if (i < fill) {
      wh[i] = size() + i;
      written[size() + i] = i;  // a later row may still replace it
      continue;
    }
    const int64_t j = int64_t(uu[i] * double(n_seen + 1));
    if (j < cap) {
      auto it = written.find(j);
      if (it != written.end()) wh[it->second] = -1;  // overwritten by this later row
      written[j] = i;
      wh[i] = j;
    }
  }
  std::vector<int64_t> slots, rows;
  for (const auto& [j, i] : written) {
    slots.push_back(j);
    rows.push_back(i);
  }
  const at::Tensor js = at::tensor(slots, at::kLong), is = at::tensor(rows, at::kLong);
  std::map<std::string, at::Tensor> chosen;
  for (const auto& [name, t] : payload) chosen[name] = t.index_select(0, is.to(t.device()));
  // Slots in ascending order: the replaced ones, then the filled ones, size() on.
  put(exp, js, pos.index_select(0, is), chosen);
  seen_ = n_seen;
  return where;
}

void Memory::put(const Experience& exp, const at::Tensor& slots_in, const at::Tensor& positions_in,
                 const std::map<std::string, at::Tensor>& payload) {
  bind(exp);
  const at::Tensor slots = slots_in.to(at::kCPU, at::kLong), pos = positions_in.to(at::kCPU, at::kLong);
  const int64_t k = slots.size(0);
  if (pos.size(0) != k) throw InvalidArgument("memory: put needs one position per slot");
  for (const auto& [name, t] : payload) {
    if (t.size(0) != k) throw InvalidArgument("memory: payload '" + name + "' has another number of rows");
  }
  if (k > 0 && (pos.min().item<int64_t>() < 0 || pos.max().item<int64_t>() >= exp.size())) {
    throw InvalidArgument("memory: a position is outside experience " + std::to_string(exp.index()));
  }
  const at::Tensor replace = slots.lt(size()).nonzero().flatten(), add = slots.ge(size()).nonzero().flatten();
  if (add.numel() > 0) {
    const at::Tensor want = at::arange(size(), size() + add.size(0), at::kLong);
    if (!at::equal(slots.index_select(0, add), want)) throw InvalidArgument("memory: put appends slots in order");
    if (size() + add.size(0) > options_.size_) throw InvalidArgument("memory: put beyond the memory's size");
  }
  // A payload seen for the first time starts as zeros for the samples held.
  for (const auto& [name, t] : payload) {
    if (!payload_.count(name)) {
      auto shape = t.sizes().vec();
      shape[0] = size();
      payload_[name] = at::zeros(shape, t.options().device(at::kCPU));
    }
  }
  if (k == 0) return;
  const at::Tensor labels = exp.targets().index_select(0, pos).to(at::kLong);
  if (replace.numel() > 0) {
    const at::Tensor js = slots.index_select(0, replace);
    experiences_.index_fill_(0, js, exp.index());
    positions_.index_copy_(0, js, pos.index_select(0, replace));
    labels_.index_copy_(0, js, labels.index_select(0, replace));
    for (auto& [name, t] : payload_) {
      auto it = payload.find(name);
      if (it != payload.end()) {
        t.index_copy_(0, js, it->second.index_select(0, replace.to(it->second.device())).to(at::kCPU, t.scalar_type()));
      } else {
        t.index_fill_(0, js, 0);
      }
    }
  }
  if (add.numel() > 0) {
    const int64_t n = add.size(0);
    experiences_ = at::cat({experiences_, at::full({n}, exp.index(), at::kLong)});
    positions_ = at::cat({positions_, pos.index_select(0, add)});
    labels_ = at::cat({labels_, labels.index_select(0, add)});
    priorities_ = at::cat({priorities_, at::zeros({n}, at::kFloat)});
    for (auto& [name, t] : payload_) {
      auto it = payload.find(name);
      auto shape = t.sizes().vec();
      shape[0] = n;
      t = at::cat({t, it != payload.end() ? it->second.index_select(0, add.to(it->second.device())).to(at::kCPU, t.scalar_type())
                                          : at::zeros(shape, t.options())});
    }
  }
}

int64_t append_memory_batch(Memory& memory, const Strategy& s, MiniBatch& batch, int64_t n) {
  if (memory.size() == 0) return 0;
  MiniBatch rows = memory.get(memory.sample(n > 0 ? n : s.options().train_mb_size_));
  batch.append(rows);
  return rows.size();
}

void append_memory_segments(const Memory& memory, TrainingSet& set) {
  if (memory.size() == 0) return;
  const auto& stream = memory.benchmark()->train_stream();
  for (const auto& [exp, slots] : memory.slots_by_experience()) {
    set.segments.push_back({&stream[size_t(exp)], memory.positions().index_select(0, slots)});
  }
}

void observe_new_rows(Memory& memory, const Strategy& s, int64_t rows,
                      const std::map<std::string, at::Tensor>& payload) {
  const at::Tensor pos = s.mb_positions.narrow(0, 0, rows).to(at::kCPU);
  const at::Tensor keep = pos.ge(0).nonzero().flatten();
  if (keep.numel() == 0) return;
  std::map<std::string, at::Tensor> kept;
  for (const auto& [name, t] : payload) kept[name] = t.index_select(0, keep.to(t.device()));
  memory.observe(*s.experience(), pos.index_select(0, keep), kept);
}

at::Tensor Memory::sample(int64_t n) {
  const int64_t m = size();
  if (m == 0 || n <= 0) return at::empty({0}, at::kLong);
  return at::randperm(m, generator_, at::kLong).narrow(0, 0, std::min(n, m));
}

at::Tensor Memory::sample_per_experience(int64_t n) {
  const auto groups = slots_by_original_experience();
  if (groups.empty() || n <= 0) return at::empty({0}, at::kLong);
  const int64_t each = std::max<int64_t>(1, n / int64_t(groups.size()));
  std::vector<at::Tensor> picks;
  for (const auto& [e, slots] : groups) {
    const int64_t take = std::min<int64_t>(each, slots.size(0));
    picks.push_back(slots.index_select(0, at::randperm(slots.size(0), generator_, at::kLong).narrow(0, 0, take)));
  }
  return at::cat(picks);
}

MiniBatch Memory::get(const at::Tensor& slots) const {
  const at::Tensor s = slots.to(at::kCPU, at::kLong);
  if (s.numel() == 0) return MiniBatch();
  std::vector<const Experience*> exps;
  for (const auto& e : benchmark_->train_stream()) exps.push_back(&e);
  MiniBatch out = MiniBatch::from(gather_samples(exps, experiences_.index_select(0, s), positions_.index_select(0, s)));
  out.memory_slot = s;
  for (const auto& [name, t] : payload_) out.payload[name] = t.index_select(0, s);
  return out;
}

void Memory::set_payload(const std::string& name, at::Tensor values) {
  if (values.dim() < 1 || values.size(0) != size()) {
    throw InvalidArgument("memory: payload '" + name + "' needs " + std::to_string(size()) + " rows");
  }
  payload_[name] = std::move(values);
}

const at::Tensor& Memory::payload(const std::string& name) const {
  auto it = payload_.find(name);
  if (it == payload_.end()) throw InvalidArgument("memory: no payload '" + name + "'");
  return it->second;
}

void Memory::save_state(StateWriter& w) const {
  w.write("size", options_.size_);
  w.write("policy", options_.policy_);
  w.write("selection", options_.selection_);
  w.write("seen", seen_);
  at::Generator g = generator_;  // a handle; get_state() is not const
  w.write("rng", g.get_state());
  if (benchmark_) w.write_object("benchmark", benchmark_);
  // 32-bit on disk: a memory of 5,000 samples costs 60 KB (experience
  // indices and positions are far below 2^31; checked on load).
  w.write("experiences", experiences_.to(at::kInt));
  w.write("positions", positions_.to(at::kInt));
  w.write("priorities", priorities_);
  nlohmann::json names = nlohmann::json::array();
  for (const auto& [name, t] : payload_) {
    names.push_back(name);
    w.child("payload").write(name, t);
  }
  w.write("payload_names", names);
}

void Memory::load_state(const StateReader& r) { load_staged(*this, r); }

void Memory::stage_load(const StateReader& r, LoadTransaction& tx) {
  for (const char* key : {"policy", "selection"}) {
    const std::string saved = r.get<std::string>(key);
    const std::string& live = std::string(key) == "policy" ? options_.policy_ : options_.selection_;
    if (saved != live) r.fail(key, "saved '" + saved + "', this run uses '" + live + "'");
  }
  const int64_t capacity = r.get<int64_t>("size");
  if (capacity != options_.size_) {
    r.fail("size", "saved " + std::to_string(capacity) + ", this run uses " + std::to_string(options_.size_));
  }
  const int64_t seen = r.get<int64_t>("seen");
  if (seen < 0) r.fail("seen", "negative");
  std::shared_ptr<const Benchmark> bench;
  if (r.has("benchmark")) bench = internal::read_benchmark(r, "benchmark");
  at::Tensor e = r.tensor("experiences").to(at::kCPU, at::kLong).clone();
  at::Tensor p = r.tensor("positions").to(at::kCPU, at::kLong).clone();
  at::Tensor pr = r.tensor("priorities").to(at::kCPU, at::kFloat).clone();
  if (e.dim() != 1 || p.sizes() != e.sizes() || pr.sizes() != e.sizes()) {
    r.fail("positions", "experiences, positions and priorities differ in shape");
  }
  if (e.size(0) > capacity) r.fail("experiences", "more samples than the memory's size");
  if (!bench && e.size(0) > 0) r.fail("benchmark", "missing for a non-empty memory");
  at::Tensor labels = at::empty({e.size(0)}, at::kLong);
  for (const auto& [ei, rows] : slots_by(e)) {
    if (ei < 0 || ei >= int64_t(bench->train_stream().size())) {
      r.fail("experiences", "experience " + std::to_string(ei) + " is outside the benchmark");
    }
    const Experience& exp = bench->train_stream()[size_t(ei)];
    at::Tensor ps = p.index_select(0, rows);
    if (ps.min().item<int64_t>() < 0 || ps.max().item<int64_t>() >= exp.size()) {
      r.fail("positions", "a position is outside experience " + std::to_string(ei));
    }
    labels.index_put_({rows}, exp.targets().index_select(0, ps));
  }
  std::map<std::string, at::Tensor> payload;
  const nlohmann::json& names = r.json("payload_names");
  if (!names.is_array()) r.fail("payload_names", "not a list");
  for (const auto& n : names) {
    if (!n.is_string()) r.fail("payload_names", "not a list of names");
    const std::string name = n.get<std::string>();
    const at::Tensor& t = r.child("payload").tensor(name);
    if (t.dim() < 1 || t.size(0) != e.size(0)) {
      r.child("payload").fail(name, "has " + std::to_string(t.dim() ? t.size(0) : 0) + " rows for " +
                                        std::to_string(e.size(0)) + " samples");
    }
    payload[name] = t.clone();
  }
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(0);
  try {
    g.set_state(r.tensor("rng").to(at::kCPU));
  } catch (const c10::Error& ex) {
    r.fail("rng", std::string("not a generator state: ") + ex.what_without_backtrace());
  }
  tx.then([this, g, bench, e, p, pr, labels, payload, seen] {
    generator_ = g;
    benchmark_ = bench;
    experiences_ = e;
    positions_ = p;
    priorities_ = pr;
    labels_ = labels;
    payload_ = payload;
    seen_ = seen;
  });
}

std::vector<MemoryFootprint> memory_footprints(const StateTree& tree) {
  // A memory's subtree is recognised by the keys save_state writes above.
  static const std::string kMarker = ".payload_names";
  std::vector<MemoryFootprint> out;
  for (const auto& [key, value] : tree.entries()) {
    if (key.size() <= kMarker.size() || key.compare(key.size() - kMarker.size(), kMarker.size(), kMarker) != 0) {
      continue;
    }
    const std::string prefix = key.substr(0, key.size() - kMarker.size());
    const auto* refs = tree.find(prefix + ".experiences");
    const at::Tensor* t = refs ? std::get_if<at::Tensor>(refs) : nullptr;
    if (!t || !tree.contains(prefix + ".priorities") || !tree.contains(prefix + ".policy")) continue;
    MemoryFootprint f;
    f.key = prefix;
    f.samples = t->numel();
    for (auto it = tree.entries().lower_bound(prefix + "."); it != tree.entries().end(); ++it) {
      if (it->first.compare(0, prefix.size() + 1, prefix + ".") != 0) break;
      if (it->first == prefix + ".rng") continue;  // the generator, not the samples
      if (const auto* v = std::get_if<at::Tensor>(&it->second)) f.bytes += int64_t(v->nbytes());
    }
    out.push_back(f);
  }
  return out;
}

}  // namespace continua
