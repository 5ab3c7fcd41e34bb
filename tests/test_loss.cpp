// Losses (fused softmax cross-entropy, NLL, BCE-with-logits, MSE), forward and backward, on the backend
// DLK_TEST_BACKEND names, against independent fp64 references written here from PyTorch's formulas. Sizes cover
// both cross-entropy paths (a warp per row for C <= 2048, a block per row beyond), odd C, ignored rows, every
// reduction, label smoothing, probability targets, every logits dtype and both index dtypes; every backward is
// checked against central differences of the library's own forward.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "test_util.h"

namespace dlk::test {
namespace {

const DLDataType kFloatTypes[] = {f32(), f16(), bf16()};
const dlk_reduction kReductions[] = {DLK_REDUCTION_NONE, DLK_REDUCTION_MEAN, DLK_REDUCTION_SUM};

class Loss : public ::testing::Test {
 protected:
  Context ctx;
  void SetUp() override { SKIP_IF_NO_BACKEND(ctx); }
  bool emu() const { return backend() == DLK_DEVICE_EMU; }
  bool host_backend() const { return !ctx.on_device(); }
};

std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

std::int64_t loss_elems(dlk_reduction r, std::int64_t n) { return r == DLK_REDUCTION_NONE ? n : 1; }
std::vector<std::int64_t> loss_shape(dlk_reduction r, std::vector<std::int64_t> per_elem) {
  return r == DLK_REDUCTION_NONE ? per_elem : std::vector<std::int64_t>{};
}

// ------------------------------------------------------------------------------------ cross-entropy reference

struct CeCase {
  std::int64_t n = 0, c = 0;
  std::vector<float> logits;  // as stored (rounded to the dtype)
  std::vector<float> target;  // class indices, or probabilities as stored
  bool probs = false;
  std::int64_t ignore_index = -100;
  double smoothing = 0.0;
  dlk_reduction reduction = DLK_REDUCTION_MEAN;
};

// Returns the reduced (or per-row) loss and dlogits for upstream gradient `dloss` (shape of the loss).
void ce_reference(const CeCase& k, const std::vector<double>& dloss, std::vector<double>* loss,
                  std::vector<double>* dlogits) {
  const std::int64_t n = k.n, c = k.c;
  std::vector<double> rows(n, 0.0);
  dlogits->assign(n * c, 0.0);
  double valid = 0;
  for (std::int64_t r = 0; r < n; ++r)
    if (k.probs || static_cast<std::int64_t>(k.target[r]) != k.ignore_index) valid += 1;
  const double div = k.reduction == DLK_REDUCTION_MEAN ? valid : 1.0;
  for (std::int64_t r = 0; r < n; ++r) {
    std::vector<double> q(c);
    if (k.probs) {
      for (std::int64_t j = 0; j < c; ++j) q[j] = (1 - k.smoothing) * k.target[r * c + j] + k.smoothing / c;
    } else {
      const std::int64_t t = static_cast<std::int64_t>(k.target[r]);
      if (t == k.ignore_index) continue;
      for (std::int64_t j = 0; j < c; ++j) q[j] = (j == t ? 1 - k.smoothing : 0.0) + k.smoothing / c;
    }
    double mx = -INFINITY;
    for (std::int64_t j = 0; j < c; ++j) mx = std::max(mx, static_cast<double>(k.logits[r * c + j]));
    double s = 0;
    for (std::int64_t j = 0; j < c; ++j) s += std::exp(k.logits[r * c + j] - mx);
    double l = 0, qs = 0;
    for (std::int64_t j = 0; j < c; ++j) {
      const double logp = k.logits[r * c + j] - mx - std::log(s);
      if (q[j] != 0) l -= q[j] * logp;  // a -inf logit the target does not weigh adds nothing
      qs += q[j];
    }
    rows[r] = l;
    const double g = (k.reduction == DLK_REDUCTION_NONE ? dloss[r] : dloss[0]) / div;
    for (std::int64_t j = 0; j < c; ++j)
      (*dlogits)[r * c + j] = (std::exp(k.logits[r * c + j] - mx) / s * qs - q[j]) * g;
  }
  if (k.reduction == DLK_REDUCTION_NONE) {
    *loss = rows;
  } else {
    double t = 0;
    for (double v : rows) t += v;
    *loss = {t / div};
  }
}

CeCase make_ce(std::int64_t n, std::int64_t c, bool probs, dlk_reduction red, double smoothing, double ignore_frac) {
  CeCase k;
  k.n = n;
  k.c = c;
  k.probs = probs;
  k.reduction = red;
  k.smoothing = smoothing;
  k.logits = randn(n * c, 3.0f);
  if (probs) {
    std::vector<float> u = uniform(n * c, 0.0f, 1.0f);
    k.target.resize(n * c);
    for (std::int64_t r = 0; r < n; ++r) {
      double s = 0;
      for (std::int64_t j = 0; j < c; ++j) s += u[r * c + j];
      for (std::int64_t j = 0; j < c; ++j) k.target[r * c + j] = static_cast<float>(u[r * c + j] / s);
    }
  } else {
    std::vector<float> u = uniform(n, 0.0f, 1.0f);
    k.target.resize(n);
    for (std::int64_t r = 0; r < n; ++r)
      k.target[r] = u[r] < ignore_frac
                        ? static_cast<float>(k.ignore_index)
                        : static_cast<float>(std::min<std::int64_t>(c - 1, static_cast<std::int64_t>(u[r] * c)));
    if (n > 0) k.target[0] = static_cast<float>(c / 2);  // one counted row: an all-ignored mean is NaN by design
  }
  return k;
}

dlk_cross_entropy_params ce_params(const CeCase& k) {
  dlk_cross_entropy_params p;
  dlk_cross_entropy_params_init(&p);
  p.reduction = k.reduction;
  p.ignore_index = k.ignore_index;
  p.label_smoothing = static_cast<float>(k.smoothing);
  return p;
}

// Runs the fused forward on `k` (logits in `dt`, class targets in `tt`) and checks loss and dlogits.
void check_ce(dlk_context* ctx, CeCase k, DLDataType dt, DLDataType tt, bool with_dloss) {
  SCOPED_TRACE("n " + std::to_string(k.n) + " c " + std::to_string(k.c) + " " + dtype_str(dt) + " target " +
               (k.probs ? "probs" : dtype_str(tt)) + " reduction " + std::to_string(k.reduction) + " smoothing " +
               std::to_string(k.smoothing));
  Tensor x(ctx, {k.n, k.c}, dt), dx(ctx, {k.n, k.c}, dt);
  x.set(k.logits);
  k.logits = x.stored();
  Tensor t(ctx, k.probs ? std::vector<std::int64_t>{k.n, k.c} : std::vector<std::int64_t>{k.n}, k.probs ? dt : tt);
  t.set(k.target);
  k.target = t.stored();
  const std::int64_t ne = loss_elems(k.reduction, k.n);
  Tensor loss(ctx, loss_shape(k.reduction, {k.n}), f32()), dl(ctx, loss_shape(k.reduction, {k.n}), f32());
  std::vector<float> g = with_dloss ? randn(ne) : std::vector<float>(ne, 1.0f);
  // |dloss| >= 0.5: a tiny upstream gradient would push fp16 dlogits (~dloss/C) into the subnormal range, whose
  // rounding error is not the kernel's.
  if (with_dloss)
    for (float& v : g) v = std::copysign(0.5f + std::fabs(v), v);
  dl.set(g);
  loss.poison();
  dx.poison();
  dlk_cross_entropy_params p = ce_params(k);
  ASSERT_EQ(dlk_cross_entropy_forward(ctx, &p, &x.t, &t.t, &loss.t, &dx.t, with_dloss ? &dl.t : nullptr), DLK_SUCCESS)
      << dlk_last_error();
  std::vector<double> rl, rd;
  ce_reference(k, to_double(g), &rl, &rd);
  const std::vector<float> out = loss.get(), dout = dx.get();
  EXPECT_TRUE(all_finite(out));
  EXPECT_TRUE(all_finite(dout));
  EXPECT_CLOSE(out, rl, 1e-5);  // the loss is fp32 whatever the logits' dtype (math on the stored logits)
  EXPECT_CLOSE(dout, rd, tolerance(dt));
  // The separate backward gives the same gradient, bit for bit.
  Tensor dx2(ctx, {k.n, k.c}, dt);
  dx2.poison();
  ASSERT_EQ(dlk_cross_entropy_backward(ctx, &p, &x.t, &t.t, &dl.t, &dx2.t), DLK_SUCCESS) << dlk_last_error();
  const std::vector<float> d2 = dx2.get();
  EXPECT_EQ(std::memcmp(d2.data(), dout.data(), d2.size() * sizeof(float)), 0) << "backward != fused gradient";
}

TEST_F(Loss, CrossEntropySeedCase) {
  DLK_TRACE_SEED();
  Tensor x(ctx, {1, 2}, f32()), t(ctx, {1}, i64()), loss(ctx, {}, f32());
  x.set({-0.1211f, 0.1059f});
  t.set({0.0f});
  loss.poison();
  ASSERT_EQ(dlk_cross_entropy_forward(ctx, nullptr, &x.t, &t.t, &loss.t, nullptr, nullptr), DLK_SUCCESS)
      << dlk_last_error();
  EXPECT_NEAR(loss.get()[0], 0.8131, 5e-5);
}

TEST_F(Loss, CrossEntropyClassTargetsEverySizeDtypeReduction) {
  DLK_TRACE_SEED();
  std::vector<std::int64_t> cs = {1, 7, 65, 1000, 2500};
  if (!emu()) cs.push_back(50257);
  for (std::int64_t c : cs)
    for (DLDataType dt : kFloatTypes)
      for (dlk_reduction red : kReductions) {
        const std::int64_t n = c > 3000 ? 3 : (emu() ? 5 : 13);
        check_ce(ctx, make_ce(n, c, false, red, 0.0, 0.25), dt, (c % 2) ? i32() : i64(), red != DLK_REDUCTION_MEAN);
      }
}

TEST_F(Loss, CrossEntropyManyShortRows) {
  DLK_TRACE_SEED();
  check_ce(ctx, make_ce(emu() ? 37 : 1025, 65, false, DLK_REDUCTION_MEAN, 0.0, 0.1), f32(), i64(), false);
}

TEST_F(Loss, CrossEntropyLabelSmoothing) {
  DLK_TRACE_SEED();
  for (std::int64_t c : {1, 7, 3001})
    for (dlk_reduction red : kReductions) check_ce(ctx, make_ce(4, c, false, red, 0.1, 0.3), f32(), i64(), true);
  check_ce(ctx, make_ce(6, 33, false, DLK_REDUCTION_MEAN, 1.0, 0.3), bf16(), i32(), false);
}

TEST_F(Loss, CrossEntropyProbabilityTargets) {
  DLK_TRACE_SEED();
  for (std::int64_t c : {1, 7, 1000, 2049})
    for (DLDataType dt : kFloatTypes)
      for (dlk_reduction red : kReductions)
        check_ce(ctx, make_ce(3, c, true, red, c == 7 ? 0.2 : 0.0, 0), dt, i64(), true);
}

TEST_F(Loss, CrossEntropyAllIgnoredMeanIsNaNWithZeroGradient) {
  DLK_TRACE_SEED();
  Tensor x(ctx, {3, 5}, f32()), t(ctx, {3}, i64()), loss(ctx, {1}, f32()), dx(ctx, {3, 5}, f32());
  x.set(randn(15));
  t.set({-1, -1, -1});
  dx.poison();
  dlk_cross_entropy_params p;
  dlk_cross_entropy_params_init(&p);
  p.ignore_index = -1;
  ASSERT_EQ(dlk_cross_entropy_forward(ctx, &p, &x.t, &t.t, &loss.t, &dx.t, nullptr), DLK_SUCCESS) << dlk_last_error();
  EXPECT_TRUE(std::isnan(loss.get()[0]));
  for (float v : dx.get()) EXPECT_EQ(v, 0.0f);
  p.reduction = DLK_REDUCTION_SUM;
  ASSERT_EQ(dlk_cross_entropy_forward(ctx, &p, &x.t, &t.t, &loss.t, nullptr, nullptr), DLK_SUCCESS);
  EXPECT_EQ(loss.get()[0], 0.0f);
}

TEST_F(Loss, CrossEntropyEmptyBatch) {
  Tensor x(ctx, {0, 5}, f32()), t(ctx, {0}, i64()), loss(ctx, {0}, f32()), dx(ctx, {0, 5}, f32());
  dlk_cross_entropy_params p;
  dlk_cross_entropy_params_init(&p);
  p.reduction = DLK_REDUCTION_NONE;
  EXPECT_EQ(dlk_cross_entropy_forward(ctx, &p, &x.t, &t.t, &loss.t, &dx.t, nullptr), DLK_SUCCESS) << dlk_last_error();
}

TEST_F(Loss, CrossEntropyNegativeInfinityLogitsOutsideTheTarget) {
  DLK_TRACE_SEED();
  for (std::int64_t c : {9, 2100}) {
    CeCase k = make_ce(4, c, false, DLK_REDUCTION_NONE, 0.0, 0.0);
    for (std::int64_t r = 0; r < k.n; ++r) {
      const std::int64_t t = static_cast<std::int64_t>(k.target[r]);
      for (std::int64_t j = r % 3; j < c; j += 3)
        if (j != t) k.logits[r * c + j] = -INFINITY;
    }
    check_ce(ctx, k, f32(), i64(), true);
  }
}

TEST_F(Loss, CrossEntropyInPlaceGradientOverwritesTheLogits) {
  DLK_TRACE_SEED();
  for (std::int64_t c : {7, 2500}) {
    CeCase k = make_ce(5, c, false, DLK_REDUCTION_MEAN, 0.1, 0.2);
    Tensor x(ctx, {k.n, k.c}, f32()), t(ctx, {k.n}, i64()), loss(ctx, {}, f32());
    x.set(k.logits);
    t.set(k.target);
    dlk_cross_entropy_params p = ce_params(k);
    ASSERT_EQ(dlk_cross_entropy_forward(ctx, &p, &x.t, &t.t, &loss.t, &x.t, nullptr), DLK_SUCCESS) << dlk_last_error();
    std::vector<double> rl, rd;
    ce_reference(k, {1.0}, &rl, &rd);
    EXPECT_CLOSE(loss.get(), rl, 1e-5);
    EXPECT_CLOSE(x.get(), rd, 1e-5);
  }
}

TEST_F(Loss, ReductionsAreBitwiseReproducible) {
  DLK_TRACE_SEED();
  CeCase k = make_ce(emu() ? 300 : 3000, 33, false, DLK_REDUCTION_MEAN, 0.0, 0.1);
  Tensor x(ctx, {k.n, k.c}, f32()), t(ctx, {k.n}, i32()), loss(ctx, {1}, f32());
  x.set(k.logits);
  t.set(k.target);
  dlk_cross_entropy_params p = ce_params(k);
  std::vector<float> first;
  for (int run = 0; run < 3; ++run) {
    ASSERT_EQ(dlk_cross_entropy_forward(ctx, &p, &x.t, &t.t, &loss.t, nullptr, nullptr), DLK_SUCCESS);
    const std::vector<float> v = loss.get();
    if (run == 0) first = v;
    EXPECT_EQ(std::memcmp(v.data(), first.data(), sizeof(float)), 0) << "run " << run;
  }
}

TEST_F(Loss, CrossEntropyHugeLogitsStayFinite) {
  DLK_TRACE_SEED();
  CeCase k = make_ce(4, 9, false, DLK_REDUCTION_SUM, 0.0, 0.0);
  for (auto& v : k.logits) v *= 1000.0f;
  check_ce(ctx, k, f32(), i64(), false);
}

// Central differences of the library's forward (fp32) against its backward, for a scalarised loss sum(w * loss).
void numeric_ce(dlk_context* ctx, CeCase k) {
  SCOPED_TRACE("numerical gradient, reduction " + std::to_string(k.reduction) + (k.probs ? " probs" : " classes"));
  const std::int64_t ne = loss_elems(k.reduction, k.n);
  Tensor x(ctx, {k.n, k.c}, f32()), dx(ctx, {k.n, k.c}, f32()), loss(ctx, loss_shape(k.reduction, {k.n}), f32()),
      dl(ctx, loss_shape(k.reduction, {k.n}), f32());
  Tensor t(ctx, k.probs ? std::vector<std::int64_t>{k.n, k.c} : std::vector<std::int64_t>{k.n},
           k.probs ? f32() : i64());
  t.set(k.target);
  const std::vector<float> w = randn(ne);
  dl.set(w);
  dlk_cross_entropy_params p = ce_params(k);
  x.set(k.logits);
  ASSERT_EQ(dlk_cross_entropy_backward(ctx, &p, &x.t, &t.t, &dl.t, &dx.t), DLK_SUCCESS) << dlk_last_error();
  const std::vector<float> analytic = dx.get();
  auto objective = [&](const std::vector<float>& z) {
    x.set(z);
    EXPECT_EQ(dlk_cross_entropy_forward(ctx, &p, &x.t, &t.t, &loss.t, nullptr, nullptr), DLK_SUCCESS);
    const std::vector<float> l = loss.get();
    double s = 0;
    for (std::int64_t i = 0; i < ne; ++i) s += static_cast<double>(w[i]) * l[i];
    return s;
  };
  std::vector<double> numeric(k.n * k.c);
  const float h = 1e-2f;
  for (std::int64_t i = 0; i < k.n * k.c; ++i) {
    std::vector<float> z = k.logits;
    z[i] += h;
    const double up = objective(z);
    z[i] = k.logits[i] - h;
    numeric[i] = (up - objective(z)) / (2.0 * h);
  }
  EXPECT_CLOSE(analytic, numeric, 2e-3);
}

TEST_F(Loss, CrossEntropyBackwardMatchesNumericalGradient) {
  DLK_TRACE_SEED();
  for (dlk_reduction red : kReductions) {
    CeCase k = make_ce(4, 6, false, red, 0.1, 0.3);
    k.target[0] = 2;  // at least one counted row
    for (auto& v : k.logits) v /= 3.0f;
    numeric_ce(ctx, k);
    CeCase pk = make_ce(3, 5, true, red, 0.15, 0);
    numeric_ce(ctx, pk);
  }
}

// ------------------------------------------------------------------------------------------------ bad inputs

void expect_error(dlk_status got, dlk_status want, const char* fragment) {
  EXPECT_EQ(got, want) << dlk_last_error();
  EXPECT_NE(std::string(dlk_last_error()).find(fragment), std::string::npos)
      << "'" << dlk_last_error() << "' lacks '" << fragment << "'";
}

TEST_F(Loss, CrossEntropyRejectsBadInputs) {
  Tensor x(ctx, {3, 4}, f32()), t(ctx, {3}, i64()), loss(ctx, {}, f32()), dx(ctx, {3, 4}, f32());
  x.set(randn(12));
  t.set({0, 3, 1});
  dlk_cross_entropy_params p;
  dlk_cross_entropy_params_init(&p);
  Tensor xh(ctx, {3, 4}, f16()), probs(ctx, {3, 4}, f16()), dxh(ctx, {3, 4}, f16());
  expect_error(dlk_cross_entropy_forward(ctx, &p, &x.t, &probs.t, &loss.t, nullptr, nullptr), DLK_ERROR_DTYPE,
               "target");
  expect_error(dlk_cross_entropy_forward(ctx, &p, &x.t, &t.t, &loss.t, &dxh.t, nullptr), DLK_ERROR_DTYPE, "dlogits");
  Tensor lossh(ctx, {}, f16());
  expect_error(dlk_cross_entropy_forward(ctx, &p, &x.t, &t.t, &lossh.t, nullptr, nullptr), DLK_ERROR_DTYPE, "loss");
  Tensor t2(ctx, {2}, i64());
  expect_error(dlk_cross_entropy_forward(ctx, &p, &x.t, &t2.t, &loss.t, nullptr, nullptr), DLK_ERROR_SHAPE, "target");
  Tensor loss3(ctx, {3}, f32());
  expect_error(dlk_cross_entropy_forward(ctx, &p, &x.t, &t.t, &loss3.t, nullptr, nullptr), DLK_ERROR_SHAPE,
               "one element");
  p.reduction = DLK_REDUCTION_NONE;
  expect_error(dlk_cross_entropy_forward(ctx, &p, &x.t, &t.t, &loss.t, nullptr, nullptr), DLK_ERROR_SHAPE, "loss");
  p.reduction = static_cast<dlk_reduction>(7);
  expect_error(dlk_cross_entropy_forward(ctx, &p, &x.t, &t.t, &loss.t, nullptr, nullptr), DLK_ERROR_INVALID_ARGUMENT,
               "params->reduction");
  dlk_cross_entropy_params_init(&p);
  p.label_smoothing = 1.5f;
  expect_error(dlk_cross_entropy_forward(ctx, &p, &x.t, &t.t, &loss.t, nullptr, nullptr), DLK_ERROR_INVALID_ARGUMENT,
               "label_smoothing");
  dlk_cross_entropy_params_init(&p);
  expect_error(dlk_cross_entropy_forward(ctx, &p, &x.t, &t.t, nullptr, nullptr, nullptr), DLK_ERROR_INVALID_ARGUMENT,
               "both NULL");
  expect_error(dlk_cross_entropy_backward(ctx, &p, &x.t, &t.t, nullptr, &dx.t), DLK_ERROR_INVALID_ARGUMENT, "dloss");
  Tensor x1(ctx, {12}, f32());
  expect_error(dlk_cross_entropy_forward(ctx, &p, &x1.t, &t.t, &loss.t, nullptr, nullptr), DLK_ERROR_SHAPE, "logits");
  Tensor ti8(ctx, {3}, u8());
  expect_error(dlk_cross_entropy_forward(ctx, &p, &x.t, &ti8.t, &loss.t, nullptr, nullptr), DLK_ERROR_DTYPE, "target");
  if (host_backend()) {  // cpu/emu check class indices; cuda documents NaN instead
    for (float bad : {4.0f, -1.0f, -100.0f + 1.0f}) {
      t.set({0, bad, 1});
      loss.poison();
      dx.poison();
      expect_error(dlk_cross_entropy_forward(ctx, &p, &x.t, &t.t, &loss.t, &dx.t, nullptr), DLK_ERROR_INVALID_ARGUMENT,
                   "target[1]");
      EXPECT_TRUE(std::isnan(loss.get()[0])) << "loss written on failure";
      EXPECT_FALSE(all_finite(dx.get())) << "dlogits written on failure";
    }
    t.set({0, -100, 1});  // ignore_index is fine
    EXPECT_EQ(dlk_cross_entropy_forward(ctx, &p, &x.t, &t.t, &loss.t, &dx.t, nullptr), DLK_SUCCESS) << dlk_last_error();
  }
}

// ----------------------------------------------------------------------------------------------------- nll

struct NllRef {
  std::vector<double> loss, dinput;
};

NllRef nll_reference(const std::vector<float>& x, const std::vector<float>& t, const std::vector<float>* w,
                     std::int64_t n, std::int64_t c, std::int64_t ignore, dlk_reduction red,
                     const std::vector<float>& dloss) {
  NllRef r;
  std::vector<double> rows(n, 0.0);
  double wsum = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t ti = static_cast<std::int64_t>(t[i]);
    if (ti == ignore) continue;
    const double wi = w ? (*w)[ti] : 1.0;
    wsum += wi;
    rows[i] = -wi * x[i * c + ti];
  }
  const double div = red == DLK_REDUCTION_MEAN ? wsum : 1.0;
  if (red == DLK_REDUCTION_NONE) {
    r.loss = rows;
  } else {
    double s = 0;
    for (double v : rows) s += v;
    r.loss = {s / div};
  }
  r.dinput.assign(n * c, 0.0);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t ti = static_cast<std::int64_t>(t[i]);
    if (ti == ignore) continue;
    r.dinput[i * c + ti] = -(w ? (*w)[ti] : 1.0) * (red == DLK_REDUCTION_NONE ? dloss[i] : dloss[0]) / div;
  }
  return r;
}

