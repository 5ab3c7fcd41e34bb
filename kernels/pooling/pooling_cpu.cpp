// CPU reference of the pooling family, and the fallback on machines without a GPU.
//
// Every op works plane by plane ([planes, H, W] views), OpenMP across planes. Sums (avg pools, every backward) are
// accumulated in fp64. The backwards are scatters within one plane, which one thread owns, so they are
// deterministic; the device kernels use gathers instead (pooling.cu) and must agree to rounding.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "common/host.h"
#include "pooling/pooling.h"

namespace dlk::cpu {
namespace {

template <typename T>
void max_fwd(const PoolArgs& a, const Exec& exec) {
  const PoolGeom& g = a.g;
  const T* x = static_cast<const T*>(a.in);
  T* y = static_cast<T*>(a.out);
  const std::int64_t ip = g.ih * g.iw, op = g.oh * g.ow;
#pragma omp parallel for num_threads(host::threads(exec, g.planes * op * g.kh * g.kw, g.planes)) schedule(static)
  for (std::int64_t p = 0; p < g.planes; ++p) {
    const T* xp = x + p * ip;
    for (std::int64_t oh = 0; oh < g.oh; ++oh) {
      const Taps th = max_pool_taps(oh, g.ih, g.kh, g.sh, g.ph, g.dh);
      for (std::int64_t ow = 0; ow < g.ow; ++ow) {
        const Taps tw = max_pool_taps(ow, g.iw, g.kw, g.sw, g.pw, g.dw);
        float best = -std::numeric_limits<float>::infinity();
        std::int64_t bi = th.start * g.iw + tw.start;
        for (std::int64_t h = th.start; h < th.end; h += g.dh)
          for (std::int64_t w = tw.start; w < tw.end; w += g.dw) {
            const float v = host::load(xp, h * g.iw + w);
            if (v > best || std::isnan(v)) {
              best = v;
              bi = h * g.iw + w;
            }
          }
        const std::int64_t o = p * op + oh * g.ow + ow;
        host::store(y, o, best);
        if (a.out_indices) a.out_indices[o] = bi;
      }
    }
  }
}

// dx plane = scatter-add of dy through the indices (one thread per plane: deterministic).
template <typename T>
void max_bwd(const PoolArgs& a, const Exec& exec) {
  const PoolGeom& g = a.g;
  const T* dy = static_cast<const T*>(a.in);
  T* dx = static_cast<T*>(a.out);
  const std::int64_t ip = g.ih * g.iw, op = g.oh * g.ow;
#pragma omp parallel num_threads(host::threads(exec, g.planes * (ip + op), g.planes))
  {
    std::vector<double> acc(static_cast<std::size_t>(ip));
#pragma omp for schedule(static)
    for (std::int64_t p = 0; p < g.planes; ++p) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (std::int64_t o = 0; o < op; ++o) {
        const std::int64_t i = a.indices[p * op + o];
        if (i >= 0 && i < ip) acc[static_cast<std::size_t>(i)] += host::load(dy, p * op + o);
      }
      for (std::int64_t i = 0; i < ip; ++i)
        host::store(dx, p * ip + i, static_cast<float>(acc[static_cast<std::size_t>(i)]));
    }
  }
}

template <typename T>
void avg_fwd(const PoolArgs& a, const Exec& exec) {
  const PoolGeom& g = a.g;
  const T* x = static_cast<const T*>(a.in);
  T* y = static_cast<T*>(a.out);
  const std::int64_t ip = g.ih * g.iw, op = g.oh * g.ow;
#pragma omp parallel for num_threads(host::threads(exec, g.planes * op * g.kh * g.kw, g.planes)) schedule(static)
  for (std::int64_t p = 0; p < g.planes; ++p) {
    const T* xp = x + p * ip;
    for (std::int64_t oh = 0; oh < g.oh; ++oh) {
      const AvgWindow wh = avg_pool_window(oh, g.ih, g.kh, g.sh, g.ph);
      for (std::int64_t ow = 0; ow < g.ow; ++ow) {
        const AvgWindow ww = avg_pool_window(ow, g.iw, g.kw, g.sw, g.pw);
        double s = 0.0;
        for (std::int64_t h = wh.start; h < wh.end; ++h)
          for (std::int64_t w = ww.start; w < ww.end; ++w) s += host::load(xp, h * g.iw + w);
        host::store(y, p * op + oh * g.ow + ow, static_cast<float>(s / avg_pool_divisor(g, wh, ww)));
      }
    }
  }
}

template <typename T>
void avg_bwd(const PoolArgs& a, const Exec& exec) {
  const PoolGeom& g = a.g;
  const T* dy = static_cast<const T*>(a.in);
  T* dx = static_cast<T*>(a.out);
  const std::int64_t ip = g.ih * g.iw, op = g.oh * g.ow;
#pragma omp parallel num_threads(host::threads(exec, g.planes * op * g.kh * g.kw, g.planes))
  {
    std::vector<double> acc(static_cast<std::size_t>(ip));
#pragma omp for schedule(static)
    for (std::int64_t p = 0; p < g.planes; ++p) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (std::int64_t oh = 0; oh < g.oh; ++oh) {
        const AvgWindow wh = avg_pool_window(oh, g.ih, g.kh, g.sh, g.ph);
        for (std::int64_t ow = 0; ow < g.ow; ++ow) {
          const AvgWindow ww = avg_pool_window(ow, g.iw, g.kw, g.sw, g.pw);
          const double v = host::load(dy, p * op + oh * g.ow + ow) / static_cast<double>(avg_pool_divisor(g, wh, ww));
          for (std::int64_t h = wh.start; h < wh.end; ++h)
            for (std::int64_t w = ww.start; w < ww.end; ++w) acc[static_cast<std::size_t>(h * g.iw + w)] += v;
        }
      }
      for (std::int64_t i = 0; i < ip; ++i)
        host::store(dx, p * ip + i, static_cast<float>(acc[static_cast<std::size_t>(i)]));
    }
  }
}

