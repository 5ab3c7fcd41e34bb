// Layer norm on the backend DLK_TEST_BACKEND names (cpu, emu or cuda), against an fp64 reference written here,
// independently of the library's cpu code: two-pass statistics, the analytic backward, and central-difference
// numerical gradients of L = sum(w * y). References are built from the inputs as stored (after rounding to the
// dtype). Every output is poisoned (NaN) before each call, so an unwritten element fails.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

using dlk::test::backend;
using dlk::test::bf16;
using dlk::test::Context;
using dlk::test::dtype_str;
using dlk::test::f16;
using dlk::test::f32;
using dlk::test::randn;
using dlk::test::rel_error;
using dlk::test::Tensor;
using dlk::test::tolerance;
using dlk::test::uniform;

using Vec = std::vector<double>;

Vec to_double(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

// ---------------------------------------------------------------------------------------------- fp64 reference

struct FwdRef {
  Vec y, mean, rstd;
};

// gamma/beta empty = absent.
FwdRef ref_forward(const Vec& x, const Vec& gamma, const Vec& beta, std::int64_t rows, std::int64_t cols, double eps) {
  FwdRef r;
  r.y.resize(x.size());
  r.mean.resize(rows);
  r.rstd.resize(rows);
  for (std::int64_t i = 0; i < rows; ++i) {
    const double* xr = x.data() + i * cols;
    double s = 0;
    for (std::int64_t j = 0; j < cols; ++j) s += xr[j];
    const double m = s / cols;
    double q = 0;
    for (std::int64_t j = 0; j < cols; ++j) q += (xr[j] - m) * (xr[j] - m);
    const double rs = 1.0 / std::sqrt(q / cols + eps);
    for (std::int64_t j = 0; j < cols; ++j) {
      double y = (xr[j] - m) * rs;
      if (!gamma.empty()) y *= gamma[j];
      if (!beta.empty()) y += beta[j];
      r.y[i * cols + j] = y;
    }
    r.mean[i] = m;
    r.rstd[i] = rs;
  }
  return r;
}

struct BwdRef {
  Vec dx, dgamma, dbeta;
  Vec dgamma_abs, dbeta_abs;  // sum over rows of |term|: the scale of a sum's rounding error
};

// The analytic backward for the given (saved) mean and rstd.
BwdRef ref_backward(const Vec& dy, const Vec& x, const Vec& mean, const Vec& rstd, const Vec& gamma, std::int64_t rows,
                    std::int64_t cols) {
  BwdRef r;
  r.dx.resize(x.size());
  r.dgamma.assign(cols, 0.0);
  r.dbeta.assign(cols, 0.0);
  r.dgamma_abs.assign(cols, 0.0);
  r.dbeta_abs.assign(cols, 0.0);
  for (std::int64_t i = 0; i < rows; ++i) {
    double sg = 0, sgx = 0;
    for (std::int64_t j = 0; j < cols; ++j) {
      const double xh = (x[i * cols + j] - mean[i]) * rstd[i];
      const double g = dy[i * cols + j] * (gamma.empty() ? 1.0 : gamma[j]);
      sg += g;
      sgx += g * xh;
      r.dgamma[j] += dy[i * cols + j] * xh;
      r.dbeta[j] += dy[i * cols + j];
      r.dgamma_abs[j] += std::fabs(dy[i * cols + j] * xh);
      r.dbeta_abs[j] += std::fabs(dy[i * cols + j]);
    }
    for (std::int64_t j = 0; j < cols; ++j) {
      const double xh = (x[i * cols + j] - mean[i]) * rstd[i];
      const double g = dy[i * cols + j] * (gamma.empty() ? 1.0 : gamma[j]);
      r.dx[i * cols + j] = rstd[i] * (g - sg / cols - xh * sgx / cols);
    }
  }
  return r;
}

// Central differences of L = sum(w * y(x, gamma, beta)) with the fp64 forward; step h relative to each value.
BwdRef numerical_backward(const Vec& w, Vec x, Vec gamma, Vec beta, std::int64_t rows, std::int64_t cols, double eps) {
  auto loss = [&]() {
    FwdRef f = ref_forward(x, gamma, beta, rows, cols, eps);
    double l = 0;
    for (std::size_t i = 0; i < w.size(); ++i) l += w[i] * f.y[i];
    return l;
  };
  auto grad = [&](Vec& v) {
    Vec g(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) {
      const double keep = v[i], h = 1e-6 * std::max(1.0, std::fabs(keep));
      v[i] = keep + h;
      const double lp = loss();
      v[i] = keep - h;
      const double lm = loss();
      v[i] = keep;
      g[i] = (lp - lm) / (2 * h);
    }
    return g;
  };
  BwdRef r;
  r.dx = grad(x);
  if (!gamma.empty()) r.dgamma = grad(gamma);
  if (!beta.empty()) r.dbeta = grad(beta);
  return r;
}

// ------------------------------------------------------------------------------------------------- harness

// dgamma/dbeta are sums over rows whose result may cancel (C = 1: one sum of a few terms of both signs), and fp32
// accumulation (the GPU kernels) errs in proportion to the sum of the terms' magnitudes. So their error is measured
// against the larger of ||ref|| and ||sum |terms||| / sqrt(rows), the typical size of a sum of random-sign terms.
void expect_close_sum(const std::vector<float>& out, const Vec& ref, const Vec& abs, std::int64_t rows, double tol,
                      const char* what) {
  double num = 0, den_ref = 0, den_abs = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const double d = std::isnan(out[i]) ? INFINITY : out[i] - ref[i];
    num += d * d;
    den_ref += ref[i] * ref[i];
    den_abs += abs[i] * abs[i];
  }
  const double den = std::max(std::sqrt(den_ref), std::sqrt(den_abs / std::max<std::int64_t>(rows, 1)));
  const double err = den > 0 ? std::sqrt(num) / den : std::sqrt(num);
  EXPECT_LE(err, tol) << what << ": error " << err << " > " << tol << " (relative to max(||ref||, ||sum|terms|||"
                      << "/sqrt(rows)); NaN counts as inf)";
}

