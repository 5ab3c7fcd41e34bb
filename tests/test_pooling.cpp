// Pooling family (max / avg / adaptive-avg pool 2d, max unpool 2d, upsample nearest / bilinear), forward and
// backward, on the backend DLK_TEST_BACKEND names, against independent fp64 references written here from PyTorch's
// documented rules (output-size formula computed with floating floor/ceil, windows walked tap by tap). Odd sizes
// (H, W in {1, 7, 13}), stride / padding / dilation / ceil_mode combinations, every dtype, the saved max-pool
// indices compared exactly, numerical gradients (central differences of the fp64 reference forward) for every
// backward, bitwise repeatability in deterministic mode, and bad inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "test_util.h"

namespace dlk::test {
namespace {

const DLDataType kFloatTypes[] = {f32(), f16(), bf16()};

struct Shape4 {
  std::int64_t n, c, h, w;
  std::vector<std::int64_t> v() const { return {n, c, h, w}; }
  std::int64_t size() const { return n * c * h * w; }
};

std::string str(const Shape4& s) {
  return "[" + std::to_string(s.n) + "," + std::to_string(s.c) + "," + std::to_string(s.h) + "," +
         std::to_string(s.w) + "]";
}

std::vector<double> dbl(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }
std::vector<double> absd(const std::vector<float>& v) {
  std::vector<double> a(v.begin(), v.end());
  for (double& x : a) x = std::fabs(x);
  return a;
}

// ------------------------------------------------------------------------------------------ references

struct Win {
  int kh, kw, sh, sw, ph, pw, dh, dw;
  bool ceil;
};

// PyTorch's documented output size, computed in floating point.
std::int64_t out_size(std::int64_t in, int k, int s, int p, int d, bool ceil_mode) {
  const double v = static_cast<double>(in + 2 * p - d * (k - 1) - 1) / s;
  std::int64_t o = static_cast<std::int64_t>(ceil_mode ? std::ceil(v) : std::floor(v)) + 1;
  if (ceil_mode && (o - 1) * s >= in + p) --o;
  return o;
}

// Max pool: window taps h = oh*s - p + i*d inside the input; first strict maximum wins.
void ref_max_pool(const Shape4& s, const Win& w, const std::vector<double>& x, std::int64_t oh, std::int64_t ow,
                  std::vector<double>* y, std::vector<std::int64_t>* idx) {
  y->assign(static_cast<std::size_t>(s.n * s.c * oh * ow), 0.0);
  idx->assign(y->size(), -1);
  for (std::int64_t p = 0; p < s.n * s.c; ++p)
    for (std::int64_t a = 0; a < oh; ++a)
      for (std::int64_t b = 0; b < ow; ++b) {
        double best = -INFINITY;
        std::int64_t bi = -1;
        for (int i = 0; i < w.kh; ++i)
          for (int j = 0; j < w.kw; ++j) {
            const std::int64_t h = a * w.sh - w.ph + i * w.dh, ww = b * w.sw - w.pw + j * w.dw;
            if (h < 0 || h >= s.h || ww < 0 || ww >= s.w) continue;
            const double v = x[static_cast<std::size_t>(p * s.h * s.w + h * s.w + ww)];
            if (bi < 0 || v > best) {
              best = v;
              bi = h * s.w + ww;
            }
          }
        (*y)[static_cast<std::size_t>((p * oh + a) * ow + b)] = best;
        (*idx)[static_cast<std::size_t>((p * oh + a) * ow + b)] = bi;
      }
}

// Avg pool: taps h = oh*s - p + i; padded count = taps inside [-p, H + p); divisor per PyTorch's rule.
std::vector<double> ref_avg_pool(const Shape4& s, const Win& w, const std::vector<double>& x, std::int64_t oh,
                                 std::int64_t ow, bool include_pad, int divisor) {
  std::vector<double> y(static_cast<std::size_t>(s.n * s.c * oh * ow), 0.0);
  for (std::int64_t p = 0; p < s.n * s.c; ++p)
    for (std::int64_t a = 0; a < oh; ++a)
      for (std::int64_t b = 0; b < ow; ++b) {
        double sum = 0.0;
        std::int64_t inside = 0, padded_h = 0, padded_w = 0;
        for (int i = 0; i < w.kh; ++i) {
          const std::int64_t h = a * w.sh - w.ph + i;
          if (h < s.h + w.ph) ++padded_h;
        }
        for (int j = 0; j < w.kw; ++j) {
          const std::int64_t ww = b * w.sw - w.pw + j;
          if (ww < s.w + w.pw) ++padded_w;
        }
        for (int i = 0; i < w.kh; ++i)
          for (int j = 0; j < w.kw; ++j) {
            const std::int64_t h = a * w.sh - w.ph + i, ww = b * w.sw - w.pw + j;
            if (h < 0 || h >= s.h || ww < 0 || ww >= s.w) continue;
            sum += x[static_cast<std::size_t>(p * s.h * s.w + h * s.w + ww)];
            ++inside;
          }
        const double div = divisor > 0 ? divisor : include_pad ? static_cast<double>(padded_h * padded_w) : inside;
        y[static_cast<std::size_t>((p * oh + a) * ow + b)] = sum / div;
      }
  return y;
}

std::vector<double> ref_adaptive(const Shape4& s, const std::vector<double>& x, std::int64_t oh, std::int64_t ow) {
  std::vector<double> y(static_cast<std::size_t>(s.n * s.c * oh * ow), 0.0);
  auto lo = [](std::int64_t o, std::int64_t in, std::int64_t out) {
    return static_cast<std::int64_t>(std::floor(static_cast<double>(o * in) / out));
  };
  auto hi = [](std::int64_t o, std::int64_t in, std::int64_t out) {
    return static_cast<std::int64_t>(std::ceil(static_cast<double>((o + 1) * in) / out));
  };
  for (std::int64_t p = 0; p < s.n * s.c; ++p)
    for (std::int64_t a = 0; a < oh; ++a)
      for (std::int64_t b = 0; b < ow; ++b) {
        double sum = 0.0;
        std::int64_t cnt = 0;
        for (std::int64_t h = lo(a, s.h, oh); h < hi(a, s.h, oh); ++h)
          for (std::int64_t ww = lo(b, s.w, ow); ww < hi(b, s.w, ow); ++ww) {
            sum += x[static_cast<std::size_t>(p * s.h * s.w + h * s.w + ww)];
            ++cnt;
          }
        y[static_cast<std::size_t>((p * oh + a) * ow + b)] = sum / cnt;
      }
  return y;
}

// One axis of upsampling: the taps and weights of output o (PyTorch's rules, recomputed in double).
struct Tap {
  std::int64_t i0, i1;
  double l0, l1;
};
Tap ref_tap(std::int64_t o, std::int64_t in, std::int64_t out, bool bilinear, bool align, double scale) {
  if (in == out) return {o, o, 1.0, 0.0};
  if (!bilinear) {
    const double r = scale > 0 ? 1.0 / scale : static_cast<double>(in) / out;
    std::int64_t i = std::min<std::int64_t>(static_cast<std::int64_t>(std::floor(o * r + 1e-9)), in - 1);
    if (out == 2 * in) i = o / 2;
    return {i, i, 1.0, 0.0};
  }
  double real;
  if (align) {
    real = out > 1 ? static_cast<double>(in - 1) / (out - 1) * o : 0.0;
  } else {
    const double r = scale > 0 ? 1.0 / scale : static_cast<double>(in) / out;
    real = std::max(r * (o + 0.5) - 0.5, 0.0);
  }
  const std::int64_t i0 = std::min<std::int64_t>(static_cast<std::int64_t>(real), in - 1);
  const std::int64_t i1 = i0 < in - 1 ? i0 + 1 : i0;
  const double l1 = std::min(std::max(real - i0, 0.0), 1.0);
  return {i0, i1, 1.0 - l1, l1};
}

struct Up {
  bool bilinear, align;
  double scale_h, scale_w;  // 0: from the sizes
};

std::vector<double> ref_upsample(const Shape4& s, const Up& u, const std::vector<double>& x, std::int64_t oh,
                                 std::int64_t ow) {
  std::vector<double> y(static_cast<std::size_t>(s.n * s.c * oh * ow), 0.0);
  for (std::int64_t p = 0; p < s.n * s.c; ++p)
    for (std::int64_t a = 0; a < oh; ++a) {
      const Tap th = ref_tap(a, s.h, oh, u.bilinear, u.align, u.scale_h);
      for (std::int64_t b = 0; b < ow; ++b) {
        const Tap tw = ref_tap(b, s.w, ow, u.bilinear, u.align, u.scale_w);
        auto at = [&](std::int64_t h, std::int64_t w) { return x[static_cast<std::size_t>(p * s.h * s.w + h * s.w + w)]; };
        y[static_cast<std::size_t>((p * oh + a) * ow + b)] =
            th.l0 * (tw.l0 * at(th.i0, tw.i0) + tw.l1 * at(th.i0, tw.i1)) +
            th.l1 * (tw.l0 * at(th.i1, tw.i0) + tw.l1 * at(th.i1, tw.i1));
      }
    }
  return y;
}

// Central-difference gradient of L(x) = sum(w * f(x)) for an fp64 function f.
std::vector<double> numeric_grad(const std::vector<double>& x, const std::vector<double>& w,
                                 const std::function<std::vector<double>(const std::vector<double>&)>& f,
                                 double step = 1e-3) {
  std::vector<double> g(x.size());
  std::vector<double> xp = x;
  for (std::size_t i = 0; i < x.size(); ++i) {
    xp[i] = x[i] + step;
    const std::vector<double> a = f(xp);
    xp[i] = x[i] - step;
    const std::vector<double> b = f(xp);
    xp[i] = x[i];
    double d = 0.0;
    for (std::size_t k = 0; k < a.size(); ++k) d += w[k] * (a[k] - b[k]);
    g[i] = d / (2 * step);
  }
  return g;
}

dlk_pool2d_params pool_params(const Win& w) {
  dlk_pool2d_params p;
  dlk_pool2d_params_init(&p);
  p.kernel_h = w.kh;
  p.kernel_w = w.kw;
  p.stride_h = w.sh;
  p.stride_w = w.sw;
  p.pad_h = w.ph;
  p.pad_w = w.pw;
  p.dilation_h = w.dh;
  p.dilation_w = w.dw;
  p.ceil_mode = w.ceil;
  return p;
}

// Max-pool windows: (k, s, p, d, ceil) per axis, PyTorch-valid (pad <= k/2).
const Win kMaxWins[] = {
    {1, 1, 1, 1, 0, 0, 1, 1, false}, {2, 2, 2, 2, 0, 0, 1, 1, false}, {3, 3, 2, 2, 1, 1, 1, 1, true},
    {3, 3, 1, 1, 1, 1, 2, 2, false}, {3, 2, 2, 1, 1, 0, 1, 2, true},  {5, 4, 3, 2, 2, 1, 1, 1, true},
    {2, 3, 1, 2, 1, 1, 3, 1, false}, {3, 3, 3, 3, 0, 0, 1, 1, true},
};
const Win kAvgWins[] = {
    {1, 1, 1, 1, 0, 0, 1, 1, false}, {2, 2, 2, 2, 0, 0, 1, 1, false}, {3, 3, 2, 2, 1, 1, 1, 1, true},
    {3, 2, 1, 2, 1, 1, 1, 1, false}, {5, 4, 3, 2, 2, 1, 1, 1, true},  {3, 3, 3, 3, 0, 0, 1, 1, true},
};
const Shape4 kShapes[] = {{2, 3, 7, 13}, {1, 2, 13, 7}, {2, 1, 1, 7}, {1, 3, 7, 1}, {1, 1, 1, 1}, {2, 2, 13, 13}};

// Values with no ties within a plane: a shuffled ramp, scaled so that fp16/bf16 keep them distinct for small planes.
std::vector<float> distinct_values(std::int64_t n, std::int64_t plane) {
  std::vector<float> v(static_cast<std::size_t>(n));
  std::vector<float> u = uniform(static_cast<std::size_t>(n), 0.0f, 1.0f);
  for (std::int64_t p = 0; p < n / plane; ++p) {
    std::vector<std::int64_t> order(static_cast<std::size_t>(plane));
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
      return u[static_cast<std::size_t>(p * plane + a)] < u[static_cast<std::size_t>(p * plane + b)];
    });
    for (std::int64_t r = 0; r < plane; ++r)
      v[static_cast<std::size_t>(p * plane + order[static_cast<std::size_t>(r)])] =
          static_cast<float>(r - plane / 2) * 0.25f;
  }
  return v;
}