template <typename T>
void adaptive_fwd(const PoolArgs& a, const Exec& exec) {
  const PoolGeom& g = a.g;
  const T* x = static_cast<const T*>(a.in);
  T* y = static_cast<T*>(a.out);
  const std::int64_t ip = g.ih * g.iw, op = g.oh * g.ow;
#pragma omp parallel for num_threads(host::threads(exec, g.planes * (ip + op), g.planes)) schedule(static)
  for (std::int64_t p = 0; p < g.planes; ++p) {
    const T* xp = x + p * ip;
    for (std::int64_t oh = 0; oh < g.oh; ++oh) {
      const std::int64_t h0 = adaptive_start(oh, g.oh, g.ih), h1 = adaptive_end(oh, g.oh, g.ih);
      for (std::int64_t ow = 0; ow < g.ow; ++ow) {
        const std::int64_t w0 = adaptive_start(ow, g.ow, g.iw), w1 = adaptive_end(ow, g.ow, g.iw);
        double s = 0.0;
        for (std::int64_t h = h0; h < h1; ++h)
          for (std::int64_t w = w0; w < w1; ++w) s += host::load(xp, h * g.iw + w);
        host::store(y, p * op + oh * g.ow + ow, static_cast<float>(s / static_cast<double>((h1 - h0) * (w1 - w0))));
      }
    }
  }
}

