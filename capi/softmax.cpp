// C ABI of the fused masked softmax: validate every argument, describe the call, dispatch.
#include <dlk/dlk.h>

#include <cstring>

#include "capi/dispatch.h"
#include "capi/guard.h"
#include "capi/validate.h"
#include "softmax/softmax.h"

namespace dlk {
namespace {

void read_params(const Check& check, const dlk_softmax_params* params, dlk_softmax_params* out) {
  dlk_softmax_params_init(out);
  if (!params) return;
  check.params_size(params->struct_size, offsetof(dlk_softmax_params, lengths) + sizeof(void*), "params");
  std::memcpy(out, params, params->struct_size < sizeof(*out) ? params->struct_size : sizeof(*out));
  check.finite(out->scale, "params->scale");
}

SoftmaxMask build_mask(const Check& check, const dlk_softmax_params& p, const DLTensor* x) {
  SoftmaxMask m;
  const int kind = enum_value(p.mask_kind);
  const std::int64_t cols = x->shape[x->ndim - 1];
  switch (kind) {
    case DLK_MASK_NONE: break;
    case DLK_MASK_CAUSAL:
    case DLK_MASK_CAUSAL_BOTTOM_RIGHT: {
      if (x->ndim < 2)
        check.fail(DLK_ERROR_SHAPE, "a causal mask needs x of rank >= 2 (rows, cols), got shape ", shape_string(x));
      m.rows_per_matrix = x->shape[x->ndim - 2];
      m.causal_offset = p.mask_kind == DLK_MASK_CAUSAL ? 0 : cols - m.rows_per_matrix;
      if (m.rows_per_matrix == 0) m.rows_per_matrix = 1;  // empty tensor: never indexed
      break;
    }
    case DLK_MASK_KEY_PADDING: {
      if (x->ndim < 2)
        check.fail(DLK_ERROR_SHAPE, "a key-padding mask needs x of rank >= 2 (batch, ..., cols), got shape ",
                   shape_string(x));
      DType lt = check.contiguous(p.lengths, "params->lengths", 1, 1);
      check.dtype_in(p.lengths, "params->lengths", {DType::I32, DType::I64});
      const std::int64_t batch = x->shape[0];
      check.shape_is(p.lengths, "params->lengths", &batch, 1, "one length per entry of x's dim 0");
      m.lengths = data_of(p.lengths);
      m.lengths_dtype = lt;
      std::int64_t rows = numel(x) / (cols == 0 ? 1 : cols);
      m.rows_per_batch = batch == 0 ? 1 : rows / batch;
      if (m.rows_per_batch == 0) m.rows_per_batch = 1;
      break;
    }
    case DLK_MASK_TENSOR: {
      const DLTensor* mk = p.mask;
      DType mt = check.tensor(mk, "params->mask");
      check.dtype_in(mk, "params->mask", {DType::I8, DType::U8, DType::F32, DType::F16, DType::BF16});
      if (mk->ndim > x->ndim)
        check.fail(DLK_ERROR_SHAPE, "params->mask shape ", shape_string(mk), " does not broadcast to x shape ",
                   shape_string(x), " (mask has more dims)");
      std::int64_t mstrides[kMaxDims];
      strides_of(mk, mstrides);
      // Align from the right; a mask dim of 1 (or a missing leading dim) broadcasts with stride 0.
      std::int64_t full[kMaxDims] = {};
      const int lead = x->ndim - mk->ndim;
      for (int d = 0; d < x->ndim; ++d) {
        if (d < lead) continue;
        std::int64_t ms = mk->shape[d - lead], xs = x->shape[d];
        if (ms == xs) {
          full[d] = mstrides[d - lead];
        } else if (ms == 1) {
          full[d] = 0;
        } else {
          check.fail(DLK_ERROR_SHAPE, "params->mask shape ", shape_string(mk), " does not broadcast to x shape ",
                     shape_string(x), " (dim ", d, ": ", ms, " vs ", xs, ")");
        }
      }
      m.mask = data_of(mk);
      m.mask_dtype = mt;
      m.row_ndim = x->ndim - 1;
      for (int d = 0; d < m.row_ndim; ++d) {
        m.row_sizes[d] = x->shape[d] == 0 ? 1 : x->shape[d];
        m.row_strides[d] = full[d];
      }
      m.col_stride = full[x->ndim - 1];
      break;
    }
    default:
      check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->mask_kind is ", kind,
                 ", expected a dlk_mask_kind (0 to 4)");
  }
  m.kind = static_cast<dlk_mask_kind>(kind);
  return m;
}

}  // namespace
}  // namespace dlk