// ---------------------------------------------------------------------------------------------- max pool

TEST(MaxPool2d, ForwardIndicesBackwardVsReference) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (DLDataType dt : kFloatTypes)
    for (const Shape4& s : kShapes)
      for (const Win& w : kMaxWins) {
        SCOPED_TRACE(dtype_str(dt) + " x" + str(s) + " k" + std::to_string(w.kh) + "x" + std::to_string(w.kw) +
                     " s" + std::to_string(w.sh) + "," + std::to_string(w.sw) + " p" + std::to_string(w.ph) + "," +
                     std::to_string(w.pw) + " d" + std::to_string(w.dh) + "," + std::to_string(w.dw) +
                     (w.ceil ? " ceil" : ""));
        const std::int64_t oh = out_size(s.h, w.kh, w.sh, w.ph, w.dh, w.ceil);
        const std::int64_t ow = out_size(s.w, w.kw, w.sw, w.pw, w.dw, w.ceil);
        const dlk_pool2d_params p = pool_params(w);
        Tensor x(ctx, s.v(), dt);
        // ties only in fp16/bf16 rounding of random values: the first-maximum rule decides both sides alike
        x.set(randn(static_cast<std::size_t>(s.size())));
        if (oh < 1 || ow < 1) {
          Tensor y(ctx, {s.n, s.c, 1, 1}, dt);
          EXPECT_EQ(dlk_max_pool2d_forward(ctx, &p, &x.t, &y.t, nullptr), DLK_ERROR_SHAPE);
          EXPECT_NE(std::string(dlk_last_error()).find("too small"), std::string::npos) << dlk_last_error();
          continue;
        }
        Tensor y(ctx, {s.n, s.c, oh, ow}, dt), idx(ctx, {s.n, s.c, oh, ow}, i64());
        y.poison();
        idx.poison();
        ASSERT_EQ(dlk_max_pool2d_forward(ctx, &p, &x.t, &y.t, &idx.t), DLK_SUCCESS) << dlk_last_error();
        std::vector<double> ry;
        std::vector<std::int64_t> ri;
        ref_max_pool(s, w, dbl(x.stored()), oh, ow, &ry, &ri);
        EXPECT_CLOSE(y.get(), ry, 0.0);
        const std::vector<float> gi = idx.get();
        for (std::size_t k = 0; k < ri.size(); ++k)
          ASSERT_EQ(static_cast<std::int64_t>(gi[k]), ri[k]) << "index of output " << k;
        // backward from the indices vs a scatter of dy
        Tensor dy(ctx, {s.n, s.c, oh, ow}, dt), dx(ctx, s.v(), dt);
        dy.set(randn(dy.numel()));
        dx.poison();
        ASSERT_EQ(dlk_max_pool2d_backward(ctx, &p, &dy.t, &idx.t, &dx.t), DLK_SUCCESS) << dlk_last_error();
        std::vector<double> rdx(static_cast<std::size_t>(s.size()), 0.0);
        const std::vector<float> g = dy.stored();
        for (std::int64_t pl = 0; pl < s.n * s.c; ++pl)
          for (std::int64_t o = 0; o < oh * ow; ++o)
            rdx[static_cast<std::size_t>(pl * s.h * s.w + ri[static_cast<std::size_t>(pl * oh * ow + o)])] +=
                g[static_cast<std::size_t>(pl * oh * ow + o)];
        EXPECT_CLOSE(dx.get(), rdx, tolerance(dt));
      }
}

