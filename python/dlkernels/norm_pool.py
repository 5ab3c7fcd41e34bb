"""Batch norm, pooling, unpooling and interpolation, mirroring torch.nn.functional (same names, argument order,
defaults and semantics), plus `<name>_backward` entry points.

Every function takes NumPy arrays or PyTorch tensors and returns the same kind. Layout is NCHW (batch norm also
[N, C] and [N, C, L]); pooling and interpolation take [N, C, H, W] (pooling also [C, H, W]). Anything the C library
rejects raises dlkernels.Error with dlk_last_error(); ValueError/TypeError only for what the C API cannot express.

Notes on torch parity:
  - batch_norm updates running_mean / running_var IN PLACE, like torch. They must be float32 and contiguous (a
    torch tensor is shared zero-copy; a NumPy array must be a C-contiguous float32 array, else ValueError, because an
    update of a temporary copy would be lost).
  - max_pool2d(..., return_indices=True) gives int64 indices into the flattened H*W plane, as torch.
  - interpolate: modes 'nearest' and 'bilinear' on 4-d inputs; scale_factor is passed on to the kernel as torch does
    (unless recompute_scale_factor=True), so source indices match torch's.
"""

import ctypes
import math

import numpy as np

from . import _lib, _tensor
from ._context import run as _run
from ._tensor import ptr as _ptr

# ------------------------------------------------------------------------------------------------ C structs


class BatchNormParams(_lib.Params):
    _init_ = "dlk_batchnorm_params_init"
    _fields_ = [
        ("training", ctypes.c_int),
        ("momentum", ctypes.c_float),
        ("eps", ctypes.c_float),
    ]


class Pool2dParams(_lib.Params):
    _init_ = "dlk_pool2d_params_init"
    _fields_ = [
        ("kernel_h", ctypes.c_int),
        ("kernel_w", ctypes.c_int),
        ("stride_h", ctypes.c_int),
        ("stride_w", ctypes.c_int),
        ("pad_h", ctypes.c_int),
        ("pad_w", ctypes.c_int),
        ("dilation_h", ctypes.c_int),
        ("dilation_w", ctypes.c_int),
        ("ceil_mode", ctypes.c_int),
        ("count_include_pad", ctypes.c_int),
        ("divisor_override", ctypes.c_int),
    ]


class Upsample2dParams(_lib.Params):
    _init_ = "dlk_upsample2d_params_init"
    _fields_ = [
        ("mode", ctypes.c_int),
        ("align_corners", ctypes.c_int),
        ("scale_h", ctypes.c_double),
        ("scale_w", ctypes.c_double),
    ]


_T = _lib.TensorPtr
_lib.declare({
    "dlk_batchnorm_forward": _lib.op_prototype(ctypes.POINTER(BatchNormParams), _T, _T, _T, _T, _T, _T, _T, _T),
    "dlk_batchnorm_backward": _lib.op_prototype(ctypes.POINTER(BatchNormParams), _T, _T, _T, _T, _T, _T, _T, _T, _T,
                                                _T),
    "dlk_max_pool2d_forward": _lib.op_prototype(ctypes.POINTER(Pool2dParams), _T, _T, _T),
    "dlk_max_pool2d_backward": _lib.op_prototype(ctypes.POINTER(Pool2dParams), _T, _T, _T),
    "dlk_avg_pool2d_forward": _lib.op_prototype(ctypes.POINTER(Pool2dParams), _T, _T),
    "dlk_avg_pool2d_backward": _lib.op_prototype(ctypes.POINTER(Pool2dParams), _T, _T),
    "dlk_adaptive_avg_pool2d_forward": _lib.op_prototype(_T, _T),
    "dlk_adaptive_avg_pool2d_backward": _lib.op_prototype(_T, _T),
    "dlk_max_unpool2d_forward": _lib.op_prototype(_T, _T, _T),
    "dlk_max_unpool2d_backward": _lib.op_prototype(_T, _T, _T),
    "dlk_upsample2d_forward": _lib.op_prototype(ctypes.POINTER(Upsample2dParams), _T, _T),
    "dlk_upsample2d_backward": _lib.op_prototype(ctypes.POINTER(Upsample2dParams), _T, _T),
}, params=(BatchNormParams, Pool2dParams, Upsample2dParams))

