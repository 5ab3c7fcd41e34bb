"""Detection ops mirroring torchvision.ops (same names, argument order, defaults and semantics): roi_align,
roi_pool, box_iou, nms, batched_nms, plus the Faster R-CNN box coder (encode_boxes / decode_boxes as
torchvision.models.detection._utils), clip_boxes_to_image, remove_small_boxes, anchor_grid (AnchorGenerator for one
feature map) and fpn_levels (MultiScaleRoIAlign's LevelMapper), and the backward entry points `<name>_backward`.

Arrays: NumPy or PyTorch, float32 (boxes, images) and int64 (indices); the output has the main input's kind.
Boxes are (x1, y1, x2, y2); `boxes` of roi_align / roi_pool is a [K, 5] array (batch index first) or a list of
[L_i, 4] arrays, one per image, as torchvision accepts.

Notes on torchvision parity:
  - nms / batched_nms return the kept indices (int64) in decreasing score order; ties keep the lower index (a stable
    sort; torchvision's CPU kernel sorts stably too). Extra keyword arguments: score_threshold, top_k.
  - batched_nms always uses the coordinate-offset trick (torchvision switches to a per-class loop above 4000 boxes
    on the CPU, which gives the same set up to the fp32 rounding of the offsets).
"""

import ctypes
import math

import numpy as np

from . import _lib, _tensor
from ._context import run as _run
from ._tensor import ptr as _ptr


class RoiAlignParams(_lib.Params):
    _init_ = "dlk_roi_align_params_init"
    _fields_ = [("pooled_h", ctypes.c_int), ("pooled_w", ctypes.c_int), ("spatial_scale", ctypes.c_double),
                ("sampling_ratio", ctypes.c_int), ("aligned", ctypes.c_int)]


class RoiPoolParams(_lib.Params):
    _init_ = "dlk_roi_pool_params_init"
    _fields_ = [("pooled_h", ctypes.c_int), ("pooled_w", ctypes.c_int), ("spatial_scale", ctypes.c_double)]


class BoxCoderParams(_lib.Params):
    _init_ = "dlk_box_coder_params_init"
    _fields_ = [("weights", ctypes.c_double * 4), ("bbox_xform_clip", ctypes.c_double)]


class NmsParams(_lib.Params):
    _init_ = "dlk_nms_params_init"
    _fields_ = [("score_threshold", ctypes.c_double), ("top_k", ctypes.c_int64)]


_T = _lib.TensorPtr
_FP = ctypes.POINTER(ctypes.c_float)
_lib.declare({
    "dlk_roi_align_forward": _lib.op_prototype(ctypes.POINTER(RoiAlignParams), _T, _T, _T),
    "dlk_roi_align_backward": _lib.op_prototype(ctypes.POINTER(RoiAlignParams), _T, _T, _T),
    "dlk_roi_pool_forward": _lib.op_prototype(ctypes.POINTER(RoiPoolParams), _T, _T, _T, _T),
    "dlk_roi_pool_backward": _lib.op_prototype(ctypes.POINTER(RoiPoolParams), _T, _T, _T, _T),
    "dlk_fpn_level_mapper": _lib.op_prototype(_T, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                              ctypes.c_double, _T),
    "dlk_box_iou": _lib.op_prototype(_T, _T, _T),
    "dlk_box_encode": _lib.op_prototype(ctypes.POINTER(BoxCoderParams), _T, _T, _T),
    "dlk_box_decode": _lib.op_prototype(ctypes.POINTER(BoxCoderParams), _T, _T, _T),
    "dlk_clip_boxes_to_image": _lib.op_prototype(_T, ctypes.c_int64, ctypes.c_int64, _T),
    "dlk_remove_small_boxes": _lib.op_prototype(_T, ctypes.c_double, _T, _T),
    "dlk_anchor_generator": _lib.op_prototype(_FP, ctypes.c_int, _FP, ctypes.c_int, ctypes.c_int64, ctypes.c_int64,
                                              ctypes.c_int64, ctypes.c_int64, _T),
    "dlk_nms": _lib.op_prototype(ctypes.POINTER(NmsParams), _T, _T, ctypes.c_double, _T, _T),
    "dlk_batched_nms": _lib.op_prototype(ctypes.POINTER(NmsParams), _T, _T, _T, ctypes.c_double, _T, _T),
}, params=(RoiAlignParams, RoiPoolParams, BoxCoderParams, NmsParams))

