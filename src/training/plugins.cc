#include "continua/training/plugins.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <set>

#include "continua/errors.h"

namespace continua {
namespace {

std::shared_ptr<const Benchmark> origin_of(const Experience& e) {
  if (!e.origin()) throw InvalidArgument("experience " + std::to_string(e.index()) + " has no benchmark");
  return e.origin()->shared_from_this();
}

void check_same_benchmark(const std::shared_ptr<const Benchmark>& held, const Experience& e,
                          const char* plugin) {
  if (held && held.get() != e.origin()) {
    throw InvalidArgument(std::string(plugin) +
                          ": experiences come from another benchmark than the one in memory "
                          "(pass the live benchmark in unique_objects when loading)");
  }
}

std::shared_ptr<const Benchmark> read_benchmark(const StateReader& r, const char* key) {
  auto b = std::dynamic_pointer_cast<const Benchmark>(r.object(key));
  if (!b) r.fail(key, "is not a benchmark");
  return b;
}

}  // namespace

// ---------------------------------------------------------------- replay

ReplayPlugin::ReplayPlugin(Options options)
    : options_(std::move(options)),
      generator_(at::make_generator<at::CPUGeneratorImpl>(options_.seed + 0x5eed)) {
  if (options_.mem_size < 0) throw InvalidArgument("--mem-size must be >= 0");
  if (options_.policy != "reservoir" && options_.policy != "class-balanced") {
    throw InvalidArgument("--replay-policy: unknown policy '" + options_.policy +
                          "' (known: reservoir, class-balanced)");
  }
}

at::Tensor ReplayPlugin::memory_labels() const {
  if (memory_size() == 0) return at::empty({0}, at::kLong);
  std::vector<at::Tensor> labels;
  for (int64_t i = 0; i < memory_size(); ++i) {
    const Experience& e = benchmark_->train_stream().at(exps_[i].item<int64_t>());
    labels.push_back(e.targets()[positions_[i].item<int64_t>()]);
  }
  return at::stack(labels);
}

void ReplayPlugin::adapt_train_set(Strategy& s, TrainingSet& set) {
  if (memory_size() == 0) return;
  check_same_benchmark(benchmark_, *s.experience(), "replay");
  std::set<int64_t> exps;
  for (int64_t i = 0; i < exps_.size(0); ++i) exps.insert(exps_[i].item<int64_t>());
  for (int64_t e : exps) {
    at::Tensor sel = exps_.eq(e).nonzero().flatten();
    set.segments.push_back({&benchmark_->train_stream().at(e), positions_.index_select(0, sel)});
  }
}

void ReplayPlugin::after_training_exp(Strategy& s) {
  const Experience& exp = *s.experience();
  check_same_benchmark(benchmark_, exp, "replay");
  if (!benchmark_) benchmark_ = origin_of(exp);
  const int64_t n = exp.size();
  at::Tensor new_exps = at::full({n}, exp.index(), at::kLong);
  at::Tensor new_pos = at::arange(n, at::kLong);
  if (!exps_.defined()) {
    exps_ = at::empty({0}, at::kLong);
    positions_ = at::empty({0}, at::kLong);
    weights_ = at::empty({0}, at::kFloat);
  }
  if (options_.policy == "reservoir") {
    // Every sample ever seen gets a random weight; the memory keeps the
    // mem_size largest: a uniform sample of the stream.
    at::Tensor w = at::rand({n}, generator_, at::kFloat);
    at::Tensor all_w = at::cat({weights_, w});
    at::Tensor all_e = at::cat({exps_, new_exps});
    at::Tensor all_p = at::cat({positions_, new_pos});
    const int64_t keep = std::min<int64_t>(options_.mem_size, all_w.size(0));
    at::Tensor idx = std::get<1>(all_w.sort(/*stable=*/true, 0, /*descending=*/true)).narrow(0, 0, keep);
    exps_ = all_e.index_select(0, idx);
    positions_ = all_p.index_select(0, idx);
    weights_ = all_w.index_select(0, idx);
    return;
  }
  // Class-balanced: an equal share of the memory per class seen so far.
  at::Tensor old_labels = memory_labels();
  std::set<int64_t> classes;
  for (int64_t i = 0; i < old_labels.size(0); ++i) classes.insert(old_labels[i].item<int64_t>());
  for (int64_t c : exp.classes()) classes.insert(c);
  const int64_t k = int64_t(classes.size());
  std::vector<at::Tensor> es, ps;
  int64_t rank = 0;
  for (int64_t c : classes) {
    const int64_t cap = options_.mem_size / k + (rank < options_.mem_size % k ? 1 : 0);
    ++rank;
    at::Tensor old_sel = old_labels.eq(c).nonzero().flatten();
    if (old_sel.size(0) > 0) {
      old_sel = old_sel.narrow(0, 0, std::min<int64_t>(cap, old_sel.size(0)));
      es.push_back(exps_.index_select(0, old_sel));
      ps.push_back(positions_.index_select(0, old_sel));
      continue;
    }
    at::Tensor cand = exp.targets().eq(c).nonzero().flatten();
    if (cand.size(0) == 0) continue;
    at::Tensor pick = at::randperm(cand.size(0), generator_, at::kLong)
                          .narrow(0, 0, std::min<int64_t>(cap, cand.size(0)));
    pick = std::get<0>(pick.sort());
    ps.push_back(cand.index_select(0, pick));
    es.push_back(at::full({ps.back().size(0)}, exp.index(), at::kLong));
  }
  exps_ = es.empty() ? at::empty({0}, at::kLong) : at::cat(es);
  positions_ = ps.empty() ? at::empty({0}, at::kLong) : at::cat(ps);
  weights_ = at::empty({0}, at::kFloat);
}

void ReplayPlugin::save_state(StateWriter& w) const {
  w.write("mem_size", options_.mem_size);
  w.write("policy", options_.policy);
  at::Generator g = generator_;  // a handle; get_state() is not const
  w.write("rng", g.get_state());
  if (benchmark_) w.write_object("benchmark", benchmark_);
  if (exps_.defined()) {
    // 32-bit on disk: a memory of 5,000 samples costs 60 KB (experience
    // indices and positions are far below 2^31; checked on load).
    w.write("experiences", exps_.to(at::kInt));
    w.write("positions", positions_.to(at::kInt));
    w.write("weights", weights_);
  }
}

void ReplayPlugin::load_state(const StateReader& r) { load_staged(*this, r); }

void ReplayPlugin::stage_load(const StateReader& r, LoadTransaction& tx) {
  if (r.get<std::string>("policy") != options_.policy) {
    r.fail("policy", "saved policy '" + r.get<std::string>("policy") + "', this run uses '" +
                         options_.policy + "'");
  }
  std::shared_ptr<const Benchmark> bench;
  at::Tensor e, p, w;
  if (r.has("benchmark")) bench = read_benchmark(r, "benchmark");
  if (r.has("experiences")) {
    e = r.tensor("experiences").to(at::kCPU, at::kLong).clone();
    p = r.tensor("positions").to(at::kCPU, at::kLong).clone();
    w = r.tensor("weights").to(at::kCPU, at::kFloat).clone();
    if (e.dim() != 1 || p.sizes() != e.sizes()) r.fail("positions", "does not match experiences");
    if (!bench && e.size(0) > 0) r.fail("benchmark", "missing for a non-empty memory");
    for (int64_t i = 0; i < e.size(0); ++i) {
      const int64_t ei = e[i].item<int64_t>(), pi = p[i].item<int64_t>();
      if (ei < 0 || ei >= int64_t(bench->train_stream().size()) || pi < 0 ||
          pi >= bench->train_stream()[ei].size()) {
        r.fail("positions", "entry " + std::to_string(i) + " is outside the benchmark");
      }
    }
  }
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(0);
  try {
    g.set_state(r.tensor("rng").to(at::kCPU));
  } catch (const c10::Error& ex) {
    r.fail("rng", std::string("not a generator state: ") + ex.what_without_backtrace());
  }
  const int64_t mem_size = r.get<int64_t>("mem_size");
  tx.then([this, mem_size, g, bench, e, p, w] {
    options_.mem_size = mem_size;
    generator_ = g;
    benchmark_ = bench;
    exps_ = e;
    positions_ = p;
    weights_ = w;
  });
}

// ---------------------------------------------------------------- EWC

EWCPlugin::EWCPlugin(Options options) : options_(std::move(options)) {
  if (options_.mode != "separate" && options_.mode != "online") {
    throw InvalidArgument("--ewc-mode: unknown mode '" + options_.mode + "' (known: separate, online)");
  }
  if (options_.lambda < 0) throw InvalidArgument("--ewc-lambda must be >= 0");
}

namespace {
// The part of `current` that an older, smaller tensor covers (grown heads).
at::Tensor overlap(const at::Tensor& current, const at::Tensor& old) {
  if (current.sizes() == old.sizes()) return current;
  return current.narrow(0, 0, old.size(0));
}
}  // namespace

void EWCPlugin::before_backward(Strategy& s) {
  if (snapshots_.empty() || options_.lambda == 0) return;
  at::Tensor penalty = at::zeros({}, s.loss.options());
  for (const auto& p : s.model().named_parameters()) {
    for (const Snapshot& snap : snapshots_) {
      auto it = snap.importances.find(p.key());
      if (it == snap.importances.end()) continue;
      const at::Tensor& saved = snap.params.at(p.key());
      at::Tensor cur = overlap(p.value(), saved);
      penalty = penalty + (it->second * (cur - saved).pow(2)).sum();
    }
  }
  s.loss = s.loss + options_.lambda * penalty;
}

void EWCPlugin::after_training_exp(Strategy& s) {
  const Experience& exp = *s.experience();
  Model& model = s.model();
  const bool was_training = model.is_training();
  model.eval();  // no dropout: the importances use no random numbers
  std::map<std::string, at::Tensor> imp;
  for (const auto& p : model.named_parameters()) imp[p.key()] = at::zeros_like(p.value());
  const int64_t mb = s.options().train_mb_size_;
  int64_t batches = 0;
  const c10::Device dev = s.device();
  for (int64_t pos = 0; pos < exp.size(); pos += mb) {
    const int64_t take = std::min(mb, exp.size() - pos);
    Batch b = exp.get(at::arange(pos, pos + take, at::kLong));
    s.optimizer().zero_grad();
    at::Tensor loss = torch::nn::functional::cross_entropy(model.forward(b.x.to(dev)), b.y.to(dev));
    loss.backward();
    torch::NoGradGuard ng;
    for (const auto& p : model.named_parameters()) {
      if (p.value().grad().defined()) imp[p.key()].add_(p.value().grad().pow(2));
    }
    ++batches;
  }
  s.optimizer().zero_grad();
  model.train(was_training);
  torch::NoGradGuard ng;
  Snapshot snap;
  for (const auto& p : model.named_parameters()) {
    snap.importances[p.key()] = batches ? imp[p.key()] / double(batches) : imp[p.key()];
    snap.params[p.key()] = p.value().detach().clone();
  }
  if (options_.mode == "separate" || snapshots_.empty()) {
    snapshots_.push_back(std::move(snap));
    return;
  }
  // Online: decayed sum of importances, the latest parameters.
  Snapshot& old = snapshots_.front();
  for (auto& [name, t] : snap.importances) {
    auto it = old.importances.find(name);
    if (it == old.importances.end()) continue;
    at::Tensor region = overlap(t, it->second);
    region.add_(it->second * options_.decay);
  }
  old = std::move(snap);
}

void EWCPlugin::save_state(StateWriter& w) const {
  w.write("mode", options_.mode);
  w.write("count", int64_t(snapshots_.size()));
  for (size_t i = 0; i < snapshots_.size(); ++i) {
    StateWriter sw = w.child(std::to_string(i));
    nlohmann::json names = nlohmann::json::array();
    for (const auto& [name, t] : snapshots_[i].importances) {
      names.push_back(name);
      sw.child("importances").write(name, t);
      sw.child("params").write(name, snapshots_[i].params.at(name));
    }
    sw.write("names", names);
  }
}

void EWCPlugin::load_state(const StateReader& r) { load_staged(*this, r); }

void EWCPlugin::stage_load(const StateReader& r, LoadTransaction& tx) {
  if (r.get<std::string>("mode") != options_.mode) {
    r.fail("mode", "saved mode '" + r.get<std::string>("mode") + "', this run uses '" +
                       options_.mode + "'");
  }
  const int64_t count = r.get<int64_t>("count");
  if (count < 0 || count > 1000000) r.fail("count", "out of range");
  std::vector<std::vector<std::string>> names(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    StateReader sr = r.child(std::to_string(i));
    for (const auto& name : sr.json("names")) {
      if (!name.is_string()) sr.fail("names", "not a list of names");
      const std::string n = name.get<std::string>();
      const at::Tensor& imp = sr.child("importances").tensor(n);
      const at::Tensor& par = sr.child("params").tensor(n);
      if (imp.sizes() != par.sizes()) sr.child("importances").fail(n, "shape differs from params");
      names[size_t(i)].push_back(n);
    }
  }
  tx.then([this, r, names] {
    // Tensors of the same shape, dtype and device are reused: the load
    // copies into them instead of holding old and new at once.
    auto load = [](const StateReader& from, const std::string& n, const at::Tensor* live) {
      const at::Tensor& saved = from.tensor(n);
      if (live && live->sizes() == saved.sizes() && live->dtype() == saved.dtype() &&
          live->device() == saved.device()) {
        from.copy_into(n, *live);
        return *live;
      }
      return from.copy_out(n);
    };
    std::vector<Snapshot> snaps(names.size());
    for (size_t i = 0; i < names.size(); ++i) {
      StateReader sr = r.child(std::to_string(i));
      const Snapshot* old = i < snapshots_.size() ? &snapshots_[i] : nullptr;
      auto live = [&](const std::map<std::string, at::Tensor> Snapshot::*member,
                      const std::string& n) -> const at::Tensor* {
        if (!old) return nullptr;
        auto it = (old->*member).find(n);
        return it == (old->*member).end() ? nullptr : &it->second;
      };
      for (const std::string& n : names[i]) {
        snaps[i].importances[n] = load(sr.child("importances"), n, live(&Snapshot::importances, n));
        snaps[i].params[n] = load(sr.child("params"), n, live(&Snapshot::params, n));
      }
    }
    snapshots_ = std::move(snaps);
  });
}

// ---------------------------------------------------------------- LwF

LwFPlugin::LwFPlugin(Options options) : options_(options) {
  if (options_.alpha < 0) throw InvalidArgument("--lwf-alpha must be >= 0");
  if (!(options_.temperature > 0)) throw InvalidArgument("--lwf-temperature must be > 0");
}

void LwFPlugin::before_backward(Strategy& s) {
  if (!previous_ || options_.alpha == 0) return;
  at::Tensor old_logits;
  {
    torch::NoGradGuard ng;
    old_logits = previous_->forward(s.mb_x);
  }
  const int64_t k = old_logits.size(1);
  const double t = options_.temperature;
  at::Tensor log_p = torch::log_softmax(s.mb_output.narrow(1, 0, k) / t, 1);
  at::Tensor q = torch::softmax(old_logits / t, 1);
  at::Tensor kd = -(q * log_p).sum(1).mean() * (t * t);
  s.loss = s.loss + options_.alpha * kd;
}

void LwFPlugin::after_training_exp(Strategy& s) {
  previous_ = s.model().clone_model();
  previous_->eval();
  for (auto& p : previous_->parameters()) p.set_requires_grad(false);
}

void LwFPlugin::save_state(StateWriter& w) const {
  w.write("has_previous", bool(previous_));
  if (previous_) {
    StateWriter mw = w.child("previous_model");
    previous_->save_state(mw);
  }
}

void LwFPlugin::load_state(const StateReader& r) { load_staged(*this, r); }

void LwFPlugin::stage_load(const StateReader& r, LoadTransaction& tx) {
  if (!r.get<bool>("has_previous")) {
    tx.then([this] { previous_.reset(); });
    return;
  }
  StateReader mr = r.child("previous_model");
  ModelOptions mo;
  try {
    mo = ModelOptions::from_json(mr.json("options"));
  } catch (const nlohmann::json::exception& e) {
    mr.fail("options", std::string("malformed: ") + e.what());
  }
  // The live previous model of the same architecture and device is loaded in
  // place; otherwise a new one is built (not live until the commit).
  const c10::Device device = mr.tensor("classifier.head.weight").device();
  std::shared_ptr<Model> m = previous_;
  if (!m || m->options().to_json() != mo.to_json() || m->parameters().front().device() != device) {
    // Building a model draws its initial weights from torch's generator,
    // which is part of the strategy's state: staging leaves it as it was.
    at::Generator global = at::detail::getDefaultCPUGenerator();
    const at::Tensor rng = global.get_state();
    try {
      m = make_model(mo);
      m->to(device);
    } catch (...) {
      global.set_state(rng);
      throw;
    }
    global.set_state(rng);
  }
  m->stage_load(mr, tx);
  tx.then([this, m] {
    m->eval();
    for (auto& p : m->parameters()) p.set_requires_grad(false);
    previous_ = m;
  });
}

// ---------------------------------------------------------------- cumulative

void CumulativePlugin::adapt_train_set(Strategy& s, TrainingSet& set) {
  if (seen_.empty()) return;
  check_same_benchmark(benchmark_, *s.experience(), "cumulative");
  for (int64_t e : seen_) {
    const Experience& exp = benchmark_->train_stream().at(e);
    set.segments.push_back({&exp, at::arange(exp.size(), at::kLong)});
  }
}

void CumulativePlugin::after_training_exp(Strategy& s) {
  check_same_benchmark(benchmark_, *s.experience(), "cumulative");
  if (!benchmark_) benchmark_ = origin_of(*s.experience());
  seen_.push_back(s.experience()->index());
}

void CumulativePlugin::save_state(StateWriter& w) const {
  if (benchmark_) w.write_object("benchmark", benchmark_);
  w.write("seen", seen_);
}

void CumulativePlugin::load_state(const StateReader& r) { load_staged(*this, r); }

void CumulativePlugin::stage_load(const StateReader& r, LoadTransaction& tx) {
  std::shared_ptr<const Benchmark> bench;
  if (r.has("benchmark")) bench = read_benchmark(r, "benchmark");
  auto seen = r.get<std::vector<int64_t>>("seen");
  for (int64_t e : seen) {
    if (!bench || e < 0 || e >= int64_t(bench->train_stream().size())) {
      r.fail("seen", "experience " + std::to_string(e) + " is outside the benchmark");
    }
  }
  tx.then([this, bench, seen] {
    benchmark_ = bench;
    seen_ = seen;
  });
}

// ---------------------------------------------------------------- factory

std::vector<std::shared_ptr<Plugin>> make_strategy_plugins(const std::string& strategy,
                                                           const PluginOptions& o) {
  if (strategy == "naive") return {};
  if (strategy == "replay") {
    return {std::make_shared<ReplayPlugin>(ReplayPlugin::Options{o.mem_size, o.replay_policy, o.seed})};
  }
  if (strategy == "ewc") {
    return {std::make_shared<EWCPlugin>(EWCPlugin::Options{o.ewc_lambda, o.ewc_mode, o.ewc_decay})};
  }
  if (strategy == "lwf") {
    return {std::make_shared<LwFPlugin>(LwFPlugin::Options{o.lwf_alpha, o.lwf_temperature})};
  }
  if (strategy == "cumulative") return {std::make_shared<CumulativePlugin>()};
  throw InvalidArgument("--strategy: unknown strategy '" + strategy +
                        "' (known: naive, replay, ewc, lwf, cumulative)");
}

}  // namespace continua
