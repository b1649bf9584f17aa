// continua: continual learning on LibTorch whose training survives
// preemption. The umbrella header: everything a user program needs.
//
//   #include <continua/continua.h>
//   auto bench = continua::make_benchmark(continua::BenchmarkOptions());
//   ...
//   auto [s, initial_exp] = continua::maybe_load_checkpoint(strategy, path, "cpu", {bench});
#pragma once

#include "continua/checkpoint/checkpoint.h"
#include "continua/data/benchmark.h"
#include "continua/data/dataset.h"
#include "continua/data/transforms.h"
#include "continua/errors.h"
#include "continua/evaluation/evaluator.h"
#include "continua/evaluation/metrics.h"
#include "continua/models/model.h"
#include "continua/state/checkpointable.h"
#include "continua/state/object_registry.h"
#include "continua/state/state_tree.h"
#include "continua/training/optimizer.h"
#include "continua/training/memory.h"
#include "continua/training/plugins.h"
#include "continua/training/registry.h"
#include "continua/training/strategy.h"
#include "continua/training/threads.h"
