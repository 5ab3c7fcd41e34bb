// Internal interface of RoI Align and RoI Pool (torchvision.ops.roi_align / roi_pool), NCHW float32.
// capi/detection.cpp validates and fills RoiArgs; roi_align_cpu.cpp is the reference, roi_align.cu the cuda/emu
// kernels.
//
// The per-RoI geometry and the bilinear rule live here, once, as DLK_HD functions shared by the cpu and the device
// code, because they ARE the semantics (torchvision 0.14's roi_align_kernel / roi_pool_kernel): the RoI start is
// computed as roi * spatial_scale (double) - offset and rounded to float, non-aligned RoIs are at least 1x1, the
// adaptive sampling grid is ceil(roi size / pooled size), and a sample outside [-1, H] x [-1, W] contributes 0.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/macros.h"
#include "runtime/exec.h"

namespace dlk {

struct RoiArgs {
  std::int64_t n = 0, c = 0, h = 0, w = 0;  // the image tensor (x forward, dx backward)
  std::int64_t k = 0;                       // number of RoIs
  int ph = 1, pw = 1;                       // pooled size
  double spatial_scale = 1.0;
  int sampling_ratio = -1;
  bool aligned = false;
  const float* rois = nullptr;     // [k, 5]
  const float* in = nullptr;       // forward: x [n, c, h, w]; backward: dy [k, c, ph, pw]
  float* out = nullptr;            // forward: y [k, c, ph, pw]; backward: dx [n, c, h, w]
  std::int64_t* argmax = nullptr;  // roi_pool forward: written (may be null)
  const std::int64_t* argmax_in = nullptr;  // roi_pool backward: read
};

void roi_align_forward_kernel_check();

namespace cpu {
void roi_align_forward(const RoiArgs& a, const Exec& exec);
void roi_align_backward(const RoiArgs& a, const Exec& exec);
void roi_pool_forward(const RoiArgs& a, const Exec& exec);
void roi_pool_backward(const RoiArgs& a, const Exec& exec);
}  // namespace cpu
namespace cuda {
void roi_align_forward(const RoiArgs& a, const Exec& exec);
void roi_align_backward(const RoiArgs& a, const Exec& exec);
void roi_pool_forward(const RoiArgs& a, const Exec& exec);
void roi_pool_backward(const RoiArgs& a, const Exec& exec);
}  // namespace cuda
namespace emu {
void roi_align_forward(const RoiArgs& a, const Exec& exec);
void roi_align_backward(const RoiArgs& a, const Exec& exec);
void roi_pool_forward(const RoiArgs& a, const Exec& exec);
void roi_pool_backward(const RoiArgs& a, const Exec& exec);
}  // namespace emu

// One RoI's geometry for RoI Align: start, bin size and sampling grid, exactly as torchvision computes them.
struct RoiAlignBox {
  float start_h, start_w, bin_h, bin_w;
  int grid_h, grid_w;
  float count;  // grid_h * grid_w, at least 1
};

DLK_HD RoiAlignBox roi_align_box(const float* roi, double spatial_scale, int pooled_h, int pooled_w,
                                 int sampling_ratio, bool aligned) {
  const double offset = aligned ? 0.5 : 0.0;
  RoiAlignBox b;
  b.start_w = static_cast<float>(static_cast<double>(roi[1]) * spatial_scale - offset);
  b.start_h = static_cast<float>(static_cast<double>(roi[2]) * spatial_scale - offset);
  const float end_w = static_cast<float>(static_cast<double>(roi[3]) * spatial_scale - offset);
  const float end_h = static_cast<float>(static_cast<double>(roi[4]) * spatial_scale - offset);
  float roi_w = end_w - b.start_w, roi_h = end_h - b.start_h;
  if (!aligned) {
    roi_w = roi_w > 1.0f ? roi_w : 1.0f;
    roi_h = roi_h > 1.0f ? roi_h : 1.0f;
  }
  b.bin_h = roi_h / static_cast<float>(pooled_h);
  b.bin_w = roi_w / static_cast<float>(pooled_w);
  b.grid_h = sampling_ratio > 0 ? sampling_ratio : static_cast<int>(ceilf(roi_h / static_cast<float>(pooled_h)));
  b.grid_w = sampling_ratio > 0 ? sampling_ratio : static_cast<int>(ceilf(roi_w / static_cast<float>(pooled_w)));
  const int cnt = b.grid_h * b.grid_w;
  b.count = static_cast<float>(cnt > 1 ? cnt : 1);
  return b;
}

// Sample coordinate iy of bin ph along one axis (torchvision: start + ph * bin + (iy + .5) * bin / grid).
DLK_HD float roi_sample(float start, int p, float bin, int i, int grid) {
  return start + static_cast<float>(p) * bin + (static_cast<float>(i) + 0.5f) * bin / static_cast<float>(grid);
}

// Bilinear taps of a sample (y, x) in an h x w plane: four plane offsets and weights; `valid` false means the sample
// contributes nothing (outside [-1, h] x [-1, w]).
struct Bilinear {
  bool valid;
  std::int64_t o1, o2, o3, o4;
  float w1, w2, w3, w4;
};

DLK_HD Bilinear bilinear_taps(float y, float x, std::int64_t height, std::int64_t width) {
  Bilinear b{};
  if (y < -1.0f || y > static_cast<float>(height) || x < -1.0f || x > static_cast<float>(width)) {
    b.valid = false;
    return b;
  }
  b.valid = true;
  if (y <= 0) y = 0;
  if (x <= 0) x = 0;
  std::int64_t y_low = static_cast<std::int64_t>(y), x_low = static_cast<std::int64_t>(x), y_high, x_high;
  if (y_low >= height - 1) {
    y_high = y_low = height - 1;
    y = static_cast<float>(y_low);
  } else {
    y_high = y_low + 1;
  }
  if (x_low >= width - 1) {
    x_high = x_low = width - 1;
    x = static_cast<float>(x_low);
  } else {
    x_high = x_low + 1;
  }
  const float ly = y - static_cast<float>(y_low), lx = x - static_cast<float>(x_low);
  const float hy = 1.0f - ly, hx = 1.0f - lx;
  b.o1 = y_low * width + x_low;
  b.o2 = y_low * width + x_high;
  b.o3 = y_high * width + x_low;
  b.o4 = y_high * width + x_high;
  b.w1 = hy * hx;
  b.w2 = hy * lx;
  b.w3 = ly * hx;
  b.w4 = ly * lx;
  return b;
}

// One RoI Pool bin: [h0, h1) x [w0, w1) in the plane (torchvision: round the scaled RoI, integer bins by floor/ceil,
// clipped to the plane).
struct PoolBin {
  std::int64_t h0, h1, w0, w1;
};

DLK_HD std::int64_t roi_clip(std::int64_t v, std::int64_t hi) { return v < 0 ? 0 : (v > hi ? hi : v); }

DLK_HD PoolBin roi_pool_bin(const float* roi, double spatial_scale, int pooled_h, int pooled_w, int p_h, int p_w,
                            std::int64_t height, std::int64_t width) {
  const std::int64_t sw = static_cast<std::int64_t>(round(static_cast<double>(roi[1]) * spatial_scale));
  const std::int64_t sh = static_cast<std::int64_t>(round(static_cast<double>(roi[2]) * spatial_scale));
  const std::int64_t ew = static_cast<std::int64_t>(round(static_cast<double>(roi[3]) * spatial_scale));
  const std::int64_t eh = static_cast<std::int64_t>(round(static_cast<double>(roi[4]) * spatial_scale));
  const std::int64_t rw = ew - sw + 1 > 1 ? ew - sw + 1 : 1, rh = eh - sh + 1 > 1 ? eh - sh + 1 : 1;
  const float bh = static_cast<float>(rh) / static_cast<float>(pooled_h);
  const float bw = static_cast<float>(rw) / static_cast<float>(pooled_w);
  PoolBin b;
  b.h0 = roi_clip(static_cast<std::int64_t>(floorf(static_cast<float>(p_h) * bh)) + sh, height);
  b.h1 = roi_clip(static_cast<std::int64_t>(ceilf(static_cast<float>(p_h + 1) * bh)) + sh, height);
  b.w0 = roi_clip(static_cast<std::int64_t>(floorf(static_cast<float>(p_w) * bw)) + sw, width);
  b.w1 = roi_clip(static_cast<std::int64_t>(ceilf(static_cast<float>(p_w + 1) * bw)) + sw, width);
  return b;
}

}  // namespace dlk
