// CUDA kernels and the device driver of k-means (rules shared with the cpu reference in kmeans.h). Built by nvcc into
// dlk::cuda and against the emulator into dlk::emu. The host drives the Lloyd loop and reads back, per iteration,
// only a few scalars (labels changed, inertia, centroid shift) and the k cluster sizes; the points never leave the
// device. Large N needs no special chunking: every kernel is grid-strided and the workspace is O(N + k * N / 256).
//
//  - kmeans_assign_kernel, the fused distance + argmin: a block owns 64 points and walks the centroids in tiles of 64;
//    per 16-deep stage it stages a 64 x 16 slice of the points and of the centroids in shared memory and each of its
//    256 threads accumulates a 4 x 4 register tile of x.c (rows ty + 16 i, centroids tx + 16 j). d = q - 2 s x.c +
//    ||c||^2 (kmeans.h) is folded into a running (min, argmin) per row in registers, so the N x k distance matrix
//    never exists; the 16 partial minima of a row are merged through shared memory in column order (ties go to the
//    lower centroid). Traffic: the 64-point slice is re-read from L2 once per centroid tile; FFMA bound for k >= 64.
//  - The centroid update is a deterministic segmented reduction: points are counting-sorted by label (per 256-point
//    chunk: the rank of each point among the chunk's points of its label, and the chunk's count per label; a block
//    per cluster scans its counts over the chunks; one block scans the cluster sizes), which is a STABLE sort, so each
//    cluster's members are in ascending index order; then a block per (cluster, 32 features) sums its members in
//    that order in fp64, 8 rows at a time, merged in a fixed order. No float atomics: bitwise reproducible in every
//    mode.
//  - k-means++ (and the random init) pick rows on the host from the same Philox stream as the cpu; the candidate
//    distances are exact squared differences (a warp per point, lanes over features), the potentials reduced per
//    block in a fixed grid and summed on the host in order.
// Limits: N, k < 2^31; the assign kernel needs no alignment of D.
// clang-format off
#include "runtime/kernel.h"  // first: it picks the nvcc or the emulator build
// clang-format on

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "common/grid.cuh"
#include "common/reduce.cuh"
#include "kmeans/kmeans.h"
#include "runtime/device.h"

namespace dlk::DLK_KNS {
namespace {

constexpr int kThreads = 256;
constexpr int kTileRows = 64, kTileCols = 64, kTileK = 16, kSide = 16;
constexpr int kChunk = 256;  // points per counting-sort chunk (one block)
constexpr int kSumCols = 32, kSumRows = 8;
constexpr int kReduceBlocks = 512;  // fixed grid of the potential reductions (deterministic partials)
constexpr int kTolChunks = 64;
// Segments per cluster in the centroid sum: about 2048 members per block on average, at most 64.
int sum_segments(std::int64_t n, int k) {
  const std::int64_t s = n / (static_cast<std::int64_t>(k) * 2048);
  return static_cast<int>(s < 1 ? 1 : (s > 64 ? 64 : s));
}

// s_i, q_i of kmeans.h: a warp per row.
__global__ void kmeans_point_norms_kernel(const float* x, std::int64_t n, std::int64_t d, int metric, float* s,
                                          float* q) {
  const int lane = threadIdx.x % 32;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / 32);
  for (std::int64_t i = global_id() / 32; i < n; i += warps) {
    float ss = 0.0f;
    for (std::int64_t j = lane; j < d; j += 32) ss += x[i * d + j] * x[i * d + j];
    ss = warp_sum(ss);
    if (lane == 0) {
      if (metric == kKmeansCosine) {
        s[i] = ss > 0.0f ? 1.0f / sqrtf(ss) : 0.0f;
        q[i] = ss > 0.0f ? 1.0f : 0.0f;
      } else {
        s[i] = 1.0f;
        q[i] = ss;
      }
    }
  }
}

// ||c_j||^2 (and, for cosine, c_j normalised first): a warp per centroid.
__global__ void kmeans_centroid_norms_kernel(float* c, int k, std::int64_t d, int normalize, float* cn) {
  const int lane = threadIdx.x % 32;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / 32);
  for (std::int64_t j = global_id() / 32; j < k; j += warps) {
    float ss = 0.0f;
    for (std::int64_t t = lane; t < d; t += 32) ss += c[j * d + t] * c[j * d + t];
    ss = warp_sum(ss);
    if (normalize && ss > 0.0f) {
      const float inv = 1.0f / sqrtf(ss);
      for (std::int64_t t = lane; t < d; t += 32) c[j * d + t] *= inv;
      ss = 0.0f;
      for (std::int64_t t = lane; t < d; t += 32) ss += c[j * d + t] * c[j * d + t];
      ss = warp_sum(ss);
    }
    if (lane == 0) cn[j] = ss;
  }
}

