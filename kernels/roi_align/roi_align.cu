// CUDA kernels of RoI Align and RoI Pool (torchvision 0.14 semantics; the geometry and the bilinear rule are the
// DLK_HD functions of roi_align.h, shared with the cpu reference). Built by nvcc into dlk::cuda and against the
// emulator into dlk::emu.
//
// Forwards: one thread per output element (RoI, channel, bin), as torchvision: it recomputes its RoI's geometry (a
// few flops) and sums grid_h * grid_w bilinear samples (four cached reads each). Traffic: y written once; x read
// through L1/L2, neighbouring bins share taps.
// Backwards: one thread per dy element, scattering its samples' four taps into dx. Two accumulations:
//  - non-deterministic mode: float atomicAdd straight into dx (zeroed first), as torchvision;
//  - deterministic mode: every term is rounded to int64 fixed point with a power-of-two scale S chosen on the device
//    from max |dy| (|any dx| <= max|dy| * K * bins, so S = 2^(62 - ceil(log2 of that)) cannot overflow) and added
//    with integer atomics, which are exact, so the sum does not depend on the order; a last pass writes acc / S.
//    The resolution is ~2^-62 of the bound (about 1e-12 relative for realistic sizes). A non-finite dy makes every dx
//    NaN in this mode.
// Limits: int64 indexing with grid-stride loops; RoIs whose batch index is outside [0, N) (rejected on cpu/emu by
// capi) give zero rows forward and add nothing backward.
// clang-format off
#include "runtime/kernel.h"  // first: it picks the nvcc or the emulator build
// clang-format on

#include <cmath>
#include <cstdint>

#include "common/grid.cuh"
#include "roi_align/roi_align.h"

