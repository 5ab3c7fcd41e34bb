// Convolution family (conv2d and conv_transpose2d: forward, backward_data, backward_weight with bias), on the
// backend DLK_TEST_BACKEND names, against an fp64 reference written here from PyTorch's definitions: every
// (output pixel, tap) pair enumerated, windows at oh * stride - pad_top + i * dilation, the transposed conv as the
// scatter y[.., h * s - p + i * d, ..] += x[.., h, ..] * w[c, o, i, j]. Strides, dilations, groups (depthwise too),
// asymmetric padding, output_padding, odd sizes, batch 1, NCHW and NHWC, every dtype; numerical gradients of the
// library's own forward for both backwards of both ops; the course's RGB example (56); FCN's bilinear weights;
// bitwise-repeatable weight gradients; bad inputs rejected with nothing written.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "test_util.h"

#ifdef DLK_TEST_CUDNN
#include <cuda_runtime.h>
#include <cudnn.h>
#endif

namespace dlk::test {
namespace {

const DLDataType kFloatTypes[] = {f32(), f16(), bf16()};

struct Case {
  std::int64_t n, cin, h, w, cout;  // the op's input channels / size and output channels
  int kh, kw;
  int sh, sw;
  int pad[4];  // top, bottom, left, right
  int dh, dw;
  int groups;
  int oph, opw;  // transposed only
  bool bias;
};

std::string str(const Case& c, bool transposed) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s n%lld c%lld %lldx%lld -> %lld k%dx%d s%d,%d p%d,%d,%d,%d d%d,%d g%d op%d,%d%s",
                transposed ? "conv_transpose2d" : "conv2d", static_cast<long long>(c.n), static_cast<long long>(c.cin),
                static_cast<long long>(c.h), static_cast<long long>(c.w), static_cast<long long>(c.cout), c.kh, c.kw,
                c.sh, c.sw, c.pad[0], c.pad[1], c.pad[2], c.pad[3], c.dh, c.dw, c.groups, c.oph, c.opw,
                c.bias ? " bias" : "");
  return buf;
}

dlk_conv2d_params params_of(const Case& c, bool nhwc) {
  dlk_conv2d_params p;
  dlk_conv2d_params_init(&p);
  p.stride[0] = c.sh, p.stride[1] = c.sw;
  for (int i = 0; i < 4; ++i) p.padding[i] = c.pad[i];
  p.dilation[0] = c.dh, p.dilation[1] = c.dw;
  p.groups = c.groups;
  p.layout = nhwc ? DLK_CONV_NHWC : DLK_CONV_NCHW;
  p.output_padding[0] = c.oph, p.output_padding[1] = c.opw;
  return p;
}

// The conv geometry in conv terms: "big" side (conv input / transposed output) and "small" side.
struct Geo {
  std::int64_t n, cb, hb, wb;  // conv input (transposed: output)
  std::int64_t cs, hs, ws;     // conv output (transposed: input)
  Case c;
};

Geo geometry(const Case& c, bool transposed) {
  Geo g;
  g.c = c;
  g.n = c.n;
  if (!transposed) {
    g.cb = c.cin, g.hb = c.h, g.wb = c.w, g.cs = c.cout;
    g.hs = static_cast<std::int64_t>(
               std::floor(static_cast<double>(c.h + c.pad[0] + c.pad[1] - c.dh * (c.kh - 1) - 1) / c.sh)) +
           1;
    g.ws = static_cast<std::int64_t>(
               std::floor(static_cast<double>(c.w + c.pad[2] + c.pad[3] - c.dw * (c.kw - 1) - 1) / c.sw)) +
           1;
  } else {
    g.cs = c.cin, g.hs = c.h, g.ws = c.w, g.cb = c.cout;
    g.hb = (c.h - 1) * c.sh - c.pad[0] - c.pad[1] + c.dh * (c.kh - 1) + c.oph + 1;
    g.wb = (c.w - 1) * c.sw - c.pad[2] - c.pad[3] + c.dw * (c.kw - 1) + c.opw + 1;
  }
  return g;
}

// Calls f(big index, small index, weight index) for every (small pixel, tap) pair that lands inside the big image,
// indices into NCHW arrays. Conv: big = x, small = y, weight [cs, cb/g, kh, kw]. Transposed: big = y, small = x,
// weight [cs, cb/g, kh, kw] as well (PyTorch's [in, out/g, kh, kw]).
template <typename F>
void for_each_tap(const Geo& g, F&& f) {
  const Case& c = g.c;
  const std::int64_t cbg = g.cb / c.groups, csg = g.cs / c.groups;
  for (std::int64_t n = 0; n < g.n; ++n)
    for (std::int64_t s = 0; s < g.cs; ++s) {
      const std::int64_t grp = s / csg;
      for (std::int64_t a = 0; a < g.hs; ++a)
        for (std::int64_t b = 0; b < g.ws; ++b)
          for (std::int64_t cc = 0; cc < cbg; ++cc)
            for (int i = 0; i < c.kh; ++i) {
              const std::int64_t hb = a * c.sh - c.pad[0] + static_cast<std::int64_t>(i) * c.dh;
              if (hb < 0 || hb >= g.hb) continue;
              for (int j = 0; j < c.kw; ++j) {
                const std::int64_t wb = b * c.sw - c.pad[2] + static_cast<std::int64_t>(j) * c.dw;
                if (wb < 0 || wb >= g.wb) continue;
                const std::int64_t big = ((n * g.cb + grp * cbg + cc) * g.hb + hb) * g.wb + wb;
                const std::int64_t small = ((n * g.cs + s) * g.hs + a) * g.ws + b;
                const std::int64_t wi = ((s * cbg + cc) * c.kh + i) * c.kw + j;
                f(static_cast<std::size_t>(big), static_cast<std::size_t>(small), static_cast<std::size_t>(wi));
              }
            }
    }
}

