"""Fused multi-tensor optimizers, in torch.optim's functional style: every call updates a whole list of parameters in
place (one kernel launch on CUDA), with PyTorch 1.13's exact update rules.

    sgd_step(params, grads, momentum_buffers, *, lr, momentum=0, dampening=0, nesterov=False, weight_decay=0)
    adamw_step(params, grads, exp_avgs, exp_avg_sqs, *, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
               weight_decay=1e-2, amsgrad=False, max_exp_avg_sqs=None)
    adam_step(...)            Adam with L2 weight decay (torch.optim.Adam), same arguments, weight_decay=0
    clip_grad_norm_(grads, max_norm, norm_type=2.0) -> total norm (float)
    zero_grad(grads)

Arrays are float32 NumPy arrays or torch tensors, C-contiguous (they are updated in place, so a copy would lose the
update: non-contiguous arrays raise ValueError). Parameter groups (fine-tuning with a frozen backbone): pass
`tensor_group` (one int per tensor, -1 = frozen: parameter and state untouched) and `group_lr` (and optionally
`group_weight_decay`, and for Adam `group_step`), which override lr / weight_decay / step per group.
"""

import ctypes
import math

from . import _context, _lib, _tensor

_T = _lib.TensorPtr
_TP = ctypes.POINTER(_T)

# The parameter-group fields SGD and AdamW share (filled by _groups).
_GROUP_FIELDS = [
    ("num_groups", ctypes.c_int),
    ("tensor_group", ctypes.POINTER(ctypes.c_int32)),
    ("group_lr", ctypes.POINTER(ctypes.c_double)),
    ("group_weight_decay", ctypes.POINTER(ctypes.c_double)),
]


class SgdParams(_lib.Params):
    _init_ = "dlk_sgd_params_init"
    _fields_ = [
        ("lr", ctypes.c_double),
        ("momentum", ctypes.c_double),
        ("dampening", ctypes.c_double),
        ("weight_decay", ctypes.c_double),
        ("nesterov", ctypes.c_int),
        ("first_step", ctypes.c_int),
    ] + _GROUP_FIELDS


class AdamWParams(_lib.Params):
    _init_ = "dlk_adamw_params_init"
    _fields_ = [
        ("lr", ctypes.c_double),
        ("beta1", ctypes.c_double),
        ("beta2", ctypes.c_double),
        ("eps", ctypes.c_double),
        ("weight_decay", ctypes.c_double),
        ("amsgrad", ctypes.c_int),
        ("decoupled", ctypes.c_int),
        ("step", ctypes.c_int64),
    ] + _GROUP_FIELDS + [("group_step", ctypes.POINTER(ctypes.c_int64))]


class ClipGradNormParams(_lib.Params):
    _init_ = "dlk_clip_grad_norm_params_init"
    _fields_ = [
        ("max_norm", ctypes.c_double),
        ("norm_type", ctypes.c_double),
        ("total_norm", _T),
    ]


_lib.declare({
    "dlk_sgd_step": _lib.op_prototype(ctypes.POINTER(SgdParams), ctypes.c_size_t, _TP, _TP, _TP),
    "dlk_adamw_step": _lib.op_prototype(ctypes.POINTER(AdamWParams), ctypes.c_size_t, _TP, _TP, _TP, _TP, _TP),
    "dlk_clip_grad_norm": _lib.op_prototype(ctypes.POINTER(ClipGradNormParams), ctypes.c_size_t, _TP,
                                            ctypes.POINTER(ctypes.c_float)),
    "dlk_zero_grad": _lib.op_prototype(ctypes.c_size_t, _TP),
}, params=(SgdParams, AdamWParams, ClipGradNormParams))


def _grads_of(objs):
    """torch parameters (requires_grad) stand for their .grad, as in torch's clip_grad_norm_; those without a
    gradient are skipped. Anything else is a gradient itself."""
    out = []
    for obj in objs:
        if _tensor.is_torch(obj) and getattr(obj, "requires_grad", False):
            if obj.grad is not None:
                out.append(obj.grad)
        else:
            out.append(obj)
    return out