_NEAREST, _BILINEAR = 0, 1


def _pair(name, v):
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            return int(v[0]), int(v[0])
        if len(v) != 2:
            raise ValueError("dlkernels: %s must be an int or a pair, got %r" % (name, v))
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _shape(t):
    """Shape of an array or a Tensor; a tuple is taken as the shape itself."""
    return t if isinstance(t, tuple) else tuple(t.shape)


# ------------------------------------------------------------------------------------------------ batch norm


def _bn_params(training, momentum, eps):
    p = BatchNormParams.filled()
    p.training = 1 if training else 0
    if momentum is None:
        raise ValueError("dlkernels.batch_norm: momentum=None (cumulative moving average) is not supported; pass a "
                         "float")
    p.momentum = float(momentum)
    p.eps = float(eps)
    return p


def _in_place(obj, name):
    """A tensor the library writes in place: the caller's own memory, never a temporary copy."""
    if obj is None:
        return None
    if isinstance(obj, np.ndarray) and not obj.flags.c_contiguous:
        raise ValueError("dlkernels.batch_norm: %s is updated in place and must be C-contiguous" % name)
    if _tensor.is_torch(obj) and not obj.is_contiguous():
        raise ValueError("dlkernels.batch_norm: %s is updated in place and must be contiguous" % name)
    if not _tensor.is_array(obj):
        raise TypeError("dlkernels.batch_norm: %s is updated in place: pass a NumPy array or a torch tensor, got %s"
                        % (name, type(obj).__name__))
    return _tensor.as_tensor(obj, name)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5,
               *, return_stats=False, context=None):
    """Batch normalisation over dim 1 like torch.nn.functional.batch_norm.

    training=True normalises with the batch mean and biased variance and, when running_mean/running_var are given,
    updates them in place: running = (1 - momentum) * running + momentum * stat, with the unbiased variance.
    training=False normalises with running_mean/running_var. weight/bias: float32 [C] or None.
    return_stats: also return the float32 save_mean and save_invstd (training only; batch_norm_backward takes them).
    """
    x = _tensor.as_tensor(input, "input")
    rm = _in_place(running_mean, "running_mean")
    rv = _in_place(running_var, "running_var")
    w = _tensor.as_tensor(weight, "weight")
    b = _tensor.as_tensor(bias, "bias")
    params = _bn_params(training, momentum, eps)
    y = _tensor.empty(x, x.shape)
    sm = si = None
    if training and len(x.shape) >= 2:
        sm = _tensor.empty(x, (x.shape[1],), _tensor.FLOAT32)
        si = _tensor.empty(x, (x.shape[1],), _tensor.FLOAT32)
    _run(context, x, (x, rm, rv, w, b), "dlk_batchnorm_forward", ctypes.byref(params), x.ptr, _ptr(w), _ptr(b),
         _ptr(rm), _ptr(rv), y.ptr, _ptr(sm), _ptr(si))
    if return_stats:
        return y.obj, _tensor.array_of(sm), _tensor.array_of(si)
    return y.obj


def batch_norm_backward(grad_output, input, weight=None, running_mean=None, running_var=None, save_mean=None,
                        save_invstd=None, training=False, eps=1e-5, output_mask=(True, True, True), *,
                        context=None):
    """Gradients of batch_norm in torch's native_batch_norm_backward order: returns (grad_input, grad_weight,
    grad_bias), each None where output_mask says so. Training uses save_mean/save_invstd from
    batch_norm(..., return_stats=True); eval uses running_mean/running_var and eps. grad_weight/grad_bias are
    float32 [C]."""
    dy = _tensor.as_tensor(grad_output, "grad_output")
    x = _tensor.as_tensor(input, "input")
    w = _tensor.as_tensor(weight, "weight")
    rm = _tensor.as_tensor(running_mean, "running_mean")
    rv = _tensor.as_tensor(running_var, "running_var")
    sm = _tensor.as_tensor(save_mean, "save_mean")
    si = _tensor.as_tensor(save_invstd, "save_invstd")
    params = _bn_params(training, 0.1, eps)
    c = (x.shape[1],) if len(x.shape) >= 2 else (0,)
    dx = _tensor.empty(dy, x.shape) if output_mask[0] else None
    dw = _tensor.empty(dy, c, _tensor.FLOAT32) if output_mask[1] else None
    db = _tensor.empty(dy, c, _tensor.FLOAT32) if output_mask[2] else None
    _run(context, dy, (dy, x, w, rm, rv, sm, si), "dlk_batchnorm_backward", ctypes.byref(params), dy.ptr, x.ptr,
         _ptr(w), _ptr(rm), _ptr(rv), _ptr(sm), _ptr(si), _ptr(dx), _ptr(dw), _ptr(db))
    return tuple(_tensor.array_of(t) for t in (dx, dw, db))


