// CUDA kernels of the losses and their launchers.
//
// Cross-entropy is the one that matters (the classifier of every language model): llm.c's fused classifier idea, a
// row's loss and its gradient dlogits = (softmax - q) * g in one kernel, so a training step reads the logits once
// for the loss and once more (from L1/L2, right after) for the gradient instead of materialising probabilities.
//   ce_rows_kernel<kWarp = true>    cols <= 2048: a warp per row (several rows per block).
//   ce_rows_kernel<kWarp = false>   longer rows (GPT-2's 50257): a block per row.
// Both make one online pass (running max and rescaled sum, plus the target sums) and, when dlogits is wanted, a
// second pass that writes it. The mean needs the number of non-ignored rows before any gradient is written, so a
// small valid-row pass and a deterministic reduction run first. Every mean/sum is a two-stage fixed-order reduction
// (block partials in fp64, then one block): no float atomics, bitwise reproducible.
// BCE/MSE are elementwise grid-stride kernels; NLL touches one logit per row.
#include "runtime/kernel.h"
//
#include <cmath>
#include <cstdint>

#include "common/convert.cuh"
#include "common/reduce.cuh"
#include "loss/loss.h"

namespace dlk::DLK_KNS {
namespace {

constexpr int kReduceThreads = 256;  // both reduction stages; a power of two (tree reduction)
constexpr int kMaxPartials = 256;    // blocks of the first stage
constexpr int kWarpRowsThreads = 128;
constexpr int kBlockRowThreads = 512;
constexpr int kElemThreads = 256;
constexpr std::int64_t kMaxGrid = 0x7fffffff;
constexpr std::int64_t kWarpMaxCols = 2048;

unsigned grid_for(std::int64_t blocks) {
  if (blocks < 1) blocks = 1;
  return static_cast<unsigned>(blocks < kMaxGrid ? blocks : kMaxGrid);
}

__device__ __forceinline__ std::int64_t load_index(DType t, const void* p, std::int64_t i) {
  return t == DType::I64 ? static_cast<const std::int64_t*>(p)[i] : static_cast<const std::int32_t*>(p)[i];
}

// ------------------------------------------------------------------------------------------- reductions

// Tree sum of one double per thread of a kReduceThreads block; the result is valid in thread 0.
__device__ __forceinline__ double block_tree_sum(double v) {
  DLK_SHARED(double, buf, kReduceThreads);
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int s = kReduceThreads / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) buf[threadIdx.x] += buf[threadIdx.x + s];
    __syncthreads();
  }
  return buf[0];
}

// First stage of a deterministic sum of `in[0, n)`: block b sums the elements b * kReduceThreads + t + k * stride
// (stride = gridDim * kReduceThreads) in fp64 and writes partials[b]. The grid depends only on n, so the order does
// too. Traffic: one read of `in`.
__global__ void __launch_bounds__(kReduceThreads)
    sum_partials_kernel(const float* in, std::int64_t n, double* partials) {
  double acc = 0.0;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * kReduceThreads;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(kReduceThreads) + threadIdx.x; i < n; i += stride)
    acc += static_cast<double>(in[i]);
  const double s = block_tree_sum(acc);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

// Second stage: one block sums `count` partials and writes out[0] = sum / (div_dev ? *div_dev : div_host).
__global__ void __launch_bounds__(kReduceThreads)
    sum_finish_kernel(const double* partials, int count, float* out, double div_host, const float* div_dev) {
  double acc = 0.0;
  for (int i = threadIdx.x; i < count; i += kReduceThreads) acc += partials[i];
  const double s = block_tree_sum(acc);
  if (threadIdx.x == 0) out[0] = static_cast<float>(s / (div_dev ? static_cast<double>(*div_dev) : div_host));
}

// out[0] = sum(in[0, n)) / divisor, deterministically. `partials` holds kMaxPartials doubles.
void reduce_sum(const float* in, std::int64_t n, float* out, double div_host, const float* div_dev, double* partials,
                const Exec& exec) {
  std::int64_t blocks = (n + kReduceThreads * 4 - 1) / (kReduceThreads * 4);
  if (blocks > kMaxPartials) blocks = kMaxPartials;
  if (blocks < 1) blocks = 1;
  launch("sum_partials_kernel", sum_partials_kernel, dim3(static_cast<unsigned>(blocks)), dim3(kReduceThreads), 0, exec,
         in, n, partials);
  launch("sum_finish_kernel", sum_finish_kernel, dim3(1), dim3(kReduceThreads), 0, exec,
         static_cast<const double*>(partials), static_cast<int>(blocks), out, div_host, div_dev);
}

// Scratch: per-row floats, a second per-row float array, the partials and two scalars, each 256-byte aligned.
struct Scratch {
  float* rows_a;
  float* rows_b;
  double* partials;
  float* scalar;
};

