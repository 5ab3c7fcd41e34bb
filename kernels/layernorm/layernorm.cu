// Layer norm CUDA kernels and their launchers. Built by nvcc into dlk::cuda and by the host compiler against the
// emulator into dlk::emu. Formulas in layernorm.h; fp32 math inside, storage T = float/__half/__nv_bfloat16,
// weights W = float or T.
//
// Why this shape:
//  - The forward is memory bound, so x is read once and y written once. Rows of up to 1024 elements live in one
//    warp's registers (no shared memory, no barrier); longer rows take one block each and keep the row, converted to
//    float, in shared memory. Only rows too long for shared memory (> 24576 elements) read x again (from L2).
//  - The variance is two-pass on the held values, sum((x - mean)^2), never E[x^2] - E[x]^2, which cancels badly when
//    |mean| >> std.
//  - dgamma/dbeta use no atomics: one kernel writes partial column sums per fixed chunk of rows into the context's
//    workspace, a second adds the chunks in order. The chunking depends on the shape only, so the result is bitwise
//    identical from run to run in every mode (deterministic mode needs nothing extra).
//  - row_shift_note: the statistics are taken of x - x[row][0]. The difference is exact for values within a factor
//    2 of x0 (Sterbenz) and otherwise rounded relative to itself, so a constant row gives mean = x exactly, variance 0
//    and y = beta, and a row with |mean| >> std keeps its precision: y is computed from the shifted values, never
//    from the rounded fp32 mean (the saved mean, x0 + shifted mean, is rounded once).
//  - Parameter gradients are always fp32 sums, written (or added, when accumulate) in W once at the end.
// clang-format off
#include "runtime/kernel.h"  // first: it picks the nvcc or the emulator build
// clang-format on

#include <algorithm>
#include <climits>
#include <cstdint>
#include <type_traits>

#include "common/convert.cuh"
#include "common/reduce.cuh"
#include "common/vec.cuh"
#include "layernorm/layernorm.h"

namespace dlk::DLK_KNS {
namespace {

// y = (v - m) * rs * gamma + beta for VEC consecutive columns starting at c; v and m are both shifted by the row's
// x0; gamma/beta may be null.
template <typename W, int VEC>
__device__ __forceinline__ void normalize(const float (&v)[VEC], float m, float rs, const W* gamma, const W* beta,
                                          int c, float (&o)[VEC]) {
#pragma unroll
  for (int j = 0; j < VEC; ++j) {
    float t = (v[j] - m) * rs;
    if (gamma) t *= to_float<W>(gamma[c + j]);
    if (beta) t += to_float<W>(beta[c + j]);
    o[j] = t;
  }
}

// ------------------------------------------------------------------------------------------------------ forward

// Warp per row, row in registers. A warp owns one row at a time (grid-stride over rows); lane l holds the VEC-element
// vectors l, l+32, ..., so a row holds at most 32*VEC*NV elements. No shared memory, no barrier.
// Traffic: x read once, y written once, gamma/beta per row (L1/L2 resident), mean/rstd 4 bytes each per row.
// Limits: VEC > 1 needs cols % VEC == 0 and 16-byte aligned x and y (checked by the launcher). x may equal y.
template <typename T, typename W, int VEC, int NV>
__global__ void layernorm_forward_warp_kernel(const T* x, const W* __restrict__ gamma, const W* __restrict__ beta, T* y,
                                              float* __restrict__ mean, float* __restrict__ rstd, std::int64_t rows,
                                              int cols, float eps) {
  const int lane = threadIdx.x % 32, warps = blockDim.x / 32;
  const float inv_cols = 1.0f / static_cast<float>(cols);
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * warps;
  for (std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * warps + threadIdx.x / 32; row < rows; row += stride) {
    const T* xr = x + row * cols;
    const float x0 = to_float<T>(xr[0]);  // shift: see row_shift_note
    float v[NV][VEC] = {};                // zeroed: lanes past the row end hold nothing
    float sum = 0.0f;
#pragma unroll
    for (int i = 0; i < NV; ++i) {
      const int c = (i * 32 + lane) * VEC;
      if (c < cols) {
        load_floats<T, VEC>(xr + c, v[i]);
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          v[i][j] -= x0;
          sum += v[i][j];
        }
      }
    }
    const float m = warp_sum(sum) * inv_cols;
    float sq = 0.0f;
#pragma unroll
    for (int i = 0; i < NV; ++i) {
      if ((i * 32 + lane) * VEC < cols) {
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          const float d = v[i][j] - m;
          sq += d * d;
        }
      }
    }
    const float rs = rsqrtf(warp_sum(sq) * inv_cols + eps);
    T* yr = y + row * cols;
#pragma unroll
    for (int i = 0; i < NV; ++i) {
      const int c = (i * 32 + lane) * VEC;
      if (c < cols) {
        float o[VEC];
        normalize<W, VEC>(v[i], m, rs, gamma, beta, c, o);
        store_floats<T, VEC>(yr + c, o);
      }
    }
    if (lane == 0) {
      if (mean) mean[row] = x0 + m;
      if (rstd) rstd[row] = rs;
    }
  }
}

