// Classification metrics (accuracy, confusion matrix, precision/recall/F1 with scikit-learn's averages and
// zero_division=0) on the backend DLK_TEST_BACKEND names, against references written here and the seed case.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "test_util.h"

namespace dlk::test {
namespace {

class Metrics : public ::testing::Test {
 protected:
  Context ctx;
  void SetUp() override { SKIP_IF_NO_BACKEND(ctx); }
};

std::vector<float> labels(std::int64_t n, std::int64_t k) {
  std::vector<float> u = uniform(n, 0.0f, 1.0f), v(n);
  for (std::int64_t i = 0; i < n; ++i)
    v[i] = static_cast<float>(std::min<std::int64_t>(k - 1, static_cast<std::int64_t>(u[i] * k)));
  return v;
}

struct Prf {
  std::vector<double> p, r, f;  // per class
  double avg[4][3];             // [average][p, r, f] for micro, macro, weighted (index 1..3)
};

// Straight from the definitions, from label lists (not from a confusion matrix).
Prf prf_reference(const std::vector<float>& yt, const std::vector<float>& yp, std::int64_t k) {
  Prf out{};
  std::vector<double> tp(k), fp(k), fn(k), sup(k);
  std::vector<bool> present(k, false);
  for (std::size_t i = 0; i < yt.size(); ++i) {
    const auto t = static_cast<std::int64_t>(yt[i]), q = static_cast<std::int64_t>(yp[i]);
    present[t] = present[q] = true;
    sup[t] += 1;
    if (t == q)
      tp[t] += 1;
    else
      fp[q] += 1, fn[t] += 1;
  }
  auto div = [](double a, double b) { return b > 0 ? a / b : 0.0; };
  out.p.resize(k), out.r.resize(k), out.f.resize(k);
  double T = 0, P = 0, N = 0, mp = 0, mr = 0, mf = 0, cnt = 0, wp = 0, wr = 0, wf = 0, ws = 0;
  for (std::int64_t c = 0; c < k; ++c) {
    out.p[c] = div(tp[c], tp[c] + fp[c]);
    out.r[c] = div(tp[c], tp[c] + fn[c]);
    out.f[c] = div(2 * out.p[c] * out.r[c], out.p[c] + out.r[c]);
    if (!present[c]) continue;
    T += tp[c], P += fp[c], N += fn[c];
    mp += out.p[c], mr += out.r[c], mf += out.f[c], cnt += 1;
    wp += sup[c] * out.p[c], wr += sup[c] * out.r[c], wf += sup[c] * out.f[c], ws += sup[c];
  }
  const double mip = div(T, T + P), mir = div(T, T + N);
  out.avg[1][0] = mip, out.avg[1][1] = mir, out.avg[1][2] = div(2 * mip * mir, mip + mir);
  out.avg[2][0] = div(mp, cnt), out.avg[2][1] = div(mr, cnt), out.avg[2][2] = div(mf, cnt);
  out.avg[3][0] = div(wp, ws), out.avg[3][1] = div(wr, ws), out.avg[3][2] = div(wf, ws);
  return out;
}

TEST_F(Metrics, SeedCase) {
  Tensor yt(ctx, {5}, i64()), yp(ctx, {5}, i32()), acc(ctx, {}, f32()), cm(ctx, {3, 3}, i64());
  yt.set({0, 1, 2, 2, 2});
  yp.set({0, 0, 2, 2, 1});
  acc.poison();
  cm.poison();
  ASSERT_EQ(dlk_accuracy(ctx, &yt.t, &yp.t, &acc.t), DLK_SUCCESS) << dlk_last_error();
  EXPECT_NEAR(acc.get()[0], 0.60, 1e-6);
  ASSERT_EQ(dlk_confusion_matrix(ctx, &yt.t, &yp.t, 3, &cm.t), DLK_SUCCESS) << dlk_last_error();
  EXPECT_EQ(cm.get(), (std::vector<float>{1, 0, 0, 1, 0, 0, 0, 1, 2}));
  Tensor f1(ctx, {1}, f32()), p(ctx, {1}, f32()), r(ctx, {1}, f32());
  ASSERT_EQ(dlk_precision_recall_f1(ctx, &cm.t, DLK_AVERAGE_MACRO, &p.t, &r.t, &f1.t), DLK_SUCCESS) << dlk_last_error();
  EXPECT_NEAR(f1.get()[0], 0.49, 0.005);
  EXPECT_NEAR(f1.get()[0], (2.0 / 3 + 0 + 0.8) / 3, 1e-6);
  ASSERT_EQ(dlk_precision_recall_f1(ctx, &cm.t, DLK_AVERAGE_WEIGHTED, nullptr, nullptr, &f1.t), DLK_SUCCESS);
  EXPECT_NEAR(f1.get()[0], 0.61, 0.005);
  EXPECT_NEAR(f1.get()[0], (2.0 / 3 + 3 * 0.8) / 5, 1e-6);
}

TEST_F(Metrics, RandomLabelsAgainstTheDefinitions) {
  DLK_TRACE_SEED();
  for (std::int64_t k : {1, 2, 7, 40})
    for (std::int64_t n : {0, 1, 33, 5000}) {
      SCOPED_TRACE("k " + std::to_string(k) + " n " + std::to_string(n));
      std::vector<float> yt = labels(n, k), yp = labels(n, k);
      // Let some predictions agree so precision is not near zero, and leave class k-1 absent now and then.
      for (std::int64_t i = 0; i < n; i += 3) yp[i] = yt[i];
      if (k > 2)
        for (auto* v : {&yt, &yp})
          for (auto& x : *v)
            if (x == k - 1) x = 0;
      Tensor t(ctx, {n}, i32()), p(ctx, {n}, i64()), acc(ctx, {1}, f32()), cm(ctx, {k, k}, i64());
      t.set(yt);
      p.set(yp);
      acc.poison();
      cm.poison();
      ASSERT_EQ(dlk_accuracy(ctx, &t.t, &p.t, &acc.t), DLK_SUCCESS) << dlk_last_error();
      double hits = 0;
      for (std::int64_t i = 0; i < n; ++i) hits += yt[i] == yp[i];
      EXPECT_NEAR(acc.get()[0], n ? hits / n : 0.0, 1e-7);
      ASSERT_EQ(dlk_confusion_matrix(ctx, &t.t, &p.t, k, &cm.t), DLK_SUCCESS) << dlk_last_error();
      std::vector<float> ref(k * k, 0.0f);
      for (std::int64_t i = 0; i < n; ++i)
        ref[static_cast<std::int64_t>(yt[i]) * k + static_cast<std::int64_t>(yp[i])] += 1;
      EXPECT_EQ(cm.get(), ref);
      const Prf want = prf_reference(yt, yp, k);
      Tensor pc(ctx, {k}, f32()), rc(ctx, {k}, f32()), fc(ctx, {k}, f32());
      pc.poison(), rc.poison(), fc.poison();
      ASSERT_EQ(dlk_precision_recall_f1(ctx, &cm.t, DLK_AVERAGE_NONE, &pc.t, &rc.t, &fc.t), DLK_SUCCESS)
          << dlk_last_error();
      EXPECT_CLOSE(pc.get(), want.p, 1e-6);
      EXPECT_CLOSE(rc.get(), want.r, 1e-6);
      EXPECT_CLOSE(fc.get(), want.f, 1e-6);
      for (int avg = 1; avg <= 3; ++avg) {
        SCOPED_TRACE("average " + std::to_string(avg));
        Tensor a0(ctx, {}, f32()), a1(ctx, {}, f32()), a2(ctx, {}, f32());
        a0.poison(), a1.poison(), a2.poison();
        ASSERT_EQ(dlk_precision_recall_f1(ctx, &cm.t, static_cast<dlk_metric_average>(avg), &a0.t, &a1.t, &a2.t),
                  DLK_SUCCESS)
            << dlk_last_error();
        EXPECT_NEAR(a0.get()[0], want.avg[avg][0], 1e-6);
        EXPECT_NEAR(a1.get()[0], want.avg[avg][1], 1e-6);
        EXPECT_NEAR(a2.get()[0], want.avg[avg][2], 1e-6);
      }
    }
}

TEST_F(Metrics, RejectsBadInputs) {
  Tensor yt(ctx, {4}, i64()), yp(ctx, {4}, i64()), y3(ctx, {3}, i64()), yf(ctx, {4}, f32()), acc(ctx, {}, f32());
  Tensor cm(ctx, {3, 3}, i64()), cm32(ctx, {3, 3}, i32()), cmr(ctx, {3, 2}, i64()), out(ctx, {3}, f32());
  yt.set({0, 1, 2, 1});
  yp.set({0, 2, 2, 1});
  auto expect_error = [](dlk_status got, dlk_status want, const char* frag) {
    EXPECT_EQ(got, want) << dlk_last_error();
    EXPECT_NE(std::string(dlk_last_error()).find(frag), std::string::npos) << dlk_last_error();
  };
  expect_error(dlk_accuracy(ctx, &yt.t, &y3.t, &acc.t), DLK_ERROR_SHAPE, "y_pred");
  expect_error(dlk_accuracy(ctx, &yt.t, &yf.t, &acc.t), DLK_ERROR_DTYPE, "y_pred");
  expect_error(dlk_accuracy(ctx, &yt.t, &yp.t, &out.t), DLK_ERROR_SHAPE, "accuracy");
  expect_error(dlk_confusion_matrix(ctx, &yt.t, &yp.t, 3, &cm32.t), DLK_ERROR_DTYPE, "matrix");
  expect_error(dlk_confusion_matrix(ctx, &yt.t, &yp.t, 4, &cm.t), DLK_ERROR_SHAPE, "matrix");
  expect_error(dlk_confusion_matrix(ctx, &yt.t, &yp.t, 0, &cm.t), DLK_ERROR_INVALID_ARGUMENT, "num_classes");
  expect_error(dlk_precision_recall_f1(ctx, &cmr.t, DLK_AVERAGE_MACRO, nullptr, nullptr, nullptr), DLK_ERROR_SHAPE,
               "square");
  expect_error(dlk_precision_recall_f1(ctx, &cm.t, static_cast<dlk_metric_average>(9), &out.t, nullptr, nullptr),
               DLK_ERROR_INVALID_ARGUMENT, "average");
  expect_error(dlk_precision_recall_f1(ctx, &cm.t, DLK_AVERAGE_MACRO, &out.t, nullptr, nullptr), DLK_ERROR_SHAPE,
               "precision");
  if (!ctx.on_device()) {
    yp.set({0, 3, 2, 1});
    cm.poison();
    expect_error(dlk_confusion_matrix(ctx, &yt.t, &yp.t, 3, &cm.t), DLK_ERROR_INVALID_ARGUMENT, "y_pred[1] is 3");
    for (float v : cm.stored()) EXPECT_NE(v, 0.0f);  // untouched (still poison)
  }
}

}  // namespace
}  // namespace dlk::test
