// Data-parallel training over torch's c10d collectives (Gloo on CPU).
//
// A DistributedContext is this process's place in a group of ranks: rank,
// world size, local rank and the rendezvous address, read from the
// environment (torch's RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT when
// set, else SLURM's SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID and the
// first node of SLURM_JOB_NODELIST), and a process group (c10d::ProcessGroupGloo
// over a c10d::TCPStore served by rank 0). The c10d headers stay in
// src/distributed: this header needs only ATen's Tensor.
//
// DataParallelPlugin makes a Strategy data-parallel: each rank trains on a
// contiguous chunk of every mini-batch (rank r of W takes rows
// [r*B/W, (r+1)*B/W) of a batch of B; a rank whose chunk is empty runs one
// stand-in sample that counts zero), gradients are combined after backward
// as the gradient of the global mean loss (sum over ranks of n_r/B times the
// rank's gradient), the batch's loss and accuracy are summed over ranks, and
// a stop flag is max-reduced after every iteration so that all ranks stop at
// the same one. Every rank evaluates the whole test stream itself. During
// an iteration each rank draws from its own random stream (dropout),
// derived from the replicated generator and the rank; the replicated
// generator itself stays identical on every rank.
//
//   auto env = continua::DistributedEnv::from_environment();
//   if (env.world_size > 1) {
//     auto ctx = std::make_shared<continua::DistributedContext>(env);
//     continua::broadcast_parameters(*ctx, strategy.model());
//     auto dp = std::make_shared<continua::DataParallelPlugin>(ctx);
//     strategy.add_plugin(dp);   // first: it slices the batch the others see
//   }
//
// Contract: every rank runs the same program with the same options and seed,
// so data order, initial model and every plugin's generator are identical;
// after each optimizer step the parameters are bit-identical on all ranks
// (same thread count on every rank). Collectives block until every rank
// joins (timeout: DistributedOptions::timeout_seconds, then c10d throws).
// from_environment throws InvalidArgument naming the variable for a
// malformed or inconsistent value.
#pragma once

#include <ATen/core/Tensor.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "continua/training/strategy.h"

namespace continua {

struct DistributedEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string source = "none";  // "slurm", "env" or "none"

  // RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT (LOCAL_RANK,
  // LOCAL_WORLD_SIZE optional) when RANK and WORLD_SIZE are set, else
  // SLURM inside an srun step (SLURM_STEP_ID, SLURM_PROCID and SLURM_NTASKS
  // set; a batch script runs once whatever --ntasks is) (master: MASTER_ADDR
  // if set, else the first host of SLURM_JOB_NODELIST; port: MASTER_PORT
  // if set, else 20000 + SLURM_JOB_ID % 20000), else a single process.
  static DistributedEnv from_environment();
};

struct DistributedOptions {
  DistributedOptions& timeout_seconds(double v) { timeout_seconds_ = v; return *this; }
  double timeout_seconds_ = 300;
};

class DistributedContext {
 public:
  // Joins the group: rank 0 serves the TCP store, the others connect.
  explicit DistributedContext(const DistributedEnv& env, DistributedOptions options = {});
  ~DistributedContext();
  DistributedContext(const DistributedContext&) = delete;
  DistributedContext& operator=(const DistributedContext&) = delete;

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  int local_rank() const { return env_.local_rank; }
  const DistributedEnv& env() const { return env_; }

  // In place, on every rank.
  void allreduce_sum(std::vector<at::Tensor>& tensors);
  void allreduce_mean(std::vector<at::Tensor>& tensors);
  void broadcast(std::vector<at::Tensor>& tensors, int root = 0);
  void barrier();
  double allreduce_sum(double value);
  double allreduce_max(double value);
  // Rank root's value on every rank (through the store; for names and paths).
  std::string broadcast_string(const std::string& value, int root = 0);

  // Seconds spent inside collectives so far, and how many were run.
  double collective_seconds() const { return collective_seconds_; }
  int64_t collective_calls() const { return collective_calls_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  DistributedEnv env_;
  double collective_seconds_ = 0;
  int64_t collective_calls_ = 0;
  int64_t string_broadcasts_ = 0;
};

// Runs `program args...` as `nproc` local ranks (RANK, WORLD_SIZE,
// LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1 and a free
// MASTER_PORT in their environment) and waits for them. SIGTERM, SIGINT and
// SIGUSR1 received meanwhile are forwarded to every rank. When a rank fails
// (an exit status other than 0 and `tolerated_status`, or killed by a
// signal), the others get SIGTERM, then SIGKILL 10 s later, and its status
// is returned (128 + signal when killed); otherwise `tolerated_status` if
// any rank returned it, else 0. Throws Error if a process cannot start.
int run_local_ranks(const std::string& program, const std::vector<std::string>& args, int nproc,
                    int tolerated_status);

// A TCP port on 127.0.0.1 that the kernel had free a moment ago (bind to
// port 0): the MASTER_PORT of local ranks. Throws Error if there is none.
int free_local_port();

// The arguments this process was started with (from /proc/self/cmdline),
// without argv[0].
std::vector<std::string> own_arguments();

// Rank root's parameters and buffers into every rank's model.
void broadcast_parameters(DistributedContext& ctx, Model& model, int root = 0);

class DataParallelPlugin : public Plugin {
 public:
  explicit DataParallelPlugin(std::shared_ptr<DistributedContext> context);
  std::string name() const override { return "data_parallel"; }
  // Not part of the state: a checkpoint of W ranks loads with W' ranks or in
  // a single process (docs/distributed.md says what is re-derived).
  bool part_of_state() const override { return false; }

  // Polled after every iteration; a true value on any rank stops all ranks
  // (Strategy::request_stop) before the next iteration. Typically a signal
  // flag. Without one, only Strategy::stop_requested() on some rank counts.
  void set_stop_source(std::function<bool()> source) { stop_source_ = std::move(source); }
  // Whether any rank asked to stop, agreed at the last iteration or by
  // agree_stop().
  bool stop_agreed() const { return stop_agreed_; }
  // Max-reduces `local` over ranks (call at the same point on every rank).
  bool agree_stop(bool local);

  void before_training_iteration(Strategy& s) override;
  void reduce_batch_metrics(Strategy& s, int64_t take, double& batch_loss, int64_t& batch_correct) override;
  void after_backward(Strategy& s) override;
  void after_training_iteration(Strategy& s) override;
  // Puts torch's generator back on the replicated stream.
  void iteration_failed(Strategy& s) override;

  DistributedContext& context() { return *ctx_; }
  // Seconds spent in the gradient all-reduce and in training iterations
  // (before_training_iteration to after_training_iteration).
  double gradient_seconds() const { return gradient_seconds_; }
  double iteration_seconds() const { return iteration_seconds_; }
  int64_t iterations() const { return iterations_; }

 private:
  std::shared_ptr<DistributedContext> ctx_;
  std::function<bool()> stop_source_;
  bool stop_agreed_ = false;
  int64_t local_n_ = 0, global_n_ = 0;
  double gradient_seconds_ = 0, iteration_seconds_ = 0;
  int64_t iterations_ = 0;
  double iteration_start_ = 0;
  at::Tensor replicated_generator_;  // torch's CPU generator, set aside during an iteration
  void enter_rank_stream(int64_t iteration);
  void leave_rank_stream();
};

}  // namespace continua