// Block per row. A block owns one row at a time (grid-stride over rows); thread t handles the VEC-element vectors
// t, t+blockDim.x, ... in every pass, so each thread only ever reads shared memory it wrote itself.
// HOLD: the row is kept as float in dynamic shared memory (cols * 4 bytes), x read once, y written once.
// !HOLD (rows longer than the shared memory budget): x is read three times (mean, variance, output; the re-reads
// mostly hit L2). Limits: blockDim.x a multiple of 32; VEC > 1 as for the warp kernel. x may equal y.
template <typename T, typename W, int VEC, bool HOLD>
__global__ void layernorm_forward_block_kernel(const T* x, const W* __restrict__ gamma, const W* __restrict__ beta,
                                               T* y, float* __restrict__ mean, float* __restrict__ rstd,
                                               std::int64_t rows, int cols, float eps) {
  DLK_DYNAMIC_SHARED(float, xs);
  const int nvec = cols / VEC;
  const float inv_cols = 1.0f / static_cast<float>(cols);
  for (std::int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * cols;
    const float x0 = to_float<T>(xr[0]);  // shift: see row_shift_note
    float sum = 0.0f;
    for (int k = threadIdx.x; k < nvec; k += blockDim.x) {
      float v[VEC];
      load_floats<T, VEC>(xr + k * VEC, v);
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        v[j] -= x0;
        sum += v[j];
        if constexpr (HOLD) xs[k * VEC + j] = v[j];
      }
    }
    const float m = block_sum(sum) * inv_cols;
    float sq = 0.0f;
    for (int k = threadIdx.x; k < nvec; k += blockDim.x) {
      float v[VEC];
      if constexpr (HOLD) {
#pragma unroll
        for (int j = 0; j < VEC; ++j) v[j] = xs[k * VEC + j];
      } else {
        load_floats<T, VEC>(xr + k * VEC, v);
#pragma unroll
        for (int j = 0; j < VEC; ++j) v[j] -= x0;
      }
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const float d = v[j] - m;
        sq += d * d;
      }
    }
    const float rs = rsqrtf(block_sum(sq) * inv_cols + eps);
    T* yr = y + row * cols;
    for (int k = threadIdx.x; k < nvec; k += blockDim.x) {
      float v[VEC], o[VEC];
      if constexpr (HOLD) {
#pragma unroll
        for (int j = 0; j < VEC; ++j) v[j] = xs[k * VEC + j];
      } else {
        load_floats<T, VEC>(xr + k * VEC, v);
#pragma unroll
        for (int j = 0; j < VEC; ++j) v[j] -= x0;
      }
      normalize<W, VEC>(v, m, rs, gamma, beta, k * VEC, o);
      store_floats<T, VEC>(yr + k * VEC, o);
    }
    if (threadIdx.x == 0) {
      if (mean) mean[row] = x0 + m;
      if (rstd) rstd[row] = rs;
    }
  }
}

