// k-means (dlk_kmeans_fit / dlk_kmeans_predict) on the backend DLK_TEST_BACKEND names: clusters of well-separated
// blobs recovered (adjusted Rand index >= 0.99, computed here), centroids and inertia against fp64 recomputations,
// Lloyd's inertia non-increasing iteration by iteration, empty-cluster re-seeding, the cosine metric, odd sizes
// (N = 1, D = 1, D = 33, N not a multiple of any tile), bitwise repeatability in deterministic mode, predict against
// an fp64 nearest-centroid search, and bad inputs rejected with nothing written.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "test_util.h"

namespace dlk::test {
namespace {

bool on_emu() { return backend() == DLK_DEVICE_EMU; }

struct Blobs {
  std::int64_t n, d;
  int k;
  std::vector<float> x, centers;
  std::vector<int> truth;
};

// k Gaussian blobs (std `spread`) around centres drawn in [-10, 10]^d, re-drawn until every pair is `gap` apart.
Blobs make_blobs(std::int64_t n, std::int64_t d, int k, float spread, float gap = 6.0f) {
  Blobs b{n, d, k, {}, {}, {}};
  for (;;) {
    b.centers = uniform(static_cast<std::size_t>(k * d), -10, 10);
    bool ok = true;
    for (int i = 0; i < k && ok; ++i)
      for (int j = i + 1; j < k && ok; ++j) {
        double s = 0;
        for (std::int64_t t = 0; t < d; ++t) s += std::pow(b.centers[i * d + t] - b.centers[j * d + t], 2);
        ok = std::sqrt(s) >= gap;
      }
    if (ok || d == 1) break;
  }
  b.x.resize(static_cast<std::size_t>(n * d));
  b.truth.resize(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    const int c = static_cast<int>(i % k);
    b.truth[i] = c;
    const std::vector<float> z = randn(static_cast<std::size_t>(d), spread);
    for (std::int64_t t = 0; t < d; ++t) b.x[i * d + t] = b.centers[c * d + t] + z[t];
  }
  return b;
}

// Adjusted Rand index of two labelings (Hubert & Arabie).
double adjusted_rand(const std::vector<int>& a, const std::vector<int>& b) {
  std::map<std::pair<int, int>, double> nij;
  std::map<int, double> ai, bj;
  for (std::size_t i = 0; i < a.size(); ++i) {
    nij[{a[i], b[i]}] += 1;
    ai[a[i]] += 1;
    bj[b[i]] += 1;
  }
  auto c2 = [](double v) { return v * (v - 1) / 2; };
  double sij = 0, sa = 0, sb = 0;
  for (auto& e : nij) sij += c2(e.second);
  for (auto& e : ai) sa += c2(e.second);
  for (auto& e : bj) sb += c2(e.second);
  const double expected = sa * sb / c2(static_cast<double>(a.size()));
  const double maxi = 0.5 * (sa + sb);
  return maxi == expected ? 1.0 : (sij - expected) / (maxi - expected);
}

struct Fit {
  std::vector<float> centroids;
  std::vector<int> labels;
  double inertia = -1;
  int n_iter = -1;
  dlk_status status;
};

Fit fit(Context& ctx, const std::vector<float>& xv, std::int64_t n, std::int64_t d, const dlk_kmeans_params& p,
        const std::vector<float>* init = nullptr) {
  Tensor x(ctx, {n, d}, f32()), c(ctx, {p.n_clusters, d}, f32()), l(ctx, {n}, i64());
  x.set(xv);
  if (init)
    c.set(*init);
  else
    c.poison();
  l.poison();
  Fit f;
  f.status = dlk_kmeans_fit(ctx, &p, &x.t, &c.t, &l.t, &f.inertia, &f.n_iter);
  EXPECT_EQ(f.status, DLK_SUCCESS) << dlk_last_error();
  f.centroids = c.get();
  for (float v : l.get()) f.labels.push_back(static_cast<int>(v));
  return f;
}

dlk_kmeans_params params(int k, dlk_kmeans_init init = DLK_KMEANS_INIT_PLUSPLUS) {
  dlk_kmeans_params p;
  dlk_kmeans_params_init(&p);
  p.n_clusters = k;
  p.init = init;
  p.seed = seed();
  return p;
}

// fp64 inertia of given labels / centroids, and the fp64 means of the labelled points.
double inertia_of(const std::vector<float>& x, std::int64_t d, const std::vector<float>& c,
                  const std::vector<int>& labels) {
  double s = 0;
  for (std::size_t i = 0; i < labels.size(); ++i)
    for (std::int64_t t = 0; t < d; ++t) s += std::pow(double(x[i * d + t]) - c[labels[i] * d + t], 2);
  return s;
}

TEST(Kmeans, RecoversWellSeparatedBlobs) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  struct Case {
    std::int64_t n, d;
    int k;
  };
  std::vector<Case> cases = {{301, 2, 3}, {1000, 33, 7}, {97, 1, 2}, {9000, 3, 2}};  // the last: 2 sum segments
  if (!on_emu()) cases.push_back({5000, 64, 16});
  for (const Case& cs : cases) {
    SCOPED_TRACE("n " + std::to_string(cs.n) + " d " + std::to_string(cs.d) + " k " + std::to_string(cs.k));
    const Blobs b = make_blobs(cs.n, cs.d, cs.k, 0.5f, cs.d == 1 ? 0.0f : 6.0f);
    dlk_kmeans_params p = params(cs.k);
    p.n_init = 2;
    const Fit f = fit(ctx, b.x, cs.n, cs.d, p);
    if (cs.d == 1) {
      // 1-d: the two blobs may overlap; only check consistency: inertia equals the fp64 recomputation
      EXPECT_NEAR(f.inertia, inertia_of(b.x, cs.d, f.centroids, f.labels), 1e-3 * f.inertia + 1e-6);
      continue;
    }
    EXPECT_GE(adjusted_rand(f.labels, b.truth), 0.99);
    EXPECT_NEAR(f.inertia, inertia_of(b.x, cs.d, f.centroids, f.labels), 1e-4 * f.inertia);
    EXPECT_GE(f.n_iter, 1);
  }
}

// One centroid per blob (the first point of each) converges in two iterations to the fp64 blob means.
TEST(Kmeans, CentroidsAndInertiaMatchFp64) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  const std::int64_t n = 777, d = 17;
  const int k = 5;
  const Blobs b = make_blobs(n, d, k, 0.7f, 8.0f);
  std::vector<float> init(b.x.begin(), b.x.begin() + k * d);  // point i belongs to blob i % k
  dlk_kmeans_params p = params(k, DLK_KMEANS_INIT_GIVEN);
  const Fit f = fit(ctx, b.x, n, d, p, &init);
  EXPECT_EQ(f.labels, b.truth);
  std::vector<double> mean(static_cast<std::size_t>(k * d), 0.0), cnt(static_cast<std::size_t>(k), 0.0);
  for (std::int64_t i = 0; i < n; ++i) {
    cnt[b.truth[i]] += 1;
    for (std::int64_t t = 0; t < d; ++t) mean[b.truth[i] * d + t] += b.x[i * d + t];
  }
  for (int c = 0; c < k; ++c)
    for (std::int64_t t = 0; t < d; ++t) mean[c * d + t] /= cnt[c];
  EXPECT_CLOSE(f.centroids, mean, 1e-5);
  std::vector<float> mf(mean.begin(), mean.end());
  const double ref = inertia_of(b.x, d, mf, b.truth);
  EXPECT_NEAR(f.inertia, ref, 1e-4 * ref);
  EXPECT_EQ(f.n_iter, 2) << "labels settle after one update: the second iteration is strict convergence";
}

