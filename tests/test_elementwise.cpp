// The elementwise family on the backend DLK_TEST_BACKEND names: activations (forward, backward from x and from y),
// broadcast add/mul and their backward, sum_to_shape, scale, residual add, concat/split. Every result is checked
// against an fp64 reference written here (it shares no code with the library: activations and their derivatives are
// written out in double, broadcasting and reductions run over multi-indices), every backward also against central
// differences of the library's own forward. Sizes are odd (1, 7, 33, 1000, 4099) and pointers sometimes misaligned
// so both the 16-byte and the scalar kernel paths run; outputs are poisoned (NaN) first so unwritten elements fail.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "test_util.h"

namespace dlk::test {
namespace {

const DLDataType kFloatTypes[] = {f32(), f16(), bf16()};
const int kKinds[] = {DLK_ACTIVATION_RELU,      DLK_ACTIVATION_LEAKY_RELU, DLK_ACTIVATION_ELU,     DLK_ACTIVATION_GELU,
                      DLK_ACTIVATION_GELU_TANH, DLK_ACTIVATION_TANH,       DLK_ACTIVATION_SIGMOID, DLK_ACTIVATION_SILU};
const char* kKindNames[] = {"relu", "leaky_relu", "elu", "gelu", "gelu_tanh", "tanh", "sigmoid", "silu"};

using Shape = std::vector<std::int64_t>;

std::int64_t product(const Shape& s) {
  return std::accumulate(s.begin(), s.end(), std::int64_t{1}, std::multiplies<std::int64_t>());
}

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

// A DLTensor over a Tensor's storage with another shape and a byte offset (for misaligned views).
struct View {
  Shape shape;
  DLTensor t;
  View(const Tensor& base, Shape s, std::uint64_t byte_offset = 0) : shape(std::move(s)), t(base.t) {
    t.ndim = static_cast<int>(shape.size());
    t.shape = shape.data();
    t.strides = nullptr;
    t.byte_offset = byte_offset;
  }
};

// ------------------------------------------------------------------------------------- fp64 activation reference

struct Act {
  int kind;
  double slope = 0.01, alpha = 1.0;
};

double act_ref(const Act& a, double x) {
  const double k = std::sqrt(2.0 / M_PI);
  switch (a.kind) {
    case DLK_ACTIVATION_RELU: return x > 0 ? x : 0.0;
    case DLK_ACTIVATION_LEAKY_RELU: return x > 0 ? x : a.slope * x;
    case DLK_ACTIVATION_ELU: return x > 0 ? x : a.alpha * std::expm1(x);
    case DLK_ACTIVATION_GELU: return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
    case DLK_ACTIVATION_GELU_TANH: return 0.5 * x * (1.0 + std::tanh(k * (x + 0.044715 * x * x * x)));
    case DLK_ACTIVATION_TANH: return std::tanh(x);
    case DLK_ACTIVATION_SIGMOID: return 1.0 / (1.0 + std::exp(-x));
    default: return x / (1.0 + std::exp(-x));
  }
}

// d act / dx at x, derived by hand.
double grad_ref_x(const Act& a, double x) {
  const double k = std::sqrt(2.0 / M_PI), c = 0.044715;
  switch (a.kind) {
    case DLK_ACTIVATION_RELU: return x > 0 ? 1.0 : 0.0;
    case DLK_ACTIVATION_LEAKY_RELU: return x > 0 ? 1.0 : a.slope;
    case DLK_ACTIVATION_ELU: return x > 0 ? 1.0 : a.alpha * std::exp(x);
    case DLK_ACTIVATION_GELU:
      return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))) + x * std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI);
    case DLK_ACTIVATION_GELU_TANH: {
      const double t = std::tanh(k * (x + c * x * x * x));
      return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * c * x * x);
    }
    case DLK_ACTIVATION_TANH: {
      const double t = std::tanh(x);
      return 1.0 - t * t;
    }
    case DLK_ACTIVATION_SIGMOID: {
      const double s = 1.0 / (1.0 + std::exp(-x));
      return s * (1.0 - s);
    }
    default: {
      const double s = 1.0 / (1.0 + std::exp(-x));
      return s + x * s * (1.0 - s);
    }
  }
}

// d act / dx expressed through the output y (PyTorch's result-based backward formulas).
double grad_ref_y(const Act& a, double y) {
  switch (a.kind) {
    case DLK_ACTIVATION_RELU: return y > 0 ? 1.0 : 0.0;
    case DLK_ACTIVATION_ELU: return y <= 0 ? y + a.alpha : 1.0;
    case DLK_ACTIVATION_TANH: return 1.0 - y * y;
    default: return y * (1.0 - y);  // sigmoid
  }
}

bool has_y_form(int kind) {
  return kind == DLK_ACTIVATION_RELU || kind == DLK_ACTIVATION_ELU || kind == DLK_ACTIVATION_TANH ||
         kind == DLK_ACTIVATION_SIGMOID;
}

dlk_activation_params params_of(const Act& a) {
  dlk_activation_params p;
  dlk_activation_params_init(&p);
  p.kind = static_cast<dlk_activation_kind>(a.kind);
  p.negative_slope = static_cast<float>(a.slope);
  p.alpha = static_cast<float>(a.alpha);
  return p;
}

// Random inputs N(0, 3) with exact zeros and a few large magnitudes mixed in.
std::vector<float> act_inputs(std::size_t n) {
  std::vector<float> v = randn(n, 3.0f);
  for (std::size_t i = 0; i < n; i += 11) v[i] = 0.0f;
  for (std::size_t i = 5; i < n; i += 97) v[i] = (i % 2 ? 30.0f : -30.0f);
  return v;
}

class Elementwise : public ::testing::Test {
 protected:
  void SetUp() override { SKIP_IF_NO_BACKEND(ctx); }
  Context ctx;
};

// ---------------------------------------------------------------------------------------------- activations

