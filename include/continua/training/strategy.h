// The strategy template: train(experience) and eval(stream), with plugins.
//
// A Strategy owns a model, an optimizer, an optional scheduler, a clock, the
// data-order generator, the evaluator, a criterion and a list of plugins
// (replay, EWC, LwF, cumulative, checkpointing...). Its training loop runs
// mini-batches over epochs and calls each plugin's hooks at fixed points:
//
//   before_training_exp, adapt_train_set, before_training_epoch, then per
//   iteration: adapt_batch (add memory rows), before_training_iteration,
//   after_forward, criterion, before_backward (add terms to loss),
//   after_backward (= before the update: project gradients), the optimizer
//   step, after_update, after_training_iteration; after_training_epoch,
//   after_training_exp. Evaluation: before_eval, after_eval_forward (replace
//   the scores: nearest-mean classifiers), after_eval.
//
// A method is registered with its plugins in training/registry.h. Everything that
// changes as it trains is in its state (save_state / load_state), including
// the position inside an epoch: a strategy restored from a checkpoint taken
// after any iteration continues with the next mini-batch and ends
// bit-identical to a run that never stopped.
//
//   continua::Strategy strategy(model, continua::StrategyOptions().epochs(1).seed(3));
//   strategy.add_plugin(std::make_shared<continua::ReplayPlugin>(...));
//   for (const auto& exp : bench->train_stream()) {
//     strategy.train(exp);
//     strategy.eval(bench->test_stream());
//   }
//
// Contract: train() returns false when a stop was requested (request_stop(),
// a signal handler may call it) and the loop stopped at an iteration
// boundary; the state then describes the exact point to resume from.
// Invalid options throw continua::InvalidArgument naming the option.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "continua/data/benchmark.h"
#include "continua/data/transforms.h"
#include "continua/evaluation/evaluator.h"
#include "continua/models/model.h"
#include "continua/state/checkpointable.h"
#include "continua/state/state_tree.h"
#include "continua/training/optimizer.h"

namespace continua {

class Strategy;

// Counters of the training loop.
struct Clock {
  int64_t train_experiences = 0;   // experiences fully trained
  int64_t train_iterations = 0;    // iterations over all experiences
  int64_t train_epochs = 0;        // epochs over all experiences
  int64_t experience_iterations = 0;  // iterations in the current experience
  int64_t eval_iterations = 0;
};

// The samples one experience trains on: segments of experiences (the current
// one, replay memory, earlier experiences for cumulative training), each
// with the positions of its samples.
struct TrainingSet {
  struct Segment {
    const Experience* experience;
    at::Tensor positions;  // int64, positions within the experience
  };
  std::vector<Segment> segments;
  int64_t size() const;
  // The samples at the given global indices (0 <= i < size()), in order.
  Batch get(const at::Tensor& indices) const;
  // For each index, the sample's position in experience e, or -1 if it is
  // in a segment of another experience.
  at::Tensor positions_in(const at::Tensor& indices, const Experience& e) const;
};

// The mini-batch of a training iteration (or of an evaluation step): the
// samples of the experience first, then the rows plugins added (a replay
// memory's), each such row with its slot in that memory and its payload.
struct MiniBatch {
  at::Tensor x, y, t;      // inputs, class labels, task labels
  at::Tensor memory_slot;  // int64 [B]: -1 for a sample of the experience, else its memory slot
  // Per-row tensors [B, ...] plugins attach (stored logits): zeros in rows
  // that did not bring one.
  std::map<std::string, at::Tensor> payload;

  int64_t size() const { return y.defined() ? y.size(0) : 0; }
  at::Tensor from_memory() const { return memory_slot.ge(0); }
  int64_t new_samples() const;  // rows from the experience
  // Appends rows (with their memory slots and payload).
  void append(const MiniBatch& rows);
  MiniBatch narrow(int64_t begin, int64_t length) const;
  MiniBatch to(const c10::Device& device) const;
  static MiniBatch from(const Batch& b);  // memory_slot -1 everywhere
};

class Plugin : public Stateful {
 public:
  // The key of the plugin's state: strategy.plugins.<name>.
  virtual std::string name() const = 0;
  // Called once by Strategy::add_plugin (set a criterion, keep the model).
  virtual void attached(Strategy&) {}
  // False for a plugin that changes how training runs but not what it
  // computes into the state (DataParallelPlugin): it is left out of the
  // state and of plugin_names, so a checkpoint taken with it loads without
  // it and the other way round.
  virtual bool part_of_state() const { return true; }