# ------------------------------------------------------------------------------------------------ pooling


def _pool_params(kernel_size, stride, padding, dilation=1, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
    p = Pool2dParams.filled()
    p.kernel_h, p.kernel_w = _pair("kernel_size", kernel_size)
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        p.stride_h, p.stride_w = p.kernel_h, p.kernel_w
    else:
        p.stride_h, p.stride_w = _pair("stride", stride)
        if p.stride_h <= 0 or p.stride_w <= 0:
            raise ValueError("dlkernels: stride should be greater than zero, got %r" % (stride,))
    p.pad_h, p.pad_w = _pair("padding", padding)
    p.dilation_h, p.dilation_w = _pair("dilation", dilation)
    p.ceil_mode = 1 if ceil_mode else 0
    p.count_include_pad = 1 if count_include_pad else 0
    if divisor_override is not None:
        if int(divisor_override) == 0:
            raise ValueError("dlkernels.avg_pool2d: divisor must be not zero")
        p.divisor_override = int(divisor_override)
    return p


def _pool_out(n, k, s, p, d, ceil_mode):
    """torch's pooling_output_shape; at least 1 so the library, not Python, reports a too-small output."""
    num = n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)
    o = num // s + 1 if s > 0 else 1
    if ceil_mode and (o - 1) * s >= n + p:
        o -= 1
    return max(o, 1)


def _pooled_shape(shape, p):
    if len(shape) < 2:
        return shape
    oh = _pool_out(shape[-2], p.kernel_h, p.stride_h, p.pad_h, p.dilation_h, p.ceil_mode)
    ow = _pool_out(shape[-1], p.kernel_w, p.stride_w, p.pad_w, p.dilation_w, p.ceil_mode)
    return tuple(shape[:-2]) + (oh, ow)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False, *,
               context=None):
    """2d max pooling like torch.nn.functional.max_pool2d; return_indices also gives the int64 argmax positions in
    the flattened H*W input plane (first maximum wins, NaN propagates)."""
    x = _tensor.as_tensor(input, "input")
    p = _pool_params(kernel_size, stride, padding, dilation, ceil_mode)
    shape = _pooled_shape(x.shape, p)
    y = _tensor.empty(x, shape)
    idx = _tensor.empty(x, shape, (_lib.DLDataTypeCode.kDLInt, 64)) if return_indices else None
    _run(context, x, (x,), "dlk_max_pool2d_forward", ctypes.byref(p), x.ptr, y.ptr, _ptr(idx))
    return (y.obj, idx.obj) if return_indices else y.obj


def max_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                        indices=None, *, context=None):
    """Gradient of max_pool2d from its indices (torch's max_pool2d_with_indices_backward order); `input` gives the
    input's shape (an array or a shape tuple). Deterministic."""
    if indices is None:
        raise TypeError("dlkernels.max_pool2d_backward: indices (from max_pool2d(..., return_indices=True)) are "
                        "required")
    dy = _tensor.as_tensor(grad_output, "grad_output")
    idx = _tensor.as_tensor(indices, "indices")
    p = _pool_params(kernel_size, stride, padding, dilation, ceil_mode)
    dx = _tensor.empty(dy, _shape(input))
    _run(context, dy, (dy, idx), "dlk_max_pool2d_backward", ctypes.byref(p), dy.ptr, idx.ptr, dx.ptr)
    return dx.obj


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, context=None):
    """2d average pooling like torch.nn.functional.avg_pool2d."""
    x = _tensor.as_tensor(input, "input")
    p = _pool_params(kernel_size, stride, padding, 1, ceil_mode, count_include_pad, divisor_override)
    y = _tensor.empty(x, _pooled_shape(x.shape, p))
    _run(context, x, (x,), "dlk_avg_pool2d_forward", ctypes.byref(p), x.ptr, y.ptr)
    return y.obj


