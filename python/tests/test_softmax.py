"""dlkernels.softmax / softmax_backward against PyTorch computed in float64 from the same rounded inputs.

Every mask kind (none, causal top-left and bottom-right, key padding, boolean, additive, broadcast masks), scales,
float32/float16 through NumPy and torch, bfloat16 through torch, odd sizes, fully masked rows, edge values.
"""

import math

import numpy as np
import pytest

import dlkernels as dk
from conftest import assert_close

torch = pytest.importorskip("torch")

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# (dtype, container): NumPy has no bfloat16, so bf16 goes through torch only.
CASES = [("float32", "numpy"), ("float32", "torch"), ("float16", "numpy"), ("float16", "torch"),
         ("bfloat16", "torch")]
CASE_IDS = ["%s-%s" % c for c in CASES]
# Odd sizes, rank 2 to 4; (2,4,7,5) has more rows than columns (bottom-right masks whole rows).
SHAPES = [(1, 1), (3, 7), (2, 3, 5, 7), (2, 4, 7, 5), (2, 1, 33, 33), (1, 2, 3, 1000)]
SCALES = [1.0, 0.125, 1.7]
MASKS = ["none", "causal_top_left", "causal_bottom_right", "key_padding", "bool", "bool_broadcast",
         "bool_trailing", "additive", "additive_broadcast", "additive_trailing"]


def make(shape, dtype, seed, spread=3.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * spread).to(DTYPES[dtype]), g


def wrap(t, container):
    """A torch tensor as the container under test (NumPy shares the memory)."""
    return t.numpy() if container == "numpy" else t


def mask_shape(shape, how):
    if how.endswith("broadcast"):  # keep dim 0 and the last dim, broadcast the ones between
        return (shape[0],) + (1,) * (len(shape) - 2) + (shape[-1],)
    if how.endswith("trailing"):  # fewer dims than the input: aligned from the right
        return tuple(shape[-2:])
    return tuple(shape)


def build_mask(kind, shape, dtype, container, g):
    """Returns (kwargs for dk.softmax, masked: bool tensor broadcastable to shape or None, additive or None)."""
    R, C = shape[-2], shape[-1]
    if kind == "none":
        return {}, None, None
    if kind.startswith("causal"):
        bottom_right = kind == "causal_bottom_right"
        masked = torch.triu(torch.ones(R, C, dtype=torch.bool), diagonal=1 + (C - R if bottom_right else 0))
        return {"causal": "bottom_right" if bottom_right else "top_left"}, masked, None
    if kind == "key_padding":
        B = shape[0]
        lengths = torch.randint(0, C + 1, (B,), generator=g)
        lengths[0] = 0 if B > 1 else lengths[0]  # one fully padded batch entry
        masked = torch.arange(C).view(*([1] * (len(shape) - 1)), C) >= lengths.view(B, *([1] * (len(shape) - 1)))
        given = lengths.to(torch.int32) if container == "torch" else lengths.numpy()
        return {"lengths": given}, masked, None
    mshape = mask_shape(shape, kind)
    if kind.startswith("bool"):
        keep = torch.rand(mshape, generator=g) > 0.3
        if len(mshape) >= 2 and mshape[-2] > 1:
            keep[..., 1, :] = False  # a fully masked row
        return {"mask": wrap(keep, container)}, ~keep, None
    additive = torch.randn(mshape, generator=g, dtype=torch.float64)
    additive[torch.rand(mshape, generator=g) < 0.2] = -math.inf
    if len(mshape) >= 2 and mshape[-2] > 1:
        additive[..., 1, :] = -math.inf  # a fully masked row
    # Torch masks come in the input's dtype (as SDPA wants); NumPy masks in float32.
    given = additive.to(DTYPES[dtype]) if container == "torch" else additive.to(torch.float32)
    return {"mask": wrap(given, container)}, None, given.double()


