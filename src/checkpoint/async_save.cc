#include "continua/checkpoint/async_save.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cstdlib>
#include <cstring>

#include "continua/errors.h"

namespace continua {

namespace {
constexpr size_t kAlign = 64;
size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
}  // namespace

// The snapshot memory: one allocation, grown to the largest state seen and
// kept, so the copy of every save after the first lands on faulted-in pages.
struct AsyncCheckpointer::Buffer {
  char* data = nullptr;
  size_t size = 0;
  ~Buffer() { std::free(data); }
  void reserve(size_t n) {
    if (n <= size) return;
    std::free(data);
    data = nullptr;
    size = 0;
    void* p = nullptr;
    if (::posix_memalign(&p, 4096, n) != 0) throw std::bad_alloc();
    data = static_cast<char*>(p);
    size = n;
  }
};

void AsyncSaveHandle::wait() const {
  if (future_.valid()) future_.get();
}

bool AsyncSaveHandle::done() const {
  return !future_.valid() ||
         future_.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
}

AsyncCheckpointer::AsyncCheckpointer(AsyncCheckpointerOptions options)
    : options_(options), buffer_(std::make_unique<Buffer>()) {}

AsyncCheckpointer::~AsyncCheckpointer() {
  if (running_.valid()) running_.wait();
}

void AsyncCheckpointer::wait() {
  std::shared_future<void> f;
  {
    std::lock_guard<std::mutex> lock(mu_);
    f = running_;
  }
  if (f.valid()) f.get();
}

uint64_t AsyncCheckpointer::buffer_bytes() const { return buffer_->size; }

AsyncSaveHandle AsyncCheckpointer::save(const Checkpointable& strategy, const std::string& path,
                                        const SaveOptions& options) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto t0 = std::chrono::steady_clock::now();
  // Never interleave: the previous write owns the buffer until it is done.
  // Its error, if any, belongs to its own handle.
  if (running_.valid()) running_.wait();

  StateTree tree = strategy_state(strategy);
  const int64_t next_experience = strategy.next_experience();
  size_t total = 0;
  bool all_cpu = true;
  for (const auto& [key, value] : tree.entries()) {
    if (const auto* t = std::get_if<at::Tensor>(&value); t && t->defined()) {
      total += align_up(t->nbytes());
      all_cpu = all_cpu && t->device().is_cpu();
    }
  }

  AsyncSaveHandle handle;
  handle.snapshot_bytes_ = total;
  auto seconds_since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  };
  if (total > options_.host_memory_budget_ || !all_cpu) {
    // Over budget, or state on an accelerator (the file must record its
    // device, which the host copy would lose): save synchronously.
    std::promise<void> done;
    try {
      write_checkpoint(tree, next_experience, path, options);
      done.set_value();
    } catch (...) {
      done.set_exception(std::current_exception());
    }
    handle.future_ = done.get_future().share();
    handle.synchronous_ = true;
    handle.stall_seconds_ = seconds_since(t0);
    running_ = handle.future_;
    return handle;
  }

  buffer_->reserve(total);
  StateTree snapshot;
  size_t offset = 0;
  for (const auto& [key, value] : tree.entries()) {
    const auto* t = std::get_if<at::Tensor>(&value);
    if (t == nullptr || !t->defined()) {
      snapshot.set(key, value);
      continue;
    }
    const at::Tensor src = t->detach();
    char* dst = buffer_->data + offset;
    at::Tensor copy = at::from_blob(dst, src.sizes(), at::TensorOptions().dtype(src.scalar_type()));
    if (src.device().is_cpu() && src.is_contiguous()) {
      if (src.nbytes() > 0) std::memcpy(dst, src.data_ptr(), src.nbytes());
    } else {
      copy.copy_(src);
    }
    snapshot.set(key, copy);
    offset += align_up(src.nbytes());
  }
  tree = StateTree();  // drop the references to the live tensors

  handle.future_ = std::async(std::launch::async,
                              [snapshot = std::move(snapshot), next_experience, path, options] {
                                write_checkpoint(snapshot, next_experience, path, options);
                              })
                       .share();
  handle.stall_seconds_ = seconds_since(t0);
  running_ = handle.future_;
  return handle;
}

}  // namespace continua