// Column sums and sums of squares of s_i x_i over one chunk of rows (for the tolerance), fp64.
__global__ void kmeans_tol_partial_kernel(const float* x, const float* s, std::int64_t n, std::int64_t d,
                                          double* partial) {
  const std::int64_t col = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (col >= d) return;
  const std::int64_t chunk = blockIdx.y, rows = (n + kTolChunks - 1) / kTolChunks;
  double sum = 0.0, sq = 0.0;
  for (std::int64_t i = chunk * rows; i < n && i < (chunk + 1) * rows; ++i) {
    const double v = static_cast<double>(s[i]) * x[i * d + col];
    sum += v;
    sq += v * v;
  }
  partial[(chunk * d + col) * 2] = sum;
  partial[(chunk * d + col) * 2 + 1] = sq;
}

// The fused distance + argmin (file comment). labels_old may be null; `changed` counts labels that differ from it.
__global__ void __launch_bounds__(kSide* kSide)
    kmeans_assign_kernel(const float* x, const float* s, const float* q, std::int64_t n, std::int64_t d, const float* c,
                         const float* cn, int k, int* labels, float* mind, const int* labels_old, int* changed) {
  DLK_SHARED_2D(float, xs, kTileK, kTileRows + 1);
  DLK_SHARED_2D(float, cs, kTileK, kTileCols + 1);
  DLK_SHARED_2D(float, red_d, kTileRows, kSide);
  DLK_SHARED_2D(int, red_i, kTileRows, kSide);
  const int tx = static_cast<int>(threadIdx.x), ty = static_cast<int>(threadIdx.y), tid = ty * kSide + tx;
  const std::int64_t row_tiles = (n + kTileRows - 1) / kTileRows;
  int block_changed = 0;
  for (std::int64_t rt = blockIdx.x; rt < row_tiles; rt += gridDim.x) {
    const std::int64_t row0 = rt * kTileRows;
    float best_d[4];
    int best_i[4];
    for (int i = 0; i < 4; ++i) {
      best_d[i] = INFINITY;
      best_i[i] = 0;
    }
    for (int col0 = 0; col0 < k; col0 += kTileCols) {
      float acc[4][4] = {};
      for (std::int64_t k0 = 0; k0 < d; k0 += kTileK) {
        for (int e = tid; e < kTileRows * kTileK; e += kSide * kSide) {
          const int r = e / kTileK, kk = e % kTileK;
          const std::int64_t gr = row0 + r, gk = k0 + kk;
          xs[kk][r] = gr < n && gk < d ? x[gr * d + gk] : 0.0f;
          const std::int64_t gc = col0 + r;
          cs[kk][r] = gc < k && gk < d ? c[gc * d + gk] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < kTileK; ++kk) {
          float xv[4], cv[4];
          for (int i = 0; i < 4; ++i) xv[i] = xs[kk][ty + kSide * i];
          for (int j = 0; j < 4; ++j) cv[j] = cs[kk][tx + kSide * j];
          for (int i = 0; i < 4; ++i)
            for (int j = 0; j < 4; ++j) acc[i][j] += xv[i] * cv[j];
        }
        __syncthreads();
      }
      for (int i = 0; i < 4; ++i) {
        const std::int64_t r = row0 + ty + kSide * i;
        if (r >= n) continue;
        const float s2 = 2.0f * s[r], qr = q[r];
        for (int j = 0; j < 4; ++j) {
          const int cidx = col0 + tx + kSide * j;
          if (cidx >= k) continue;
          const float dist = qr - s2 * acc[i][j] + cn[cidx];
          if (dist < best_d[i]) {  // columns visited in increasing order: ties keep the lower index
            best_d[i] = dist;
            best_i[i] = cidx;
          }
        }
      }
    }
    for (int i = 0; i < 4; ++i) {
      red_d[ty + kSide * i][tx] = best_d[i];
      red_i[ty + kSide * i][tx] = best_i[i];
    }
    __syncthreads();
    if (tid < kTileRows && row0 + tid < n) {
      float bd = red_d[tid][0];
      int bi = red_i[tid][0];
      for (int t = 1; t < kSide; ++t) {
        const float v = red_d[tid][t];
        const int vi = red_i[tid][t];
        if (v < bd || (v == bd && vi < bi)) {
          bd = v;
          bi = vi;
        }
      }
      const std::int64_t r = row0 + tid;
      labels[r] = bi;
      mind[r] = bd > 0.0f ? bd : 0.0f;
      if (labels_old && labels_old[r] != bi) ++block_changed;
    }
    __syncthreads();
  }
  if (labels_old && block_changed) atomicAdd(changed, block_changed);
}

