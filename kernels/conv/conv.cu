// CUDA kernels of the convolution family: the conv view of conv.h (forward, backward_data, backward_weight) and the
// channel sum of the bias gradients. Built by nvcc into dlk::cuda and against the emulator into dlk::emu.
//
// Implicit GEMM, no im2col buffer anywhere: every kernel computes a GEMM whose operands are gathered from the
// activations on the fly while a block stages its shared-memory tiles, indices decoded from the GEMM coordinates.
//  - forward:         C[M = N*OH*OW, Ng = K/g]  = A[M, Kg = C/g*kh*kw] (x patches) * B[Kg, Ng] (weights)
//  - backward_data:   C[M = N*H*W,  Ng = C/g]   = A[M, K/g*kh*kw] (dy taps that reach the pixel) * B (weights)
//                     Gather form (each dx element is owned by one thread: no atomics). With dilation 1 and a stride
//                     s > 1 it runs as s_h*s_w sub-pixel GEMMs (grid z): output pixels of one parity class
//                     (ih % s_h, iw % s_w) receive only the taps i = (ih + pad) mod s_h (+ multiples of s), so
//                     each class multiplies a K s_h*s_w times smaller and no tap is wasted on a stride miss. That is
//                     the path of DCGAN's 4x4 stride-2 transposed conv (its forward IS this backward_data): 4 classes,
//                     each a 2x2-tap GEMM; the general path would discard 3 taps in 4.
//  - backward_weight: C[M = K/g, Ng = C/g*kh*kw] = sum over P = N*OH*OW pixels of dy^T * x patches, split along P
//                     into S slices (one block per (tile, slice)) whose partial tiles go to the workspace; a second
//                     kernel adds the slices in slice order. No float atomics in any mode: bitwise reproducible.
// Each block owns a BM x BN tile of C (two 256-thread blocks per SM); its threads each accumulate a TM x TN
// micro-tile in fp32 registers from BK = 16 deep stages in dynamic shared memory (A stage [BK][BM+4], B stage
// [BK][BN+4]; fp32 for FFMA, the storage type for tensor cores). Stages are software-pipelined: a thread gathers
// the next stage's elements into registers while the block multiplies the current one.
// The thread-to-element maps follow the layout so that global reads are coalesced: NCHW walks pixels (contiguous
// along W), NHWC walks channels (contiguous innermost); the GEMM's K order follows too ((c, i, j) for NCHW,
// (i, j, c) for NHWC), which only permutes the weight reads.
// Traffic: each activation element is read about ceil(Ng / BN) * taps / stride^2 times (mostly from L1/L2), each
// weight ceil(M / BM) times (L2); the output once.
// Special paths: 1x1 stride-1 unpadded forward reads A as a plain matrix (no tap decode, no bounds tests): the GEMM
// tile path. One input channel per group (depthwise, and any single-channel input) skips the GEMM: direct kernels,
// one thread per output element looping over the taps, and a block per weight element for its gradient.
// Not done yet (no GPU was available to measure against cuDNN): ldmatrix / cp.async loads, vectorised global
// gathers, split-K for the forward of tiny-M layers, and tile shapes beyond the two below.
// Arithmetic: fp32 tensors run on FFMA (each thread a TM x TN register micro-tile); fp16/bf16 tensors are staged
// in shared memory in their own type and multiplied on tensor cores (mma.sync m16n8k16 through common/mma.cuh, the
// block's 8 warps tiling the block tile in 16x8 pieces), accumulating in fp32 and rounded once at the store.
// Limits: any sizes (int64 offsets, grid-stride loops over M tiles and groups).
// clang-format off
#include "runtime/kernel.h"  // first: it picks the nvcc or the emulator build
// clang-format on

#include <cstdint>
#include <type_traits>

#include "common/convert.cuh"
#include "common/mma.cuh"
#include "common/reduce.cuh"
#include "common/vec.cuh"
#include "conv/conv.h"

namespace dlk::DLK_KNS {
namespace {

constexpr int kBK = 16;  // depth of a shared-memory stage
constexpr int kPad = 4;  // padding of a stage row (keeps 16-byte alignment, spreads banks)
constexpr std::int64_t kMaxGridX = 0x7fffffff;
constexpr std::int64_t kMaxGridYZ = 65535;
constexpr int kDirectThreads = 256;

__device__ __forceinline__ std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// Shared-memory element type: fp32 for FFMA, the storage type itself for the tensor-core path (fp16/bf16 operands
// go to mma.sync as they are).
template <typename T>
constexpr bool kTensorCore = !std::is_same<T, float>::value;
template <typename T>
using SmemT = typename std::conditional<kTensorCore<T>, T, float>::type;

// Dynamic shared memory of one implicit-GEMM block: the A and B stages.
template <typename T, int BM, int BN>
constexpr std::size_t gemm_smem_bytes() {
  return static_cast<std::size_t>(kBK) * (BM + BN + 2 * kPad) * sizeof(SmemT<T>);
}

// The block's accumulators and the product of one BK-deep stage, staged as A[k][m] (leading dimension BM + kPad)
// and B[k][n] (BN + kPad). FFMA: each thread owns a TM x TN micro-tile of contiguous rows tm * TM .. and columns
// tn * TN .., read from shared memory as one TM-wide and one TN-wide vector per k (LDS.128 for 4x4: 2 shared loads
// per 16 FMAs; a warp's A reads are distinct consecutive 16-byte chunks, its B reads broadcasts).
template <typename T, int BM, int BN, int TM, int TN, bool TC = kTensorCore<T>>
struct Accum {
  float acc[TM][TN];
  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int u = 0; u < TM; ++u)
#pragma unroll
      for (int v = 0; v < TN; ++v) acc[u][v] = 0.0f;
  }
  template <typename SA, typename SB>
  __device__ __forceinline__ void stage(SA& as, SB& bs, int tm, int tn) {
#pragma unroll
    for (int q = 0; q < kBK; ++q) {
      const Pack<float, TM> av = load_pack<float, TM>(&as[q * (BM + kPad) + tm * TM]);
      const Pack<float, TN> bv = load_pack<float, TN>(&bs[q * (BN + kPad) + tn * TN]);
#pragma unroll
      for (int u = 0; u < TM; ++u)
#pragma unroll
        for (int v = 0; v < TN; ++v) acc[u][v] += av.v[u] * bv.v[v];
    }
  }
  // f(row, col, value) for every accumulator of the thread (block-tile coordinates).
  template <typename F>
  __device__ __forceinline__ void each(int tm, int tn, F&& f) const {
#pragma unroll
    for (int u = 0; u < TM; ++u)
#pragma unroll
      for (int v = 0; v < TN; ++v) f(tm * TM + u, tn * TN + v, acc[u][v]);
  }
};