_I64 = (_lib.DLDataTypeCode.kDLInt, 64)


def _pair(v):
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[0])) if len(v) == 1 else (int(v[0]), int(v[1]))
    return int(v), int(v)


def _is_torch(obj):
    return _tensor.is_torch(obj)


def _rois(boxes):
    """[K, 5] rois from a [K, 5] array or a list of [L_i, 4] arrays (torchvision's convert_boxes_to_roi_format)."""
    if isinstance(boxes, (list, tuple)):
        if boxes and _is_torch(boxes[0]):
            import torch

            parts = [torch.cat([torch.full((b.shape[0], 1), float(i), dtype=b.dtype, device=b.device), b], 1)
                     for i, b in enumerate(boxes)]
            return torch.cat(parts, 0) if parts else torch.zeros((0, 5))
        parts = [np.concatenate([np.full((len(b), 1), i, dtype=np.float32), np.asarray(b, np.float32)], 1)
                 for i, b in enumerate(boxes)]
        return np.concatenate(parts, 0) if parts else np.zeros((0, 5), np.float32)
    return boxes


def _count(t):
    o = t.obj
    if hasattr(o, "item"):
        return int(o.reshape(-1)[0].item())
    return int(np.asarray(o).reshape(-1)[0])


# ------------------------------------------------------------------------------------------------ RoI ops


def _align_params(output_size, spatial_scale, sampling_ratio, aligned):
    p = RoiAlignParams.filled()
    p.pooled_h, p.pooled_w = _pair(output_size)
    p.spatial_scale = float(spatial_scale)
    p.sampling_ratio = int(sampling_ratio)
    p.aligned = 1 if aligned else 0
    return p


def roi_align(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False, *, context=None):
    """torchvision.ops.roi_align: [K, C, out_h, out_w] bilinear averages of the RoIs over input [N, C, H, W]."""
    x = _tensor.as_tensor(input, "input")
    r = _tensor.as_tensor(_rois(boxes), "boxes")
    p = _align_params(output_size, spatial_scale, sampling_ratio, aligned)
    k = r.shape[0] if len(r.shape) else 0
    c = x.shape[1] if len(x.shape) > 1 else 0
    y = _tensor.empty(x, (k, c, p.pooled_h, p.pooled_w))
    _run(context, x, (x, r), "dlk_roi_align_forward", ctypes.byref(p), x.ptr, r.ptr, y.ptr)
    return y.obj


def roi_align_backward(grad_output, boxes, input_shape, output_size, spatial_scale=1.0, sampling_ratio=-1,
                       aligned=False, *, context=None):
    """Gradient of roi_align with respect to its input (shape `input_shape`), deterministic in deterministic mode."""
    dy = _tensor.as_tensor(grad_output, "grad_output")
    r = _tensor.as_tensor(_rois(boxes), "boxes")
    p = _align_params(output_size, spatial_scale, sampling_ratio, aligned)
    dx = _tensor.empty(dy, tuple(input_shape))
    _run(context, dy, (dy, r), "dlk_roi_align_backward", ctypes.byref(p), dy.ptr, r.ptr, dx.ptr)
    return dx.obj


def _pool_params(output_size, spatial_scale):
    p = RoiPoolParams.filled()
    p.pooled_h, p.pooled_w = _pair(output_size)
    p.spatial_scale = float(spatial_scale)
    return p


