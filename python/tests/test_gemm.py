"""dlkernels.gemm (matmul, linear, linear_backward) against PyTorch computed in float64 from the same rounded inputs.

1-D / 2-D / batched / broadcast matmul, transposed views and flags, alpha/beta with out, every fused activation,
the backward against autograd (with accumulation), the seed case, and errors; float32/float16 through NumPy and
torch, bfloat16 through torch; odd sizes.
"""

import numpy as np
import pytest

import dlkernels as dk
from conftest import assert_close
from dlkernels import gemm

torch = pytest.importorskip("torch")
F = torch.nn.functional

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
CASES = [("float32", "numpy"), ("float32", "torch"), ("float16", "numpy"), ("float16", "torch"),
         ("bfloat16", "torch")]
CASE_IDS = ["%s-%s" % c for c in CASES]


def make(shape, dtype, g, scale=1.0):
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(DTYPES[dtype])


def wrap(t, container):
    return t.numpy() if container == "numpy" else t


def f64(t):
    return t.detach().to(torch.float64) if hasattr(t, "detach") else torch.from_numpy(np.asarray(t, np.float64))


MATMUL_SHAPES = [
    ((7,), (7,)), ((5,), (5, 3)), ((4, 5), (5,)), ((1, 1), (1, 1)), ((7, 33), (33, 65)), ((33, 1), (1, 7)),
    ((2, 3, 7, 5), (5, 4)), ((2, 3, 7, 5), (1, 3, 5, 4)), ((3, 1, 7, 5), (2, 5, 4)), ((5,), (2, 3, 5, 4)),
    ((2, 3, 4, 5), (5,)),
]


@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES, ids=[f"{a}x{b}" for a, b in MATMUL_SHAPES])
def test_matmul_matches_torch(ctx, seed, dtype, container, sa, sb):
    g = torch.Generator().manual_seed(seed)
    a, b = make(sa, dtype, g), make(sb, dtype, g)
    out = gemm.matmul(wrap(a, container), wrap(b, container), context=ctx)
    ref = torch.matmul(f64(a), f64(b))
    assert tuple(out.shape) == tuple(ref.shape)
    # A short dot product can nearly cancel: judge it against |a| @ |b|, what its rounding scales with.
    mag = torch.matmul(f64(a).abs(), f64(b).abs())
    assert_close(out, ref, dtype, seed, floor=float(np.linalg.norm(mag.numpy().ravel())))


@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
def test_matmul_transposed_views_and_flags(ctx, seed, dtype, container):
    g = torch.Generator().manual_seed(seed)
    a, b = make((33, 7), dtype, g), make((5, 33), dtype, g)
    ref = f64(a).T @ f64(b).T
    if container == "numpy":
        av, bv = a.numpy().T, b.numpy().T
    else:
        av, bv = a.mT, b.mT
    assert_close(gemm.matmul(av, bv, context=ctx), ref, dtype, seed, "views")
    assert_close(gemm.matmul(wrap(a, container), wrap(b, container), transpose_a=True, transpose_b=True,
                             context=ctx), ref, dtype, seed, "flags")
    # A transposed view with a transpose flag is the plain product again.
    c = make((7, 33), dtype, g)
    cv = c.numpy().T if container == "numpy" else c.mT
    assert_close(gemm.matmul(cv, wrap(b, container), transpose_a=True, transpose_b=True, context=ctx),
                 f64(c) @ f64(b).T, dtype, seed, "view+flag")


@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
def test_matmul_alpha_beta_out(ctx, seed, dtype, container):
    g = torch.Generator().manual_seed(seed)
    a, b, c = make((2, 7, 9), dtype, g), make((9, 5), dtype, g), make((2, 7, 5), dtype, g)
    ref = 0.5 * torch.matmul(f64(a), f64(b)) - 1.5 * f64(c)
    out = wrap(c.clone(), container)
    res = gemm.matmul(wrap(a, container), wrap(b, container), out=out, alpha=0.5, beta=-1.5, context=ctx)
    assert res is out
    assert_close(out, ref, dtype, seed)


ACTS = {None: lambda z: z, "relu": F.relu, "gelu": F.gelu, "gelu_tanh": lambda z: F.gelu(z, approximate="tanh")}


@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("activation", list(ACTS), ids=[str(a) for a in ACTS])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "nobias"])
def test_linear_forward(ctx, seed, dtype, container, activation, with_bias):
    g = torch.Generator().manual_seed(seed)
    x, w, b = make((2, 5, 33), dtype, g), make((7, 33), dtype, g, 0.3), make((7,), dtype, g)
    bias = b if with_bias else None
    y, z = gemm.linear(wrap(x, container), wrap(w, container), None if bias is None else wrap(bias, container),
                       activation=activation, return_pre_activation=True, context=ctx)
    zr = F.linear(f64(x), f64(w), None if bias is None else f64(bias))
    assert_close(z, zr, dtype, seed, "pre_activation")
    assert_close(y, ACTS[activation](zr), dtype, seed, "y")
    y2 = gemm.linear(wrap(x, container), wrap(w, container), None if bias is None else wrap(bias, container),
                     activation=activation, context=ctx)
    assert_close(y2, ACTS[activation](zr), dtype, seed, "y without z")


