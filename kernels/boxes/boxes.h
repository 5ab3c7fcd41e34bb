// Internal interface of the box ops (torchvision.ops.box_iou, the Faster R-CNN BoxCoder, clip_boxes_to_image,
// remove_small_boxes, AnchorGenerator, MultiScaleRoIAlign's LevelMapper). Boxes are float32 (x1, y1, x2, y2).
// capi/detection.cpp validates and fills the structs; boxes_cpu.cpp is the reference, boxes.cu the cuda/emu kernels.
//
// The formulas live here once, as DLK_HD functions shared by the cpu and the device code, in torchvision's fp32
// operation order. IoU is also what NMS (kernels/nms) compares, so its rounding is pinned: products go through
// mul_rn, which no compiler may fuse into an FMA (nvcc and GCC contract a * b + c by default), so the cpu, emu and
// cuda backends and torchvision's unfused CPU kernel compute bitwise the same IoU, and NMS keeps the same boxes.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "common/macros.h"
#include "runtime/exec.h"

namespace dlk {

// a * b rounded once, never contracted with a neighbouring add.
DLK_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  float p = a * b;
#if defined(__x86_64__) || defined(__i386__)
  __asm__("" : "+x"(p));  // the product leaves the expression, so it cannot become part of an FMA
#endif
  return p;
#endif
}

DLK_HD float box_area(const float* b) { return mul_rn(b[2] - b[0], b[3] - b[1]); }

// torchvision's IoU: inter / (area_a + area_b - inter), intersection sides clamped at 0.
DLK_HD float box_iou_of(const float* a, float area_a, const float* b, float area_b) {
  const float lx = a[0] > b[0] ? a[0] : b[0], ly = a[1] > b[1] ? a[1] : b[1];
  const float rx = a[2] < b[2] ? a[2] : b[2], ry = a[3] < b[3] ? a[3] : b[3];
  const float w = rx - lx > 0.0f ? rx - lx : 0.0f, h = ry - ly > 0.0f ? ry - ly : 0.0f;
  const float inter = mul_rn(w, h);
  return inter / (area_a + area_b - inter);
}

struct BoxIouArgs {
  std::int64_t n = 0, m = 0;
  const float* a = nullptr;  // [n, 4]
  const float* b = nullptr;  // [m, 4]
  float* iou = nullptr;      // [n, m]
};

struct BoxCoderArgs {
  std::int64_t n = 0, j = 1;  // rows, boxes per row (decode's rel_codes [n, 4 j])
  float wx = 1, wy = 1, ww = 1, wh = 1, clip = 0;
  const float* codes = nullptr;      // decode: rel_codes [n, 4 j]; encode: reference boxes [n, 4]
  const float* boxes = nullptr;      // decode: boxes [n, 4]; encode: proposals [n, 4]
  float* out = nullptr;              // decode: pred [n, 4 j]; encode: deltas [n, 4]
};

// BoxCoder.encode of one pair (reference g, proposal p) into d[4].
DLK_HD void box_encode_one(const BoxCoderArgs& a, const float* g, const float* p, float* d) {
  const float pw = p[2] - p[0], ph = p[3] - p[1];
  const float px = p[0] + mul_rn(0.5f, pw), py = p[1] + mul_rn(0.5f, ph);
  const float gw = g[2] - g[0], gh = g[3] - g[1];
  const float gx = g[0] + mul_rn(0.5f, gw), gy = g[1] + mul_rn(0.5f, gh);
  d[0] = mul_rn(a.wx, gx - px) / pw;
  d[1] = mul_rn(a.wy, gy - py) / ph;
  d[2] = mul_rn(a.ww, logf(gw / pw));
  d[3] = mul_rn(a.wh, logf(gh / ph));
}

