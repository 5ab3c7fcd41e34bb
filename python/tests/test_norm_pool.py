"""dlkernels.norm_pool (batch norm, pooling, unpooling, interpolate) against PyTorch on random inputs: forward values,
max-pool indices (exactly), running-stat updates, and every backward against torch.autograd. float32 through NumPy
and torch, float16/bfloat16 through torch; odd sizes (H, W in 1, 7, 13)."""

import numpy as np
import pytest

from conftest import assert_close
from dlkernels import norm_pool as dk

torch = pytest.importorskip("torch")
F = torch.nn.functional

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
CASES = [("float32", "numpy"), ("float32", "torch"), ("float16", "torch"), ("bfloat16", "torch")]
CASE_IDS = ["%s-%s" % c for c in CASES]
IMAGES = [(2, 3, 7, 13), (1, 2, 13, 7), (2, 1, 1, 7), (1, 3, 13, 13)]


def wrap(t, container):
    return t.numpy() if container == "numpy" else t


def make(shape, dtype, g, scale=1.0, offset=0.0):
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale + offset).to(dtype)


def ref_grad(fn, x, dy):
    """d(sum(fn(x) * dy))/dx in float64 from the same rounded x."""
    xd = x.detach().double().requires_grad_(True)
    out = fn(xd)
    out.backward(dy.double())
    return out.detach(), xd.grad


# ------------------------------------------------------------------------------------------------ batch norm

BN_SHAPES = [(7, 3), (5, 4, 7), (2, 3, 7, 13), (3, 5, 1, 1), (4, 2, 13, 7)]


@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_forward_backward(ctx, seed, dtype, container, training):
    for i, shape in enumerate(BN_SHAPES):
        g = torch.Generator().manual_seed(seed + i)
        c = shape[1]
        x = make(shape, DTYPES[dtype], g, 2.0, 1.0)
        w = make((c,), torch.float32, g, 0.5, 1.0)
        b = make((c,), torch.float32, g)
        rm0 = make((c,), torch.float32, g)
        rv0 = torch.rand((c,), generator=g) + 0.5
        rm, rv = rm0.clone(), rv0.clone()
        if container == "numpy":
            rm, rv = rm.numpy(), rv.numpy()
        y, sm, si = dk.batch_norm(wrap(x, container), rm, rv, wrap(w, container), wrap(b, container),
                                  training=training, momentum=0.2, eps=1e-4, return_stats=True, context=ctx)
        trm, trv = rm0.double().clone(), rv0.double().clone()
        ref = F.batch_norm(x.double(), trm, trv, w.double(), b.double(), training=training, momentum=0.2, eps=1e-4)
        assert_close(y, ref, dtype, seed, "y %s" % (shape,))
        assert_close(rm, trm, 1e-5, seed, "running_mean")
        assert_close(rv, trv, 1e-5, seed, "running_var")
        # backward vs autograd of the float64 forward
        dy = make(shape, DTYPES[dtype], g)
        xd = x.double().requires_grad_(True)
        wd = w.double().requires_grad_(True)
        bd = b.double().requires_grad_(True)
        F.batch_norm(xd, rm0.double(), rv0.double(), wd, bd, training=training, eps=1e-4).backward(dy.double())
        dx, dw, db = dk.batch_norm_backward(wrap(dy, container), wrap(x, container), wrap(w, container),
                                            rm0.numpy() if container == "numpy" else rm0,
                                            rv0.numpy() if container == "numpy" else rv0, sm, si,
                                            training=training, eps=1e-4, context=ctx)
        assert_close(dx, xd.grad, dtype if dtype != "float32" else 1e-4, seed, "dx %s" % (shape,),
                     floor=1e-2 * np.sqrt(x.numel()))
        assert_close(dw, wd.grad, 1e-4 if dtype == "float32" else 1e-2, seed, "dweight")
        assert_close(db, bd.grad, 1e-4 if dtype == "float32" else 1e-2, seed, "dbias")


