// Fused masked softmax, forward and backward, on the backend DLK_TEST_BACKEND names, against an independent fp64
// reference written here (it shares no code with the library: masks are broadcast from their own shapes and
// strides, causal / key-padding limits come from the multi-index). Sizes cover every kernel path: the warp path
// (cols <= 1024, short rows sharing a warp), the block path (<= 32768) and the online path (longer), each both
// vectorised (cols a multiple of the 16-byte pack, aligned) and scalar (odd cols or a misaligned pointer).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "test_util.h"

namespace dlk::test {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
const DLDataType kFloatTypes[] = {f32(), f16(), bf16()};
DLDataType i8() { return DLDataType{kDLInt, 8, 1}; }

std::int64_t product(const std::vector<std::int64_t>& s) {
  return std::accumulate(s.begin(), s.end(), std::int64_t{1}, std::multiplies<std::int64_t>());
}

std::string shape_str(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

// What masks a call: the kind, and for tensor masks the mask's shape, dtype and values (row-major over mshape),
// stored with its last dim at stride 2 when `strided`; for key padding the lengths.
struct MaskSpec {
  dlk_mask_kind kind = DLK_MASK_NONE;
  std::vector<std::int64_t> mshape;
  DLDataType mdtype = u8();
  std::vector<float> mvalues;
  bool strided = false;
  std::vector<std::int64_t> lengths;
  DLDataType ldtype = i32();
};

// A tensor mask of `shape` and dtype: booleans keep with probability 0.7 (and whole rows dropped now and then
// through the values themselves); floats are N(0, 2) with some -inf.
MaskSpec tensor_mask(std::vector<std::int64_t> shape, DLDataType dtype, bool strided = false) {
  MaskSpec m;
  m.kind = DLK_MASK_TENSOR;
  m.mshape = std::move(shape);
  m.mdtype = dtype;
  m.strided = strided;
  const std::size_t n = static_cast<std::size_t>(product(m.mshape));
  std::vector<float> u = uniform(n, 0.0f, 1.0f), g = randn(n, 2.0f);
  m.mvalues.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (dtype.code == kDLFloat || dtype.code == kDLBfloat)
      m.mvalues[i] = u[i] < 0.1f ? -INFINITY : g[i];
    else
      m.mvalues[i] = u[i] < 0.7f ? static_cast<float>(1 + static_cast<int>(u[i] * 100)) : 0.0f;
  }
  return m;
}

MaskSpec key_padding(std::vector<std::int64_t> lengths, DLDataType dtype) {
  MaskSpec m;
  m.kind = DLK_MASK_KEY_PADDING;
  m.lengths = std::move(lengths);
  m.ldtype = dtype;
  return m;
}

MaskSpec causal(bool bottom_right) {
  MaskSpec m;
  m.kind = bottom_right ? DLK_MASK_CAUSAL_BOTTOM_RIGHT : DLK_MASK_CAUSAL;
  return m;
}

// The independent reference: y = softmax(scale * x + mask) over the last dim in fp64. `mask_values` are the mask's
// stored values (row-major over m.mshape).
std::vector<double> reference_forward(const std::vector<double>& x, const std::vector<std::int64_t>& shape,
                                      double scale, const MaskSpec& m, const std::vector<float>& mask_values) {
  const int nd = static_cast<int>(shape.size());
  const std::int64_t cols = shape[nd - 1], rows = cols ? product(shape) / cols : 0;
  std::vector<double> y(x.size(), 0.0);
  std::vector<std::int64_t> idx(nd, 0);
  const int lead = nd - static_cast<int>(m.mshape.size());
  for (std::int64_t r = 0; r < rows; ++r) {
    std::int64_t rem = r;
    for (int d = nd - 2; d >= 0; --d) {
      idx[d] = rem % shape[d];
      rem /= shape[d];
    }
    std::int64_t limit = cols;
    if (m.kind == DLK_MASK_CAUSAL || m.kind == DLK_MASK_CAUSAL_BOTTOM_RIGHT) {
      const std::int64_t R = shape[nd - 2];
      limit = idx[nd - 2] + 1 + (m.kind == DLK_MASK_CAUSAL ? 0 : cols - R);
    } else if (m.kind == DLK_MASK_KEY_PADDING) {
      limit = m.lengths[idx[0]];
    }
    limit = std::max<std::int64_t>(0, std::min(limit, cols));
    std::vector<double> v(cols, -kInf);
    double mx = -kInf;
    for (std::int64_t j = 0; j < cols; ++j) {
      if (j >= limit) continue;
      double t = scale * x[r * cols + j];
      if (m.kind == DLK_MASK_TENSOR) {
        idx[nd - 1] = j;
        std::int64_t off = 0;
        for (int d = lead; d < nd; ++d) off = off * m.mshape[d - lead] + (m.mshape[d - lead] == 1 ? 0 : idx[d]);
        const double mv = mask_values[off];
        if (m.mdtype.code == kDLFloat || m.mdtype.code == kDLBfloat)
          t += mv;
        else if (mv == 0)
          t = -kInf;
      }
      v[j] = t;
      mx = std::max(mx, t);
    }
    if (mx == -kInf) continue;  // fully masked: zeros
    double sum = 0;
    for (std::int64_t j = 0; j < cols; ++j) sum += v[j] == -kInf ? 0.0 : std::exp(v[j] - mx);
    for (std::int64_t j = 0; j < cols; ++j) y[r * cols + j] = v[j] == -kInf ? 0.0 : std::exp(v[j] - mx) / sum;
  }
  return y;
}

std::vector<double> reference_backward(const std::vector<double>& y, const std::vector<double>& dy, std::int64_t cols,
                                       double scale) {
  std::vector<double> dx(y.size());
  for (std::size_t r = 0; cols && r < y.size() / cols; ++r) {
    double dot = 0;
    for (std::int64_t j = 0; j < cols; ++j) dot += y[r * cols + j] * dy[r * cols + j];
    for (std::int64_t j = 0; j < cols; ++j) dx[r * cols + j] = scale * y[r * cols + j] * (dy[r * cols + j] - dot);
  }
  return dx;
}

std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// A DLTensor view of a Tensor's storage with its own shape, strides and byte offset.
struct View {
  std::vector<std::int64_t> shape, strides;
  DLTensor t;
  View(const Tensor& base, std::vector<std::int64_t> s, std::vector<std::int64_t> st, std::uint64_t byte_offset)
      : shape(std::move(s)), strides(std::move(st)), t(base.t) {
    t.ndim = static_cast<int>(shape.size());
    t.shape = shape.data();
    t.strides = strides.empty() ? nullptr : strides.data();
    t.byte_offset = byte_offset;
  }
};

// The library's mask tensors of a MaskSpec (built on the test's context) and the params pointing at them.
struct MaskTensors {
  std::unique_ptr<Tensor> storage;
  std::unique_ptr<View> view;
  std::unique_ptr<Tensor> lengths;
  std::vector<float> stored;  // mask values as stored, row-major over mshape
  dlk_softmax_params params;

