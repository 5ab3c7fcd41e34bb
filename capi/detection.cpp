// C ABI of the detection family: RoI Align / RoI Pool, the box ops (IoU, encode/decode, clip, remove small,
// anchors, FPN level mapper) and NMS. Validate every argument (torchvision's checks), describe the call, dispatch.
#include <dlk/dlk.h>

#include <cmath>
#include <cstring>
#include <string>

#include "boxes/boxes.h"
#include "capi/dispatch.h"
#include "capi/guard.h"
#include "capi/validate.h"
#include "nms/nms.h"
#include "roi_align/roi_align.h"

namespace dlk {
namespace {

// Outputs here never alias an input, not even exactly (the kernels read inputs after writing outputs).
void no_overlap(const Check& check, const DLTensor* out, const char* on, const DLTensor* in, const char* in_name) {
  const char* o = static_cast<const char*>(data_of(out));
  const char* i = static_cast<const char*>(data_of(in));
  const std::size_t ob = static_cast<std::size_t>(numel(out)) * dtype_size(dtype_of(out->dtype));
  const std::size_t ib = static_cast<std::size_t>(numel(in)) * dtype_size(dtype_of(in->dtype));
  if (ob == 0 || ib == 0) return;
  if (o < i + ib && i < o + ob) check.fail(DLK_ERROR_LAYOUT, on, " overlaps ", in_name, "; it must be a separate buffer");
}

// A float32 contiguous tensor of rank in [lo, hi].
void f32(const Check& check, const DLTensor* t, const char* name, int lo, int hi) {
  check.contiguous(t, name, lo, hi);
  check.dtype_in(t, name, {DType::F32});
}

void i64(const Check& check, const DLTensor* t, const char* name, int lo, int hi) {
  check.contiguous(t, name, lo, hi);
  check.dtype_in(t, name, {DType::I64});
}

// [rows, cols] exactly.
void matrix(const Check& check, const DLTensor* t, const char* name, std::int64_t rows, std::int64_t cols,
            const char* what) {
  const std::int64_t s[2] = {rows, cols};
  check.shape_is(t, name, s, 2, what);
}

// boxes [N, 4] float32.
std::int64_t boxes_of(const Check& check, const DLTensor* t, const char* name) {
  f32(check, t, name, 2, 2);
  if (t->shape[1] != 4)
    check.fail(DLK_ERROR_SHAPE, name, " has shape ", shape_string(t), ", expected [N,4] (x1, y1, x2, y2)");
  return t->shape[0];
}

// A one-element int64 output (shape [] or [1]).
void count_tensor(const Check& check, const DLTensor* t, const char* name) {
  i64(check, t, name, 0, 1);
  if (numel(t) != 1) check.fail(DLK_ERROR_SHAPE, name, " has shape ", shape_string(t), ", expected one element");
}

// x (or dx) [N, C, H, W] and rois [K, 5]; on host-memory backends every batch index must name an image.
void check_rois(const Check& check, const Exec& exec, const DLTensor* image, const char* iname, const DLTensor* rois,
                RoiArgs* a) {
  f32(check, image, iname, 4, 4);
  f32(check, rois, "rois", 2, 2);
  if (rois->shape[1] != 5)
    check.fail(DLK_ERROR_SHAPE, "rois has shape ", shape_string(rois), ", expected [K,5] (batch index, x1, y1, x2, y2)");
  a->n = image->shape[0];
  a->c = image->shape[1];
  a->h = image->shape[2];
  a->w = image->shape[3];
  a->k = rois->shape[0];
  if (a->h * a->w > 0x7fffffff)
    check.fail(DLK_ERROR_OVERFLOW, iname, " has shape ", shape_string(image), ": planes of 2^31 elements or more are "
               "not supported");
  a->rois = static_cast<const float*>(data_of(rois));
  if (exec.backend == Backend::Cuda) return;
  for (std::int64_t r = 0; r < a->k; ++r) {
    const float b = a->rois[r * 5];
    if (!(b > -1.0f && b < static_cast<float>(a->n)))
      check.fail(DLK_ERROR_INVALID_ARGUMENT, "rois[", r, ", 0] (batch index) is ", b, ", expected an index in [0, ",
                 a->n, ") of ", iname, " ", shape_string(image));
  }
}

void pooled_size(const Check& check, int ph, int pw, double scale) {
  if (ph <= 0 || pw <= 0)
    check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->pooled_h/pooled_w are ", ph, "/", pw,
               ", expected > 0 (the output size has no default)");
  if (!std::isfinite(scale) || !(scale > 0))
    check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->spatial_scale is ", scale, ", expected a finite number > 0");
}

void read_align(const Check& check, const dlk_roi_align_params* params, RoiArgs* a) {
  if (!params)
    check.fail(DLK_ERROR_INVALID_ARGUMENT, "params is NULL; the output size has no default (fill one with "
               "dlk_roi_align_params_init and set pooled_h/pooled_w)");
  check.params_size(params->struct_size, sizeof(dlk_roi_align_params), "params");
  pooled_size(check, params->pooled_h, params->pooled_w, params->spatial_scale);
  a->ph = params->pooled_h;
  a->pw = params->pooled_w;
  a->spatial_scale = params->spatial_scale;
  a->sampling_ratio = params->sampling_ratio;
  a->aligned = params->aligned != 0;
}

void read_pool(const Check& check, const dlk_roi_pool_params* params, RoiArgs* a) {
  if (!params)
    check.fail(DLK_ERROR_INVALID_ARGUMENT, "params is NULL; the output size has no default (fill one with "
               "dlk_roi_pool_params_init and set pooled_h/pooled_w)");
  check.params_size(params->struct_size, sizeof(dlk_roi_pool_params), "params");
  pooled_size(check, params->pooled_h, params->pooled_w, params->spatial_scale);
  a->ph = params->pooled_h;
  a->pw = params->pooled_w;
  a->spatial_scale = params->spatial_scale;
}

// The pooled tensor [K, C, ph, pw] of a RoI call.
void check_pooled(const Check& check, const DLTensor* t, const char* name, const RoiArgs& a) {
  const std::int64_t s[4] = {a.k, a.c, a.ph, a.pw};
  check.shape_is(t, name, s, 4, "[K, C, pooled_h, pooled_w] of rois and the image");
}

void read_coder(const Check& check, const dlk_box_coder_params* params, BoxCoderArgs* a) {
  dlk_box_coder_params p;
  dlk_box_coder_params_init(&p);
  if (params) {
    check.params_size(params->struct_size, sizeof(dlk_box_coder_params), "params");
    std::memcpy(&p, params, sizeof(p));
  }
  for (int i = 0; i < 4; ++i) {
    if (!std::isfinite(p.weights[i]) || p.weights[i] == 0)
      check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->weights[", i, "] is ", p.weights[i],
                 ", expected a finite non-zero number");
  }
  if (std::isnan(p.bbox_xform_clip))
    check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->bbox_xform_clip is NaN");
  a->wx = static_cast<float>(p.weights[0]);
  a->wy = static_cast<float>(p.weights[1]);
  a->ww = static_cast<float>(p.weights[2]);
  a->wh = static_cast<float>(p.weights[3]);
  a->clip = static_cast<float>(p.bbox_xform_clip);
}

