"""dlkernels.elementwise against PyTorch computed in float64 from the same rounded inputs.

Activations forward and backward (from the input, and from the output where torch has that form), every kind and
parameter, float32/float16 through NumPy and torch, bfloat16 through torch; broadcast add/mul and their gradients
(torch autograd), sum_to_shape (Tensor.sum_to_size), scale, residual add, cat/split (exact), and error messages.
"""

import numpy as np
import pytest

import dlkernels as dk
from conftest import assert_close
from dlkernels import elementwise as ew

torch = pytest.importorskip("torch")
F = torch.nn.functional

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
CASES = [("float32", "numpy"), ("float32", "torch"), ("float16", "numpy"), ("float16", "torch"),
         ("bfloat16", "torch")]
CASE_IDS = ["%s-%s" % c for c in CASES]
SHAPES = [(1,), (7,), (3, 33), (2, 3, 5, 7), (4099,)]

# name -> (dlkernels forward, torch forward on float64, kwargs)
ACTIVATIONS = {
    "relu": (ew.relu, F.relu, {}),
    "leaky_relu": (ew.leaky_relu, F.leaky_relu, {}),
    "leaky_relu_0.2": (ew.leaky_relu, F.leaky_relu, {"negative_slope": 0.2}),
    "elu": (ew.elu, F.elu, {}),
    "elu_1.7": (ew.elu, F.elu, {"alpha": 1.7}),
    "gelu": (ew.gelu, F.gelu, {}),
    "gelu_tanh": (ew.gelu, F.gelu, {"approximate": "tanh"}),
    "tanh": (ew.tanh, torch.tanh, {}),
    "sigmoid": (ew.sigmoid, torch.sigmoid, {}),
    "silu": (ew.silu, F.silu, {}),
}


def make(shape, dtype, seed, spread=3.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * spread).to(DTYPES[dtype])


def wrap(t, container):
    return t.numpy() if container == "numpy" else t


def f64(a):
    return torch.as_tensor(np.asarray(a, dtype=np.float64)) if not torch.is_tensor(a) else a.double()


@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_forward(ctx, seed, name, dtype, container):
    ours, ref, kw = ACTIVATIONS[name]
    for shape in SHAPES:
        x = make(shape, dtype, seed)
        x.view(-1)[::13] = 0.0
        y = ours(wrap(x, container), **kw, context=ctx)
        assert type(y) is type(wrap(x, container))
        assert tuple(y.shape) == shape and str(y.dtype).endswith(dtype)
        assert_close(y, ref(x.double(), **kw), dtype, seed, "%s %s" % (name, shape))


def _backward_forms(name):
    """(our backward function, kwargs, which saved tensor it takes) for the forms an activation has."""
    kw = ACTIVATIONS[name][2]
    base = name.split("_")[0] if not name.startswith(("leaky", "gelu")) else name.rsplit("_", 1)[0]
    if name.startswith("leaky"):
        return [(ew.leaky_relu_backward, kw, "input")]
    if name.startswith("gelu"):
        return [(ew.gelu_backward, kw, "input")]
    if name.startswith("elu"):
        return [(ew.elu_backward, kw, "input"), (ew.elu_backward, kw, "output")]
    fn = getattr(ew, base + "_backward")
    if base == "silu":
        return [(fn, kw, "input")]
    return [(fn, kw, "input"), (fn, kw, "output")]