template <typename T>
void adaptive_bwd(const PoolArgs& a, const Exec& exec) {
  const PoolGeom& g = a.g;
  const T* dy = static_cast<const T*>(a.in);
  T* dx = static_cast<T*>(a.out);
  const std::int64_t ip = g.ih * g.iw, op = g.oh * g.ow;
#pragma omp parallel num_threads(host::threads(exec, g.planes * (ip + op), g.planes))
  {
    std::vector<double> acc(static_cast<std::size_t>(ip));
#pragma omp for schedule(static)
    for (std::int64_t p = 0; p < g.planes; ++p) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (std::int64_t oh = 0; oh < g.oh; ++oh) {
        const std::int64_t h0 = adaptive_start(oh, g.oh, g.ih), h1 = adaptive_end(oh, g.oh, g.ih);
        for (std::int64_t ow = 0; ow < g.ow; ++ow) {
          const std::int64_t w0 = adaptive_start(ow, g.ow, g.iw), w1 = adaptive_end(ow, g.ow, g.iw);
          const double v = host::load(dy, p * op + oh * g.ow + ow) / static_cast<double>((h1 - h0) * (w1 - w0));
          for (std::int64_t h = h0; h < h1; ++h)
            for (std::int64_t w = w0; w < w1; ++w) acc[static_cast<std::size_t>(h * g.iw + w)] += v;
        }
      }
      for (std::int64_t i = 0; i < ip; ++i)
        host::store(dx, p * ip + i, static_cast<float>(acc[static_cast<std::size_t>(i)]));
    }
  }
}

// Unpool: g.ih x g.iw is the pooled input x, g.oh x g.ow the unpooled output y.
template <typename T>
void unpool_fwd(const PoolArgs& a, const Exec& exec) {
  const PoolGeom& g = a.g;
  const T* x = static_cast<const T*>(a.in);
  T* y = static_cast<T*>(a.out);
  const std::int64_t ip = g.ih * g.iw, op = g.oh * g.ow;
#pragma omp parallel for num_threads(host::threads(exec, g.planes * (ip + op), g.planes)) schedule(static)
  for (std::int64_t p = 0; p < g.planes; ++p) {
    for (std::int64_t o = 0; o < op; ++o) host::store(y, p * op + o, 0.0f);
    for (std::int64_t i = 0; i < ip; ++i) {
      const std::int64_t o = a.indices[p * ip + i];
      if (o >= 0 && o < op) host::store(y, p * op + o, host::load(x, p * ip + i));
    }
  }
}

template <typename T>
void unpool_bwd(const PoolArgs& a, const Exec& exec) {
  const PoolGeom& g = a.g;
  const T* dy = static_cast<const T*>(a.in);
  T* dx = static_cast<T*>(a.out);
  const std::int64_t ip = g.ih * g.iw, op = g.oh * g.ow;
#pragma omp parallel for num_threads(host::threads(exec, g.planes * ip, g.planes)) schedule(static)
  for (std::int64_t p = 0; p < g.planes; ++p)
    for (std::int64_t i = 0; i < ip; ++i) {
      const std::int64_t o = a.indices[p * ip + i];
      host::store(dx, p * ip + i, (o >= 0 && o < op) ? host::load(dy, p * op + o) : 0.0f);
    }
}

template <typename T>
void up_fwd(const UpsampleArgs& a, const Exec& exec) {
  const T* x = static_cast<const T*>(a.in);
  T* y = static_cast<T*>(a.out);
  const std::int64_t ip = a.ih * a.iw, op = a.oh * a.ow;
  std::vector<Src> sw(static_cast<std::size_t>(a.ow));
  for (std::int64_t ow = 0; ow < a.ow; ++ow)
    sw[static_cast<std::size_t>(ow)] = upsample_src(ow, a.iw, a.ow, a.mode, a.align_corners, a.ratio_w);
#pragma omp parallel for num_threads(host::threads(exec, a.planes * op * 4, a.planes)) schedule(static)
  for (std::int64_t p = 0; p < a.planes; ++p) {
    const T* xp = x + p * ip;
    for (std::int64_t oh = 0; oh < a.oh; ++oh) {
      const Src sh = upsample_src(oh, a.ih, a.oh, a.mode, a.align_corners, a.ratio_h);
      for (std::int64_t ow = 0; ow < a.ow; ++ow) {
        const Src& s = sw[static_cast<std::size_t>(ow)];
        const double top = s.l0 * static_cast<double>(host::load(xp, sh.i0 * a.iw + s.i0)) +
                           s.l1 * static_cast<double>(host::load(xp, sh.i0 * a.iw + s.i1));
        const double bot = s.l0 * static_cast<double>(host::load(xp, sh.i1 * a.iw + s.i0)) +
                           s.l1 * static_cast<double>(host::load(xp, sh.i1 * a.iw + s.i1));
        host::store(y, p * op + oh * a.ow + ow, static_cast<float>(sh.l0 * top + sh.l1 * bot));
      }
    }
  }
}

