// Masked scaled-dot-product attention, forward and backward, on the backend DLK_TEST_BACKEND names, against an
// independent fp64 reference written here (full [Tq, Tk] score matrices, masks broadcast from their own shapes,
// dropout keep bits taken from the dropout op's saved mask, so the two ops are checked against each other), plus
// numerical gradients of the library's own forward, the course's seed cases and rejected inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"

namespace dlk::test {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
const DLDataType kFloatTypes[] = {f32(), f16(), bf16()};
DLDataType i8() { return DLDataType{kDLInt, 8, 1}; }

bool on_emu() { return backend() == DLK_DEVICE_EMU; }

// A [B, H, T, D] view of a test tensor: either the tensor itself, or (bthd) a [B, T, H, D] buffer seen through
// strides, or a slice of a fused buffer. `t` is what the library gets.
struct View {
  std::int64_t shape[4];
  std::int64_t strides[4];
  DLTensor t;
  View() = default;
  View(const View& o) { *this = o; }
  View& operator=(const View& o) {
    std::memcpy(shape, o.shape, sizeof shape);
    std::memcpy(strides, o.strides, sizeof strides);
    t = o.t;
    t.shape = shape;
    t.strides = strides;
    return *this;
  }
  // Element offset of (b, h, i, d) in the buffer.
  std::int64_t at(std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t d) const {
    return (t.byte_offset / (t.dtype.bits / 8)) + b * strides[0] + h * strides[1] + i * strides[2] + d * strides[3];
  }
};

View view_of(const Tensor& base, std::int64_t B, std::int64_t H, std::int64_t T, std::int64_t D, std::int64_t sb,
             std::int64_t sh, std::int64_t st, std::int64_t elem_offset = 0) {
  View v;
  v.t = base.t;
  v.shape[0] = B;
  v.shape[1] = H;
  v.shape[2] = T;
  v.shape[3] = D;
  v.strides[0] = sb;
  v.strides[1] = sh;
  v.strides[2] = st;
  v.strides[3] = 1;
  v.t.ndim = 4;
  v.t.shape = v.shape;
  v.t.strides = v.strides;
  v.t.byte_offset = static_cast<std::uint64_t>(elem_offset) * (base.t.dtype.bits / 8);
  return v;
}

// An operand with its storage: contiguous [B,H,T,D] or a strided [B,T,H,D] buffer.
struct Operand {
  std::unique_ptr<Tensor> buf;
  View view;
  std::int64_t B, H, T, D;
  Operand(dlk_context* ctx, std::int64_t b, std::int64_t h, std::int64_t t, std::int64_t d, DLDataType dt, bool bthd)
      : B(b), H(h), T(t), D(d) {
    if (bthd) {
      buf = std::make_unique<Tensor>(ctx, std::vector<std::int64_t>{b, t, h, d}, dt);
      view = view_of(*buf, b, h, t, d, t * h * d, d, h * d);
    } else {
      buf = std::make_unique<Tensor>(ctx, std::vector<std::int64_t>{b, h, t, d}, dt);
      view = view_of(*buf, b, h, t, d, h * t * d, t * d, d);
    }
  }
  // Values in logical [B,H,T,D] order <-> the buffer.
  void set(const std::vector<float>& logical) {
    std::vector<float> raw(buf->numel(), 0.0f);
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t h = 0; h < H; ++h)
        for (std::int64_t i = 0; i < T; ++i)
          for (std::int64_t d = 0; d < D; ++d) raw[view.at(b, h, i, d)] = logical[((b * H + h) * T + i) * D + d];
    buf->set(raw);
  }
  std::vector<float> logical(const std::vector<float>& raw) const {
    std::vector<float> out(static_cast<std::size_t>(B * H * T * D));
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t h = 0; h < H; ++h)
        for (std::int64_t i = 0; i < T; ++i)
          for (std::int64_t d = 0; d < D; ++d) out[((b * H + h) * T + i) * D + d] = raw[view.at(b, h, i, d)];
    return out;
  }
  std::vector<float> get() { return logical(buf->get()); }
  std::vector<float> stored() const { return logical(buf->stored()); }
  const DLTensor* t() const { return &view.t; }
  DLTensor* t() { return &view.t; }
};

struct MaskSpec {
  dlk_mask_kind kind = DLK_MASK_NONE;
  std::vector<std::int64_t> mshape;  // tensor mask shape (rank <= 4), broadcast to [B,H,Tq,Tk]
  DLDataType mdtype = u8();
  std::vector<float> mvalues;  // row-major over mshape
  std::vector<std::int64_t> lengths;
  DLDataType ldtype = i32();
};

MaskSpec tensor_mask(std::vector<std::int64_t> shape, DLDataType dtype) {
  MaskSpec m;
  m.kind = DLK_MASK_TENSOR;
  m.mshape = std::move(shape);
  m.mdtype = dtype;
  std::size_t n = 1;
  for (auto s : m.mshape) n *= static_cast<std::size_t>(s);
  std::vector<float> u = uniform(n, 0.0f, 1.0f), g = randn(n, 1.0f);
  m.mvalues.resize(n);
  const bool fl = dtype.code == kDLFloat || dtype.code == kDLBfloat;
  for (std::size_t i = 0; i < n; ++i)
    m.mvalues[i] = fl ? (u[i] < 0.15f ? -INFINITY : g[i]) : (u[i] < 0.7f ? static_cast<float>(1 + (i % 5)) : 0.0f);
  // The reference reads the values as the mask stores them.
  for (float& x : m.mvalues) {
    if (dtype.code == kDLFloat && dtype.bits == 16) x = fp16_to_float(float_to_fp16(x));
    if (dtype.code == kDLBfloat) x = bf16_to_float(float_to_bf16(x));
  }
  return m;
}