def test_batch_norm_errors(ctx):
    import dlkernels

    x = np.random.randn(4, 3, 5).astype(np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    with pytest.raises(dlkernels.Error, match="momentum"):
        dk.batch_norm(x, rm, rv, training=True, momentum=float("nan"), context=ctx)
    with pytest.raises(dlkernels.Error, match=r"weight|gamma has shape \[4\]"):
        dk.batch_norm(x, rm, rv, np.ones(4, np.float32), training=True, context=ctx)
    with pytest.raises(ValueError, match="in place"):
        dk.batch_norm(x, np.zeros(6, np.float32)[::2], rv, training=True, context=ctx)


# ------------------------------------------------------------------------------------------------ pooling

MAX_WINDOWS = [  # kernel, stride, padding, dilation, ceil_mode
    (1, None, 0, 1, False), (2, 2, 0, 1, False), (3, 2, 1, 1, True), (3, 1, 1, 2, False), ((3, 2), (2, 1), (1, 0),
                                                                                             (1, 2), True),
    ((5, 4), (3, 2), (2, 1), 1, True),
]


@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
def test_max_pool2d(ctx, seed, dtype, container):
    for i, shape in enumerate(IMAGES):
        for j, (k, s, p, d, cm) in enumerate(MAX_WINDOWS):
            g = torch.Generator().manual_seed(seed + 100 * i + j)
            # distinct values per plane (no ties, even in bf16)
            n = shape[2] * shape[3]
            planes = [torch.randperm(n, generator=g).to(torch.float64) - n // 2 for _ in range(shape[0] * shape[1])]
            x = (torch.stack(planes).reshape(shape) * 0.25).to(DTYPES[dtype])
            try:
                ref, ridx = F.max_pool2d(x.double(), k, s, p, d, cm, return_indices=True)
            except RuntimeError:
                import dlkernels

                with pytest.raises(dlkernels.Error):
                    dk.max_pool2d(wrap(x, container), k, s, p, d, cm, context=ctx)
                continue
            y, idx = dk.max_pool2d(wrap(x, container), k, s, p, d, cm, return_indices=True, context=ctx)
            what = "%s k=%s s=%s p=%s d=%s ceil=%s" % (shape, k, s, p, d, cm)
            assert_close(y, ref, 0.0, seed, what)
            assert np.array_equal(np.asarray(idx), ridx.numpy()), what
            dy = make(ref.shape, DTYPES[dtype], g)
            _, rdx = ref_grad(lambda t: F.max_pool2d(t, k, s, p, d, cm), x, dy)
            dx = dk.max_pool2d_backward(wrap(dy, container), tuple(shape), k, s, p, d, cm, idx, context=ctx)
            assert_close(dx, rdx, dtype, seed, "dx " + what)


AVG_WINDOWS = [(1, None, 0, False), (2, 2, 0, False), (3, 2, 1, True), ((3, 2), (1, 2), (1, 1), False),
               ((5, 4), (3, 2), (2, 1), True)]


@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("include,divisor", [(True, None), (False, None), (True, 5)])
def test_avg_pool2d(ctx, seed, dtype, container, include, divisor):
    for i, shape in enumerate(IMAGES):
        for j, (k, s, p, cm) in enumerate(AVG_WINDOWS):
            g = torch.Generator().manual_seed(seed + 100 * i + j)
            x = make(shape, DTYPES[dtype], g)
            try:
                ref = F.avg_pool2d(x.double(), k, s, p, cm, include, divisor)
            except RuntimeError:
                continue
            what = "%s k=%s s=%s p=%s ceil=%s" % (shape, k, s, p, cm)
            y = dk.avg_pool2d(wrap(x, container), k, s, p, cm, include, divisor, context=ctx)
            assert_close(y, ref, dtype, seed, what)
            dy = make(ref.shape, DTYPES[dtype], g)
            _, rdx = ref_grad(lambda t: F.avg_pool2d(t, k, s, p, cm, include, divisor), x, dy)
            dx = dk.avg_pool2d_backward(wrap(dy, container), tuple(shape), k, s, p, cm, include, divisor, context=ctx)
            assert_close(dx, rdx, dtype, seed, "dx " + what)


@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
def test_adaptive_avg_pool2d(ctx, seed, dtype, container):
    for i, shape in enumerate(IMAGES):
        for j, out in enumerate([1, (1, 1), (3, 5), (7, None), (13, 9)]):
            g = torch.Generator().manual_seed(seed + 100 * i + j)
            x = make(shape, DTYPES[dtype], g)
            ref = F.adaptive_avg_pool2d(x.double(), out)
            y = dk.adaptive_avg_pool2d(wrap(x, container), out, context=ctx)
            assert_close(y, ref, dtype, seed, "%s -> %s" % (shape, out))
            dy = make(ref.shape, DTYPES[dtype], g)
            _, rdx = ref_grad(lambda t: F.adaptive_avg_pool2d(t, out), x, dy)
            dx = dk.adaptive_avg_pool2d_backward(wrap(dy, container), tuple(shape), context=ctx)
            assert_close(dx, rdx, dtype, seed, "dx %s -> %s" % (shape, out))


@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
def test_max_unpool2d(ctx, seed, dtype, container):
    for i, shape in enumerate(IMAGES + [(2, 2, 8, 6)]):
        g = torch.Generator().manual_seed(seed + i)
        x = make(shape, DTYPES[dtype], g)
        k, s = 2, 2
        if shape[2] < 2 or shape[3] < 2:
            continue
        pooled, idx = F.max_pool2d(x.float(), k, s, return_indices=True)  # torch 1.13 has no half max_pool2d on cpu
        pooled = pooled.to(DTYPES[dtype])
        # the default output size drops an odd row/column, which the indices of an odd input may name
        for out in [(shape[2], shape[3])] + ([None] if shape[2] % 2 == 0 and shape[3] % 2 == 0 else []):
            ref = F.max_unpool2d(pooled.double(), idx, k, s, output_size=out)
            y = dk.max_unpool2d(wrap(pooled, container), wrap(idx, container), k, s, output_size=out, context=ctx)
            assert_close(y, ref, 0.0, seed, "%s out=%s" % (shape, out))
            dy = make(ref.shape, DTYPES[dtype], g)
            _, rdx = ref_grad(lambda t: F.max_unpool2d(t, idx, k, s, output_size=out), pooled, dy)
            dx = dk.max_unpool2d_backward(wrap(dy, container), wrap(idx, container), context=ctx)
            assert_close(dx, rdx, 0.0, seed, "dx %s out=%s" % (shape, out))


# ------------------------------------------------------------------------------------------------ interpolate

INTERP = [  # size, scale_factor
    (None, 2), (None, 1.5), (None, (2, 3)), ((13, 7), None), ((5, 11), None), ((1, 1), None), (None, 0.5)]


@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("mode,align", [("nearest", None), ("bilinear", False), ("bilinear", True)])
def test_interpolate(ctx, seed, dtype, container, mode, align):
    for i, shape in enumerate(IMAGES):
        for j, (size, sf) in enumerate(INTERP):
            if sf is not None and any(int(n * f) < 1 for n, f in zip(shape[2:], sf if isinstance(sf, tuple) else
                                                                         (sf, sf))):
                continue
            g = torch.Generator().manual_seed(seed + 100 * i + j)
            x = make(shape, DTYPES[dtype], g)
            ref = F.interpolate(x.double(), size=size, scale_factor=sf, mode=mode, align_corners=align)
            what = "%s size=%s scale=%s %s align=%s" % (shape, size, sf, mode, align)
            y = dk.interpolate(wrap(x, container), size=size, scale_factor=sf, mode=mode, align_corners=align,
                               context=ctx)
            assert_close(y, ref, 0.0 if mode == "nearest" else dtype, seed, what)
            dy = make(ref.shape, DTYPES[dtype], g)
            _, rdx = ref_grad(lambda t: F.interpolate(t, size=size, scale_factor=sf, mode=mode, align_corners=align),
                              x, dy)
            dx = dk.interpolate_backward(wrap(dy, container), tuple(shape), size=size, scale_factor=sf, mode=mode,
                                         align_corners=align, context=ctx)
            assert_close(dx, rdx, dtype, seed, "dx " + what)


def test_pool_errors(ctx):
    import dlkernels

    x = np.random.randn(1, 2, 3, 3).astype(np.float32)
    with pytest.raises(dlkernels.Error, match="too small"):
        dk.max_pool2d(x, 5, context=ctx)
    with pytest.raises(dlkernels.Error, match="half of kernel size"):
        dk.avg_pool2d(x, 2, padding=2, context=ctx)
    with pytest.raises(ValueError, match="align_corners"):
        dk.interpolate(x, scale_factor=2, mode="nearest", align_corners=True, context=ctx)
    with pytest.raises(ValueError, match="output_size"):
        dk.max_unpool2d(x, np.zeros(x.shape, np.int64), 2, output_size=(100, 100), context=ctx)


def test_unbatched_chw_pooling(ctx, seed):
    g = torch.Generator().manual_seed(seed)
    x = make((3, 7, 13), torch.float32, g)
    y, idx = dk.max_pool2d(x, 3, 2, 1, 1, True, return_indices=True, context=ctx)
    ry, ridx = F.max_pool2d(x, 3, 2, 1, 1, True, return_indices=True)
    assert_close(y, ry, 0.0, seed, "max_pool2d [C,H,W]")
    assert torch.equal(idx, ridx)
    assert_close(dk.avg_pool2d(x, 2, 1, 1, context=ctx), F.avg_pool2d(x.double(), 2, 1, 1), "float32", seed,
                 "avg_pool2d [C,H,W]")
    assert_close(dk.adaptive_avg_pool2d(x, (2, 5), context=ctx), F.adaptive_avg_pool2d(x.double(), (2, 5)),
                 "float32", seed, "adaptive_avg_pool2d [C,H,W]")
