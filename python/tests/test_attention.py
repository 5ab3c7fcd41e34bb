"""dlkernels.scaled_dot_product_attention (+ _backward) against PyTorch 1.13, which has no SDPA: the reference is
softmax(Q K^T * scale).masked_fill(...) V composed in float64 from the same rounded inputs, gradients by autograd.

Every mask kind (none, causal top-left / bottom-right, key padding, boolean, additive, broadcast), Tq != Tk, odd
lengths, head dims, float32/float16 (NumPy and torch) and bfloat16 (torch), dropout against a reference built from
dk.dropout's own mask, fully masked rows (zeros, not NaN).
"""

import math

import numpy as np
import pytest

import dlkernels as dk
from conftest import assert_close

torch = pytest.importorskip("torch")

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
CASES = [("float32", "numpy"), ("float32", "torch"), ("float16", "numpy"), ("float16", "torch"),
         ("bfloat16", "torch")]
CASE_IDS = ["%s-%s" % c for c in CASES]
MASKS = ["none", "causal", "causal_bottom_right", "key_padding", "bool", "bool_broadcast", "additive",
         "additive_heads"]
# (B, H, Tq, Tk, D)
SHAPES = [(1, 1, 1, 1, 8), (2, 3, 7, 7, 16), (1, 2, 5, 19, 32), (2, 1, 33, 9, 64), (1, 1, 129, 129, 24)]


def rand(shape, dtype, g):
    return torch.randn(shape, generator=g, dtype=torch.float64).to(DTYPES[dtype])


def wrap(t, container):
    return t.numpy() if container == "numpy" else t


def build_mask(kind, B, H, Tq, Tk, g):
    """(kwargs for dk, keep: bool [B|1, H|1, Tq, Tk] or None, additive float64 or None)."""
    if kind == "none":
        return {}, None, None
    if kind.startswith("causal"):
        off = Tk - Tq if kind == "causal_bottom_right" else 0
        keep = ~torch.triu(torch.ones(Tq, Tk, dtype=torch.bool), diagonal=1 + off)
        return {"is_causal": "bottom_right" if off else True}, keep, None
    if kind == "key_padding":
        lengths = torch.randint(1, Tk + 1, (B,), generator=g)
        keep = torch.arange(Tk).view(1, 1, 1, Tk) < lengths.view(B, 1, 1, 1)
        return {"lengths": lengths}, keep, None
    if kind.startswith("bool"):
        shape = (B, 1, 1, Tk) if kind == "bool_broadcast" else (B, H, Tq, Tk)
        keep = torch.rand(shape, generator=g) < 0.7
        keep[..., 0] = True  # no fully masked row: torch's composed reference would give NaN there
        return {"attn_mask": keep}, keep, None
    shape = (1, H, Tq, Tk) if kind == "additive_heads" else (Tq, Tk)
    add = torch.randn(shape, generator=g, dtype=torch.float64)
    add[torch.rand(shape, generator=g) < 0.2] = -math.inf
    add[..., 0] = 0.0
    return {"attn_mask": add.float()}, None, add


def reference(q, k, v, scale, keep, add, z=None):
    """float64 composed attention with autograd-able inputs; returns (out, lse)."""
    s = q @ k.transpose(-1, -2) * scale
    if add is not None:
        s = s + add
    if keep is not None:
        s = s.masked_fill(~keep, -math.inf)
    p = torch.softmax(s, dim=-1)
    lse = torch.logsumexp(s, dim=-1)
    if z is not None:
        p = p * z
    return p @ v, lse


def grad_floors(q, k, v, go, scale, keep, add, z=None):
    """Norms of dq and dk computed on |terms| (dS taken as P (|z dP| + |Dl|)): dq and dk cancel (sum_j dS_ij = 0), so
    their rounding scales with these, not with their own norms (the floor of assert_close)."""
    q, k, v, go = (t.detach().double() for t in (q, k, v, go))
    s = q @ k.transpose(-1, -2) * scale
    if add is not None:
        s = s + add
    if keep is not None:
        s = s.masked_fill(~keep, -math.inf)
    p = torch.nan_to_num(torch.softmax(s, dim=-1), nan=0.0)
    zz = torch.ones_like(p) if z is None else z
    out = (p * zz) @ v
    dl = (go * out).sum(-1, keepdim=True)
    mag = p * ((zz * (go @ v.transpose(-1, -2))).abs() + dl.abs())
    dq = abs(scale) * mag @ k.abs()
    dk = abs(scale) * mag.transpose(-1, -2) @ q.abs()
    return float(dq.norm()), float(dk.norm())


