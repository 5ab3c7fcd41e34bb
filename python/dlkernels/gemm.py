"""Matrix products and linear layers, mirroring torch.matmul and torch.nn.functional.linear.

    from dlkernels import gemm
    c = gemm.matmul(a, b)                                   # like torch.matmul: 1-D, 2-D and broadcast batches
    y = gemm.linear(x, w, b, activation="gelu_tanh")        # F.gelu(F.linear(x, w, b), approximate="tanh"), fused
    y, z = gemm.linear(x, w, b, activation="relu", return_pre_activation=True)
    dx, dw, db = gemm.linear_backward(dy, x, w, pre_activation=z, activation="relu")

Every function takes NumPy arrays (float32/float16) or torch tensors (also bfloat16) and returns the kind of its
first tensor argument; all operands share one dtype, products accumulate in fp32. Extra keyword arguments exist only
for what torch lacks: alpha/beta/transposes/allow_tf32 on matmul, the fused activation and the saved pre-activation
on linear, the backward entry point linear_backward, and context=. A transposed view (a.T, a.mT, swapaxes of the
last two dims) is passed without a copy, as a transpose flag.
"""

import ctypes

import numpy as np

from . import _lib, _tensor
from ._context import run as _run
from ._tensor import ptr as _ptr

__all__ = ["matmul", "linear", "linear_backward", "EPILOGUES"]

# dlk_epilogue
EPILOGUES = {None: 0, "none": 0, "identity": 0, "relu": 1, "gelu": 2, "gelu_erf": 2, "gelu_tanh": 3}


class MatmulParams(_lib.Params):
    _init_ = "dlk_matmul_params_init"
    _fields_ = [
        ("alpha", ctypes.c_float),
        ("beta", ctypes.c_float),
        ("transpose_a", ctypes.c_int),
        ("transpose_b", ctypes.c_int),
        ("allow_tf32", ctypes.c_int),
    ]


class LinearParams(_lib.Params):
    _init_ = "dlk_linear_params_init"
    _fields_ = [
        ("activation", ctypes.c_int),
        ("allow_tf32", ctypes.c_int),
        ("accumulate", ctypes.c_int),
    ]


_T = _lib.TensorPtr
_lib.declare({
    "dlk_matmul": _lib.op_prototype(ctypes.POINTER(MatmulParams), _T, _T, _T),
    "dlk_linear_forward": _lib.op_prototype(ctypes.POINTER(LinearParams), _T, _T, _T, _T, _T),
    "dlk_linear_backward": _lib.op_prototype(ctypes.POINTER(LinearParams), _T, _T, _T, _T, _T, _T, _T),
}, params=(MatmulParams, LinearParams))


def _epilogue(activation, name):
    key = activation.lower() if isinstance(activation, str) else activation
    if key not in EPILOGUES:
        raise ValueError("dlkernels.%s: activation must be None, 'relu', 'gelu' (erf) or 'gelu_tanh', got %r"
                         % (name, activation))
    return EPILOGUES[key]


def _swap_last(obj):
    return obj.transpose(-1, -2) if _tensor.is_torch(obj) else np.swapaxes(obj, -1, -2)


def _operand(obj, name):
    """(Tensor, transposed): a non-contiguous matrix whose last two dims, swapped, are contiguous crosses as that
    contiguous tensor plus a transpose flag (no copy)."""
    if obj is not None and getattr(obj, "ndim", 0) >= 2 and not _tensor.is_contiguous(obj) and _tensor.is_array(obj):
        swapped = _swap_last(obj)
        if _tensor.is_contiguous(swapped):
            return _tensor.as_tensor(swapped, name), True
    return _tensor.as_tensor(obj, name), False


def _check_out(out, name):
    if out is not None and not _tensor.is_contiguous(out):
        raise ValueError("dlkernels.%s: out must be a contiguous array (it is written in place)" % name)