// NCHW <-> the tensor's layout (logical [n, c, h, w]).
std::vector<float> to_layout(const std::vector<float>& v, std::int64_t n, std::int64_t c, std::int64_t h,
                             std::int64_t w, bool nhwc) {
  if (!nhwc) return v;
  std::vector<float> o(v.size());
  for (std::int64_t a = 0; a < n; ++a)
    for (std::int64_t b = 0; b < c; ++b)
      for (std::int64_t y = 0; y < h; ++y)
        for (std::int64_t x = 0; x < w; ++x)
          o[static_cast<std::size_t>(((a * h + y) * w + x) * c + b)] =
              v[static_cast<std::size_t>(((a * c + b) * h + y) * w + x)];
  return o;
}
std::vector<float> from_layout(const std::vector<float>& v, std::int64_t n, std::int64_t c, std::int64_t h,
                               std::int64_t w, bool nhwc) {
  if (!nhwc) return v;
  std::vector<float> o(v.size());
  for (std::int64_t a = 0; a < n; ++a)
    for (std::int64_t b = 0; b < c; ++b)
      for (std::int64_t y = 0; y < h; ++y)
        for (std::int64_t x = 0; x < w; ++x)
          o[static_cast<std::size_t>(((a * c + b) * h + y) * w + x)] =
              v[static_cast<std::size_t>(((a * h + y) * w + x) * c + b)];
  return o;
}
std::vector<std::int64_t> act_shape(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w, bool nhwc) {
  return nhwc ? std::vector<std::int64_t>{n, h, w, c} : std::vector<std::int64_t>{n, c, h, w};
}

// Reference results (and sums of |terms|) of all three directions.
struct Ref {
  std::vector<double> y, y_mag, dx, dx_mag, dw, dw_mag, db, db_mag;
};

// x, y, dy are the OP's tensors (NCHW); w the op's weight.
Ref reference(const Geo& g, bool transposed, const std::vector<float>& x, const std::vector<float>& w,
              const std::vector<float>& bias, const std::vector<float>& dy) {
  Ref r;
  const std::size_t nbig = static_cast<std::size_t>(g.n * g.cb * g.hb * g.wb);
  const std::size_t nsmall = static_cast<std::size_t>(g.n * g.cs * g.hs * g.ws);
  const std::size_t nin = transposed ? nsmall : nbig, nout = transposed ? nbig : nsmall;
  r.y.assign(nout, 0.0), r.y_mag.assign(nout, 0.0), r.dx.assign(nin, 0.0), r.dx_mag.assign(nin, 0.0);
  r.dw.assign(w.size(), 0.0), r.dw_mag.assign(w.size(), 0.0);
  for_each_tap(g, [&](std::size_t big, std::size_t small, std::size_t wi) {
    const std::size_t in = transposed ? small : big, out = transposed ? big : small;
    const double t = static_cast<double>(x[in]) * w[wi];
    r.y[out] += t, r.y_mag[out] += std::fabs(t);
    const double u = static_cast<double>(dy[out]) * w[wi];
    r.dx[in] += u, r.dx_mag[in] += std::fabs(u);
    const double v = static_cast<double>(x[in]) * dy[out];
    r.dw[wi] += v, r.dw_mag[wi] += std::fabs(v);
  });
  const std::int64_t cout = transposed ? g.cb : g.cs, hw = transposed ? g.hb * g.wb : g.hs * g.ws;
  r.db.assign(static_cast<std::size_t>(cout), 0.0), r.db_mag.assign(static_cast<std::size_t>(cout), 0.0);
  for (std::int64_t n = 0; n < g.n; ++n)
    for (std::int64_t o = 0; o < cout; ++o)
      for (std::int64_t e = 0; e < hw; ++e) {
        const std::size_t i = static_cast<std::size_t>((n * cout + o) * hw + e);
        if (!bias.empty())
          r.y[i] += bias[static_cast<std::size_t>(o)], r.y_mag[i] += std::fabs(bias[static_cast<std::size_t>(o)]);
        r.db[static_cast<std::size_t>(o)] += dy[i], r.db_mag[static_cast<std::size_t>(o)] += std::fabs(dy[i]);
      }
  return r;
}

std::vector<float> rounded(const std::vector<float>& v, DLDataType t) {
  if (t.bits == 32) return v;
  std::vector<float> o(v);
  for (float& x : o) x = t.code == kDLBfloat ? bf16_to_float(float_to_bf16(x)) : fp16_to_float(float_to_fp16(x));
  return o;
}

// The op's shapes: input [n, cin, h, w], output, weight.
struct Shapes {
  std::int64_t n, ci, hi, wi, co, ho, wo;
  std::vector<std::int64_t> w;
};
Shapes shapes_of(const Case& c, bool transposed) {
  const Geo g = geometry(c, transposed);
  Shapes s;
  s.n = c.n, s.ci = c.cin, s.hi = c.h, s.wi = c.w, s.co = c.cout;
  s.ho = transposed ? g.hb : g.hs;
  s.wo = transposed ? g.wb : g.ws;
  s.w = transposed ? std::vector<std::int64_t>{c.cin, c.cout / c.groups, c.kh, c.kw}
                   : std::vector<std::int64_t>{c.cout, c.cin / c.groups, c.kh, c.kw};
  return s;
}