// Counting sort, step 1: per 256-point chunk, each point's rank among the chunk's points of its label, and the
// chunk's count per label (written by the label's first point in the chunk). hist is [k, chunks], zeroed first.
__global__ void kmeans_chunk_hist_kernel(const int* labels, std::int64_t n, std::int64_t chunks, int* hist, int* rank) {
  DLK_SHARED(int, lab, kChunk);
  for (std::int64_t ch = blockIdx.x; ch < chunks; ch += gridDim.x) {
    const std::int64_t i = ch * kChunk + threadIdx.x;
    lab[threadIdx.x] = i < n ? labels[i] : -1;
    __syncthreads();
    if (i < n) {
      const int l = lab[threadIdx.x];
      int before = 0, total = 0;
      for (int t = 0; t < kChunk; ++t) {
        const int same = lab[t] == l ? 1 : 0;
        total += same;
        before += t < static_cast<int>(threadIdx.x) ? same : 0;
      }
      rank[i] = before;
      if (before == 0) hist[static_cast<std::int64_t>(l) * chunks + ch] = total;
    }
    __syncthreads();
  }
}

__global__ void kmeans_fill_int_kernel(int* p, std::int64_t count, int v) {
  for (std::int64_t e = global_id(); e < count; e += grid_step()) p[e] = v;
}

// Block-wide exclusive scan of one value per thread (blockDim.x == kThreads); returns the block total too.
__device__ __forceinline__ int block_exclusive_scan(int v, int* total) {
  DLK_SHARED(int, buf, kThreads);
  const int t = static_cast<int>(threadIdx.x);
  buf[t] = v;
  __syncthreads();
  for (int off = 1; off < kThreads; off <<= 1) {
    const int add = t >= off ? buf[t - off] : 0;
    __syncthreads();
    buf[t] += add;
    __syncthreads();
  }
  const int inclusive = buf[t];
  *total = buf[kThreads - 1];
  __syncthreads();
  return inclusive - v;
}

// Counting sort, step 2: a block per cluster turns its row of hist into exclusive offsets; counts[c] = its size.
__global__ void kmeans_cluster_scan_kernel(int* hist, std::int64_t chunks, int k, int* counts) {
  for (int c = blockIdx.x; c < k; c += gridDim.x) {
    int* row = hist + static_cast<std::int64_t>(c) * chunks;
    int base = 0;
    for (std::int64_t c0 = 0; c0 < chunks; c0 += kThreads) {
      const std::int64_t e = c0 + threadIdx.x;
      const int v = e < chunks ? row[e] : 0;
      int total;
      const int ex = block_exclusive_scan(v, &total);
      if (e < chunks) row[e] = base + ex;
      base += total;
    }
    if (threadIdx.x == 0) counts[c] = base;
  }
}

// Counting sort, step 3: one block scans the cluster sizes into starts.
__global__ void kmeans_starts_kernel(const int* counts, int k, int* starts) {
  int base = 0;
  for (int c0 = 0; c0 < k; c0 += kThreads) {
    const int e = c0 + static_cast<int>(threadIdx.x);
    const int v = e < k ? counts[e] : 0;
    int total;
    const int ex = block_exclusive_scan(v, &total);
    if (e < k) starts[e] = base + ex;
    base += total;
  }
}

// Counting sort, step 4: each point to its slot.
__global__ void kmeans_place_kernel(const int* labels, const int* rank, const int* hist, const int* starts,
                                    std::int64_t n, std::int64_t chunks, int* sorted) {
  for (std::int64_t i = global_id(); i < n; i += grid_step()) {
    const int l = labels[i];
    sorted[starts[l] + hist[static_cast<std::int64_t>(l) * chunks + i / kChunk] + rank[i]] = static_cast<int>(i);
  }
}

// The segmented sum: block (32 features, cluster, segment); the cluster's sorted members are cut into `segs` equal
// runs (segs > 1 when clusters are large, so that small k still fills the GPU); thread (tx, ty) sums members
// ty, ty + 8, ... of its run for feature tx in fp64, the 8 partials merged in order into partial[seg, cluster, :].
__global__ void kmeans_sum_kernel(const float* x, const float* s, std::int64_t d, const int* sorted, const int* starts,
                                  const int* counts, int k, int segs, double* partial) {
  DLK_SHARED_2D(double, part, kSumRows, kSumCols);
  const std::int64_t col = static_cast<std::int64_t>(blockIdx.x) * kSumCols + threadIdx.x;
  const int seg = static_cast<int>(blockIdx.z);
  for (int cl = blockIdx.y; cl < k; cl += gridDim.y) {
    const int cnt = counts[cl], st = starts[cl];
    const int per = (cnt + segs - 1) / segs, m0 = seg * per, m1 = cnt < m0 + per ? cnt : m0 + per;
    double acc = 0.0;
    if (col < d)
      for (int m = m0 + static_cast<int>(threadIdx.y); m < m1; m += kSumRows) {
        const std::int64_t i = sorted[st + m];
        acc += static_cast<double>(s[i]) * x[i * d + col];
      }
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && col < d) {
      double total = 0.0;
      for (int r = 0; r < kSumRows; ++r) total += part[r][threadIdx.x];
      partial[(static_cast<std::int64_t>(seg) * k + cl) * d + col] = total;
    }
    __syncthreads();
  }
}