// EXPECT_CLOSE with the output named in the message.
void expect_close(const std::vector<float>& out, const Vec& ref, double tol, const char* what) {
  const double err = rel_error(out, ref);
  EXPECT_LE(err, tol) << what << ": relative error " << err << " > " << tol << " (NaN counts as inf)";
}

dlk_layernorm_params params(float eps, int nd = 1, int accumulate = 0) {
  dlk_layernorm_params p;
  dlk_layernorm_params_init(&p);
  p.eps = eps;
  p.normalized_ndim = nd;
  p.accumulate = accumulate;
  return p;
}

struct Shape {
  std::vector<std::int64_t> dims;  // of x
  int nd = 1;                      // normalised trailing dims
  std::int64_t rows() const {
    std::int64_t r = 1;
    for (std::size_t i = 0; i + nd < dims.size(); ++i) r *= dims[i];
    return r;
  }
  std::int64_t cols() const {
    std::int64_t c = 1;
    for (std::size_t i = dims.size() - nd; i < dims.size(); ++i) c *= dims[i];
    return c;
  }
  std::vector<std::int64_t> lead() const { return {dims.begin(), dims.end() - nd}; }
  std::vector<std::int64_t> trail() const { return {dims.end() - nd, dims.end()}; }
};

Shape rows_cols(std::int64_t rows, std::int64_t cols) { return Shape{{rows, cols}, 1}; }

std::string describe(const Shape& s, DLDataType dt, DLDataType wt, bool g, bool b, float eps) {
  std::ostringstream o;
  o << "x [";
  for (std::size_t i = 0; i < s.dims.size(); ++i) o << (i ? "," : "") << s.dims[i];
  o << "] nd " << s.nd << " " << dtype_str(dt) << " weights " << dtype_str(wt) << (g ? " gamma" : " no-gamma")
    << (b ? " beta" : " no-beta") << " eps " << eps;
  return o.str();
}

// Random rows with a random offset per row, so the mean is far from zero and the shift matters.
std::vector<float> random_rows(std::int64_t rows, std::int64_t cols) {
  std::vector<float> x = randn(static_cast<std::size_t>(rows * cols), 1.5f);
  std::vector<float> off = uniform(static_cast<std::size_t>(rows), -3.0f, 3.0f);
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j) x[i * cols + j] += off[i];
  return x;
}

struct FwdCase {
  Shape shape;
  DLDataType dt = f32(), wt = f32();
  bool gamma = true, beta = true, stats = true;
  float eps = 1e-5f;
  std::vector<float> x;  // empty: random_rows
};