// Tensor cores (fp16/bf16): the block's warps tile the BM x BN block as WR warp rows of 16 and WC warp columns of
// NTW 16x8 mma tiles; one BK = 16 stage is one m16n8k16 step per tile (A fragment shared across the warp's tiles).
template <typename T, int BM, int BN, int TM, int TN>
struct Accum<T, BM, BN, TM, TN, true> {
  static constexpr int NT = (BM / TM) * (BN / TN), WARPS = NT / 32, WR = BM / 16, WC = WARPS / WR;
  static constexpr int NTW = BN / (8 * WC);
  static_assert(kBK == 16 && WARPS % WR == 0 && BN % (8 * WC) == 0 && NTW >= 1, "warp tiling of the block tile");
  mma::FragC c[NTW];
  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int t = 0; t < NTW; ++t) mma::zero(c[t]);
  }
  template <typename SA, typename SB>
  __device__ __forceinline__ void stage(SA& as, SB& bs, int, int) {
    const int warp = static_cast<int>(threadIdx.x) / 32, wr = warp % WR, wc = warp / WR;
    mma::FragA a;
    mma::load_a_t<T>(a, as + wr * 16, BM + kPad);  // A(m, k) = as[k * ld + m]
#pragma unroll
    for (int t = 0; t < NTW; ++t) {
      mma::FragB b;
      mma::load_b<T>(b, bs + (wc * NTW + t) * 8, BN + kPad);  // B(k, n) = bs[k * ld + n]
      mma::mma_16816<T>(c[t], a, b);
    }
  }
  template <typename F>
  __device__ __forceinline__ void each(int, int, F&& f) const {
    const int warp = static_cast<int>(threadIdx.x) / 32, wr = warp % WR, wc = warp / WR;
    const int lane = static_cast<int>(threadIdx.x) & 31;
#pragma unroll
    for (int t = 0; t < NTW; ++t)
#pragma unroll
      for (int i = 0; i < 4; ++i) f(wr * 16 + mma::c_row(lane, i), (wc * NTW + t) * 8 + mma::c_col(lane, i), c[t].x[i]);
  }
};

// ------------------------------------------------------------------------------------------------ forward