template <typename T>
void up_bwd(const UpsampleArgs& a, const Exec& exec) {
  const T* dy = static_cast<const T*>(a.in);
  T* dx = static_cast<T*>(a.out);
  const std::int64_t ip = a.ih * a.iw, op = a.oh * a.ow;
  std::vector<Src> sw(static_cast<std::size_t>(a.ow));
  for (std::int64_t ow = 0; ow < a.ow; ++ow)
    sw[static_cast<std::size_t>(ow)] = upsample_src(ow, a.iw, a.ow, a.mode, a.align_corners, a.ratio_w);
#pragma omp parallel num_threads(host::threads(exec, a.planes * op * 4, a.planes))
  {
    std::vector<double> acc(static_cast<std::size_t>(ip));
#pragma omp for schedule(static)
    for (std::int64_t p = 0; p < a.planes; ++p) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (std::int64_t oh = 0; oh < a.oh; ++oh) {
        const Src sh = upsample_src(oh, a.ih, a.oh, a.mode, a.align_corners, a.ratio_h);
        for (std::int64_t ow = 0; ow < a.ow; ++ow) {
          const Src& s = sw[static_cast<std::size_t>(ow)];
          const double g = host::load(dy, p * op + oh * a.ow + ow);
          acc[static_cast<std::size_t>(sh.i0 * a.iw + s.i0)] += g * sh.l0 * s.l0;
          acc[static_cast<std::size_t>(sh.i0 * a.iw + s.i1)] += g * sh.l0 * s.l1;
          acc[static_cast<std::size_t>(sh.i1 * a.iw + s.i0)] += g * sh.l1 * s.l0;
          acc[static_cast<std::size_t>(sh.i1 * a.iw + s.i1)] += g * sh.l1 * s.l1;
        }
      }
      for (std::int64_t i = 0; i < ip; ++i)
        host::store(dx, p * ip + i, static_cast<float>(acc[static_cast<std::size_t>(i)]));
    }
  }
}

}  // namespace

#define DLK_POOL_CPU_ENTRY(name, impl, Args)                                          \
  void name(const Args& a, const Exec& exec) {                                        \
    host::with_type(a.dtype, #name, [&](auto tag) { impl<decltype(tag)>(a, exec); }); \
  }
DLK_POOL_CPU_ENTRY(max_pool2d_forward, max_fwd, PoolArgs)
DLK_POOL_CPU_ENTRY(max_pool2d_backward, max_bwd, PoolArgs)
DLK_POOL_CPU_ENTRY(avg_pool2d_forward, avg_fwd, PoolArgs)
DLK_POOL_CPU_ENTRY(avg_pool2d_backward, avg_bwd, PoolArgs)
DLK_POOL_CPU_ENTRY(adaptive_avg_pool2d_forward, adaptive_fwd, PoolArgs)
DLK_POOL_CPU_ENTRY(adaptive_avg_pool2d_backward, adaptive_bwd, PoolArgs)
DLK_POOL_CPU_ENTRY(max_unpool2d_forward, unpool_fwd, PoolArgs)
DLK_POOL_CPU_ENTRY(max_unpool2d_backward, unpool_bwd, PoolArgs)
DLK_POOL_CPU_ENTRY(upsample2d_forward, up_fwd, UpsampleArgs)
DLK_POOL_CPU_ENTRY(upsample2d_backward, up_bwd, UpsampleArgs)
#undef DLK_POOL_CPU_ENTRY

}  // namespace dlk::cpu
