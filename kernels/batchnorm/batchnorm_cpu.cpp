// CPU reference of batch norm, and the fallback on machines without a GPU. Formulas in batchnorm.h.
//
// OpenMP across channels: one thread owns a channel's whole reduction (fp64, two passes: mean, then
// sum((x - mean)^2), so no cancellation), so the result does not depend on the thread count. The normalising pass
// runs across (i, channel) rows.
#include <cmath>
#include <cstdint>
#include <vector>

#include "batchnorm/batchnorm.h"
#include "common/host.h"

namespace dlk::cpu {
namespace {

template <typename T>
void forward(const BatchNormForwardArgs& a, const Exec& exec) {
  const T* x = static_cast<const T*>(a.x);
  T* y = static_cast<T*>(a.y);
  const std::int64_t n = a.n, c = a.c, l = a.l, total = n * c * l;
  std::vector<double> scale(static_cast<std::size_t>(c)), mean(static_cast<std::size_t>(c));
  const double count = static_cast<double>(n * l);
#pragma omp parallel for num_threads(host::threads(exec, total, c)) schedule(static)
  for (std::int64_t k = 0; k < c; ++k) {
    double m, var;
    if (a.training) {
      double s = 0.0;
      for (std::int64_t i = 0; i < n; ++i) {
        const std::int64_t base = (i * c + k) * l;
#pragma omp simd reduction(+ : s)
        for (std::int64_t j = 0; j < l; ++j) s += host::load(x, base + j);
      }
      m = s / count;
      double q = 0.0;
      for (std::int64_t i = 0; i < n; ++i) {
        const std::int64_t base = (i * c + k) * l;
#pragma omp simd reduction(+ : q)
        for (std::int64_t j = 0; j < l; ++j) {
          const double d = host::load(x, base + j) - m;
          q += d * d;
        }
      }
      var = q / count;
    } else {
      m = a.running_mean[k];
      var = a.running_var[k];
    }
    const double invstd = 1.0 / std::sqrt(var + static_cast<double>(a.eps));
    if (a.training) {
      if (a.save_mean) a.save_mean[k] = static_cast<float>(m);
      if (a.save_invstd) a.save_invstd[k] = static_cast<float>(invstd);
      if (a.running_mean) {
        const double mom = a.momentum;
        a.running_mean[k] = static_cast<float>((1.0 - mom) * a.running_mean[k] + mom * m);
        a.running_var[k] = static_cast<float>((1.0 - mom) * a.running_var[k] + mom * var * count / (count - 1.0));
      }
    }
    mean[static_cast<std::size_t>(k)] = m;  // fp64: subtracting a rounded mean would lose precision for small std
    scale[static_cast<std::size_t>(k)] = invstd * (a.gamma ? a.gamma[k] : 1.0f);
  }
#pragma omp parallel for num_threads(host::threads(exec, total, n * c)) schedule(static)
  for (std::int64_t r = 0; r < n * c; ++r) {
    const std::int64_t k = r % c;
    const double m = mean[static_cast<std::size_t>(k)], s = scale[static_cast<std::size_t>(k)];
    const double b = a.beta ? a.beta[k] : 0.0f;
#pragma omp simd
    for (std::int64_t j = 0; j < l; ++j)
      host::store(y, r * l + j, static_cast<float>((host::load(x, r * l + j) - m) * s + b));
  }
}

template <typename T>
void backward(const BatchNormBackwardArgs& a, const Exec& exec) {
  const T* x = static_cast<const T*>(a.x);
  const T* dy = static_cast<const T*>(a.dy);
  T* dx = static_cast<T*>(a.dx);
  const std::int64_t n = a.n, c = a.c, l = a.l, total = n * c * l;
  const double count = static_cast<double>(n * l);
  std::vector<double> k1(static_cast<std::size_t>(c)), k2(static_cast<std::size_t>(c)), mu(static_cast<std::size_t>(c)),
      is(static_cast<std::size_t>(c));
#pragma omp parallel for num_threads(host::threads(exec, total, c)) schedule(static)
  for (std::int64_t k = 0; k < c; ++k) {
    const double m = a.mean[k];
    const double invstd = a.training ? static_cast<double>(a.invstd[k])
                                     : 1.0 / std::sqrt(static_cast<double>(a.var[k]) + static_cast<double>(a.eps));
    double sdy = 0.0, sdyx = 0.0;
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t base = (i * c + k) * l;
#pragma omp simd reduction(+ : sdy, sdyx)
      for (std::int64_t j = 0; j < l; ++j) {
        const double g = host::load(dy, base + j);
        sdy += g;
        sdyx += g * (host::load(x, base + j) - m);
      }
    }
    sdyx *= invstd;
    if (a.dgamma) a.dgamma[k] = static_cast<float>(sdyx);
    if (a.dbeta) a.dbeta[k] = static_cast<float>(sdy);
    const std::size_t kk = static_cast<std::size_t>(k);
    mu[kk] = m;
    is[kk] = invstd;
    k1[kk] = sdy / count;
    k2[kk] = sdyx / count;
  }
  if (!dx) return;
#pragma omp parallel for num_threads(host::threads(exec, total, n * c)) schedule(static)
  for (std::int64_t r = 0; r < n * c; ++r) {
    const std::size_t k = static_cast<std::size_t>(r % c);
    const double g = (a.gamma ? a.gamma[k] : 1.0f) * is[k];
    const double m = mu[k], s = is[k], c1 = k1[k], c2 = k2[k];
    if (a.training) {
#pragma omp simd
      for (std::int64_t j = 0; j < l; ++j) {
        const double xhat = (host::load(x, r * l + j) - m) * s;
        host::store(dx, r * l + j, static_cast<float>(g * (host::load(dy, r * l + j) - c1 - xhat * c2)));
      }
    } else {
#pragma omp simd
      for (std::int64_t j = 0; j < l; ++j)
        host::store(dx, r * l + j, static_cast<float>(g * host::load(dy, r * l + j)));
    }
  }
}

}  // namespace

void batchnorm_forward(const BatchNormForwardArgs& a, const Exec& exec) {
  host::with_type(a.dtype, "batchnorm_forward", [&](auto tag) { forward<decltype(tag)>(a, exec); });
}

void batchnorm_backward(const BatchNormBackwardArgs& a, const Exec& exec) {
  host::with_type(a.dtype, "batchnorm_backward", [&](auto tag) { backward<decltype(tag)>(a, exec); });
}

}  // namespace dlk::cpu
