"""dlkernels.random (dropout, embedding, init) against PyTorch.

Embedding forward/backward must equal torch's values. Dropout and init draw from the library's Philox streams, not
torch's generator, so their tests check properties: keep fractions, scaling, bounds, moments, reproducibility from
(seed, offset), and torch's formulas for gains, fans and bounds.
"""

import math

import numpy as np
import pytest

import dlkernels as dk
from conftest import assert_close, to_f64
from dlkernels import random as dr

torch = pytest.importorskip("torch")

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
CASES = [("float32", "numpy"), ("float32", "torch"), ("float16", "numpy"), ("float16", "torch"),
         ("bfloat16", "torch")]
CASE_IDS = ["%s-%s" % c for c in CASES]


def wrap(t, container):
    return t.numpy() if container == "numpy" else t


# ================================================================================================ embedding


@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("ishape", [(), (7,), (3, 5), (2, 3, 4)])
@pytest.mark.parametrize("padding_idx", [None, 3, -2])
def test_embedding_forward_and_backward_equal_torch(ctx, seed, dtype, container, index_dtype, ishape, padding_idx):
    g = torch.Generator().manual_seed(seed)
    V, D = 11, 9
    weight = torch.randn(V, D, generator=g, dtype=torch.float64).to(DTYPES[dtype])
    idx = torch.randint(0, V, ishape, generator=g).to(index_dtype)
    if idx.numel() >= 3:
        idx.view(-1)[:3] = 3  # duplicates, and the padding row when padding_idx == 3
    out = dr.embedding(wrap(idx, container), wrap(weight, container), padding_idx=padding_idx, context=ctx)
    ref = torch.nn.functional.embedding(idx.long(), weight, padding_idx=padding_idx)
    assert np.array_equal(to_f64(out), to_f64(ref))
    # Backward: torch's weight gradient of sum(out * c), computed in float64 from the same rounded values.
    c = torch.randn(tuple(ishape) + (D,), generator=g, dtype=torch.float64).to(DTYPES[dtype])
    w64 = weight.double().requires_grad_(True)
    torch.nn.functional.embedding(idx.long(), w64, padding_idx=padding_idx).mul(c.double()).sum().backward()
    grad = dr.embedding_backward(wrap(c, container), wrap(idx, container), V, padding_idx=padding_idx, context=ctx)
    assert_close(grad, w64.grad, dtype, seed, "grad_weight")
    if padding_idx is not None:
        assert np.all(to_f64(grad)[padding_idx] == 0)


@pytest.mark.parametrize("deterministic", [False, True])
def test_embedding_backward_many_duplicates_and_accumulate(device, seed, deterministic):
    ctx = dk.Context(device, deterministic=deterministic)
    rng = np.random.default_rng(seed)
    V, D, n = 6, 33, 500
    idx = rng.integers(0, V, size=(n,), dtype=np.int64)
    gout = rng.standard_normal((n, D)).astype(np.float32)
    base = rng.standard_normal((V, D)).astype(np.float32)
    acc = base.copy()
    got = dr.embedding_backward(gout, idx, V, grad_weight=acc, context=ctx)
    assert got is acc
    ref = base.astype(np.float64)
    np.add.at(ref, idx, gout.astype(np.float64))
    assert_close(acc, ref, "float32", seed, "accumulated grad_weight")
    if deterministic:
        again = dr.embedding_backward(gout, idx, V, context=ctx)
        assert np.array_equal(dr.embedding_backward(gout, idx, V, context=ctx), again)


def test_embedding_sparse_update_matches_sgd_on_torch_gradient(ctx, seed):
    rng = np.random.default_rng(seed)
    V, D = 20, 8
    idx = rng.integers(0, V, size=(4, 6))
    idx[0, :3] = 5
    grad_rows = rng.standard_normal((4, 6, D)).astype(np.float32)
    weight = rng.standard_normal((V, D)).astype(np.float32)
    w = torch.tensor(weight, dtype=torch.float64, requires_grad=True)
    torch.nn.functional.embedding(torch.tensor(idx), w).mul(torch.tensor(grad_rows, dtype=torch.float64)).sum() \
        .backward()
    expected = w.detach() - 0.1 * w.grad
    out = dr.embedding_sparse_update_(weight, idx, grad_rows, 0.1, context=ctx)
    assert out is weight
    assert_close(weight, expected, "float32", seed, "updated table")


def test_embedding_rejects_bad_inputs(ctx):
    w = np.zeros((10, 4), np.float32)
    with pytest.raises(dk.Error) as e:
        dr.embedding(np.array([1, 10]), w, context=ctx)
    assert "out of range" in str(e.value)
    with pytest.raises(dk.Error) as e:
        dr.embedding(np.array([1.0, 2.0], np.float32), w, context=ctx)
    assert e.value.status_name == "DLK_ERROR_DTYPE" and "indices" in str(e.value)
    with pytest.raises(dk.Error) as e:
        dr.embedding(np.array([1]), np.zeros((2, 3, 4), np.float32), context=ctx)
    assert e.value.status_name == "DLK_ERROR_SHAPE" and "rank 2" in str(e.value)
    with pytest.raises(dk.Error):
        dr.embedding(np.array([1]), w, padding_idx=10, context=ctx)
    with pytest.raises(NotImplementedError):
        dr.embedding(np.array([1]), w, max_norm=1.0, context=ctx)


