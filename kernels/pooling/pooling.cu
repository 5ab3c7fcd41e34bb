// CUDA kernels of the pooling family (max / avg / adaptive-avg pool 2d, max unpool 2d, upsample nearest/bilinear).
// Built by nvcc into dlk::cuda and by the host compiler against the emulator into dlk::emu. Semantics and the
// per-axis index rules are in pooling.h (shared with the cpu reference).
//
// Why this shape: every op is memory bound with tiny windows, so each kernel gives one thread one element of what it
// writes and lets it read what it needs (neighbouring threads read overlapping windows, which the L1/L2 absorb).
// The backwards are GATHERS, one thread per input element summing the outputs that use it, in a fixed order: no
// float atomics, so they are bitwise deterministic in every mode. The outputs that use an input are found by the
// stride arithmetic of the window (max / avg pool) or by a binary search over a monotone per-axis map (adaptive
// bins, upsampling source indices). Max unpool settles duplicate indices with an integer atomicMax of the input
// position into a workspace (the last input wins, as on the cpu), then gathers: deterministic too.
// Limits: any sizes (int64 indexing, grid-stride loops); math in fp32.
// clang-format off
#include "runtime/kernel.h"  // first: it picks the nvcc or the emulator build
// clang-format on

#include <cstdint>

#include "common/convert.cuh"
#include "common/grid.cuh"
#include "pooling/pooling.h"

