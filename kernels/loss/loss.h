// Internal interface of the losses. capi/loss.cpp validates and fills these structs; the cpu reference, cuda and emu
// backends implement the same functions.
//
// Semantics shared by every backend (PyTorch's):
//   cross-entropy, row r of logits z [rows, cols], smoothing s, C = cols:
//     class target t: q_j = (1 - s) [j == t] + s / C; a row with t == ignore_index has loss 0, gradient 0.
//     prob target p:  q_j = (1 - s) p_j + s / C.
//     loss_r = lse(z) * sum(q) - sum(q_j z_j);  dz_j = (softmax(z)_j * sum(q) - q_j) * g_r,
//     g_r = dloss[r] (none), dloss[0] (sum), dloss[0] / valid (mean; valid = non-ignored rows, or rows).
//   A class target outside [0, C) (and not ignore_index) gives loss NaN and gradient NaN (cpu/emu reject it before).
//   nll: loss_r = -w[t] z[r, t]; mean divides by sum of w[t] over non-ignored rows.
//   bce / mse: elementwise, see dlk.h; mean divides by the element count.
#pragma once

#include <dlk/dlk.h>

#include <cstdint>

#include "runtime/exec.h"
#include "runtime/tensor.h"

namespace dlk {

struct CrossEntropyArgs {
  DType dtype = DType::F32;         // of logits (and dlogits, and probability targets)
  DType target_dtype = DType::I64;  // I32/I64 class indices, or == dtype for probabilities
  bool prob_target = false;
  std::int64_t rows = 0, cols = 0;
  const void* logits = nullptr;
  const void* target = nullptr;
  float* loss = nullptr;         // [rows] for none, one element otherwise; may be null
  void* dlogits = nullptr;       // may be null
  const float* dloss = nullptr;  // null: 1
  int reduction = DLK_REDUCTION_MEAN;
  std::int64_t ignore_index = -100;
  float label_smoothing = 0.0f;
};

struct NllArgs {
  DType dtype = DType::F32;  // of input, weight, dinput
  DType target_dtype = DType::I64;
  std::int64_t rows = 0, cols = 0;
  const void* input = nullptr;
  const void* target = nullptr;
  const void* weight = nullptr;  // [cols] or null
  float* loss = nullptr;         // forward
  void* dinput = nullptr;        // backward
  const float* dloss = nullptr;  // backward (required there)
  int reduction = DLK_REDUCTION_MEAN;
  std::int64_t ignore_index = -100;
};

enum class PointwiseLoss : int { Bce = 0, Mse = 1 };

struct PointwiseLossArgs {
  PointwiseLoss kind = PointwiseLoss::Mse;
  DType dtype = DType::F32;  // of input, target, weight, pos_weight, dinput
  std::int64_t n = 0;
  const void* input = nullptr;
  const void* target = nullptr;
  const void* weight = nullptr;  // element i uses weight[i % weight_n]
  std::int64_t weight_n = 1;
  const void* pos_weight = nullptr;  // element i uses pos_weight[i % pos_weight_n]
  std::int64_t pos_weight_n = 1;
  float* loss = nullptr;         // forward
  void* dinput = nullptr;        // backward
  const float* dloss = nullptr;  // backward (required there)
  int reduction = DLK_REDUCTION_MEAN;
};

namespace cpu {
void cross_entropy(const CrossEntropyArgs& a, const Exec& exec);
void nll_loss(const NllArgs& a, const Exec& exec);
void pointwise_loss(const PointwiseLossArgs& a, const Exec& exec);
}  // namespace cpu
namespace cuda {
void cross_entropy(const CrossEntropyArgs& a, const Exec& exec);
void nll_loss(const NllArgs& a, const Exec& exec);
void pointwise_loss(const PointwiseLossArgs& a, const Exec& exec);
}  // namespace cuda
namespace emu {
void cross_entropy(const CrossEntropyArgs& a, const Exec& exec);
void nll_loss(const NllArgs& a, const Exec& exec);
void pointwise_loss(const PointwiseLossArgs& a, const Exec& exec);
}  // namespace emu

}  // namespace dlk