def roi_pool(input, boxes, output_size, spatial_scale=1.0, *, return_argmax=False, context=None):
    """torchvision.ops.roi_pool: max over the rounded RoI bins; return_argmax also gives the int64 argmax (h * W + w,
    -1 for an empty bin) that roi_pool_backward takes."""
    x = _tensor.as_tensor(input, "input")
    r = _tensor.as_tensor(_rois(boxes), "boxes")
    p = _pool_params(output_size, spatial_scale)
    k = r.shape[0] if len(r.shape) else 0
    c = x.shape[1] if len(x.shape) > 1 else 0
    y = _tensor.empty(x, (k, c, p.pooled_h, p.pooled_w))
    a = _tensor.empty(x, (k, c, p.pooled_h, p.pooled_w), _I64)
    _run(context, x, (x, r), "dlk_roi_pool_forward", ctypes.byref(p), x.ptr, r.ptr, y.ptr, a.ptr)
    return (y.obj, a.obj) if return_argmax else y.obj


def roi_pool_backward(grad_output, boxes, argmax, input_shape, output_size, spatial_scale=1.0, *, context=None):
    """Gradient of roi_pool from its argmax."""
    dy = _tensor.as_tensor(grad_output, "grad_output")
    r = _tensor.as_tensor(_rois(boxes), "boxes")
    a = _tensor.as_tensor(argmax, "argmax")
    p = _pool_params(output_size, spatial_scale)
    dx = _tensor.empty(dy, tuple(input_shape))
    _run(context, dy, (dy, r, a), "dlk_roi_pool_backward", ctypes.byref(p), dy.ptr, r.ptr, a.ptr, dx.ptr)
    return dx.obj


def fpn_levels(boxes, k_min, k_max, canonical_scale=224, canonical_level=4, eps=1e-6, *, context=None):
    """MultiScaleRoIAlign's LevelMapper: the int64 pyramid level (minus k_min) of each box."""
    b = _tensor.as_tensor(boxes, "boxes")
    out = _tensor.empty(b, (b.shape[0] if b.shape else 0,), _I64)
    _run(context, b, (b,), "dlk_fpn_level_mapper", b.ptr, int(k_min), int(k_max), int(canonical_scale),
         int(canonical_level), float(eps), out.ptr)
    return out.obj


# ------------------------------------------------------------------------------------------------ boxes


def box_iou(boxes1, boxes2, *, context=None):
    """torchvision.ops.box_iou: the [N, M] pairwise IoU."""
    a = _tensor.as_tensor(boxes1, "boxes1")
    b = _tensor.as_tensor(boxes2, "boxes2")
    out = _tensor.empty(a, (a.shape[0] if a.shape else 0, b.shape[0] if b.shape else 0))
    _run(context, a, (a, b), "dlk_box_iou", a.ptr, b.ptr, out.ptr)
    return out.obj


def _coder_params(weights, bbox_xform_clip):
    p = BoxCoderParams.filled()
    for i, w in enumerate(weights):
        p.weights[i] = float(w)
    if bbox_xform_clip is not None:
        p.bbox_xform_clip = float(bbox_xform_clip)
    return p


def encode_boxes(reference_boxes, proposals, weights=(1.0, 1.0, 1.0, 1.0), *, context=None):
    """torchvision's det_utils.encode_boxes: regression targets of reference_boxes relative to proposals."""
    g = _tensor.as_tensor(reference_boxes, "reference_boxes")
    pr = _tensor.as_tensor(proposals, "proposals")
    p = _coder_params(weights, None)
    out = _tensor.empty(g, g.shape)
    _run(context, g, (g, pr), "dlk_box_encode", ctypes.byref(p), g.ptr, pr.ptr, out.ptr)
    return out.obj


def decode_boxes(rel_codes, boxes, weights=(1.0, 1.0, 1.0, 1.0), bbox_xform_clip=math.log(1000.0 / 16),
                 *, context=None):
    """BoxCoder.decode_single: boxes [N, 4] and rel_codes [N, 4 J] -> pred [N, 4 J]."""
    c = _tensor.as_tensor(rel_codes, "rel_codes")
    b = _tensor.as_tensor(boxes, "boxes")
    p = _coder_params(weights, bbox_xform_clip)
    out = _tensor.empty(c, c.shape)
    _run(context, c, (c, b), "dlk_box_decode", ctypes.byref(p), c.ptr, b.ptr, out.ptr)
    return out.obj


