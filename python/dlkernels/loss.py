"""Losses, mirroring torch.nn.functional: cross_entropy, nll_loss, binary_cross_entropy_with_logits, mse_loss, and
their gradients as <name>_backward.

Differences from PyTorch, all deliberate:
  - losses are computed in fp32 and returned as float32 whatever the input dtype;
  - cross_entropy's `weight` is not supported (NotImplementedError); nll_loss takes one;
  - size_average / reduce (deprecated in PyTorch) must stay None;
  - cross_entropy(..., return_grad=True) also returns the gradient from the same fused pass (llm.c's fused
    classifier): (loss, grad_input), grad_input = d(loss * grad_output)/d(input), grad_output defaulting to 1.
Inputs of shape [N, C, d1, ...] (class dim 1) are handled by moving the class dim last (a copy) before the call.
"""

import ctypes

import numpy as np

from . import _lib, _tensor
from ._context import run as _run
from ._tensor import ptr as _ptr

_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}


class CrossEntropyParams(_lib.Params):
    _init_ = "dlk_cross_entropy_params_init"
    _fields_ = [("reduction", ctypes.c_int), ("ignore_index", ctypes.c_int64), ("label_smoothing", ctypes.c_float)]


class ElementwiseLossParams(_lib.Params):
    _init_ = "dlk_elementwise_loss_params_init"
    _fields_ = [("reduction", ctypes.c_int)]


_T = _lib.TensorPtr
_V = ctypes.c_void_p
_lib.declare({
    "dlk_cross_entropy_forward": _lib.op_prototype(_V, _T, _T, _T, _T, _T),
    "dlk_cross_entropy_backward": _lib.op_prototype(_V, _T, _T, _T, _T),
    "dlk_nll_loss_forward": _lib.op_prototype(_V, _T, _T, _T, _T),
    "dlk_nll_loss_backward": _lib.op_prototype(_V, _T, _T, _T, _T, _T),
    "dlk_bce_with_logits_forward": _lib.op_prototype(_V, _T, _T, _T, _T, _T),
    "dlk_bce_with_logits_backward": _lib.op_prototype(_V, _T, _T, _T, _T, _T, _T),
    "dlk_mse_loss_forward": _lib.op_prototype(_V, _T, _T, _T),
    "dlk_mse_loss_backward": _lib.op_prototype(_V, _T, _T, _T, _T),
}, params=(CrossEntropyParams, ElementwiseLossParams))


def _reduction(name, reduction, size_average=None, reduce=None):
    if size_average is not None or reduce is not None:
        raise NotImplementedError("dlkernels.%s: size_average and reduce are deprecated in PyTorch and not supported; "
                                  "use reduction='none'|'mean'|'sum'" % name)
    if reduction not in _REDUCTIONS:
        raise ValueError("dlkernels.%s: reduction must be 'none', 'mean' or 'sum', got %r" % (name, reduction))
    return _REDUCTIONS[reduction]


def _ce_params(reduction, ignore_index, label_smoothing):
    p = CrossEntropyParams.filled()
    p.reduction = reduction
    p.ignore_index = int(ignore_index)
    p.label_smoothing = float(label_smoothing)
    return p


def _pw_params(reduction):
    p = ElementwiseLossParams.filled()
    p.reduction = reduction
    return p


def _float32_like(value, like, name):
    """grad_output as a float32 Tensor of `like`'s kind (None stays None; Python numbers become 0-d)."""
    if value is None:
        return None
    if _tensor.is_torch(like):
        import torch

        if not _tensor.is_torch(value):
            value = torch.tensor(value, dtype=torch.float32, device=like.device)
        return _tensor.as_tensor(value.to(torch.float32), name)
    return _tensor.as_tensor(np.asarray(value, dtype=np.float32), name)


def _cast_like(value, like):
    """weight-like argument converted to `like`'s dtype and container (None stays None)."""
    if value is None:
        return None
    if _tensor.is_torch(like):
        import torch

        if not _tensor.is_torch(value):
            value = torch.as_tensor(np.asarray(value))
        return value.to(device=like.device, dtype=like.dtype)
    return np.asarray(value).astype(np.asarray(like).dtype)


