// C ABI of the pooling family (max / avg / adaptive-avg pool 2d, max unpool 2d, upsample 2d): validate every
// argument (PyTorch's checks and output-size formulas), describe the call, dispatch.
#include <dlk/dlk.h>

#include <cstring>
#include <string>

#include "capi/dispatch.h"
#include "capi/guard.h"
#include "capi/validate.h"
#include "pooling/pooling.h"

namespace dlk {
namespace {

const std::initializer_list<DType> kFloatTypes = {DType::F32, DType::F16, DType::BF16};

// A [N, C, H, W] or [C, H, W] float tensor, contiguous.
DType check_image(const Check& check, const DLTensor* t, const char* name) {
  DType dt = check.contiguous(t, name, 3, 4);
  check.dtype_in(t, name, kFloatTypes);
  return dt;
}

std::int64_t planes_of(const DLTensor* t) {
  std::int64_t p = 1;
  for (int d = 0; d < t->ndim - 2; ++d) p *= t->shape[d];
  return p;
}

// Plane geometry with `in` holding the (ih, iw) planes and `out` the (oh, ow) planes; window fields keep defaults.
PoolGeom plane_geometry(const DLTensor* in, const DLTensor* out) {
  PoolGeom g;
  g.planes = planes_of(in);
  g.ih = in->shape[in->ndim - 2];
  g.iw = in->shape[in->ndim - 1];
  g.oh = out->shape[out->ndim - 2];
  g.ow = out->shape[out->ndim - 1];
  return g;
}

// `b` has a's rank and leading (non-spatial) dims; its spatial dims are (h, w) unless h < 0 (any).
void check_pair(const Check& check, const DLTensor* a, const char* an, const DLTensor* b, const char* bn,
                std::int64_t h, std::int64_t w, const char* what) {
  bool ok = a->ndim == b->ndim;
  for (int d = 0; ok && d < a->ndim - 2; ++d) ok = a->shape[d] == b->shape[d];
  if (ok && h >= 0) ok = b->shape[b->ndim - 2] == h && b->shape[b->ndim - 1] == w;
  if (ok) return;
  std::string expected = "[";
  for (int d = 0; d < a->ndim - 2; ++d) expected += std::to_string(a->shape[d]) + ",";
  expected += h >= 0 ? std::to_string(h) + "," + std::to_string(w) + "]" : "H,W]";
  check.fail(DLK_ERROR_SHAPE, bn, " has shape ", shape_string(b), ", expected ", expected, " (", what, " of ", an,
             " ", shape_string(a), ")");
}

// Indices: int64, contiguous, the shape of `like`.
void check_indices(const Check& check, const DLTensor* idx, const char* name, const DLTensor* like,
                   const char* like_name) {
  check.contiguous(idx, name, 3, 4);
  check.dtype_in(idx, name, {DType::I64});
  check.same_shape(like, like_name, idx, name);
}

enum class PoolKind { Max, Avg };

// Reads and checks the window parameters (PyTorch's pool2d_shape_check) and fills the geometry for the input
// `in` ([.., H, W]); the output size comes from PyTorch's pooling_output_shape and must be >= 1.
PoolGeom pool_geometry(const Check& check, const dlk_pool2d_params* params, PoolKind kind, const DLTensor* in,
                       const char* in_name) {
  if (!params)
    check.fail(DLK_ERROR_INVALID_ARGUMENT, "params is NULL; the kernel size has no default (fill one with "
               "dlk_pool2d_params_init and set kernel_h/kernel_w)");
  check.params_size(params->struct_size, sizeof(dlk_pool2d_params), "params");
  dlk_pool2d_params p;
  std::memcpy(&p, params, sizeof(p));
  if (p.kernel_h <= 0 || p.kernel_w <= 0)
    check.fail(DLK_ERROR_INVALID_ARGUMENT, "kernel size should be greater than zero, but got kernel_h ", p.kernel_h,
               ", kernel_w ", p.kernel_w);
  if (p.stride_h < 0 || p.stride_w < 0)
    check.fail(DLK_ERROR_INVALID_ARGUMENT, "stride should be greater than zero (or 0 for the kernel size), but got "
               "stride_h ", p.stride_h, ", stride_w ", p.stride_w);
  if (p.stride_h == 0) p.stride_h = p.kernel_h;
  if (p.stride_w == 0) p.stride_w = p.kernel_w;
  if (p.pad_h < 0 || p.pad_w < 0)
    check.fail(DLK_ERROR_INVALID_ARGUMENT, "padding should be >= 0, but got pad_h ", p.pad_h, ", pad_w ", p.pad_w);
  if (kind == PoolKind::Max) {
    if (p.dilation_h <= 0 || p.dilation_w <= 0)
      check.fail(DLK_ERROR_INVALID_ARGUMENT, "dilation should be greater than zero, but got dilation_h ",
                 p.dilation_h, ", dilation_w ", p.dilation_w);
  } else {
    if (p.dilation_h != 1 || p.dilation_w != 1)
      check.fail(DLK_ERROR_INVALID_ARGUMENT, "avg pool has no dilation: params->dilation_h/dilation_w are ",
                 p.dilation_h, "/", p.dilation_w, ", expected 1");
    if (p.divisor_override < 0)
      check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->divisor_override is ", p.divisor_override,
                 ", expected > 0 (or 0 for none)");
  }
  if (p.pad_h > p.kernel_h / 2 || p.pad_w > p.kernel_w / 2)
    check.fail(DLK_ERROR_INVALID_ARGUMENT, "pad should be smaller than or equal to half of kernel size, but got "
               "pad_h = ", p.pad_h, ", pad_w = ", p.pad_w, ", kernel_h = ", p.kernel_h, ", kernel_w = ", p.kernel_w);
  PoolGeom g;
  g.planes = planes_of(in);
  g.ih = in->shape[in->ndim - 2];
  g.iw = in->shape[in->ndim - 1];
  g.kh = p.kernel_h;
  g.kw = p.kernel_w;
  g.sh = p.stride_h;
  g.sw = p.stride_w;
  g.ph = p.pad_h;
  g.pw = p.pad_w;
  g.dh = kind == PoolKind::Max ? p.dilation_h : 1;
  g.dw = kind == PoolKind::Max ? p.dilation_w : 1;
  g.count_include_pad = p.count_include_pad != 0;
  g.divisor_override = kind == PoolKind::Avg ? p.divisor_override : 0;
  g.oh = pool_output_size(g.ih, g.kh, g.ph, g.sh, g.dh, p.ceil_mode != 0);
  g.ow = pool_output_size(g.iw, g.kw, g.pw, g.sw, g.dw, p.ceil_mode != 0);
  if (g.oh < 1 || g.ow < 1)
    check.fail(DLK_ERROR_SHAPE, "given ", in_name, " size (", g.ih, "x", g.iw, ") with padding (", g.ph, ",", g.pw,
               "), kernel (", g.kh, ",", g.kw, "), dilation (", g.dh, ",", g.dw, ") and stride (", g.sh, ",", g.sw,
               "), the calculated output size (", g.oh, "x", g.ow, ") is too small: the kernel is larger than the "
               "padded input");
  return g;
}

}  // namespace
}  // namespace dlk

