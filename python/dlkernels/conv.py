"""2d convolution and transposed convolution, mirroring torch.nn.functional.conv2d / conv_transpose2d (same names,
argument order, defaults and semantics), plus `<name>_backward` entry points and FCN's bilinear weight initialiser.

Every function takes NumPy arrays or PyTorch tensors and returns the same kind. Activations are [N, C, H, W]
(batched; a 3-d [C, H, W] input is treated as a batch of one, as torch does); weights are PyTorch's layouts,
[out, in/groups, kh, kw] for conv2d and [in, out/groups, kh, kw] for conv_transpose2d. Extra keyword arguments
beyond torch's:
  - layout="NHWC": activations given as [N, H, W, C] (channels-last), weights unchanged;
  - padding may also be a 4-tuple (top, bottom, left, right) for asymmetric padding;
  - padding="same" / "valid" for conv2d as in torch (for "same" the extra pixel of an even total goes to the
    bottom/right, as torch).
Anything the C library rejects raises dlkernels.Error with dlk_last_error().
"""

import ctypes

from . import _lib, _tensor
from ._context import run as _run
from ._tensor import ptr as _ptr

__all__ = ["conv2d", "conv2d_backward", "conv_transpose2d", "conv_transpose2d_backward", "bilinear_upsampling_"]


class Conv2dParams(_lib.Params):
    _init_ = "dlk_conv2d_params_init"
    _fields_ = [
        ("stride", ctypes.c_int * 2),
        ("padding", ctypes.c_int * 4),
        ("dilation", ctypes.c_int * 2),
        ("groups", ctypes.c_int),
        ("layout", ctypes.c_int),
        ("output_padding", ctypes.c_int * 2),
    ]


_T = _lib.TensorPtr
_P = ctypes.POINTER(Conv2dParams)
_lib.declare({
    "dlk_conv2d_forward": _lib.op_prototype(_P, _T, _T, _T, _T),
    "dlk_conv2d_backward_data": _lib.op_prototype(_P, _T, _T, _T),
    "dlk_conv2d_backward_weight": _lib.op_prototype(_P, _T, _T, _T, _T),
    "dlk_conv_transpose2d_forward": _lib.op_prototype(_P, _T, _T, _T, _T),
    "dlk_conv_transpose2d_backward_data": _lib.op_prototype(_P, _T, _T, _T),
    "dlk_conv_transpose2d_backward_weight": _lib.op_prototype(_P, _T, _T, _T, _T),
    "dlk_init_bilinear_upsampling": _lib.op_prototype(ctypes.c_int, _T),
}, params=(Conv2dParams,))

_NCHW, _NHWC = 0, 1


def _pair(name, v):
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            return int(v[0]), int(v[0])
        if len(v) != 2:
            raise ValueError("dlkernels: %s must be an int or a pair, got %r" % (name, v))
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _padding4(padding):
    """int, (ph, pw) or (top, bottom, left, right) -> (top, bottom, left, right)."""
    if isinstance(padding, (tuple, list)) and len(padding) == 4:
        return tuple(int(p) for p in padding)
    ph, pw = _pair("padding", padding)
    return ph, ph, pw, pw


def _layout(layout):
    if layout in ("NCHW", "nchw", None):
        return _NCHW
    if layout in ("NHWC", "nhwc", "channels_last"):
        return _NHWC
    raise ValueError("dlkernels: layout must be 'NCHW' or 'NHWC', got %r" % (layout,))