Scratch scratch(const Exec& exec, std::int64_t rows) {
  const std::size_t row_bytes = (static_cast<std::size_t>(rows) * sizeof(float) + 255) / 256 * 256;
  const std::size_t part_bytes = kMaxPartials * sizeof(double);
  char* base = static_cast<char*>(exec.workspace(2 * row_bytes + part_bytes + 256));
  Scratch s;
  s.rows_a = reinterpret_cast<float*>(base);
  s.rows_b = reinterpret_cast<float*>(base + row_bytes);
  s.partials = reinterpret_cast<double*>(base + 2 * row_bytes);
  s.scalar = reinterpret_cast<float*>(base + 2 * row_bytes + part_bytes);
  return s;
}

// ------------------------------------------------------------------------------------------ cross-entropy

// valid[r] = 1 when row r's class target is not ignore_index, else 0 (the mean's divisor is their sum).
__global__ void __launch_bounds__(kElemThreads)
    ce_valid_rows_kernel(const void* target, DType tdtype, std::int64_t rows, std::int64_t ignore_index, float* valid) {
  for (std::int64_t r = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    valid[r] = load_index(tdtype, target, r) != ignore_index ? 1.0f : 0.0f;
}

template <bool kWarp>
__device__ __forceinline__ float group_sum(float v) {
  if constexpr (kWarp)
    return warp_sum(v);
  else
    return block_sum(v);
}
template <bool kWarp>
__device__ __forceinline__ float group_max(float v) {
  if constexpr (kWarp)
    return warp_max(v);
  else
    return block_max(v);
}

// Fused cross-entropy over rows of logits. kWarp: a warp owns a row (blockDim / 32 rows per block); else a block
// owns a row. The group strides its lanes over the row: pass 1 keeps a running max m and sum s of exp(z - m)
// (rescaled when m grows), the sum of z (label smoothing) or of q and q * z (probability targets); the group
// combines them; pass 2 (when dlogits is wanted) re-reads the row, mostly from L1/L2, and writes (p * sum(q) - q) *
// g. Traffic: one read of the row for the loss, a second read and one write for the gradient, plus the probability
// targets once or twice. In place (dlogits == logits) is safe: after the group reductions a thread reads only the
// elements it then overwrites. Limits: any cols and rows (grid stride); blockDim a multiple of 32. `row_loss`
// (nullable) gets the per-row loss; `count` (nullable) is the mean's divisor on the device, `div_host` otherwise.
template <typename T, bool kWarp>
__global__ void __launch_bounds__(kWarp ? kWarpRowsThreads : kBlockRowThreads)
    ce_rows_kernel(CrossEntropyArgs a, float* row_loss, const float* count, float div_host) {
  const T* x = static_cast<const T*>(a.logits);
  const T* probs = static_cast<const T*>(a.target);
  T* dx = static_cast<T*>(a.dlogits);
  const std::int64_t cols = a.cols;
  const int lane = kWarp ? static_cast<int>(threadIdx.x % 32) : static_cast<int>(threadIdx.x);
  const int width = kWarp ? 32 : static_cast<int>(blockDim.x);
  const std::int64_t per_block = kWarp ? blockDim.x / 32 : 1;
  const std::int64_t first = blockIdx.x * per_block + (kWarp ? threadIdx.x / 32 : 0);
  const float s = a.label_smoothing, uni = s / static_cast<float>(cols);
  for (std::int64_t row = first; row < a.rows; row += gridDim.x * per_block) {
    const T* xr = x + row * cols;
    std::int64_t t = -1;
    if (!a.prob_target) {
      t = load_index(a.target_dtype, a.target, row);
      if (t == a.ignore_index) {  // uniform over the group: no reduction below is skipped by part of it
        if (dx)
          for (std::int64_t j = lane; j < cols; j += width) dx[row * cols + j] = from_float<T>(0.0f);
        if (row_loss && lane == 0) row_loss[row] = 0.0f;
        continue;
      }
    }
    const bool bad = !a.prob_target && (t < 0 || t >= cols);
    // Read before the group reductions: with dlogits == logits (in place) another lane may overwrite it after them.
    const float zt = a.prob_target || bad ? 0.0f : to_float(xr[t]);
    float m = -INFINITY, sum = 0.0f, zsum = 0.0f, qsum = 0.0f, qz = 0.0f;
    for (std::int64_t j = lane; j < cols; j += width) {
      const float z = to_float(xr[j]);
      if (z > m) {
        sum *= expf(m - z);  // m == -inf: sum is 0 and stays 0
        m = z;
      }
      if (z != -INFINITY) sum += expf(z - m);
      if (a.prob_target) {
        const float q = (1.0f - s) * to_float(probs[row * cols + j]) + uni;
        qsum += q;
        qz += q * z;
      } else {
        zsum += z;
      }
    }
    const float mx = group_max<kWarp>(m);
    sum = group_sum<kWarp>(m == -INFINITY ? 0.0f : sum * expf(m - mx));
    float loss;
    const float lse = mx + logf(sum);
    if (a.prob_target) {
      qsum = group_sum<kWarp>(qsum);
      qz = group_sum<kWarp>(qz);
      loss = lse * qsum - qz;
    } else {
      zsum = group_sum<kWarp>(zsum);
      qsum = 1.0f;
      loss = bad ? NAN : lse - (1.0f - s) * zt - (s > 0.0f ? uni * zsum : 0.0f);  // 0 * -inf is NaN
    }
    if (row_loss && lane == 0) row_loss[row] = loss;
    if (!dx) continue;
    float g = a.dloss ? a.dloss[a.reduction == DLK_REDUCTION_NONE ? row : 0] : 1.0f;
    if (a.reduction == DLK_REDUCTION_MEAN) g /= count ? *count : div_host;
    if (bad) g = NAN;
    const float inv = 1.0f / sum;
    for (std::int64_t j = lane; j < cols; j += width) {
      const float p = expf(to_float(xr[j]) - mx) * inv;
      const float q =
          a.prob_target ? (1.0f - s) * to_float(probs[row * cols + j]) + uni : (j == t ? 1.0f - s : 0.0f) + uni;
      dx[row * cols + j] = from_float<T>((p * qsum - q) * g);
    }
  }
}

// ----------------------------------------------------------------------------------------------------- nll

// One thread per row: row_loss[r] = -w[t] x[r, t] and row_w[r] = w[t] (both 0 for ignored rows, NaN loss for an
// out-of-range target). Traffic: the targets and one element per row.
template <typename T>
__global__ void __launch_bounds__(kElemThreads) nll_rows_kernel(NllArgs a, float* row_loss, float* row_w) {
  const T* x = static_cast<const T*>(a.input);
  const T* w = static_cast<const T*>(a.weight);
  for (std::int64_t r = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; r < a.rows;
       r += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t t = load_index(a.target_dtype, a.target, r);
    float l = 0.0f, wt = 0.0f;
    if (t != a.ignore_index) {
      if (t < 0 || t >= a.cols) {
        l = NAN;
      } else {
        wt = w ? to_float(w[t]) : 1.0f;
        l = -wt * to_float(x[r * a.cols + t]);
      }
    }
    if (row_loss) row_loss[r] = l;
    if (row_w) row_w[r] = wt;
  }
}

// Gradient of nll: one thread per element of dinput [rows, cols] (grid stride): -w[t] g at the target, else 0.
template <typename T>
__global__ void __launch_bounds__(kElemThreads) nll_backward_kernel(NllArgs a, const float* wsum) {
  const T* w = static_cast<const T*>(a.weight);
  T* dx = static_cast<T*>(a.dinput);
  const std::int64_t n = a.rows * a.cols;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = i / a.cols, j = i % a.cols;
    const std::int64_t t = load_index(a.target_dtype, a.target, r);
    float v = 0.0f;
    if (t != a.ignore_index) {
      if (t < 0 || t >= a.cols) {
        v = NAN;
      } else if (j == t) {
        float g = a.dloss[a.reduction == DLK_REDUCTION_NONE ? r : 0];
        if (a.reduction == DLK_REDUCTION_MEAN) g /= *wsum;
        v = -(w ? to_float(w[t]) : 1.0f) * g;
      }
    }
    dx[i] = from_float<T>(v);
  }
}