// Forward of one kind and dtype at n elements (misaligned: one element past a 16-byte boundary; in place: y = x).
void check_activation_forward(Context& ctx, const Act& act, DLDataType dt, std::int64_t n, bool misaligned,
                              bool in_place) {
  SCOPED_TRACE(std::string(kKindNames[act.kind]) + " " + dtype_str(dt) + " n " + std::to_string(n) +
               (misaligned ? " misaligned" : "") + (in_place ? " in place" : ""));
  const std::int64_t pad = misaligned ? 1 : 0;
  Tensor xs(ctx, {n + pad}, dt), ys(ctx, {n + pad}, dt);
  std::vector<float> xv = act_inputs(static_cast<std::size_t>(n + pad));
  xs.set(xv);
  ys.poison();
  const std::uint64_t off = static_cast<std::uint64_t>(pad) * dt.bits / 8;
  View x(xs, {n}, off), y(in_place ? xs : ys, {n}, off);
  std::vector<float> stored = xs.stored();
  dlk_activation_params p = params_of(act);
  ASSERT_EQ(dlk_activation_forward(ctx, &p, &x.t, &y.t), DLK_SUCCESS) << dlk_last_error();
  std::vector<float> out = (in_place ? xs : ys).get();
  out.erase(out.begin(), out.begin() + pad);
  std::vector<double> ref(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) ref[i] = act_ref(act, stored[i + pad]);
  EXPECT_TRUE(all_finite(out)) << "an element was not written, or is NaN/inf";
  EXPECT_CLOSE(out, ref, tolerance(dt));
}

TEST_F(Elementwise, ActivationForwardEveryKindDtypeAndSize) {
  DLK_TRACE_SEED();
  for (int kind : kKinds)
    for (DLDataType dt : kFloatTypes)
      for (std::int64_t n : {1, 7, 33, 1000, 4099})
        check_activation_forward(ctx, Act{kind, 0.01, 1.0}, dt, n, false, false);
}

TEST_F(Elementwise, ActivationForwardMisalignedAndInPlace) {
  DLK_TRACE_SEED();
  for (int kind : kKinds)
    for (DLDataType dt : kFloatTypes) {
      check_activation_forward(ctx, Act{kind, 0.2, 1.5}, dt, 1001, true, false);
      check_activation_forward(ctx, Act{kind, 0.2, 1.5}, dt, 1001, false, true);
      check_activation_forward(ctx, Act{kind, 0.2, 1.5}, dt, 37, true, true);
    }
}

TEST_F(Elementwise, ActivationParametersAndRanks) {
  DLK_TRACE_SEED();
  for (double slope : {0.0, 0.01, 0.3, -0.5, 2.0})
    check_activation_forward(ctx, Act{DLK_ACTIVATION_LEAKY_RELU, slope, 1.0}, f32(), 333, false, false);
  for (double alpha : {0.5, 1.0, 2.5, -1.0})
    check_activation_forward(ctx, Act{DLK_ACTIVATION_ELU, 0.01, alpha}, f32(), 333, false, false);
  // Rank 0, rank 4 and empty tensors.
  for (const Shape& s : {Shape{}, Shape{2, 3, 1, 5}, Shape{0, 4}, Shape{3, 0}}) {
    SCOPED_TRACE(shape_str(s));
    const std::int64_t n = product(s);
    Tensor x(ctx, s, f32()), y(ctx, s, f32());
    std::vector<float> xv = randn(static_cast<std::size_t>(n));
    x.set(xv);
    y.poison();
    dlk_activation_params p = params_of(Act{DLK_ACTIVATION_SILU});
    ASSERT_EQ(dlk_activation_forward(ctx, &p, &x.t, &y.t), DLK_SUCCESS) << dlk_last_error();
    std::vector<double> ref;
    for (float v : xv) ref.push_back(act_ref(Act{DLK_ACTIVATION_SILU}, v));
    EXPECT_CLOSE(y.get(), ref, 1e-5);
  }
}

// PyTorch's conventions at the kinks and for special values, exactly.
TEST_F(Elementwise, ActivationExactConventions) {
  const std::vector<float> xv = {0.0f, -0.0f, 1.0f, -2.0f, NAN, INFINITY, -INFINITY};
  auto run = [&](const Act& act, bool backward) {
    Tensor x(ctx, {7}, f32()), dy(ctx, {7}, f32()), out(ctx, {7}, f32());
    x.set(xv);
    dy.set(std::vector<float>(7, 1.0f));
    out.poison();
    dlk_activation_params p = params_of(act);
    dlk_status s = backward ? dlk_activation_backward(ctx, &p, &x.t, nullptr, &dy.t, &out.t)
                            : dlk_activation_forward(ctx, &p, &x.t, &out.t);
    EXPECT_EQ(s, DLK_SUCCESS) << dlk_last_error();
    return out.get();
  };
  std::vector<float> r = run(Act{DLK_ACTIVATION_RELU}, false);
  EXPECT_EQ(r[0], 0.0f);
  EXPECT_EQ(r[2], 1.0f);
  EXPECT_EQ(r[3], 0.0f);
  EXPECT_TRUE(std::isnan(r[4])) << "relu(NaN) is NaN in PyTorch";
  EXPECT_EQ(r[5], INFINITY);
  EXPECT_EQ(r[6], 0.0f);
  r = run(Act{DLK_ACTIVATION_RELU}, true);
  EXPECT_EQ(r[0], 0.0f) << "relu gradient at 0 is 0";
  EXPECT_EQ(r[2], 1.0f);
  r = run(Act{DLK_ACTIVATION_LEAKY_RELU, 0.25, 1.0}, true);
  EXPECT_EQ(r[0], 0.25f) << "leaky_relu gradient at 0 is the slope";
  EXPECT_EQ(r[2], 1.0f);
  EXPECT_EQ(r[3], 0.25f);
  r = run(Act{DLK_ACTIVATION_ELU, 0.01, 1.5}, true);
  EXPECT_EQ(r[0], 1.5f) << "elu gradient at 0 is alpha";
  EXPECT_EQ(r[2], 1.0f);
  r = run(Act{DLK_ACTIVATION_ELU, 0.01, 1.5}, false);
  EXPECT_EQ(r[6], -1.5f);
  r = run(Act{DLK_ACTIVATION_SIGMOID}, false);
  EXPECT_EQ(r[0], 0.5f);
  EXPECT_EQ(r[5], 1.0f);
  EXPECT_EQ(r[6], 0.0f);
  r = run(Act{DLK_ACTIVATION_TANH}, false);
  EXPECT_EQ(r[5], 1.0f);
  EXPECT_EQ(r[6], -1.0f);
  // Seed values: GELU(1) = 0.8413447, GELU_tanh(1) = 0.8411920, SiLU(1) = 0.7310586.
  EXPECT_NEAR(run(Act{DLK_ACTIVATION_GELU}, false)[2], 0.8413447, 1e-6);
  EXPECT_NEAR(run(Act{DLK_ACTIVATION_GELU_TANH}, false)[2], 0.8411920, 1e-6);
  EXPECT_NEAR(run(Act{DLK_ACTIVATION_SILU}, false)[2], 0.7310586, 1e-6);
}