TEST_F(Loss, NllForwardBackwardEveryDtypeReductionWeight) {
  DLK_TRACE_SEED();
  for (std::int64_t c : {1, 7, 300})
    for (DLDataType dt : kFloatTypes)
      for (dlk_reduction red : kReductions)
        for (bool weighted : {false, true}) {
          SCOPED_TRACE("c " + std::to_string(c) + " " + dtype_str(dt) + " red " + std::to_string(red) +
                       (weighted ? " weighted" : ""));
          const std::int64_t n = 11;
          Tensor x(ctx, {n, c}, dt), t(ctx, {n}, c % 2 ? i64() : i32()), w(ctx, {c}, dt), dx(ctx, {n, c}, dt);
          x.set(randn(n * c));
          w.set(uniform(c, 0.1f, 2.0f));
          std::vector<float> tv(n);
          std::vector<float> u = uniform(n, 0, 1);
          for (std::int64_t i = 0; i < n; ++i)
            tv[i] = u[i] < 0.2f ? 2.0f : static_cast<float>(static_cast<std::int64_t>(u[i] * c) % c);
          tv[0] = 0;
          if (c == 1) std::fill(tv.begin(), tv.end(), 0.0f);
          t.set(tv);
          dlk_cross_entropy_params p;
          dlk_cross_entropy_params_init(&p);
          p.reduction = red;
          p.ignore_index = c == 1 ? -100 : 2;
          const std::int64_t ne = loss_elems(red, n);
          Tensor loss(ctx, loss_shape(red, {n}), f32()), dl(ctx, loss_shape(red, {n}), f32());
          const std::vector<float> g = randn(ne);
          dl.set(g);
          loss.poison();
          dx.poison();
          ASSERT_EQ(dlk_nll_loss_forward(ctx, &p, &x.t, &t.t, weighted ? &w.t : nullptr, &loss.t), DLK_SUCCESS)
              << dlk_last_error();
          ASSERT_EQ(dlk_nll_loss_backward(ctx, &p, &x.t, &t.t, weighted ? &w.t : nullptr, &dl.t, &dx.t), DLK_SUCCESS)
              << dlk_last_error();
          const std::vector<float> ws = w.stored();
          const std::vector<float> xs = x.stored();
          const NllRef r = nll_reference(xs, tv, weighted ? &ws : nullptr, n, c, p.ignore_index, red, g);
          if (red == DLK_REDUCTION_NONE) {
            EXPECT_CLOSE(loss.get(), r.loss, 1e-5);
          } else {
            // NLL terms -w*x have both signs, so a reduced loss can nearly cancel: judge it against sum |terms|.
            double mag = 0, wsum = 0;
            for (std::int64_t i = 0; i < n; ++i) {
              const auto ti = static_cast<std::int64_t>(tv[i]);
              if (ti == p.ignore_index) continue;
              const double wi = weighted ? ws[ti] : 1.0;
              mag += std::fabs(wi * xs[i * c + ti]);
              wsum += wi;
            }
            if (red == DLK_REDUCTION_MEAN && wsum > 0) mag /= wsum;
            const double got = loss.get()[0];
            EXPECT_LE(std::fabs(got - r.loss[0]), 1e-5 * std::max(std::fabs(r.loss[0]), mag)) << got;
          }
          EXPECT_CLOSE(dx.get(), r.dinput, tolerance(dt));
        }
}

