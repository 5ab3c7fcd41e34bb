// Batch norm CUDA kernels and their launchers. Built by nvcc into dlk::cuda and by the host compiler against the
// emulator into dlk::emu. Formulas and the [n, c, l] view in batchnorm.h; fp32 math, storage T = float / __half /
// __nv_bfloat16, parameters and statistics float32.
//
// Why this shape:
//  - Per-channel sums over n * l elements use no atomics: batchnorm_partial_* kernels write one partial sum per
//    (chunk of rows of n, channel) into the context workspace, and one thread per channel adds its chunks in chunk
//    order (batchnorm_*_finalize_kernel). The chunking depends on the shape only, so every mode is bitwise
//    deterministic (deterministic mode needs nothing extra), as layer norm's dgamma.
//  - The forward statistics take one pass over x: sums of d = x - K and d^2 with K = the channel's first element
//    (a shift that keeps var = E[d^2] - E[d]^2 from cancelling when |mean| >> std), then a normalising pass: two
//    reads of x, one write of y. The backward: one pass for sum(dy) and sum(dy * (x - mean)), one for dx.
//  - Elementwise passes are grid-stride over the flat tensor with the per-channel coefficients (mean, invstd*gamma,
//    beta; or the backward's) precomputed in the workspace; the channel of each element is tracked incrementally
//    (RowWalk / ChannelWalk), so no kernel divides per element.
// Limits: any sizes (int64 indexing). [N, C] inputs (l == 1) reduce with a stride of C elements: correct, not
// coalesced (one block per (chunk, channel) reads a column).
// clang-format off
#include "runtime/kernel.h"  // first: it picks the nvcc or the emulator build
// clang-format on

#include <cstdint>

#include "batchnorm/batchnorm.h"
#include "common/convert.cuh"
#include "common/grid.cuh"
#include "common/reduce.cuh"

