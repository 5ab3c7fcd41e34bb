// GEMM family: dlk_matmul (transposes, broadcast batches, strided operands, alpha/beta, every dtype, odd sizes) and
// the linear layer (forward with every fused epilogue, backward with accumulation, numerical gradients, the seed
// case), on the backend DLK_TEST_BACKEND names, against an fp64 reference written here that reads the operands
// through their own shapes and strides (it shares no code with the library).
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

std::int64_t product(const std::vector<std::int64_t>& s) {
  return std::accumulate(s.begin(), s.end(), std::int64_t{1}, std::multiplies<std::int64_t>());
}

std::string shape_str(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

std::vector<std::int64_t> compact_strides(const std::vector<std::int64_t>& shape) {
  std::vector<std::int64_t> st(shape.size());
  std::int64_t acc = 1;
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    st[d] = acc;
    acc *= shape[d];
  }
  return st;
}

// A (possibly strided) view over a 1-D storage tensor filled with random values.
struct View {
  std::vector<std::int64_t> shape, strides;
  std::unique_ptr<Tensor> storage;
  DLTensor t{};
  std::vector<float> values;  // the storage as stored (rounded to the dtype)

  View(dlk_context* ctx, std::vector<std::int64_t> s, DLDataType dt, std::vector<std::int64_t> st = {})
      : shape(std::move(s)), strides(st.empty() ? compact_strides(shape) : std::move(st)) {
    std::int64_t span = 1;
    for (std::size_t d = 0; d < shape.size(); ++d) span += (shape[d] - 1) * strides[d];
    if (product(shape) == 0) span = 1;
    storage = std::make_unique<Tensor>(ctx, std::vector<std::int64_t>{span}, dt);
    storage->set(randn(static_cast<std::size_t>(span)));
    values = storage->stored();
    t = storage->t;
    t.ndim = static_cast<int>(shape.size());
    t.shape = shape.data();
    t.strides = strides.data();
  }
  double at(const std::vector<std::int64_t>& idx) const {
    std::int64_t off = 0;
    for (std::size_t d = 0; d < idx.size(); ++d) off += idx[d] * strides[d];
    return values[static_cast<std::size_t>(off)];
  }
};

// The multi-index of linear index i over shape.
std::vector<std::int64_t> unravel(std::int64_t i, const std::vector<std::int64_t>& shape) {
  std::vector<std::int64_t> idx(shape.size());
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    idx[d] = i % shape[d];
    i /= shape[d];
  }
  return idx;
}

// fp64 reference of C = alpha op(A) op(B) + beta C0 over the broadcast batch; c0 is C's values before the call
// (row-major over cshape), ignored when beta == 0.
std::vector<double> reference_matmul(const View& a, const View& b, bool ta, bool tb, double alpha, double beta,
                                     const std::vector<float>& c0, const std::vector<std::int64_t>& cshape) {
  const int cn = static_cast<int>(cshape.size()), an = static_cast<int>(a.shape.size()),
            bn = static_cast<int>(b.shape.size());
  const std::int64_t m = cshape[cn - 2], n = cshape[cn - 1];
  const std::int64_t k = ta ? a.shape[an - 2] : a.shape[an - 1];
  std::vector<double> out(static_cast<std::size_t>(product(cshape)));
  for (std::int64_t e = 0; e < product(cshape); ++e) {
    std::vector<std::int64_t> ci = unravel(e, cshape);
    std::vector<std::int64_t> ai(an), bi(bn);
    for (int d = 0; d < an - 2; ++d) ai[d] = a.shape[d] == 1 ? 0 : ci[d + (cn - an)];
    for (int d = 0; d < bn - 2; ++d) bi[d] = b.shape[d] == 1 ? 0 : ci[d + (cn - bn)];
    const std::int64_t i = ci[cn - 2], j = ci[cn - 1];
    double s = 0;
    for (std::int64_t p = 0; p < k; ++p) {
      ai[an - 2] = ta ? p : i;
      ai[an - 1] = ta ? i : p;
      bi[bn - 2] = tb ? j : p;
      bi[bn - 1] = tb ? p : j;
      s += a.at(ai) * b.at(bi);
    }
    (void)m;
    (void)n;
    out[static_cast<std::size_t>(e)] = alpha * s + (beta != 0 ? beta * c0[static_cast<std::size_t>(e)] : 0.0);
  }
  return out;
}