@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("activation", list(ACTS), ids=[str(a) for a in ACTS])
def test_linear_backward_matches_autograd(ctx, seed, dtype, container, activation):
    g = torch.Generator().manual_seed(seed)
    x, w, b, dy = (make((3, 4, 17), dtype, g), make((6, 17), dtype, g, 0.3), make((6,), dtype, g),
                   make((3, 4, 6), dtype, g))
    _, z = gemm.linear(wrap(x, container), wrap(w, container), wrap(b, container), activation=activation,
                       return_pre_activation=True, context=ctx)
    # Autograd in float64 from the stored z (the library's gradient uses it), then through the linear layer.
    zt = f64(torch.as_tensor(z) if container == "numpy" else z).requires_grad_()
    ACTS[activation](zt).backward(f64(dy))
    gz = zt.grad
    xr, wr = f64(x), f64(w)
    ref_dx, ref_dw, ref_db = gz @ wr, gz.reshape(-1, 6).T @ xr.reshape(-1, 17), gz.reshape(-1, 6).sum(0)
    dx, dw, db = gemm.linear_backward(wrap(dy, container), wrap(x, container), wrap(w, container),
                                      pre_activation=z, activation=activation, context=ctx)
    assert_close(dx, ref_dx, dtype, seed, "dx")
    assert_close(dw, ref_dw, dtype, seed, "dw")
    assert_close(db, ref_db, dtype, seed, "db")
    # Gradient accumulation into existing buffers.
    w0, b0 = make((6, 17), dtype, g), make((6,), dtype, g)
    wacc, bacc = wrap(w0.clone(), container), wrap(b0.clone(), container)
    _, dw2, db2 = gemm.linear_backward(wrap(dy, container), wrap(x, container), wrap(w, container),
                                       pre_activation=z, activation=activation, input_grad=False,
                                       weight_grad_out=wacc, bias_grad_out=bacc, accumulate=True, context=ctx)
    assert dw2 is wacc and db2 is bacc
    assert_close(wacc, ref_dw + f64(w0), dtype, seed, "dw accumulated")
    assert_close(bacc, ref_db + f64(b0), dtype, seed, "db accumulated")


def test_linear_backward_against_torch_autograd_end_to_end(ctx, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(5, 9, generator=g).requires_grad_()
    w = torch.randn(4, 9, generator=g).requires_grad_()
    b = torch.randn(4, generator=g).requires_grad_()
    dy = torch.randn(5, 4, generator=g)
    F.gelu(F.linear(x, w, b), approximate="tanh").backward(dy)
    _, z = gemm.linear(x, w, b, activation="gelu_tanh", return_pre_activation=True, context=ctx)
    dx, dw, db = gemm.linear_backward(dy, x, w, pre_activation=z, activation="gelu_tanh", context=ctx)
    assert_close(dx, x.grad, "float32", seed, "dx")
    assert_close(dw, w.grad, "float32", seed, "dw")
    assert_close(db, b.grad, "float32", seed, "db")


def test_linear_seed_case(ctx):
    x = np.array([[0.3471, 0.4547, -0.2356]], np.float32)
    w = np.array([[-0.1971, -0.4996, 0.1233], [0.2203, 0.3508, -0.1402]], np.float32)
    b = np.array([-0.4006, 0.0538], np.float32)
    y = gemm.linear(x, w, b, context=ctx)
    np.testing.assert_array_equal(np.round(y.astype(np.float64), 4), [[-0.7252, 0.3228]])


def test_errors_name_the_shapes(ctx):
    a, b = np.ones((3, 4), np.float32), np.ones((5, 6), np.float32)
    with pytest.raises(dk.Error) as e:
        gemm.matmul(a, b, context=ctx)
    assert "[3,4]" in str(e.value) and "[5,6]" in str(e.value)
    with pytest.raises(dk.Error) as e:
        gemm.matmul(np.ones((2, 3, 4), np.float32), np.ones((3, 4, 5), np.float32), context=ctx)
    assert "do not broadcast" in str(e.value)
    with pytest.raises(dk.Error) as e:
        gemm.matmul(a, np.ones((4, 6), np.float16), context=ctx)
    assert e.value.status_name == "DLK_ERROR_DTYPE"
    with pytest.raises(dk.Error):
        gemm.linear(a, np.ones((2, 5), np.float32), context=ctx)
    with pytest.raises(ValueError):
        gemm.linear(a, np.ones((2, 4), np.float32), activation="swish", context=ctx)
