"""dlkernels.conv (conv2d, conv_transpose2d and their backwards) against PyTorch's conv2d / conv_transpose2d on
random shapes: strides, dilations, groups (depthwise too), padding (also asymmetric, against an explicitly padded
input), output_padding, odd sizes, batch 1, NCHW and NHWC, float32 through NumPy and torch, float16/bfloat16 through
torch; gradients against torch.autograd in float64 from the same rounded inputs; FCN's bilinear weights."""

import random

import numpy as np
import pytest

from conftest import assert_close
import dlkernels as dk

torch = pytest.importorskip("torch")
F = torch.nn.functional

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
CASES = [("float32", "numpy"), ("float32", "torch"), ("float16", "torch"), ("bfloat16", "torch")]
CASE_IDS = ["%s-%s" % c for c in CASES]


def make(shape, dtype, g, scale=1.0):
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)


def wrap(t, container):
    return t.numpy() if container == "numpy" else t


def to_nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous()


def from_nhwc(a):
    t = a if hasattr(a, "permute") else torch.from_numpy(np.asarray(a))
    return t.permute(0, 3, 1, 2)


def random_conv(rng, transposed):
    """A random valid geometry: (N, C_in, H, W, C_out, kh, kw, stride, padding, dilation, groups, output_padding)."""
    while True:
        groups = rng.choice([1, 1, 2, 3])
        cin = groups * rng.randint(1, 3)
        cout = groups * rng.randint(1, 3)
        kh, kw = rng.randint(1, 4), rng.randint(1, 4)
        s = (rng.randint(1, 3), rng.randint(1, 3))
        d = (rng.randint(1, 2), rng.randint(1, 2))
        p = (rng.randint(0, 2), rng.randint(0, 2))
        n, h, w = rng.randint(1, 3), rng.randint(1, 9), rng.randint(1, 9)
        op = (rng.randint(0, max(s[0], d[0]) - 1), rng.randint(0, max(s[1], d[1]) - 1)) if transposed else (0, 0)
        if transposed:
            oh = (h - 1) * s[0] - 2 * p[0] + d[0] * (kh - 1) + op[0] + 1
            ow = (w - 1) * s[1] - 2 * p[1] + d[1] * (kw - 1) + op[1] + 1
        else:
            oh = (h + 2 * p[0] - d[0] * (kh - 1) - 1) // s[0] + 1
            ow = (w + 2 * p[1] - d[1] * (kw - 1) - 1) // s[1] + 1
        if oh >= 1 and ow >= 1:
            return n, cin, h, w, cout, kh, kw, s, p, d, groups, op


