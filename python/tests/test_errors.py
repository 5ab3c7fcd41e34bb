"""Wrong calls: the library rejects them with dlkernels.Error carrying dlk_last_error(); the few checks the C API
cannot express (softmax over another dim, contradictory masks, a normalized_shape that is not the input's trailing
shape) raise ValueError. NumPy only: these run without torch."""

import re

import numpy as np
import pytest

import dlkernels as dk


def shape_re(shape):
    return re.escape("[" + ",".join(str(s) for s in shape) + "]")


def raises_error(status, fn, *args, **kwargs):
    with pytest.raises(dk.Error) as info:
        fn(*args, **kwargs)
    e = info.value
    assert isinstance(e, RuntimeError)
    assert e.status == status and e.status.name == status.name and e.code == int(status)
    # The message is the library's own sentence, still readable from dlk_last_error() on this thread.
    assert str(e) == e.message == dk.last_error() != ""
    return e


@pytest.mark.parametrize("mask_dtype", [np.bool_, np.float32])
def test_mask_that_does_not_broadcast(ctx, mask_dtype):
    x = np.ones((4, 8, 8), np.float32)
    e = raises_error(dk.Status.DLK_ERROR_SHAPE, dk.softmax, x, mask=np.ones((4, 1, 7), mask_dtype), context=ctx)
    assert "softmax" in e.message and "mask" in e.message
    assert re.search(shape_re((4, 1, 7)), e.message) and re.search(shape_re((4, 8, 8)), e.message), e.message


def test_mask_with_more_dims_than_input(ctx):
    e = raises_error(dk.Status.DLK_ERROR_SHAPE, dk.softmax, np.ones((8, 8), np.float32),
                     mask=np.ones((2, 8, 8), bool), context=ctx)
    assert "mask" in e.message


def test_layer_norm_weight_of_wrong_length(ctx):
    x = np.ones((3, 8), np.float32)
    e = raises_error(dk.Status.DLK_ERROR_SHAPE, dk.layer_norm, x, (8,), np.ones(7, np.float32), context=ctx)
    assert "layernorm" in e.message and "gamma" in e.message
    assert re.search(shape_re((7,)), e.message) and re.search(shape_re((8,)), e.message), e.message
    e = raises_error(dk.Status.DLK_ERROR_SHAPE, dk.layer_norm, x, (8,), None, np.ones(9, np.float32), context=ctx)
    assert "beta" in e.message


def test_layer_norm_backward_weight_of_wrong_length(ctx):
    x = np.ones((3, 8), np.float32)
    _, mean, rstd = dk.layer_norm(x, 8, return_stats=True, context=ctx)
    raises_error(dk.Status.DLK_ERROR_SHAPE, dk.layer_norm_backward, x, x, mean, rstd, 8, np.ones(5, np.float32),
                 context=ctx)


@pytest.mark.parametrize("op", ["softmax", "layer_norm", "softmax_backward"])
def test_float64_input(ctx, op):
    x = np.ones((2, 5), np.float64)
    if op == "softmax":
        e = raises_error(dk.Status.DLK_ERROR_DTYPE, dk.softmax, x, context=ctx)
    elif op == "layer_norm":
        e = raises_error(dk.Status.DLK_ERROR_DTYPE, dk.layer_norm, x, (5,), context=ctx)
    else:
        e = raises_error(dk.Status.DLK_ERROR_DTYPE, dk.softmax_backward, x, x, context=ctx)
    assert "float64" in e.message


def test_mixed_dtypes(ctx):
    e = raises_error(dk.Status.DLK_ERROR_DTYPE, dk.softmax_backward, np.ones((2, 5), np.float16),
                     np.ones((2, 5), np.float32), context=ctx)
    assert "float16" in e.message and "float32" in e.message


def test_integer_input(ctx):
    raises_error(dk.Status.DLK_ERROR_DTYPE, dk.softmax, np.ones((2, 5), np.int32), context=ctx)


def test_non_finite_scale_and_eps(ctx):
    x = np.ones((2, 5), np.float32)
    e = raises_error(dk.Status.DLK_ERROR_INVALID_ARGUMENT, dk.softmax, x, scale=float("nan"), context=ctx)
    assert "scale" in e.message
    e = raises_error(dk.Status.DLK_ERROR_INVALID_ARGUMENT, dk.layer_norm, x, 5, eps=-1.0, context=ctx)
    assert "eps" in e.message