TEST(Kmeans, InertiaNonIncreasingAndDeterministic) {
  DLK_TRACE_SEED();
  Context ctx(backend(), 1);
  SKIP_IF_NO_BACKEND(ctx);
  const std::int64_t n = on_emu() ? 400 : 2000, d = 6;
  const int k = 6;
  const Blobs b = make_blobs(n, d, 4, 2.0f, 3.0f);  // overlapping: many iterations
  std::vector<float> init(b.x.begin(), b.x.begin() + k * d);
  double prev = INFINITY;
  for (int it = 1; it <= 6; ++it) {
    dlk_kmeans_params p = params(k, DLK_KMEANS_INIT_GIVEN);
    p.max_iter = it;
    p.tol = 0;
    const Fit f = fit(ctx, b.x, n, d, p, &init);
    EXPECT_LE(f.inertia, prev * (1 + 1e-6)) << "iteration " << it;
    EXPECT_NEAR(f.inertia, inertia_of(b.x, d, f.centroids, f.labels), 1e-4 * f.inertia);
    prev = f.inertia;
  }
  dlk_kmeans_params p = params(k);
  p.n_init = 2;
  const Fit f1 = fit(ctx, b.x, n, d, p), f2 = fit(ctx, b.x, n, d, p);
  EXPECT_EQ(0, std::memcmp(f1.centroids.data(), f2.centroids.data(), f1.centroids.size() * sizeof(float)));
  EXPECT_EQ(f1.labels, f2.labels);
  EXPECT_EQ(f1.inertia, f2.inertia);
  EXPECT_EQ(f1.n_iter, f2.n_iter);
}