def _classes_last(x, target, probs):
    """[N, C, d...] -> ([M, C], target [M] or [M, C], shape of the per-element loss, restore(grad))."""
    shape = tuple(x.shape)
    if len(shape) == 1:
        t = target.reshape(1, -1) if probs else target.reshape(1)
        return x.reshape(1, -1), t, (), lambda g: g.reshape(shape)
    if len(shape) == 2:
        return x, target, (shape[0],), lambda g: g
    n, c, rest = shape[0], shape[1], shape[2:]
    torch_in = _tensor.is_torch(x)

    def last(a):
        a = a.movedim(1, -1) if torch_in else np.moveaxis(a, 1, -1)
        return a.reshape(-1, c)

    t = last(target) if probs else target.reshape(-1)

    def restore(g):
        g = g.reshape((n,) + tuple(rest) + (c,))
        return g.movedim(-1, 1).contiguous() if torch_in else np.ascontiguousarray(np.moveaxis(g, -1, 1))

    return last(x), t, (n,) + tuple(rest), restore


def _is_prob_target(target):
    if _tensor.is_torch(target):
        return target.is_floating_point()
    return np.asarray(target).dtype.kind == "f"


def _ce(name, input, target, weight, ignore_index, reduction, label_smoothing, grad_output, want_loss, context):
    if weight is not None:
        raise NotImplementedError("dlkernels.%s: class weights are not supported by the fused cross-entropy; use "
                                  "nll_loss(log_softmax(input), target, weight)" % name)
    if not _tensor.is_torch(target):
        target = np.asarray(target)
    if not _tensor.is_torch(input):
        input = np.asarray(input)
    probs = _is_prob_target(target)
    x2, t2, elem_shape, restore = _classes_last(input, target, probs)
    x = _tensor.as_tensor(x2, "input")
    t = _tensor.as_tensor(t2, "target")
    params = _ce_params(reduction, ignore_index, label_smoothing)
    loss_shape = elem_shape if reduction == 0 else ()
    g = _float32_like(grad_output, input, "grad_output")
    if g is not None and reduction == 0:
        g = _tensor.with_shape(g, x.shape[:1])
    dx = _tensor.empty(x, x.shape)
    if want_loss:
        loss = _tensor.empty(x, x.shape[:1] if reduction == 0 else (), _tensor.FLOAT32)
        _run(context, x, (x, t, g), "dlk_cross_entropy_forward", ctypes.byref(params), x.ptr, t.ptr, loss.ptr,
             dx.ptr, _ptr(g))
        return loss.obj.reshape(loss_shape), restore(dx.obj)
    _run(context, x, (x, t, g), "dlk_cross_entropy_backward", ctypes.byref(params), x.ptr, t.ptr, _ptr(g), dx.ptr)
    return restore(dx.obj)


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                  label_smoothing=0.0, *, return_grad=False, grad_output=None, context=None):
    """Softmax cross-entropy of logits `input` ([N, C], [C] or [N, C, d...]) against class indices (int) or class
    probabilities (float, input's shape), like torch.nn.functional.cross_entropy. With return_grad=True returns
    (loss, grad_input) from one fused pass; grad_output (shape of the loss, default 1) scales the gradient."""
    red = _reduction("cross_entropy", reduction, size_average, reduce)
    x = input
    loss, dx = _ce("cross_entropy", x, target, weight, ignore_index, red, label_smoothing, grad_output, True, context)
    return (loss, dx) if return_grad else loss


def cross_entropy_backward(grad_output, input, target, weight=None, ignore_index=-100, reduction="mean",
                           label_smoothing=0.0, *, context=None):
    """Gradient of cross_entropy with respect to `input` for upstream gradient `grad_output` (shape of the loss)."""
    red = _reduction("cross_entropy_backward", reduction)
    if grad_output is None:
        raise ValueError("dlkernels.cross_entropy_backward: grad_output is required")
    return _ce("cross_entropy_backward", input, target, weight, ignore_index, red, label_smoothing, grad_output,
               False, context)


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean", *,
             context=None):
    """Negative log-likelihood of log-probabilities `input` [N, C] at class indices `target` [N], like
    torch.nn.functional.nll_loss (mean divides by the summed weights of the non-ignored targets)."""
    red = _reduction("nll_loss", reduction, size_average, reduce)
    x = _tensor.as_tensor(input, "input")
    t = _tensor.as_tensor(target, "target")
    w = _tensor.as_tensor(_cast_like(weight, input), "weight")
    params = _ce_params(red, ignore_index, 0.0)
    loss = _tensor.empty(x, x.shape[:1] if red == 0 else (), _tensor.FLOAT32)
    _run(context, x, (x, t, w), "dlk_nll_loss_forward", ctypes.byref(params), x.ptr, t.ptr, _ptr(w), loss.ptr)
    return loss.obj


