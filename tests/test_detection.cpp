// Detection family: RoI Align / RoI Pool (forward, backward), the box ops (IoU, encode/decode, clip, remove small,
// anchors, FPN level mapper) and NMS / batched NMS, on the backend DLK_TEST_BACKEND names, against references
// written here from torchvision 0.14's documented algorithms: RoI geometry in fp32 exactly as torchvision computes it,
// sums in fp64; NMS as torchvision's CPU greedy loop (IoU in fp32 with unfused products, compared in double).
// Odd sizes, batch 1, empty inputs, aligned / adaptive sampling, ties in NMS scores, categories, top-k and score
// prefilters, numerical gradients of RoI Align, bitwise repeatability of the backwards in deterministic mode, and
// bad inputs rejected with nothing written.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "test_util.h"

namespace dlk::test {
namespace {

bool on_emu() { return backend() == DLK_DEVICE_EMU; }

// An fp32 product that the compiler may not fuse with a neighbouring add (the reference pins the rounding).
float mulf(float a, float b) {
  volatile float p = a * b;
  return p;
}

// ------------------------------------------------------------------------------------------ RoI references

struct RoiCase {
  std::int64_t n, c, h, w, k;
  int ph, pw;
  double scale;
  int sr;
  bool aligned;
};

std::string str(const RoiCase& c) {
  return "n" + std::to_string(c.n) + " c" + std::to_string(c.c) + " " + std::to_string(c.h) + "x" +
         std::to_string(c.w) + " k" + std::to_string(c.k) + " out " + std::to_string(c.ph) + "x" +
         std::to_string(c.pw) + " scale " + std::to_string(c.scale) + " sr " + std::to_string(c.sr) +
         (c.aligned ? " aligned" : "");
}

// Random RoIs over (and a little beyond) the image in input coordinates (1 / scale pixels per feature pixel).
std::vector<float> random_rois(const RoiCase& c) {
  std::vector<float> r(static_cast<std::size_t>(c.k * 5));
  const float sx = static_cast<float>(c.w / c.scale), sy = static_cast<float>(c.h / c.scale);
  for (std::int64_t i = 0; i < c.k; ++i) {
    std::vector<float> u = uniform(4, -0.2f, 1.2f);
    r[i * 5] = static_cast<float>(std::uniform_int_distribution<std::int64_t>(0, c.n - 1)(rng()));
    r[i * 5 + 1] = std::min(u[0], u[2]) * sx;
    r[i * 5 + 2] = std::min(u[1], u[3]) * sy;
    r[i * 5 + 3] = std::max(u[0], u[2]) * sx;
    r[i * 5 + 4] = std::max(u[1], u[3]) * sy;
  }
  return r;
}

// torchvision's per-sample bilinear taps (offsets and weights), fp32 geometry.
struct Tap {
  std::int64_t o;
  double w;
};
std::vector<Tap> taps(float y, float x, std::int64_t h, std::int64_t w) {
  if (y < -1.0f || y > static_cast<float>(h) || x < -1.0f || x > static_cast<float>(w)) return {};
  if (y <= 0) y = 0;
  if (x <= 0) x = 0;
  std::int64_t yl = static_cast<std::int64_t>(y), xl = static_cast<std::int64_t>(x), yh, xh;
  if (yl >= h - 1) {
    yh = yl = h - 1;
    y = static_cast<float>(yl);
  } else {
    yh = yl + 1;
  }
  if (xl >= w - 1) {
    xh = xl = w - 1;
    x = static_cast<float>(xl);
  } else {
    xh = xl + 1;
  }
  const double ly = y - yl, lx = x - xl, hy = 1 - ly, hx = 1 - lx;
  return {{yl * w + xl, hy * hx}, {yl * w + xh, hy * lx}, {yh * w + xl, ly * hx}, {yh * w + xh, ly * lx}};
}

// For every (roi, bin): the taps of all its samples with weight / count.
std::vector<std::vector<Tap>> align_bins(const RoiCase& c, const std::vector<float>& rois) {
  std::vector<std::vector<Tap>> out(static_cast<std::size_t>(c.k * c.ph * c.pw));
  const double off = c.aligned ? 0.5 : 0.0;
  for (std::int64_t r = 0; r < c.k; ++r) {
    const float* roi = &rois[r * 5];
    const float x0 = static_cast<float>(roi[1] * c.scale - off), y0 = static_cast<float>(roi[2] * c.scale - off);
    const float x1 = static_cast<float>(roi[3] * c.scale - off), y1 = static_cast<float>(roi[4] * c.scale - off);
    float rw = x1 - x0, rh = y1 - y0;
    if (!c.aligned) {
      rw = std::max(rw, 1.0f);
      rh = std::max(rh, 1.0f);
    }
    const float bh = rh / c.ph, bw = rw / c.pw;
    const int gh = c.sr > 0 ? c.sr : static_cast<int>(std::ceil(rh / c.ph));
    const int gw = c.sr > 0 ? c.sr : static_cast<int>(std::ceil(rw / c.pw));
    const double count = std::max(gh * gw, 1);
    for (int ph = 0; ph < c.ph; ++ph)
      for (int pw = 0; pw < c.pw; ++pw) {
        auto& bin = out[static_cast<std::size_t>((r * c.ph + ph) * c.pw + pw)];
        for (int iy = 0; iy < gh; ++iy) {
          const float y = y0 + ph * bh + (iy + 0.5f) * bh / gh;
          for (int ix = 0; ix < gw; ++ix) {
            const float x = x0 + pw * bw + (ix + 0.5f) * bw / gw;
            for (const Tap& t : taps(y, x, c.h, c.w)) bin.push_back({t.o, t.w / count});
          }
        }
      }
  }
  return out;
}

void ref_align(const RoiCase& c, const std::vector<float>& rois, const std::vector<float>& x, std::vector<double>* y,
               std::vector<double>* mag) {
  const auto bins = align_bins(c, rois);
  y->assign(static_cast<std::size_t>(c.k * c.c * c.ph * c.pw), 0.0);
  mag->assign(y->size(), 0.0);
  const std::int64_t nb = c.ph * c.pw, plane = c.h * c.w;
  for (std::int64_t r = 0; r < c.k; ++r) {
    const std::int64_t b = static_cast<std::int64_t>(rois[r * 5]);
    for (std::int64_t ch = 0; ch < c.c; ++ch)
      for (std::int64_t i = 0; i < nb; ++i) {
        double s = 0, m = 0;
        for (const Tap& t : bins[r * nb + i]) {
          const double v = x[static_cast<std::size_t>((b * c.c + ch) * plane + t.o)];
          s += t.w * v;
          m += std::fabs(t.w * v);
        }
        (*y)[(r * c.c + ch) * nb + i] = s;
        (*mag)[(r * c.c + ch) * nb + i] = m;
      }
  }
}

void ref_align_backward(const RoiCase& c, const std::vector<float>& rois, const std::vector<float>& dy,
                        std::vector<double>* dx, std::vector<double>* mag) {
  const auto bins = align_bins(c, rois);
  const std::int64_t nb = c.ph * c.pw, plane = c.h * c.w;
  dx->assign(static_cast<std::size_t>(c.n * c.c * plane), 0.0);
  mag->assign(dx->size(), 0.0);
  for (std::int64_t r = 0; r < c.k; ++r) {
    const std::int64_t b = static_cast<std::int64_t>(rois[r * 5]);
    for (std::int64_t ch = 0; ch < c.c; ++ch)
      for (std::int64_t i = 0; i < nb; ++i)
        for (const Tap& t : bins[r * nb + i]) {
          const double g = dy[static_cast<std::size_t>((r * c.c + ch) * nb + i)] * t.w;
          (*dx)[(b * c.c + ch) * plane + t.o] += g;
          (*mag)[(b * c.c + ch) * plane + t.o] += std::fabs(g);
        }
  }
}

// torchvision's roi_pool bins and max (first maximum wins; empty bin -> 0, -1).
void ref_pool(const RoiCase& c, const std::vector<float>& rois, const std::vector<float>& x, std::vector<double>* y,
              std::vector<std::int64_t>* arg) {
  const std::int64_t nb = c.ph * c.pw, plane = c.h * c.w;
  y->assign(static_cast<std::size_t>(c.k * c.c * nb), 0.0);
  arg->assign(y->size(), -1);
  for (std::int64_t r = 0; r < c.k; ++r) {
    const float* roi = &rois[r * 5];
    const std::int64_t b = static_cast<std::int64_t>(roi[0]);
    const std::int64_t sw = std::llround(roi[1] * c.scale), sh = std::llround(roi[2] * c.scale);
    const std::int64_t ew = std::llround(roi[3] * c.scale), eh = std::llround(roi[4] * c.scale);
    const std::int64_t rw = std::max<std::int64_t>(ew - sw + 1, 1), rh = std::max<std::int64_t>(eh - sh + 1, 1);
    const float bh = static_cast<float>(rh) / c.ph, bw = static_cast<float>(rw) / c.pw;
    for (std::int64_t ch = 0; ch < c.c; ++ch)
      for (int ph = 0; ph < c.ph; ++ph)
        for (int pw = 0; pw < c.pw; ++pw) {
          auto clip = [](std::int64_t v, std::int64_t hi) { return std::min(std::max<std::int64_t>(v, 0), hi); };
          const std::int64_t h0 = clip(static_cast<std::int64_t>(std::floor(ph * bh)) + sh, c.h);
          const std::int64_t h1 = clip(static_cast<std::int64_t>(std::ceil((ph + 1) * bh)) + sh, c.h);
          const std::int64_t w0 = clip(static_cast<std::int64_t>(std::floor(pw * bw)) + sw, c.w);
          const std::int64_t w1 = clip(static_cast<std::int64_t>(std::ceil((pw + 1) * bw)) + sw, c.w);
          double best = (h1 <= h0 || w1 <= w0) ? 0.0 : -3.402823466e+38;
          std::int64_t a = -1;
          for (std::int64_t hh = h0; hh < h1; ++hh)
            for (std::int64_t ww = w0; ww < w1; ++ww) {
              const double v = x[static_cast<std::size_t>((b * c.c + ch) * plane + hh * c.w + ww)];
              if (v > best) {
                best = v;
                a = hh * c.w + ww;
              }
            }
          const std::size_t o = static_cast<std::size_t>(((r * c.c + ch) * c.ph + ph) * c.pw + pw);
          (*y)[o] = best;
          (*arg)[o] = a;
        }
  }
}

dlk_roi_align_params align_params(const RoiCase& c) {
  dlk_roi_align_params p;
  dlk_roi_align_params_init(&p);
  p.pooled_h = c.ph;
  p.pooled_w = c.pw;
  p.spatial_scale = c.scale;
  p.sampling_ratio = c.sr;
  p.aligned = c.aligned;
  return p;
}

std::vector<RoiCase> roi_cases() {
  std::vector<RoiCase> cases = {
      {1, 1, 1, 1, 1, 1, 1, 1.0, -1, false}, {2, 3, 7, 9, 5, 3, 2, 1.0, 2, false},
      {2, 3, 7, 9, 5, 3, 2, 0.5, -1, true},  {1, 4, 13, 11, 7, 7, 7, 0.25, 2, false},
      {3, 2, 6, 5, 6, 2, 3, 1.0, -1, true},  {2, 5, 9, 13, 9, 5, 4, 0.5, 1, false},
  };
  if (!on_emu()) cases.push_back({2, 16, 25, 31, 40, 7, 7, 0.125, -1, false});
  return cases;
}

TEST(Detection, RoiAlignForwardMatchesReference) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (const RoiCase& c : roi_cases()) {
    SCOPED_TRACE(str(c));
    Tensor x(ctx, {c.n, c.c, c.h, c.w}, f32()), rois(ctx, {c.k, 5}, f32()), y(ctx, {c.k, c.c, c.ph, c.pw}, f32());
    x.set(randn(x.numel()));
    rois.set(random_rois(c));
    y.poison();
    dlk_roi_align_params p = align_params(c);
    ASSERT_EQ(dlk_roi_align_forward(ctx, &p, &x.t, &rois.t, &y.t), DLK_SUCCESS) << dlk_last_error();
    std::vector<double> ref, mag;
    ref_align(c, rois.stored(), x.stored(), &ref, &mag);
    EXPECT_CLOSE_SCALED(y.get(), ref, mag, 1e-5);
  }
}

TEST(Detection, RoiAlignBackwardMatchesReferenceAndIsDeterministic) {
  DLK_TRACE_SEED();
  for (int det = 0; det < 2; ++det) {
    Context ctx(backend(), det);
    SKIP_IF_NO_BACKEND(ctx);
    for (const RoiCase& c : roi_cases()) {
      SCOPED_TRACE(str(c) + (det ? " deterministic" : ""));
      Tensor dy(ctx, {c.k, c.c, c.ph, c.pw}, f32()), rois(ctx, {c.k, 5}, f32()), dx(ctx, {c.n, c.c, c.h, c.w}, f32());
      dy.set(randn(dy.numel()));
      rois.set(random_rois(c));
      dx.poison();
      dlk_roi_align_params p = align_params(c);
      ASSERT_EQ(dlk_roi_align_backward(ctx, &p, &dy.t, &rois.t, &dx.t), DLK_SUCCESS) << dlk_last_error();
      std::vector<double> ref, mag;
      ref_align_backward(c, rois.stored(), dy.stored(), &ref, &mag);
      const std::vector<float> first = dx.get();
      EXPECT_CLOSE_SCALED(first, ref, mag, 1e-5);
      if (det) {
        dx.poison();
        ASSERT_EQ(dlk_roi_align_backward(ctx, &p, &dy.t, &rois.t, &dx.t), DLK_SUCCESS);
        const std::vector<float> second = dx.get();
        EXPECT_EQ(0, std::memcmp(first.data(), second.data(), first.size() * sizeof(float)))
            << "deterministic backward differs between two runs";
      }
    }
  }
}

// Central differences of the library's own forward: <dL/dx, e> for L = sum(y * g) against the backward's dx.
TEST(Detection, RoiAlignBackwardMatchesNumericalGradient) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  const RoiCase c{2, 2, 5, 6, 4, 2, 3, 1.0, 2, true};
  Tensor x(ctx, {c.n, c.c, c.h, c.w}, f32()), rois(ctx, {c.k, 5}, f32()), y(ctx, {c.k, c.c, c.ph, c.pw}, f32());
  Tensor g(ctx, {c.k, c.c, c.ph, c.pw}, f32()), dx(ctx, {c.n, c.c, c.h, c.w}, f32());
  std::vector<float> xv = randn(x.numel());
  x.set(xv);
  rois.set(random_rois(c));
  const std::vector<float> gv = randn(g.numel());
  g.set(gv);
  dlk_roi_align_params p = align_params(c);
  ASSERT_EQ(dlk_roi_align_backward(ctx, &p, &g.t, &rois.t, &dx.t), DLK_SUCCESS) << dlk_last_error();
  const std::vector<float> grad = dx.get();
  auto loss = [&](const std::vector<float>& xs) {
    x.set(xs);
    EXPECT_EQ(dlk_roi_align_forward(ctx, &p, &x.t, &rois.t, &y.t), DLK_SUCCESS);
    const std::vector<float> yv = y.get();
    double s = 0;
    for (std::size_t i = 0; i < yv.size(); ++i) s += static_cast<double>(yv[i]) * gv[i];
    return s;
  };
  std::vector<double> num(xv.size());
  const float eps = 1e-2f;
  for (std::size_t i = 0; i < xv.size(); ++i) {
    std::vector<float> xp = xv, xm = xv;
    xp[i] += eps;
    xm[i] -= eps;
    num[i] = (loss(xp) - loss(xm)) / (2.0 * eps);
  }
  EXPECT_CLOSE(grad, num, 1e-2);
}

