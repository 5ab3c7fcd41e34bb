// Grid-stride launches: the number of blocks for n items, and each thread's first index and stride. A kernel that
// loops `for (i = global_id(); i < n; i += grid_step())` is correct for any grid, so launchers cap the block count
// (kMaxGridBlocks by default) instead of failing past the hardware's grid limit on huge tensors.
#pragma once

#include <cstdint>

#include "runtime/kernel.h"

namespace dlk::DLK_KNS {

constexpr std::int64_t kMaxGridBlocks = 1 << 20;

// Blocks of `threads` threads covering n items: at least 1, at most max_blocks.
inline unsigned grid_blocks(std::int64_t n, int threads, std::int64_t max_blocks = kMaxGridBlocks) {
  std::int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  return static_cast<unsigned>(b < max_blocks ? b : max_blocks);
}

__device__ __forceinline__ std::int64_t global_id() {
  return static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ std::int64_t grid_step() { return static_cast<std::int64_t>(gridDim.x) * blockDim.x; }

}  // namespace dlk::DLK_KNS
