#include "runtime/device.h"

#include "runtime/error.h"

#ifdef DLK_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace dlk::device {

#ifdef DLK_HAVE_CUDA

namespace {
void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  cudaGetLastError();  // clear the sticky-free error so later calls are not blamed for it
  dlk_status s = (e == cudaErrorMemoryAllocation) ? DLK_ERROR_OUT_OF_MEMORY : DLK_ERROR_DEVICE_FAILURE;
  fail(s, what, ": ", cudaGetErrorString(e));
}
}  // namespace

bool cuda_built() { return true; }

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

void set_device(int index) { check(cudaSetDevice(index), "cudaSetDevice"); }

void* cuda_malloc(std::size_t bytes) {
  void* p = nullptr;
  check(cudaMalloc(&p, bytes), "cudaMalloc");
  return p;
}

void cuda_free(void* ptr) { check(cudaFree(ptr), "cudaFree"); }

void* stream_create() {
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
  return s;
}

void stream_destroy(void* stream) { check(cudaStreamDestroy(static_cast<cudaStream_t>(stream)), "cudaStreamDestroy"); }

void stream_synchronize(void* stream) {
  check(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)), "cudaStreamSynchronize");
}

void memcpy_async(void* dst, const void* src, std::size_t bytes, int kind, void* stream) {
  static const cudaMemcpyKind kinds[] = {cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost,
                                         cudaMemcpyDeviceToDevice};
  check(cudaMemcpyAsync(dst, src, bytes, kinds[kind], static_cast<cudaStream_t>(stream)), "cudaMemcpyAsync");
}

int pointer_device(const void* ptr) {
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, ptr) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return (a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged) ? a.device : -1;
}

#else

bool cuda_built() { return false; }
int cuda_device_count() { return 0; }
[[noreturn]] static void no_cuda() { fail(DLK_ERROR_NOT_AVAILABLE, "this dlkernels was built without CUDA"); }
void set_device(int) { no_cuda(); }
void* cuda_malloc(std::size_t) { no_cuda(); }
void cuda_free(void*) { no_cuda(); }
void* stream_create() { no_cuda(); }
void stream_destroy(void*) { no_cuda(); }
void stream_synchronize(void*) { no_cuda(); }
void memcpy_async(void*, const void*, std::size_t, int, void*) { no_cuda(); }
int pointer_device(const void*) { return -1; }

#endif

}  // namespace dlk::device