struct Problem {
  std::int64_t B = 1, H = 1, Tq = 1, Tk = 1, D = 8;
  DLDataType dtype = f32();
  bool bthd = false;
  MaskSpec mask;
  float scale = 0.0f;  // 0: default
  float dropout_p = 0.0f;
  std::uint64_t seed = 0, offset = 0;
};

std::string describe(const Problem& p) {
  return "B=" + std::to_string(p.B) + " H=" + std::to_string(p.H) + " Tq=" + std::to_string(p.Tq) +
         " Tk=" + std::to_string(p.Tk) + " D=" + std::to_string(p.D) + " " + dtype_str(p.dtype) +
         (p.bthd ? " bthd" : "") + " mask=" + std::to_string(static_cast<int>(p.mask.kind)) +
         " p=" + std::to_string(p.dropout_p) +
         (p.mask.kind == DLK_MASK_TENSOR ? " mask " + dtype_str(p.mask.mdtype) : "");
}

// The library-side objects of a problem's mask (tensor / lengths), and the params pointing at them.
struct MaskObjects {
  std::unique_ptr<Tensor> mask, lengths;
  dlk_attention_params params;
  MaskObjects(dlk_context* ctx, const Problem& p) {
    dlk_attention_params_init(&params);
    params.scale = p.scale;
    params.mask_kind = p.mask.kind;
    params.dropout_p = p.dropout_p;
    params.seed = p.seed;
    params.offset = p.offset;
    if (p.mask.kind == DLK_MASK_TENSOR) {
      mask = std::make_unique<Tensor>(ctx, p.mask.mshape, p.mask.mdtype);
      mask->set(p.mask.mvalues);
      params.mask = &mask->t;
    }
    if (p.mask.kind == DLK_MASK_KEY_PADDING) {
      lengths = std::make_unique<Tensor>(ctx, std::vector<std::int64_t>{p.B}, p.mask.ldtype);
      std::vector<float> l(p.mask.lengths.begin(), p.mask.lengths.end());
      lengths->set(l);
      params.lengths = &lengths->t;
    }
  }
};

// keep * 1/(1-p) factors over [B,H,Tq,Tk] from the dropout op itself (its saved mask), on a cpu context.
std::vector<double> dropout_factors(const Problem& p) {
  const std::size_t n = static_cast<std::size_t>(p.B * p.H * p.Tq * p.Tk);
  std::vector<double> z(n, 1.0);
  if (p.dropout_p == 0.0f || n == 0) return z;
  Context cpu(DLK_DEVICE_CPU);
  Tensor x(cpu, {static_cast<std::int64_t>(n)}, f32()), y(cpu, {static_cast<std::int64_t>(n)}, f32());
  Tensor m(cpu, {static_cast<std::int64_t>(n)}, u8());
  x.set(std::vector<float>(n, 1.0f));
  dlk_dropout_params dp;
  dlk_dropout_params_init(&dp);
  dp.p = p.dropout_p;
  dp.seed = p.seed;
  dp.offset = p.offset;
  EXPECT_EQ(dlk_dropout_forward(cpu, &dp, &x.t, &y.t, &m.t), DLK_SUCCESS) << dlk_last_error();
  const std::vector<float> keep = m.get();
  const double s = 1.0 / (1.0 - static_cast<double>(p.dropout_p));
  for (std::size_t i = 0; i < n; ++i) z[i] = keep[i] != 0.0f ? s : 0.0;
  return z;
}

struct Reference {
  std::vector<double> out, lse, dq, dk, dv;
  // The same sums over |terms| (dS_ij taken as P_ij (|z dP_ij| + |Dl_i|)): what the rounding of dq and dk scales
  // with, since sum_j dS_ij = 0 makes them cancel (EXPECT_CLOSE_SCALED).
  std::vector<double> dq_mag, dk_mag;
};

