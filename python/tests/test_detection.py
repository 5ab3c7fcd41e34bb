"""dlkernels.detection against torchvision 0.14 (Debian python3-torchvision) on random inputs: RoI Align / RoI Pool
values and their gradients against torch.autograd through torchvision, box_iou, the box coder, clip / remove small,
AnchorGenerator, the FPN LevelMapper, and nms / batched_nms kept indices (exactly identical, with many tied
scores). NumPy and torch containers; odd sizes."""

import math

import numpy as np
import pytest

from conftest import assert_close
from dlkernels import detection as dk

torch = pytest.importorskip("torch")
tv = pytest.importorskip("torchvision")
from torchvision import ops  # noqa: E402
from torchvision.models.detection import _utils as det_utils  # noqa: E402
from torchvision.models.detection.anchor_utils import AnchorGenerator  # noqa: E402
from torchvision.ops import boxes as box_ops  # noqa: E402
from torchvision.ops.poolers import LevelMapper  # noqa: E402


def random_boxes(g, n, extent=64.0, side=40.0):
    xy = torch.rand((n, 2), generator=g) * extent
    wh = 1.0 + torch.rand((n, 2), generator=g) * side
    return torch.cat([xy, xy + wh], 1)


def random_rois(g, n_images, k, h, w, scale):
    u = torch.rand((k, 4), generator=g) * 1.4 - 0.2
    x1 = torch.minimum(u[:, 0], u[:, 2]) * w / scale
    x2 = torch.maximum(u[:, 0], u[:, 2]) * w / scale
    y1 = torch.minimum(u[:, 1], u[:, 3]) * h / scale
    y2 = torch.maximum(u[:, 1], u[:, 3]) * h / scale
    b = torch.randint(0, n_images, (k,), generator=g).float()
    return torch.stack([b, x1, y1, x2, y2], 1)


ROI_CASES = [  # (N, C, H, W, K, output_size, spatial_scale, sampling_ratio, aligned)
    (1, 1, 1, 1, 1, 1, 1.0, -1, False),
    (2, 3, 7, 9, 5, (3, 2), 1.0, 2, False),
    (2, 3, 7, 9, 6, 3, 0.5, -1, True),
    (1, 4, 13, 11, 7, 7, 0.25, 2, False),
    (2, 8, 25, 31, 20, (7, 5), 0.125, -1, True),
]


@pytest.mark.parametrize("case", ROI_CASES)
@pytest.mark.parametrize("container", ["numpy", "torch"])
def test_roi_align_forward_backward(ctx, seed, case, container):
    n, c, h, w, k, out, scale, sr, aligned = case
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, c, h, w), generator=g)
    rois = random_rois(g, n, k, h, w, scale)
    xr = x.clone().requires_grad_(True)
    ref = ops.roi_align(xr, rois, out, scale, sr, aligned)
    dy = torch.randn(ref.shape, generator=g)
    ref.backward(dy)
    wrap = (lambda t: t.numpy()) if container == "numpy" else (lambda t: t)
    y = dk.roi_align(wrap(x), wrap(rois), out, scale, sr, aligned, context=ctx)
    assert_close(y, ref, "float32", seed, "roi_align")
    dx = dk.roi_align_backward(wrap(dy), wrap(rois), x.shape, out, scale, sr, aligned, context=ctx)
    assert_close(dx, xr.grad, "float32", seed, "roi_align grad")


def test_roi_align_list_of_boxes(ctx, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((2, 3, 10, 12), generator=g)
    boxes = [random_boxes(g, 3, 8, 6), random_boxes(g, 4, 8, 6)]
    ref = ops.roi_align(x, boxes, (2, 3), 1.0, 2, True)
    assert_close(dk.roi_align(x, boxes, (2, 3), 1.0, 2, True, context=ctx), ref, "float32", seed)


@pytest.mark.parametrize("case", ROI_CASES)
def test_roi_pool_forward_backward(ctx, seed, case):
    n, c, h, w, k, out, scale, _, _ = case
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, c, h, w), generator=g)
    rois = random_rois(g, n, k, h, w, scale)
    xr = x.clone().requires_grad_(True)
    ref = ops.roi_pool(xr, rois, out, scale)
    dy = torch.randn(ref.shape, generator=g)
    ref.backward(dy)
    y, arg = dk.roi_pool(x, rois, out, scale, return_argmax=True, context=ctx)
    assert torch.equal(y, ref.detach()), "roi_pool values (seed=%d)" % seed
    dx = dk.roi_pool_backward(dy, rois, arg, x.shape, out, scale, context=ctx)
    assert_close(dx, xr.grad, "float32", seed, "roi_pool grad")


def test_box_iou(ctx, seed):
    g = torch.Generator().manual_seed(seed)
    for n, m in [(1, 1), (7, 13), (50, 33), (0, 3)]:
        a, b = random_boxes(g, n), random_boxes(g, m)
        got = dk.box_iou(a, b, context=ctx)
        assert torch.equal(got, ops.box_iou(a, b)), "box_iou %dx%d not bitwise torchvision's (seed=%d)" % (n, m, seed)
    seed_iou = dk.box_iou(np.array([[50, 50, 150, 150]], np.float32), np.array([[100, 100, 200, 200]], np.float32),
                          context=ctx)
    assert abs(float(seed_iou[0, 0]) - 0.1429) < 5e-5