def avg_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None, *, context=None):
    """Gradient of avg_pool2d (torch's avg_pool2d_backward order); `input` gives the input's shape. Deterministic."""
    dy = _tensor.as_tensor(grad_output, "grad_output")
    p = _pool_params(kernel_size, stride, padding, 1, ceil_mode, count_include_pad, divisor_override)
    dx = _tensor.empty(dy, _shape(input))
    _run(context, dy, (dy,), "dlk_avg_pool2d_backward", ctypes.byref(p), dy.ptr, dx.ptr)
    return dx.obj


def _adaptive_size(shape, output_size):
    oh, ow = (output_size, output_size) if not isinstance(output_size, (tuple, list)) else tuple(output_size)
    oh = shape[-2] if oh is None else int(oh)
    ow = shape[-1] if ow is None else int(ow)
    return tuple(shape[:-2]) + (oh, ow)


def adaptive_avg_pool2d(input, output_size, *, context=None):
    """Adaptive 2d average pooling like torch.nn.functional.adaptive_avg_pool2d (None in output_size keeps the
    input's size)."""
    x = _tensor.as_tensor(input, "input")
    if len(x.shape) < 2:
        raise ValueError("dlkernels.adaptive_avg_pool2d: input must be 3-d or 4-d, got shape %s" % (x.shape,))
    y = _tensor.empty(x, _adaptive_size(x.shape, output_size))
    _run(context, x, (x,), "dlk_adaptive_avg_pool2d_forward", x.ptr, y.ptr)
    return y.obj


def adaptive_avg_pool2d_backward(grad_output, input, *, context=None):
    """Gradient of adaptive_avg_pool2d; `input` gives the input's shape. Deterministic."""
    dy = _tensor.as_tensor(grad_output, "grad_output")
    dx = _tensor.empty(dy, _shape(input))
    _run(context, dy, (dy,), "dlk_adaptive_avg_pool2d_backward", dy.ptr, dx.ptr)
    return dx.obj


def _unpool_size(shape, kernel_size, stride, padding, output_size):
    kh, kw = _pair("kernel_size", kernel_size)
    sh, sw = (kh, kw) if stride is None else _pair("stride", stride)
    ph, pw = _pair("padding", padding)
    default = ((shape[-2] - 1) * sh - 2 * ph + kh, (shape[-1] - 1) * sw - 2 * pw + kw)
    if output_size is None:
        size = default
    else:
        size = tuple(int(s) for s in output_size)
        if len(size) == len(shape):
            size = size[-2:]
        if len(size) != 2:
            raise ValueError("dlkernels.max_unpool2d: output_size should be a sequence of 2 or %d elements, got %r"
                             % (len(shape), output_size))
        for d, (s, st) in enumerate(zip(size, (sh, sw))):
            if not default[d] - st < s < default[d] + st:
                raise ValueError("dlkernels.max_unpool2d: invalid output_size %r (dim %d must be between %d and %d)"
                                 % (output_size, d, default[d] - st + 1, default[d] + st - 1))
    return tuple(shape[:-2]) + size


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None, *, context=None):
    """Partial inverse of max_pool2d like torch.nn.functional.max_unpool2d: zeros except at `indices` (int64, in the
    output's H*W plane). Duplicate indices: the last input in row-major order wins, deterministically."""
    x = _tensor.as_tensor(input, "input")
    idx = _tensor.as_tensor(indices, "indices")
    if len(x.shape) < 2:
        raise ValueError("dlkernels.max_unpool2d: input must be 3-d or 4-d, got shape %s" % (x.shape,))
    y = _tensor.empty(x, _unpool_size(x.shape, kernel_size, stride, padding, output_size))
    _run(context, x, (x, idx), "dlk_max_unpool2d_forward", x.ptr, idx.ptr, y.ptr)
    return y.obj


