// Batch norm forward (training with running-stat updates, eval) and backward (training and eval formulas) on the
// backend DLK_TEST_BACKEND names, against an independent fp64 reference written here; numerical gradients
// (central differences of the fp64 reference forward) for dx, dgamma and dbeta; [N, C], [N, C, L] and [N, C, H, W]
// shapes with odd sizes; every dtype; bitwise repeatability in deterministic mode; the seed values; bad inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "test_util.h"

namespace dlk::test {
namespace {

const DLDataType kFloatTypes[] = {f32(), f16(), bf16()};

std::string shape_str(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

// [n, c, l] view.
struct View {
  std::int64_t n, c, l;
};
View view(const std::vector<std::int64_t>& s) {
  View v{s[0], s[1], 1};
  for (std::size_t d = 2; d < s.size(); ++d) v.l *= s[d];
  return v;
}

struct Stats {
  std::vector<double> mean, var;  // biased
};

Stats batch_stats(const View& v, const std::vector<double>& x) {
  Stats s{std::vector<double>(static_cast<std::size_t>(v.c), 0.0), std::vector<double>(static_cast<std::size_t>(v.c), 0.0)};
  const double cnt = static_cast<double>(v.n * v.l);
  for (std::int64_t k = 0; k < v.c; ++k) {
    double sum = 0;
    for (std::int64_t i = 0; i < v.n; ++i)
      for (std::int64_t j = 0; j < v.l; ++j) sum += x[static_cast<std::size_t>((i * v.c + k) * v.l + j)];
    const double m = sum / cnt;
    double q = 0;
    for (std::int64_t i = 0; i < v.n; ++i)
      for (std::int64_t j = 0; j < v.l; ++j) {
        const double d = x[static_cast<std::size_t>((i * v.c + k) * v.l + j)] - m;
        q += d * d;
      }
    s.mean[static_cast<std::size_t>(k)] = m;
    s.var[static_cast<std::size_t>(k)] = q / cnt;
  }
  return s;
}

// y for given per-channel mean/var (gamma/beta empty: 1/0).
std::vector<double> normalize(const View& v, const std::vector<double>& x, const std::vector<double>& mean,
                              const std::vector<double>& var, const std::vector<double>& gamma,
                              const std::vector<double>& beta, double eps) {
  std::vector<double> y(x.size());
  for (std::size_t e = 0; e < x.size(); ++e) {
    const std::size_t k = static_cast<std::size_t>((static_cast<std::int64_t>(e) / v.l) % v.c);
    const double g = gamma.empty() ? 1.0 : gamma[k], b = beta.empty() ? 0.0 : beta[k];
    y[e] = (x[e] - mean[k]) / std::sqrt(var[k] + eps) * g + b;
  }
  return y;
}

std::vector<double> dbl(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

std::vector<double> numeric_grad(std::vector<double> x, const std::vector<double>& w,
                                 const std::function<std::vector<double>(const std::vector<double>&)>& f,
                                 double step = 1e-4) {
  std::vector<double> g(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + step;
    const std::vector<double> a = f(x);
    x[i] = x0 - step;
    const std::vector<double> b = f(x);
    x[i] = x0;
    double d = 0;
    for (std::size_t k = 0; k < a.size(); ++k) d += w[k] * (a[k] - b[k]);
    g[i] = d / (2 * step);
  }
  return g;
}

dlk_batchnorm_params params(bool training, float momentum = 0.1f, float eps = 1e-5f) {
  dlk_batchnorm_params p;
  dlk_batchnorm_params_init(&p);
  p.training = training;
  p.momentum = momentum;
  p.eps = eps;
  return p;
}

const std::vector<std::vector<std::int64_t>> kShapes = {
    {7, 3}, {5, 4, 7}, {2, 3, 7, 13}, {3, 5, 1, 1}, {1, 2, 13, 7}, {4, 1, 7, 1}, {2, 33, 3}, {2, 2, 1},
    {2, 7, 31, 29}};  // the last is big enough for the strided (grid-capped) elementwise path in emu

TEST(BatchNorm, TrainingForwardUpdatesRunningStats) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (DLDataType dt : kFloatTypes)
    for (const auto& shape : kShapes)
      for (int affine = 0; affine < 2; ++affine) {
        SCOPED_TRACE(dtype_str(dt) + " x" + shape_str(shape) + (affine ? " affine" : ""));
        const View v = view(shape);
        const std::int64_t c = v.c;
        const float momentum = affine ? 0.1f : 0.3f, eps = affine ? 1e-5f : 1e-3f;
        Tensor x(ctx, shape, dt), y(ctx, shape, dt), g(ctx, {c}, f32()), b(ctx, {c}, f32());
        Tensor rm(ctx, {c}, f32()), rv(ctx, {c}, f32()), sm(ctx, {c}, f32()), si(ctx, {c}, f32());
        std::vector<float> xv = randn(x.numel(), 2.0f);
        for (std::size_t e = 0; e < xv.size(); ++e) xv[e] += 3.0f;  // |mean| > std
        x.set(xv);
        g.set(uniform(static_cast<std::size_t>(c), 0.5f, 1.5f));
        b.set(randn(static_cast<std::size_t>(c)));
        const std::vector<float> rm0 = randn(static_cast<std::size_t>(c)), rv0 = uniform(static_cast<std::size_t>(c), 0.5f, 2.0f);
        rm.set(rm0);
        rv.set(rv0);
        y.poison();
        sm.poison();
        si.poison();
        const dlk_batchnorm_params p = params(true, momentum, eps);
        ASSERT_EQ(dlk_batchnorm_forward(ctx, &p, &x.t, affine ? &g.t : nullptr, affine ? &b.t : nullptr, &rm.t, &rv.t,
                                        &y.t, &sm.t, &si.t),
                  DLK_SUCCESS)
            << dlk_last_error();
        const std::vector<double> xs = dbl(x.stored());
        const Stats st = batch_stats(v, xs);
        const std::vector<double> gv = affine ? dbl(g.stored()) : std::vector<double>{};
        const std::vector<double> bv = affine ? dbl(b.stored()) : std::vector<double>{};
        EXPECT_CLOSE(y.get(), normalize(v, xs, st.mean, st.var, gv, bv, eps), tolerance(dt));
        std::vector<double> inv(st.var.size()), erm(st.var.size()), erv(st.var.size());
        const double cnt = static_cast<double>(v.n * v.l);
        for (std::size_t k = 0; k < inv.size(); ++k) {
          inv[k] = 1.0 / std::sqrt(st.var[k] + eps);
          erm[k] = (1 - momentum) * rm0[k] + momentum * st.mean[k];
          erv[k] = (1 - momentum) * rv0[k] + momentum * st.var[k] * cnt / (cnt - 1);
        }
        // statistics are float32 from the same (rounded) inputs whatever the dtype
        // A mean near zero is ill-conditioned relative to itself: judge it in units of the channel's spread.
        std::vector<double> sd(st.var.size()), rmag(st.var.size());
        for (std::size_t k = 0; k < sd.size(); ++k) {
          sd[k] = std::sqrt(st.var[k]);
          rmag[k] = (1 - momentum) * std::fabs(rm0[k]) + momentum * sd[k];
        }
        EXPECT_CLOSE_SCALED(sm.get(), st.mean, sd, 1e-5);
        EXPECT_CLOSE(si.get(), inv, 1e-5);
        EXPECT_CLOSE_SCALED(rm.get(), erm, rmag, 1e-5);
        EXPECT_CLOSE(rv.get(), erv, 1e-5);
      }
}

TEST(BatchNorm, EvalForwardUsesRunningStats) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (DLDataType dt : kFloatTypes)
    for (const auto& shape : kShapes) {
      SCOPED_TRACE(dtype_str(dt) + " x" + shape_str(shape));
      const View v = view(shape);
      Tensor x(ctx, shape, dt), y(ctx, shape, dt), g(ctx, {v.c}, f32()), b(ctx, {v.c}, f32());
      Tensor rm(ctx, {v.c}, f32()), rv(ctx, {v.c}, f32());
      x.set(randn(x.numel()));
      g.set(randn(static_cast<std::size_t>(v.c)));
      b.set(randn(static_cast<std::size_t>(v.c)));
      rm.set(randn(static_cast<std::size_t>(v.c)));
      rv.set(uniform(static_cast<std::size_t>(v.c), 0.2f, 3.0f));
      const std::vector<float> rm0 = rm.get(), rv0 = rv.get();
      y.poison();
      const dlk_batchnorm_params p = params(false);
      ASSERT_EQ(dlk_batchnorm_forward(ctx, &p, &x.t, &g.t, &b.t, &rm.t, &rv.t, &y.t, nullptr, nullptr), DLK_SUCCESS)
          << dlk_last_error();
      EXPECT_CLOSE(y.get(), normalize(v, dbl(x.stored()), dbl(rm0), dbl(rv0), dbl(g.stored()), dbl(b.stored()), 1e-5),
                   tolerance(dt));
      EXPECT_EQ(rm.get(), rm0);  // eval leaves the running stats alone
      EXPECT_EQ(rv.get(), rv0);
    }
}

// Backward vs closed-form fp64 gradients, which are checked against numerical gradients of the fp64 reference
// forward (training: batch stats depend on x; eval: fixed).
TEST(BatchNorm, BackwardMatchesReferenceAndNumericalGradients) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (DLDataType dt : kFloatTypes)
    for (const auto& shape : kShapes)
      for (int training = 0; training < 2; ++training) {
        SCOPED_TRACE(dtype_str(dt) + " x" + shape_str(shape) + (training ? " training" : " eval"));
        const View v = view(shape);
        const std::int64_t c = v.c;
        const float eps = 1e-3f;
        Tensor x(ctx, shape, dt), y(ctx, shape, dt), g(ctx, {c}, f32()), b(ctx, {c}, f32());
        Tensor rm(ctx, {c}, f32()), rv(ctx, {c}, f32()), sm(ctx, {c}, f32()), si(ctx, {c}, f32());
        x.set(randn(x.numel()));
        g.set(uniform(static_cast<std::size_t>(c), 0.5f, 1.5f));
        b.set(randn(static_cast<std::size_t>(c)));
        rm.set(randn(static_cast<std::size_t>(c), 0.3f));
        rv.set(uniform(static_cast<std::size_t>(c), 0.5f, 2.0f));
        const std::vector<float> rm0 = rm.get(), rv0 = rv.get();
        const dlk_batchnorm_params p = params(training, 0.1f, eps);
        ASSERT_EQ(dlk_batchnorm_forward(ctx, &p, &x.t, &g.t, &b.t, training ? nullptr : &rm.t,
                                        training ? nullptr : &rv.t, &y.t, &sm.t, &si.t),
                  DLK_SUCCESS)
            << dlk_last_error();
        Tensor dy(ctx, shape, dt), dx(ctx, shape, dt), dg(ctx, {c}, f32()), db(ctx, {c}, f32());
        dy.set(randn(dy.numel()));
        dx.poison();
        dg.poison();
        db.poison();
        ASSERT_EQ(dlk_batchnorm_backward(ctx, &p, &dy.t, &x.t, &g.t, &rm.t, &rv.t, &sm.t, &si.t, &dx.t, &dg.t, &db.t),
                  DLK_SUCCESS)
            << dlk_last_error();
        const std::vector<double> xs = dbl(x.stored()), w = dbl(dy.stored()), gs = dbl(g.stored()),
                                  bs = dbl(b.stored());
        auto fx = [&](const std::vector<double>& xv) {
          if (!training) return normalize(v, xv, dbl(rm0), dbl(rv0), gs, bs, eps);
          const Stats st = batch_stats(v, xv);
          return normalize(v, xv, st.mean, st.var, gs, bs, eps);
        };
        const Stats st0 = batch_stats(v, xs);
        const std::vector<double> mean = training ? st0.mean : dbl(rm0), var = training ? st0.var : dbl(rv0);
        auto fg = [&](const std::vector<double>& gv) { return normalize(v, xs, mean, var, gv, bs, eps); };
        auto fb = [&](const std::vector<double>& bv) { return normalize(v, xs, mean, var, gs, bv, eps); };
        // Closed-form fp64 gradients (the textbook formulas), checked themselves against central differences of the
        // fp64 forward on every shape small enough for that to be quick.
        std::vector<double> adx(xs.size()), adg(static_cast<std::size_t>(c)), adb(static_cast<std::size_t>(c));
        // dgamma and dbeta are sums of signed terms: judged against the sums of |terms| (they can cancel).
        std::vector<double> mag_g(static_cast<std::size_t>(c)), mag_b(static_cast<std::size_t>(c));
        double dx_terms2 = 0;  // sum over elements of (the sum of |terms| of dx)^2: the scale cancellation errors scale with
        const double cnt = static_cast<double>(v.n * v.l);
        for (std::int64_t k = 0; k < c; ++k) {
          const std::size_t kk = static_cast<std::size_t>(k);
          const double inv = 1.0 / std::sqrt(var[kk] + eps);
          double sdy = 0, sdyx = 0;
          for (std::int64_t i = 0; i < v.n; ++i)
            for (std::int64_t j = 0; j < v.l; ++j) {
              const std::size_t e = static_cast<std::size_t>((i * c + k) * v.l + j);
              sdy += w[e];
              sdyx += w[e] * (xs[e] - mean[kk]) * inv;
              mag_b[kk] += std::abs(w[e]);
              mag_g[kk] += std::abs(w[e] * (xs[e] - mean[kk]) * inv);
            }
          adg[kk] = sdyx;
          adb[kk] = sdy;
          for (std::int64_t i = 0; i < v.n; ++i)
            for (std::int64_t j = 0; j < v.l; ++j) {
              const std::size_t e = static_cast<std::size_t>((i * c + k) * v.l + j);
              const double xhat = (xs[e] - mean[kk]) * inv;
              adx[e] = gs[kk] * inv * (training ? w[e] - sdy / cnt - xhat * sdyx / cnt : w[e]);
              const double term = gs[kk] * inv * (std::abs(w[e]) + std::abs(sdy / cnt) + std::abs(xhat * sdyx / cnt));
              dx_terms2 += term * term;
            }
        }
        if (xs.size() <= 1200) {
          if (v.n * v.l > 2)  // two values per channel: dx is ~0 (y = +-1 whatever x), relative error meaningless
            EXPECT_CLOSE(std::vector<float>(adx.begin(), adx.end()), numeric_grad(xs, w, fx), 1e-5);
          EXPECT_CLOSE(std::vector<float>(adg.begin(), adg.end()), numeric_grad(gs, w, fg), 1e-5);
          EXPECT_CLOSE(std::vector<float>(adb.begin(), adb.end()), numeric_grad(bs, w, fb), 1e-5);
        }
        // half inputs: dx is rounded to the dtype; the reductions are fp32 from the same rounded inputs. With two
        // values per channel dx is mathematically ~0 (y = +-1 whatever x), and 1/sigma can be large: the error is
        // measured against the sums of |terms| (floored at 0.01/element).
        const std::vector<double>& ndx = adx;
        const std::vector<float> gdx = dx.get();
        double num = 0, den = 0;
        for (std::size_t e = 0; e < ndx.size(); ++e) {
          num += (gdx[e] - ndx[e]) * (gdx[e] - ndx[e]);
          den += ndx[e] * ndx[e];
        }
        EXPECT_TRUE(all_finite(gdx));
        EXPECT_LE(std::sqrt(num / std::max({den, dx_terms2, 1e-4 * static_cast<double>(ndx.size())})),
                  dt.bits == 32 ? 1e-4 : tolerance(dt));
        EXPECT_CLOSE_SCALED(dg.get(), adg, mag_g, 1e-4);
        EXPECT_CLOSE_SCALED(db.get(), adb, mag_b, 1e-4);
      }
}

// Optional outputs and gamma = NULL: each gradient alone equals the one computed with all three.
TEST(BatchNorm, BackwardOptionalOutputs) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  const std::vector<std::int64_t> shape = {3, 4, 5, 7};
  Tensor x(ctx, shape, f32()), y(ctx, shape, f32()), sm(ctx, {4}, f32()), si(ctx, {4}, f32());
  x.set(randn(x.numel()));
  const dlk_batchnorm_params p = params(true);
  ASSERT_EQ(dlk_batchnorm_forward(ctx, &p, &x.t, nullptr, nullptr, nullptr, nullptr, &y.t, &sm.t, &si.t), DLK_SUCCESS)
      << dlk_last_error();
  Tensor dy(ctx, shape, f32()), dx(ctx, shape, f32()), dx2(ctx, shape, f32()), dg(ctx, {4}, f32()),
      dg2(ctx, {4}, f32()), db(ctx, {4}, f32());
  dy.set(randn(dy.numel()));
  ASSERT_EQ(dlk_batchnorm_backward(ctx, &p, &dy.t, &x.t, nullptr, nullptr, nullptr, &sm.t, &si.t, &dx.t, &dg.t, &db.t),
            DLK_SUCCESS)
      << dlk_last_error();
  ASSERT_EQ(dlk_batchnorm_backward(ctx, &p, &dy.t, &x.t, nullptr, nullptr, nullptr, &sm.t, &si.t, &dx2.t, nullptr,
                                   nullptr),
            DLK_SUCCESS)
      << dlk_last_error();
  ASSERT_EQ(dlk_batchnorm_backward(ctx, &p, &dy.t, &x.t, nullptr, nullptr, nullptr, &sm.t, &si.t, nullptr, &dg2.t,
                                   nullptr),
            DLK_SUCCESS)
      << dlk_last_error();
  EXPECT_EQ(dx.get(), dx2.get());
  EXPECT_EQ(dg.get(), dg2.get());
  // sum of dx over a channel is zero in training mode (the mean subtraction)
  const std::vector<float> d = dx.get();
  double s0 = 0;
  for (std::int64_t i = 0; i < 3; ++i)
    for (std::int64_t j = 0; j < 35; ++j) s0 += d[static_cast<std::size_t>((i * 4) * 35 + j)];
  EXPECT_NEAR(s0, 0.0, 1e-4);
}

