"""Dropout, embedding and initialisation: torch.nn.functional.dropout / embedding and torch.nn.init, on the
library's Philox streams.

Randomness: every draw is Philox4x32-10 keyed by a 64-bit seed, element i of a call using stream position
offset + i, so a (seed, offset) pair reproduces a draw exactly, on every backend. Functions take `seed=` and `offset=`
keywords; with seed=None they use this module's global stream (manual_seed() sets its seed; its offset advances by
the element count of each call, as PyTorch's Philox offset does), so consecutive calls draw fresh values.
The masks are not PyTorch's (a different generator): compare statistics, not values.
"""

import ctypes
import math
import os
import threading
import types

import numpy as np

from . import _lib, _tensor
from ._context import run as _run
from ._tensor import ptr as _ptr

# ------------------------------------------------------------------------------------------------ C structs


class DropoutParams(_lib.Params):
    _init_ = "dlk_dropout_params_init"
    _fields_ = [
        ("p", ctypes.c_float),
        ("training", ctypes.c_int),
        ("seed", ctypes.c_uint64),
        ("offset", ctypes.c_uint64),
        ("use_context_seed", ctypes.c_int),
    ]


class EmbeddingParams(_lib.Params):
    _init_ = "dlk_embedding_params_init"
    _fields_ = [
        ("padding_idx", ctypes.c_int64),
        ("accumulate", ctypes.c_int),
    ]


class InitParams(_lib.Params):
    _init_ = "dlk_init_params_init"
    _fields_ = [
        ("kind", ctypes.c_int),
        ("a", ctypes.c_double),
        ("b", ctypes.c_double),
        ("mean", ctypes.c_double),
        ("std", ctypes.c_double),
        ("mode", ctypes.c_int),
        ("nonlinearity", ctypes.c_int),
        ("negative_slope", ctypes.c_double),
        ("gain", ctypes.c_double),
        ("fan_in", ctypes.c_int64),
        ("fan_out", ctypes.c_int64),
        ("seed", ctypes.c_uint64),
        ("offset", ctypes.c_uint64),
        ("use_context_seed", ctypes.c_int),
    ]


NO_PADDING = -(2 ** 63)  # DLK_EMBEDDING_NO_PADDING

_INIT_KIND = {"uniform": 0, "normal": 1, "trunc_normal": 2, "kaiming_uniform": 3, "kaiming_normal": 4,
              "xavier_uniform": 5, "xavier_normal": 6, "linear_weight": 7, "linear_bias": 8, "constant": 9}
_NONLINEARITY = {"linear": 0, "conv1d": 0, "conv2d": 0, "conv3d": 0, "conv_transpose1d": 0, "conv_transpose2d": 0,
                 "conv_transpose3d": 0, "sigmoid": 1, "tanh": 2, "relu": 3, "leaky_relu": 4, "selu": 5}
_MODE = {"fan_in": 0, "fan_out": 1}

_T = _lib.TensorPtr
_lib.declare({
    "dlk_dropout_forward": _lib.op_prototype(ctypes.POINTER(DropoutParams), _T, _T, _T),
    "dlk_dropout_backward": _lib.op_prototype(ctypes.POINTER(DropoutParams), _T, _T, _T),
    "dlk_embedding_forward": _lib.op_prototype(ctypes.POINTER(EmbeddingParams), _T, _T, _T),
    "dlk_embedding_backward": _lib.op_prototype(ctypes.POINTER(EmbeddingParams), _T, _T, _T),
    "dlk_embedding_sparse_update": _lib.op_prototype(ctypes.POINTER(EmbeddingParams), _T, _T, ctypes.c_float, _T),
    "dlk_init": _lib.op_prototype(ctypes.POINTER(InitParams), _T),
}, params=(DropoutParams, EmbeddingParams, InitParams))

# ------------------------------------------------------------------------------------------------ global stream

_state_lock = threading.Lock()
_state = {"seed": int.from_bytes(os.urandom(8), "little"), "offset": 0}


def manual_seed(seed):
    """Sets the module's global stream: seed `seed`, offset 0 (like torch.manual_seed)."""
    with _state_lock:
        _state["seed"] = int(seed) % (1 << 64)
        _state["offset"] = 0


def get_rng_state():
    """(seed, offset) of the module's global stream: the next seed=None call draws from there."""
    with _state_lock:
        return _state["seed"], _state["offset"]


