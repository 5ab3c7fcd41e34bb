// The object behind the opaque dlk_context handle: the resolved backend, its stream, its workspace and the lock
// that serialises calls made on one context from several threads.
#pragma once

#include <dlk/dlk.h>

#include <cstddef>
#include <cstdint>
#include <mutex>

#include "runtime/exec.h"

struct dlk_context {
  dlk::Backend backend = dlk::Backend::Cpu;
  int device_index = 0;
  void* stream = nullptr;
  bool owns_stream = false;
  bool deterministic = false;
  std::uint64_t seed = 0;
  int num_threads = 0;
  std::mutex mutex;

  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;
  // Lazily created library handle (cuBLAS), see Exec::blas_handle; destroyed before the stream.
  void* blas_handle = nullptr;
  void (*blas_handle_destroy)(void*) = nullptr;

  dlk_context() = default;
  dlk_context(const dlk_context&) = delete;
  dlk_context& operator=(const dlk_context&) = delete;
  ~dlk_context();

  // The execution description handed to op implementations.
  dlk::Exec exec();
  // Grows the workspace to at least `bytes` (synchronising first on cuda) and returns it.
  void* reserve_workspace(std::size_t bytes);
  bool host_backend() const { return backend != dlk::Backend::Cuda; }
};

namespace dlk {
// Allocation on the context's device: 256-byte aligned host memory for cpu/emu, cudaMalloc for cuda.
void* context_alloc(dlk_context* ctx, std::size_t bytes);
void context_free(dlk_context* ctx, void* ptr);
void context_synchronize(dlk_context* ctx);
}  // namespace dlk