// Backward of one kind and dtype from x or from y, against the fp64 derivative.
void check_activation_backward(Context& ctx, const Act& act, DLDataType dt, std::int64_t n, bool from_y,
                               bool misaligned, bool in_place) {
  SCOPED_TRACE(std::string(kKindNames[act.kind]) + " backward " + dtype_str(dt) + " n " + std::to_string(n) +
               (from_y ? " from y" : " from x") + (misaligned ? " misaligned" : "") + (in_place ? " in place" : ""));
  const std::int64_t pad = misaligned ? 1 : 0;
  const std::uint64_t off = static_cast<std::uint64_t>(pad) * dt.bits / 8;
  Tensor xs(ctx, {n + pad}, dt), ys(ctx, {n + pad}, dt), dys(ctx, {n + pad}, dt), dxs(ctx, {n + pad}, dt);
  xs.set(act_inputs(static_cast<std::size_t>(n + pad)));
  std::vector<float> dyv = randn(static_cast<std::size_t>(n + pad));
  dys.set(dyv);
  dxs.poison();
  View x(xs, {n}, off), y(ys, {n}, off), dy(dys, {n}, off), dx(in_place ? dys : dxs, {n}, off);
  dlk_activation_params p = params_of(act);
  ASSERT_EQ(dlk_activation_forward(ctx, &p, &x.t, &y.t), DLK_SUCCESS) << dlk_last_error();
  const std::vector<float> xst = xs.stored(), yst = ys.get(), dyst = dys.stored();
  ASSERT_EQ(dlk_activation_backward(ctx, &p, from_y ? nullptr : &x.t, from_y ? &y.t : nullptr, &dy.t, &dx.t),
            DLK_SUCCESS)
      << dlk_last_error();
  std::vector<float> out = (in_place ? dys : dxs).get();
  out.erase(out.begin(), out.begin() + pad);
  std::vector<double> ref(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    const std::size_t k = static_cast<std::size_t>(i + pad);
    ref[i] = dyst[k] * (from_y ? grad_ref_y(act, yst[k]) : grad_ref_x(act, xst[k]));
  }
  EXPECT_TRUE(all_finite(out)) << "an element was not written, or is NaN/inf";
  EXPECT_CLOSE(out, ref, tolerance(dt));
}

TEST_F(Elementwise, ActivationBackwardEveryKindDtypeAndForm) {
  DLK_TRACE_SEED();
  for (int kind : kKinds)
    for (DLDataType dt : kFloatTypes) {
      const Act act{kind, 0.1, 1.3};
      for (std::int64_t n : {1, 33, 4099}) check_activation_backward(ctx, act, dt, n, false, false, false);
      check_activation_backward(ctx, act, dt, 1001, false, true, false);
      check_activation_backward(ctx, act, dt, 1001, false, false, true);
      if (has_y_form(kind)) {
        check_activation_backward(ctx, act, dt, 1001, true, false, false);
        check_activation_backward(ctx, act, dt, 77, true, true, true);
      }
    }
}

// The backward (from x, and from y where it exists) against central differences of the library's fp32 forward.
TEST_F(Elementwise, ActivationBackwardMatchesNumericalGradients) {
  DLK_TRACE_SEED();
  const std::int64_t n = 257;
  for (int kind : kKinds) {
    const Act act{kind, 0.07, 1.3};
    SCOPED_TRACE(kKindNames[kind]);
    std::vector<float> xv = randn(static_cast<std::size_t>(n), 2.0f);
    for (float& v : xv)
      if (std::fabs(v) < 0.05f) v = v < 0 ? -0.05f - std::fabs(v) : 0.05f + v;  // away from the kinks
    const float h = 1e-2f;
    std::vector<float> xp(xv), xm(xv);
    for (std::size_t i = 0; i < xv.size(); ++i) {
      xp[i] += h;
      xm[i] -= h;
    }
    dlk_activation_params p = params_of(act);
    auto forward = [&](const std::vector<float>& in) {
      Tensor x(ctx, {n}, f32()), y(ctx, {n}, f32());
      x.set(in);
      EXPECT_EQ(dlk_activation_forward(ctx, &p, &x.t, &y.t), DLK_SUCCESS) << dlk_last_error();
      return y.get();
    };
    const std::vector<float> fp = forward(xp), fm = forward(xm);
    std::vector<float> dyv = randn(static_cast<std::size_t>(n));
    std::vector<double> numeric(static_cast<std::size_t>(n));
    for (std::size_t i = 0; i < numeric.size(); ++i)
      numeric[i] = dyv[i] * (static_cast<double>(fp[i]) - fm[i]) / (static_cast<double>(xp[i]) - xm[i]);
    Tensor x(ctx, {n}, f32()), y(ctx, {n}, f32()), dy(ctx, {n}, f32()), dx(ctx, {n}, f32());
    x.set(xv);
    dy.set(dyv);
    ASSERT_EQ(dlk_activation_forward(ctx, &p, &x.t, &y.t), DLK_SUCCESS) << dlk_last_error();
    for (bool from_y : {false, true}) {
      if (from_y && !has_y_form(kind)) continue;
      dx.poison();
      ASSERT_EQ(dlk_activation_backward(ctx, &p, from_y ? nullptr : &x.t, from_y ? &y.t : nullptr, &dy.t, &dx.t),
                DLK_SUCCESS)
          << dlk_last_error();
      EXPECT_CLOSE(dx.get(), numeric, 2e-3);
    }
  }
}

