"""dlkernels.layer_norm / layer_norm_backward against PyTorch computed in float64 from the same rounded inputs.

normalized_shape of one and two dims, with and without weight and bias, float32/float16 through NumPy and torch,
bfloat16 through torch, float32 weights with half inputs, odd sizes, the saved mean/rstd, and every gradient
against torch.autograd.
"""

import numpy as np
import pytest

import dlkernels as dk
from conftest import assert_close

torch = pytest.importorskip("torch")

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
CASES = [("float32", "numpy"), ("float32", "torch"), ("float16", "numpy"), ("float16", "torch"),
         ("bfloat16", "torch")]
CASE_IDS = ["%s-%s" % c for c in CASES]
# (input shape, normalized_shape): odd sizes, C = 1, rows = 1, the whole tensor normalised, two normalised dims.
SHAPES = [((4, 7), (7,)), ((2, 3, 33), (33,)), ((3, 1), (1,)), ((1, 1000), (1000,)), ((7,), (7,)),
          ((2, 5, 6), (5, 6)), ((3, 4, 1, 9), (1, 9)), ((5, 384), (384,))]
AFFINE = ["none", "weight", "bias", "weight_bias"]
STATS_TOL = 1e-5  # mean/rstd are float32 computed from the same (rounded) inputs whatever the input dtype


def floor(t):
    """Outputs are O(1) per element; over a single normalised element they are exactly zero (see assert_close)."""
    return 1e-3 * np.sqrt(max(t.numel(), 1))


def make(shape, dtype, g, spread=2.0, offset=0.5):
    return (torch.randn(shape, generator=g, dtype=torch.float64) * spread + offset).to(dtype)


def wrap(t, container):
    return None if t is None else (t.numpy() if container == "numpy" else t)


def params(ns, dtype, affine, g):
    w = make(ns, dtype, g, 1.0, 1.0) if "weight" in affine else None
    b = make(ns, dtype, g, 1.0, 0.0) if "bias" in affine else None
    return w, b


def reference(x, ns, w, b, eps):
    """float64 y, mean, rstd with torch's keep-dim statistics flattened to the leading shape."""
    y, mean, rstd = torch.native_layer_norm(x.double(), ns, None if w is None else w.double(),
                                            None if b is None else b.double(), eps)
    lead = x.shape[:x.dim() - len(ns)]
    return y, mean.reshape(lead), rstd.reshape(lead)


def row_sum_floor(terms, ns):
    """Norm of the per-column sums of |terms| over the rows: what the rounding of dweight/dbias (sums over rows)
    scales with. A column sum that nearly cancels is ill-conditioned relative to itself."""
    cols = int(np.prod(ns))
    return float(np.linalg.norm(terms.abs().double().reshape(-1, cols).sum(0).numpy()))


def param_floors(x, dy, ns):
    xhat = torch.nn.functional.layer_norm(x.double(), ns, eps=1e-5)
    return row_sum_floor(dy.double() * xhat, ns), row_sum_floor(dy, ns)


@pytest.mark.parametrize("affine", AFFINE)
@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
def test_forward(ctx, seed, dtype, container, affine):
    for i, (shape, ns) in enumerate(SHAPES):
        g = torch.Generator().manual_seed(seed + i)
        eps = [1e-5, 1e-3, 0.0][i % 3] if shape[-1] > 1 else 1e-5  # C = 1 has zero variance: keep eps > 0
        x = make(shape, DTYPES[dtype], g)
        w, b = params(ns, DTYPES[dtype], affine, g)
        what = "layer_norm %s %s/%s eps=%g" % (affine, shape, ns, eps)
        y, mean, rstd = dk.layer_norm(wrap(x, container), ns, wrap(w, container), wrap(b, container), eps,
                                      return_stats=True, context=ctx)
        ry, rmean, rrstd = reference(x, ns, w, b, eps)
        if container == "numpy":
            assert isinstance(y, np.ndarray) and y.dtype == x.numpy().dtype and mean.dtype == np.float32
        else:
            assert y.dtype == x.dtype and mean.dtype == torch.float32 and rstd.dtype == torch.float32
        assert tuple(mean.shape) == tuple(rmean.shape) and tuple(rstd.shape) == tuple(rrstd.shape), what
        assert_close(y, ry, dtype, seed + i, what, floor(x))
        # A mean near zero is ill-conditioned relative to itself: judge it in units of the rows' spread (1/rstd).
        spread = float(np.linalg.norm(1.0 / rrstd.numpy()))
        assert_close(mean, rmean, STATS_TOL, seed + i, what + " mean", spread)
        assert_close(rstd, rrstd, STATS_TOL, seed + i, what + " rstd")
        # Without return_stats only y comes back, and it is the same.
        y2 = dk.layer_norm(wrap(x, container), ns, wrap(w, container), wrap(b, container), eps, context=ctx)
        assert_close(y2, ry, dtype, seed + i, what + " (no stats)", floor(x))