def max_unpool2d_backward(grad_output, indices, *, context=None):
    """Gradient of max_unpool2d: grad_input[i] = grad_output[indices[i]] within each plane."""
    dy = _tensor.as_tensor(grad_output, "grad_output")
    idx = _tensor.as_tensor(indices, "indices")
    dx = _tensor.empty(dy, idx.shape)
    _run(context, dy, (dy, idx), "dlk_max_unpool2d_backward", dy.ptr, idx.ptr, dx.ptr)
    return dx.obj


# ------------------------------------------------------------------------------------------------ interpolate

_MODES = {"nearest": _NEAREST, "bilinear": _BILINEAR}


def _up_params(in_hw, size, scale_factor, mode, align_corners, recompute_scale_factor, name):
    if mode not in _MODES:
        raise ValueError("dlkernels.%s: mode must be 'nearest' or 'bilinear' (2d), got %r" % (name, mode))
    if mode == "nearest" and align_corners is not None:
        raise ValueError("dlkernels.%s: align_corners option can only be set with the interpolating modes: linear "
                         "| bilinear | bicubic | trilinear" % name)
    if (size is None) == (scale_factor is None):
        raise ValueError("dlkernels.%s: exactly one of size and scale_factor must be given" % name)
    scales = (0.0, 0.0)
    if size is not None:
        out = _pair("size", size)
    else:
        sf = tuple(float(s) for s in scale_factor) if isinstance(scale_factor, (tuple, list)) else (
            float(scale_factor),) * 2
        if len(sf) != 2:
            raise ValueError("dlkernels.%s: scale_factor must be a number or a pair, got %r" % (name, scale_factor))
        out = tuple(int(math.floor(float(n) * s)) for n, s in zip(in_hw, sf))
        if not recompute_scale_factor:
            scales = sf
    p = Upsample2dParams.filled()
    p.mode = _MODES[mode]
    p.align_corners = 1 if align_corners else 0
    p.scale_h, p.scale_w = scales
    return p, out


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, *, context=None):
    """Resampling of a 4-d [N, C, H, W] input like torch.nn.functional.interpolate, modes 'nearest' and 'bilinear'
    (align_corners True or False), with torch's output size and source-index rules."""
    x = _tensor.as_tensor(input, "input")
    if len(x.shape) != 4:
        raise ValueError("dlkernels.interpolate: only 4-d input (2 spatial dims) is supported, got shape %s"
                         % (x.shape,))
    p, out = _up_params(x.shape[2:], size, scale_factor, mode, align_corners, recompute_scale_factor, "interpolate")
    y = _tensor.empty(x, tuple(x.shape[:2]) + tuple(out))
    _run(context, x, (x,), "dlk_upsample2d_forward", ctypes.byref(p), x.ptr, y.ptr)
    return y.obj


def interpolate_backward(grad_output, input_size, size=None, scale_factor=None, mode="nearest", align_corners=None,
                         recompute_scale_factor=None, *, context=None):
    """Gradient of interpolate: `input_size` is the forward input's shape (N, C, H, W); the other arguments are the
    forward's. Deterministic (a gather, no atomics)."""
    dy = _tensor.as_tensor(grad_output, "grad_output")
    input_size = tuple(int(s) for s in input_size)
    if len(input_size) != 4:
        raise ValueError("dlkernels.interpolate_backward: input_size must have 4 entries, got %r" % (input_size,))
    if size is None and scale_factor is None:
        size = tuple(dy.shape[2:])
    p, _ = _up_params(input_size[2:], size, scale_factor, mode, align_corners, recompute_scale_factor,
                      "interpolate_backward")
    dx = _tensor.empty(dy, input_size)
    _run(context, dy, (dy,), "dlk_upsample2d_backward", ctypes.byref(p), dy.ptr, dx.ptr)
    return dx.obj