void check_forward(const Context& ctx, const FwdCase& c) {
  SCOPED_TRACE(describe(c.shape, c.dt, c.wt, c.gamma, c.beta, c.eps));
  const std::int64_t R = c.shape.rows(), C = c.shape.cols();
  Tensor x(ctx, c.shape.dims, c.dt), y(ctx, c.shape.dims, c.dt);
  Tensor g(ctx, c.shape.trail(), c.wt), b(ctx, c.shape.trail(), c.wt);
  Tensor mean(ctx, c.shape.lead(), f32()), rstd(ctx, c.shape.lead(), f32());
  x.set(c.x.empty() ? random_rows(R, C) : c.x);
  std::vector<float> gv = randn(C, 1.0f), bv = randn(C, 0.5f);
  g.set(gv);
  b.set(bv);
  y.poison();
  mean.poison();
  rstd.poison();
  dlk_layernorm_params p = params(c.eps, c.shape.nd);
  ASSERT_EQ(dlk_layernorm_forward(ctx, &p, &x.t, c.gamma ? &g.t : nullptr, c.beta ? &b.t : nullptr, &y.t,
                                  c.stats ? &mean.t : nullptr, c.stats ? &rstd.t : nullptr),
            DLK_SUCCESS)
      << dlk_last_error();
  FwdRef ref = ref_forward(to_double(x.stored()), c.gamma ? to_double(g.stored()) : Vec{},
                           c.beta ? to_double(b.stored()) : Vec{}, R, C, c.eps);
  std::vector<float> yo = y.get();
  EXPECT_TRUE(dlk::test::all_finite(yo)) << "y has unwritten or non-finite elements";
  EXPECT_CLOSE(yo, ref.y, tolerance(c.dt));
  if (c.stats) {
    // The statistics are fp32 computed from the stored inputs whatever the dtype of x. The mean's error is measured
    // in units of the row's sqrt(var + eps) (what it shifts y by; a mean near 0 has no relative precision), beyond
    // the one fp32 ulp that storing it as float32 may cost (a row with std << |mean| cannot do better).
    std::vector<float> mo = mean.get();
    double num = 0;
    for (std::int64_t i = 0; i < R; ++i) {
      const float mr = static_cast<float>(std::fabs(ref.mean[i]));
      const double ulp = std::nextafter(mr, INFINITY) - mr;
      const double d = std::max(0.0, std::fabs(mo[i] - ref.mean[i]) - ulp) * ref.rstd[i];
      num += std::isnan(mo[i]) ? INFINITY : d * d;
    }
    EXPECT_LE(std::sqrt(num / static_cast<double>(R)), 1e-5) << "mean error in units of sqrt(var + eps)";
    EXPECT_CLOSE(rstd.get(), ref.rstd, 1e-5);
  }
}

struct BwdCase {
  Shape shape;
  DLDataType dt = f32(), wt = f32();
  bool gamma = true, dx = true, dgamma = true, dbeta = true;
  float eps = 1e-5f;
  bool numerical = false;  // also compare with the fp64 central-difference gradients (small shapes only)
  bool alias = false;      // dx is dy
};