TEST_F(Loss, NllRejectsBadInputs) {
  Tensor x(ctx, {3, 4}, f32()), t(ctx, {3}, i64()), loss(ctx, {}, f32()), w(ctx, {5}, f32()), wh(ctx, {4}, f16());
  x.set(randn(12));
  t.set({0, 3, 1});
  expect_error(dlk_nll_loss_forward(ctx, nullptr, &x.t, &t.t, &w.t, &loss.t), DLK_ERROR_SHAPE, "weight");
  expect_error(dlk_nll_loss_forward(ctx, nullptr, &x.t, &t.t, &wh.t, &loss.t), DLK_ERROR_DTYPE, "weight");
  dlk_cross_entropy_params p;
  dlk_cross_entropy_params_init(&p);
  p.label_smoothing = 0.1f;
  expect_error(dlk_nll_loss_forward(ctx, &p, &x.t, &t.t, nullptr, &loss.t), DLK_ERROR_INVALID_ARGUMENT,
               "label_smoothing");
  if (host_backend()) {
    t.set({0, 4, 1});
    expect_error(dlk_nll_loss_forward(ctx, nullptr, &x.t, &t.t, nullptr, &loss.t), DLK_ERROR_INVALID_ARGUMENT,
                 "target[1] is 4");
  }
}

