// Warp and block reductions used by the row-wise kernels (softmax, layer norm, losses). One copy of each idea.
// Block reductions need blockDim.x to be a multiple of 32 (at most 1024) and every thread of the block to call them.
#pragma once

#include "runtime/kernel.h"

namespace dlk::DLK_KNS {

constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

// Sum over the block, returned to every thread. Uses 32 floats of shared memory; safe to call repeatedly.
__device__ __forceinline__ float block_sum(float v) {
  DLK_SHARED(float, partial, 32);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_sum(v);
  __syncthreads();  // the previous call's readers are done with `partial`
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < warps ? partial[lane] : 0.0f;
  return warp_sum(v);
}

// Max over the block, returned to every thread.
__device__ __forceinline__ float block_max(float v) {
  DLK_SHARED(float, partial, 32);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < warps ? partial[lane] : -INFINITY;
  return warp_max(v);
}

}  // namespace dlk::DLK_KNS
