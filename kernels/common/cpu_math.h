// Vectorisable float transcendentals for the cpu backend. libm's expf/erff/tanhf are scalar calls that GCC will not
// vectorise without -ffast-math (which would also break NaN and inf handling), so CPU loops over them run ~10x
// slower than PyTorch's SLEEF loops. These are plain arithmetic and selects (vectorised under -fno-trapping-math,
// see DLK_CPU_ARCH in CMakeLists.txt), keep NaN and the infinities, and are accurate to a few ulp:
//   exp    Cephes: x = n ln2 + r, |r| <= ln2/2, degree-7 polynomial, 2^n split in two factors (no overflow at n=128)
//   expm1  degree-9 Taylor series for |x| < 0.5 (relative error < 1e-8), exp(x) - 1 elsewhere
//   tanh   -expm1(-2|x|) / (2 + expm1(-2|x|)) with the sign of x
//   erfc   Abramowitz & Stegun 7.1.26 (absolute error < 1.5e-7), as in PyTorch's vectorised erf
#pragma once

#include <cstdint>
#include <limits>

#include "common/half.h"

namespace dlk::vmath {

inline float exp(float x) {
  constexpr float kLo = -87.33654f, kHi = 88.72283f;  // exp(kLo) ~ FLT_MIN, exp(kHi) ~ FLT_MAX
  float xc = x < kLo ? kLo : x;                       // NaN fails both compares and stays NaN
  xc = xc > kHi ? kHi : xc;
  const float t = xc * 1.44269504088896341f + 12582912.0f;  // low mantissa bits of t hold n = round(x / ln2)
  const float fn = t - 12582912.0f;
  const std::int32_t n = static_cast<std::int32_t>(float_bits(t) - 0x4B400000u);  // in [-126, 128]
  float r = xc - fn * 0.693359375f;
  r = r - fn * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const std::int32_t n1 = n / 2, n2 = n - n1;  // each in [-63, 64]: 2^n1 and 2^n2 are normal floats
  const float s1 = bits_float(static_cast<std::uint32_t>(n1 + 127) << 23);
  const float s2 = bits_float(static_cast<std::uint32_t>(n2 + 127) << 23);
  float y = (p * s1) * s2;
  y = x < kLo ? 0.0f : y;
  y = x > kHi ? std::numeric_limits<float>::infinity() : y;
  return y;
}

inline float expm1(float x) {
  // Horner form of x + x^2/2! + ... + x^9/9!
  float p = 2.7557319e-6f;
  p = p * x + 2.4801587e-5f;
  p = p * x + 1.9841270e-4f;
  p = p * x + 1.3888889e-3f;
  p = p * x + 8.3333333e-3f;
  p = p * x + 4.1666667e-2f;
  p = p * x + 1.6666667e-1f;
  p = p * x + 0.5f;
  p = (p * x) * x + x;
  const float ax = x < 0.0f ? -x : x;
  return ax < 0.5f ? p : exp(x) - 1.0f;
}

inline float tanh(float x) {
  const float ax = x < 0.0f ? -x : x;
  const float e = expm1(-2.0f * ax);  // in (-1, 0]
  const float t = -e / (2.0f + e);
  return x < 0.0f ? -t : t;  // NaN: t is NaN already
}

inline float erfc(float x) {
  // Abramowitz & Stegun 7.1.26 for erf(z) = 1 - t(a1 + t(a2 + ... a5)) exp(-z^2), t = 1 / (1 + p z), z >= 0
  // (absolute error < 1.5e-7; the form PyTorch's vectorised erf uses).
  const float z = x < 0.0f ? -x : x;
  const float t = 1.0f / (1.0f + 0.3275911f * z);
  float q = 1.061405429f;
  q = q * t - 1.453152027f;
  q = q * t + 1.421413741f;
  q = q * t - 0.284496736f;
  q = q * t + 0.254829592f;
  const float ans = t * q * exp(-z * z);
  return x >= 0.0f ? ans : 2.0f - ans;  // NaN: ans is NaN
}

}  // namespace dlk::vmath