# ================================================================================================== dropout


@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_keeps_1_minus_p_and_scales_like_torch(ctx, seed, dtype, container, p):
    n = 20000 if ctx.device != "emu" else 8000
    x = (torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + 0.5).to(DTYPES[dtype])
    y, mask = dr.dropout(wrap(x, container), p, seed=seed, offset=7, return_mask=True, context=ctx)
    y, mask, x64 = to_f64(y), to_f64(mask), to_f64(x)
    kept = mask != 0
    assert np.all(y[~kept] == 0)
    assert_close(y[kept], x64[kept] / (1 - p), dtype, seed, "kept values")
    q, sd = 1 - p, math.sqrt(n * p * (1 - p))
    assert abs(kept.sum() - n * q) < 5 * sd
    # torch's dropout scales the same way: both keep E[y] = x.
    yt = torch.nn.functional.dropout(x.double(), p, training=True)
    for yy in (y, to_f64(yt)):
        assert abs(yy.sum() / x64.sum() - 1) < 6 * math.sqrt(p / (q * n))


def test_dropout_special_cases_and_backward(ctx, seed):
    x = np.random.default_rng(seed).standard_normal((7, 13)).astype(np.float32)
    assert np.array_equal(dr.dropout(x, 0.0, seed=1, context=ctx), x)
    assert np.array_equal(dr.dropout(x, 0.6, training=False, seed=1, context=ctx), x)
    y1 = dr.dropout(x, 1.0, seed=1, context=ctx)
    assert np.all(y1 == 0) and not np.isnan(y1).any()
    y, mask = dr.dropout(x, 0.3, seed=seed, offset=100, return_mask=True, context=ctx)
    assert np.array_equal(dr.dropout(x, 0.3, seed=seed, offset=100, context=ctx), y)  # reproducible
    assert not np.array_equal(dr.dropout(x, 0.3, seed=seed, offset=100 + x.size, context=ctx), y)
    dy = np.random.default_rng(seed + 1).standard_normal(x.shape).astype(np.float32)
    g_mask = dr.dropout_backward(dy, mask, 0.3, context=ctx)
    g_regen = dr.dropout_backward(dy, None, 0.3, seed=seed, offset=100, context=ctx)
    assert np.array_equal(g_mask, g_regen)
    assert_close(g_mask, dy.astype(np.float64) * mask / 0.7, "float32", seed, "grad_input")
    # The derivative matches torch's autograd through the same mask.
    xt = torch.tensor(x, requires_grad=True)
    (xt * torch.tensor(mask, dtype=torch.float32) / 0.7).mul(torch.tensor(dy)).sum().backward()
    assert_close(g_mask, xt.grad, "float32", seed, "vs torch autograd")
    with pytest.raises(ValueError):
        dr.dropout_backward(dy, None, 0.3, context=ctx)
    # inplace: on a NumPy array, a non-contiguous view, and a torch tensor.
    for arr in (x.copy(), np.asfortranarray(x), torch.tensor(x)):
        out = dr.dropout(arr, 0.3, inplace=True, seed=seed, offset=100, context=ctx)
        assert out is arr
        assert np.array_equal(to_f64(arr), y.astype(np.float64))


def test_dropout_global_stream_advances(ctx):
    x = np.ones(1000, np.float32)
    dr.manual_seed(1234)
    a = dr.dropout(x, 0.5, context=ctx)
    assert dr.get_rng_state() == (1234, 1000)
    b = dr.dropout(x, 0.5, context=ctx)
    assert not np.array_equal(a, b)
    assert np.array_equal(b, dr.dropout(x, 0.5, seed=1234, offset=1000, context=ctx))


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_dropout_rejects_bad_p(ctx, p):
    with pytest.raises(dk.Error) as e:
        dr.dropout(np.ones(4, np.float32), p, seed=0, context=ctx)
    assert e.value.status_name == "DLK_ERROR_INVALID_ARGUMENT" and "params->p" in str(e.value)


# ===================================================================================================== init


@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
def test_linear_default_init_lies_in_its_bound_and_fills_it(ctx, seed, dtype, container):
    lin = torch.nn.Linear(64, 128)
    w = wrap(torch.full((128, 64), float("nan"), dtype=DTYPES[dtype]), container)
    b = wrap(torch.full((128,), float("nan"), dtype=DTYPES[dtype]), container)
    dr.linear_(w, b, seed=seed, context=ctx)
    bound = 1 / math.sqrt(64)
    for t, ref in ((to_f64(w), lin.weight), (to_f64(b), lin.bias)):
        assert not np.isnan(t).any()
        assert t.min() >= -bound and t.max() <= bound
        fill = 0.9 if t.size > 1000 else 0.75  # 128 bias values miss the outer 10% now and then
        assert t.min() < -fill * bound and t.max() > fill * bound
        # torch's own draw has the same range (a PyTorch user's expectation).
        assert float(ref.abs().max()) <= bound
    wv = to_f64(w)
    assert abs(wv.mean()) < 5 * bound / math.sqrt(3 * wv.size)
    assert abs(wv.var() / (bound ** 2 / 3) - 1) < 0.05
    # kaiming_uniform_(a=sqrt(5)) is the same distribution.
    w2 = np.empty((128, 64), np.float32)
    dr.kaiming_uniform_(w2, a=math.sqrt(5), seed=seed, context=ctx)
    assert np.abs(w2).max() <= bound


