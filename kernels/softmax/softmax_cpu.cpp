// CPU reference of the fused masked softmax, and the fallback on machines without a GPU.
//
// Why it looks the way it does: each row is first converted into a float scratch row (scale, mask and row limit
// applied, masked entries set to -inf), then every pass over the scratch row is a plain loop the compiler
// vectorises: the max, one exp per element (a polynomial exp written so that it vectorises; libm's expf does not),
// the sum accumulated in fp64, and the normalising store. OpenMP splits rows across threads.
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "common/half.h"
#include "runtime/error.h"
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

// Sum in fp64 with four independent accumulators (a plain fp64 reduction is one serial dependency chain).
inline double sum_fp64(const float* v, std::int64_t n) {
  double s[4] = {0.0, 0.0, 0.0, 0.0};
  std::int64_t j = 0;
  for (; j + 4 <= n; j += 4)
    for (int k = 0; k < 4; ++k) s[k] += static_cast<double>(v[j + k]);
  for (; j < n; ++j) s[0] += static_cast<double>(v[j]);
  return (s[0] + s[1]) + (s[2] + s[3]);
}

template <typename T>
inline float load(const T* p, std::int64_t i);
template <>
inline float load<float>(const float* p, std::int64_t i) {
  return p[i];
}

struct F16 {
  std::uint16_t bits;
};
struct BF16 {
  std::uint16_t bits;
};
template <>
inline float load<F16>(const F16* p, std::int64_t i) {
  return fp16_to_float(p[i].bits);
}
template <>
inline float load<BF16>(const BF16* p, std::int64_t i) {
  return bf16_to_float(p[i].bits);
}

inline void store(float* p, std::int64_t i, float v) { p[i] = v; }
inline void store(F16* p, std::int64_t i, float v) { p[i].bits = float_to_fp16(v); }
inline void store(BF16* p, std::int64_t i, float v) { p[i].bits = float_to_bf16(v); }

// Threads for `rows` rows of `cols` elements: exec.num_threads when set, and no team for tiny work.
int thread_count(const Exec& exec, std::int64_t rows, std::int64_t cols) {
  int nt = exec.num_threads > 0 ? exec.num_threads : omp_get_max_threads();
  if (rows * cols < 32768) nt = 1;
  if (nt > rows) nt = static_cast<int>(rows);
  return nt < 1 ? 1 : nt;
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
      const F16* mp = static_cast<const F16*>(m.mask) + off;
      for (std::int64_t j = 0; j < limit; ++j) v[j] += load(mp, j * cs);
      break;
    }
    case DType::BF16: {
      const BF16* mp = static_cast<const BF16*>(m.mask) + off;
      for (std::int64_t j = 0; j < limit; ++j) v[j] += load(mp, j * cs);
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
  const int nt = thread_count(exec, rows, cols);
#pragma omp parallel num_threads(nt)
  {
    std::vector<float> buf(static_cast<std::size_t>(cols));
    float* v = buf.data();
#pragma omp for schedule(static)
    for (std::int64_t r = 0; r < rows; ++r) {
      const T* xr = x + r * cols;
      T* yr = y + r * cols;
      const std::int64_t limit = softmax_row_limit(m, r, cols);
      for (std::int64_t j = 0; j < limit; ++j) v[j] = scale * load(xr, j);
      if (m.kind == DLK_MASK_TENSOR) apply_tensor_mask(m, r, limit, v);
      float mx = kNegInf;
#pragma omp simd reduction(max : mx)
      for (std::int64_t j = 0; j < limit; ++j) mx = v[j] > mx ? v[j] : mx;
      if (mx == kNegInf) {  // every entry masked (or limit 0): zeros, not NaN
        for (std::int64_t j = 0; j < cols; ++j) store(yr, j, 0.0f);
        continue;
      }
      for (std::int64_t j = 0; j < limit; ++j) v[j] = exp_nonpositive(v[j] - mx);
      const double sum = sum_fp64(v, limit);
      const float inv = static_cast<float>(1.0 / sum);
      for (std::int64_t j = 0; j < limit; ++j) store(yr, j, v[j] * inv);
      for (std::int64_t j = limit; j < cols; ++j) store(yr, j, 0.0f);
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
  const int nt = thread_count(exec, rows, cols);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* yr = y + r * cols;
    const T* dyr = dy + r * cols;
    T* dxr = dx + r * cols;
    double dot = 0.0;
#pragma omp simd reduction(+ : dot)
    for (std::int64_t j = 0; j < cols; ++j) dot += static_cast<double>(load(yr, j)) * static_cast<double>(load(dyr, j));
    const float d = static_cast<float>(dot);
    for (std::int64_t j = 0; j < cols; ++j) store(dxr, j, scale * load(yr, j) * (load(dyr, j) - d));
  }
}

}  // namespace

void softmax_forward(const SoftmaxForwardArgs& a, const Exec& exec) {
  switch (a.dtype) {
    case DType::F32: forward_rows<float>(a, exec); break;
    case DType::F16: forward_rows<F16>(a, exec); break;
    case DType::BF16: forward_rows<BF16>(a, exec); break;
    default: fail(DLK_ERROR_DTYPE, "softmax_forward: cpu backend got dtype ", dtype_name(a.dtype));
  }
}

void softmax_backward(const SoftmaxBackwardArgs& a, const Exec& exec) {
  switch (a.dtype) {
    case DType::F32: backward_rows<float>(a, exec); break;
    case DType::F16: backward_rows<F16>(a, exec); break;
    case DType::BF16: backward_rows<BF16>(a, exec); break;
    default: fail(DLK_ERROR_DTYPE, "softmax_backward: cpu backend got dtype ", dtype_name(a.dtype));
  }
}

}  // namespace dlk::cpu
