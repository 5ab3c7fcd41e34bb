// CUDA kernels of masked scaled-dot-product attention (flash-style, forward and backward) and their launchers.
//
// Every kernel works on square tiles of kTile queries x kTile keys of one (batch, head), with fp32 math for every
// storage type (fp16/bf16 are converted when a tile is loaded into shared memory). Shared-memory rows are padded to
// kD + 1 floats so the quad-per-row access patterns below hit distinct banks. The [Tq, Tk] matrix never exists in
// global memory; scores and probabilities live in registers and one kTile x kTile shared tile.
//  - attention_forward_kernel: a block owns kTile query rows (4 threads, a quad, per row; each thread owns kTile/4
//    score columns and kD/4 output columns). It walks the key tiles its rows can see (causal and key-padding limits
//    end the walk, so fully masked causal tiles are never loaded), S = Q K^T from shared memory, online softmax per
//    row (quad shuffles for max and sum, running output rescaled when the max grows), P through a shared tile, O +=
//    P V. Writes O / l and lse = m + log l. Traffic: Q and O once, K and V once per query tile.
//  - attention_row_dot_kernel: Dl_i = <dO_i, O_i>, a warp per row, into the context workspace.
//  - attention_dkdv_kernel: a block owns kTile keys (a quad per key) and walks the query tiles that can see them:
//    recomputes P from lse and dP = dO V^T, dS = P (z dP - Dl), accumulates dV += P'^T dO and dK += scale dS^T Q
//    in registers, writes dK, dV once. No atomics.
//  - attention_dq_kernel: a block owns kTile queries and walks their key tiles: recomputes dS and accumulates
//    dQ += scale dS K in registers. No atomics: the backward is deterministic in every mode, at the price of
//    computing S and dP twice.
// Head dims: kD in {32, 64, 96, 128, 256} is the padded register/shared size; any D <= kD runs on it (80 on 96,
// the rest on the next size up). kTile is 32 (128 threads) for kD <= 128 and 16 (64 threads) for kD = 256, which
// keeps the shared tiles of the backward under 100 KB. Dropout: philox_at per probability (common/philox.h) and
// dropout_keep (dropout/dropout.h), bitwise the cpu backend's decisions.
// That is the fp32 FFMA path (also fp16/bf16 with D > 128, converted on load). fp16/bf16 with D <= 128 take the
// tensor-core kernels further down (forward and backward), which keep the same tiling ideas on mma.m16n8k16.
#include "runtime/kernel.h"
//
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "attention/attention.h"
#include "common/convert.cuh"
#include "common/mma.cuh"
#include "common/philox.h"
#include "common/reduce.cuh"
#include "dropout/dropout.h"