// c_new = (sum of the segments' partials, in order) / size; empty clusters are left to the host (relocation).
__global__ void kmeans_mean_kernel(const double* partial, int segs, int k, std::int64_t d, const int* counts,
                                   float* c_new) {
  const std::int64_t kd = static_cast<std::int64_t>(k) * d;
  for (std::int64_t e = global_id(); e < kd; e += grid_step()) {
    const int cnt = counts[e / d];
    if (cnt == 0) continue;
    double total = 0.0;
    for (int sg = 0; sg < segs; ++sg) total += partial[sg * kd + e];
    c_new[e] = static_cast<float>(total / cnt);
  }
}

// shift = sum (c_new - c)^2 and inertia = sum mind, one block, fixed order (fp64).
__global__ void kmeans_shift_inertia_kernel(const float* c_new, const float* c, std::int64_t kd, const float* mind,
                                            std::int64_t n, double* out) {
  DLK_SHARED(double, part, kThreads);
  const int t = static_cast<int>(threadIdx.x);
  for (int which = 0; which < 2; ++which) {
    double acc = 0.0;
    if (which == 0) {
      for (std::int64_t e = t; e < kd; e += kThreads) {
        const double v = static_cast<double>(c_new[e]) - c[e];
        acc += v * v;
      }
    } else {
      for (std::int64_t e = t; e < n; e += kThreads) acc += mind[e];
    }
    part[t] = acc;
    __syncthreads();
    for (int h = kThreads / 2; h > 0; h >>= 1) {
      if (t < h) part[t] += part[t + h];
      __syncthreads();
    }
    if (t == 0) out[which] = part[0];
    __syncthreads();
  }
}

// Rows `rows` (host-chosen, uploaded) of s_i x_i into out [m, d].
__global__ void kmeans_gather_rows_kernel(const float* x, const float* s, std::int64_t d, const long long* rows, int m,
                                          float* out) {
  for (std::int64_t e = global_id(); e < m * d; e += grid_step()) {
    const std::int64_t r = rows[e / d];
    out[e] = s[r] * x[r * d + e % d];
  }
}

// k-means++ candidates: trial[t, j] = ||s_j x_j - cand_t||^2 (a warp per point), and per block the partial
// potentials sum_j min(closest_j, trial[t, j]) (fixed grid, merged in warp order).
__global__ void kmeans_trial_kernel(const float* x, const float* s, std::int64_t n, std::int64_t d, const float* cand,
                                    int m, const float* closest, float* trial, double* partial) {
  DLK_SHARED_2D(double, wsum, kThreads / 32, 16);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / 32);
  double pot[16] = {};
  for (std::int64_t j = global_id() / 32; j < n; j += warps) {
    const float sj = s[j];
    for (int t = 0; t < m; ++t) {
      float acc = 0.0f;
      for (std::int64_t f = lane; f < d; f += 32) {
        const float v = sj * x[j * d + f] - cand[t * d + f];
        acc += v * v;
      }
      acc = warp_sum(acc);
      if (lane == 0) {
        trial[t * n + j] = acc;
        pot[t] += static_cast<double>(acc < closest[j] ? acc : closest[j]);
      }
    }
  }
  if (lane == 0)
    for (int t = 0; t < m; ++t) wsum[warp][t] = pot[t];
  __syncthreads();
  if (threadIdx.x < static_cast<unsigned>(m)) {
    double total = 0.0;
    for (int w = 0; w < kThreads / 32; ++w) total += wsum[w][threadIdx.x];
    partial[blockIdx.x * 16 + threadIdx.x] = total;
  }
}

__global__ void kmeans_accept_kernel(float* closest, const float* trial_row, std::int64_t n) {
  for (std::int64_t j = global_id(); j < n; j += grid_step())
    closest[j] = trial_row[j] < closest[j] ? trial_row[j] : closest[j];
}

__global__ void kmeans_fill_float_kernel(float* p, std::int64_t count, float v) {
  for (std::int64_t e = global_id(); e < count; e += grid_step()) p[e] = v;
}

// Final outputs: int64 labels and, for predict, distances (cosine: d / 2).
__global__ void kmeans_output_kernel(const int* labels, const float* mind, std::int64_t n, float dist_scale,
                                     std::int64_t* out_labels, float* out_dist) {
  for (std::int64_t i = global_id(); i < n; i += grid_step()) {
    if (out_labels) out_labels[i] = labels[i];
    if (out_dist) out_dist[i] = mind[i] * dist_scale;
  }
}