std::int64_t count(const std::vector<std::int64_t>& s) {
  std::int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

// Runs all three directions of one case on one dtype and layout and compares with the reference.
void run_case(Context& ctx, const Case& c, bool transposed, bool nhwc, DLDataType dt) {
  SCOPED_TRACE(str(c, transposed) + (nhwc ? " NHWC " : " NCHW ") + dtype_str(dt));
  const Shapes s = shapes_of(c, transposed);
  const Geo g = geometry(c, transposed);
  const std::vector<float> x = rounded(randn(static_cast<std::size_t>(s.n * s.ci * s.hi * s.wi)), dt);
  const std::vector<float> w = rounded(randn(static_cast<std::size_t>(count(s.w)), 0.5f), dt);
  const std::vector<float> b = c.bias ? rounded(randn(static_cast<std::size_t>(s.co)), dt) : std::vector<float>{};
  const std::vector<float> dy = rounded(randn(static_cast<std::size_t>(s.n * s.co * s.ho * s.wo)), dt);
  const Ref r = reference(g, transposed, x, w, b, dy);
  const double tol = tolerance(dt);
  const dlk_conv2d_params p = params_of(c, nhwc);

  Tensor tx(ctx, act_shape(s.n, s.ci, s.hi, s.wi, nhwc), dt), tw(ctx, s.w, dt), tb(ctx, {s.co}, dt);
  Tensor ty(ctx, act_shape(s.n, s.co, s.ho, s.wo, nhwc), dt), tdy(ctx, act_shape(s.n, s.co, s.ho, s.wo, nhwc), dt);
  Tensor tdx(ctx, act_shape(s.n, s.ci, s.hi, s.wi, nhwc), dt), tdw(ctx, s.w, dt), tdb(ctx, {s.co}, dt);
  tx.set(to_layout(x, s.n, s.ci, s.hi, s.wi, nhwc));
  tw.set(w);
  if (c.bias) tb.set(b);
  tdy.set(to_layout(dy, s.n, s.co, s.ho, s.wo, nhwc));
  ty.poison(), tdx.poison(), tdw.poison(), tdb.poison();

  dlk_status st = transposed ? dlk_conv_transpose2d_forward(ctx, &p, &tx.t, &tw.t, c.bias ? &tb.t : nullptr, &ty.t)
                             : dlk_conv2d_forward(ctx, &p, &tx.t, &tw.t, c.bias ? &tb.t : nullptr, &ty.t);
  ASSERT_EQ(st, DLK_SUCCESS) << dlk_last_error();
  EXPECT_CLOSE_SCALED(from_layout(ty.get(), s.n, s.co, s.ho, s.wo, nhwc), r.y, r.y_mag, tol);

  st = transposed ? dlk_conv_transpose2d_backward_data(ctx, &p, &tdy.t, &tw.t, &tdx.t)
                  : dlk_conv2d_backward_data(ctx, &p, &tdy.t, &tw.t, &tdx.t);
  ASSERT_EQ(st, DLK_SUCCESS) << dlk_last_error();
  EXPECT_CLOSE_SCALED(from_layout(tdx.get(), s.n, s.ci, s.hi, s.wi, nhwc), r.dx, r.dx_mag, tol);

  st = transposed ? dlk_conv_transpose2d_backward_weight(ctx, &p, &tx.t, &tdy.t, &tdw.t, c.bias ? &tdb.t : nullptr)
                  : dlk_conv2d_backward_weight(ctx, &p, &tx.t, &tdy.t, &tdw.t, c.bias ? &tdb.t : nullptr);
  ASSERT_EQ(st, DLK_SUCCESS) << dlk_last_error();
  EXPECT_CLOSE_SCALED(tdw.get(), r.dw, r.dw_mag, tol);
  if (c.bias) EXPECT_CLOSE_SCALED(tdb.get(), r.db, r.db_mag, tol);
}

bool emu() { return backend() == DLK_DEVICE_EMU; }

std::vector<Case> conv_cases() {
  std::vector<Case> v = {
      // n cin h w cout kh kw sh sw pad(t,b,l,r) dh dw g oph opw bias
      {2, 3, 7, 9, 4, 3, 3, 1, 1, {1, 1, 1, 1}, 1, 1, 1, 0, 0, true},
      {1, 3, 8, 7, 5, 3, 2, 2, 2, {0, 1, 2, 1}, 1, 1, 1, 0, 0, true},    // asymmetric padding, stride 2, batch 1
      {2, 2, 9, 10, 3, 3, 3, 1, 2, {2, 2, 1, 1}, 2, 2, 1, 0, 0, false},  // dilation 2
      {2, 4, 6, 5, 6, 3, 3, 1, 1, {1, 1, 1, 1}, 1, 1, 2, 0, 0, true},    // groups 2
      {2, 4, 7, 7, 8, 3, 3, 2, 1, {1, 1, 1, 1}, 1, 1, 4, 0, 0, true},    // depthwise, multiplier 2
      {2, 5, 4, 3, 7, 1, 1, 1, 1, {0, 0, 0, 0}, 1, 1, 1, 0, 0, true},    // 1x1 pointwise
      {1, 3, 5, 5, 2, 5, 5, 1, 1, {0, 0, 0, 0}, 1, 1, 1, 0, 0, true},    // 1x1 output
      {1, 1, 6, 6, 4, 3, 3, 1, 1, {1, 1, 1, 1}, 1, 1, 1, 0, 0, false},   // single input channel
      {2, 6, 8, 8, 6, 4, 4, 4, 4, {0, 0, 0, 0}, 1, 1, 1, 0, 0, true},    // ViT-style patches: stride = kernel
  };
  // Large enough for the cpu backend's im2col + BLAS path (> 2^18 multiply-adds), and for 64-wide GPU tiles.
  if (!emu()) {
    v.push_back({2, 8, 12, 13, 16, 3, 3, 1, 1, {1, 1, 1, 1}, 1, 1, 1, 0, 0, true});
    v.push_back({3, 8, 11, 9, 12, 3, 2, 2, 1, {0, 2, 1, 0}, 2, 1, 2, 0, 0, true});
    v.push_back({2, 16, 9, 9, 64, 1, 1, 1, 1, {0, 0, 0, 0}, 1, 1, 1, 0, 0, false});
  } else {
    v.push_back({1, 8, 9, 9, 20, 3, 3, 1, 1, {1, 1, 1, 1}, 1, 1, 1, 0, 0, true});
  }
  // Enough output tiles for the GPU kernels' 64x64 tiles (the launcher takes them when the grid fills the device).
  v.push_back({4, 8, 16, 16, 64, 3, 3, 1, 1, {1, 1, 1, 1}, 1, 1, 1, 0, 0, true});
  return v;
}

std::vector<Case> transposed_cases() {
  std::vector<Case> v = {
      {2, 4, 5, 5, 3, 4, 4, 2, 2, {1, 1, 1, 1}, 1, 1, 1, 0, 0, true},   // DCGAN's 4x4 stride 2
      {1, 3, 4, 5, 2, 3, 3, 2, 2, {1, 1, 1, 1}, 1, 1, 1, 1, 1, true},   // output_padding 1
      {2, 4, 4, 3, 6, 3, 3, 1, 1, {1, 1, 0, 0}, 2, 2, 2, 1, 1, false},  // groups, dilation, output_padding < dilation
      {1, 2, 3, 4, 3, 3, 2, 3, 2, {2, 0, 1, 0}, 1, 1, 1, 2, 0, true},   // stride 3, asymmetric padding
      {2, 4, 4, 4, 4, 4, 4, 2, 2, {1, 1, 1, 1}, 1, 1, 4, 0, 0, true},   // depthwise upsampling
      {1, 3, 3, 3, 2, 2, 2, 3, 3, {0, 0, 0, 0}, 1, 1, 1, 1, 2, false},  // kernel smaller than stride: holes
      {2, 2, 3, 3, 4, 3, 3, 2, 2, {0, 0, 0, 0}, 2, 1, 1, 1, 0, true},   // stride and dilation 2
  };
  if (!emu()) {
    v.push_back({2, 16, 8, 8, 8, 4, 4, 2, 2, {1, 1, 1, 1}, 1, 1, 1, 0, 0, true});
    v.push_back({2, 12, 7, 6, 8, 3, 3, 1, 2, {1, 1, 0, 1}, 1, 1, 2, 0, 1, true});
  } else {
    v.push_back({1, 16, 5, 5, 8, 4, 4, 2, 2, {1, 1, 1, 1}, 1, 1, 1, 0, 0, true});
  }
  v.push_back({4, 64, 8, 8, 64, 4, 4, 2, 2, {1, 1, 1, 1}, 1, 1, 1, 0, 0, true});  // 64x64 tiles, sub-pixel classes
  return v;
}

class ConvTest : public ::testing::Test {};

TEST(Conv, CourseRgbExampleGives56) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  // Two input channels, each with its own 2x2 kernel, summed into one output channel (the course's multi-input
  // example): (1*1 + 2*2 + 4*3 + 5*4) + (0*0 + 1*1 + 3*2 + 4*3) = 56.
  Tensor x(ctx, {1, 2, 3, 3}, f32()), w(ctx, {1, 2, 2, 2}, f32()), y(ctx, {1, 1, 2, 2}, f32());
  x.set({0, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  w.set({0, 1, 2, 3, 1, 2, 3, 4});
  y.poison();
  ASSERT_EQ(dlk_conv2d_forward(ctx, nullptr, &x.t, &w.t, nullptr, &y.t), DLK_SUCCESS) << dlk_last_error();
  const std::vector<float> out = y.get();
  EXPECT_EQ(out[0], 56.0f);
  EXPECT_EQ(out, (std::vector<float>{56, 72, 104, 120}));
}

TEST(Conv, Conv2dEveryCaseLayoutDtype) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (const Case& c : conv_cases())
    for (bool nhwc : {false, true})
      for (DLDataType dt : kFloatTypes) run_case(ctx, c, false, nhwc, dt);
}

TEST(Conv, ConvTranspose2dEveryCaseLayoutDtype) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (const Case& c : transposed_cases())
    for (bool nhwc : {false, true})
      for (DLDataType dt : kFloatTypes) run_case(ctx, c, true, nhwc, dt);
}