TEST(MaxPool2d, NumericalGradientWithoutTies) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  const Shape4 s{1, 2, 7, 13};
  for (const Win& w : kMaxWins) {
    const std::int64_t oh = out_size(s.h, w.kh, w.sh, w.ph, w.dh, w.ceil);
    const std::int64_t ow = out_size(s.w, w.kw, w.sw, w.pw, w.dw, w.ceil);
    const dlk_pool2d_params p = pool_params(w);
    Tensor x(ctx, s.v(), f32()), y(ctx, {s.n, s.c, oh, ow}, f32()), idx(ctx, {s.n, s.c, oh, ow}, i64());
    x.set(distinct_values(s.size(), s.h * s.w));
    ASSERT_EQ(dlk_max_pool2d_forward(ctx, &p, &x.t, &y.t, &idx.t), DLK_SUCCESS) << dlk_last_error();
    Tensor dy(ctx, {s.n, s.c, oh, ow}, f32()), dx(ctx, s.v(), f32());
    dy.set(randn(dy.numel()));
    dx.poison();
    ASSERT_EQ(dlk_max_pool2d_backward(ctx, &p, &dy.t, &idx.t, &dx.t), DLK_SUCCESS) << dlk_last_error();
    auto f = [&](const std::vector<double>& xv) {
      std::vector<double> yy;
      std::vector<std::int64_t> ii;
      ref_max_pool(s, w, xv, oh, ow, &yy, &ii);
      return yy;
    };
    EXPECT_CLOSE(dx.get(), numeric_grad(dbl(x.stored()), dbl(dy.stored()), f, 0.01), 1e-5);
  }
}