namespace dlk::DLK_KNS {
namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kChunkElems = 16384;  // target elements per (chunk, channel) block
// Elementwise passes stop at about one full wave of resident threads (an H100 holds 132 x 2048) and stride on; the
// emulator build caps lower so the tests walk the strided path (ChannelWalk::next) on small tensors too.
#if defined(DLK_EMU)
constexpr std::int64_t kElementwiseMaxBlocks = 16;
#else
constexpr std::int64_t kElementwiseMaxBlocks = 1024;
#endif

unsigned elementwise_blocks(std::int64_t n) {
  const std::int64_t b = grid_blocks(n, kThreads);
  return static_cast<unsigned>(b < kElementwiseMaxBlocks ? b : kElementwiseMaxBlocks);
}

// (row, col) of a flat index over rows of `l` columns, advanced by a constant stride with no division in the loop
// (64-bit divisions cost more than the memory traffic of these kernels).
struct RowWalk {
  std::int64_t row, col, drow, dcol, l;
  __device__ __forceinline__ RowWalk(std::int64_t start, std::int64_t stride, std::int64_t l_) : l(l_) {
    row = start / l_;
    col = start - row * l_;
    drow = stride / l_;
    dcol = stride - drow * l_;
  }
  __device__ __forceinline__ void next() {
    row += drow;
    col += dcol;
    if (col >= l) {
      col -= l;
      ++row;
    }
  }
};

// The channel ((e / l) % c) of a flat index of the [n, c, l] view, advanced by a constant stride without divisions.
struct ChannelWalk {
  std::int64_t col, ch, dcol, dch, l, c;
  __device__ __forceinline__ ChannelWalk(std::int64_t e, std::int64_t stride, std::int64_t l_, std::int64_t c_)
      : l(l_), c(c_) {
    const std::int64_t row = e / l_, drow = stride / l_;
    col = e - row * l_;
    ch = row % c_;
    dcol = stride - drow * l_;
    dch = drow % c_;
  }
  __device__ __forceinline__ void next() {
    col += dcol;
    ch += dch;
    if (col >= l) {
      col -= l;
      ++ch;
    }
    if (ch >= c) ch -= c;  // ch < 2c here: dch < c and one carry
  }
};

// How the rows (dim n) of every channel are cut into chunks; a function of the shape only.
struct Chunks {
  std::int64_t rows_per_chunk, count;
};
Chunks chunks_for(std::int64_t n, std::int64_t l) {
  Chunks ch;
  std::int64_t per = l > 0 ? (kChunkElems + l - 1) / l : n;
  if (per < 1) per = 1;
  ch.rows_per_chunk = per;
  ch.count = (n + per - 1) / per;
  if (ch.count < 1) ch.count = 1;
  return ch;
}

// Forward statistics, step 1: a block owns (chunk, channel) = blockIdx.x = chunk * c + k (grid-stride), its threads
// stride over the chunk's rows * l elements summing d = x - K and d * d in fp32; two block reductions, and thread 0
// writes partial[2 * (chunk * c + k) + {0, 1}]. Traffic: x read once. blockDim a multiple of 32.
template <typename T>
__global__ void batchnorm_partial_stats_kernel(const T* __restrict__ x, float* __restrict__ partial, std::int64_t n,
                                               std::int64_t c, std::int64_t l, std::int64_t rows_per_chunk,
                                               std::int64_t chunks) {
  for (std::int64_t b = blockIdx.x; b < chunks * c; b += gridDim.x) {
    const std::int64_t k = b % c, chunk = b / c;
    const std::int64_t r0 = chunk * rows_per_chunk;
    const std::int64_t r1 = r0 + rows_per_chunk < n ? r0 + rows_per_chunk : n;
    const std::int64_t elems = r0 < r1 ? (r1 - r0) * l : 0;
    const float shift = (n > 0 && l > 0) ? to_float<T>(x[k * l]) : 0.0f;
    float s = 0.0f, q = 0.0f;
    RowWalk w(threadIdx.x, blockDim.x, l > 0 ? l : 1);
    for (std::int64_t e = threadIdx.x; e < elems; e += blockDim.x, w.next()) {
      const float d = to_float<T>(x[((r0 + w.row) * c + k) * l + w.col]) - shift;
      s += d;
      q += d * d;
    }
    s = block_sum(s);
    q = block_sum(q);
    if (threadIdx.x == 0) {
      partial[2 * b] = s;
      partial[2 * b + 1] = q;
    }
  }
}

// Forward statistics, step 2: a thread owns a channel, adds its chunks' partials in chunk order, and writes the
// normalising coefficients coef[4k..4k+3] = (shift K, mean - K, invstd * gamma, beta), save_mean/save_invstd and the
// running stats. y is computed as ((x - K) - (mean - K)) * scale + beta: x - K is exact for x within a factor 2 of
// K, so a channel whose std is tiny next to |mean| keeps its precision (the fp32-rounded mean is never subtracted).
// Eval (partial null): K = 0, mean and var from the running stats.
template <typename T>
__global__ void batchnorm_forward_finalize_kernel(const T* __restrict__ x, const float* __restrict__ partial,
                                                  std::int64_t chunks, std::int64_t c, std::int64_t l,
                                                  std::int64_t count, const float* __restrict__ gamma,
                                                  const float* __restrict__ beta, float* running_mean,
                                                  float* running_var, float* __restrict__ save_mean,
                                                  float* __restrict__ save_invstd, float momentum, float eps,
                                                  float* __restrict__ coef) {
  const std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= c) return;
  float shift = 0.0f, mean_d, var;
  if (partial) {
    float s = 0.0f, q = 0.0f;
    for (std::int64_t ch = 0; ch < chunks; ++ch) {
      s += partial[2 * (ch * c + k)];
      q += partial[2 * (ch * c + k) + 1];
    }
    const float inv_n = 1.0f / static_cast<float>(count);
    mean_d = s * inv_n;
    shift = to_float<T>(x[k * l]);
    var = fmaxf(q * inv_n - mean_d * mean_d, 0.0f);
  } else {
    mean_d = running_mean[k];
    var = running_var[k];
  }
  const float mean = shift + mean_d;
  const float invstd = 1.0f / sqrtf(var + eps);
  if (partial) {
    if (save_mean) save_mean[k] = mean;
    if (save_invstd) save_invstd[k] = invstd;
    if (running_mean) {
      const float unbiased = var * static_cast<float>(count) / static_cast<float>(count - 1);
      running_mean[k] = (1.0f - momentum) * running_mean[k] + momentum * mean;
      running_var[k] = (1.0f - momentum) * running_var[k] + momentum * unbiased;
    }
  }
  coef[4 * k] = shift;
  coef[4 * k + 1] = mean_d;
  coef[4 * k + 2] = invstd * (gamma ? gamma[k] : 1.0f);
  coef[4 * k + 3] = beta ? beta[k] : 0.0f;
}