// ----------------------------------------------------------------------------------------------------- backward

// dx, warp per row: a warp owns one row at a time; lane l holds x-hat and g = dy*gamma for vectors l, l+32, ... in
// registers (2*VEC*NV floats), reduces mean(g) and mean(g*x-hat) with shuffles, then writes dx.
// Traffic: x and dy read once, dx written once. Limits as for the forward warp kernel; dx may equal dy.
template <typename T, typename W, int VEC, int NV>
__global__ void layernorm_backward_dx_warp_kernel(const T* dy, const T* __restrict__ x, const float* __restrict__ mean,
                                                  const float* __restrict__ rstd, const W* __restrict__ gamma, T* dx,
                                                  std::int64_t rows, int cols) {
  const int lane = threadIdx.x % 32, warps = blockDim.x / 32;
  const float inv_cols = 1.0f / static_cast<float>(cols);
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * warps;
  for (std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * warps + threadIdx.x / 32; row < rows; row += stride) {
    const std::int64_t base = row * cols;
    const float m = mean[row], rs = rstd[row];
    float xh[NV][VEC] = {}, g[NV][VEC] = {};
    float sg = 0.0f, sgx = 0.0f;
#pragma unroll
    for (int i = 0; i < NV; ++i) {
      const int c = (i * 32 + lane) * VEC;
      if (c < cols) {
        load_floats<T, VEC>(x + base + c, xh[i]);
        load_floats<T, VEC>(dy + base + c, g[i]);
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          xh[i][j] = (xh[i][j] - m) * rs;
          if (gamma) g[i][j] *= to_float<W>(gamma[c + j]);
          sg += g[i][j];
          sgx += g[i][j] * xh[i][j];
        }
      }
    }
    const float mg = warp_sum(sg) * inv_cols, mgx = warp_sum(sgx) * inv_cols;
#pragma unroll
    for (int i = 0; i < NV; ++i) {
      const int c = (i * 32 + lane) * VEC;
      if (c < cols) {
        float o[VEC];
#pragma unroll
        for (int j = 0; j < VEC; ++j) o[j] = rs * (g[i][j] - mg - xh[i][j] * mgx);
        store_floats<T, VEC>(dx + base + c, o);
      }
    }
  }
}

// dx, block per row: a block owns one row at a time; pass 1 reads x and dy and reduces mean(g) and mean(g*x-hat)
// over the block, pass 2 reads them again (L2-resident: a row is at most a few hundred KiB) and writes dx. Thread t
// handles the same vectors in both passes, so dx may equal dy. Limits: blockDim.x a multiple of 32, any cols.
template <typename T, typename W, int VEC>
__global__ void layernorm_backward_dx_block_kernel(const T* dy, const T* __restrict__ x, const float* __restrict__ mean,
                                                   const float* __restrict__ rstd, const W* __restrict__ gamma, T* dx,
                                                   std::int64_t rows, int cols) {
  const int nvec = cols / VEC;
  const float inv_cols = 1.0f / static_cast<float>(cols);
  for (std::int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const std::int64_t base = row * cols;
    const float m = mean[row], rs = rstd[row];
    float sg = 0.0f, sgx = 0.0f;
    for (int k = threadIdx.x; k < nvec; k += blockDim.x) {
      float xv[VEC], gv[VEC];
      load_floats<T, VEC>(x + base + k * VEC, xv);
      load_floats<T, VEC>(dy + base + k * VEC, gv);
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        if (gamma) gv[j] *= to_float<W>(gamma[k * VEC + j]);
        sg += gv[j];
        sgx += gv[j] * (xv[j] - m) * rs;
      }
    }
    const float mg = block_sum(sg) * inv_cols;
    const float mgx = block_sum(sgx) * inv_cols;
    for (int k = threadIdx.x; k < nvec; k += blockDim.x) {
      float xv[VEC], gv[VEC], o[VEC];
      load_floats<T, VEC>(x + base + k * VEC, xv);
      load_floats<T, VEC>(dy + base + k * VEC, gv);
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        if (gamma) gv[j] *= to_float<W>(gamma[k * VEC + j]);
        o[j] = rs * (gv[j] - mg - (xv[j] - m) * rs * mgx);
      }
      store_floats<T, VEC>(dx + base + k * VEC, o);
    }
  }
}

