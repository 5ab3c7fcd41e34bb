// Shared test harness: which backend a test binary runs on (DLK_TEST_BACKEND=cpu|emu|cuda, set by ctest), tensors
// that live where the context wants them, seeded random inputs, poisoning, and the comparison rule
// ||out - ref|| / ||ref|| <= tol with NaN never passing.
#pragma once

#include <dlk/dlk.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/half.h"

namespace dlk::test {

inline dlk_device backend() {
  const char* b = std::getenv("DLK_TEST_BACKEND");
  std::string s = b ? b : "cpu";
  if (s == "emu") return DLK_DEVICE_EMU;
  if (s == "cuda" || s == "gpu") return DLK_DEVICE_CUDA;
  return DLK_DEVICE_CPU;
}

// The run's seed: DLK_TEST_SEED if set, else fresh. Printed by every failing assertion through SCOPED_TRACE.
inline std::uint64_t seed() {
  static const std::uint64_t s = [] {
    const char* e = std::getenv("DLK_TEST_SEED");
    return e ? std::strtoull(e, nullptr, 10) : static_cast<std::uint64_t>(std::random_device{}()) * 2654435761u;
  }();
  return s;
}
#define DLK_TRACE_SEED() SCOPED_TRACE("seed " + std::to_string(::dlk::test::seed()) + " (rerun with DLK_TEST_SEED)")

inline std::mt19937_64& rng() {
  static std::mt19937_64 g(seed());
  return g;
}

inline std::vector<float> randn(std::size_t n, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng());
  return v;
}

inline std::vector<float> uniform(std::size_t n, float lo, float hi) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng());
  return v;
}

// A context on the test's backend; tests call SKIP_IF_NO_BACKEND() first.
struct Context {
  dlk_context* ctx = nullptr;
  dlk_status status = DLK_SUCCESS;
  explicit Context(dlk_device d = backend(), int deterministic = 0) {
    dlk_context_options o;
    dlk_context_options_init(&o);
    o.device = d;
    o.deterministic = deterministic;
    status = dlk_context_create(&o, &ctx);
  }
  ~Context() { dlk_context_destroy(ctx); }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  operator dlk_context*() const { return ctx; }
  bool on_device() const {
    dlk_device d = DLK_DEVICE_CPU;
    dlk_context_device(ctx, &d);
    return d == DLK_DEVICE_CUDA;
  }
};

#define SKIP_IF_NO_BACKEND(context)                                                                \
  do {                                                                                             \
    if ((context).status != DLK_SUCCESS)                                                           \
      GTEST_SKIP() << "backend " << dlk_device_name(::dlk::test::backend()) << " unavailable: " \
                   << dlk_last_error();                                                           \
  } while (0)

inline DLDataType f32() { return DLDataType{kDLFloat, 32, 1}; }
inline DLDataType f16() { return DLDataType{kDLFloat, 16, 1}; }
inline DLDataType bf16() { return DLDataType{kDLBfloat, 16, 1}; }
inline DLDataType i32() { return DLDataType{kDLInt, 32, 1}; }
inline DLDataType i64() { return DLDataType{kDLInt, 64, 1}; }
inline DLDataType u8() { return DLDataType{kDLUInt, 8, 1}; }
inline std::string dtype_str(DLDataType t) {
  if (t.code == kDLBfloat) return "bf16";
  return std::string(t.code == kDLFloat ? "f" : t.code == kDLInt ? "i" : "u") + std::to_string(t.bits);
}

// ||out-ref||/||ref|| tolerance for a dtype (DESIGN.md): fp32 1e-5, fp16/bf16 1e-2.
inline double tolerance(DLDataType t) { return t.bits == 32 ? 1e-5 : 1e-2; }

// A tensor owned by the test. Host bytes always exist; on a cuda context a device copy is kept in sync by
// upload()/download(). `t` is the DLTensor to pass to the library.
class Tensor {
 public:
  Tensor(dlk_context* ctx, std::vector<std::int64_t> shape, DLDataType dtype) : ctx_(ctx), shape_(std::move(shape)) {
    std::int64_t n = 1;
    for (auto d : shape_) n *= d;
    numel_ = static_cast<std::size_t>(n);
    host_.assign(numel_ * dtype.bits / 8 + 1, 0);
    dlk_device dev = DLK_DEVICE_CPU;
    dlk_context_device(ctx, &dev);
    std::memset(&t, 0, sizeof(t));
    t.ndim = static_cast<int>(shape_.size());
    t.shape = shape_.data();
    t.dtype = dtype;
    if (dev == DLK_DEVICE_CUDA) {
      dlk_alloc(ctx, host_.size(), &device_);
      t.data = device_;
      t.device = DLDevice{kDLCUDA, 0};
    } else {
      t.data = host_.data();
      t.device = DLDevice{kDLCPU, 0};
    }
  }
  ~Tensor() {
    if (device_) dlk_free(ctx_, device_);
  }
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;

  std::size_t numel() const { return numel_; }
  DLDataType dtype() const { return t.dtype; }
  const std::vector<std::int64_t>& shape() const { return shape_; }