// fp64 attention on the stored (rounded) inputs, with the full score matrix of each (b, h).
Reference reference(const Problem& p, const std::vector<float>& q, const std::vector<float>& k,
                    const std::vector<float>& v, const std::vector<float>& dout) {
  const std::int64_t B = p.B, H = p.H, Tq = p.Tq, Tk = p.Tk, D = p.D;
  const double scale = p.scale == 0.0f ? 1.0 / std::sqrt(static_cast<double>(D)) : p.scale;
  const std::vector<double> z = dropout_factors(p);
  Reference r;
  r.out.assign(static_cast<std::size_t>(B * H * Tq * D), 0.0);
  r.lse.assign(static_cast<std::size_t>(B * H * Tq), -kInf);
  r.dq.assign(r.out.size(), 0.0);
  r.dk.assign(static_cast<std::size_t>(B * H * Tk * D), 0.0);
  r.dv.assign(r.dk.size(), 0.0);
  r.dq_mag.assign(r.dq.size(), 0.0);
  r.dk_mag.assign(r.dk.size(), 0.0);
  const int mnd = static_cast<int>(p.mask.mshape.size());
  std::vector<double> P(static_cast<std::size_t>(Tq * Tk)), dS(P.size()), dS_mag(P.size());
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h) {
      const std::int64_t qo = (b * H + h) * Tq * D, ko = (b * H + h) * Tk * D;
      for (std::int64_t i = 0; i < Tq; ++i) {
        std::vector<double> s(static_cast<std::size_t>(Tk), -kInf);
        double mx = -kInf;
        for (std::int64_t j = 0; j < Tk; ++j) {
          bool masked = false;
          if (p.mask.kind == DLK_MASK_CAUSAL) masked = j > i;
          if (p.mask.kind == DLK_MASK_CAUSAL_BOTTOM_RIGHT) masked = j > i + (Tk - Tq);
          if (p.mask.kind == DLK_MASK_KEY_PADDING) masked = j >= p.mask.lengths[b];
          if (masked) continue;
          double dot = 0;
          for (std::int64_t d = 0; d < D; ++d) dot += static_cast<double>(q[qo + i * D + d]) * k[ko + j * D + d];
          double t = scale * dot;
          if (p.mask.kind == DLK_MASK_TENSOR) {
            const std::int64_t full[4] = {b, h, i, j}, fs[4] = {B, H, Tq, Tk};
            std::int64_t off = 0;
            for (int d = 4 - mnd; d < 4; ++d) {
              const std::int64_t ms = p.mask.mshape[d - (4 - mnd)];
              off = off * ms + (ms == 1 && fs[d] != 1 ? 0 : full[d]);
            }
            const double mv = p.mask.mvalues[off];
            if (p.mask.mdtype.code == kDLFloat || p.mask.mdtype.code == kDLBfloat)
              t += mv;
            else if (mv == 0)
              t = -kInf;
          }
          s[j] = t;
          mx = std::max(mx, t);
        }
        if (mx == -kInf) {
          for (std::int64_t j = 0; j < Tk; ++j) P[i * Tk + j] = 0;
          continue;
        }
        double sum = 0;
        for (std::int64_t j = 0; j < Tk; ++j) sum += s[j] == -kInf ? 0.0 : std::exp(s[j] - mx);
        r.lse[(b * H + h) * Tq + i] = mx + std::log(sum);
        for (std::int64_t j = 0; j < Tk; ++j) {
          P[i * Tk + j] = s[j] == -kInf ? 0.0 : std::exp(s[j] - mx) / sum;
          const double pz = P[i * Tk + j] * z[((b * H + h) * Tq + i) * Tk + j];
          for (std::int64_t d = 0; d < D; ++d) r.out[qo + i * D + d] += pz * v[ko + j * D + d];
        }
      }
      if (dout.empty()) continue;
      for (std::int64_t i = 0; i < Tq; ++i) {
        double dl = 0;
        for (std::int64_t d = 0; d < D; ++d) dl += dout[qo + i * D + d] * r.out[qo + i * D + d];
        for (std::int64_t j = 0; j < Tk; ++j) {
          const double zz = z[((b * H + h) * Tq + i) * Tk + j], pij = P[i * Tk + j];
          double dp = 0;
          for (std::int64_t d = 0; d < D; ++d) {
            dp += dout[qo + i * D + d] * static_cast<double>(v[ko + j * D + d]);
            r.dv[ko + j * D + d] += pij * zz * dout[qo + i * D + d];
          }
          dS[i * Tk + j] = pij * (zz * dp - dl);
          dS_mag[i * Tk + j] = pij * (std::abs(zz * dp) + std::abs(dl));
        }
      }
      for (std::int64_t i = 0; i < Tq; ++i)
        for (std::int64_t j = 0; j < Tk; ++j)
          for (std::int64_t d = 0; d < D; ++d) {
            r.dq[qo + i * D + d] += scale * dS[i * Tk + j] * k[ko + j * D + d];
            r.dk[ko + j * D + d] += scale * dS[i * Tk + j] * q[qo + i * D + d];
            r.dq_mag[qo + i * D + d] += std::abs(scale) * dS_mag[i * Tk + j] * std::abs(k[ko + j * D + d]);
            r.dk_mag[ko + j * D + d] += std::abs(scale) * dS_mag[i * Tk + j] * std::abs(q[qo + i * D + d]);
          }
    }
  return r;
}

// Runs the forward (and backward) of a problem on ctx with random inputs; returns library outputs and reference.
struct Outcome {
  std::vector<float> out, lse, dq, dk, dv;
  Reference ref;
};

Outcome run_problem(dlk_context* ctx, const Problem& p, bool backward, std::vector<float>* inputs_out = nullptr) {
  Outcome run;
  Operand q(ctx, p.B, p.H, p.Tq, p.D, p.dtype, p.bthd), k(ctx, p.B, p.H, p.Tk, p.D, p.dtype, p.bthd),
      v(ctx, p.B, p.H, p.Tk, p.D, p.dtype, p.bthd), o(ctx, p.B, p.H, p.Tq, p.D, p.dtype, p.bthd);
  Tensor lse(ctx, {p.B, p.H, p.Tq}, f32());
  if (inputs_out && !inputs_out->empty()) {
    // Reuse inputs given by the caller (q, k, v, dout concatenated).
    const std::size_t nq = static_cast<std::size_t>(p.B * p.H * p.Tq * p.D),
                        nk = static_cast<std::size_t>(p.B * p.H * p.Tk * p.D);
    q.set(std::vector<float>(inputs_out->begin(), inputs_out->begin() + nq));
    k.set(std::vector<float>(inputs_out->begin() + nq, inputs_out->begin() + nq + nk));
    v.set(std::vector<float>(inputs_out->begin() + nq + nk, inputs_out->begin() + nq + 2 * nk));
  } else {
    q.set(randn(static_cast<std::size_t>(p.B * p.H * p.Tq * p.D)));
    k.set(randn(static_cast<std::size_t>(p.B * p.H * p.Tk * p.D)));
    v.set(randn(static_cast<std::size_t>(p.B * p.H * p.Tk * p.D)));
  }
  o.buf->poison();
  lse.poison();
  MaskObjects mo(ctx, p);
  EXPECT_EQ(dlk_attention_forward(ctx, &mo.params, q.t(), k.t(), v.t(), o.t(), &lse.t), DLK_SUCCESS)
      << dlk_last_error();
  run.out = o.get();
  run.lse = lse.get();
  std::vector<float> dref;
  if (backward) {
    Operand dout(ctx, p.B, p.H, p.Tq, p.D, p.dtype, p.bthd), dq(ctx, p.B, p.H, p.Tq, p.D, p.dtype, p.bthd),
        dk(ctx, p.B, p.H, p.Tk, p.D, p.dtype, p.bthd), dv(ctx, p.B, p.H, p.Tk, p.D, p.dtype, p.bthd);
    if (inputs_out && !inputs_out->empty()) {
      const std::size_t nq = static_cast<std::size_t>(p.B * p.H * p.Tq * p.D),
                        nk = static_cast<std::size_t>(p.B * p.H * p.Tk * p.D);
      dout.set(std::vector<float>(inputs_out->begin() + nq + 2 * nk, inputs_out->end()));
    } else {
      dout.set(randn(static_cast<std::size_t>(p.B * p.H * p.Tq * p.D)));
    }
    dq.buf->poison();
    dk.buf->poison();
    dv.buf->poison();
    EXPECT_EQ(dlk_attention_backward(ctx, &mo.params, q.t(), k.t(), v.t(), o.t(), &lse.t, dout.t(), dq.t(), dk.t(),
                                     dv.t()),
              DLK_SUCCESS)
        << dlk_last_error();
    run.dq = dq.get();
    run.dk = dk.get();
    run.dv = dv.get();
    dref = dout.stored();
  }
  run.ref = reference(p, q.stored(), k.stored(), v.stored(), dref);
  if (inputs_out && inputs_out->empty()) {
    for (auto* x : {&q, &k, &v}) {
      auto s = x->stored();
      inputs_out->insert(inputs_out->end(), s.begin(), s.end());
    }
    inputs_out->insert(inputs_out->end(), dref.begin(), dref.end());
  }
  return run;
}