constexpr int kParamTileCols = 32;  // columns per partial-sum block (one warp-wide coalesced segment per row)
constexpr int kParamRowLanes = 8;   // row lanes per partial-sum block: 256 threads

// dgamma/dbeta, step 1: a block owns the tile (32 consecutive columns) x (one chunk of rows_per_chunk rows); blocks
// are numbered chunk-major, blockIdx.x = chunk * col_tiles + tile. Thread (lane ry, column cx) sums rows ry, ry+8, ...
// of its column in fp32; the 8 row lanes are added in a fixed order through shared memory and the tile's sums are
// written to partial_g/partial_b[chunk * cols + col]. Traffic: x and dy read once (32 columns per warp access),
// mean/rstd broadcast per row, 8 bytes written per (chunk, column). Limits: blockDim.x == 256.
template <typename T>
__global__ void layernorm_backward_params_partial_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                                         const float* __restrict__ mean, const float* __restrict__ rstd,
                                                         float* partial_g, float* partial_b, std::int64_t rows,
                                                         int cols, std::int64_t rows_per_chunk, int col_tiles) {
  DLK_SHARED_2D(float, tile_g, kParamRowLanes, kParamTileCols);
  DLK_SHARED_2D(float, tile_b, kParamRowLanes, kParamTileCols);
  const int cx = threadIdx.x % kParamTileCols, ry = threadIdx.x / kParamTileCols;
  const std::int64_t chunk = blockIdx.x / col_tiles;
  const int col = static_cast<int>(blockIdx.x % col_tiles) * kParamTileCols + cx;
  const std::int64_t r0 = chunk * rows_per_chunk, r1 = std::min(rows, r0 + rows_per_chunk);
  float sg = 0.0f, sb = 0.0f;
  if (col < cols) {
    for (std::int64_t r = r0 + ry; r < r1; r += kParamRowLanes) {
      const std::int64_t i = r * cols + col;
      const float d = to_float<T>(dy[i]);
      sg += d * (to_float<T>(x[i]) - mean[r]) * rstd[r];
      sb += d;
    }
  }
  tile_g[ry][cx] = sg;
  tile_b[ry][cx] = sb;
  __syncthreads();
  if (ry == 0 && col < cols) {
    for (int k = 1; k < kParamRowLanes; ++k) {
      sg += tile_g[k][cx];
      sb += tile_b[k][cx];
    }
    partial_g[chunk * cols + col] = sg;
    partial_b[chunk * cols + col] = sb;
  }
}

// dgamma/dbeta, step 2: one thread owns one column and adds the chunks' partials in chunk order (fixed, hence
// deterministic), then writes or adds into dgamma/dbeta (either may be null). chunks == 0 (no rows) writes zeros.
// Traffic: 8 bytes per (chunk, column) read, coalesced across columns.
template <typename W>
__global__ void layernorm_backward_params_final_kernel(const float* __restrict__ partial_g,
                                                       const float* __restrict__ partial_b, std::int64_t chunks,
                                                       int cols, W* __restrict__ dgamma, W* __restrict__ dbeta,
                                                       bool accumulate) {
  const int col = blockIdx.x * blockDim.x + threadIdx.x;
  if (col >= cols) return;
  float sg = 0.0f, sb = 0.0f;
  for (std::int64_t k = 0; k < chunks; ++k) {
    sg += partial_g[k * cols + col];
    sb += partial_b[k * cols + col];
  }
  if (dgamma) dgamma[col] = from_float<W>(accumulate ? to_float<W>(dgamma[col]) + sg : sg);
  if (dbeta) dbeta[col] = from_float<W>(accumulate ? to_float<W>(dbeta[col]) + sb : sb);
}