// ------------------------------------------------------------------------------------------- bce and mse

struct PwRef {
  std::vector<double> loss, dinput;
};

PwRef pointwise_reference(bool bce, const std::vector<float>& x, const std::vector<float>& y,
                          const std::vector<float>* w, const std::vector<float>* pw, dlk_reduction red,
                          const std::vector<float>& dloss) {
  const std::size_t n = x.size();
  PwRef r;
  std::vector<double> el(n);
  r.dinput.resize(n);
  const double div = red == DLK_REDUCTION_MEAN ? static_cast<double>(n) : 1.0;
  for (std::size_t i = 0; i < n; ++i) {
    double l, d;
    if (bce) {
      // Written as the textbook -w [pw y log s(x) + (1 - y) log(1 - s(x))], in long double for stability.
      const long double xv = x[i], yv = y[i];
      const long double wv = w ? (*w)[i % w->size()] : 1.0L, pv = pw ? (*pw)[i % pw->size()] : 1.0L;
      const long double log_s = -std::log1p(std::exp(-xv)), log_1ms = -std::log1p(std::exp(xv));
      l = static_cast<double>(-wv * (pv * yv * log_s + (1 - yv) * log_1ms));
      const long double s = 1.0L / (1.0L + std::exp(-xv));
      d = static_cast<double>(-wv * (pv * yv * (1 - s) - (1 - yv) * s));
    } else {
      l = (static_cast<double>(x[i]) - y[i]) * (static_cast<double>(x[i]) - y[i]);
      d = 2.0 * (static_cast<double>(x[i]) - y[i]);
    }
    el[i] = l;
    r.dinput[i] = d * (red == DLK_REDUCTION_NONE ? dloss[i] : dloss[0]) / div;
  }
  if (red == DLK_REDUCTION_NONE) {
    r.loss = el;
  } else {
    double s = 0;
    for (double v : el) s += v;
    r.loss = {s / div};
  }
  return r;
}

