// Internal interface of the GEMM family. capi/gemm.cpp validates the public calls and fills these structs; the cpu
// (OpenBLAS), cuda (cuBLAS + small epilogue kernels) and emu (tiled shared-memory kernel + the same epilogue
// kernels) backends implement the same four functions.
//
// matmul: for every batch index t (row-major over the broadcast, collapsed batch shape), with
//   A_t(i, p) = a[offA(t) + i * a_rs + p * a_cs]   (op(A), logical [m, k]; a transpose is already in the strides)
//   B_t(p, j) = b[offB(t) + p * b_rs + j * b_cs]   (op(B), logical [k, n])
//   C_t(i, j) = c[offC(t) + i * c_rs + j]
//   C_t = alpha * A_t @ B_t + beta * C_t, fp32 accumulation; beta == 0 never reads C (it may hold NaN).
// Invariants the callers guarantee (BLAS-legal layouts): for A, a_cs == 1 && a_rs >= k, or a_rs == 1 && a_cs >= m;
// likewise for B with [k, n]; c_rs >= n; m, n, batch > 0 (k may be 0).
//
// The linear layer is a matmul (y = x @ W^T) followed by linear_epilogue (bias + activation in place, z saved); its
// backward is linear_act_grad (g = dy * act'(z)), then two matmuls (dx = g @ W, dW = g^T @ x) and bias_grad.
#pragma once

#include <dlk/dlk.h>

#include <cmath>
#include <cstdint>

#include "activation/activation.h"
#include "common/macros.h"
#include "runtime/exec.h"
#include "runtime/tensor.h"

namespace dlk {

constexpr int kGemmMaxBatchDims = kMaxDims - 2;

struct MatmulArgs {
  DType dtype = DType::F32;  // of a, b and c
  std::int64_t m = 0, n = 0, k = 0;
  // Collapsed batch shape (adjacent dims merged where every operand allows it, size-1 dims dropped).
  int batch_ndim = 0;
  std::int64_t batch_sizes[kGemmMaxBatchDims] = {};
  std::int64_t batch = 1;  // product of batch_sizes
  const void* a = nullptr;
  std::int64_t a_rs = 0, a_cs = 0, a_bs[kGemmMaxBatchDims] = {};  // a_bs: 0 where A is broadcast
  const void* b = nullptr;
  std::int64_t b_rs = 0, b_cs = 0, b_bs[kGemmMaxBatchDims] = {};
  void* c = nullptr;
  std::int64_t c_rs = 0, c_bs[kGemmMaxBatchDims] = {};
  float alpha = 1.0f, beta = 0.0f;
  bool allow_tf32 = false;
};

// Element offsets of batch entry t in a, b and c.
DLK_HD void matmul_batch_offsets(const MatmulArgs& g, std::int64_t t, std::int64_t* oa, std::int64_t* ob,
                                 std::int64_t* oc) {
  std::int64_t a = 0, b = 0, c = 0;
  for (int d = g.batch_ndim - 1; d >= 0; --d) {
    const std::int64_t size = g.batch_sizes[d], i = t % size;
    t /= size;
    a += i * g.a_bs[d];
    b += i * g.b_bs[d];
    c += i * g.c_bs[d];
  }
  *oa = a;
  *ob = b;
  *oc = c;
}

// y = activation(z) and dy/dz, in fp32, by the activations' own math (activation/activation.h: CUDA's expf/erfcf on
// the device, the vectorisable common/cpu_math.h on the cpu backend), so a fused epilogue and a separate
// dlk_activation_forward agree. The derivative of ReLU at 0 is 0 (PyTorch's choice).
DLK_HD int epilogue_activation(dlk_epilogue act) {
  switch (act) {
    case DLK_EPILOGUE_RELU: return DLK_ACTIVATION_RELU;
    case DLK_EPILOGUE_GELU: return DLK_ACTIVATION_GELU;
    default: return DLK_ACTIVATION_GELU_TANH;
  }
}
DLK_HD float epilogue_forward(dlk_epilogue act, float z) {
  return act == DLK_EPILOGUE_NONE ? z : activation_value(epilogue_activation(act), z, 0.0f, 1.0f);
}
DLK_HD float epilogue_derivative(dlk_epilogue act, float z) {
  return act == DLK_EPILOGUE_NONE ? 1.0f : activation_grad(epilogue_activation(act), z, 1.0f, false, 0.0f, 1.0f);
}

// In place on y [rows, cols] (contiguous), which holds x @ W^T: z = y + bias[j] (bias may be null), rounded to the
// dtype; z is stored when `z` is non-null; y = activation(z).
struct LinearEpilogueArgs {
  DType dtype = DType::F32;
  std::int64_t rows = 0, cols = 0;
  void* y = nullptr;
  const void* bias = nullptr;
  void* z = nullptr;
  dlk_epilogue act = DLK_EPILOGUE_NONE;
};

// g = dy * activation'(z) over n elements (contiguous, one dtype; g may alias dy).
struct LinearActGradArgs {
  DType dtype = DType::F32;
  std::int64_t n = 0;
  const void* dy = nullptr;
  const void* z = nullptr;
  void* g = nullptr;
  dlk_epilogue act = DLK_EPILOGUE_NONE;
};

// db[j] (+)= sum over rows of g[r, j], g [rows, cols] contiguous, in a fixed order (deterministic).
struct BiasGradArgs {
  DType dtype = DType::F32;
  std::int64_t rows = 0, cols = 0;
  const void* g = nullptr;
  void* db = nullptr;
  bool accumulate = false;
};

namespace cpu {
void matmul(const MatmulArgs& a, const Exec& exec);
void linear_epilogue(const LinearEpilogueArgs& a, const Exec& exec);
void linear_act_grad(const LinearActGradArgs& a, const Exec& exec);
void bias_grad(const BiasGradArgs& a, const Exec& exec);
}  // namespace cpu
namespace cuda {
void matmul(const MatmulArgs& a, const Exec& exec);
void linear_epilogue(const LinearEpilogueArgs& a, const Exec& exec);
void linear_act_grad(const LinearActGradArgs& a, const Exec& exec);
void bias_grad(const BiasGradArgs& a, const Exec& exec);
}  // namespace cuda
namespace emu {
void matmul(const MatmulArgs& a, const Exec& exec);
void linear_epilogue(const LinearEpilogueArgs& a, const Exec& exec);
void linear_act_grad(const LinearActGradArgs& a, const Exec& exec);
void bias_grad(const BiasGradArgs& a, const Exec& exec);
}  // namespace emu

}  // namespace dlk