// Runs the backward on random inputs with mean/rstd computed here (fp64, stored as fp32), checks against the
// analytic fp64 backward for those statistics and, when asked, against numerical gradients.
void check_backward(const Context& ctx, const BwdCase& c) {
  SCOPED_TRACE(describe(c.shape, c.dt, c.wt, c.gamma, true, c.eps) + (c.alias ? " dx=dy" : ""));
  const std::int64_t R = c.shape.rows(), C = c.shape.cols();
  Tensor x(ctx, c.shape.dims, c.dt), dy(ctx, c.shape.dims, c.dt), dx(ctx, c.shape.dims, c.dt);
  Tensor g(ctx, c.shape.trail(), c.wt), dg(ctx, c.shape.trail(), c.wt), db(ctx, c.shape.trail(), c.wt);
  Tensor mean(ctx, c.shape.lead(), f32()), rstd(ctx, c.shape.lead(), f32());
  x.set(random_rows(R, C));
  dy.set(randn(static_cast<std::size_t>(R * C)));
  g.set(randn(C, 1.0f));
  const Vec xs = to_double(x.stored()), dys = to_double(dy.stored());
  const Vec gs = c.gamma ? to_double(g.stored()) : Vec{};
  FwdRef f = ref_forward(xs, gs, Vec{}, R, C, c.eps);
  std::vector<float> mf(f.mean.begin(), f.mean.end()), rf(f.rstd.begin(), f.rstd.end());
  mean.set(mf);
  rstd.set(rf);
  if (!c.alias) dx.poison();
  dg.poison();
  db.poison();
  dlk_layernorm_params p = params(c.eps, c.shape.nd);
  Tensor& dxo = c.alias ? dy : dx;
  ASSERT_EQ(dlk_layernorm_backward(ctx, &p, &dy.t, &x.t, &mean.t, &rstd.t, c.gamma ? &g.t : nullptr,
                                   c.dx ? &dxo.t : nullptr, c.dgamma ? &dg.t : nullptr, c.dbeta ? &db.t : nullptr),
            DLK_SUCCESS)
      << dlk_last_error();
  BwdRef ref = ref_backward(dys, xs, to_double(mean.stored()), to_double(rstd.stored()), gs, R, C);
  const double tol = tolerance(c.dt);
  std::vector<float> dxv, dgv, dbv;
  if (c.dx) {
    dxv = dxo.get();
    EXPECT_TRUE(dlk::test::all_finite(dxv)) << "dx has unwritten elements";
    expect_close(dxv, ref.dx, tol, "dx vs analytic");
  }
  if (c.dgamma) {
    dgv = dg.get();
    EXPECT_TRUE(dlk::test::all_finite(dgv)) << "dgamma has unwritten elements";
    expect_close_sum(dgv, ref.dgamma, ref.dgamma_abs, R, tol, "dgamma vs analytic");
  }
  if (c.dbeta) {
    dbv = db.get();
    EXPECT_TRUE(dlk::test::all_finite(dbv)) << "dbeta has unwritten elements";
    expect_close_sum(dbv, ref.dbeta, ref.dbeta_abs, R, tol, "dbeta vs analytic");
  }
  if (!c.numerical) return;
  // Numerical gradients of L = sum(dy * y) at the stored inputs (beta present: its gradient is dbeta).
  BwdRef num = numerical_backward(dys, xs, c.gamma ? gs : Vec(C, 1.0), Vec(C, 0.0), R, C, c.eps);
  // The analytic formula itself, in fp64, agrees with the numerical gradients (exact statistics).
  BwdRef exact = ref_backward(dys, xs, f.mean, f.rstd, gs, R, C);
  std::vector<float> exf(exact.dx.begin(), exact.dx.end());
  EXPECT_LE(rel_error(exf, num.dx), 1e-6) << "fp64 analytic dx vs numerical";
  // The library against the numerical gradients.
  if (c.dx) expect_close(dxv, num.dx, tol, "dx vs numerical");
  if (c.dgamma) expect_close_sum(dgv, num.dgamma, ref.dgamma_abs, R, tol, "dgamma vs numerical");
  if (c.dbeta) expect_close_sum(dbv, num.dbeta, ref.dbeta_abs, R, tol, "dbeta vs numerical");
}

const std::vector<DLDataType> kDtypes = {f32(), f16(), bf16()};

// Weight dtypes allowed with x's dtype: float32, and x's dtype when different.
std::vector<DLDataType> weight_dtypes(DLDataType dt) {
  if (dt.bits == 32) return {f32()};
  return {f32(), dt};
}

// Rows per width: every path with 1, 7 and many rows where cheap; wide rows only a few (the emulator runs each GPU
// thread as a fiber).
std::vector<std::int64_t> rows_for(std::int64_t cols) {
  if (cols <= 384) return {1, 7, 1000};
  if (cols <= 1025) return {1, 7, 100};
  return {1, 3};
}

// Widths covering every kernel path: scalar warp (1, 7, 33), vectorised warp (384, 1000; 500 is scalar-block for
// 16-bit dtypes), block in shared memory (257, 1025, 4096, 16384), block re-reading from global (25001, 30000).
const std::vector<std::int64_t> kWidths = {1, 7, 33, 257, 384, 500, 1000, 1025, 4096, 16384, 25001, 30000};

// ---------------------------------------------------------------------------------------------------- forward

TEST(LayerNormForward, EveryWidthDtypeAndRowCount) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  int k = 0;
  for (DLDataType dt : kDtypes)
    for (std::int64_t cols : kWidths)
      for (std::int64_t rows : cols > 16384 ? std::vector<std::int64_t>{1} : rows_for(cols)) {
        FwdCase c;
        c.shape = rows_cols(rows, cols);
        c.dt = dt;
        c.wt = weight_dtypes(dt)[k++ % weight_dtypes(dt).size()];  // alternate fp32 and x-dtype weights
        check_forward(ctx, c);
      }
}