class Gemm : public ::testing::Test {
 protected:
  Context ctx;
  void SetUp() override { SKIP_IF_NO_BACKEND(ctx); }

  struct Case {
    std::vector<std::int64_t> ashape, bshape, cshape;
    std::vector<std::int64_t> astrides = {}, bstrides = {};
    bool ta = false, tb = false;
    float alpha = 1.0f, beta = 0.0f;
    bool tf32 = false;
  };

  void run(const Case& c, DLDataType dt) {
    SCOPED_TRACE("a " + shape_str(c.ashape) + " b " + shape_str(c.bshape) + " c " + shape_str(c.cshape) + " ta " +
                 std::to_string(c.ta) + " tb " + std::to_string(c.tb) + " alpha " + std::to_string(c.alpha) + " beta " +
                 std::to_string(c.beta) + " " + dtype_str(dt));
    View a(ctx, c.ashape, dt, c.astrides), b(ctx, c.bshape, dt, c.bstrides);
    Tensor out(ctx, c.cshape, dt);
    std::vector<float> c0;
    if (c.beta != 0.0f) {
      out.set(randn(out.numel()));
      c0 = out.stored();
    } else {
      out.poison();  // beta == 0 must never read C
    }
    dlk_matmul_params p;
    dlk_matmul_params_init(&p);
    p.alpha = c.alpha;
    p.beta = c.beta;
    p.transpose_a = c.ta;
    p.transpose_b = c.tb;
    p.allow_tf32 = c.tf32;
    ASSERT_EQ(dlk_matmul(ctx, &p, &a.t, &b.t, &out.t), DLK_SUCCESS) << dlk_last_error();
    std::vector<float> got = out.get();
    EXPECT_TRUE(all_finite(got));
    double tol = tolerance(dt);
    if (c.tf32 && ctx.on_device() && dt.bits == 32) tol = 5e-4;
    EXPECT_CLOSE(got, reference_matmul(a, b, c.ta, c.tb, c.alpha, c.beta, c0, c.cshape), tol);
  }
};

TEST_F(Gemm, OddSizesEveryDtype) {
  DLK_TRACE_SEED();
  const std::int64_t sizes[][3] = {{1, 1, 1}, {7, 33, 65}, {65, 7, 33}, {33, 65, 1}, {1, 65, 7}, {7, 1, 33}};
  for (DLDataType dt : kFloatTypes)
    for (auto& s : sizes) run({{s[0], s[1]}, {s[1], s[2]}, {s[0], s[2]}}, dt);
}

TEST_F(Gemm, TransposeFlags) {
  DLK_TRACE_SEED();
  const std::int64_t m = 7, k = 33, n = 5;
  for (DLDataType dt : kFloatTypes)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        Case c{{ta ? k : m, ta ? m : k}, {tb ? n : k, tb ? k : n}, {m, n}};
        c.ta = ta;
        c.tb = tb;
        run(c, dt);
      }
}

TEST_F(Gemm, TransposedViewsByStrides) {
  DLK_TRACE_SEED();
  // A [7, 33] stored column-major (a transposed [33, 7] tensor), B [33, 5] column-major, and both with padded
  // leading dimensions; also a transposed view combined with a transpose flag.
  for (DLDataType dt : kFloatTypes) {
    run({{7, 33}, {33, 5}, {7, 5}, {1, 7}, {1, 33}}, dt);
    run({{7, 33}, {33, 5}, {7, 5}, {1, 9}, {1, 40}}, dt);
    run({{7, 33}, {33, 5}, {7, 5}, {40, 1}, {8, 1}}, dt);
    Case c{{7, 33}, {5, 33}, {7, 5}, {1, 7}, {1, 5}};
    c.tb = true;
    run(c, dt);
  }
}