// ---------------------------------------------------------------------------------------------- avg pool

TEST(AvgPool2d, ForwardBackwardVsReference) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (DLDataType dt : kFloatTypes)
    for (const Shape4& s : kShapes)
      for (const Win& w : kAvgWins)
        for (int mode = 0; mode < 3; ++mode) {  // count_include_pad true / false / divisor_override 5
          const bool include = mode == 0;
          const int divisor = mode == 2 ? 5 : 0;
          SCOPED_TRACE(dtype_str(dt) + " x" + str(s) + " k" + std::to_string(w.kh) + "x" + std::to_string(w.kw) +
                       " s" + std::to_string(w.sh) + "," + std::to_string(w.sw) + " p" + std::to_string(w.ph) + "," +
                       std::to_string(w.pw) + (w.ceil ? " ceil" : "") + " mode " + std::to_string(mode));
          const std::int64_t oh = out_size(s.h, w.kh, w.sh, w.ph, 1, w.ceil);
          const std::int64_t ow = out_size(s.w, w.kw, w.sw, w.pw, 1, w.ceil);
          dlk_pool2d_params p = pool_params(w);
          p.count_include_pad = include;
          p.divisor_override = divisor;
          Tensor x(ctx, s.v(), dt);
          x.set(randn(x.numel()));
          if (oh < 1 || ow < 1) {
            Tensor y(ctx, {s.n, s.c, 1, 1}, dt);
            EXPECT_EQ(dlk_avg_pool2d_forward(ctx, &p, &x.t, &y.t), DLK_ERROR_SHAPE);
            continue;
          }
          Tensor y(ctx, {s.n, s.c, oh, ow}, dt);
          y.poison();
          ASSERT_EQ(dlk_avg_pool2d_forward(ctx, &p, &x.t, &y.t), DLK_SUCCESS) << dlk_last_error();
          auto f = [&](const std::vector<double>& xv) { return ref_avg_pool(s, w, xv, oh, ow, include, divisor); };
          EXPECT_CLOSE_SCALED(y.get(), f(dbl(x.stored())), f(absd(x.stored())), tolerance(dt));
          Tensor dy(ctx, {s.n, s.c, oh, ow}, dt), dx(ctx, s.v(), dt);
          dy.set(randn(dy.numel()));
          dx.poison();
          ASSERT_EQ(dlk_avg_pool2d_backward(ctx, &p, &dy.t, &dx.t), DLK_SUCCESS) << dlk_last_error();
          if (dt.bits == 32 || s.size() <= 200) {  // numerical gradient of the linear fp64 reference: exact
            std::vector<double> ady = dbl(dy.stored());
            for (double& v : ady) v = std::fabs(v);  // pooling weights are >= 0: this gives the sums of |terms|
            EXPECT_CLOSE_SCALED(dx.get(), numeric_grad(dbl(x.stored()), dbl(dy.stored()), f),
                                numeric_grad(dbl(x.stored()), ady, f), tolerance(dt));
          }
        }
}

// ------------------------------------------------------------------------------------------ adaptive avg

