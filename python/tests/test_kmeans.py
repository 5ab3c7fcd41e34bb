"""dlkernels.kmeans against scikit-learn's KMeans (Debian python3-sklearn) on the same data: from the same given
initial centres the two runs must agree (same labels, inertia within 1e-4), with each library's own k-means++ and
n_init the inertia within 1%; on well-separated blobs both recover the clusters (adjusted Rand index >= 0.99)."""

import numpy as np
import pytest

from dlkernels import kmeans as dk

sklearn = pytest.importorskip("sklearn")
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.datasets import make_blobs  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402


def blobs(seed, n, d, k, std):
    x, y = make_blobs(n_samples=n, n_features=d, centers=k, cluster_std=std, random_state=seed)
    return x.astype(np.float32), y


@pytest.mark.parametrize("n,d,k", [(500, 2, 3), (2000, 16, 8), (1500, 33, 5)])
def test_same_init_same_result(ctx, seed, n, d, k):
    x, _ = blobs(seed, n, d, k, 3.0)  # overlapping blobs: several Lloyd iterations
    rng = np.random.default_rng(seed)
    init = x[rng.choice(n, k, replace=False)].copy()
    ref = KMeans(n_clusters=k, init=init, n_init=1, max_iter=300, tol=1e-4, algorithm="lloyd").fit(x)
    km = dk.KMeans(n_clusters=k, init=init, n_init=1, max_iter=300, tol=1e-4, context=ctx).fit(x)
    assert adjusted_rand_score(ref.labels_, km.labels_) >= 0.99, "seed=%d" % seed
    assert abs(km.inertia_ - ref.inertia_) <= 1e-3 * ref.inertia_, (km.inertia_, ref.inertia_, seed)
    assert np.allclose(km.cluster_centers_, ref.cluster_centers_, atol=1e-2 * np.abs(x).max()), "seed=%d" % seed


@pytest.mark.parametrize("n,d,k", [(3000, 8, 6), (2000, 64, 10)])
def test_kmeans_plus_plus_inertia_and_ari(ctx, seed, n, d, k):
    x, truth = blobs(seed, n, d, k, 1.0)
    ref = KMeans(n_clusters=k, init="k-means++", n_init=3, random_state=seed % 1000, algorithm="lloyd").fit(x)
    km = dk.KMeans(n_clusters=k, n_init=3, random_state=seed, context=ctx).fit(x)
    assert abs(km.inertia_ - ref.inertia_) <= 0.01 * ref.inertia_, (km.inertia_, ref.inertia_, seed)
    assert adjusted_rand_score(truth, km.labels_) >= 0.99, "seed=%d" % seed
    assert np.array_equal(km.predict(x), km.labels_)


def test_random_init_and_cosine(ctx, seed):
    x, truth = blobs(seed, 1200, 12, 4, 0.8)
    km = dk.KMeans(n_clusters=4, init="random", n_init=8, random_state=seed, context=ctx).fit(x)
    ref = KMeans(n_clusters=4, init="random", n_init=8, random_state=seed % 1000, algorithm="lloyd").fit(x)
    assert km.inertia_ <= ref.inertia_ * 1.01, (km.inertia_, ref.inertia_, seed)
    # cosine: directions matter, not lengths
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.5, 4.0, size=(1200, 1)).astype(np.float32)
    xc = (x - x.mean(0)) * scale
    cos = dk.KMeans(n_clusters=4, n_init=4, random_state=seed, metric="cosine", context=ctx).fit(xc)
    assert np.allclose(np.linalg.norm(cos.cluster_centers_, axis=1), 1.0, atol=1e-5)
    xn = xc / np.linalg.norm(xc, axis=1, keepdims=True)
    expect = float(np.sum(1.0 - np.sum(xn * cos.cluster_centers_[cos.labels_], axis=1)))
    assert abs(cos.inertia_ - expect) <= 1e-3 * expect + 1e-4