TEST_F(Elementwise, ActivationRejectsBadInput) {
  Tensor x(ctx, {5}, f32()), y(ctx, {5}, f32()), y6(ctx, {6}, f32()), xi(ctx, {5}, i32());
  y.set(std::vector<float>(5, 7.0f));
  dlk_activation_params p = params_of(Act{DLK_ACTIVATION_LEAKY_RELU});
  p.negative_slope = NAN;
  EXPECT_EQ(dlk_activation_forward(ctx, &p, &x.t, &y.t), DLK_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(dlk_last_error()).find("negative_slope"), std::string::npos) << dlk_last_error();
  EXPECT_EQ(y.get(), std::vector<float>(5, 7.0f)) << "output written by a rejected call";
  p = params_of(Act{DLK_ACTIVATION_ELU});
  p.alpha = INFINITY;
  EXPECT_EQ(dlk_activation_forward(ctx, &p, &x.t, &y.t), DLK_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(dlk_last_error()).find("alpha"), std::string::npos) << dlk_last_error();
  p = params_of(Act{DLK_ACTIVATION_RELU});
  std::memcpy(&p.kind, "\x63\0\0\0", 4);  // 99
  EXPECT_EQ(dlk_activation_forward(ctx, &p, &x.t, &y.t), DLK_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(dlk_last_error()).find("kind"), std::string::npos) << dlk_last_error();
  p = params_of(Act{DLK_ACTIVATION_GELU});
  EXPECT_EQ(dlk_activation_forward(ctx, &p, &x.t, &y6.t), DLK_ERROR_SHAPE);
  EXPECT_NE(std::string(dlk_last_error()).find("[6]"), std::string::npos) << dlk_last_error();
  EXPECT_EQ(dlk_activation_forward(ctx, &p, &xi.t, &y.t), DLK_ERROR_DTYPE);
  EXPECT_EQ(dlk_activation_backward(ctx, &p, nullptr, &y.t, &x.t, &y.t), DLK_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(dlk_last_error()).find("x is NULL"), std::string::npos) << dlk_last_error();
  p = params_of(Act{DLK_ACTIVATION_TANH});
  EXPECT_EQ(dlk_activation_backward(ctx, &p, nullptr, nullptr, &x.t, &y.t), DLK_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(dlk_activation_forward(nullptr, &p, &x.t, &y.t), DLK_ERROR_INVALID_ARGUMENT);
  // Non-contiguous tensors are rejected, not silently read densely.
  Tensor x10(ctx, {10}, f32());
  View strided(x10, {5});
  std::int64_t two = 2;
  strided.t.strides = &two;
  EXPECT_EQ(dlk_activation_forward(ctx, &p, &strided.t, &y.t), DLK_ERROR_LAYOUT);
  EXPECT_NE(std::string(dlk_last_error()).find("contiguous"), std::string::npos) << dlk_last_error();
  EXPECT_EQ(dlk_add_forward(ctx, &strided.t, &x.t, 1.0f, &y.t), DLK_ERROR_LAYOUT);
  // An output partially overlapping its input.
  View shifted(x10, {5}, 4);
  View head(x10, {5});
  EXPECT_EQ(dlk_activation_forward(ctx, &p, &head.t, &shifted.t), DLK_ERROR_LAYOUT);
  EXPECT_EQ(y.get(), std::vector<float>(5, 7.0f)) << "output written by a rejected call";
}

// ------------------------------------------------------------------------------------ broadcast arithmetic

// The broadcast shape of a and b (the test's own NumPy rule).
Shape bshape(const Shape& a, const Shape& b) {
  const std::size_t nd = std::max(a.size(), b.size());
  Shape out(nd);
  for (std::size_t d = 0; d < nd; ++d) {
    const std::int64_t sa = d + a.size() >= nd ? a[d + a.size() - nd] : 1;
    const std::int64_t sb = d + b.size() >= nd ? b[d + b.size() - nd] : 1;
    out[d] = sa == 1 ? sb : sa;
  }
  return out;
}

// Index into an operand of shape s for the multi-index idx of the (rank >= s) output.
std::int64_t bindex(const Shape& s, const Shape& out, const std::vector<std::int64_t>& idx) {
  std::int64_t off = 0;
  const std::size_t lead = out.size() - s.size();
  for (std::size_t d = 0; d < s.size(); ++d) off = off * s[d] + (s[d] == 1 ? 0 : idx[d + lead]);
  return off;
}

std::vector<std::int64_t> unravel(std::int64_t i, const Shape& s) {
  std::vector<std::int64_t> idx(s.size());
  for (std::size_t d = s.size(); d-- > 0;) {
    idx[d] = i % s[d];
    i /= s[d];
  }
  return idx;
}

struct BinaryCase {
  Shape a, b;
};

const std::vector<BinaryCase>& binary_cases() {
  static const std::vector<BinaryCase> cases = {
      {{3, 5, 7}, {3, 5, 7}},
      {{4, 1, 5}, {3, 1}},
      {{}, {2, 3}},
      {{2, 3}, {}},
      {{1}, {5}},
      {{5}, {1}},
      {{2, 3, 1}, {1, 1, 4}},
      {{6, 1}, {6}},
      {{33, 17}, {17}},
      {{17}, {33, 17}},
      {{2, 1, 3, 1, 5}, {4, 1, 5, 1}},
      {{4099}, {4099}},
      {{1000}, {}},
      {{3, 1, 1, 2, 1, 1, 2, 1}, {1, 2, 1, 1, 3, 1, 1, 2}},
      {{0, 3}, {3}},
      {{5, 300}, {300}},
      {{300}, {5, 300}},
      {{7, 1, 130}, {3, 130}},
  };
  return cases;
}

enum class Op { Add, Mul };

std::vector<double> binary_ref(Op op, const Shape& as, const std::vector<float>& a, const Shape& bs,
                               const std::vector<float>& b, double alpha) {
  const Shape os = bshape(as, bs);
  std::vector<double> out(static_cast<std::size_t>(product(os)));
  for (std::size_t i = 0; i < out.size(); ++i) {
    const auto idx = unravel(static_cast<std::int64_t>(i), os);
    const double va = a[bindex(as, os, idx)], vb = b[bindex(bs, os, idx)];
    out[i] = op == Op::Add ? va + alpha * vb : va * vb;
  }
  return out;
}

TEST_F(Elementwise, AddAndMulBroadcastEveryDtype) {
  DLK_TRACE_SEED();
  for (const BinaryCase& c : binary_cases())
    for (DLDataType dt : kFloatTypes)
      for (Op op : {Op::Add, Op::Mul}) {
        const Shape os = bshape(c.a, c.b);
        SCOPED_TRACE(std::string(op == Op::Add ? "add " : "mul ") + shape_str(c.a) + " " + shape_str(c.b) + " -> " +
                     shape_str(os) + " " + dtype_str(dt));
        Tensor a(ctx, c.a, dt), b(ctx, c.b, dt), out(ctx, os, dt);
        a.set(randn(a.numel(), 2.0f));
        b.set(randn(b.numel(), 2.0f));
        out.poison();
        const float alpha = -0.75f;
        const dlk_status s =
            op == Op::Add ? dlk_add_forward(ctx, &a.t, &b.t, alpha, &out.t) : dlk_mul_forward(ctx, &a.t, &b.t, &out.t);
        ASSERT_EQ(s, DLK_SUCCESS) << dlk_last_error();
        const std::vector<float> got = out.get();
        EXPECT_TRUE(all_finite(got));
        EXPECT_CLOSE(got, binary_ref(op, c.a, a.stored(), c.b, b.stored(), alpha), tolerance(dt));
      }
}

TEST_F(Elementwise, AddInPlaceMisalignedScaleAndResidual) {
  DLK_TRACE_SEED();
  for (DLDataType dt : kFloatTypes) {
    SCOPED_TRACE(dtype_str(dt));
    // out aliases a (same shape), b broadcast; then out aliases b.
    {
      Tensor a(ctx, {9, 7}, dt), b(ctx, {7}, dt);
      a.set(randn(63));
      b.set(randn(7));
      const auto ref = binary_ref(Op::Add, {9, 7}, a.stored(), {7}, b.stored(), 2.0);
      ASSERT_EQ(dlk_add_forward(ctx, &a.t, &b.t, 2.0f, &a.t), DLK_SUCCESS) << dlk_last_error();
      EXPECT_CLOSE(a.get(), ref, tolerance(dt));
      Tensor c(ctx, {9, 1}, dt), d(ctx, {9, 7}, dt);
      c.set(randn(9));
      d.set(randn(63));
      const auto ref2 = binary_ref(Op::Mul, {9, 1}, c.stored(), {9, 7}, d.stored(), 1.0);
      ASSERT_EQ(dlk_mul_forward(ctx, &c.t, &d.t, &d.t), DLK_SUCCESS) << dlk_last_error();
      EXPECT_CLOSE(d.get(), ref2, tolerance(dt));
    }
    // Misaligned same-shape operands take the scalar path.
    {
      const std::int64_t n = 1001;
      Tensor as(ctx, {n + 1}, dt), bs(ctx, {n + 1}, dt), os(ctx, {n + 1}, dt);
      as.set(randn(n + 1));
      bs.set(randn(n + 1));
      os.poison();
      const std::uint64_t off = dt.bits / 8;
      View a(as, {n}, off), b(bs, {n}, off), o(os, {n}, off);
      ASSERT_EQ(dlk_add_forward(ctx, &a.t, &b.t, 0.5f, &o.t), DLK_SUCCESS) << dlk_last_error();
      std::vector<float> av = as.stored(), bv = bs.stored(), got = os.get();
      std::vector<double> ref;
      for (std::int64_t i = 1; i <= n; ++i) ref.push_back(av[i] + 0.5 * bv[i]);
      got.erase(got.begin());
      EXPECT_CLOSE(got, ref, tolerance(dt));
    }
    // scale: out of place and in place.
    {
      Tensor x(ctx, {33, 3}, dt), y(ctx, {33, 3}, dt);
      x.set(randn(99));
      y.poison();
      std::vector<double> ref;
      for (float v : x.stored()) ref.push_back(-1.5 * v);
      ASSERT_EQ(dlk_scale(ctx, &x.t, -1.5f, &y.t), DLK_SUCCESS) << dlk_last_error();
      EXPECT_CLOSE(y.get(), ref, tolerance(dt));
      ASSERT_EQ(dlk_scale(ctx, &x.t, -1.5f, &x.t), DLK_SUCCESS) << dlk_last_error();
      EXPECT_CLOSE(x.get(), ref, tolerance(dt));
    }
    // residual add: same shape and broadcast x.
    for (const Shape& xs : {Shape{4, 5, 6}, Shape{6}, Shape{5, 1}, Shape{}}) {
      SCOPED_TRACE("residual x " + shape_str(xs));
      Tensor x(ctx, xs, dt), y(ctx, {4, 5, 6}, dt);
      x.set(randn(x.numel()));
      y.set(randn(120));
      const auto ref = binary_ref(Op::Add, {4, 5, 6}, y.stored(), xs, x.stored(), 0.3);
      ASSERT_EQ(dlk_residual_add(ctx, &x.t, 0.3f, &y.t), DLK_SUCCESS) << dlk_last_error();
      EXPECT_CLOSE(y.get(), ref, tolerance(dt));
    }
  }
}

// sum_to_shape reference: out[j] = scale * sum of x over the elements broadcasting to j.
std::vector<double> sum_to_ref(const Shape& xs, const std::vector<float>& x, const Shape& os, double scale,
                               const std::vector<double>* w = nullptr) {
  std::vector<double> out(static_cast<std::size_t>(product(os)), 0.0);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const auto idx = unravel(static_cast<std::int64_t>(i), xs);
    out[bindex(os, xs, idx)] += static_cast<double>(x[i]) * (w ? (*w)[i] : 1.0);
  }
  for (double& v : out) v *= scale;
  return out;
}