// ----------------------------------------------------------------------------------------------------- launchers

constexpr int kWarpPathMaxCols = 1024;        // longest row a warp holds in registers (32 floats per lane)
constexpr int kScalarWarpMaxCols = 256;       // unvectorisable rows up to this stay warp per row (8 per lane)
constexpr int kForwardSmemBytes = 96 * 1024;  // row held in shared memory up to 24576 floats (sm_80 and sm_90)
constexpr int kWarpsPerBlock = 4;             // warp-per-row kernels: 4 rows per 128-thread block
constexpr std::int64_t kMaxBlocks = 1 << 20;  // grid-stride beyond this

inline bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

inline int pow2_at_least(std::int64_t n) {
  int p = 1;
  while (p < n) p *= 2;
  return p;
}

// Calls f(std::integral_constant<int, N>{}) for N = nv in {1, 2, 4, 8}.
template <typename F>
void with_nv(int nv, F&& f) {
  switch (nv) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 8: f(std::integral_constant<int, 8>{}); break;
    default: fail(DLK_ERROR_INTERNAL, "layernorm: no warp kernel for ", nv, " vectors per lane");
  }
}

// Calls f(W{}) with the weight storage type: float, or T (validated to equal the dtype of x).
template <typename T, typename F>
void with_weight_type(DType wt, F&& f) {
  if (wt == DType::F32)
    f(float{});
  else
    f(T{});
}

// Warp path when the row fits a warp's registers: 16-byte vectors when the rows allow them, else scalars for short
// rows. Returns VEC (elements per vector) and NV (vectors per lane), or nv = 0 for the block path.
struct WarpShape {
  int vec = 1, nv = 0;
};
template <typename T>
WarpShape warp_shape(int cols, bool vectorisable) {
  constexpr int kVec = 16 / sizeof(T);
  WarpShape s;
  if (vectorisable && cols <= kWarpPathMaxCols) {
    s.vec = kVec;
    s.nv = pow2_at_least((cols / kVec + 31) / 32);
  } else if (cols <= kScalarWarpMaxCols) {
    s.vec = 1;
    s.nv = pow2_at_least((cols + 31) / 32);
  }
  return s;
}

// Block size for the block-per-row kernels: about 4 vectors per thread, 128 to 1024 threads.
inline int block_threads(int nvec) { return std::clamp(pow2_at_least((nvec + 3) / 4), 128, 1024); }

