// CPU reference of k-means (shared rules in kmeans.h). The distance step is OpenBLAS's sgemm on chunks of rows
// (G = X_chunk C^T, then d = q - 2 s G + ||c||^2 and the argmin per row, OpenMP over rows); k-means++ uses the same
// product for its candidates. The centroid update sums s_i x_i per cluster in fp64 with OpenMP over column ranges:
// every thread walks all points in index order for its columns, so the sums do not depend on the thread count.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common/host.h"
#include "kmeans/kmeans.h"

namespace dlk::cpu {
namespace {

constexpr std::int64_t kChunkRows = 4096;

// Per-point scale and squared norm of the metric (kmeans.h).
struct PointNorms {
  std::vector<float> s, q;
};

PointNorms point_norms(const float* x, std::int64_t n, std::int64_t d, int metric, const Exec& exec) {
  PointNorms p;
  p.s.resize(static_cast<std::size_t>(n));
  p.q.resize(static_cast<std::size_t>(n));
  const int nt = host::threads(exec, n * d, n);
#pragma omp parallel for schedule(static) num_threads(nt)
  for (std::int64_t i = 0; i < n; ++i) {
    double ss = 0;
    for (std::int64_t j = 0; j < d; ++j) ss += static_cast<double>(x[i * d + j]) * x[i * d + j];
    if (metric == kKmeansCosine) {
      p.s[i] = ss > 0 ? static_cast<float>(1.0 / std::sqrt(ss)) : 0.0f;
      p.q[i] = ss > 0 ? 1.0f : 0.0f;
    } else {
      p.s[i] = 1.0f;
      p.q[i] = static_cast<float>(ss);
    }
  }
  return p;
}

// out[i, j] = max(q_i - 2 s_i x_i.c_j + ||c_j||^2, 0) for rows [r0, r1) of x and the m rows of c.
void distances(const float* x, std::int64_t d, const PointNorms& pn, const float* c, std::int64_t m,
               const std::vector<float>& cn, std::int64_t r0, std::int64_t r1, float* out, const Exec& exec) {
  const std::int64_t rows = r1 - r0;
  if (rows <= 0 || m <= 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(m),
              static_cast<int>(d), 1.0f, x + r0 * d, static_cast<int>(d), c, static_cast<int>(d), 0.0f, out,
              static_cast<int>(m));
  const int nt = host::threads(exec, rows * m, rows);
#pragma omp parallel for schedule(static) num_threads(nt)
  for (std::int64_t i = 0; i < rows; ++i) {
    const float s2 = 2.0f * pn.s[r0 + i], q = pn.q[r0 + i];
    for (std::int64_t j = 0; j < m; ++j) out[i * m + j] = std::max(q - s2 * out[i * m + j] + cn[j], 0.0f);
  }
}

std::vector<float> row_norms(const float* c, std::int64_t m, std::int64_t d) {
  std::vector<float> cn(static_cast<std::size_t>(m));
  for (std::int64_t j = 0; j < m; ++j) {
    double s = 0;
    for (std::int64_t t = 0; t < d; ++t) s += static_cast<double>(c[j * d + t]) * c[j * d + t];
    cn[j] = static_cast<float>(s);
  }
  return cn;
}

// E-step: labels and distances to the nearest centroid (ties to the lower index).
void assign(const float* x, std::int64_t n, std::int64_t d, const PointNorms& pn, const float* c, int k,
            std::int64_t* labels, float* mind, const Exec& exec) {
  const std::vector<float> cn = row_norms(c, k, d);
  std::vector<float> buf(static_cast<std::size_t>(std::min(n, kChunkRows) * k));
  for (std::int64_t r0 = 0; r0 < n; r0 += kChunkRows) {
    const std::int64_t r1 = std::min(n, r0 + kChunkRows);
    distances(x, d, pn, c, k, cn, r0, r1, buf.data(), exec);
    const int nt = host::threads(exec, (r1 - r0) * k, r1 - r0);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (std::int64_t i = r0; i < r1; ++i) {
      const float* row = buf.data() + (i - r0) * k;
      int best = 0;
      for (int j = 1; j < k; ++j)
        if (row[j] < row[best]) best = j;
      labels[i] = best;
      mind[i] = row[best];
    }
  }
}

// The candidate-distance operations of kmeans_plusplus.
struct CpuPlusPlus {
  const float* x;
  std::int64_t n, d;
  const PointNorms& pn;
  const Exec& exec;
  std::vector<double> closest;
  std::vector<float> trial_d;  // [n, trials]
  std::int64_t trials = 0;