def clip_boxes_to_image(boxes, size, *, context=None):
    """torchvision.ops.clip_boxes_to_image: size = (height, width)."""
    b = _tensor.as_tensor(boxes, "boxes")
    out = _tensor.empty(b, b.shape)
    _run(context, b, (b,), "dlk_clip_boxes_to_image", b.ptr, int(size[0]), int(size[1]), out.ptr)
    return out.obj


def remove_small_boxes(boxes, min_size, *, context=None):
    """torchvision.ops.remove_small_boxes: int64 indices of the boxes whose sides are both >= min_size."""
    b = _tensor.as_tensor(boxes, "boxes")
    n = b.shape[0] if b.shape else 0
    keep = _tensor.empty(b, (n,), _I64)
    cnt = _tensor.empty(b, (1,), _I64)
    _run(context, b, (b,), "dlk_remove_small_boxes", b.ptr, float(min_size), keep.ptr, cnt.ptr)
    return keep.obj[:_count(cnt)]


def anchor_grid(sizes, aspect_ratios, grid_size, stride, *, like=None, context=None):
    """AnchorGenerator for one feature map: float32 [grid_h * grid_w * len(ratios) * len(sizes), 4], torchvision's
    order. grid_size and stride are (h, w). `like`: an array whose kind/device the output takes (NumPy by default)."""
    s = (ctypes.c_float * len(sizes))(*[float(v) for v in sizes])
    r = (ctypes.c_float * len(aspect_ratios))(*[float(v) for v in aspect_ratios])
    gh, gw = _pair(grid_size)
    sh, sw = _pair(stride)
    base = _tensor.as_tensor(like if like is not None else np.zeros((1,), np.float32), "like")
    out = _tensor.empty(base, (gh * gw * len(sizes) * len(aspect_ratios), 4), _tensor.FLOAT32)
    _run(context, base, (), "dlk_anchor_generator", s, len(sizes), r, len(aspect_ratios), gh, gw, sh, sw, out.ptr)
    return out.obj


# ------------------------------------------------------------------------------------------------ NMS


def _nms_params(score_threshold, top_k):
    p = NmsParams.filled()
    if score_threshold is not None:
        p.score_threshold = float(score_threshold)
    if top_k is not None:
        p.top_k = int(top_k)
    return p


def nms(boxes, scores, iou_threshold, *, score_threshold=None, top_k=None, context=None):
    """torchvision.ops.nms: int64 indices of the kept boxes, by decreasing score."""
    b = _tensor.as_tensor(boxes, "boxes")
    s = _tensor.as_tensor(scores, "scores")
    n = b.shape[0] if b.shape else 0
    keep = _tensor.empty(b, (n,), _I64)
    cnt = _tensor.empty(b, (1,), _I64)
    p = _nms_params(score_threshold, top_k)
    _run(context, b, (b, s), "dlk_nms", ctypes.byref(p), b.ptr, s.ptr, float(iou_threshold), keep.ptr, cnt.ptr)
    return keep.obj[:_count(cnt)]


def batched_nms(boxes, scores, idxs, iou_threshold, *, score_threshold=None, top_k=None, context=None):
    """torchvision.ops.batched_nms: NMS per category idxs (int64), by the coordinate-offset trick."""
    b = _tensor.as_tensor(boxes, "boxes")
    s = _tensor.as_tensor(scores, "scores")
    i = _tensor.as_tensor(idxs, "idxs")
    n = b.shape[0] if b.shape else 0
    keep = _tensor.empty(b, (n,), _I64)
    cnt = _tensor.empty(b, (1,), _I64)
    p = _nms_params(score_threshold, top_k)
    _run(context, b, (b, s, i), "dlk_batched_nms", ctypes.byref(p), b.ptr, s.ptr, i.ptr, float(iou_threshold),
         keep.ptr, cnt.ptr)
    return keep.obj[:_count(cnt)]


__all__ = ["roi_align", "roi_align_backward", "roi_pool", "roi_pool_backward", "fpn_levels", "box_iou",
           "encode_boxes", "decode_boxes", "clip_boxes_to_image", "remove_small_boxes", "anchor_grid", "nms",
           "batched_nms"]
