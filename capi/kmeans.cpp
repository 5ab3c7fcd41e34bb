// C ABI of k-means: validate every argument (scikit-learn's checks where they apply), describe the call, dispatch.
#include <dlk/dlk.h>

#include <cmath>
#include <cstring>

#include "capi/dispatch.h"
#include "capi/guard.h"
#include "capi/validate.h"
#include "kmeans/kmeans.h"

namespace dlk {
namespace {

void read_params(const Check& check, const dlk_kmeans_params* params, dlk_kmeans_params* p) {
  dlk_kmeans_params_init(p);
  if (params) {
    check.params_size(params->struct_size, sizeof(dlk_kmeans_params), "params");
    std::memcpy(p, params, sizeof(*p));
  }
  const int metric = enum_value(p->metric);
  if (metric != DLK_KMEANS_EUCLIDEAN && metric != DLK_KMEANS_COSINE)
    check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->metric is ", metric, ", expected a dlk_kmeans_metric (0 or 1)");
}

// x [N, D] float32 contiguous; returns N, D.
void points(const Check& check, const DLTensor* x, std::int64_t* n, std::int64_t* d) {
  check.contiguous(x, "x", 2, 2);
  check.dtype_in(x, "x", {DType::F32});
  *n = x->shape[0];
  *d = x->shape[1];
}

void no_overlap(const Check& check, const DLTensor* out, const char* on, const DLTensor* in, const char* in_name) {
  if (!out || !in) return;
  const char* o = static_cast<const char*>(data_of(out));
  const char* i = static_cast<const char*>(data_of(in));
  const std::size_t ob = static_cast<std::size_t>(numel(out)) * dtype_size(dtype_of(out->dtype));
  const std::size_t ib = static_cast<std::size_t>(numel(in)) * dtype_size(dtype_of(in->dtype));
  if (ob == 0 || ib == 0) return;
  if (o < i + ib && i < o + ob) check.fail(DLK_ERROR_LAYOUT, on, " overlaps ", in_name, "; it must be a separate buffer");
}

}  // namespace
}  // namespace dlk

extern "C" {

DLK_API dlk_status dlk_kmeans_params_init(dlk_kmeans_params* params) {
  return dlk::guard("dlk_kmeans_params_init", [&] {
    if (!params) dlk::fail(DLK_ERROR_INVALID_ARGUMENT, "dlk_kmeans_params_init: params is NULL");
    std::memset(params, 0, sizeof(*params));
    params->struct_size = sizeof(*params);
    params->n_clusters = 8;
    params->max_iter = 300;
    params->tol = 1e-4;
    params->n_init = 1;
    params->init = DLK_KMEANS_INIT_PLUSPLUS;
    params->metric = DLK_KMEANS_EUCLIDEAN;
  });
}

DLK_API dlk_status dlk_kmeans_fit(dlk_context* context, const dlk_kmeans_params* params, const DLTensor* x,
                                  DLTensor* centroids, DLTensor* labels, double* inertia, int* n_iter) {
  using namespace dlk;
  return with_context("kmeans_fit", context, [&](const Exec& exec) {
    Check check("kmeans_fit", context);
    dlk_kmeans_params p;
    read_params(check, params, &p);
    KmeansArgs a;
    points(check, x, &a.n, &a.d);
    const int init = enum_value(p.init);
    if (init < 0 || init > 2)
      check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->init is ", init, ", expected a dlk_kmeans_init (0 to 2)");
    if (p.n_clusters < 1 || p.n_clusters > a.n)
      check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->n_clusters is ", p.n_clusters, ", expected 1 to the number of "
                 "points (", a.n, ")");
    if (a.d < 1) check.fail(DLK_ERROR_SHAPE, "x has shape ", shape_string(x), ", expected at least one feature");
    if (p.max_iter < 1) check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->max_iter is ", p.max_iter, ", expected >= 1");
    if (p.n_init < 1) check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->n_init is ", p.n_init, ", expected >= 1");
    if (init == DLK_KMEANS_INIT_GIVEN && p.n_init != 1)
      check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->n_init is ", p.n_init, " with given initial centroids, "
                 "expected 1");
    if (!std::isfinite(p.tol) || p.tol < 0)
      check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->tol is ", p.tol, ", expected a finite number >= 0");
    if (p.n_local_trials < 0)
      check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->n_local_trials is ", p.n_local_trials, ", expected >= 0");
    if (a.n > 0x7fffffff) check.fail(DLK_ERROR_OVERFLOW, "x has ", a.n, " rows, at most 2^31 - 1 are supported");
    check.contiguous(centroids, "centroids", 2, 2);
    check.dtype_in(centroids, "centroids", {DType::F32});
    const std::int64_t cs[2] = {p.n_clusters, a.d};
    check.shape_is(centroids, "centroids", cs, 2, "[n_clusters, D]");
    no_overlap(check, centroids, "centroids", x, "x");
    if (labels) {
      check.contiguous(labels, "labels", 1, 1);
      check.dtype_in(labels, "labels", {DType::I64});
      const std::int64_t ls[1] = {a.n};
      check.shape_is(labels, "labels", ls, 1, "one label per row of x");
      no_overlap(check, labels, "labels", x, "x");
      no_overlap(check, labels, "labels", centroids, "centroids");
    }
    a.k = p.n_clusters;
    a.max_iter = p.max_iter;
    a.n_init = p.n_init;
    a.init = init;
    a.metric = enum_value(p.metric);
    a.n_local_trials = p.n_local_trials;
    a.tol = p.tol;
    a.seed = p.seed;
    a.x = static_cast<const float*>(data_of(x));
    a.centroids = static_cast<float*>(data_of(centroids));
    a.labels = static_cast<std::int64_t*>(data_of(labels));
    DLK_DISPATCH(kmeans_fit, a, exec);
    if (inertia) *inertia = a.inertia;
    if (n_iter) *n_iter = a.n_iter;
  });
}