// BoxCoder.decode_single of one code c[4] against box b into o[4].
DLK_HD void box_decode_one(const BoxCoderArgs& a, const float* c, const float* b, float* o) {
  const float w = b[2] - b[0], h = b[3] - b[1];
  const float cx = b[0] + mul_rn(0.5f, w), cy = b[1] + mul_rn(0.5f, h);
  const float dx = c[0] / a.wx, dy = c[1] / a.wy;
  float dw = c[2] / a.ww, dh = c[3] / a.wh;
  dw = dw > a.clip ? a.clip : dw;
  dh = dh > a.clip ? a.clip : dh;
  const float pcx = mul_rn(dx, w) + cx, pcy = mul_rn(dy, h) + cy;
  const float pw = mul_rn(expf(dw), w), ph = mul_rn(expf(dh), h);
  const float hw = mul_rn(0.5f, pw), hh = mul_rn(0.5f, ph);
  o[0] = pcx - hw;
  o[1] = pcy - hh;
  o[2] = pcx + hw;
  o[3] = pcy + hh;
}

struct ClipBoxesArgs {
  std::int64_t n = 0;  // boxes
  float height = 0, width = 0;
  const float* in = nullptr;
  float* out = nullptr;
};

struct RemoveSmallArgs {
  std::int64_t n = 0;
  float min_size = 0;
  const float* boxes = nullptr;
  std::int64_t* keep = nullptr;   // [n]
  std::int64_t* count = nullptr;  // one element
};

DLK_HD bool box_is_large(const float* b, float min_size) {
  return b[2] - b[0] >= min_size && b[3] - b[1] >= min_size;
}

struct AnchorArgs {
  std::int64_t grid_h = 0, grid_w = 0, stride_h = 0, stride_w = 0;
  int num_base = 0;
  std::vector<float> base;  // [num_base, 4] from base_anchors()
  float* out = nullptr;     // [grid_h * grid_w * num_base, 4]
};

// AnchorGenerator.generate_anchors in fp32: ratio-major, size-minor, round half to even (torch.round).
inline std::vector<float> base_anchors(const float* sizes, int num_sizes, const float* ratios, int num_ratios) {
  std::vector<float> out;
  out.reserve(static_cast<std::size_t>(num_sizes) * num_ratios * 4);
  for (int r = 0; r < num_ratios; ++r) {
    const float hr = std::sqrt(ratios[r]), wr = 1.0f / hr;
    for (int s = 0; s < num_sizes; ++s) {
      const float ws = mul_rn(wr, sizes[s]), hs = mul_rn(hr, sizes[s]);
      out.push_back(std::nearbyint(-ws / 2.0f));
      out.push_back(std::nearbyint(-hs / 2.0f));
      out.push_back(std::nearbyint(ws / 2.0f));
      out.push_back(std::nearbyint(hs / 2.0f));
    }
  }
  return out;
}

struct LevelMapperArgs {
  std::int64_t n = 0;
  int k_min = 2, k_max = 5, canonical_scale = 224, canonical_level = 4;
  float eps = 1e-6f;
  const float* boxes = nullptr;
  std::int64_t* levels = nullptr;
};

// LevelMapper in fp32: floor(k0 + log2(sqrt(area) / s0) + eps) clamped to [k_min, k_max], minus k_min (NaN -> k_min).
DLK_HD std::int64_t fpn_level_of(const LevelMapperArgs& a, const float* b) {
  const float s = sqrtf(box_area(b));
  float lvl = floorf(static_cast<float>(a.canonical_level) + log2f(s / static_cast<float>(a.canonical_scale)) + a.eps);
  if (!(lvl >= static_cast<float>(a.k_min))) lvl = static_cast<float>(a.k_min);
  if (lvl > static_cast<float>(a.k_max)) lvl = static_cast<float>(a.k_max);
  return static_cast<std::int64_t>(lvl) - a.k_min;
}

#define DLK_BOXES_DECLARE(ns)                                          \
  namespace ns {                                                       \
  void box_iou(const BoxIouArgs& a, const Exec& exec);                 \
  void box_encode(const BoxCoderArgs& a, const Exec& exec);            \
  void box_decode(const BoxCoderArgs& a, const Exec& exec);            \
  void clip_boxes(const ClipBoxesArgs& a, const Exec& exec);           \
  void remove_small_boxes(const RemoveSmallArgs& a, const Exec& exec); \
  void anchor_generator(const AnchorArgs& a, const Exec& exec);        \
  void fpn_level_mapper(const LevelMapperArgs& a, const Exec& exec);   \
  }
DLK_BOXES_DECLARE(cpu)
DLK_BOXES_DECLARE(cuda)
DLK_BOXES_DECLARE(emu)
#undef DLK_BOXES_DECLARE

}  // namespace dlk