// Central differences of the library's fp32 forward: L = sum(y * r) for a fixed random r, so dL/dx is
// backward_data(r) and dL/dw backward_weight(x, r) (dL/db the channel sums of r). Checked on a random subset of
// elements, each within 1e-2 of the gradient scale.
void numerical_check(const Case& c, bool transposed, bool nhwc) {
  SCOPED_TRACE(str(c, transposed) + (nhwc ? " NHWC" : " NCHW") + " numerical gradient");
  Context ctx;
  const Shapes s = shapes_of(c, transposed);
  const dlk_conv2d_params p = params_of(c, nhwc);
  const std::size_t nx = static_cast<std::size_t>(s.n * s.ci * s.hi * s.wi), nw = static_cast<std::size_t>(count(s.w));
  const std::size_t ny = static_cast<std::size_t>(s.n * s.co * s.ho * s.wo);
  std::vector<float> x = randn(nx), w = randn(nw, 0.5f), b = randn(static_cast<std::size_t>(s.co));
  const std::vector<float> rr = randn(ny);
  Tensor tx(ctx, act_shape(s.n, s.ci, s.hi, s.wi, nhwc), f32()), tw(ctx, s.w, f32()), tb(ctx, {s.co}, f32());
  Tensor ty(ctx, act_shape(s.n, s.co, s.ho, s.wo, nhwc), f32()), tr(ctx, act_shape(s.n, s.co, s.ho, s.wo, nhwc), f32());
  Tensor tdx(ctx, act_shape(s.n, s.ci, s.hi, s.wi, nhwc), f32()), tdw(ctx, s.w, f32()), tdb(ctx, {s.co}, f32());
  tr.set(rr);  // in the tensor's own layout: L pairs y and r element by element whatever the layout
  tb.set(b);
  auto loss = [&]() {
    tx.set(x);
    tw.set(w);
    tb.set(b);
    dlk_status st = transposed ? dlk_conv_transpose2d_forward(ctx, &p, &tx.t, &tw.t, &tb.t, &ty.t)
                               : dlk_conv2d_forward(ctx, &p, &tx.t, &tw.t, &tb.t, &ty.t);
    EXPECT_EQ(st, DLK_SUCCESS) << dlk_last_error();
    const std::vector<float> y = ty.get();
    double l = 0;
    for (std::size_t i = 0; i < ny; ++i) l += static_cast<double>(y[i]) * rr[i];
    return l;
  };
  tx.set(x);
  tw.set(w);
  ASSERT_EQ(transposed ? dlk_conv_transpose2d_backward_data(ctx, &p, &tr.t, &tw.t, &tdx.t)
                       : dlk_conv2d_backward_data(ctx, &p, &tr.t, &tw.t, &tdx.t),
            DLK_SUCCESS)
      << dlk_last_error();
  ASSERT_EQ(transposed ? dlk_conv_transpose2d_backward_weight(ctx, &p, &tx.t, &tr.t, &tdw.t, &tdb.t)
                       : dlk_conv2d_backward_weight(ctx, &p, &tx.t, &tr.t, &tdw.t, &tdb.t),
            DLK_SUCCESS)
      << dlk_last_error();
  const std::vector<float> gx = tdx.get(), gw = tdw.get(), gb = tdb.get();
  const float eps = 1e-2f;
  auto check = [&](std::vector<float>& v, const std::vector<float>& grad, const char* name) {
    double scale = 0;
    for (float g : grad) scale = std::max(scale, static_cast<double>(std::fabs(g)));
    for (int t = 0; t < 12; ++t) {
      const std::size_t i = static_cast<std::size_t>(rng()() % v.size());
      const float keep = v[i];
      v[i] = keep + eps;
      const double lp = loss();
      v[i] = keep - eps;
      const double lm = loss();
      v[i] = keep;
      const double num = (lp - lm) / (2.0 * eps);
      EXPECT_NEAR(grad[i], num, 1e-2 * std::max(1.0, scale)) << name << "[" << i << "]";
    }
  };
  check(x, gx, "dx");
  check(w, gw, "dw");
  check(b, gb, "dbias");
}