@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_backward(ctx, seed, name, dtype, container):
    ours, ref, kw = ACTIVATIONS[name]
    for shape in [(7,), (3, 33), (2, 3, 5, 7)]:
        x = make(shape, dtype, seed)
        dy = make(shape, dtype, seed + 1, 1.0)
        x64 = x.double().requires_grad_(True)
        (expected,) = torch.autograd.grad(ref(x64, **kw), x64, dy.double())
        y = ours(wrap(x, container), **kw, context=ctx)
        for fn, fkw, saved in _backward_forms(name):
            args = {"input": wrap(x, container)} if saved == "input" else {"output": y}
            if fn is ew.elu_backward and saved == "output":
                dx = fn(wrap(dy, container), None, output=y, **fkw, context=ctx)
            elif saved == "input" and fn in (ew.tanh_backward, ew.sigmoid_backward):
                dx = fn(wrap(dy, container), input=wrap(x, container), context=ctx)
            elif saved == "output":
                dx = fn(wrap(dy, container), **args, context=ctx)
            else:
                dx = fn(wrap(dy, container), wrap(x, container), **fkw, context=ctx)
            want = expected
            if saved == "output":  # torch's result-based kernels, in float64 on the stored output
                y64, dy64 = torch.as_tensor(np.asarray(y.float() if torch.is_tensor(y) else y)).double(), dy.double()
                aten = torch.ops.aten
                want = {"relu": lambda: aten.threshold_backward(dy64, y64, 0),
                       "tanh": lambda: aten.tanh_backward(dy64, y64),
                       "sigmoid": lambda: aten.sigmoid_backward(dy64, y64),
                       }.get(name, lambda: aten.elu_backward(dy64, kw.get("alpha", 1.0), 1, 1, True, y64))()
            assert_close(dx, want, dtype, seed, "%s backward from %s %s" % (name, saved, shape))


def test_activation_conventions(ctx, seed):
    x = torch.tensor([0.0, -0.0, 1.0, -2.0, float("nan")])
    dy = torch.ones(5)
    assert ew.relu_backward(dy, x, context=ctx)[0] == 0.0  # gradient 0 at 0, as torch
    assert ew.leaky_relu_backward(dy, x, 0.3, context=ctx)[0] == pytest.approx(0.3)
    assert ew.elu_backward(dy, x, 1.5, context=ctx)[0] == 1.5
    assert torch.isnan(ew.relu(x, context=ctx)[4])
    x = torch.randn(100)
    xi = x.clone()
    out = ew.relu(xi, inplace=True, context=ctx)
    assert out is xi and torch.equal(xi, F.relu(x))
    a = np.random.default_rng(seed).standard_normal(50).astype(np.float32)
    expected = F.silu(torch.from_numpy(a.copy()).double())
    assert ew.silu(a, inplace=True, context=ctx) is a
    assert_close(a, expected, "float32", seed)
    with pytest.raises(ValueError):
        ew.gelu(x, approximate="fast")


def test_activation_errors(ctx):
    with pytest.raises(dk.Error) as e:
        ew.leaky_relu(torch.randn(4), float("nan"), context=ctx)
    assert "negative_slope" in str(e.value)
    with pytest.raises(dk.Error) as e:
        ew.gelu_backward(torch.randn(4), torch.randn(5), context=ctx)
    assert "[5]" in str(e.value) or "[4]" in str(e.value)


BROADCAST = [((3, 5, 7), (3, 5, 7)), ((4, 1, 5), (3, 1)), ((), (2, 3)), ((2, 3), ()), ((1,), (5,)), ((5,), (1,)),
             ((2, 3, 1), (1, 1, 4)), ((33, 17), (17,)), ((2, 1, 3, 1, 5), (4, 1, 5, 1)), ((1000,), ())]


def sum_floor(terms, shape):
    """The norm of the sums of |terms| reduced to `shape`: what a reduction's rounding error scales with. A sum that
    nearly cancels is ill-conditioned relative to itself, so reduced gradients are judged against this instead."""
    return float(np.linalg.norm(terms.abs().double().sum_to_size(shape).numpy().ravel()))