template <typename T, typename W>
void forward_typed(const LayerNormForwardArgs& a, const Exec& exec) {
  constexpr int kVec = 16 / sizeof(T);
  const int cols = static_cast<int>(a.cols);
  const T* x = static_cast<const T*>(a.x);
  T* y = static_cast<T*>(a.y);
  const W* gamma = static_cast<const W*>(a.gamma);
  const W* beta = static_cast<const W*>(a.beta);
  const bool vectorisable = cols % kVec == 0 && aligned16(x) && aligned16(y);
  // Rows up to 1024 (256 unvectorisable): a warp per row, no barriers, many rows in flight per SM. Longer rows:
  // a block per row, so a 16384-wide row is spread over 1024 threads instead of 512 registers per lane.
  const WarpShape ws = warp_shape<T>(cols, vectorisable);
  if (ws.nv > 0) {
    const dim3 grid(static_cast<unsigned>(std::min(kMaxBlocks, (a.rows + kWarpsPerBlock - 1) / kWarpsPerBlock)));
    const dim3 block(32 * kWarpsPerBlock);
    with_nv(ws.nv, [&](auto nv) {
      constexpr int NV = decltype(nv)::value;
      if (ws.vec == kVec) {
        // Only shapes the launcher can pick are instantiated (16-bit rows stop at 4 vectors per lane).
        if constexpr (32 * kVec * NV <= kWarpPathMaxCols)
          launch("layernorm_forward_warp_kernel", layernorm_forward_warp_kernel<T, W, kVec, NV>, grid, block, 0, exec,
                 x, gamma, beta, y, a.mean, a.rstd, a.rows, cols, a.eps);
      } else {
        launch("layernorm_forward_warp_kernel", layernorm_forward_warp_kernel<T, W, 1, NV>, grid, block, 0, exec, x,
               gamma, beta, y, a.mean, a.rstd, a.rows, cols, a.eps);
      }
    });
    return;
  }
  const int vec = vectorisable ? kVec : 1;
  const dim3 grid(static_cast<unsigned>(std::min(kMaxBlocks, a.rows)));
  const dim3 block(block_threads(cols / vec));
  const std::size_t smem = static_cast<std::size_t>(cols) * sizeof(float);
  const bool hold = smem <= static_cast<std::size_t>(kForwardSmemBytes);
  auto go = [&](auto kernel, std::size_t bytes) {
    launch("layernorm_forward_block_kernel", kernel, grid, block, bytes, exec, x, gamma, beta, y, a.mean, a.rstd,
           a.rows, cols, a.eps);
  };
  if (vectorisable) {
    if (hold)
      go(layernorm_forward_block_kernel<T, W, kVec, true>, smem);
    else
      go(layernorm_forward_block_kernel<T, W, kVec, false>, 0);
  } else {
    if (hold)
      go(layernorm_forward_block_kernel<T, W, 1, true>, smem);
    else
      go(layernorm_forward_block_kernel<T, W, 1, false>, 0);
  }
}

template <typename T, typename W>
void backward_dx(const LayerNormBackwardArgs& a, const Exec& exec) {
  constexpr int kVec = 16 / sizeof(T);
  const int cols = static_cast<int>(a.cols);
  const T* x = static_cast<const T*>(a.x);
  const T* dy = static_cast<const T*>(a.dy);
  T* dx = static_cast<T*>(a.dx);
  const W* gamma = static_cast<const W*>(a.gamma);
  const bool vectorisable = cols % kVec == 0 && aligned16(x) && aligned16(dy) && aligned16(dx);
  // Same split as the forward: the warp kernel holds x-hat and g (2 x 32 floats per lane at most); longer rows
  // re-read the row rather than hold it, since the backward's row would need twice the forward's shared memory.
  const WarpShape ws = warp_shape<T>(cols, vectorisable);
  if (ws.nv > 0) {
    const dim3 grid(static_cast<unsigned>(std::min(kMaxBlocks, (a.rows + kWarpsPerBlock - 1) / kWarpsPerBlock)));
    const dim3 block(32 * kWarpsPerBlock);
    with_nv(ws.nv, [&](auto nv) {
      constexpr int NV = decltype(nv)::value;
      if (ws.vec == kVec) {
        // Only shapes the launcher can pick are instantiated (16-bit rows stop at 4 vectors per lane).
        if constexpr (32 * kVec * NV <= kWarpPathMaxCols)
          launch("layernorm_backward_dx_warp_kernel", layernorm_backward_dx_warp_kernel<T, W, kVec, NV>, grid, block, 0,
                 exec, dy, x, a.mean, a.rstd, gamma, dx, a.rows, cols);
      } else {
        launch("layernorm_backward_dx_warp_kernel", layernorm_backward_dx_warp_kernel<T, W, 1, NV>, grid, block, 0,
               exec, dy, x, a.mean, a.rstd, gamma, dx, a.rows, cols);
      }
    });
    return;
  }
  const int vec = vectorisable ? kVec : 1;
  const dim3 grid(static_cast<unsigned>(std::min(kMaxBlocks, a.rows)));
  const dim3 block(block_threads(cols / vec));
  if (vectorisable)
    launch("layernorm_backward_dx_block_kernel", layernorm_backward_dx_block_kernel<T, W, kVec>, grid, block, 0, exec,
           dy, x, a.mean, a.rstd, gamma, dx, a.rows, cols);
  else
    launch("layernorm_backward_dx_block_kernel", layernorm_backward_dx_block_kernel<T, W, 1>, grid, block, 0, exec, dy,
           x, a.mean, a.rstd, gamma, dx, a.rows, cols);
}

