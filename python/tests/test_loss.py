"""dlkernels.loss against PyTorch computed in float64 from the same rounded inputs: cross_entropy (class indices
with ignore_index, probabilities, label smoothing, every reduction, [N, C], [C] and [N, C, d] inputs, the fused
gradient and the separate backward), nll_loss (weights), binary_cross_entropy_with_logits (weight, pos_weight) and
mse_loss, each forward and backward, float32/float16 through NumPy and torch, bfloat16 through torch.
"""

import numpy as np
import pytest

from dlkernels import loss as L
import dlkernels as dk
from conftest import assert_close, to_f64

torch = pytest.importorskip("torch")
F = torch.nn.functional

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
CASES = [("float32", "numpy"), ("float32", "torch"), ("float16", "numpy"), ("bfloat16", "torch")]
CASE_IDS = ["%s-%s" % c for c in CASES]
REDUCTIONS = ["none", "mean", "sum"]


def wrap(t, container):
    return t.numpy() if container == "numpy" else t


def randn(shape, dtype, g, spread=2.0):
    return (torch.randn(shape, generator=g, dtype=torch.float64) * spread).to(DTYPES[dtype])


def grad_like(loss64, g):
    return torch.randn(loss64.shape, generator=g, dtype=torch.float64).float()


@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(5, 1), (9, 7), (4, 1000), (3, 4, 5)], ids=str)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_class_targets(ctx, seed, dtype, container, reduction, shape, smoothing):
    g = torch.Generator().manual_seed(seed)
    x = randn(shape, dtype, g)
    tshape = (shape[0],) + tuple(shape[2:])
    t = torch.randint(0, shape[1], tshape, generator=g)
    t.view(-1)[::3] = -100 if shape[0] > 1 else t.view(-1)[::3]
    x64 = x.double().requires_grad_()
    ref = F.cross_entropy(x64, t, reduction=reduction, label_smoothing=smoothing)
    go = grad_like(ref, g)
    ref.backward(go.double())
    loss, dx = L.cross_entropy(wrap(x, container), wrap(t, container), reduction=reduction,
                               label_smoothing=smoothing, return_grad=True, grad_output=wrap(go, container),
                               context=ctx)
    dx2 = L.cross_entropy_backward(wrap(go, container), wrap(x, container), wrap(t, container), reduction=reduction,
                                   label_smoothing=smoothing, context=ctx)
    assert_close(loss, ref.detach(), "float32", seed, "loss")
    assert_close(dx, x64.grad, dtype, seed, "grad")
    # The fused gradient and the separate backward agree bit for bit.
    assert np.array_equal(to_f64(dx), to_f64(dx2))


@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_probability_targets(ctx, seed, dtype, container, reduction, smoothing):
    g = torch.Generator().manual_seed(seed)
    x = randn((6, 33), dtype, g)
    p = torch.softmax(torch.randn((6, 33), generator=g, dtype=torch.float64), -1).to(DTYPES[dtype])
    x64 = x.double().requires_grad_()
    ref = F.cross_entropy(x64, p.double(), reduction=reduction, label_smoothing=smoothing)
    ref.backward(torch.ones_like(ref))
    loss, dx = L.cross_entropy(wrap(x, container), wrap(p, container), reduction=reduction,
                               label_smoothing=smoothing, return_grad=True, context=ctx)
    assert_close(loss, ref.detach(), "float32", seed, "loss")
    assert_close(dx, x64.grad, dtype, seed, "grad")


def test_cross_entropy_seed_and_1d(ctx, seed):
    x = np.array([[-0.1211, 0.1059]], dtype=np.float32)
    assert abs(float(L.cross_entropy(x, np.array([0]), context=ctx)) - 0.8131) < 5e-5
    assert abs(float(L.cross_entropy(x[0], np.array(0), context=ctx)) - 0.8131) < 5e-5


def test_cross_entropy_large_vocab(ctx, seed, device):
    C = 50257 if device == "cpu" else 3001
    g = torch.Generator().manual_seed(seed)
    x = randn((3, C), "float32", g)
    t = torch.randint(0, C, (3,), generator=g)
    x64 = x.double().requires_grad_()
    ref = F.cross_entropy(x64, t)
    ref.backward()
    loss, dx = L.cross_entropy(x, t, return_grad=True, context=ctx)
    assert_close(loss, ref.detach(), "float32", seed, "loss")
    assert_close(dx, x64.grad, "float32", seed, "grad")