def reference(x, scale, masked, additive):
    """float64 softmax; fully masked rows are zeros."""
    s = x.double() * scale
    if additive is not None:
        s = s + additive
    if masked is not None:
        s = s.masked_fill(masked, -math.inf)
    return torch.nan_to_num(torch.softmax(s, -1), nan=0.0)


def check_kind(out, like, container):
    if container == "numpy":
        assert isinstance(out, np.ndarray) and out.dtype == like.numpy().dtype
    else:
        assert isinstance(out, torch.Tensor) and out.dtype == like.dtype


@pytest.mark.parametrize("kind", MASKS)
@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
def test_forward(ctx, seed, dtype, container, kind):
    for i, shape in enumerate(SHAPES):
        scale = SCALES[i % len(SCALES)]
        x, g = make(shape, dtype, seed + i)
        kwargs, masked, additive = build_mask(kind, shape, dtype, container, g)
        out = dk.softmax(wrap(x, container), -1, scale=scale, context=ctx, **kwargs)
        check_kind(out, x, container)
        ref = reference(x, scale, masked, additive)
        assert_close(out, ref, dtype, seed + i, "softmax %s %s scale=%g" % (kind, shape, scale))
        # Fully masked rows are exactly zero, not NaN.
        empty_rows = ref.sum(-1) == 0
        if empty_rows.any():
            o = torch.from_numpy(out.astype(np.float64)) if container == "numpy" else out.double()
            assert (o[empty_rows] == 0).all(), "fully masked rows must be zeros (seed=%d)" % (seed + i)


@pytest.mark.parametrize("shape", [(7,), (1,), (33,)])
def test_forward_rank1(ctx, seed, shape):
    x, g = make(shape, "float32", seed)
    keep = torch.rand(shape, generator=g) > 0.5
    assert_close(dk.softmax(x.numpy(), context=ctx), reference(x, 1.0, None, None), "float32", seed)
    assert_close(dk.softmax(x, mask=keep, context=ctx), reference(x, 1.0, ~keep, None), "float32", seed)


@pytest.mark.parametrize("kind", ["none", "causal_bottom_right", "key_padding", "bool_broadcast", "additive"])
@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
def test_backward(ctx, seed, dtype, container, kind):
    """softmax_backward from the library's own saved output, checked twice:
    - against torch's softmax backward (_softmax_backward_data, what autograd runs) in float64 on the very
      (rounded) grad_output and output the library received, every dtype;
    - end to end against torch.autograd through the scaled, masked softmax from x, float32 only: in half precision
      the saved output itself is rounded to 8 or 11 bits, and dx = y * (dy - sum(dy * y)) cancels, so that chain
      measures the dtype of the saved output rather than the kernel."""
    for i, shape in enumerate(SHAPES):
        scale = SCALES[i % len(SCALES)]
        x, g = make(shape, dtype, seed + i)
        kwargs, masked, additive = build_mask(kind, shape, dtype, container, g)
        dy = torch.randn(shape, generator=g, dtype=torch.float64).to(DTYPES[dtype])
        what = "softmax_backward %s %s scale=%g" % (kind, shape, scale)
        y = dk.softmax(wrap(x, container), -1, scale=scale, context=ctx, **kwargs)
        dx = dk.softmax_backward(wrap(dy, container), y, -1, scale=scale, context=ctx)
        check_kind(dx, x, container)
        y64 = torch.as_tensor(np.asarray(y, np.float64)) if container == "numpy" else y.double()
        ref = scale * torch._softmax_backward_data(dy.double(), y64, -1, torch.float64)
        assert_close(dx, ref, dtype, seed + i, what)
        if dtype != "float32":
            continue
        x64 = x.double().requires_grad_()
        s = x64 * scale
        if additive is not None:
            s = s + additive
        if masked is not None:
            s = s.masked_fill(masked, -math.inf)
        torch.softmax(s, -1).backward(dy.double())
        ref = torch.nan_to_num(x64.grad, nan=0.0)  # fully masked rows: no gradient
        assert_close(dx, ref, dtype, seed + i, what + " (autograd from x)")