// Forward implicit GEMM. Grid: x over M tiles (grid-stride), y over Ng tiles, z over groups (grid-stride).
// POINTWISE: 1x1, stride 1, no padding, dilation 1 (A is x itself, a matrix: the plain GEMM tile path).
template <typename T, int BM, int BN, int TM, int TN, bool NHWC, bool POINTWISE>
__global__ void __launch_bounds__((BM / TM) * (BN / TN), 2)
    conv_forward_implicit_gemm_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                                      T* __restrict__ y, ConvGeom g) {
  constexpr int NT = (BM / TM) * (BN / TN);
  constexpr int LA = BM * kBK / NT, LB = BN * kBK / NT;
  static_assert(BM * kBK % NT == 0 && BN * kBK % NT == 0, "stage loads must divide among the threads");
  using S = SmemT<T>;
  DLK_DYNAMIC_SHARED(S, as);  // A stage [kBK][BM + kPad], then the B stage (16-byte aligned for vector reads)
  auto bs = as + kBK * (BM + kPad);
  const int tid = static_cast<int>(threadIdx.x);
  // NCHW: consecutive threads own consecutive pixels (rows); NHWC: consecutive output channels (columns).
  const int tm = NHWC ? tid / (BN / TN) : tid % (BM / TM);
  const int tn = NHWC ? tid % (BN / TN) : tid / (BM / TM);
  const std::int64_t cg = g.cg(), kg = g.kg(), taps = static_cast<std::int64_t>(g.kh) * g.kw;
  const std::int64_t kk = cg * taps, P = g.oh * g.ow, M = g.n * P, HW = g.h * g.w;
  const std::int64_t tiles_m = ceil_div(M, BM);
  const std::int64_t n0 = static_cast<std::int64_t>(blockIdx.y) * BN;
  for (std::int64_t grp = blockIdx.z; grp < g.groups; grp += gridDim.z) {
    const T* wg = w + (grp * kg) * kk;
    for (std::int64_t tmi = blockIdx.x; tmi < tiles_m; tmi += gridDim.x) {
      const std::int64_t m0 = tmi * BM;
      // Per load slot: the A row's image base, top-left input tap, validity.
      std::int64_t a_base[LA];
      int a_ih0[LA], a_iw0[LA], a_r[LA], a_q[LA];
#pragma unroll
      for (int s = 0; s < LA; ++s) {
        const int e = tid + s * NT;
        a_r[s] = NHWC ? e / kBK : e % BM;
        a_q[s] = NHWC ? e % kBK : e / BM;
        const std::int64_t m = m0 + a_r[s];
        if (m < M) {
          const std::int64_t n = m / P, pix = m % P;
          const std::int64_t oh = pix / g.ow, ow = pix % g.ow;
          a_ih0[s] = static_cast<int>(oh * g.sh - g.pt);
          a_iw0[s] = static_cast<int>(ow * g.sw - g.pl);
          a_base[s] = POINTWISE ? (NHWC ? m * g.c + grp * cg : n * g.c * HW + grp * cg * HW + pix)
                                : (NHWC ? n * HW * g.c + grp * cg : (n * g.c + grp * cg) * HW);
        } else {
          a_base[s] = -1;
          a_ih0[s] = a_iw0[s] = 0;
        }
      }
      Accum<T, BM, BN, TM, TN> acc;
      acc.zero();
      // K-side indices are 32-bit (capi bounds C/g * kh * kw below 2^31): the per-stage tap decode is int math.
      const int kk32 = static_cast<int>(kk), cg32 = static_cast<int>(cg), taps32 = static_cast<int>(taps);
      // Software pipelining: the next stage's global reads go to registers before this stage's product, so
      // their latency overlaps the FMAs; the registers are stored to shared memory after the barrier.
      float ra[LA], rb[LB];
      auto fetch = [&](int k0) {
#pragma unroll
        for (int s = 0; s < LA; ++s) {
          const int kidx = k0 + a_q[s];
          float v = 0.0f;
          if (a_base[s] >= 0 && kidx < kk32) {
            if (POINTWISE) {
              v = to_float<T>(x[a_base[s] + (NHWC ? kidx : kidx * HW)]);
            } else {
              int c, i, j;
              if (NHWC) {  // k = (i, j, c)
                c = kidx % cg32;
                const int t = kidx / cg32;
                i = t / g.kw, j = t % g.kw;
              } else {  // k = (c, i, j)
                c = kidx / taps32;
                const int t = kidx % taps32;
                i = t / g.kw, j = t % g.kw;
              }
              const int ih = a_ih0[s] + i * g.dh, iw = a_iw0[s] + j * g.dw;
              if (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w)
                v = to_float<T>(x[a_base[s] + (NHWC ? (static_cast<std::int64_t>(ih) * g.w + iw) * g.c + c
                                                    : c * HW + static_cast<std::int64_t>(ih) * g.w + iw)]);
            }
          }
          ra[s] = v;
        }
#pragma unroll
        for (int s = 0; s < LB; ++s) {
          const int e = tid + s * NT;
          const int q = e % kBK, col = e / kBK;  // consecutive threads walk along k: weight rows are contiguous
          const int kidx = k0 + q;
          const std::int64_t o = n0 + col;
          float v = 0.0f;
          if (kidx < kk32 && o < kg) {
            int wk = kidx;
            if (NHWC && !POINTWISE) wk = (kidx % cg32) * taps32 + kidx / cg32;
            v = to_float<T>(wg[o * kk + wk]);
          }
          rb[s] = v;
        }
      };
      auto put = [&]() {
#pragma unroll
        for (int s = 0; s < LA; ++s) {
          as[a_q[s] * (BM + kPad) + a_r[s]] = from_float<S>(ra[s]);
        }
#pragma unroll
        for (int s = 0; s < LB; ++s) {
          const int e = tid + s * NT;
          bs[(e % kBK) * (BN + kPad) + e / kBK] = from_float<S>(rb[s]);
        }
      };
      fetch(0);
      for (int k0 = 0; k0 < kk32; k0 += kBK) {
        put();
        __syncthreads();
        if (k0 + kBK < kk32) fetch(k0 + kBK);
        acc.stage(as, bs, tm, tn);
        __syncthreads();
      }
      acc.each(tm, tn, [&](int r, int col, float value) {
        const std::int64_t m = m0 + r, o = n0 + col;
        if (m >= M || o >= kg) return;
        const std::int64_t n = m / P, pix = m % P, oc = grp * kg + o;
        const float out = value + (bias ? to_float<T>(bias[oc]) : 0.0f);
        y[NHWC ? m * g.k + oc : (n * g.k + oc) * P + pix] = from_float<T>(out);
      });
    }
  }
}

// ------------------------------------------------------------------------------------------------ backward data

// Which dx pixels and taps one launch covers: dx pixels ih = rh + sph * a (a = 0..), and taps i = i0 + tsh * t for
// t < nth (same along W). General path: rh = 0, sph = 1, i0 = 0, tsh = 1, nth = kh, and every tap checks that the
// stride divides (ih + pad - i * dil). Sub-pixel path (dilation 1): one parity class (rh, rw) per grid z, taps
// pre-selected, the division always exact.
struct DgradClass {
  int rh, rw, sph, spw, i0, j0, tsh, tsw, nth, ntw;
  std::int64_t hq, wq;  // pixels of the class per image along H and W
  bool check_div;
};