TEST(Detection, RoiPoolForwardBackwardMatchReference) {
  DLK_TRACE_SEED();
  for (int det = 0; det < 2; ++det) {
    Context ctx(backend(), det);
    SKIP_IF_NO_BACKEND(ctx);
    for (const RoiCase& c : roi_cases()) {
      SCOPED_TRACE(str(c) + (det ? " deterministic" : ""));
      Tensor x(ctx, {c.n, c.c, c.h, c.w}, f32()), rois(ctx, {c.k, 5}, f32()), y(ctx, {c.k, c.c, c.ph, c.pw}, f32());
      Tensor arg(ctx, {c.k, c.c, c.ph, c.pw}, i64()), dy(ctx, {c.k, c.c, c.ph, c.pw}, f32());
      Tensor dx(ctx, {c.n, c.c, c.h, c.w}, f32());
      x.set(randn(x.numel()));
      rois.set(random_rois(c));
      y.poison();
      arg.poison();
      dlk_roi_pool_params p;
      dlk_roi_pool_params_init(&p);
      p.pooled_h = c.ph;
      p.pooled_w = c.pw;
      p.spatial_scale = c.scale;
      ASSERT_EQ(dlk_roi_pool_forward(ctx, &p, &x.t, &rois.t, &y.t, &arg.t), DLK_SUCCESS) << dlk_last_error();
      std::vector<double> ref;
      std::vector<std::int64_t> ref_arg;
      ref_pool(c, rois.stored(), x.stored(), &ref, &ref_arg);
      EXPECT_CLOSE(y.get(), ref, 1e-6);
      const std::vector<float> got_arg = arg.get();
      for (std::size_t i = 0; i < ref_arg.size(); ++i)
        ASSERT_EQ(static_cast<std::int64_t>(got_arg[i]), ref_arg[i]) << "argmax " << i;
      dy.set(randn(dy.numel()));
      dx.poison();
      ASSERT_EQ(dlk_roi_pool_backward(ctx, &p, &dy.t, &rois.t, &arg.t, &dx.t), DLK_SUCCESS) << dlk_last_error();
      std::vector<double> dref(dx.numel(), 0.0), dmag(dx.numel(), 0.0);
      const std::vector<float> dyv = dy.stored(), rv = rois.stored();
      const std::int64_t nb = c.ph * c.pw, plane = c.h * c.w;
      for (std::size_t i = 0; i < ref_arg.size(); ++i) {
        if (ref_arg[i] < 0) continue;
        const std::int64_t r = static_cast<std::int64_t>(i) / (c.c * nb),
                           ch = (static_cast<std::int64_t>(i) / nb) % c.c;
        const std::int64_t b = static_cast<std::int64_t>(rv[r * 5]);
        dref[(b * c.c + ch) * plane + ref_arg[i]] += dyv[i];
        dmag[(b * c.c + ch) * plane + ref_arg[i]] += std::fabs(dyv[i]);
      }
      EXPECT_CLOSE_SCALED(dx.get(), dref, dmag, 1e-5);
    }
  }
}

