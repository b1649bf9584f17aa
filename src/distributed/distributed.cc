// DistributedContext over c10d::ProcessGroupGloo + c10d::TCPStore, and the
// data-parallel plugin (include/continua/distributed/distributed.h).
#include "continua/distributed/distributed.h"

#include <torch/torch.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "continua/errors.h"
#include "continua/io/crc32c.h"
#include "continua/io/mix64.h"

namespace continua {

namespace {

const char* env_or_null(const char* name) {
  const char* v = std::getenv(name);
  return (v && *v) ? v : nullptr;
}

int env_int(const char* name, int fallback, int min_value) {
  const char* v = env_or_null(name);
  if (!v) return fallback;
  char* end = nullptr;
  errno = 0;
  const long x = std::strtol(v, &end, 10);
  if (errno != 0 || end == v || x < min_value || x > 1000000000L) {
    throw InvalidArgument(std::string("environment variable ") + name + "='" + v +
                          "' is not an integer >= " + std::to_string(min_value));
  }
  return int(x);
}

// The first host of a SLURM node list: "n[01-04],m7" -> "n01".
std::string first_slurm_host(const std::string& list) {
  if (list.find_first_of("[,") == std::string::npos) return list;
  // `scontrol show hostnames` knows every form; fall back to parsing the
  // simple "prefix[NN..." case.
  std::string cmd = "scontrol show hostnames '" + list + "' 2>/dev/null";
  if (FILE* f = ::popen(cmd.c_str(), "r")) {
    char line[512];
    std::string first;
    if (std::fgets(line, sizeof line, f)) first = line;
    ::pclose(f);
    while (!first.empty() && (first.back() == '\n' || first.back() == ' ')) first.pop_back();
    if (!first.empty()) return first;
  }
  const size_t br = list.find('[');
  const size_t comma = list.find(',');
  if (br != std::string::npos && (comma == std::string::npos || br < comma)) {
    const size_t end = list.find_first_of("-,]", br + 1);
    return list.substr(0, br) + list.substr(br + 1, end - br - 1);
  }
  return list.substr(0, comma);
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

DistributedEnv DistributedEnv::from_environment() {
  DistributedEnv e;
  // Explicit RANK and WORLD_SIZE win (torchrun or `continua run --nproc`
  // inside a SLURM allocation), then SLURM's task variables.
  const bool explicit_env = env_or_null("WORLD_SIZE") && env_or_null("RANK");
  // SLURM's task variables only inside an `srun` step (SLURM_STEP_ID set):
  // a batch script sees SLURM_NTASKS of the whole job but runs once.
  const bool slurm_step = env_or_null("SLURM_STEP_ID") || env_or_null("SLURM_STEPID");
  if (!explicit_env && slurm_step && env_or_null("SLURM_PROCID") && env_or_null("SLURM_NTASKS")) {
    e.source = "slurm";
    e.world_size = env_int("SLURM_NTASKS", 1, 1);
    e.rank = env_int("SLURM_PROCID", 0, 0);
    e.local_rank = env_int("SLURM_LOCALID", 0, 0);
    // "2(x3),1" -> 2: tasks on this node, the common case.
    if (const char* t = env_or_null("SLURM_TASKS_PER_NODE")) e.local_world_size = std::max(1, std::atoi(t));
    if (const char* a = env_or_null("MASTER_ADDR")) {
      e.master_addr = a;
    } else if (const char* n = env_or_null("SLURM_JOB_NODELIST")) {
      e.master_addr = first_slurm_host(n);
    } else if (const char* n2 = env_or_null("SLURM_NODELIST")) {
      e.master_addr = first_slurm_host(n2);
    }
    const int job = env_int("SLURM_JOB_ID", 0, 0);
    e.master_port = env_int("MASTER_PORT", 20000 + job % 20000, 1);
  } else if (explicit_env || env_or_null("WORLD_SIZE")) {
    e.source = "env";
    e.world_size = env_int("WORLD_SIZE", 1, 1);
    e.rank = env_int("RANK", 0, 0);
    e.local_rank = env_int("LOCAL_RANK", e.rank, 0);
    e.local_world_size = env_int("LOCAL_WORLD_SIZE", e.world_size, 1);
    if (const char* a = env_or_null("MASTER_ADDR")) e.master_addr = a;
    e.master_port = env_int("MASTER_PORT", 29500, 1);
  }
  if (e.rank >= e.world_size) {
    throw InvalidArgument("rank " + std::to_string(e.rank) + " is not below the world size " +
                          std::to_string(e.world_size) + " (" + e.source + " environment)");
  }
  if (e.master_port > 65535) {
    throw InvalidArgument("MASTER_PORT " + std::to_string(e.master_port) + " is not a TCP port");
  }
  return e;
}

struct DistributedContext::Impl {
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
};

DistributedContext::DistributedContext(const DistributedEnv& env, DistributedOptions options)
    : impl_(std::make_unique<Impl>()), env_(env) {
  if (env.world_size < 1 || env.rank < 0 || env.rank >= env.world_size) {
    throw InvalidArgument("DistributedContext: rank " + std::to_string(env.rank) + " of world size " +
                          std::to_string(env.world_size));
  }
  const auto timeout = std::chrono::milliseconds(int64_t(options.timeout_seconds_ * 1000));
  try {
    c10d::TCPStoreOptions so;
    so.port = uint16_t(env.master_port);
    so.isServer = env.rank == 0;
    so.numWorkers = size_t(env.world_size);
    so.waitWorkers = true;
    so.timeout = timeout;
    impl_->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
    auto po = c10d::ProcessGroupGloo::Options::create();
    po->timeout = timeout;
    if (const char* ifname = env_or_null("GLOO_SOCKET_IFNAME")) {
      po->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else if (env.master_addr == "127.0.0.1" || env.master_addr == "localhost") {
      po->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      po->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    impl_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, env.rank, env.world_size, po);
  } catch (const c10::Error& e) {
    throw Error("cannot join the process group at " + env.master_addr + ":" + std::to_string(env.master_port) +
                " as rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size) + ": " +
                e.what_without_backtrace());
  }
}

DistributedContext::~DistributedContext() = default;

namespace {

// Adds the time of one collective to the context's figures when it ends.
struct CollectiveTimer {
  double& seconds;
  int64_t& calls;
  const double t0 = now_seconds();
  ~CollectiveTimer() {
    seconds += now_seconds() - t0;
    ++calls;
  }
};

}  // namespace

void DistributedContext::allreduce_sum(std::vector<at::Tensor>& tensors) {
  if (tensors.empty()) return;
  CollectiveTimer timer{collective_seconds_, collective_calls_};
  // One flat buffer: one collective however many tensors.
  std::vector<at::Tensor> flat = {at::cat([&] {
    std::vector<at::Tensor> parts;
    for (auto& t : tensors) parts.push_back(t.reshape({-1}));
    return parts;
  }())};
  c10d::AllreduceOptions opts;
  opts.reduceOp = c10d::ReduceOp::SUM;
  impl_->pg->allreduce(flat, opts)->wait();
  int64_t offset = 0;
  for (auto& t : tensors) {
    const int64_t n = t.numel();
    t.copy_(flat[0].narrow(0, offset, n).view(t.sizes()));
    offset += n;
  }
}

void DistributedContext::allreduce_mean(std::vector<at::Tensor>& tensors) {
  allreduce_sum(tensors);
  for (auto& t : tensors) t.div_(double(env_.world_size));
}

void DistributedContext::broadcast(std::vector<at::Tensor>& tensors, int root) {
  if (tensors.empty()) return;
  CollectiveTimer timer{collective_seconds_, collective_calls_};
  c10d::BroadcastOptions opts;
  opts.rootRank = root;
  for (auto& t : tensors) {
    std::vector<at::Tensor> one = {t.is_contiguous() ? t : t.contiguous()};
    impl_->pg->broadcast(one, opts)->wait();
    if (!one[0].is_same(t)) t.copy_(one[0]);
  }
}

void DistributedContext::barrier() {
  CollectiveTimer timer{collective_seconds_, collective_calls_};
  impl_->pg->barrier()->wait();
}

namespace {
double reduce_scalar(c10d::ProcessGroupGloo& pg, double value, c10d::ReduceOp op) {
  std::vector<at::Tensor> t = {at::full({1}, value, at::kDouble)};
  c10d::AllreduceOptions opts;
  opts.reduceOp = op;
  pg.allreduce(t, opts)->wait();
  return t[0].item<double>();
}
}  // namespace

double DistributedContext::allreduce_sum(double value) {
  CollectiveTimer timer{collective_seconds_, collective_calls_};
  return reduce_scalar(*impl_->pg, value, c10d::ReduceOp::SUM);
}

double DistributedContext::allreduce_max(double value) {
  CollectiveTimer timer{collective_seconds_, collective_calls_};
  return reduce_scalar(*impl_->pg, value, c10d::ReduceOp::MAX);
}

std::string DistributedContext::broadcast_string(const std::string& value, int root) {
  const std::string key = "continua/broadcast_string/" + std::to_string(string_broadcasts_++);
  if (env_.rank == root) impl_->store->set(key, std::vector<uint8_t>(value.begin(), value.end()));
  const std::vector<uint8_t> got = impl_->store->get(key);  // waits for the key
  barrier();  // every rank read it before the next one reuses nothing
  return std::string(got.begin(), got.end());
}

void broadcast_parameters(DistributedContext& ctx, Model& model, int root) {
  torch::NoGradGuard ng;
  std::vector<at::Tensor> ts;
  for (const auto& p : model.named_parameters()) ts.push_back(p.value());
  for (const auto& b : model.named_buffers()) ts.push_back(b.value());
  ctx.broadcast(ts, root);
}

DataParallelPlugin::DataParallelPlugin(std::shared_ptr<DistributedContext> context) : ctx_(std::move(context)) {
  if (!ctx_) throw InvalidArgument("DataParallelPlugin: no DistributedContext");
}

// torch's default CPU generator is part of the replicated state, but what a
// rank draws from it during an iteration (dropout on its own chunk) is
// per-rank. So the replicated generator's state is set aside for the
// iteration, which runs on a per-rank stream seeded from a checksum of that
// state, the iteration number and the rank; afterwards the replicated state
// is put back exactly as it was. The ranks' generators never drift apart,
// a run without dropout draws what a single process draws (the same head
// initialisations, for one), and every rank's stream is a function of the
// replicated state, the iteration and the rank: a checkpoint at an
// iteration boundary holds all of it, and a resume with another number of
// ranks derives the new ranks' streams the same way.
void DataParallelPlugin::enter_rank_stream(int64_t iteration) {
  at::Generator g = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(g.mutex());
  replicated_generator_ = g.get_state();
  const uint64_t state_sum = io::crc32c(replicated_generator_.data_ptr(), size_t(replicated_generator_.nbytes()));
  g.set_current_seed(io::mix64(state_sum ^ io::mix64(uint64_t(iteration) ^ io::mix64(uint64_t(ctx_->rank()) + 1))));
}

void DataParallelPlugin::leave_rank_stream() {
  if (!replicated_generator_.defined()) return;
  at::Generator g = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(g.mutex());
  g.set_state(replicated_generator_);
  replicated_generator_ = at::Tensor();
}

void DataParallelPlugin::before_training_iteration(Strategy& s) {
  iteration_start_ = now_seconds();
  enter_rank_stream(s.clock().train_iterations);
  const int64_t b = s.mb.size();
  const int64_t w = ctx_->world_size(), r = ctx_->rank();
  const int64_t begin = b * r / w, end = b * (r + 1) / w;
  global_n_ = b;
  local_n_ = end - begin;
  if (local_n_ == 0) {
    // A batch smaller than the world: this rank still runs one sample (a
    // model may not take an empty batch) whose gradient and metrics count zero.
    s.mb = s.mb.narrow(std::min(begin, b - 1), 1);
    return;
  }
  s.mb = s.mb.narrow(begin, local_n_);
}

void DataParallelPlugin::reduce_batch_metrics(Strategy&, int64_t take, double& batch_loss,
                                              int64_t& batch_correct) {
  // An empty chunk (one stand-in sample) contributes nothing.
  std::vector<at::Tensor> t = {at::tensor({local_n_ ? batch_loss * double(local_n_) : 0.0,
                                           local_n_ ? double(batch_correct) : 0.0},
                                          at::kDouble)};
  ctx_->allreduce_sum(t);
  batch_loss = t[0][0].item<double>() / double(take);
  batch_correct = int64_t(t[0][1].item<double>());
}

void DataParallelPlugin::after_backward(Strategy& s) {
  const double t0 = now_seconds();
  torch::NoGradGuard ng;
  // d(global mean)/dθ = Σ_r (n_r / B) d(mean over chunk r)/dθ. Penalties
  // identical on every rank (EWC) sum back to themselves since Σ n_r/B = 1.
  std::vector<at::Tensor> grads;
  const double weight = global_n_ ? double(local_n_) / double(global_n_) : 0.0;
  for (const auto& p : s.model().named_parameters()) {
    // A parameter outside the graph has no gradient on any rank (the graph
    // is the same everywhere): it stays out, as the optimizer skips it.
    at::Tensor g = p.value().grad();
    if (!g.defined()) continue;
    if (local_n_ == 0) {
      g.zero_();
    } else {
      g.mul_(weight);
    }
    grads.push_back(g);
  }
  // BatchNorm's running statistics moved on each rank's own chunk in this
  // iteration's forward: their mean weighted as the gradients' (a rank with
  // an empty chunk counts zero) keeps every replica's state the same, in the
  // same collective. Integer and bool buffers (num_batches_tracked, the
  // multi-head masks) are equal on every rank already.
  for (const auto& b : s.model().named_buffers()) {
    at::Tensor t = b.value();
    if (!t.is_floating_point()) continue;
    t.mul_(weight);
    grads.push_back(t);
  }
  ctx_->allreduce_sum(grads);
  gradient_seconds_ += now_seconds() - t0;
}

bool DataParallelPlugin::agree_stop(bool local) {
  stop_agreed_ = ctx_->allreduce_max(local ? 1.0 : 0.0) > 0.5;
  return stop_agreed_;
}

void DataParallelPlugin::iteration_failed(Strategy&) { leave_rank_stream(); }

void DataParallelPlugin::after_training_iteration(Strategy& s) {
  leave_rank_stream();
  const bool local = s.stop_requested() || (stop_source_ && stop_source_());
  if (agree_stop(local)) s.request_stop();
  iteration_seconds_ += now_seconds() - iteration_start_;
  ++iterations_;
}

}  // namespace continua