TEST(Conv, NumericalGradients) {
  DLK_TRACE_SEED();
  Context probe;
  SKIP_IF_NO_BACKEND(probe);
  numerical_check({2, 3, 6, 5, 4, 3, 3, 2, 1, {1, 0, 1, 2}, 1, 1, 1, 0, 0, true}, false, false);
  numerical_check({1, 4, 5, 6, 4, 3, 2, 1, 1, {1, 1, 0, 0}, 2, 1, 2, 0, 0, true}, false, true);
  numerical_check({2, 3, 4, 3, 2, 4, 4, 2, 2, {1, 1, 1, 1}, 1, 1, 1, 1, 0, true}, true, false);
  numerical_check({1, 4, 3, 4, 6, 3, 3, 1, 2, {0, 1, 1, 1}, 2, 1, 2, 1, 1, true}, true, true);
}

TEST(Conv, BilinearUpsamplingWeights) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  // FCN's get_upsampling_weight(3, 3, 4): diagonal channels hold outer(f, f), f = [0.25, 0.75, 0.75, 0.25].
  Tensor w(ctx, {3, 3, 4, 4}, f32());
  w.poison();
  ASSERT_EQ(dlk_init_bilinear_upsampling(ctx, 1, &w.t), DLK_SUCCESS) << dlk_last_error();
  const std::vector<float> v = w.get();
  const float f[4] = {0.25f, 0.75f, 0.75f, 0.25f};
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 3; ++b)
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j)
          EXPECT_EQ(v[static_cast<std::size_t>(((a * 3 + b) * 4 + i) * 4 + j)], a == b ? f[i] * f[j] : 0.0f);
  // Odd kernel 3: factor 2, centre 1: [0.5, 1, 0.5].
  Tensor w3(ctx, {2, 1, 3, 3}, f32());
  ASSERT_EQ(dlk_init_bilinear_upsampling(ctx, 2, &w3.t), DLK_SUCCESS) << dlk_last_error();
  const std::vector<float> v3 = w3.get();
  EXPECT_EQ(v3[0], 0.25f);
  EXPECT_EQ(v3[4], 1.0f);
  EXPECT_EQ(v3[9 + 1], 0.5f);
  // With stride 2 and padding 1, the 4x4 bilinear kernel upsamples: a linear ramp stays a ramp in the interior.
  dlk_conv2d_params p;
  dlk_conv2d_params_init(&p);
  p.stride[0] = p.stride[1] = 2;
  p.padding[0] = p.padding[1] = p.padding[2] = p.padding[3] = 1;
  p.groups = 1;
  Tensor wd(ctx, {1, 1, 4, 4}, f32()), x(ctx, {1, 1, 4, 4}, f32()), y(ctx, {1, 1, 8, 8}, f32());
  ASSERT_EQ(dlk_init_bilinear_upsampling(ctx, 1, &wd.t), DLK_SUCCESS);
  std::vector<float> ramp(16);
  for (int i = 0; i < 16; ++i) ramp[static_cast<std::size_t>(i)] = static_cast<float>(i % 4);
  x.set(ramp);
  ASSERT_EQ(dlk_conv_transpose2d_forward(ctx, &p, &x.t, &wd.t, nullptr, &y.t), DLK_SUCCESS) << dlk_last_error();
  const std::vector<float> up = y.get();
  // Interior columns 1..6 of row 3: (j - 0.5) / 2 .. the half-pixel bilinear positions of 0..3.
  for (int j = 1; j < 7; ++j) EXPECT_NEAR(up[static_cast<std::size_t>(3 * 8 + j)], (j - 0.5) / 2.0, 1e-6) << j;
  // Bad arguments.
  EXPECT_EQ(dlk_init_bilinear_upsampling(ctx, 0, &w.t), DLK_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(dlk_init_bilinear_upsampling(ctx, 2, &w.t), DLK_ERROR_SHAPE);
}

