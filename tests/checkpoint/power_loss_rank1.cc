// Rank 1 of the data-parallel power-loss sweep. PowerLoss.DataParallelRank0Save
// (power_loss_test.cc) is rank 0 in the test process and starts this program
// with RANK=1 WORLD_SIZE=2 MASTER_ADDR MASTER_PORT in its environment and
// the strategy's name as its argument. It follows rank 0's commands, which
// arrive through DistributedContext::broadcast_string:
//   "train"          a whole run from the start (rank 0 alone saves, as in
//                    `continua run --nproc`),
//   "resume <path>"  load the checkpoint rank 0 chose (no path: start from
//                    scratch) and train to the end,
//   "exit".
// After each run it sends its final state digest to rank 0. Exit status 0
// after "exit", 1 on any error (named on stderr).
#include <ATen/Parallel.h>

#include <iostream>
#include <string>

#include "continua/checkpoint/checkpoint.h"
#include "power_loss_util.h"

int main(int argc, char** argv) {
  using namespace continua;
  using namespace continua::testing::power_loss;
  try {
    Scenario sc;
    if (argc > 1) sc.strategy = argv[1];
    const DistributedEnv env = DistributedEnv::from_environment();
    at::set_num_threads(1);  // bit-identical ranks need the same thread count
    auto bench = scenario_benchmark(sc);
    auto ctx = std::make_shared<DistributedContext>(env, DistributedOptions().timeout_seconds(120));
    while (true) {
      const std::string command = ctx->broadcast_string("", 0);
      if (command == "exit") return 0;
      auto s = scenario_strategy(sc, *bench, ctx);
      if (command.rfind("resume ", 0) == 0) {
        const std::string path = command.substr(7);
        if (!path.empty()) maybe_load_checkpoint(*s, path, {}, {bench});
      } else if (command != "train") {
        std::cerr << "power_loss_rank1: unknown command '" << command << "'\n";
        return 1;
      }
      broadcast_parameters(*ctx, s->model());
      run_stream(*s, *bench, sc);
      ctx->broadcast_string(s->state_digest(), 1);
    }
  } catch (const std::exception& e) {
    std::cerr << "power_loss_rank1: " << e.what() << "\n";
    return 1;
  }
}