TEST(LayerNormForward, WeightDtypesAndOptionalAffine) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (DLDataType dt : kDtypes)
    for (DLDataType wt : weight_dtypes(dt))
      for (std::int64_t cols : {33, 1000, 2048})
        for (int affine = 0; affine < 4; ++affine) {
          FwdCase c;
          c.shape = rows_cols(5, cols);
          c.dt = dt;
          c.wt = wt;
          c.gamma = affine & 1;
          c.beta = affine & 2;
          c.stats = affine != 1;  // mean/rstd may be NULL
          check_forward(ctx, c);
        }
}

TEST(LayerNormForward, NormalizedNdimTwo) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (DLDataType dt : kDtypes) {
    FwdCase c;
    c.shape = Shape{{2, 3, 4, 5}, 2};  // 6 rows of 20
    c.dt = dt;
    check_forward(ctx, c);
    c.shape = Shape{{2, 3, 4, 5}, 1};  // 24 rows of 5
    check_forward(ctx, c);
    c.shape = Shape{{2, 3, 4, 5}, 4};  // 1 row of 120
    check_forward(ctx, c);
    c.shape = Shape{{7, 16, 64}, 2};  // 7 rows of 1024: the widest warp row
    check_forward(ctx, c);
  }
}

TEST(LayerNormForward, EpsZeroAndLarge) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (DLDataType dt : kDtypes)
    for (float eps : {0.0f, 1e-2f, 1.0f})
      for (std::int64_t cols : {2, 33, 1000, 4096}) {
        FwdCase c;
        c.shape = rows_cols(3, cols);
        c.dt = dt;
        c.eps = eps;
        if (eps > 0) {  // small spread, so eps visibly changes the result
          c.x = randn(static_cast<std::size_t>(3 * cols), 0.05f);
        } else {  // eps 0 needs non-constant rows even after rounding to 16 bits: alternate +-1 plus noise
          c.x = randn(static_cast<std::size_t>(3 * cols), 0.1f);
          for (std::size_t i = 0; i < c.x.size(); ++i) c.x[i] += (i % 2) ? 1.0f : -1.0f;
        }
        check_forward(ctx, c);
      }
}

TEST(LayerNormForward, ConstantRowsGiveBeta) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (DLDataType dt : kDtypes)
    for (std::int64_t cols : {1, 7, 384, 1000, 3000, 30000})
      for (bool beta : {true, false}) {
        // Row 0 constant at a value that is not a power of two, row 1 constant at 0, row 2 random.
        const std::int64_t rows = 3;
        std::vector<float> x = random_rows(rows, cols);
        for (std::int64_t j = 0; j < cols; ++j) {
          x[j] = 3.7f;
          x[cols + j] = 0.0f;
        }
        FwdCase c;
        c.shape = rows_cols(rows, cols);
        c.dt = dt;
        c.beta = beta;
        c.x = x;
        check_forward(ctx, c);
      }
}

TEST(LayerNormForward, LargeOffsetSmallSpread) {
  // |mean| >> std: E[x^2] - E[x]^2 would lose every digit here; the two-pass variance must not.
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (std::int64_t cols : {64, 1000, 5000}) {
    std::vector<float> x = randn(static_cast<std::size_t>(4 * cols), 0.1f);
    for (auto& v : x) v += 1000.0f;
    FwdCase c;
    c.shape = rows_cols(4, cols);
    c.x = x;
    c.stats = false;  // the fp32 mean itself is rounded at 1000's ulp
    check_forward(ctx, c);
  }
}

// Views shifted by one element: rows that would vectorise but whose base pointer is not 16-byte aligned.
TEST(LayerNormForward, MisalignedPointers) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (DLDataType dt : kDtypes)
    for (std::int64_t cols : {384, 4096}) {
      SCOPED_TRACE(dtype_str(dt) + " cols " + std::to_string(cols) + " offset by one element");
      const std::int64_t rows = 3, n = rows * cols;
      Tensor xb(ctx, {n + 1}, dt), yb(ctx, {n + 1}, dt);
      std::vector<float> xv = random_rows(1, n + 1);
      xb.set(xv);
      yb.poison();
      std::int64_t shape[2] = {rows, cols};
      DLTensor x = xb.t, y = yb.t;
      x.ndim = y.ndim = 2;
      x.shape = y.shape = shape;
      x.byte_offset = y.byte_offset = dt.bits / 8;
      dlk_layernorm_params p = params(1e-5f);
      ASSERT_EQ(dlk_layernorm_forward(ctx, &p, &x, nullptr, nullptr, &y, nullptr, nullptr), DLK_SUCCESS)
          << dlk_last_error();
      std::vector<float> xs = xb.stored();
      FwdRef ref = ref_forward(Vec(xs.begin() + 1, xs.end()), {}, {}, rows, cols, 1e-5);
      std::vector<float> yv = yb.get();
      EXPECT_TRUE(std::isnan(yv[0])) << "wrote before the view";
      yv.erase(yv.begin());
      EXPECT_CLOSE(yv, ref.y, tolerance(dt));
    }
}