namespace dlk::DLK_KNS {
namespace {

template <int kD>
struct TileConfig {
  static constexpr int kTile = kD <= 128 ? 32 : 16;
  static constexpr int kThreads = 4 * kTile;
  static constexpr int kLd = kD + 1;        // padded row of a Q / K / V / dO tile in shared memory
  static constexpr int kLdS = kTile + 1;    // padded row of a score tile
  static constexpr int kCols = kTile / 4;   // score columns per thread
  static constexpr int kOut = kD / 4;       // output columns per thread (d = quad lane + 4 e)
};

// scale * s (+ additive mask), or -inf when (b, h, i, j) is masked; j < limit checked by the caller.
__device__ __forceinline__ float masked_score(const AttentionMask& m, std::int64_t b, std::int64_t h,
                                              std::int64_t i, std::int64_t j, float s) {
  if (m.kind != DLK_MASK_TENSOR) return s;
  const std::int64_t off = b * m.sb + h * m.sh + i * m.si + j * m.sj;
  switch (m.mask_dtype) {
    case DType::F32: return s + static_cast<const float*>(m.mask)[off];
    case DType::F16: return s + to_float(static_cast<const __half*>(m.mask)[off]);
    case DType::BF16: return s + to_float(static_cast<const __nv_bfloat16*>(m.mask)[off]);
    default: return static_cast<const unsigned char*>(m.mask)[off] ? s : -INFINITY;
  }
}

// Largest row limit among queries [i0, i1) of batch entry b: keys at or past it are masked for the whole tile.
__device__ __forceinline__ std::int64_t tile_key_limit(const AttentionArgs& a, std::int64_t b, std::int64_t i0,
                                                       std::int64_t i1) {
  if (a.mask.kind == DLK_MASK_CAUSAL || a.mask.kind == DLK_MASK_CAUSAL_BOTTOM_RIGHT)
    return attention_row_limit(a.mask, b, i1 - 1, a.Tk);
  return attention_row_limit(a.mask, b, i0, a.Tk);
}

// Loads rows [t0, t0 + kTile) of a [T, D] operand into a shared tile (rows past T are zeros), as fp32.
template <typename T, int kD, typename Smem>
__device__ __forceinline__ void load_tile(Smem& smem, int base, const T* src, std::int64_t rs, std::int64_t t0,
                                          std::int64_t T_, int D) {
  using C = TileConfig<kD>;
  for (int idx = threadIdx.x; idx < C::kTile * D; idx += C::kThreads) {
    const int r = idx / D, d = idx % D;
    smem[base + r * C::kLd + d] = t0 + r < T_ ? to_float(src[(t0 + r) * rs + d]) : 0.0f;
  }
}

__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(kFullMask, v, 1));
  return fmaxf(v, __shfl_xor_sync(kFullMask, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(kFullMask, v, 1);
  return v + __shfl_xor_sync(kFullMask, v, 2);
}

template <typename T, int kD>
__global__ void __launch_bounds__(TileConfig<kD>::kThreads) attention_forward_kernel(AttentionArgs a) {
  using C = TileConfig<kD>;
  DLK_DYNAMIC_SHARED(float, smem);
  const int qs = 0, ks = C::kTile * C::kLd, vs = 2 * C::kTile * C::kLd, ps = 3 * C::kTile * C::kLd;
  const std::int64_t qtiles = (a.Tq + C::kTile - 1) / C::kTile;
  const std::int64_t bh = blockIdx.x / qtiles, b = bh / a.H, h = bh % a.H;
  const std::int64_t i0 = (blockIdx.x % qtiles) * C::kTile, i1 = i0 + C::kTile < a.Tq ? i0 + C::kTile : a.Tq;
  const int D = static_cast<int>(a.D);
  const int r = threadIdx.x / 4, ql = threadIdx.x % 4;
  const std::int64_t i = i0 + r;
  const bool row_valid = i < a.Tq;
  const std::int64_t limit = row_valid ? attention_row_limit(a.mask, b, i, a.Tk) : 0;
  const T* q = static_cast<const T*>(a.q) + b * a.sq.b + h * a.sq.h;
  const T* k = static_cast<const T*>(a.k) + b * a.sk.b + h * a.sk.h;
  const T* v = static_cast<const T*>(a.v) + b * a.sv.b + h * a.sv.h;

  load_tile<T, kD>(smem, qs, q, a.sq.t, i0, a.Tq, D);
  float o[C::kOut];
#pragma unroll
  for (int e = 0; e < C::kOut; ++e) o[e] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  const std::int64_t kend = tile_key_limit(a, b, i0, i1);
  for (std::int64_t j0 = 0; j0 < kend; j0 += C::kTile) {
    __syncthreads();  // the previous tile's readers are done with K, V and P
    load_tile<T, kD>(smem, ks, k, a.sk.t, j0, a.Tk, D);
    load_tile<T, kD>(smem, vs, v, a.sv.t, j0, a.Tk, D);
    __syncthreads();
    float s[C::kCols];
#pragma unroll
    for (int u = 0; u < C::kCols; ++u) s[u] = 0.0f;
    for (int d = 0; d < D; ++d) {
      const float qd = smem[qs + r * C::kLd + d];
#pragma unroll
      for (int u = 0; u < C::kCols; ++u) s[u] += qd * smem[ks + (ql + 4 * u) * C::kLd + d];
    }
    float mx = -INFINITY;
#pragma unroll
    for (int u = 0; u < C::kCols; ++u) {
      const std::int64_t j = j0 + ql + 4 * u;
      s[u] = j < limit ? masked_score(a.mask, b, h, i, j, a.scale * s[u]) : -INFINITY;
      mx = fmaxf(mx, s[u]);
    }
    mx = quad_max(mx);
    const float mnew = fmaxf(m, mx);
    float sum = 0.0f;
#pragma unroll
    for (int u = 0; u < C::kCols; ++u) {
      s[u] = mnew == -INFINITY ? 0.0f : expf(s[u] - mnew);
      sum += s[u];
    }
    sum = quad_sum(sum);
    const float alpha = mnew == -INFINITY ? 1.0f : expf(m - mnew);  // 0 when m was -inf
    l = l * alpha + sum;
    m = mnew;
#pragma unroll
    for (int e = 0; e < C::kOut; ++e) o[e] *= alpha;
#pragma unroll
    for (int u = 0; u < C::kCols; ++u) {
      float p = s[u];
      if (a.dropout && p != 0.0f) {
        const std::uint64_t pos = attention_dropout_position(a, b, h, i, j0 + ql + 4 * u);
        p = dropout_keep(philox_at(a.seed, pos), a.keep_threshold) ? p * a.dropout_scale : 0.0f;
      }
      smem[ps + r * C::kLdS + ql + 4 * u] = p;
    }
    __syncthreads();
    for (int c = 0; c < C::kTile; ++c) {
      const float p = smem[ps + r * C::kLdS + c];
#pragma unroll
      for (int e = 0; e < C::kOut; ++e)
        if (ql + 4 * e < D) o[e] += p * smem[vs + c * C::kLd + ql + 4 * e];
    }
  }
  if (!row_valid) return;
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  T* out = static_cast<T*>(a.out_w) + b * a.so.b + h * a.so.h + i * a.so.t;
#pragma unroll
  for (int e = 0; e < C::kOut; ++e)
    if (ql + 4 * e < D) out[ql + 4 * e] = from_float<T>(o[e] * inv);
  if (a.lse && ql == 0) a.lse[bh * a.Tq + i] = l > 0.0f ? m + logf(l) : -INFINITY;
}

// ------------------------------------------------------------------------------- fp16 / bf16 forward on tensor cores

// Tensor-core forward (FlashAttention-2's split): 4 warps, each owning 16 of the block's 64 query rows, so the
// softmax of a row never leaves its warp. Q (as A fragments) stays in registers for the whole walk over key tiles of
// 64; S = Q K^T is 8 n-tiles of mma.m16n8k16 per 16-wide chunk of D, the online softmax runs on the accumulator
// fragments (a lane holds rows g and g+8, quad shuffles reduce a row), P is re-packed into A fragments with
// a_from_c (no shared-memory trip) and O += P V accumulates kD/8 fp32 fragments. Shared memory: Q, K and V tiles in
// the storage type, rows padded to kD + 8 elements, columns D..kD zero-filled (D is padded to a multiple of 16).
// Traffic as the fp32 kernel. Limits: D <= 128 (register budget), fp16/bf16 only.
template <int kD>
struct MmaConfig {
  static constexpr int kBQ = 64, kBK = 64, kThreads = 128;
  static constexpr int kLd = kD + 8;
  static constexpr int kKc = kD / 16;  // 16-wide chunks of D in Q K^T
  static constexpr int kNt = kBK / 8;  // n-tiles of S
  static constexpr int kNo = kD / 8;   // n-tiles of O
};

// Rows [t0, t0 + rows) of a [T, D] operand into a [rows][kLd] tile of T, zeros past T and past D.
template <typename T, int kD, int kRows, typename Smem>
__device__ __forceinline__ void load_tile_mma(Smem& smem, int base, const T* src, std::int64_t rs, std::int64_t t0,
                                              std::int64_t T_, int D) {
  using C = MmaConfig<kD>;
  for (int idx = threadIdx.x; idx < kRows * kD; idx += C::kThreads) {
    const int r = idx / kD, d = idx % kD;
    smem[base + r * C::kLd + d] = t0 + r < T_ && d < D ? src[(t0 + r) * rs + d] : from_float<T>(0.0f);
  }
}

template <typename T, int kD>
__global__ void __launch_bounds__(MmaConfig<kD>::kThreads) attention_forward_mma_kernel(AttentionArgs a) {
  using C = MmaConfig<kD>;
  DLK_DYNAMIC_SHARED(T, smem);
  const int qs = 0, ks = C::kBQ * C::kLd, vs = ks + C::kBK * C::kLd;
  const std::int64_t qtiles = (a.Tq + C::kBQ - 1) / C::kBQ;
  const std::int64_t bh = blockIdx.x / qtiles, b = bh / a.H, h = bh % a.H;
  const std::int64_t i0 = (blockIdx.x % qtiles) * C::kBQ, i1 = i0 + C::kBQ < a.Tq ? i0 + C::kBQ : a.Tq;
  const int D = static_cast<int>(a.D);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;
  const T* q = static_cast<const T*>(a.q) + b * a.sq.b + h * a.sq.h;
  const T* k = static_cast<const T*>(a.k) + b * a.sk.b + h * a.sk.h;
  const T* v = static_cast<const T*>(a.v) + b * a.sv.b + h * a.sv.h;
  std::int64_t row[2], limit[2];
  bool valid[2];
  for (int x = 0; x < 2; ++x) {
    row[x] = i0 + warp * 16 + g + 8 * x;
    valid[x] = row[x] < a.Tq;
    limit[x] = valid[x] ? attention_row_limit(a.mask, b, row[x], a.Tk) : 0;
  }
  load_tile_mma<T, kD, C::kBQ>(smem, qs, q, a.sq.t, i0, a.Tq, D);
  __syncthreads();
  mma::FragA qa[C::kKc];
#pragma unroll
  for (int kc = 0; kc < C::kKc; ++kc) mma::load_a<T>(qa[kc], smem + (qs + warp * 16 * C::kLd + kc * 16), C::kLd);
  mma::FragC o[C::kNo];
#pragma unroll
  for (int n = 0; n < C::kNo; ++n) mma::zero(o[n]);
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // l: this lane's share of the row sums
  const std::int64_t kend = tile_key_limit(a, b, i0, i1);
  for (std::int64_t j0 = 0; j0 < kend; j0 += C::kBK) {
    __syncthreads();  // every warp is done with the previous K and V tiles
    load_tile_mma<T, kD, C::kBK>(smem, ks, k, a.sk.t, j0, a.Tk, D);
    load_tile_mma<T, kD, C::kBK>(smem, vs, v, a.sv.t, j0, a.Tk, D);
    __syncthreads();
    mma::FragC s[C::kNt];
#pragma unroll
    for (int n = 0; n < C::kNt; ++n) {
      mma::zero(s[n]);
#pragma unroll
      for (int kc = 0; kc < C::kKc; ++kc) {
        mma::FragB kb;
        mma::load_b_t<T>(kb, smem + (ks + n * 8 * C::kLd + kc * 16), C::kLd);
        mma::mma_16816<T>(s[n], qa[kc], kb);
      }
    }
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < C::kNt; ++n)
#pragma unroll
      for (int x = 0; x < 4; ++x) {
        const int rr = x / 2;
        const std::int64_t j = j0 + n * 8 + 2 * t4 + x % 2;
        const float val = j < limit[rr] ? masked_score(a.mask, b, h, row[rr], j, a.scale * s[n].x[x]) : -INFINITY;
        s[n].x[x] = val;
        mx[rr] = fmaxf(mx[rr], val);
      }
    float alpha[2], mnew[2];
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      mnew[rr] = fmaxf(m[rr], quad_max(mx[rr]));
      alpha[rr] = mnew[rr] == -INFINITY ? 1.0f : expf(m[rr] - mnew[rr]);
      m[rr] = mnew[rr];
      l[rr] *= alpha[rr];
    }
#pragma unroll
    for (int n = 0; n < C::kNo; ++n)
#pragma unroll
      for (int x = 0; x < 4; ++x) o[n].x[x] *= alpha[x / 2];
#pragma unroll
    for (int n = 0; n < C::kNt; ++n)
#pragma unroll
      for (int x = 0; x < 4; ++x) {
        const int rr = x / 2;
        float p = mnew[rr] == -INFINITY ? 0.0f : expf(s[n].x[x] - mnew[rr]);
        l[rr] += p;
        if (a.dropout && p != 0.0f) {
          const std::uint64_t pos = attention_dropout_position(a, b, h, row[rr], j0 + n * 8 + 2 * t4 + x % 2);
          p = dropout_keep(philox_at(a.seed, pos), a.keep_threshold) ? p * a.dropout_scale : 0.0f;
        }
        s[n].x[x] = p;
      }
#pragma unroll
    for (int kc = 0; kc < C::kBK / 16; ++kc) {
      mma::FragA pa;
      mma::a_from_c<T>(pa, s[2 * kc], s[2 * kc + 1]);
#pragma unroll
      for (int n = 0; n < C::kNo; ++n) {
        mma::FragB vb;
        mma::load_b<T>(vb, smem + (vs + kc * 16 * C::kLd + n * 8), C::kLd);
        mma::mma_16816<T>(o[n], pa, vb);
      }
    }
  }
  float inv[2];
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    l[rr] = quad_sum(l[rr]);
    inv[rr] = l[rr] > 0.0f ? 1.0f / l[rr] : 0.0f;
  }
  T* out = static_cast<T*>(a.out_w) + b * a.so.b + h * a.so.h;