DLK_API dlk_status dlk_kmeans_predict(dlk_context* context, const dlk_kmeans_params* params, const DLTensor* x,
                                      const DLTensor* centroids, DLTensor* labels, DLTensor* distances) {
  using namespace dlk;
  return with_context("kmeans_predict", context, [&](const Exec& exec) {
    Check check("kmeans_predict", context);
    dlk_kmeans_params p;
    read_params(check, params, &p);
    KmeansPredictArgs a;
    points(check, x, &a.n, &a.d);
    check.contiguous(centroids, "centroids", 2, 2);
    check.dtype_in(centroids, "centroids", {DType::F32});
    if (centroids->shape[1] != a.d || centroids->shape[0] < 1)
      check.fail(DLK_ERROR_SHAPE, "centroids has shape ", shape_string(centroids), ", expected [k >= 1, ", a.d,
                 "] (the features of x ", shape_string(x), ")");
    if (centroids->shape[0] > 0x7fffffff || a.n > 0x7fffffff)
      check.fail(DLK_ERROR_OVERFLOW, "more than 2^31 - 1 points or centroids");
    check.contiguous(labels, "labels", 1, 1);
    check.dtype_in(labels, "labels", {DType::I64});
    const std::int64_t ls[1] = {a.n};
    check.shape_is(labels, "labels", ls, 1, "one label per row of x");
    no_overlap(check, labels, "labels", x, "x");
    no_overlap(check, labels, "labels", centroids, "centroids");
    if (distances) {
      check.contiguous(distances, "distances", 1, 1);
      check.dtype_in(distances, "distances", {DType::F32});
      check.shape_is(distances, "distances", ls, 1, "one distance per row of x");
      no_overlap(check, distances, "distances", x, "x");
      no_overlap(check, distances, "distances", centroids, "centroids");
      no_overlap(check, distances, "distances", labels, "labels");
    }
    a.k = static_cast<int>(centroids->shape[0]);
    a.metric = enum_value(p.metric);
    a.x = static_cast<const float*>(data_of(x));
    a.centroids = static_cast<const float*>(data_of(centroids));
    a.labels = static_cast<std::int64_t*>(data_of(labels));
    a.distances = static_cast<float*>(data_of(distances));
    if (a.n == 0 || a.d == 0) {
      if (a.n > 0 && a.d == 0) check.fail(DLK_ERROR_SHAPE, "x has no features");
      return;
    }
    DLK_DISPATCH(kmeans_predict, a, exec);
  });
}

}  // extern "C"