// Host <-> device copies of the driver (the emulator's "device" memory is host memory).
void to_host(void* dst, const void* src, std::size_t bytes, const Exec& exec) {
  if (bytes == 0) return;
  if (exec.backend == Backend::Cuda) {
    device::memcpy_async(dst, src, bytes, 2, exec.stream);
    device::stream_synchronize(exec.stream);
  } else {
    std::memcpy(dst, src, bytes);
  }
}
void to_device(void* dst, const void* src, std::size_t bytes, const Exec& exec) {
  if (bytes == 0) return;
  if (exec.backend == Backend::Cuda)
    device::memcpy_async(dst, src, bytes, 1, exec.stream);
  else
    std::memcpy(dst, src, bytes);
}
void device_copy(void* dst, const void* src, std::size_t bytes, const Exec& exec) {
  if (bytes == 0) return;
  if (exec.backend == Backend::Cuda)
    device::memcpy_async(dst, src, bytes, 3, exec.stream);
  else
    std::memcpy(dst, src, bytes);
}

// Carves the one workspace reservation into typed arrays.
class Carver {
 public:
  void add(std::size_t bytes) { total_ += (bytes + 255) / 256 * 256; }
  std::size_t total() const { return total_; }
  void start(void* base) { p_ = static_cast<char*>(base); }
  template <typename T>
  T* take(std::size_t count) {
    T* r = reinterpret_cast<T*>(p_);
    p_ += (count * sizeof(T) + 255) / 256 * 256;
    return r;
  }

 private:
  std::size_t total_ = 0;
  char* p_ = nullptr;
};

struct Device {
  const Exec& exec;
  std::int64_t n, d;
  int k, metric;
  const float* x;
  float *s, *q, *mind, *c, *c_new, *cn, *c_best;
  int *labels, *labels_old, *labels_best, *rank, *hist, *counts, *starts, *sorted, *changed;
  double* red;
  std::int64_t chunks;
  int segs = 1;               // runs per cluster in the segmented sum
  double* partial = nullptr;  // [segs, k, d]

  void norms_of_centroids(float* cc, bool normalize) {
    launch("kmeans_centroid_norms_kernel", kmeans_centroid_norms_kernel, dim3(grid_blocks(32LL * k, kThreads)),
           dim3(kThreads), 0, exec, cc, k, d, normalize ? 1 : 0, cn);
  }
  // E-step against c (cn must be current); returns the number of changed labels when labels_old is given.
  int assign(const float* cc, int* out_labels, const int* old) {
    if (old) to_device(changed, std::vector<int>{0}.data(), sizeof(int), exec);
    const std::int64_t tiles = (n + kTileRows - 1) / kTileRows;
    launch("kmeans_assign_kernel", kmeans_assign_kernel,
           dim3(static_cast<unsigned>(std::min<std::int64_t>(tiles, 65535))), dim3(kSide, kSide), 0, exec, x,
           static_cast<const float*>(s), static_cast<const float*>(q), n, d, cc, static_cast<const float*>(cn), k,
           out_labels, mind, old, changed);
    if (!old) return -1;
    int v = 0;
    to_host(&v, changed, sizeof v, exec);
    return v;
  }
  // M-step into c_new; returns the cluster sizes.
  std::vector<int> update() {
    launch("kmeans_fill_int_kernel", kmeans_fill_int_kernel, dim3(grid_blocks(k * chunks, kThreads)), dim3(kThreads), 0,
           exec, hist, k * chunks, 0);
    launch("kmeans_chunk_hist_kernel", kmeans_chunk_hist_kernel,
           dim3(static_cast<unsigned>(std::min<std::int64_t>(chunks, kMaxGridBlocks))), dim3(kChunk), 0, exec,
           static_cast<const int*>(labels), n, chunks, hist, rank);
    launch("kmeans_cluster_scan_kernel", kmeans_cluster_scan_kernel, dim3(static_cast<unsigned>(std::min(k, 65535))),
           dim3(kThreads), 0, exec, hist, chunks, k, counts);
    launch("kmeans_starts_kernel", kmeans_starts_kernel, dim3(1), dim3(kThreads), 0, exec,
           static_cast<const int*>(counts), k, starts);
    launch("kmeans_place_kernel", kmeans_place_kernel, dim3(grid_blocks(n, kThreads)), dim3(kThreads), 0, exec,
           static_cast<const int*>(labels), static_cast<const int*>(rank), static_cast<const int*>(hist),
           static_cast<const int*>(starts), n, chunks, sorted);
    launch("kmeans_sum_kernel", kmeans_sum_kernel,
           dim3(static_cast<unsigned>((d + kSumCols - 1) / kSumCols), static_cast<unsigned>(std::min(k, 65535)),
                static_cast<unsigned>(segs)),
           dim3(kSumCols, kSumRows), 0, exec, x, static_cast<const float*>(s), d, static_cast<const int*>(sorted),
           static_cast<const int*>(starts), static_cast<const int*>(counts), k, segs, partial);
    launch("kmeans_mean_kernel", kmeans_mean_kernel, dim3(grid_blocks(static_cast<std::int64_t>(k) * d, kThreads)),
           dim3(kThreads), 0, exec, static_cast<const double*>(partial), segs, k, d, static_cast<const int*>(counts),
           c_new);
    std::vector<int> sizes(static_cast<std::size_t>(k));
    to_host(sizes.data(), counts, sizes.size() * sizeof(int), exec);
    return sizes;
  }
  // Rows of s_i x_i into dst (device) for host-chosen indices.
  void gather(const std::vector<std::int64_t>& rows, float* dst, long long* rows_dev) {
    std::vector<long long> r(rows.begin(), rows.end());
    to_device(rows_dev, r.data(), r.size() * sizeof(long long), exec);
    launch("kmeans_gather_rows_kernel", kmeans_gather_rows_kernel,
           dim3(grid_blocks(static_cast<std::int64_t>(r.size()) * d, kThreads)), dim3(kThreads), 0, exec, x,
           static_cast<const float*>(s), d, static_cast<const long long*>(rows_dev), static_cast<int>(r.size()), dst);
  }
};

