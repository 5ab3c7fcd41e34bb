// CUDA kernels of the fused multi-tensor optimizers (SGD, AdamW), global-norm clipping and zero_grad.
//
// Why multi-tensor: a model has tens to hundreds of parameter tensors, many small (biases, norms); one launch per
// tensor (or several, for a foreach-style step) leaves the GPU idle between launches. Here the host builds a table
// with one OptimTensor per tensor (pointers, size, per-tensor lr / weight decay / bias corrections), copies it into
// the context's workspace, and ONE launch walks every tensor: the list is cut into chunks of kOptimChunk (16384)
// elements, one block per chunk (grid stride past 2^20 chunks), each block finding its chunk's tensor by a binary
// search over the table's chunk_begin (the table is tiny and stays in L1/L2). Inside a chunk the threads take
// 16-byte packs of 4 floats, strided by blockDim, when all of the tensor's pointers are 16-byte aligned (scalar
// otherwise), so every warp access is coalesced. Memory traffic per element: SGD reads p, g, buf and writes p, buf (20 B); AdamW reads p, g, m, v and
// writes p, m, v (28 B), amsgrad 36 B. Math is fp32 (the shared sgd_update / adam_update).
//
// Clipping is three launches with a fixed reduction order (bitwise reproducible): per-block partials of the norm in
// fp64 over a grid that depends only on the chunk count, one block that adds them in order and writes the norm and
// the scale, then a multi-tensor scale that reads the scale from device memory (no host round trip unless the
// caller asks for the norm). No atomics anywhere.
#include "runtime/kernel.h"
//
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/reduce.cuh"
#include "common/vec.cuh"
#include "optim/optim.h"
#include "runtime/device.h"

