// CPU backend of masked scaled-dot-product attention: the reference and the fallback without a GPU. Flash-style,
// so memory stays linear in T (no [Tq, Tk] matrix is ever formed):
//  - forward: OpenMP over (batch, head, block of kBQ queries). A task walks the key blocks its rows can see
//    (causal / key-padding limits end the walk early), S = Q_blk K_blk^T by cblas_sgemm, the mask and an online
//    softmax per row (running max m, fp64 running sum l, output rows rescaled when m grows), then O += P V_blk by
//    cblas_sgemm. Finally O /= l and lse = m + log(l).
//  - backward: OpenMP over (batch, head). Dl_i = <dO_i, O_i> in fp64, then for each key block the query blocks
//    that can see it: P recomputed from lse, dV += P'^T dO, dP = dO V^T, dS = P (z dP - Dl), dQ += dS K (fp32
//    rows of the task), dK += dS^T Q; five sgemms per tile pair, no atomics: deterministic.
// Block sizes keep every product at m*n*k <= 2^18, where OpenBLAS runs a gemm on the calling thread: the OpenMP
// threads each run their own single-threaded sgemms, so OpenBLAS's pthreads never nest inside OpenMP. fp16/bf16
// operands are converted to fp32 blocks (fp32 operands with a unit D stride go to BLAS in place). Exponentials are
// vmath::exp (vectorisable, a few ulp); sums of probabilities and Dl are fp64.
#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "attention/attention.h"
#include "common/cpu_math.h"
#include "common/host.h"
#include "common/philox.h"
#include "dropout/dropout.h"

namespace dlk::cpu {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Tile edge for queries and keys: BQ * BK * D <= 2^18 (see the file comment).
std::int64_t tile_for(std::int64_t d) { return d <= 64 ? 64 : 32; }

void sgemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const float* a, std::int64_t lda,
           const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), 1.0f, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta,
              c, static_cast<int>(ldc));
}

// Rows [0, n) of a [T, D] operand (row stride `rs`) as fp32: in place for float when BLAS's 32-bit leading
// dimension holds the stride and it is >= d (ld = rs), else converted into `buf` (ld = d).
template <typename T>
const float* rows_f32(const T* src, std::int64_t rs, std::int64_t n, std::int64_t d, float* buf, std::int64_t* ld) {
  if constexpr (std::is_same_v<T, float>) {
    if (rs >= d && rs <= INT_MAX) {  // BLAS needs ld >= D (rows may overlap in a strided input)
      *ld = rs;
      return src;
    }
  }
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t c = 0; c < d; ++c) buf[r * d + c] = host::load(src, r * rs + c);
  *ld = d;
  return buf;
}

template <typename T>
void store_rows(T* dst, std::int64_t rs, std::int64_t n, std::int64_t d, const float* src, std::int64_t ld) {
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t c = 0; c < d; ++c) host::store(dst, r * rs + c, src[r * ld + c]);
}

// The tensor mask at (b, h, i, j): added to the score (float masks) or -inf where a boolean mask drops it.
inline float mask_term(const AttentionMask& m, std::int64_t off, float s) {
  switch (m.mask_dtype) {
    case DType::I8:
    case DType::U8: return static_cast<const std::uint8_t*>(m.mask)[off] ? s : kNegInf;
    case DType::F32: return s + static_cast<const float*>(m.mask)[off];
    case DType::F16: return s + host::load(static_cast<const host::F16*>(m.mask), off);
    case DType::BF16: return s + host::load(static_cast<const host::BF16*>(m.mask), off);
    default: return s;
  }
}

// Scaled, masked scores of row i over keys [j0, j0 + n) in place: s[c] = scale * s[c] (+ mask), -inf where masked.
void mask_row(const AttentionArgs& a, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j0,
              std::int64_t n, std::int64_t limit, float* s) {
  const std::int64_t valid = std::max<std::int64_t>(0, std::min(n, limit - j0));
  for (std::int64_t c = 0; c < valid; ++c) s[c] *= a.scale;
  for (std::int64_t c = valid; c < n; ++c) s[c] = kNegInf;
  if (a.mask.kind == DLK_MASK_TENSOR) {
    const AttentionMask& m = a.mask;
    const std::int64_t base = b * m.sb + h * m.sh + i * m.si;
    for (std::int64_t c = 0; c < valid; ++c) s[c] = mask_term(m, base + (j0 + c) * m.sj, s[c]);
  }
}

