// C ABI of the losses and the classification metrics: validate every argument, describe the call, dispatch.
//
// Class indices are range-checked here on the cpu and emu backends (their tensors are in host memory, so one scan
// costs little and keeps every output untouched on failure). The cuda backend does not copy targets back to check
// them; its kernels turn an out-of-range index into NaN instead of reading out of bounds (documented in dlk.h).
#include "loss/loss.h"

#include <dlk/dlk.h>

#include <cstring>

#include "capi/dispatch.h"
#include "capi/guard.h"
#include "capi/validate.h"
#include "metrics/metrics.h"

namespace dlk {
namespace {

int read_reduction(const Check& check, const dlk_reduction& r, const char* name) {
  const int v = enum_value(r);
  if (v < DLK_REDUCTION_NONE || v > DLK_REDUCTION_SUM)
    check.fail(DLK_ERROR_INVALID_ARGUMENT, name, " is ", v, ", expected a dlk_reduction (0 none, 1 mean, 2 sum)");
  return v;
}

void read_ce_params(const Check& check, const dlk_cross_entropy_params* params, dlk_cross_entropy_params* out) {
  dlk_cross_entropy_params_init(out);
  if (!params) return;
  check.params_size(params->struct_size, offsetof(dlk_cross_entropy_params, label_smoothing) + sizeof(float), "params");
  std::memcpy(out, params, params->struct_size < sizeof(*out) ? params->struct_size : sizeof(*out));
  read_reduction(check, out->reduction, "params->reduction");
  check.finite(out->label_smoothing, "params->label_smoothing");
  if (out->label_smoothing < 0.0f || out->label_smoothing > 1.0f)
    check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->label_smoothing is ", out->label_smoothing,
               ", expected a value in [0, 1]");
}

void read_pointwise_params(const Check& check, const dlk_elementwise_loss_params* params,
                           dlk_elementwise_loss_params* out) {
  dlk_elementwise_loss_params_init(out);
  if (!params) return;
  check.params_size(params->struct_size, offsetof(dlk_elementwise_loss_params, reduction) + sizeof(int), "params");
  std::memcpy(out, params, params->struct_size < sizeof(*out) ? params->struct_size : sizeof(*out));
  read_reduction(check, out->reduction, "params->reduction");
}

// The reduced loss (or its gradient): float32 contiguous, `rows_shape` of `n` elements for none, one element else.
void check_loss_tensor(const Check& check, const DLTensor* t, const char* name, int reduction, const DLTensor* like,
                       int like_ndim) {
  check.contiguous(t, name);
  check.dtype_in(t, name, {DType::F32});
  if (reduction == DLK_REDUCTION_NONE) {
    check.shape_is(t, name, like->shape, like_ndim, "the per-element loss shape (reduction none)");
  } else if (numel(t) != 1) {
    check.fail(DLK_ERROR_SHAPE, name, " has shape ", shape_string(t),
               ", expected one element (shape [] or [1]) for reduction mean or sum");
  }
}

// Class indices in [0, cols) or == ignore_index, checked on host-memory backends.
void check_indices(const Check& check, const Exec& exec, const DLTensor* target, DType tt, std::int64_t rows,
                   std::int64_t cols, bool has_ignore, std::int64_t ignore_index, const char* name) {
  if (exec.backend == Backend::Cuda) return;
  const void* p = data_of(target);
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t t =
        tt == DType::I64 ? static_cast<const std::int64_t*>(p)[r] : static_cast<const std::int32_t*>(p)[r];
    if (has_ignore && t == ignore_index) continue;
    if (t < 0 || t >= cols)
      check.fail(DLK_ERROR_INVALID_ARGUMENT, name, "[", r, "] is ", t, ", expected a class index in [0, ", cols, ")",
                 has_ignore ? " or ignore_index " : "", has_ignore ? std::to_string(ignore_index) : "");
  }
}

// logits/input [N, C] plus class-index target [N]; returns the target dtype.
DType check_class_target(const Check& check, const DLTensor* input, const char* in_name, const DLTensor* target) {
  DType tt = check.contiguous(target, "target", 1, 1);
  check.dtype_in(target, "target", {DType::I32, DType::I64});
  check.shape_is(target, "target", input->shape, 1, (std::string("one class index per row of ") + in_name).c_str());
  return tt;
}