  MaskTensors(Context& ctx, const MaskSpec& m, float scale) {
    dlk_softmax_params_init(&params);
    params.scale = scale;
    params.mask_kind = m.kind;
    if (m.kind == DLK_MASK_TENSOR) {
      const std::int64_t n = product(m.mshape);
      if (!m.strided) {
        storage = std::make_unique<Tensor>(ctx, m.mshape, m.mdtype);
        storage->set(m.mvalues);
        stored = storage->stored();
        params.mask = &storage->t;
      } else {  // last dim at stride 2, the others packed over the doubled layout
        storage = std::make_unique<Tensor>(ctx, std::vector<std::int64_t>{2 * n}, m.mdtype);
        std::vector<float> raw(static_cast<std::size_t>(2 * n), 0.0f);
        for (std::int64_t i = 0; i < n; ++i) raw[2 * i] = m.mvalues[i];
        storage->set(raw);
        const std::vector<float> all = storage->stored();
        for (std::int64_t i = 0; i < n; ++i) stored.push_back(all[2 * i]);
        std::vector<std::int64_t> st(m.mshape.size());
        std::int64_t s = 2;
        for (int d = static_cast<int>(m.mshape.size()) - 1; d >= 0; --d) {
          st[d] = s;
          s *= m.mshape[d];
        }
        view = std::make_unique<View>(*storage, m.mshape, st, 0);
        params.mask = &view->t;
      }
    } else if (m.kind == DLK_MASK_KEY_PADDING) {
      lengths = std::make_unique<Tensor>(ctx, std::vector<std::int64_t>{static_cast<std::int64_t>(m.lengths.size())},
                                         m.ldtype);
      lengths->set(std::vector<float>(m.lengths.begin(), m.lengths.end()));
      params.lengths = &lengths->t;
    }
  }
};

struct ForwardOptions {
  float scale = 1.0f;
  MaskSpec mask;
  std::vector<float> x;  // random N(0, 3) when empty
  bool in_place = false;
  bool misaligned = false;  // x and y start one element past a 16-byte boundary
};

// Runs the forward on the backend and checks it against the reference: success, every element written (finite),
// and the relative error within the dtype's tolerance. Returns the output.
std::vector<float> check_forward(Context& ctx, const std::vector<std::int64_t>& shape, DLDataType dtype,
                                 const ForwardOptions& o) {
  SCOPED_TRACE("shape " + shape_str(shape) + " " + dtype_str(dtype) + " mask kind " + std::to_string(o.mask.kind) +
               " scale " + std::to_string(o.scale) + (o.in_place ? " in place" : "") +
               (o.misaligned ? " misaligned" : ""));
  const std::int64_t n = product(shape);
  const std::int64_t pad = o.misaligned ? 1 : 0;
  std::vector<float> xv = o.x.empty() ? randn(static_cast<std::size_t>(n), 3.0f) : o.x;
  xv.insert(xv.begin(), static_cast<std::size_t>(pad), 0.0f);
  Tensor xs(ctx, {n + pad}, dtype), ys(ctx, {n + pad}, dtype);
  xs.set(xv);
  ys.poison();
  const std::uint64_t offset = static_cast<std::uint64_t>(pad) * dtype.bits / 8;
  View x(xs, shape, {}, offset), y(o.in_place ? xs : ys, shape, {}, offset);
  std::vector<float> stored = xs.stored();
  stored.erase(stored.begin(), stored.begin() + pad);
  MaskTensors mt(ctx, o.mask, o.scale);
  EXPECT_EQ(dlk_softmax_forward(ctx, &mt.params, &x.t, &y.t), DLK_SUCCESS) << dlk_last_error();
  std::vector<float> out = (o.in_place ? xs : ys).get();
  out.erase(out.begin(), out.begin() + pad);
  const std::vector<double> ref = reference_forward(to_double(stored), shape, o.scale, o.mask, mt.stored);
  EXPECT_TRUE(all_finite(out)) << "an element was not written, or is NaN/inf";
  EXPECT_CLOSE(out, ref, tolerance(dtype));
  return out;
}

// A context per test: a static one would be destroyed after the library's thread-local state at exit.
class Softmax : public ::testing::Test {
 protected:
  void SetUp() override { SKIP_IF_NO_BACKEND(ctx); }
  Context ctx;
};

// ---------------------------------------------------------------------------------------------- forward

TEST_F(Softmax, SeedCasesFromTheCourse) {
  DLK_TRACE_SEED();
  for (DLDataType dt : kFloatTypes) {
    ForwardOptions a;
    a.x = {4.3f, 6.1f, 2.3f};
    std::vector<float> y = check_forward(ctx, {3}, dt, a);
    const double tol = dt.bits == 32 ? 1e-4 : 4e-3;
    EXPECT_NEAR(y[0], 0.1392, tol);
    EXPECT_NEAR(y[1], 0.8420, tol);
    EXPECT_NEAR(y[2], 0.0188, tol);
    ForwardOptions b;
    b.x = {0.1f, -0.2f, 0.3f, -0.2f, 0.5f};
    b.scale = 8.0f;
    y = check_forward(ctx, {1, 5}, dt, b);
    const double expect[] = {0.0326, 0.0030, 0.1615, 0.0030, 0.8000};
    for (int i = 0; i < 5; ++i) EXPECT_NEAR(y[i], expect[i], tol) << "element " << i;
  }
}

TEST_F(Softmax, EveryDtypeAndRowLength) {
  DLK_TRACE_SEED();
  // Rows per length kept small for long rows: the emulator runs every GPU thread as a fiber.
  const std::pair<std::int64_t, std::int64_t> sizes[] = {{5, 1},    {9, 7},     {6, 8},    {7, 33},   {3, 64},
                                                         {4, 256},  {3, 1000},  {3, 1024}, {2, 1025}, {2, 4096},
                                                         {2, 4097}, {1, 16384}, {1, 20000}};
  for (DLDataType dt : kFloatTypes) {
    for (auto [rows, cols] : sizes) {
      ForwardOptions o;
      o.scale = 0.75f;
      check_forward(ctx, {rows, cols}, dt, o);
    }
  }
}

TEST_F(Softmax, LongRowsOnlinePath) {
  DLK_TRACE_SEED();
  for (DLDataType dt : kFloatTypes) {
    for (std::int64_t cols : {std::int64_t{65536}, std::int64_t{100000}}) {
      ForwardOptions o;
      o.scale = 1.5f;
      check_forward(ctx, {2, cols}, dt, o);
    }
  }
  ForwardOptions kp;
  kp.mask = key_padding({70001, 3}, i64());
  check_forward(ctx, {2, 1, 100000}, f32(), kp);
  ForwardOptions bm;
  bm.mask = tensor_mask({65537}, u8());
  check_forward(ctx, {2, 65537}, bf16(), bm);
}

TEST_F(Softmax, RanksOneToFour) {
  DLK_TRACE_SEED();
  const std::vector<std::vector<std::int64_t>> shapes = {{1}, {17}, {3, 5}, {2, 3, 40}, {2, 3, 4, 9}, {1, 1, 1, 130}};
  for (DLDataType dt : kFloatTypes)
    for (const auto& s : shapes) check_forward(ctx, s, dt, ForwardOptions{});
}

TEST_F(Softmax, CausalTopLeft) {
  DLK_TRACE_SEED();
  for (DLDataType dt : kFloatTypes) {
    ForwardOptions o;
    o.mask = causal(false);
    o.scale = 0.3f;
    check_forward(ctx, {2, 3, 7, 7}, dt, o);
    check_forward(ctx, {2, 16, 16}, dt, o);
    check_forward(ctx, {5, 40}, dt, o);       // R < C: the top-left rule ignores the extra columns' offset
    check_forward(ctx, {1, 3, 2000}, dt, o);  // block path, long unread tails
  }
}

TEST_F(Softmax, CausalBottomRight) {
  DLK_TRACE_SEED();
  for (DLDataType dt : kFloatTypes) {
    ForwardOptions o;
    o.mask = causal(true);
    o.scale = 1.3f;
    check_forward(ctx, {2, 5, 9}, dt, o);      // R < C: row i sees i + 4 + 1 columns
    check_forward(ctx, {2, 9, 5}, dt, o);      // R > C: the first rows see nothing -> zeros
    check_forward(ctx, {2, 8, 64}, dt, o);     // vectorised warp path
    check_forward(ctx, {1, 3, 5000}, dt, o);   // block path
    check_forward(ctx, {1, 2, 70000}, dt, o);  // online path
  }
}

TEST_F(Softmax, KeyPadding) {
  DLK_TRACE_SEED();
  for (DLDataType lt : {i32(), i64()}) {
    for (DLDataType dt : kFloatTypes) {
      ForwardOptions o;
      o.scale = 0.9f;
      o.mask = key_padding({0, 5, 40, -3, 33}, lt);  // 0 and negative: fully masked; 40: clamped to 33
      check_forward(ctx, {5, 4, 33}, dt, o);
      o.mask = key_padding({1, 64, 17}, lt);
      check_forward(ctx, {3, 2, 2, 64}, dt, o);
      o.mask = key_padding({3000, 1, 4095}, lt);
      check_forward(ctx, {3, 4096}, dt, o);
    }
  }
}

TEST_F(Softmax, BooleanMasksBroadcast) {
  DLK_TRACE_SEED();
  const std::vector<std::int64_t> x = {2, 3, 5, 33};
  const std::vector<std::vector<std::int64_t>> mshapes = {{2, 1, 1, 33}, {1, 1, 5, 33}, {5, 33},
                                                          {33},          {2, 3, 5, 33}, {3, 1, 1}};
  for (DLDataType mt : {u8(), i8()}) {
    for (DLDataType dt : kFloatTypes) {
      for (const auto& ms : mshapes) {
        ForwardOptions o;
        o.scale = 0.5f;
        o.mask = tensor_mask(ms, mt);
        check_forward(ctx, x, dt, o);
      }
      ForwardOptions v;  // vectorised warp and block paths
      v.mask = tensor_mask({1, 1, 3, 64}, mt);
      check_forward(ctx, {2, 2, 3, 64}, dt, v);
      v.mask = tensor_mask({2, 1, 1, 2048}, mt);
      check_forward(ctx, {2, 2, 1, 2048}, dt, v);
    }
  }
}

TEST_F(Softmax, AdditiveMasksOfEveryFloatDtype) {
  DLK_TRACE_SEED();
  for (DLDataType mt : kFloatTypes) {
    for (DLDataType dt : kFloatTypes) {
      ForwardOptions o;
      o.scale = 0.125f;
      o.mask = tensor_mask({1, 1, 6, 40}, mt);
      check_forward(ctx, {2, 3, 6, 40}, dt, o);
      o.mask = tensor_mask({2, 1, 1, 256}, mt);
      check_forward(ctx, {2, 2, 3, 256}, dt, o);
      o.mask = tensor_mask({1100}, mt);
      check_forward(ctx, {2, 1100}, dt, o);
    }
  }
}

TEST_F(Softmax, NonContiguousMask) {
  DLK_TRACE_SEED();
  for (DLDataType mt : {u8(), f32(), bf16()}) {
    for (DLDataType dt : kFloatTypes) {
      ForwardOptions o;
      o.mask = tensor_mask({4, 24}, mt, /*strided=*/true);
      check_forward(ctx, {2, 4, 24}, dt, o);
      o.mask = tensor_mask({3, 1, 1500}, mt, true);
      check_forward(ctx, {3, 2, 1500}, dt, o);
    }
  }
}

TEST_F(Softmax, MisalignedPointersTakeTheScalarPath) {
  DLK_TRACE_SEED();
  for (DLDataType dt : kFloatTypes) {
    ForwardOptions o;
    o.misaligned = true;
    o.scale = 2.0f;
    check_forward(ctx, {4, 64}, dt, o);
    check_forward(ctx, {2, 4096}, dt, o);
    o.mask = causal(false);
    check_forward(ctx, {8, 8}, dt, o);
  }
}

TEST_F(Softmax, FullyMaskedRowsAreZeros) {
  DLK_TRACE_SEED();
  for (DLDataType dt : kFloatTypes) {
    for (std::int64_t cols : {std::int64_t{7}, std::int64_t{512}, std::int64_t{3000}, std::int64_t{40000}}) {
      ForwardOptions o;
      o.mask = tensor_mask({2, cols}, u8());
      for (std::int64_t j = 0; j < cols; ++j) o.mask.mvalues[j] = 0.0f;  // row 0 of the mask drops everything
      std::vector<float> y = check_forward(ctx, {2, cols}, dt, o);
      for (std::int64_t j = 0; j < cols; ++j) ASSERT_EQ(y[j], 0.0f) << "column " << j;
      ForwardOptions inf;  // a row of -inf inputs is fully masked too
      inf.x = randn(static_cast<std::size_t>(2 * cols));
      for (std::int64_t j = cols; j < 2 * cols; ++j) inf.x[j] = -INFINITY;
      y = check_forward(ctx, {2, cols}, dt, inf);
      for (std::int64_t j = cols; j < 2 * cols; ++j) ASSERT_EQ(y[j], 0.0f) << "column " << j;
    }
  }
}

TEST_F(Softmax, NegativeInfinityInputsAreMasked) {
  DLK_TRACE_SEED();
  for (DLDataType dt : kFloatTypes) {
    for (std::int64_t cols : {std::int64_t{9}, std::int64_t{128}, std::int64_t{5000}}) {
      ForwardOptions o;
      o.x = randn(static_cast<std::size_t>(3 * cols));
      std::vector<float> u = uniform(o.x.size(), 0, 1);
      for (std::size_t i = 0; i < o.x.size(); ++i)
        if (u[i] < 0.3f) o.x[i] = -INFINITY;
      o.x[0] = 1.0f;  // row 0 keeps something
      check_forward(ctx, {3, cols}, dt, o);
    }
  }
}

TEST_F(Softmax, HugeLogitsDoNotOverflow) {
  DLK_TRACE_SEED();
  for (DLDataType dt : kFloatTypes) {
    const float top = dt.code == kDLFloat && dt.bits == 16 ? 6.0e4f : 3.0e38f;
    for (std::int64_t cols : {std::int64_t{5}, std::int64_t{256}, std::int64_t{2000}, std::int64_t{70000}}) {
      ForwardOptions o;
      o.scale = dt.code == kDLFloat && dt.bits == 16 ? 2.0f : 0.5f;  // scale * x stays finite in fp32
      o.x = uniform(static_cast<std::size_t>(2 * cols), 1e4f, top);
      for (std::int64_t j = 0; j < cols; ++j) o.x[j] = 1e4f + static_cast<float>(j % 13);  // close huge values
      check_forward(ctx, {2, cols}, dt, o);
    }
  }
}

TEST_F(Softmax, EmptyTensors) {
  DLK_TRACE_SEED();
  for (const std::vector<std::int64_t>& s : {std::vector<std::int64_t>{0}, {0, 5}, {3, 0}, {2, 0, 4}}) {
    Tensor x(ctx, s, f32()), y(ctx, s, f32()), dx(ctx, s, f32());
    EXPECT_EQ(dlk_softmax_forward(ctx, nullptr, &x.t, &y.t), DLK_SUCCESS) << shape_str(s) << dlk_last_error();
    EXPECT_EQ(dlk_softmax_backward(ctx, nullptr, &y.t, &x.t, &dx.t), DLK_SUCCESS) << shape_str(s) << dlk_last_error();
  }
  dlk_softmax_params p;
  dlk_softmax_params_init(&p);
  p.mask_kind = DLK_MASK_CAUSAL;
  Tensor x(ctx, {2, 0, 4}, f32()), y(ctx, {2, 0, 4}, f32());
  EXPECT_EQ(dlk_softmax_forward(ctx, &p, &x.t, &y.t), DLK_SUCCESS) << dlk_last_error();
}

TEST_F(Softmax, InPlace) {
  DLK_TRACE_SEED();
  for (DLDataType dt : kFloatTypes) {
    for (std::int64_t cols : {std::int64_t{33}, std::int64_t{512}, std::int64_t{3000}, std::int64_t{65536}}) {
      ForwardOptions o;
      o.in_place = true;
      o.scale = 0.6f;
      check_forward(ctx, {2, cols}, dt, o);
      o.mask = tensor_mask({cols}, f32());
      check_forward(ctx, {2, cols}, dt, o);
    }
  }
}

// --------------------------------------------------------------------------------------------- backward

// Backward from a softmax output y (the reference forward, stored in dtype) and random dy, against the fp64 formula.
void check_backward(Context& ctx, std::int64_t rows, std::int64_t cols, DLDataType dtype, float scale, bool in_place,
                    bool misaligned = false) {
  SCOPED_TRACE("backward [" + std::to_string(rows) + "," + std::to_string(cols) + "] " + dtype_str(dtype) +
               (in_place ? " in place" : "") + (misaligned ? " misaligned" : ""));
  const std::int64_t n = rows * cols, pad = misaligned ? 1 : 0;
  const std::vector<std::int64_t> shape = {rows, cols};
  std::vector<double> yd =
      reference_forward(to_double(randn(static_cast<std::size_t>(n), 2.0f)), shape, 1.0, MaskSpec{}, {});
  std::vector<float> yv(static_cast<std::size_t>(pad), 0.0f), dyv = randn(static_cast<std::size_t>(n + pad));
  for (double v : yd) yv.push_back(static_cast<float>(v));
  Tensor ys(ctx, {n + pad}, dtype), dys(ctx, {n + pad}, dtype), dxs(ctx, {n + pad}, dtype);
  ys.set(yv);
  dys.set(dyv);
  dxs.poison();
  const std::uint64_t offset = static_cast<std::uint64_t>(pad) * dtype.bits / 8;
  View y(ys, shape, {}, offset), dy(dys, shape, {}, offset), dx(in_place ? dys : dxs, shape, {}, offset);
  std::vector<float> ystored = ys.stored(), dystored = dys.stored();
  ystored.erase(ystored.begin(), ystored.begin() + pad);
  dystored.erase(dystored.begin(), dystored.begin() + pad);
  dlk_softmax_params p;
  dlk_softmax_params_init(&p);
  p.scale = scale;
  EXPECT_EQ(dlk_softmax_backward(ctx, &p, &y.t, &dy.t, &dx.t), DLK_SUCCESS) << dlk_last_error();
  std::vector<float> out = (in_place ? dys : dxs).get();
  out.erase(out.begin(), out.begin() + pad);
  EXPECT_TRUE(all_finite(out));
  EXPECT_CLOSE(out, reference_backward(to_double(ystored), to_double(dystored), cols, scale), tolerance(dtype));
}

TEST_F(Softmax, BackwardMatchesTheFormula) {
  DLK_TRACE_SEED();
  const std::pair<std::int64_t, std::int64_t> sizes[] = {{5, 1},     {9, 7},     {4, 32},    {3, 33},
                                                         {3, 1000},  {2, 1024},  {2, 4096},  {2, 4097},
                                                         {1, 16384}, {1, 65536}, {1, 100000}};
  for (DLDataType dt : kFloatTypes) {
    for (auto [rows, cols] : sizes) check_backward(ctx, rows, cols, dt, 1.7f, false);
    check_backward(ctx, 3, 64, dt, 0.5f, true);
    check_backward(ctx, 2, 3000, dt, 1.0f, true);
    check_backward(ctx, 3, 256, dt, 1.0f, false, /*misaligned=*/true);
  }
}

// The fp64 formula against central differences of the fp64 reference forward, for every mask kind: checks that
// dx = scale * y * (dy - sum(dy * y)) is the gradient of what the forward computes, masked entries included.
TEST(SoftmaxReference, FormulaIsTheGradientOfTheForward) {
  DLK_TRACE_SEED();
  const std::vector<std::int64_t> shape = {2, 4, 6};
  std::vector<MaskSpec> masks = {MaskSpec{},
                                 causal(false),
                                 causal(true),
                                 key_padding({3, 0}, i32()),
                                 tensor_mask({4, 6}, f32()),
                                 tensor_mask({6}, u8())};
  for (const MaskSpec& m : masks) {
    SCOPED_TRACE("mask kind " + std::to_string(m.kind));
    const double scale = 0.7;
    std::vector<double> x = to_double(randn(48)), w = to_double(randn(48));
    std::vector<double> y = reference_forward(x, shape, scale, m, m.mvalues);
    std::vector<double> dx = reference_backward(y, w, 6, scale);
    std::vector<float> numeric(48);
    for (std::size_t k = 0; k < 48; ++k) {
      const double h = 1e-6;
      double l[2];
      for (int s = 0; s < 2; ++s) {
        std::vector<double> xp = x;
        xp[k] += s ? -h : h;
        std::vector<double> yp = reference_forward(xp, shape, scale, m, m.mvalues);
        l[s] = std::inner_product(yp.begin(), yp.end(), w.begin(), 0.0);
      }
      numeric[k] = static_cast<float>((l[0] - l[1]) / (2 * h));
    }
    EXPECT_CLOSE(numeric, dx, 1e-6);
  }
}

// The library end to end in fp32: its backward (fed its own forward output) against central differences of its
// forward.
TEST_F(Softmax, BackwardMatchesNumericalGradientsOfTheLibrary) {
  DLK_TRACE_SEED();
  const std::vector<std::int64_t> shape = {3, 7};
  for (const MaskSpec& m : {MaskSpec{}, tensor_mask({7}, f32()), causal(true)}) {
    SCOPED_TRACE("mask kind " + std::to_string(m.kind));
    MaskTensors mt(ctx, m, 0.5f);
    std::vector<float> xv = randn(21), wv = randn(21);
    auto loss = [&](const std::vector<float>& xin) {
      Tensor x(ctx, shape, f32()), y(ctx, shape, f32());
      x.set(xin);
      EXPECT_EQ(dlk_softmax_forward(ctx, &mt.params, &x.t, &y.t), DLK_SUCCESS) << dlk_last_error();
      std::vector<float> yv = y.get();
      double l = 0;
      for (std::size_t i = 0; i < yv.size(); ++i) l += static_cast<double>(yv[i]) * wv[i];
      return l;
    };
    Tensor x(ctx, shape, f32()), y(ctx, shape, f32()), w(ctx, shape, f32()), dx(ctx, shape, f32());
    x.set(xv);
    w.set(wv);
    y.poison();
    dx.poison();
    ASSERT_EQ(dlk_softmax_forward(ctx, &mt.params, &x.t, &y.t), DLK_SUCCESS) << dlk_last_error();
    ASSERT_EQ(dlk_softmax_backward(ctx, &mt.params, &y.t, &w.t, &dx.t), DLK_SUCCESS) << dlk_last_error();
    std::vector<double> numeric(21);
    for (std::size_t k = 0; k < 21; ++k) {
      const float h = 1e-2f;
      std::vector<float> xp = xv, xm = xv;
      xp[k] += h;
      xm[k] -= h;
      numeric[k] = (loss(xp) - loss(xm)) / (static_cast<double>(xp[k]) - xm[k]);
    }
    std::vector<float> got = dx.get();
    EXPECT_TRUE(all_finite(got));
    EXPECT_CLOSE(got, numeric, 1e-2);  // fp32 central differences: noisy; a wrong backward is off by O(1)
  }
}

TEST_F(Softmax, RejectsAMaskThatDoesNotBroadcast) {
  Tensor x(ctx, {4, 8, 8}, f32()), y(ctx, {4, 8, 8}, f32()), m(ctx, {4, 1, 7}, u8());
  y.set(std::vector<float>(256, 5.0f));
  dlk_softmax_params p;
  dlk_softmax_params_init(&p);
  p.mask_kind = DLK_MASK_TENSOR;
  p.mask = &m.t;
  EXPECT_EQ(dlk_softmax_forward(ctx, &p, &x.t, &y.t), DLK_ERROR_SHAPE);
  EXPECT_NE(std::string(dlk_last_error()).find("does not broadcast"), std::string::npos) << dlk_last_error();
  std::vector<float> untouched = y.get();
  EXPECT_EQ(untouched, std::vector<float>(256, 5.0f)) << "output written by a rejected call";
}

}  // namespace
}  // namespace dlk::test