TEST(Detection, RoiEmptyAndBadInputs) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  const RoiCase c{2, 3, 5, 5, 0, 2, 2, 1.0, -1, false};
  Tensor x(ctx, {c.n, c.c, c.h, c.w}, f32()), rois(ctx, {0, 5}, f32()), y(ctx, {0, c.c, 2, 2}, f32());
  x.set(randn(x.numel()));
  dlk_roi_align_params p = align_params(c);
  EXPECT_EQ(dlk_roi_align_forward(ctx, &p, &x.t, &rois.t, &y.t), DLK_SUCCESS) << dlk_last_error();
  Tensor dx(ctx, {c.n, c.c, c.h, c.w}, f32());
  dx.poison();
  ASSERT_EQ(dlk_roi_align_backward(ctx, &p, &y.t, &rois.t, &dx.t), DLK_SUCCESS) << dlk_last_error();
  for (float v : dx.get()) ASSERT_EQ(v, 0.0f) << "no RoI: the gradient is zero";

  Tensor r1(ctx, {1, 5}, f32()), y1(ctx, {1, c.c, 2, 2}, f32());
  y1.poison();
  auto untouched = [&] {
    for (float v : y1.get()) ASSERT_TRUE(std::isnan(v)) << "output written on a failed call";
  };
  r1.set({0, 0, 0, 3, 3});
  dlk_roi_align_params bad = p;
  bad.pooled_h = 0;
  EXPECT_EQ(dlk_roi_align_forward(ctx, &bad, &x.t, &r1.t, &y1.t), DLK_ERROR_INVALID_ARGUMENT);
  bad = p;
  bad.spatial_scale = NAN;
  EXPECT_EQ(dlk_roi_align_forward(ctx, &bad, &x.t, &r1.t, &y1.t), DLK_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(dlk_roi_align_forward(ctx, nullptr, &x.t, &r1.t, &y1.t), DLK_ERROR_INVALID_ARGUMENT);
  Tensor y_bad(ctx, {1, c.c, 3, 2}, f32());
  EXPECT_EQ(dlk_roi_align_forward(ctx, &p, &x.t, &r1.t, &y_bad.t), DLK_ERROR_SHAPE);
  Tensor r4(ctx, {1, 4}, f32());
  EXPECT_EQ(dlk_roi_align_forward(ctx, &p, &x.t, &r4.t, &y1.t), DLK_ERROR_SHAPE);
  Tensor x16(ctx, {c.n, c.c, c.h, c.w}, f16());
  EXPECT_EQ(dlk_roi_align_forward(ctx, &p, &x16.t, &r1.t, &y1.t), DLK_ERROR_DTYPE);
  if (!ctx.on_device()) {
    r1.set({2, 0, 0, 3, 3});  // batch index out of range
    EXPECT_EQ(dlk_roi_align_forward(ctx, &p, &x.t, &r1.t, &y1.t), DLK_ERROR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(dlk_last_error()).find("batch index"), std::string::npos) << dlk_last_error();
  }
  untouched();
}