namespace dlk::DLK_KNS {
namespace {

constexpr int kThreads = 256;

// The batch image of a RoI, or -1 when its index is outside [0, n).
__device__ __forceinline__ std::int64_t roi_batch(const float* roi, std::int64_t n) {
  const float b = roi[0];
  if (!(b > -1.0f && b < static_cast<float>(n))) return -1;
  return static_cast<std::int64_t>(b);
}

__global__ void roi_align_forward_kernel(RoiArgs a, std::int64_t total) {
  const std::int64_t bins = static_cast<std::int64_t>(a.ph) * a.pw;
  for (std::int64_t e = global_id(); e < total; e += grid_step()) {
    const int pw = static_cast<int>(e % a.pw), ph = static_cast<int>((e / a.pw) % a.ph);
    const std::int64_t ch = (e / bins) % a.c, r = e / (bins * a.c);
    const float* roi = a.rois + r * 5;
    const std::int64_t b = roi_batch(roi, a.n);
    float acc = 0.0f;
    if (b >= 0) {
      const float* x = a.in + (b * a.c + ch) * a.h * a.w;
      const RoiAlignBox g = roi_align_box(roi, a.spatial_scale, a.ph, a.pw, a.sampling_ratio, a.aligned);
      for (int iy = 0; iy < g.grid_h; ++iy) {
        const float sy = roi_sample(g.start_h, ph, g.bin_h, iy, g.grid_h);
        for (int ix = 0; ix < g.grid_w; ++ix) {
          const Bilinear t = bilinear_taps(sy, roi_sample(g.start_w, pw, g.bin_w, ix, g.grid_w), a.h, a.w);
          if (t.valid) acc += t.w1 * x[t.o1] + t.w2 * x[t.o2] + t.w3 * x[t.o3] + t.w4 * x[t.o4];
        }
      }
      acc /= g.count;
    }
    a.out[e] = acc;
  }
}

// Fixed-point scale for the deterministic scatter: 2^(62 - e) with max|dy| * terms < 2^e; 0 when dy is not finite.
__device__ __forceinline__ double fixed_scale(const unsigned* absmax_bits, std::int64_t terms) {
  const float m = __uint_as_float(*absmax_bits);
  if (!(m <= 3.402823466e+38f)) return 0.0;  // inf or NaN
  if (m == 0.0f) return 1.0;
  const double bound = static_cast<double>(m) * static_cast<double>(terms);
  return ldexp(1.0, 61 - ilogb(bound));
}

// Adds v to dx element i: float atomics, or fixed point into acc when acc is non-null.
__device__ __forceinline__ void scatter_add(float* dx, unsigned long long* acc, double scale, std::int64_t i, float v) {
  if (acc) {
    const long long q = llrint(static_cast<double>(v) * scale);
    atomicAdd(acc + i, static_cast<unsigned long long>(q));
  } else {
    atomicAdd(dx + i, v);
  }
}

__global__ void roi_align_backward_kernel(RoiArgs a, std::int64_t total, unsigned long long* acc,
                                          const unsigned* absmax_bits) {
  const std::int64_t bins = static_cast<std::int64_t>(a.ph) * a.pw;
  const double scale = acc ? fixed_scale(absmax_bits, a.k * bins) : 0.0;
  if (acc && scale == 0.0) return;  // non-finite dy: the finish pass writes NaN
  for (std::int64_t e = global_id(); e < total; e += grid_step()) {
    const int pw = static_cast<int>(e % a.pw), ph = static_cast<int>((e / a.pw) % a.ph);
    const std::int64_t ch = (e / bins) % a.c, r = e / (bins * a.c);
    const float* roi = a.rois + r * 5;
    const std::int64_t b = roi_batch(roi, a.n);
    if (b < 0) continue;
    const std::int64_t base = (b * a.c + ch) * a.h * a.w;
    const RoiAlignBox g = roi_align_box(roi, a.spatial_scale, a.ph, a.pw, a.sampling_ratio, a.aligned);
    const float gv = a.in[e] / g.count;
    for (int iy = 0; iy < g.grid_h; ++iy) {
      const float sy = roi_sample(g.start_h, ph, g.bin_h, iy, g.grid_h);
      for (int ix = 0; ix < g.grid_w; ++ix) {
        const Bilinear t = bilinear_taps(sy, roi_sample(g.start_w, pw, g.bin_w, ix, g.grid_w), a.h, a.w);
        if (!t.valid) continue;
        scatter_add(a.out, acc, scale, base + t.o1, gv * t.w1);
        scatter_add(a.out, acc, scale, base + t.o2, gv * t.w2);
        scatter_add(a.out, acc, scale, base + t.o3, gv * t.w3);
        scatter_add(a.out, acc, scale, base + t.o4, gv * t.w4);
      }
    }
  }
}

__global__ void roi_pool_forward_kernel(RoiArgs a, std::int64_t total) {
  const std::int64_t bins = static_cast<std::int64_t>(a.ph) * a.pw;
  for (std::int64_t e = global_id(); e < total; e += grid_step()) {
    const int pw = static_cast<int>(e % a.pw), ph = static_cast<int>((e / a.pw) % a.ph);
    const std::int64_t ch = (e / bins) % a.c, r = e / (bins * a.c);
    const float* roi = a.rois + r * 5;
    const std::int64_t b = roi_batch(roi, a.n);
    float best = 0.0f;
    std::int64_t arg = -1;
    if (b >= 0) {
      const float* x = a.in + (b * a.c + ch) * a.h * a.w;
      const PoolBin bin = roi_pool_bin(roi, a.spatial_scale, a.ph, a.pw, ph, pw, a.h, a.w);
      if (bin.h1 > bin.h0 && bin.w1 > bin.w0) best = -3.402823466e+38f;
      for (std::int64_t hh = bin.h0; hh < bin.h1; ++hh)
        for (std::int64_t ww = bin.w0; ww < bin.w1; ++ww) {
          const float v = x[hh * a.w + ww];
          if (v > best) {
            best = v;
            arg = hh * a.w + ww;
          }
        }
    }
    a.out[e] = best;
    if (a.argmax) a.argmax[e] = arg;
  }
}

__global__ void roi_pool_backward_kernel(RoiArgs a, std::int64_t total, unsigned long long* acc,
                                         const unsigned* absmax_bits) {
  const std::int64_t bins = static_cast<std::int64_t>(a.ph) * a.pw, plane = a.h * a.w;
  const double scale = acc ? fixed_scale(absmax_bits, a.k * bins) : 0.0;
  if (acc && scale == 0.0) return;
  for (std::int64_t e = global_id(); e < total; e += grid_step()) {
    const std::int64_t ch = (e / bins) % a.c, r = e / (bins * a.c);
    const std::int64_t b = roi_batch(a.rois + r * 5, a.n);
    const std::int64_t arg = a.argmax_in[e];
    if (b < 0 || arg < 0 || arg >= plane) continue;
    scatter_add(a.out, acc, scale, (b * a.c + ch) * plane + arg, a.in[e]);
  }
}

// Zeroes dx (atomic path) or the fixed-point accumulators and the max slot (deterministic path).
__global__ void roi_clear_kernel(float* dx, unsigned long long* acc, unsigned* absmax_bits, std::int64_t total) {
  if (acc && global_id() == 0) *absmax_bits = 0u;
  for (std::int64_t e = global_id(); e < total; e += grid_step()) {
    if (acc)
      acc[e] = 0ull;
    else
      dx[e] = 0.0f;
  }
}

// max |dy| as float bits (non-negative floats order like their bit patterns; NaN sorts above inf).
__global__ void roi_absmax_kernel(const float* dy, std::int64_t total, unsigned* absmax_bits) {
  unsigned m = 0u;
  for (std::int64_t e = global_id(); e < total; e += grid_step()) {
    const unsigned v = __float_as_uint(dy[e]) & 0x7fffffffu;
    m = v > m ? v : m;
  }
  DLK_SHARED(unsigned, part, kThreads);
  part[threadIdx.x] = m;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s && part[threadIdx.x + s] > part[threadIdx.x])
      part[threadIdx.x] = part[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) atomicMax(absmax_bits, part[0]);
}

__global__ void roi_fixed_finish_kernel(const unsigned long long* acc, const unsigned* absmax_bits, std::int64_t terms,
                                        float* dx, std::int64_t total) {
  const double scale = fixed_scale(absmax_bits, terms);
  for (std::int64_t e = global_id(); e < total; e += grid_step())
    dx[e] = scale == 0.0 ? NAN : static_cast<float>(static_cast<double>(static_cast<long long>(acc[e])) / scale);
}

// The shared backward driver: clear, (max |dy|), scatter, (finish).
template <typename Scatter>
void scatter_backward(const char* name, const RoiArgs& a, const Exec& exec, Scatter scatter) {
  const std::int64_t out_total = a.n * a.c * a.h * a.w;
  const std::int64_t in_total = a.k * a.c * a.ph * a.pw;
  unsigned long long* acc = nullptr;
  unsigned* absmax = nullptr;
  if (exec.deterministic) {
    char* ws = static_cast<char*>(exec.workspace(static_cast<std::size_t>(out_total) * 8 + 256));
    acc = reinterpret_cast<unsigned long long*>(ws + 256);
    absmax = reinterpret_cast<unsigned*>(ws);
  }
  launch("roi_clear_kernel", roi_clear_kernel, dim3(grid_blocks(out_total, kThreads)), dim3(kThreads), 0, exec, a.out,
         acc, absmax, out_total);
  if (in_total == 0) {
    if (acc)
      launch("roi_fixed_finish_kernel", roi_fixed_finish_kernel, dim3(grid_blocks(out_total, kThreads)), dim3(kThreads),
             0, exec, acc, absmax, std::int64_t{1}, a.out, out_total);
    return;
  }
  if (acc)
    launch("roi_absmax_kernel", roi_absmax_kernel, dim3(grid_blocks(in_total, kThreads)), dim3(kThreads), 0, exec, a.in,
           in_total, absmax);
  scatter(acc, absmax);
  if (acc)
    launch(name, roi_fixed_finish_kernel, dim3(grid_blocks(out_total, kThreads)), dim3(kThreads), 0, exec, acc, absmax,
           a.k * a.ph * a.pw, a.out, out_total);
}

}  // namespace