namespace dlk::DLK_KNS {
namespace {

constexpr int kThreads = 256;

// Max pool forward: a thread owns one output element, scans its (dilated) window; the first maximum wins, NaN
// propagates (PyTorch's rule). Traffic: kh*kw reads (mostly cached), one write of y and of the int64 index.
template <typename T>
__global__ void max_pool2d_forward_kernel(const T* __restrict__ x, T* __restrict__ y,
                                          std::int64_t* __restrict__ indices, PoolGeom g, std::int64_t total) {
  for (std::int64_t e = global_id(); e < total; e += grid_step()) {
    const std::int64_t ow = e % g.ow, oh = (e / g.ow) % g.oh, p = e / (g.ow * g.oh);
    const Taps th = max_pool_taps(oh, g.ih, g.kh, g.sh, g.ph, g.dh);
    const Taps tw = max_pool_taps(ow, g.iw, g.kw, g.sw, g.pw, g.dw);
    const T* xp = x + p * g.ih * g.iw;
    float best = -INFINITY;
    std::int64_t bi = th.start * g.iw + tw.start;
    for (std::int64_t h = th.start; h < th.end; h += g.dh)
      for (std::int64_t w = tw.start; w < tw.end; w += g.dw) {
        const float v = to_float<T>(xp[h * g.iw + w]);
        if (v > best || isnan(v)) {
          best = v;
          bi = h * g.iw + w;
        }
      }
    y[e] = from_float<T>(best);
    if (indices) indices[e] = bi;
  }
}

// Max pool backward: a thread owns one input element (p, h, w) and gathers dy over the outputs whose window holds
// it (kh*kw candidates by stride arithmetic) and whose saved index names it. Fixed order: deterministic.
template <typename T>
__global__ void max_pool2d_backward_kernel(const T* __restrict__ dy, const std::int64_t* __restrict__ indices,
                                           T* __restrict__ dx, PoolGeom g, std::int64_t total) {
  for (std::int64_t e = global_id(); e < total; e += grid_step()) {
    const std::int64_t w = e % g.iw, h = (e / g.iw) % g.ih, p = e / (g.iw * g.ih);
    const std::int64_t self = h * g.iw + w, obase = p * g.oh * g.ow;
    float acc = 0.0f;
    for (int kh = 0; kh < g.kh; ++kh) {
      const std::int64_t th = h + g.ph - static_cast<std::int64_t>(kh) * g.dh;
      if (th < 0) break;
      if (th % g.sh) continue;
      const std::int64_t oh = th / g.sh;
      if (oh >= g.oh) continue;
      for (int kw = 0; kw < g.kw; ++kw) {
        const std::int64_t tw = w + g.pw - static_cast<std::int64_t>(kw) * g.dw;
        if (tw < 0) break;
        if (tw % g.sw) continue;
        const std::int64_t ow = tw / g.sw;
        if (ow >= g.ow) continue;
        const std::int64_t o = obase + oh * g.ow + ow;
        if (indices[o] == self) acc += to_float<T>(dy[o]);
      }
    }
    dx[e] = from_float<T>(acc);
  }
}

// Avg pool forward: a thread owns one output element and sums its clipped window in fp32.
template <typename T>
__global__ void avg_pool2d_forward_kernel(const T* __restrict__ x, T* __restrict__ y, PoolGeom g, std::int64_t total) {
  for (std::int64_t e = global_id(); e < total; e += grid_step()) {
    const std::int64_t ow = e % g.ow, oh = (e / g.ow) % g.oh, p = e / (g.ow * g.oh);
    const AvgWindow wh = avg_pool_window(oh, g.ih, g.kh, g.sh, g.ph);
    const AvgWindow ww = avg_pool_window(ow, g.iw, g.kw, g.sw, g.pw);
    const T* xp = x + p * g.ih * g.iw;
    float s = 0.0f;
    for (std::int64_t h = wh.start; h < wh.end; ++h)
      for (std::int64_t w = ww.start; w < ww.end; ++w) s += to_float<T>(xp[h * g.iw + w]);
    y[e] = from_float<T>(s / avg_pool_divisor(g, wh, ww));
  }
}

// Avg pool backward: a thread owns one input element and gathers dy / divisor over the outputs whose clipped window
// holds it (kh*kw candidates by stride arithmetic). Deterministic.
template <typename T>
__global__ void avg_pool2d_backward_kernel(const T* __restrict__ dy, T* __restrict__ dx, PoolGeom g,
                                           std::int64_t total) {
  for (std::int64_t e = global_id(); e < total; e += grid_step()) {
    const std::int64_t w = e % g.iw, h = (e / g.iw) % g.ih, p = e / (g.iw * g.ih);
    const std::int64_t obase = p * g.oh * g.ow;
    float acc = 0.0f;
    for (int kh = 0; kh < g.kh; ++kh) {
      const std::int64_t th = h + g.ph - kh;
      if (th < 0) break;
      if (th % g.sh) continue;
      const std::int64_t oh = th / g.sh;
      if (oh >= g.oh) continue;
      const AvgWindow wh = avg_pool_window(oh, g.ih, g.kh, g.sh, g.ph);
      for (int kw = 0; kw < g.kw; ++kw) {
        const std::int64_t tw = w + g.pw - kw;
        if (tw < 0) break;
        if (tw % g.sw) continue;
        const std::int64_t ow = tw / g.sw;
        if (ow >= g.ow) continue;
        const AvgWindow ww = avg_pool_window(ow, g.iw, g.kw, g.sw, g.pw);
        acc += to_float<T>(dy[obase + oh * g.ow + ow]) / avg_pool_divisor(g, wh, ww);
      }
    }
    dx[e] = from_float<T>(acc);
  }
}

// Adaptive avg forward: a thread owns one output element and averages its bin.
template <typename T>
__global__ void adaptive_avg_pool2d_forward_kernel(const T* __restrict__ x, T* __restrict__ y, PoolGeom g,
                                                   std::int64_t total) {
  for (std::int64_t e = global_id(); e < total; e += grid_step()) {
    const std::int64_t ow = e % g.ow, oh = (e / g.ow) % g.oh, p = e / (g.ow * g.oh);
    const std::int64_t h0 = adaptive_start(oh, g.oh, g.ih), h1 = adaptive_end(oh, g.oh, g.ih);
    const std::int64_t w0 = adaptive_start(ow, g.ow, g.iw), w1 = adaptive_end(ow, g.ow, g.iw);
    const T* xp = x + p * g.ih * g.iw;
    float s = 0.0f;
    for (std::int64_t h = h0; h < h1; ++h)
      for (std::int64_t w = w0; w < w1; ++w) s += to_float<T>(xp[h * g.iw + w]);
    y[e] = from_float<T>(s / static_cast<float>((h1 - h0) * (w1 - w0)));
  }
}

// First output bin along an axis whose end lies past input i (bins' ends are non-decreasing).
__device__ __forceinline__ std::int64_t first_bin_after(std::int64_t i, std::int64_t out, std::int64_t in) {
  std::int64_t lo = 0, hi = out;
  while (lo < hi) {
    const std::int64_t mid = (lo + hi) / 2;
    if (adaptive_end(mid, out, in) > i)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

// Adaptive avg backward: a thread owns one input element and gathers dy / bin size over the bins holding it (found
// by binary search; bins overlap by at most one element). Deterministic.
template <typename T>
__global__ void adaptive_avg_pool2d_backward_kernel(const T* __restrict__ dy, T* __restrict__ dx, PoolGeom g,
                                                    std::int64_t total) {
  for (std::int64_t e = global_id(); e < total; e += grid_step()) {
    const std::int64_t w = e % g.iw, h = (e / g.iw) % g.ih, p = e / (g.iw * g.ih);
    const std::int64_t obase = p * g.oh * g.ow;
    const std::int64_t oh0 = first_bin_after(h, g.oh, g.ih), ow0 = first_bin_after(w, g.ow, g.iw);
    float acc = 0.0f;
    for (std::int64_t oh = oh0; oh < g.oh && adaptive_start(oh, g.oh, g.ih) <= h; ++oh) {
      const std::int64_t nh = adaptive_end(oh, g.oh, g.ih) - adaptive_start(oh, g.oh, g.ih);
      for (std::int64_t ow = ow0; ow < g.ow && adaptive_start(ow, g.ow, g.iw) <= w; ++ow) {
        const std::int64_t nw = adaptive_end(ow, g.ow, g.iw) - adaptive_start(ow, g.ow, g.iw);
        acc += to_float<T>(dy[obase + oh * g.ow + ow]) / static_cast<float>(nh * nw);
      }
    }
    dx[e] = from_float<T>(acc);
  }
}

// Max unpool, step 1: every output position starts unclaimed (-1).
__global__ void max_unpool2d_clear_kernel(long long* __restrict__ owner, std::int64_t total) {
  for (std::int64_t e = global_id(); e < total; e += grid_step()) owner[e] = -1;
}

// Max unpool, step 2: a thread owns one input element and claims its target with an integer atomicMax of its
// position in the plane, so the last input in row-major order wins whatever the schedule (integer atomics are
// exact: deterministic). Out-of-range indices are skipped.
__global__ void max_unpool2d_claim_kernel(const std::int64_t* __restrict__ indices, long long* __restrict__ owner,
                                          PoolGeom g, std::int64_t total) {
  const std::int64_t ip = g.ih * g.iw, op = g.oh * g.ow;
  for (std::int64_t e = global_id(); e < total; e += grid_step()) {
    const std::int64_t p = e / ip, i = e % ip, o = indices[e];
    if (o >= 0 && o < op) atomicMax(owner + p * op + o, static_cast<long long>(i));
  }
}

// Max unpool, step 3: a thread owns one output element and copies the input that claimed it (or writes 0).
template <typename T>
__global__ void max_unpool2d_gather_kernel(const T* __restrict__ x, const long long* __restrict__ owner,
                                           T* __restrict__ y, PoolGeom g, std::int64_t total) {
  const std::int64_t ip = g.ih * g.iw, op = g.oh * g.ow;
  for (std::int64_t e = global_id(); e < total; e += grid_step()) {
    const long long i = owner[e];
    y[e] = i >= 0 ? x[(e / op) * ip + i] : from_float<T>(0.0f);
  }
}

// Max unpool backward: a thread owns one input element and reads dy at its index.
template <typename T>
__global__ void max_unpool2d_backward_kernel(const T* __restrict__ dy, const std::int64_t* __restrict__ indices,
                                             T* __restrict__ dx, PoolGeom g, std::int64_t total) {
  const std::int64_t ip = g.ih * g.iw, op = g.oh * g.ow;
  for (std::int64_t e = global_id(); e < total; e += grid_step()) {
    const std::int64_t o = indices[e];
    dx[e] = (o >= 0 && o < op) ? dy[(e / ip) * op + o] : from_float<T>(0.0f);
  }
}

// Upsample forward: a thread owns one output element and blends its (up to) four source taps in fp32, in PyTorch's
// order h0l * (w0l * a + w1l * b) + h1l * (w0l * c + w1l * d).
template <typename T>
__global__ void upsample2d_forward_kernel(const T* __restrict__ x, T* __restrict__ y, UpsampleArgs a,
                                          std::int64_t total) {
  for (std::int64_t e = global_id(); e < total; e += grid_step()) {
    const std::int64_t ow = e % a.ow, oh = (e / a.ow) % a.oh, p = e / (a.ow * a.oh);
    const Src sh = upsample_src(oh, a.ih, a.oh, a.mode, a.align_corners, a.ratio_h);
    const Src sw = upsample_src(ow, a.iw, a.ow, a.mode, a.align_corners, a.ratio_w);
    const T* xp = x + p * a.ih * a.iw;
    if (a.mode == DLK_UPSAMPLE_NEAREST) {
      y[e] = xp[sh.i0 * a.iw + sw.i0];
      continue;
    }
    const float top = sw.l0 * to_float<T>(xp[sh.i0 * a.iw + sw.i0]) + sw.l1 * to_float<T>(xp[sh.i0 * a.iw + sw.i1]);
    const float bot = sw.l0 * to_float<T>(xp[sh.i1 * a.iw + sw.i0]) + sw.l1 * to_float<T>(xp[sh.i1 * a.iw + sw.i1]);
    y[e] = from_float<T>(sh.l0 * top + sh.l1 * bot);
  }
}

// First output along an axis whose upper source tap i1 reaches input i (i1 is non-decreasing in the output index).
__device__ __forceinline__ std::int64_t first_output_reaching(std::int64_t i, std::int64_t in, std::int64_t out,
                                                              int mode, bool align, float ratio) {
  std::int64_t lo = 0, hi = out;
  while (lo < hi) {
    const std::int64_t mid = (lo + hi) / 2;
    if (upsample_src(mid, in, out, mode, align, ratio).i1 >= i)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

// The weight input i gets from a source map s (both taps may name it).
__device__ __forceinline__ float tap_weight(const Src& s, std::int64_t i) {
  return (s.i0 == i ? s.l0 : 0.0f) + (s.i1 == i ? s.l1 : 0.0f);
}

// Upsample backward: a thread owns one input element and gathers dy over the outputs that read it: per axis the
// outputs from the first whose upper tap reaches it (binary search) while their lower tap is not past it. Fixed
// order: deterministic, no atomics.
template <typename T>
__global__ void upsample2d_backward_kernel(const T* __restrict__ dy, T* __restrict__ dx, UpsampleArgs a,
                                           std::int64_t total) {
  for (std::int64_t e = global_id(); e < total; e += grid_step()) {
    const std::int64_t w = e % a.iw, h = (e / a.iw) % a.ih, p = e / (a.iw * a.ih);
    const std::int64_t oh0 = first_output_reaching(h, a.ih, a.oh, a.mode, a.align_corners, a.ratio_h);
    const std::int64_t ow0 = first_output_reaching(w, a.iw, a.ow, a.mode, a.align_corners, a.ratio_w);
    const T* dyp = dy + p * a.oh * a.ow;
    float acc = 0.0f;
    for (std::int64_t oh = oh0; oh < a.oh; ++oh) {
      const Src sh = upsample_src(oh, a.ih, a.oh, a.mode, a.align_corners, a.ratio_h);
      if (sh.i0 > h) break;
      const float wh = tap_weight(sh, h);
      if (wh == 0.0f) continue;
      float row = 0.0f;
      for (std::int64_t ow = ow0; ow < a.ow; ++ow) {
        const Src sw = upsample_src(ow, a.iw, a.ow, a.mode, a.align_corners, a.ratio_w);
        if (sw.i0 > w) break;
        const float ww = tap_weight(sw, w);
        if (ww != 0.0f) row += ww * to_float<T>(dyp[oh * a.ow + ow]);
      }
      acc += wh * row;
    }
    dx[e] = from_float<T>(acc);
  }
}

std::int64_t in_total(const PoolGeom& g) { return g.planes * g.ih * g.iw; }
std::int64_t out_total(const PoolGeom& g) { return g.planes * g.oh * g.ow; }

}  // namespace

void max_pool2d_forward(const PoolArgs& a, const Exec& exec) {
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const std::int64_t n = out_total(a.g);
    launch("max_pool2d_forward_kernel", max_pool2d_forward_kernel<T>, dim3(grid_blocks(n, kThreads)), dim3(kThreads), 0,
           exec, static_cast<const T*>(a.in), static_cast<T*>(a.out), a.out_indices, a.g, n);
  });
}

void max_pool2d_backward(const PoolArgs& a, const Exec& exec) {
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const std::int64_t n = in_total(a.g);
    launch("max_pool2d_backward_kernel", max_pool2d_backward_kernel<T>, dim3(grid_blocks(n, kThreads)), dim3(kThreads),
           0, exec, static_cast<const T*>(a.in), a.indices, static_cast<T*>(a.out), a.g, n);
  });
}

void avg_pool2d_forward(const PoolArgs& a, const Exec& exec) {
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const std::int64_t n = out_total(a.g);
    launch("avg_pool2d_forward_kernel", avg_pool2d_forward_kernel<T>, dim3(grid_blocks(n, kThreads)), dim3(kThreads), 0,
           exec, static_cast<const T*>(a.in), static_cast<T*>(a.out), a.g, n);
  });
}

