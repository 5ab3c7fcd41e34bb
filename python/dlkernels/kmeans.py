"""k-means with a scikit-learn-like interface (KMeans(n_clusters, init, n_init, max_iter, tol, random_state,
metric).fit / predict / fit_predict, attributes cluster_centers_, labels_, inertia_, n_iter_), plus the functions
kmeans_fit / kmeans_predict over the C API.

init: 'k-means++' (greedy, scikit-learn's 2 + log(k) candidates per step), 'random', or an array of initial centres
(n_init must be 1). random_state: an int seed of the library's Philox stream (run r of n_init uses seed + r), so the
same seed reproduces the same fit, but not scikit-learn's NumPy draws. metric: 'euclidean' (scikit-learn's KMeans)
or 'cosine' (spherical k-means: rows and centres normalised, inertia = sum of 1 - cosine similarity).
Data: float32 [N, D] NumPy array or torch tensor (CPU or CUDA).
"""

import ctypes

import numpy as np

from . import _lib, _tensor
from ._context import run as _run


class KmeansParams(_lib.Params):
    _init_ = "dlk_kmeans_params_init"
    _fields_ = [("n_clusters", ctypes.c_int), ("max_iter", ctypes.c_int), ("tol", ctypes.c_double),
                ("n_init", ctypes.c_int), ("init", ctypes.c_int), ("metric", ctypes.c_int),
                ("n_local_trials", ctypes.c_int), ("seed", ctypes.c_uint64)]


_T = _lib.TensorPtr
_lib.declare({
    "dlk_kmeans_fit": _lib.op_prototype(ctypes.POINTER(KmeansParams), _T, _T, _T, ctypes.POINTER(ctypes.c_double),
                                        ctypes.POINTER(ctypes.c_int)),
    "dlk_kmeans_predict": _lib.op_prototype(ctypes.POINTER(KmeansParams), _T, _T, _T, _T),
}, params=(KmeansParams,))

_I64 = (_lib.DLDataTypeCode.kDLInt, 64)
_METRICS = {"euclidean": 0, "cosine": 1}


def _params(n_clusters, init, n_init, max_iter, tol, seed, metric, n_local_trials=0):
    p = KmeansParams.filled()
    p.n_clusters = int(n_clusters)
    p.max_iter = int(max_iter)
    p.tol = float(tol)
    p.n_init = int(n_init)
    p.seed = int(seed) & (2**64 - 1)
    p.n_local_trials = int(n_local_trials)
    if metric not in _METRICS:
        raise ValueError("dlkernels.kmeans: metric must be 'euclidean' or 'cosine', got %r" % (metric,))
    p.metric = _METRICS[metric]
    if isinstance(init, str):
        if init not in ("k-means++", "random"):
            raise ValueError("dlkernels.kmeans: init must be 'k-means++', 'random' or an array, got %r" % (init,))
        p.init = 0 if init == "k-means++" else 1
    else:
        p.init = 2
    return p


def kmeans_fit(x, n_clusters, init="k-means++", n_init=1, max_iter=300, tol=1e-4, seed=0, metric="euclidean",
               n_local_trials=0, *, context=None):
    """Returns (centroids [k, D] float32, labels [N] int64, inertia float, n_iter int)."""
    xt = _tensor.as_tensor(x, "x")
    p = _params(n_clusters, init, n_init, max_iter, tol, seed, metric, n_local_trials)
    d = xt.shape[1] if len(xt.shape) == 2 else 0
    if p.init == 2:
        init_arr = init
        if _tensor.is_torch(xt.obj):
            import torch

            init_arr = torch.as_tensor(np.asarray(init, np.float32) if not _tensor.is_torch(init) else init,
                                       dtype=torch.float32, device=xt.obj.device).clone().contiguous()
        else:
            init_arr = np.array(init, dtype=np.float32, order="C", copy=True)
        c = _tensor.as_tensor(init_arr, "init")
    else:
        c = _tensor.empty(xt, (int(n_clusters), d), _tensor.FLOAT32)
    labels = _tensor.empty(xt, (xt.shape[0] if xt.shape else 0,), _I64)
    inertia = ctypes.c_double(0)
    n_iter = ctypes.c_int(0)
    _run(context, xt, (xt, c), "dlk_kmeans_fit", ctypes.byref(p), xt.ptr, c.ptr, labels.ptr, ctypes.byref(inertia),
         ctypes.byref(n_iter))
    return c.obj, labels.obj, inertia.value, n_iter.value


def kmeans_predict(x, centroids, metric="euclidean", return_distances=False, *, context=None):
    """Nearest centroid of each row (int64); return_distances also gives the float32 distances (squared Euclidean,
    or 1 - cosine similarity)."""
    xt = _tensor.as_tensor(x, "x")
    ct = _tensor.as_tensor(centroids, "centroids")
    p = _params(max(ct.shape[0] if ct.shape else 1, 1), "k-means++", 1, 1, 0.0, 0, metric)
    n = xt.shape[0] if xt.shape else 0
    labels = _tensor.empty(xt, (n,), _I64)
    dist = _tensor.empty(xt, (n,), _tensor.FLOAT32) if return_distances else None
    _run(context, xt, (xt, ct), "dlk_kmeans_predict", ctypes.byref(p), xt.ptr, ct.ptr, labels.ptr,
         _tensor.ptr(dist))
    return (labels.obj, dist.obj) if return_distances else labels.obj


class KMeans:
    """scikit-learn's KMeans interface over dlk_kmeans_fit (see the module docstring for the differences)."""

    def __init__(self, n_clusters=8, *, init="k-means++", n_init=1, max_iter=300, tol=1e-4, random_state=0,
                 metric="euclidean", context=None):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = 0 if random_state is None else random_state
        self.metric = metric
        self.context = context

    def fit(self, X, y=None):
        c, labels, inertia, n_iter = kmeans_fit(X, self.n_clusters, self.init, self.n_init, self.max_iter, self.tol,
                                                self.random_state, self.metric, context=self.context)
        self.cluster_centers_, self.labels_, self.inertia_, self.n_iter_ = c, labels, inertia, n_iter
        return self

    def predict(self, X):
        return kmeans_predict(X, self.cluster_centers_, self.metric, context=self.context)

    def fit_predict(self, X, y=None):
        return self.fit(X).labels_


__all__ = ["KMeans", "kmeans_fit", "kmeans_predict"]
