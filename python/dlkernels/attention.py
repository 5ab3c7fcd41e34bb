"""Masked scaled-dot-product attention: torch.nn.functional.scaled_dot_product_attention (PyTorch 2's signature) on
the library's flash-style kernels, and its backward.

    out = dk.scaled_dot_product_attention(q, k, v, is_causal=True)
    out, lse = dk.scaled_dot_product_attention(q, k, v, attn_mask=m, return_lse=True)
    dq, dk_, dv = dk.scaled_dot_product_attention_backward(dout, q, k, v, out, lse, attn_mask=m)

q: [B, H, Tq, D] (or [B, Tq, D], one head), k and v: [B, H, Tk, D]; float32/float16 NumPy arrays or float32/
float16/bfloat16 torch tensors, one dtype; D <= 256. Dropout draws from the library's Philox streams (the dropout
op's), so it is reproducible across backends but not PyTorch's mask: pass the same seed and offset to the backward.
"""

import ctypes

from . import _lib, _tensor
from . import random as _random
from ._context import run as _run
from ._tensor import ptr as _ptr

__all__ = ["scaled_dot_product_attention", "scaled_dot_product_attention_backward"]


class AttentionParams(_lib.Params):
    _init_ = "dlk_attention_params_init"
    _fields_ = [
        ("scale", ctypes.c_float),
        ("mask_kind", ctypes.c_int),
        ("mask", _lib.TensorPtr),
        ("lengths", _lib.TensorPtr),
        ("dropout_p", ctypes.c_float),
        ("seed", ctypes.c_uint64),
        ("offset", ctypes.c_uint64),
    ]


_T = _lib.TensorPtr
_lib.declare({
    "dlk_attention_forward": _lib.op_prototype(ctypes.POINTER(AttentionParams), _T, _T, _T, _T, _T),
    "dlk_attention_backward": _lib.op_prototype(ctypes.POINTER(AttentionParams), _T, _T, _T, _T, _T, _T, _T, _T,
                                                _T),
}, params=(AttentionParams,))

_CAUSAL = {False: _lib.MaskKind.NONE, True: _lib.MaskKind.CAUSAL, "top_left": _lib.MaskKind.CAUSAL,
           "bottom_right": _lib.MaskKind.CAUSAL_BOTTOM_RIGHT}


def _four_d(t, name):
    """[B, T, D] -> [B, 1, T, D]; 4-D as it is (the library reports other ranks)."""
    if t is not None and len(t.shape) == 3:
        return _tensor.with_shape(t, (t.shape[0], 1, t.shape[1], t.shape[2]))
    return t