std::vector<double> finite_lse(const std::vector<double>& v) {
  std::vector<double> o(v);
  for (auto& x : o) x = std::isinf(x) ? -1e30 : x;
  return o;
}
std::vector<float> finite_lse(const std::vector<float>& v) {
  std::vector<float> o(v);
  for (auto& x : o) x = std::isinf(x) && x < 0 ? -1e30f : x;
  return o;
}

// Checks every output of a run against its reference (fp32 1e-5, fp16/bf16 1e-2 relative; lse exactly -inf where
// the reference's is).
void expect_run(const Problem& p, const Outcome& r, bool backward) {
  SCOPED_TRACE(describe(p));
  const double tol = tolerance(p.dtype);
  EXPECT_CLOSE(r.out, r.ref.out, tol);
  for (std::size_t i = 0; i < r.lse.size(); ++i) {
    if (std::isinf(r.ref.lse[i])) {
      ASSERT_TRUE(std::isinf(r.lse[i]) && r.lse[i] < 0) << "lse[" << i << "] = " << r.lse[i] << ", expected -inf";
    }
  }
  // lse is fp32 math on rounded inputs: absolute error a few ulp of its magnitude.
  EXPECT_CLOSE(finite_lse(r.lse), finite_lse(r.ref.lse), p.dtype.bits == 32 ? 1e-5 : 1e-2);
  if (!backward) return;
  // dq and dk are sums that cancel (sum_j dS_ij = 0): judged against the sums of |terms|.
  const double gtol = p.dtype.bits == 32 ? 1e-4 : 2e-2;
  EXPECT_CLOSE_SCALED(r.dq, r.ref.dq, r.ref.dq_mag, gtol);
  EXPECT_CLOSE_SCALED(r.dk, r.ref.dk, r.ref.dk_mag, gtol);
  EXPECT_CLOSE(r.dv, r.ref.dv, p.dtype.bits == 32 ? 1e-5 : 1e-2);
}

class Attention : public ::testing::Test {
 protected:
  void SetUp() override { DLK_TRACE_SEED(); }
};

TEST_F(Attention, SeedCausalAveragingFromTheCourse) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  // Equal scores (q = 0) and a causal mask: each row averages the values of keys 0..i.
  Problem p;
  p.Tq = p.Tk = 3;
  p.D = 2;
  p.mask.kind = DLK_MASK_CAUSAL;
  Tensor q(ctx, {1, 1, 3, 2}, f32()), k(ctx, {1, 1, 3, 2}, f32()), v(ctx, {1, 1, 3, 2}, f32()),
      o(ctx, {1, 1, 3, 2}, f32());
  q.set(std::vector<float>(6, 0.0f));
  k.set(randn(6));
  v.set({2, 7, 6, 4, 6, 5});
  o.poison();
  dlk_attention_params params;
  dlk_attention_params_init(&params);
  params.mask_kind = DLK_MASK_CAUSAL;
  ASSERT_EQ(dlk_attention_forward(ctx, &params, &q.t, &k.t, &v.t, &o.t, nullptr), DLK_SUCCESS) << dlk_last_error();
  const std::vector<double> expect = {2.0, 7.0, 4.0, 5.5, 14.0 / 3.0, 16.0 / 3.0};
  EXPECT_CLOSE(o.get(), expect, 1e-6);
}

TEST_F(Attention, SeedScoreVarianceWithAndWithoutScaling) {
  // Unscaled q . k over head_size 16 has variance ~ 16; scaled by 1/sqrt(16) ~ 1. With one key per (b, h), lse is
  // the score itself. Fixed seed, wide bounds.
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  const std::int64_t H = 64, T = 64, D = 16;
  std::mt19937_64 g(1234);
  std::normal_distribution<float> n01(0.0f, 1.0f);
  std::vector<float> qv(H * T * D), kv(H * D);
  for (auto& x : qv) x = n01(g);
  for (auto& x : kv) x = n01(g);
  Tensor q(ctx, {1, H, T, D}, f32()), k(ctx, {1, H, 1, D}, f32()), v(ctx, {1, H, 1, D}, f32()),
      o(ctx, {1, H, T, D}, f32()), lse(ctx, {1, H, T}, f32());
  q.set(qv);
  k.set(kv);
  v.set(kv);
  for (float scale : {1.0f, 0.0f}) {
    dlk_attention_params params;
    dlk_attention_params_init(&params);
    params.scale = scale;
    ASSERT_EQ(dlk_attention_forward(ctx, &params, &q.t, &k.t, &v.t, &o.t, &lse.t), DLK_SUCCESS) << dlk_last_error();
    const std::vector<float> s = lse.get();
    double mean = 0, var = 0;
    for (float x : s) mean += x;
    mean /= static_cast<double>(s.size());
    for (float x : s) var += (x - mean) * (x - mean);
    var /= static_cast<double>(s.size() - 1);
    if (scale == 1.0f) {
      EXPECT_GT(var, 10.0);
      EXPECT_LT(var, 24.0);
    } else {
      EXPECT_GT(var, 0.6);
      EXPECT_LT(var, 1.5);
    }
  }
}