// y may be x itself (validation allows full overlap): every path reads a row before it writes it.
TEST(LayerNormForward, InPlace) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (DLDataType dt : kDtypes)
    for (std::int64_t cols : {33, 1000, 4096, 30000}) {
      SCOPED_TRACE(dtype_str(dt) + " cols " + std::to_string(cols) + " y = x");
      const std::int64_t rows = 3;
      Tensor x(ctx, {rows, cols}, dt), g(ctx, {cols}, f32());
      x.set(random_rows(rows, cols));
      g.set(randn(cols));
      const Vec xs = to_double(x.stored());
      dlk_layernorm_params p = params(1e-5f);
      ASSERT_EQ(dlk_layernorm_forward(ctx, &p, &x.t, &g.t, nullptr, &x.t, nullptr, nullptr), DLK_SUCCESS)
          << dlk_last_error();
      FwdRef ref = ref_forward(xs, to_double(g.stored()), {}, rows, cols, 1e-5);
      EXPECT_CLOSE(x.get(), ref.y, tolerance(dt));
    }
}

TEST(LayerNormForward, EmptyRowsIsANoOp) {
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  Tensor x(ctx, {0, 16}, f32()), y(ctx, {0, 16}, f32());
  dlk_layernorm_params p = params(1e-5f);
  EXPECT_EQ(dlk_layernorm_forward(ctx, &p, &x.t, nullptr, nullptr, &y.t, nullptr, nullptr), DLK_SUCCESS)
      << dlk_last_error();
}

// --------------------------------------------------------------------------------------------------- backward

TEST(LayerNormBackward, EveryWidthDtypeAndRowCount) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  int k = 0;
  for (DLDataType dt : kDtypes)
    for (std::int64_t cols : kWidths)
      for (std::int64_t rows : cols > 16384 ? std::vector<std::int64_t>{1} : rows_for(cols)) {
        BwdCase c;
        c.shape = rows_cols(rows, cols);
        c.dt = dt;
        c.wt = weight_dtypes(dt)[k++ % weight_dtypes(dt).size()];
        check_backward(ctx, c);
      }
}

TEST(LayerNormBackward, ParamGradientsForManyRowCounts) {
  // The dgamma/dbeta reduction over rows: one chunk, several, and a ragged last chunk.
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (std::int64_t rows : {1, 7, 31, 33, 1000, 5003})
    for (std::int64_t cols : {1, 40, 96}) {
      BwdCase c;
      c.shape = rows_cols(rows, cols);
      check_backward(ctx, c);
    }
  BwdCase c;
  c.shape = rows_cols(5003, 64);
  c.dt = bf16();
  c.wt = bf16();
  check_backward(ctx, c);
}

TEST(LayerNormBackward, OptionalOutputsAndNoGamma) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (DLDataType dt : kDtypes)
    for (DLDataType wt : weight_dtypes(dt))
      for (std::int64_t cols : {33, 1000, 2048})
        for (int which = 1; which < 16; ++which) {
          BwdCase c;
          c.shape = rows_cols(9, cols);
          c.dt = dt;
          c.wt = wt;
          c.dx = which & 1;
          c.dgamma = which & 2;
          c.dbeta = which & 4;
          c.gamma = which & 8;
          if (!c.dx && !c.dgamma && !c.dbeta) continue;
          check_backward(ctx, c);
        }
}

TEST(LayerNormBackward, MatchesNumericalGradients) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (DLDataType dt : kDtypes)
    for (Shape s : {rows_cols(3, 1), rows_cols(3, 7), rows_cols(2, 33), rows_cols(2, 384), rows_cols(1, 1030),
                    Shape{{2, 3, 4, 5}, 2}})
      for (float eps : {1e-5f, 0.0f, 1e-2f})
        for (bool gamma : {true, false}) {
          if (s.cols() == 1 && eps == 0.0f) continue;  // a single element has zero variance
          BwdCase c;
          c.shape = s;
          c.dt = dt;
          c.gamma = gamma;
          c.eps = eps;
          c.numerical = true;
          check_backward(ctx, c);
        }
}