TEST(Kmeans, EmptyClusterIsReseededFromFarthestPoint) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  const std::int64_t n = 400, d = 3;
  const int k = 4;
  const Blobs b = make_blobs(n, d, k, 0.3f, 8.0f);
  // centroids on blobs 0..2 and one far away: the far one gets no point in the first E-step
  std::vector<float> init(b.x.begin(), b.x.begin() + 3 * d);
  for (std::int64_t t = 0; t < d; ++t) init.push_back(1000.0f);
  dlk_kmeans_params p = params(k, DLK_KMEANS_INIT_GIVEN);
  const Fit f = fit(ctx, b.x, n, d, p, &init);
  EXPECT_GE(adjusted_rand(f.labels, b.truth), 0.99);
}

TEST(Kmeans, CosineMetric) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  const std::int64_t n = 600, d = 8;
  const int k = 3;
  const Blobs dirs = make_blobs(k, d, k, 0.0f, 6.0f);  // k directions
  std::vector<float> x(static_cast<std::size_t>(n * d));
  std::vector<int> truth(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    const int c = static_cast<int>(i % k);
    truth[i] = c;
    const float scale = uniform(1, 0.5f, 5.0f)[0];
    const std::vector<float> z = randn(static_cast<std::size_t>(d), 0.3f);
    for (std::int64_t t = 0; t < d; ++t) x[i * d + t] = scale * (dirs.centers[c * d + t] + z[t]);
  }
  dlk_kmeans_params p = params(k);
  p.metric = DLK_KMEANS_COSINE;
  p.n_init = 2;
  const Fit f = fit(ctx, x, n, d, p);
  EXPECT_GE(adjusted_rand(f.labels, truth), 0.99);
  double inertia = 0;
  for (int c = 0; c < k; ++c) {
    double s = 0;
    for (std::int64_t t = 0; t < d; ++t) s += double(f.centroids[c * d + t]) * f.centroids[c * d + t];
    EXPECT_NEAR(s, 1.0, 1e-5) << "centroid " << c << " is not unit length";
  }
  for (std::int64_t i = 0; i < n; ++i) {
    double dot = 0, nx = 0;
    for (std::int64_t t = 0; t < d; ++t) {
      dot += double(x[i * d + t]) * f.centroids[f.labels[i] * d + t];
      nx += double(x[i * d + t]) * x[i * d + t];
    }
    inertia += 1 - dot / std::sqrt(nx);
  }
  EXPECT_NEAR(f.inertia, inertia, 1e-3 * inertia + 1e-4);
}