@pytest.mark.parametrize("affine", AFFINE)
@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
def test_backward(ctx, seed, dtype, container, affine):
    for i, (shape, ns) in enumerate(SHAPES):
        g = torch.Generator().manual_seed(seed + i)
        x = make(shape, DTYPES[dtype], g)
        w, b = params(ns, DTYPES[dtype], affine, g)
        dy = make(shape, DTYPES[dtype], g, 1.0, 0.0)
        what = "layer_norm_backward %s %s/%s" % (affine, shape, ns)
        # Reference: torch.autograd in float64 from the same rounded inputs.
        x64 = x.double().requires_grad_()
        w64 = None if w is None else w.double().requires_grad_()
        b64 = None if b is None else b.double().requires_grad_()
        torch.nn.functional.layer_norm(x64, ns, w64, b64, 1e-5).backward(dy.double())
        _, mean, rstd = dk.layer_norm(wrap(x, container), ns, wrap(w, container), wrap(b, container),
                                      return_stats=True, context=ctx)
        dx, dw, db = dk.layer_norm_backward(wrap(dy, container), wrap(x, container), mean, rstd, ns,
                                            wrap(w, container), wrap(b, container), context=ctx)
        assert_close(dx, x64.grad, dtype, seed + i, what + " dx", floor(x))
        if w is None:
            assert dw is None
        else:
            assert tuple(dw.shape) == ns and (dw.dtype == w.dtype if container == "torch" else True)
            assert_close(dw, w64.grad, dtype, seed + i, what + " dweight", max(floor(x), param_floors(x, dy, ns)[0]))
        if w is None and b is None:
            assert db is None
        else:
            assert tuple(db.shape) == ns
            ref_db = b64.grad if b is not None else dy.double().reshape(-1, int(np.prod(ns))).sum(0).reshape(ns)
            assert_close(db, ref_db, dtype, seed + i, what + " dbias", param_floors(x, dy, ns)[1])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_float32_weights_with_half_input(ctx, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    shape, ns = (6, 45), (45,)
    x = make(shape, DTYPES[dtype], g)
    w, b = params(ns, torch.float32, "weight_bias", g)
    dy = make(shape, DTYPES[dtype], g, 1.0, 0.0)
    y, mean, rstd = dk.layer_norm(x, ns, w, b, return_stats=True, context=ctx)
    assert y.dtype == DTYPES[dtype]
    assert_close(y, reference(x, ns, w, b, 1e-5)[0], dtype, seed)
    x64, w64, b64 = (t.double().requires_grad_() for t in (x, w, b))
    torch.nn.functional.layer_norm(x64, ns, w64, b64).backward(dy.double())
    dx, dw, db = dk.layer_norm_backward(dy, x, mean, rstd, ns, w, b, context=ctx)
    assert dw.dtype == torch.float32 and db.dtype == torch.float32
    assert_close(dx, x64.grad, dtype, seed, "dx")
    fw, fb = param_floors(x, dy, ns)
    assert_close(dw, w64.grad, dtype, seed, "dweight", fw)
    assert_close(db, b64.grad, dtype, seed, "dbias", fb)


def test_torch_keepdim_statistics_accepted(ctx, seed):
    """mean/rstd as torch.native_layer_norm returns them ([rows..., 1]) work in the backward too."""
    g = torch.Generator().manual_seed(seed)
    x = make((3, 5, 16), torch.float32, g)
    dy = make((3, 5, 16), torch.float32, g, 1.0, 0.0)
    _, mean, rstd = torch.native_layer_norm(x, (16,), None, None, 1e-5)
    assert mean.shape == (3, 5, 1)
    dx, dw, db = dk.layer_norm_backward(dy, x, mean, rstd, 16, context=ctx)
    x64 = x.double().requires_grad_()
    torch.nn.functional.layer_norm(x64, (16,)).backward(dy.double())
    assert dw is None and db is None
    assert_close(dx, x64.grad, "float32", seed)


def test_large_rows(ctx, seed):
    g = torch.Generator().manual_seed(seed)
    x = make((3, 16384), torch.float32, g, 3.0, 100.0)  # large mean: the variance must not cancel
    w, b = params((16384,), torch.float32, "weight_bias", g)
    assert_close(dk.layer_norm(x.numpy(), 16384, w.numpy(), b.numpy(), context=ctx),
                 reference(x, (16384,), w, b, 1e-5)[0], "float32", seed)


def test_many_rows_weight_gradients(ctx, seed):
    """dweight/dbias reduce over every row: many rows, few columns."""
    g = torch.Generator().manual_seed(seed)
    shape, ns = (4099, 3), (3,)
    x, dy = make(shape, torch.float32, g), make(shape, torch.float32, g, 1.0, 0.0)
    w, b = params(ns, torch.float32, "weight_bias", g)
    _, mean, rstd = dk.layer_norm(x.numpy(), ns, w.numpy(), b.numpy(), return_stats=True, context=ctx)
    dx, dw, db = dk.layer_norm_backward(dy.numpy(), x.numpy(), mean, rstd, ns, w.numpy(), b.numpy(), context=ctx)
    x64, w64, b64 = (t.double().requires_grad_() for t in (x, w, b))
    torch.nn.functional.layer_norm(x64, ns, w64, b64).backward(dy.double())
    assert_close(dx, x64.grad, "float32", seed, "dx")
    fw, fb = param_floors(x, dy, ns)
    assert_close(dw, w64.grad, "float32", seed, "dweight", fw)
    assert_close(db, b64.grad, "float32", seed, "dbias", fb)