void check_pointwise(dlk_context* ctx, bool bce, std::vector<std::int64_t> shape, DLDataType dt, dlk_reduction red,
                     std::vector<std::int64_t> wshape, std::vector<std::int64_t> pwshape) {
  SCOPED_TRACE(std::string(bce ? "bce" : "mse") + " " + dtype_str(dt) + " red " + std::to_string(red) + " w rank " +
               std::to_string(wshape.size()) + " pw rank " + std::to_string(pwshape.size()));
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  Tensor x(ctx, shape, dt), y(ctx, shape, dt), dx(ctx, shape, dt);
  x.set(randn(n, 3.0f));
  y.set(bce ? uniform(n, 0.0f, 1.0f) : randn(n));
  std::int64_t wn = 1, pn = 1;
  for (auto d : wshape) wn *= d;
  for (auto d : pwshape) pn *= d;
  Tensor w(ctx, wshape, dt), pw(ctx, pwshape, dt);
  w.set(uniform(wn, 0.2f, 2.0f));
  pw.set(uniform(pn, 0.5f, 3.0f));
  const bool use_w = bce && !wshape.empty(), use_pw = bce && !pwshape.empty();
  const std::int64_t ne = loss_elems(red, n);
  Tensor loss(ctx, loss_shape(red, shape), f32()), dl(ctx, loss_shape(red, shape), f32());
  // With a mean, dx is O(dloss / n): scale dloss by n so float16 gradients stay out of the subnormal range, whose
  // spacing (6e-8) would exceed the 1e-2 tolerance for small values.
  std::vector<float> g = randn(ne);
  if (red == DLK_REDUCTION_MEAN)
    for (float& v : g) v *= static_cast<float>(n);
  dl.set(g);
  loss.poison();
  dx.poison();
  dlk_elementwise_loss_params p;
  dlk_elementwise_loss_params_init(&p);
  p.reduction = red;
  if (bce) {
    ASSERT_EQ(
        dlk_bce_with_logits_forward(ctx, &p, &x.t, &y.t, use_w ? &w.t : nullptr, use_pw ? &pw.t : nullptr, &loss.t),
        DLK_SUCCESS)
        << dlk_last_error();
    ASSERT_EQ(dlk_bce_with_logits_backward(ctx, &p, &x.t, &y.t, use_w ? &w.t : nullptr, use_pw ? &pw.t : nullptr, &dl.t,
                                           &dx.t),
              DLK_SUCCESS)
        << dlk_last_error();
  } else {
    ASSERT_EQ(dlk_mse_loss_forward(ctx, &p, &x.t, &y.t, &loss.t), DLK_SUCCESS) << dlk_last_error();
    ASSERT_EQ(dlk_mse_loss_backward(ctx, &p, &x.t, &y.t, &dl.t, &dx.t), DLK_SUCCESS) << dlk_last_error();
  }
  const std::vector<float> ws = w.stored(), ps = pw.stored();
  const PwRef r =
      pointwise_reference(bce, x.stored(), y.stored(), use_w ? &ws : nullptr, use_pw ? &ps : nullptr, red, g);
  EXPECT_CLOSE(loss.get(), r.loss, 1e-5);
  EXPECT_CLOSE(dx.get(), r.dinput, tolerance(dt));
}