TEST(BatchNorm, DeterministicBitwiseRepeatable) {
  DLK_TRACE_SEED();
  Context ctx(backend(), 1);
  SKIP_IF_NO_BACKEND(ctx);
  const std::vector<std::int64_t> shape = {9, 5, 11, 13};
  Tensor x(ctx, shape, f32()), y1(ctx, shape, f32()), y2(ctx, shape, f32()), sm(ctx, {5}, f32()), si(ctx, {5}, f32());
  Tensor dy(ctx, shape, f32()), dx1(ctx, shape, f32()), dx2(ctx, shape, f32());
  Tensor dg1(ctx, {5}, f32()), dg2(ctx, {5}, f32()), db1(ctx, {5}, f32()), db2(ctx, {5}, f32());
  x.set(randn(x.numel()));
  dy.set(randn(dy.numel()));
  const dlk_batchnorm_params p = params(true);
  ASSERT_EQ(dlk_batchnorm_forward(ctx, &p, &x.t, nullptr, nullptr, nullptr, nullptr, &y1.t, &sm.t, &si.t), DLK_SUCCESS);
  ASSERT_EQ(dlk_batchnorm_forward(ctx, &p, &x.t, nullptr, nullptr, nullptr, nullptr, &y2.t, nullptr, nullptr),
            DLK_SUCCESS);
  ASSERT_EQ(dlk_batchnorm_backward(ctx, &p, &dy.t, &x.t, nullptr, nullptr, nullptr, &sm.t, &si.t, &dx1.t, &dg1.t, &db1.t),
            DLK_SUCCESS);
  ASSERT_EQ(dlk_batchnorm_backward(ctx, &p, &dy.t, &x.t, nullptr, nullptr, nullptr, &sm.t, &si.t, &dx2.t, &dg2.t, &db2.t),
            DLK_SUCCESS);
  auto same = [](Tensor& a, Tensor& b) {
    const std::vector<float> u = a.get(), w = b.get();
    return std::memcmp(u.data(), w.data(), u.size() * sizeof(float)) == 0;
  };
  EXPECT_TRUE(same(y1, y2));
  EXPECT_TRUE(same(dx1, dx2));
  EXPECT_TRUE(same(dg1, dg2));
  EXPECT_TRUE(same(db1, db2));
}

