// CUDA kernels of dropout (forward and backward are the same map: out = keep ? in * scale : 0).
//
// The op is memory bound: one read of `in` (and of a saved mask), one write of `out` (and of the mask). A thread owns
// one Philox block of four consecutive stream positions, so one philox4x32_10 (10 rounds of two 32x32 multiplies)
// serves four elements and a warp touches 128 consecutive elements per step (coalesced at 4 elements per thread).
// Keep decisions are the integer compare of dropout_keep, bitwise identical to the cpu reference.
#include "runtime/kernel.h"
//
#include <cstdint>

#include "common/convert.cuh"
#include "common/philox.h"
#include "dropout/dropout.h"

namespace dlk::DLK_KNS {
namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kMaxBlocks = 65535;

// Generated keep bits. Thread t of the grid-stride loop owns Philox block first + t: stream positions 4(first+t) ..
// +3, which are elements pos - offset when inside [0, n). Limits: any n (int64 indexing, grid stride).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    dropout_philox_kernel(const T* in, T* out, std::uint8_t* mask_out, std::int64_t n, std::uint64_t seed,
                          std::uint64_t offset, std::uint32_t keep_threshold, float scale, std::int64_t blocks) {
  const std::uint64_t first = offset >> 2;
  for (std::int64_t b = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < blocks;
       b += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::uint64_t g = first + static_cast<std::uint64_t>(b);
    const Philox4 r = philox_block(seed, g);
#pragma unroll
    for (unsigned lane = 0; lane < 4; ++lane) {
      const std::uint64_t pos = 4 * g + lane;
      if (pos < offset || pos - offset >= static_cast<std::uint64_t>(n)) continue;
      const std::int64_t i = static_cast<std::int64_t>(pos - offset);
      const bool keep = dropout_keep(r.v[lane], keep_threshold);
      out[i] = from_float<T>(keep ? to_float(in[i]) * scale : 0.0f);
      if (mask_out) mask_out[i] = keep ? 1 : 0;
    }
  }
}

// Keep bits from a saved mask (mask_in != nullptr) or all kept (identity). A thread owns elements i, i + stride, ...
// Limits: any n.
template <typename T>
__global__ void __launch_bounds__(kThreads) dropout_masked_kernel(const T* in, T* out, const std::uint8_t* mask_in,
                                                                  std::uint8_t* mask_out, std::int64_t n, float scale) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const bool keep = mask_in == nullptr || mask_in[i] != 0;
    out[i] = from_float<T>(keep ? to_float(in[i]) * scale : 0.0f);
    if (mask_out) mask_out[i] = keep ? 1 : 0;
  }
}

unsigned grid_for(std::int64_t items) {
  std::int64_t g = (items + kThreads - 1) / kThreads;
  return static_cast<unsigned>(g < 1 ? 1 : (g > kMaxBlocks ? kMaxBlocks : g));
}

}  // namespace

void dropout(const DropoutArgs& a, const Exec& exec) {
  if (a.n == 0) return;
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* in = static_cast<const T*>(a.in);
    T* out = static_cast<T*>(a.out);
    if (a.identity || a.mask_in) {
      launch("dropout_masked_kernel", dropout_masked_kernel<T>, dim3(grid_for(a.n)), dim3(kThreads), 0, exec, in, out,
             a.identity ? nullptr : a.mask_in, a.mask_out, a.n, a.identity ? 1.0f : a.scale);
      return;
    }
    const std::uint64_t first = a.offset >> 2, last = (a.offset + static_cast<std::uint64_t>(a.n) - 1) >> 2;
    const std::int64_t blocks = static_cast<std::int64_t>(last - first + 1);
    launch("dropout_philox_kernel", dropout_philox_kernel<T>, dim3(grid_for(blocks)), dim3(kThreads), 0, exec, in, out,
           a.mask_out, a.n, a.seed, a.offset, a.keep_threshold, a.scale, blocks);
  });
}

}  // namespace dlk::DLK_KNS