def _inplace(obj, name):
    """A Tensor sharing memory with `obj`: in-place ops cannot work on a copy."""
    if _tensor.is_torch(obj):
        if not obj.is_contiguous():
            raise ValueError("dlkernels.optim: %s is not contiguous; the update is in place, so pass contiguous "
                             "tensors" % name)
    else:
        import numpy as np

        if not isinstance(obj, np.ndarray) or not obj.flags.c_contiguous or not obj.flags.writeable:
            raise ValueError("dlkernels.optim: %s must be a writeable C-contiguous NumPy array or torch tensor (it "
                             "is updated in place), got %s" % (name, type(obj).__name__))
    return _tensor.as_tensor(obj, name)


def _list(objs, name, inplace=True):
    objs = list(objs)
    ts = [(_inplace(o, "%s[%d]" % (name, i)) if inplace else _tensor.as_tensor(o, "%s[%d]" % (name, i)))
          for i, o in enumerate(objs)]
    arr = (_T * max(len(ts), 1))(*[t.ptr for t in ts])
    return ts, arr


def _groups(p, n, tensor_group, group_lr, group_weight_decay, group_step=None):
    """Fills the group fields of a params struct; returns the ctypes arrays to keep alive."""
    if tensor_group is None and group_lr is None:
        return ()
    if tensor_group is None or group_lr is None:
        raise ValueError("dlkernels.optim: tensor_group and group_lr go together")
    tg = (ctypes.c_int32 * max(n, 1))(*[int(g) for g in tensor_group])
    if len(tensor_group) != n:
        raise ValueError("dlkernels.optim: tensor_group has %d entries for %d tensors" % (len(tensor_group), n))
    ng = len(group_lr)
    lr = (ctypes.c_double * max(ng, 1))(*[float(x) for x in group_lr])
    keep = [tg, lr]
    p.num_groups = ng
    p.tensor_group = ctypes.cast(tg, ctypes.POINTER(ctypes.c_int32))
    p.group_lr = ctypes.cast(lr, ctypes.POINTER(ctypes.c_double))
    if group_weight_decay is not None:
        wd = (ctypes.c_double * max(ng, 1))(*[float(x) for x in group_weight_decay])
        keep.append(wd)
        p.group_weight_decay = ctypes.cast(wd, ctypes.POINTER(ctypes.c_double))
    if group_step is not None:
        st = (ctypes.c_int64 * max(ng, 1))(*[int(x) for x in group_step])
        keep.append(st)
        p.group_step = ctypes.cast(st, ctypes.POINTER(ctypes.c_int64))
    return keep


def _zeros_like(obj):
    if _tensor.is_torch(obj):
        import torch

        return torch.zeros_like(obj, memory_format=torch.contiguous_format)
    import numpy as np

    return np.zeros_like(obj, order="C")


def sgd_step(params, grads, momentum_buffers, *, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0,
             tensor_group=None, group_lr=None, group_weight_decay=None, context=None):
    """One torch.optim.SGD step over every tensor of `params`, in place (torch.optim._functional.sgd).

    momentum_buffers: a list with one entry per parameter (ignored when momentum == 0; may then be None). An entry
    of None is the first step for that parameter: a buffer is created holding the (decayed) gradient and stored into
    the list, as torch does."""
    params, grads = list(params), list(grads)
    n = len(params)
    if len(grads) != n:
        raise ValueError("dlkernels.sgd_step: %d params but %d grads" % (n, len(grads)))
    use_momentum = momentum != 0
    if use_momentum:
        if momentum_buffers is None or len(momentum_buffers) != n:
            raise ValueError("dlkernels.sgd_step: momentum_buffers needs one entry per parameter")
        fresh = [i for i in range(n) if momentum_buffers[i] is None]
        for i in fresh:
            momentum_buffers[i] = _zeros_like(params[i])
        fresh_set = set(fresh)
        # Buffers that exist and new ones take different first-step flags: at most two launches.
        batches = [(idx, first) for idx, first in (([i for i in range(n) if i not in fresh_set], False),
                                                     (fresh, True)) if idx]
    else:
        batches = [(list(range(n)), False)] if n else []
    for idx, first in batches:
        pt, pa = _list([params[i] for i in idx], "params")
        gt, ga = _list([grads[i] for i in idx], "grads", inplace=False)
        bt, ba = ([], None)
        if use_momentum:
            bt, ba = _list([momentum_buffers[i] for i in idx], "momentum_buffers")
        p = SgdParams.filled()
        p.lr, p.momentum, p.dampening, p.weight_decay = float(lr), float(momentum), float(dampening), float(weight_decay)
        p.nesterov = 1 if nesterov else 0
        p.first_step = 1 if first else 0
        keep = _groups(p, len(idx), None if tensor_group is None else [tensor_group[i] for i in idx], group_lr,
                       group_weight_decay)
        _context.run(context, pt[0], pt + gt + bt, "dlk_sgd_step", ctypes.byref(p), len(idx), pa, ga, ba)
        del keep


