// CUDA kernels of embedding forward / backward / sparse update.
//
// Forward: a warp owns one index (one output row) at a time, its lanes copy the row's D values (coalesced). Traffic:
// one read of the gathered rows, one write of out.
// Backward, two designs (embedding_backward picks):
//   deterministic (exec.deterministic, and always for fp16/bf16, which have no usable float atomics everywhere):
//     sort the positions i by the key (idx[i], i) with a bitonic network over a power-of-two padded array in the
//     workspace (log2(n)(log2(n)+1)/2 compare-exchange launches: no CUB, so the emulator runs the same code), then a
//     warp per sorted position that starts a run of equal rows sums that run's dout rows in ascending i and writes
//     the table row once. No atomics, bitwise reproducible, same summation order as the cpu reference (fp32 here).
//   atomic (fp32, not deterministic): a warp per index adds factor * dout[i, :] into dweight with float atomicAdd.
// Overwrite mode zeroes dweight first (one pass over [V, D]); the padding row and out-of-range indices are skipped.
#include "runtime/kernel.h"
//
#include <cstdint>

#include "common/convert.cuh"
#include "embedding/embedding.h"

namespace dlk::DLK_KNS {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;
constexpr std::int64_t kMaxBlocks = 65535;

__device__ __forceinline__ std::int64_t load_index(const void* idx, bool i64, std::int64_t i) {
  return i64 ? static_cast<const std::int64_t*>(idx)[i] : static_cast<const std::int32_t*>(idx)[i];
}

unsigned grid_for(std::int64_t items, std::int64_t per_block) {
  std::int64_t g = (items + per_block - 1) / per_block;
  return static_cast<unsigned>(g < 1 ? 1 : (g > kMaxBlocks ? kMaxBlocks : g));
}

// A warp per output row i (grid stride over rows), lanes over the D columns. Out-of-range rows are written as zeros.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    embedding_gather_rows_kernel(const void* indices, bool i64, const T* weight, T* out, std::int64_t n,
                                 std::int64_t rows, std::int64_t dim) {
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * kWarpsPerBlock;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32; i < n; i += warps) {
    const std::int64_t r = load_index(indices, i64, i);
    T* dst = out + i * dim;
    if (r >= 0 && r < rows) {
      const T* src = weight + r * dim;
      for (std::int64_t d = lane; d < dim; d += 32) dst[d] = src[d];
    } else {
      for (std::int64_t d = lane; d < dim; d += 32) dst[d] = from_float<T>(0.0f);
    }
  }
}

// Zeroes `count` elements (grid stride).
template <typename T>
__global__ void __launch_bounds__(kThreads) embedding_zero_kernel(T* p, std::int64_t count) {
  for (std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < count;
       k += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    p[k] = from_float<T>(0.0f);
}

// perm[k] = k for k < n, -1 (a padding slot that sorts last) for n <= k < npad.
__global__ void __launch_bounds__(kThreads)
    embedding_iota_kernel(std::int64_t* perm, std::int64_t n, std::int64_t npad) {
  for (std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < npad;
       k += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    perm[k] = k < n ? k : -1;
}

// The sort key's row of position i: idx[i] when in range, `rows` for an out-of-range index, rows + 1 for padding.
__device__ __forceinline__ std::int64_t key_row(const void* indices, bool i64, std::int64_t rows, std::int64_t i) {
  if (i < 0) return rows + 1;
  const std::int64_t r = load_index(indices, i64, i);
  return (r >= 0 && r < rows) ? r : rows;
}

// One compare-exchange step (k, j) of the bitonic network over perm[0, npad): thread t pairs with t ^ j and orders
// the pair by (row, i), ascending where (t & k) == 0. npad is a power of two.
__global__ void __launch_bounds__(kThreads)
    embedding_bitonic_step_kernel(std::int64_t* perm, const void* indices, bool i64, std::int64_t rows,
                                  std::int64_t npad, std::int64_t k, std::int64_t j) {
  for (std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < npad;
       t += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t u = t ^ j;
    if (u <= t) continue;
    const std::int64_t a = perm[t], b = perm[u];
    const std::int64_t ra = key_row(indices, i64, rows, a), rb = key_row(indices, i64, rows, b);
    const std::int64_t ia = a < 0 ? 0 : a, ib = b < 0 ? 0 : b;
    const bool a_greater = ra > rb || (ra == rb && ia > ib);
    const bool ascending = (t & k) == 0;
    if (a_greater == ascending) {
      perm[t] = b;
      perm[u] = a;
    }
  }
}

// A warp per sorted position s (grid stride). If s starts a run of equal in-range rows r (r != padding_row), the warp
// sums the run's dout rows in ascending i, lanes over the D columns, and writes dweight[r, :] += factor * sum
// (dweight was zeroed first in overwrite mode). Other warps move on at once. Traffic: each dout row read once, each
// touched table row read and written once.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    embedding_segment_sum_kernel(const std::int64_t* perm, const void* indices, bool i64, const T* dout, T* dweight,
                                 std::int64_t n, std::int64_t rows, std::int64_t dim, std::int64_t padding_row,
                                 float factor) {
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * kWarpsPerBlock;
  for (std::int64_t s = static_cast<std::int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32; s < n; s += warps) {
    const std::int64_t r = key_row(indices, i64, rows, perm[s]);
    if (r >= rows || r == padding_row) continue;
    if (s > 0 && key_row(indices, i64, rows, perm[s - 1]) == r) continue;  // not the start of its run
    std::int64_t e = s + 1;
    while (e < n && key_row(indices, i64, rows, perm[e]) == r) ++e;
    T* dst = dweight + r * dim;
    for (std::int64_t d = lane; d < dim; d += 32) {
      float acc = 0.0f;
      for (std::int64_t k = s; k < e; ++k) acc += to_float(dout[perm[k] * dim + d]);
      dst[d] = from_float<T>(to_float(dst[d]) + factor * acc);
    }
  }
}

// A warp per index i (grid stride), lanes over D: dweight[idx[i], :] += factor * dout[i, :] with float atomics.
__global__ void __launch_bounds__(kThreads)
    embedding_atomic_scatter_kernel(const void* indices, bool i64, const float* dout, float* dweight, std::int64_t n,
                                    std::int64_t rows, std::int64_t dim, std::int64_t padding_row, float factor) {
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * kWarpsPerBlock;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32; i < n; i += warps) {
    const std::int64_t r = load_index(indices, i64, i);
    if (r < 0 || r >= rows || r == padding_row) continue;
    for (std::int64_t d = lane; d < dim; d += 32) atomicAdd(dweight + r * dim + d, factor * dout[i * dim + d]);
  }
}

}  // namespace

