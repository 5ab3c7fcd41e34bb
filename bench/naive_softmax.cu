// Naive two-pass softmax, the benchmark's floor: pass 1 (one block per row) writes each row's max to global
// memory; pass 2 (one block per row) reads the row twice more, once for the sum of exp(x - max) and once to
// write the normalised values. Three reads of x and one write of y, plus a second launch, against the fused
// kernel's one read and one write. Shared-memory tree reductions, no warp shuffles, no vector loads: deliberately
// the textbook version.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "naive_softmax.h"

namespace dlkb {
namespace {

constexpr int kThreads = 256;

__device__ float load(const float* p, int64_t i) { return p[i]; }
__device__ float load(const __half* p, int64_t i) { return __half2float(p[i]); }
__device__ float load(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
__device__ void store(float* p, int64_t i, float v) { p[i] = v; }
__device__ void store(__half* p, int64_t i, float v) { p[i] = __float2half_rn(v); }
__device__ void store(__nv_bfloat16* p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }

// Tree reduction over the block in shared memory; every thread gets the result.
template <bool kMax>
__device__ float block_reduce(float v, float* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s)
      shared[threadIdx.x] = kMax ? fmaxf(shared[threadIdx.x], shared[threadIdx.x + s])
                                 : shared[threadIdx.x] + shared[threadIdx.x + s];
    __syncthreads();
  }
  float r = shared[0];
  __syncthreads();  // shared is reused by the next reduction
  return r;
}

template <class T>
__global__ void __launch_bounds__(kThreads) naive_row_max_kernel(const T* x, float* row_max, int cols) {
  __shared__ float shared[kThreads];
  const int64_t base = static_cast<int64_t>(blockIdx.x) * cols;
  float m = -INFINITY;
  for (int c = threadIdx.x; c < cols; c += kThreads) m = fmaxf(m, load(x, base + c));
  m = block_reduce<true>(m, shared);
  if (threadIdx.x == 0) row_max[blockIdx.x] = m;
}

template <class T>
__global__ void __launch_bounds__(kThreads) naive_exp_sum_normalise_kernel(const T* x, const float* row_max, T* y,
                                                                           int cols) {
  __shared__ float shared[kThreads];
  const int64_t base = static_cast<int64_t>(blockIdx.x) * cols;
  const float m = row_max[blockIdx.x];
  float s = 0.0f;
  for (int c = threadIdx.x; c < cols; c += kThreads) s += expf(load(x, base + c) - m);
  s = block_reduce<false>(s, shared);
  const float inv = 1.0f / s;
  for (int c = threadIdx.x; c < cols; c += kThreads) store(y, base + c, expf(load(x, base + c) - m) * inv);
}

template <class T>
cudaError_t launch(const void* x, void* y, float* row_max, int64_t rows, int cols, cudaStream_t stream) {
  // One block per row; gridDim.x allows 2^31 - 1 rows.
  const auto* xt = static_cast<const T*>(x);
  naive_row_max_kernel<T><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(xt, row_max, cols);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  naive_exp_sum_normalise_kernel<T><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(xt, row_max,
                                                                                           static_cast<T*>(y), cols);
  return cudaGetLastError();
}

}  // namespace

int naive_softmax_forward(const void* x, void* y, float* row_max, int64_t rows, int cols, int dtype, void* stream) {
  if (rows <= 0 || cols <= 0) return 0;
  if (rows > 0x7fffffff) return static_cast<int>(cudaErrorInvalidValue);
  auto s = static_cast<cudaStream_t>(stream);
  cudaError_t e = dtype == 0   ? launch<float>(x, y, row_max, rows, cols, s)
                  : dtype == 1 ? launch<__half>(x, y, row_max, rows, cols, s)
                               : launch<__nv_bfloat16>(x, y, row_max, rows, cols, s);
  return static_cast<int>(e);
}

}  // namespace dlkb