TEST(AdaptiveAvgPool2d, ForwardBackwardVsReference) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  const std::int64_t outs[][2] = {{1, 1}, {3, 5}, {7, 7}, {2, 13}, {5, 1}, {13, 9}};
  for (DLDataType dt : kFloatTypes)
    for (const Shape4& s : kShapes)
      for (const auto& o : outs) {
        SCOPED_TRACE(dtype_str(dt) + " x" + str(s) + " out " + std::to_string(o[0]) + "x" + std::to_string(o[1]));
        Tensor x(ctx, s.v(), dt), y(ctx, {s.n, s.c, o[0], o[1]}, dt);
        x.set(randn(x.numel()));
        y.poison();
        ASSERT_EQ(dlk_adaptive_avg_pool2d_forward(ctx, &x.t, &y.t), DLK_SUCCESS) << dlk_last_error();
        auto f = [&](const std::vector<double>& xv) { return ref_adaptive(s, xv, o[0], o[1]); };
        EXPECT_CLOSE_SCALED(y.get(), f(dbl(x.stored())), f(absd(x.stored())), tolerance(dt));
        Tensor dy(ctx, {s.n, s.c, o[0], o[1]}, dt), dx(ctx, s.v(), dt);
        dy.set(randn(dy.numel()));
        dx.poison();
        ASSERT_EQ(dlk_adaptive_avg_pool2d_backward(ctx, &dy.t, &dx.t), DLK_SUCCESS) << dlk_last_error();
        EXPECT_CLOSE_SCALED(dx.get(), numeric_grad(dbl(x.stored()), dbl(dy.stored()), f),
                            numeric_grad(dbl(x.stored()), absd(dy.stored()), f), tolerance(dt));
      }
}

// ------------------------------------------------------------------------------------------- max unpool

TEST(MaxUnpool2d, RoundTripDuplicatesAndBackward) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (DLDataType dt : kFloatTypes)
    for (const Shape4& s : {Shape4{2, 3, 7, 13}, Shape4{1, 2, 13, 7}, Shape4{1, 1, 1, 1}}) {
      SCOPED_TRACE(dtype_str(dt) + " x" + str(s));
      // Pool with overlapping windows (stride 1 < kernel 3, pad 1): duplicate indices happen.
      const Win w{3, 3, 1, 1, 1, 1, 1, 1, false};
      const dlk_pool2d_params p = pool_params(w);
      Tensor x(ctx, s.v(), dt), pooled(ctx, s.v(), dt), idx(ctx, s.v(), i64());
      x.set(randn(x.numel()));
      ASSERT_EQ(dlk_max_pool2d_forward(ctx, &p, &x.t, &pooled.t, &idx.t), DLK_SUCCESS) << dlk_last_error();
      // unpool different values than the pooled ones so "last wins" is visible; output one row/col bigger
      const std::int64_t uh = s.h + 1, uw = s.w + 2;
      Tensor v(ctx, s.v(), dt), u(ctx, {s.n, s.c, uh, uw}, dt);
      v.set(randn(v.numel()));
      u.poison();
      // indices are in the H*W plane of the pooled input; re-express them in the unpooled plane (row-major)
      std::vector<float> iv = idx.get();
      for (float& e : iv) {
        const std::int64_t k = static_cast<std::int64_t>(e);
        e = static_cast<float>((k / s.w) * uw + k % s.w);
      }
      Tensor uidx(ctx, s.v(), i64());
      uidx.set(iv);
      ASSERT_EQ(dlk_max_unpool2d_forward(ctx, &v.t, &uidx.t, &u.t), DLK_SUCCESS) << dlk_last_error();
      std::vector<double> ref(static_cast<std::size_t>(s.n * s.c * uh * uw), 0.0);
      const std::vector<float> vs = v.stored();
      for (std::int64_t pl = 0; pl < s.n * s.c; ++pl)
        for (std::int64_t i = 0; i < s.h * s.w; ++i)  // row-major order: the last write wins
          ref[static_cast<std::size_t>(pl * uh * uw + static_cast<std::int64_t>(iv[static_cast<std::size_t>(pl * s.h * s.w + i)]))] =
              vs[static_cast<std::size_t>(pl * s.h * s.w + i)];
      EXPECT_CLOSE(u.get(), ref, 0.0);
      // backward: dx[i] = dy[idx[i]]; numerical gradient of the reference (which is linear in v)
      Tensor dy(ctx, {s.n, s.c, uh, uw}, dt), dx(ctx, s.v(), dt);
      dy.set(randn(dy.numel()));
      dx.poison();
      ASSERT_EQ(dlk_max_unpool2d_backward(ctx, &dy.t, &uidx.t, &dx.t), DLK_SUCCESS) << dlk_last_error();
      std::vector<double> rdx(static_cast<std::size_t>(s.size()));
      const std::vector<float> g = dy.stored();
      for (std::int64_t pl = 0; pl < s.n * s.c; ++pl)
        for (std::int64_t i = 0; i < s.h * s.w; ++i)
          rdx[static_cast<std::size_t>(pl * s.h * s.w + i)] =
              g[static_cast<std::size_t>(pl * uh * uw + static_cast<std::int64_t>(iv[static_cast<std::size_t>(pl * s.h * s.w + i)]))];
      EXPECT_CLOSE(dx.get(), rdx, 0.0);
    }
}