// ------------------------------------------------------------------------------------------ box ops

std::vector<float> random_boxes(std::int64_t n, float extent, float max_side) {
  std::vector<float> b(static_cast<std::size_t>(4 * n));
  for (std::int64_t i = 0; i < n; ++i) {
    const std::vector<float> u = uniform(4, 0.0f, 1.0f);
    b[4 * i] = u[0] * extent;
    b[4 * i + 1] = u[1] * extent;
    b[4 * i + 2] = b[4 * i] + 1.0f + u[2] * max_side;
    b[4 * i + 3] = b[4 * i + 1] + 1.0f + u[3] * max_side;
  }
  return b;
}

// torchvision's IoU in fp32 with unfused products.
float iou_f(const float* a, const float* b) {
  const float aa = mulf(a[2] - a[0], a[3] - a[1]), ab = mulf(b[2] - b[0], b[3] - b[1]);
  const float w = std::max(0.0f, std::min(a[2], b[2]) - std::max(a[0], b[0]));
  const float h = std::max(0.0f, std::min(a[3], b[3]) - std::max(a[1], b[1]));
  const float inter = mulf(w, h);
  return inter / (aa + ab - inter);
}

TEST(Detection, BoxIouSeedAndRandom) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  {
    Tensor a(ctx, {1, 4}, f32()), b(ctx, {1, 4}, f32()), iou(ctx, {1, 1}, f32());
    a.set({50, 50, 150, 150});
    b.set({100, 100, 200, 200});
    ASSERT_EQ(dlk_box_iou(ctx, &a.t, &b.t, &iou.t), DLK_SUCCESS) << dlk_last_error();
    EXPECT_NEAR(iou.get()[0], 2500.0 / 17500.0, 1e-6);  // 0.1429
    EXPECT_NEAR(iou.get()[0], 0.1429, 5e-5);
  }
  for (auto nm : std::vector<std::pair<std::int64_t, std::int64_t>>{{1, 1}, {7, 13}, {33, 5}, {0, 4}, {3, 0}}) {
    Tensor a(ctx, {nm.first, 4}, f32()), b(ctx, {nm.second, 4}, f32()), iou(ctx, {nm.first, nm.second}, f32());
    a.set(random_boxes(nm.first, 50, 30));
    b.set(random_boxes(nm.second, 50, 30));
    iou.poison();
    ASSERT_EQ(dlk_box_iou(ctx, &a.t, &b.t, &iou.t), DLK_SUCCESS) << dlk_last_error();
    const std::vector<float> got = iou.get(), av = a.stored(), bv = b.stored();
    for (std::int64_t i = 0; i < nm.first; ++i)
      for (std::int64_t j = 0; j < nm.second; ++j) {
        // independent fp64 value, and the bitwise fp32 rule NMS relies on
        const float* p = &av[4 * i];
        const float* q = &bv[4 * j];
        const double w = std::max(0.0, std::min<double>(p[2], q[2]) - std::max<double>(p[0], q[0]));
        const double h = std::max(0.0, std::min<double>(p[3], q[3]) - std::max<double>(p[1], q[1]));
        const double inter = w * h;
        const double uni =
            (double(p[2]) - p[0]) * (double(p[3]) - p[1]) + (double(q[2]) - q[0]) * (double(q[3]) - q[1]) - inter;
        EXPECT_NEAR(got[i * nm.second + j], inter / uni, 1e-6);
        EXPECT_EQ(got[i * nm.second + j], iou_f(p, q)) << "pair " << i << "," << j;
      }
  }
}