@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_and_backward_match_composed_torch(ctx, seed, dtype, container, mask, shape):
    B, H, Tq, Tk, D = shape
    if mask == "causal" and Tq > Tk:
        pytest.skip("top-left causal with Tq > Tk leaves fully masked rows (covered by test_fully_masked_rows)")
    if mask == "causal_bottom_right" and Tq > Tk:
        pytest.skip("bottom-right causal with Tq > Tk leaves fully masked rows (covered by test_fully_masked_rows)")
    g = torch.Generator().manual_seed(seed)
    q, k, v, go = rand((B, H, Tq, D), dtype, g), rand((B, H, Tk, D), dtype, g), rand((B, H, Tk, D), dtype, g), \
        rand((B, H, Tq, D), dtype, g)
    kwargs, keep, add = build_mask(mask, B, H, Tq, Tk, g)
    scale = 1.0 / math.sqrt(D)
    out, lse = dk.scaled_dot_product_attention(wrap(q, container), wrap(k, container), wrap(v, container),
                                               return_lse=True, context=ctx, **kwargs)
    qd, kd, vd = (t.double().requires_grad_() for t in (q, k, v))
    ref, ref_lse = reference(qd, kd, vd, scale, keep, add)
    assert_close(out, ref.detach(), dtype, seed, "output")
    assert_close(lse, ref_lse.detach(), 1e-5 if dtype == "float32" else 1e-2, seed, "lse")
    dq, dk_, dv = dk.scaled_dot_product_attention_backward(wrap(go, container), wrap(q, container), wrap(k, container),
                                                           wrap(v, container), out, lse, context=ctx, **kwargs)
    ref.backward(go.double())
    gtol = 1e-4 if dtype == "float32" else 2e-2  # gradients are sums that cancel
    fq, fk = grad_floors(q, k, v, go, scale, keep, add)
    assert_close(dq, qd.grad, gtol, seed, "grad_query", floor=fq)
    assert_close(dk_, kd.grad, gtol, seed, "grad_key", floor=fk)
    assert_close(dv, vd.grad, 1e-5 if dtype == "float32" else 1e-2, seed, "grad_value")


def test_explicit_scale_and_three_dim_inputs(ctx, seed):
    g = torch.Generator().manual_seed(seed)
    q, k, v = rand((3, 6, 16), "float32", g), rand((3, 10, 16), "float32", g), rand((3, 10, 16), "float32", g)
    out, lse = dk.scaled_dot_product_attention(q, k, v, scale=0.3, return_lse=True, context=ctx)
    qd, kd, vd = (t.double().requires_grad_() for t in (q, k, v))
    ref, ref_lse = reference(qd, kd, vd, 0.3, None, None)
    assert out.shape == (3, 6, 16) and lse.shape == (3, 6)
    assert_close(out, ref.detach(), "float32", seed)
    assert_close(lse, ref_lse.detach(), "float32", seed, "lse")
    go = rand((3, 6, 16), "float32", g)
    grads = dk.scaled_dot_product_attention_backward(go, q, k, v, out, lse, scale=0.3, context=ctx)
    ref.backward(go.double())
    for got, want, name in zip(grads, (qd.grad, kd.grad, vd.grad), ("grad_query", "grad_key", "grad_value")):
        assert got.shape == want.shape
        assert_close(got, want, 1e-4, seed, name)


