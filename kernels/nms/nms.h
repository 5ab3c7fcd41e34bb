// Internal interface of non-maximum suppression (torchvision.ops.nms / batched_nms with the coordinate trick).
// capi/detection.cpp validates and fills NmsArgs; nms_cpu.cpp is the reference, nms.cu the cuda/emu pipeline.
//
// Semantics shared by every backend: candidates are the boxes whose score is not < score_threshold (NaN passes);
// they are ordered by decreasing score with a STABLE order (equal scores keep the lower index first; NaN counts as
// the highest score; -0 equals +0); only the first top_k (when > 0) enter the suppression; walking that order, a
// box is kept unless its IoU (boxes.h: box_iou_of, bitwise identical on every backend) with a kept box is
// > iou_threshold, compared in double as torchvision's CPU kernel does. For batched NMS every box is first offset
// by idx * (max coordinate over all boxes + 1) in fp32, as torchvision's _batched_nms_coordinate_trick.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "boxes/boxes.h"
#include "common/macros.h"
#include "runtime/exec.h"

namespace dlk {

struct NmsArgs {
  std::int64_t n = 0;
  const float* boxes = nullptr;      // [n, 4]
  const float* scores = nullptr;     // [n]
  const std::int64_t* idxs = nullptr;  // [n] categories (batched) or null
  double iou_threshold = 0.5;
  double score_threshold = -INFINITY;
  std::int64_t top_k = 0;            // <= 0: all
  std::int64_t* keep = nullptr;      // [n]
  std::int64_t* count = nullptr;     // one element
};

// The sort key of a score as an unsigned integer whose DEScending order is the NMS order: the IEEE bits made
// monotone (radix-sort style), NaN mapped to the canonical +NaN (above +inf), -0 mapped to +0.
DLK_HD unsigned nms_sort_key(float s) {
  if (s != s) return 0xffc00000u;  // +NaN (0x7fc00000) with the sign bit flipped
  if (s == 0.0f) s = 0.0f;
  unsigned u;
  std::memcpy(&u, &s, sizeof u);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Whether a score passes the threshold (NaN passes: it is not < anything).
DLK_HD bool nms_passes(float s, double threshold) { return !(static_cast<double>(s) < threshold); }

// Box i for the suppression: with categories, shifted by idx * (max_coord + 1) in fp32.
DLK_HD void nms_box(const NmsArgs& a, std::int64_t i, float max_coord, float* out) {
  const float* b = a.boxes + 4 * i;
  const float off = a.idxs ? mul_rn(static_cast<float>(a.idxs[i]), max_coord + 1.0f) : 0.0f;
  for (int c = 0; c < 4; ++c) out[c] = a.idxs ? b[c] + off : b[c];
}

namespace cpu {
void nms(const NmsArgs& a, const Exec& exec);
}
namespace cuda {
void nms(const NmsArgs& a, const Exec& exec);
}
namespace emu {
void nms(const NmsArgs& a, const Exec& exec);
}

}  // namespace dlk