  virtual void before_training_exp(Strategy&) {}
  // Add samples to the training set. Must depend only on the plugin's
  // state, since it runs again when a run resumes mid-experience.
  virtual void adapt_train_set(Strategy&, TrainingSet&) {}
  virtual void before_training_epoch(Strategy&) {}
  // Add rows to the iteration's mini-batch (s.mb), e.g. a memory batch.
  // Runs before before_training_iteration, so data-parallel training splits
  // the whole batch. Random draws must come from generators in the state.
  virtual void adapt_batch(Strategy&, MiniBatch&) {}
  virtual void before_training_iteration(Strategy&) {}
  virtual void after_forward(Strategy&) {}
  // Combine the batch's metrics (mean loss of the batch of `take` samples,
  // correct predictions) across processes; data-parallel training only.
  virtual void reduce_batch_metrics(Strategy&, int64_t /*take*/, double& /*batch_loss*/,
                                    int64_t& /*batch_correct*/) {}
  // Add penalties to strategy.loss here.
  virtual void before_backward(Strategy&) {}
  // Between backward and the optimizer step: gradients are there to read or
  // project (GEM, A-GEM).
  virtual void after_backward(Strategy&) {}
  // Right after the optimizer step (SI accumulates its path integral here).
  virtual void after_update(Strategy&) {}
  virtual void after_training_iteration(Strategy&) {}
  // An exception left a training iteration (a hook, the forward or backward
  // threw): every plugin is told, in reverse order, so it can undo what it
  // set up for the iteration; then the exception goes on to the caller.
  virtual void iteration_failed(Strategy&) {}
  virtual void after_training_epoch(Strategy&) {}
  virtual void after_training_exp(Strategy&) {}
  virtual void before_eval(Strategy&) {}
  // After the model scored an evaluation batch (s.mb, s.mb_output): a
  // plugin may replace s.mb_output (iCaRL's nearest-mean-of-exemplars).
  virtual void after_eval_forward(Strategy&) {}
  virtual void after_eval(Strategy&) {}

  void save_state(StateWriter&) const override {}
  void load_state(const StateReader&) override {}
};

struct StrategyOptions {
  StrategyOptions& train_mb_size(int64_t v) { train_mb_size_ = v; return *this; }
  StrategyOptions& eval_mb_size(int64_t v) { eval_mb_size_ = v; return *this; }
  StrategyOptions& epochs(int64_t v) { epochs_ = v; return *this; }
  StrategyOptions& seed(uint64_t v) { seed_ = v; return *this; }
  StrategyOptions& device(std::string v) { device_ = std::move(v); return *this; }
  StrategyOptions& optimizer(OptimizerOptions v) { optimizer_ = std::move(v); return *this; }
  StrategyOptions& scheduler(SchedulerOptions v) { scheduler_ = v; return *this; }
  // Applied to every row of each training mini-batch (the experience's rows
  // and the rows plugins appended, after every adapt_batch hook), never in
  // evaluation; its random draws come from the strategy's own generator
  // (state key strategy.rng.augment, present only when a transform is set).
  StrategyOptions& train_transform(std::shared_ptr<const Transform> v) { train_transform_ = std::move(v); return *this; }

  int64_t train_mb_size_ = 64;
  int64_t eval_mb_size_ = 256;
  int64_t epochs_ = 1;
  uint64_t seed_ = 0;
  std::string device_ = "cpu";
  OptimizerOptions optimizer_;
  SchedulerOptions scheduler_;
  std::shared_ptr<const Transform> train_transform_;  // null: none
};

// The loss of a training iteration from s.mb and s.mb_output.
using Criterion = std::function<at::Tensor(Strategy&)>;
// Cross-entropy over the whole batch (the default criterion).
at::Tensor cross_entropy_criterion(Strategy& s);

class Strategy : public Checkpointable {
 public:
  Strategy(std::shared_ptr<Model> model, StrategyOptions options,
           std::shared_ptr<Evaluator> evaluator = nullptr);
  virtual ~Strategy();

  void add_plugin(std::shared_ptr<Plugin> plugin);
  const std::vector<std::shared_ptr<Plugin>>& plugins() const { return plugins_; }
  template <typename P>
  std::shared_ptr<P> plugin() const {
    for (const auto& p : plugins_) {
      if (auto c = std::dynamic_pointer_cast<P>(p)) return c;
    }
    return nullptr;
  }