TEST_F(Attention, EveryDtypeAndOddLengths) {
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  std::vector<std::int64_t> lens = {1, 7, 129};
  if (!on_emu()) lens.push_back(1000);
  for (DLDataType dt : kFloatTypes)
    for (std::int64_t T : lens) {
      if (T == 1000 && dt.bits != 32) continue;
      Problem p;
      p.B = T >= 129 ? 1 : 2;
      p.H = T >= 129 ? 1 : 3;
      p.Tq = p.Tk = T;
      p.D = T == 1000 ? 64 : 16;
      p.dtype = dt;
      p.mask.kind = T % 2 ? DLK_MASK_CAUSAL : DLK_MASK_NONE;
      expect_run(p, run_problem(ctx, p, T <= 129), T <= 129);
    }
}

TEST_F(Attention, HeadDims) {
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (std::int64_t D : {1, 5, 32, 64, 80, 96, 128, 200, 256})
  for (DLDataType dt : kFloatTypes) {
    Problem p;
    p.dtype = dt;
    p.Tq = 9;
    p.Tk = on_emu() ? 33 : 70;
    p.D = D;
    p.mask.kind = DLK_MASK_CAUSAL_BOTTOM_RIGHT;
    expect_run(p, run_problem(ctx, p, true), true);
  }
}

TEST_F(Attention, CrossAttentionTqNotTk) {
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  int n = 0;
  for (auto [tq, tk] : {std::pair<std::int64_t, std::int64_t>{5, 40}, {40, 5}, {1, 67}, {67, 1}}) {
    for (dlk_mask_kind kind : {DLK_MASK_NONE, DLK_MASK_CAUSAL, DLK_MASK_CAUSAL_BOTTOM_RIGHT}) {
      Problem p;
      p.dtype = kFloatTypes[n++ % 3];
      p.B = 2;
      p.H = 2;
      p.Tq = tq;
      p.Tk = tk;
      p.D = 16;
      p.mask.kind = kind;  // top-left with Tq > Tk and bottom-right with Tq > Tk leave rows fully masked
      expect_run(p, run_problem(ctx, p, true), true);
    }
  }
}

TEST_F(Attention, KeyPaddingLengthsIncludingZero) {
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (DLDataType lt : {i32(), i64()}) {
    Problem p;
    p.B = 4;
    p.H = 2;
    p.Tq = 6;
    p.Tk = 37;
    p.D = 16;
    p.mask.kind = DLK_MASK_KEY_PADDING;
    p.mask.lengths = {37, 0, 5, 100};  // 0: every row masked; 100: clamped to Tk
    p.mask.ldtype = lt;
    p.dtype = lt.bits == 32 ? f32() : f16();
    Outcome r = run_problem(ctx, p, true);
    expect_run(p, r, true);
    // Batch entry 1 is fully masked: zero output and gradients, not NaN.
    for (std::int64_t x = 0; x < p.H * p.Tq * p.D; ++x) {
      ASSERT_EQ(r.out[p.H * p.Tq * p.D + x], 0.0f);
      ASSERT_EQ(r.dq[p.H * p.Tq * p.D + x], 0.0f);
    }
  }
}

TEST_F(Attention, TensorMasksOfEveryKindBroadcast) {
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  const std::int64_t B = 2, H = 3, Tq = 7, Tk = 19;
  struct Case {
    std::vector<std::int64_t> shape;
    DLDataType dt;
  };
  const Case cases[] = {{{Tq, Tk}, u8()},           {{B, 1, Tq, Tk}, f32()}, {{1, H, 1, Tk}, i8()},
                        {{B, H, Tq, Tk}, f16()},    {{Tk}, bf16()},          {{B, 1, 1, Tk}, u8()},
                        {{1, 1, Tq, 1}, f32()}};
  int n = 0;
  for (const Case& c : cases) {
    Problem p;
    p.dtype = kFloatTypes[n++ % 3];
    p.B = B;
    p.H = H;
    p.Tq = Tq;
    p.Tk = Tk;
    p.D = 8;
    p.mask = tensor_mask(c.shape, c.dt);
    expect_run(p, run_problem(ctx, p, true), true);
  }
}

TEST_F(Attention, StridedBTHDLayoutEveryDtype) {
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (DLDataType dt : kFloatTypes) {
    Problem p;
    p.B = 2;
    p.H = 3;
    p.Tq = 11;
    p.Tk = 13;
    p.D = 32;
    p.dtype = dt;
    p.bthd = true;
    p.mask.kind = DLK_MASK_CAUSAL_BOTTOM_RIGHT;
    expect_run(p, run_problem(ctx, p, true), true);
  }
}