def _params(stride, padding, dilation, groups, layout, output_padding=0, kernel=None):
    p = Conv2dParams.filled()
    p.stride[0], p.stride[1] = _pair("stride", stride)
    p.dilation[0], p.dilation[1] = _pair("dilation", dilation)
    if isinstance(padding, str):
        if padding == "valid":
            pads = (0, 0, 0, 0)
        elif padding == "same":
            if p.stride[0] != 1 or p.stride[1] != 1:
                raise ValueError("dlkernels.conv2d: padding='same' is not supported for strided convolutions")
            pads = []
            for a, k in enumerate(kernel):
                total = p.dilation[a] * (k - 1)
                pads += [total // 2, total - total // 2]
            pads = tuple(pads)
        else:
            raise ValueError("dlkernels.conv2d: invalid padding string %r, should be one of {'valid', 'same'}"
                             % (padding,))
    else:
        pads = _padding4(padding)
    for i in range(4):
        p.padding[i] = pads[i]
    p.groups = int(groups)
    p.layout = _layout(layout)
    p.output_padding[0], p.output_padding[1] = _pair("output_padding", output_padding)
    return p


def _conv_out(n, k, s, lo, hi, d):
    v = (n + lo + hi - d * (k - 1) - 1)
    return max(v // s + 1 if s > 0 else 1, 1)  # at least 1: the library, not Python, reports a too-small output


def _tconv_out(n, k, s, lo, hi, d, op):
    return max((n - 1) * s - lo - hi + d * (k - 1) + op + 1, 1)


def _batched(t, name):
    """(tensor, unbatched): a 3-d input gains a batch dim of one, as torch accepts."""
    x = _tensor.as_tensor(t, name)
    if x is not None and len(x.shape) == 3:
        return _tensor.with_shape(x, (1,) + tuple(x.shape)), True
    return x, False


def _nchw(shape, layout):
    """(N, C, H, W) of an activation shape in `layout`."""
    if len(shape) != 4:
        return shape
    if layout == _NHWC:
        return shape[0], shape[3], shape[1], shape[2]
    return tuple(shape)


def _act(n, c, h, w, layout):
    return (n, h, w, c) if layout == _NHWC else (n, c, h, w)


def _unbatch(t, unbatched):
    if t is None or not unbatched:
        return t
    return t.reshape(tuple(t.shape[1:]))


def _out_shape(x, w, p, transposed):
    n, c, h, wd = _nchw(x.shape, p.layout)
    if len(w.shape) != 4 or len(x.shape) != 4:
        return x.shape  # the library reports the rank
    kh, kw = w.shape[2], w.shape[3]
    if transposed:
        oc = w.shape[1] * p.groups
        oh = _tconv_out(h, kh, p.stride[0], p.padding[0], p.padding[1], p.dilation[0], p.output_padding[0])
        ow = _tconv_out(wd, kw, p.stride[1], p.padding[2], p.padding[3], p.dilation[1], p.output_padding[1])
    else:
        oc = w.shape[0]
        oh = _conv_out(h, kh, p.stride[0], p.padding[0], p.padding[1], p.dilation[0])
        ow = _conv_out(wd, kw, p.stride[1], p.padding[2], p.padding[3], p.dilation[1])
    return _act(n, oc, oh, ow, p.layout)


def _forward(name, input, weight, bias, p, transposed, context):
    x, unbatched = _batched(input, "input")
    w = _tensor.as_tensor(weight, "weight")
    b = _tensor.as_tensor(bias, "bias")
    y = _tensor.empty(x, _out_shape(x, w, p, transposed))
    _run(context, x, (x, w, b), name, ctypes.byref(p), x.ptr, w.ptr, _ptr(b), y.ptr)
    return _unbatch(y.obj, unbatched)


def _backward(names, grad_output, input, weight, p, output_mask, bias_wanted, context):
    dy, unbatched = _batched(grad_output, "grad_output")
    x, _ = _batched(input, "input")
    w = _tensor.as_tensor(weight, "weight")
    dx = dw = db = None
    if output_mask[0]:
        dx = _tensor.empty(dy, x.shape)
        _run(context, dy, (dy, w), names[0], ctypes.byref(p), dy.ptr, w.ptr, dx.ptr)
    if output_mask[1] or (bias_wanted and output_mask[2]):
        dwt = _tensor.empty(dy, w.shape)
        if bias_wanted and output_mask[2]:
            oc = _nchw(dy.shape, p.layout)[1] if len(dy.shape) == 4 else 0
            db = _tensor.empty(dy, (oc,))
        _run(context, dy, (dy, x), names[1], ctypes.byref(p), x.ptr, dy.ptr, dwt.ptr, _ptr(db))
        dw = dwt if output_mask[1] else None
    return (_unbatch(_tensor.array_of(dx), unbatched), _tensor.array_of(dw), _tensor.array_of(db))


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, layout="NCHW", context=None):
    """2d convolution like torch.nn.functional.conv2d (a cross-correlation). input [N, C_in, H, W], weight
    [C_out, C_in/groups, kh, kw], bias [C_out] or None; all float32, float16 or bfloat16 (one dtype)."""
    w = _tensor.as_tensor(weight, "weight")
    kernel = tuple(w.shape[2:]) if w is not None and len(w.shape) == 4 else (1, 1)
    p = _params(stride, padding, dilation, groups, layout, kernel=kernel)
    return _forward("dlk_conv2d_forward", input, w, bias, p, False, context)


def conv2d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1,
                    output_mask=(True, True, True), *, layout="NCHW", context=None):
    """Gradients of conv2d (torch's convolution_backward order): (grad_input, grad_weight, grad_bias), each None
    where output_mask says so. grad_bias is the sum of grad_output over N, H, W. Deterministic."""
    w = _tensor.as_tensor(weight, "weight")
    kernel = tuple(w.shape[2:]) if w is not None and len(w.shape) == 4 else (1, 1)
    p = _params(stride, padding, dilation, groups, layout, kernel=kernel)
    return _backward(("dlk_conv2d_backward_data", "dlk_conv2d_backward_weight"), grad_output, input, w, p,
                     output_mask, True, context)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     layout="NCHW", context=None):
    """2d transposed convolution like torch.nn.functional.conv_transpose2d. input [N, C_in, H, W], weight
    [C_in, C_out/groups, kh, kw], bias [C_out] or None. H_out = (H - 1) * stride - 2 * padding + dilation * (kh - 1)
    + output_padding + 1."""
    p = _params(stride, padding, dilation, groups, layout, output_padding)
    return _forward("dlk_conv_transpose2d_forward", input, weight, bias, p, True, context)


def conv_transpose2d_backward(grad_output, input, weight, stride=1, padding=0, output_padding=0, groups=1,
                              dilation=1, output_mask=(True, True, True), *, layout="NCHW", context=None):
    """Gradients of conv_transpose2d: (grad_input, grad_weight, grad_bias), each None where output_mask says so.
    Deterministic."""
    p = _params(stride, padding, dilation, groups, layout, output_padding)
    return _backward(("dlk_conv_transpose2d_backward_data", "dlk_conv_transpose2d_backward_weight"), grad_output,
                     input, weight, p, output_mask, True, context)


def bilinear_upsampling_(weight, groups=1, *, context=None):
    """FCN's get_upsampling_weight, in place: weight [C_in, C_out/groups, k, k] of a conv_transpose2d gets the
    bilinear filter on its diagonal channels (every channel when C_out/groups == 1), zeros elsewhere. Returns it."""
    if _tensor.is_torch(weight) and not weight.is_contiguous():
        raise ValueError("dlkernels.bilinear_upsampling_: weight is written in place and must be contiguous")
    w = _tensor.as_tensor(weight, "weight")
    _run(context, w, (w,), "dlk_init_bilinear_upsampling", int(groups), w.ptr)
    return weight