TEST(Detection, BoxCoderEncodeDecode) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  const std::int64_t n = 37;
  Tensor gt(ctx, {n, 4}, f32()), prop(ctx, {n, 4}, f32()), d(ctx, {n, 4}, f32()), back(ctx, {n, 4}, f32());
  gt.set(random_boxes(n, 100, 60));
  prop.set(random_boxes(n, 100, 60));
  dlk_box_coder_params p;
  dlk_box_coder_params_init(&p);
  EXPECT_NEAR(p.bbox_xform_clip, std::log(1000.0 / 16), 1e-12);
  const double w[4] = {10, 10, 5, 5};
  std::copy(w, w + 4, p.weights);
  d.poison();
  ASSERT_EQ(dlk_box_encode(ctx, &p, &gt.t, &prop.t, &d.t), DLK_SUCCESS) << dlk_last_error();
  const std::vector<float> g = gt.stored(), pr = prop.stored();
  std::vector<double> ref(static_cast<std::size_t>(4 * n));
  for (std::int64_t i = 0; i < n; ++i) {
    const double pw = pr[4 * i + 2] - double(pr[4 * i]), ph = pr[4 * i + 3] - double(pr[4 * i + 1]);
    const double gw = g[4 * i + 2] - double(g[4 * i]), gh = g[4 * i + 3] - double(g[4 * i + 1]);
    ref[4 * i] = w[0] * ((g[4 * i] + 0.5 * gw) - (pr[4 * i] + 0.5 * pw)) / pw;
    ref[4 * i + 1] = w[1] * ((g[4 * i + 1] + 0.5 * gh) - (pr[4 * i + 1] + 0.5 * ph)) / ph;
    ref[4 * i + 2] = w[2] * std::log(gw / pw);
    ref[4 * i + 3] = w[3] * std::log(gh / ph);
  }
  EXPECT_CLOSE(d.get(), ref, 1e-5);
  // decode(encode(gt)) == gt (no clamp reached at these sizes), with 3 boxes per row through rel_codes [n, 12]
  Tensor codes(ctx, {n, 12}, f32()), pred(ctx, {n, 12}, f32());
  std::vector<float> cv(static_cast<std::size_t>(12 * n));
  const std::vector<float> dv = d.get();
  for (std::int64_t i = 0; i < n; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) cv[12 * i + 4 * j + k] = dv[4 * i + k];  // the same deltas in each of the 3 slots
  codes.set(cv);
  pred.poison();
  ASSERT_EQ(dlk_box_decode(ctx, &p, &codes.t, &prop.t, &pred.t), DLK_SUCCESS) << dlk_last_error();
  std::vector<double> gref(static_cast<std::size_t>(12 * n));
  for (std::int64_t i = 0; i < n; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) gref[12 * i + 4 * j + k] = g[4 * i + k];
  EXPECT_CLOSE(pred.get(), gref, 1e-5);
  // the clamp: a huge dw decodes to exp(clip) * width
  Tensor big(ctx, {1, 4}, f32()), box(ctx, {1, 4}, f32()), out(ctx, {1, 4}, f32());
  big.set({0, 0, 100, 0});
  box.set({0, 0, 10, 10});
  dlk_box_coder_params_init(&p);
  ASSERT_EQ(dlk_box_decode(ctx, &p, &big.t, &box.t, &out.t), DLK_SUCCESS);
  const std::vector<float> o = out.get();
  EXPECT_NEAR(o[2] - o[0], 10.0 * 1000.0 / 16.0, 1e-2);
  EXPECT_NEAR(o[3] - o[1], 10.0, 1e-4);
}

TEST(Detection, ClipAndRemoveSmall) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (std::int64_t n : {0, 1, 9, on_emu() ? 1500 : 5000}) {
    Tensor b(ctx, {n, 4}, f32()), c(ctx, {n, 4}, f32()), keep(ctx, {n}, i64()), cnt(ctx, {1}, i64());
    std::vector<float> bv = random_boxes(n, 40, 12);
    for (float& v : bv) v -= 5.0f;
    b.set(bv);
    c.poison();
    ASSERT_EQ(dlk_clip_boxes_to_image(ctx, &b.t, 30, 25, &c.t), DLK_SUCCESS) << dlk_last_error();
    const std::vector<float> cv = c.get();
    for (std::int64_t i = 0; i < 4 * n; ++i)
      ASSERT_EQ(cv[i], std::min(std::max(bv[i], 0.0f), i % 2 == 0 ? 25.0f : 30.0f)) << i;
    keep.poison();
    cnt.poison();
    ASSERT_EQ(dlk_remove_small_boxes(ctx, &c.t, 4.0, &keep.t, &cnt.t), DLK_SUCCESS) << dlk_last_error();
    std::vector<std::int64_t> ref;
    for (std::int64_t i = 0; i < n; ++i)
      if (cv[4 * i + 2] - cv[4 * i] >= 4.0f && cv[4 * i + 3] - cv[4 * i + 1] >= 4.0f) ref.push_back(i);
    ASSERT_EQ(static_cast<std::int64_t>(cnt.get()[0]), static_cast<std::int64_t>(ref.size()));
    const std::vector<float> kv = keep.get();
    for (std::int64_t i = 0; i < n; ++i)
      ASSERT_EQ(static_cast<std::int64_t>(kv[i]), i < static_cast<std::int64_t>(ref.size()) ? ref[i] : -1) << i;
  }
}