// The k-means++ operations of kmeans_plusplus on the device.
struct DevicePlusPlus {
  Device& dv;
  float *closest, *trial, *cand;
  long long* rows_dev;
  double* partial;
  std::vector<std::int64_t> last;

  std::vector<double> run(const std::vector<std::int64_t>& cands) {
    last = cands;
    const int m = static_cast<int>(cands.size());
    dv.gather(cands, cand, rows_dev);
    launch("kmeans_trial_kernel", kmeans_trial_kernel, dim3(kReduceBlocks), dim3(kThreads), 0, dv.exec, dv.x,
           static_cast<const float*>(dv.s), dv.n, dv.d, static_cast<const float*>(cand), m,
           static_cast<const float*>(closest), trial, partial);
    std::vector<double> part(static_cast<std::size_t>(kReduceBlocks) * 16);
    to_host(part.data(), partial, part.size() * sizeof(double), dv.exec);
    std::vector<double> pots(static_cast<std::size_t>(m), 0.0);
    for (int b = 0; b < kReduceBlocks; ++b)
      for (int t = 0; t < m; ++t) pots[t] += part[b * 16 + t];
    return pots;
  }
  double start(std::int64_t i) {
    launch("kmeans_fill_float_kernel", kmeans_fill_float_kernel, dim3(grid_blocks(dv.n, kThreads)), dim3(kThreads), 0,
           dv.exec, closest, dv.n, INFINITY);
    const double pot = run({i})[0];
    accept(0);
    return pot;
  }
  std::vector<double> cumsum() {
    std::vector<float> h(static_cast<std::size_t>(dv.n));
    to_host(h.data(), closest, h.size() * sizeof(float), dv.exec);
    std::vector<double> cs(h.size());
    double acc = 0;
    for (std::size_t i = 0; i < h.size(); ++i) cs[i] = (acc += h[i]);
    return cs;
  }
  std::vector<double> trial_pots(const std::vector<std::int64_t>& cands) { return run(cands); }
  void accept(int t) {
    launch("kmeans_accept_kernel", kmeans_accept_kernel, dim3(grid_blocks(dv.n, kThreads)), dim3(kThreads), 0, dv.exec,
           closest, static_cast<const float*>(trial + static_cast<std::int64_t>(t) * dv.n), dv.n);
  }
};

// Adapter: kmeans_plusplus calls ops.trial(cands).
struct PlusPlusOps {
  DevicePlusPlus& p;
  double start(std::int64_t i) { return p.start(i); }
  std::vector<double> cumsum() { return p.cumsum(); }
  std::vector<double> trial(const std::vector<std::int64_t>& c) { return p.trial_pots(c); }
  void accept(int t) { p.accept(t); }
};

}  // namespace