TEST(MaxUnpool2d, NumericalGradientWithoutDuplicates) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  const Shape4 s{1, 2, 3, 5};
  const std::int64_t uh = 6, uw = 10;
  // every input goes to its own 2x2 block's corner: distinct indices, as a 2x2/stride-2 max pool produces
  std::vector<float> iv(static_cast<std::size_t>(s.size()));
  std::vector<float> u = uniform(iv.size(), 0.0f, 4.0f);
  for (std::int64_t pl = 0; pl < 2; ++pl)
    for (std::int64_t h = 0; h < s.h; ++h)
      for (std::int64_t w = 0; w < s.w; ++w) {
        const int k = static_cast<int>(u[static_cast<std::size_t>((pl * s.h + h) * s.w + w)]) % 4;
        iv[static_cast<std::size_t>((pl * s.h + h) * s.w + w)] = static_cast<float>((2 * h + k / 2) * uw + 2 * w + k % 2);
      }
  Tensor x(ctx, s.v(), f32()), idx(ctx, s.v(), i64()), dy(ctx, {1, 2, uh, uw}, f32()), dx(ctx, s.v(), f32());
  x.set(randn(x.numel()));
  idx.set(iv);
  dy.set(randn(dy.numel()));
  dx.poison();
  ASSERT_EQ(dlk_max_unpool2d_backward(ctx, &dy.t, &idx.t, &dx.t), DLK_SUCCESS) << dlk_last_error();
  auto f = [&](const std::vector<double>& xv) {
    std::vector<double> y(static_cast<std::size_t>(2 * uh * uw), 0.0);
    for (std::int64_t pl = 0; pl < 2; ++pl)
      for (std::int64_t i = 0; i < s.h * s.w; ++i)
        y[static_cast<std::size_t>(pl * uh * uw + static_cast<std::int64_t>(iv[static_cast<std::size_t>(pl * s.h * s.w + i)]))] =
            xv[static_cast<std::size_t>(pl * s.h * s.w + i)];
    return y;
  };
  EXPECT_CLOSE(dx.get(), numeric_grad(dbl(x.stored()), dbl(dy.stored()), f), 1e-5);
}

// --------------------------------------------------------------------------------------------- upsample

TEST(Upsample2d, NearestAndBilinearVsReference) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  // (out h, out w, scale_h, scale_w): sizes given (scale 0) or PyTorch's floor(in * scale) with the scale passed on
  struct Case {
    std::int64_t oh, ow;
    double sh, sw;
  };
  const Shape4 shapes[] = {{2, 3, 7, 13}, {1, 2, 1, 7}, {1, 1, 13, 1}, {1, 2, 1, 1}};
  for (DLDataType dt : kFloatTypes)
    for (const Shape4& s : shapes) {
      const Case cases[] = {{2 * s.h, 2 * s.w, 2.0, 2.0},
                            {s.h * 3 / 2, s.w * 3 / 2, 1.5, 1.5},
                            {13, 7, 0.0, 0.0},
                            {s.h, s.w, 0.0, 0.0},
                            {5, 11, 0.0, 0.0},
                            {1, 1, 0.0, 0.0}};
      for (const Case& c : cases) {
        if (c.oh < 1 || c.ow < 1) continue;
        for (int m = 0; m < 3; ++m) {  // nearest, bilinear, bilinear align_corners
          const Up u{m > 0, m == 2, m == 2 ? 0.0 : c.sh, m == 2 ? 0.0 : c.sw};
          SCOPED_TRACE(dtype_str(dt) + " x" + str(s) + " out " + std::to_string(c.oh) + "x" + std::to_string(c.ow) +
                       " mode " + std::to_string(m) + " scale " + std::to_string(u.scale_h));
          dlk_upsample2d_params p;
          dlk_upsample2d_params_init(&p);
          p.mode = m > 0 ? DLK_UPSAMPLE_BILINEAR : DLK_UPSAMPLE_NEAREST;
          p.align_corners = m == 2;
          p.scale_h = u.scale_h;
          p.scale_w = u.scale_w;
          Tensor x(ctx, s.v(), dt), y(ctx, {s.n, s.c, c.oh, c.ow}, dt);
          x.set(randn(x.numel()));
          y.poison();
          ASSERT_EQ(dlk_upsample2d_forward(ctx, &p, &x.t, &y.t), DLK_SUCCESS) << dlk_last_error();
          auto f = [&](const std::vector<double>& xv) { return ref_upsample(s, u, xv, c.oh, c.ow); };
          EXPECT_CLOSE(y.get(), f(dbl(x.stored())), m == 0 ? 0.0 : tolerance(dt));
          Tensor dy(ctx, {s.n, s.c, c.oh, c.ow}, dt), dx(ctx, s.v(), dt);
          dy.set(randn(dy.numel()));
          dx.poison();
          ASSERT_EQ(dlk_upsample2d_backward(ctx, &p, &dy.t, &dx.t), DLK_SUCCESS) << dlk_last_error();
          std::vector<double> ady = dbl(dy.stored());
          for (double& v : ady) v = std::fabs(v);  // upsampling weights are >= 0: this gives the sums of |terms|
          EXPECT_CLOSE_SCALED(dx.get(), numeric_grad(dbl(x.stored()), dbl(dy.stored()), f),
                              numeric_grad(dbl(x.stored()), ady, f), tolerance(dt));
        }
      }
    }
}