template <typename T, int BM, int BN, int TM, int TN, bool NHWC>
__global__ void __launch_bounds__((BM / TM) * (BN / TN), 2)
    conv_backward_data_implicit_gemm_kernel(const T* __restrict__ dy, const T* __restrict__ w,
                                            const T* __restrict__ bias, T* __restrict__ dx, ConvGeom g, DgradClass cls0,
                                            int classes_w) {
  constexpr int NT = (BM / TM) * (BN / TN);
  constexpr int LA = BM * kBK / NT, LB = BN * kBK / NT;
  using S = SmemT<T>;
  DLK_DYNAMIC_SHARED(S, as);  // A stage [kBK][BM + kPad], then the B stage (16-byte aligned for vector reads)
  auto bs = as + kBK * (BM + kPad);
  const int tid = static_cast<int>(threadIdx.x);
  const int tm = NHWC ? tid / (BN / TN) : tid % (BM / TM);
  const int tn = NHWC ? tid % (BN / TN) : tid / (BM / TM);
  // This block's parity class (grid z = class; the general path has one class).
  DgradClass cls = cls0;
  if (!cls.check_div) {
    cls.rh = static_cast<int>(blockIdx.z) / classes_w;
    cls.rw = static_cast<int>(blockIdx.z) % classes_w;
    cls.i0 = (cls.rh + g.pt) % g.sh;
    cls.j0 = (cls.rw + g.pl) % g.sw;
    cls.nth = cls.i0 < g.kh ? (g.kh - cls.i0 + g.sh - 1) / g.sh : 0;
    cls.ntw = cls.j0 < g.kw ? (g.kw - cls.j0 + g.sw - 1) / g.sw : 0;
    cls.hq = cls.rh < g.h ? (g.h - cls.rh + g.sh - 1) / g.sh : 0;
    cls.wq = cls.rw < g.w ? (g.w - cls.rw + g.sw - 1) / g.sw : 0;
  }
  const std::int64_t cg = g.cg(), kg = g.kg(), taps = static_cast<std::int64_t>(g.kh) * g.kw;
  const std::int64_t ctaps = static_cast<std::int64_t>(cls.nth) * cls.ntw;
  const std::int64_t kk = kg * ctaps, Pq = cls.hq * cls.wq, M = g.n * Pq, OP = g.oh * g.ow;
  const std::int64_t tiles_m = ceil_div(M, BM);
  const std::int64_t n0 = static_cast<std::int64_t>(blockIdx.y) * BN;
  const std::int64_t groups = g.groups;
  for (std::int64_t tmi = blockIdx.x; tmi < tiles_m * groups; tmi += gridDim.x) {
    const std::int64_t grp = tmi / tiles_m, m0 = (tmi % tiles_m) * BM;
    std::int64_t a_base[LA];
    int a_th0[LA], a_tw0[LA], a_r[LA], a_q[LA];
#pragma unroll
    for (int s = 0; s < LA; ++s) {
      const int e = tid + s * NT;
      a_r[s] = NHWC ? e / kBK : e % BM;
      a_q[s] = NHWC ? e % kBK : e / BM;
      const std::int64_t m = m0 + a_r[s];
      if (m < M) {
        const std::int64_t n = m / Pq, pq = m % Pq;
        const std::int64_t ih = cls.rh + (pq / cls.wq) * cls.sph, iw = cls.rw + (pq % cls.wq) * cls.spw;
        a_th0[s] = static_cast<int>(ih + g.pt);  // oh * sh = ih + pt - i * dh
        a_tw0[s] = static_cast<int>(iw + g.pl);
        a_base[s] = NHWC ? n * OP * g.k + grp * kg : (n * g.k + grp * kg) * OP;
      } else {
        a_base[s] = -1;
        a_th0[s] = a_tw0[s] = 0;
      }
    }
    Accum<T, BM, BN, TM, TN> acc;
    acc.zero();
    const int kk32 = static_cast<int>(kk), kg32 = static_cast<int>(kg), ctaps32 = static_cast<int>(ctaps);
    // Software pipelining: the next stage's global reads go to registers before this stage's product, so
    // their latency overlaps the FMAs; the registers are stored to shared memory after the barrier.
    float ra[LA], rb[LB];
    auto fetch = [&](int k0) {
#pragma unroll
      for (int s = 0; s < LA; ++s) {
        const int kidx = k0 + a_q[s];
        float v = 0.0f;
        if (a_base[s] >= 0 && kidx < kk32) {
          int o, t;
          if (NHWC)
            o = kidx % kg32, t = kidx / kg32;  // k = (ti, tj, o)
          else
            o = kidx / ctaps32, t = kidx % ctaps32;  // k = (o, ti, tj)
          const int i = cls.i0 + (t / cls.ntw) * cls.tsh, j = cls.j0 + (t % cls.ntw) * cls.tsw;
          const int th = a_th0[s] - i * g.dh, tw = a_tw0[s] - j * g.dw;
          bool ok = th >= 0 && tw >= 0;
          if (ok && cls.check_div) ok = th % g.sh == 0 && tw % g.sw == 0;
          if (ok) {
            const std::int64_t oh = th / g.sh, ow = tw / g.sw;
            if (oh < g.oh && ow < g.ow)
              v = to_float<T>(dy[a_base[s] + (NHWC ? (oh * g.ow + ow) * g.k + o : o * OP + oh * g.ow + ow)]);
          }
        }
        ra[s] = v;
      }
#pragma unroll
      for (int s = 0; s < LB; ++s) {
        const int e = tid + s * NT;
        const int q = e % kBK, col = e / kBK;
        const int kidx = k0 + q;
        const std::int64_t c = n0 + col;
        float v = 0.0f;
        if (kidx < kk32 && c < cg) {
          int o, t;
          if (NHWC)
            o = kidx % kg32, t = kidx / kg32;
          else
            o = kidx / ctaps32, t = kidx % ctaps32;
          const int i = cls.i0 + (t / cls.ntw) * cls.tsh, j = cls.j0 + (t % cls.ntw) * cls.tsw;
          v = to_float<T>(w[((grp * kg + o) * cg + c) * taps + i * g.kw + j]);
        }
        rb[s] = v;
      }
    };
    auto put = [&]() {
#pragma unroll
      for (int s = 0; s < LA; ++s) {
        as[a_q[s] * (BM + kPad) + a_r[s]] = from_float<S>(ra[s]);
      }
#pragma unroll
      for (int s = 0; s < LB; ++s) {
        const int e = tid + s * NT;
        bs[(e % kBK) * (BN + kPad) + e / kBK] = from_float<S>(rb[s]);
      }
    };
    fetch(0);
    for (int k0 = 0; k0 < kk32; k0 += kBK) {
      put();
      __syncthreads();
      if (k0 + kBK < kk32) fetch(k0 + kBK);
      acc.stage(as, bs, tm, tn);
      __syncthreads();
    }
    const std::int64_t HW = g.h * g.w;
    acc.each(tm, tn, [&](int r, int col, float value) {
      const std::int64_t m = m0 + r, c = n0 + col;
      if (m >= M || c >= cg) return;
      const std::int64_t n = m / Pq, pq = m % Pq;
      const std::int64_t ih = cls.rh + (pq / cls.wq) * cls.sph, iw = cls.rw + (pq % cls.wq) * cls.spw;
      const std::int64_t ch = grp * cg + c;
      const float out = value + (bias ? to_float<T>(bias[ch]) : 0.0f);
      dx[NHWC ? (n * HW + ih * g.w + iw) * g.c + ch : (n * g.c + ch) * HW + ih * g.w + iw] = from_float<T>(out);
    });
  }
}

// ------------------------------------------------------------------------------------------------ backward weight

