// Internal interface of layer normalisation over the last `cols` elements of each row. capi/layernorm.cpp
// validates and fills these structs; the cpu reference, cuda and emu backends implement the same functions.
//
// Forward:  mean = sum(x)/C, var = sum((x-mean)^2)/C (biased), rstd = 1/sqrt(var+eps),
//           y = (x-mean)*rstd*gamma + beta   (gamma = 1 / beta = 0 when absent)
// Backward: xhat = (x-mean)*rstd, g = dy*gamma,
//           dx = rstd * (g - mean(g) - xhat*mean(g*xhat)),
//           dgamma = sum_rows(dy*xhat), dbeta = sum_rows(dy)  (written, or added when accumulate)
#pragma once

#include <cstdint>

#include "runtime/exec.h"
#include "runtime/tensor.h"

namespace dlk {

struct LayerNormForwardArgs {
  DType dtype = DType::F32;         // of x and y
  DType weight_dtype = DType::F32;  // of gamma and beta (F32 or dtype)
  std::int64_t rows = 0, cols = 0;
  float eps = 1e-5f;
  const void* x = nullptr;
  const void* gamma = nullptr;  // may be null
  const void* beta = nullptr;   // may be null
  void* y = nullptr;
  float* mean = nullptr;  // [rows], may be null
  float* rstd = nullptr;  // [rows], may be null
};

struct LayerNormBackwardArgs {
  DType dtype = DType::F32;         // of dy, x and dx
  DType weight_dtype = DType::F32;  // of gamma, dgamma and dbeta
  std::int64_t rows = 0, cols = 0;
  const void* dy = nullptr;
  const void* x = nullptr;
  const float* mean = nullptr;
  const float* rstd = nullptr;
  const void* gamma = nullptr;  // may be null
  void* dx = nullptr;           // may be null when only parameter gradients are wanted
  void* dgamma = nullptr;       // may be null
  void* dbeta = nullptr;        // may be null
  bool accumulate = false;      // add into dgamma/dbeta instead of overwriting
};

namespace cpu {
void layernorm_forward(const LayerNormForwardArgs& a, const Exec& exec);
void layernorm_backward(const LayerNormBackwardArgs& a, const Exec& exec);
}  // namespace cpu
namespace cuda {
void layernorm_forward(const LayerNormForwardArgs& a, const Exec& exec);
void layernorm_backward(const LayerNormBackwardArgs& a, const Exec& exec);
}  // namespace cuda
namespace emu {
void layernorm_forward(const LayerNormForwardArgs& a, const Exec& exec);
void layernorm_backward(const LayerNormBackwardArgs& a, const Exec& exec);
}  // namespace emu

}  // namespace dlk
