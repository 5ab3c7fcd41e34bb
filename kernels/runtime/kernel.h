// Included first by every .cu file. The same kernel source builds two ways:
//  - by nvcc for the `cuda` backend, into namespace dlk::cuda;
//  - by the host compiler against the emulator (runtime/emu) for the `emu` backend, into namespace dlk::emu.
// Kernels therefore use only what both builds provide: CUDA C++ plus the macros below for shared memory, which the
// emulator turns into bounds-checked arrays, and dlk::launch for every kernel launch.
#pragma once

#include "runtime/error.h"
#include "runtime/exec.h"
#include "runtime/tensor.h"

#if defined(__CUDACC__)

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#define DLK_KNS cuda
#define DLK_SHARED(T, name, n) __shared__ T name[n]
#define DLK_SHARED_2D(T, name, rows, cols) __shared__ T name[rows][cols]
// Dynamic shared memory: `DLK_DYNAMIC_SHARED(float, buf);` gives a `float*`-like `buf` of the launch's size.
#define DLK_DYNAMIC_SHARED(T, name)                                       \
  extern __shared__ __align__(16) unsigned char dlk_dynamic_smem_[];      \
  T* name = reinterpret_cast<T*>(dlk_dynamic_smem_)

namespace dlk::cuda {

// Launches `kernel` on the stream of `exec`; throws dlk::Error when the runtime refuses the launch.
template <typename... Params, typename... Args>
void launch(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t smem, const Exec& exec,
            Args... args) {
  if (smem > 48 * 1024) {
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) fail(DLK_ERROR_DEVICE_FAILURE, name, ": cannot reserve ", smem, " bytes of shared memory: ", cudaGetErrorString(e));
  }
  kernel<<<grid, block, smem, static_cast<cudaStream_t>(exec.stream)>>>(static_cast<Params>(args)...);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) fail(DLK_ERROR_DEVICE_FAILURE, name, ": kernel launch failed: ", cudaGetErrorString(e));
}

}  // namespace dlk::cuda

#elif defined(DLK_EMU)

#include "runtime/emu/emu.h"

#define DLK_KNS emu
#define DLK_SHARED(T, name, n) static thread_local ::dlk::emurt::SharedArray<T, n> name
#define DLK_SHARED_2D(T, name, rows, cols) \
  static thread_local ::dlk::emurt::SharedArray<::dlk::emurt::SharedArray<T, cols>, rows> name
#define DLK_DYNAMIC_SHARED(T, name) ::dlk::emurt::SharedSpan<T> name = ::dlk::emurt::dynamic_shared<T>()

namespace dlk::emu {

// Runs `kernel` in the emulator, every thread of a block as a fiber; throws dlk::Error on barrier divergence,
// out-of-bounds shared memory or a trap.
template <typename... Params, typename... Args>
void launch(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t smem, const Exec& exec,
            Args... args) {
  ::dlk::emurt::launch(name, grid, block, smem, exec.num_threads, [=]() { kernel(static_cast<Params>(args)...); });
}

}  // namespace dlk::emu

#else
#error "kernel.h is for .cu sources: build them with nvcc, or with the host compiler and -DDLK_EMU"
#endif