#pragma unroll
  for (int n = 0; n < C::kNo; ++n)
#pragma unroll
    for (int x = 0; x < 4; ++x) {
      const int rr = x / 2, d = n * 8 + 2 * t4 + x % 2;
      if (valid[rr] && d < D) out[row[rr] * a.so.t + d] = from_float<T>(o[n].x[x] * inv[rr]);
    }
  if (a.lse && t4 == 0)
    for (int rr = 0; rr < 2; ++rr)
      if (valid[rr]) a.lse[bh * a.Tq + row[rr]] = l[rr] > 0.0f ? m[rr] + logf(l[rr]) : -INFINITY;
}

// Dl[(b*H + h)*Tq + i] = <dO_i, O_i>: a warp per row, grid-stride.
template <typename T>
__global__ void __launch_bounds__(256) attention_row_dot_kernel(AttentionArgs a, float* dl) {
  const std::int64_t rows = a.B * a.H * a.Tq;
  const int lane = threadIdx.x % 32;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / 32);
  for (std::int64_t row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; row < rows; row += warps) {
    const std::int64_t bh = row / a.Tq, i = row % a.Tq, b = bh / a.H, h = bh % a.H;
    const T* o = static_cast<const T*>(a.out) + b * a.so.b + h * a.so.h + i * a.so.t;
    const T* g = static_cast<const T*>(a.d_out) + b * a.sdo.b + h * a.sdo.h + i * a.sdo.t;
    float acc = 0.0f;
    for (std::int64_t d = lane; d < a.D; d += 32) acc += to_float(o[d]) * to_float(g[d]);
    acc = warp_sum(acc);
    if (lane == 0) dl[row] = acc;
  }
}

// Probability p_ij recomputed from lse, and dS_ij = scale * p (z dP - Dl) with p' = p z for dV; both 0 where masked
// or for rows whose lse is -inf.
struct ProbGrad {
  float p_drop, ds;
};

