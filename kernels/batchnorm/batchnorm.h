// Internal interface of batch norm. capi/batchnorm.cpp validates and fills these structs; the cpu reference and the
// cuda/emu kernels implement the two functions.
//
// x is viewed as [n, c, l]: channel k's elements are x[(i * c + k) * l + j] for i < n, j < l (l = the product of the
// spatial dims, 1 for [N, C]). Statistics per channel over count = n * l elements.
//   training: mean, var = batch mean and biased variance; invstd = 1 / sqrt(var + eps); save_mean/save_invstd
//             written (when non-null); running stats (when non-null) updated with momentum and var * count/(count-1).
//   eval:     mean = running_mean, invstd = 1 / sqrt(running_var + eps).
//   y = (x - mean) * invstd * gamma + beta (gamma/beta null: 1/0).
// Backward, per channel with xhat = (x - mean) * invstd:
//   dbeta = sum(dy), dgamma = sum(dy * xhat);
//   training: dx = gamma * invstd * (dy - dbeta / count - xhat * dgamma / count);  eval: dx = gamma * invstd * dy.
#pragma once

#include <cstdint>

#include "runtime/exec.h"
#include "runtime/tensor.h"

namespace dlk {

struct BatchNormForwardArgs {
  DType dtype = DType::F32;  // of x and y
  std::int64_t n = 0, c = 0, l = 0;
  const void* x = nullptr;
  void* y = nullptr;  // may equal x
  const float* gamma = nullptr;
  const float* beta = nullptr;
  float* running_mean = nullptr;  // training: updated when non-null; eval: read (non-null)
  float* running_var = nullptr;
  float* save_mean = nullptr;  // training only, may be null
  float* save_invstd = nullptr;
  bool training = false;
  float momentum = 0.1f;
  float eps = 1e-5f;
};

struct BatchNormBackwardArgs {
  DType dtype = DType::F32;  // of dy, x and dx
  std::int64_t n = 0, c = 0, l = 0;
  const void* dy = nullptr;
  const void* x = nullptr;
  const float* gamma = nullptr;
  // training: mean = save_mean, invstd = save_invstd (var null); eval: mean = running_mean, var = running_var.
  const float* mean = nullptr;
  const float* invstd = nullptr;
  const float* var = nullptr;
  bool training = false;
  float eps = 1e-5f;
  void* dx = nullptr;  // each of dx, dgamma, dbeta may be null
  float* dgamma = nullptr;
  float* dbeta = nullptr;
};

namespace cpu {
void batchnorm_forward(const BatchNormForwardArgs& a, const Exec& exec);
void batchnorm_backward(const BatchNormBackwardArgs& a, const Exec& exec);
}  // namespace cpu
namespace cuda {
void batchnorm_forward(const BatchNormForwardArgs& a, const Exec& exec);
void batchnorm_backward(const BatchNormBackwardArgs& a, const Exec& exec);
}  // namespace cuda
namespace emu {
void batchnorm_forward(const BatchNormForwardArgs& a, const Exec& exec);
void batchnorm_backward(const BatchNormBackwardArgs& a, const Exec& exec);
}  // namespace emu

}  // namespace dlk