void read_nms(const Check& check, const dlk_nms_params* params, double iou_threshold, NmsArgs* a) {
  dlk_nms_params p;
  dlk_nms_params_init(&p);
  if (params) {
    check.params_size(params->struct_size, sizeof(dlk_nms_params), "params");
    std::memcpy(&p, params, sizeof(p));
  }
  if (std::isnan(iou_threshold)) check.fail(DLK_ERROR_INVALID_ARGUMENT, "iou_threshold is NaN");
  if (std::isnan(p.score_threshold)) check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->score_threshold is NaN");
  if (p.top_k < 0) check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->top_k is ", p.top_k, ", expected >= 0");
  a->iou_threshold = iou_threshold;
  a->score_threshold = p.score_threshold;
  a->top_k = p.top_k;
}

// The shared body of dlk_nms and dlk_batched_nms.
void nms_call(const Check& check, const Exec& exec, const dlk_nms_params* params, const DLTensor* boxes,
              const DLTensor* scores, const DLTensor* idxs, double iou_threshold, DLTensor* keep,
              DLTensor* num_kept) {
  NmsArgs a;
  read_nms(check, params, iou_threshold, &a);
  a.n = boxes_of(check, boxes, "boxes");
  f32(check, scores, "scores", 1, 1);
  const std::int64_t n1[1] = {a.n};
  check.shape_is(scores, "scores", n1, 1, "one score per box");
  if (idxs) {
    i64(check, idxs, "idxs", 1, 1);
    check.shape_is(idxs, "idxs", n1, 1, "one category per box");
  }
  i64(check, keep, "keep", 1, 1);
  check.shape_is(keep, "keep", n1, 1, "one slot per box");
  count_tensor(check, num_kept, "num_kept");
  if (a.n > 0x7fffffff) check.fail(DLK_ERROR_OVERFLOW, "boxes has ", a.n, " rows, at most 2^31 - 1 are supported");
  const DLTensor* ins[3] = {boxes, scores, idxs};
  const char* names[3] = {"boxes", "scores", "idxs"};
  for (int i = 0; i < 3; ++i) {
    if (!ins[i]) continue;
    no_overlap(check, keep, "keep", ins[i], names[i]);
    no_overlap(check, num_kept, "num_kept", ins[i], names[i]);
  }
  no_overlap(check, num_kept, "num_kept", keep, "keep");
  a.boxes = static_cast<const float*>(data_of(boxes));
  a.scores = static_cast<const float*>(data_of(scores));
  a.idxs = idxs ? static_cast<const std::int64_t*>(data_of(idxs)) : nullptr;
  if (a.idxs && exec.backend != Backend::Cuda)
    for (std::int64_t i = 0; i < a.n; ++i)
      if (a.idxs[i] < 0)
        check.fail(DLK_ERROR_INVALID_ARGUMENT, "idxs[", i, "] is ", a.idxs[i], ", expected a category >= 0");
  a.keep = static_cast<std::int64_t*>(data_of(keep));
  a.count = static_cast<std::int64_t*>(data_of(num_kept));
  DLK_DISPATCH(nms, a, exec);
}

}  // namespace
}  // namespace dlk