// Hand-computed: x = [1, 2, 3, 4] as [N=4, C=1]: mean 2.5, biased var 1.25, unbiased 5/3.
TEST(BatchNorm, SeedValues) {
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  Tensor x(ctx, {4, 1}, f32()), y(ctx, {4, 1}, f32()), rm(ctx, {1}, f32()), rv(ctx, {1}, f32());
  x.set({1, 2, 3, 4});
  rm.set({0});
  rv.set({1});
  const dlk_batchnorm_params p = params(true);
  ASSERT_EQ(dlk_batchnorm_forward(ctx, &p, &x.t, nullptr, nullptr, &rm.t, &rv.t, &y.t, nullptr, nullptr), DLK_SUCCESS)
      << dlk_last_error();
  const std::vector<float> yv = y.get();
  const float want[] = {-1.3416355f, -0.4472118f, 0.4472118f, 1.3416355f};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(yv[static_cast<std::size_t>(i)], want[i], 1e-6);
  EXPECT_NEAR(rm.get()[0], 0.25f, 1e-7);
  EXPECT_NEAR(rv.get()[0], 0.9f + 0.1f * 5.0f / 3.0f, 1e-6);
}

void expect_error(dlk_status got, dlk_status want, std::vector<std::string> fragments) {
  EXPECT_EQ(got, want) << dlk_status_string(got) << ": " << dlk_last_error();
  const std::string msg = dlk_last_error();
  for (const std::string& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "'" << f << "' not in: " << msg;
}

TEST(BatchNorm, BadInputs) {
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  Tensor x(ctx, {2, 3, 4}, f32()), y(ctx, {2, 3, 4}, f32()), g(ctx, {3}, f32()), g4(ctx, {4}, f32());
  Tensor rm(ctx, {3}, f32()), rv(ctx, {3}, f32());
  x.set(randn(x.numel()));
  rm.set({0, 0, 0});
  rv.set({1, 1, 1});
  y.poison();
  dlk_batchnorm_params p = params(true, NAN);
  expect_error(dlk_batchnorm_forward(ctx, &p, &x.t, nullptr, nullptr, &rm.t, &rv.t, &y.t, nullptr, nullptr),
               DLK_ERROR_INVALID_ARGUMENT, {"batchnorm_forward", "params->momentum", "finite"});
  p = params(true);
  p.eps = -1.0f;
  expect_error(dlk_batchnorm_forward(ctx, &p, &x.t, nullptr, nullptr, &rm.t, &rv.t, &y.t, nullptr, nullptr),
               DLK_ERROR_INVALID_ARGUMENT, {"params->eps"});
  p = params(true);
  expect_error(dlk_batchnorm_forward(ctx, &p, &x.t, &g4.t, nullptr, &rm.t, &rv.t, &y.t, nullptr, nullptr),
               DLK_ERROR_SHAPE, {"gamma has shape [4]", "expected [3]", "channel"});
  expect_error(dlk_batchnorm_forward(ctx, &p, &x.t, &g.t, nullptr, &rm.t, nullptr, &y.t, nullptr, nullptr),
               DLK_ERROR_INVALID_ARGUMENT, {"running_var is NULL"});
  const dlk_batchnorm_params pe = params(false);
  expect_error(dlk_batchnorm_forward(ctx, &pe, &x.t, &g.t, nullptr, nullptr, nullptr, &y.t, nullptr, nullptr),
               DLK_ERROR_INVALID_ARGUMENT, {"running_mean is NULL", "eval"});
  Tensor one(ctx, {1, 3}, f32()), one_y(ctx, {1, 3}, f32());
  one.set({1, 2, 3});
  expect_error(dlk_batchnorm_forward(ctx, &p, &one.t, nullptr, nullptr, nullptr, nullptr, &one_y.t, nullptr, nullptr),
               DLK_ERROR_SHAPE, {"more than 1 value per channel"});
  Tensor r1(ctx, {6}, f32());
  expect_error(dlk_batchnorm_forward(ctx, &p, &r1.t, nullptr, nullptr, nullptr, nullptr, &r1.t, nullptr, nullptr),
               DLK_ERROR_SHAPE, {"x has rank 1"});
  Tensor yh(ctx, {2, 3, 4}, f16());
  expect_error(dlk_batchnorm_forward(ctx, &p, &x.t, nullptr, nullptr, nullptr, nullptr, &yh.t, nullptr, nullptr),
               DLK_ERROR_DTYPE, {"y has dtype float16"});
  Tensor g64(ctx, {3}, DLDataType{kDLFloat, 64, 1});
  expect_error(dlk_batchnorm_forward(ctx, &p, &x.t, &g64.t, nullptr, nullptr, nullptr, &y.t, nullptr, nullptr),
               DLK_ERROR_DTYPE, {"gamma"});
  EXPECT_FALSE(all_finite(y.get()));  // untouched
  // backward: training needs the saved statistics
  Tensor dy(ctx, {2, 3, 4}, f32()), dx(ctx, {2, 3, 4}, f32());
  expect_error(dlk_batchnorm_backward(ctx, &p, &dy.t, &x.t, nullptr, nullptr, nullptr, nullptr, nullptr, &dx.t,
                                      nullptr, nullptr),
               DLK_ERROR_INVALID_ARGUMENT, {"batchnorm_backward", "save_mean is NULL"});
  expect_error(dlk_batchnorm_backward(ctx, &pe, &dy.t, &x.t, nullptr, &rm.t, nullptr, nullptr, nullptr, &dx.t,
                                      nullptr, nullptr),
               DLK_ERROR_INVALID_ARGUMENT, {"running_var is NULL"});
  Tensor dg(ctx, {2}, f32());
  expect_error(dlk_batchnorm_backward(ctx, &pe, &dy.t, &x.t, nullptr, &rm.t, &rv.t, nullptr, nullptr, &dx.t, &dg.t,
                                      nullptr),
               DLK_ERROR_SHAPE, {"dgamma has shape [2]"});
}

}  // namespace
}  // namespace dlk::test