// Forward normalisation: a thread owns one element (grid-stride): y = ((x - K) - (mean - K)) * scale + beta.
template <typename T>
__global__ void batchnorm_normalize_kernel(const T* x, T* y, const float* __restrict__ coef, std::int64_t c,
                                           std::int64_t l, std::int64_t total) {
  const std::int64_t start = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  ChannelWalk w(start, stride, l, c);
  for (std::int64_t e = start; e < total; e += stride, w.next()) {
    const std::int64_t k = w.ch;
    y[e] = from_float<T>(((to_float<T>(x[e]) - coef[4 * k]) - coef[4 * k + 1]) * coef[4 * k + 2] + coef[4 * k + 3]);
  }
}

// Backward, step 0: a thread owns a channel and resolves (mean, invstd) into stat[2k..2k+1] from the saved stats
// (training) or the running stats and eps (eval).
__global__ void batchnorm_backward_stats_kernel(const float* __restrict__ mean, const float* __restrict__ invstd,
                                                const float* __restrict__ var, float eps, std::int64_t c,
                                                float* __restrict__ stat) {
  const std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= c) return;
  stat[2 * k] = mean[k];
  stat[2 * k + 1] = var ? 1.0f / sqrtf(var[k] + eps) : invstd[k];
}

// Backward, step 1: as batchnorm_partial_stats_kernel, summing dy and dy * (x - mean) per (chunk, channel).
template <typename T>
__global__ void batchnorm_partial_grads_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                               const float* __restrict__ stat, float* __restrict__ partial,
                                               std::int64_t n, std::int64_t c, std::int64_t l,
                                               std::int64_t rows_per_chunk, std::int64_t chunks) {
  for (std::int64_t b = blockIdx.x; b < chunks * c; b += gridDim.x) {
    const std::int64_t k = b % c, chunk = b / c;
    const std::int64_t r0 = chunk * rows_per_chunk;
    const std::int64_t r1 = r0 + rows_per_chunk < n ? r0 + rows_per_chunk : n;
    const std::int64_t elems = r0 < r1 ? (r1 - r0) * l : 0;
    const float mean = stat[2 * k];
    float s = 0.0f, q = 0.0f;
    RowWalk w(threadIdx.x, blockDim.x, l > 0 ? l : 1);
    for (std::int64_t e = threadIdx.x; e < elems; e += blockDim.x, w.next()) {
      const std::int64_t idx = ((r0 + w.row) * c + k) * l + w.col;
      const float g = to_float<T>(dy[idx]);
      s += g;
      q += g * (to_float<T>(x[idx]) - mean);
    }
    s = block_sum(s);
    q = block_sum(q);
    if (threadIdx.x == 0) {
      partial[2 * b] = s;
      partial[2 * b + 1] = q;
    }
  }
}

// Backward, step 2: a thread owns a channel, adds its chunks in order, writes dgamma/dbeta (when non-null) and the
// dx coefficients coef[3k..3k+2] = (gamma * invstd, sum(dy) / count, sum(dy * xhat) / count) (the last two 0 in
// eval mode, where dx = gamma * invstd * dy).
__global__ void batchnorm_backward_finalize_kernel(const float* __restrict__ partial, std::int64_t chunks,
                                                   std::int64_t c, std::int64_t count, const float* __restrict__ stat,
                                                   const float* __restrict__ gamma, bool training,
                                                   float* __restrict__ dgamma, float* __restrict__ dbeta,
                                                   float* __restrict__ coef) {
  const std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= c) return;
  const float invstd = stat[2 * k + 1];
  float s = 0.0f, q = 0.0f;
  if (partial) {
    for (std::int64_t ch = 0; ch < chunks; ++ch) {
      s += partial[2 * (ch * c + k)];
      q += partial[2 * (ch * c + k) + 1];
    }
  }
  q *= invstd;  // sum(dy * xhat)
  if (dgamma) dgamma[k] = q;
  if (dbeta) dbeta[k] = s;
  const float inv_n = count > 0 ? 1.0f / static_cast<float>(count) : 0.0f;
  coef[3 * k] = invstd * (gamma ? gamma[k] : 1.0f);
  coef[3 * k + 1] = training ? s * inv_n : 0.0f;
  coef[3 * k + 2] = training ? q * inv_n : 0.0f;
}