TEST(Kmeans, PredictMatchesNearestCentroid) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (std::int64_t n : {1, 63, 257}) {
    const std::int64_t d = 33;
    const int k = 9;
    Tensor x(ctx, {n, d}, f32()), c(ctx, {k, d}, f32()), l(ctx, {n}, i64()), dist(ctx, {n}, f32());
    x.set(randn(static_cast<std::size_t>(n * d)));
    c.set(randn(static_cast<std::size_t>(k * d)));
    l.poison();
    dist.poison();
    ASSERT_EQ(dlk_kmeans_predict(ctx, nullptr, &x.t, &c.t, &l.t, &dist.t), DLK_SUCCESS) << dlk_last_error();
    const std::vector<float> xv = x.stored(), cv = c.stored(), lv = l.get(), dv = dist.get();
    std::vector<double> ref(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) {
      std::vector<double> dd(static_cast<std::size_t>(k));
      for (int j = 0; j < k; ++j) {
        double s = 0;
        for (std::int64_t t = 0; t < d; ++t) s += std::pow(double(xv[i * d + t]) - cv[j * d + t], 2);
        dd[j] = s;
      }
      const int best = static_cast<int>(std::min_element(dd.begin(), dd.end()) - dd.begin());
      ref[i] = dd[best];
      const int got = static_cast<int>(lv[i]);
      // a label may differ only on a near-tie (fp32 distances)
      if (got != best) {
        EXPECT_NEAR(dd[got], dd[best], 1e-4 * dd[best]) << "row " << i;
      }
    }
    EXPECT_CLOSE(dv, ref, 1e-4);
  }
}

TEST(Kmeans, SinglePointAndBadInputs) {
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  {
    dlk_kmeans_params p = params(1);
    const Fit f = fit(ctx, {3.0f, -2.0f}, 1, 2, p);
    EXPECT_EQ(f.centroids, (std::vector<float>{3.0f, -2.0f}));
    EXPECT_EQ(f.inertia, 0.0);
  }
  const std::int64_t n = 10, d = 3;
  Tensor x(ctx, {n, d}, f32()), c(ctx, {4, d}, f32()), l(ctx, {n}, i64());
  x.set(randn(static_cast<std::size_t>(n * d)));
  c.poison();
  l.poison();
  double inertia = -7;
  int it = -7;
  dlk_kmeans_params p = params(4);
  p.n_clusters = 11;
  EXPECT_EQ(dlk_kmeans_fit(ctx, &p, &x.t, &c.t, &l.t, &inertia, &it), DLK_ERROR_INVALID_ARGUMENT);
  p = params(0);
  EXPECT_EQ(dlk_kmeans_fit(ctx, &p, &x.t, &c.t, &l.t, &inertia, &it), DLK_ERROR_INVALID_ARGUMENT);
  p = params(4);
  p.metric = static_cast<dlk_kmeans_metric>(7);
  EXPECT_EQ(dlk_kmeans_fit(ctx, &p, &x.t, &c.t, &l.t, &inertia, &it), DLK_ERROR_INVALID_ARGUMENT);
  p = params(4, DLK_KMEANS_INIT_GIVEN);
  p.n_init = 2;
  EXPECT_EQ(dlk_kmeans_fit(ctx, &p, &x.t, &c.t, &l.t, &inertia, &it), DLK_ERROR_INVALID_ARGUMENT);
  p = params(4);
  p.tol = NAN;
  EXPECT_EQ(dlk_kmeans_fit(ctx, &p, &x.t, &c.t, &l.t, &inertia, &it), DLK_ERROR_INVALID_ARGUMENT);
  p = params(3);
  EXPECT_EQ(dlk_kmeans_fit(ctx, &p, &x.t, &c.t, &l.t, &inertia, &it), DLK_ERROR_SHAPE);
  Tensor l32(ctx, {n}, i32());
  p = params(4);
  EXPECT_EQ(dlk_kmeans_fit(ctx, &p, &x.t, &c.t, &l32.t, &inertia, &it), DLK_ERROR_DTYPE);
  EXPECT_EQ(dlk_kmeans_predict(ctx, nullptr, &x.t, &c.t, &l32.t, nullptr), DLK_ERROR_DTYPE);
  for (float v : c.get()) ASSERT_TRUE(std::isnan(v)) << "centroids written on a failed call";
  for (float v : l.get()) ASSERT_EQ(v, -1.0f) << "labels written on a failed call";
  EXPECT_EQ(inertia, -7);
  EXPECT_EQ(it, -7);
}

}  // namespace
}  // namespace dlk::test