extern "C" {

DLK_API dlk_status dlk_pool2d_params_init(dlk_pool2d_params* params) {
  return dlk::guard("dlk_pool2d_params_init", [&] {
    if (!params) dlk::fail(DLK_ERROR_INVALID_ARGUMENT, "dlk_pool2d_params_init: params is NULL");
    std::memset(params, 0, sizeof(*params));
    params->struct_size = sizeof(*params);
    params->dilation_h = params->dilation_w = 1;
    params->count_include_pad = 1;
  });
}

DLK_API dlk_status dlk_max_pool2d_forward(dlk_context* context, const dlk_pool2d_params* params, const DLTensor* x,
                                          DLTensor* y, DLTensor* indices) {
  using namespace dlk;
  return with_context("max_pool2d_forward", context, [&](const Exec& exec) {
    Check check("max_pool2d_forward", context);
    DType dt = check_image(check, x, "x");
    PoolArgs a;
    a.g = pool_geometry(check, params, PoolKind::Max, x, "x");
    check.contiguous(y, "y", 3, 4);
    check.same_dtype(x, "x", y, "y");
    check_pair(check, x, "x", y, "y", a.g.oh, a.g.ow, "the pooled output size");
    check.no_partial_overlap(y, "y", x, "x");
    if (indices) {
      check_indices(check, indices, "indices", y, "y");
      check.no_partial_overlap(indices, "indices", x, "x");
      check.no_partial_overlap(indices, "indices", y, "y");
    }
    a.dtype = dt;
    a.in = data_of(x);
    a.out = data_of(y);
    a.out_indices = static_cast<std::int64_t*>(data_of(indices));
    if (a.g.planes == 0 || a.g.ih == 0 || a.g.iw == 0) return;
    DLK_DISPATCH(max_pool2d_forward, a, exec);
  });
}

DLK_API dlk_status dlk_max_pool2d_backward(dlk_context* context, const dlk_pool2d_params* params, const DLTensor* dy,
                                           const DLTensor* indices, DLTensor* dx) {
  using namespace dlk;
  return with_context("max_pool2d_backward", context, [&](const Exec& exec) {
    Check check("max_pool2d_backward", context);
    DType dt = check_image(check, dx, "dx");
    PoolArgs a;
    a.g = pool_geometry(check, params, PoolKind::Max, dx, "dx");
    check.contiguous(dy, "dy", 3, 4);
    check.same_dtype(dx, "dx", dy, "dy");
    check_pair(check, dx, "dx", dy, "dy", a.g.oh, a.g.ow, "the pooled output size");
    check_indices(check, indices, "indices", dy, "dy");
    check.no_partial_overlap(dx, "dx", dy, "dy");
    check.no_partial_overlap(dx, "dx", indices, "indices");
    a.dtype = dt;
    a.in = data_of(dy);
    a.out = data_of(dx);
    a.indices = static_cast<const std::int64_t*>(data_of(indices));
    if (a.g.planes == 0 || a.g.ih == 0 || a.g.iw == 0) return;
    DLK_DISPATCH(max_pool2d_backward, a, exec);
  });
}

DLK_API dlk_status dlk_avg_pool2d_forward(dlk_context* context, const dlk_pool2d_params* params, const DLTensor* x,
                                          DLTensor* y) {
  using namespace dlk;
  return with_context("avg_pool2d_forward", context, [&](const Exec& exec) {
    Check check("avg_pool2d_forward", context);
    DType dt = check_image(check, x, "x");
    PoolArgs a;
    a.g = pool_geometry(check, params, PoolKind::Avg, x, "x");
    check.contiguous(y, "y", 3, 4);
    check.same_dtype(x, "x", y, "y");
    check_pair(check, x, "x", y, "y", a.g.oh, a.g.ow, "the pooled output size");
    check.no_partial_overlap(y, "y", x, "x");
    a.dtype = dt;
    a.in = data_of(x);
    a.out = data_of(y);
    if (a.g.planes == 0 || a.g.ih == 0 || a.g.iw == 0) return;
    DLK_DISPATCH(avg_pool2d_forward, a, exec);
  });
}

DLK_API dlk_status dlk_avg_pool2d_backward(dlk_context* context, const dlk_pool2d_params* params, const DLTensor* dy,
                                           DLTensor* dx) {
  using namespace dlk;
  return with_context("avg_pool2d_backward", context, [&](const Exec& exec) {
    Check check("avg_pool2d_backward", context);
    DType dt = check_image(check, dx, "dx");
    PoolArgs a;
    a.g = pool_geometry(check, params, PoolKind::Avg, dx, "dx");
    check.contiguous(dy, "dy", 3, 4);
    check.same_dtype(dx, "dx", dy, "dy");
    check_pair(check, dx, "dx", dy, "dy", a.g.oh, a.g.ow, "the pooled output size");
    check.no_partial_overlap(dx, "dx", dy, "dy");
    a.dtype = dt;
    a.in = data_of(dy);
    a.out = data_of(dx);
    if (a.g.planes == 0 || a.g.ih == 0 || a.g.iw == 0) return;
    DLK_DISPATCH(avg_pool2d_backward, a, exec);
  });
}

DLK_API dlk_status dlk_adaptive_avg_pool2d_forward(dlk_context* context, const DLTensor* x, DLTensor* y) {
  using namespace dlk;
  return with_context("adaptive_avg_pool2d_forward", context, [&](const Exec& exec) {
    Check check("adaptive_avg_pool2d_forward", context);
    DType dt = check_image(check, x, "x");
    check.contiguous(y, "y", 3, 4);
    check.same_dtype(x, "x", y, "y");
    check_pair(check, x, "x", y, "y", -1, -1, "the leading dims");
    check.no_partial_overlap(y, "y", x, "x");
    PoolArgs a;
    a.g = plane_geometry(x, y);
    if (a.g.oh < 1 || a.g.ow < 1)
      check.fail(DLK_ERROR_SHAPE, "y has shape ", shape_string(y), ": the output size must be at least 1x1");
    if (a.g.planes > 0 && (a.g.ih < 1 || a.g.iw < 1))
      check.fail(DLK_ERROR_SHAPE, "x has shape ", shape_string(x), ": non-empty planes need H, W >= 1");
    a.dtype = dt;
    a.in = data_of(x);
    a.out = data_of(y);
    if (a.g.planes == 0) return;
    DLK_DISPATCH(adaptive_avg_pool2d_forward, a, exec);
  });
}

DLK_API dlk_status dlk_adaptive_avg_pool2d_backward(dlk_context* context, const DLTensor* dy, DLTensor* dx) {
  using namespace dlk;
  return with_context("adaptive_avg_pool2d_backward", context, [&](const Exec& exec) {
    Check check("adaptive_avg_pool2d_backward", context);
    DType dt = check_image(check, dx, "dx");
    check.contiguous(dy, "dy", 3, 4);
    check.same_dtype(dx, "dx", dy, "dy");
    check_pair(check, dx, "dx", dy, "dy", -1, -1, "the leading dims");
    check.no_partial_overlap(dx, "dx", dy, "dy");
    PoolArgs a;
    a.g = plane_geometry(dx, dy);
    if (a.g.oh < 1 || a.g.ow < 1)
      check.fail(DLK_ERROR_SHAPE, "dy has shape ", shape_string(dy), ": the output size must be at least 1x1");
    if (a.g.planes > 0 && (a.g.ih < 1 || a.g.iw < 1))
      check.fail(DLK_ERROR_SHAPE, "dx has shape ", shape_string(dx), ": non-empty planes need H, W >= 1");
    a.dtype = dt;
    a.in = data_of(dy);
    a.out = data_of(dx);
    if (a.g.planes == 0) return;
    DLK_DISPATCH(adaptive_avg_pool2d_backward, a, exec);
  });
}

DLK_API dlk_status dlk_max_unpool2d_forward(dlk_context* context, const DLTensor* x, const DLTensor* indices,
                                            DLTensor* y) {
  using namespace dlk;
  return with_context("max_unpool2d_forward", context, [&](const Exec& exec) {
    Check check("max_unpool2d_forward", context);
    DType dt = check_image(check, x, "x");
    check_indices(check, indices, "indices", x, "x");
    check.contiguous(y, "y", 3, 4);
    check.same_dtype(x, "x", y, "y");
    check_pair(check, x, "x", y, "y", -1, -1, "the leading dims");
    check.no_partial_overlap(y, "y", x, "x");
    check.no_partial_overlap(y, "y", indices, "indices");
    PoolArgs a;
    a.g = plane_geometry(x, y);
    a.dtype = dt;
    a.in = data_of(x);
    a.out = data_of(y);
    a.indices = static_cast<const std::int64_t*>(data_of(indices));
    if (a.g.planes == 0 || a.g.oh * a.g.ow == 0) return;
    DLK_DISPATCH(max_unpool2d_forward, a, exec);
  });
}

DLK_API dlk_status dlk_max_unpool2d_backward(dlk_context* context, const DLTensor* dy, const DLTensor* indices,
                                             DLTensor* dx) {
  using namespace dlk;
  return with_context("max_unpool2d_backward", context, [&](const Exec& exec) {
    Check check("max_unpool2d_backward", context);
    DType dt = check_image(check, dx, "dx");
    check_indices(check, indices, "indices", dx, "dx");
    check.contiguous(dy, "dy", 3, 4);
    check.same_dtype(dx, "dx", dy, "dy");
    check_pair(check, dx, "dx", dy, "dy", -1, -1, "the leading dims");
    check.no_partial_overlap(dx, "dx", dy, "dy");
    check.no_partial_overlap(dx, "dx", indices, "indices");
    PoolArgs a;
    a.g = plane_geometry(dx, dy);
    a.dtype = dt;
    a.in = data_of(dy);
    a.out = data_of(dx);
    a.indices = static_cast<const std::int64_t*>(data_of(indices));
    if (a.g.planes == 0 || a.g.ih * a.g.iw == 0) return;
    DLK_DISPATCH(max_unpool2d_backward, a, exec);
  });
}

DLK_API dlk_status dlk_upsample2d_params_init(dlk_upsample2d_params* params) {
  return dlk::guard("dlk_upsample2d_params_init", [&] {
    if (!params) dlk::fail(DLK_ERROR_INVALID_ARGUMENT, "dlk_upsample2d_params_init: params is NULL");
    std::memset(params, 0, sizeof(*params));
    params->struct_size = sizeof(*params);
    params->mode = DLK_UPSAMPLE_NEAREST;
  });
}

}  // extern "C"

