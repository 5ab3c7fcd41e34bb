"""Activations, broadcast add/mul, concat/split — mirroring torch.nn.functional / torch: same names, argument order,
defaults and semantics.

    from dlkernels import elementwise as ew
    y = ew.gelu(x, approximate="tanh");  dx = ew.gelu_backward(dy, x, approximate="tanh")
    z = ew.add(a, b, alpha=0.5);         da, db = ew.add_backward(dz, a.shape, b.shape, alpha=0.5)
    u = ew.cat([skip, up], dim=1);       s, t = ew.split(u, [skip.shape[1], up.shape[1]], dim=1)

Every function takes NumPy arrays (float32/float16) or torch tensors (also bfloat16) and returns the kind of its
first tensor argument. Math is fp32 inside. Extra arguments exist only for what torch lacks: the backward entry
points `<name>_backward`, `sum_to_shape`, `scale`, `residual_add`, and `context=`. Differences from torch: `split`
returns copies, not views; `add`/`mul` do not promote dtypes (both operands share one dtype; a Python number is
converted to the tensor's dtype).
"""

import ctypes

import numpy as np

from . import _lib, _tensor
from ._context import run as _run
from ._tensor import ptr as _ptr

__all__ = [
    "relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid", "silu", "relu_backward", "leaky_relu_backward",
    "elu_backward", "gelu_backward", "tanh_backward", "sigmoid_backward", "silu_backward", "add", "mul",
    "add_backward", "mul_backward", "sum_to_shape", "scale", "residual_add", "cat", "split",
]

RELU, LEAKY_RELU, ELU, GELU, GELU_TANH, TANH, SIGMOID, SILU = range(8)  # dlk_activation_kind


class ActivationParams(_lib.Params):
    _init_ = "dlk_activation_params_init"
    _fields_ = [
        ("kind", ctypes.c_int),
        ("negative_slope", ctypes.c_float),
        ("alpha", ctypes.c_float),
    ]


_T = _lib.TensorPtr
_c_int, _c_float = ctypes.c_int, ctypes.c_float
_lib.declare({
    "dlk_activation_forward": _lib.op_prototype(ctypes.POINTER(ActivationParams), _T, _T),
    "dlk_activation_backward": _lib.op_prototype(ctypes.POINTER(ActivationParams), _T, _T, _T, _T),
    "dlk_add_forward": _lib.op_prototype(_T, _T, _c_float, _T),
    "dlk_add_backward": _lib.op_prototype(_T, _c_float, _T, _T),
    "dlk_mul_forward": _lib.op_prototype(_T, _T, _T),
    "dlk_mul_backward": _lib.op_prototype(_T, _T, _T, _T, _T),
    "dlk_sum_to_shape": _lib.op_prototype(_T, _c_float, _T),
    "dlk_scale": _lib.op_prototype(_T, _c_float, _T),
    "dlk_residual_add": _lib.op_prototype(_T, _c_float, _T),
    "dlk_concat": _lib.op_prototype(ctypes.POINTER(_T), _c_int, _c_int, _T),
    "dlk_split": _lib.op_prototype(_T, _c_int, ctypes.POINTER(_T), _c_int),
}, params=(ActivationParams,))


def _params(kind, negative_slope=0.01, alpha=1.0):
    p = ActivationParams.filled()
    p.kind = int(kind)
    p.negative_slope = float(negative_slope)
    p.alpha = float(alpha)
    return p


def _in_place(x, name):
    """The DLTensor of `x` itself (not a copy), for inplace=True: contiguous arrays only."""
    t = _tensor.as_tensor(x, name)
    if t.obj is not x and not (t.kind == "torch" and t.obj.data_ptr() == x.data_ptr()):
        raise ValueError("dlkernels: %s must be a contiguous NumPy array or torch tensor to be updated in place" % name)
    return t


def _activation(kind, input, inplace, context, negative_slope=0.01, alpha=1.0):
    x = _in_place(input, "input") if inplace else _tensor.as_tensor(input, "input")
    y = x if inplace else _tensor.empty(x, x.shape)
    p = _params(kind, negative_slope, alpha)
    _run(context, x, (x,), "dlk_activation_forward", ctypes.byref(p), x.ptr, y.ptr)
    return input if inplace else y.obj


def _activation_backward(kind, grad_output, input, output, context, negative_slope=0.01, alpha=1.0):
    dy = _tensor.as_tensor(grad_output, "grad_output")
    x = _tensor.as_tensor(input, "input")
    y = _tensor.as_tensor(output, "output")
    dx = _tensor.empty(dy, dy.shape)
    p = _params(kind, negative_slope, alpha)
    _run(context, dy, (dy, x, y), "dlk_activation_backward", ctypes.byref(p), _ptr(x), _ptr(y), dy.ptr, dx.ptr)
    return dx.obj