def test_backward_matches_softmax_backward_data(ctx, seed):
    """Same argument order and result as torch's _softmax_backward_data(grad_output, output, dim, input_dtype)."""
    x, g = make((5, 33), "float32", seed)
    dy = torch.randn((5, 33), generator=g)
    y = torch.softmax(x.double(), -1)
    ref = torch._softmax_backward_data(dy.double(), y, -1, torch.float64)
    assert_close(dk.softmax_backward(dy.numpy(), y.float().numpy(), -1, context=ctx), ref, "float32", seed)


@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
def test_long_rows(ctx, seed, dtype, container):
    shape = (2, 65536 + 7)
    x, g = make(shape, dtype, seed)
    lengths = torch.tensor([40000, 65536 + 7])
    out = dk.softmax(wrap(x, container), lengths=lengths.numpy(), scale=0.5, context=ctx)
    masked = torch.arange(shape[1]).view(1, -1) >= lengths.view(2, 1)
    assert_close(out, reference(x, 0.5, masked, None), dtype, seed)


@pytest.mark.parametrize("dtype,spread", [("float32", 1e4), ("float16", 5e3), ("bfloat16", 1e30)])
def test_huge_logits(ctx, seed, dtype, spread):
    x, _ = make((4, 37), dtype, seed, spread)
    assert_close(dk.softmax(x, context=ctx), reference(x, 1.0, None, None), dtype, seed)


def test_negative_infinity_in_input(ctx, seed):
    x, g = make((6, 17), "float32", seed)
    x[torch.rand(x.shape, generator=g) < 0.3] = -math.inf
    x[:, 0] = 1.0  # every row keeps at least one finite entry
    assert_close(dk.softmax(x.numpy(), context=ctx), reference(x, 1.0, None, None), "float32", seed)


@pytest.mark.parametrize("shape", [(0, 5), (3, 0), (2, 0, 4)])
def test_empty(ctx, shape):
    out = dk.softmax(np.zeros(shape, np.float32), context=ctx)
    assert out.shape == shape and out.dtype == np.float32
    assert dk.softmax_backward(np.zeros(shape, np.float32), out, context=ctx).shape == shape


def test_non_contiguous_inputs(ctx, seed):
    x, _ = make((9, 13), "float32", seed)
    ref = reference(x.t(), 1.0, None, None)
    assert_close(dk.softmax(x.numpy().T, context=ctx), ref, "float32", seed)  # NumPy transposed view
    assert_close(dk.softmax(x.t(), context=ctx), ref, "float32", seed)  # torch transposed view


def test_dim_and_dtype_arguments(ctx, seed):
    x, _ = make((3, 4, 5), "float16", seed)
    ref = reference(x, 1.0, None, None)
    assert_close(dk.softmax(x, 2, context=ctx), ref, "float16", seed)  # dim = ndim - 1 is the last dim too
    out = dk.softmax(x, dim=-1, dtype=torch.float32, context=ctx)  # torch's dtype=: cast first
    assert out.dtype == torch.float32
    assert_close(out, ref, "float32", seed)


def test_requires_grad_input(ctx, seed):
    x, _ = make((4, 9), "float32", seed)
    out = dk.softmax(x.clone().requires_grad_(), context=ctx)  # detached for the export, like torch.no_grad
    assert_close(out, reference(x, 1.0, None, None), "float32", seed)


def test_course_seed_cases(ctx):
    y = dk.softmax(np.array([4.3, 6.1, 2.3], np.float32), context=ctx)
    np.testing.assert_allclose(y, [0.1392, 0.8420, 0.0188], atol=1e-4)
    y = dk.softmax(np.array([0.1, -0.2, 0.3, -0.2, 0.5], np.float32), scale=8.0, context=ctx)
    np.testing.assert_allclose(y, [0.0326, 0.0030, 0.1615, 0.0030, 0.8000], atol=1e-4)
