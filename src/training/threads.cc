#include "continua/training/threads.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <algorithm>

namespace continua {

std::string ThreadSetting::describe() const {
  std::string s = "LibTorch " + std::to_string(torch_threads) + (torch_threads == 1 ? " thread" : " threads");
  if (blas_threads > 0) s += ", OpenBLAS " + std::to_string(blas_threads) + (blas_threads == 1 ? " thread" : " threads");
  return s + (automatic ? " (auto)" : "");
}

ThreadSetting configure_threads(int64_t requested, int64_t cores) {
  using SetThreads = void (*)(int);
  // Present when the process's libblas is OpenBLAS (the symbol is its own).
  auto set_blas = reinterpret_cast<SetThreads>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  ThreadSetting t;
  const int n = int(std::max<int64_t>(1, cores));
  t.automatic = requested <= 0;
  if (t.automatic) {
    t.torch_threads = set_blas ? 1 : n;
    t.blas_threads = set_blas ? n : 0;
  } else {
    t.torch_threads = int(requested);
    t.blas_threads = set_blas ? 1 : 0;
  }
  at::set_num_threads(t.torch_threads);
  if (set_blas) set_blas(t.blas_threads);
  return t;
}

}  // namespace continua