@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
def test_add_mul_broadcast_and_backward(ctx, seed, dtype, container):
    for sa, sb in BROADCAST:
        a, b = make(sa, dtype, seed), make(sb, dtype, seed + 1)
        a64, b64 = a.double().requires_grad_(True), b.double().requires_grad_(True)
        what = "%s %s" % (sa, sb)
        out = ew.add(wrap(a, container), wrap(b, container), alpha=0.5, context=ctx)
        ref = torch.add(a64, b64, alpha=0.5)
        assert tuple(out.shape) == tuple(ref.shape)
        assert_close(out, ref, dtype, seed, "add " + what)
        dy = make(ref.shape, dtype, seed + 2, 1.0)
        ga, gb = torch.autograd.grad(ref, (a64, b64), dy.double())
        da, db = ew.add_backward(wrap(dy, container), sa, sb, alpha=0.5, context=ctx)
        assert_close(da, ga, dtype, seed, "add da " + what, sum_floor(dy, sa))
        assert_close(db, gb, dtype, seed, "add db " + what, 0.5 * sum_floor(dy, sb))
        out = ew.mul(wrap(a, container), wrap(b, container), context=ctx)
        ref = torch.mul(a64, b64)
        assert_close(out, ref, dtype, seed, "mul " + what)
        ga, gb = torch.autograd.grad(ref, (a64, b64), dy.double())
        da, db = ew.mul_backward(wrap(dy, container), wrap(a, container), wrap(b, container), context=ctx)
        bb, aa = b.double().expand(ref.shape), a.double().expand(ref.shape)
        assert_close(da, ga, dtype, seed, "mul da " + what, sum_floor(dy.double() * bb, sa))
        assert_close(db, gb, dtype, seed, "mul db " + what, sum_floor(dy.double() * aa, sb))


def test_scalars_scale_residual_sum_to(ctx, seed):
    x = make((6, 5), "float32", seed)
    assert_close(ew.add(x, 2.5, context=ctx), x.double() + 2.5, "float32", seed)
    assert_close(ew.mul(x, -3, context=ctx), x.double() * -3, "float32", seed)
    assert_close(ew.scale(x, 0.25, context=ctx), x.double() * 0.25, "float32", seed)
    y = x.clone()
    r = make((5,), "float32", seed + 1)
    assert ew.residual_add(y, r, 0.5, context=ctx) is y
    assert_close(y, x.double() + 0.5 * r.double(), "float32", seed)
    for shape in [(6, 1), (5,), (1,), (), (6, 5)]:
        assert_close(ew.sum_to_shape(x, shape, context=ctx), x.double().sum_to_size(shape), "float32", seed,
                     "sum_to %s" % (shape,), sum_floor(x, shape))


def test_broadcast_errors(ctx):
    with pytest.raises(dk.Error) as e:
        ew.add(torch.randn(4, 1, 5), torch.randn(3, 2), context=ctx)
    assert "[4,1,5]" in str(e.value) and "[3,2]" in str(e.value)
    assert e.value.status == dk.Status.DLK_ERROR_SHAPE


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_cat_split(ctx, seed, dtype):
    base = make((2, 3, 4, 5), dtype, seed)
    for dim in range(-4, 4):
        parts = [make(tuple(s if i != dim % 4 else k for i, s in enumerate(base.shape)), dtype, seed + k)
                 for k in (1, 0, 3, 2)]
        out = ew.cat(parts, dim, context=ctx)
        assert torch.equal(out, torch.cat(parts, dim))
        for sections in ([1, 0, 3, 2], 2, 4, 1):
            ours = ew.split(out, sections, dim, context=ctx)
            theirs = torch.split(out, sections, dim)
            assert len(ours) == len(theirs)
            for o, t in zip(ours, theirs):
                assert torch.equal(o, t)
    if dtype != "bfloat16":
        a = base.numpy()
        assert np.array_equal(ew.cat([a, a], 1, context=ctx), np.concatenate([a, a], 1))
    with pytest.raises(dk.Error) as e:
        ew.cat([base, make((2, 3, 4, 6), dtype, seed)], 1, context=ctx)
    assert "inputs[1]" in str(e.value) and "dim 3" in str(e.value)