// A sum that nearly cancels is ill-conditioned relative to itself, so reduced outputs are judged against the sums of
// |terms| (what their rounding error scales with): ||got - ref|| / max(||ref||, ||sum |terms| ||) <= tol.
void expect_reduced_close(const std::vector<float>& got, const Shape& xs, const std::vector<float>& x, const Shape& os,
                          double scale, double tol, const std::vector<double>* w = nullptr) {
  const std::vector<double> ref = sum_to_ref(xs, x, os, scale, w);
  std::vector<float> ax(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) ax[i] = std::fabs(x[i]);
  std::vector<double> aw;
  if (w) {
    aw = *w;
    for (double& v : aw) v = std::fabs(v);
  }
  const std::vector<double> mag = sum_to_ref(xs, ax, os, std::fabs(scale), w ? &aw : nullptr);
  ASSERT_EQ(got.size(), ref.size());
  double num = 0, den = 0, dmag = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    ASSERT_FALSE(std::isnan(got[i])) << "NaN at " << i;
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
    dmag += mag[i] * mag[i];
  }
  const double norm = std::sqrt(std::max(den, dmag));
  const double err = norm > 0 ? std::sqrt(num) / norm : std::sqrt(num);
  EXPECT_LE(err, tol) << "relative error (against the sums of |terms|) " << err;
}