TEST(Conv, WeightGradientsBitwiseRepeatable) {
  DLK_TRACE_SEED();
  Context ctx(backend(), 1);
  SKIP_IF_NO_BACKEND(ctx);
  const Case c = emu() ? Case{2, 8, 9, 9, 16, 3, 3, 1, 1, {1, 1, 1, 1}, 1, 1, 1, 0, 0, true}
                       : Case{4, 16, 20, 20, 32, 3, 3, 1, 1, {1, 1, 1, 1}, 1, 1, 1, 0, 0, true};
  const Shapes s = shapes_of(c, false);
  const dlk_conv2d_params p = params_of(c, false);
  Tensor x(ctx, act_shape(s.n, s.ci, s.hi, s.wi, false), f32()),
      dy(ctx, act_shape(s.n, s.co, s.ho, s.wo, false), f32());
  Tensor dw1(ctx, s.w, f32()), dw2(ctx, s.w, f32()), db1(ctx, {s.co}, f32()), db2(ctx, {s.co}, f32());
  x.set(randn(x.numel()));
  dy.set(randn(dy.numel()));
  ASSERT_EQ(dlk_conv2d_backward_weight(ctx, &p, &x.t, &dy.t, &dw1.t, &db1.t), DLK_SUCCESS) << dlk_last_error();
  ASSERT_EQ(dlk_conv2d_backward_weight(ctx, &p, &x.t, &dy.t, &dw2.t, &db2.t), DLK_SUCCESS) << dlk_last_error();
  const std::vector<float> a = dw1.get(), b = dw2.get(), ba = db1.get(), bb = db2.get();
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  EXPECT_EQ(std::memcmp(ba.data(), bb.data(), ba.size() * sizeof(float)), 0);
}

TEST(Conv, EmptyBatchWritesZeroGradients) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  Tensor x(ctx, {0, 3, 5, 5}, f32()), y(ctx, {0, 4, 5, 5}, f32()), w(ctx, {4, 3, 3, 3}, f32()), b(ctx, {4}, f32());
  Tensor dw(ctx, {4, 3, 3, 3}, f32()), db(ctx, {4}, f32());
  dlk_conv2d_params p;
  dlk_conv2d_params_init(&p);
  p.padding[0] = p.padding[1] = p.padding[2] = p.padding[3] = 1;
  w.set(randn(w.numel()));
  dw.poison(), db.poison();
  EXPECT_EQ(dlk_conv2d_forward(ctx, &p, &x.t, &w.t, nullptr, &y.t), DLK_SUCCESS) << dlk_last_error();
  ASSERT_EQ(dlk_conv2d_backward_weight(ctx, &p, &x.t, &y.t, &dw.t, &db.t), DLK_SUCCESS) << dlk_last_error();
  for (float v : dw.get()) EXPECT_EQ(v, 0.0f);
  for (float v : db.get()) EXPECT_EQ(v, 0.0f);
}