// d/dx of L = sum(w * y) by central differences through the library's own fp32 forward, against its backward.
TEST(LayerNormBackward, NumericalGradientThroughLibraryFp32) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  const std::int64_t R = 2, C = 6;
  Tensor x(ctx, {R, C}, f32()), y(ctx, {R, C}, f32()), g(ctx, {C}, f32()), b(ctx, {C}, f32());
  Tensor mean(ctx, {R}, f32()), rstd(ctx, {R}, f32()), w(ctx, {R, C}, f32());
  Tensor dx(ctx, {R, C}, f32()), dg(ctx, {C}, f32()), db(ctx, {C}, f32());
  std::vector<float> xv = randn(R * C), gv = randn(C), bv = randn(C), wv = randn(R * C);
  x.set(xv);
  g.set(gv);
  b.set(bv);
  w.set(wv);
  dlk_layernorm_params p = params(1e-5f);
  auto loss = [&]() {
    EXPECT_EQ(dlk_layernorm_forward(ctx, &p, &x.t, &g.t, &b.t, &y.t, &mean.t, &rstd.t), DLK_SUCCESS);
    std::vector<float> yv = y.get();
    double l = 0;
    for (std::size_t i = 0; i < yv.size(); ++i) l += static_cast<double>(wv[i]) * yv[i];
    return l;
  };
  auto numerical = [&](Tensor& t, std::vector<float>& v) {
    Vec out(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) {
      const float keep = v[i], h = 1e-2f;
      v[i] = keep + h;
      t.set(v);
      const double lp = loss();
      v[i] = keep - h;
      t.set(v);
      const double lm = loss();
      v[i] = keep;
      t.set(v);
      out[i] = (lp - lm) / (2.0 * h);
    }
    return out;
  };
  const Vec ndx = numerical(x, xv), ndg = numerical(g, gv), ndb = numerical(b, bv);
  loss();  // mean/rstd of the unperturbed x
  dx.poison();
  dg.poison();
  db.poison();
  ASSERT_EQ(dlk_layernorm_backward(ctx, &p, &w.t, &x.t, &mean.t, &rstd.t, &g.t, &dx.t, &dg.t, &db.t), DLK_SUCCESS)
      << dlk_last_error();
  // fp32 forward noise / (2h) plus O(h^2) truncation: 2e-3 is well above both and far below a wrong formula.
  expect_close(dx.get(), ndx, 2e-3, "dx");
  expect_close(dg.get(), ndg, 2e-3, "dgamma");
  expect_close(db.get(), ndb, 2e-3, "dbeta");
}

TEST(LayerNormBackward, AccumulateAddsIntoParamGradients) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (DLDataType dt : kDtypes)
    for (DLDataType wt : weight_dtypes(dt))
      for (std::int64_t rows : {0, 1, 700}) {
        const std::int64_t C = 96;
        SCOPED_TRACE(dtype_str(dt) + " weights " + dtype_str(wt) + " rows " + std::to_string(rows));
        Tensor x(ctx, {rows, C}, dt), dy(ctx, {rows, C}, dt), g(ctx, {C}, wt);
        Tensor dg(ctx, {C}, wt), db(ctx, {C}, wt), mean(ctx, {rows}, f32()), rstd(ctx, {rows}, f32());
        x.set(random_rows(rows, C));
        dy.set(randn(static_cast<std::size_t>(rows * C)));
        g.set(randn(C));
        const Vec xs = to_double(x.stored());
        FwdRef f = ref_forward(xs, {}, {}, rows, C, 1e-5);
        mean.set(std::vector<float>(f.mean.begin(), f.mean.end()));
        rstd.set(std::vector<float>(f.rstd.begin(), f.rstd.end()));
        dg.set(randn(C));
        db.set(randn(C));
        const Vec dg0 = to_double(dg.stored()), db0 = to_double(db.stored());
        dlk_layernorm_params p = params(1e-5f, 1, 1);
        ASSERT_EQ(dlk_layernorm_backward(ctx, &p, &dy.t, &x.t, &mean.t, &rstd.t, &g.t, nullptr, &dg.t, &db.t),
                  DLK_SUCCESS)
            << dlk_last_error();
        BwdRef ref = ref_backward(to_double(dy.stored()), xs, to_double(mean.stored()), to_double(rstd.stored()),
                                  to_double(g.stored()), rows, C);
        for (std::int64_t j = 0; j < C; ++j) {
          ref.dgamma[j] += dg0[j];
          ref.dbeta[j] += db0[j];
        }
        expect_close(dg.get(), ref.dgamma, tolerance(dt), "dgamma (accumulated)");
        expect_close(db.get(), ref.dbeta, tolerance(dt), "dbeta (accumulated)");
        if (rows == 0) {  // nothing added: bitwise unchanged
          EXPECT_EQ(rel_error(dg.get(), dg0), 0.0);
          EXPECT_EQ(rel_error(db.get(), db0), 0.0);
        }
      }
}