namespace dlk {
namespace {

// Checks params and the (small, large) pair of an upsampling call and fills the args.
UpsampleArgs upsample_args(const Check& check, const dlk_upsample2d_params* params, const DLTensor* small,
                           const char* sn, const DLTensor* large, const char* ln) {
  dlk_upsample2d_params p;
  dlk_upsample2d_params_init(&p);
  if (params) {
    check.params_size(params->struct_size, sizeof(dlk_upsample2d_params), "params");
    std::memcpy(&p, params, sizeof(p));
  }
  const int mode = enum_value(p.mode);
  if (mode != DLK_UPSAMPLE_NEAREST && mode != DLK_UPSAMPLE_BILINEAR)
    check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->mode is ", mode,
               ", expected DLK_UPSAMPLE_NEAREST (0) or DLK_UPSAMPLE_BILINEAR (1)");
  check.finite(p.scale_h, "params->scale_h");
  check.finite(p.scale_w, "params->scale_w");
  if (p.scale_h < 0 || p.scale_w < 0)
    check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->scale_h/scale_w are ", p.scale_h, "/", p.scale_w,
               ", expected > 0 (or 0: from the sizes)");
  check_pair(check, small, sn, large, ln, -1, -1, "the leading dims");
  UpsampleArgs a;
  a.planes = planes_of(small);
  a.ih = small->shape[small->ndim - 2];
  a.iw = small->shape[small->ndim - 1];
  a.oh = large->shape[large->ndim - 2];
  a.ow = large->shape[large->ndim - 1];
  if (a.ih < 1 || a.iw < 1 || a.oh < 1 || a.ow < 1)
    check.fail(DLK_ERROR_SHAPE, "input and output sizes should be greater than 0, but got ", sn, " ",
               shape_string(small), " and ", ln, " ", shape_string(large));
  a.mode = mode;
  a.align_corners = mode == DLK_UPSAMPLE_BILINEAR && p.align_corners != 0;
  a.ratio_h = upsample_ratio(mode, a.align_corners, a.ih, a.oh, p.scale_h);
  a.ratio_w = upsample_ratio(mode, a.align_corners, a.iw, a.ow, p.scale_w);
  return a;
}

}  // namespace
}  // namespace dlk