// Every rejected call leaves the output bytes exactly as they were, and names the problem.
TEST(Conv, BadInputsRejectedWithNothingWritten) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  Tensor x(ctx, {2, 4, 6, 6}, f32()), w(ctx, {6, 4, 3, 3}, f32()), b(ctx, {6}, f32()), y(ctx, {2, 6, 4, 4}, f32());
  x.set(randn(x.numel()));
  w.set(randn(w.numel()));
  b.set(randn(b.numel()));
  y.poison();
  const std::vector<float> before = y.get();
  auto unchanged = [&]() {
    const std::vector<float> after = y.get();
    return std::memcmp(before.data(), after.data(), before.size() * sizeof(float)) == 0;
  };
  struct Bad {
    const char* what;
    std::function<void(dlk_conv2d_params&)> edit;
    dlk_status want;
    const char* message;
  };
  const std::vector<Bad> bad = {
      {"stride 0", [](dlk_conv2d_params& p) { p.stride[0] = 0; }, DLK_ERROR_INVALID_ARGUMENT, "stride"},
      {"negative padding", [](dlk_conv2d_params& p) { p.padding[3] = -1; }, DLK_ERROR_INVALID_ARGUMENT, "padding"},
      {"dilation 0", [](dlk_conv2d_params& p) { p.dilation[1] = 0; }, DLK_ERROR_INVALID_ARGUMENT, "dilation"},
      {"groups 0", [](dlk_conv2d_params& p) { p.groups = 0; }, DLK_ERROR_INVALID_ARGUMENT, "groups"},
      {"groups 3", [](dlk_conv2d_params& p) { p.groups = 3; }, DLK_ERROR_SHAPE, "groups = 3"},
      {"groups 2 (weight dim 1 wrong)", [](dlk_conv2d_params& p) { p.groups = 2; }, DLK_ERROR_SHAPE,
       "in_channels / groups"},
      {"bad layout", [](dlk_conv2d_params& p) { p.layout = static_cast<dlk_conv_layout>(7); },
       DLK_ERROR_INVALID_ARGUMENT, "layout"},
      {"output_padding on conv", [](dlk_conv2d_params& p) { p.output_padding[0] = 1; }, DLK_ERROR_INVALID_ARGUMENT,
       "output_padding"},
      {"struct_size", [](dlk_conv2d_params& p) { p.struct_size = 8; }, DLK_ERROR_INVALID_ARGUMENT, "struct_size"},
      {"padding changes the output size", [](dlk_conv2d_params& p) { p.padding[0] = 1; }, DLK_ERROR_SHAPE,
       "y has shape"},
      {"kernel larger than the input", [](dlk_conv2d_params& p) { p.dilation[0] = 4; }, DLK_ERROR_SHAPE, "too small"},
  };
  for (const Bad& c : bad) {
    SCOPED_TRACE(c.what);
    dlk_conv2d_params p;
    dlk_conv2d_params_init(&p);
    c.edit(p);
    EXPECT_EQ(dlk_conv2d_forward(ctx, &p, &x.t, &w.t, &b.t, &y.t), c.want);
    EXPECT_NE(std::string(dlk_last_error()).find(c.message), std::string::npos) << dlk_last_error();
    EXPECT_TRUE(unchanged());
  }
  // Tensor-level errors.
  Tensor w16(ctx, {6, 4, 3, 3}, f16()), b5(ctx, {5}, f32()), y5(ctx, {2, 6, 5, 4}, f32()), w3(ctx, {6, 4, 3}, f32());
  EXPECT_EQ(dlk_conv2d_forward(ctx, nullptr, &x.t, &w16.t, nullptr, &y.t), DLK_ERROR_DTYPE);
  EXPECT_EQ(dlk_conv2d_forward(ctx, nullptr, &x.t, &w.t, &b5.t, &y.t), DLK_ERROR_SHAPE);
  EXPECT_NE(std::string(dlk_last_error()).find("bias"), std::string::npos) << dlk_last_error();
  EXPECT_EQ(dlk_conv2d_forward(ctx, nullptr, &x.t, &w3.t, nullptr, &y.t), DLK_ERROR_SHAPE);
  EXPECT_EQ(dlk_conv2d_forward(ctx, nullptr, &x.t, &w.t, nullptr, nullptr), DLK_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(dlk_conv2d_forward(nullptr, nullptr, &x.t, &w.t, nullptr, &y.t), DLK_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(dlk_conv2d_forward(ctx, nullptr, &x.t, &w.t, nullptr, &y5.t), DLK_ERROR_SHAPE);
  EXPECT_TRUE(unchanged());
  // Backward weight: dw's shape is checked as the weight's and named as dw; nothing is written.
  {
    Tensor dy(ctx, {2, 6, 4, 4}, f32()), dw_bad(ctx, {6, 3, 3, 3}, f32());
    dy.set(randn(dy.numel()));
    dw_bad.poison();
    const std::vector<float> dw_before = dw_bad.get();
    EXPECT_EQ(dlk_conv2d_backward_weight(ctx, nullptr, &x.t, &dy.t, &dw_bad.t, nullptr), DLK_ERROR_SHAPE);
    EXPECT_NE(std::string(dlk_last_error()).find("dw has shape"), std::string::npos) << dlk_last_error();
    const std::vector<float> dw_after = dw_bad.get();
    EXPECT_EQ(std::memcmp(dw_before.data(), dw_after.data(), dw_before.size() * sizeof(float)), 0);
  }
  // Output aliasing an input.
  Tensor big(ctx, {2, 6, 6, 6}, f32());
  DLTensor alias = big.t;
  alias.shape = y.t.shape;
  DLTensor xin = big.t;
  std::int64_t xs[4] = {2, 4, 6, 6};
  xin.shape = xs;
  EXPECT_EQ(dlk_conv2d_forward(ctx, nullptr, &xin, &w.t, nullptr, &alias), DLK_ERROR_LAYOUT);
  // Transposed: output_padding must be smaller than stride or dilation; weight dim 0 = in_channels.
  dlk_conv2d_params p;
  dlk_conv2d_params_init(&p);
  p.stride[0] = p.stride[1] = 2;
  p.output_padding[0] = 2;
  Tensor wt(ctx, {4, 3, 4, 4}, f32()), yt(ctx, {2, 3, 14, 14}, f32());
  yt.poison();
  const std::vector<float> yt_before = yt.get();
  EXPECT_EQ(dlk_conv_transpose2d_forward(ctx, &p, &x.t, &wt.t, nullptr, &yt.t), DLK_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(dlk_last_error()).find("output_padding"), std::string::npos) << dlk_last_error();
  p.output_padding[0] = 0;
  EXPECT_EQ(dlk_conv_transpose2d_forward(ctx, &p, &x.t, &w.t, nullptr, &yt.t), DLK_ERROR_SHAPE);
  const std::vector<float> yt_after = yt.get();
  EXPECT_EQ(std::memcmp(yt_before.data(), yt_after.data(), yt_before.size() * sizeof(float)), 0);
  // The correct call then succeeds (the shapes above were right apart from the injected faults).
  EXPECT_EQ(dlk_conv_transpose2d_forward(ctx, &p, &x.t, &wt.t, nullptr, &yt.t), DLK_SUCCESS) << dlk_last_error();
  EXPECT_EQ(dlk_conv2d_forward(ctx, nullptr, &x.t, &w.t, &b.t, &y.t), DLK_SUCCESS) << dlk_last_error();
}

#ifdef DLK_TEST_CUDNN
// GPU-side cross-check (gpu label, CUDA builds with cuDNN): our kernels and cuDNN on the same device buffers, every
// direction, fp32 (cuDNN in FMA math) and fp16 (tensor-op math). cuDNN only checks here; it never computes results.
TEST(Conv, CrossCheckAgainstCudnn) {
  DLK_TRACE_SEED();
  if (backend() != DLK_DEVICE_CUDA) GTEST_SKIP() << "the cuDNN cross-check runs on the cuda backend only";
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  cudnnHandle_t h = nullptr;
  ASSERT_EQ(cudnnCreate(&h), CUDNN_STATUS_SUCCESS);
  struct G {
    int n, c, hw, k, r, s, p, groups;
  };
  const G cases[] = {{4, 16, 17, 32, 3, 1, 1, 1},
                     {2, 32, 16, 64, 4, 2, 1, 1},
                     {3, 24, 9, 48, 1, 1, 0, 1},
                     {2, 16, 12, 32, 3, 2, 1, 4}};
  for (const G& c : cases)
    for (DLDataType dt : {f32(), f16()}) {
      SCOPED_TRACE("n" + std::to_string(c.n) + " c" + std::to_string(c.c) + " hw" + std::to_string(c.hw) + " k" +
                   std::to_string(c.k) + " r" + std::to_string(c.r) + " s" + std::to_string(c.s) + " g" +
                   std::to_string(c.groups) + " " + dtype_str(dt));
      const int oh = (c.hw + 2 * c.p - c.r) / c.s + 1;
      Tensor x(ctx, {c.n, c.c, c.hw, c.hw}, dt), w(ctx, {c.k, c.c / c.groups, c.r, c.r}, dt);
      Tensor y(ctx, {c.n, c.k, oh, oh}, dt), y2(ctx, {c.n, c.k, oh, oh}, dt), dy(ctx, {c.n, c.k, oh, oh}, dt);
      Tensor dx(ctx, {c.n, c.c, c.hw, c.hw}, dt), dx2(ctx, {c.n, c.c, c.hw, c.hw}, dt);
      Tensor dw(ctx, {c.k, c.c / c.groups, c.r, c.r}, dt), dw2(ctx, {c.k, c.c / c.groups, c.r, c.r}, dt);
      x.set(randn(x.numel()));
      w.set(randn(w.numel(), 0.3f));
      dy.set(randn(dy.numel()));
      dlk_conv2d_params p;
      dlk_conv2d_params_init(&p);
      p.stride[0] = p.stride[1] = c.s;
      p.padding[0] = p.padding[1] = p.padding[2] = p.padding[3] = c.p;
      p.groups = c.groups;
      ASSERT_EQ(dlk_conv2d_forward(ctx, &p, &x.t, &w.t, nullptr, &y.t), DLK_SUCCESS) << dlk_last_error();
      ASSERT_EQ(dlk_conv2d_backward_data(ctx, &p, &dy.t, &w.t, &dx.t), DLK_SUCCESS) << dlk_last_error();
      ASSERT_EQ(dlk_conv2d_backward_weight(ctx, &p, &x.t, &dy.t, &dw.t, nullptr), DLK_SUCCESS) << dlk_last_error();
      ASSERT_EQ(dlk_context_synchronize(ctx), DLK_SUCCESS);
      const cudnnDataType_t t = dt.bits == 32 ? CUDNN_DATA_FLOAT : CUDNN_DATA_HALF;
      cudnnTensorDescriptor_t xd, yd;
      cudnnFilterDescriptor_t wd;
      cudnnConvolutionDescriptor_t cd;
      cudnnCreateTensorDescriptor(&xd);
      cudnnCreateTensorDescriptor(&yd);
      cudnnCreateFilterDescriptor(&wd);
      cudnnCreateConvolutionDescriptor(&cd);
      cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NCHW, t, c.n, c.c, c.hw, c.hw);
      cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NCHW, t, c.n, c.k, oh, oh);
      cudnnSetFilter4dDescriptor(wd, t, CUDNN_TENSOR_NCHW, c.k, c.c / c.groups, c.r, c.r);
      cudnnSetConvolution2dDescriptor(cd, c.p, c.p, c.s, c.s, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT);
      cudnnSetConvolutionGroupCount(cd, c.groups);
      cudnnSetConvolutionMathType(cd, dt.bits == 32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH);
      const float one = 1.0f, zero = 0.0f;
      // The implicit-GEMM algorithms need no workspace and exist for every shape.
      EXPECT_EQ(cudnnConvolutionForward(h, &one, xd, x.t.data, wd, w.t.data, cd,
                                        CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0, &zero, yd, y2.t.data),
                CUDNN_STATUS_SUCCESS);
      EXPECT_EQ(cudnnConvolutionBackwardData(h, &one, wd, w.t.data, yd, dy.t.data, cd,
                                             CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, nullptr, 0, &zero, xd, dx2.t.data),
                CUDNN_STATUS_SUCCESS);
      EXPECT_EQ(cudnnConvolutionBackwardFilter(h, &one, xd, x.t.data, yd, dy.t.data, cd,
                                               CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, nullptr, 0, &zero, wd, dw2.t.data),
                CUDNN_STATUS_SUCCESS);
      cudaDeviceSynchronize();
      auto dbl = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };
      const double tol = dt.bits == 32 ? 1e-5 : 1e-2;
      EXPECT_CLOSE(y.get(), dbl(y2.get()), tol);
      EXPECT_CLOSE(dx.get(), dbl(dx2.get()), tol);
      EXPECT_CLOSE(dw.get(), dbl(dw2.get()), tol);
      cudnnDestroyTensorDescriptor(xd);
      cudnnDestroyTensorDescriptor(yd);
      cudnnDestroyFilterDescriptor(wd);
      cudnnDestroyConvolutionDescriptor(cd);
    }
  cudnnDestroy(h);
}
#endif

}  // namespace
}  // namespace dlk::test