// Partial weight gradient of one P slice: part[slice][grp][o][kidx] = sum over pixels of the slice of
// dy[pixel, o] * patch[pixel, kidx] (kidx in the layout's K order). Grid: x over (M tile, N tile) pairs, y over
// slices, z over groups (grid-stride).
template <typename T, int BM, int BN, int TM, int TN, bool NHWC>
__global__ void __launch_bounds__((BM / TM) * (BN / TN), 2)
    conv_backward_weight_implicit_gemm_kernel(const T* __restrict__ x, const T* __restrict__ dy,
                                              float* __restrict__ part, ConvGeom g, std::int64_t slice_len) {
  constexpr int NT = (BM / TM) * (BN / TN);
  constexpr int LA = BM * kBK / NT, LB = BN * kBK / NT;
  using S = SmemT<T>;
  DLK_DYNAMIC_SHARED(S, as);  // A stage [kBK][BM + kPad], then the B stage (16-byte aligned for vector reads)
  auto bs = as + kBK * (BM + kPad);
  const int tid = static_cast<int>(threadIdx.x);
  const int tm = tid % (BM / TM), tn = tid / (BM / TM);
  const std::int64_t cg = g.cg(), kg = g.kg(), taps = static_cast<std::int64_t>(g.kh) * g.kw;
  const std::int64_t kk = cg * taps, P = g.oh * g.ow, PT = g.n * P, HW = g.h * g.w;
  const std::int64_t tiles_m = ceil_div(kg, BM), tiles_n = ceil_div(kk, BN);
  const std::int64_t p_begin = static_cast<std::int64_t>(blockIdx.y) * slice_len;
  const std::int64_t p_end = p_begin + slice_len < PT ? p_begin + slice_len : PT;
  for (std::int64_t grp = blockIdx.z; grp < g.groups; grp += gridDim.z) {
    for (std::int64_t tile = blockIdx.x; tile < tiles_m * tiles_n; tile += gridDim.x) {
      const std::int64_t m0 = (tile / tiles_n) * BM, n0 = (tile % tiles_n) * BN;
      // B slots: each owns one column (kidx) for the whole tile: decode the tap once.
      std::int64_t b_coff[LB];
      int b_i[LB], b_j[LB], b_q[LB], b_col[LB];
#pragma unroll
      for (int s = 0; s < LB; ++s) {
        const int e = tid + s * NT;
        b_q[s] = NHWC ? e / BN : e % kBK;  // NHWC: walk columns (channels contiguous); NCHW: walk pixels
        b_col[s] = NHWC ? e % BN : e / kBK;
        const std::int64_t kidx = n0 + b_col[s];
        if (kidx < kk) {
          std::int64_t c;
          int t;
          if (NHWC)
            c = kidx % cg, t = static_cast<int>(kidx / cg);
          else
            c = kidx / taps, t = static_cast<int>(kidx % taps);
          b_i[s] = t / g.kw;
          b_j[s] = t % g.kw;
          b_coff[s] = NHWC ? grp * cg + c : (grp * cg + c) * HW;
        } else {
          b_coff[s] = -1;
          b_i[s] = b_j[s] = 0;
        }
      }
      Accum<T, BM, BN, TM, TN> acc;
      acc.zero();
      // Software pipelining: the next stage's global reads go to registers before this stage's product, so
      // their latency overlaps the FMAs; the registers are stored to shared memory after the barrier.
      float ra[LA], rb[LB];
      auto fetch = [&](std::int64_t p0) {
#pragma unroll
        for (int s = 0; s < LA; ++s) {
          const int e = tid + s * NT;
          // NCHW dy is contiguous along pixels (walk q), NHWC along channels (walk r)
          const int q = NHWC ? e / BM : e % kBK, r = NHWC ? e % BM : e / kBK;
          const std::int64_t pix = p0 + q, o = m0 + r;
          float v = 0.0f;
          if (pix < p_end && o < kg) {
            const std::int64_t n = pix / P, pp = pix % P, oc = grp * kg + o;
            v = to_float<T>(dy[NHWC ? pix * g.k + oc : (n * g.k + oc) * P + pp]);
          }
          ra[s] = v;
        }
#pragma unroll
        for (int s = 0; s < LB; ++s) {
          const std::int64_t pix = p0 + b_q[s];
          float v = 0.0f;
          if (pix < p_end && b_coff[s] >= 0) {
            const std::int64_t n = pix / P, pp = pix % P;
            const std::int64_t ih = (pp / g.ow) * g.sh - g.pt + static_cast<std::int64_t>(b_i[s]) * g.dh;
            const std::int64_t iw = (pp % g.ow) * g.sw - g.pl + static_cast<std::int64_t>(b_j[s]) * g.dw;
            if (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w)
              v = to_float<T>(
                  x[NHWC ? (n * HW + ih * g.w + iw) * g.c + b_coff[s] : n * g.c * HW + b_coff[s] + ih * g.w + iw]);
          }
          rb[s] = v;
        }
      };
      auto put = [&]() {
#pragma unroll
        for (int s = 0; s < LA; ++s) {
          const int e = tid + s * NT;
          const int q = NHWC ? e / BM : e % kBK, r = NHWC ? e % BM : e / kBK;
          as[q * (BM + kPad) + r] = from_float<S>(ra[s]);
        }
#pragma unroll
        for (int s = 0; s < LB; ++s) {
          bs[b_q[s] * (BN + kPad) + b_col[s]] = from_float<S>(rb[s]);
        }
      };
      fetch(p_begin);
      for (std::int64_t p0 = p_begin; p0 < p_end; p0 += kBK) {
        put();
        __syncthreads();
        if (p0 + kBK < p_end) fetch(p0 + kBK);
        acc.stage(as, bs, tm, tn);
        __syncthreads();
      }
      float* out = part + (static_cast<std::int64_t>(blockIdx.y) * g.groups + grp) * kg * kk;
      acc.each(tm, tn, [&](int r, int col, float value) {
        const std::int64_t o = m0 + r, kidx = n0 + col;
        if (o < kg && kidx < kk) out[o * kk + kidx] = value;
      });
    }
  }
}

// dw[o][c][i][j] = sum over slices (in slice order) of part[slice][grp][o][kidx], kidx in the layout's K order.
// One thread per weight element, grid-stride. Deterministic.
template <typename T>
__global__ void conv_weight_slices_sum_kernel(const float* __restrict__ part, T* __restrict__ dw, ConvGeom g,
                                              int slices) {
  const std::int64_t cg = g.cg(), taps = static_cast<std::int64_t>(g.kh) * g.kw, kk = cg * taps;
  const std::int64_t total = g.k * kk;
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t oc = e / kk, r = e % kk, c = r / taps, t = r % taps;
    const std::int64_t kidx = g.nhwc ? t * cg + c : r;
    float s = 0.0f;
    for (int sl = 0; sl < slices; ++sl) s += part[static_cast<std::int64_t>(sl) * total + oc * kk + kidx];
    dw[e] = from_float<T>(s);
  }
}