TEST_F(Loss, BceWithLogitsEveryDtypeReductionAndWeights) {
  DLK_TRACE_SEED();
  for (DLDataType dt : kFloatTypes)
    for (dlk_reduction red : kReductions) {
      check_pointwise(ctx, true, {5, 7}, dt, red, {}, {});
      check_pointwise(ctx, true, {5, 7}, dt, red, {7}, {7});
      check_pointwise(ctx, true, {2, 3, 7}, dt, red, {1, 3, 7}, {1});
      check_pointwise(ctx, true, {1000}, dt, red, {1000}, {});
    }
}

TEST_F(Loss, BceWithLogitsIsStableForHugeLogits) {
  Tensor x(ctx, {4}, f32()), y(ctx, {4}, f32()), loss(ctx, {4}, f32());
  x.set({1000.0f, -1000.0f, 1000.0f, -1000.0f});
  y.set({1.0f, 0.0f, 0.0f, 1.0f});
  dlk_elementwise_loss_params p;
  dlk_elementwise_loss_params_init(&p);
  p.reduction = DLK_REDUCTION_NONE;
  ASSERT_EQ(dlk_bce_with_logits_forward(ctx, &p, &x.t, &y.t, nullptr, nullptr, &loss.t), DLK_SUCCESS);
  EXPECT_CLOSE(loss.get(), (std::vector<double>{0, 0, 1000, 1000}), 1e-6);
}