void cross_entropy_call(const Check& check, const Exec& exec, const dlk_cross_entropy_params* params,
                        const DLTensor* logits, const DLTensor* target, DLTensor* loss, DLTensor* dlogits,
                        const DLTensor* dloss, bool backward) {
  dlk_cross_entropy_params p;
  read_ce_params(check, params, &p);
  const int reduction = enum_value(p.reduction);
  CrossEntropyArgs a;
  a.dtype = check.contiguous(logits, "logits", 2, 2);
  check.dtype_in(logits, "logits", {DType::F32, DType::F16, DType::BF16});
  a.rows = logits->shape[0];
  a.cols = logits->shape[1];
  if (a.cols == 0 && a.rows > 0)
    check.fail(DLK_ERROR_SHAPE, "logits has shape ", shape_string(logits), ", expected C >= 1 classes");
  const DType tt = check.tensor(target, "target");
  if (tt == DType::I32 || tt == DType::I64) {
    check_class_target(check, logits, "logits", target);
  } else if (is_float(tt)) {
    check.contiguous(target, "target");
    check.same_dtype(logits, "logits", target, "target");
    check.same_shape(logits, "logits", target, "target (class probabilities)");
    a.prob_target = true;
  } else {
    check.fail(DLK_ERROR_DTYPE, "target has dtype ", dtype_name(tt),
               ", expected int32/int64 class indices or class probabilities of logits' dtype");
  }
  a.target_dtype = tt;
  if (backward) {
    if (!dloss) check.fail(DLK_ERROR_INVALID_ARGUMENT, "dloss is NULL");
    if (!dlogits) check.fail(DLK_ERROR_INVALID_ARGUMENT, "dlogits is NULL");
  }
  if (!loss && !dlogits) check.fail(DLK_ERROR_INVALID_ARGUMENT, "loss and dlogits are both NULL: nothing to compute");
  if (loss) check_loss_tensor(check, loss, "loss", reduction, logits, 1);
  if (dloss) check_loss_tensor(check, dloss, "dloss", reduction, logits, 1);
  if (dlogits) {
    check.contiguous(dlogits, "dlogits");
    check.same_dtype(logits, "logits", dlogits, "dlogits");
    check.same_shape(logits, "logits", dlogits, "dlogits");
    check.no_partial_overlap(dlogits, "dlogits", logits, "logits");
    check.no_partial_overlap(dlogits, "dlogits", target, "target");
    if (loss) check.no_partial_overlap(dlogits, "dlogits", loss, "loss");
  }
  if (!a.prob_target) check_indices(check, exec, target, tt, a.rows, a.cols, true, p.ignore_index, "target");
  a.logits = data_of(logits);
  a.target = data_of(target);
  a.loss = loss ? static_cast<float*>(data_of(loss)) : nullptr;
  a.dlogits = dlogits ? data_of(dlogits) : nullptr;
  a.dloss = dloss ? static_cast<const float*>(data_of(dloss)) : nullptr;
  a.reduction = reduction;
  a.ignore_index = p.ignore_index;
  a.label_smoothing = p.label_smoothing;
  DLK_DISPATCH(cross_entropy, a, exec);
}