// ------------------------------------------------------------------------------------------------ direct kernels

// One input channel per group (depthwise and single-channel inputs): a thread per output element loops over its
// kh x kw taps (no GEMM to form: K = kh*kw is too small to tile). Grid-stride over N*K*OH*OW.
template <typename T>
__global__ void conv_forward_depthwise_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                              const T* __restrict__ bias, T* __restrict__ y, ConvGeom g) {
  const std::int64_t total = g.n * g.k * g.oh * g.ow, kg = g.kg();
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    std::int64_t n, o, oh, ow;
    if (g.nhwc)
      o = e % g.k, ow = (e / g.k) % g.ow, oh = (e / (g.k * g.ow)) % g.oh, n = e / (g.k * g.ow * g.oh);
    else
      ow = e % g.ow, oh = (e / g.ow) % g.oh, o = (e / (g.ow * g.oh)) % g.k, n = e / (g.ow * g.oh * g.k);
    const std::int64_t c = o / kg;
    float s = bias ? to_float<T>(bias[o]) : 0.0f;
    for (int i = 0; i < g.kh; ++i) {
      const std::int64_t ih = oh * g.sh - g.pt + static_cast<std::int64_t>(i) * g.dh;
      if (ih < 0 || ih >= g.h) continue;
      for (int j = 0; j < g.kw; ++j) {
        const std::int64_t iw = ow * g.sw - g.pl + static_cast<std::int64_t>(j) * g.dw;
        if (iw < 0 || iw >= g.w) continue;
        const std::int64_t xi = g.nhwc ? ((n * g.h + ih) * g.w + iw) * g.c + c : ((n * g.c + c) * g.h + ih) * g.w + iw;
        s += to_float<T>(x[xi]) * to_float<T>(w[(o * g.kh + i) * g.kw + j]);
      }
    }
    y[e] = from_float<T>(s);
  }
}

// dx of one input channel per group: a thread per dx element gathers the K/g outputs of its channel over the taps
// whose stride divides. Grid-stride over N*C*H*W.
template <typename T>
__global__ void conv_backward_data_depthwise_kernel(const T* __restrict__ dy, const T* __restrict__ w,
                                                    const T* __restrict__ bias, T* __restrict__ dx, ConvGeom g) {
  const std::int64_t total = g.n * g.c * g.h * g.w, kg = g.kg();
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    std::int64_t n, c, ih, iw;
    if (g.nhwc)
      c = e % g.c, iw = (e / g.c) % g.w, ih = (e / (g.c * g.w)) % g.h, n = e / (g.c * g.w * g.h);
    else
      iw = e % g.w, ih = (e / g.w) % g.h, c = (e / (g.w * g.h)) % g.c, n = e / (g.w * g.h * g.c);
    float s = bias ? to_float<T>(bias[c]) : 0.0f;
    for (int i = 0; i < g.kh; ++i) {
      const std::int64_t th = ih + g.pt - static_cast<std::int64_t>(i) * g.dh;
      if (th < 0 || th % g.sh) continue;
      const std::int64_t oh = th / g.sh;
      if (oh >= g.oh) continue;
      for (int j = 0; j < g.kw; ++j) {
        const std::int64_t tw = iw + g.pl - static_cast<std::int64_t>(j) * g.dw;
        if (tw < 0 || tw % g.sw) continue;
        const std::int64_t ow = tw / g.sw;
        if (ow >= g.ow) continue;
        for (std::int64_t ko = 0; ko < kg; ++ko) {
          const std::int64_t o = c * kg + ko;
          const std::int64_t yi =
              g.nhwc ? ((n * g.oh + oh) * g.ow + ow) * g.k + o : ((n * g.k + o) * g.oh + oh) * g.ow + ow;
          s += to_float<T>(dy[yi]) * to_float<T>(w[(o * g.kh + i) * g.kw + j]);
        }
      }
    }
    dx[e] = from_float<T>(s);
  }
}

// dw of one input channel per group: a block per weight element (o, i, j) sums dy * x over N*OH*OW with a block
// reduction in a fixed order (deterministic). Grid-stride over the weight elements.
template <typename T>
__global__ void __launch_bounds__(kDirectThreads)
    conv_backward_weight_depthwise_kernel(const T* __restrict__ x, const T* __restrict__ dy, T* __restrict__ dw,
                                          ConvGeom g) {
  const std::int64_t taps = static_cast<std::int64_t>(g.kh) * g.kw, total = g.k * taps, kg = g.kg();
  const std::int64_t P = g.oh * g.ow, PT = g.n * P;
  for (std::int64_t e = blockIdx.x; e < total; e += gridDim.x) {
    const std::int64_t o = e / taps, i = (e % taps) / g.kw, j = e % g.kw, c = o / kg;
    float s = 0.0f;
    for (std::int64_t p = threadIdx.x; p < PT; p += blockDim.x) {
      const std::int64_t n = p / P, oh = (p % P) / g.ow, ow = p % g.ow;
      const std::int64_t ih = oh * g.sh - g.pt + i * g.dh, iw = ow * g.sw - g.pl + j * g.dw;
      if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
      const std::int64_t xi = g.nhwc ? ((n * g.h + ih) * g.w + iw) * g.c + c : ((n * g.c + c) * g.h + ih) * g.w + iw;
      const std::int64_t yi = g.nhwc ? p * g.k + o : (n * g.k + o) * P + oh * g.ow + ow;
      s += to_float<T>(x[xi]) * to_float<T>(dy[yi]);
    }
    s = block_sum(s);
    if (threadIdx.x == 0) dw[e] = from_float<T>(s);
  }
}