_GELU_KINDS = {"none": GELU, "tanh": GELU_TANH}


def _gelu_kind(approximate):
    if approximate not in _GELU_KINDS:
        raise ValueError("dlkernels.gelu: approximate must be 'none' or 'tanh', got %r" % (approximate,))
    return _GELU_KINDS[approximate]


# ------------------------------------------------------------------------------------------------ activations


def relu(input, inplace=False, *, context=None):
    """max(input, 0) (NaN stays NaN)."""
    return _activation(RELU, input, inplace, context)


def leaky_relu(input, negative_slope=0.01, inplace=False, *, context=None):
    """input where > 0, else negative_slope * input."""
    return _activation(LEAKY_RELU, input, inplace, context, negative_slope=negative_slope)


def elu(input, alpha=1.0, inplace=False, *, context=None):
    """input where > 0, else alpha * (exp(input) - 1)."""
    return _activation(ELU, input, inplace, context, alpha=alpha)


def gelu(input, approximate="none", *, context=None):
    """input * Phi(input) (approximate='none', with erf) or its tanh approximation (approximate='tanh')."""
    return _activation(_gelu_kind(approximate), input, False, context)


def tanh(input, *, context=None):
    return _activation(TANH, input, False, context)


def sigmoid(input, *, context=None):
    return _activation(SIGMOID, input, False, context)


def silu(input, inplace=False, *, context=None):
    """input * sigmoid(input)."""
    return _activation(SILU, input, inplace, context)


def relu_backward(grad_output, input=None, *, output=None, context=None):
    """grad_output where the saved input (or output) is > 0, else 0 (the gradient at 0 is 0, as in torch)."""
    return _activation_backward(RELU, grad_output, input, output, context)


def leaky_relu_backward(grad_output, input, negative_slope=0.01, *, context=None):
    """grad_output where input > 0, else negative_slope * grad_output."""
    return _activation_backward(LEAKY_RELU, grad_output, input, None, context, negative_slope=negative_slope)


def elu_backward(grad_output, input=None, alpha=1.0, *, output=None, context=None):
    """From the saved input (alpha * exp(input) where input <= 0) or, input None, from the output (output + alpha
    where output <= 0)."""
    return _activation_backward(ELU, grad_output, input, output, context, alpha=alpha)


def gelu_backward(grad_output, input, approximate="none", *, context=None):
    return _activation_backward(_gelu_kind(approximate), grad_output, input, None, context)


def tanh_backward(grad_output, output=None, *, input=None, context=None):
    """grad_output * (1 - output^2), torch's tanh_backward(grad_output, output); from the input when no output."""
    return _activation_backward(TANH, grad_output, input, output, context)


def sigmoid_backward(grad_output, output=None, *, input=None, context=None):
    """grad_output * output * (1 - output), torch's sigmoid_backward(grad_output, output)."""
    return _activation_backward(SIGMOID, grad_output, input, output, context)


def silu_backward(grad_output, input, *, context=None):
    return _activation_backward(SILU, grad_output, input, None, context)


# ------------------------------------------------------------------------------------- broadcast arithmetic


def _operand(other, like, name):
    """A tensor operand; Python numbers become 0-d tensors of like's kind and dtype."""
    if isinstance(other, (int, float, np.number)) and not isinstance(other, bool):
        if like.kind == "torch":
            import torch

            return _tensor.as_tensor(torch.tensor(float(other), dtype=like.obj.dtype, device=like.obj.device), name)
        return _tensor.as_tensor(np.asarray(other, dtype=like.obj.dtype), name)
    return _tensor.as_tensor(other, name)


def _broadcast(a, b):
    try:
        return tuple(np.broadcast_shapes(a, b))
    except ValueError:
        return tuple(a) if len(a) >= len(b) else tuple(b)  # the library names both shapes in its error


def add(input, other, *, alpha=1, context=None):
    """input + alpha * other, broadcast (torch.add)."""
    a = _tensor.as_tensor(input, "input")
    b = _operand(other, a, "other")
    out = _tensor.empty(a, _broadcast(a.shape, b.shape))
    _run(context, a, (a, b), "dlk_add_forward", a.ptr, b.ptr, float(alpha), out.ptr)
    return out.obj


def mul(input, other, *, context=None):
    """input * other, broadcast (torch.mul)."""
    a = _tensor.as_tensor(input, "input")
    b = _operand(other, a, "other")
    out = _tensor.empty(a, _broadcast(a.shape, b.shape))
    _run(context, a, (a, b), "dlk_mul_forward", a.ptr, b.ptr, out.ptr)
    return out.obj