def test_box_coder(ctx, seed):
    g = torch.Generator().manual_seed(seed)
    weights = (10.0, 10.0, 5.0, 5.0)
    coder = det_utils.BoxCoder(weights)
    gt, prop = random_boxes(g, 41), random_boxes(g, 41)
    ref = coder.encode_single(gt, prop)
    assert_close(dk.encode_boxes(gt, prop, weights, context=ctx), ref, "float32", seed, "encode")
    codes = torch.randn((41, 12), generator=g) * 3
    ref = coder.decode_single(codes, prop)
    got = dk.decode_boxes(codes, prop, weights, coder.bbox_xform_clip, context=ctx)
    assert_close(got, ref, "float32", seed, "decode")


def test_clip_and_remove_small(ctx, seed):
    g = torch.Generator().manual_seed(seed)
    b = random_boxes(g, 300, 80, 20) - 10
    got = dk.clip_boxes_to_image(b, (50, 60), context=ctx)
    ref = box_ops.clip_boxes_to_image(b, (50, 60))
    assert torch.equal(got, ref)
    assert torch.equal(dk.remove_small_boxes(ref, 5.0, context=ctx), box_ops.remove_small_boxes(ref, 5.0))


def test_anchor_generator():
    sizes, ratios = (32.0, 64.0, 128.0), (0.5, 1.0, 2.0)
    gen = AnchorGenerator((sizes,), (ratios,))
    gen.cell_anchors = [gen.generate_anchors(sizes, ratios)]
    for grid, stride in [((3, 5), (16, 8)), ((1, 1), (4, 4)), ((7, 9), (32, 32))]:
        ref = gen.grid_anchors([list(grid)], [[torch.tensor(stride[0]), torch.tensor(stride[1])]])[0]
        got = dk.anchor_grid(sizes, ratios, grid, stride, like=torch.zeros(1))
        assert torch.equal(got, ref), "anchors for grid %s stride %s" % (grid, stride)


def test_level_mapper(ctx, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand((200, 2), generator=g) * 100
    side = torch.exp(torch.rand((200, 2), generator=g) * 7)
    b = torch.cat([xy, xy + side], 1)
    ref = LevelMapper(2, 5)([b])
    assert torch.equal(dk.fpn_levels(b, 2, 5, context=ctx), ref)


@pytest.mark.parametrize("n", [1, 5, 64, 65, 500, 3000])
@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_nms_matches_torchvision(ctx, seed, n, thr):
    g = torch.Generator().manual_seed(seed)
    boxes = random_boxes(g, n, 30.0 + n / 5.0, 40.0)
    scores = torch.round(torch.rand((n,), generator=g) * 20) / 20  # ties
    ref = ops.nms(boxes, scores, thr)
    got = dk.nms(boxes, scores, thr, context=ctx)
    assert torch.equal(got, ref), "nms n=%d thr=%g (seed=%d)" % (n, thr, seed)
    got_np = dk.nms(boxes.numpy(), scores.numpy(), thr, context=ctx)
    assert np.array_equal(got_np, ref.numpy())


@pytest.mark.parametrize("n", [1, 50, 900, 3000])
def test_batched_nms_matches_torchvision(ctx, seed, n):
    g = torch.Generator().manual_seed(seed)
    boxes = random_boxes(g, n, 30.0 + n / 5.0, 40.0)
    scores = torch.round(torch.rand((n,), generator=g) * 20) / 20
    idxs = torch.randint(0, 7, (n,), generator=g)
    ref = box_ops._batched_nms_coordinate_trick(boxes, scores, idxs, 0.5)
    got = dk.batched_nms(boxes, scores, idxs, 0.5, context=ctx)
    assert torch.equal(got, ref), "batched_nms n=%d (seed=%d)" % (n, seed)
    if n <= 1000:  # torchvision's own dispatch uses the same trick here
        assert torch.equal(got, ops.batched_nms(boxes, scores, idxs, 0.5))


def test_nms_empty_and_prefilters(ctx, seed):
    empty = torch.zeros((0, 4))
    assert dk.nms(empty, torch.zeros((0,)), 0.5, context=ctx).numel() == 0
    assert dk.batched_nms(empty, torch.zeros((0,)), torch.zeros((0,), dtype=torch.int64), 0.5,
                          context=ctx).numel() == 0
    g = torch.Generator().manual_seed(seed)
    boxes = random_boxes(g, 400)
    scores = torch.rand((400,), generator=g)
    keep = scores >= 0.25
    idx = torch.nonzero(keep).flatten()
    order = idx[torch.sort(scores[idx], descending=True, stable=True)[1]][:50]
    ref = order[ops.nms(boxes[order], scores[order], 0.5)]
    got = dk.nms(boxes, scores, 0.5, score_threshold=0.25, top_k=50, context=ctx)
    assert torch.equal(got, ref)


def test_bad_inputs_raise(ctx):
    import dlkernels

    with pytest.raises(dlkernels.Error, match="rois"):
        dk.roi_align(np.zeros((1, 1, 4, 4), np.float32), np.zeros((2, 4), np.float32), 2, context=ctx)
    with pytest.raises(dlkernels.Error, match="scores"):
        dk.nms(np.zeros((3, 4), np.float32), np.zeros((2,), np.float32), 0.5, context=ctx)