def test_causal_on_rank_one(ctx):
    e = raises_error(dk.Status.DLK_ERROR_SHAPE, dk.softmax, np.ones(5, np.float32), causal=True, context=ctx)
    assert "causal" in e.message


def test_lengths_of_wrong_size_or_dtype(ctx):
    x = np.ones((3, 4, 5), np.float32)
    e = raises_error(dk.Status.DLK_ERROR_SHAPE, dk.softmax, x, lengths=np.array([1, 2], np.int64), context=ctx)
    assert "lengths" in e.message
    # Integer dtypes other than int32/int64 are converted to int64 by the wrapper.
    dk.softmax(x, lengths=np.array([1, 2, 3], np.int16), context=ctx)


def test_failed_call_leaves_no_error_behind(ctx):
    x = np.ones((2, 5), np.float32)
    with pytest.raises(dk.Error):
        dk.softmax(x.astype(np.float64), context=ctx)
    dk.softmax(x, context=ctx)
    assert dk.last_error() == ""


# ------------------------------------------------------------------------------------------ Python-side checks


def test_softmax_over_another_dim_is_refused(ctx):
    with pytest.raises(ValueError, match="last dimension"):
        dk.softmax(np.ones((3, 4), np.float32), 0, context=ctx)
    with pytest.raises(ValueError, match="last dimension"):
        dk.softmax_backward(np.ones((3, 4), np.float32), np.ones((3, 4), np.float32), dim=-2, context=ctx)


def test_one_mask_kind_per_call(ctx):
    x = np.ones((2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="at most one"):
        dk.softmax(x, mask=np.ones((3, 3), bool), causal=True, context=ctx)
    with pytest.raises(ValueError, match="causal"):
        dk.softmax(x, causal="diagonal", context=ctx)
    with pytest.raises(ValueError, match="mask_kind"):
        dk.softmax(x, mask_kind="sideways", context=ctx)
    with pytest.raises(ValueError, match="does not use mask"):
        dk.softmax(x, mask=np.ones((3, 3), bool), mask_kind="causal", context=ctx)
    with pytest.raises(ValueError, match="does not use causal"):
        dk.softmax(x, causal="bottom_right", mask_kind="causal", context=ctx)
    # An explicit kind that agrees with its argument is fine.
    y = dk.softmax(x, causal="bottom_right", mask_kind="causal_bottom_right", context=ctx)
    np.testing.assert_allclose(y[0, 0], [1, 0, 0], atol=1e-6)
    y = dk.softmax(x, mask_kind=dk.MaskKind.CAUSAL, context=ctx)
    np.testing.assert_allclose(y[0, 1], [0.5, 0.5, 0], atol=1e-6)


def test_mask_kind_without_its_argument(ctx):
    e = raises_error(dk.Status.DLK_ERROR_INVALID_ARGUMENT, dk.softmax, np.ones((2, 3), np.float32),
                     mask_kind="tensor", context=ctx)
    assert "mask" in e.message


def test_normalized_shape_must_be_trailing(ctx):
    with pytest.raises(ValueError, match="normalized_shape"):
        dk.layer_norm(np.ones((3, 8), np.float32), (3,), context=ctx)
    with pytest.raises(ValueError, match="normalized_shape"):
        dk.layer_norm(np.ones((3, 8), np.float32), (2, 3, 8), context=ctx)


def test_bad_device_names():
    with pytest.raises(ValueError, match="device"):
        dk.Context("tpu")
    with pytest.raises(ValueError, match="device"):
        dk.softmax(np.ones(3, np.float32), context="gpu")


def test_unavailable_backend_raises_error():
    if "cuda" in dk.available_devices():
        pytest.skip("a GPU is present")
    with pytest.raises(dk.Error) as info:
        dk.Context("cuda")
    assert info.value.status == dk.Status.DLK_ERROR_NOT_AVAILABLE
    assert info.value.message


def test_closed_context():
    c = dk.Context("cpu")
    c.close()
    with pytest.raises(ValueError, match="closed"):
        dk.softmax(np.ones(3, np.float32), context=c)