def matmul(input, other, *, out=None, alpha=1.0, beta=0.0, transpose_a=False, transpose_b=False, allow_tf32=False,
           context=None):
    """alpha * input @ other (+ beta * out), like torch.matmul: 1-D operands are promoted to matrices and the added
    dim removed from the result; batch dims broadcast. transpose_a/transpose_b transpose the last two dims of the
    operand first. beta != 0 needs `out` (read, then overwritten); `out`, when given, receives the result and is
    returned. allow_tf32: fp32 products may use TF32 tensor cores on cuda."""
    a_obj = input if _tensor.is_array(input) else np.asarray(input)
    b_obj = other if _tensor.is_array(other) else np.asarray(other)
    a_1d = getattr(a_obj, "ndim", np.ndim(a_obj)) == 1
    b_1d = getattr(b_obj, "ndim", np.ndim(b_obj)) == 1
    if a_1d:
        a_obj = a_obj[None, :]
    if b_1d:
        b_obj = b_obj[:, None]
    a, ta = _operand(a_obj, "input")
    b, tb = _operand(b_obj, "other")
    ta ^= bool(transpose_a) and not a_1d
    tb ^= bool(transpose_b) and not b_1d
    if len(a.shape) < 2 or len(b.shape) < 2:
        raise ValueError("dlkernels.matmul: both operands need at least one dimension, got shapes %s and %s"
                         % (list(a.shape), list(b.shape)))
    m = a.shape[-1] if ta else a.shape[-2]
    n = b.shape[-2] if tb else b.shape[-1]
    try:
        batch = tuple(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
    except ValueError:
        batch = tuple(a.shape[:-2])  # the library reports the batch dims that do not broadcast
    shape = batch + (m, n)
    if beta != 0 and out is None:
        raise ValueError("dlkernels.matmul: beta=%r reads out, so out must be given" % (beta,))
    _check_out(out, "matmul")
    if out is not None:
        c = _tensor.with_shape(_tensor.as_tensor(out, "out"), shape)
    else:
        c = _tensor.empty(a, shape)
    p = MatmulParams.filled()
    p.alpha, p.beta = float(alpha), float(beta)
    p.transpose_a, p.transpose_b, p.allow_tf32 = int(ta), int(tb), int(bool(allow_tf32))
    _run(context, a, (a, b, c), "dlk_matmul", ctypes.byref(p), a.ptr, b.ptr, c.ptr)
    if out is not None:
        return out
    result = c.obj
    if a_1d and b_1d:
        return result.reshape(())
    if a_1d:
        return result.reshape(shape[:-2] + (n,))
    if b_1d:
        return result.reshape(shape[:-1])
    return result


def linear(input, weight, bias=None, *, activation=None, return_pre_activation=False, allow_tf32=False,
           context=None):
    """y = activation(input @ weight.T + bias), like F.linear followed by the activation, fused.

    input [..., in], weight [out, in], bias [out] or None. activation: None, 'relu', 'gelu' (erf form, torch's
    default) or 'gelu_tanh' (approximate='tanh'). return_pre_activation: also return z = input @ weight.T + bias
    (what linear_backward needs with an activation): returns (y, z)."""
    x = _tensor.as_tensor(input, "input")
    w = _tensor.as_tensor(weight, "weight")
    b = _tensor.as_tensor(bias, "bias")
    act = _epilogue(activation, "linear")
    out_features = w.shape[0] if len(w.shape) == 2 else 0
    shape = tuple(x.shape[:-1]) + (out_features,)
    y = _tensor.empty(x, shape)
    z = _tensor.empty(x, shape) if (return_pre_activation and act != 0) else None
    p = LinearParams.filled()
    p.activation, p.allow_tf32 = act, int(bool(allow_tf32))
    _run(context, x, (x, w, b), "dlk_linear_forward", ctypes.byref(p), x.ptr, w.ptr, _ptr(b), y.ptr, _ptr(z))
    if return_pre_activation:
        return y.obj, (z.obj if z is not None else y.obj)
    return y.obj


def linear_backward(grad_output, input, weight, *, bias=True, pre_activation=None, activation=None,
                    input_grad=True, weight_grad=True, weight_grad_out=None, bias_grad_out=None, accumulate=False,
                    allow_tf32=False, context=None):
    """Gradients of linear(input, weight, bias, activation=...): returns (grad_input, grad_weight, grad_bias).

    With an activation, pre_activation is the z that linear(..., return_pre_activation=True) returned. bias: whether
    the layer has a bias (grad_bias is None otherwise). input_grad / weight_grad: False skips that gradient (None is
    returned). weight_grad_out / bias_grad_out: contiguous arrays to write the gradients into; with accumulate=True
    the gradients are added to them (gradient accumulation), and they are returned."""
    dy = _tensor.as_tensor(grad_output, "grad_output")
    x = _tensor.as_tensor(input, "input")
    w = _tensor.as_tensor(weight, "weight")
    act = _epilogue(activation, "linear_backward")
    z = _tensor.as_tensor(pre_activation, "pre_activation") if act != 0 else None
    if act != 0 and z is None:
        raise ValueError("dlkernels.linear_backward: activation=%r needs pre_activation (from linear(..., "
                         "return_pre_activation=True))" % (activation,))
    if accumulate and ((weight_grad and weight_grad_out is None) or (bias and bias_grad_out is None)):
        raise ValueError("dlkernels.linear_backward: accumulate=True adds into weight_grad_out / bias_grad_out, "
                         "so give them")
    _check_out(weight_grad_out, "linear_backward")
    _check_out(bias_grad_out, "linear_backward")
    dx = _tensor.empty(dy, x.shape) if input_grad else None
    dw = None
    if weight_grad:
        dw = _tensor.as_tensor(weight_grad_out, "weight_grad_out") if weight_grad_out is not None else \
            _tensor.empty(dy, w.shape)
    db = None
    if bias:
        out_features = w.shape[0] if len(w.shape) == 2 else 0
        db = _tensor.as_tensor(bias_grad_out, "bias_grad_out") if bias_grad_out is not None else \
            _tensor.empty(dy, (out_features,))
    p = LinearParams.filled()
    p.activation, p.allow_tf32, p.accumulate = act, int(bool(allow_tf32)), int(bool(accumulate))
    _run(context, dy, (dy, x, w, z), "dlk_linear_backward", ctypes.byref(p), dy.ptr, x.ptr, w.ptr, _ptr(z),
         _ptr(dx), _ptr(dw), _ptr(db))
    grad_w = None if dw is None else (weight_grad_out if weight_grad_out is not None else dw.obj)
    grad_b = None if db is None else (bias_grad_out if bias_grad_out is not None else db.obj)
    return _tensor.array_of(dx), grad_w, grad_b