// ------------------------------------------------------------------------------------------- bce and mse

// One thread per element (grid stride): the loss into `el` (forward) or the gradient into dinput (backward).
// Traffic: input and target once, weights from cache, one write.
template <typename T>
__global__ void __launch_bounds__(kElemThreads) pointwise_loss_kernel(PointwiseLossArgs a, float* el) {
  const T* x = static_cast<const T*>(a.input);
  const T* y = static_cast<const T*>(a.target);
  const T* w = static_cast<const T*>(a.weight);
  const T* pw = static_cast<const T*>(a.pos_weight);
  T* dx = static_cast<T*>(a.dinput);
  const float div = a.reduction == DLK_REDUCTION_MEAN ? static_cast<float>(a.n) : 1.0f;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < a.n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const float xv = to_float(x[i]), yv = to_float(y[i]);
    float l, d;
    if (a.kind == PointwiseLoss::Bce) {
      const float wv = w ? to_float(w[i % a.weight_n]) : 1.0f;
      const float lw = 1.0f + ((pw ? to_float(pw[i % a.pos_weight_n]) : 1.0f) - 1.0f) * yv;
      l = wv * ((1.0f - yv) * xv + lw * (log1pf(expf(-fabsf(xv))) + fmaxf(-xv, 0.0f)));
      d = wv * ((1.0f - yv) - lw / (1.0f + expf(xv)));
    } else {
      l = (xv - yv) * (xv - yv);
      d = 2.0f * (xv - yv);
    }
    if (el) el[i] = l;
    if (dx) dx[i] = from_float<T>(d * a.dloss[a.reduction == DLK_REDUCTION_NONE ? i : 0] / div);
  }
}