// Hand-checked values: a 2x2 image upsampled bilinearly to 3x3 with align_corners=True is the exact midpoint grid;
// nearest 2x repeats each pixel.
TEST(Upsample2d, SeedValues) {
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  Tensor x(ctx, {1, 1, 2, 2}, f32()), y(ctx, {1, 1, 3, 3}, f32()), z(ctx, {1, 1, 4, 4}, f32());
  x.set({1.0f, 2.0f, 3.0f, 4.0f});
  dlk_upsample2d_params p;
  dlk_upsample2d_params_init(&p);
  p.mode = DLK_UPSAMPLE_BILINEAR;
  p.align_corners = 1;
  ASSERT_EQ(dlk_upsample2d_forward(ctx, &p, &x.t, &y.t), DLK_SUCCESS) << dlk_last_error();
  EXPECT_EQ(y.get(), (std::vector<float>{1.0f, 1.5f, 2.0f, 2.0f, 2.5f, 3.0f, 3.0f, 3.5f, 4.0f}));
  p.mode = DLK_UPSAMPLE_NEAREST;
  ASSERT_EQ(dlk_upsample2d_forward(ctx, &p, &x.t, &z.t), DLK_SUCCESS) << dlk_last_error();
  EXPECT_EQ(z.get(), (std::vector<float>{1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4}));
  // align_corners=False, 2x: PyTorch gives [1, 1.25, 1.75, 2] along a row of [1, 2]
  p.mode = DLK_UPSAMPLE_BILINEAR;
  p.align_corners = 0;
  ASSERT_EQ(dlk_upsample2d_forward(ctx, &p, &x.t, &z.t), DLK_SUCCESS) << dlk_last_error();
  const std::vector<float> zr = z.get();
  EXPECT_EQ(std::vector<float>(zr.begin(), zr.begin() + 4), (std::vector<float>{1.0f, 1.25f, 1.75f, 2.0f}));
}

// --------------------------------------------------------------------------------------- determinism

TEST(Pooling, DeterministicBackwardsAreBitwiseRepeatable) {
  DLK_TRACE_SEED();
  Context ctx(backend(), 1);
  SKIP_IF_NO_BACKEND(ctx);
  const Shape4 s{2, 3, 13, 13};
  const Win w{3, 3, 2, 2, 1, 1, 1, 1, true};
  const dlk_pool2d_params p = pool_params(w);
  const std::int64_t oh = out_size(13, 3, 2, 1, 1, true);
  Tensor x(ctx, s.v(), f32()), y(ctx, {2, 3, oh, oh}, f32()), idx(ctx, {2, 3, oh, oh}, i64());
  Tensor dy(ctx, {2, 3, oh, oh}, f32()), dx1(ctx, s.v(), f32()), dx2(ctx, s.v(), f32());
  x.set(randn(x.numel()));
  dy.set(randn(dy.numel()));
  auto same = [&](const char* what) {
    const std::vector<float> a = dx1.get(), b = dx2.get();
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << what;
  };
  ASSERT_EQ(dlk_max_pool2d_forward(ctx, &p, &x.t, &y.t, &idx.t), DLK_SUCCESS) << dlk_last_error();
  ASSERT_EQ(dlk_max_pool2d_backward(ctx, &p, &dy.t, &idx.t, &dx1.t), DLK_SUCCESS);
  ASSERT_EQ(dlk_max_pool2d_backward(ctx, &p, &dy.t, &idx.t, &dx2.t), DLK_SUCCESS);
  same("max_pool2d_backward");
  ASSERT_EQ(dlk_avg_pool2d_backward(ctx, &p, &dy.t, &dx1.t), DLK_SUCCESS);
  ASSERT_EQ(dlk_avg_pool2d_backward(ctx, &p, &dy.t, &dx2.t), DLK_SUCCESS);
  same("avg_pool2d_backward");
  ASSERT_EQ(dlk_adaptive_avg_pool2d_backward(ctx, &dy.t, &dx1.t), DLK_SUCCESS);
  ASSERT_EQ(dlk_adaptive_avg_pool2d_backward(ctx, &dy.t, &dx2.t), DLK_SUCCESS);
  same("adaptive_avg_pool2d_backward");
  dlk_upsample2d_params up;
  dlk_upsample2d_params_init(&up);
  up.mode = DLK_UPSAMPLE_BILINEAR;
  Tensor big(ctx, {2, 3, 29, 31}, f32()), b1(ctx, s.v(), f32()), b2(ctx, s.v(), f32());
  big.set(randn(big.numel()));
  ASSERT_EQ(dlk_upsample2d_backward(ctx, &up, &big.t, &dx1.t), DLK_SUCCESS);
  ASSERT_EQ(dlk_upsample2d_backward(ctx, &up, &big.t, &dx2.t), DLK_SUCCESS);
  same("upsample2d_backward");
  // unpool with duplicate indices (overlapping windows above): the same output every time
  Tensor u1(ctx, s.v(), f32()), u2(ctx, s.v(), f32());
  ASSERT_EQ(dlk_max_unpool2d_forward(ctx, &dy.t, &idx.t, &u1.t), DLK_SUCCESS) << dlk_last_error();
  ASSERT_EQ(dlk_max_unpool2d_forward(ctx, &dy.t, &idx.t, &u2.t), DLK_SUCCESS);
  const std::vector<float> a = u1.get(), b = u2.get();
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << "max_unpool2d_forward";
}