void kmeans_fit(KmeansArgs& a, const Exec& exec) {
  const std::int64_t n = a.n, d = a.d;
  const int k = a.k;
  const std::int64_t chunks = (n + kChunk - 1) / kChunk;
  const int trials = std::min(kmeans_trials(k, a.n_local_trials), 16);
  const std::size_t nn = static_cast<std::size_t>(n), kd = static_cast<std::size_t>(k) * d;
  Carver cv;
  for (int i = 0; i < 3; ++i) cv.add(nn * 4);                  // s, q, mind
  for (int i = 0; i < 4; ++i) cv.add(kd * 4);                  // c, c_new, c_best, cand
  cv.add(static_cast<std::size_t>(k) * 4);                     // cn
  for (int i = 0; i < 5; ++i) cv.add(nn * 4);                  // labels, labels_old, labels_best, rank, sorted
  cv.add(static_cast<std::size_t>(k) * chunks * 4);            // hist
  cv.add(static_cast<std::size_t>(k) * 8);                     // counts, starts
  cv.add(256);                                                 // changed, red
  cv.add(nn * 4 + nn * static_cast<std::size_t>(trials) * 4);  // closest, trial
  cv.add(static_cast<std::size_t>(kReduceBlocks) * 16 * 8);    // partial
  cv.add(static_cast<std::size_t>(std::max(k, 16)) * 8);       // rows_dev
  cv.add(static_cast<std::size_t>(kTolChunks) * d * 16);       // tol partials
  const int segs = sum_segments(n, k);
  cv.add(static_cast<std::size_t>(segs) * kd * 8);  // segmented-sum partials
  cv.start(exec.workspace(cv.total()));
  Device dv{exec,    n,       d,       k,       a.metric, a.x,     nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
            nullptr, nullptr, nullptr, nullptr, nullptr,  nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, chunks};
  dv.s = cv.take<float>(nn);
  dv.q = cv.take<float>(nn);
  dv.mind = cv.take<float>(nn);
  dv.c = cv.take<float>(kd);
  dv.c_new = cv.take<float>(kd);
  dv.c_best = cv.take<float>(kd);
  float* cand = cv.take<float>(kd);
  dv.cn = cv.take<float>(static_cast<std::size_t>(k));
  dv.labels = cv.take<int>(nn);
  dv.labels_old = cv.take<int>(nn);
  dv.labels_best = cv.take<int>(nn);
  dv.rank = cv.take<int>(nn);
  dv.sorted = cv.take<int>(nn);
  dv.hist = cv.take<int>(static_cast<std::size_t>(k) * chunks);
  dv.counts = cv.take<int>(static_cast<std::size_t>(k));
  dv.starts = dv.counts + k;
  dv.changed = cv.take<int>(64);
  dv.red = reinterpret_cast<double*>(dv.changed + 16);
  float* closest = cv.take<float>(nn + nn * static_cast<std::size_t>(trials));
  float* trial = closest + nn;
  double* partial = cv.take<double>(static_cast<std::size_t>(kReduceBlocks) * 16);
  long long* rows_dev = cv.take<long long>(static_cast<std::size_t>(std::max(k, 16)));
  double* tolp = cv.take<double>(static_cast<std::size_t>(kTolChunks) * d * 2);
  dv.segs = segs;
  dv.partial = cv.take<double>(static_cast<std::size_t>(segs) * kd);
  (void)cand;

  launch("kmeans_point_norms_kernel", kmeans_point_norms_kernel, dim3(grid_blocks(32 * n, kThreads)), dim3(kThreads), 0,
         exec, a.x, n, d, a.metric, dv.s, dv.q);
  // tolerance: mean per-feature variance of s_i x_i (partials per row chunk, merged on the host in order)
  launch("kmeans_tol_partial_kernel", kmeans_tol_partial_kernel,
         dim3(static_cast<unsigned>((d + kThreads - 1) / kThreads), kTolChunks), dim3(kThreads), 0, exec, a.x,
         static_cast<const float*>(dv.s), n, d, tolp);
  std::vector<double> tp(static_cast<std::size_t>(kTolChunks) * d * 2);
  to_host(tp.data(), tolp, tp.size() * sizeof(double), exec);
  double var = 0;
  for (std::int64_t j = 0; j < d; ++j) {
    double sum = 0, sq = 0;
    for (int c = 0; c < kTolChunks; ++c) {
      sum += tp[(c * d + j) * 2];
      sq += tp[(c * d + j) * 2 + 1];
    }
    const double m = sum / n;
    var += std::max(sq / n - m * m, 0.0);
  }
  const double tol_abs = a.tol * var / static_cast<double>(d);

  const bool cosine = a.metric == kKmeansCosine;
  double best_inertia = std::numeric_limits<double>::infinity();
  int best_iter = 0;
  std::vector<float> mind_h;
  for (int run = 0; run < a.n_init; ++run) {
    KmeansRng rng{a.seed + static_cast<std::uint64_t>(run), 0};
    if (a.init == kKmeansInitGiven) {
      device_copy(dv.c, a.centroids, kd * 4, exec);
    } else {
      std::vector<std::int64_t> rows;
      if (a.init == kKmeansInitRandom) {
        rows = kmeans_random_init(n, k, rng);
      } else {
        DevicePlusPlus pp{dv, closest, trial, cand, rows_dev, partial, {}};
        PlusPlusOps ops{pp};
        rows = kmeans_plusplus(ops, n, k, trials, rng);
      }
      for (int j0 = 0; j0 < k; j0 += 16) {
        const std::vector<std::int64_t> part(rows.begin() + j0, rows.begin() + std::min(k, j0 + 16));
        dv.gather(part, dv.c + static_cast<std::int64_t>(j0) * d, rows_dev);
      }
    }
    dv.norms_of_centroids(dv.c, cosine);
    launch("kmeans_fill_int_kernel", kmeans_fill_int_kernel, dim3(grid_blocks(n, kThreads)), dim3(kThreads), 0, exec,
           dv.labels_old, n, -1);
    bool strict = false;
    int it = 0;
    for (; it < a.max_iter; ++it) {
      const int changed = dv.assign(dv.c, dv.labels, dv.labels_old);
      const std::vector<int> sizes = dv.update();
      int empty = 0;
      for (int v : sizes) empty += v == 0 ? 1 : 0;
      if (empty) {  // rare: re-seed from the farthest points (kmeans.h), chosen on the host
        mind_h.resize(nn);
        to_host(mind_h.data(), dv.mind, nn * 4, exec);
        const std::vector<std::int64_t> far = kmeans_farthest(mind_h.data(), n, empty);
        std::size_t f = 0;
        for (int j = 0; j < k && f < far.size(); ++j)
          if (sizes[j] == 0) dv.gather({far[f++]}, dv.c_new + static_cast<std::int64_t>(j) * d, rows_dev);
      }
      dv.norms_of_centroids(dv.c_new, cosine);
      launch("kmeans_shift_inertia_kernel", kmeans_shift_inertia_kernel, dim3(1), dim3(kThreads), 0, exec,
             static_cast<const float*>(dv.c_new), static_cast<const float*>(dv.c), static_cast<std::int64_t>(kd),
             static_cast<const float*>(dv.mind), n, dv.red);
      double red[2];
      to_host(red, dv.red, sizeof red, exec);
      std::swap(dv.c, dv.c_new);
      if (changed == 0) {
        strict = true;
        break;
      }
      if (red[0] <= tol_abs) break;
      std::swap(dv.labels, dv.labels_old);
    }
    if (!strict) dv.assign(dv.c, dv.labels, nullptr);
    launch("kmeans_shift_inertia_kernel", kmeans_shift_inertia_kernel, dim3(1), dim3(kThreads), 0, exec,
           static_cast<const float*>(dv.c), static_cast<const float*>(dv.c), static_cast<std::int64_t>(kd),
           static_cast<const float*>(dv.mind), n, dv.red);
    double red[2];
    to_host(red, dv.red, sizeof red, exec);
    const double inertia = cosine ? 0.5 * red[1] : red[1];
    if (run == 0 || inertia < best_inertia) {
      best_inertia = inertia;
      best_iter = std::min(it + 1, a.max_iter);
      device_copy(dv.c_best, dv.c, kd * 4, exec);
      device_copy(dv.labels_best, dv.labels, nn * 4, exec);
    }
  }
  device_copy(a.centroids, dv.c_best, kd * 4, exec);
  if (a.labels)
    launch("kmeans_output_kernel", kmeans_output_kernel, dim3(grid_blocks(n, kThreads)), dim3(kThreads), 0, exec,
           static_cast<const int*>(dv.labels_best), static_cast<const float*>(dv.mind), n, 1.0f, a.labels,
           static_cast<float*>(nullptr));
  a.inertia = best_inertia;
  a.n_iter = best_iter;
}

