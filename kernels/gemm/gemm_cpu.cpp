// CPU backend of the GEMM family: the products are OpenBLAS's cblas_sgemm (never a hand loop), the epilogues are
// OpenMP loops. float16/bfloat16 operands are converted to compact fp32 panels, multiplied by sgemm (fp32
// accumulation, as on the GPU) and rounded back. Batches run one sgemm after another, each using every OpenBLAS
// thread; the panel conversions are OpenMP loops outside any sgemm (OpenBLAS's pthreads and OpenMP never nest).
#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "common/host.h"
#include "gemm/gemm.h"

namespace dlk::cpu {
namespace {

// One product on fp32 data with the invariants of MatmulArgs (layouts BLAS accepts).
void sgemm(std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a, std::int64_t a_rs,
           std::int64_t a_cs, const float* b, std::int64_t b_rs, std::int64_t b_cs, float beta, float* c,
           std::int64_t c_rs) {
  const bool ta = a_cs != 1, tb = b_cs != 1;
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(ta ? a_cs : a_rs), b,
              static_cast<int>(tb ? b_cs : b_rs), beta, c, static_cast<int>(c_rs));
}

// C = beta * C (beta == 0 writes zeros without reading C): the k == 0 product.
template <typename T>
void scale_c(const MatmulArgs& g) {
#pragma omp parallel for schedule(static) if (g.batch * g.m * g.n > 16384)
  for (std::int64_t t = 0; t < g.batch; ++t) {
    std::int64_t oa, ob, oc;
    matmul_batch_offsets(g, t, &oa, &ob, &oc);
    T* c = static_cast<T*>(g.c) + oc;
    for (std::int64_t i = 0; i < g.m; ++i)
      for (std::int64_t j = 0; j < g.n; ++j)
        host::store(c, i * g.c_rs + j, g.beta == 0.0f ? 0.0f : g.beta * host::load(c, i * g.c_rs + j));
  }
}

// Copies the strided [rows, cols] matrix at src to a compact fp32 panel.
template <typename T>
void to_panel(const T* src, std::int64_t rs, std::int64_t cs, std::int64_t rows, std::int64_t cols, float* dst) {
#pragma omp parallel for schedule(static) if (rows * cols > 16384)
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j) dst[i * cols + j] = host::load(src, i * rs + j * cs);
}

// OpenBLAS's cblas takes 32-bit ints (Debian builds it without ILP64).
void check_blas_ints(const MatmulArgs& g) {
  const std::int64_t limit = INT_MAX;
  const std::int64_t v[] = {g.m, g.n, g.k, g.a_rs, g.a_cs, g.b_rs, g.b_cs, g.c_rs};
  for (std::int64_t x : v)
    if (x > limit)
      fail(DLK_ERROR_OVERFLOW, "matmul: the cpu backend's BLAS takes 32-bit sizes and strides; got m=", g.m, " n=", g.n,
           " k=", g.k, " and leading dimensions up to ", x);
}

template <typename T>
void matmul_typed(const MatmulArgs& g) {
  if (g.k == 0) return scale_c<T>(g);
  check_blas_ints(g);
  if (g.dtype == DType::F32) {
    for (std::int64_t t = 0; t < g.batch; ++t) {
      std::int64_t oa, ob, oc;
      matmul_batch_offsets(g, t, &oa, &ob, &oc);
      sgemm(g.m, g.n, g.k, g.alpha, static_cast<const float*>(g.a) + oa, g.a_rs, g.a_cs,
            static_cast<const float*>(g.b) + ob, g.b_rs, g.b_cs, g.beta, static_cast<float*>(g.c) + oc, g.c_rs);
    }
    return;
  }
  std::vector<float> pa(static_cast<std::size_t>(g.m * g.k)), pb(static_cast<std::size_t>(g.k * g.n)),
      pc(static_cast<std::size_t>(g.m * g.n));
  for (std::int64_t t = 0; t < g.batch; ++t) {
    std::int64_t oa, ob, oc;
    matmul_batch_offsets(g, t, &oa, &ob, &oc);
    to_panel(static_cast<const T*>(g.a) + oa, g.a_rs, g.a_cs, g.m, g.k, pa.data());
    to_panel(static_cast<const T*>(g.b) + ob, g.b_rs, g.b_cs, g.k, g.n, pb.data());
    T* c = static_cast<T*>(g.c) + oc;
    if (g.beta != 0.0f) to_panel(c, g.c_rs, 1, g.m, g.n, pc.data());
    sgemm(g.m, g.n, g.k, g.alpha, pa.data(), g.k, 1, pb.data(), g.n, 1, g.beta, pc.data(), g.n);
#pragma omp parallel for schedule(static) if (g.m * g.n > 16384)
    for (std::int64_t i = 0; i < g.m; ++i)
      for (std::int64_t j = 0; j < g.n; ++j) host::store(c, i * g.c_rs + j, pc[i * g.n + j]);
  }
}