__device__ __forceinline__ ProbGrad prob_grad(const AttentionArgs& a, std::int64_t b, std::int64_t h, std::int64_t i,
                                              std::int64_t j, std::int64_t limit, float s, float dp, float lse,
                                              float dl) {
  ProbGrad g{0.0f, 0.0f};
  if (j >= limit || lse == -INFINITY) return g;
  const float t = masked_score(a.mask, b, h, i, j, a.scale * s);
  const float p = t == -INFINITY ? 0.0f : expf(t - lse);
  float z = 1.0f;
  if (a.dropout) {
    const std::uint64_t pos = attention_dropout_position(a, b, h, i, j);
    z = dropout_keep(philox_at(a.seed, pos), a.keep_threshold) ? a.dropout_scale : 0.0f;
  }
  g.p_drop = p * z;
  g.ds = a.scale * p * (z * dp - dl);
  return g;
}

template <typename T, int kD>
__global__ void __launch_bounds__(TileConfig<kD>::kThreads) attention_dkdv_kernel(AttentionArgs a, const float* dl) {
  using C = TileConfig<kD>;
  DLK_DYNAMIC_SHARED(float, smem);
  const int ks = 0, vs = C::kTile * C::kLd, qs = 2 * C::kTile * C::kLd, gs = 3 * C::kTile * C::kLd;
  const int pts = 4 * C::kTile * C::kLd, dss = pts + C::kTile * C::kLdS, rows = dss + C::kTile * C::kLdS;
  const std::int64_t ktiles = (a.Tk + C::kTile - 1) / C::kTile;
  const std::int64_t bh = blockIdx.x / ktiles, b = bh / a.H, h = bh % a.H;
  const std::int64_t j0 = (blockIdx.x % ktiles) * C::kTile;
  const int D = static_cast<int>(a.D);
  const int c = threadIdx.x / 4, ql = threadIdx.x % 4;  // this thread's key row and quad lane
  const std::int64_t j = j0 + c;
  const T* q = static_cast<const T*>(a.q) + b * a.sq.b + h * a.sq.h;
  const T* k = static_cast<const T*>(a.k) + b * a.sk.b + h * a.sk.h;
  const T* v = static_cast<const T*>(a.v) + b * a.sv.b + h * a.sv.h;
  const T* g = static_cast<const T*>(a.d_out) + b * a.sdo.b + h * a.sdo.h;
  load_tile<T, kD>(smem, ks, k, a.sk.t, j0, a.Tk, D);
  load_tile<T, kD>(smem, vs, v, a.sv.t, j0, a.Tk, D);
  float dk[C::kOut], dv[C::kOut];
#pragma unroll
  for (int e = 0; e < C::kOut; ++e) dk[e] = dv[e] = 0.0f;
  // Causal: query i sees key j0 only when j0 <= i + offset, so earlier query tiles are skipped.
  std::int64_t first = 0;
  if (a.mask.kind == DLK_MASK_CAUSAL || a.mask.kind == DLK_MASK_CAUSAL_BOTTOM_RIGHT) {
    first = j0 - a.mask.causal_offset;
    first = first < 0 ? 0 : first / C::kTile * C::kTile;
  }
  for (std::int64_t i0 = first; i0 < a.Tq; i0 += C::kTile) {
    const std::int64_t i1 = i0 + C::kTile < a.Tq ? i0 + C::kTile : a.Tq;
    if (tile_key_limit(a, b, i0, i1) <= j0) continue;  // uniform: every row of the tile masks these keys
    __syncthreads();  // the previous tile's readers are done
    load_tile<T, kD>(smem, qs, q, a.sq.t, i0, a.Tq, D);
    load_tile<T, kD>(smem, gs, g, a.sdo.t, i0, a.Tq, D);
    for (int r = threadIdx.x; r < C::kTile; r += C::kThreads) {
      const bool ok = i0 + r < a.Tq;
      smem[rows + r] = ok ? a.lse[bh * a.Tq + i0 + r] : -INFINITY;
      smem[rows + C::kTile + r] = ok ? dl[bh * a.Tq + i0 + r] : 0.0f;
    }
    __syncthreads();
    float s[C::kCols], dp[C::kCols];
#pragma unroll
    for (int u = 0; u < C::kCols; ++u) s[u] = dp[u] = 0.0f;
    for (int d = 0; d < D; ++d) {
      const float kd = smem[ks + c * C::kLd + d], vd = smem[vs + c * C::kLd + d];
#pragma unroll
      for (int u = 0; u < C::kCols; ++u) {
        s[u] += kd * smem[qs + (ql + 4 * u) * C::kLd + d];
        dp[u] += vd * smem[gs + (ql + 4 * u) * C::kLd + d];
      }
    }
#pragma unroll
    for (int u = 0; u < C::kCols; ++u) {
      const int r = ql + 4 * u;
      const std::int64_t i = i0 + r;
      ProbGrad pg{0.0f, 0.0f};
      if (i < a.Tq && j < a.Tk)
        pg = prob_grad(a, b, h, i, j, attention_row_limit(a.mask, b, i, a.Tk), s[u], dp[u], smem[rows + r],
                       smem[rows + C::kTile + r]);
      smem[pts + c * C::kLdS + r] = pg.p_drop;
      smem[dss + c * C::kLdS + r] = pg.ds;
    }
    __syncthreads();
    for (int r = 0; r < C::kTile; ++r) {
      const float pr = smem[pts + c * C::kLdS + r], dsr = smem[dss + c * C::kLdS + r];
#pragma unroll
      for (int e = 0; e < C::kOut; ++e)
        if (ql + 4 * e < D) {
          dv[e] += pr * smem[gs + r * C::kLd + ql + 4 * e];
          dk[e] += dsr * smem[qs + r * C::kLd + ql + 4 * e];
        }
    }
  }
  if (j >= a.Tk) return;
  T* dkp = static_cast<T*>(a.dk) + b * a.sdk.b + h * a.sdk.h + j * a.sdk.t;
  T* dvp = static_cast<T*>(a.dv) + b * a.sdv.b + h * a.sdv.h + j * a.sdv.t;
#pragma unroll
  for (int e = 0; e < C::kOut; ++e)
    if (ql + 4 * e < D) {
      dkp[ql + 4 * e] = from_float<T>(dk[e]);
      dvp[ql + 4 * e] = from_float<T>(dv[e]);
    }
}

