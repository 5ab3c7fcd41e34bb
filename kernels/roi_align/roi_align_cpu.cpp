// CPU reference of RoI Align and RoI Pool (torchvision 0.14 semantics, geometry in roi_align.h).
//
// Forwards: OpenMP over (RoI, channel) planes; each output bin sums its bilinear samples in fp64 and divides by the
// sample count. Backwards: OpenMP over channels; a thread owns every plane of its channel, zeroes an fp64
// accumulator for them and walks the RoIs in index order, so the scatter-add has one fixed order whatever the thread
// count: deterministic in every mode, no atomics.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/host.h"
#include "roi_align/roi_align.h"

namespace dlk::cpu {

void roi_align_forward(const RoiArgs& a, const Exec& exec) {
  const std::int64_t planes = a.k * a.c, bins = static_cast<std::int64_t>(a.ph) * a.pw;
  const int nt = host::threads(exec, planes * bins * 16, planes);
#pragma omp parallel for schedule(dynamic, 4) num_threads(nt)
  for (std::int64_t pl = 0; pl < planes; ++pl) {
    const std::int64_t r = pl / a.c, ch = pl % a.c;
    const float* roi = a.rois + r * 5;
    const std::int64_t b = static_cast<std::int64_t>(roi[0]);
    const float* x = a.in + (b * a.c + ch) * a.h * a.w;
    const RoiAlignBox g = roi_align_box(roi, a.spatial_scale, a.ph, a.pw, a.sampling_ratio, a.aligned);
    float* y = a.out + pl * bins;
    for (int ph = 0; ph < a.ph; ++ph)
      for (int pw = 0; pw < a.pw; ++pw) {
        double acc = 0.0;
        for (int iy = 0; iy < g.grid_h; ++iy) {
          const float sy = roi_sample(g.start_h, ph, g.bin_h, iy, g.grid_h);
          for (int ix = 0; ix < g.grid_w; ++ix) {
            const Bilinear t = bilinear_taps(sy, roi_sample(g.start_w, pw, g.bin_w, ix, g.grid_w), a.h, a.w);
            if (!t.valid) continue;
            acc += static_cast<double>(t.w1) * x[t.o1] + static_cast<double>(t.w2) * x[t.o2] +
                   static_cast<double>(t.w3) * x[t.o3] + static_cast<double>(t.w4) * x[t.o4];
          }
        }
        y[ph * a.pw + pw] = static_cast<float>(acc / g.count);
      }
  }
}

void roi_align_backward(const RoiArgs& a, const Exec& exec) {
  const std::int64_t plane = a.h * a.w, bins = static_cast<std::int64_t>(a.ph) * a.pw;
  const int nt = host::threads(exec, a.k * a.c * bins * 16, a.c);
#pragma omp parallel num_threads(nt)
  {
    std::vector<double> acc(static_cast<std::size_t>(a.n * plane));
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t ch = 0; ch < a.c; ++ch) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (std::int64_t r = 0; r < a.k; ++r) {
        const float* roi = a.rois + r * 5;
        const std::int64_t b = static_cast<std::int64_t>(roi[0]);
        double* d = acc.data() + b * plane;
        const RoiAlignBox g = roi_align_box(roi, a.spatial_scale, a.ph, a.pw, a.sampling_ratio, a.aligned);
        const float* dy = a.in + (r * a.c + ch) * bins;
        for (int ph = 0; ph < a.ph; ++ph)
          for (int pw = 0; pw < a.pw; ++pw) {
            const double gv = static_cast<double>(dy[ph * a.pw + pw]) / g.count;
            for (int iy = 0; iy < g.grid_h; ++iy) {
              const float sy = roi_sample(g.start_h, ph, g.bin_h, iy, g.grid_h);
              for (int ix = 0; ix < g.grid_w; ++ix) {
                const Bilinear t = bilinear_taps(sy, roi_sample(g.start_w, pw, g.bin_w, ix, g.grid_w), a.h, a.w);
                if (!t.valid) continue;
                d[t.o1] += gv * t.w1;
                d[t.o2] += gv * t.w2;
                d[t.o3] += gv * t.w3;
                d[t.o4] += gv * t.w4;
              }
            }
          }
      }
      for (std::int64_t b = 0; b < a.n; ++b) {
        float* dx = a.out + (b * a.c + ch) * plane;
        const double* s = acc.data() + b * plane;
        for (std::int64_t i = 0; i < plane; ++i) dx[i] = static_cast<float>(s[i]);
      }
    }
  }
}

void roi_pool_forward(const RoiArgs& a, const Exec& exec) {
  const std::int64_t planes = a.k * a.c, bins = static_cast<std::int64_t>(a.ph) * a.pw;
  const int nt = host::threads(exec, planes * bins * 16, planes);
#pragma omp parallel for schedule(dynamic, 4) num_threads(nt)
  for (std::int64_t pl = 0; pl < planes; ++pl) {
    const std::int64_t r = pl / a.c, ch = pl % a.c;
    const float* roi = a.rois + r * 5;
    const std::int64_t b = static_cast<std::int64_t>(roi[0]);
    const float* x = a.in + (b * a.c + ch) * a.h * a.w;
    for (int ph = 0; ph < a.ph; ++ph)
      for (int pw = 0; pw < a.pw; ++pw) {
        const PoolBin bin = roi_pool_bin(roi, a.spatial_scale, a.ph, a.pw, ph, pw, a.h, a.w);
        const bool empty = bin.h1 <= bin.h0 || bin.w1 <= bin.w0;
        float best = empty ? 0.0f : -3.402823466e+38f;
        std::int64_t arg = -1;
        for (std::int64_t hh = bin.h0; hh < bin.h1; ++hh)
          for (std::int64_t ww = bin.w0; ww < bin.w1; ++ww)
            if (x[hh * a.w + ww] > best) {
              best = x[hh * a.w + ww];
              arg = hh * a.w + ww;
            }
        const std::int64_t o = pl * bins + ph * a.pw + pw;
        a.out[o] = best;
        if (a.argmax) a.argmax[o] = arg;
      }
  }
}

void roi_pool_backward(const RoiArgs& a, const Exec& exec) {
  const std::int64_t plane = a.h * a.w, bins = static_cast<std::int64_t>(a.ph) * a.pw;
  const int nt = host::threads(exec, a.k * a.c * bins, a.c);
#pragma omp parallel num_threads(nt)
  {
    std::vector<double> acc(static_cast<std::size_t>(a.n * plane));
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t ch = 0; ch < a.c; ++ch) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (std::int64_t r = 0; r < a.k; ++r) {
        const std::int64_t b = static_cast<std::int64_t>(a.rois[r * 5]);
        const std::int64_t o = (r * a.c + ch) * bins;
        for (std::int64_t i = 0; i < bins; ++i) {
          const std::int64_t arg = a.argmax_in[o + i];
          if (arg >= 0 && arg < plane) acc[b * plane + arg] += a.in[o + i];
        }
      }
      for (std::int64_t b = 0; b < a.n; ++b) {
        float* dx = a.out + (b * a.c + ch) * plane;
        for (std::int64_t i = 0; i < plane; ++i) dx[i] = static_cast<float>(acc[b * plane + i]);
      }
    }
  }
}

}  // namespace dlk::cpu
