"""Classification metrics computed by the library (on the device for cuda): accuracy, confusion_matrix and
precision_recall_f1, with scikit-learn's definitions (zero_division=0, default labels = the classes present in
y_true or y_pred). Labels are int32/int64 class indices; results come back in the container of y_true (a 0-d
float32 array/tensor for scalars).
"""

import ctypes

import numpy as np

from . import _lib, _tensor
from ._context import run as _run

_AVERAGES = {None: 0, "none": 0, "micro": 1, "macro": 2, "weighted": 3}
_INT64 = (_lib.DLDataTypeCode.kDLInt, 64)

_T = _lib.TensorPtr
_lib.declare({
    "dlk_accuracy": _lib.op_prototype(_T, _T, _T),
    "dlk_confusion_matrix": _lib.op_prototype(_T, _T, ctypes.c_int64, _T),
    "dlk_precision_recall_f1": _lib.op_prototype(_T, ctypes.c_int, _T, _T, _T),
})


def _labels(y, name):
    if _tensor.is_torch(y):
        return _tensor.as_tensor(y, name)
    return _tensor.as_tensor(np.asarray(y), name)


def _num_classes(y_true, y_pred, num_classes):
    if num_classes is not None:
        return int(num_classes)
    top = -1
    for y in (y_true, y_pred):
        if _tensor.is_torch(y):
            if y.numel():
                top = max(top, int(y.max()))
        else:
            a = np.asarray(y)
            if a.size:
                top = max(top, int(a.max()))
    return max(top + 1, 1)


def accuracy(y_true, y_pred, *, context=None):
    """Fraction of positions where y_pred equals y_true (0 for empty inputs), as a 0-d float32 array/tensor."""
    t = _labels(y_true, "y_true")
    p = _labels(y_pred, "y_pred")
    out = _tensor.empty(t, (), _tensor.FLOAT32)
    _run(context, t, (t, p), "dlk_accuracy", t.ptr, p.ptr, out.ptr)
    return out.obj


def confusion_matrix(y_true, y_pred, num_classes=None, *, context=None):
    """int64 [K, K] counts, rows = true class, columns = predicted class (scikit-learn's layout). K defaults to
    max(label) + 1."""
    t = _labels(y_true, "y_true")
    p = _labels(y_pred, "y_pred")
    k = _num_classes(y_true, y_pred, num_classes)
    out = _tensor.empty(t, (k, k), _INT64)
    _run(context, t, (t, p), "dlk_confusion_matrix", t.ptr, p.ptr, ctypes.c_int64(k), out.ptr)
    return out.obj


def precision_recall_f1(y_true, y_pred, average=None, num_classes=None, *, context=None):
    """(precision, recall, f1) like sklearn.metrics.precision_recall_fscore_support(y_true, y_pred,
    average=average, zero_division=0)[:3]: per class ([K]) for average None, else 0-d values for 'micro', 'macro'
    or 'weighted'."""
    if average not in _AVERAGES:
        raise ValueError("dlkernels.precision_recall_f1: average must be None, 'micro', 'macro' or 'weighted', got %r"
                         % (average,))
    cm = _tensor.as_tensor(confusion_matrix(y_true, y_pred, num_classes, context=context), "matrix")
    k = cm.shape[0]
    shape = (k,) if _AVERAGES[average] == 0 else ()
    outs = [_tensor.empty(cm, shape, _tensor.FLOAT32) for _ in range(3)]
    _run(context, cm, (cm,), "dlk_precision_recall_f1", cm.ptr, _AVERAGES[average], *[o.ptr for o in outs])
    return tuple(o.obj for o in outs)