void roi_align_forward(const RoiArgs& a, const Exec& exec) {
  const std::int64_t total = a.k * a.c * a.ph * a.pw;
  if (total == 0) return;
  launch("roi_align_forward_kernel", roi_align_forward_kernel, dim3(grid_blocks(total, kThreads)), dim3(kThreads), 0,
         exec, a, total);
}

void roi_align_backward(const RoiArgs& a, const Exec& exec) {
  scatter_backward("roi_fixed_finish_kernel", a, exec, [&](unsigned long long* acc, const unsigned* absmax) {
    const std::int64_t total = a.k * a.c * a.ph * a.pw;
    launch("roi_align_backward_kernel", roi_align_backward_kernel, dim3(grid_blocks(total, kThreads)), dim3(kThreads),
           0, exec, a, total, acc, absmax);
  });
}

void roi_pool_forward(const RoiArgs& a, const Exec& exec) {
  const std::int64_t total = a.k * a.c * a.ph * a.pw;
  if (total == 0) return;
  launch("roi_pool_forward_kernel", roi_pool_forward_kernel, dim3(grid_blocks(total, kThreads)), dim3(kThreads), 0,
         exec, a, total);
}

void roi_pool_backward(const RoiArgs& a, const Exec& exec) {
  scatter_backward("roi_fixed_finish_kernel", a, exec, [&](unsigned long long* acc, const unsigned* absmax) {
    const std::int64_t total = a.k * a.c * a.ph * a.pw;
    launch("roi_pool_backward_kernel", roi_pool_backward_kernel, dim3(grid_blocks(total, kThreads)), dim3(kThreads), 0,
           exec, a, total, acc, absmax);
  });
}

}  // namespace dlk::DLK_KNS