extern "C" {

DLK_API dlk_status dlk_roi_align_params_init(dlk_roi_align_params* params) {
  return dlk::guard("dlk_roi_align_params_init", [&] {
    if (!params) dlk::fail(DLK_ERROR_INVALID_ARGUMENT, "dlk_roi_align_params_init: params is NULL");
    std::memset(params, 0, sizeof(*params));
    params->struct_size = sizeof(*params);
    params->spatial_scale = 1.0;
    params->sampling_ratio = -1;
  });
}

DLK_API dlk_status dlk_roi_align_forward(dlk_context* context, const dlk_roi_align_params* params, const DLTensor* x,
                                         const DLTensor* rois, DLTensor* y) {
  using namespace dlk;
  return with_context("roi_align_forward", context, [&](const Exec& exec) {
    Check check("roi_align_forward", context);
    RoiArgs a;
    read_align(check, params, &a);
    check_rois(check, exec, x, "x", rois, &a);
    f32(check, y, "y", 4, 4);
    check_pooled(check, y, "y", a);
    no_overlap(check, y, "y", x, "x");
    no_overlap(check, y, "y", rois, "rois");
    a.in = static_cast<const float*>(data_of(x));
    a.out = static_cast<float*>(data_of(y));
    if (a.k == 0 || a.c == 0) return;
    DLK_DISPATCH(roi_align_forward, a, exec);
  });
}

DLK_API dlk_status dlk_roi_align_backward(dlk_context* context, const dlk_roi_align_params* params,
                                          const DLTensor* dy, const DLTensor* rois, DLTensor* dx) {
  using namespace dlk;
  return with_context("roi_align_backward", context, [&](const Exec& exec) {
    Check check("roi_align_backward", context);
    RoiArgs a;
    read_align(check, params, &a);
    check_rois(check, exec, dx, "dx", rois, &a);
    f32(check, dy, "dy", 4, 4);
    check_pooled(check, dy, "dy", a);
    no_overlap(check, dx, "dx", dy, "dy");
    no_overlap(check, dx, "dx", rois, "rois");
    a.in = static_cast<const float*>(data_of(dy));
    a.out = static_cast<float*>(data_of(dx));
    if (numel(dx) == 0) return;
    DLK_DISPATCH(roi_align_backward, a, exec);
  });
}

DLK_API dlk_status dlk_roi_pool_params_init(dlk_roi_pool_params* params) {
  return dlk::guard("dlk_roi_pool_params_init", [&] {
    if (!params) dlk::fail(DLK_ERROR_INVALID_ARGUMENT, "dlk_roi_pool_params_init: params is NULL");
    std::memset(params, 0, sizeof(*params));
    params->struct_size = sizeof(*params);
    params->spatial_scale = 1.0;
  });
}

DLK_API dlk_status dlk_roi_pool_forward(dlk_context* context, const dlk_roi_pool_params* params, const DLTensor* x,
                                        const DLTensor* rois, DLTensor* y, DLTensor* argmax) {
  using namespace dlk;
  return with_context("roi_pool_forward", context, [&](const Exec& exec) {
    Check check("roi_pool_forward", context);
    RoiArgs a;
    read_pool(check, params, &a);
    check_rois(check, exec, x, "x", rois, &a);
    f32(check, y, "y", 4, 4);
    check_pooled(check, y, "y", a);
    no_overlap(check, y, "y", x, "x");
    no_overlap(check, y, "y", rois, "rois");
    if (argmax) {
      i64(check, argmax, "argmax", 4, 4);
      check_pooled(check, argmax, "argmax", a);
      no_overlap(check, argmax, "argmax", x, "x");
      no_overlap(check, argmax, "argmax", rois, "rois");
      no_overlap(check, argmax, "argmax", y, "y");
    }
    a.in = static_cast<const float*>(data_of(x));
    a.out = static_cast<float*>(data_of(y));
    a.argmax = static_cast<std::int64_t*>(data_of(argmax));
    if (a.k == 0 || a.c == 0) return;
    DLK_DISPATCH(roi_pool_forward, a, exec);
  });
}

DLK_API dlk_status dlk_roi_pool_backward(dlk_context* context, const dlk_roi_pool_params* params, const DLTensor* dy,
                                         const DLTensor* rois, const DLTensor* argmax, DLTensor* dx) {
  using namespace dlk;
  return with_context("roi_pool_backward", context, [&](const Exec& exec) {
    Check check("roi_pool_backward", context);
    RoiArgs a;
    read_pool(check, params, &a);
    check_rois(check, exec, dx, "dx", rois, &a);
    f32(check, dy, "dy", 4, 4);
    check_pooled(check, dy, "dy", a);
    i64(check, argmax, "argmax", 4, 4);
    check_pooled(check, argmax, "argmax", a);
    no_overlap(check, dx, "dx", dy, "dy");
    no_overlap(check, dx, "dx", rois, "rois");
    no_overlap(check, dx, "dx", argmax, "argmax");
    a.in = static_cast<const float*>(data_of(dy));
    a.argmax_in = static_cast<const std::int64_t*>(data_of(argmax));
    a.out = static_cast<float*>(data_of(dx));
    if (numel(dx) == 0) return;
    DLK_DISPATCH(roi_pool_backward, a, exec);
  });
}

DLK_API dlk_status dlk_fpn_level_mapper(dlk_context* context, const DLTensor* boxes, int k_min, int k_max,
                                        int canonical_scale, int canonical_level, double eps, DLTensor* levels) {
  using namespace dlk;
  return with_context("fpn_level_mapper", context, [&](const Exec& exec) {
    Check check("fpn_level_mapper", context);
    LevelMapperArgs a;
    a.n = boxes_of(check, boxes, "boxes");
    i64(check, levels, "levels", 1, 1);
    const std::int64_t n1[1] = {a.n};
    check.shape_is(levels, "levels", n1, 1, "one level per box");
    no_overlap(check, levels, "levels", boxes, "boxes");
    if (k_min > k_max) check.fail(DLK_ERROR_INVALID_ARGUMENT, "k_min ", k_min, " > k_max ", k_max);
    if (canonical_scale <= 0)
      check.fail(DLK_ERROR_INVALID_ARGUMENT, "canonical_scale is ", canonical_scale, ", expected > 0");
    check.finite(eps, "eps");
    a.k_min = k_min;
    a.k_max = k_max;
    a.canonical_scale = canonical_scale;
    a.canonical_level = canonical_level;
    a.eps = static_cast<float>(eps);
    a.boxes = static_cast<const float*>(data_of(boxes));
    a.levels = static_cast<std::int64_t*>(data_of(levels));
    if (a.n == 0) return;
    DLK_DISPATCH(fpn_level_mapper, a, exec);
  });
}

DLK_API dlk_status dlk_box_iou(dlk_context* context, const DLTensor* boxes1, const DLTensor* boxes2, DLTensor* iou) {
  using namespace dlk;
  return with_context("box_iou", context, [&](const Exec& exec) {
    Check check("box_iou", context);
    BoxIouArgs a;
    a.n = boxes_of(check, boxes1, "boxes1");
    a.m = boxes_of(check, boxes2, "boxes2");
    f32(check, iou, "iou", 2, 2);
    matrix(check, iou, "iou", a.n, a.m, "[N, M] of boxes1 and boxes2");
    no_overlap(check, iou, "iou", boxes1, "boxes1");
    no_overlap(check, iou, "iou", boxes2, "boxes2");
    a.a = static_cast<const float*>(data_of(boxes1));
    a.b = static_cast<const float*>(data_of(boxes2));
    a.iou = static_cast<float*>(data_of(iou));
    if (a.n == 0 || a.m == 0) return;
    DLK_DISPATCH(box_iou, a, exec);
  });
}

DLK_API dlk_status dlk_box_coder_params_init(dlk_box_coder_params* params) {
  return dlk::guard("dlk_box_coder_params_init", [&] {
    if (!params) dlk::fail(DLK_ERROR_INVALID_ARGUMENT, "dlk_box_coder_params_init: params is NULL");
    std::memset(params, 0, sizeof(*params));
    params->struct_size = sizeof(*params);
    for (double& w : params->weights) w = 1.0;
    params->bbox_xform_clip = std::log(1000.0 / 16.0);
  });
}

DLK_API dlk_status dlk_box_encode(dlk_context* context, const dlk_box_coder_params* params,
                                  const DLTensor* reference_boxes, const DLTensor* proposals, DLTensor* deltas) {
  using namespace dlk;
  return with_context("box_encode", context, [&](const Exec& exec) {
    Check check("box_encode", context);
    BoxCoderArgs a;
    read_coder(check, params, &a);
    a.n = boxes_of(check, reference_boxes, "reference_boxes");
    boxes_of(check, proposals, "proposals");
    check.same_shape(reference_boxes, "reference_boxes", proposals, "proposals");
    f32(check, deltas, "deltas", 2, 2);
    check.same_shape(reference_boxes, "reference_boxes", deltas, "deltas");
    no_overlap(check, deltas, "deltas", reference_boxes, "reference_boxes");
    no_overlap(check, deltas, "deltas", proposals, "proposals");
    a.codes = static_cast<const float*>(data_of(reference_boxes));
    a.boxes = static_cast<const float*>(data_of(proposals));
    a.out = static_cast<float*>(data_of(deltas));
    if (a.n == 0) return;
    DLK_DISPATCH(box_encode, a, exec);
  });
}

DLK_API dlk_status dlk_box_decode(dlk_context* context, const dlk_box_coder_params* params, const DLTensor* rel_codes,
                                  const DLTensor* boxes, DLTensor* pred) {
  using namespace dlk;
  return with_context("box_decode", context, [&](const Exec& exec) {
    Check check("box_decode", context);
    BoxCoderArgs a;
    read_coder(check, params, &a);
    a.n = boxes_of(check, boxes, "boxes");
    f32(check, rel_codes, "rel_codes", 2, 2);
    if (rel_codes->shape[0] != a.n || rel_codes->shape[1] % 4 != 0)
      check.fail(DLK_ERROR_SHAPE, "rel_codes has shape ", shape_string(rel_codes), ", expected [", a.n,
                 ", 4 * J] (one row per box of boxes ", shape_string(boxes), ")");
    a.j = rel_codes->shape[1] / 4;
    f32(check, pred, "pred", 2, 2);
    check.same_shape(rel_codes, "rel_codes", pred, "pred");
    no_overlap(check, pred, "pred", rel_codes, "rel_codes");
    no_overlap(check, pred, "pred", boxes, "boxes");
    a.codes = static_cast<const float*>(data_of(rel_codes));
    a.boxes = static_cast<const float*>(data_of(boxes));
    a.out = static_cast<float*>(data_of(pred));
    if (a.n == 0 || a.j == 0) return;
    DLK_DISPATCH(box_decode, a, exec);
  });
}

DLK_API dlk_status dlk_clip_boxes_to_image(dlk_context* context, const DLTensor* boxes, int64_t height, int64_t width,
                                           DLTensor* out) {
  using namespace dlk;
  return with_context("clip_boxes_to_image", context, [&](const Exec& exec) {
    Check check("clip_boxes_to_image", context);
    f32(check, boxes, "boxes", 1, kMaxDims);
    if (boxes->shape[boxes->ndim - 1] != 4)
      check.fail(DLK_ERROR_SHAPE, "boxes has shape ", shape_string(boxes), ", expected [..., 4]");
    f32(check, out, "out", 1, kMaxDims);
    check.same_shape(boxes, "boxes", out, "out");
    check.no_partial_overlap(out, "out", boxes, "boxes");
    if (height < 0 || width < 0)
      check.fail(DLK_ERROR_INVALID_ARGUMENT, "image size is ", height, "x", width, ", expected >= 0");
    ClipBoxesArgs a;
    a.n = numel(boxes) / 4;
    a.height = static_cast<float>(height);
    a.width = static_cast<float>(width);
    a.in = static_cast<const float*>(data_of(boxes));
    a.out = static_cast<float*>(data_of(out));
    if (a.n == 0) return;
    DLK_DISPATCH(clip_boxes, a, exec);
  });
}

DLK_API dlk_status dlk_remove_small_boxes(dlk_context* context, const DLTensor* boxes, double min_size,
                                          DLTensor* keep, DLTensor* num_kept) {
  using namespace dlk;
  return with_context("remove_small_boxes", context, [&](const Exec& exec) {
    Check check("remove_small_boxes", context);
    RemoveSmallArgs a;
    a.n = boxes_of(check, boxes, "boxes");
    i64(check, keep, "keep", 1, 1);
    const std::int64_t n1[1] = {a.n};
    check.shape_is(keep, "keep", n1, 1, "one slot per box");
    count_tensor(check, num_kept, "num_kept");
    if (std::isnan(min_size)) check.fail(DLK_ERROR_INVALID_ARGUMENT, "min_size is NaN");
    no_overlap(check, keep, "keep", boxes, "boxes");
    no_overlap(check, num_kept, "num_kept", boxes, "boxes");
    no_overlap(check, num_kept, "num_kept", keep, "keep");
    a.min_size = static_cast<float>(min_size);
    a.boxes = static_cast<const float*>(data_of(boxes));
    a.keep = static_cast<std::int64_t*>(data_of(keep));
    a.count = static_cast<std::int64_t*>(data_of(num_kept));
    DLK_DISPATCH(remove_small_boxes, a, exec);
  });
}

DLK_API dlk_status dlk_anchor_generator(dlk_context* context, const float* sizes, int num_sizes,
                                        const float* aspect_ratios, int num_ratios, int64_t grid_h, int64_t grid_w,
                                        int64_t stride_h, int64_t stride_w, DLTensor* anchors) {
  using namespace dlk;
  return with_context("anchor_generator", context, [&](const Exec& exec) {
    Check check("anchor_generator", context);
    if (!sizes || !aspect_ratios || num_sizes <= 0 || num_ratios <= 0)
      check.fail(DLK_ERROR_INVALID_ARGUMENT, "sizes (", num_sizes, ") and aspect_ratios (", num_ratios,
                 ") must be non-empty host arrays");
    for (int i = 0; i < num_sizes; ++i)
      if (!std::isfinite(sizes[i]) || !(sizes[i] > 0))
        check.fail(DLK_ERROR_INVALID_ARGUMENT, "sizes[", i, "] is ", sizes[i], ", expected a finite size > 0");
    for (int i = 0; i < num_ratios; ++i)
      if (!std::isfinite(aspect_ratios[i]) || !(aspect_ratios[i] > 0))
        check.fail(DLK_ERROR_INVALID_ARGUMENT, "aspect_ratios[", i, "] is ", aspect_ratios[i],
                   ", expected a finite ratio > 0");
    if (grid_h < 0 || grid_w < 0 || stride_h < 0 || stride_w < 0)
      check.fail(DLK_ERROR_INVALID_ARGUMENT, "grid ", grid_h, "x", grid_w, " and strides ", stride_h, "x", stride_w,
                 " must be >= 0");
    if (grid_h > (std::int64_t{1} << 24) || grid_w > (std::int64_t{1} << 24))
      check.fail(DLK_ERROR_OVERFLOW, "grid ", grid_h, "x", grid_w, " is too large");
    AnchorArgs a;
    a.grid_h = grid_h;
    a.grid_w = grid_w;
    a.stride_h = stride_h;
    a.stride_w = stride_w;
    a.num_base = num_sizes * num_ratios;
    f32(check, anchors, "anchors", 2, 2);
    matrix(check, anchors, "anchors", grid_h * grid_w * a.num_base, 4,
           "[grid_h * grid_w * num_ratios * num_sizes, 4]");
    a.base = base_anchors(sizes, num_sizes, aspect_ratios, num_ratios);
    a.out = static_cast<float*>(data_of(anchors));
    if (numel(anchors) == 0) return;
    DLK_DISPATCH(anchor_generator, a, exec);
  });
}

DLK_API dlk_status dlk_nms_params_init(dlk_nms_params* params) {
  return dlk::guard("dlk_nms_params_init", [&] {
    if (!params) dlk::fail(DLK_ERROR_INVALID_ARGUMENT, "dlk_nms_params_init: params is NULL");
    std::memset(params, 0, sizeof(*params));
    params->struct_size = sizeof(*params);
    params->score_threshold = -INFINITY;
    params->top_k = 0;
  });
}

DLK_API dlk_status dlk_nms(dlk_context* context, const dlk_nms_params* params, const DLTensor* boxes,
                           const DLTensor* scores, double iou_threshold, DLTensor* keep, DLTensor* num_kept) {
  using namespace dlk;
  return with_context("nms", context, [&](const Exec& exec) {
    Check check("nms", context);
    nms_call(check, exec, params, boxes, scores, nullptr, iou_threshold, keep, num_kept);
  });
}

DLK_API dlk_status dlk_batched_nms(dlk_context* context, const dlk_nms_params* params, const DLTensor* boxes,
                                   const DLTensor* scores, const DLTensor* idxs, double iou_threshold, DLTensor* keep,
                                   DLTensor* num_kept) {
  using namespace dlk;
  return with_context("batched_nms", context, [&](const Exec& exec) {
    Check check("batched_nms", context);
    if (!idxs) check.fail(DLK_ERROR_INVALID_ARGUMENT, "idxs is NULL (use dlk_nms for one category)");
    nms_call(check, exec, params, boxes, scores, idxs, iou_threshold, keep, num_kept);
  });
}

}  // extern "C"