TEST_F(Gemm, BroadcastBatches) {
  DLK_TRACE_SEED();
  for (DLDataType dt : kFloatTypes) {
    run({{2, 3, 7, 5}, {5, 4}, {2, 3, 7, 4}}, dt);
    run({{2, 3, 7, 5}, {1, 3, 5, 4}, {2, 3, 7, 4}}, dt);
    run({{3, 1, 7, 5}, {1, 2, 5, 4}, {3, 2, 7, 4}}, dt);
    run({{7, 5}, {2, 5, 4}, {2, 7, 4}}, dt);
    run({{2, 1, 1, 3, 5}, {4, 1, 5, 6}, {2, 4, 1, 3, 6}}, dt);
  }
}

TEST_F(Gemm, StridedBatchesThatDoNotCollapse) {
  DLK_TRACE_SEED();
  // A is a slice [2, 3, 7, 5] of a [3, 4, 7, 8] tensor (padded rows, skipped matrices); B's batch dims are swapped.
  for (DLDataType dt : kFloatTypes) {
    run({{2, 3, 7, 5}, {2, 3, 5, 6}, {2, 3, 7, 6}, {4 * 7 * 8, 7 * 8, 8, 1}, {30, 60, 6, 1}}, dt);
    Case c{{2, 3, 5, 7}, {3, 6, 5}, {2, 3, 7, 6}, {3 * 5 * 9, 5 * 9, 9, 1}, {30, 5, 1}};
    c.ta = true;
    c.tb = true;
    run(c, dt);
  }
}

TEST_F(Gemm, AlphaBeta) {
  DLK_TRACE_SEED();
  for (DLDataType dt : kFloatTypes) {
    Case c{{2, 7, 33}, {2, 33, 5}, {2, 7, 5}};
    c.alpha = 0.5f;
    c.beta = -1.25f;
    run(c, dt);
    c.beta = 1.0f;
    c.alpha = -2.0f;
    run(c, dt);
    c.beta = 0.0f;  // poisoned C, never read
    run(c, dt);
  }
}

TEST_F(Gemm, ZeroInnerDimensionScalesC) {
  DLK_TRACE_SEED();
  for (DLDataType dt : kFloatTypes) {
    Case c{{3, 0}, {0, 4}, {3, 4}};
    c.beta = 0.5f;
    run(c, dt);
    c.beta = 0.0f;
    run(c, dt);
  }
}

TEST_F(Gemm, StridedOutput) {
  DLK_TRACE_SEED();
  // C [2, 7, 5] with row stride 9 and batch stride 70 (a slice of a bigger buffer); the gaps must stay untouched.
  for (DLDataType dt : kFloatTypes) {
    View a(ctx, {2, 7, 33}, dt), b(ctx, {33, 5}, dt);
    Tensor buf(ctx, {140}, dt);
    std::vector<float> before = randn(140);
    buf.set(before);
    before = buf.stored();
    std::vector<std::int64_t> cshape = {2, 7, 5}, cstrides = {70, 9, 1};
    DLTensor c = buf.t;
    c.ndim = 3;
    c.shape = cshape.data();
    c.strides = cstrides.data();
    dlk_matmul_params p;
    dlk_matmul_params_init(&p);
    p.beta = 2.0f;
    ASSERT_EQ(dlk_matmul(ctx, &p, &a.t, &b.t, &c), DLK_SUCCESS) << dlk_last_error();
    std::vector<float> after = buf.get(), got, c0;
    std::vector<bool> inside(140, false);
    for (std::int64_t e = 0; e < 70; ++e) {
      auto idx = unravel(e, cshape);
      const std::int64_t off = idx[0] * 70 + idx[1] * 9 + idx[2];
      inside[off] = true;
      got.push_back(after[off]);
      c0.push_back(before[off]);
    }
    EXPECT_CLOSE(got, reference_matmul(a, b, false, false, 1.0, 2.0, c0, cshape), tolerance(dt));
    for (int i = 0; i < 140; ++i)
      if (!inside[i]) {
        EXPECT_EQ(after[i], before[i]) << "gap element " << i << " was written";
      }
  }
}