extern "C" {

DLK_API dlk_status dlk_upsample2d_forward(dlk_context* context, const dlk_upsample2d_params* params, const DLTensor* x,
                                          DLTensor* y) {
  using namespace dlk;
  return with_context("upsample2d_forward", context, [&](const Exec& exec) {
    Check check("upsample2d_forward", context);
    DType dt = check_image(check, x, "x");
    check.contiguous(y, "y", 3, 4);
    check.same_dtype(x, "x", y, "y");
    check.no_partial_overlap(y, "y", x, "x");
    UpsampleArgs a = upsample_args(check, params, x, "x", y, "y");
    a.dtype = dt;
    a.in = data_of(x);
    a.out = data_of(y);
    if (a.planes == 0) return;
    DLK_DISPATCH(upsample2d_forward, a, exec);
  });
}

DLK_API dlk_status dlk_upsample2d_backward(dlk_context* context, const dlk_upsample2d_params* params,
                                           const DLTensor* dy, DLTensor* dx) {
  using namespace dlk;
  return with_context("upsample2d_backward", context, [&](const Exec& exec) {
    Check check("upsample2d_backward", context);
    DType dt = check_image(check, dx, "dx");
    check.contiguous(dy, "dy", 3, 4);
    check.same_dtype(dx, "dx", dy, "dy");
    check.no_partial_overlap(dx, "dx", dy, "dy");
    UpsampleArgs a = upsample_args(check, params, dx, "dx", dy, "dy");
    a.dtype = dt;
    a.in = data_of(dy);
    a.out = data_of(dx);
    if (a.planes == 0) return;
    DLK_DISPATCH(upsample2d_backward, a, exec);
  });
}

}  // extern "C"