def _draw(seed, offset, count):
    """The (seed, offset) a call uses: the given ones, or the global stream's, advanced by `count`."""
    if seed is not None:
        return int(seed) % (1 << 64), int(offset)
    with _state_lock:
        s, o = _state["seed"], _state["offset"]
        _state["offset"] = o + int(count)
    return s, o + int(offset)


def _copied(original, passed):
    """Whether the array the library wrote (`passed`) is a copy of `original` rather than its memory."""
    if _tensor.is_torch(original):
        return passed.data_ptr() != original.data_ptr() or passed.shape != original.shape
    return passed is not original and not np.may_share_memory(passed, original)


# ------------------------------------------------------------------------------------------------ dropout


def _dropout_params(p, training, seed, offset):
    params = DropoutParams.filled()
    params.p = float(p)
    params.training = 1 if training else 0
    params.seed = seed
    params.offset = offset
    return params


def dropout(input, p=0.5, training=True, inplace=False, *, seed=None, offset=0, return_mask=False, context=None):
    """torch.nn.functional.dropout: zeroes each element with probability p and scales the others by 1/(1-p);
    training=False is the identity. p = 1 gives zeros.

    seed, offset: the Philox stream (element i uses position offset + i); seed=None uses the module's global stream
        and advances it. Pass the same (seed, offset) to dropout_backward to regenerate the mask.
    return_mask: also return the uint8 keep mask (1 kept, 0 dropped), which dropout_backward also accepts.
    inplace: writes into input (which must then be a contiguous array the library accepts as it is).
    """
    x = _tensor.as_tensor(input, "input")
    n = _tensor.numel(x.shape)
    s, o = _draw(seed, offset, n if training else 0)
    params = _dropout_params(p, training, s, o)
    y = x if inplace else _tensor.empty(x, x.shape)
    m = _tensor.empty(x, x.shape, (_lib.DLDataTypeCode.kDLUInt, 8)) if return_mask else None
    _run(context, x, (x,), "dlk_dropout_forward", ctypes.byref(params), x.ptr, y.ptr, _ptr(m))
    if inplace and _copied(input, y.obj):
        input[...] = y.obj  # as_tensor had to copy (non-contiguous input)
        out = input
    elif inplace:
        out = input
    else:
        out = y.obj
    return (out, m.obj) if return_mask else out


def dropout_backward(grad_output, mask=None, p=0.5, training=True, *, seed=None, offset=0, context=None):
    """Gradient of dropout: grad_input = grad_output * keep / (1 - p). keep comes from `mask` (from
    dropout(..., return_mask=True)) or, without it, is regenerated from the forward's (seed, offset), which must then
    be given explicitly."""
    dy = _tensor.as_tensor(grad_output, "grad_output")
    if mask is None and seed is None and training:
        raise ValueError("dlkernels.dropout_backward: give the forward's mask, or its seed (and offset) to "
                         "regenerate it")
    m = _tensor.as_mask(mask, "mask")
    params = _dropout_params(p, training, 0 if seed is None else int(seed) % (1 << 64), int(offset))
    dx = _tensor.empty(dy, dy.shape)
    _run(context, dy, (dy, m), "dlk_dropout_backward", ctypes.byref(params), dy.ptr, _ptr(m), dx.ptr)
    return dx.obj


# ------------------------------------------------------------------------------------------------ embedding


def _indices(obj):
    """int32/int64 indices cross as they are; other integer arrays as int64; anything else as it is (the library
    reports a float index tensor)."""
    if _tensor.is_torch(obj):
        import torch

        if obj.dtype in (torch.int8, torch.int16, torch.uint8, torch.bool):
            obj = obj.to(torch.int64)
        return _tensor.from_torch(obj, "input")
    a = np.asarray(obj)
    if a.dtype.kind in "iub" and a.dtype not in (np.int32, np.int64):
        a = a.astype(np.int64)
    return _tensor.from_numpy(a, "input")