namespace dlk::DLK_KNS {
namespace {

constexpr int kThreads = 256;
// One block per chunk up to this many (the hardware scheduler balances the waves); beyond it, grid stride.
constexpr std::int64_t kMaxBlocks = std::int64_t{1} << 20;
constexpr int kClipPartials = 1024;  // most partial sums of the norm (one per block of the first stage)

// Where a chunk's elements are: its table entry and [begin, end) within the tensor.
struct ChunkRange {
  const OptimTensor* t;
  std::int64_t begin, end;
};

__device__ __forceinline__ ChunkRange chunk_range(const OptimTensor* table, int count, std::int64_t c) {
  ChunkRange r;
  r.t = table + optim_find_tensor(table, count, c);
  r.begin = (c - r.t->chunk_begin) * kOptimChunk;
  r.end = r.begin + kOptimChunk < r.t->n ? r.begin + kOptimChunk : r.t->n;
  return r;
}

// Walks one chunk: `op.template apply<4>(i)` on 16-byte packs of four elements when every pointer of the tensor is
// 16-byte aligned (chunk starts are multiples of 4 elements, so packs stay aligned), then `apply<1>` on the rest.
// Thread x takes packs x, x + blockDim, ...: each load instruction of a warp covers 512 contiguous bytes.
template <typename Op>
__device__ __forceinline__ void chunk_loop(const ChunkRange& r, const Op& op) {
  std::int64_t tail = r.begin;
  if (r.t->vec4) {
    tail = r.begin + ((r.end - r.begin) & ~std::int64_t{3});
    for (std::int64_t i = r.begin + 4 * static_cast<std::int64_t>(threadIdx.x); i < tail; i += 4 * blockDim.x)
      op.template apply<4>(i);
  }
  for (std::int64_t i = tail + threadIdx.x; i < r.end; i += blockDim.x) op.template apply<1>(i);
}

struct SgdOp {
  const OptimTensor& t;
  float momentum, one_minus_dampening;
  bool nesterov, first_step;
  template <int N>
  __device__ __forceinline__ void apply(std::int64_t i) const {
    float p[N], g[N], b[N] = {};
    load_floats<float, N>(t.p + i, p);
    load_floats<float, N>(t.g + i, g);
    if (t.s0) {
      if (!first_step) load_floats<float, N>(t.s0 + i, b);  // the first step never reads the buffer
#pragma unroll
      for (int j = 0; j < N; ++j) sgd_update(p[j], g[j], &b[j], t, momentum, one_minus_dampening, nesterov, first_step);
      store_floats<float, N>(t.s0 + i, b);
    } else {
#pragma unroll
      for (int j = 0; j < N; ++j) sgd_update(p[j], g[j], nullptr, t, 0.0f, 1.0f, false, false);
    }
    store_floats<float, N>(t.p + i, p);
  }
};

// SGD over every chunk of the table. A block owns whole chunks (grid stride), its threads the chunk's packs.
// Momentum state is read and written only when the table carries buffers (and not read on the first step).
__global__ void __launch_bounds__(kThreads)
    sgd_multi_tensor_kernel(const OptimTensor* table, int count, std::int64_t chunks, float momentum,
                            float one_minus_dampening, bool nesterov, bool first_step) {
  for (std::int64_t c = blockIdx.x; c < chunks; c += gridDim.x) {
    const ChunkRange r = chunk_range(table, count, c);
    const OptimTensor t = *r.t;
    chunk_loop(r, SgdOp{t, momentum, one_minus_dampening, nesterov, first_step});
  }
}

template <bool kAmsgrad>
struct AdamOp {
  const OptimTensor& t;
  AdamConsts k;
  template <int N>
  __device__ __forceinline__ void apply(std::int64_t i) const {
    float p[N], g[N], m[N], v[N], vm[N] = {};
    load_floats<float, N>(t.p + i, p);
    load_floats<float, N>(t.g + i, g);
    load_floats<float, N>(t.s0 + i, m);
    load_floats<float, N>(t.s1 + i, v);
    if (kAmsgrad) load_floats<float, N>(t.s2 + i, vm);
#pragma unroll
    for (int j = 0; j < N; ++j) adam_update<kAmsgrad>(p[j], g[j], m[j], v[j], vm[j], t, k);
    store_floats<float, N>(t.p + i, p);
    store_floats<float, N>(t.s0 + i, m);
    store_floats<float, N>(t.s1 + i, v);
    if (kAmsgrad) store_floats<float, N>(t.s2 + i, vm);
  }
};

// Adam / AdamW over every chunk of the table, same ownership as the SGD kernel; exp_avg, exp_avg_sq (and the
// amsgrad maximum) are read and written once per element. amsgrad is per call (every tensor has s2 or none).
template <bool kAmsgrad>
__global__ void __launch_bounds__(kThreads)
    adam_multi_tensor_kernel(const OptimTensor* table, int count, std::int64_t chunks, AdamConsts k) {
  for (std::int64_t c = blockIdx.x; c < chunks; c += gridDim.x) {
    const ChunkRange r = chunk_range(table, count, c);
    const OptimTensor t = *r.t;
    chunk_loop(r, AdamOp<kAmsgrad>{t, k});
  }
}

__device__ __forceinline__ double combine(double a, double b, NormKind kind) {
  if (kind != NormKind::Inf) return a + b;
  if (a != a || b != b) return a != a ? a : b;  // NaN wins, as torch's max does
  return a > b ? a : b;
}

// fp64 reduction over the block (blockDim.x a multiple of 32), result in every thread.
__device__ __forceinline__ double block_combine(double v, NormKind kind) {
  DLK_SHARED(double, partial, 32);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = combine(v, __shfl_xor_sync(kFullMask, v, o), kind);
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < warps ? partial[lane] : 0.0;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = combine(v, __shfl_xor_sync(kFullMask, v, o), kind);
  return v;
}

struct NormOp {
  const float* g;
  NormKind kind;
  double& s;
  template <int N>
  __device__ __forceinline__ void apply(std::int64_t i) const {
    float v[N];
    load_floats<float, N>(g + i, v);
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const double a = fabs(static_cast<double>(v[j]));
      s = combine(s, kind == NormKind::L2 ? a * a : a, kind);
    }
  }
};

// Stage 1 of the norm: block b sums |g|^p (or takes max |g|) over its grid-strided chunks in fp64 and writes
// partial[b]. Reads every gradient once.
__global__ void __launch_bounds__(kThreads)
    clip_partial_kernel(const OptimTensor* table, int count, std::int64_t chunks, NormKind kind, double* partial) {
  double s = 0.0;
  for (std::int64_t c = blockIdx.x; c < chunks; c += gridDim.x) {
    const ChunkRange r = chunk_range(table, count, c);
    chunk_loop(r, NormOp{r.t->p, kind, s});
  }
  s = block_combine(s, kind);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// Stage 2: one block combines the `parts` partials in a fixed order; thread 0 writes the norm and the scale
// (scalars[0], scalars[1]) and the caller's device norm when given.
__global__ void __launch_bounds__(kThreads)
    clip_finish_kernel(const double* partial, int parts, NormKind kind, float max_norm, float* scalars,
                       float* total_out) {
  double s = 0.0;
  for (int i = threadIdx.x; i < parts; i += blockDim.x) s = combine(s, partial[i], kind);
  s = block_combine(s, kind);
  if (threadIdx.x == 0) {
    const float total = static_cast<float>(kind == NormKind::L2 ? sqrt(s) : s);
    scalars[0] = total;
    scalars[1] = max_norm / (total + 1e-6f);
    if (total_out) *total_out = total;
  }
}

struct ScaleOp {
  float* g;
  float coef;
  template <int N>
  __device__ __forceinline__ void apply(std::int64_t i) const {
    float v[N];
    load_floats<float, N>(g + i, v);
#pragma unroll
    for (int j = 0; j < N; ++j) v[j] *= coef;
    store_floats<float, N>(g + i, v);
  }
};

// Stage 3: multiplies every gradient by scalars[1] when it is below 1 (a uniform branch: nothing is touched
// otherwise, NaN included).
__global__ void __launch_bounds__(kThreads)
    clip_scale_kernel(const OptimTensor* table, int count, std::int64_t chunks, const float* scalars) {
  const float coef = scalars[1];
  if (!(coef < 1.0f)) return;
  for (std::int64_t c = blockIdx.x; c < chunks; c += gridDim.x) {
    const ChunkRange r = chunk_range(table, count, c);
    chunk_loop(r, ScaleOp{r.t->p, coef});
  }
}

struct ZeroOp {
  float* w;
  template <int N>
  __device__ __forceinline__ void apply(std::int64_t i) const {
    float z[N];
#pragma unroll
    for (int j = 0; j < N; ++j) z[j] = 0.0f;
    store_floats<float, N>(w + i, z);
  }
};

// Zeroes every tensor of the table: 4-byte words where the tensor allows it, bytes otherwise.
__global__ void __launch_bounds__(kThreads)
    zero_multi_tensor_kernel(const OptimTensor* table, int count, std::int64_t chunks) {
  for (std::int64_t c = blockIdx.x; c < chunks; c += gridDim.x) {
    const ChunkRange r = chunk_range(table, count, c);
    if (r.t->unit_bytes == 4) {
      chunk_loop(r, ZeroOp{r.t->p});  // 4-byte words written as float +0.0f: all bits zero
    } else {
      unsigned char* b = reinterpret_cast<unsigned char*>(r.t->p);
      for (std::int64_t i = r.begin + threadIdx.x; i < r.end; i += blockDim.x) b[i] = 0;
    }
  }
}

std::size_t align_up(std::size_t v) { return (v + 255) / 256 * 256; }

// Copies the table into the workspace (which must hold `extra` more bytes after it) and returns the device copy.
// The host table may be freed afterwards: a copy from pageable memory has read it when cudaMemcpyAsync returns.
const OptimTensor* upload_table(const OptimTable& table, const Exec& exec, std::size_t extra, void** extra_out) {
  const std::size_t bytes = table.tensors.size() * sizeof(OptimTensor);
  unsigned char* ws = static_cast<unsigned char*>(exec.workspace(align_up(bytes) + extra));
  if (bytes == 0) {
    // clip_grad_norm of an empty list still runs its two reduction stages (the norm is 0)
  } else if (exec.backend == Backend::Cuda) {
    device::memcpy_async(ws, table.tensors.data(), bytes, 1, exec.stream);
  } else {
    std::memcpy(ws, table.tensors.data(), bytes);
  }
  if (extra_out) *extra_out = ws + align_up(bytes);
  return reinterpret_cast<const OptimTensor*>(ws);
}

dim3 grid_for(std::int64_t chunks) { return dim3(static_cast<unsigned>(std::min(chunks, kMaxBlocks))); }

void check_count(const OptimTable& table, const char* op) {
  if (table.tensors.size() > 0x7fffffffu) fail(DLK_ERROR_OVERFLOW, op, ": more than 2^31-1 tensors in one call");
}

}  // namespace

void sgd_step(const SgdArgs& a, const Exec& exec) {
  check_count(a.table, "sgd_step");
  if (a.table.chunks == 0) return;
  const OptimTensor* tab = upload_table(a.table, exec, 0, nullptr);
  launch("sgd_multi_tensor_kernel", sgd_multi_tensor_kernel, grid_for(a.table.chunks), dim3(kThreads), 0, exec, tab,
         static_cast<int>(a.table.tensors.size()), a.table.chunks, a.momentum, a.one_minus_dampening, a.nesterov,
         a.first_step);
}

void adam_step(const AdamArgs& a, const Exec& exec) {
  check_count(a.table, "adam_step");
  if (a.table.chunks == 0) return;
  const OptimTensor* tab = upload_table(a.table, exec, 0, nullptr);
  if (a.amsgrad)
    launch("adam_multi_tensor_kernel", adam_multi_tensor_kernel<true>, grid_for(a.table.chunks), dim3(kThreads), 0,
           exec, tab, static_cast<int>(a.table.tensors.size()), a.table.chunks, a.k);
  else
    launch("adam_multi_tensor_kernel", adam_multi_tensor_kernel<false>, grid_for(a.table.chunks), dim3(kThreads), 0,
           exec, tab, static_cast<int>(a.table.tensors.size()), a.table.chunks, a.k);
}

void clip_grad_norm(const ClipArgs& a, const Exec& exec) {
  check_count(a.table, "clip_grad_norm");
  const std::int64_t parts = std::max<std::int64_t>(1, std::min<std::int64_t>(a.table.chunks, kClipPartials));
  void* extra = nullptr;
  const OptimTensor* tab =
      upload_table(a.table, exec, align_up(static_cast<std::size_t>(parts) * sizeof(double)) + 2 * sizeof(float),
                   &extra);
  double* partial = static_cast<double*>(extra);
  float* scalars = reinterpret_cast<float*>(static_cast<unsigned char*>(extra) +
                                            align_up(static_cast<std::size_t>(parts) * sizeof(double)));
  const int count = static_cast<int>(a.table.tensors.size());
  launch("clip_partial_kernel", clip_partial_kernel, dim3(static_cast<unsigned>(parts)), dim3(kThreads), 0, exec,
         tab, count, a.table.chunks, a.norm, partial);
  launch("clip_finish_kernel", clip_finish_kernel, dim3(1), dim3(kThreads), 0, exec,
         static_cast<const double*>(partial), static_cast<int>(parts), a.norm, a.max_norm, scalars,
         a.total_norm_device);
  if (a.table.chunks > 0)
    launch("clip_scale_kernel", clip_scale_kernel, grid_for(a.table.chunks), dim3(kThreads), 0, exec, tab, count,
           a.table.chunks, static_cast<const float*>(scalars));
  if (a.total_norm_host) {
    if (exec.backend == Backend::Cuda) {
      device::memcpy_async(a.total_norm_host, scalars, sizeof(float), 2, exec.stream);
      device::stream_synchronize(exec.stream);
    } else {
      *a.total_norm_host = scalars[0];
    }
  }
}

void zero_grad(const ZeroArgs& a, const Exec& exec) {
  check_count(a.table, "zero_grad");
  if (a.table.chunks == 0) return;
  const OptimTensor* tab = upload_table(a.table, exec, 0, nullptr);
  launch("zero_multi_tensor_kernel", zero_multi_tensor_kernel, grid_for(a.table.chunks), dim3(kThreads), 0, exec,
         tab, static_cast<int>(a.table.tensors.size()), a.table.chunks);
}

}  // namespace dlk::DLK_KNS