TEST_F(Attention, FusedQKVBufferAndFusedGradients) {
  // q, k, v as views of one [B, T, 3, H, D] buffer, and dq, dk, dv as views of another: interleaved, not overlapping.
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  const std::int64_t B = 2, T = 9, H = 2, D = 16;
  Tensor qkv(ctx, {B, T, 3, H, D}, f32()), dqkv(ctx, {B, T, 3, H, D}, f32()), o(ctx, {B, H, T, D}, f32()),
      g(ctx, {B, H, T, D}, f32()), lse(ctx, {B, H, T}, f32());
  qkv.set(randn(qkv.numel()));
  g.set(randn(g.numel()));
  dqkv.poison();
  View vq = view_of(qkv, B, H, T, D, T * 3 * H * D, D, 3 * H * D, 0);
  View vk = view_of(qkv, B, H, T, D, T * 3 * H * D, D, 3 * H * D, H * D);
  View vv = view_of(qkv, B, H, T, D, T * 3 * H * D, D, 3 * H * D, 2 * H * D);
  View gq = view_of(dqkv, B, H, T, D, T * 3 * H * D, D, 3 * H * D, 0);
  View gk = view_of(dqkv, B, H, T, D, T * 3 * H * D, D, 3 * H * D, H * D);
  View gv = view_of(dqkv, B, H, T, D, T * 3 * H * D, D, 3 * H * D, 2 * H * D);
  dlk_attention_params params;
  dlk_attention_params_init(&params);
  params.mask_kind = DLK_MASK_CAUSAL;
  ASSERT_EQ(dlk_attention_forward(ctx, &params, &vq.t, &vk.t, &vv.t, &o.t, &lse.t), DLK_SUCCESS) << dlk_last_error();
  ASSERT_EQ(dlk_attention_backward(ctx, &params, &vq.t, &vk.t, &vv.t, &o.t, &lse.t, &g.t, &gq.t, &gk.t, &gv.t),
            DLK_SUCCESS)
      << dlk_last_error();
  const std::vector<float> raw = qkv.stored(), graw = dqkv.get();
  std::vector<float> q, k, v;
  std::vector<float> dq, dk, dv;
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t i = 0; i < T; ++i)
        for (std::int64_t d = 0; d < D; ++d) {
          q.push_back(raw[vq.at(b, h, i, d)]);
          k.push_back(raw[vk.at(b, h, i, d)]);
          v.push_back(raw[vv.at(b, h, i, d)]);
          dq.push_back(graw[gq.at(b, h, i, d)]);
          dk.push_back(graw[gk.at(b, h, i, d)]);
          dv.push_back(graw[gv.at(b, h, i, d)]);
        }
  Problem p;
  p.B = B;
  p.H = H;
  p.Tq = p.Tk = T;
  p.D = D;
  p.mask.kind = DLK_MASK_CAUSAL;
  Reference ref = reference(p, q, k, v, g.stored());
  EXPECT_CLOSE(o.get(), ref.out, 1e-5);
  EXPECT_CLOSE_SCALED(dq, ref.dq, ref.dq_mag, 1e-4);
  EXPECT_CLOSE_SCALED(dk, ref.dk, ref.dk_mag, 1e-4);
  EXPECT_CLOSE(dv, ref.dv, 1e-5);
}

TEST_F(Attention, ExpandedKeysWithAZeroStride) {
  // One key broadcast over Tk (t-stride 0, as torch's expand gives): equal scores, so causal row i averages v[0..i].
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (DLDataType dt : kFloatTypes) {
    const std::int64_t B = 2, H = 2, T = 37, D = 24;
    Tensor q(ctx, {B, H, T, D}, dt), k1(ctx, {B, H, 1, D}, dt), v(ctx, {B, H, T, D}, dt), o(ctx, {B, H, T, D}, dt);
    q.set(randn(q.numel()));
    k1.set(randn(k1.numel()));
    v.set(randn(v.numel()));
    o.poison();
    View k = view_of(k1, B, H, T, D, H * D, D, 0);
    dlk_attention_params params;
    dlk_attention_params_init(&params);
    params.mask_kind = DLK_MASK_CAUSAL;
    ASSERT_EQ(dlk_attention_forward(ctx, &params, &q.t, &k.t, &v.t, &o.t, nullptr), DLK_SUCCESS) << dlk_last_error();
    const std::vector<float> vs = v.stored();
    std::vector<double> ref(vs.size());
    for (std::int64_t bh = 0; bh < B * H; ++bh)
      for (std::int64_t d = 0; d < D; ++d) {
        double run = 0;
        for (std::int64_t i = 0; i < T; ++i) {
          run += vs[(bh * T + i) * D + d];
          ref[(bh * T + i) * D + d] = run / static_cast<double>(i + 1);
        }
      }
    SCOPED_TRACE(dtype_str(dt));
    EXPECT_CLOSE(o.get(), ref, tolerance(dt));
  }
}

TEST_F(Attention, DropoutMatchesTheDropoutOpAndIsReproducibleAcrossBackends) {
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (DLDataType dt : {f32(), bf16()}) {
    Problem p;
    p.B = 2;
    p.H = 2;
    p.Tq = 13;
    p.Tk = 21;
    p.D = 16;
    p.dtype = dt;
    p.dropout_p = 0.25f;
    p.seed = seed() ^ 0x5eedu;
    p.offset = 4 * (seed() % 1000) + 3;  // not a multiple of 4: rows start mid Philox block
    p.mask.kind = DLK_MASK_CAUSAL_BOTTOM_RIGHT;
    std::vector<float> inputs;
    Outcome r = run_problem(ctx, p, true, &inputs);
    expect_run(p, r, true);
    // The same call on the cpu backend gives the same numbers (same keep bits).
    Context cpu(DLK_DEVICE_CPU);
    Outcome rc = run_problem(cpu, p, true, &inputs);
    std::vector<double> ref(rc.out.begin(), rc.out.end());
    EXPECT_CLOSE(r.out, ref, tolerance(dt));
    std::vector<double> refdv(rc.dv.begin(), rc.dv.end());
    EXPECT_CLOSE(r.dv, refdv, tolerance(dt));
  }
}