// Dropout factors of row i over keys [j0, j0 + n): keep * dropout_scale or 0, one Philox block per four positions.
void dropout_row(const AttentionArgs& a, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j0,
                 std::int64_t n, float* z) {
  const std::uint64_t p0 = attention_dropout_position(a, b, h, i, j0);
  std::uint64_t g = p0 >> 2;
  Philox4 r = philox_block(a.seed, g);
  for (std::int64_t c = 0; c < n; ++c) {
    const std::uint64_t p = p0 + static_cast<std::uint64_t>(c);
    if ((p >> 2) != g) {
      g = p >> 2;
      r = philox_block(a.seed, g);
    }
    z[c] = dropout_keep(r.v[p & 3], a.keep_threshold) ? a.dropout_scale : 0.0f;
  }
}

// Largest row limit over queries [i0, i0 + n) of batch entry b (keys past it are masked for every row).
std::int64_t block_limit(const AttentionArgs& a, std::int64_t b, std::int64_t i0, std::int64_t n) {
  if (a.mask.kind == DLK_MASK_CAUSAL || a.mask.kind == DLK_MASK_CAUSAL_BOTTOM_RIGHT)
    return attention_row_limit(a.mask, b, i0 + n - 1, a.Tk);
  return attention_row_limit(a.mask, b, i0, a.Tk);
}

template <typename T>
void forward_typed(const AttentionArgs& a, const Exec& exec) {
  const std::int64_t D = a.D, Tq = a.Tq, Tk = a.Tk, H = a.H;
  const std::int64_t bq = tile_for(D), bk = tile_for(D);
  const std::int64_t qblocks = (Tq + bq - 1) / bq;
  const std::int64_t tasks = a.B * H * qblocks;
  const T* q = static_cast<const T*>(a.q);
  const T* k = static_cast<const T*>(a.k);
  const T* v = static_cast<const T*>(a.v);
  T* out = static_cast<T*>(a.out_w);
  const int nt = host::threads(exec, a.B * H * Tq * std::max<std::int64_t>(Tk, 1) * D, tasks);
#pragma omp parallel num_threads(nt)
  {
    std::vector<float> qbuf(bq * D), kbuf(bk * D), vbuf(bk * D), s(bq * bk), o(bq * D), z(bk), m(bq);
    std::vector<double> l(bq);
#pragma omp for schedule(dynamic)
    for (std::int64_t t = 0; t < tasks; ++t) {
      const std::int64_t bh = t / qblocks, qb = t % qblocks;
      const std::int64_t b = bh / H, h = bh % H;
      const std::int64_t i0 = qb * bq, nq = std::min(bq, Tq - i0);
      std::int64_t ldq, ldk, ldv;
      const float* qf = rows_f32(q + b * a.sq.b + h * a.sq.h + i0 * a.sq.t, a.sq.t, nq, D, qbuf.data(), &ldq);
      std::fill(o.begin(), o.end(), 0.0f);
      std::fill(m.begin(), m.end(), kNegInf);
      std::fill(l.begin(), l.end(), 0.0);
      const std::int64_t kend = block_limit(a, b, i0, nq);
      for (std::int64_t j0 = 0; j0 < kend; j0 += bk) {
        const std::int64_t nk = std::min(bk, kend - j0);
        const float* kf = rows_f32(k + b * a.sk.b + h * a.sk.h + j0 * a.sk.t, a.sk.t, nk, D, kbuf.data(), &ldk);
        const float* vf = rows_f32(v + b * a.sv.b + h * a.sv.h + j0 * a.sv.t, a.sv.t, nk, D, vbuf.data(), &ldv);
        sgemm(false, true, nq, nk, D, qf, ldq, kf, ldk, 0.0f, s.data(), bk);
        for (std::int64_t r = 0; r < nq; ++r) {
          const std::int64_t i = i0 + r;
          float* sr = s.data() + r * bk;
          mask_row(a, b, h, i, j0, nk, attention_row_limit(a.mask, b, i, Tk), sr);
          float mx = kNegInf;
          for (std::int64_t c = 0; c < nk; ++c) mx = sr[c] > mx ? sr[c] : mx;
          const float mnew = std::max(m[r], mx);
          if (mnew == kNegInf) {  // nothing unmasked yet in this row
            for (std::int64_t c = 0; c < nk; ++c) sr[c] = 0.0f;
            continue;
          }
          if (mnew > m[r]) {
            const float alpha = vmath::exp(m[r] - mnew);  // 0 when m was -inf
            l[r] *= alpha;
            for (std::int64_t c = 0; c < D; ++c) o[r * D + c] *= alpha;
            m[r] = mnew;
          }
          float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
          for (std::int64_t c = 0; c < nk; ++c) {
            sr[c] = vmath::exp(sr[c] - mnew);
            sum += sr[c];
          }
          l[r] += sum;
          if (a.dropout) {
            dropout_row(a, b, h, i, j0, nk, z.data());
            for (std::int64_t c = 0; c < nk; ++c) sr[c] *= z[c];
          }
        }
        sgemm(false, false, nq, D, nk, s.data(), bk, vf, ldv, 1.0f, o.data(), D);
      }
      for (std::int64_t r = 0; r < nq; ++r) {
        const bool empty = l[r] == 0.0;
        const float inv = empty ? 0.0f : static_cast<float>(1.0 / l[r]);
        for (std::int64_t c = 0; c < D; ++c) o[r * D + c] *= inv;
        if (a.lse)
          a.lse[(b * H + h) * Tq + i0 + r] =
              empty ? kNegInf : static_cast<float>(static_cast<double>(m[r]) + std::log(l[r]));
      }
      store_rows(out + b * a.so.b + h * a.so.h + i0 * a.so.t, a.so.t, nq, D, o.data(), D);
    }
  }
}