TEST(Detection, AnchorGeneratorAsTorchvision) {
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  // base anchors of size 32 for ratios (0.5, 1, 2): h = s sqrt(r), w = s / sqrt(r), round half to even
  const float sizes[] = {32, 64};
  const float ratios[] = {0.5f, 1.0f, 2.0f};
  const std::int64_t gh = 3, gw = 5, sh = 16, sw = 8, a = 6;
  Tensor anc(ctx, {gh * gw * a, 4}, f32());
  anc.poison();
  ASSERT_EQ(dlk_anchor_generator(ctx, sizes, 2, ratios, 3, gh, gw, sh, sw, &anc.t), DLK_SUCCESS) << dlk_last_error();
  const std::vector<float> v = anc.get();
  const float base0[4] = {-23, -11, 23, 11};  // r = 0.5, s = 32: w = 45.25, h = 22.63
  const float base2[4] = {-16, -16, 16, 16};  // r = 1, s = 32
  for (int k = 0; k < 4; ++k) {
    EXPECT_EQ(v[k], base0[k]);
    EXPECT_EQ(v[2 * 4 + k], base2[k]);
  }
  // location (y = 2, x = 3) holds the same base anchors shifted by (24, 32)
  for (std::int64_t b = 0; b < a; ++b)
    for (int k = 0; k < 4; ++k) {
      const float shift = k % 2 == 0 ? 3.0f * sw : 2.0f * sh;
      EXPECT_EQ(v[((2 * gw + 3) * a + b) * 4 + k], v[b * 4 + k] + shift);
    }
  // independent check of every base anchor
  for (int r = 0; r < 3; ++r)
    for (int s = 0; s < 2; ++s) {
      const float hr = std::sqrt(ratios[r]), wr = 1.0f / hr;
      const float ws = mulf(wr, sizes[s]), hs = mulf(hr, sizes[s]);
      const float want[4] = {std::nearbyint(-ws / 2), std::nearbyint(-hs / 2), std::nearbyint(ws / 2),
                             std::nearbyint(hs / 2)};
      for (int k = 0; k < 4; ++k) EXPECT_EQ(v[(r * 2 + s) * 4 + k], want[k]);
    }
  EXPECT_EQ(dlk_anchor_generator(ctx, sizes, 0, ratios, 3, gh, gw, sh, sw, &anc.t), DLK_ERROR_INVALID_ARGUMENT);
}

TEST(Detection, FpnLevelMapper) {
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  // sqrt(area) 224 -> level 4; 112 -> 3; 448 -> 5; 56 -> 2; 10 -> clamped to 2; 2000 -> clamped to 5
  const std::vector<float> sides = {224, 112, 448, 56, 10, 2000, 223.9f, 111.9f};
  const std::int64_t n = static_cast<std::int64_t>(sides.size());
  Tensor b(ctx, {n, 4}, f32()), lv(ctx, {n}, i64());
  std::vector<float> bv;
  for (float s : sides) bv.insert(bv.end(), {5.0f, 7.0f, 5.0f + s, 7.0f + s});
  b.set(bv);
  lv.poison();
  ASSERT_EQ(dlk_fpn_level_mapper(ctx, &b.t, 2, 5, 224, 4, 1e-6, &lv.t), DLK_SUCCESS) << dlk_last_error();
  const std::vector<float> got = lv.get();
  const std::int64_t want[] = {2, 1, 3, 0, 0, 3, 1, 0};
  for (std::int64_t i = 0; i < n; ++i) EXPECT_EQ(static_cast<std::int64_t>(got[i]), want[i]) << "side " << sides[i];
}

// ------------------------------------------------------------------------------------------ NMS

// torchvision's CPU nms (stable descending sort, strict IoU > threshold), with the prefilters and the offsets.
std::vector<std::int64_t> ref_nms(const std::vector<float>& boxes, const std::vector<float>& scores,
                                  const std::vector<std::int64_t>* idxs, double thr, double score_thr = -INFINITY,
                                  std::int64_t top_k = 0) {
  const std::int64_t n = static_cast<std::int64_t>(scores.size());
  std::vector<float> b = boxes;
  if (idxs && n > 0) {
    const float mx = *std::max_element(boxes.begin(), boxes.end());
    for (std::int64_t i = 0; i < n; ++i) {
      const float off = mulf(static_cast<float>((*idxs)[i]), mx + 1.0f);
      for (int k = 0; k < 4; ++k) b[4 * i + k] = boxes[4 * i + k] + off;
    }
  }
  std::vector<std::int64_t> order;
  for (std::int64_t i = 0; i < n; ++i)
    if (!(scores[i] < score_thr)) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t p, std::int64_t q) { return scores[p] > scores[q]; });
  if (top_k > 0 && static_cast<std::int64_t>(order.size()) > top_k) order.resize(static_cast<std::size_t>(top_k));
  std::vector<char> sup(order.size(), 0);
  std::vector<std::int64_t> keep;
  for (std::size_t p = 0; p < order.size(); ++p) {
    if (sup[p]) continue;
    keep.push_back(order[p]);
    for (std::size_t q = p + 1; q < order.size(); ++q)
      if (static_cast<double>(iou_f(&b[4 * order[p]], &b[4 * order[q]])) > thr) sup[q] = 1;
  }
  return keep;
}

struct NmsRun {
  std::vector<std::int64_t> keep;
  std::int64_t count;
  std::vector<float> tail;
};