def adamw_step(params, grads, exp_avgs, exp_avg_sqs, *, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
               weight_decay=1e-2, amsgrad=False, max_exp_avg_sqs=None, tensor_group=None, group_lr=None,
               group_weight_decay=None, group_step=None, decoupled=True, context=None):
    """One torch.optim.AdamW step over every tensor, in place (torch.optim._functional.adamw).

    step: the step being taken, counted from 1 (torch's state['step'] after its increment). exp_avgs, exp_avg_sqs
    (and max_exp_avg_sqs with amsgrad): zeros before the first step. decoupled=False gives torch.optim.Adam's L2."""
    params, grads, exp_avgs, exp_avg_sqs = list(params), list(grads), list(exp_avgs), list(exp_avg_sqs)
    n = len(params)
    for name, lst in (("grads", grads), ("exp_avgs", exp_avgs), ("exp_avg_sqs", exp_avg_sqs)):
        if len(lst) != n:
            raise ValueError("dlkernels.adamw_step: %d params but %d %s" % (n, len(lst), name))
    if n == 0:
        return
    pt, pa = _list(params, "params")
    gt, ga = _list(grads, "grads", inplace=False)
    mt, ma = _list(exp_avgs, "exp_avgs")
    vt, va = _list(exp_avg_sqs, "exp_avg_sqs")
    xt, xa = [], None
    if amsgrad:
        if max_exp_avg_sqs is None or len(max_exp_avg_sqs) != n:
            raise ValueError("dlkernels.adamw_step: amsgrad needs max_exp_avg_sqs, one per parameter")
        xt, xa = _list(max_exp_avg_sqs, "max_exp_avg_sqs")
    p = AdamWParams.filled()
    p.lr, p.eps, p.weight_decay = float(lr), float(eps), float(weight_decay)
    p.beta1, p.beta2 = float(betas[0]), float(betas[1])
    p.amsgrad = 1 if amsgrad else 0
    p.decoupled = 1 if decoupled else 0
    p.step = int(step)
    keep = _groups(p, n, tensor_group, group_lr, group_weight_decay, group_step)
    _context.run(context, pt[0], pt + gt + mt + vt + xt, "dlk_adamw_step", ctypes.byref(p), n, pa, ga, ma, va, xa)
    del keep


def adam_step(params, grads, exp_avgs, exp_avg_sqs, *, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
              weight_decay=0.0, amsgrad=False, max_exp_avg_sqs=None, context=None, **groups):
    """One torch.optim.Adam step (weight decay as an L2 term added to the gradient), in place."""
    adamw_step(params, grads, exp_avgs, exp_avg_sqs, step=step, lr=lr, betas=betas, eps=eps,
               weight_decay=weight_decay, amsgrad=amsgrad, max_exp_avg_sqs=max_exp_avg_sqs, decoupled=False,
               context=context, **groups)


def clip_grad_norm_(grads, max_norm, norm_type=2.0, *, context=None):
    """torch.nn.utils.clip_grad_norm_ over a list of gradients (or torch parameters with .grad), in place: the total
    norm of all of them together; when max_norm / (total + 1e-6) < 1 every gradient is scaled by it. norm_type: 1,
    2 or inf. Returns the total norm as a Python float."""
    if _tensor.is_torch(grads) or hasattr(grads, "shape"):
        grads = [grads]
    gt, ga = _list(_grads_of(grads), "grads")
    p = ClipGradNormParams.filled()
    p.max_norm = float(max_norm)
    p.norm_type = float(norm_type)
    out = ctypes.c_float(math.nan)
    _context.run(context, gt[0] if gt else None, gt, "dlk_clip_grad_norm", ctypes.byref(p), len(gt), ga if gt else None,
                 ctypes.byref(out))
    return float(out.value)


def zero_grad(grads, *, context=None):
    """Sets every element of every array in `grads` to zero, in place (any dtype)."""
    gt, ga = _list(_grads_of(grads), "grads")
    if not gt:
        return
    _context.run(context, gt[0], gt, "dlk_zero_grad", len(gt), ga)
