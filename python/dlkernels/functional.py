"""The ops, mirroring torch.nn.functional: same names, argument order, defaults and semantics; extra keyword-only
arguments exist only for what PyTorch lacks (mask kinds, returning the saved statistics, the context).

Every function takes NumPy arrays or PyTorch tensors (see _tensor.py) and returns the same kind. Anything the C
library rejects raises dlkernels.Error with dlk_last_error(); ValueError/TypeError are raised only for what the C API
cannot express (a softmax over a dim other than the last, contradictory mask arguments, a normalized_shape that is
not the trailing shape of the input).
"""

import ctypes

from . import _lib, _tensor
from ._context import run as _run
from ._tensor import ptr as _ptr

_CAUSAL = {
    False: _lib.MaskKind.NONE,
    True: _lib.MaskKind.CAUSAL,
    "top_left": _lib.MaskKind.CAUSAL,
    "bottom_right": _lib.MaskKind.CAUSAL_BOTTOM_RIGHT,
}
_MASK_KIND_NAMES = {
    "none": _lib.MaskKind.NONE,
    "causal": _lib.MaskKind.CAUSAL,
    "causal_top_left": _lib.MaskKind.CAUSAL,
    "causal_bottom_right": _lib.MaskKind.CAUSAL_BOTTOM_RIGHT,
    "key_padding": _lib.MaskKind.KEY_PADDING,
    "tensor": _lib.MaskKind.TENSOR,
}

# The argument each mask kind reads.
_MASK_ARGUMENT = {
    _lib.MaskKind.CAUSAL: "causal",
    _lib.MaskKind.CAUSAL_BOTTOM_RIGHT: "causal",
    _lib.MaskKind.KEY_PADDING: "lengths",
    _lib.MaskKind.TENSOR: "mask",
}


def _last_dim(name, dim, ndim):
    if ndim == 0:
        return  # the library rejects rank 0 with its own message
    d = dim + ndim if dim < 0 else dim
    if d != ndim - 1:
        raise ValueError(
            "dlkernels.%s: only the last dimension is supported (dim=-1 or dim=%d), got dim=%r for a tensor of "
            "rank %d; move that dimension last first (x.swapaxes(dim, -1) / x.transpose(dim, -1)) and back after"
            % (name, ndim - 1, dim, ndim))


def _cast(obj, dtype):
    if dtype is None:
        return obj
    if _tensor.is_torch(obj):
        return obj.to(dtype)
    import numpy as np

    return np.asarray(obj).astype(dtype)


def _mask_kind(mask, mask_kind, lengths, causal):
    if causal is None:
        causal = False
    if causal not in _CAUSAL:
        raise ValueError("dlkernels.softmax: causal must be False, True, 'top_left' or 'bottom_right', got %r"
                         % (causal,))
    given = [n for n, v in (("mask", mask is not None), ("lengths", lengths is not None),
                            ("causal", _CAUSAL[causal] != _lib.MaskKind.NONE)) if v]
    if mask_kind is not None:
        if isinstance(mask_kind, str):
            if mask_kind.lower() not in _MASK_KIND_NAMES:
                raise ValueError("dlkernels.softmax: mask_kind must be one of %s, got %r"
                                 % (", ".join(sorted(_MASK_KIND_NAMES)), mask_kind))
            kind = _MASK_KIND_NAMES[mask_kind.lower()]
        else:
            kind = _lib.MaskKind(int(mask_kind))
        uses = _MASK_ARGUMENT.get(kind)
        unused = [n for n in given if n != uses]
        if unused or (uses == "causal" and "causal" in given and _CAUSAL[causal] != kind):
            raise ValueError("dlkernels.softmax: mask_kind=%r does not use %s" % (mask_kind, " and ".join(
                unused or ["causal=%r" % (causal,)])))
        return kind
    if len(given) > 1:
        raise ValueError("dlkernels.softmax: give at most one of mask, lengths and causal (the library applies one "
                         "mask kind per call), got %s; fold the others into one boolean or additive mask"
                         % " and ".join(given))
    if mask is not None:
        return _lib.MaskKind.TENSOR
    if lengths is not None:
        return _lib.MaskKind.KEY_PADDING
    return _CAUSAL[causal]


def softmax(input, dim=-1, *, scale=1.0, mask=None, mask_kind=None, lengths=None, causal=False, dtype=None,
            context=None):
    """softmax(scale * input (masked), dim) over the last dimension, in fp32 inside.

    input: float32/float16 NumPy array, or a float32/float16/bfloat16 torch tensor, any rank >= 1.
    dim: must name the last dimension (-1 or ndim-1); other dims raise ValueError.
    scale: multiplies input before the mask.
    mask: broadcastable to input. Boolean: keep where True (like scaled_dot_product_attention's attn_mask);
        int8/uint8: keep where nonzero; float: added to the scaled input (-inf masks).
    lengths: key padding, int [input.shape[0]]: row entries j >= lengths[b] of batch entry b are masked.
    causal: over the last two dims [.., R, C]: True or 'top_left' masks j > i; 'bottom_right' masks j > i + C - R.
    mask_kind: normally inferred from the above; 'none', 'causal', 'causal_bottom_right', 'key_padding', 'tensor'
        or a MaskKind forces it. One kind per call.
    dtype: like torch's: input is cast to it first.
    A row with every entry masked gives zeros, not NaN.
    """
    x = _tensor.as_tensor(_cast(input, dtype), "input")
    _last_dim("softmax", dim, len(x.shape))
    kind = _mask_kind(mask, mask_kind, lengths, causal)
    m = _tensor.as_mask(mask) if kind == _lib.MaskKind.TENSOR else None
    n = _tensor.as_lengths(lengths) if kind == _lib.MaskKind.KEY_PADDING else None
    params = _lib.softmax_params()
    params.scale = float(scale)
    params.mask_kind = int(kind)
    params.mask = _ptr(m)
    params.lengths = _ptr(n)
    y = _tensor.empty(x, x.shape)
    _run(context, x, (x, m, n), "dlk_softmax_forward", ctypes.byref(params), x.ptr, y.ptr)
    return y.obj