def run_one(ctx, seed, dtype, container, layout, transposed, geom, what):
    n, cin, h, w, cout, kh, kw, s, p, d, groups, op = geom
    g = torch.Generator().manual_seed(seed)
    dt = DTYPES[dtype]
    x = make((n, cin, h, w), dt, g)
    wt = make((cin, cout // groups, kh, kw) if transposed else (cout, cin // groups, kh, kw), dt, g, 0.5)
    b = make((cout,), dt, g)
    xd = x.double().requires_grad_(True)
    wd = wt.double().requires_grad_(True)
    bd = b.double().requires_grad_(True)
    if transposed:
        ref = F.conv_transpose2d(xd, wd, bd, s, p, op, groups, d)
    else:
        ref = F.conv2d(xd, wd, bd, s, p, d, groups)
    dy = make(tuple(ref.shape), dt, g)
    ref.backward(dy.double())
    nhwc = layout == "NHWC"
    xin = to_nhwc(x) if nhwc else x
    dyin = to_nhwc(dy) if nhwc else dy
    kw_ = dict(layout=layout, context=ctx)
    if transposed:
        y = dk.conv_transpose2d(wrap(xin, container), wrap(wt, container), wrap(b, container), s, p, op, groups, d,
                                **kw_)
        dx, dw, db = dk.conv_transpose2d_backward(wrap(dyin, container), wrap(xin, container), wrap(wt, container),
                                                  s, p, op, groups, d, **kw_)
    else:
        y = dk.conv2d(wrap(xin, container), wrap(wt, container), wrap(b, container), s, p, d, groups, **kw_)
        dx, dw, db = dk.conv2d_backward(wrap(dyin, container), wrap(xin, container), wrap(wt, container), s, p, d,
                                        groups, **kw_)
    if nhwc:
        y, dx = from_nhwc(y), from_nhwc(dx)
    assert_close(y, ref.detach(), dtype, seed, "y " + what)
    assert_close(dx, xd.grad, dtype, seed, "dx " + what)
    assert_close(dw, wd.grad, dtype, seed, "dw " + what)
    assert_close(db, bd.grad, dtype, seed, "db " + what)


@pytest.mark.parametrize("dtype,container", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("transposed", [False, True], ids=["conv2d", "conv_transpose2d"])
def test_random_shapes_against_torch(ctx, seed, dtype, container, layout, transposed):
    rng = random.Random(seed)
    for i in range(6):
        geom = random_conv(rng, transposed)
        run_one(ctx, seed + i, dtype, container, layout, transposed, geom, "%s %r" % ("tconv" if transposed else
                                                                                  "conv", geom))


@pytest.mark.parametrize("transposed", [False, True], ids=["conv2d", "conv_transpose2d"])
def test_model_shapes(ctx, seed, transposed):
    """Shapes of the seed models, scaled down: a Fashion-MNIST conv, a ResNet 3x3 / 1x1 / strided 7x7, depthwise,
    DCGAN's 4x4 stride-2 transposed conv, a ViT patch embedding (stride = kernel)."""
    if transposed:
        shapes = [(2, 16, 4, 4, 8, 4, 4, (2, 2), (1, 1), (1, 1), 1, (0, 0)),
                  (1, 8, 6, 6, 8, 4, 4, (2, 2), (1, 1), (1, 1), 8, (0, 0)),
                  (2, 6, 5, 5, 4, 3, 3, (2, 2), (1, 1), (1, 1), 2, (1, 1))]
    else:
        shapes = [(4, 1, 28, 28, 8, 3, 3, (1, 1), (1, 1), (1, 1), 1, (0, 0)),
                  (2, 8, 14, 14, 16, 3, 3, (1, 1), (1, 1), (1, 1), 1, (0, 0)),
                  (2, 16, 7, 7, 32, 1, 1, (1, 1), (0, 0), (1, 1), 1, (0, 0)),
                  (1, 3, 20, 20, 8, 7, 7, (2, 2), (3, 3), (1, 1), 1, (0, 0)),
                  (2, 8, 9, 9, 16, 3, 3, (2, 2), (1, 1), (1, 1), 8, (0, 0)),
                  (2, 3, 16, 16, 12, 4, 4, (4, 4), (0, 0), (1, 1), 1, (0, 0))]
    for i, geom in enumerate(shapes):
        for layout in ("NCHW", "NHWC"):
            run_one(ctx, seed + i, "float32", "torch", layout, transposed, geom, "model %r %s" % (geom, layout))


def test_asymmetric_padding_matches_explicit_pad(ctx, seed):
    g = torch.Generator().manual_seed(seed)
    x = make((2, 3, 7, 8), torch.float32, g)
    w = make((4, 3, 3, 2), torch.float32, g)
    pads = (2, 0, 1, 3)  # top, bottom, left, right
    ref = F.conv2d(F.pad(x.double(), (pads[2], pads[3], pads[0], pads[1])), w.double(), stride=(2, 1))
    y = dk.conv2d(x, w, None, (2, 1), pads, context=ctx)
    assert_close(y, ref, "float32", seed, "asymmetric padding")


# torch warns that its own 'same' reference pads a copy for even kernels with dilation; that is the reference's cost.
@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
def test_padding_same_and_unbatched(ctx, seed):
    g = torch.Generator().manual_seed(seed)
    x = make((3, 9, 6), torch.float32, g)
    w = make((5, 3, 4, 3), torch.float32, g)
    ref = F.conv2d(x.double(), w.double(), padding="same", dilation=(1, 3))
    y = dk.conv2d(x, w, padding="same", dilation=(1, 3), context=ctx)
    assert tuple(y.shape) == tuple(ref.shape)
    assert_close(y, ref, "float32", seed, "padding='same', unbatched")


def test_course_rgb_example(ctx):
    x = np.array([[[[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[1, 2, 3], [4, 5, 6], [7, 8, 9]]]], dtype=np.float32)
    k = np.array([[[[0, 1], [2, 3]], [[1, 2], [3, 4]]]], dtype=np.float32)
    y = dk.conv2d(x, k, context=ctx)
    assert y[0, 0, 0, 0] == 56.0
    np.testing.assert_array_equal(y[0, 0], [[56, 72], [104, 120]])


def test_bilinear_upsampling_weight(ctx):
    """FCN's get_upsampling_weight(C, C, k) and its effect: a bilinear upsampling by the stride."""
    def fcn(c, k):
        factor = (k + 1) // 2
        center = factor - 1 if k % 2 == 1 else factor - 0.5
        og = np.ogrid[:k, :k]
        filt = (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)
        w = np.zeros((c, c, k, k), dtype=np.float64)
        w[range(c), range(c), :, :] = filt
        return w
    for k in (2, 3, 4, 5, 16):
        w = np.full((3, 3, k, k), np.nan, dtype=np.float32)
        dk.bilinear_upsampling_(w, context=ctx)
        np.testing.assert_allclose(w, fcn(3, k), rtol=0, atol=1e-7)
    w = torch.empty(2, 2, 4, 4)
    dk.bilinear_upsampling_(w, context=ctx)
    x = torch.randn(1, 2, 5, 5)
    y = dk.conv_transpose2d(x, w, stride=2, padding=1, context=ctx)
    ref = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    # Equal away from the border (the transposed conv pads with zeros where interpolate clamps).
    assert_close(y[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], 1e-5, 0, "bilinear upsampling interior")


def test_errors(ctx):
    x = np.zeros((2, 4, 6, 6), np.float32)
    with pytest.raises(dk.Error, match="groups"):
        dk.conv2d(x, np.zeros((6, 4, 3, 3), np.float32), groups=3, context=ctx)
    with pytest.raises(dk.Error, match="output_padding"):
        dk.conv_transpose2d(x, np.zeros((4, 2, 3, 3), np.float32), stride=2, output_padding=2, context=ctx)
    with pytest.raises(dk.Error, match="too small"):
        dk.conv2d(x, np.zeros((6, 4, 7, 7), np.float32), context=ctx)