TEST_F(Elementwise, SumToShapeEveryPatternAndDtype) {
  DLK_TRACE_SEED();
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{4, 3, 5}, {3, 1}},
      {{4, 3, 5}, {}},
      {{4, 3, 5}, {1}},
      {{4, 3, 5}, {4, 1, 5}},
      {{4, 3, 5}, {5}},
      {{4, 3, 5}, {4, 3, 5}},
      {{3000}, {}},
      {{2, 3000}, {2, 1}},
      {{40, 300}, {40, 1}},
      {{3, 5000}, {5000}},
      {{33, 17}, {17}},
      {{0, 3}, {3}},
      {{2, 1, 3, 4, 5}, {1, 3, 1, 5}},
  };
  for (const auto& [xs, os] : cases)
    for (DLDataType dt : kFloatTypes) {
      SCOPED_TRACE(shape_str(xs) + " -> " + shape_str(os) + " " + dtype_str(dt));
      Tensor x(ctx, xs, dt), out(ctx, os, dt);
      x.set(randn(x.numel()));
      out.poison();
      ASSERT_EQ(dlk_sum_to_shape(ctx, &x.t, 0.5f, &out.t), DLK_SUCCESS) << dlk_last_error();
      const std::vector<float> got = out.get();
      EXPECT_TRUE(all_finite(got));
      expect_reduced_close(got, xs, x.stored(), os, 0.5, tolerance(dt));
    }
}

TEST_F(Elementwise, SumToShapeIsDeterministic) {
  DLK_TRACE_SEED();
  for (const auto& [xs, os] :
       std::vector<std::pair<Shape, Shape>>{{{5000}, {}}, {{64, 257}, {257}}, {{257, 64}, {257, 1}}}) {
    Tensor x(ctx, xs, f32()), o1(ctx, os, f32()), o2(ctx, os, f32());
    x.set(randn(x.numel()));
    ASSERT_EQ(dlk_sum_to_shape(ctx, &x.t, 1.0f, &o1.t), DLK_SUCCESS) << dlk_last_error();
    ASSERT_EQ(dlk_sum_to_shape(ctx, &x.t, 1.0f, &o2.t), DLK_SUCCESS) << dlk_last_error();
    EXPECT_EQ(o1.get(), o2.get()) << shape_str(xs) << " -> " << shape_str(os);
  }
}

TEST_F(Elementwise, AddAndMulBackwardEveryPatternAndDtype) {
  DLK_TRACE_SEED();
  for (const BinaryCase& c : binary_cases())
    for (DLDataType dt : kFloatTypes) {
      const Shape os = bshape(c.a, c.b);
      SCOPED_TRACE(shape_str(c.a) + " " + shape_str(c.b) + " -> " + shape_str(os) + " " + dtype_str(dt));
      Tensor a(ctx, c.a, dt), b(ctx, c.b, dt), dout(ctx, os, dt), da(ctx, c.a, dt), db(ctx, c.b, dt);
      a.set(randn(a.numel()));
      b.set(randn(b.numel()));
      dout.set(randn(dout.numel()));
      const std::vector<float> dv = dout.stored();
      da.poison();
      db.poison();
      ASSERT_EQ(dlk_add_backward(ctx, &dout.t, -0.75f, &da.t, &db.t), DLK_SUCCESS) << dlk_last_error();
      expect_reduced_close(da.get(), os, dv, c.a, 1.0, tolerance(dt));
      expect_reduced_close(db.get(), os, dv, c.b, -0.75, tolerance(dt));
      // mul: da = sum_to(dout * b), db = sum_to(dout * a).
      std::vector<double> bfull(dv.size()), afull(dv.size());
      const std::vector<float> av = a.stored(), bv = b.stored();
      for (std::size_t i = 0; i < dv.size(); ++i) {
        const auto idx = unravel(static_cast<std::int64_t>(i), os);
        afull[i] = av[bindex(c.a, os, idx)];
        bfull[i] = bv[bindex(c.b, os, idx)];
      }
      da.poison();
      db.poison();
      ASSERT_EQ(dlk_mul_backward(ctx, &a.t, &b.t, &dout.t, &da.t, &db.t), DLK_SUCCESS) << dlk_last_error();
      expect_reduced_close(da.get(), os, dv, c.a, 1.0, tolerance(dt), &bfull);
      expect_reduced_close(db.get(), os, dv, c.b, 1.0, tolerance(dt), &afull);
      // Each gradient alone.
      da.poison();
      ASSERT_EQ(dlk_mul_backward(ctx, nullptr, &b.t, &dout.t, &da.t, nullptr), DLK_SUCCESS) << dlk_last_error();
      expect_reduced_close(da.get(), os, dv, c.a, 1.0, tolerance(dt), &bfull);
    }
}

