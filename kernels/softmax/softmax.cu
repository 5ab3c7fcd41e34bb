// CUDA kernels of the fused masked softmax (forward and backward) and the launchers that pick one.
//
// The op is memory bound: the goal is one read of x and one write of y at close to copy bandwidth. So the scale,
// the mask (tensor, causal, key padding) and the -inf handling are applied while the row is loaded, the row stays
// in registers between the reductions and the store, loads and stores are 16-byte vectors whenever every row start
// is 16-byte aligned, and columns past a causal / key-padding row limit are never read (only written as zeros).
// Three paths, by row length (see pick_path):
//   softmax_rows_warp_kernel     cols <= 1024: a warp (or a power-of-two group of lanes) per row, in registers.
//   softmax_rows_block_kernel    cols <= 32 * blockDim (<= 32768): a block per row, in registers.
//   softmax_rows_online_kernel   longer rows: a block per row, online max+sum in one pass, then a normalising pass
//                                that reads the row again (mostly from L2): 2 reads + 1 write.
// The backward dx = scale * y * (dy - sum(dy * y)) has the same three paths.
// Math is fp32 for every storage type; exp is expf (the kernels are memory bound, accuracy is free).
#include "runtime/kernel.h"
//
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "common/convert.cuh"
#include "common/reduce.cuh"
#include "common/vec.cuh"
#include "softmax/softmax.h"