// ----------------------------------------------------------------------------------------- bad inputs

void expect_error(dlk_status got, dlk_status want, std::vector<std::string> fragments) {
  EXPECT_EQ(got, want) << dlk_status_string(got) << ": " << dlk_last_error();
  const std::string msg = dlk_last_error();
  for (const std::string& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "'" << f << "' not in: " << msg;
}

TEST(Pooling, BadInputs) {
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  Tensor x(ctx, {1, 2, 3, 3}, f32()), y(ctx, {1, 2, 1, 1}, f32()), idx(ctx, {1, 2, 1, 1}, i64());
  x.set(randn(x.numel()));
  y.poison();
  dlk_pool2d_params p;
  dlk_pool2d_params_init(&p);
  // no kernel size
  expect_error(dlk_max_pool2d_forward(ctx, &p, &x.t, &y.t, &idx.t), DLK_ERROR_INVALID_ARGUMENT, {"kernel size"});
  expect_error(dlk_max_pool2d_forward(ctx, nullptr, &x.t, &y.t, &idx.t), DLK_ERROR_INVALID_ARGUMENT,
               {"params is NULL"});
  // kernel larger than the padded input: the message names the sizes
  p.kernel_h = p.kernel_w = 5;
  expect_error(dlk_max_pool2d_forward(ctx, &p, &x.t, &y.t, &idx.t), DLK_ERROR_SHAPE,
               {"max_pool2d_forward", "3x3", "too small", "kernel (5,5)"});
  expect_error(dlk_avg_pool2d_forward(ctx, &p, &x.t, &y.t), DLK_ERROR_SHAPE, {"avg_pool2d_forward", "too small"});
  // padding more than half the kernel (PyTorch's check)
  p.kernel_h = p.kernel_w = 2;
  p.pad_h = 2;
  expect_error(dlk_max_pool2d_forward(ctx, &p, &x.t, &y.t, &idx.t), DLK_ERROR_INVALID_ARGUMENT,
               {"half of kernel size", "pad_h = 2"});
  p.pad_h = 0;
  p.dilation_w = 0;
  expect_error(dlk_max_pool2d_forward(ctx, &p, &x.t, &y.t, &idx.t), DLK_ERROR_INVALID_ARGUMENT, {"dilation"});
  p.dilation_w = 2;
  expect_error(dlk_avg_pool2d_forward(ctx, &p, &x.t, &y.t), DLK_ERROR_INVALID_ARGUMENT, {"dilation"});
  p.dilation_w = 1;
  // wrong output shape: k2 s2 on 3x3 gives 1x1; ask 2x2
  Tensor y2(ctx, {1, 2, 2, 2}, f32());
  expect_error(dlk_max_pool2d_forward(ctx, &p, &x.t, &y2.t, nullptr), DLK_ERROR_SHAPE, {"y has shape [1,2,2,2]", "[1,2,1,1]"});
  // indices must be int64
  Tensor bad_idx(ctx, {1, 2, 1, 1}, i32());
  expect_error(dlk_max_pool2d_forward(ctx, &p, &x.t, &y.t, &bad_idx.t), DLK_ERROR_DTYPE, {"indices"});
  // y untouched by the failures above
  EXPECT_FALSE(all_finite(y.get()));
  // rank
  Tensor r2(ctx, {3, 3}, f32());
  expect_error(dlk_avg_pool2d_forward(ctx, &p, &r2.t, &y.t), DLK_ERROR_SHAPE, {"x has rank 2"});
  // adaptive: zero output size
  Tensor z(ctx, {1, 2, 0, 1}, f32());
  expect_error(dlk_adaptive_avg_pool2d_forward(ctx, &x.t, &z.t), DLK_ERROR_SHAPE, {"at least 1x1"});
  // unpool: leading dims must agree
  Tensor u(ctx, {1, 3, 6, 6}, f32()), uidx(ctx, {1, 2, 3, 3}, i64());
  expect_error(dlk_max_unpool2d_forward(ctx, &x.t, &uidx.t, &u.t), DLK_ERROR_SHAPE, {"y has shape [1,3,6,6]"});
  // upsample: bad mode, non-finite scale
  dlk_upsample2d_params up;
  dlk_upsample2d_params_init(&up);
  Tensor big(ctx, {1, 2, 6, 6}, f32());
  std::memset(&up.mode, 0x7f, sizeof(int));
  expect_error(dlk_upsample2d_forward(ctx, &up, &x.t, &big.t), DLK_ERROR_INVALID_ARGUMENT, {"params->mode"});
  up.mode = DLK_UPSAMPLE_NEAREST;
  up.scale_h = NAN;
  expect_error(dlk_upsample2d_forward(ctx, &up, &x.t, &big.t), DLK_ERROR_INVALID_ARGUMENT, {"scale_h"});
  // dtype mismatch
  Tensor h(ctx, {1, 2, 6, 6}, f16());
  expect_error(dlk_upsample2d_forward(ctx, nullptr, &x.t, &h.t), DLK_ERROR_DTYPE, {"y has dtype float16"});
}

}  // namespace
}  // namespace dlk::test