def softmax_backward(grad_output, output, dim=-1, *, scale=1.0, context=None):
    """Gradient of softmax from its saved output (torch's _softmax_backward_data order):
    grad_input = scale * output * (grad_output - sum(grad_output * output, dim)). Masked entries have output 0, so
    they get no gradient; `scale` is the one given to softmax."""
    dy = _tensor.as_tensor(grad_output, "grad_output")
    y = _tensor.as_tensor(output, "output")
    _last_dim("softmax_backward", dim, len(y.shape))
    params = _lib.softmax_params()
    params.scale = float(scale)
    dx = _tensor.empty(dy, dy.shape)
    _run(context, dy, (dy, y), "dlk_softmax_backward", ctypes.byref(params), y.ptr, dy.ptr, dx.ptr)
    return dx.obj


def _normalized(name, shape, normalized_shape):
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    normalized_shape = tuple(int(s) for s in normalized_shape)
    nd = len(normalized_shape)
    if nd == 0 or nd > len(shape) or shape[len(shape) - nd:] != normalized_shape:
        raise ValueError("dlkernels.%s: normalized_shape=%s must be the trailing shape of input, got input of shape "
                         "%s" % (name, list(normalized_shape), list(shape)))
    return nd, shape[:len(shape) - nd]


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5, *, return_stats=False, context=None):
    """Layer normalisation over the trailing `normalized_shape` dims, like torch.nn.functional.layer_norm:
    y = (x - mean) * rstd * weight + bias, rstd = 1/sqrt(var + eps), biased variance, fp32 inside.

    weight, bias: the normalized shape, dtype of input or float32; either may be None.
    return_stats: also return the float32 mean and rstd, shaped input.shape[:-len(normalized_shape)], which
        layer_norm_backward takes. Returns y, or (y, mean, rstd).
    """
    x = _tensor.as_tensor(input, "input")
    nd, lead = _normalized("layer_norm", x.shape, normalized_shape)
    w = _tensor.as_tensor(weight, "weight")
    b = _tensor.as_tensor(bias, "bias")
    params = _lib.layernorm_params()
    params.eps = float(eps)
    params.normalized_ndim = nd
    y = _tensor.empty(x, x.shape)
    mean = rstd = None
    if return_stats:
        mean = _tensor.empty(x, lead, _tensor.FLOAT32)
        rstd = _tensor.empty(x, lead, _tensor.FLOAT32)
    _run(context, x, (x, w, b), "dlk_layernorm_forward", ctypes.byref(params), x.ptr, _ptr(w), _ptr(b), y.ptr,
         _ptr(mean), _ptr(rstd))
    if return_stats:
        return y.obj, mean.obj, rstd.obj
    return y.obj


def layer_norm_backward(grad_output, input, mean, rstd, normalized_shape, weight=None, bias=None, *, context=None):
    """Gradients of layer_norm from its saved mean and rstd: returns (grad_input, grad_weight, grad_bias).

    mean, rstd: float32 from layer_norm(..., return_stats=True); torch's keep-dim shapes ([..., 1]) are accepted.
    grad_weight is computed when `weight` is given (shape and dtype of weight), else None. grad_bias is computed
    when `weight` or `bias` is given (dtype of weight, else of bias; `bias=True` asks for a float32 one), else None.
    """
    x = _tensor.as_tensor(input, "input")
    nd, lead = _normalized("layer_norm_backward", x.shape, normalized_shape)
    dy = _tensor.as_tensor(grad_output, "grad_output")
    # torch's keep-dim statistics ([rows..., 1]) hold one value per row too: view them with the leading shape.
    mu = _tensor.with_shape(_tensor.as_tensor(mean, "mean"), lead)
    rs = _tensor.with_shape(_tensor.as_tensor(rstd, "rstd"), lead)
    w = _tensor.as_tensor(weight, "weight")
    b = None if bias is None or bias is True or bias is False else _tensor.as_tensor(bias, "bias")
    want_bias = w is not None or b is not None or bias is True
    params = _lib.layernorm_params()
    params.normalized_ndim = nd
    wshape = x.shape[len(x.shape) - nd:]
    grad_dtype = w.dtype_key if w is not None else (b.dtype_key if b is not None else _tensor.FLOAT32)
    dx = _tensor.empty(dy, x.shape)
    dw = _tensor.empty(dy, wshape, grad_dtype) if w is not None else None
    db = _tensor.empty(dy, wshape, grad_dtype) if want_bias else None
    _run(context, dy, (dy, x, mu, rs, w), "dlk_layernorm_backward", ctypes.byref(params), dy.ptr, x.ptr,
         _ptr(mu), _ptr(rs), _ptr(w), dx.ptr, _ptr(dw), _ptr(db))
    return dx.obj, _tensor.array_of(dw), _tensor.array_of(db)
