// Internal interface of the pooling family: max / avg / adaptive-avg pool 2d, max unpool 2d and 2d upsampling
// (nearest, bilinear), all over [planes, H, W] views of NCHW tensors (planes = N * C). capi/pooling.cpp validates
// and fills these structs; the cpu reference and the cuda/emu kernels implement the functions below.
//
// The per-axis index rules live here, once, as DLK_HD functions shared by the cpu and the device code, because they
// ARE the semantics (PyTorch's): window bounds of pooling, the adaptive bins, and the upsampling source indices.
#pragma once

#include <dlk/dlk.h>

#include <cmath>
#include <cstdint>

#include "common/macros.h"
#include "runtime/exec.h"
#include "runtime/tensor.h"

namespace dlk {

// Geometry of one pooling call: input plane ih x iw, output plane oh x ow, `planes` of each.
struct PoolGeom {
  std::int64_t planes = 0, ih = 0, iw = 0, oh = 0, ow = 0;
  int kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
  bool count_include_pad = true;
  int divisor_override = 0;  // > 0 replaces the divisor
};

// One pooling / unpooling call. `in` and `out` are the tensors the direction reads and writes (x -> y forward,
// dy -> dx backward), both of `dtype`. `indices` (int64, output-shaped for max pool, input-shaped for unpool) is read
// by the backward / unpool; `out_indices` is written by the max-pool forward (may be null).
struct PoolArgs {
  DType dtype = DType::F32;
  PoolGeom g;
  const void* in = nullptr;
  void* out = nullptr;
  const std::int64_t* indices = nullptr;
  std::int64_t* out_indices = nullptr;
};

// Upsampling: in [planes, ih, iw] -> out [planes, oh, ow] (forward; the backward reads dy of the out shape and writes
// dx of the in shape). ratio_h/ratio_w are PyTorch's per-axis scales, computed on the host (upsample_ratio).
struct UpsampleArgs {
  DType dtype = DType::F32;
  std::int64_t planes = 0, ih = 0, iw = 0, oh = 0, ow = 0;
  int mode = DLK_UPSAMPLE_NEAREST;
  bool align_corners = false;
  float ratio_h = 1.0f, ratio_w = 1.0f;
  const void* in = nullptr;
  void* out = nullptr;
};

// PyTorch's pooling_output_shape: floor or ceil of (in + 2 pad - dil (k - 1) - 1) / stride, plus one; in ceil mode
// one less when the last window would start in the right padding. May be <= 0 (capi rejects it).
inline std::int64_t pool_output_size(std::int64_t in, int k, int pad, int stride, int dil, bool ceil_mode) {
  const std::int64_t num = in + 2 * static_cast<std::int64_t>(pad) - static_cast<std::int64_t>(dil) * (k - 1) - 1 +
                           (ceil_mode ? stride - 1 : 0);
  // floor division rounding toward -inf (num may be negative)
  std::int64_t out = (num >= 0 ? num / stride : -((-num + stride - 1) / stride)) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

// Max-pool window of output o along one axis: the first tap inside the input and the end (exclusive), stepping dil.
struct Taps {
  std::int64_t start, end;
};
DLK_HD Taps max_pool_taps(std::int64_t o, std::int64_t in, int k, int s, int p, int d) {
  std::int64_t start = o * s - p;
  std::int64_t end = start + static_cast<std::int64_t>(k - 1) * d + 1;
  if (end > in) end = in;
  while (start < 0) start += d;
  return Taps{start, end};
}

// Avg-pool window of output o along one axis: [start, end) clipped to the input, and the unclipped (padded) count.
struct AvgWindow {
  std::int64_t start, end, padded;
};
DLK_HD AvgWindow avg_pool_window(std::int64_t o, std::int64_t in, int k, int s, int p) {
  std::int64_t start = o * s - p;
  std::int64_t end = start + k;
  if (end > in + p) end = in + p;
  const std::int64_t padded = end - start;
  if (start < 0) start = 0;
  if (end > in) end = in;
  return AvgWindow{start, end, padded};
}

// The divisor of avg-pool output (oh, ow), PyTorch's rule.
DLK_HD float avg_pool_divisor(const PoolGeom& g, const AvgWindow& wh, const AvgWindow& ww) {
  if (g.divisor_override > 0) return static_cast<float>(g.divisor_override);
  if (g.count_include_pad) return static_cast<float>(wh.padded * ww.padded);
  return static_cast<float>((wh.end - wh.start) * (ww.end - ww.start));
}

// Adaptive-avg bin of output o along one axis: [floor(o * in / out), ceil((o + 1) * in / out)).
DLK_HD std::int64_t adaptive_start(std::int64_t o, std::int64_t out, std::int64_t in) {
  return (o / out) * in + ((o % out) * in) / out;
}
DLK_HD std::int64_t adaptive_end(std::int64_t o, std::int64_t out, std::int64_t in) {
  return 1 + ((o + 1) * in - 1) / out;
}

// PyTorch's per-axis upsampling scale (compute_scales_value / area_pixel_compute_scale), in float as its kernels.
// `given` is the caller's scale_factor (0 when the output size was given instead).
inline float upsample_ratio(int mode, bool align_corners, std::int64_t in, std::int64_t out, double given) {
  if (mode == DLK_UPSAMPLE_BILINEAR && align_corners)
    return out > 1 ? static_cast<float>(in - 1) / static_cast<float>(out - 1) : 0.0f;
  if (given > 0.0) return static_cast<float>(1.0 / given);
  return static_cast<float>(in) / static_cast<float>(out);
}

// The two input taps of output o along one axis and their weights (nearest: i1 == i0, l1 == 0). Both i0 and i1 are
// non-decreasing in o, which the gather backward relies on.
struct Src {
  std::int64_t i0, i1;
  float l0, l1;
};
DLK_HD Src upsample_src(std::int64_t o, std::int64_t in, std::int64_t out, int mode, bool align_corners,
                        float ratio) {
  Src s;
  s.l0 = 1.0f;
  s.l1 = 0.0f;
  if (out == in) {
    s.i0 = s.i1 = o;
    return s;
  }
  if (mode == DLK_UPSAMPLE_NEAREST) {
    if (out == 2 * in) {
      s.i0 = o >> 1;
    } else {
      const std::int64_t i = static_cast<std::int64_t>(floorf(static_cast<float>(o) * ratio));
      s.i0 = i < in - 1 ? i : in - 1;
    }
    s.i1 = s.i0;
    return s;
  }
  float real;
  if (align_corners) {
    real = ratio * static_cast<float>(o);
  } else {
    real = ratio * (static_cast<float>(o) + 0.5f) - 0.5f;
    if (real < 0.0f) real = 0.0f;
  }
  std::int64_t i0 = static_cast<std::int64_t>(real);
  if (i0 > in - 1) i0 = in - 1;
  s.i0 = i0;
  s.i1 = i0 + (i0 < in - 1 ? 1 : 0);
  float l1 = real - static_cast<float>(i0);
  l1 = l1 < 0.0f ? 0.0f : (l1 > 1.0f ? 1.0f : l1);
  s.l1 = l1;
  s.l0 = 1.0f - l1;
  return s;
}

namespace cpu {
void max_pool2d_forward(const PoolArgs& a, const Exec& exec);
void max_pool2d_backward(const PoolArgs& a, const Exec& exec);
void avg_pool2d_forward(const PoolArgs& a, const Exec& exec);
void avg_pool2d_backward(const PoolArgs& a, const Exec& exec);
void adaptive_avg_pool2d_forward(const PoolArgs& a, const Exec& exec);
void adaptive_avg_pool2d_backward(const PoolArgs& a, const Exec& exec);
void max_unpool2d_forward(const PoolArgs& a, const Exec& exec);
void max_unpool2d_backward(const PoolArgs& a, const Exec& exec);
void upsample2d_forward(const UpsampleArgs& a, const Exec& exec);
void upsample2d_backward(const UpsampleArgs& a, const Exec& exec);
}  // namespace cpu
namespace cuda {
void max_pool2d_forward(const PoolArgs& a, const Exec& exec);
void max_pool2d_backward(const PoolArgs& a, const Exec& exec);
void avg_pool2d_forward(const PoolArgs& a, const Exec& exec);
void avg_pool2d_backward(const PoolArgs& a, const Exec& exec);
void adaptive_avg_pool2d_forward(const PoolArgs& a, const Exec& exec);
void adaptive_avg_pool2d_backward(const PoolArgs& a, const Exec& exec);
void max_unpool2d_forward(const PoolArgs& a, const Exec& exec);
void max_unpool2d_backward(const PoolArgs& a, const Exec& exec);
void upsample2d_forward(const UpsampleArgs& a, const Exec& exec);
void upsample2d_backward(const UpsampleArgs& a, const Exec& exec);
}  // namespace cuda
namespace emu {
void max_pool2d_forward(const PoolArgs& a, const Exec& exec);
void max_pool2d_backward(const PoolArgs& a, const Exec& exec);
void avg_pool2d_forward(const PoolArgs& a, const Exec& exec);
void avg_pool2d_backward(const PoolArgs& a, const Exec& exec);
void adaptive_avg_pool2d_forward(const PoolArgs& a, const Exec& exec);
void adaptive_avg_pool2d_backward(const PoolArgs& a, const Exec& exec);
void max_unpool2d_forward(const PoolArgs& a, const Exec& exec);
void max_unpool2d_backward(const PoolArgs& a, const Exec& exec);
void upsample2d_forward(const UpsampleArgs& a, const Exec& exec);
void upsample2d_backward(const UpsampleArgs& a, const Exec& exec);
}  // namespace emu

}  // namespace dlk