void nll_call(const Check& check, const Exec& exec, const dlk_cross_entropy_params* params, const DLTensor* input,
              const DLTensor* target, const DLTensor* weight, DLTensor* loss, const DLTensor* dloss, DLTensor* dinput) {
  dlk_cross_entropy_params p;
  read_ce_params(check, params, &p);
  if (p.label_smoothing != 0.0f)
    check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->label_smoothing is ", p.label_smoothing,
               ", expected 0 (nll_loss has no label smoothing)");
  const int reduction = enum_value(p.reduction);
  NllArgs a;
  a.dtype = check.contiguous(input, "input", 2, 2);
  check.dtype_in(input, "input", {DType::F32, DType::F16, DType::BF16});
  a.rows = input->shape[0];
  a.cols = input->shape[1];
  if (a.cols == 0 && a.rows > 0)
    check.fail(DLK_ERROR_SHAPE, "input has shape ", shape_string(input), ", expected C >= 1 classes");
  a.target_dtype = check_class_target(check, input, "input", target);
  if (weight) {
    check.contiguous(weight, "weight", 1, 1);
    check.same_dtype(input, "input", weight, "weight");
    check.shape_is(weight, "weight", input->shape + 1, 1, "one weight per class");
  }
  if (loss) check_loss_tensor(check, loss, "loss", reduction, input, 1);
  if (dinput) {
    if (!dloss) check.fail(DLK_ERROR_INVALID_ARGUMENT, "dloss is NULL");
    check_loss_tensor(check, dloss, "dloss", reduction, input, 1);
    check.contiguous(dinput, "dinput");
    check.same_dtype(input, "input", dinput, "dinput");
    check.same_shape(input, "input", dinput, "dinput");
    check.no_partial_overlap(dinput, "dinput", input, "input");
  }
  check_indices(check, exec, target, a.target_dtype, a.rows, a.cols, true, p.ignore_index, "target");
  a.input = data_of(input);
  a.target = data_of(target);
  a.weight = weight ? data_of(weight) : nullptr;
  a.loss = loss ? static_cast<float*>(data_of(loss)) : nullptr;
  a.dinput = dinput ? data_of(dinput) : nullptr;
  a.dloss = dloss ? static_cast<const float*>(data_of(dloss)) : nullptr;
  a.reduction = reduction;
  a.ignore_index = p.ignore_index;
  DLK_DISPATCH(nll_loss, a, exec);
}

// `w` broadcasts to `x` by repetition: its shape (leading 1s dropped) is a trailing part of x's shape.
std::int64_t repeat_count(const Check& check, const DLTensor* w, const char* name, const DLTensor* x) {
  int first = 0;
  while (first < w->ndim && w->shape[first] == 1) ++first;
  const int rest = w->ndim - first;
  bool ok = rest <= x->ndim;
  for (int d = 0; ok && d < rest; ++d) ok = w->shape[first + d] == x->shape[x->ndim - rest + d];
  if (!ok)
    check.fail(DLK_ERROR_SHAPE, name, " shape ", shape_string(w), " is not a trailing part of input shape ",
               shape_string(x), " (this op repeats it over the leading dims)");
  const std::int64_t n = numel(w);
  return n < 1 ? 1 : n;
}

void pointwise_call(const Check& check, const Exec& exec, PointwiseLoss kind, const dlk_elementwise_loss_params* params,
                    const DLTensor* input, const DLTensor* target, const DLTensor* weight, const DLTensor* pos_weight,
                    DLTensor* loss, const DLTensor* dloss, DLTensor* dinput) {
  dlk_elementwise_loss_params p;
  read_pointwise_params(check, params, &p);
  const int reduction = enum_value(p.reduction);
  PointwiseLossArgs a;
  a.kind = kind;
  a.dtype = check.contiguous(input, "input");
  check.dtype_in(input, "input", {DType::F32, DType::F16, DType::BF16});
  check.contiguous(target, "target");
  check.same_dtype(input, "input", target, "target");
  check.same_shape(input, "input", target, "target");
  a.n = numel(input);
  if (weight) {
    check.contiguous(weight, "weight");
    check.same_dtype(input, "input", weight, "weight");
    a.weight_n = repeat_count(check, weight, "weight", input);
  }
  if (pos_weight) {
    check.contiguous(pos_weight, "pos_weight");
    check.same_dtype(input, "input", pos_weight, "pos_weight");
    const std::int64_t n = numel(pos_weight), last = input->ndim ? input->shape[input->ndim - 1] : 1;
    if (n != 1 && !(pos_weight->ndim >= 1 && pos_weight->shape[pos_weight->ndim - 1] == last && n == last))
      check.fail(DLK_ERROR_SHAPE, "pos_weight shape ", shape_string(pos_weight),
                 " must have one element or input's last dim (", last, ") elements along its last dim");
    a.pos_weight_n = n < 1 ? 1 : n;
  }
  if (loss) check_loss_tensor(check, loss, "loss", reduction, input, input->ndim);
  if (dinput) {
    if (!dloss) check.fail(DLK_ERROR_INVALID_ARGUMENT, "dloss is NULL");
    check_loss_tensor(check, dloss, "dloss", reduction, input, input->ndim);
    check.contiguous(dinput, "dinput");
    check.same_dtype(input, "input", dinput, "dinput");
    check.same_shape(input, "input", dinput, "dinput");
  }
  a.input = data_of(input);
  a.target = data_of(target);
  a.weight = weight ? data_of(weight) : nullptr;
  a.pos_weight = pos_weight ? data_of(pos_weight) : nullptr;
  a.loss = loss ? static_cast<float*>(data_of(loss)) : nullptr;
  a.dinput = dinput ? data_of(dinput) : nullptr;
  a.dloss = dloss ? static_cast<const float*>(data_of(dloss)) : nullptr;
  a.reduction = reduction;
  DLK_DISPATCH(pointwise_loss, a, exec);
}