TEST_F(Gemm, Tf32OnlyWhenAllowed) {
  DLK_TRACE_SEED();
  Case c{{65, 129}, {129, 33}, {65, 33}};
  c.tf32 = true;  // within 5e-4 on cuda (TF32), 1e-5 elsewhere (the flag changes nothing off the GPU)
  run(c, f32());
  c.tf32 = false;
  run(c, f32());
}

TEST_F(Gemm, EmptyOutputs) {
  for (auto shapes : std::vector<std::vector<std::vector<std::int64_t>>>{
           {{0, 5}, {5, 4}, {0, 4}}, {{3, 5}, {5, 0}, {3, 0}}, {{0, 3, 5}, {5, 4}, {0, 3, 4}}}) {
    View a(ctx, shapes[0], f32()), b(ctx, shapes[1], f32());
    Tensor c(ctx, shapes[2], f32());
    EXPECT_EQ(dlk_matmul(ctx, nullptr, &a.t, &b.t, &c.t), DLK_SUCCESS) << dlk_last_error();
  }
}

// ----------------------------------------------------------------------------------------------- bad inputs

TEST_F(Gemm, RejectsBadInputsNamingTheShapes) {
  Tensor a(ctx, {3, 4}, f32()), b(ctx, {5, 6}, f32()), c(ctx, {3, 6}, f32());
  a.set(randn(12));
  b.set(randn(30));
  c.set(randn(18));
  const std::vector<float> c_before = c.stored();
  EXPECT_EQ(dlk_matmul(ctx, nullptr, &a.t, &b.t, &c.t), DLK_ERROR_SHAPE);
  std::string msg = dlk_last_error();
  EXPECT_NE(msg.find("[3,4]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[5,6]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("inner dimensions"), std::string::npos) << msg;
  EXPECT_EQ(c.get(), c_before);  // untouched on failure

  Tensor a3(ctx, {2, 3, 4}, f32()), b3(ctx, {3, 4, 5}, f32()), c3(ctx, {3, 3, 5}, f32());
  EXPECT_EQ(dlk_matmul(ctx, nullptr, &a3.t, &b3.t, &c3.t), DLK_ERROR_SHAPE);
  msg = dlk_last_error();
  EXPECT_NE(msg.find("do not broadcast"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2,3,4]"), std::string::npos) << msg;

  Tensor bh(ctx, {4, 6}, f16()), c2(ctx, {3, 6}, f32());
  EXPECT_EQ(dlk_matmul(ctx, nullptr, &a.t, &bh.t, &c2.t), DLK_ERROR_DTYPE);
  EXPECT_NE(std::string(dlk_last_error()).find("float16"), std::string::npos) << dlk_last_error();

  Tensor b46(ctx, {4, 6}, f32()), cbad(ctx, {3, 5}, f32());
  EXPECT_EQ(dlk_matmul(ctx, nullptr, &a.t, &b46.t, &cbad.t), DLK_ERROR_SHAPE);
  EXPECT_NE(std::string(dlk_last_error()).find("[3,6]"), std::string::npos) << dlk_last_error();

  Tensor a1(ctx, {4}, f32());
  EXPECT_EQ(dlk_matmul(ctx, nullptr, &a1.t, &b46.t, &c.t), DLK_ERROR_SHAPE);

  dlk_matmul_params p;
  dlk_matmul_params_init(&p);
  p.alpha = NAN;
  EXPECT_EQ(dlk_matmul(ctx, &p, &a.t, &b46.t, &c.t), DLK_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(dlk_last_error()).find("alpha"), std::string::npos) << dlk_last_error();

  // Neither of the last two strides is 1.
  std::vector<std::int64_t> bad_strides = {12, 2};
  DLTensor as = a.t;
  as.strides = bad_strides.data();
  Tensor big(ctx, {40}, f32());
  as.data = big.t.data;
  EXPECT_EQ(dlk_matmul(ctx, nullptr, &as, &b46.t, &c.t), DLK_ERROR_LAYOUT);
  // The output overlapping an input.
  EXPECT_EQ(dlk_matmul(ctx, nullptr, &a.t, &b46.t, &a.t), DLK_ERROR_SHAPE);
  Tensor sq(ctx, {4, 4}, f32());
  EXPECT_EQ(dlk_matmul(ctx, nullptr, &sq.t, &sq.t, &sq.t), DLK_ERROR_LAYOUT);
  EXPECT_EQ(dlk_matmul(nullptr, nullptr, &a.t, &b46.t, &c.t), DLK_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(dlk_matmul(ctx, nullptr, nullptr, &b46.t, &c.t), DLK_ERROR_INVALID_ARGUMENT);
}

// ---------------------------------------------------------------------------------------------------- linear

const dlk_epilogue kEpilogues[] = {DLK_EPILOGUE_NONE, DLK_EPILOGUE_RELU, DLK_EPILOGUE_GELU, DLK_EPILOGUE_GELU_TANH};

double act_ref(dlk_epilogue e, double z) {
  switch (e) {
    case DLK_EPILOGUE_RELU: return z > 0 ? z : 0;
    case DLK_EPILOGUE_GELU: return 0.5 * z * (1 + std::erf(z / std::sqrt(2.0)));
    case DLK_EPILOGUE_GELU_TANH: return 0.5 * z * (1 + std::tanh(std::sqrt(2 / M_PI) * (z + 0.044715 * z * z * z)));
    default: return z;
  }
}
// The derivative, by a central difference of act_ref in fp64 (independent of the library's closed forms).
double act_grad_ref(dlk_epilogue e, double z) {
  if (e == DLK_EPILOGUE_RELU) return z > 0 ? 1 : 0;
  const double h = 1e-5;
  return (act_ref(e, z + h) - act_ref(e, z - h)) / (2 * h);
}

TEST_F(Gemm, LinearSeedCase) {
  for (DLDataType dt : {f32()}) {
    Tensor x(ctx, {1, 3}, dt), w(ctx, {2, 3}, dt), b(ctx, {2}, dt), y(ctx, {1, 2}, dt);
    x.set({0.3471f, 0.4547f, -0.2356f});
    w.set({-0.1971f, -0.4996f, 0.1233f, 0.2203f, 0.3508f, -0.1402f});
    b.set({-0.4006f, 0.0538f});
    y.poison();
    ASSERT_EQ(dlk_linear_forward(ctx, nullptr, &x.t, &w.t, &b.t, &y.t, nullptr), DLK_SUCCESS) << dlk_last_error();
    std::vector<float> got = y.get();
    EXPECT_NEAR(got[0], -0.7252, 5e-5);
    EXPECT_NEAR(got[1], 0.3228, 5e-5);
    EXPECT_EQ(std::round(got[0] * 1e4) / 1e4, std::round(-0.7252 * 1e4) / 1e4);
    EXPECT_EQ(std::round(got[1] * 1e4) / 1e4, std::round(0.3228 * 1e4) / 1e4);
  }
}

struct LinearRef {
  std::vector<double> z, y;
};

LinearRef linear_ref(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>* b,
                     std::int64_t rows, std::int64_t in, std::int64_t out, dlk_epilogue e) {
  LinearRef r;
  r.z.resize(static_cast<std::size_t>(rows * out));
  r.y.resize(r.z.size());
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < out; ++j) {
      double s = b ? (*b)[j] : 0.0;
      for (std::int64_t p = 0; p < in; ++p) s += static_cast<double>(x[i * in + p]) * w[j * in + p];
      r.z[i * out + j] = s;
      r.y[i * out + j] = act_ref(e, s);
    }
  return r;
}

TEST_F(Gemm, LinearForwardEveryEpilogueAndDtype) {
  DLK_TRACE_SEED();
  const std::vector<std::int64_t> xshape = {2, 3, 33};
  const std::int64_t in = 33, out = 7, rows = 6;
  for (DLDataType dt : kFloatTypes)
    for (dlk_epilogue e : kEpilogues)
      for (int with_bias = 0; with_bias < 2; ++with_bias) {
        SCOPED_TRACE(dtype_str(dt) + " epilogue " + std::to_string(e) + " bias " + std::to_string(with_bias));
        Tensor x(ctx, xshape, dt), w(ctx, {out, in}, dt), b(ctx, {out}, dt), y(ctx, {2, 3, out}, dt),
            z(ctx, {2, 3, out}, dt);
        x.set(randn(x.numel()));
        w.set(randn(w.numel(), 0.3f));
        b.set(randn(b.numel()));
        y.poison();
        z.poison();
        dlk_linear_params p;
        dlk_linear_params_init(&p);
        p.activation = e;
        ASSERT_EQ(dlk_linear_forward(ctx, &p, &x.t, &w.t, with_bias ? &b.t : nullptr, &y.t, &z.t), DLK_SUCCESS)
            << dlk_last_error();
        std::vector<float> bv = b.stored();
        LinearRef r = linear_ref(x.stored(), w.stored(), with_bias ? &bv : nullptr, rows, in, out, e);
        EXPECT_CLOSE(y.get(), r.y, tolerance(dt));
        if (e != DLK_EPILOGUE_NONE) {
          EXPECT_CLOSE(z.get(), r.z, tolerance(dt));
        }
      }
}

TEST_F(Gemm, LinearBackwardEveryEpilogueAndAccumulate) {
  DLK_TRACE_SEED();
  const std::int64_t in = 33, out = 7, rows = 10;
  for (DLDataType dt : kFloatTypes)
    for (dlk_epilogue e : kEpilogues)
      for (int accumulate = 0; accumulate < 2; ++accumulate) {
        SCOPED_TRACE(dtype_str(dt) + " epilogue " + std::to_string(e) + " accumulate " + std::to_string(accumulate));
        Tensor x(ctx, {2, 5, in}, dt), w(ctx, {out, in}, dt), z(ctx, {2, 5, out}, dt), dy(ctx, {2, 5, out}, dt);
        Tensor dx(ctx, {2, 5, in}, dt), dw(ctx, {out, in}, dt), db(ctx, {out}, dt);
        x.set(randn(x.numel()));
        w.set(randn(w.numel(), 0.3f));
        z.set(randn(z.numel()));
        dy.set(randn(dy.numel()));
        dx.poison();
        std::vector<float> dw0, db0;
        if (accumulate) {
          dw.set(randn(dw.numel()));
          db.set(randn(db.numel()));
          dw0 = dw.stored();
          db0 = db.stored();
        } else {
          dw.poison();
          db.poison();
        }
        dlk_linear_params p;
        dlk_linear_params_init(&p);
        p.activation = e;
        p.accumulate = accumulate;
        ASSERT_EQ(dlk_linear_backward(ctx, &p, &dy.t, &x.t, &w.t, &z.t, &dx.t, &dw.t, &db.t), DLK_SUCCESS)
            << dlk_last_error();
        std::vector<float> xv = x.stored(), wv = w.stored(), zv = z.stored(), dyv = dy.stored();
        std::vector<double> g(static_cast<std::size_t>(rows * out)), rdx(static_cast<std::size_t>(rows * in), 0.0),
            rdw(static_cast<std::size_t>(out * in), 0.0), rdb(static_cast<std::size_t>(out), 0.0);
        for (std::size_t i = 0; i < g.size(); ++i) g[i] = dyv[i] * act_grad_ref(e, zv[i]);
        for (std::int64_t r = 0; r < rows; ++r)
          for (std::int64_t j = 0; j < out; ++j) {
            const double gv = g[r * out + j];
            rdb[j] += gv;
            for (std::int64_t q = 0; q < in; ++q) {
              rdx[r * in + q] += gv * wv[j * in + q];
              rdw[j * in + q] += gv * xv[r * in + q];
            }
          }
        if (accumulate) {
          for (std::size_t i = 0; i < rdw.size(); ++i) rdw[i] += dw0[i];
          for (std::size_t i = 0; i < rdb.size(); ++i) rdb[i] += db0[i];
        }
        // fp32: the activation derivative is a closed form in fp32 against a fp64 central difference.
        const double tol = dt.bits == 32 ? 2e-5 : tolerance(dt);
        EXPECT_CLOSE(dx.get(), rdx, tol);
        EXPECT_CLOSE(dw.get(), rdw, tol);
        EXPECT_CLOSE(db.get(), rdb, tol);
      }
}

TEST_F(Gemm, LinearBackwardOptionalOutputs) {
  DLK_TRACE_SEED();
  Tensor x(ctx, {4, 5}, f32()), w(ctx, {3, 5}, f32()), dy(ctx, {4, 3}, f32()), dx(ctx, {4, 5}, f32()),
      dw(ctx, {3, 5}, f32()), db(ctx, {3}, f32());
  x.set(randn(20));
  w.set(randn(15));
  dy.set(randn(12));
  dx.poison();
  db.poison();
  ASSERT_EQ(dlk_linear_backward(ctx, nullptr, &dy.t, &x.t, &w.t, nullptr, &dx.t, nullptr, nullptr), DLK_SUCCESS)
      << dlk_last_error();
  EXPECT_TRUE(all_finite(dx.get()));
  ASSERT_EQ(dlk_linear_backward(ctx, nullptr, &dy.t, &x.t, &w.t, nullptr, nullptr, nullptr, &db.t), DLK_SUCCESS)
      << dlk_last_error();
  std::vector<float> dyv = dy.stored();
  std::vector<double> rdb(3, 0.0);
  for (int r = 0; r < 4; ++r)
    for (int j = 0; j < 3; ++j) rdb[j] += dyv[r * 3 + j];
  EXPECT_CLOSE(db.get(), rdb, 1e-5);
}

// Numerical gradients of L = sum(wout * linear(x, W, b)) through the library's own forward.
TEST_F(Gemm, LinearBackwardMatchesNumericalGradients) {
  DLK_TRACE_SEED();
  const std::int64_t rows = 3, in = 4, out = 5;
  for (dlk_epilogue e : kEpilogues) {
    SCOPED_TRACE("epilogue " + std::to_string(e));
    Tensor x(ctx, {rows, in}, f32()), w(ctx, {out, in}, f32()), b(ctx, {out}, f32()), y(ctx, {rows, out}, f32()),
        z(ctx, {rows, out}, f32()), dy(ctx, {rows, out}, f32());
    Tensor dx(ctx, {rows, in}, f32()), dw(ctx, {out, in}, f32()), db(ctx, {out}, f32());
    dlk_linear_params p;
    dlk_linear_params_init(&p);
    p.activation = e;
    std::vector<float> xv, wv, bv;
    // Keep every z away from ReLU's kink so the central difference is smooth.
    for (int attempt = 0; attempt < 50; ++attempt) {
      xv = randn(x.numel());
      wv = randn(w.numel(), 0.5f);
      bv = randn(b.numel());
      LinearRef r = linear_ref(xv, wv, &bv, rows, in, out, DLK_EPILOGUE_NONE);
      if (std::all_of(r.z.begin(), r.z.end(), [](double v) { return std::fabs(v) > 0.05; })) break;
    }
    x.set(xv);
    w.set(wv);
    b.set(bv);
    std::vector<float> wout = randn(static_cast<std::size_t>(rows * out));
    dy.set(wout);
    auto loss = [&]() {
      EXPECT_EQ(dlk_linear_forward(ctx, &p, &x.t, &w.t, &b.t, &y.t, &z.t), DLK_SUCCESS) << dlk_last_error();
      std::vector<float> yv = y.get();
      double s = 0;
      for (std::size_t i = 0; i < yv.size(); ++i) s += static_cast<double>(wout[i]) * yv[i];
      return s;
    };
    const double h = 1e-2;
    auto numeric = [&](Tensor& t, std::vector<float>& v) {
      std::vector<double> grad(v.size());
      for (std::size_t i = 0; i < v.size(); ++i) {
        const float keep = v[i];
        v[i] = keep + static_cast<float>(h);
        t.set(v);
        const double lp = loss();
        v[i] = keep - static_cast<float>(h);
        t.set(v);
        const double lm = loss();
        v[i] = keep;
        t.set(v);
        grad[i] = (lp - lm) / (2 * h);
      }
      return grad;
    };
    std::vector<double> gx = numeric(x, xv), gw = numeric(w, wv), gb = numeric(b, bv);
    loss();  // z of the unperturbed inputs
    ASSERT_EQ(dlk_linear_backward(ctx, &p, &dy.t, &x.t, &w.t, &z.t, &dx.t, &dw.t, &db.t), DLK_SUCCESS)
        << dlk_last_error();
    EXPECT_CLOSE(dx.get(), gx, 2e-3);
    EXPECT_CLOSE(dw.get(), gw, 2e-3);
    EXPECT_CLOSE(db.get(), gb, 2e-3);
  }
}

TEST_F(Gemm, LinearRejectsBadInputs) {
  Tensor x(ctx, {4, 3}, f32()), w(ctx, {2, 5}, f32()), y(ctx, {4, 2}, f32()), b(ctx, {3}, f32());
  y.set(randn(8));
  const std::vector<float> y_before = y.stored();
  EXPECT_EQ(dlk_linear_forward(ctx, nullptr, &x.t, &w.t, nullptr, &y.t, nullptr), DLK_ERROR_SHAPE);
  std::string msg = dlk_last_error();
  EXPECT_NE(msg.find("[2,5]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[4,3]"), std::string::npos) << msg;
  EXPECT_EQ(y.get(), y_before);

  Tensor w2(ctx, {2, 3}, f32());
  EXPECT_EQ(dlk_linear_forward(ctx, nullptr, &x.t, &w2.t, &b.t, &y.t, nullptr), DLK_ERROR_SHAPE);
  EXPECT_NE(std::string(dlk_last_error()).find("bias"), std::string::npos) << dlk_last_error();
  Tensor wh(ctx, {2, 3}, f16());
  EXPECT_EQ(dlk_linear_forward(ctx, nullptr, &x.t, &wh.t, nullptr, &y.t, nullptr), DLK_ERROR_DTYPE);
  dlk_linear_params p;
  dlk_linear_params_init(&p);
  p.activation = static_cast<dlk_epilogue>(9);
  EXPECT_EQ(dlk_linear_forward(ctx, &p, &x.t, &w2.t, nullptr, &y.t, nullptr), DLK_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(dlk_last_error()).find("activation"), std::string::npos) << dlk_last_error();
  // y aliasing x.
  Tensor sq(ctx, {3, 3}, f32()), w33(ctx, {3, 3}, f32());
  EXPECT_EQ(dlk_linear_forward(ctx, nullptr, &sq.t, &w33.t, nullptr, &sq.t, nullptr), DLK_ERROR_LAYOUT);

  // Backward: an activation needs the pre-activation.
  Tensor dy(ctx, {4, 2}, f32()), dx(ctx, {4, 3}, f32());
  p.activation = DLK_EPILOGUE_GELU;
  EXPECT_EQ(dlk_linear_backward(ctx, &p, &dy.t, &x.t, &w2.t, nullptr, &dx.t, nullptr, nullptr),
            DLK_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(dlk_last_error()).find("pre_activation"), std::string::npos) << dlk_last_error();
  Tensor dw_bad(ctx, {3, 2}, f32());
  p.activation = DLK_EPILOGUE_NONE;
  EXPECT_EQ(dlk_linear_backward(ctx, &p, &dy.t, &x.t, &w2.t, nullptr, nullptr, &dw_bad.t, nullptr), DLK_ERROR_SHAPE);
}

}  // namespace
}  // namespace dlk::test