void embedding_forward(const EmbeddingForwardArgs& a, const Exec& exec) {
  if (a.n == 0 || a.dim == 0) return;
  const bool i64 = a.index_dtype == DType::I64;
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    launch("embedding_gather_rows_kernel", embedding_gather_rows_kernel<T>, dim3(grid_for(a.n, kWarpsPerBlock)),
           dim3(kThreads), 0, exec, a.indices, i64, static_cast<const T*>(a.weight), static_cast<T*>(a.out), a.n,
           a.rows, a.dim);
  });
}

void embedding_backward(const EmbeddingBackwardArgs& a, const Exec& exec) {
  if (a.dim == 0 || a.rows == 0) return;
  const bool i64 = a.index_dtype == DType::I64;
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    T* dw = static_cast<T*>(a.dweight);
    const T* dout = static_cast<const T*>(a.dout);
    if (!a.accumulate)
      launch("embedding_zero_kernel", embedding_zero_kernel<T>, dim3(grid_for(a.rows * a.dim, kThreads)),
             dim3(kThreads), 0, exec, dw, a.rows * a.dim);
    if (a.n == 0) return;
    if constexpr (sizeof(T) == 4) {
      if (!exec.deterministic) {
        launch("embedding_atomic_scatter_kernel", embedding_atomic_scatter_kernel, dim3(grid_for(a.n, kWarpsPerBlock)),
               dim3(kThreads), 0, exec, a.indices, i64, dout, dw, a.n, a.rows, a.dim, a.padding_row, a.factor);
        return;
      }
    }
    std::int64_t npad = 1;
    while (npad < a.n) npad <<= 1;
    auto* perm = static_cast<std::int64_t*>(exec.workspace(static_cast<std::size_t>(npad) * sizeof(std::int64_t)));
    const dim3 sort_grid(grid_for(npad, kThreads));
    launch("embedding_iota_kernel", embedding_iota_kernel, sort_grid, dim3(kThreads), 0, exec, perm, a.n, npad);
    for (std::int64_t k = 2; k <= npad; k <<= 1)
      for (std::int64_t j = k >> 1; j > 0; j >>= 1)
        launch("embedding_bitonic_step_kernel", embedding_bitonic_step_kernel, sort_grid, dim3(kThreads), 0, exec, perm,
               a.indices, i64, a.rows, npad, k, j);
    launch("embedding_segment_sum_kernel", embedding_segment_sum_kernel<T>, dim3(grid_for(a.n, kWarpsPerBlock)),
           dim3(kThreads), 0, exec, static_cast<const std::int64_t*>(perm), a.indices, i64, dout, dw, a.n, a.rows,
           a.dim, a.padding_row, a.factor);
  });
}

}  // namespace dlk::DLK_KNS