  // Trains on one experience (continuing it if the state says it is in
  // progress). Returns false if stopped by request_stop().
  bool train(const Experience& experience);
  std::vector<EvalResult> eval(const std::vector<Experience>& stream);

  // Called after every training iteration, once the state describes the
  // point after it (a checkpoint taken here resumes with the next
  // mini-batch). Not part of the state: checkpointing policies live here
  // rather than in a plugin so they do not change what is saved.
  using IterationCallback = std::function<void(Strategy&)>;
  void set_iteration_callback(IterationCallback callback) { iteration_callback_ = std::move(callback); }

  // Async-signal-safe: sets a flag the loop reads after each iteration.
  void request_stop() { stop_requested_.store(true, std::memory_order_relaxed); }
  bool stop_requested() const { return stop_requested_.load(std::memory_order_relaxed); }
  void clear_stop() { stop_requested_.store(false); }

  // The index of the next experience to train: the one in progress, or the
  // number trained.
  int64_t next_experience() const override;
  int64_t step() const override { return clock_.train_iterations; }

  // The loss of each iteration; plugins replace it (ER-ACE, DER) or add
  // terms in before_backward.
  void set_criterion(Criterion criterion);
  const Criterion& criterion() const { return criterion_; }
  bool in_experience() const { return loop_.experience >= 0; }

  void save_state(StateWriter& writer) const override;
  void load_state(const StateReader& reader) override;
  // Every component stages first (Stateful::stage_load), then all commit:
  // a checkpoint that does not fit changes nothing.
  void stage_load(const StateReader& reader, LoadTransaction& tx) override;
  // SHA-256 of the whole training state (loggers' file lengths and the
  // evaluator's costs, wall times and sizes, excluded).
  std::string state_digest() const;

  // For plugins and loops.
  Model& model() { return *model_; }
  const std::shared_ptr<Model>& model_ptr() const { return model_; }
  NamedOptimizer& optimizer() { return optimizer_; }
  Evaluator& evaluator() { return *evaluator_; }
  const std::shared_ptr<Evaluator>& evaluator_ptr() const { return evaluator_; }
  const Clock& clock() const { return clock_; }
  const StrategyOptions& options() const { return options_; }
  c10::Device device() const;
  // Moves the model, the optimizer's buffers and every tensor of the
  // plugins to the device.
  void to(const c10::Device& device);
  const Experience* experience() const { return experience_; }
  at::Generator& data_generator() { return data_generator_; }
  // The generator of the training transform's draws (undefined without one).
  at::Generator& augment_generator() { return augment_generator_; }

  // The current mini-batch, the model's output on it and the loss (valid in
  // iteration and evaluation hooks).
  MiniBatch mb;
  // The model's features of mb.x (the head's input) and its output on them:
  // plugins that need the features (LFL, iCaRL) read them here rather than
  // running the feature extractor again.
  at::Tensor mb_features, mb_output, loss;
  // Training: for each row the training set gave the mini-batch (its first
  // rows, before plugins appended any), its position in experience(); -1 for
  // a row of another experience's segment (cumulative training). DER and
  // ER-ACE offer these samples to their reservoir.
  at::Tensor mb_positions;

 protected:
  // Rebinds the optimizer after the model's parameter set changed.
  void model_changed();

  std::shared_ptr<Model> model_;
  StrategyOptions options_;
  NamedOptimizer optimizer_;
  StepScheduler scheduler_;
  std::shared_ptr<Evaluator> evaluator_;
  std::vector<std::shared_ptr<Plugin>> plugins_;
  Clock clock_;
  at::Generator data_generator_;
  at::Generator augment_generator_;  // defined when options_.train_transform_ is set
  std::atomic<bool> stop_requested_{false};
  const Experience* experience_ = nullptr;
  IterationCallback iteration_callback_;
  Criterion criterion_ = cross_entropy_criterion;

  // Where the loop is inside an experience: -1 when between experiences.
  struct LoopState {
    int64_t experience = -1;
    int64_t epoch = 0;
    int64_t position = 0;  // samples of the current epoch already trained
    at::Tensor order;      // this epoch's sample order
    double loss_sum = 0;   // running sums for the epoch's metrics
    int64_t correct = 0;
    int64_t seen = 0;
  } loop_;
};

}  // namespace continua