TEST_F(Loss, MseEveryDtypeAndReduction) {
  DLK_TRACE_SEED();
  for (DLDataType dt : kFloatTypes)
    for (dlk_reduction red : kReductions) {
      check_pointwise(ctx, false, {3, 5, 7}, dt, red, {}, {});
      check_pointwise(ctx, false, {1}, dt, red, {}, {});
      check_pointwise(ctx, false, {4099}, dt, red, {}, {});
    }
}

// Central differences of BCE / MSE / NLL forwards against their backwards (fp32, sum of w * loss).
TEST_F(Loss, PointwiseAndNllBackwardsMatchNumericalGradients) {
  DLK_TRACE_SEED();
  const double h = 1e-2;
  for (int op = 0; op < 3; ++op)
    for (dlk_reduction red : kReductions) {
      SCOPED_TRACE("op " + std::to_string(op) + " red " + std::to_string(red));
      const std::int64_t n = 4, c = 5;
      Tensor x(ctx, {n, c}, f32()), dx(ctx, {n, c}, f32()), y(ctx, {n, c}, f32()), t(ctx, {n}, i64());
      Tensor w(ctx, {c}, f32()), pw(ctx, {c}, f32());
      std::vector<float> xv = randn(n * c);
      y.set(op == 0 ? uniform(n * c, 0, 1) : randn(n * c));
      t.set({1, 4, 0, 2});
      w.set(uniform(c, 0.5f, 2.0f));
      pw.set(uniform(c, 0.5f, 2.0f));
      const std::vector<std::int64_t> ls = op == 2 ? std::vector<std::int64_t>{n} : std::vector<std::int64_t>{n, c};
      const std::int64_t ne = loss_elems(red, op == 2 ? n : n * c);
      Tensor loss(ctx, loss_shape(red, ls), f32()), dl(ctx, loss_shape(red, ls), f32());
      const std::vector<float> g = randn(ne);
      dl.set(g);
      dlk_elementwise_loss_params ep;
      dlk_elementwise_loss_params_init(&ep);
      ep.reduction = red;
      dlk_cross_entropy_params cp;
      dlk_cross_entropy_params_init(&cp);
      cp.reduction = red;
      cp.ignore_index = 2;
      auto forward = [&](const std::vector<float>& z) {
        x.set(z);
        dlk_status s = op == 0   ? dlk_bce_with_logits_forward(ctx, &ep, &x.t, &y.t, &w.t, &pw.t, &loss.t)
                       : op == 1 ? dlk_mse_loss_forward(ctx, &ep, &x.t, &y.t, &loss.t)
                                 : dlk_nll_loss_forward(ctx, &cp, &x.t, &t.t, &w.t, &loss.t);
        EXPECT_EQ(s, DLK_SUCCESS) << dlk_last_error();
        const std::vector<float> l = loss.get();
        double acc = 0;
        for (std::int64_t i = 0; i < ne; ++i) acc += static_cast<double>(g[i]) * l[i];
        return acc;
      };
      x.set(xv);
      dlk_status s = op == 0   ? dlk_bce_with_logits_backward(ctx, &ep, &x.t, &y.t, &w.t, &pw.t, &dl.t, &dx.t)
                     : op == 1 ? dlk_mse_loss_backward(ctx, &ep, &x.t, &y.t, &dl.t, &dx.t)
                               : dlk_nll_loss_backward(ctx, &cp, &x.t, &t.t, &w.t, &dl.t, &dx.t);
      ASSERT_EQ(s, DLK_SUCCESS) << dlk_last_error();
      const std::vector<float> analytic = dx.get();
      std::vector<double> numeric(n * c);
      for (std::int64_t i = 0; i < n * c; ++i) {
        std::vector<float> z = xv;
        z[i] = xv[i] + static_cast<float>(h);
        const double up = forward(z);
        z[i] = xv[i] - static_cast<float>(h);
        numeric[i] = (up - forward(z)) / (2 * h);
      }
      EXPECT_CLOSE(analytic, numeric, 2e-3);
    }
}

