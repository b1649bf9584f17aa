// Threads for training: LibTorch's intra-op pool and the BLAS's own pool.
//
//   continua::ThreadSetting t = continua::configure_threads(/*requested=*/0, /*cores=*/2);
//   // t.describe(): "LibTorch 1 thread, OpenBLAS 2 threads (auto)"
//
// Debian's LibTorch runs matrix products in OpenBLAS, whose pthread pool
// spins beside LibTorch's OpenMP pool: with both at 2 threads on 2 cores a
// run of split Fashion-MNIST took 3x longer than with LibTorch at 1 thread
// and OpenBLAS at 2 (docs/benchmarks.md). So requested = 0 (auto) gives the
// cores to OpenBLAS's pool when the process has one, and LibTorch one
// thread; with a BLAS that shares LibTorch's pool (MKL, official builds) the
// cores go to LibTorch. An explicit N gives LibTorch N threads and OpenBLAS
// one, so that N cores are used.
#pragma once

#include <cstdint>
#include <string>

namespace continua {

struct ThreadSetting {
  int torch_threads = 1;
  int blas_threads = 0;  // 0: the process has no OpenBLAS pool of its own
  bool automatic = true;
  std::string describe() const;
};

ThreadSetting configure_threads(int64_t requested, int64_t cores);

}  // namespace continua
