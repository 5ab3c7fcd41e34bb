// Internal interface of the classification metrics. capi/loss.cpp validates and fills these structs; the cpu
// reference, cuda and emu backends implement the same functions.
//
// Semantics (scikit-learn's, zero_division = 0): from the confusion matrix M [K, K] (rows = true class),
//   tp_k = M[k,k], fp_k = column sum - tp_k, fn_k = row sum - tp_k, support_k = row sum;
//   a class is "present" when its row or column has a nonzero entry (sklearn's default labels);
//   precision_k = tp / (tp + fp), recall_k = tp / (tp + fn), f1_k = 2 tp / (2 tp + fp + fn), 0 where the denominator
//   is 0; micro uses the sums of tp, fp, fn over present classes; macro the plain mean over present classes;
//   weighted the mean weighted by support (0 when the total support is 0).
#pragma once

#include <dlk/dlk.h>

#include <cstdint>

#include "runtime/exec.h"
#include "runtime/tensor.h"

namespace dlk {

struct LabelPairArgs {
  DType true_dtype = DType::I64, pred_dtype = DType::I64;  // I32 / I64
  std::int64_t n = 0;
  const void* y_true = nullptr;
  const void* y_pred = nullptr;
  float* accuracy = nullptr;       // accuracy(): one element
  std::int64_t num_classes = 0;    // confusion_matrix()
  std::int64_t* matrix = nullptr;  // confusion_matrix(): [K, K]
};

struct PrfArgs {
  std::int64_t k = 0;
  const std::int64_t* matrix = nullptr;  // [k, k]
  int average = DLK_AVERAGE_NONE;
  float* precision = nullptr;  // [k] for none, else one element; each may be null
  float* recall = nullptr;
  float* f1 = nullptr;
};

namespace cpu {
void accuracy(const LabelPairArgs& a, const Exec& exec);
void confusion_matrix(const LabelPairArgs& a, const Exec& exec);
void precision_recall_f1(const PrfArgs& a, const Exec& exec);
}  // namespace cpu
namespace cuda {
void accuracy(const LabelPairArgs& a, const Exec& exec);
void confusion_matrix(const LabelPairArgs& a, const Exec& exec);
void precision_recall_f1(const PrfArgs& a, const Exec& exec);
}  // namespace cuda
namespace emu {
void accuracy(const LabelPairArgs& a, const Exec& exec);
void confusion_matrix(const LabelPairArgs& a, const Exec& exec);
void precision_recall_f1(const PrfArgs& a, const Exec& exec);
}  // namespace emu

}  // namespace dlk
