// Memories: buffers of samples that strategies replay, as references into
// the experiences of one benchmark — (experience index, position) pairs,
// never copies of the samples — with optional per-sample payload tensors
// beside them (DER's stored logits, GSS's scores).
//
//   continua::Memory memory(continua::MemoryOptions().size(500).policy("class-balanced").seed(1));
//   memory.update(experience);                      // after training on it
//   at::Tensor slots = memory.sample(128);          // a memory mini-batch
//   continua::MiniBatch rows = memory.get(slots);   // its samples, labels, slots, payload
//
// Policies (Avalanche's storage policies are the reference):
// - experience-balanced: an equal share of the memory per experience seen
//   (remainder to the earliest), each share a uniform sample of its
//   experience; Avalanche's ReplayPlugin default.
// - class-balanced: an equal share per class seen, likewise.
// - reservoir: a uniform sample of every sample seen so far.
// Each sample entering the memory gets a random priority (or, with herding
// selection, its herding rank); a share keeps its highest-priority samples,
// so shrinking a share keeps a uniform sample of it. observe() is classic
// online reservoir sampling (Vitter's algorithm R), for methods that fill
// the memory during training (DER).
//
// The state (save_state) is the references, priorities, payload and the
// generator: a memory of 5,000 costs 60 KB plus its payload, whatever the
// samples' size. The benchmark is stored once, as its constructor
// arguments; loading with the live benchmark in unique_objects points the
// memory into it.
//
// Contract: update/observe throw InvalidArgument for an experience of
// another benchmark than the memory's (pass the live benchmark in
// unique_objects on load); stage_load refuses references outside the
// benchmark and payload of the wrong number of rows, naming the key.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "continua/data/benchmark.h"
#include "continua/state/state_tree.h"

namespace continua {

struct MiniBatch;
struct TrainingSet;
class Strategy;

struct MemoryOptions {
  MemoryOptions& size(int64_t v) { size_ = v; return *this; }
  MemoryOptions& policy(std::string v) { policy_ = std::move(v); return *this; }
  MemoryOptions& selection(std::string v) { selection_ = std::move(v); return *this; }
  MemoryOptions& seed(uint64_t v) { seed_ = v; return *this; }
  // experience-balanced only: this many samples of every experience, the
  // memory growing by as much each experience (GEM's and A-GEM's
  // patterns_per_exp) instead of shares of size(); -1: size() divided by
  // the number of training experiences of the benchmark.
  MemoryOptions& per_experience(int64_t v) { per_experience_ = v; return *this; }

  int64_t size_ = 500;
  std::string policy_ = "experience-balanced";  // experience-balanced, class-balanced, reservoir
  std::string selection_ = "random";            // random, herding
  uint64_t seed_ = 0;
  int64_t per_experience_ = 0;
};

// Features of a batch of samples (for herding): [B, D].
using FeatureFunction = std::function<at::Tensor(const Batch&)>;

class Memory : public Stateful {
 public:
  explicit Memory(MemoryOptions options);

  int64_t size() const { return experiences_.size(0); }
  // The most samples it holds (with per_experience: per experience seen).
  int64_t capacity() const { return options_.size_; }
  const MemoryOptions& options() const { return options_; }

  // After an experience: the policy's shares, with the experience's samples
  // (or only those at `candidates`, positions in it) as candidates. Herding
  // selection needs `features`.
  void update(const Experience& experience, const FeatureFunction& features = {},
              const at::Tensor& candidates = {});
  // Online reservoir sampling of these positions of the experience (one
  // training mini-batch), with their payload rows; returns, per position,
  // the slot it went to or -1.
  at::Tensor observe(const Experience& experience, const at::Tensor& positions,
                     const std::map<std::string, at::Tensor>& payload = {});

  // Writes samples into chosen slots: slots below size() are replaced,
  // slots from size() on (size(), size() + 1, ...) are appended; each row's
  // payload with it (zeros where none is given). For methods with their own
  // replacement rule (GSS).
  void put(const Experience& experience, const at::Tensor& slots, const at::Tensor& positions,
           const std::map<std::string, at::Tensor>& payload = {});