template <typename T, int kD>
__global__ void __launch_bounds__(TileConfig<kD>::kThreads) attention_dq_kernel(AttentionArgs a, const float* dl) {
  using C = TileConfig<kD>;
  DLK_DYNAMIC_SHARED(float, smem);
  const int qs = 0, gs = C::kTile * C::kLd, ks = 2 * C::kTile * C::kLd, vs = 3 * C::kTile * C::kLd;
  const int dss = 4 * C::kTile * C::kLd;
  const std::int64_t qtiles = (a.Tq + C::kTile - 1) / C::kTile;
  const std::int64_t bh = blockIdx.x / qtiles, b = bh / a.H, h = bh % a.H;
  const std::int64_t i0 = (blockIdx.x % qtiles) * C::kTile, i1 = i0 + C::kTile < a.Tq ? i0 + C::kTile : a.Tq;
  const int D = static_cast<int>(a.D);
  const int r = threadIdx.x / 4, ql = threadIdx.x % 4;
  const std::int64_t i = i0 + r;
  const bool row_valid = i < a.Tq;
  const std::int64_t limit = row_valid ? attention_row_limit(a.mask, b, i, a.Tk) : 0;
  const float lse = row_valid ? a.lse[bh * a.Tq + i] : -INFINITY;
  const float dli = row_valid ? dl[bh * a.Tq + i] : 0.0f;
  const T* q = static_cast<const T*>(a.q) + b * a.sq.b + h * a.sq.h;
  const T* k = static_cast<const T*>(a.k) + b * a.sk.b + h * a.sk.h;
  const T* v = static_cast<const T*>(a.v) + b * a.sv.b + h * a.sv.h;
  const T* g = static_cast<const T*>(a.d_out) + b * a.sdo.b + h * a.sdo.h;
  load_tile<T, kD>(smem, qs, q, a.sq.t, i0, a.Tq, D);
  load_tile<T, kD>(smem, gs, g, a.sdo.t, i0, a.Tq, D);
  float dq[C::kOut];
#pragma unroll
  for (int e = 0; e < C::kOut; ++e) dq[e] = 0.0f;
  const std::int64_t kend = tile_key_limit(a, b, i0, i1);
  for (std::int64_t j0 = 0; j0 < kend; j0 += C::kTile) {
    __syncthreads();
    load_tile<T, kD>(smem, ks, k, a.sk.t, j0, a.Tk, D);
    load_tile<T, kD>(smem, vs, v, a.sv.t, j0, a.Tk, D);
    __syncthreads();
    float s[C::kCols], dp[C::kCols];
#pragma unroll
    for (int u = 0; u < C::kCols; ++u) s[u] = dp[u] = 0.0f;
    for (int d = 0; d < D; ++d) {
      const float qd = smem[qs + r * C::kLd + d], gd = smem[gs + r * C::kLd + d];
#pragma unroll
      for (int u = 0; u < C::kCols; ++u) {
        s[u] += qd * smem[ks + (ql + 4 * u) * C::kLd + d];
        dp[u] += gd * smem[vs + (ql + 4 * u) * C::kLd + d];
      }
    }
#pragma unroll
    for (int u = 0; u < C::kCols; ++u) {
      const std::int64_t j = j0 + ql + 4 * u;
      const ProbGrad pg = row_valid ? prob_grad(a, b, h, i, j, limit, s[u], dp[u], lse, dli) : ProbGrad{0.0f, 0.0f};
      smem[dss + r * C::kLdS + ql + 4 * u] = pg.ds;
    }
    __syncthreads();
    for (int c = 0; c < C::kTile; ++c) {
      const float ds = smem[dss + r * C::kLdS + c];
#pragma unroll
      for (int e = 0; e < C::kOut; ++e)
        if (ql + 4 * e < D) dq[e] += ds * smem[ks + c * C::kLd + ql + 4 * e];
    }
  }
  if (!row_valid) return;
  T* dqp = static_cast<T*>(a.dq) + b * a.sdq.b + h * a.sdq.h + i * a.sdq.t;
#pragma unroll
  for (int e = 0; e < C::kOut; ++e)
    if (ql + 4 * e < D) dqp[ql + 4 * e] = from_float<T>(dq[e]);
}

// ------------------------------------------------------------------------------ fp16 / bf16 backward on tensor cores

// Tensor-core backward, the two kernels of the fp32 path with mma.m16n8k16 products (FlashAttention-2's split):
//  - attention_dkdv_mma_kernel: 4 warps own 64 keys (16 each). Per query tile of kOther: S^T = K Q^T and
//    dP^T = V dO^T (A fragments of K / V from shared memory, B = Q / dO rows), P^T from lse, dS^T on the accumulator
//    fragments, then dV += P'^T dO and dK += dS^T Q with P'^T / dS^T re-packed by a_from_c as the A operand.
//  - attention_dq_mma_kernel: 4 warps own 64 queries; per key tile S = Q K^T, dP = dO V^T, dS, dQ += dS K.
// Accumulation is fp32; P' and dS are rounded to the storage type for the second products (as FlashAttention-2).
// Shared memory: the operand tiles in the storage type (rows padded to kD + 8, columns past D zero), lse and Dl of
// the walked query tile as floats. Limits: D <= 128; kOther = 64 for D <= 64, else 32 (register budget).
template <int kD>
struct MmaBwdConfig {
  static constexpr int kRows = 64, kThreads = 128;
  static constexpr int kOther = kD <= 64 ? 64 : 32;
  static constexpr int kLd = kD + 8;
  static constexpr int kKc = kD / 16;
  static constexpr int kNt = kOther / 8;  // n-tiles of a [16, kOther] score tile per warp
  static constexpr int kNo = kD / 8;      // n-tiles of a [16, kD] gradient per warp
};

template <typename T, int kD, int kRows, typename Smem>
__device__ __forceinline__ void load_tile_bwd(Smem& smem, int base, const T* src, std::int64_t rs, std::int64_t t0,
                                              std::int64_t T_, int D) {
  using C = MmaBwdConfig<kD>;
  for (int idx = threadIdx.x; idx < kRows * kD; idx += C::kThreads) {
    const int r = idx / kD, d = idx % kD;
    smem[base + r * C::kLd + d] = t0 + r < T_ && d < D ? src[(t0 + r) * rs + d] : from_float<T>(0.0f);
  }
}

