// CUDA kernels of the classification metrics.
//
// Counting is integer work, so integer atomics are exact and deterministic by nature: accuracy reduces its hits per
// warp and adds them to one 64-bit counter; the confusion matrix adds 1 per label pair into [K, K]. Precision /
// recall / F1 read the small [K, K] matrix in one block (K is a class count, not a data size) and reduce the
// averages in fp64 in a fixed order.
#include "runtime/kernel.h"
//
#include <cmath>
#include <cstdint>

#include "metrics/metrics.h"

namespace dlk::DLK_KNS {
namespace {

constexpr int kThreads = 256;  // every kernel here; a power of two (tree reduction in prf)
constexpr std::int64_t kMaxBlocks = 4096;

unsigned grid_for(std::int64_t n) {
  std::int64_t b = (n + kThreads - 1) / kThreads;
  if (b > kMaxBlocks) b = kMaxBlocks;
  return static_cast<unsigned>(b < 1 ? 1 : b);
}

__device__ __forceinline__ std::int64_t label(DType t, const void* p, std::int64_t i) {
  return t == DType::I64 ? static_cast<const std::int64_t*>(p)[i] : static_cast<const std::int32_t*>(p)[i];
}

// Zeroes n 64-bit counters (grid stride).
__global__ void __launch_bounds__(kThreads) zero_counts_kernel(std::int64_t* p, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(kThreads) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * kThreads)
    p[i] = 0;
}

// Hits of y_true == y_pred: each thread counts its grid-stride share, a warp sums by shuffles, lane 0 adds the
// warp's count to *hits with one 64-bit atomic. Traffic: both label arrays once.
__global__ void __launch_bounds__(kThreads) accuracy_count_kernel(LabelPairArgs a, unsigned long long* hits) {
  unsigned long long c = 0;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(kThreads) + threadIdx.x; i < a.n;
       i += static_cast<std::int64_t>(gridDim.x) * kThreads)
    c += label(a.true_dtype, a.y_true, i) == label(a.pred_dtype, a.y_pred, i) ? 1u : 0u;
  for (int o = 16; o > 0; o >>= 1) c += __shfl_xor_sync(0xffffffffu, c, o);
  if (threadIdx.x % 32 == 0 && c) atomicAdd(hits, c);
}

__global__ void accuracy_finish_kernel(const unsigned long long* hits, std::int64_t n, float* out) {
  out[0] = n ? static_cast<float>(static_cast<double>(*hits) / static_cast<double>(n)) : 0.0f;
}

// One 64-bit atomic increment per label pair (grid stride); pairs outside [0, K) are skipped (cpu/emu reject them).
__global__ void __launch_bounds__(kThreads) confusion_count_kernel(LabelPairArgs a) {
  const std::int64_t k = a.num_classes;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(kThreads) + threadIdx.x; i < a.n;
       i += static_cast<std::int64_t>(gridDim.x) * kThreads) {
    const std::int64_t t = label(a.true_dtype, a.y_true, i), p = label(a.pred_dtype, a.y_pred, i);
    if (t >= 0 && t < k && p >= 0 && p < k)
      atomicAdd(reinterpret_cast<unsigned long long*>(a.matrix + t * k + p), 1ull);
  }
}

__device__ __forceinline__ double ratio(double num, double den) { return den > 0 ? num / den : 0.0; }

// Precision / recall / F1 in one block: thread c handles classes c, c + kThreads, ... (their row and column sums,
// O(K) reads each); averages are accumulated per thread in fp64 and tree-reduced in shared memory (fixed order).
__global__ void __launch_bounds__(kThreads) prf_kernel(PrfArgs a) {
  DLK_SHARED_2D(double, buf, 7, kThreads);
  const std::int64_t k = a.k;
  double acc[7] = {0, 0, 0, 0, 0, 0, 0};  // tp, fp, fn (micro); w*p, w*r, w*f, w (macro / weighted)
  for (std::int64_t c = threadIdx.x; c < k; c += kThreads) {
    double row = 0, col = 0;
    for (std::int64_t j = 0; j < k; ++j) {
      row += static_cast<double>(a.matrix[c * k + j]);
      col += static_cast<double>(a.matrix[j * k + c]);
    }
    const double tp = static_cast<double>(a.matrix[c * k + c]), fp = col - tp, fn = row - tp;
    const double p = ratio(tp, tp + fp), r = ratio(tp, tp + fn), f = ratio(2 * tp, 2 * tp + fp + fn);
    if (a.average == DLK_AVERAGE_NONE) {
      if (a.precision) a.precision[c] = static_cast<float>(p);
      if (a.recall) a.recall[c] = static_cast<float>(r);
      if (a.f1) a.f1[c] = static_cast<float>(f);
      continue;
    }
    if (row == 0 && col == 0) continue;  // not present: left out of the averages (sklearn's default labels)
    const double w = a.average == DLK_AVERAGE_WEIGHTED ? tp + fn : 1.0;
    acc[0] += tp;
    acc[1] += fp;
    acc[2] += fn;
    acc[3] += w * p;
    acc[4] += w * r;
    acc[5] += w * f;
    acc[6] += w;
  }
  if (a.average == DLK_AVERAGE_NONE) return;  // uniform: the whole block returns
  for (int v = 0; v < 7; ++v) buf[v][threadIdx.x] = acc[v];
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s)
      for (int v = 0; v < 7; ++v) buf[v][threadIdx.x] += buf[v][threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x != 0) return;
  double p, r, f;
  if (a.average == DLK_AVERAGE_MICRO) {
    const double tp = buf[0][0], fp = buf[1][0], fn = buf[2][0];
    p = ratio(tp, tp + fp);
    r = ratio(tp, tp + fn);
    f = ratio(2 * tp, 2 * tp + fp + fn);
  } else {
    p = ratio(buf[3][0], buf[6][0]);
    r = ratio(buf[4][0], buf[6][0]);
    f = ratio(buf[5][0], buf[6][0]);
  }
  if (a.precision) a.precision[0] = static_cast<float>(p);
  if (a.recall) a.recall[0] = static_cast<float>(r);
  if (a.f1) a.f1[0] = static_cast<float>(f);
}

}  // namespace

void accuracy(const LabelPairArgs& a, const Exec& exec) {
  auto* hits = static_cast<std::int64_t*>(exec.workspace(sizeof(std::int64_t)));
  launch("zero_counts_kernel", zero_counts_kernel, dim3(1), dim3(kThreads), 0, exec, hits, std::int64_t{1});
  launch("accuracy_count_kernel", accuracy_count_kernel, dim3(grid_for(a.n)), dim3(kThreads), 0, exec, a,
         reinterpret_cast<unsigned long long*>(hits));
  launch("accuracy_finish_kernel", accuracy_finish_kernel, dim3(1), dim3(1), 0, exec,
         reinterpret_cast<const unsigned long long*>(hits), a.n, a.accuracy);
}

void confusion_matrix(const LabelPairArgs& a, const Exec& exec) {
  launch("zero_counts_kernel", zero_counts_kernel, dim3(grid_for(a.num_classes * a.num_classes)), dim3(kThreads), 0,
         exec, a.matrix, a.num_classes * a.num_classes);
  launch("confusion_count_kernel", confusion_count_kernel, dim3(grid_for(a.n)), dim3(kThreads), 0, exec, a);
}

void precision_recall_f1(const PrfArgs& a, const Exec& exec) {
  launch("prf_kernel", prf_kernel, dim3(1), dim3(kThreads), 0, exec, a);
}

}  // namespace dlk::DLK_KNS