// Bias gradient: a block per channel (grid-stride) sums its N*HW elements, block reduction in a fixed order.
template <typename T>
__global__ void __launch_bounds__(kDirectThreads)
    conv_channel_sum_kernel(const T* __restrict__ in, T* __restrict__ out, ChannelSumArgs a) {
  const std::int64_t per = a.n * a.hw;
  for (std::int64_t c = blockIdx.x; c < a.channels; c += gridDim.x) {
    float s = 0.0f;
    for (std::int64_t e = threadIdx.x; e < per; e += blockDim.x) {
      const std::int64_t n = e / a.hw, p = e % a.hw;
      s += to_float<T>(in[a.nhwc ? (n * a.hw + p) * a.channels + c : (n * a.channels + c) * a.hw + p]);
    }
    s = block_sum(s);
    if (threadIdx.x == 0) out[c] = from_float<T>(s);
  }
}

// ------------------------------------------------------------------------------------------------ launchers

int sm_count(const Exec& exec) {
#if defined(__CUDACC__)
  int v = 0;
  if (cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, exec.device_index) == cudaSuccess && v > 0) return v;
  return 108;
#else
  (void)exec;
  return 8;
#endif
}

unsigned clamp_grid(std::int64_t v, std::int64_t limit) {
  if (v < 1) v = 1;
  return static_cast<unsigned>(v < limit ? v : limit);
}

unsigned direct_blocks(std::int64_t total) {
  return clamp_grid((total + kDirectThreads - 1) / kDirectThreads, 1 << 20);
}

// Tile choice: 64x64 blocks (4x4 per thread: 2 shared loads per 16 FMAs) when the problem fills the GPU with them
// at least twice (M tiles x N tiles x groups >= 2 x SMs) and the N side is at least 48 wide (a narrower N wastes
// most of a 64-wide tile); else 32x32 blocks (2x2 per thread), four times the blocks for small problems
// (Fashion-MNIST, late ResNet layers at small batch, narrow groups).
bool big_tiles(std::int64_t m, std::int64_t n, std::int64_t groups, const Exec& exec) {
  return n >= 48 && ((m + 63) / 64) * ((n + 63) / 64) * groups >= 2 * sm_count(exec);
}

template <typename T, int BM, int BN, int TM, int TN, bool NHWC>
void launch_forward(const ConvArgs& a, const Exec& exec, bool pointwise) {
  const ConvGeom& g = a.g;
  const std::int64_t M = g.n * g.oh * g.ow;
  const dim3 grid(clamp_grid((M + BM - 1) / BM, kMaxGridX), clamp_grid((g.kg() + BN - 1) / BN, kMaxGridYZ),
                  clamp_grid(g.groups, kMaxGridYZ));
  const dim3 block((BM / TM) * (BN / TN));
  const T* x = static_cast<const T*>(a.x);
  const T* w = static_cast<const T*>(a.w);
  const T* bias = static_cast<const T*>(a.bias);
  T* y = static_cast<T*>(a.y);
  if (pointwise)
    launch("conv_forward_implicit_gemm_kernel<pointwise>",
           conv_forward_implicit_gemm_kernel<T, BM, BN, TM, TN, NHWC, true>, grid, block, gemm_smem_bytes<T, BM, BN>(),
           exec, x, w, bias, y, g);
  else
    launch("conv_forward_implicit_gemm_kernel", conv_forward_implicit_gemm_kernel<T, BM, BN, TM, TN, NHWC, false>, grid,
           block, gemm_smem_bytes<T, BM, BN>(), exec, x, w, bias, y, g);
}

template <typename T, int BM, int BN, int TM, int TN, bool NHWC>
void launch_backward_data(const ConvArgs& a, const Exec& exec) {
  const ConvGeom& g = a.g;
  DgradClass cls{};
  int classes = 1, classes_w = 1;
  // Sub-pixel classes when dilation is 1 and a stride skips pixels (DCGAN's 4x4 s2, every strided conv's dgrad):
  // no tap is spent on a stride miss. With dilation > 1 the taps of a class are not an arithmetic progression of
  // step s, so the general path (divisibility test per tap) runs.
  const bool subpixel =
      g.dh == 1 && g.dw == 1 && (g.sh > 1 || g.sw > 1) && static_cast<std::int64_t>(g.sh) * g.sw <= kMaxGridYZ;
  std::int64_t mmax;
  if (subpixel) {
    cls.check_div = false;
    cls.sph = g.sh, cls.spw = g.sw, cls.tsh = g.sh, cls.tsw = g.sw;
    classes = g.sh * g.sw;
    classes_w = g.sw;
    mmax = g.n * ((g.h + g.sh - 1) / g.sh) * ((g.w + g.sw - 1) / g.sw);
  } else {
    cls.check_div = true;
    cls.rh = cls.rw = 0, cls.sph = cls.spw = 1, cls.i0 = cls.j0 = 0, cls.tsh = cls.tsw = 1;
    cls.nth = g.kh, cls.ntw = g.kw, cls.hq = g.h, cls.wq = g.w;
    mmax = g.n * g.h * g.w;
  }
  const dim3 grid(clamp_grid(((mmax + BM - 1) / BM) * g.groups, kMaxGridX),
                  clamp_grid((g.cg() + BN - 1) / BN, kMaxGridYZ), static_cast<unsigned>(classes));
  launch("conv_backward_data_implicit_gemm_kernel", conv_backward_data_implicit_gemm_kernel<T, BM, BN, TM, TN, NHWC>,
         grid, dim3((BM / TM) * (BN / TN)), gemm_smem_bytes<T, BM, BN>(), exec, static_cast<const T*>(a.dy),
         static_cast<const T*>(a.w), static_cast<const T*>(a.bias), static_cast<T*>(a.dx), g, cls, classes_w);
}