def _embedding_params(padding_idx, accumulate=False):
    params = EmbeddingParams.filled()
    params.padding_idx = NO_PADDING if padding_idx is None else int(padding_idx)
    params.accumulate = 1 if accumulate else 0
    return params


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False, *, context=None):
    """torch.nn.functional.embedding: weight[input] for integer indices of any shape and a [V, D] table.
    Out-of-range indices raise dlkernels.Error on cpu/emu. max_norm and scale_grad_by_freq are not supported;
    `sparse` only matters for torch's autograd and is ignored."""
    if max_norm is not None or scale_grad_by_freq:
        raise NotImplementedError("dlkernels.embedding: max_norm and scale_grad_by_freq are not supported")
    idx = _indices(input)
    w = _tensor.as_tensor(weight, "weight")
    params = _embedding_params(padding_idx)
    d = w.shape[-1] if len(w.shape) == 2 else 0
    out = _tensor.empty(w, tuple(idx.shape) + (d,))
    _run(context, w, (idx, w), "dlk_embedding_forward", ctypes.byref(params), idx.ptr, w.ptr, out.ptr)
    return out.obj


def embedding_backward(grad_output, input, num_weights, padding_idx=None, *, grad_weight=None, context=None):
    """Gradient of embedding with respect to the table (torch.ops.aten.embedding_backward): a [num_weights, D] array
    of grad_output's dtype, row r the sum of grad_output over the positions whose index is r; the padding_idx row is
    zero. Deterministic in a deterministic Context. grad_weight: an existing [num_weights, D] array to accumulate
    into (in place; returned)."""
    dy = _tensor.as_tensor(grad_output, "grad_output")
    idx = _indices(input)
    params = _embedding_params(padding_idx, accumulate=grad_weight is not None)
    if grad_weight is not None:
        dw = _tensor.as_tensor(grad_weight, "grad_weight")
    else:
        dw = _tensor.empty(dy, (int(num_weights), dy.shape[-1] if dy.shape else 0))
    _run(context, dy, (dy, idx), "dlk_embedding_backward", ctypes.byref(params), idx.ptr, dy.ptr, dw.ptr)
    if grad_weight is not None and _copied(grad_weight, dw.obj):
        grad_weight[...] = dw.obj
        return grad_weight
    return dw.obj


def embedding_sparse_update_(weight, input, grad_rows, lr, padding_idx=None, *, context=None):
    """Skip-gram's sparse SGD step, in place: weight[input[i]] -= lr * grad_rows[i], duplicate indices summed first.
    grad_rows has shape input.shape + (D,). Returns weight."""
    w = _tensor.as_tensor(weight, "weight")
    idx = _indices(input)
    g = _tensor.as_tensor(grad_rows, "grad_rows")
    params = _embedding_params(padding_idx)
    _run(context, w, (w, idx, g), "dlk_embedding_sparse_update", ctypes.byref(params), idx.ptr, g.ptr,
         ctypes.c_float(float(lr)), w.ptr)
    if _copied(weight, w.obj):
        weight[...] = w.obj
    return weight


# ------------------------------------------------------------------------------------------------ init


def calculate_gain(nonlinearity, param=None):
    """torch.nn.init.calculate_gain."""
    if nonlinearity not in _NONLINEARITY:
        raise ValueError("dlkernels.init.calculate_gain: unsupported nonlinearity %r" % (nonlinearity,))
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope ** 2))
    return {0: 1.0, 1: 1.0, 2: 5.0 / 3, 3: math.sqrt(2.0), 5: 0.75}[_NONLINEARITY[nonlinearity]]