// acc[n] (n < kN) += A(16 x kD, rows at a_base) * B^T where B's rows (kN * 8 of them, at b_base) are dotted with A's.
template <typename T, int kD, int kN, typename Smem>
__device__ __forceinline__ void mma_abt(mma::FragC* acc, Smem& smem, int a_base, int b_base) {
  using C = MmaBwdConfig<kD>;
#pragma unroll
  for (int n = 0; n < kN; ++n) mma::zero(acc[n]);
#pragma unroll
  for (int kc = 0; kc < C::kKc; ++kc) {
    mma::FragA fa;
    mma::load_a<T>(fa, smem + (a_base + kc * 16), C::kLd);
#pragma unroll
    for (int n = 0; n < kN; ++n) {
      mma::FragB fb;
      mma::load_b_t<T>(fb, smem + (b_base + n * 8 * C::kLd + kc * 16), C::kLd);
      mma::mma_16816<T>(acc[n], fa, fb);
    }
  }
}

// out[n] (n < kD / 8) += P (16 x kK, accumulator tiles p[0..kK/8)) * B (kK x kD rows at b_base).
template <typename T, int kD, int kK, typename Smem>
__device__ __forceinline__ void mma_pb(mma::FragC* out, const mma::FragC* p, Smem& smem, int b_base) {
  using C = MmaBwdConfig<kD>;
#pragma unroll
  for (int kc = 0; kc < kK / 16; ++kc) {
    mma::FragA pa;
    mma::a_from_c<T>(pa, p[2 * kc], p[2 * kc + 1]);
#pragma unroll
    for (int n = 0; n < C::kNo; ++n) {
      mma::FragB fb;
      mma::load_b<T>(fb, smem + (b_base + kc * 16 * C::kLd + n * 8), C::kLd);
      mma::mma_16816<T>(out[n], pa, fb);
    }
  }
}

template <typename T, int kD>
__global__ void __launch_bounds__(MmaBwdConfig<kD>::kThreads) attention_dkdv_mma_kernel(AttentionArgs a,
                                                                                         const float* dl) {
  using C = MmaBwdConfig<kD>;
  DLK_DYNAMIC_SHARED(T, smem);
  DLK_SHARED(float, stats, 2 * C::kOther);  // lse, then Dl, of the query tile
  const int ks = 0, vs = C::kRows * C::kLd, qs = 2 * C::kRows * C::kLd, gs = qs + C::kOther * C::kLd;
  const std::int64_t ktiles = (a.Tk + C::kRows - 1) / C::kRows;
  const std::int64_t bh = blockIdx.x / ktiles, b = bh / a.H, h = bh % a.H;
  const std::int64_t j0 = (blockIdx.x % ktiles) * C::kRows;
  const int D = static_cast<int>(a.D);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;
  const T* q = static_cast<const T*>(a.q) + b * a.sq.b + h * a.sq.h;
  const T* k = static_cast<const T*>(a.k) + b * a.sk.b + h * a.sk.h;
  const T* v = static_cast<const T*>(a.v) + b * a.sv.b + h * a.sv.h;
  const T* go = static_cast<const T*>(a.d_out) + b * a.sdo.b + h * a.sdo.h;
  std::int64_t key[2];
  for (int x = 0; x < 2; ++x) key[x] = j0 + warp * 16 + g + 8 * x;
  load_tile_bwd<T, kD, C::kRows>(smem, ks, k, a.sk.t, j0, a.Tk, D);
  load_tile_bwd<T, kD, C::kRows>(smem, vs, v, a.sv.t, j0, a.Tk, D);
  mma::FragC dk[C::kNo], dv[C::kNo];
#pragma unroll
  for (int n = 0; n < C::kNo; ++n) {
    mma::zero(dk[n]);
    mma::zero(dv[n]);
  }
  std::int64_t first = 0;
  if (a.mask.kind == DLK_MASK_CAUSAL || a.mask.kind == DLK_MASK_CAUSAL_BOTTOM_RIGHT) {
    first = j0 - a.mask.causal_offset;
    first = first < 0 ? 0 : first / C::kOther * C::kOther;
  }
  for (std::int64_t i0 = first; i0 < a.Tq; i0 += C::kOther) {
    const std::int64_t i1 = i0 + C::kOther < a.Tq ? i0 + C::kOther : a.Tq;
    if (tile_key_limit(a, b, i0, i1) <= j0) continue;  // uniform
    __syncthreads();
    load_tile_bwd<T, kD, C::kOther>(smem, qs, q, a.sq.t, i0, a.Tq, D);
    load_tile_bwd<T, kD, C::kOther>(smem, gs, go, a.sdo.t, i0, a.Tq, D);
    for (int r = threadIdx.x; r < C::kOther; r += C::kThreads) {
      const bool ok = i0 + r < a.Tq;
      stats[r] = ok ? a.lse[bh * a.Tq + i0 + r] : -INFINITY;
      stats[C::kOther + r] = ok ? dl[bh * a.Tq + i0 + r] : 0.0f;
    }
    __syncthreads();
    mma::FragC st[C::kNt], dpt[C::kNt];
    mma_abt<T, kD, C::kNt>(st, smem, ks + warp * 16 * C::kLd, qs);
    mma_abt<T, kD, C::kNt>(dpt, smem, vs + warp * 16 * C::kLd, gs);
#pragma unroll
    for (int n = 0; n < C::kNt; ++n)
#pragma unroll
      for (int x = 0; x < 4; ++x) {
        const int r = n * 8 + 2 * t4 + x % 2;
        const std::int64_t i = i0 + r, j = key[x / 2];
        ProbGrad pg{0.0f, 0.0f};
        if (i < a.Tq && j < a.Tk)
          pg = prob_grad(a, b, h, i, j, attention_row_limit(a.mask, b, i, a.Tk), st[n].x[x], dpt[n].x[x], stats[r],
                         stats[C::kOther + r]);
        st[n].x[x] = pg.p_drop;
        dpt[n].x[x] = pg.ds;
      }
    mma_pb<T, kD, C::kOther>(dv, st, smem, gs);
    mma_pb<T, kD, C::kOther>(dk, dpt, smem, qs);
  }
  T* dkp = static_cast<T*>(a.dk) + b * a.sdk.b + h * a.sdk.h;
  T* dvp = static_cast<T*>(a.dv) + b * a.sdv.b + h * a.sdv.h;
#pragma unroll
  for (int n = 0; n < C::kNo; ++n)
#pragma unroll
    for (int x = 0; x < 4; ++x) {
      const std::int64_t j = key[x / 2];
      const int d = n * 8 + 2 * t4 + x % 2;
      if (j < a.Tk && d < D) {
        dkp[j * a.sdk.t + d] = from_float<T>(dk[n].x[x]);
        dvp[j * a.sdv.t + d] = from_float<T>(dv[n].x[x]);
      }
    }
}