void avg_pool2d_backward(const PoolArgs& a, const Exec& exec) {
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const std::int64_t n = in_total(a.g);
    launch("avg_pool2d_backward_kernel", avg_pool2d_backward_kernel<T>, dim3(grid_blocks(n, kThreads)), dim3(kThreads),
           0, exec, static_cast<const T*>(a.in), static_cast<T*>(a.out), a.g, n);
  });
}

void adaptive_avg_pool2d_forward(const PoolArgs& a, const Exec& exec) {
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const std::int64_t n = out_total(a.g);
    launch("adaptive_avg_pool2d_forward_kernel", adaptive_avg_pool2d_forward_kernel<T>, dim3(grid_blocks(n, kThreads)),
           dim3(kThreads), 0, exec, static_cast<const T*>(a.in), static_cast<T*>(a.out), a.g, n);
  });
}

void adaptive_avg_pool2d_backward(const PoolArgs& a, const Exec& exec) {
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const std::int64_t n = in_total(a.g);
    launch("adaptive_avg_pool2d_backward_kernel", adaptive_avg_pool2d_backward_kernel<T>,
           dim3(grid_blocks(n, kThreads)), dim3(kThreads), 0, exec, static_cast<const T*>(a.in), static_cast<T*>(a.out),
           a.g, n);
  });
}