// y_true, y_pred: int32/int64 [N], same length.
void check_labels(const Check& check, const DLTensor* y_true, const DLTensor* y_pred, LabelPairArgs* a) {
  a->true_dtype = check.contiguous(y_true, "y_true", 1, 1);
  check.dtype_in(y_true, "y_true", {DType::I32, DType::I64});
  a->pred_dtype = check.contiguous(y_pred, "y_pred", 1, 1);
  check.dtype_in(y_pred, "y_pred", {DType::I32, DType::I64});
  check.shape_is(y_pred, "y_pred", y_true->shape, 1, "one prediction per entry of y_true");
  a->n = y_true->shape[0];
  a->y_true = data_of(y_true);
  a->y_pred = data_of(y_pred);
}

}  // namespace
}  // namespace dlk

extern "C" {

DLK_API dlk_status dlk_cross_entropy_params_init(dlk_cross_entropy_params* params) {
  return dlk::guard("dlk_cross_entropy_params_init", [&] {
    if (!params) dlk::fail(DLK_ERROR_INVALID_ARGUMENT, "dlk_cross_entropy_params_init: params is NULL");
    std::memset(params, 0, sizeof(*params));
    params->struct_size = sizeof(*params);
    params->reduction = DLK_REDUCTION_MEAN;
    params->ignore_index = -100;
    params->label_smoothing = 0.0f;
  });
}

DLK_API dlk_status dlk_elementwise_loss_params_init(dlk_elementwise_loss_params* params) {
  return dlk::guard("dlk_elementwise_loss_params_init", [&] {
    if (!params) dlk::fail(DLK_ERROR_INVALID_ARGUMENT, "dlk_elementwise_loss_params_init: params is NULL");
    std::memset(params, 0, sizeof(*params));
    params->struct_size = sizeof(*params);
    params->reduction = DLK_REDUCTION_MEAN;
  });
}

DLK_API dlk_status dlk_cross_entropy_forward(dlk_context* context, const dlk_cross_entropy_params* params,
                                             const DLTensor* logits, const DLTensor* target, DLTensor* loss,
                                             DLTensor* dlogits, const DLTensor* dloss) {
  using namespace dlk;
  return with_context("cross_entropy_forward", context, [&](const Exec& exec) {
    Check check("cross_entropy_forward", context);
    cross_entropy_call(check, exec, params, logits, target, loss, dlogits, dloss, false);
  });
}

DLK_API dlk_status dlk_cross_entropy_backward(dlk_context* context, const dlk_cross_entropy_params* params,
                                              const DLTensor* logits, const DLTensor* target, const DLTensor* dloss,
                                              DLTensor* dlogits) {
  using namespace dlk;
  return with_context("cross_entropy_backward", context, [&](const Exec& exec) {
    Check check("cross_entropy_backward", context);
    cross_entropy_call(check, exec, params, logits, target, nullptr, dlogits, dloss, true);
  });
}

DLK_API dlk_status dlk_nll_loss_forward(dlk_context* context, const dlk_cross_entropy_params* params,
                                        const DLTensor* input, const DLTensor* target, const DLTensor* weight,
                                        DLTensor* loss) {
  using namespace dlk;
  return with_context("nll_loss_forward", context, [&](const Exec& exec) {
    Check check("nll_loss_forward", context);
    if (!loss) check.fail(DLK_ERROR_INVALID_ARGUMENT, "loss is NULL");
    nll_call(check, exec, params, input, target, weight, loss, nullptr, nullptr);
  });
}

DLK_API dlk_status dlk_nll_loss_backward(dlk_context* context, const dlk_cross_entropy_params* params,
                                         const DLTensor* input, const DLTensor* target, const DLTensor* weight,
                                         const DLTensor* dloss, DLTensor* dinput) {
  using namespace dlk;
  return with_context("nll_loss_backward", context, [&](const Exec& exec) {
    Check check("nll_loss_backward", context);
    if (!dinput) check.fail(DLK_ERROR_INVALID_ARGUMENT, "dinput is NULL");
    nll_call(check, exec, params, input, target, weight, nullptr, dloss, dinput);
  });
}

DLK_API dlk_status dlk_bce_with_logits_forward(dlk_context* context, const dlk_elementwise_loss_params* params,
                                               const DLTensor* input, const DLTensor* target, const DLTensor* weight,
                                               const DLTensor* pos_weight, DLTensor* loss) {
  using namespace dlk;
  return with_context("bce_with_logits_forward", context, [&](const Exec& exec) {
    Check check("bce_with_logits_forward", context);
    if (!loss) check.fail(DLK_ERROR_INVALID_ARGUMENT, "loss is NULL");
    pointwise_call(check, exec, PointwiseLoss::Bce, params, input, target, weight, pos_weight, loss, nullptr, nullptr);
  });
}

DLK_API dlk_status dlk_bce_with_logits_backward(dlk_context* context, const dlk_elementwise_loss_params* params,
                                                const DLTensor* input, const DLTensor* target, const DLTensor* weight,
                                                const DLTensor* pos_weight, const DLTensor* dloss, DLTensor* dinput) {
  using namespace dlk;
  return with_context("bce_with_logits_backward", context, [&](const Exec& exec) {
    Check check("bce_with_logits_backward", context);
    if (!dinput) check.fail(DLK_ERROR_INVALID_ARGUMENT, "dinput is NULL");
    pointwise_call(check, exec, PointwiseLoss::Bce, params, input, target, weight, pos_weight, nullptr, dloss, dinput);
  });
}

DLK_API dlk_status dlk_mse_loss_forward(dlk_context* context, const dlk_elementwise_loss_params* params,
                                        const DLTensor* input, const DLTensor* target, DLTensor* loss) {
  using namespace dlk;
  return with_context("mse_loss_forward", context, [&](const Exec& exec) {
    Check check("mse_loss_forward", context);
    if (!loss) check.fail(DLK_ERROR_INVALID_ARGUMENT, "loss is NULL");
    pointwise_call(check, exec, PointwiseLoss::Mse, params, input, target, nullptr, nullptr, loss, nullptr, nullptr);
  });
}

DLK_API dlk_status dlk_mse_loss_backward(dlk_context* context, const dlk_elementwise_loss_params* params,
                                         const DLTensor* input, const DLTensor* target, const DLTensor* dloss,
                                         DLTensor* dinput) {
  using namespace dlk;
  return with_context("mse_loss_backward", context, [&](const Exec& exec) {
    Check check("mse_loss_backward", context);
    if (!dinput) check.fail(DLK_ERROR_INVALID_ARGUMENT, "dinput is NULL");
    pointwise_call(check, exec, PointwiseLoss::Mse, params, input, target, nullptr, nullptr, nullptr, dloss, dinput);
  });
}

DLK_API dlk_status dlk_accuracy(dlk_context* context, const DLTensor* y_true, const DLTensor* y_pred,
                                DLTensor* accuracy) {
  using namespace dlk;
  return with_context("accuracy", context, [&](const Exec& exec) {
    Check check("accuracy", context);
    LabelPairArgs a;
    check_labels(check, y_true, y_pred, &a);
    check.contiguous(accuracy, "accuracy");
    check.dtype_in(accuracy, "accuracy", {DType::F32});
    if (numel(accuracy) != 1)
      check.fail(DLK_ERROR_SHAPE, "accuracy has shape ", shape_string(accuracy), ", expected one element");
    a.accuracy = static_cast<float*>(data_of(accuracy));
    DLK_DISPATCH(accuracy, a, exec);
  });
}

DLK_API dlk_status dlk_confusion_matrix(dlk_context* context, const DLTensor* y_true, const DLTensor* y_pred,
                                        int64_t num_classes, DLTensor* matrix) {
  using namespace dlk;
  return with_context("confusion_matrix", context, [&](const Exec& exec) {
    Check check("confusion_matrix", context);
    LabelPairArgs a;
    check_labels(check, y_true, y_pred, &a);
    if (num_classes < 1 || num_classes > (std::int64_t{1} << 31))
      check.fail(DLK_ERROR_INVALID_ARGUMENT, "num_classes is ", num_classes, ", expected 1 to 2^31");
    check.contiguous(matrix, "matrix", 2, 2);
    check.dtype_in(matrix, "matrix", {DType::I64});
    const std::int64_t kk[2] = {num_classes, num_classes};
    check.shape_is(matrix, "matrix", kk, 2, "[num_classes, num_classes]");
    check_indices(check, exec, y_true, a.true_dtype, a.n, num_classes, false, 0, "y_true");
    check_indices(check, exec, y_pred, a.pred_dtype, a.n, num_classes, false, 0, "y_pred");
    a.num_classes = num_classes;
    a.matrix = static_cast<std::int64_t*>(data_of(matrix));
    DLK_DISPATCH(confusion_matrix, a, exec);
  });
}

DLK_API dlk_status dlk_precision_recall_f1(dlk_context* context, const DLTensor* matrix, dlk_metric_average average,
                                           DLTensor* precision, DLTensor* recall, DLTensor* f1) {
  using namespace dlk;
  return with_context("precision_recall_f1", context, [&](const Exec& exec) {
    Check check("precision_recall_f1", context);
    PrfArgs a;
    check.contiguous(matrix, "matrix", 2, 2);
    check.dtype_in(matrix, "matrix", {DType::I64});
    a.k = matrix->shape[0];
    if (a.k < 1 || matrix->shape[1] != a.k)
      check.fail(DLK_ERROR_SHAPE, "matrix has shape ", shape_string(matrix), ", expected a square [K, K], K >= 1");
    a.average = enum_value(average);
    if (a.average < DLK_AVERAGE_NONE || a.average > DLK_AVERAGE_WEIGHTED)
      check.fail(DLK_ERROR_INVALID_ARGUMENT, "average is ", a.average,
                 ", expected a dlk_metric_average (0 none, 1 micro, 2 macro, 3 weighted)");
    const DLTensor* outs[3] = {precision, recall, f1};
    const char* names[3] = {"precision", "recall", "f1"};
    float* ptrs[3] = {nullptr, nullptr, nullptr};
    for (int i = 0; i < 3; ++i) {
      if (!outs[i]) continue;
      check.contiguous(outs[i], names[i]);
      check.dtype_in(outs[i], names[i], {DType::F32});
      if (a.average == DLK_AVERAGE_NONE) {
        check.shape_is(outs[i], names[i], matrix->shape, 1, "[K] per class (average none)");
      } else if (numel(outs[i]) != 1) {
        check.fail(DLK_ERROR_SHAPE, names[i], " has shape ", shape_string(outs[i]),
                   ", expected one element for an averaged metric");
      }
      ptrs[i] = static_cast<float*>(data_of(outs[i]));
    }
    a.matrix = static_cast<const std::int64_t*>(data_of(matrix));
    a.precision = ptrs[0];
    a.recall = ptrs[1];
    a.f1 = ptrs[2];
    DLK_DISPATCH(precision_recall_f1, a, exec);
  });
}

}  // extern "C"
