#include "runtime/context.h"

#include <cstdlib>

#include "runtime/device.h"
#include "runtime/error.h"

namespace dlk {

void* context_alloc(dlk_context* ctx, std::size_t bytes) {
  if (bytes == 0) return nullptr;
  if (ctx->backend == Backend::Cuda) {
    device::set_device(ctx->device_index);
    return device::cuda_malloc(bytes);
  }
  std::size_t rounded = (bytes + 255) / 256 * 256;
  void* p = std::aligned_alloc(256, rounded);
  if (!p) fail(DLK_ERROR_OUT_OF_MEMORY, "dlk_alloc: cannot allocate ", bytes, " bytes of host memory");
  return p;
}

void context_free(dlk_context* ctx, void* ptr) {
  if (!ptr) return;
  if (ctx->backend == Backend::Cuda) {
    device::set_device(ctx->device_index);
    device::cuda_free(ptr);
  } else {
    std::free(ptr);
  }
}

void context_synchronize(dlk_context* ctx) {
  if (ctx->backend == Backend::Cuda) device::stream_synchronize(ctx->stream);
}

}  // namespace dlk

dlk_context::~dlk_context() {
  try {
    if (backend == dlk::Backend::Cuda) {
      if (stream) dlk::device::stream_synchronize(stream);
      if (blas_handle && blas_handle_destroy) blas_handle_destroy(blas_handle);
      dlk::context_free(this, workspace);
      if (owns_stream && stream) dlk::device::stream_destroy(stream);
    } else {
      dlk::context_free(this, workspace);
    }
  } catch (...) {
    // Destruction must not throw; a failing device at teardown has nothing left to report to.
  }
}

void* dlk_context::reserve_workspace(std::size_t bytes) {
  if (bytes <= workspace_bytes) return workspace;
  if (backend == dlk::Backend::Cuda) dlk::device::stream_synchronize(stream);
  dlk::context_free(this, workspace);
  workspace = nullptr;
  workspace_bytes = 0;
  workspace = dlk::context_alloc(this, bytes);
  workspace_bytes = bytes;
  return workspace;
}

dlk::Exec dlk_context::exec() {
  dlk::Exec e;
  e.backend = backend;
  e.stream = stream;
  e.device_index = device_index;
  e.deterministic = deterministic;
  e.num_threads = num_threads;
  e.seed = seed;
  e.workspace_owner = this;
  e.blas_handle = &blas_handle;
  e.blas_handle_destroy = &blas_handle_destroy;
  e.workspace_fn = [](void* owner, std::size_t bytes) { return static_cast<dlk_context*>(owner)->reserve_workspace(bytes); };
  return e;
}