TEST(LayerNormBackward, NoRowsWritesZeroParamGradients) {
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (DLDataType dt : kDtypes) {
    const std::int64_t C = 40;
    Tensor x(ctx, {0, C}, dt), dy(ctx, {0, C}, dt), dx(ctx, {0, C}, dt);
    Tensor dg(ctx, {C}, dt), db(ctx, {C}, dt), mean(ctx, {0}, f32()), rstd(ctx, {0}, f32());
    dg.poison();
    db.poison();
    dlk_layernorm_params p = params(1e-5f);
    ASSERT_EQ(dlk_layernorm_backward(ctx, &p, &dy.t, &x.t, &mean.t, &rstd.t, nullptr, &dx.t, &dg.t, &db.t), DLK_SUCCESS)
        << dlk_last_error();
    EXPECT_EQ(dg.get(), std::vector<float>(C, 0.0f));
    EXPECT_EQ(db.get(), std::vector<float>(C, 0.0f));
  }
}

TEST(LayerNormBackward, DxMayAliasDy) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (DLDataType dt : kDtypes)
    for (std::int64_t cols : {33, 1000, 1025, 4096}) {
      BwdCase c;
      c.shape = rows_cols(5, cols);
      c.dt = dt;
      c.alias = true;
      check_backward(ctx, c);
    }
}

// Deterministic mode: two identical calls give bitwise identical outputs (no atomics anywhere).
TEST(LayerNormBackward, DeterministicModeIsBitwiseReproducible) {
  DLK_TRACE_SEED();
  Context ctx(backend(), 1);
  SKIP_IF_NO_BACKEND(ctx);
  for (DLDataType dt : {f32(), bf16()})
    for (Shape s : {rows_cols(3000, 96), rows_cols(200, 1000), rows_cols(4, 5000)}) {
      SCOPED_TRACE(describe(s, dt, dt, true, true, 1e-5f));
      const std::int64_t R = s.rows(), C = s.cols();
      Tensor x(ctx, s.dims, dt), dy(ctx, s.dims, dt), g(ctx, {C}, dt), b(ctx, {C}, dt);
      Tensor mean(ctx, {R}, f32()), rstd(ctx, {R}, f32());
      x.set(random_rows(R, C));
      dy.set(randn(static_cast<std::size_t>(R * C)));
      g.set(randn(C));
      b.set(randn(C));
      std::vector<std::vector<unsigned char>> runs;
      for (int run = 0; run < 2; ++run) {
        Tensor y(ctx, s.dims, dt), dx(ctx, s.dims, dt), dg(ctx, {C}, dt), db(ctx, {C}, dt);
        y.poison();
        dx.poison();
        dg.poison();
        db.poison();
        dlk_layernorm_params p = params(1e-5f);
        ASSERT_EQ(dlk_layernorm_forward(ctx, &p, &x.t, &g.t, &b.t, &y.t, &mean.t, &rstd.t), DLK_SUCCESS);
        ASSERT_EQ(dlk_layernorm_backward(ctx, &p, &dy.t, &x.t, &mean.t, &rstd.t, &g.t, &dx.t, &dg.t, &db.t),
                  DLK_SUCCESS)
            << dlk_last_error();
        std::vector<unsigned char> bytes;
        for (Tensor* t : {&y, &mean, &rstd, &dx, &dg, &db}) {
          std::vector<float> v = t->get();
          EXPECT_TRUE(dlk::test::all_finite(v));
          const unsigned char* raw = reinterpret_cast<const unsigned char*>(v.data());
          bytes.insert(bytes.end(), raw, raw + v.size() * sizeof(float));
        }
        runs.push_back(std::move(bytes));
      }
      EXPECT_TRUE(runs[0] == runs[1]) << "two runs differ";
    }
}

}  // namespace