  // Stores values (rounded to the dtype) and uploads them.
  void set(const std::vector<float>& v) {
    EXPECT_EQ(v.size(), numel_);
    for (std::size_t i = 0; i < numel_; ++i) store(i, v[i]);
    upload();
  }
  void set_raw(const void* bytes) {
    std::memcpy(host_.data(), bytes, numel_ * t.dtype.bits / 8);
    upload();
  }
  // Downloads and returns the values as float (integers converted).
  std::vector<float> get() {
    download();
    std::vector<float> v(numel_);
    for (std::size_t i = 0; i < numel_; ++i) v[i] = load(i);
    return v;
  }
  // The values exactly as stored (after rounding to the dtype), without a download.
  std::vector<float> stored() const {
    std::vector<float> v(numel_);
    for (std::size_t i = 0; i < numel_; ++i) v[i] = load(i);
    return v;
  }
  // Fills every byte with 0xff: NaN in every float dtype, so unwritten outputs are caught.
  void poison() {
    std::memset(host_.data(), 0xff, host_.size());
    upload();
  }
  void upload() {
    if (device_) dlk_copy(ctx_, device_, DLDevice{kDLCUDA, 0}, host_.data(), DLDevice{kDLCPU, 0}, host_.size());
  }
  void download() {
    if (device_) dlk_copy(ctx_, host_.data(), DLDevice{kDLCPU, 0}, device_, DLDevice{kDLCUDA, 0}, host_.size());
  }
  DLTensor t;

 private:
  void store(std::size_t i, float v) {
    unsigned char* p = host_.data();
    switch (t.dtype.code) {
      case kDLFloat:
        if (t.dtype.bits == 32) reinterpret_cast<float*>(p)[i] = v;
        else if (t.dtype.bits == 16) reinterpret_cast<std::uint16_t*>(p)[i] = float_to_fp16(v);
        else reinterpret_cast<double*>(p)[i] = v;
        break;
      case kDLBfloat: reinterpret_cast<std::uint16_t*>(p)[i] = float_to_bf16(v); break;
      case kDLInt:
        if (t.dtype.bits == 8) reinterpret_cast<std::int8_t*>(p)[i] = static_cast<std::int8_t>(v);
        else if (t.dtype.bits == 32) reinterpret_cast<std::int32_t*>(p)[i] = static_cast<std::int32_t>(v);
        else reinterpret_cast<std::int64_t*>(p)[i] = static_cast<std::int64_t>(v);
        break;
      default: p[i] = static_cast<unsigned char>(v); break;
    }
  }
  float load(std::size_t i) const {
    const unsigned char* p = host_.data();
    switch (t.dtype.code) {
      case kDLFloat:
        if (t.dtype.bits == 32) return reinterpret_cast<const float*>(p)[i];
        if (t.dtype.bits == 16) return fp16_to_float(reinterpret_cast<const std::uint16_t*>(p)[i]);
        return static_cast<float>(reinterpret_cast<const double*>(p)[i]);
      case kDLBfloat: return bf16_to_float(reinterpret_cast<const std::uint16_t*>(p)[i]);
      case kDLInt:
        if (t.dtype.bits == 8) return reinterpret_cast<const std::int8_t*>(p)[i];
        if (t.dtype.bits == 32) return static_cast<float>(reinterpret_cast<const std::int32_t*>(p)[i]);
        return static_cast<float>(reinterpret_cast<const std::int64_t*>(p)[i]);
      default: return p[i];
    }
  }
  dlk_context* ctx_;
  std::vector<std::int64_t> shape_;
  std::size_t numel_ = 0;
  std::vector<unsigned char> host_;
  void* device_ = nullptr;
};

// ||out - ref|| / ||ref|| (absolute norm when ref is all zeros); +inf when any value is NaN or sizes differ.
inline double rel_error(const std::vector<float>& out, const std::vector<double>& ref) {
  if (out.size() != ref.size()) return INFINITY;
  double num = 0, den = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (std::isnan(out[i]) || std::isnan(ref[i])) return INFINITY;
    double d = static_cast<double>(out[i]) - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

#define EXPECT_CLOSE(out, ref, tol)                                                                          \
  do {                                                                                                       \
    double dlk_err_ = ::dlk::test::rel_error((out), (ref));                                                  \
    EXPECT_LE(dlk_err_, (tol)) << "relative error " << dlk_err_ << " > " << (tol) << " (NaN counts as inf)"; \
  } while (0)

// For outputs that are sums which may nearly cancel (reductions, dot products, scatter-adds): the error relative to
// max(||ref||, ||mag||), where mag is the same computation on |terms|, which is what the rounding error scales with.
inline double rel_error_scaled(const std::vector<float>& out, const std::vector<double>& ref,
                               const std::vector<double>& mag) {
  double e = rel_error(out, ref);
  if (!std::isfinite(e) || mag.size() != ref.size()) return e;
  double num = 0, den = 0, dm = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const double d = static_cast<double>(out[i]) - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
    dm += mag[i] * mag[i];
  }
  const double norm = std::sqrt(den > dm ? den : dm);
  return norm > 0 ? std::sqrt(num) / norm : std::sqrt(num);
}

#define EXPECT_CLOSE_SCALED(out, ref, mag, tol)                                                                  \
  do {                                                                                                           \
    double dlk_err_ = ::dlk::test::rel_error_scaled((out), (ref), (mag));                                        \
    EXPECT_LE(dlk_err_, (tol)) << "relative error (against the sums of |terms|) " << dlk_err_ << " > " << (tol); \
  } while (0)

// Every element finite: catches outputs left poisoned.
inline bool all_finite(const std::vector<float>& v) {
  for (float x : v)
    if (!std::isfinite(x)) return false;
  return true;
}

}  // namespace dlk::test