template <typename T, typename W>
void backward_params(const LayerNormBackwardArgs& a, const Exec& exec) {
  const int cols = static_cast<int>(a.cols);
  W* dgamma = static_cast<W*>(a.dgamma);
  W* dbeta = static_cast<W*>(a.dbeta);
  const dim3 final_grid(static_cast<unsigned>((cols + 255) / 256)), final_block(256);
  if (a.rows == 0) {  // empty sums: zeros, or nothing to add
    if (!a.accumulate)
      launch("layernorm_backward_params_final_kernel", layernorm_backward_params_final_kernel<W>, final_grid,
             final_block, 0, exec, static_cast<const float*>(nullptr), static_cast<const float*>(nullptr),
             std::int64_t{0}, cols, dgamma, dbeta, false);
    return;
  }
  // About 1024 partial blocks whatever the width (enough to fill any current GPU), each chunk at least 32 rows so a
  // thread sums at least 4 of them. The chunking is a function of (rows, cols) only: the result is reproducible.
  const std::int64_t col_tiles = (cols + kParamTileCols - 1) / kParamTileCols;
  const std::int64_t target_chunks = std::max<std::int64_t>(1, 1024 / col_tiles);
  const std::int64_t rows_per_chunk = std::max<std::int64_t>(32, (a.rows + target_chunks - 1) / target_chunks);
  const std::int64_t chunks = (a.rows + rows_per_chunk - 1) / rows_per_chunk;
  float* partial_g = static_cast<float*>(exec.workspace(2 * static_cast<std::size_t>(chunks * cols) * sizeof(float)));
  float* partial_b = partial_g + chunks * cols;
  launch("layernorm_backward_params_partial_kernel", layernorm_backward_params_partial_kernel<T>,
         dim3(static_cast<unsigned>(chunks * col_tiles)), dim3(kParamTileCols * kParamRowLanes), 0, exec,
         static_cast<const T*>(a.dy), static_cast<const T*>(a.x), a.mean, a.rstd, partial_g, partial_b, a.rows, cols,
         rows_per_chunk, static_cast<int>(col_tiles));
  launch("layernorm_backward_params_final_kernel", layernorm_backward_params_final_kernel<W>, final_grid, final_block,
         0, exec, static_cast<const float*>(partial_g), static_cast<const float*>(partial_b), chunks, cols, dgamma,
         dbeta, static_cast<bool>(a.accumulate));
}

void check_cols(std::int64_t cols, const char* op) {
  if (cols > INT_MAX)
    fail(DLK_ERROR_OVERFLOW, op, ": rows of ", cols, " elements exceed the kernels' limit of ", INT_MAX);
}

}  // namespace

void layernorm_forward(const LayerNormForwardArgs& a, const Exec& exec) {
  check_cols(a.cols, "layernorm_forward");
  if (a.rows == 0) return;
  with_float_type(a.dtype, [&](auto xt) {
    using T = decltype(xt);
    with_weight_type<T>(a.weight_dtype, [&](auto wt) { forward_typed<T, decltype(wt)>(a, exec); });
  });
}

void layernorm_backward(const LayerNormBackwardArgs& a, const Exec& exec) {
  check_cols(a.cols, "layernorm_backward");
  with_float_type(a.dtype, [&](auto xt) {
    using T = decltype(xt);
    with_weight_type<T>(a.weight_dtype, [&](auto wt) {
      using W = decltype(wt);
      // Parameter gradients first: dx may alias dy, which they read.
      if (a.dgamma || a.dbeta) backward_params<T, W>(a, exec);
      if (a.dx && a.rows > 0) backward_dx<T, W>(a, exec);
    });
  });
}

}  // namespace dlk::DLK_KNS