NmsRun run_nms(Context& ctx, const std::vector<float>& boxes, const std::vector<float>& scores,
               const std::vector<std::int64_t>* idxs, double thr, const dlk_nms_params* p = nullptr) {
  const std::int64_t n = static_cast<std::int64_t>(scores.size());
  Tensor b(ctx, {n, 4}, f32()), s(ctx, {n}, f32()), keep(ctx, {n}, i64()), cnt(ctx, {}, i64()), ix(ctx, {n}, i64());
  b.set(boxes);
  s.set(scores);
  keep.poison();
  cnt.poison();
  dlk_status st;
  if (idxs) {
    ix.set(std::vector<float>(idxs->begin(), idxs->end()));
    st = dlk_batched_nms(ctx, p, &b.t, &s.t, &ix.t, thr, &keep.t, &cnt.t);
  } else {
    st = dlk_nms(ctx, p, &b.t, &s.t, thr, &keep.t, &cnt.t);
  }
  EXPECT_EQ(st, DLK_SUCCESS) << dlk_last_error();
  NmsRun r;
  r.count = static_cast<std::int64_t>(cnt.get()[0]);
  const std::vector<float> kv = keep.get();
  for (std::int64_t i = 0; i < n; ++i) {
    if (i < r.count)
      r.keep.push_back(static_cast<std::int64_t>(kv[i]));
    else
      r.tail.push_back(kv[i]);
  }
  return r;
}

void expect_nms(const NmsRun& got, const std::vector<std::int64_t>& ref) {
  ASSERT_EQ(got.count, static_cast<std::int64_t>(ref.size()));
  EXPECT_EQ(got.keep, ref);
  for (float t : got.tail) ASSERT_EQ(t, -1.0f) << "keep beyond num_kept must be -1";
}

TEST(Detection, NmsMatchesGreedyReference) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  const std::vector<std::int64_t> sizes = on_emu() ? std::vector<std::int64_t>{1, 2, 63, 64, 65, 300, 1000}
                                                   : std::vector<std::int64_t>{1, 2, 63, 64, 65, 300, 1000, 4000};
  for (std::int64_t n : sizes) {
    for (double thr : {0.5, 0.7, 0.0}) {
      SCOPED_TRACE("n " + std::to_string(n) + " thr " + std::to_string(thr));
      const std::vector<float> boxes = random_boxes(n, 60.0f + n / 4.0f, 40.0f);
      std::vector<float> scores = uniform(static_cast<std::size_t>(n), 0, 1);
      for (auto& s : scores) s = std::round(s * 20) / 20;  // many ties: the stable order decides
      expect_nms(run_nms(ctx, boxes, scores, nullptr, thr), ref_nms(boxes, scores, nullptr, thr));
    }
  }
}

TEST(Detection, NmsTiesKeepLowerIndexAndSpecialScores) {
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  // three identical boxes with equal scores: the lowest index survives
  const std::vector<float> same = {0, 0, 10, 10, 0, 0, 10, 10, 0, 0, 10, 10, 20, 20, 30, 30};
  expect_nms(run_nms(ctx, same, {0.5f, 0.5f, 0.5f, 0.5f}, nullptr, 0.5), {0, 3});
  expect_nms(run_nms(ctx, same, {0.5f, 0.9f, 0.9f, 0.1f}, nullptr, 0.5), {1, 3});
  // -0 ties with +0; NaN sorts first
  expect_nms(run_nms(ctx, same, {0.0f, -0.0f, 0.0f, 0.2f}, nullptr, 0.5), {3, 0});
  expect_nms(run_nms(ctx, same, {0.1f, NAN, 0.9f, 0.2f}, nullptr, 0.5), {1, 3});
  // strictness: IoU exactly 0.5 (overlap 50, union 100) does not suppress at threshold 0.5
  const std::vector<float> half = {0, 0, 10, 10, 0, 0, 10, 5};
  expect_nms(run_nms(ctx, half, {0.9f, 0.8f}, nullptr, 0.5), {0, 1});
  expect_nms(run_nms(ctx, half, {0.9f, 0.8f}, nullptr, 0.4999), {0});
  // empty input
  expect_nms(run_nms(ctx, {}, {}, nullptr, 0.5), {});
}

TEST(Detection, NmsPrefiltersAndBatched) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (std::int64_t n : {1, 77, 500}) {
    SCOPED_TRACE("n " + std::to_string(n));
    const std::vector<float> boxes = random_boxes(n, 50, 40);
    const std::vector<float> scores = uniform(static_cast<std::size_t>(n), 0, 1);
    dlk_nms_params p;
    dlk_nms_params_init(&p);
    p.score_threshold = 0.3;
    p.top_k = n / 3 + 1;
    expect_nms(run_nms(ctx, boxes, scores, nullptr, 0.5, &p), ref_nms(boxes, scores, nullptr, 0.5, 0.3, p.top_k));
    std::vector<std::int64_t> idxs(static_cast<std::size_t>(n));
    for (auto& i : idxs) i = std::uniform_int_distribution<int>(0, 4)(rng());
    expect_nms(run_nms(ctx, boxes, scores, &idxs, 0.5), ref_nms(boxes, scores, &idxs, 0.5));
    expect_nms(run_nms(ctx, boxes, scores, &idxs, 0.5, &p), ref_nms(boxes, scores, &idxs, 0.5, 0.3, p.top_k));
  }
  // boxes of different categories never suppress each other
  const std::vector<float> same = {0, 0, 10, 10, 0, 0, 10, 10};
  const std::vector<std::int64_t> cats = {0, 1};
  expect_nms(run_nms(ctx, same, {0.5f, 0.6f}, &cats, 0.5), {1, 0});
}