// Calls f(std::integral_constant<dlk_epilogue, act>{}): the activation as a template argument, so each epilogue loop
// below is one vectorised loop without a per-element switch (the transcendentals are common/cpu_math.h's).
template <typename F>
void with_epilogue(dlk_epilogue act, F&& f) {
  switch (act) {
    case DLK_EPILOGUE_RELU: f(std::integral_constant<dlk_epilogue, DLK_EPILOGUE_RELU>{}); break;
    case DLK_EPILOGUE_GELU: f(std::integral_constant<dlk_epilogue, DLK_EPILOGUE_GELU>{}); break;
    case DLK_EPILOGUE_GELU_TANH: f(std::integral_constant<dlk_epilogue, DLK_EPILOGUE_GELU_TANH>{}); break;
    default: f(std::integral_constant<dlk_epilogue, DLK_EPILOGUE_NONE>{}); break;
  }
}

// Per row of y: z = y + bias rounded to T (kept in y, copied to a.z when saved), then y = act(z).
template <dlk_epilogue kAct, typename T>
void epilogue_rows(const LinearEpilogueArgs& a) {
  T* y = static_cast<T*>(a.y);
  const T* bias = static_cast<const T*>(a.bias);
  T* z = static_cast<T*>(a.z);
  const std::int64_t cols = a.cols;
#pragma omp parallel for schedule(static) if (a.rows * a.cols > 16384)
  for (std::int64_t r = 0; r < a.rows; ++r) {
    T* yr = y + r * cols;
    if (bias) {
#pragma omp simd
      for (std::int64_t j = 0; j < cols; ++j) host::put(yr + j, host::load(yr, j) + host::load(bias, j));
    }
    if (z) std::memcpy(static_cast<void*>(z + r * cols), yr, static_cast<std::size_t>(cols) * sizeof(T));
    if (kAct != DLK_EPILOGUE_NONE) {
#pragma omp simd
      for (std::int64_t j = 0; j < cols; ++j) host::store(yr, j, epilogue_forward(kAct, host::to_f(yr[j])));
    }
  }
}

// g = dy * act'(z).
template <dlk_epilogue kAct, typename T>
void act_grad_loop(const LinearActGradArgs& a) {
  const T* dy = static_cast<const T*>(a.dy);
  const T* z = static_cast<const T*>(a.z);
  T* g = static_cast<T*>(a.g);
#pragma omp parallel for simd schedule(static) if (a.n > 16384)
  for (std::int64_t i = 0; i < a.n; ++i)
    host::store(g, i, host::load(dy, i) * epilogue_derivative(kAct, host::load(z, i)));
}

}  // namespace

void matmul(const MatmulArgs& a, const Exec&) {
  host::with_type(a.dtype, "matmul", [&](auto tag) { matmul_typed<decltype(tag)>(a); });
}

void linear_epilogue(const LinearEpilogueArgs& a, const Exec&) {
  host::with_type(a.dtype, "linear_epilogue", [&](auto tag) {
    with_epilogue(a.act, [&](auto act) { epilogue_rows<decltype(act)::value, decltype(tag)>(a); });
  });
}

void linear_act_grad(const LinearActGradArgs& a, const Exec&) {
  host::with_type(a.dtype, "linear_act_grad", [&](auto tag) {
    with_epilogue(a.act, [&](auto act) { act_grad_loop<decltype(act)::value, decltype(tag)>(a); });
  });
}

void bias_grad(const BiasGradArgs& a, const Exec&) {
  host::with_type(a.dtype, "bias_grad", [&](auto tag) {
    using T = decltype(tag);
    const T* g = static_cast<const T*>(a.g);
    T* db = static_cast<T*>(a.db);
    constexpr std::int64_t kChunk = 64;  // columns per task: each task sums its columns over every row, in order
    const std::int64_t chunks = (a.cols + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (a.rows * a.cols > 16384)
    for (std::int64_t ch = 0; ch < chunks; ++ch) {
      const std::int64_t j0 = ch * kChunk, j1 = std::min(a.cols, j0 + kChunk);
      double acc[kChunk] = {};
      for (std::int64_t r = 0; r < a.rows; ++r)
        for (std::int64_t j = j0; j < j1; ++j) acc[j - j0] += host::load(g, r * a.cols + j);
      for (std::int64_t j = j0; j < j1; ++j) {
        const double prev = a.accumulate ? host::load(db, j) : 0.0;
        host::store(db, j, static_cast<float>(prev + acc[j - j0]));
      }
    }
  });
}

}  // namespace dlk::cpu
