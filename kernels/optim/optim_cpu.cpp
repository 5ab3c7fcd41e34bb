// CPU reference of the fused optimizers, clipping and zeroing, and the fallback on machines without a GPU.
//
// Vectorisation: SGD, clipping and zeroing loops vectorise; Adam's does not under GCC's default -fmath-errno
// (sqrtf may set errno), which costs little as the step is memory bound.
// OpenMP runs over the same (tensor, chunk) list the kernels use, so one parallel loop covers every tensor whatever
// their sizes. The element updates are the shared sgd_update / adam_update (fp32, as torch computes on fp32
// tensors). The clipping norm sums each chunk in fp64 and then the chunk partials in chunk order: the result does
// not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/host.h"
#include "optim/optim.h"
#include "runtime/error.h"

namespace dlk::cpu {
namespace {

// Calls body(tensor, begin, end) for every chunk of the table, in parallel.
template <typename Body>
void for_chunks(const OptimTable& table, const Exec& exec, Body&& body) {
  const OptimTensor* tab = table.tensors.data();
  const int count = static_cast<int>(table.tensors.size());
  const std::int64_t chunks = table.chunks;
#pragma omp parallel for schedule(static) num_threads(host::threads(exec, chunks, host::kUncapped, 2))
  for (std::int64_t c = 0; c < chunks; ++c) {
    const OptimTensor& t = tab[optim_find_tensor(tab, count, c)];
    const std::int64_t begin = (c - t.chunk_begin) * kOptimChunk;
    const std::int64_t end = std::min(t.n, begin + kOptimChunk);
    body(t, begin, end);
  }
}

}  // namespace

void sgd_step(const SgdArgs& a, const Exec& exec) {
  const float momentum = a.momentum, omd = a.one_minus_dampening;
  const bool nesterov = a.nesterov, first = a.first_step;
  for_chunks(a.table, exec, [&](const OptimTensor& entry, std::int64_t begin, std::int64_t end) {
    const OptimTensor t = entry;  // a local copy: stores through p cannot alias it, so the loops vectorise
    float* __restrict__ p = t.p;
    const float* __restrict__ g = t.g;
    float* __restrict__ buf = t.s0;
    if (buf) {
#pragma omp simd
      for (std::int64_t i = begin; i < end; ++i) sgd_update(p[i], g[i], buf + i, t, momentum, omd, nesterov, first);
    } else {
#pragma omp simd
      for (std::int64_t i = begin; i < end; ++i) sgd_update(p[i], g[i], nullptr, t, 0.0f, 1.0f, false, false);
    }
  });
}

void adam_step(const AdamArgs& a, const Exec& exec) {
  const AdamConsts k = a.k;
  for_chunks(a.table, exec, [&](const OptimTensor& entry, std::int64_t begin, std::int64_t end) {
    const OptimTensor t = entry;
    float* __restrict__ p = t.p;
    float* __restrict__ m = t.s0;
    float* __restrict__ v = t.s1;
    float* __restrict__ vmax = t.s2;
    const float* __restrict__ g = t.g;
    if (vmax) {
#pragma omp simd
      for (std::int64_t i = begin; i < end; ++i) adam_update<true>(p[i], g[i], m[i], v[i], vmax[i], t, k);
    } else {
      float unused = 0.0f;
#pragma omp simd
      for (std::int64_t i = begin; i < end; ++i) adam_update<false>(p[i], g[i], m[i], v[i], unused, t, k);
    }
  });
}

void clip_grad_norm(const ClipArgs& a, const Exec& exec) {
  const OptimTensor* tab = a.table.tensors.data();
  const int count = static_cast<int>(a.table.tensors.size());
  const std::int64_t chunks = a.table.chunks;
  std::vector<double> partial(static_cast<std::size_t>(chunks), 0.0);
  const NormKind kind = a.norm;
#pragma omp parallel for schedule(static) num_threads(host::threads(exec, chunks, host::kUncapped, 2))
  for (std::int64_t c = 0; c < chunks; ++c) {
    const OptimTensor& t = tab[optim_find_tensor(tab, count, c)];
    const std::int64_t begin = (c - t.chunk_begin) * kOptimChunk;
    const std::int64_t end = std::min(t.n, begin + kOptimChunk);
    const float* g = t.p;
    double s = 0.0;
    if (kind == NormKind::Inf) {
      for (std::int64_t i = begin; i < end; ++i) {
        const double v = std::fabs(static_cast<double>(g[i]));
        s = (v > s || std::isnan(v)) && !std::isnan(s) ? v : s;
      }
    } else if (kind == NormKind::L1) {
#pragma omp simd reduction(+ : s)
      for (std::int64_t i = begin; i < end; ++i) s += std::fabs(static_cast<double>(g[i]));
    } else {
#pragma omp simd reduction(+ : s)
      for (std::int64_t i = begin; i < end; ++i) s += static_cast<double>(g[i]) * g[i];
    }
    partial[static_cast<std::size_t>(c)] = s;
  }
  double total = 0.0;
  for (double s : partial) {
    if (kind == NormKind::Inf) total = (s > total || std::isnan(s)) && !std::isnan(total) ? s : total;
    else total += s;
  }
  if (kind == NormKind::L2) total = std::sqrt(total);
  const float total_f = static_cast<float>(total);
  // torch: clip_coef = max_norm / (total_norm + 1e-6), computed on the fp32 norm.
  const float coef = a.max_norm / (total_f + 1e-6f);
  if (coef < 1.0f) {
    for_chunks(a.table, exec, [&](const OptimTensor& t, std::int64_t begin, std::int64_t end) {
      float* __restrict__ g = t.p;
#pragma omp simd
      for (std::int64_t i = begin; i < end; ++i) g[i] *= coef;
    });
  }
  if (a.total_norm_device) *a.total_norm_device = total_f;
  if (a.total_norm_host) *a.total_norm_host = total_f;
}

void zero_grad(const ZeroArgs& a, const Exec& exec) {
  for_chunks(a.table, exec, [&](const OptimTensor& t, std::int64_t begin, std::int64_t end) {
    const std::size_t u = static_cast<std::size_t>(t.unit_bytes);
    std::memset(reinterpret_cast<unsigned char*>(t.p) + static_cast<std::size_t>(begin) * u, 0,
                static_cast<std::size_t>(end - begin) * u);
  });
}

}  // namespace dlk::cpu