namespace dlk::DLK_KNS {
namespace {

constexpr int kWarpMaxCols = 1024;      // values per lane <= 32 in the warp path
constexpr int kMaxValsPerThread = 32;   // register budget for the row in the warp and block paths
constexpr int kBlockMaxThreads = 1024;  // block path capacity: 32 * 1024 = 32768 columns (16384 when scalar)
constexpr int kWarpPathThreads = 128;   // threads per block of the warp path
constexpr int kOnlineThreads = 512;     // threads per block of the online path
constexpr std::int64_t kMaxGrid = 0x7fffffff;

// Max / sum over a group of `group` consecutive lanes (a power of two <= 32). Every lane of the warp must call.
__device__ __forceinline__ float group_max(float v, int group) {
  for (int o = group / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}
__device__ __forceinline__ float group_sum(float v, int group) {
  for (int o = group / 2; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

__device__ __forceinline__ std::int64_t mask_elem_size(DType t) {
  return t == DType::F32 ? 4 : (t == DType::F16 || t == DType::BF16) ? 2 : 1;
}

// The tensor mask of one row: where it is and how to read it.
struct RowMask {
  const unsigned char* base;  // the row's first mask element
  std::int64_t col_stride;    // in elements
  DType dtype;
};

__device__ __forceinline__ RowMask row_mask(const SoftmaxMask& m, std::int64_t row) {
  RowMask rm;
  rm.dtype = m.mask_dtype;
  rm.col_stride = m.col_stride;
  rm.base = static_cast<const unsigned char*>(m.mask) + softmax_mask_row_offset(m, row) * mask_elem_size(m.mask_dtype);
  return rm;
}

// scale * x (+ additive mask), or -inf where a boolean mask drops the entry. The dtype switch is uniform.
__device__ __forceinline__ float apply_mask(float v, const RowMask& rm, std::int64_t j) {
  const std::int64_t k = j * rm.col_stride;
  switch (rm.dtype) {
    case DType::F32: return v + reinterpret_cast<const float*>(rm.base)[k];
    case DType::F16: return v + to_float(reinterpret_cast<const __half*>(rm.base)[k]);
    case DType::BF16: return v + to_float(reinterpret_cast<const __nv_bfloat16*>(rm.base)[k]);
    default: return rm.base[k] ? v : -INFINITY;  // I8 / U8: nonzero keeps
  }
}

// Loads pack p (`kPack` columns from j0) of a row as masked fp32 logits: columns at or past `limit` are -inf and
// a pack wholly past the limit is not read.
template <typename T, bool kMask, int kPack>
__device__ __forceinline__ void load_logits(const T* xr, std::int64_t j0, std::int64_t limit, float scale,
                                            const RowMask& rm, float* v) {
  if (j0 < limit) {
    const Pack<T, kPack> pk = load_pack<T, kPack>(xr + j0);
#pragma unroll
    for (int e = 0; e < kPack; ++e) {
      float t = scale * to_float(pk.v[e]);
      if (kMask) t = apply_mask(t, rm, j0 + e);
      v[e] = j0 + e < limit ? t : -INFINITY;
    }
  } else {
#pragma unroll
    for (int e = 0; e < kPack; ++e) v[e] = -INFINITY;
  }
}

// ------------------------------------------------------------------------------------------------- forward

// Warp path. A group of `group` lanes (power of two <= 32; 32 unless the row is short) owns one row, so a warp owns
// 32 / group rows and a block kWarpPathThreads / group rows; a lane holds kVals values (kVals / kPack packs, strided
// by group * kPack columns so each load instruction is coalesced) in registers. Traffic: one read of the row (up to
// its limit) and of its mask, one write. Limits: cols <= group * kVals <= 1024; kPack > 1 needs 16-byte aligned x,
// y and cols % kPack == 0. Rows loop by grid stride (any row count).
template <typename T, bool kMask, int kPack, int kVals>
__global__ void __launch_bounds__(kWarpPathThreads)
    softmax_rows_warp_kernel(const T* x, T* y, std::int64_t rows, std::int64_t cols, float scale, SoftmaxMask mask,
                             int group) {
  constexpr int kPacks = kVals / kPack;
  const int sub = static_cast<int>(threadIdx.x) & (group - 1);
  const std::int64_t rows_per_block = blockDim.x / group;
  for (std::int64_t base = blockIdx.x * rows_per_block; base < rows; base += gridDim.x * rows_per_block) {
    const std::int64_t row = base + threadIdx.x / group;
    const bool valid = row < rows;  // invalid groups still take part in the shuffles
    const std::int64_t limit = valid ? softmax_row_limit(mask, row, cols) : 0;
    RowMask rm{};
    if (kMask && valid) rm = row_mask(mask, row);
    const T* xr = x + (valid ? row : 0) * cols;
    float v[kVals];
    float mx = -INFINITY;
#pragma unroll
    for (int p = 0; p < kPacks; ++p) {
      const std::int64_t j0 = (static_cast<std::int64_t>(p) * group + sub) * kPack;
      load_logits<T, kMask, kPack>(xr, j0, limit, scale, rm, v + p * kPack);
#pragma unroll
      for (int e = 0; e < kPack; ++e) mx = fmaxf(mx, v[p * kPack + e]);
    }
    mx = group_max(mx, group);
    float sum = 0.0f;
#pragma unroll
    for (int i = 0; i < kVals; ++i) {
      v[i] = mx == -INFINITY ? 0.0f : expf(v[i] - mx);
      sum += v[i];
    }
    sum = group_sum(sum, group);
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;  // 0 only when the whole row is masked
    if (!valid) continue;
    T* yr = y + row * cols;
#pragma unroll
    for (int p = 0; p < kPacks; ++p) {
      const std::int64_t j0 = (static_cast<std::int64_t>(p) * group + sub) * kPack;
      if (j0 < cols) {
        Pack<T, kPack> out;
#pragma unroll
        for (int e = 0; e < kPack; ++e) out.v[e] = from_float<T>(v[p * kPack + e] * inv);
        store_pack<T, kPack>(yr + j0, out);
      }
    }
  }
}

// Block path. A block owns one row at a time (grid stride over rows); each thread holds kVals values (kVals / kPack
// packs strided by blockDim * kPack columns) in registers; warp shuffles then 32 floats of shared memory reduce
// across the block. Traffic: one read, one write. Limits: blockDim a multiple of 32, <= 1024; cols <= blockDim *
// kVals <= 32768; kPack > 1 as in the warp path.
template <typename T, bool kMask, int kPack, int kVals>
__global__ void __launch_bounds__(kBlockMaxThreads)
    softmax_rows_block_kernel(const T* x, T* y, std::int64_t rows, std::int64_t cols, float scale, SoftmaxMask mask) {
  constexpr int kPacks = kVals / kPack;
  for (std::int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const std::int64_t limit = softmax_row_limit(mask, row, cols);
    RowMask rm{};
    if (kMask) rm = row_mask(mask, row);
    const T* xr = x + row * cols;
    float v[kVals];
    float mx = -INFINITY;
#pragma unroll
    for (int p = 0; p < kPacks; ++p) {
      const std::int64_t j0 = (static_cast<std::int64_t>(p) * blockDim.x + threadIdx.x) * kPack;
      load_logits<T, kMask, kPack>(xr, j0, limit, scale, rm, v + p * kPack);
#pragma unroll
      for (int e = 0; e < kPack; ++e) mx = fmaxf(mx, v[p * kPack + e]);
    }
    mx = block_max(mx);
    float sum = 0.0f;
#pragma unroll
    for (int i = 0; i < kVals; ++i) {
      v[i] = mx == -INFINITY ? 0.0f : expf(v[i] - mx);
      sum += v[i];
    }
    sum = block_sum(sum);
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    T* yr = y + row * cols;
#pragma unroll
    for (int p = 0; p < kPacks; ++p) {
      const std::int64_t j0 = (static_cast<std::int64_t>(p) * blockDim.x + threadIdx.x) * kPack;
      if (j0 < cols) {
        Pack<T, kPack> out;
#pragma unroll
        for (int e = 0; e < kPack; ++e) out.v[e] = from_float<T>(v[p * kPack + e] * inv);
        store_pack<T, kPack>(yr + j0, out);
      }
    }
  }
}

// Online path, for rows longer than the registers of a block hold. A block owns one row at a time; each thread
// walks its packs (strided by blockDim * kPack) keeping a running max and a sum rescaled whenever the max grows
// (one rescale per pack), the block combines the (max, sum) pairs, then a second sweep re-reads the row up to its
// limit and writes y (zeros past it). Traffic: two reads (the second mostly from L2) and one write. Limits: any
// cols; blockDim a multiple of 32; kPack > 1 as in the warp path.
template <typename T, bool kMask, int kPack>
__global__ void __launch_bounds__(kOnlineThreads)
    softmax_rows_online_kernel(const T* x, T* y, std::int64_t rows, std::int64_t cols, float scale, SoftmaxMask mask) {
  const std::int64_t step = static_cast<std::int64_t>(blockDim.x) * kPack;
  for (std::int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const std::int64_t limit = softmax_row_limit(mask, row, cols);
    RowMask rm{};
    if (kMask) rm = row_mask(mask, row);
    const T* xr = x + row * cols;
    float mx = -INFINITY, sum = 0.0f;
    for (std::int64_t j0 = threadIdx.x * kPack; j0 < limit; j0 += step) {
      float v[kPack];
      load_logits<T, kMask, kPack>(xr, j0, limit, scale, rm, v);
      float pm = mx;
#pragma unroll
      for (int e = 0; e < kPack; ++e) pm = fmaxf(pm, v[e]);
      if (pm == -INFINITY) continue;
      if (pm > mx) {
        sum *= expf(mx - pm);  // mx == -inf: sum is 0 and stays 0
        mx = pm;
      }
#pragma unroll
      for (int e = 0; e < kPack; ++e) sum += expf(v[e] - mx);
    }
    const float row_max = block_max(mx);
    sum = mx == -INFINITY ? 0.0f : sum * expf(mx - row_max);
    sum = block_sum(sum);
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    T* yr = y + row * cols;
    for (std::int64_t j0 = threadIdx.x * kPack; j0 < cols; j0 += step) {
      float v[kPack];
      load_logits<T, kMask, kPack>(xr, j0, limit, scale, rm, v);
      Pack<T, kPack> out;
#pragma unroll
      for (int e = 0; e < kPack; ++e)
        out.v[e] = from_float<T>(row_max == -INFINITY ? 0.0f : expf(v[e] - row_max) * inv);
      store_pack<T, kPack>(yr + j0, out);
    }
  }
}

// ------------------------------------------------------------------------------------------------ backward

// Backward warp path: like softmax_rows_warp_kernel, holding y and dy (2 * kVals registers). Traffic: one read of
// y and dy, one write of dx. Same limits.
template <typename T, int kPack, int kVals>
__global__ void __launch_bounds__(kWarpPathThreads)
    softmax_backward_rows_warp_kernel(const T* y, const T* dy, T* dx, std::int64_t rows, std::int64_t cols, float scale,
                                      int group) {
  constexpr int kPacks = kVals / kPack;
  const int sub = static_cast<int>(threadIdx.x) & (group - 1);
  const std::int64_t rows_per_block = blockDim.x / group;
  for (std::int64_t base = blockIdx.x * rows_per_block; base < rows; base += gridDim.x * rows_per_block) {
    const std::int64_t row = base + threadIdx.x / group;
    const bool valid = row < rows;
    const std::int64_t n = valid ? cols : 0;
    const std::int64_t off = (valid ? row : 0) * cols;
    float yv[kVals] = {}, gv[kVals] = {};  // packs past the row stay 0 (never stored)
    float dot = 0.0f;
#pragma unroll
    for (int p = 0; p < kPacks; ++p) {
      const std::int64_t j0 = (static_cast<std::int64_t>(p) * group + sub) * kPack;
      if (j0 < n) {
        const Pack<T, kPack> a = load_pack<T, kPack>(y + off + j0), b = load_pack<T, kPack>(dy + off + j0);
#pragma unroll
        for (int e = 0; e < kPack; ++e) {
          yv[p * kPack + e] = to_float(a.v[e]);
          gv[p * kPack + e] = to_float(b.v[e]);
          dot += yv[p * kPack + e] * gv[p * kPack + e];
        }
      }
    }
    dot = group_sum(dot, group);
    if (!valid) continue;
#pragma unroll
    for (int p = 0; p < kPacks; ++p) {
      const std::int64_t j0 = (static_cast<std::int64_t>(p) * group + sub) * kPack;
      if (j0 < n) {
        Pack<T, kPack> out;
#pragma unroll
        for (int e = 0; e < kPack; ++e) out.v[e] = from_float<T>(scale * yv[p * kPack + e] * (gv[p * kPack + e] - dot));
        store_pack<T, kPack>(dx + off + j0, out);
      }
    }
  }
}

// Backward block path: like softmax_rows_block_kernel with y and dy in registers. Same limits.
template <typename T, int kPack, int kVals>
__global__ void __launch_bounds__(kBlockMaxThreads)
    softmax_backward_rows_block_kernel(const T* y, const T* dy, T* dx, std::int64_t rows, std::int64_t cols,
                                       float scale) {
  constexpr int kPacks = kVals / kPack;
  for (std::int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const std::int64_t off = row * cols;
    float yv[kVals] = {}, gv[kVals] = {};  // packs past the row stay 0 (never stored)
    float dot = 0.0f;
#pragma unroll
    for (int p = 0; p < kPacks; ++p) {
      const std::int64_t j0 = (static_cast<std::int64_t>(p) * blockDim.x + threadIdx.x) * kPack;
      if (j0 < cols) {
        const Pack<T, kPack> a = load_pack<T, kPack>(y + off + j0), b = load_pack<T, kPack>(dy + off + j0);
#pragma unroll
        for (int e = 0; e < kPack; ++e) {
          yv[p * kPack + e] = to_float(a.v[e]);
          gv[p * kPack + e] = to_float(b.v[e]);
          dot += yv[p * kPack + e] * gv[p * kPack + e];
        }
      }
    }
    dot = block_sum(dot);
#pragma unroll
    for (int p = 0; p < kPacks; ++p) {
      const std::int64_t j0 = (static_cast<std::int64_t>(p) * blockDim.x + threadIdx.x) * kPack;
      if (j0 < cols) {
        Pack<T, kPack> out;
#pragma unroll
        for (int e = 0; e < kPack; ++e) out.v[e] = from_float<T>(scale * yv[p * kPack + e] * (gv[p * kPack + e] - dot));
        store_pack<T, kPack>(dx + off + j0, out);
      }
    }
  }
}

// Backward for long rows: a block per row, one sweep for sum(dy * y), a second that re-reads y and dy and writes
// dx. Traffic: two reads of y and dy (the second mostly from L2), one write. Any cols.
template <typename T, int kPack>
__global__ void __launch_bounds__(kOnlineThreads)
    softmax_backward_rows_online_kernel(const T* y, const T* dy, T* dx, std::int64_t rows, std::int64_t cols,
                                        float scale) {
  const std::int64_t step = static_cast<std::int64_t>(blockDim.x) * kPack;
  for (std::int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const std::int64_t off = row * cols;
    float dot = 0.0f;
    for (std::int64_t j0 = threadIdx.x * kPack; j0 < cols; j0 += step) {
      const Pack<T, kPack> a = load_pack<T, kPack>(y + off + j0), b = load_pack<T, kPack>(dy + off + j0);
#pragma unroll
      for (int e = 0; e < kPack; ++e) dot += to_float(a.v[e]) * to_float(b.v[e]);
    }
    dot = block_sum(dot);
    for (std::int64_t j0 = threadIdx.x * kPack; j0 < cols; j0 += step) {
      const Pack<T, kPack> a = load_pack<T, kPack>(y + off + j0), b = load_pack<T, kPack>(dy + off + j0);
      Pack<T, kPack> out;
#pragma unroll
      for (int e = 0; e < kPack; ++e) out.v[e] = from_float<T>(scale * to_float(a.v[e]) * (to_float(b.v[e]) - dot));
      store_pack<T, kPack>(dx + off + j0, out);
    }
  }
}

// ------------------------------------------------------------------------------------------------ launchers

enum class Path { Warp, Block, Online };

// How a row of `cols` columns is split: the path, values per thread, threads per row (group or block).
struct Plan {
  Path path = Path::Online;
  int vals = 0;     // per thread, a power of two in [pack, 32]
  int threads = 0;  // warp path: lanes per row (power of two <= 32); block/online path: blockDim
};

int next_pow2(std::int64_t n) {
  int p = 1;
  while (p < n) p <<= 1;
  return p;
}

// The warp path whenever a row fits in one warp's registers (<= 32 values per lane): no shared memory, no
// __syncthreads, and short rows share a warp (group < 32) so no lane idles. Next the block path, as long as the row
// fits in `max_block_vals` values per thread of one block: each thread gets the fewest values that keep the block
// <= 512 threads (smaller blocks keep more rows in flight per SM), else up to 1024. A 1024-thread block leaves 64
// registers a thread, which hold 32 values only on the vectorised forward; the scalar forward (per-element index
// math) and the vectorised backward (y and dy) keep 16, the scalar backward 8, or they spill. Longer rows go online.
Plan pick_path(std::int64_t cols, int pack, int max_block_vals) {
  Plan p;
  const std::int64_t packs = (cols + pack - 1) / pack;
  if (cols <= kWarpMaxCols) {
    p.path = Path::Warp;
    if (packs <= 32) {
      p.vals = pack;
      p.threads = next_pow2(packs);
    } else {
      p.threads = 32;
      p.vals = pack * next_pow2((packs + 31) / 32);
    }
    return p;
  }
  for (int limit : {512, kBlockMaxThreads}) {
    for (int vals = pack < 8 ? 8 : pack; vals <= max_block_vals; vals *= 2) {
      const std::int64_t threads = (cols + vals - 1) / vals;
      if (threads <= limit) {
        p.path = Path::Block;
        p.vals = vals;
        p.threads = static_cast<int>((threads + 31) / 32 * 32);
        return p;
      }
    }
  }
  p.path = Path::Online;
  p.threads = kOnlineThreads;
  return p;
}

unsigned grid_for(std::int64_t blocks) {
  if (blocks < 1) blocks = 1;
  return static_cast<unsigned>(blocks < kMaxGrid ? blocks : kMaxGrid);
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

// Calls f(std::integral_constant<int, V>{}) for the runtime value vals in {1, 2, 4, 8, 16, 32}, kMin <= V <= kMax
// (only those kernels are instantiated).
template <int kMin, int kMax, typename F>
void with_vals(int vals, F&& f) {
  switch (vals) {
    case 1:
      if constexpr (kMin <= 1) {
        f(std::integral_constant<int, 1>{});
        return;
      }
      break;
    case 2:
      if constexpr (kMin <= 2) {
        f(std::integral_constant<int, 2>{});
        return;
      }
      break;
    case 4:
      if constexpr (kMin <= 4) {
        f(std::integral_constant<int, 4>{});
        return;
      }
      break;
    case 8: f(std::integral_constant<int, 8>{}); return;
    case 16:
      if constexpr (kMax >= 16) {
        f(std::integral_constant<int, 16>{});
        return;
      }
      break;
    case 32:
      if constexpr (kMax >= 32) {
        f(std::integral_constant<int, 32>{});
        return;
      }
      break;
    default: break;
  }
  fail(DLK_ERROR_INTERNAL, "softmax: no kernel for ", vals, " values per thread");
}

template <typename T, bool kMask, int kPack>
void forward_typed(const SoftmaxForwardArgs& a, const Exec& exec) {
  const T* x = static_cast<const T*>(a.x);
  T* y = static_cast<T*>(a.y);
  const Plan plan = pick_path(a.cols, kPack, kPack > 1 ? kMaxValsPerThread : kMaxValsPerThread / 2);
  switch (plan.path) {
    case Path::Warp: {
      const std::int64_t rows_per_block = kWarpPathThreads / plan.threads;
      const dim3 grid(grid_for((a.rows + rows_per_block - 1) / rows_per_block)), block(kWarpPathThreads);
      with_vals<kPack, kMaxValsPerThread>(plan.vals, [&](auto vals) {
        launch("softmax_rows_warp_kernel", softmax_rows_warp_kernel<T, kMask, kPack, decltype(vals)::value>, grid,
               block, 0, exec, x, y, a.rows, a.cols, a.scale, a.mask, plan.threads);
      });
      break;
    }
    case Path::Block:
      with_vals<8, (kPack > 1 ? kMaxValsPerThread : kMaxValsPerThread / 2)>(plan.vals, [&](auto vals) {
        launch("softmax_rows_block_kernel", softmax_rows_block_kernel<T, kMask, kPack, decltype(vals)::value>,
               dim3(grid_for(a.rows)), dim3(plan.threads), 0, exec, x, y, a.rows, a.cols, a.scale, a.mask);
      });
      break;
    case Path::Online:
      launch("softmax_rows_online_kernel", softmax_rows_online_kernel<T, kMask, kPack>, dim3(grid_for(a.rows)),
             dim3(plan.threads), 0, exec, x, y, a.rows, a.cols, a.scale, a.mask);
      break;
  }
}

template <typename T, int kPack>
void backward_typed(const SoftmaxBackwardArgs& a, const Exec& exec) {
  const T* y = static_cast<const T*>(a.y);
  const T* dy = static_cast<const T*>(a.dy);
  T* dx = static_cast<T*>(a.dx);
  const Plan plan = pick_path(a.cols, kPack, kPack > 1 ? kMaxValsPerThread / 2 : kMaxValsPerThread / 4);
  switch (plan.path) {
    case Path::Warp: {
      const std::int64_t rows_per_block = kWarpPathThreads / plan.threads;
      const dim3 grid(grid_for((a.rows + rows_per_block - 1) / rows_per_block)), block(kWarpPathThreads);
      with_vals<kPack, kMaxValsPerThread>(plan.vals, [&](auto vals) {
        launch("softmax_backward_rows_warp_kernel", softmax_backward_rows_warp_kernel<T, kPack, decltype(vals)::value>,
               grid, block, 0, exec, y, dy, dx, a.rows, a.cols, a.scale, plan.threads);
      });
      break;
    }
    case Path::Block:
      with_vals<8, (kPack > 1 ? kMaxValsPerThread / 2 : kMaxValsPerThread / 4)>(plan.vals, [&](auto vals) {
        launch("softmax_backward_rows_block_kernel",
               softmax_backward_rows_block_kernel<T, kPack, decltype(vals)::value>, dim3(grid_for(a.rows)),
               dim3(plan.threads), 0, exec, y, dy, dx, a.rows, a.cols, a.scale);
      });
      break;
    case Path::Online:
      launch("softmax_backward_rows_online_kernel", softmax_backward_rows_online_kernel<T, kPack>,
             dim3(grid_for(a.rows)), dim3(plan.threads), 0, exec, y, dy, dx, a.rows, a.cols, a.scale);
      break;
  }
}

}  // namespace

void softmax_forward(const SoftmaxForwardArgs& a, const Exec& exec) {
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int kVec = 16 / sizeof(T);
    // 16-byte packs need every row start aligned: aligned base pointers and cols a multiple of the pack.
    const bool vec = aligned16(a.x) && aligned16(a.y) && a.cols % kVec == 0;
    const bool masked = a.mask.kind == DLK_MASK_TENSOR;
    if (vec && masked)
      forward_typed<T, true, kVec>(a, exec);
    else if (vec)
      forward_typed<T, false, kVec>(a, exec);
    else if (masked)
      forward_typed<T, true, 1>(a, exec);
    else
      forward_typed<T, false, 1>(a, exec);
  });
}

void softmax_backward(const SoftmaxBackwardArgs& a, const Exec& exec) {
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int kVec = 16 / sizeof(T);
    const bool vec = aligned16(a.y) && aligned16(a.dy) && aligned16(a.dx) && a.cols % kVec == 0;
    if (vec)
      backward_typed<T, kVec>(a, exec);
    else
      backward_typed<T, 1>(a, exec);
  });
}

}  // namespace dlk::DLK_KNS