@pytest.mark.parametrize("fn,kwargs,expected_std", [
    ("normal_", {"mean": 1.5, "std": 0.3}, lambda fi, fo: 0.3),
    ("kaiming_normal_", {"mode": "fan_out", "nonlinearity": "relu"}, lambda fi, fo: math.sqrt(2) / math.sqrt(fo)),
    ("kaiming_normal_", {"a": 0.1}, lambda fi, fo: math.sqrt(2 / 1.01) / math.sqrt(fi)),
    ("xavier_normal_", {"gain": 5 / 3}, lambda fi, fo: 5 / 3 * math.sqrt(2 / (fi + fo))),
    ("kaiming_uniform_", {"nonlinearity": "tanh"}, lambda fi, fo: 5 / 3 / math.sqrt(fi)),
    ("xavier_uniform_", {}, lambda fi, fo: math.sqrt(2 / (fi + fo))),
    ("uniform_", {"a": -2.0, "b": 4.0}, lambda fi, fo: 6 / math.sqrt(12)),
])
def test_init_moments_match_torch(ctx, seed, fn, kwargs, expected_std):
    shape = (96, 40, 3) if ctx.device != "emu" else (48, 20, 3)
    fi, fo = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert dr._calculate_fan_in_and_fan_out(np.empty(shape)) == (fi, fo)
    ours = getattr(dr, fn)(np.full(shape, np.nan, np.float32), seed=seed, context=ctx, **kwargs)
    theirs = getattr(torch.nn.init, fn)(torch.empty(shape, dtype=torch.float64), **kwargs)
    n = ours.size
    for t in (ours, theirs.numpy()):
        assert not np.isnan(t).any()
        sd = expected_std(fi, fo)
        mean = kwargs.get("mean", (kwargs.get("a", 0) + kwargs.get("b", 0)) / 2 if fn == "uniform_" else 0.0)
        assert abs(t.mean() - mean) < 5 * sd / math.sqrt(n)
        assert abs(t.std() / sd - 1) < 0.07  # >= 5 standard errors of the sample std at n = 2880
    if "uniform" in fn:
        lim = np.abs(theirs.numpy()).max() if fn != "uniform_" else 4.0
        assert np.abs(ours).max() <= max(lim, sd * math.sqrt(3)) + 1e-6


def test_init_reproducible_in_place_and_on_torch_tensors(ctx, seed):
    a = np.empty((33, 17), np.float32)
    b = np.empty((33, 17), np.float32)
    dr.normal_(a, seed=seed, offset=5, context=ctx)
    dr.normal_(b, seed=seed, offset=5, context=ctx)
    assert np.array_equal(a, b)
    dr.normal_(b, seed=seed, offset=5 + a.size, context=ctx)
    assert not np.array_equal(a, b)
    # float64 and non-contiguous NumPy arrays go through a float32 copy; torch tensors (bf16 too) in place.
    c = np.empty((17, 33), np.float64).T
    dr.normal_(c, seed=seed, offset=5, context=ctx)
    assert np.array_equal(c, a.astype(np.float64))
    t = torch.empty(33, 17, dtype=torch.bfloat16)
    assert dr.normal_(t, seed=seed, offset=5, context=ctx) is t
    assert_close(t, a, "bfloat16", seed, "bf16 draw")
    tn = dr.trunc_normal_(np.empty(5000, np.float32), mean=0.5, std=1.0, a=0.0, b=1.0, seed=seed, context=ctx)
    assert tn.min() >= 0 and tn.max() <= 1 and 0.45 < tn.mean() < 0.55
    assert np.all(dr.constant_(np.empty(4, np.float32), 0.25, context=ctx) == 0.25)


def test_calculate_gain_matches_torch():
    for nl, param in [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None), ("relu", None),
                      ("leaky_relu", None), ("leaky_relu", 0.2), ("selu", None)]:
        assert dr.calculate_gain(nl, param) == pytest.approx(torch.nn.init.calculate_gain(nl, param))


def test_init_rejects_bad_inputs(ctx):
    with pytest.raises(dk.Error) as e:
        dr.kaiming_uniform_(np.empty(10, np.float32), seed=0, context=ctx)
    assert e.value.status_name == "DLK_ERROR_SHAPE"
    with pytest.raises(dk.Error):
        dr.uniform_(np.empty(10, np.float32), 2.0, 1.0, seed=0, context=ctx)
    with pytest.raises(ValueError):
        dr.kaiming_normal_(np.empty((3, 3), np.float32), mode="fan_sideways", context=ctx)