unsigned elem_grid(std::int64_t n) {
  return grid_for((n + kElemThreads - 1) / kElemThreads < 65536 ? (n + kElemThreads - 1) / kElemThreads : 65536);
}

}  // namespace

void cross_entropy(const CrossEntropyArgs& a, const Exec& exec) {
  const bool need_rows = a.loss && a.reduction != DLK_REDUCTION_NONE;
  const bool need_count = a.reduction == DLK_REDUCTION_MEAN && !a.prob_target;
  Scratch sc{};
  if (need_rows || need_count) sc = scratch(exec, a.rows);
  if (need_count) {
    launch("ce_valid_rows_kernel", ce_valid_rows_kernel, dim3(elem_grid(a.rows)), dim3(kElemThreads), 0, exec, a.target,
           a.target_dtype, a.rows, a.ignore_index, sc.rows_b);
    reduce_sum(sc.rows_b, a.rows, sc.scalar, 1.0, nullptr, sc.partials, exec);
  }
  float* row_loss = a.loss ? (need_rows ? sc.rows_a : a.loss) : nullptr;
  const float* count = need_count ? sc.scalar : nullptr;
  const float div_host = static_cast<float>(a.rows);
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    if (a.cols <= kWarpMaxCols) {
      const std::int64_t rows_per_block = kWarpRowsThreads / 32;
      launch("ce_rows_kernel<warp>", ce_rows_kernel<T, true>,
             dim3(grid_for((a.rows + rows_per_block - 1) / rows_per_block)), dim3(kWarpRowsThreads), 0, exec, a,
             row_loss, count, div_host);
    } else {
      launch("ce_rows_kernel<block>", ce_rows_kernel<T, false>, dim3(grid_for(a.rows)), dim3(kBlockRowThreads), 0, exec,
             a, row_loss, count, div_host);
    }
  });
  if (need_rows)
    reduce_sum(sc.rows_a, a.rows, a.loss, a.reduction == DLK_REDUCTION_MEAN ? a.rows : 1.0, count, sc.partials, exec);
}

void nll_loss(const NllArgs& a, const Exec& exec) {
  const bool mean = a.reduction == DLK_REDUCTION_MEAN;
  const Scratch sc = scratch(exec, a.rows);
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const dim3 grid(elem_grid(a.rows)), block(kElemThreads);
    if (a.loss) {
      float* row_loss = a.reduction == DLK_REDUCTION_NONE ? a.loss : sc.rows_a;
      launch("nll_rows_kernel", nll_rows_kernel<T>, grid, block, 0, exec, a, row_loss, mean ? sc.rows_b : nullptr);
      if (mean) reduce_sum(sc.rows_b, a.rows, sc.scalar + 1, 1.0, nullptr, sc.partials, exec);
      if (a.reduction != DLK_REDUCTION_NONE)
        reduce_sum(sc.rows_a, a.rows, a.loss, 1.0, mean ? sc.scalar + 1 : nullptr, sc.partials, exec);
    }
    if (a.dinput) {
      if (mean) {
        launch("nll_rows_kernel", nll_rows_kernel<T>, grid, block, 0, exec, a, static_cast<float*>(nullptr), sc.rows_b);
        reduce_sum(sc.rows_b, a.rows, sc.scalar + 1, 1.0, nullptr, sc.partials, exec);
      }
      launch("nll_backward_kernel", nll_backward_kernel<T>, dim3(elem_grid(a.rows * a.cols)), block, 0, exec, a,
             static_cast<const float*>(sc.scalar + 1));
    }
  });
}

void pointwise_loss(const PointwiseLossArgs& a, const Exec& exec) {
  const bool reduce = a.loss && a.reduction != DLK_REDUCTION_NONE;
  Scratch sc{};
  if (reduce) sc = scratch(exec, a.n);
  float* el = a.loss ? (reduce ? sc.rows_a : a.loss) : nullptr;
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    launch("pointwise_loss_kernel", pointwise_loss_kernel<T>, dim3(elem_grid(a.n)), dim3(kElemThreads), 0, exec, a, el);
  });
  if (reduce)
    reduce_sum(sc.rows_a, a.n, a.loss, a.reduction == DLK_REDUCTION_MEAN ? static_cast<double>(a.n) : 1.0, nullptr,
               sc.partials, exec);
}

}  // namespace dlk::DLK_KNS