void kmeans_predict(const KmeansPredictArgs& a, const Exec& exec) {
  const std::int64_t n = a.n, d = a.d;
  const int k = a.k;
  const std::size_t nn = static_cast<std::size_t>(n), kd = static_cast<std::size_t>(k) * d;
  Carver cv;
  for (int i = 0; i < 3; ++i) cv.add(nn * 4);
  cv.add(kd * 4);
  cv.add(static_cast<std::size_t>(k) * 4);
  cv.add(nn * 4);
  cv.start(exec.workspace(cv.total()));
  Device dv{exec,    n,       d,       k,       a.metric, a.x,     nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
            nullptr, nullptr, nullptr, nullptr, nullptr,  nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0};
  dv.s = cv.take<float>(nn);
  dv.q = cv.take<float>(nn);
  dv.mind = cv.take<float>(nn);
  dv.c = cv.take<float>(kd);
  dv.cn = cv.take<float>(static_cast<std::size_t>(k));
  dv.labels = cv.take<int>(nn);
  device_copy(dv.c, a.centroids, kd * 4, exec);
  launch("kmeans_point_norms_kernel", kmeans_point_norms_kernel, dim3(grid_blocks(32 * n, kThreads)), dim3(kThreads), 0,
         exec, a.x, n, d, a.metric, dv.s, dv.q);
  dv.norms_of_centroids(dv.c, a.metric == kKmeansCosine);
  dv.assign(dv.c, dv.labels, nullptr);
  launch("kmeans_output_kernel", kmeans_output_kernel, dim3(grid_blocks(n, kThreads)), dim3(kThreads), 0, exec,
         static_cast<const int*>(dv.labels), static_cast<const float*>(dv.mind), n,
         a.metric == kKmeansCosine ? 0.5f : 1.0f, a.labels, a.distances);
}

}  // namespace dlk::DLK_KNS
