"""dlkernels.metrics against scikit-learn (Debian's python3-sklearn): accuracy, confusion_matrix and
precision/recall/F1 with every average, zero_division=0, on random labels and the issue's seed case."""

import numpy as np
import pytest

from dlkernels import metrics as M

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def test_seed_case(ctx):
    yt, yp = np.array([0, 1, 2, 2, 2]), np.array([0, 0, 2, 2, 1])
    assert abs(float(M.accuracy(yt, yp, context=ctx)) - 0.60) < 1e-6
    assert round(float(M.precision_recall_f1(yt, yp, "macro", context=ctx)[2]), 2) == 0.49
    assert round(float(M.precision_recall_f1(yt, yp, "weighted", context=ctx)[2]), 2) == 0.61
    assert (np.asarray(M.confusion_matrix(yt, yp, context=ctx)) == sklearn_metrics.confusion_matrix(yt, yp)).all()


@pytest.mark.parametrize("k", [1, 2, 5, 12])
@pytest.mark.parametrize("n", [1, 17, 1000])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_against_sklearn(ctx, seed, k, n, dtype):
    rng = np.random.default_rng(seed)
    yt = rng.integers(0, k, n).astype(dtype)
    yp = np.where(rng.random(n) < 0.5, yt, rng.integers(0, k, n)).astype(dtype)
    if k > 3:  # a class present only in y_pred, one absent from both
        yt[yt == k - 1] = 0
        yp[yp == k - 2] = 0
    assert abs(float(M.accuracy(yt, yp, context=ctx)) - sklearn_metrics.accuracy_score(yt, yp)) < 1e-6
    cm = np.asarray(M.confusion_matrix(yt, yp, num_classes=k, context=ctx))
    assert (cm == sklearn_metrics.confusion_matrix(yt, yp, labels=list(range(k)))).all()
    labels = sorted(set(yt.tolist()) | set(yp.tolist()))
    for average in [None, "micro", "macro", "weighted"]:
        got = M.precision_recall_f1(yt, yp, average, num_classes=k, context=ctx)
        want = sklearn_metrics.precision_recall_fscore_support(yt, yp, average=average, zero_division=0)[:3]
        for g, w in zip(got, want):
            g = np.asarray(g, dtype=np.float64)
            if average is None:  # sklearn reports only the present labels
                g = g[labels]
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg="average=%s seed=%d" % (average, seed))


def test_torch_inputs(ctx):
    torch = pytest.importorskip("torch")
    yt, yp = torch.tensor([0, 1, 2, 2, 2]), torch.tensor([0, 0, 2, 2, 1])
    cm = M.confusion_matrix(yt, yp, context=ctx)
    assert isinstance(cm, torch.Tensor) and cm.dtype == torch.int64
    assert float(M.accuracy(yt, yp, context=ctx)) == pytest.approx(0.6)
