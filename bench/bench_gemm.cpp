// GEMM family through the public C API at GPT-2 small shapes (C = 768, B*T tokens): the four linear layers of a
// block (qkv 768->2304, attention projection 768->768, MLP up 768->3072 with GELU(tanh), MLP down 3072->768), the
// attention scores q @ k^T as a batched, transposed matmul, and the linear backward (dx, dW, db).
// Counters: TFLOP/s (2*M*N*K per product; the backward does two products) and GB/s over the bytes that must move.
// Baseline on cuda, same buffers and timing: cuBLAS called directly (cublasGemmEx / cublasGemmStridedBatchedEx),
// the plain product without bias or activation, which is what the "none" dlk case computes too.
// Keep the shapes and keys in step with gemm_cases() in bench/compare_torch.py.
#include <string>
#include <vector>

#include "bench_common.h"

#ifdef DLK_BENCH_CUBLAS
#include <cublas_v2.h>
#endif

namespace {

using dlkb::Dtype;
using dlkb::Env;
using dlkb::Tensor;

struct Linear {
  int64_t m, k, n;  // x [m, k], W [n, k], y [m, n]
  dlk_epilogue act;
  bool bias;
  std::string key;
};

const char* act_name(dlk_epilogue a, bool bias) {
  if (!bias && a == DLK_EPILOGUE_NONE) return "none";
  switch (a) {
    case DLK_EPILOGUE_RELU: return "bias_relu";
    case DLK_EPILOGUE_GELU: return "bias_gelu";
    case DLK_EPILOGUE_GELU_TANH: return "bias_gelu_tanh";
    default: return "bias";
  }
}

std::vector<Linear> linear_shapes(bool cuda) {
  const int64_t tokens = cuda ? 8192 : 1024;  // B*T: 8 x 1024 on a GPU, 4 x 256 on two CPU cores
  std::vector<Linear> out;
  auto add = [&](int64_t k, int64_t n, dlk_epilogue a, bool bias) {
    out.push_back({tokens, k, n, a, bias, dlkb::dims({{"M", tokens}, {"K", k}, {"N", n}})});
  };
  for (auto kn : {std::pair<int64_t, int64_t>{768, 2304}, {768, 768}, {768, 3072}, {3072, 768}})
    add(kn.first, kn.second, DLK_EPILOGUE_NONE, false);
  add(768, 2304, DLK_EPILOGUE_NONE, true);
  add(768, 3072, DLK_EPILOGUE_GELU_TANH, true);
  return out;
}

struct Attn {
  int64_t b, h, t, d;
  std::string key;
};
Attn attn_shape(bool cuda) {
  const int64_t b = cuda ? 8 : 1, t = cuda ? 1024 : 256;
  return {b, 12, t, 64, dlkb::dims({{"B", b}, {"H", 12}, {"T", t}, {"D", 64}})};
}

std::string dname(Dtype dt, bool tf32) { return tf32 ? "tf32" : dlkb::dtype_name(dt); }

#ifdef DLK_BENCH_CUBLAS
cublasHandle_t cublas(Env& e) {
  static cublasHandle_t h = [&] {
    cublasHandle_t v = nullptr;
    if (cublasCreate(&v) != CUBLAS_STATUS_SUCCESS) return static_cast<cublasHandle_t>(nullptr);
    cublasSetStream(v, e.stream);
    return v;
  }();
  return h;
}
cudaDataType_t cuda_type(Dtype dt) {
  return dt == Dtype::F32 ? CUDA_R_32F : dt == Dtype::F16 ? CUDA_R_16F : CUDA_R_16BF;
}
std::string cublas_result(cublasStatus_t s) {
  return s == CUBLAS_STATUS_SUCCESS ? std::string() : "cuBLAS status " + std::to_string(static_cast<int>(s));
}
#endif

struct LinearSet {
  Tensor x, w, b, y, z, dy, dx, dw, db;
};

void linear_case(benchmark::State& state, Linear s, Dtype dt, bool tf32, bool backward, bool use_cublas) {
  Env& e = dlkb::env();
  if (!e.error.empty()) return state.SkipWithError(e.error.c_str());
  const DLDataType t = dlkb::dl_dtype(dt);
  const double es = static_cast<double>(dlkb::dtype_size(dt));
  const double m = static_cast<double>(s.m), k = static_cast<double>(s.k), n = static_cast<double>(s.n);
  const double flops = (backward ? 4.0 : 2.0) * m * n * k;
  const double bytes = backward ? (2 * m * n + 2 * m * k + 2 * n * k + n) * es  // dy, z; x, dx; W, dW; db
                                : (m * k + n * k + m * n * (s.act != DLK_EPILOGUE_NONE ? 2 : 1) + n) * es;
  const int sets = dlkb::rotation_sets(e, static_cast<std::size_t>(bytes));
  std::vector<LinearSet> v(static_cast<std::size_t>(sets));
  for (int i = 0; i < sets; ++i) {
    LinearSet& st = v[static_cast<std::size_t>(i)];
    st.x = Tensor(e, {s.m, s.k}, t);
    st.w = Tensor(e, {s.n, s.k}, t);
    st.b = Tensor(e, {s.n}, t);
    st.y = Tensor(e, {s.m, s.n}, t);
    st.z = Tensor(e, {s.m, s.n}, t);
    bool ok = st.x.ok() && st.w.ok() && st.b.ok() && st.y.ok() && st.z.ok() && dlkb::fill(e, st.x, dt, 10 * i) &&
              dlkb::fill(e, st.w, dt, 10 * i + 1) && dlkb::fill(e, st.b, dt, 10 * i + 2) &&
              dlkb::fill(e, st.z, dt, 10 * i + 3);
    if (backward) {
      st.dy = Tensor(e, {s.m, s.n}, t);
      st.dx = Tensor(e, {s.m, s.k}, t);
      st.dw = Tensor(e, {s.n, s.k}, t);
      st.db = Tensor(e, {s.n}, t);
      ok = ok && st.dy.ok() && st.dx.ok() && st.dw.ok() && st.db.ok() && dlkb::fill(e, st.dy, dt, 10 * i + 4);
    }
    if (!ok) return state.SkipWithError("cannot allocate or fill the linear-layer buffers");
  }
  dlk_linear_params p;
  dlk_linear_params_init(&p);
  p.activation = s.act;
  p.allow_tf32 = tf32;
#ifdef DLK_BENCH_CUBLAS
  if (use_cublas && !cublas(e)) return state.SkipWithError("cublasCreate failed");
#endif
  dlkb::run_case(state, e, bytes, [&](long i) -> std::string {
    LinearSet& st = v[static_cast<std::size_t>(i % sets)];
#ifdef DLK_BENCH_CUBLAS
    if (use_cublas) {  // y^T [n, m] = W [n, k] (row-major: cuBLAS's T of W^T) x x^T [k, m]
      const float one = 1.0f, zero = 0.0f;
      return cublas_result(cublasGemmEx(cublas(e), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(s.n),
                                        static_cast<int>(s.m), static_cast<int>(s.k), &one, st.w.data(), cuda_type(dt),
                                        static_cast<int>(s.k), st.x.data(), cuda_type(dt), static_cast<int>(s.k), &zero,
                                        st.y.data(), cuda_type(dt), static_cast<int>(s.n),
                                        tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
#else
    (void)use_cublas;
#endif
    if (backward)
      return dlkb::dlk_result(dlk_linear_backward(e.ctx, &p, st.dy.dl(), st.x.dl(), st.w.dl(), st.z.dl(), st.dx.dl(),
                                                  st.dw.dl(), s.bias ? st.db.dl() : nullptr));
    return dlkb::dlk_result(
        dlk_linear_forward(e.ctx, &p, st.x.dl(), st.w.dl(), s.bias ? st.b.dl() : nullptr, st.y.dl(), st.z.dl()));
  });
  state.counters["TFLOP/s"] = benchmark::Counter(flops / 1e12, benchmark::Counter::kIsIterationInvariantRate);
}

struct AttnSet {
  Tensor q, k, s;
};

// Scores S = Q @ K^T per (batch, head): Q, K [B, H, T, D], S [B, H, T, T]; K transposed by the flag.
void attn_case(benchmark::State& state, Attn a, Dtype dt, bool tf32, bool use_cublas) {
  Env& e = dlkb::env();
  if (!e.error.empty()) return state.SkipWithError(e.error.c_str());
  const DLDataType t = dlkb::dl_dtype(dt);
  const double es = static_cast<double>(dlkb::dtype_size(dt));
  const double batch = static_cast<double>(a.b * a.h), T = static_cast<double>(a.t), D = static_cast<double>(a.d);
  const double flops = 2.0 * batch * T * T * D, bytes = batch * (2 * T * D + T * T) * es;
  const int sets = dlkb::rotation_sets(e, static_cast<std::size_t>(bytes));
  std::vector<AttnSet> v(static_cast<std::size_t>(sets));
  for (int i = 0; i < sets; ++i) {
    AttnSet& st = v[static_cast<std::size_t>(i)];
    st.q = Tensor(e, {a.b, a.h, a.t, a.d}, t);
    st.k = Tensor(e, {a.b, a.h, a.t, a.d}, t);
    st.s = Tensor(e, {a.b, a.h, a.t, a.t}, t);
    if (!(st.q.ok() && st.k.ok() && st.s.ok() && dlkb::fill(e, st.q, dt, 7 * i) && dlkb::fill(e, st.k, dt, 7 * i + 1)))
      return state.SkipWithError("cannot allocate or fill the attention buffers");
  }
  dlk_matmul_params p;
  dlk_matmul_params_init(&p);
  p.transpose_b = 1;
  p.allow_tf32 = tf32;
#ifdef DLK_BENCH_CUBLAS
  if (use_cublas && !cublas(e)) return state.SkipWithError("cublasCreate failed");
#endif
  dlkb::run_case(state, e, bytes, [&](long i) -> std::string {
    AttnSet& st = v[static_cast<std::size_t>(i % sets)];
#ifdef DLK_BENCH_CUBLAS
    if (use_cublas) {  // S^T [T, T] = K [T, D] (cuBLAS's T of K^T) x Q^T [D, T], strided over B*H
      const float one = 1.0f, zero = 0.0f;
      const int T_ = static_cast<int>(a.t), D_ = static_cast<int>(a.d);
      return cublas_result(cublasGemmStridedBatchedEx(
          cublas(e), CUBLAS_OP_T, CUBLAS_OP_N, T_, T_, D_, &one, st.k.data(), cuda_type(dt), D_,
          static_cast<long long>(a.t * a.d), st.q.data(), cuda_type(dt), D_, static_cast<long long>(a.t * a.d), &zero,
          st.s.data(), cuda_type(dt), T_, static_cast<long long>(a.t * a.t), static_cast<int>(a.b * a.h),
          tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
#else
    (void)use_cublas;
#endif
    return dlkb::dlk_result(dlk_matmul(e.ctx, &p, st.q.dl(), st.k.dl(), st.s.dl()));
  });
  state.counters["TFLOP/s"] = benchmark::Counter(flops / 1e12, benchmark::Counter::kIsIterationInvariantRate);
}

void register_cases(Env& e) {
  struct Variant {
    Dtype dt;
    bool tf32;
  };
  std::vector<Variant> variants = {{Dtype::F32, false}};
  if (e.cuda) variants = {{Dtype::F32, false}, {Dtype::F32, true}, {Dtype::F16, false}, {Dtype::BF16, false}};
  std::vector<const char*> impls = {"dlk"};
#ifdef DLK_BENCH_CUBLAS
  if (e.cuda) impls.push_back("cublas");
#endif
  for (const Variant& var : variants) {
    const std::string dn = dname(var.dt, var.tf32);
    for (const Linear& s : linear_shapes(e.cuda)) {
      const std::string an = act_name(s.act, s.bias);
      for (const char* impl : impls) {
        const bool cb = std::string(impl) == "cublas";
        if (cb && (s.bias || s.act != DLK_EPILOGUE_NONE)) continue;  // the baseline is the plain product
        dlkb::add("gemm/linear/fwd/" + dn + "/" + an + "/" + s.key, impl,
                  [=](benchmark::State& st) { linear_case(st, s, var.dt, var.tf32, false, cb); });
      }
      if (s.bias || s.act != DLK_EPILOGUE_NONE)
        dlkb::add("gemm/linear/bwd/" + dn + "/" + an + "/" + s.key, "dlk",
                  [=](benchmark::State& st) { linear_case(st, s, var.dt, var.tf32, true, false); });
    }
    const Attn a = attn_shape(e.cuda);
    for (const char* impl : impls) {
      const bool cb = std::string(impl) == "cublas";
      dlkb::add("gemm/matmul/" + dn + "/attn_qk/" + a.key, impl,
                [=](benchmark::State& st) { attn_case(st, a, var.dt, var.tf32, cb); });
    }
  }
}

}  // namespace

int main(int argc, char** argv) { return dlkb::run_main(argc, argv, register_cases); }