template <typename T, int BM, int BN, int TM, int TN, bool NHWC>
void launch_backward_weight(const ConvArgs& a, const Exec& exec) {
  const ConvGeom& g = a.g;
  const std::int64_t kk = g.cg() * g.kh * g.kw, kg = g.kg(), PT = g.n * g.oh * g.ow;
  const std::int64_t tiles = ((kg + BM - 1) / BM) * ((kk + BN - 1) / BN) * g.groups;
  // Slices along the pixel reduction: enough blocks to fill the GPU about four times over, but each slice at least
  // 512 pixels (shorter slices spend more on the partial tiles than on the product) and the partials within 64M
  // floats. The slicing depends only on the shape and the GPU, so results are reproducible on one device.
  std::int64_t slices = (4 * sm_count(exec) + tiles - 1) / tiles;
  const std::int64_t by_len = (PT + 511) / 512;
  if (slices > by_len) slices = by_len;
  const std::int64_t wn = g.k * kk;
  if (slices * wn > (std::int64_t(1) << 26)) slices = (std::int64_t(1) << 26) / wn;
  if (slices > kMaxGridYZ) slices = kMaxGridYZ;
  if (slices < 1) slices = 1;
  const std::int64_t slice_len = ((PT + slices - 1) / slices + kBK - 1) / kBK * kBK;
  if (PT > 0) slices = (PT + slice_len - 1) / slice_len;
  float* part = static_cast<float*>(exec.workspace(static_cast<std::size_t>(slices * wn) * sizeof(float)));
  const std::int64_t tiles_g = tiles / g.groups;
  const dim3 grid(clamp_grid(tiles_g, kMaxGridX), static_cast<unsigned>(slices), clamp_grid(g.groups, kMaxGridYZ));
  launch("conv_backward_weight_implicit_gemm_kernel",
         conv_backward_weight_implicit_gemm_kernel<T, BM, BN, TM, TN, NHWC>, grid, dim3((BM / TM) * (BN / TN)),
         gemm_smem_bytes<T, BM, BN>(), exec, static_cast<const T*>(a.x), static_cast<const T*>(a.dy), part, g,
         slice_len);
  launch("conv_weight_slices_sum_kernel", conv_weight_slices_sum_kernel<T>, dim3(direct_blocks(wn)),
         dim3(kDirectThreads), 0, exec, static_cast<const float*>(part), static_cast<T*>(a.dw), g,
         static_cast<int>(slices));
}

// Calls f.template operator()<T, NHWC>() for the dtype and layout of the call.
template <typename F>
void with_type_layout(const ConvArgs& a, F&& f) {
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    if (a.g.nhwc)
      f(T{}, std::true_type{});
    else
      f(T{}, std::false_type{});
  });
}

bool depthwise(const ConvGeom& g) { return g.cg() == 1; }

}  // namespace

void conv2d_forward(const ConvArgs& a, const Exec& exec) {
  const ConvGeom& g = a.g;
  with_type_layout(a, [&](auto tag, auto layout) {
    using T = decltype(tag);
    constexpr bool NHWC = decltype(layout)::value;
    if (depthwise(g)) {
      launch("conv_forward_depthwise_kernel", conv_forward_depthwise_kernel<T>,
             dim3(direct_blocks(g.n * g.k * g.oh * g.ow)), dim3(kDirectThreads), 0, exec, static_cast<const T*>(a.x),
             static_cast<const T*>(a.w), static_cast<const T*>(a.bias), static_cast<T*>(a.y), g);
      return;
    }
    // 1x1 stride 1 unpadded: x is the A matrix itself (ResNet's bottleneck and downsample-free projections).
    const bool pointwise =
        g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pt == 0 && g.pl == 0 && g.oh == g.h && g.ow == g.w;
    if (big_tiles(g.n * g.oh * g.ow, g.kg(), g.groups, exec))
      launch_forward<T, 64, 64, 4, 4, NHWC>(a, exec, pointwise);
    else
      launch_forward<T, 32, 32, 2, 2, NHWC>(a, exec, pointwise);
  });
}

void conv2d_backward_data(const ConvArgs& a, const Exec& exec) {
  const ConvGeom& g = a.g;
  with_type_layout(a, [&](auto tag, auto layout) {
    using T = decltype(tag);
    constexpr bool NHWC = decltype(layout)::value;
    if (depthwise(g)) {
      launch("conv_backward_data_depthwise_kernel", conv_backward_data_depthwise_kernel<T>,
             dim3(direct_blocks(g.n * g.c * g.h * g.w)), dim3(kDirectThreads), 0, exec, static_cast<const T*>(a.dy),
             static_cast<const T*>(a.w), static_cast<const T*>(a.bias), static_cast<T*>(a.dx), g);
      return;
    }
    if (big_tiles(g.n * g.h * g.w, g.cg(), g.groups, exec))
      launch_backward_data<T, 64, 64, 4, 4, NHWC>(a, exec);
    else
      launch_backward_data<T, 32, 32, 2, 2, NHWC>(a, exec);
  });
}

void conv2d_backward_weight(const ConvArgs& a, const Exec& exec) {
  const ConvGeom& g = a.g;
  with_type_layout(a, [&](auto tag, auto layout) {
    using T = decltype(tag);
    constexpr bool NHWC = decltype(layout)::value;
    if (depthwise(g)) {
      launch("conv_backward_weight_depthwise_kernel", conv_backward_weight_depthwise_kernel<T>,
             dim3(clamp_grid(g.k * g.kh * g.kw, 1 << 20)), dim3(kDirectThreads), 0, exec, static_cast<const T*>(a.x),
             static_cast<const T*>(a.dy), static_cast<T*>(a.dw), g);
      return;
    }
    // The weight-gradient GEMM is small (K/g x C/g*kh*kw) with a long reduction, which slicing spreads: 64x64
    // tiles when both sides are at least 64 (ResNet's 3x3 layers), else 32x32.
    if (g.kg() >= 64 && g.cg() * g.kh * g.kw >= 64)
      launch_backward_weight<T, 64, 64, 4, 4, NHWC>(a, exec);
    else
      launch_backward_weight<T, 32, 32, 2, 2, NHWC>(a, exec);
  });
}

void conv_channel_sum(const ChannelSumArgs& a, const Exec& exec) {
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    launch("conv_channel_sum_kernel", conv_channel_sum_kernel<T>, dim3(clamp_grid(a.channels, 1 << 20)),
           dim3(kDirectThreads), 0, exec, static_cast<const T*>(a.in), static_cast<T*>(a.out), a);
  });
}

}  // namespace dlk::DLK_KNS