def nll_loss_backward(grad_output, input, target, weight=None, ignore_index=-100, reduction="mean", *, context=None):
    """Gradient of nll_loss with respect to `input` for upstream gradient `grad_output` (shape of the loss)."""
    red = _reduction("nll_loss_backward", reduction)
    x = _tensor.as_tensor(input, "input")
    t = _tensor.as_tensor(target, "target")
    w = _tensor.as_tensor(_cast_like(weight, input), "weight")
    g = _float32_like(grad_output, input, "grad_output")
    params = _ce_params(red, ignore_index, 0.0)
    dx = _tensor.empty(x, x.shape)
    _run(context, x, (x, t, w, g), "dlk_nll_loss_backward", ctypes.byref(params), x.ptr, t.ptr, _ptr(w), _ptr(g),
         dx.ptr)
    return dx.obj


def _bce_weight(weight, input):
    """weight in input's dtype; broadcast to input's full shape unless its shape is a trailing part of input's."""
    if weight is None:
        return None
    w = _cast_like(weight, input)
    ws = tuple(w.shape)
    while ws and ws[0] == 1:
        ws = ws[1:]
    shape = tuple(input.shape)
    if ws == shape[len(shape) - len(ws):]:
        return w
    if _tensor.is_torch(w):
        return w.expand(shape).contiguous()
    return np.ascontiguousarray(np.broadcast_to(w, shape))


def _bce_args(input, target, weight, pos_weight):
    x = _tensor.as_tensor(input, "input")
    t = _tensor.as_tensor(target, "target")
    w = _tensor.as_tensor(_bce_weight(weight, input), "weight")
    pw = _tensor.as_tensor(_cast_like(pos_weight, input), "pos_weight")
    return x, t, w, pw


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None, reduction="mean",
                                     pos_weight=None, *, context=None):
    """Numerically stable BCE on logits, like torch.nn.functional.binary_cross_entropy_with_logits (weight broadcast
    to input, pos_weight along the last dim)."""
    red = _reduction("binary_cross_entropy_with_logits", reduction, size_average, reduce)
    x, t, w, pw = _bce_args(input, target, weight, pos_weight)
    params = _pw_params(red)
    loss = _tensor.empty(x, x.shape if red == 0 else (), _tensor.FLOAT32)
    _run(context, x, (x, t, w, pw), "dlk_bce_with_logits_forward", ctypes.byref(params), x.ptr, t.ptr, _ptr(w),
         _ptr(pw), loss.ptr)
    return loss.obj


def binary_cross_entropy_with_logits_backward(grad_output, input, target, weight=None, reduction="mean",
                                              pos_weight=None, *, context=None):
    """Gradient of binary_cross_entropy_with_logits with respect to `input`."""
    red = _reduction("binary_cross_entropy_with_logits_backward", reduction)
    x, t, w, pw = _bce_args(input, target, weight, pos_weight)
    g = _float32_like(grad_output, input, "grad_output")
    params = _pw_params(red)
    dx = _tensor.empty(x, x.shape)
    _run(context, x, (x, t, w, pw, g), "dlk_bce_with_logits_backward", ctypes.byref(params), x.ptr, t.ptr, _ptr(w),
         _ptr(pw), _ptr(g), dx.ptr)
    return dx.obj


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", *, context=None):
    """Mean squared error, like torch.nn.functional.mse_loss (input and target of the same shape)."""
    red = _reduction("mse_loss", reduction, size_average, reduce)
    x = _tensor.as_tensor(input, "input")
    t = _tensor.as_tensor(target, "target")
    params = _pw_params(red)
    loss = _tensor.empty(x, x.shape if red == 0 else (), _tensor.FLOAT32)
    _run(context, x, (x, t), "dlk_mse_loss_forward", ctypes.byref(params), x.ptr, t.ptr, loss.ptr)
    return loss.obj


def mse_loss_backward(grad_output, input, target, reduction="mean", *, context=None):
    """Gradient of mse_loss with respect to `input` (the target's gradient is its negative)."""
    red = _reduction("mse_loss_backward", reduction)
    x = _tensor.as_tensor(input, "input")
    t = _tensor.as_tensor(target, "target")
    g = _float32_like(grad_output, input, "grad_output")
    params = _pw_params(red)
    dx = _tensor.empty(x, x.shape)
    _run(context, x, (x, t, g), "dlk_mse_loss_backward", ctypes.byref(params), x.ptr, t.ptr, _ptr(g), dx.ptr)
    return dx.obj
