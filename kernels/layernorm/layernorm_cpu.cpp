// Layer norm, CPU reference and fallback (the `cpu` backend). Formulas in layernorm.h.
//
// Accuracy: the forward's row statistics accumulate in fp64 (two-pass variance on the row converted to float once).
// The backward runs its element math in fp32 (8-16 lanes) but bounds every fp32 sum: row sums add fp32 blocks of
// <= 256 columns in fp64, and dgamma/dbeta add fp32 chunk partials of about 64 rows in fp64.
// Speed: OpenMP over rows, each row converted to a float buffer once, inner loops written so the compiler vectorises
// them (`omp simd`, built for AVX2+FMA: see DLK_CPU_ARCH).
// Determinism: dgamma/dbeta are summed per fixed chunk of rows (the chunking depends on the shape only, never on the
// thread count) into fp32 partials, which are then combined in chunk order in fp64, so results are bitwise
// reproducible for any number of threads.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "common/host.h"
#include "layernorm/layernorm.h"

namespace dlk::cpu {
namespace {

float load_any(const void* p, DType t, std::int64_t i) {
  switch (t) {
    case DType::F32: return host::load(static_cast<const float*>(p), i);
    case DType::F16: return host::load(static_cast<const host::F16*>(p), i);
    case DType::BF16: return host::load(static_cast<const host::BF16*>(p), i);
    default: fail(DLK_ERROR_DTYPE, "layernorm (cpu): unsupported weight dtype ", dtype_name(t));
  }
}

void store_any(void* p, DType t, std::int64_t i, float v) {
  switch (t) {
    case DType::F32: host::store(static_cast<float*>(p), i, v); break;
    case DType::F16: host::store(static_cast<host::F16*>(p), i, v); break;
    case DType::BF16: host::store(static_cast<host::BF16*>(p), i, v); break;
    default: fail(DLK_ERROR_DTYPE, "layernorm (cpu): unsupported weight dtype ", dtype_name(t));
  }
}

// gamma/beta as float (`fill` where absent), so the row loops have no per-element branches and no W template.
std::vector<float> weights_as_float(const void* w, DType t, std::int64_t n, float fill) {
  std::vector<float> out(static_cast<std::size_t>(n), fill);
  if (w)
    for (std::int64_t i = 0; i < n; ++i) out[i] = load_any(w, t, i);
  return out;
}

// Converts one row to float; float rows are used in place.
template <typename T>
const float* row_as_float(const T* p, std::int64_t n, float* buf) {
  if constexpr (std::is_same_v<T, float>) {
    (void)n;
    (void)buf;
    return p;
  } else {
    for (std::int64_t j = 0; j < n; ++j) buf[j] = host::load(p, j);
    return buf;
  }
}

template <typename T>
void forward_impl(const LayerNormForwardArgs& a, const Exec& exec) {
  const std::int64_t C = a.cols;
  const std::vector<float> gamma = weights_as_float(a.gamma, a.weight_dtype, C, 1.0f);
  const std::vector<float> beta = weights_as_float(a.beta, a.weight_dtype, C, 0.0f);
  const float* g = gamma.data();
  const float* b = beta.data();
  const T* x = static_cast<const T*>(a.x);
  T* y = static_cast<T*>(a.y);
  const int nt = host::threads(exec, a.rows * C);
#pragma omp parallel num_threads(nt)
  {
    std::vector<float> buf(std::is_same_v<T, float> ? 0 : static_cast<std::size_t>(C));
#pragma omp for schedule(static)
    for (std::int64_t r = 0; r < a.rows; ++r) {
      const float* xr = row_as_float(x + r * C, C, buf.data());
      double sum = 0;
#pragma omp simd reduction(+ : sum)
      for (std::int64_t j = 0; j < C; ++j) sum += xr[j];
      const double mean = sum / static_cast<double>(C);
      double sq = 0;
#pragma omp simd reduction(+ : sq)
      for (std::int64_t j = 0; j < C; ++j) {
        const double d = xr[j] - mean;
        sq += d * d;
      }
      const double rstd = 1.0 / std::sqrt(sq / static_cast<double>(C) + static_cast<double>(a.eps));
      // The output pass runs in fp32 (4 lanes, not 2) without losing the fp64 mean: with mean = hi + lo, x - hi is
      // exact for values near the mean (Sterbenz), so |mean| >> std costs no precision.
      const float hi = static_cast<float>(mean), lo = static_cast<float>(mean - hi), rs = static_cast<float>(rstd);
      T* yr = y + r * C;
      if constexpr (std::is_same_v<T, float>) {
#pragma omp simd
        for (std::int64_t j = 0; j < C; ++j) yr[j] = ((xr[j] - hi) - lo) * rs * g[j] + b[j];
      } else {
        for (std::int64_t j = 0; j < C; ++j) host::store(yr, j, ((xr[j] - hi) - lo) * rs * g[j] + b[j]);
      }
      if (a.mean) a.mean[r] = static_cast<float>(mean);
      if (a.rstd) a.rstd[r] = static_cast<float>(rstd);
    }
  }
}

std::int64_t chunk_count(std::int64_t rows, std::int64_t cols, bool params) {
  // dgamma/dbeta partials are one fp32 row of C per chunk. About 64 rows per chunk, so combining the partials costs
  // little next to the rows and the fp32 sums stay short; at least 8 chunks (when there are 8 rows) so that few wide
  // rows still spread over threads; at most 4096 chunks and 32 MiB of partials. Depends on the shape only.
  std::int64_t n = std::min<std::int64_t>(std::max<std::int64_t>({1, rows / 64, std::min<std::int64_t>(rows, 8)}), 4096);
  if (params) n = std::min<std::int64_t>(n, std::max<std::int64_t>(1, (std::int64_t{32} << 20) / (8 * cols)));
  return n;
}

template <typename T>
void backward_impl(const LayerNormBackwardArgs& a, const Exec& exec) {
  const std::int64_t C = a.cols, R = a.rows;
  const bool params = a.dgamma || a.dbeta;
  if (params && R == 0 && a.accumulate) return;  // adding an empty sum
  const std::vector<float> gamma = weights_as_float(a.gamma, a.weight_dtype, C, 1.0f);
  const float* gm = gamma.data();
  const T* x = static_cast<const T*>(a.x);
  const T* dy = static_cast<const T*>(a.dy);
  T* dx = static_cast<T*>(a.dx);  // may alias dy: each row is read completely before it is written
  const std::int64_t chunks = chunk_count(R, C, params);
  const std::int64_t per_chunk = chunks > 0 ? (R + chunks - 1) / chunks : 0;
  // Per chunk, dgamma/dbeta partials accumulate in fp32 over at most per_chunk rows; chunks combine in fp64 below.
  std::vector<float> part_g(params ? static_cast<std::size_t>(chunks * C) : 0);
  std::vector<float> part_b(params ? static_cast<std::size_t>(chunks * C) : 0);
  const int nt = host::threads(exec, R * C);
#pragma omp parallel num_threads(nt)
  {
    const std::size_t nbuf = std::is_same_v<T, float> ? 0 : static_cast<std::size_t>(C);
    std::vector<float> xbuf(nbuf), dybuf(nbuf);
    // xhat and g = dy * gamma of the current row, kept rounded: recomputing g in the dx loop would let the compiler
    // fuse it into an FMA with -mean(g) and turn an exact zero (e.g. C == 1) into a rounding residual times rstd.
    std::vector<float> xhat(static_cast<std::size_t>(C)), grow(static_cast<std::size_t>(C));
    float* xh = xhat.data();
    float* gr = grow.data();
#pragma omp for schedule(static)
    for (std::int64_t k = 0; k < chunks; ++k) {
      float* pg = params ? part_g.data() + k * C : nullptr;
      float* pb = params ? part_b.data() + k * C : nullptr;
      const std::int64_t r_end = std::min(R, (k + 1) * per_chunk);
      if (params) {
        std::fill(pg, pg + C, 0.0f);
        std::fill(pb, pb + C, 0.0f);
      }
      for (std::int64_t r = k * per_chunk; r < r_end; ++r) {
        const float* xr = row_as_float(x + r * C, C, xbuf.data());
        // In place for float: with dx aliasing dy, dy[j] is read before dx[j] is written and never again.
        const float* dyr = row_as_float(dy + r * C, C, dybuf.data());
        const float mean = a.mean[r], rstd = a.rstd[r];
        // Row sums in fp32 vector lanes over blocks of kBlock columns, blocks added in fp64: vector speed, and each
        // lane sums at most kBlock / lanes terms in fp32.
        constexpr std::int64_t kBlock = 256;
        double sg = 0, sgx = 0;
        for (std::int64_t j0 = 0; j0 < C; j0 += kBlock) {
          const std::int64_t j1 = std::min(C, j0 + kBlock);
          float bg = 0, bgx = 0;
          if (params) {
#pragma omp simd reduction(+ : bg, bgx)
            for (std::int64_t j = j0; j < j1; ++j) {
              const float h = (xr[j] - mean) * rstd, d = dyr[j], g = d * gm[j];
              xh[j] = h;
              gr[j] = g;
              pg[j] += d * h;
              pb[j] += d;
              bg += g;
              bgx += g * h;
            }
          } else {
#pragma omp simd reduction(+ : bg, bgx)
            for (std::int64_t j = j0; j < j1; ++j) {
              const float h = (xr[j] - mean) * rstd, g = dyr[j] * gm[j];
              xh[j] = h;
              gr[j] = g;
              bg += g;
              bgx += g * h;
            }
          }
          sg += bg;
          sgx += bgx;
        }
        if (!dx) continue;
        const float mg = static_cast<float>(sg / static_cast<double>(C));
        const float mgx = static_cast<float>(sgx / static_cast<double>(C));
        T* dxr = dx + r * C;
        if constexpr (std::is_same_v<T, float>) {
#pragma omp simd
          for (std::int64_t j = 0; j < C; ++j) dxr[j] = rstd * ((gr[j] - mg) - xh[j] * mgx);
        } else {
          for (std::int64_t j = 0; j < C; ++j) host::store(dxr, j, rstd * ((gr[j] - mg) - xh[j] * mgx));
        }
      }
    }
  }
  if (!params) return;
  // Combine the chunk partials in chunk order: the same sums in the same order whatever the thread count.
  const int ntc = host::threads(exec, chunks * C);
#pragma omp parallel for num_threads(ntc) schedule(static)
  for (std::int64_t j = 0; j < C; ++j) {
    double sgj = 0, sbj = 0;
    for (std::int64_t k = 0; k < chunks; ++k) {
      sgj += static_cast<double>(part_g[k * C + j]);
      sbj += static_cast<double>(part_b[k * C + j]);
    }
    if (a.dgamma) {
      if (a.accumulate) sgj += load_any(a.dgamma, a.weight_dtype, j);
      store_any(a.dgamma, a.weight_dtype, j, static_cast<float>(sgj));
    }
    if (a.dbeta) {
      if (a.accumulate) sbj += load_any(a.dbeta, a.weight_dtype, j);
      store_any(a.dbeta, a.weight_dtype, j, static_cast<float>(sbj));
    }
  }
}

// Weight dtypes are checked here, before any parallel region, so nothing throws inside one.
void check_weight_dtype(DType t) {
  if (t != DType::F32 && t != DType::F16 && t != DType::BF16)
    fail(DLK_ERROR_DTYPE, "layernorm (cpu): unsupported weight dtype ", dtype_name(t));
}

}  // namespace

void layernorm_forward(const LayerNormForwardArgs& a, const Exec& exec) {
  check_weight_dtype(a.weight_dtype);
  host::with_type(a.dtype, "layernorm_forward", [&](auto tag) { forward_impl<decltype(tag)>(a, exec); });
}

void layernorm_backward(const LayerNormBackwardArgs& a, const Exec& exec) {
  check_weight_dtype(a.weight_dtype);
  host::with_type(a.dtype, "layernorm_backward", [&](auto tag) { backward_impl<decltype(tag)>(a, exec); });
}

}  // namespace dlk::cpu