def _calculate_fan_in_and_fan_out(tensor):
    """torch.nn.init._calculate_fan_in_and_fan_out."""
    shape = tuple(tensor.shape)
    if len(shape) < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than 2 dimensions")
    receptive = _tensor.numel(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _fill(tensor, kind, seed, offset, context, **fields):
    """Runs dlk_init on `tensor` in place. Arrays the library cannot write directly (non-contiguous, float64) are
    filled through a float32 copy."""
    direct = True
    if _tensor.is_torch(tensor):
        import torch

        direct = tensor.is_contiguous() and tensor.dtype in (torch.float32, torch.float16, torch.bfloat16)
        target = tensor.detach() if direct else torch.empty(tuple(tensor.shape), dtype=torch.float32,
                                                            device=tensor.device)
    else:
        if not isinstance(tensor, np.ndarray):
            raise TypeError("dlkernels.init: expected a NumPy array or a torch tensor to fill in place, got %s"
                            % type(tensor).__name__)
        direct = tensor.flags.c_contiguous and tensor.dtype in (np.float32, np.float16)
        target = tensor if direct else np.empty(tensor.shape, dtype=np.float32)
    t = _tensor.as_tensor(target, "tensor")
    params = InitParams.filled()
    params.kind = _INIT_KIND[kind]
    for k, v in fields.items():
        setattr(params, k, v)
    s, o = _draw(seed, offset, _tensor.numel(t.shape))
    params.seed = s
    params.offset = o
    _run(context, t, (t,), "dlk_init", ctypes.byref(params), t.ptr)
    if not direct:
        if _tensor.is_torch(tensor):
            import torch

            with torch.no_grad():
                tensor.copy_(target)
        else:
            tensor[...] = target
    return tensor


def uniform_(tensor, a=0.0, b=1.0, *, seed=None, offset=0, context=None):
    """torch.nn.init.uniform_: U[a, b) in place."""
    return _fill(tensor, "uniform", seed, offset, context, a=float(a), b=float(b))


def normal_(tensor, mean=0.0, std=1.0, *, seed=None, offset=0, context=None):
    """torch.nn.init.normal_: N(mean, std^2) in place."""
    return _fill(tensor, "normal", seed, offset, context, mean=float(mean), std=float(std))


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, *, seed=None, offset=0, context=None):
    """torch.nn.init.trunc_normal_: N(mean, std^2) truncated to [a, b], in place."""
    return _fill(tensor, "trunc_normal", seed, offset, context, mean=float(mean), std=float(std), a=float(a),
                 b=float(b))


def constant_(tensor, val, *, context=None):
    """torch.nn.init.constant_."""
    return _fill(tensor, "constant", 0, 0, context, a=float(val))


def _kaiming(kind, tensor, a, mode, nonlinearity, seed, offset, context):
    if mode not in _MODE:
        raise ValueError("Mode %s not supported, please use one of fan_in, fan_out" % (mode,))
    if nonlinearity not in _NONLINEARITY:
        raise ValueError("Unsupported nonlinearity %s" % (nonlinearity,))
    return _fill(tensor, kind, seed, offset, context, mode=_MODE[mode], nonlinearity=_NONLINEARITY[nonlinearity],
                 negative_slope=float(a))


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", *, seed=None, offset=0, context=None):
    """torch.nn.init.kaiming_uniform_: U(-bound, bound), bound = gain * sqrt(3 / fan), in place."""
    return _kaiming("kaiming_uniform", tensor, a, mode, nonlinearity, seed, offset, context)


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", *, seed=None, offset=0, context=None):
    """torch.nn.init.kaiming_normal_: N(0, std^2), std = gain / sqrt(fan), in place."""
    return _kaiming("kaiming_normal", tensor, a, mode, nonlinearity, seed, offset, context)


def xavier_uniform_(tensor, gain=1.0, *, seed=None, offset=0, context=None):
    """torch.nn.init.xavier_uniform_: U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)), in place."""
    return _fill(tensor, "xavier_uniform", seed, offset, context, gain=float(gain))


def xavier_normal_(tensor, gain=1.0, *, seed=None, offset=0, context=None):
    """torch.nn.init.xavier_normal_: N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)), in place."""
    return _fill(tensor, "xavier_normal", seed, offset, context, gain=float(gain))


def linear_(weight, bias=None, *, seed=None, offset=0, context=None):
    """nn.Linear's (and Conv's) reset_parameters: weight from kaiming_uniform_(a=sqrt(5)), i.e. U(+-1/sqrt(fan_in)),
    and bias (if given) from U(+-1/sqrt(fan_in)). The bias draws from the positions after the weight's."""
    fan_in, _ = _calculate_fan_in_and_fan_out(weight)
    s, o = _draw(seed, offset, _tensor.numel(weight.shape) + (_tensor.numel(bias.shape) if bias is not None else 0))
    _fill(weight, "linear_weight", s, o, context)
    if bias is not None:
        _fill(bias, "linear_bias", s, o + _tensor.numel(weight.shape), context, fan_in=int(fan_in))
    return weight, bias


init = types.SimpleNamespace(
    uniform_=uniform_, normal_=normal_, trunc_normal_=trunc_normal_, constant_=constant_,
    kaiming_uniform_=kaiming_uniform_, kaiming_normal_=kaiming_normal_, xavier_uniform_=xavier_uniform_,
    xavier_normal_=xavier_normal_, linear_=linear_, calculate_gain=calculate_gain,
    _calculate_fan_in_and_fan_out=_calculate_fan_in_and_fan_out)