def test_fully_masked_rows_give_zeros_not_nan(ctx, seed):
    g = torch.Generator().manual_seed(seed)
    B, H, Tq, Tk, D = 2, 2, 9, 4, 8
    q, k, v, go = (rand(s, "float32", g) for s in ((B, H, Tq, D), (B, H, Tk, D), (B, H, Tk, D), (B, H, Tq, D)))
    out, lse = dk.scaled_dot_product_attention(q, k, v, is_causal="bottom_right", return_lse=True, context=ctx)
    # Rows i < Tq - Tk see no key.
    dead = Tq - Tk
    assert torch.all(out[:, :, :dead] == 0) and torch.all(torch.isinf(lse[:, :, :dead]))
    keep = ~torch.triu(torch.ones(Tq, Tk, dtype=torch.bool), diagonal=1 + Tk - Tq)
    qd, kd, vd = (t.double().requires_grad_() for t in (q, k, v))
    ref, _ = reference(qd, kd, vd, 1 / math.sqrt(D), keep, None)
    ref = torch.nan_to_num(ref, nan=0.0)
    assert_close(out, ref.detach(), "float32", seed)
    dq, dk_, dv = dk.scaled_dot_product_attention_backward(go, q, k, v, out, lse, is_causal="bottom_right",
                                                           context=ctx)
    assert torch.all(dq[:, :, :dead] == 0)
    assert not torch.isnan(dk_).any() and not torch.isnan(dv).any()
    # The live rows' gradients match torch's on the live rows only.
    ref_live, _ = reference(qd[:, :, dead:], kd, vd, 1 / math.sqrt(D), keep[dead:], None)
    ref_live.backward(go[:, :, dead:].double())
    assert_close(dk_, kd.grad, 1e-4, seed, "grad_key")
    assert_close(dv, vd.grad, 1e-5, seed, "grad_value")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_dropout_matches_the_dropout_ops_mask(ctx, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    B, H, Tq, Tk, D, p = 2, 2, 11, 13, 16, 0.2
    q, k, v, go = (rand(s, dtype, g) for s in ((B, H, Tq, D), (B, H, Tk, D), (B, H, Tk, D), (B, H, Tq, D)))
    rng_seed, offset = seed * 7919 + 1, 4 * seed % 1000 + 1
    out, lse = dk.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True, seed=rng_seed, offset=offset,
                                               return_lse=True, context=ctx)
    # The keep mask of the dropout op over [B, H, Tq, Tk] with the same (seed, offset).
    _, keep_bits = dk.dropout(torch.ones(B, H, Tq, Tk), p, seed=rng_seed, offset=offset, return_mask=True,
                              context=ctx)
    z = keep_bits.double() / (1 - p)
    keep = ~torch.triu(torch.ones(Tq, Tk, dtype=torch.bool), diagonal=1)
    qd, kd, vd = (t.double().requires_grad_() for t in (q, k, v))
    ref, _ = reference(qd, kd, vd, 1 / math.sqrt(D), keep, None, z)
    assert_close(out, ref.detach(), dtype, seed, "output")
    dq, dk_, dv = dk.scaled_dot_product_attention_backward(go, q, k, v, out, lse, dropout_p=p, is_causal=True,
                                                           seed=rng_seed, offset=offset, context=ctx)
    ref.backward(go.double())
    gtol = 1e-4 if dtype == "float32" else 2e-2
    fq, fk = grad_floors(q, k, v, go, 1 / math.sqrt(D), keep, None, z)
    assert_close(dq, qd.grad, gtol, seed, "grad_query", floor=fq)
    assert_close(dk_, kd.grad, gtol, seed, "grad_key", floor=fk)
    assert_close(dv, vd.grad, 1e-5 if dtype == "float32" else 1e-2, seed, "grad_value")


def test_bad_arguments_raise(ctx):
    q = np.zeros((1, 1, 4, 8), np.float32)
    with pytest.raises(dk.Error, match="expected \\[1,1,4,8\\]"):
        dk.scaled_dot_product_attention(q, np.zeros((1, 1, 4, 9), np.float32), q, context=ctx)
    with pytest.raises(dk.Error, match="dropout_p"):
        dk.scaled_dot_product_attention(q, q, q, dropout_p=1.0, seed=1, context=ctx)
    with pytest.raises(dk.Error, match="broadcast"):
        dk.scaled_dot_product_attention(q, q, q, attn_mask=np.ones((3, 4), bool), context=ctx)
    with pytest.raises(ValueError):
        dk.scaled_dot_product_attention(q, q, q, attn_mask=np.ones((4, 4), bool), is_causal=True, context=ctx)
    with pytest.raises(ValueError):
        dk.scaled_dot_product_attention(q, q, q, scale=0.0, context=ctx)
