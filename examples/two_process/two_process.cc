// Data-parallel training in two processes with continua's distributed API
// (continua/distributed/distributed.h: c10d over Gloo on CPU).
//
//   two_process CKPT --nproc 2           # starts 2 ranks of itself and waits
//   RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29400 two_process CKPT &
//   RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29400 two_process CKPT
//
// Every rank builds the same benchmark, model and strategy from the same
// seed, adds a DataParallelPlugin (each rank trains on half of every
// mini-batch; gradients are summed over the ranks after backward) and
// trains the split-synthetic stream. Rank 0 writes the checkpoint; after a
// barrier every rank loads it into a fresh strategy and checks that it
// holds the state the rank trained. Each rank prints
//   rank R/W: parameter digest <sha256 of the model's parameters>
//   rank R/W: state digest <Strategy::state_digest()>
// and both ranks must print the same digests although each trained on its
// own half of every mini-batch (`trained on N samples, all ranks on M`). Exit status 1 if a check fails.
#include <continua/continua.h>
#include <continua/distributed/distributed.h>
#include <continua/io/sha256.h>

#include <ATen/Context.h>
#include <ATen/Parallel.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>

namespace {

// Counts the training samples this rank's forward passes saw: with the
// DataParallelPlugin before it, its share of each mini-batch.
class SampleCounter : public continua::Plugin {
 public:
  std::string name() const override { return "sample_counter"; }
  void after_forward(continua::Strategy& s) override { samples_ += s.mb.y.size(0); }
  int64_t samples() const { return samples_; }

 private:
  int64_t samples_ = 0;
};

struct Run {
  std::shared_ptr<continua::Benchmark> bench;
  std::unique_ptr<continua::Strategy> strategy;
  std::shared_ptr<SampleCounter> counter;
};

// The same program on every rank: same seeds, same options, the
// DataParallelPlugin first (it slices the batch the other plugins see).
Run make_run(const std::shared_ptr<continua::DistributedContext>& ctx,
             std::shared_ptr<continua::Benchmark> bench) {
  Run r;
  r.bench = std::move(bench);
  at::manual_seed(5);
  r.strategy = std::make_unique<continua::Strategy>(
      continua::make_model(continua::ModelOptions().input_size(r.bench->input_size()).hidden(64)),
      continua::StrategyOptions().epochs(2).train_mb_size(32).seed(5));
  if (ctx) r.strategy->add_plugin(std::make_shared<continua::DataParallelPlugin>(ctx));
  r.strategy->add_plugin(std::make_shared<continua::ReplayPlugin>(continua::ReplayPlugin::Options{200}));
  r.counter = std::make_shared<SampleCounter>();
  r.strategy->add_plugin(r.counter);
  // Rank 0's initial weights everywhere (they are equal already: same seed).
  if (ctx) continua::broadcast_parameters(*ctx, r.strategy->model());
  return r;
}

// SHA-256 over the model's parameters, in name order, bytes as stored.
std::string parameter_digest(continua::Model& model) {
  continua::io::Sha256 sha;
  for (const auto& p : model.named_parameters()) {
    at::Tensor t = p.value().detach().contiguous();
    sha.update(p.key().data(), p.key().size());
    sha.update(t.data_ptr(), t.nbytes());
  }
  return sha.hex_digest();
}

void say(int rank, int world, const std::string& what) {
  std::ostringstream line;
  line << "rank " << rank << "/" << world << ": " << what << "\n";
  std::cout << line.str() << std::flush;  // one write per line: ranks share stdout
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: two_process CKPT [--nproc N]\n";
    return 2;
  }
  const std::string ckpt = argv[1];
  int nproc = 0;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--nproc") == 0) nproc = std::atoi(argv[i + 1]);
    else { std::cerr << "two_process: unknown option " << argv[i] << "\n"; return 2; }
  }
  try {
    // --nproc N: start N ranks of this program (each sees RANK, WORLD_SIZE,
    // MASTER_ADDR and a free MASTER_PORT) and return the first failure.
    if (nproc > 0 && !std::getenv("WORLD_SIZE")) {
      return continua::run_local_ranks("/proc/self/exe", continua::own_arguments(), nproc, 0);
    }
    const auto env = continua::DistributedEnv::from_environment();
    std::shared_ptr<continua::DistributedContext> ctx;
    if (env.world_size > 1) ctx = std::make_shared<continua::DistributedContext>(env);
    const int rank = env.rank, world = env.world_size;
    at::set_num_threads(1);  // bit-identical ranks need the same thread count
    say(rank, world, "joined (" + env.source + ", master " + env.master_addr + ":" +
                         std::to_string(env.master_port) + ")");

    auto bench = continua::make_benchmark(continua::BenchmarkOptions().name("split-synthetic").seed(5));
    Run run = make_run(ctx, bench);
    for (const auto& exp : bench->train_stream()) {
      run.strategy->train(exp);
      run.strategy->eval(bench->test_stream());
    }
    // The state is the same on every rank: rank 0 alone writes it.
    if (rank == 0) continua::save_checkpoint(*run.strategy, ckpt);
    if (ctx) ctx->barrier();

    // Every rank loads the file into a fresh strategy: the state it trained.
    Run fresh = make_run(ctx, bench);
    auto [loaded, next] = continua::maybe_load_checkpoint(*fresh.strategy, ckpt, "cpu", {bench});
    const bool same = loaded.state_digest() == run.strategy->state_digest();
    const int64_t mine = run.counter->samples();
    const int64_t all = ctx ? int64_t(ctx->allreduce_sum(double(mine))) : mine;
    say(rank, world, "trained on " + std::to_string(mine) + " samples, all ranks on " + std::to_string(all));
    say(rank, world, "average accuracy " + std::to_string(run.strategy->evaluator().average_accuracy()));
    say(rank, world, "parameter digest " + parameter_digest(run.strategy->model()));
    say(rank, world, "state digest " + run.strategy->state_digest());
    say(rank, world, std::string("checkpoint ") + ckpt + " loaded at experience " + std::to_string(next) +
                         (same ? ": same state" : ": DIFFERENT STATE"));
    if (ctx) {
      say(rank, world, std::to_string(ctx->collective_calls()) + " collectives, " +
                           std::to_string(ctx->collective_seconds()) + " s in them");
    }
    if (!same) return 1;
  } catch (const std::exception& e) {
    std::cerr << "two_process: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