def _params(name, attn_mask, is_causal, lengths, scale, dropout_p, seed, offset, count):
    if is_causal not in _CAUSAL:
        raise ValueError("dlkernels.%s: is_causal must be False, True, 'top_left' or 'bottom_right', got %r"
                         % (name, is_causal))
    kinds = [n for n, v in (("attn_mask", attn_mask is not None), ("lengths", lengths is not None),
                            ("is_causal", _CAUSAL[is_causal] != _lib.MaskKind.NONE)) if v]
    if len(kinds) > 1:
        raise ValueError("dlkernels.%s: give at most one of attn_mask, lengths and is_causal (one mask kind per "
                         "call), got %s; fold them into one boolean or additive attn_mask"
                         % (name, " and ".join(kinds)))
    if scale is not None and float(scale) == 0.0:
        raise ValueError("dlkernels.%s: scale=0 cannot be expressed (0 selects the default 1/sqrt(D))" % name)
    m = _tensor.as_mask(attn_mask, "attn_mask") if attn_mask is not None else None
    n = _tensor.as_lengths(lengths) if lengths is not None else None
    params = AttentionParams.filled()
    params.scale = 0.0 if scale is None else float(scale)
    params.mask_kind = int(_lib.MaskKind.TENSOR if m is not None else
                           _lib.MaskKind.KEY_PADDING if n is not None else _CAUSAL[is_causal])
    params.mask = _ptr(m)
    params.lengths = _ptr(n)
    params.dropout_p = float(dropout_p)
    if dropout_p > 0:
        params.seed, params.offset = _random._draw(seed, offset, count)
    return params, m, n


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, *,
                                 lengths=None, seed=None, offset=0, return_lse=False, context=None):
    """softmax(query key^T * scale + mask) value, as torch.nn.functional.scaled_dot_product_attention.

    attn_mask: broadcastable to [B, H, Tq, Tk]. Boolean: True takes part in attention (torch's meaning);
        int8/uint8: nonzero takes part; float: added to the scores (-inf masks).
    is_causal: True or 'top_left' (torch's: key j <= query i), 'bottom_right' (j <= i + Tk - Tq, as with a KV cache).
    lengths: key padding, ints [B]: keys j >= lengths[b] are masked (an extension; one mask kind per call).
    scale: default 1/sqrt(D).
    dropout_p: on the probabilities, from Philox (seed, offset); seed=None draws from dlkernels.random's global
        stream (the backward then needs the same (seed, offset): pass them explicitly when training).
    return_lse: also return the float32 log-sum-exp [B, H, Tq] the backward needs.
    A query whose keys are all masked gets zeros (not NaN) and lse -inf.
    """
    q = _tensor.as_tensor(query, "query")
    k = _tensor.as_tensor(key, "key")
    v = _tensor.as_tensor(value, "value")
    three = q is not None and len(q.shape) == 3
    q4, k4, v4 = _four_d(q, "query"), _four_d(k, "key"), _four_d(v, "value")
    count = 1
    if len(q4.shape) == 4 and len(k4.shape) == 4:
        count = q4.shape[0] * q4.shape[1] * q4.shape[2] * k4.shape[2]
    params, m, n = _params("scaled_dot_product_attention", attn_mask, is_causal, lengths, scale, dropout_p, seed,
                           offset, count)
    out = _tensor.empty(q4, q4.shape)
    lse = _tensor.empty(q4, q4.shape[:3], _tensor.FLOAT32) if len(q4.shape) == 4 else None
    _run(context, q4, (q4, k4, v4, m, n), "dlk_attention_forward", ctypes.byref(params), q4.ptr, k4.ptr, v4.ptr,
         out.ptr, _ptr(lse))
    o = out.obj.reshape(q.shape) if three else out.obj
    if return_lse:
        return o, (lse.obj.reshape(q.shape[:2]) if three else lse.obj)
    return o


def scaled_dot_product_attention_backward(grad_output, query, key, value, output, lse, attn_mask=None,
                                          dropout_p=0.0, is_causal=False, scale=None, *, lengths=None, seed=None,
                                          offset=0, context=None):
    """Gradients (grad_query, grad_key, grad_value) of scaled_dot_product_attention from its saved output and lse
    (return_lse=True); the mask, scale and dropout arguments (seed and offset included) must be the forward's.
    The probabilities are recomputed from lse: memory stays linear in the sequence length."""
    if dropout_p > 0 and seed is None:
        raise ValueError("dlkernels.scaled_dot_product_attention_backward: dropout needs the forward's seed and "
                         "offset (seed=None would draw a fresh mask)")
    q = _tensor.as_tensor(query, "query")
    three = q is not None and len(q.shape) == 3
    q4 = _four_d(q, "query")
    k4 = _four_d(_tensor.as_tensor(key, "key"), "key")
    v4 = _four_d(_tensor.as_tensor(value, "value"), "value")
    o4 = _four_d(_tensor.as_tensor(output, "output"), "output")
    g4 = _four_d(_tensor.as_tensor(grad_output, "grad_output"), "grad_output")
    l = _tensor.as_tensor(lse, "lse")
    if three and l is not None and len(l.shape) == 2:
        l = _tensor.with_shape(l, (l.shape[0], 1, l.shape[1]))
    params, m, n = _params("scaled_dot_product_attention_backward", attn_mask, is_causal, lengths, scale, dropout_p,
                           seed, offset, 1)
    dq = _tensor.empty(g4, q4.shape)
    dk = _tensor.empty(g4, k4.shape)
    dv = _tensor.empty(g4, v4.shape)
    _run(context, q4, (q4, k4, v4, o4, l, g4, m, n), "dlk_attention_backward", ctypes.byref(params), q4.ptr, k4.ptr,
         v4.ptr, o4.ptr, l.ptr, g4.ptr, dq.ptr, dk.ptr, dv.ptr)
    if three:
        return (dq.obj.reshape(q.shape), dk.obj.reshape(key.shape), dv.obj.reshape(value.shape))
    return dq.obj, dk.obj, dv.obj