TEST_F(Attention, BackwardMatchesNumericalGradients) {
  // The library's own fp32 forward, differentiated by central differences of L = sum(out * G), in fp64 on the
  // stored values; masks and dropout included (dropout keeps its bits for a fixed seed and offset).
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  for (int variant = 0; variant < 3; ++variant) {
    Problem p;
    p.B = 1;
    p.H = 2;
    p.Tq = 3;
    p.Tk = 4;
    p.D = 5;
    if (variant == 0) p.mask.kind = DLK_MASK_CAUSAL_BOTTOM_RIGHT;
    if (variant == 1) p.mask = tensor_mask({p.Tq, p.Tk}, f32());
    if (variant == 2) {
      p.dropout_p = 0.3f;
      p.seed = seed();
    }
    SCOPED_TRACE(describe(p));
    const std::size_t nq = p.B * p.H * p.Tq * p.D, nk = p.B * p.H * p.Tk * p.D;
    std::vector<float> x = randn(nq + 2 * nk), g = randn(nq);
    Tensor q(ctx, {p.B, p.H, p.Tq, p.D}, f32()), k(ctx, {p.B, p.H, p.Tk, p.D}, f32()),
        v(ctx, {p.B, p.H, p.Tk, p.D}, f32()), o(ctx, {p.B, p.H, p.Tq, p.D}, f32()), lse(ctx, {p.B, p.H, p.Tq}, f32()),
        go(ctx, {p.B, p.H, p.Tq, p.D}, f32()), dq(ctx, {p.B, p.H, p.Tq, p.D}, f32()),
        dk(ctx, {p.B, p.H, p.Tk, p.D}, f32()), dv(ctx, {p.B, p.H, p.Tk, p.D}, f32());
    MaskObjects mo(ctx, p);
    go.set(g);
    auto loss = [&](const std::vector<float>& xs) {
      q.set(std::vector<float>(xs.begin(), xs.begin() + nq));
      k.set(std::vector<float>(xs.begin() + nq, xs.begin() + nq + nk));
      v.set(std::vector<float>(xs.begin() + nq + nk, xs.end()));
      EXPECT_EQ(dlk_attention_forward(ctx, &mo.params, &q.t, &k.t, &v.t, &o.t, &lse.t), DLK_SUCCESS);
      const std::vector<float> out = o.get();
      double l = 0;
      for (std::size_t i = 0; i < out.size(); ++i) l += static_cast<double>(out[i]) * g[i];
      return l;
    };
    loss(x);
    ASSERT_EQ(dlk_attention_backward(ctx, &mo.params, &q.t, &k.t, &v.t, &o.t, &lse.t, &go.t, &dq.t, &dk.t, &dv.t),
              DLK_SUCCESS)
        << dlk_last_error();
    std::vector<float> analytic = dq.get(), a2 = dk.get(), a3 = dv.get();
    analytic.insert(analytic.end(), a2.begin(), a2.end());
    analytic.insert(analytic.end(), a3.begin(), a3.end());
    std::vector<double> numeric(x.size());
    const float eps = 1e-2f;
    for (std::size_t i = 0; i < x.size(); ++i) {
      std::vector<float> xp = x, xm = x;
      xp[i] += eps;
      xm[i] -= eps;
      numeric[i] = (loss(xp) - loss(xm)) / (static_cast<double>(xp[i]) - xm[i]);
    }
    EXPECT_CLOSE(analytic, numeric, 1e-2);
  }
}

TEST_F(Attention, EmptyBatchAndEmptyKeys) {
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  // B = 0: nothing to do, success.
  {
    Tensor q(ctx, {0, 2, 3, 8}, f32()), k(ctx, {0, 2, 4, 8}, f32()), o(ctx, {0, 2, 3, 8}, f32());
    EXPECT_EQ(dlk_attention_forward(ctx, nullptr, &q.t, &k.t, &k.t, &o.t, nullptr), DLK_SUCCESS) << dlk_last_error();
  }
  // Tk = 0: every row is fully masked: zeros, lse -inf, zero dq.
  Tensor q(ctx, {1, 2, 3, 8}, f32()), k(ctx, {1, 2, 0, 8}, f32()), o(ctx, {1, 2, 3, 8}, f32()),
      lse(ctx, {1, 2, 3}, f32()), g(ctx, {1, 2, 3, 8}, f32()), dq(ctx, {1, 2, 3, 8}, f32()),
      dk(ctx, {1, 2, 0, 8}, f32()), dv(ctx, {1, 2, 0, 8}, f32());
  q.set(randn(q.numel()));
  g.set(randn(g.numel()));
  o.poison();
  lse.poison();
  dq.poison();
  ASSERT_EQ(dlk_attention_forward(ctx, nullptr, &q.t, &k.t, &k.t, &o.t, &lse.t), DLK_SUCCESS) << dlk_last_error();
  for (float x : o.get()) ASSERT_EQ(x, 0.0f);
  for (float x : lse.get()) ASSERT_TRUE(std::isinf(x) && x < 0);
  ASSERT_EQ(dlk_attention_backward(ctx, nullptr, &q.t, &k.t, &k.t, &o.t, &lse.t, &g.t, &dq.t, &dk.t, &dv.t),
            DLK_SUCCESS)
      << dlk_last_error();
  for (float x : dq.get()) ASSERT_EQ(x, 0.0f);
}