TEST_F(Loss, PointwiseRejectsBadInputs) {
  Tensor x(ctx, {3, 4}, f32()), y(ctx, {3, 4}, f32()), yh(ctx, {3, 4}, f16()), y2(ctx, {4, 3}, f32());
  Tensor loss(ctx, {}, f32()), w(ctx, {3}, f32()), pw(ctx, {3}, f32()), dx(ctx, {3, 4}, f32());
  expect_error(dlk_mse_loss_forward(ctx, nullptr, &x.t, &yh.t, &loss.t), DLK_ERROR_DTYPE, "target");
  expect_error(dlk_mse_loss_forward(ctx, nullptr, &x.t, &y2.t, &loss.t), DLK_ERROR_SHAPE, "target");
  expect_error(dlk_bce_with_logits_forward(ctx, nullptr, &x.t, &y.t, &w.t, nullptr, &loss.t), DLK_ERROR_SHAPE,
               "weight");
  expect_error(dlk_bce_with_logits_forward(ctx, nullptr, &x.t, &y.t, nullptr, &pw.t, &loss.t), DLK_ERROR_SHAPE,
               "pos_weight");
  expect_error(dlk_mse_loss_backward(ctx, nullptr, &x.t, &y.t, nullptr, &dx.t), DLK_ERROR_INVALID_ARGUMENT, "dloss");
  Tensor dl(ctx, {3, 4}, f32());
  expect_error(dlk_mse_loss_backward(ctx, nullptr, &x.t, &y.t, &dl.t, &dx.t), DLK_ERROR_SHAPE, "dloss");
}

}  // namespace
}  // namespace dlk::test
