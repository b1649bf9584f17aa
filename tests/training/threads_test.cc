#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <gtest/gtest.h>

#include "continua/training/threads.h"

namespace continua {
namespace {

// Auto gives the cores to OpenBLAS's own pool when the process has one (and
// LibTorch one thread, so the two pools do not fight); an explicit N is
// LibTorch's, with OpenBLAS on one thread.
TEST(Threads, AutoGivesTheCoresToOneThreadPool) {
  using GetThreads = int (*)();
  auto get_blas = reinterpret_cast<GetThreads>(::dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  ThreadSetting t = configure_threads(0, 2);
  EXPECT_TRUE(t.automatic);
  if (get_blas) {
    EXPECT_EQ(t.torch_threads, 1);
    EXPECT_EQ(t.blas_threads, 2);
    EXPECT_EQ(get_blas(), 2);
  } else {
    EXPECT_EQ(t.torch_threads, 2);
    EXPECT_EQ(t.blas_threads, 0);
  }
  EXPECT_EQ(at::get_num_threads(), t.torch_threads);
  t = configure_threads(2, 2);
  EXPECT_FALSE(t.automatic);
  EXPECT_EQ(at::get_num_threads(), 2);
  if (get_blas) EXPECT_EQ(get_blas(), 1);
  EXPECT_NE(t.describe().find("LibTorch 2 threads"), std::string::npos) << t.describe();
  configure_threads(1, 1);
}

}  // namespace
}  // namespace continua
