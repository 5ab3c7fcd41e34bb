// Internal interface of k-means (dlk_kmeans_fit / dlk_kmeans_predict). capi/kmeans.cpp validates and fills the
// structs; kmeans_cpu.cpp is the reference (OpenBLAS sgemm for the distances), kmeans.cu the cuda/emu kernels.
//
// What every backend shares, defined here once (host code: the drivers run on the host, only the heavy loops are
// backend kernels):
//  - the metric as a per-point scale s_i and squared norm q_i: Euclidean s = 1, q = ||x||^2; cosine s = 1/||x||
//    (0 for a zero row), q = 1 (0), so every kernel works on s_i x_i and d = q_i - 2 s_i x_i.c + ||c||^2;
//  - the random stream (Philox, kmeans_uniform) and the two initialisations: random (partial Fisher-Yates over
//    the indices) and scikit-learn's greedy k-means++ (n_local_trials candidates drawn from the D^2 distribution
//    by a search of the cumulative sum, the one lowering the potential most is kept), driven by kmeans_plusplus over
//    a backend's distance operations;
//  - scikit-learn's Lloyd loop: E-step + M-step, stop when the labels do not change (strict convergence) or when
//    the total squared centroid shift is <= tol * mean per-feature variance; a final E-step when not strict;
//  - empty clusters: each is re-seeded with the point farthest from its assigned centroid (distinct points,
//    farthest first, ties to the lower index). Unlike scikit-learn the donor cluster keeps that point in its mean
//    for this iteration (the next E-step moves it).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "common/philox.h"
#include "runtime/exec.h"

namespace dlk {

struct KmeansArgs {
  std::int64_t n = 0, d = 0;
  int k = 8, max_iter = 300, n_init = 1, init = 0, metric = 0, n_local_trials = 0;
  double tol = 1e-4;
  std::uint64_t seed = 0;
  const float* x = nullptr;       // [n, d]
  float* centroids = nullptr;     // [k, d]: in (init GIVEN) and out
  std::int64_t* labels = nullptr; // [n] or null
  // outputs
  double inertia = 0;
  int n_iter = 0;
};

struct KmeansPredictArgs {
  std::int64_t n = 0, d = 0;
  int k = 1, metric = 0;
  const float* x = nullptr;
  const float* centroids = nullptr;
  std::int64_t* labels = nullptr;
  float* distances = nullptr;  // [n] or null
};

constexpr int kKmeansInitPlusPlus = 0, kKmeansInitRandom = 1, kKmeansInitGiven = 2;
constexpr int kKmeansEuclidean = 0, kKmeansCosine = 1;

// A uniform double in [0, 1) from 53 bits of the Philox stream of `seed`, position advanced by two.
struct KmeansRng {
  std::uint64_t seed = 0, pos = 0;
  double uniform() {
    const std::uint64_t hi = philox_at(seed, pos) >> 6, lo = philox_at(seed, pos + 1) >> 5;
    pos += 2;
    return (static_cast<double>(hi) * 134217728.0 + static_cast<double>(lo)) * (1.0 / 9007199254740992.0);
  }
  std::int64_t below(std::int64_t n) {
    std::int64_t v = static_cast<std::int64_t>(uniform() * static_cast<double>(n));
    return v < n ? v : n - 1;
  }
};

// k distinct indices uniformly at random (partial Fisher-Yates).
inline std::vector<std::int64_t> kmeans_random_init(std::int64_t n, int k, KmeansRng& rng) {
  std::vector<std::int64_t> idx(static_cast<std::size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  for (int i = 0; i < k; ++i) std::swap(idx[i], idx[i + rng.below(n - i)]);
  idx.resize(static_cast<std::size_t>(k));
  return idx;
}

// The first index whose inclusive prefix sum of w exceeds r (numpy's searchsorted(cumsum, r, side='left') with the
// clip to n - 1 scikit-learn applies).
inline std::int64_t kmeans_search(const std::vector<double>& cumsum, double r) {
  const auto it = std::lower_bound(cumsum.begin(), cumsum.end(), r);
  const std::int64_t i = it - cumsum.begin();
  return i < static_cast<std::int64_t>(cumsum.size()) ? i : static_cast<std::int64_t>(cumsum.size()) - 1;
}

// Greedy k-means++ over a backend's distance operations:
//   ops.start(i) -> potential: closest[j] = d(x_j, x_i) for all j;
//   ops.cumsum() -> the inclusive prefix sums of closest (double, host);
//   ops.trial(cands) -> potentials sum_j min(closest_j, d(x_j, x_c)) for each candidate c;
//   ops.accept(t) -> closest = min(closest, d(., cands[t])) of the last trial().
template <typename Ops>
std::vector<std::int64_t> kmeans_plusplus(Ops& ops, std::int64_t n, int k, int trials, KmeansRng& rng) {
  std::vector<std::int64_t> centers;
  centers.push_back(rng.below(n));
  double pot = ops.start(centers[0]);
  std::vector<std::int64_t> cands(static_cast<std::size_t>(trials));
  for (int c = 1; c < k; ++c) {
    const std::vector<double> cs = ops.cumsum();
    for (int t = 0; t < trials; ++t) cands[t] = kmeans_search(cs, rng.uniform() * pot);
    const std::vector<double> pots = ops.trial(cands);
    int best = 0;
    for (int t = 1; t < trials; ++t)
      if (pots[t] < pots[best]) best = t;
    ops.accept(best);
    pot = pots[best];
    centers.push_back(cands[best]);
  }
  return centers;
}

inline int kmeans_trials(int k, int n_local_trials) {
  return n_local_trials > 0 ? n_local_trials : 2 + static_cast<int>(std::log(static_cast<double>(k)));
}

// The empty-cluster rule: for each empty cluster (ascending), the next farthest point (by dist desc, index asc).
inline std::vector<std::int64_t> kmeans_farthest(const float* dist, std::int64_t n, int count) {
  std::vector<std::int64_t> idx(static_cast<std::size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  const int m = static_cast<int>(std::min<std::int64_t>(count, n));
  std::partial_sort(idx.begin(), idx.begin() + m, idx.end(), [&](std::int64_t a, std::int64_t b) {
    return dist[a] > dist[b] || (dist[a] == dist[b] && a < b);
  });
  idx.resize(static_cast<std::size_t>(m));
  return idx;
}

namespace cpu {
void kmeans_fit(KmeansArgs& a, const Exec& exec);
void kmeans_predict(const KmeansPredictArgs& a, const Exec& exec);
}  // namespace cpu
namespace cuda {
void kmeans_fit(KmeansArgs& a, const Exec& exec);
void kmeans_predict(const KmeansPredictArgs& a, const Exec& exec);
}  // namespace cuda
namespace emu {
void kmeans_fit(KmeansArgs& a, const Exec& exec);
void kmeans_predict(const KmeansPredictArgs& a, const Exec& exec);
}  // namespace emu

}  // namespace dlk
