#!/usr/bin/env python3
"""Trains a 2-layer MLP (30 -> 64 -> ReLU -> 2) with cross-entropy and SGD + momentum 0.9 on scikit-learn's bundled
breast-cancer set, twice from the SAME initial weights and the same mini-batches: once through dlkernels (linear
layers, ReLU, fused softmax cross-entropy, the fused multi-tensor SGD step), once in PyTorch. Prints both test
accuracies; they must agree within 1 %.

    DLKERNELS_LIBRARY=build/libdlkernels.so /usr/bin/python3 python/examples/mlp_breast_cancer.py [--device cpu|emu|cuda]

Needs numpy, scikit-learn (Debian python3-sklearn) and torch (python3-torch) for the comparison.
"""
import argparse
import ctypes
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import dlkernels  # noqa: E402
from dlkernels import _context, _lib, _tensor  # noqa: E402
from dlkernels import elementwise, loss, optim  # noqa: E402

try:  # the Python wrapper of the GEMM family; without it the script calls the same C entry points itself
    from dlkernels import gemm  # noqa: E402
except ImportError:
    gemm = None


class _LinearParams(ctypes.Structure):  # dlk_linear_params (include/dlk/dlk.h)
    _fields_ = [("struct_size", ctypes.c_size_t), ("activation", ctypes.c_int), ("allow_tf32", ctypes.c_int),
                ("accumulate", ctypes.c_int)]


_T = ctypes.POINTER(_lib.DLTensor)
if gemm is None:  # otherwise gemm.py has declared these entry points with its own struct
    _lib.declare({
        "dlk_linear_params_init": (ctypes.c_int, [ctypes.POINTER(_LinearParams)]),
        "dlk_linear_forward": (ctypes.c_int, [ctypes.c_void_p, ctypes.POINTER(_LinearParams), _T, _T, _T, _T, _T]),
        "dlk_linear_backward": (ctypes.c_int, [ctypes.c_void_p, ctypes.POINTER(_LinearParams), _T, _T, _T, _T, _T,
                                               _T, _T]),
    })


def linear(x, w, b, ctx):
    """y = x @ w.T + b (torch.nn.functional.linear)."""
    if gemm is not None:
        return gemm.linear(x, w, b, context=ctx)
    xt, wt, bt = (_tensor.as_tensor(a, n) for a, n in ((x, "x"), (w, "weight"), (b, "bias")))
    y = np.empty((x.shape[0], w.shape[0]), np.float32)
    yt = _tensor.as_tensor(y, "y")
    p = _lib._filled(_LinearParams, "dlk_linear_params_init")
    _lib.call("dlk_linear_forward", ctx.handle, ctypes.byref(p), xt.ptr, wt.ptr, bt.ptr, yt.ptr, None)
    return y


def linear_backward(dy, x, w, ctx):
    """(dx, dW, db) of linear."""
    if gemm is not None:
        return gemm.linear_backward(dy, x, w, context=ctx)
    dyt, xt, wt = (_tensor.as_tensor(a, n) for a, n in ((dy, "dy"), (x, "x"), (w, "weight")))
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty(w.shape[0], np.float32)
    dxt, dwt, dbt = (_tensor.as_tensor(a, n) for a, n in ((dx, "dx"), (dw, "dW"), (db, "db")))
    p = _lib._filled(_LinearParams, "dlk_linear_params_init")
    _lib.call("dlk_linear_backward", ctx.handle, ctypes.byref(p), dyt.ptr, xt.ptr, wt.ptr, None, dxt.ptr, dwt.ptr,
              dbt.ptr)
    return dx, dw, db


def load_data(seed):
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    x, y = load_breast_cancer(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
    mean, std = x_tr.mean(0), x_tr.std(0)
    std[std == 0] = 1
    f = lambda a: ((a - mean) / std).astype(np.float32)  # noqa: E731  (standardised with the training statistics)
    return f(x_tr), f(x_te), y_tr.astype(np.int64), y_te.astype(np.int64)


def batches(n, batch, epochs, seed):
    """The same shuffled mini-batch indices for both trainers."""
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        perm = rng.permutation(n)
        for i in range(0, n, batch):
            yield perm[i:i + batch]


def train_dlkernels(init, data, args, ctx):
    x_tr, x_te, y_tr, y_te = data
    params = [np.array(p, dtype=np.float32, order="C") for p in init]  # W1, b1, W2, b2
    bufs = [None] * 4
    for idx in batches(len(x_tr), args.batch, args.epochs, args.seed):
        x, y = np.ascontiguousarray(x_tr[idx]), np.ascontiguousarray(y_tr[idx])
        z1 = linear(x, params[0], params[1], ctx)
        h = elementwise.relu(z1, context=ctx)
        logits = linear(h, params[2], params[3], ctx)
        _, dlogits = loss.cross_entropy(logits, y, return_grad=True, context=ctx)
        dh, dw2, db2 = linear_backward(dlogits, h, params[2], ctx)
        dz1 = elementwise.relu_backward(dh, z1, context=ctx)
        _, dw1, db1 = linear_backward(dz1, x, params[0], ctx)
        optim.sgd_step(params, [dw1, db1, dw2, db2], bufs, lr=args.lr, momentum=args.momentum, context=ctx)
    h = elementwise.relu(linear(x_te, params[0], params[1], ctx), context=ctx)
    pred = linear(h, params[2], params[3], ctx).argmax(1)
    return float((pred == y_te).mean()), params


def train_torch(init, data, args):
    import torch

    x_tr, x_te, y_tr, y_te = (torch.from_numpy(a) for a in data)
    model = torch.nn.Sequential(torch.nn.Linear(30, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    with torch.no_grad():
        for p, v in zip(model.parameters(), init):
            p.copy_(torch.from_numpy(v))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    for idx in batches(len(x_tr), args.batch, args.epochs, args.seed):
        idx = torch.from_numpy(idx)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x_tr[idx]), y_tr[idx]).backward()
        opt.step()
    with torch.no_grad():
        acc = float((model(x_te).argmax(1) == y_te).double().mean())
    return acc, [p.detach().numpy() for p in model.parameters()]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=os.environ.get("DLKERNELS_DEVICE", "cpu"))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    data = load_data(args.seed)
    torch.manual_seed(args.seed)  # PyTorch's default Linear initialisation, shared by both trainers
    ref = torch.nn.Sequential(torch.nn.Linear(30, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    init = [p.detach().numpy().copy() for p in ref.parameters()]

    ctx = dlkernels.Context(args.device)
    acc_dlk, p_dlk = train_dlkernels(init, data, args, ctx)
    acc_torch, p_torch = train_torch(init, data, args)
    drift = max(float(np.abs(a - b).max()) for a, b in zip(p_dlk, p_torch))
    print("dataset: breast cancer, %d train / %d test, %d epochs of batch %d, SGD lr %g momentum %g"
          % (len(data[0]), len(data[1]), args.epochs, args.batch, args.lr, args.momentum))
    print("dlkernels (%s%s): test accuracy %.4f" % (ctx.device, "" if gemm is not None else ", linear via the C ABI",
                                                    acc_dlk))
    print("pytorch %s:       test accuracy %.4f" % (torch.__version__, acc_torch))
    print("largest weight difference after training: %.3g" % drift)
    ok = abs(acc_dlk - acc_torch) <= 0.01
    print("agree within 1%%: %s" % ("yes" if ok else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