  // A uniform draw of at most n distinct slots, from the memory's generator.
  at::Tensor sample(int64_t n);
  // A stratified draw: n / k distinct slots (at least 1) from each of the k
  // original experiences in the memory, uniform within each (A-GEM's
  // reference batch as Avalanche draws it).
  at::Tensor sample_per_experience(int64_t n);
  // The samples at these slots, with their task labels, slots and payload.
  MiniBatch get(const at::Tensor& slots) const;

  // Per slot: experience index, position in it, label, task label.
  const at::Tensor& experiences() const { return experiences_; }
  const at::Tensor& positions() const { return positions_; }
  const at::Tensor& labels() const { return labels_; }
  at::Tensor tasks() const;
  // Slots per class label / per experience index / per original experience
  // (the experience index, except for online chunks whose boundaries the
  // benchmark shows: experience-balanced shares and per_experience quotas go
  // by these).
  std::map<int64_t, at::Tensor> slots_by_class() const;
  std::map<int64_t, at::Tensor> slots_by_experience() const;
  std::map<int64_t, at::Tensor> slots_by_original_experience() const;
  const std::shared_ptr<const Benchmark>& benchmark() const { return benchmark_; }
  at::Generator& generator() { return generator_; }

  // Payload tensors [size(), ...] kept beside the references.
  void set_payload(const std::string& name, at::Tensor values);
  const at::Tensor& payload(const std::string& name) const;
  bool has_payload(const std::string& name) const { return payload_.count(name) > 0; }
  // Samples observe() has been offered (reservoir's n).
  int64_t seen() const { return seen_; }

  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;

 private:
  void bind(const Experience& experience);
  int64_t quota() const;  // samples per experience with per_experience
  at::Tensor group_of(const at::Tensor& experiences) const;  // their original experiences
  // Keeps, of the slots in `keep` (by share), the highest priorities.
  void select(const std::vector<at::Tensor>& groups, const std::vector<int64_t>& caps);
  void take(const at::Tensor& slots);  // keep these slots, in this order

  MemoryOptions options_;
  at::Generator generator_;
  std::shared_ptr<const Benchmark> benchmark_;
  at::Tensor experiences_, positions_, labels_;  // int64 [size()]
  at::Tensor priorities_;                        // float32 [size()]
  std::map<std::string, at::Tensor> payload_;
  int64_t seen_ = 0;
};

// Appends a memory batch of n samples drawn without replacement (n = 0: the
// strategy's train mini-batch size) to `batch`; returns the rows appended
// (0 while the memory is empty). Replay, DER, ER-ACE, ER-AML, GSS and CoPE
// replay this way.
int64_t append_memory_batch(Memory& memory, const Strategy& s, MiniBatch& batch, int64_t n);
// Adds the memory's samples to a training set, one segment per experience
// (GDumb, iCaRL, BiC train on them with the experience's).
void append_memory_segments(const Memory& memory, TrainingSet& set);

// Offers the training iteration's own rows (the first `rows` of s.mb, those
// of s.experience(): s.mb_positions) to the memory's reservoir, with their
// payload rows ([rows, ...] each): DER, ER-ACE, ER-AML and MIR fill their
// memories this way after every iteration.
void observe_new_rows(Memory& memory, const Strategy& s, int64_t rows,
                      const std::map<std::string, at::Tensor>& payload = {});

// Herding (Welling 2009, as iCaRL selects exemplars): the order in which
// samples are picked so that the mean of the first k is, for each k, the
// closest to the mean of all. features: [N, D] (L2-normalised by the
// caller if wanted); returns the first m picks, int64.
at::Tensor herding_order(const at::Tensor& features, int64_t m);

// The shares of `total` among `groups`: equal, the remainder to the first.
std::vector<int64_t> balanced_shares(int64_t total, int64_t groups);

// A memory found in a state tree (a subtree Memory::save_state wrote): the
// samples it holds and the bytes of its references, priorities and payload
// in a checkpoint. The CLI reports them as the memory size of a strategy.
struct MemoryFootprint {
  std::string key;  // the subtree, e.g. "strategy.plugins.replay.memory"
  int64_t samples = 0;
  int64_t bytes = 0;
};
std::vector<MemoryFootprint> memory_footprints(const StateTree& tree);

}  // namespace continua