TEST_F(Attention, BadInputsRejectedWithNothingWritten) {
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  const std::int64_t B = 2, H = 2, T = 5, D = 8;
  Tensor q(ctx, {B, H, T, D}, f32()), k(ctx, {B, H, T, D}, f32()), v(ctx, {B, H, T, D}, f32()),
      o(ctx, {B, H, T, D}, f32()), lse(ctx, {B, H, T}, f32()), g(ctx, {B, H, T, D}, f32()),
      dq(ctx, {B, H, T, D}, f32()), dk(ctx, {B, H, T, D}, f32()), dv(ctx, {B, H, T, D}, f32());
  Tensor kh(ctx, {B, H, T, D}, f16()), kbad(ctx, {B, H, T + 1, 4}, f32()), big(ctx, {1, 1, 2, 300}, f32()),
      big_o(ctx, {1, 1, 2, 300}, f32()), mask_bad(ctx, {3, T}, u8()), len_bad(ctx, {B + 1}, i32()),
      lse_bad(ctx, {B, H, T + 1}, f32()), q3(ctx, {B, H, T}, f32()), mask_f64(ctx, {T, T}, f32());
  q.set(randn(q.numel()));
  k.set(randn(k.numel()));
  v.set(randn(v.numel()));
  g.set(randn(g.numel()));
  mask_f64.t.dtype = DLDataType{kDLFloat, 64, 1};
  auto params = [] {
    dlk_attention_params p;
    dlk_attention_params_init(&p);
    return p;
  };
  auto expect_untouched = [&](dlk_status s, const char* what) {
    EXPECT_NE(s, DLK_SUCCESS) << what;
    EXPECT_GT(std::strlen(dlk_last_error()), 10u) << what;
    for (Tensor* t : {&o, &lse, &dq, &dk, &dv})
      for (float x : t->get()) ASSERT_TRUE(std::isnan(x)) << what << ": an output was written";
  };
  for (Tensor* t : {&o, &lse, &dq, &dk, &dv}) t->poison();
  dlk_attention_params p = params();
  expect_untouched(dlk_attention_forward(ctx, &p, nullptr, &k.t, &v.t, &o.t, &lse.t), "null q");
  expect_untouched(dlk_attention_forward(ctx, &p, &q3.t, &k.t, &v.t, &o.t, &lse.t), "rank-3 q");
  expect_untouched(dlk_attention_forward(ctx, &p, &q.t, &kh.t, &v.t, &o.t, &lse.t), "dtype mismatch");
  expect_untouched(dlk_attention_forward(ctx, &p, &q.t, &kbad.t, &v.t, &o.t, &lse.t), "k head dim");
  expect_untouched(dlk_attention_forward(ctx, &p, &big.t, &big.t, &big.t, &big_o.t, nullptr), "D > 256");
  expect_untouched(dlk_attention_forward(ctx, &p, &q.t, &k.t, &v.t, &o.t, &lse_bad.t), "lse shape");
  expect_untouched(dlk_attention_forward(ctx, &p, &q.t, &k.t, &v.t, &q.t, &lse.t), "out aliases q");
  {
    std::int64_t st[4] = {H * T * D, T * D, D, 2};
    std::int64_t sh[4] = {B, H, T, D / 2};
    DLTensor qs = q.t;
    qs.strides = st;
    qs.shape = sh;
    expect_untouched(dlk_attention_forward(ctx, &p, &qs, &k.t, &v.t, &o.t, &lse.t), "non-unit D stride");
  }
  p = params();
  p.scale = NAN;
  expect_untouched(dlk_attention_forward(ctx, &p, &q.t, &k.t, &v.t, &o.t, &lse.t), "NaN scale");
  p = params();
  p.dropout_p = 1.0f;
  expect_untouched(dlk_attention_forward(ctx, &p, &q.t, &k.t, &v.t, &o.t, &lse.t), "dropout_p 1");
  p = params();
  p.dropout_p = -0.1f;
  expect_untouched(dlk_attention_forward(ctx, &p, &q.t, &k.t, &v.t, &o.t, &lse.t), "negative dropout_p");
  p = params();
  p.struct_size = 8;
  expect_untouched(dlk_attention_forward(ctx, &p, &q.t, &k.t, &v.t, &o.t, &lse.t), "small struct_size");
  p = params();
  {
    int bad = 9;
    std::memcpy(&p.mask_kind, &bad, sizeof bad);
  }
  expect_untouched(dlk_attention_forward(ctx, &p, &q.t, &k.t, &v.t, &o.t, &lse.t), "mask_kind 9");
  p = params();
  p.mask_kind = DLK_MASK_TENSOR;
  expect_untouched(dlk_attention_forward(ctx, &p, &q.t, &k.t, &v.t, &o.t, &lse.t), "missing mask");
  p.mask = &mask_bad.t;
  expect_untouched(dlk_attention_forward(ctx, &p, &q.t, &k.t, &v.t, &o.t, &lse.t), "mask does not broadcast");
  p.mask = &mask_f64.t;
  expect_untouched(dlk_attention_forward(ctx, &p, &q.t, &k.t, &v.t, &o.t, &lse.t), "float64 mask");
  p = params();
  p.mask_kind = DLK_MASK_KEY_PADDING;
  expect_untouched(dlk_attention_forward(ctx, &p, &q.t, &k.t, &v.t, &o.t, &lse.t), "missing lengths");
  p.lengths = &len_bad.t;
  expect_untouched(dlk_attention_forward(ctx, &p, &q.t, &k.t, &v.t, &o.t, &lse.t), "lengths shape");
  p = params();
  expect_untouched(dlk_attention_forward(nullptr, &p, &q.t, &k.t, &v.t, &o.t, &lse.t), "null context");
  // Backward: lse required, gradient shapes, overlaps.
  expect_untouched(dlk_attention_backward(ctx, &p, &q.t, &k.t, &v.t, &o.t, nullptr, &g.t, &dq.t, &dk.t, &dv.t),
                   "null lse");
  expect_untouched(dlk_attention_backward(ctx, &p, &q.t, &k.t, &v.t, &o.t, &lse.t, &g.t, &dq.t, &dk.t, &kbad.t),
                   "dv shape");
  expect_untouched(dlk_attention_backward(ctx, &p, &q.t, &k.t, &v.t, &o.t, &lse.t, &g.t, &dq.t, &dq.t, &dv.t),
                   "dk aliases dq");
  expect_untouched(dlk_attention_backward(ctx, &p, &q.t, &k.t, &v.t, &o.t, &lse.t, &g.t, &dq.t, &dk.t, &g.t),
                   "dv aliases d_out");
}

}  // namespace
}  // namespace dlk::test