template <typename T, int kD>
__global__ void __launch_bounds__(MmaBwdConfig<kD>::kThreads) attention_dq_mma_kernel(AttentionArgs a,
                                                                                       const float* dl) {
  using C = MmaBwdConfig<kD>;
  DLK_DYNAMIC_SHARED(T, smem);
  const int qs = 0, gs = C::kRows * C::kLd, ks = 2 * C::kRows * C::kLd, vs = ks + C::kOther * C::kLd;
  const std::int64_t qtiles = (a.Tq + C::kRows - 1) / C::kRows;
  const std::int64_t bh = blockIdx.x / qtiles, b = bh / a.H, h = bh % a.H;
  const std::int64_t i0 = (blockIdx.x % qtiles) * C::kRows, i1 = i0 + C::kRows < a.Tq ? i0 + C::kRows : a.Tq;
  const int D = static_cast<int>(a.D);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;
  const T* q = static_cast<const T*>(a.q) + b * a.sq.b + h * a.sq.h;
  const T* k = static_cast<const T*>(a.k) + b * a.sk.b + h * a.sk.h;
  const T* v = static_cast<const T*>(a.v) + b * a.sv.b + h * a.sv.h;
  const T* go = static_cast<const T*>(a.d_out) + b * a.sdo.b + h * a.sdo.h;
  std::int64_t row[2], limit[2];
  float lse[2], dli[2];
  for (int x = 0; x < 2; ++x) {
    row[x] = i0 + warp * 16 + g + 8 * x;
    const bool ok = row[x] < a.Tq;
    limit[x] = ok ? attention_row_limit(a.mask, b, row[x], a.Tk) : 0;
    lse[x] = ok ? a.lse[bh * a.Tq + row[x]] : -INFINITY;
    dli[x] = ok ? dl[bh * a.Tq + row[x]] : 0.0f;
  }
  load_tile_bwd<T, kD, C::kRows>(smem, qs, q, a.sq.t, i0, a.Tq, D);
  load_tile_bwd<T, kD, C::kRows>(smem, gs, go, a.sdo.t, i0, a.Tq, D);
  mma::FragC dq[C::kNo];
#pragma unroll
  for (int n = 0; n < C::kNo; ++n) mma::zero(dq[n]);
  const std::int64_t kend = tile_key_limit(a, b, i0, i1);
  for (std::int64_t j0 = 0; j0 < kend; j0 += C::kOther) {
    __syncthreads();
    load_tile_bwd<T, kD, C::kOther>(smem, ks, k, a.sk.t, j0, a.Tk, D);
    load_tile_bwd<T, kD, C::kOther>(smem, vs, v, a.sv.t, j0, a.Tk, D);
    __syncthreads();
    mma::FragC s[C::kNt], dp[C::kNt];
    mma_abt<T, kD, C::kNt>(s, smem, qs + warp * 16 * C::kLd, ks);
    mma_abt<T, kD, C::kNt>(dp, smem, gs + warp * 16 * C::kLd, vs);
#pragma unroll
    for (int n = 0; n < C::kNt; ++n)
#pragma unroll
      for (int x = 0; x < 4; ++x) {
        const int rr = x / 2;
        const std::int64_t j = j0 + n * 8 + 2 * t4 + x % 2;
        const ProbGrad pg = row[rr] < a.Tq ? prob_grad(a, b, h, row[rr], j, limit[rr], s[n].x[x], dp[n].x[x],
                                                       lse[rr], dli[rr])
                                           : ProbGrad{0.0f, 0.0f};
        s[n].x[x] = pg.ds;
      }
    mma_pb<T, kD, C::kOther>(dq, s, smem, ks);
  }
  T* dqp = static_cast<T*>(a.dq) + b * a.sdq.b + h * a.sdq.h;
#pragma unroll
  for (int n = 0; n < C::kNo; ++n)
#pragma unroll
    for (int x = 0; x < 4; ++x) {
      const int rr = x / 2, d = n * 8 + 2 * t4 + x % 2;
      if (row[rr] < a.Tq && d < D) dqp[row[rr] * a.sdq.t + d] = from_float<T>(dq[n].x[x]);
    }
}

// Zeros rows [0, T) of a strided [B, H, T, D] gradient (keys no query sees when Tq == 0, and the like).
template <typename T>
__global__ void __launch_bounds__(256) attention_zero_kernel(T* p, AttentionStrides s, std::int64_t B, std::int64_t H,
                                                             std::int64_t T_, std::int64_t D) {
  const std::int64_t n = B * H * T_ * D;
  for (std::int64_t x = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; x < n;
       x += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t d = x % D, t = x / D % T_, h = x / (D * T_) % H, b = x / (D * T_ * H);
    p[b * s.b + h * s.h + t * s.t + d] = from_float<T>(0.0f);
  }
}

unsigned grid_for(std::int64_t blocks) {
  constexpr std::int64_t kMaxGrid = 0x7fffffff;
  if (blocks < 1) blocks = 1;
  return static_cast<unsigned>(blocks < kMaxGrid ? blocks : kMaxGrid);
}

// One block per (tile, batch, head): the tile kernels do not grid-stride, so a grid past 2^31 - 1 blocks is refused
// (about 2^36 query rows at once) rather than silently cut.
unsigned tile_grid(std::int64_t blocks) {
  if (blocks > 0x7fffffff)
    fail(DLK_ERROR_NOT_AVAILABLE, "attention: ", blocks,
         " tiles of (batch, head, 32..64 rows) exceed one launch; split the batch");
  return grid_for(blocks);
}

// The padded head dim for D: the smallest instantiated size that holds it (register arrays are kD / 4 per thread).
// kWideOnly: only 256 (fp16/bf16 reach the FFMA kernels only for D > 128, so nothing smaller is instantiated).
template <bool kWideOnly, typename F>
void with_head_dim(std::int64_t d, F&& f) {
  if constexpr (kWideOnly) {
    (void)d;
    f(std::integral_constant<int, 256>{});
  } else if (d <= 32) {
    f(std::integral_constant<int, 32>{});
  } else if (d <= 64) {
    f(std::integral_constant<int, 64>{});
  } else if (d <= 96) {
    f(std::integral_constant<int, 96>{});
  } else if (d <= 128) {
    f(std::integral_constant<int, 128>{});
  } else {
    f(std::integral_constant<int, 256>{});
  }
}