// Every box op, the level mapper and RoI Pool refuse malformed arguments with a sentence naming the op, and leave
// their outputs untouched.
TEST(Detection, BoxOpsBadInputsWriteNothing) {
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  Tensor b3(ctx, {3, 4}, f32()), b5(ctx, {3, 5}, f32()), b2(ctx, {2, 4}, f32()), b16(ctx, {3, 4}, f16());
  b3.set(random_boxes(3, 10, 10));
  b2.set(random_boxes(2, 10, 10));
  Tensor out(ctx, {3, 4}, f32()), iou(ctx, {3, 2}, f32()), keep(ctx, {3}, i64()), cnt(ctx, {1}, i64());
  Tensor levels(ctx, {3}, i64()), anchors(ctx, {6, 4}, f32());
  for (Tensor* t : {&out, &iou, &keep, &cnt, &levels, &anchors}) t->poison();
  const auto rejected = [](dlk_status st, const char* op) {
    EXPECT_NE(st, DLK_SUCCESS) << op;
    EXPECT_NE(std::string(dlk_last_error()).find(op), std::string::npos) << dlk_last_error();
  };
  rejected(dlk_box_iou(ctx, &b5.t, &b2.t, &iou.t), "box_iou");
  rejected(dlk_box_iou(ctx, &b3.t, &b3.t, &iou.t), "box_iou");  // iou must be [3, 3]
  rejected(dlk_box_iou(ctx, &b16.t, &b2.t, &iou.t), "box_iou");
  dlk_box_coder_params cp;
  dlk_box_coder_params_init(&cp);
  rejected(dlk_box_encode(ctx, &cp, &b3.t, &b2.t, &out.t), "box_encode");
  rejected(dlk_box_decode(ctx, &cp, &b5.t, &b3.t, &out.t), "box_decode");
  cp.weights[0] = NAN;
  rejected(dlk_box_decode(ctx, &cp, &b3.t, &b3.t, &out.t), "box_decode");
  rejected(dlk_clip_boxes_to_image(ctx, &b3.t, -1, 10, &out.t), "clip_boxes_to_image");
  rejected(dlk_clip_boxes_to_image(ctx, &b5.t, 10, 10, &out.t), "clip_boxes_to_image");
  rejected(dlk_remove_small_boxes(ctx, &b3.t, NAN, &keep.t, &cnt.t), "remove_small_boxes");
  rejected(dlk_remove_small_boxes(ctx, &b3.t, 1.0, &keep.t, nullptr), "remove_small_boxes");
  rejected(dlk_fpn_level_mapper(ctx, &b5.t, 2, 5, 224, 4, 1e-6, &levels.t), "fpn_level_mapper");
  rejected(dlk_fpn_level_mapper(ctx, &b3.t, 5, 2, 224, 4, 1e-6, &levels.t), "fpn_level_mapper");
  const float sizes[] = {32.0f}, ratios[] = {0.5f, 1.0f, 2.0f};
  rejected(dlk_anchor_generator(ctx, sizes, 1, ratios, 3, 2, 2, 16, 16, &anchors.t), "anchor_generator");  // 12 rows
  rejected(dlk_anchor_generator(ctx, nullptr, 1, ratios, 3, 1, 2, 16, 16, &anchors.t), "anchor_generator");
  Tensor x(ctx, {1, 2, 8, 8}, f32()), rois(ctx, {1, 4}, f32()), y(ctx, {1, 2, 2, 2}, f32()),
      am(ctx, {1, 2, 2, 2}, i64());
  y.poison();
  am.poison();
  dlk_roi_pool_params rp;
  dlk_roi_pool_params_init(&rp);
  rp.pooled_h = rp.pooled_w = 2;
  rejected(dlk_roi_pool_forward(ctx, &rp, &x.t, &rois.t, &y.t, &am.t), "roi_pool");
  for (Tensor* t : {&out, &iou, &keep, &cnt, &levels, &anchors, &y, &am}) {
    const std::vector<float> now = t->get(), poison = t->stored();  // NaN poison: compared bitwise
    EXPECT_EQ(std::memcmp(now.data(), poison.data(), now.size() * sizeof(float)), 0) << "an output was written";
  }
}

TEST(Detection, NmsBadInputsWriteNothing) {
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  Tensor b(ctx, {3, 4}, f32()), s(ctx, {3}, f32()), keep(ctx, {3}, i64()), cnt(ctx, {1}, i64());
  b.set(random_boxes(3, 10, 10));
  s.set({0.1f, 0.2f, 0.3f});
  keep.poison();
  cnt.poison();
  Tensor s2(ctx, {2}, f32()), b5(ctx, {3, 5}, f32()), k2(ctx, {2}, i64()), cnt2(ctx, {2}, i64()), ix(ctx, {3}, i64());
  EXPECT_EQ(dlk_nms(ctx, nullptr, &b.t, &s2.t, 0.5, &keep.t, &cnt.t), DLK_ERROR_SHAPE);
  EXPECT_EQ(dlk_nms(ctx, nullptr, &b5.t, &s.t, 0.5, &keep.t, &cnt.t), DLK_ERROR_SHAPE);
  EXPECT_EQ(dlk_nms(ctx, nullptr, &b.t, &s.t, 0.5, &k2.t, &cnt.t), DLK_ERROR_SHAPE);
  EXPECT_EQ(dlk_nms(ctx, nullptr, &b.t, &s.t, 0.5, &keep.t, &cnt2.t), DLK_ERROR_SHAPE);
  EXPECT_EQ(dlk_nms(ctx, nullptr, &b.t, &s.t, NAN, &keep.t, &cnt.t), DLK_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(dlk_nms(ctx, nullptr, &b.t, &s.t, 0.5, &keep.t, nullptr), DLK_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(dlk_batched_nms(ctx, nullptr, &b.t, &s.t, nullptr, 0.5, &keep.t, &cnt.t), DLK_ERROR_INVALID_ARGUMENT);
  dlk_nms_params p;
  dlk_nms_params_init(&p);
  p.top_k = -1;
  EXPECT_EQ(dlk_nms(ctx, &p, &b.t, &s.t, 0.5, &keep.t, &cnt.t), DLK_ERROR_INVALID_ARGUMENT);
  if (!ctx.on_device()) {
    ix.set({0, -2, 1});
    EXPECT_EQ(dlk_batched_nms(ctx, nullptr, &b.t, &s.t, &ix.t, 0.5, &keep.t, &cnt.t), DLK_ERROR_INVALID_ARGUMENT);
  }
  for (float v : keep.get()) ASSERT_TRUE(std::isnan(v) || v == -1.0f) << "keep written on a failed call";
  EXPECT_EQ(cnt.get()[0], -1.0f) << "num_kept written on a failed call (poison reads as int64 -1)";
}

}  // namespace
}  // namespace dlk::test
