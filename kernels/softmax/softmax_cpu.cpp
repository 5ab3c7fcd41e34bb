// CPU reference of the fused masked softmax, and the fallback on machines without a GPU.
//
// Why it looks the way it does: each row is first converted into a float scratch row (scale, mask and row limit
// applied, masked entries set to -inf), then every pass over the scratch row is a plain loop the compiler
// vectorises: the max, one exp per element (a polynomial exp written so that it vectorises; libm's expf does not),
// the sum (fp32 lanes over 256-element blocks, blocks added in fp64), and the normalising store. OpenMP splits
// rows across threads.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "common/host.h"
#include "softmax/softmax.h"

namespace dlk::cpu {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// exp(x) for x <= 0 (the argument is always v - max), NaN preserved, 0 below -87.3 (and for -inf).
// Cephes' expf: x = n ln2 + r with |r| <= ln2/2, exp(r) by a degree-7 polynomial, 2^n built in the exponent bits.
// Error about 1 ulp. Written without a single branch or float compare (selects are integer bit masks, n is rounded
// with the 1.5*2^23 trick) because with GCC's default -ftrapping-math any float select stops vectorisation.
inline float exp_nonpositive(float x) {
  const std::uint32_t xb = float_bits(x);
  // All ones when x < -87.3 or x == -inf (negative floats order like their bits; negative NaNs lie above -inf).
  const std::uint32_t tiny = 0u - static_cast<std::uint32_t>((xb > 0xC2AE999Au) & (xb <= 0xFF800000u));
  const float xc = bits_float((xb & ~tiny) | (0xC2AE999Au & tiny));  // max(x, -87.3)
  const float t = xc * 1.44269504088896341f + 12582912.0f;           // low mantissa bits of t hold round(x / ln2)
  const float fn = t - 12582912.0f;
  const std::int32_t n = static_cast<std::int32_t>(float_bits(t) - 0x4B400000u);  // round(x / ln2), in [-126, 0]
  float r = xc - fn * 0.693359375f;
  r = r - fn * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const float two_n = bits_float(static_cast<std::uint32_t>(n + 127) << 23);
  return bits_float(float_bits(p * two_n) & ~tiny);
}

// Sum of n non-negative values: fp32 vector lanes over blocks of 256, the blocks added in fp64, so each fp32 lane
// sums at most 256 / lanes terms (vector speed, error far below the fp32 output's rounding).
inline double sum_fp64(const float* v, std::int64_t n) {
  double total = 0.0;
  for (std::int64_t j0 = 0; j0 < n; j0 += 256) {
    const std::int64_t j1 = j0 + 256 < n ? j0 + 256 : n;
    float block = 0.0f;
#pragma omp simd reduction(+ : block)
    for (std::int64_t j = j0; j < j1; ++j) block += v[j];
    total += static_cast<double>(block);
  }
  return total;
}

// Adds the tensor mask of row r into v[0, limit).
void apply_tensor_mask(const SoftmaxMask& m, std::int64_t r, std::int64_t limit, float* v) {
  const std::int64_t off = softmax_mask_row_offset(m, r), cs = m.col_stride;
  switch (m.mask_dtype) {
    case DType::I8:
    case DType::U8: {
      const std::uint8_t* mp = static_cast<const std::uint8_t*>(m.mask) + off;
      for (std::int64_t j = 0; j < limit; ++j) v[j] = mp[j * cs] ? v[j] : kNegInf;
      break;
    }
    case DType::F32: {
      const float* mp = static_cast<const float*>(m.mask) + off;
      for (std::int64_t j = 0; j < limit; ++j) v[j] += mp[j * cs];
      break;
    }
    case DType::F16: {
      const host::F16* mp = static_cast<const host::F16*>(m.mask) + off;
      for (std::int64_t j = 0; j < limit; ++j) v[j] += host::load(mp, j * cs);
      break;
    }
    case DType::BF16: {
      const host::BF16* mp = static_cast<const host::BF16*>(m.mask) + off;
      for (std::int64_t j = 0; j < limit; ++j) v[j] += host::load(mp, j * cs);
      break;
    }
    default: break;  // rejected by validation
  }
}

template <typename T>
void forward_rows(const SoftmaxForwardArgs& a, const Exec& exec) {
  const T* x = static_cast<const T*>(a.x);
  T* y = static_cast<T*>(a.y);
  const std::int64_t rows = a.rows, cols = a.cols;
  const float scale = a.scale;
  const SoftmaxMask& m = a.mask;
  const int nt = host::threads(exec, rows * cols, rows);
#pragma omp parallel num_threads(nt)
  {
    std::vector<float> buf(static_cast<std::size_t>(cols));
    float* v = buf.data();
#pragma omp for schedule(static)
    for (std::int64_t r = 0; r < rows; ++r) {
      const T* xr = x + r * cols;
      T* yr = y + r * cols;
      const std::int64_t limit = softmax_row_limit(m, r, cols);
      for (std::int64_t j = 0; j < limit; ++j) v[j] = scale * host::load(xr, j);
      if (m.kind == DLK_MASK_TENSOR) apply_tensor_mask(m, r, limit, v);
      float mx = kNegInf;
#pragma omp simd reduction(max : mx)
      for (std::int64_t j = 0; j < limit; ++j) mx = v[j] > mx ? v[j] : mx;
      if (mx == kNegInf) {  // every entry masked (or limit 0): zeros, not NaN
        for (std::int64_t j = 0; j < cols; ++j) host::store(yr, j, 0.0f);
        continue;
      }
      for (std::int64_t j = 0; j < limit; ++j) v[j] = exp_nonpositive(v[j] - mx);
      const double sum = sum_fp64(v, limit);
      const float inv = static_cast<float>(1.0 / sum);
      for (std::int64_t j = 0; j < limit; ++j) host::store(yr, j, v[j] * inv);
      for (std::int64_t j = limit; j < cols; ++j) host::store(yr, j, 0.0f);
    }
  }
}

template <typename T>
void backward_rows(const SoftmaxBackwardArgs& a, const Exec& exec) {
  const T* y = static_cast<const T*>(a.y);
  const T* dy = static_cast<const T*>(a.dy);
  T* dx = static_cast<T*>(a.dx);
  const std::int64_t rows = a.rows, cols = a.cols;
  const float scale = a.scale;
  const int nt = host::threads(exec, rows * cols, rows);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* yr = y + r * cols;
    const T* dyr = dy + r * cols;
    T* dxr = dx + r * cols;
    double dot = 0.0;
#pragma omp simd reduction(+ : dot)
    for (std::int64_t j = 0; j < cols; ++j)
      dot += static_cast<double>(host::load(yr, j)) * static_cast<double>(host::load(dyr, j));
    const float d = static_cast<float>(dot);
    for (std::int64_t j = 0; j < cols; ++j) host::store(dxr, j, scale * host::load(yr, j) * (host::load(dyr, j) - d));
  }
}

}  // namespace

void softmax_forward(const SoftmaxForwardArgs& a, const Exec& exec) {
  host::with_type(a.dtype, "softmax_forward", [&](auto tag) { forward_rows<decltype(tag)>(a, exec); });
}

void softmax_backward(const SoftmaxBackwardArgs& a, const Exec& exec) {
  host::with_type(a.dtype, "softmax_backward", [&](auto tag) { backward_rows<decltype(tag)>(a, exec); });
}

}  // namespace dlk::cpu