// The padded head dim of the tensor-core kernels (a multiple of 16, D <= 128).
template <typename F>
void with_mma_head_dim(std::int64_t d, F&& f) {
  if (d <= 32)
    f(std::integral_constant<int, 32>{});
  else if (d <= 64)
    f(std::integral_constant<int, 64>{});
  else if (d <= 96)
    f(std::integral_constant<int, 96>{});
  else
    f(std::integral_constant<int, 128>{});
}

template <typename T>
void forward_typed(const AttentionArgs& a, const Exec& exec) {
  // fp16 / bf16 with D <= 128: tensor cores, D padded to a multiple of 16 (80 runs as 96). Everything else (fp32,
  // and D > 128 where the register tiles of the mma kernel would spill): the fp32 FFMA kernel.
  if constexpr (!std::is_same_v<T, float>) {
    if (a.D <= 128) {
      auto run = [&](auto kd) {
        constexpr int kD = decltype(kd)::value;
        using C = MmaConfig<kD>;
        const std::int64_t tiles = (a.Tq + C::kBQ - 1) / C::kBQ;
        const std::size_t smem = static_cast<std::size_t>(C::kBQ + 2 * C::kBK) * C::kLd * sizeof(T);
        launch("attention_forward_mma_kernel", attention_forward_mma_kernel<T, kD>,
               dim3(tile_grid(tiles * a.B * a.H)), dim3(C::kThreads), smem, exec, a);
      };
      with_mma_head_dim(a.D, run);
      return;
    }
  }
  with_head_dim<!std::is_same_v<T, float>>(a.D, [&](auto kd) {
    constexpr int kD = decltype(kd)::value;
    using C = TileConfig<kD>;
    const std::int64_t tiles = (a.Tq + C::kTile - 1) / C::kTile;
    const std::size_t smem = (3 * C::kTile * C::kLd + C::kTile * C::kLdS) * sizeof(float);
    launch("attention_forward_kernel", attention_forward_kernel<T, kD>, dim3(tile_grid(tiles * a.B * a.H)),
           dim3(C::kThreads), smem, exec, a);
  });
}

template <typename T>
void zero_grad(T* p, const AttentionStrides& s, std::int64_t B, std::int64_t H, std::int64_t T_, std::int64_t D,
               const Exec& exec) {
  const std::int64_t n = B * H * T_ * D;
  if (n == 0) return;
  const std::int64_t blocks = (n + 255) / 256;
  launch("attention_zero_kernel", attention_zero_kernel<T>, dim3(grid_for(blocks < 4096 ? blocks : 4096)), dim3(256),
         0, exec, p, s, B, H, T_, D);
}

template <typename T>
void backward_typed(const AttentionArgs& a, const Exec& exec) {
  if (a.Tq == 0 || a.Tk == 0) {  // no (query, key) pair: every gradient is zero
    zero_grad(static_cast<T*>(a.dq), a.sdq, a.B, a.H, a.Tq, a.D, exec);
    zero_grad(static_cast<T*>(a.dk), a.sdk, a.B, a.H, a.Tk, a.D, exec);
    zero_grad(static_cast<T*>(a.dv), a.sdv, a.B, a.H, a.Tk, a.D, exec);
    return;
  }
  float* dl = static_cast<float*>(exec.workspace(static_cast<std::size_t>(a.B * a.H * a.Tq) * sizeof(float)));
  const std::int64_t rows = a.B * a.H * a.Tq;
  const std::int64_t dot_blocks = (rows + 7) / 8;  // 8 warps of 256 threads, a row each
  launch("attention_row_dot_kernel", attention_row_dot_kernel<T>,
         dim3(grid_for(dot_blocks < 65536 ? dot_blocks : 65536)), dim3(256), 0, exec, a, dl);
  // fp16 / bf16 with D <= 128: tensor cores (D padded to a multiple of 16); otherwise the fp32 FFMA kernels.
  if constexpr (!std::is_same_v<T, float>) {
    if (a.D <= 128) {
      auto run = [&](auto kd) {
        constexpr int kD = decltype(kd)::value;
        using C = MmaBwdConfig<kD>;
        const std::int64_t ktiles = (a.Tk + C::kRows - 1) / C::kRows, qtiles = (a.Tq + C::kRows - 1) / C::kRows;
        const std::size_t smem = static_cast<std::size_t>(2 * C::kRows + 2 * C::kOther) * C::kLd * sizeof(T);
        launch("attention_dkdv_mma_kernel", attention_dkdv_mma_kernel<T, kD>, dim3(tile_grid(ktiles * a.B * a.H)),
               dim3(C::kThreads), smem, exec, a, static_cast<const float*>(dl));
        launch("attention_dq_mma_kernel", attention_dq_mma_kernel<T, kD>, dim3(tile_grid(qtiles * a.B * a.H)),
               dim3(C::kThreads), smem, exec, a, static_cast<const float*>(dl));
      };
      with_mma_head_dim(a.D, run);
      return;
    }
  }
  with_head_dim<!std::is_same_v<T, float>>(a.D, [&](auto kd) {
    constexpr int kD = decltype(kd)::value;
    using C = TileConfig<kD>;
    const std::int64_t ktiles = (a.Tk + C::kTile - 1) / C::kTile, qtiles = (a.Tq + C::kTile - 1) / C::kTile;
    const std::size_t smem_kv = (4 * C::kTile * C::kLd + 2 * C::kTile * C::kLdS + 2 * C::kTile) * sizeof(float);
    launch("attention_dkdv_kernel", attention_dkdv_kernel<T, kD>, dim3(tile_grid(ktiles * a.B * a.H)),
           dim3(C::kThreads), smem_kv, exec, a, static_cast<const float*>(dl));
    const std::size_t smem_q = (4 * C::kTile * C::kLd + C::kTile * C::kLdS) * sizeof(float);
    launch("attention_dq_kernel", attention_dq_kernel<T, kD>, dim3(tile_grid(qtiles * a.B * a.H)), dim3(C::kThreads),
           smem_q, exec, a, static_cast<const float*>(dl));
  });
}

}  // namespace

void attention_forward(const AttentionArgs& a, const Exec& exec) {
  with_float_type(a.dtype, [&](auto tag) { forward_typed<decltype(tag)>(a, exec); });
}

void attention_backward(const AttentionArgs& a, const Exec& exec) {
  with_float_type(a.dtype, [&](auto tag) { backward_typed<decltype(tag)>(a, exec); });
}

}  // namespace dlk::DLK_KNS