  // d(x_j, rows) for every j into out [n, m].
  void dist_to(const std::vector<std::int64_t>& rows, std::vector<float>& out) {
    const std::int64_t m = static_cast<std::int64_t>(rows.size());
    std::vector<float> c(static_cast<std::size_t>(m * d));
    for (std::int64_t t = 0; t < m; ++t)
      for (std::int64_t j = 0; j < d; ++j) c[t * d + j] = pn.s[rows[t]] * x[rows[t] * d + j];
    const std::vector<float> cn = row_norms(c.data(), m, d);
    out.resize(static_cast<std::size_t>(n * m));
    for (std::int64_t r0 = 0; r0 < n; r0 += kChunkRows)
      distances(x, d, pn, c.data(), m, cn, r0, std::min(n, r0 + kChunkRows), out.data() + r0 * m, exec);
  }
  double start(std::int64_t i) {
    std::vector<float> dd;
    dist_to({i}, dd);
    closest.assign(dd.begin(), dd.end());
    double pot = 0;
    for (double v : closest) pot += v;
    return pot;
  }
  std::vector<double> cumsum() {
    std::vector<double> cs(closest.size());
    double s = 0;
    for (std::size_t i = 0; i < cs.size(); ++i) cs[i] = (s += closest[i]);
    return cs;
  }
  std::vector<double> trial(const std::vector<std::int64_t>& cands) {
    trials = static_cast<std::int64_t>(cands.size());
    dist_to(cands, trial_d);
    std::vector<double> pots(cands.size(), 0.0);
    const int nt = host::threads(exec, n * trials, trials);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (std::int64_t t = 0; t < trials; ++t) {
      double p = 0;
      for (std::int64_t j = 0; j < n; ++j) p += std::min(closest[j], static_cast<double>(trial_d[j * trials + t]));
      pots[t] = p;
    }
    return pots;
  }
  void accept(int t) {
    for (std::int64_t j = 0; j < n; ++j) closest[j] = std::min(closest[j], static_cast<double>(trial_d[j * trials + t]));
  }
};

void normalize_rows(float* c, std::int64_t m, std::int64_t d) {
  for (std::int64_t j = 0; j < m; ++j) {
    double s = 0;
    for (std::int64_t t = 0; t < d; ++t) s += static_cast<double>(c[j * d + t]) * c[j * d + t];
    if (s > 0) {
      const float inv = static_cast<float>(1.0 / std::sqrt(s));
      for (std::int64_t t = 0; t < d; ++t) c[j * d + t] *= inv;
    }
  }
}

}  // namespace

void kmeans_fit(KmeansArgs& a, const Exec& exec) {
  const std::int64_t n = a.n, d = a.d;
  const int k = a.k;
  const PointNorms pn = point_norms(a.x, n, d, a.metric, exec);
  // tol relative to the mean per-feature variance of the (scaled) data, as scikit-learn's _tolerance
  double tol_abs = 0;
  {
    std::vector<double> mean(static_cast<std::size_t>(d), 0.0), sq(static_cast<std::size_t>(d), 0.0);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < d; ++j) {
        const double v = static_cast<double>(pn.s[i]) * a.x[i * d + j];
        mean[j] += v;
        sq[j] += v * v;
      }
    double var = 0;
    for (std::int64_t j = 0; j < d; ++j) {
      const double m = mean[j] / n;
      var += std::max(sq[j] / n - m * m, 0.0);
    }
    tol_abs = a.tol * var / static_cast<double>(d);
  }
  std::vector<float> best_c, c(static_cast<std::size_t>(k * d)), c_new(c.size());
  std::vector<std::int64_t> best_labels, labels(static_cast<std::size_t>(n)), labels_old(labels.size());
  std::vector<float> mind(static_cast<std::size_t>(n));
  std::vector<double> sums(static_cast<std::size_t>(k * d));
  std::vector<std::int64_t> counts(static_cast<std::size_t>(k));
  double best_inertia = std::numeric_limits<double>::infinity();
  int best_iter = 0;
  for (int run = 0; run < a.n_init; ++run) {
    KmeansRng rng{a.seed + static_cast<std::uint64_t>(run), 0};
    if (a.init == kKmeansInitGiven) {
      std::copy(a.centroids, a.centroids + k * d, c.begin());
      if (a.metric == kKmeansCosine) normalize_rows(c.data(), k, d);
    } else {
      std::vector<std::int64_t> rows;
      if (a.init == kKmeansInitRandom) {
        rows = kmeans_random_init(n, k, rng);
      } else {
        CpuPlusPlus ops{a.x, n, d, pn, exec, {}, {}, 0};
        rows = kmeans_plusplus(ops, n, k, kmeans_trials(k, a.n_local_trials), rng);
      }
      for (int j = 0; j < k; ++j)
        for (std::int64_t t = 0; t < d; ++t) c[j * d + t] = pn.s[rows[j]] * a.x[rows[j] * d + t];
    }
    std::fill(labels_old.begin(), labels_old.end(), -1);
    bool strict = false;
    int it = 0;
    for (; it < a.max_iter; ++it) {
      assign(a.x, n, d, pn, c.data(), k, labels.data(), mind.data(), exec);
      // M-step: fp64 sums per cluster, threads over column ranges (fixed order per column)
      std::fill(counts.begin(), counts.end(), 0);
      for (std::int64_t i = 0; i < n; ++i) ++counts[labels[i]];
      std::fill(sums.begin(), sums.end(), 0.0);
      const int nt = host::threads(exec, n * d, d);
#pragma omp parallel num_threads(nt)
      {
        const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        const std::int64_t c0 = d * tid / nth, c1 = d * (tid + 1) / nth;
        for (std::int64_t i = 0; i < n; ++i) {
          double* srow = sums.data() + labels[i] * d;
          const float* xr = a.x + i * d;
          const double si = pn.s[i];
          for (std::int64_t t = c0; t < c1; ++t) srow[t] += si * xr[t];
        }
      }
      int empty = 0;
      for (int j = 0; j < k; ++j) {
        if (counts[j] == 0) {
          ++empty;
          continue;
        }
        for (std::int64_t t = 0; t < d; ++t) c_new[j * d + t] = static_cast<float>(sums[j * d + t] / counts[j]);
      }
      if (empty) {
        const std::vector<std::int64_t> far = kmeans_farthest(mind.data(), n, empty);
        std::size_t f = 0;
        for (int j = 0; j < k && f < far.size(); ++j)
          if (counts[j] == 0) {
            const std::int64_t p = far[f++];
            for (std::int64_t t = 0; t < d; ++t) c_new[j * d + t] = pn.s[p] * a.x[p * d + t];
          }
      }
      if (a.metric == kKmeansCosine) normalize_rows(c_new.data(), k, d);
      double shift = 0;
      for (std::size_t e = 0; e < c.size(); ++e) {
        const double df = static_cast<double>(c_new[e]) - c[e];
        shift += df * df;
      }
      std::swap(c, c_new);
      if (labels == labels_old) {
        strict = true;
        break;
      }
      if (shift <= tol_abs) break;
      labels_old = labels;
    }
    if (!strict) assign(a.x, n, d, pn, c.data(), k, labels.data(), mind.data(), exec);
    double inertia = 0;
    for (std::int64_t i = 0; i < n; ++i) inertia += mind[i];
    if (a.metric == kKmeansCosine) inertia *= 0.5;
    if (inertia < best_inertia || run == 0) {
      best_inertia = inertia;
      best_c = c;
      best_labels = labels;
      best_iter = std::min(it + 1, a.max_iter);
    }
  }
  std::copy(best_c.begin(), best_c.end(), a.centroids);
  if (a.labels) std::copy(best_labels.begin(), best_labels.end(), a.labels);
  a.inertia = best_inertia;
  a.n_iter = best_iter;
}

void kmeans_predict(const KmeansPredictArgs& a, const Exec& exec) {
  const PointNorms pn = point_norms(a.x, a.n, a.d, a.metric, exec);
  std::vector<float> c(a.centroids, a.centroids + a.k * a.d);
  if (a.metric == kKmeansCosine) normalize_rows(c.data(), a.k, a.d);
  std::vector<float> mind(static_cast<std::size_t>(a.n));
  assign(a.x, a.n, a.d, pn, c.data(), a.k, a.labels, mind.data(), exec);
  if (a.distances)
    for (std::int64_t i = 0; i < a.n; ++i) a.distances[i] = a.metric == kKmeansCosine ? 0.5f * mind[i] : mind[i];
}

}  // namespace dlk::cpu