template <typename T>
void backward_typed(const AttentionArgs& a, const Exec& exec) {
  const std::int64_t D = a.D, Tq = a.Tq, Tk = a.Tk, H = a.H;
  const std::int64_t bq = tile_for(D), bk = tile_for(D);
  const std::int64_t tasks = a.B * H;
  const T* q = static_cast<const T*>(a.q);
  const T* k = static_cast<const T*>(a.k);
  const T* v = static_cast<const T*>(a.v);
  const T* out = static_cast<const T*>(a.out);
  const T* dout = static_cast<const T*>(a.d_out);
  T* dq = static_cast<T*>(a.dq);
  T* dk = static_cast<T*>(a.dk);
  T* dv = static_cast<T*>(a.dv);
  const int nt = host::threads(exec, tasks * std::max<std::int64_t>(Tq, 1) * std::max<std::int64_t>(Tk, 1) * D, tasks);
#pragma omp parallel num_threads(nt)
  {
    std::vector<float> qall(Tq * D), doall(Tq * D), dqacc(Tq * D), kbuf(bk * D), vbuf(bk * D), dkacc(bk * D),
        dvacc(bk * D), p(bq * bk), dp(bq * bk), z(bk), dl(Tq), lse(Tq);
    std::vector<std::int64_t> limit(Tq);
#pragma omp for schedule(dynamic)
    for (std::int64_t t = 0; t < tasks; ++t) {
      const std::int64_t b = t / H, h = t % H;
      const T* qbh = q + b * a.sq.b + h * a.sq.h;
      const T* obh = out + b * a.so.b + h * a.so.h;
      const T* dobh = dout + b * a.sdo.b + h * a.sdo.h;
      for (std::int64_t i = 0; i < Tq; ++i) {
        double dot = 0.0;
        for (std::int64_t c = 0; c < D; ++c) {
          const float g = host::load(dobh, i * a.sdo.t + c);
          qall[i * D + c] = host::load(qbh, i * a.sq.t + c);
          doall[i * D + c] = g;
          dot += static_cast<double>(g) * host::load(obh, i * a.so.t + c);
        }
        dl[i] = static_cast<float>(dot);
        lse[i] = a.lse[(b * H + h) * Tq + i];
        limit[i] = attention_row_limit(a.mask, b, i, Tk);
      }
      std::fill(dqacc.begin(), dqacc.end(), 0.0f);
      for (std::int64_t j0 = 0; j0 < Tk; j0 += bk) {
        const std::int64_t nk = std::min(bk, Tk - j0);
        std::int64_t ldk, ldv;
        const float* kf = rows_f32(k + b * a.sk.b + h * a.sk.h + j0 * a.sk.t, a.sk.t, nk, D, kbuf.data(), &ldk);
        const float* vf = rows_f32(v + b * a.sv.b + h * a.sv.h + j0 * a.sv.t, a.sv.t, nk, D, vbuf.data(), &ldv);
        std::fill(dkacc.begin(), dkacc.end(), 0.0f);
        std::fill(dvacc.begin(), dvacc.end(), 0.0f);
        for (std::int64_t i0 = 0; i0 < Tq; i0 += bq) {
          const std::int64_t nq = std::min(bq, Tq - i0);
          if (block_limit(a, b, i0, nq) <= j0) continue;  // every row of the block masks these keys
          const float* qf = qall.data() + i0 * D;
          const float* dof = doall.data() + i0 * D;
          sgemm(false, true, nq, nk, D, qf, D, kf, ldk, 0.0f, p.data(), bk);
          sgemm(false, true, nq, nk, D, dof, D, vf, ldv, 0.0f, dp.data(), bk);
          for (std::int64_t r = 0; r < nq; ++r) {
            const std::int64_t i = i0 + r;
            float* pr = p.data() + r * bk;
            float* dpr = dp.data() + r * bk;
            const float li = lse[i];
            if (li == kNegInf) {  // fully masked row: no gradient
              for (std::int64_t c = 0; c < nk; ++c) pr[c] = dpr[c] = 0.0f;
              continue;
            }
            mask_row(a, b, h, i, j0, nk, limit[i], pr);
            for (std::int64_t c = 0; c < nk; ++c) pr[c] = vmath::exp(pr[c] - li);
            const float di = dl[i];
            if (a.dropout) {
              dropout_row(a, b, h, i, j0, nk, z.data());
              for (std::int64_t c = 0; c < nk; ++c) {
                const float pc = pr[c];
                pr[c] = pc * z[c];                                // P' for dV
                dpr[c] = a.scale * pc * (z[c] * dpr[c] - di);     // dS, scaled
              }
            } else {
              for (std::int64_t c = 0; c < nk; ++c) dpr[c] = a.scale * pr[c] * (dpr[c] - di);
            }
          }
          sgemm(true, false, nk, D, nq, p.data(), bk, dof, D, 1.0f, dvacc.data(), D);
          sgemm(false, false, nq, D, nk, dp.data(), bk, kf, ldk, 1.0f, dqacc.data() + i0 * D, D);
          sgemm(true, false, nk, D, nq, dp.data(), bk, qf, D, 1.0f, dkacc.data(), D);
        }
        store_rows(dk + b * a.sdk.b + h * a.sdk.h + j0 * a.sdk.t, a.sdk.t, nk, D, dkacc.data(), D);
        store_rows(dv + b * a.sdv.b + h * a.sdv.h + j0 * a.sdv.t, a.sdv.t, nk, D, dvacc.data(), D);
      }
      store_rows(dq + b * a.sdq.b + h * a.sdq.h, a.sdq.t, Tq, D, dqacc.data(), D);
    }
  }
}

}  // namespace

void attention_forward(const AttentionArgs& a, const Exec& exec) {
  host::with_type(a.dtype, "attention_forward", [&](auto tag) { forward_typed<decltype(tag)>(a, exec); });
}

void attention_backward(const AttentionArgs& a, const Exec& exec) {
  host::with_type(a.dtype, "attention_backward", [&](auto tag) { backward_typed<decltype(tag)>(a, exec); });
}

}  // namespace dlk::cpu