extern "C" {

DLK_API dlk_status dlk_softmax_params_init(dlk_softmax_params* params) {
  return dlk::guard("dlk_softmax_params_init", [&] {
    if (!params) dlk::fail(DLK_ERROR_INVALID_ARGUMENT, "dlk_softmax_params_init: params is NULL");
    std::memset(params, 0, sizeof(*params));
    params->struct_size = sizeof(*params);
    params->scale = 1.0f;
    params->mask_kind = DLK_MASK_NONE;
  });
}

DLK_API dlk_status dlk_softmax_forward(dlk_context* context, const dlk_softmax_params* params, const DLTensor* x,
                                       DLTensor* y) {
  using namespace dlk;
  return with_context("softmax_forward", context, [&](const Exec& exec) {
    Check check("softmax_forward", context);
    dlk_softmax_params p;
    read_params(check, params, &p);
    DType dt = check.contiguous(x, "x", 1);
    check.dtype_in(x, "x", {DType::F32, DType::F16, DType::BF16});
    check.contiguous(y, "y", 1);
    check.same_dtype(x, "x", y, "y");
    check.same_shape(x, "x", y, "y");
    check.no_partial_overlap(y, "y", x, "x");
    SoftmaxForwardArgs a;
    a.mask = build_mask(check, p, x);
    a.dtype = dt;
    a.cols = x->shape[x->ndim - 1];
    a.rows = a.cols == 0 ? 0 : numel(x) / a.cols;
    a.x = data_of(x);
    a.y = data_of(y);
    a.scale = p.scale;
    if (a.rows == 0 || a.cols == 0) return;
    DLK_DISPATCH(softmax_forward, a, exec);
  });
}

DLK_API dlk_status dlk_softmax_backward(dlk_context* context, const dlk_softmax_params* params, const DLTensor* y,
                                        const DLTensor* dy, DLTensor* dx) {
  using namespace dlk;
  return with_context("softmax_backward", context, [&](const Exec& exec) {
    Check check("softmax_backward", context);
    dlk_softmax_params p;
    read_params(check, params, &p);
    DType dt = check.contiguous(y, "y", 1);
    check.dtype_in(y, "y", {DType::F32, DType::F16, DType::BF16});
    check.contiguous(dy, "dy", 1);
    check.contiguous(dx, "dx", 1);
    check.same_dtype(y, "y", dy, "dy");
    check.same_dtype(y, "y", dx, "dx");
    check.same_shape(y, "y", dy, "dy");
    check.same_shape(y, "y", dx, "dx");
    check.no_partial_overlap(dx, "dx", dy, "dy");
    check.no_partial_overlap(dx, "dx", y, "y");
    SoftmaxBackwardArgs a;
    a.dtype = dt;
    a.cols = y->shape[y->ndim - 1];
    a.rows = a.cols == 0 ? 0 : numel(y) / a.cols;
    a.y = data_of(y);
    a.dy = data_of(dy);
    a.dx = data_of(dx);
    a.scale = p.scale;
    if (a.rows == 0 || a.cols == 0) return;
    DLK_DISPATCH(softmax_backward, a, exec);
  });
}

}  // extern "C"
