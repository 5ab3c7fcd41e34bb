// CPU reference of RoI Align and RoI Pool (torchvision 0.14 semantics, geometry in roi_align.h).
//
// RoI Align forward: OpenMP over RoIs; the bilinear taps of a RoI's samples (weights pre-divided by the sample count)
// are computed once and reused for all C channels (torchvision's pre_calc); each bin sums its few taps in fp32.
// Backwards: a thread owns a contiguous range of channels and walks the RoIs in index order (RoI Align: the taps
// again computed once per RoI), so every dx element receives its terms in one fixed order whatever the thread count:
// deterministic in every mode, no atomics; the sums run in fp64 planes.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/host.h"
#include "roi_align/roi_align.h"

namespace dlk::cpu {

// The bilinear taps of every sample of one RoI, bin-major (bin b's samples at [first[b], first[b + 1])), computed once
// per RoI and reused for every channel, as torchvision's pre_calc. Each tap's weight is already divided by the count.
struct Tap {  // 32 bytes: plane offsets fit int32 (capi keeps H * W < 2^31)
  std::int32_t o1, o2, o3, o4;
  float w1, w2, w3, w4;
};
struct RoiTaps {
  std::vector<Tap> taps;
  std::vector<std::int64_t> first;
};

void roi_taps(const RoiArgs& a, const float* roi, RoiTaps* t) {
  const RoiAlignBox g = roi_align_box(roi, a.spatial_scale, a.ph, a.pw, a.sampling_ratio, a.aligned);
  t->taps.clear();
  t->first.assign(1, 0);
  const float inv = 1.0f / g.count;
  for (int ph = 0; ph < a.ph; ++ph)
    for (int pw = 0; pw < a.pw; ++pw) {
      for (int iy = 0; iy < g.grid_h; ++iy) {
        const float sy = roi_sample(g.start_h, ph, g.bin_h, iy, g.grid_h);
        for (int ix = 0; ix < g.grid_w; ++ix) {
          const Bilinear b = bilinear_taps(sy, roi_sample(g.start_w, pw, g.bin_w, ix, g.grid_w), a.h, a.w);
          if (!b.valid) continue;
          t->taps.push_back(Tap{static_cast<std::int32_t>(b.o1), static_cast<std::int32_t>(b.o2),
                                static_cast<std::int32_t>(b.o3), static_cast<std::int32_t>(b.o4), b.w1 * inv,
                                b.w2 * inv, b.w3 * inv, b.w4 * inv});
        }
      }
      t->first.push_back(static_cast<std::int64_t>(t->taps.size()));
    }
}

void roi_align_forward(const RoiArgs& a, const Exec& exec) {
  const std::int64_t bins = static_cast<std::int64_t>(a.ph) * a.pw;
  const int nt = host::threads(exec, a.k * a.c * bins * 16, a.k);
#pragma omp parallel num_threads(nt)
  {
    RoiTaps t;
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t r = 0; r < a.k; ++r) {
      const float* roi = a.rois + r * 5;
      const std::int64_t b = static_cast<std::int64_t>(roi[0]);
      roi_taps(a, roi, &t);
      for (std::int64_t ch = 0; ch < a.c; ++ch) {
        const float* x = a.in + (b * a.c + ch) * a.h * a.w;
        float* y = a.out + (r * a.c + ch) * bins;
        for (std::int64_t bin = 0; bin < bins; ++bin) {
          float acc = 0.0f;  // a handful of taps per bin: fp32, as torchvision
          for (std::int64_t i = t.first[bin]; i < t.first[bin + 1]; ++i) {
            const Tap& q = t.taps[i];
            acc += q.w1 * x[q.o1] + q.w2 * x[q.o2] + q.w3 * x[q.o3] + q.w4 * x[q.o4];
          }
          y[bin] = acc;
        }
      }
    }
  }
}

void roi_align_backward(const RoiArgs& a, const Exec& exec) {
  const std::int64_t plane = a.h * a.w, bins = static_cast<std::int64_t>(a.ph) * a.pw;
  const int nt = host::threads(exec, a.k * a.c * bins * 16, a.c);
  // A thread owns a contiguous channel range and walks the RoIs in order: each channel's sums have one order. The
  // sums (thousands of overlapping RoIs may hit one pixel) run in an fp64 copy of the thread's planes.
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    const std::int64_t c0 = a.c * tid / nth, c1 = a.c * (tid + 1) / nth, nc = c1 - c0;
    std::vector<double> acc(static_cast<std::size_t>(a.n * nc * plane), 0.0);
    RoiTaps t;
    for (std::int64_t r = 0; r < a.k && nc > 0; ++r) {
      const float* roi = a.rois + r * 5;
      const std::int64_t b = static_cast<std::int64_t>(roi[0]);
      roi_taps(a, roi, &t);
      for (std::int64_t ch = c0; ch < c1; ++ch) {
        double* dx = acc.data() + (b * nc + (ch - c0)) * plane;
        const float* dy = a.in + (r * a.c + ch) * bins;
        for (std::int64_t bin = 0; bin < bins; ++bin) {
          const double g = dy[bin];
          for (std::int64_t i = t.first[bin]; i < t.first[bin + 1]; ++i) {
            const Tap& q = t.taps[i];
            dx[q.o1] += g * q.w1;
            dx[q.o2] += g * q.w2;
            dx[q.o3] += g * q.w3;
            dx[q.o4] += g * q.w4;
          }
        }
      }
    }
    for (std::int64_t b = 0; b < a.n; ++b)
      for (std::int64_t ch = c0; ch < c1; ++ch) {
        const double* src = acc.data() + (b * nc + (ch - c0)) * plane;
        float* dst = a.out + (b * a.c + ch) * plane;
        for (std::int64_t i = 0; i < plane; ++i) dst[i] = static_cast<float>(src[i]);
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