// Backward dx: a thread owns one element: dx = g * (dy - k1 - xhat * k2), xhat = (x - mean) * invstd.
template <typename T>
__global__ void batchnorm_backward_dx_kernel(const T* dy, const T* __restrict__ x, const float* __restrict__ stat,
                                             const float* __restrict__ coef, T* dx, std::int64_t c, std::int64_t l,
                                             std::int64_t total) {
  const std::int64_t start = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  ChannelWalk w(start, stride, l, c);
  for (std::int64_t e = start; e < total; e += stride, w.next()) {
    const std::int64_t k = w.ch;
    const float xhat = (to_float<T>(x[e]) - stat[2 * k]) * stat[2 * k + 1];
    dx[e] = from_float<T>(coef[3 * k] * (to_float<T>(dy[e]) - coef[3 * k + 1] - xhat * coef[3 * k + 2]));
  }
}

}  // namespace

void batchnorm_forward(const BatchNormForwardArgs& a, const Exec& exec) {
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* x = static_cast<const T*>(a.x);
    const Chunks ch = chunks_for(a.n, a.l);
    const std::int64_t c = a.c, total = a.n * a.c * a.l;
    const std::size_t partial_floats = a.training ? static_cast<std::size_t>(2 * ch.count * c) : 0;
    float* ws = static_cast<float*>(exec.workspace((partial_floats + 4 * static_cast<std::size_t>(c)) * sizeof(float)));
    float* partial = a.training ? ws : nullptr;
    float* coef = ws + partial_floats;
    if (a.training)
      launch("batchnorm_partial_stats_kernel", batchnorm_partial_stats_kernel<T>, dim3(grid_blocks(ch.count * c, 1)),
             dim3(kThreads), 0, exec, x, partial, a.n, c, a.l, ch.rows_per_chunk, ch.count);
    launch("batchnorm_forward_finalize_kernel", batchnorm_forward_finalize_kernel<T>, dim3(grid_blocks(c, kThreads)),
           dim3(kThreads), 0, exec, x, static_cast<const float*>(partial), ch.count, c, a.l, a.n * a.l, a.gamma, a.beta,
           a.running_mean, a.running_var, a.save_mean, a.save_invstd, a.momentum, a.eps, coef);
    if (total > 0)
      launch("batchnorm_normalize_kernel", batchnorm_normalize_kernel<T>, dim3(elementwise_blocks(total)),
             dim3(kThreads), 0, exec, x, static_cast<T*>(a.y), static_cast<const float*>(coef), c, a.l, total);
  });
}

void batchnorm_backward(const BatchNormBackwardArgs& a, const Exec& exec) {
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* x = static_cast<const T*>(a.x);
    const T* dy = static_cast<const T*>(a.dy);
    const Chunks ch = chunks_for(a.n, a.l);
    const std::int64_t c = a.c, total = a.n * a.c * a.l;
    const bool reduce = a.dgamma || a.dbeta || (a.training && a.dx);
    const std::size_t partial_floats = reduce ? static_cast<std::size_t>(2 * ch.count * c) : 0;
    float* ws = static_cast<float*>(exec.workspace((partial_floats + 5 * static_cast<std::size_t>(c)) * sizeof(float)));
    float* partial = reduce ? ws : nullptr;
    float* stat = ws + partial_floats;
    float* coef = stat + 2 * c;
    launch("batchnorm_backward_stats_kernel", batchnorm_backward_stats_kernel, dim3(grid_blocks(c, kThreads)),
           dim3(kThreads), 0, exec, a.mean, a.invstd, a.training ? nullptr : a.var, a.eps, c, stat);
    if (reduce)
      launch("batchnorm_partial_grads_kernel", batchnorm_partial_grads_kernel<T>, dim3(grid_blocks(ch.count * c, 1)),
             dim3(kThreads), 0, exec, dy, x, static_cast<const float*>(stat), partial, a.n, c, a.l, ch.rows_per_chunk,
             ch.count);
    launch("batchnorm_backward_finalize_kernel", batchnorm_backward_finalize_kernel, dim3(grid_blocks(c, kThreads)),
           dim3(kThreads), 0, exec, static_cast<const float*>(partial), ch.count, c, a.n * a.l,
           static_cast<const float*>(stat), a.gamma, a.training, a.dgamma, a.dbeta, coef);
    if (a.dx && total > 0)
      launch("batchnorm_backward_dx_kernel", batchnorm_backward_dx_kernel<T>, dim3(elementwise_blocks(total)),
             dim3(kThreads), 0, exec, dy, x, static_cast<const float*>(stat), static_cast<const float*>(coef),
             static_cast<T*>(a.dx), c, a.l, total);
  });
}

}  // namespace dlk::DLK_KNS