// d/da and d/db of loss = sum(w * op(a, b)) by central differences of the library's forward, against its backward.
TEST_F(Elementwise, AddAndMulBackwardMatchNumericalGradients) {
  DLK_TRACE_SEED();
  for (const BinaryCase& c :
       std::vector<BinaryCase>{{{4, 1, 5}, {3, 1}}, {{}, {2, 3}}, {{2, 3}, {1}}, {{3, 4}, {3, 4}}})
    for (Op op : {Op::Add, Op::Mul}) {
      const Shape os = bshape(c.a, c.b);
      SCOPED_TRACE(std::string(op == Op::Add ? "add " : "mul ") + shape_str(c.a) + " " + shape_str(c.b));
      std::vector<float> av = randn(static_cast<std::size_t>(product(c.a))),
                         bv = randn(static_cast<std::size_t>(product(c.b)));
      const std::vector<float> wv = randn(static_cast<std::size_t>(product(os)));
      const float alpha = 1.7f;
      auto loss = [&](const std::vector<float>& ain, const std::vector<float>& bin) {
        Tensor a(ctx, c.a, f32()), b(ctx, c.b, f32()), out(ctx, os, f32());
        a.set(ain);
        b.set(bin);
        EXPECT_EQ(
            op == Op::Add ? dlk_add_forward(ctx, &a.t, &b.t, alpha, &out.t) : dlk_mul_forward(ctx, &a.t, &b.t, &out.t),
            DLK_SUCCESS)
            << dlk_last_error();
        const std::vector<float> o = out.get();
        double l = 0;
        for (std::size_t i = 0; i < o.size(); ++i) l += static_cast<double>(o[i]) * wv[i];
        return l;
      };
      auto numeric = [&](bool wrt_a) {
        std::vector<float>& v = wrt_a ? av : bv;
        std::vector<double> g(v.size());
        for (std::size_t k = 0; k < v.size(); ++k) {
          const float keep = v[k], h = 1e-2f;
          v[k] = keep + h;
          const float hp = v[k];
          const double lp = loss(av, bv);
          v[k] = keep - h;
          const float hm = v[k];
          const double lm = loss(av, bv);
          v[k] = keep;
          g[k] = (lp - lm) / (static_cast<double>(hp) - hm);
        }
        return g;
      };
      Tensor a(ctx, c.a, f32()), b(ctx, c.b, f32()), w(ctx, os, f32()), da(ctx, c.a, f32()), db(ctx, c.b, f32());
      a.set(av);
      b.set(bv);
      w.set(wv);
      da.poison();
      db.poison();
      ASSERT_EQ(op == Op::Add ? dlk_add_backward(ctx, &w.t, alpha, &da.t, &db.t)
                              : dlk_mul_backward(ctx, &a.t, &b.t, &w.t, &da.t, &db.t),
                DLK_SUCCESS)
          << dlk_last_error();
      EXPECT_CLOSE(da.get(), numeric(true), 1e-2);  // fp32 central differences: noisy; a wrong backward is O(1) off
      EXPECT_CLOSE(db.get(), numeric(false), 1e-2);
    }
}

TEST_F(Elementwise, BroadcastRejectsBadInput) {
  Tensor a(ctx, {4, 1, 5}, f32()), b(ctx, {3, 2}, f32()), out(ctx, {4, 3, 5}, f32()), b31(ctx, {3, 1}, f32());
  out.set(std::vector<float>(60, 3.0f));
  EXPECT_EQ(dlk_add_forward(ctx, &a.t, &b.t, 1.0f, &out.t), DLK_ERROR_SHAPE);
  std::string e = dlk_last_error();
  EXPECT_NE(e.find("[4,1,5]"), std::string::npos) << e;
  EXPECT_NE(e.find("[3,2]"), std::string::npos) << e;
  EXPECT_NE(e.find("broadcast"), std::string::npos) << e;
  EXPECT_EQ(dlk_mul_forward(ctx, &a.t, &b.t, &out.t), DLK_ERROR_SHAPE);
  Tensor wrong(ctx, {4, 3, 6}, f32());
  EXPECT_EQ(dlk_add_forward(ctx, &a.t, &b31.t, 1.0f, &wrong.t), DLK_ERROR_SHAPE);
  e = dlk_last_error();
  EXPECT_NE(e.find("[4,3,5]"), std::string::npos) << e;
  EXPECT_EQ(dlk_add_forward(ctx, &a.t, &b31.t, NAN, &out.t), DLK_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(dlk_last_error()).find("alpha"), std::string::npos) << dlk_last_error();
  Tensor b16(ctx, {3, 1}, f16());
  EXPECT_EQ(dlk_add_forward(ctx, &a.t, &b16.t, 1.0f, &out.t), DLK_ERROR_DTYPE);
  // An output aliasing a broadcast operand.
  Tensor big(ctx, {60}, f32());
  View alias(big, {4, 1, 5});
  View bigout(big, {4, 3, 5});
  EXPECT_EQ(dlk_add_forward(ctx, &alias.t, &b31.t, 1.0f, &bigout.t), DLK_ERROR_LAYOUT);
  EXPECT_EQ(out.get(), std::vector<float>(60, 3.0f)) << "output written by a rejected call";
  // Reductions to a shape that does not broadcast.
  Tensor s(ctx, {4, 2}, f32());
  EXPECT_EQ(dlk_sum_to_shape(ctx, &out.t, 1.0f, &s.t), DLK_ERROR_SHAPE);
  e = dlk_last_error();
  EXPECT_NE(e.find("[4,2]"), std::string::npos) << e;
  EXPECT_NE(e.find("[4,3,5]"), std::string::npos) << e;
  EXPECT_EQ(dlk_add_backward(ctx, &out.t, 1.0f, &s.t, nullptr), DLK_ERROR_SHAPE);
  EXPECT_EQ(dlk_mul_backward(ctx, &a.t, nullptr, &out.t, &a.t, nullptr), DLK_ERROR_INVALID_ARGUMENT);
  Tensor y(ctx, {5}, f32()), x(ctx, {3, 5}, f32());
  EXPECT_EQ(dlk_residual_add(ctx, &x.t, 1.0f, &y.t), DLK_ERROR_SHAPE);
  EXPECT_NE(std::string(dlk_last_error()).find("[3,5]"), std::string::npos) << dlk_last_error();
}

// --------------------------------------------------------------------------------------------- concat / split

// Reference concatenation of parts (row-major values) along dim.
std::vector<float> concat_ref(const std::vector<Shape>& shapes, const std::vector<std::vector<float>>& parts, int dim) {
  std::int64_t outer = 1, inner = 1;
  const Shape& s0 = shapes[0];
  for (int d = 0; d < dim; ++d) outer *= s0[d];
  for (std::size_t d = dim + 1; d < s0.size(); ++d) inner *= s0[d];
  std::vector<float> out;
  for (std::int64_t o = 0; o < outer; ++o)
    for (std::size_t p = 0; p < parts.size(); ++p) {
      const std::int64_t w = shapes[p][dim] * inner;
      out.insert(out.end(), parts[p].begin() + o * w, parts[p].begin() + (o + 1) * w);
    }
  return out;
}