def test_cross_entropy_errors(ctx):
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(dk.Error, match="target\\[1\\] is 4"):
        L.cross_entropy(x, np.array([0, 4, 1]), context=ctx)
    with pytest.raises(NotImplementedError):
        L.cross_entropy(x, np.array([0, 1, 1]), weight=np.ones(4, np.float32), context=ctx)
    with pytest.raises(ValueError):
        L.cross_entropy(x, np.array([0, 1, 1]), reduction="avg", context=ctx)
    with pytest.raises(dk.Error, match="dtype"):
        L.cross_entropy(x, np.zeros((3, 4), np.float16), context=ctx)


@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss(ctx, seed, dtype, container, reduction, weighted):
    g = torch.Generator().manual_seed(seed)
    x = torch.log_softmax(randn((11, 7), "float32", g).double(), -1).to(DTYPES[dtype])
    t = torch.randint(0, 7, (11,), generator=g)
    t[::4] = 3
    w = (torch.rand(7, generator=g, dtype=torch.float64) + 0.5).to(DTYPES[dtype]) if weighted else None
    x64 = x.double().requires_grad_()
    ref = F.nll_loss(x64, t, weight=None if w is None else w.double(), ignore_index=3, reduction=reduction)
    go = grad_like(ref, g)
    ref.backward(go.double())
    ww = None if w is None else wrap(w, container)
    out = L.nll_loss(wrap(x, container), wrap(t, container), ww, ignore_index=3, reduction=reduction, context=ctx)
    dx = L.nll_loss_backward(wrap(go, container), wrap(x, container), wrap(t, container), ww, ignore_index=3,
                             reduction=reduction, context=ctx)
    assert_close(out, ref.detach(), "float32", seed, "loss")
    assert_close(dx, x64.grad, dtype, seed, "grad")


@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weights", ["none", "trailing", "broadcast", "pos"])
def test_bce_with_logits(ctx, seed, dtype, container, reduction, weights):
    g = torch.Generator().manual_seed(seed)
    shape = (4, 3, 5)
    x = randn(shape, dtype, g, 4.0)
    y = torch.rand(shape, generator=g, dtype=torch.float64).to(DTYPES[dtype])
    w = pw = None
    if weights == "trailing":
        w = (torch.rand((3, 5), generator=g, dtype=torch.float64) + 0.5).to(DTYPES[dtype])
    if weights == "broadcast":
        w = (torch.rand((4, 1, 5), generator=g, dtype=torch.float64) + 0.5).to(DTYPES[dtype])
    if weights == "pos":
        pw = (torch.rand((5,), generator=g, dtype=torch.float64) * 3).to(DTYPES[dtype])
    x64 = x.double().requires_grad_()
    ref = F.binary_cross_entropy_with_logits(x64, y.double(), weight=None if w is None else w.double(),
                                             pos_weight=None if pw is None else pw.double(), reduction=reduction)
    go = grad_like(ref, g)
    ref.backward(go.double())
    kw = dict(weight=None if w is None else wrap(w, container), pos_weight=None if pw is None else wrap(pw, container),
              reduction=reduction, context=ctx)
    out = L.binary_cross_entropy_with_logits(wrap(x, container), wrap(y, container), **kw)
    dx = L.binary_cross_entropy_with_logits_backward(wrap(go, container), wrap(x, container), wrap(y, container), **kw)
    assert_close(out, ref.detach(), "float32", seed, "loss")
    assert_close(dx, x64.grad, dtype, seed, "grad")


@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_loss(ctx, seed, dtype, container, reduction):
    g = torch.Generator().manual_seed(seed)
    x = randn((7, 13), dtype, g)
    y = randn((7, 13), dtype, g)
    x64 = x.double().requires_grad_()
    ref = F.mse_loss(x64, y.double(), reduction=reduction)
    go = grad_like(ref, g)
    ref.backward(go.double())
    out = L.mse_loss(wrap(x, container), wrap(y, container), reduction=reduction, context=ctx)
    dx = L.mse_loss_backward(wrap(go, container), wrap(x, container), wrap(y, container), reduction=reduction,
                             context=ctx)
    assert_close(out, ref.detach(), "float32", seed, "loss")
    assert_close(dx, x64.grad, dtype, seed, "grad")
