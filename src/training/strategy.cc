#include "continua/training/strategy.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "continua/errors.h"
#include "continua/io/mix64.h"

namespace continua {

namespace {
constexpr uint64_t kAugmentSeedSalt = 0x6175676d656e74ull;  // "augment"
}  // namespace

int64_t TrainingSet::size() const {
  int64_t n = 0;
  for (const auto& s : segments) n += s.positions.size(0);
  return n;
}

Batch TrainingSet::get(const at::Tensor& indices) const {
  if (segments.size() == 1) {
    return segments[0].experience->get(segments[0].positions.index_select(0, indices));
  }
  // Each index's segment and its position in that segment's experience.
  std::vector<const Experience*> exps;
  at::Tensor which = at::empty_like(indices), positions = at::empty_like(indices);
  int64_t begin = 0;
  for (size_t k = 0; k < segments.size(); ++k) {
    const auto& s = segments[k];
    const int64_t n = s.positions.size(0);
    at::Tensor slots = indices.ge(begin).logical_and(indices.lt(begin + n)).nonzero().flatten();
    which.index_fill_(0, slots, int64_t(k));
    positions.index_put_({slots}, s.positions.index_select(0, indices.index_select(0, slots) - begin));
    exps.push_back(s.experience);
    begin += n;
  }
  return gather_samples(exps, which, positions);
}

at::Tensor TrainingSet::positions_in(const at::Tensor& indices, const Experience& e) const {
  if (segments.size() == 1 && segments[0].experience == &e) return segments[0].positions.index_select(0, indices);
  at::Tensor out = at::full({indices.size(0)}, -1, at::kLong);
  int64_t begin = 0;
  for (const auto& s : segments) {
    const int64_t n = s.positions.size(0);
    if (s.experience == &e && n > 0) {
      at::Tensor rows = indices.ge(begin).logical_and(indices.lt(begin + n)).nonzero().flatten();
      out.index_put_({rows}, s.positions.index_select(0, indices.index_select(0, rows) - begin));
    }
    begin += n;
  }
  return out;
}

int64_t MiniBatch::new_samples() const {
  if (!memory_slot.defined()) return size();
  return memory_slot.lt(0).sum().item<int64_t>();
}

void MiniBatch::append(const MiniBatch& rows) {
  if (rows.size() == 0) return;
  const int64_t before = size();
  for (const auto& [key, value] : rows.payload) {
    if (payload.count(key)) continue;
    auto shape = value.sizes().vec();
    shape[0] = before;
    payload[key] = at::zeros(shape, value.options());
  }
  for (auto& [key, value] : payload) {
    auto it = rows.payload.find(key);
    at::Tensor add;
    if (it != rows.payload.end()) {
      add = it->second;
    } else {
      auto shape = value.sizes().vec();
      shape[0] = rows.size();
      add = at::zeros(shape, value.options());
    }
    value = at::cat({value, add.to(value.device())});
  }
  x = at::cat({x, rows.x.to(x.device())});
  y = at::cat({y, rows.y.to(y.device())});
  t = at::cat({t, rows.t.to(t.device())});
  memory_slot = at::cat({memory_slot, rows.memory_slot.to(memory_slot.device())});
}

MiniBatch MiniBatch::narrow(int64_t begin, int64_t length) const {
  MiniBatch m;
  m.x = x.narrow(0, begin, length);
  m.y = y.narrow(0, begin, length);
  m.t = t.narrow(0, begin, length);
  m.memory_slot = memory_slot.narrow(0, begin, length);
  for (const auto& [key, value] : payload) m.payload[key] = value.narrow(0, begin, length);
  return m;
}

MiniBatch MiniBatch::to(const c10::Device& device) const {
  MiniBatch m;
  m.x = x.to(device);
  m.y = y.to(device);
  m.t = t.to(device);
  m.memory_slot = memory_slot;  // indices into CPU-side memories
  for (const auto& [key, value] : payload) m.payload[key] = value.to(device);
  return m;
}

MiniBatch MiniBatch::from(const Batch& b) {
  MiniBatch m;
  m.x = b.x;
  m.y = b.y;
  m.t = b.t.defined() ? b.t : at::zeros({b.y.size(0)}, at::kLong);
  m.memory_slot = at::full({b.y.size(0)}, -1, at::kLong);
  return m;
}

namespace {

// Counts of (true class, predicted class) over an evaluation, growing with
// the widest output seen; rows without an answer counted apart.
class ConfusionCounter {
 public:
  void add(const at::Tensor& y, const at::Tensor& predicted, const at::Tensor& answered, int64_t width) {
    if (off_) return;
    const at::Tensor yc = y.to(at::kCPU, at::kLong), pc = predicted.to(at::kCPU, at::kLong);
    const at::Tensor ac = answered.to(at::kCPU);
    const int64_t needed = std::max(width, yc.numel() ? yc.max().item<int64_t>() + 1 : int64_t(0));
    if (needed > kMaxConfusionClasses || (yc.numel() && yc.min().item<int64_t>() < 0)) {
      off_ = true;  // too many classes to keep a matrix for
      return;
    }
    grow(needed);
    const at::Tensor rows = ac.nonzero().flatten();
    const at::Tensor cells = yc.index_select(0, rows) * classes_ + pc.index_select(0, rows);
    counts_.view(-1).add_(at::bincount(cells, {}, classes_ * classes_));
    const at::Tensor missing = ac.logical_not().nonzero().flatten();
    unanswered_.add_(at::bincount(yc.index_select(0, missing), {}, classes_));
  }
  void write_to(EvalRecord& r) const {
    if (off_ || classes_ == 0) return;
    r.classes = classes_;
    const at::Tensor c = counts_.contiguous(), u = unanswered_.contiguous();
    r.confusion.assign(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
    r.unanswered.assign(u.data_ptr<int64_t>(), u.data_ptr<int64_t>() + u.numel());
  }

 private:
  void grow(int64_t classes) {
    if (classes <= classes_) return;
    at::Tensor counts = at::zeros({classes, classes}, at::kLong);
    at::Tensor unanswered = at::zeros({classes}, at::kLong);
    if (classes_ > 0) {
      counts.narrow(0, 0, classes_).narrow(1, 0, classes_).copy_(counts_);
      unanswered.narrow(0, 0, classes_).copy_(unanswered_);
    }
    counts_ = counts;
    unanswered_ = unanswered;
    classes_ = classes;
  }
  int64_t classes_ = 0;
  at::Tensor counts_, unanswered_;
  bool off_ = false;
};

}  // namespace

at::Tensor cross_entropy_criterion(Strategy& s) {
  return torch::nn::functional::cross_entropy(s.mb_output, s.mb.y);
}

Strategy::Strategy(std::shared_ptr<Model> model, StrategyOptions options,
                   std::shared_ptr<Evaluator> evaluator)
    : model_(std::move(model)),
      options_(std::move(options)),
      optimizer_(options_.optimizer_),
      scheduler_(options_.scheduler_),
      evaluator_(evaluator ? std::move(evaluator) : std::make_shared<Evaluator>()),
      data_generator_(at::make_generator<at::CPUGeneratorImpl>(options_.seed_)) {
  if (!model_) throw InvalidArgument("Strategy: model is null");
  if (options_.train_mb_size_ <= 0) throw InvalidArgument("--train-mb-size must be > 0");
  if (options_.eval_mb_size_ <= 0) throw InvalidArgument("--eval-mb-size must be > 0");
  if (options_.epochs_ <= 0) throw InvalidArgument("--epochs must be > 0");
  if (options_.scheduler_.step_size_ < 0) throw InvalidArgument("scheduler step size must be >= 0");
  c10::Device dev(c10::kCPU);
  try {
    dev = c10::Device(options_.device_);
  } catch (const c10::Error&) {
    throw InvalidArgument("--device: not a device: '" + options_.device_ + "'");
  }
  if (dev.is_cuda() && !torch::cuda::is_available()) {
    throw InvalidArgument("--device " + options_.device_ + ": this build or machine has no CUDA");
  }
  model_->to(dev);
  optimizer_.bind(model_->named_parameters());
  if (options_.train_transform_) {
    // Its own stream, apart from the data order's: adding augmentation to a
    // run leaves the order of its samples as it was.
    augment_generator_ = at::make_generator<at::CPUGeneratorImpl>(io::mix64(options_.seed_ ^ kAugmentSeedSalt));
  }
}

Strategy::~Strategy() = default;

void Strategy::add_plugin(std::shared_ptr<Plugin> plugin) {
  for (const auto& p : plugins_) {
    if (p->name() == plugin->name()) {
      throw InvalidArgument("a plugin named '" + plugin->name() + "' is already attached");
    }
  }
  plugins_.push_back(plugin);
  plugin->attached(*this);
}

void Strategy::set_criterion(Criterion criterion) {
  if (!criterion) throw InvalidArgument("Strategy::set_criterion: empty criterion");
  criterion_ = std::move(criterion);
}

c10::Device Strategy::device() const { return c10::Device(options_.device_); }

void Strategy::to(const c10::Device& device) {
  options_.device_ = device.str();
  model_->to(device);
  // Moving parameters in place keeps their identity; the optimizer's buffers
  // are moved through its state.
  StateTree tree;
  StateWriter w(tree);
  optimizer_.save_state(w);
  StateTree moved;
  for (const auto& [k, v] : tree.entries()) {
    if (const auto* t = std::get_if<at::Tensor>(&v)) {
      moved.set(k, t->to(device));
    } else {
      moved.set(k, v);
    }
  }
  optimizer_.load_state(StateReader(moved));
}

void Strategy::model_changed() { optimizer_.bind(model_->named_parameters()); }

int64_t Strategy::next_experience() const {
  return loop_.experience >= 0 ? loop_.experience : clock_.train_experiences;
}

bool Strategy::train(const Experience& experience) {
  experience_ = &experience;
  const bool resuming = loop_.experience >= 0;
  if (resuming && loop_.experience != experience.index()) {
    throw InvalidArgument("the state is in the middle of experience " +
                          std::to_string(loop_.experience) + ", not " +
                          std::to_string(experience.index()));
  }
  model_->train();
  const c10::Device dev = device();
  if (!resuming) {
    if (model_->adapt(experience.classes(), experience.task_label())) model_changed();
    scheduler_.reset(optimizer_);
    for (auto& p : plugins_) p->before_training_exp(*this);
    loop_ = LoopState();
    loop_.experience = experience.index();
    clock_.experience_iterations = 0;
  }
  TrainingSet set;
  set.segments.push_back({&experience, at::arange(experience.size(), at::kLong)});
  for (auto& p : plugins_) p->adapt_train_set(*this, set);
  const int64_t n = set.size();
  const int64_t mb = options_.train_mb_size_;

  for (; loop_.epoch < options_.epochs_; ++loop_.epoch) {
    // A new epoch has no order yet. Not `position == 0`: a stop requested
    // before the epoch's first iteration saves the order drawn already, and
    // drawing again on resume would advance the generator a second time.
    if (!loop_.order.defined()) {
      loop_.order = at::randperm(n, data_generator_, at::kLong);
      loop_.loss_sum = 0;
      loop_.correct = 0;
      loop_.seen = 0;
      for (auto& p : plugins_) p->before_training_epoch(*this);
    }
    while (loop_.position < n) {
      if (stop_requested()) return false;
      const int64_t take = std::min(mb, n - loop_.position);
      try {
        const at::Tensor indices = loop_.order.narrow(0, loop_.position, take);
        this->mb = MiniBatch::from(set.get(indices));
        mb_positions = set.positions_in(indices, experience);
        for (auto& p : plugins_) p->adapt_batch(*this, this->mb);
        this->mb = this->mb.to(dev);
        // After every adapt_batch: memory rows are augmented like the
        // experience's (as Avalanche's replay buffers carry the train
        // transform); before data-parallel training splits the batch, so
        // every rank draws the same.
        if (options_.train_transform_) this->mb.x = (*options_.train_transform_)(this->mb.x, augment_generator_);
        // Rows of the whole batch (with memory rows), before data-parallel
        // training gives each rank its share.
        const int64_t rows = this->mb.size();
        for (auto& p : plugins_) p->before_training_iteration(*this);
        optimizer_.zero_grad();
        mb_features = model_->features(this->mb.x);
        mb_output = model_->head(mb_features, this->mb.t);
        for (auto& p : plugins_) p->after_forward(*this);
        loss = criterion_(*this);
        double batch_loss;
        {
          // Metrics of the batch before penalties, as a user reads them.
          torch::NoGradGuard ng;
          batch_loss = loss.item<double>();
          int64_t batch_correct = mb_output.argmax(1).eq(this->mb.y).sum().item<int64_t>();
          for (auto& p : plugins_) p->reduce_batch_metrics(*this, rows, batch_loss, batch_correct);
          loop_.loss_sum += batch_loss * rows;
          loop_.correct += batch_correct;
          loop_.seen += rows;
        }
        for (auto& p : plugins_) p->before_backward(*this);
        loss.backward();
        for (auto& p : plugins_) p->after_backward(*this);
        optimizer_.step();
        for (auto& p : plugins_) p->after_update(*this);
        loop_.position += take;
        ++clock_.train_iterations;
        ++clock_.experience_iterations;
        evaluator_->record_progress({experience.index(), loop_.epoch, options_.epochs_,
                                     loop_.position, n, batch_loss});
        for (auto& p : plugins_) p->after_training_iteration(*this);
      } catch (...) {
        for (auto it = plugins_.rbegin(); it != plugins_.rend(); ++it) (*it)->iteration_failed(*this);
        throw;
      }
      if (iteration_callback_) iteration_callback_(*this);
    }
    EpochRecord r;
    r.experience = experience.index();
    r.epoch = loop_.epoch;
    r.iterations = clock_.train_iterations;
    r.samples = loop_.seen;
    r.loss = loop_.seen ? loop_.loss_sum / double(loop_.seen) : 0.0;
    r.accuracy = loop_.seen ? double(loop_.correct) / double(loop_.seen) : 0.0;
    evaluator_->record_epoch(r);
    for (auto& p : plugins_) p->after_training_epoch(*this);
    scheduler_.step(optimizer_);
    ++clock_.train_epochs;
    loop_.position = 0;
    loop_.order = at::Tensor();
    if (stop_requested() && loop_.epoch + 1 < options_.epochs_) {
      ++loop_.epoch;
      return false;
    }
  }
  for (auto& p : plugins_) p->after_training_exp(*this);
  ++clock_.train_experiences;
  loop_ = LoopState();
  this->mb = MiniBatch();
  mb_features = mb_output = loss = mb_positions = at::Tensor();
  return true;
}

std::vector<EvalResult> Strategy::eval(const std::vector<Experience>& stream) {
  torch::NoGradGuard no_grad;
  const bool was_training = model_->is_training();
  model_->eval();
  for (auto& p : plugins_) p->before_eval(*this);
  const c10::Device dev = device();
  std::vector<EvalResult> results;
  EvalRecord record;
  // Online chunks count by the original experiences they complete: the
  // accuracy matrix has a row per original experience.
  record.trained_experiences = stream.empty() || !stream.front().origin()
                                   ? clock_.train_experiences
                                   : stream.front().origin()->original_experiences_done(clock_.train_experiences);
  record.stream = stream.empty() ? "" : stream.front().stream();
  int64_t total = 0, total_correct = 0;
  double total_loss = 0;
  ConfusionCounter confusion;
  for (const Experience& e : stream) {
    EvalResult r;
    r.experience = e.index();
    int64_t correct = 0;
    double loss_sum = 0;
    for (int64_t pos = 0; pos < e.size(); pos += options_.eval_mb_size_) {
      const int64_t take = std::min(options_.eval_mb_size_, e.size() - pos);
      this->mb = MiniBatch::from(e.get(at::arange(pos, pos + take, at::kLong))).to(dev);
      mb_features = model_->features(this->mb.x);
      mb_output = model_->head(mb_features, this->mb.t);
      for (auto& p : plugins_) p->after_eval_forward(*this);
      at::Tensor out = mb_output;
      const at::Tensor& y = this->mb.y;
      // Classes the head has not grown to yet score the mask value (as
      // Avalanche's masked IncrementalClassifier): never predicted, finite loss.
      const int64_t needed = y.max().item<int64_t>() + 1;
      if (needed > out.size(1)) {
        out = at::cat({out, at::full({out.size(0), needed - out.size(1)}, kMaskValue, out.options())}, 1);
      }
      loss_sum += torch::nn::functional::cross_entropy(
                      out, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                      .item<double>();
      // A row with every class masked (a task with no head yet) has no
      // answer: never correct, whatever argmax picks.
      const at::Tensor predicted = out.argmax(1);
      const at::Tensor answered = std::get<0>(out.max(1)).gt(kMaskValue);
      correct += predicted.eq(y).logical_and(answered).sum().item<int64_t>();
      confusion.add(y, predicted, answered, out.size(1));
      ++clock_.eval_iterations;
    }
    r.samples = e.size();
    r.task = e.task_label();
    r.accuracy = e.size() ? double(correct) / double(e.size()) : 0.0;
    r.loss = e.size() ? loss_sum / double(e.size()) : 0.0;
    total += e.size();
    total_correct += correct;
    total_loss += loss_sum;
    results.push_back(r);
  }
  record.results = results;
  record.stream_accuracy = total ? double(total_correct) / double(total) : 0.0;
  record.stream_loss = total ? total_loss / double(total) : 0.0;
  confusion.write_to(record);
  this->mb = MiniBatch();
  mb_features = mb_output = at::Tensor();
  evaluator_->record_eval(record);
  for (auto& p : plugins_) p->after_eval(*this);
  if (was_training) model_->train();
  return results;
}

void Strategy::save_state(StateWriter& writer) const {
  StateWriter mw = writer.child("model");
  model_->save_state(mw);
  StateWriter ow = writer.child("optimizer");
  optimizer_.save_state(ow);
  StateWriter sw = writer.child("scheduler");
  scheduler_.save_state(sw);
  StateWriter cw = writer.child("clock");
  cw.write("train_experiences", clock_.train_experiences);
  cw.write("train_iterations", clock_.train_iterations);
  cw.write("train_epochs", clock_.train_epochs);
  cw.write("experience_iterations", clock_.experience_iterations);
  cw.write("eval_iterations", clock_.eval_iterations);
  StateWriter lw = writer.child("loop");
  lw.write("experience", loop_.experience);
  lw.write("epoch", loop_.epoch);
  lw.write("position", loop_.position);
  if (loop_.order.defined()) lw.write("order", loop_.order);
  lw.write("loss_sum", loop_.loss_sum);
  lw.write("correct", loop_.correct);
  lw.write("seen", loop_.seen);
  StateWriter rw = writer.child("rng");
  at::Generator data = data_generator_;  // a handle; get_state() is not const
  rw.write("data", data.get_state());
  at::Generator global = at::detail::getDefaultCPUGenerator();
  rw.write("torch_cpu", global.get_state());
  if (augment_generator_.defined()) {
    at::Generator augment = augment_generator_;
    rw.write("augment", augment.get_state());
  }
  writer.write("device", options_.device_);
  StateWriter ew = writer.child("evaluator");
  evaluator_->save_state(ew);
  nlohmann::json names = nlohmann::json::array();
  for (const auto& p : plugins_) {
    if (!p->part_of_state()) continue;
    names.push_back(p->name());
    StateWriter pw = writer.child("plugins").child(p->name());
    p->save_state(pw);
  }
  writer.write("plugin_names", names);
}

void Strategy::load_state(const StateReader& reader) { load_staged(*this, reader); }

void Strategy::stage_load(const StateReader& reader, LoadTransaction& tx) {
  // Check the plugin set first: a checkpoint of another strategy must not
  // half-load.
  nlohmann::json names = nlohmann::json::array();
  for (const auto& p : plugins_)
    if (p->part_of_state()) names.push_back(p->name());
  if (reader.json("plugin_names") != names) {
    reader.fail("plugin_names", "the checkpoint's plugins " + reader.json("plugin_names").dump() +
                                    " differ from this strategy's " + names.dump());
  }
  LoopState loop;
  StateReader lr = reader.child("loop");
  loop.experience = lr.get<int64_t>("experience");
  loop.epoch = lr.get<int64_t>("epoch");
  loop.position = lr.get<int64_t>("position");
  if (lr.has("order")) loop.order = lr.tensor("order").to(at::kCPU, at::kLong).clone();
  loop.loss_sum = lr.get<double>("loss_sum");
  loop.correct = lr.get<int64_t>("correct");
  loop.seen = lr.get<int64_t>("seen");
  if (loop.position > 0 && !loop.order.defined()) lr.fail("order", "missing for a position > 0");
  if (loop.experience >= 0 && (loop.epoch < 0 || loop.epoch >= options_.epochs_)) {
    lr.fail("epoch", "epoch " + std::to_string(loop.epoch) + " is outside this run's " +
                         std::to_string(options_.epochs_) + " epochs");
  }
  Clock clock;
  StateReader cr = reader.child("clock");
  clock.train_experiences = cr.get<int64_t>("train_experiences");
  clock.train_iterations = cr.get<int64_t>("train_iterations");
  clock.train_epochs = cr.get<int64_t>("train_epochs");
  clock.experience_iterations = cr.get<int64_t>("experience_iterations");
  clock.eval_iterations = cr.get<int64_t>("eval_iterations");
  const at::Tensor data_rng = reader.tensor("rng.data").to(at::kCPU);
  const at::Tensor torch_rng = reader.tensor("rng.torch_cpu").to(at::kCPU);
  at::Tensor augment_rng;
  if (augment_generator_.defined()) {
    if (!reader.has("rng.augment")) {
      reader.fail("rng.augment", "missing: this strategy augments its training batches and the checkpoint's "
                                 "run did not (--augment)");
    }
    augment_rng = reader.tensor("rng.augment").to(at::kCPU);
  } else if (reader.has("rng.augment")) {
    reader.fail("rng.augment", "the checkpoint's run augmented its training batches (--augment), this strategy "
                               "does not");
  }
  try {  // on scratch generators: nothing live changes before the commit
    at::make_generator<at::CPUGeneratorImpl>().set_state(data_rng);
    at::make_generator<at::CPUGeneratorImpl>().set_state(torch_rng);
    if (augment_rng.defined()) at::make_generator<at::CPUGeneratorImpl>().set_state(augment_rng);
  } catch (const c10::Error& e) {
    reader.fail("rng", std::string("not a generator state: ") + e.what_without_backtrace());
  }

  // Every component stages (checks) its part before any commits; the
  // optimizer checks against the shapes of the checkpoint's model, and is
  // rebound to the model's parameters between the two commits.
  model_->stage_load(reader.child("model"), tx);
  tx.then([this] { model_changed(); });
  optimizer_.stage_load(reader.child("optimizer"), reader.child("model"), tx);
  scheduler_.stage_load(reader.child("scheduler"), tx);
  evaluator_->stage_load(reader.child("evaluator"), tx);
  for (auto& p : plugins_)
    if (p->part_of_state()) p->stage_load(reader.child("plugins").child(p->name()), tx);
  tx.then([this, clock, loop, data_rng, torch_rng, augment_rng] {
    data_generator_.set_state(data_rng);
    if (augment_rng.defined()) augment_generator_.set_state(augment_rng);
    at::Generator global = at::detail::getDefaultCPUGenerator();
    global.set_state(torch_rng);
    clock_ = clock;
    loop_ = loop;
  });
}

std::string Strategy::state_digest() const {
  StateTree tree;
  StateWriter w(tree, "strategy");
  save_state(w);
  tree.erase_prefix("strategy.evaluator.loggers");
  tree.erase_prefix("strategy.evaluator.costs");  // wall times and sizes: not training state
  return tree.digest();
}

}  // namespace continua