void check_concat_split(Context& ctx, const Shape& base, int dim, const std::vector<std::int64_t>& sizes,
                        DLDataType dt) {
  const int nd = static_cast<int>(base.size());
  const int d = dim < 0 ? dim + nd : dim;
  std::vector<Shape> shapes;
  std::vector<std::unique_ptr<Tensor>> parts;
  std::vector<std::vector<float>> vals;
  Shape js = base;
  js[d] = 0;
  for (std::int64_t s : sizes) {
    Shape ps = base;
    ps[d] = s;
    js[d] += s;
    shapes.push_back(ps);
    parts.push_back(std::make_unique<Tensor>(ctx, ps, dt));
    std::vector<float> v = randn(static_cast<std::size_t>(product(ps)), 4.0f);
    if (dt.code == kDLInt)
      for (float& x : v) x = std::round(x * 100);
    parts.back()->set(v);
    vals.push_back(parts.back()->stored());
  }
  SCOPED_TRACE("concat " + std::to_string(sizes.size()) + " parts -> " + shape_str(js) + " dim " + std::to_string(dim) +
               " " + dtype_str(dt));
  Tensor joined(ctx, js, dt);
  joined.poison();
  std::vector<const DLTensor*> in;
  for (auto& p : parts) in.push_back(&p->t);
  ASSERT_EQ(dlk_concat(ctx, in.data(), static_cast<int>(in.size()), dim, &joined.t), DLK_SUCCESS) << dlk_last_error();
  const std::vector<float> ref = concat_ref(shapes, vals, d);
  const std::vector<float> got = joined.get();
  EXPECT_EQ(got, ref) << "concat differs";
  // split back into fresh (poisoned) outputs.
  std::vector<std::unique_ptr<Tensor>> outs;
  std::vector<DLTensor*> op;
  for (const Shape& s : shapes) {
    outs.push_back(std::make_unique<Tensor>(ctx, s, dt));
    outs.back()->poison();
    op.push_back(&outs.back()->t);
  }
  ASSERT_EQ(dlk_split(ctx, &joined.t, dim, op.data(), static_cast<int>(op.size())), DLK_SUCCESS) << dlk_last_error();
  for (std::size_t p = 0; p < outs.size(); ++p) EXPECT_EQ(outs[p]->get(), vals[p]) << "split part " << p;
}

TEST_F(Elementwise, ConcatAndSplitEveryDimAndDtype) {
  DLK_TRACE_SEED();
  for (DLDataType dt : {f32(), f16(), bf16(), i32(), u8()}) {
    check_concat_split(ctx, {2, 3, 4}, 0, {1, 3, 2}, dt);
    check_concat_split(ctx, {2, 3, 4}, 1, {1, 0, 5}, dt);
    check_concat_split(ctx, {2, 3, 4}, 2, {3, 4, 1}, dt);
    check_concat_split(ctx, {2, 3, 4}, -1, {8, 8}, dt);
    check_concat_split(ctx, {3, 5, 7}, -2, {5, 5, 5, 5}, dt);  // U-Net style skip concat along channels
    check_concat_split(ctx, {7}, 0, {7, 1, 33}, dt);
  }
  // More parts than one launch holds, odd and aligned widths.
  std::vector<std::int64_t> many;
  for (int i = 0; i < 37; ++i) many.push_back(i % 5);
  check_concat_split(ctx, {2, 1, 3}, 1, many, f32());
  check_concat_split(ctx, {2, 1, 3}, 1, many, f16());
  // Rows longer than one block-chunk of the CUDA kernel (16-byte and 2-byte units).
  check_concat_split(ctx, {2, 2, 1000}, 1, {3, 2}, f32());
  check_concat_split(ctx, {2, 2, 1001}, 1, {3, 2}, f16());
  check_concat_split(ctx, {4, 8}, 0, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18}, f32());
}

TEST_F(Elementwise, ConcatRejectsBadInput) {
  Tensor a(ctx, {2, 3, 4}, f32()), b(ctx, {2, 3, 5}, f32()), c(ctx, {2, 3, 4}, f16()), out(ctx, {2, 6, 4}, f32());
  out.set(std::vector<float>(48, 2.0f));
  const DLTensor* in[] = {&a.t, &b.t};
  EXPECT_EQ(dlk_concat(ctx, in, 2, 1, &out.t), DLK_ERROR_SHAPE);
  std::string e = dlk_last_error();
  EXPECT_NE(e.find("inputs[1]"), std::string::npos) << e;
  EXPECT_NE(e.find("dim 2"), std::string::npos) << e;
  const DLTensor* in2[] = {&a.t, &c.t};
  EXPECT_EQ(dlk_concat(ctx, in2, 2, 1, &out.t), DLK_ERROR_DTYPE);
  EXPECT_NE(std::string(dlk_last_error()).find("inputs[1]"), std::string::npos) << dlk_last_error();
  const DLTensor* in3[] = {&a.t, &a.t, &a.t};
  EXPECT_EQ(dlk_concat(ctx, in3, 3, 1, &out.t), DLK_ERROR_SHAPE);
  EXPECT_NE(std::string(dlk_last_error()).find("add up to 9"), std::string::npos) << dlk_last_error();
  EXPECT_EQ(dlk_concat(ctx, in3, 2, 3, &out.t), DLK_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(dlk_concat(ctx, in3, 0, 1, &out.t), DLK_ERROR_INVALID_ARGUMENT);
  const DLTensor* in4[] = {&a.t, nullptr};
  EXPECT_EQ(dlk_concat(ctx, in4, 2, 1, &out.t), DLK_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(dlk_last_error()).find("inputs[1] is NULL"), std::string::npos) << dlk_last_error();
  EXPECT_EQ(out.get(), std::vector<float>(48, 2.0f)) << "output written by a rejected call";
  // Split outputs that overlap each other.
  View o1(a, {2, 3, 2}), o2(a, {2, 3, 2});
  DLTensor* outs[] = {&o1.t, &o2.t};
  Tensor x(ctx, {2, 3, 4}, f32());
  EXPECT_EQ(dlk_split(ctx, &x.t, 2, outs, 2), DLK_ERROR_LAYOUT);
}

}  // namespace
}  // namespace dlk::test