def add_backward(grad_output, input_shape, other_shape, alpha=1, *, context=None):
    """(grad_input, grad_other) of add: grad_output summed to each operand's shape, grad_other times alpha. A shape
    of None skips that gradient (returned as None)."""
    dy = _tensor.as_tensor(grad_output, "grad_output")
    da = None if input_shape is None else _tensor.empty(dy, tuple(input_shape))
    db = None if other_shape is None else _tensor.empty(dy, tuple(other_shape))
    _run(context, dy, (dy,), "dlk_add_backward", dy.ptr, float(alpha), _ptr(da), _ptr(db))
    return (_tensor.array_of(da), _tensor.array_of(db))


def mul_backward(grad_output, input, other, *, needs_input_grad=(True, True), context=None):
    """(grad_input, grad_other) of mul: sum_to_shape(grad_output * other, input.shape) and
    sum_to_shape(grad_output * input, other.shape)."""
    dy = _tensor.as_tensor(grad_output, "grad_output")
    a = _tensor.as_tensor(input, "input")
    b = _operand(other, a, "other")
    da = _tensor.empty(dy, a.shape) if needs_input_grad[0] else None
    db = _tensor.empty(dy, b.shape) if needs_input_grad[1] else None
    _run(context, dy, (dy, a, b), "dlk_mul_backward", a.ptr, b.ptr, dy.ptr, _ptr(da), _ptr(db))
    return (_tensor.array_of(da), _tensor.array_of(db))


def sum_to_shape(input, shape, *, scale=1.0, context=None):
    """input summed over the dims where `shape` broadcasts to input's shape (torch.Tensor.sum_to_size), times
    scale. Deterministic."""
    x = _tensor.as_tensor(input, "input")
    out = _tensor.empty(x, tuple(shape))
    _run(context, x, (x,), "dlk_sum_to_shape", x.ptr, float(scale), out.ptr)
    return out.obj


def scale(input, alpha, *, out=None, context=None):
    """alpha * input (into `out` when given; out may be input itself)."""
    x = _tensor.as_tensor(input, "input")
    y = _in_place(out, "out") if out is not None else _tensor.empty(x, x.shape)
    _run(context, x, (x,), "dlk_scale", x.ptr, float(alpha), y.ptr)
    return out if out is not None else y.obj


def residual_add(input, residual, alpha=1.0, *, context=None):
    """input += alpha * residual in place (residual broadcast to input's shape); returns input."""
    y = _in_place(input, "input")
    x = _operand(residual, y, "residual")
    _run(context, y, (y, x), "dlk_residual_add", x.ptr, float(alpha), y.ptr)
    return input


# ---------------------------------------------------------------------------------------------- concat / split


def _dim(dim, ndim, name):
    if not -ndim <= dim < ndim:
        raise IndexError("dlkernels.%s: dim %d out of range for a tensor of rank %d" % (name, dim, ndim))
    return dim + ndim if dim < 0 else dim


def cat(tensors, dim=0, *, context=None):
    """torch.cat: the tensors (one dtype, same shape except along dim) joined along dim."""
    ts = [_tensor.as_tensor(t, "tensors[%d]" % i) for i, t in enumerate(tensors)]
    if not ts:
        raise ValueError("dlkernels.cat: expected a non-empty sequence of tensors")
    nd = len(ts[0].shape)
    d = _dim(dim, max(nd, 1), "cat")
    shape = list(ts[0].shape)
    if nd:
        shape[d] = sum(t.shape[d] if len(t.shape) == nd else 0 for t in ts)
    out = _tensor.empty(ts[0], tuple(shape))
    arr = (_T * len(ts))(*[t.ptr for t in ts])
    _run(context, ts[0], tuple(ts), "dlk_concat", arr, len(ts), int(dim), out.ptr)
    return out.obj


def split(tensor, split_size_or_sections, dim=0, *, context=None):
    """torch.split: pieces of split_size (the last one smaller) or of the given section sizes along dim, as a tuple
    of new tensors (copies, where torch returns views)."""
    x = _tensor.as_tensor(tensor, "tensor")
    d = _dim(dim, len(x.shape), "split")
    length = x.shape[d]
    if isinstance(split_size_or_sections, (int, np.integer)):
        size = int(split_size_or_sections)
        if size <= 0 and length > 0:
            raise ValueError("dlkernels.split: split_size must be positive, got %d" % size)
        sizes = [size] * (length // size) + ([length % size] if length % size else []) if length else [0]
    else:
        sizes = [int(s) for s in split_size_or_sections]
    outs = []
    for s in sizes:
        shape = list(x.shape)
        shape[d] = s
        outs.append(_tensor.empty(x, tuple(shape)))
    arr = (_T * len(outs))(*[o.ptr for o in outs])
    _run(context, x, (x,), "dlk_split", x.ptr, int(dim), arr, len(outs))
    return tuple(o.obj for o in outs)
