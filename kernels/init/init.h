// Internal interface of tensor initialisation. capi/random.cpp resolves every dlk_init_kind (Kaiming, Xavier, the
// Linear defaults) to one of four distributions with concrete parameters; the backends draw them.
//
// Element i uses stream position offset + i of `seed` (common/philox.h):
//   Uniform:     lo + (hi - lo) * uniform_co(bits)                                 in [lo, hi)
//   Normal:      mean + std * normal_in_block(block, lane)                         Box-Muller on position pairs
//   TruncNormal: v = v_lo + (v_hi - v_lo) * uniform_co(bits) (v_lo = 2 Phi((a - mean)/std) - 1, v_hi likewise);
//                mean + std * sqrt(2) * erfinv(v), clamped to [a, b]                torch.nn.init.trunc_normal_'s
//                method
//   Constant:    value
// Math is fp32 (identical expressions on every backend, multiply-adds as explicit fmaf so no compiler contracts them
// differently), then rounded to the dtype.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/macros.h"
#include "common/philox.h"
#include "runtime/exec.h"
#include "runtime/tensor.h"

namespace dlk {

enum class InitDist : int { Uniform, Normal, TruncNormal, Constant };

struct InitArgs {
  DType dtype = DType::F32;
  std::int64_t n = 0;
  void* data = nullptr;
  InitDist dist = InitDist::Uniform;
  float p0 = 0.0f, p1 = 1.0f;       // Uniform: lo, hi; Normal/TruncNormal: mean, std; Constant: p0
  float a = -2.0f, b = 2.0f;        // TruncNormal: cuts
  float v_lo = -1.0f, v_hi = 1.0f;  // TruncNormal: the erf-space interval
  std::uint64_t seed = 0, offset = 0;
};

// The value of element at stream position `pos`, from the Philox block that holds it (shared by every backend).
DLK_HD float init_value(const InitArgs& a, const Philox4& blk, unsigned lane) {
  switch (a.dist) {
    case InitDist::Uniform: return fmaf(a.p1 - a.p0, uniform_co(blk.v[lane]), a.p0);
    case InitDist::Normal: return fmaf(a.p1, normal_in_block(blk, lane), a.p0);
    case InitDist::TruncNormal: {
      const float v = fmaf(a.v_hi - a.v_lo, uniform_co(blk.v[lane]), a.v_lo);
      if (!(v > -1.0f)) return a.a;  // erfinv(-1) = -inf: the lower cut
      float x = fmaf(a.p1 * 1.41421356237309505f, erfinv_approx(v), a.p0);
      x = x < a.a ? a.a : x;
      return x > a.b ? a.b : x;
    }
    default: return a.p0;
  }
}

// The values of the four elements at stream positions 4g .. 4g+3 from their Philox block (Normal shares each pair's
// Box-Muller radius; the values equal init_value's lane by lane).
DLK_HD void init_block(const InitArgs& a, const Philox4& blk, float* out) {
  if (a.dist == InitDist::Normal) {
    normal4_in_block(blk, out);
    for (int l = 0; l < 4; ++l) out[l] = fmaf(a.p1, out[l], a.p0);
    return;
  }
  for (unsigned l = 0; l < 4; ++l) out[l] = init_value(a, blk, l);
}

namespace cpu {
void init_fill(const InitArgs& a, const Exec& exec);
}  // namespace cpu
namespace cuda {
void init_fill(const InitArgs& a, const Exec& exec);
}  // namespace cuda
namespace emu {
void init_fill(const InitArgs& a, const Exec& exec);
}  // namespace emu

}  // namespace dlk