void max_unpool2d_forward(const PoolArgs& a, const Exec& exec) {
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const std::int64_t no = out_total(a.g), ni = in_total(a.g);
    long long* owner = static_cast<long long*>(exec.workspace(static_cast<std::size_t>(no) * sizeof(long long)));
    launch("max_unpool2d_clear_kernel", max_unpool2d_clear_kernel, dim3(grid_blocks(no, kThreads)), dim3(kThreads), 0,
           exec, owner, no);
    if (ni > 0)
      launch("max_unpool2d_claim_kernel", max_unpool2d_claim_kernel, dim3(grid_blocks(ni, kThreads)), dim3(kThreads), 0,
             exec, a.indices, owner, a.g, ni);
    launch("max_unpool2d_gather_kernel", max_unpool2d_gather_kernel<T>, dim3(grid_blocks(no, kThreads)), dim3(kThreads),
           0, exec, static_cast<const T*>(a.in), static_cast<const long long*>(owner), static_cast<T*>(a.out), a.g, no);
  });
}

void max_unpool2d_backward(const PoolArgs& a, const Exec& exec) {
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const std::int64_t n = in_total(a.g);
    launch("max_unpool2d_backward_kernel", max_unpool2d_backward_kernel<T>, dim3(grid_blocks(n, kThreads)),
           dim3(kThreads), 0, exec, static_cast<const T*>(a.in), a.indices, static_cast<T*>(a.out), a.g, n);
  });
}

void upsample2d_forward(const UpsampleArgs& a, const Exec& exec) {
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const std::int64_t n = a.planes * a.oh * a.ow;
    launch("upsample2d_forward_kernel", upsample2d_forward_kernel<T>, dim3(grid_blocks(n, kThreads)), dim3(kThreads), 0,
           exec, static_cast<const T*>(a.in), static_cast<T*>(a.out), a, n);
  });
}

void upsample2d_backward(const UpsampleArgs& a, const Exec& exec) {
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const std::int64_t n = a.planes * a.ih * a.iw;
    launch("upsample2d_backward_kernel", upsample2d_backward_kernel<T>, dim3(grid_blocks(n, kThreads)), dim3(kThreads),
           0, exec, static_cast<const T*>(a.in), static_cast<T*>(a.out), a, n);
  });
}

}  // namespace dlk::DLK_KNS
