// The random family on the backend DLK_TEST_BACKEND names: the Philox generator against Random123's known answers,
// dropout (keep decisions, scaling, p = 0 / 1, eval mode, saved vs regenerated masks, cpu/emu bitwise identity),
// embedding (gather, deterministic scatter-add backward with duplicates and padding_idx, the sparse update) and
// initialisation (bounds, statistics, PyTorch's fans and gains, the Linear default), each against a reference
// written here, plus numerical gradients and bad inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "common/philox.h"
#include "test_util.h"

namespace dlk::test {
namespace {

const DLDataType kFloatTypes[] = {f32(), f16(), bf16()};

std::int64_t product(const std::vector<std::int64_t>& s) {
  return std::accumulate(s.begin(), s.end(), std::int64_t{1}, std::multiplies<std::int64_t>());
}

bool has_substr(const char* s, const char* part) { return std::string(s).find(part) != std::string::npos; }

// Bitwise equality of two float vectors (NaN payloads included).
bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

double mean_of(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += x;
  return s / static_cast<double>(v.size());
}
double var_of(const std::vector<float>& v) {
  const double m = mean_of(v);
  double s = 0;
  for (float x : v) s += (x - m) * (x - m);
  return s / static_cast<double>(v.size() - 1);
}

// A context on the other host backend (emu when available), for cross-backend identity checks.
struct CpuEmu {
  Context cpu{DLK_DEVICE_CPU};
  Context emu{DLK_DEVICE_EMU};
  bool ok() const { return cpu.status == DLK_SUCCESS && emu.status == DLK_SUCCESS; }
};

// ================================================================================================== Philox

// Random123's kat_vectors (philox4x32 10: counter[4] key[2] -> output[4]).
TEST(Philox, Random123KnownAnswers) {
  struct Kat {
    std::uint32_t ctr[4], key[2], out[4];
  };
  const Kat kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
      {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
       {0xffffffffu, 0xffffffffu},
       {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
      {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
       {0xa4093822u, 0x299f31d0u},
       {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
  };
  for (const Kat& k : kats) {
    Philox4 c;
    std::memcpy(c.v, k.ctr, sizeof c.v);
    const Philox4 r = philox4x32_10(c, k.key[0], k.key[1]);
    for (int w = 0; w < 4; ++w) EXPECT_EQ(r.v[w], k.out[w]) << "word " << w;
  }
  // The stream layout: key = seed (lo, hi), counter = (block lo, block hi, subsequence lo, hi).
  const Philox4 r = philox_block(0xa4093822ull | (0x299f31d0ull << 32), 0x85a308d3243f6a88ull, 0x0370734413198a2eull);
  EXPECT_EQ(r.v[0], 0xd16cfe09u);
  EXPECT_EQ(r.v[3], 0x24126ea1u);
}

TEST(Philox, StreamPositionsAndConversions) {
  const std::uint64_t seed = 0x1234567890abcdefull;
  for (std::uint64_t p : {0ull, 1ull, 2ull, 3ull, 4ull, 1001ull, (1ull << 34) + 3})
    EXPECT_EQ(philox_at(seed, p), philox_block(seed, p / 4).v[p % 4]) << p;
  EXPECT_EQ(uniform_co(0u), 0.0f);
  EXPECT_LT(uniform_co(0xffffffffu), 1.0f);
  EXPECT_EQ(uniform_co(0xffffffffu), 1.0f - 5.9604644775390625e-8f);
  EXPECT_GT(uniform_oc(0u), 0.0f);
  EXPECT_EQ(uniform_oc(0xffffffffu), 1.0f);
  // Box-Muller normals over many positions: mean 0, variance 1, and both halves of each pair used.
  const int n = 200000;
  double s = 0, s2 = 0, s4 = 0;
  for (int p = 0; p < n; ++p) {
    const double z = normal_at(seed, static_cast<std::uint64_t>(p));
    ASSERT_TRUE(std::isfinite(z));
    s += z;
    s2 += z * z;
    s4 += z * z * z * z;
  }
  EXPECT_NEAR(s / n, 0.0, 5.0 / std::sqrt(n));
  EXPECT_NEAR(s2 / n, 1.0, 5.0 * std::sqrt(2.0 / n));
  EXPECT_NEAR(s4 / n, 3.0, 0.15);  // the normal's kurtosis
  // The four-at-once form gives the per-lane values.
  for (std::uint64_t g = 0; g < 100; ++g) {
    const Philox4 blk = philox_block(seed, g);
    float four[4];
    normal4_in_block(blk, four);
    for (unsigned l = 0; l < 4; ++l) ASSERT_EQ(four[l], normal_in_block(blk, l)) << g << "," << l;
  }
  // erfinv_approx inverts erf.
  for (double x = -0.999; x < 1.0; x += 0.037)
    EXPECT_NEAR(std::erf(static_cast<double>(erfinv_approx(static_cast<float>(x)))), x, 2e-6) << x;
}

// ================================================================================================= dropout

class Dropout : public ::testing::Test {
 protected:
  void SetUp() override { SKIP_IF_NO_BACKEND(ctx); }
  Context ctx;
};

// The reference keep decision: (bits >> 8) < ceil((1 - p) 2^24), computed here in fp64.
bool ref_keep(std::uint64_t seed, std::uint64_t pos, double p) {
  const double thr = std::ceil((1.0 - static_cast<double>(static_cast<float>(p))) * 16777216.0);
  return static_cast<double>(philox_at(seed, pos) >> 8) < thr;
}

dlk_dropout_params dropout_params(float p, std::uint64_t seed, std::uint64_t offset, int training = 1) {
  dlk_dropout_params d;
  dlk_dropout_params_init(&d);
  d.p = p;
  d.seed = seed;
  d.offset = offset;
  d.training = training;
  return d;
}

TEST_F(Dropout, ForwardMatchesTheReferenceForEveryDtypeSizeAndOffset) {
  DLK_TRACE_SEED();
  const std::uint64_t seed = rng()();
  for (DLDataType dt : kFloatTypes)
    for (std::int64_t n : {1, 7, 33, 1000})
      for (std::uint64_t offset : {0ull, 3ull, 4ull, 4097ull})
        for (float p : {0.1f, 0.5f, 0.9f}) {
          SCOPED_TRACE(dtype_str(dt) + " n " + std::to_string(n) + " offset " + std::to_string(offset) + " p " +
                       std::to_string(p));
          Tensor x(ctx, {n}, dt), y(ctx, {n}, dt), m(ctx, {n}, u8());
          x.set(randn(static_cast<std::size_t>(n), 2.0f));
          y.poison();
          m.poison();
          dlk_dropout_params d = dropout_params(p, seed, offset);
          ASSERT_EQ(dlk_dropout_forward(ctx, &d, &x.t, &y.t, &m.t), DLK_SUCCESS) << dlk_last_error();
          const std::vector<float> xs = x.stored(), ys = y.get(), ms = m.get();
          std::vector<double> ref(static_cast<std::size_t>(n));
          for (std::int64_t i = 0; i < n; ++i) {
            const bool keep = ref_keep(seed, offset + i, p);
            ref[i] = keep ? xs[i] / (1.0 - static_cast<double>(p)) : 0.0;
            ASSERT_EQ(ms[i], keep ? 1.0f : 0.0f) << "mask at " << i;
            if (!keep) {
              ASSERT_EQ(ys[i], 0.0f) << "dropped element " << i;
            }
          }
          EXPECT_CLOSE(ys, ref, tolerance(dt));
        }
}

TEST_F(Dropout, KeepFractionMatchesP) {
  DLK_TRACE_SEED();
  const std::int64_t n = backend() == DLK_DEVICE_EMU ? 20000 : 200000;
  for (float p : {0.1f, 0.5f, 0.75f}) {
    Tensor x(ctx, {n}, f32()), y(ctx, {n}, f32());
    x.set(std::vector<float>(static_cast<std::size_t>(n), 1.0f));
    dlk_dropout_params d = dropout_params(p, rng()(), rng()() >> 20);
    ASSERT_EQ(dlk_dropout_forward(ctx, &d, &x.t, &y.t, nullptr), DLK_SUCCESS) << dlk_last_error();
    const std::vector<float> ys = y.get();
    std::int64_t kept = 0;
    for (float v : ys) {
      if (v != 0.0f) {
        ++kept;
        ASSERT_FLOAT_EQ(v, 1.0f / (1.0f - p));
      }
    }
    const double q = 1.0 - p, sd = std::sqrt(n * q * (1 - q));
    EXPECT_NEAR(static_cast<double>(kept), n * q, 5 * sd) << "p " << p;
    EXPECT_NEAR(mean_of(ys), 1.0, 5 * sd / (n * q)) << "E[y] = x";
  }
}

TEST_F(Dropout, PZeroIsIdentityPOneIsZerosEvalIsIdentity) {
  DLK_TRACE_SEED();
  for (DLDataType dt : kFloatTypes) {
    const std::int64_t n = 77;
    Tensor x(ctx, {7, 11}, dt), y(ctx, {7, 11}, dt), m(ctx, {7, 11}, u8());
    std::vector<float> xv = randn(n, 3.0f);
    xv[5] = 1e30f;  // huge values survive p = 0 unchanged and vanish at p = 1
    x.set(xv);
    const std::vector<float> xs = x.stored();
    for (int mode = 0; mode < 3; ++mode) {
      SCOPED_TRACE(dtype_str(dt) + " mode " + std::to_string(mode));
      dlk_dropout_params d = dropout_params(mode == 1 ? 1.0f : (mode == 0 ? 0.0f : 0.7f), 99, 0, mode == 2 ? 0 : 1);
      y.poison();
      m.poison();
      ASSERT_EQ(dlk_dropout_forward(ctx, &d, &x.t, &y.t, &m.t), DLK_SUCCESS) << dlk_last_error();
      const std::vector<float> ys = y.get(), ms = m.get();
      for (std::int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(ys[i], mode == 1 ? 0.0f : xs[i]) << i;
        ASSERT_EQ(ms[i], mode == 1 ? 0.0f : 1.0f) << i;
      }
      // The backward in the same mode, from the mask and regenerated.
      Tensor dx(ctx, {7, 11}, dt);
      for (bool with_mask : {true, false}) {
        dx.poison();
        ASSERT_EQ(dlk_dropout_backward(ctx, &d, &x.t, with_mask ? &m.t : nullptr, &dx.t), DLK_SUCCESS)
            << dlk_last_error();
        const std::vector<float> g = dx.get();
        for (std::int64_t i = 0; i < n; ++i) ASSERT_EQ(g[i], mode == 1 ? 0.0f : xs[i]) << i;
      }
    }
  }
}

TEST_F(Dropout, BackwardFromSavedMaskEqualsRegeneratedAndTheFormula) {
  DLK_TRACE_SEED();
  for (DLDataType dt : kFloatTypes) {
    SCOPED_TRACE(dtype_str(dt));
    const std::vector<std::int64_t> shape = {3, 5, 67};
    const std::int64_t n = product(shape);
    Tensor x(ctx, shape, dt), y(ctx, shape, dt), m(ctx, shape, u8()), dy(ctx, shape, dt), dx1(ctx, shape, dt),
        dx2(ctx, shape, dt);
    x.set(randn(n));
    dy.set(randn(n));
    dlk_dropout_params d = dropout_params(0.3f, rng()(), 13);
    ASSERT_EQ(dlk_dropout_forward(ctx, &d, &x.t, &y.t, &m.t), DLK_SUCCESS) << dlk_last_error();
    dx1.poison();
    dx2.poison();
    ASSERT_EQ(dlk_dropout_backward(ctx, &d, &dy.t, &m.t, &dx1.t), DLK_SUCCESS) << dlk_last_error();
    ASSERT_EQ(dlk_dropout_backward(ctx, &d, &dy.t, nullptr, &dx2.t), DLK_SUCCESS) << dlk_last_error();
    const std::vector<float> g1 = dx1.get(), g2 = dx2.get(), ms = m.get(), dys = dy.stored();
    EXPECT_TRUE(bitwise_equal(g1, g2));
    std::vector<double> ref(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) ref[i] = ms[i] != 0 ? dys[i] / 0.7 : 0.0;
    EXPECT_CLOSE(g1, ref, tolerance(dt));
  }
}

// Central differences of the library's forward (same seed and offset: a fixed mask) against its backward.
TEST_F(Dropout, BackwardMatchesNumericalGradients) {
  DLK_TRACE_SEED();
  const std::int64_t n = 29;
  const std::vector<float> xv = randn(n), wv = randn(n);
  dlk_dropout_params d = dropout_params(0.4f, rng()(), 7);
  auto loss = [&](const std::vector<float>& xin) {
    Tensor x(ctx, {n}, f32()), y(ctx, {n}, f32());
    x.set(xin);
    EXPECT_EQ(dlk_dropout_forward(ctx, &d, &x.t, &y.t, nullptr), DLK_SUCCESS) << dlk_last_error();
    const std::vector<float> ys = y.get();
    double l = 0;
    for (std::int64_t i = 0; i < n; ++i) l += static_cast<double>(ys[i]) * wv[i];
    return l;
  };
  Tensor w(ctx, {n}, f32()), dx(ctx, {n}, f32());
  w.set(wv);
  dx.poison();
  ASSERT_EQ(dlk_dropout_backward(ctx, &d, &w.t, nullptr, &dx.t), DLK_SUCCESS) << dlk_last_error();
  std::vector<double> numeric(n);
  for (std::int64_t k = 0; k < n; ++k) {
    std::vector<float> xp = xv, xm = xv;
    xp[k] += 1e-2f;
    xm[k] -= 1e-2f;
    numeric[k] = (loss(xp) - loss(xm)) / (static_cast<double>(xp[k]) - xm[k]);
  }
  EXPECT_CLOSE(dx.get(), numeric, 1e-4);
}

TEST_F(Dropout, OffsetsShiftTheStreamAndSeedsComeFromParamsOrContext) {
  DLK_TRACE_SEED();
  const std::int64_t n = 300, k = 37;
  const std::uint64_t seed = rng()();
  Tensor x(ctx, {n}, f32()), m0(ctx, {n}, u8()), m1(ctx, {n - k}, u8()), m2(ctx, {n}, u8()), y(ctx, {n}, f32()),
      y1(ctx, {n - k}, f32());
  x.set(randn(n));
  dlk_dropout_params d = dropout_params(0.5f, seed, 1000);
  ASSERT_EQ(dlk_dropout_forward(ctx, &d, &x.t, &y.t, &m0.t), DLK_SUCCESS) << dlk_last_error();
  // Element i of a call at offset 1000 + k is element i + k of the call at offset 1000.
  Tensor xk(ctx, {n - k}, f32());
  xk.set(randn(n - k));
  d.offset = 1000 + k;
  ASSERT_EQ(dlk_dropout_forward(ctx, &d, &xk.t, &y1.t, &m1.t), DLK_SUCCESS) << dlk_last_error();
  const std::vector<float> a = m0.get(), b = m1.get();
  EXPECT_TRUE(std::equal(b.begin(), b.end(), a.begin() + k));
  // A different offset (the next call's, offset + n) gives a different mask.
  d.offset = 1000 + n;
  ASSERT_EQ(dlk_dropout_forward(ctx, &d, &x.t, &y.t, &m2.t), DLK_SUCCESS) << dlk_last_error();
  EXPECT_NE(m2.get(), a);
  // use_context_seed takes the context's seed.
  dlk_context_options o;
  dlk_context_options_init(&o);
  o.device = backend();
  o.seed = seed;
  dlk_context* c2 = nullptr;
  ASSERT_EQ(dlk_context_create(&o, &c2), DLK_SUCCESS);
  {
    Tensor x2(c2, {n}, f32()), y2(c2, {n}, f32()), m3(c2, {n}, u8());
    x2.set(x.stored());
    dlk_dropout_params dc = dropout_params(0.5f, 0, 1000);
    dc.use_context_seed = 1;
    ASSERT_EQ(dlk_dropout_forward(c2, &dc, &x2.t, &y2.t, &m3.t), DLK_SUCCESS) << dlk_last_error();
    EXPECT_EQ(m3.get(), a);
  }
  dlk_context_destroy(c2);
}

TEST_F(Dropout, InPlace) {
  DLK_TRACE_SEED();
  Tensor x(ctx, {501}, f32()), y(ctx, {501}, f32());
  const std::vector<float> xv = randn(501);
  x.set(xv);
  y.set(xv);
  dlk_dropout_params d = dropout_params(0.25f, 5, 0);
  ASSERT_EQ(dlk_dropout_forward(ctx, &d, &x.t, &y.t, nullptr), DLK_SUCCESS) << dlk_last_error();
  ASSERT_EQ(dlk_dropout_forward(ctx, &d, &x.t, &x.t, nullptr), DLK_SUCCESS) << dlk_last_error();
  EXPECT_TRUE(bitwise_equal(x.get(), y.get()));
}

// The same seed gives bitwise-identical outputs and masks on the cpu and emu backends, in every dtype.
TEST(DropoutBackends, CpuAndEmuAreBitwiseIdentical) {
  DLK_TRACE_SEED();
  CpuEmu b;
  if (!b.ok()) GTEST_SKIP() << "needs both the cpu and the emu backend";
  for (DLDataType dt : kFloatTypes) {
    const std::int64_t n = 2053;
    const std::vector<float> xv = randn(n);
    const std::uint64_t seed = rng()(), offset = rng()() >> 8;
    std::vector<float> out[2], mask[2], grad[2];
    int k = 0;
    for (Context* c : {&b.cpu, &b.emu}) {
      Tensor x(*c, {n}, dt), y(*c, {n}, dt), m(*c, {n}, u8()), dx(*c, {n}, dt);
      x.set(xv);
      dlk_dropout_params d = dropout_params(0.37f, seed, offset);
      ASSERT_EQ(dlk_dropout_forward(*c, &d, &x.t, &y.t, &m.t), DLK_SUCCESS) << dlk_last_error();
      ASSERT_EQ(dlk_dropout_backward(*c, &d, &x.t, nullptr, &dx.t), DLK_SUCCESS) << dlk_last_error();
      out[k] = y.get();
      mask[k] = m.get();
      grad[k] = dx.get();
      ++k;
    }
    EXPECT_TRUE(bitwise_equal(out[0], out[1])) << dtype_str(dt);
    EXPECT_TRUE(bitwise_equal(mask[0], mask[1])) << dtype_str(dt);
    EXPECT_TRUE(bitwise_equal(grad[0], grad[1])) << dtype_str(dt);
  }
}

TEST_F(Dropout, EmptyTensors) {
  Tensor x(ctx, {0, 5}, f32()), y(ctx, {0, 5}, f32());
  dlk_dropout_params d = dropout_params(0.5f, 1, 0);
  EXPECT_EQ(dlk_dropout_forward(ctx, &d, &x.t, &y.t, nullptr), DLK_SUCCESS) << dlk_last_error();
  EXPECT_EQ(dlk_dropout_backward(ctx, &d, &x.t, nullptr, &y.t), DLK_SUCCESS) << dlk_last_error();
}

TEST_F(Dropout, RejectsBadInputs) {
  Tensor x(ctx, {4, 6}, f32()), y(ctx, {4, 6}, f32()), y2(ctx, {4, 5}, f32()), mf(ctx, {4, 6}, f32()),
      ms(ctx, {24}, u8());
  x.set(randn(24));
  y.set(std::vector<float>(24, 5.0f));
  for (float p : {-0.1f, 1.5f, NAN, INFINITY}) {
    dlk_dropout_params d = dropout_params(p, 1, 0);
    EXPECT_EQ(dlk_dropout_forward(ctx, &d, &x.t, &y.t, nullptr), DLK_ERROR_INVALID_ARGUMENT) << p;
    EXPECT_TRUE(has_substr(dlk_last_error(), "params->p")) << dlk_last_error();
    EXPECT_EQ(dlk_dropout_backward(ctx, &d, &x.t, nullptr, &y.t), DLK_ERROR_INVALID_ARGUMENT) << p;
  }
  dlk_dropout_params d = dropout_params(0.5f, 1, 0);
  EXPECT_EQ(dlk_dropout_forward(ctx, &d, &x.t, &y2.t, nullptr), DLK_ERROR_SHAPE);
  EXPECT_TRUE(has_substr(dlk_last_error(), "dropout_forward: y has shape [4,5]")) << dlk_last_error();
  EXPECT_EQ(dlk_dropout_forward(ctx, &d, &x.t, &y.t, &mf.t), DLK_ERROR_DTYPE);
  EXPECT_TRUE(has_substr(dlk_last_error(), "mask has dtype float32")) << dlk_last_error();
  EXPECT_EQ(dlk_dropout_forward(ctx, &d, &x.t, &y.t, &ms.t), DLK_ERROR_SHAPE);
  EXPECT_EQ(dlk_dropout_backward(ctx, &d, &x.t, &ms.t, &y.t), DLK_ERROR_SHAPE);
  EXPECT_EQ(dlk_dropout_forward(ctx, &d, nullptr, &y.t, nullptr), DLK_ERROR_INVALID_ARGUMENT);
  d.offset = ~0ull - 3;
  EXPECT_EQ(dlk_dropout_forward(ctx, &d, &x.t, &y.t, nullptr), DLK_ERROR_OVERFLOW);
  d = dropout_params(0.5f, 1, 0);
  d.struct_size = 4;
  EXPECT_EQ(dlk_dropout_forward(ctx, &d, &x.t, &y.t, nullptr), DLK_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(y.get(), std::vector<float>(24, 5.0f)) << "output written by a rejected call";
}

// =============================================================================================== embedding

class Embedding : public ::testing::Test {
 protected:
  void SetUp() override { SKIP_IF_NO_BACKEND(ctx); }
  Context ctx;
};

dlk_embedding_params emb_params(std::int64_t padding_idx = DLK_EMBEDDING_NO_PADDING, int accumulate = 0) {
  dlk_embedding_params p;
  dlk_embedding_params_init(&p);
  p.padding_idx = padding_idx;
  p.accumulate = accumulate;
  return p;
}

std::vector<float> random_indices(std::size_t n, std::int64_t V) {
  std::uniform_int_distribution<std::int64_t> d(0, V - 1);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(d(rng()));
  return v;
}

std::vector<std::int64_t> with_dim(std::vector<std::int64_t> s, std::int64_t D) {
  s.push_back(D);
  return s;
}

TEST_F(Embedding, ForwardGathersRows) {
  DLK_TRACE_SEED();
  const std::int64_t V = 11;
  for (DLDataType dt : kFloatTypes)
    for (DLDataType it : {i32(), i64()})
      for (std::int64_t D : {1, 7, 33})
        for (const std::vector<std::int64_t>& ishape : {std::vector<std::int64_t>{}, {7}, {3, 5}, {2, 3, 4}}) {
          SCOPED_TRACE(dtype_str(dt) + " " + dtype_str(it) + " D " + std::to_string(D) + " rank " +
                       std::to_string(ishape.size()));
          const std::int64_t n = product(ishape);
          Tensor idx(ctx, ishape, it), w(ctx, {V, D}, dt), out(ctx, with_dim(ishape, D), dt);
          const std::vector<float> iv = random_indices(n, V);
          idx.set(iv);
          w.set(randn(V * D));
          out.poison();
          ASSERT_EQ(dlk_embedding_forward(ctx, nullptr, &idx.t, &w.t, &out.t), DLK_SUCCESS) << dlk_last_error();
          const std::vector<float> ws = w.stored(), os = out.get();
          for (std::int64_t i = 0; i < n; ++i)
            for (std::int64_t d = 0; d < D; ++d)
              ASSERT_EQ(os[i * D + d], ws[static_cast<std::int64_t>(iv[i]) * D + d]) << i << "," << d;
        }
}

TEST_F(Embedding, OutOfRangeIndices) {
  const std::int64_t V = 10, D = 4;
  for (float bad : {10.0f, -1.0f, 1e6f}) {
    Tensor idx(ctx, {3}, i64()), w(ctx, {V, D}, f32()), out(ctx, {3, D}, f32()), dw(ctx, {V, D}, f32());
    idx.set({1.0f, bad, 2.0f});
    w.set(randn(V * D));
    out.set(std::vector<float>(3 * D, 5.0f));
    dw.set(std::vector<float>(V * D, 5.0f));
    const dlk_status s = dlk_embedding_forward(ctx, nullptr, &idx.t, &w.t, &out.t);
    const std::string msg = dlk_last_error();  // read first: the next call clears it
    if (ctx.on_device()) {                     // cuda: documented zero rows, no error
      EXPECT_EQ(s, DLK_SUCCESS);
      const std::vector<float> os = out.get();
      for (std::int64_t d = 0; d < D; ++d) EXPECT_EQ(os[D + d], 0.0f);
      continue;
    }
    EXPECT_EQ(s, DLK_ERROR_INVALID_ARGUMENT);
    EXPECT_TRUE(has_substr(msg.c_str(), "indices[1] (flattened) is")) << msg;
    EXPECT_TRUE(has_substr(msg.c_str(), "out of range for a table of 10 rows")) << msg;
    EXPECT_EQ(out.get(), std::vector<float>(3 * D, 5.0f)) << "output written by a rejected call";
    EXPECT_EQ(dlk_embedding_backward(ctx, nullptr, &idx.t, &out.t, &dw.t), DLK_ERROR_INVALID_ARGUMENT);
    EXPECT_EQ(dw.get(), std::vector<float>(V * D, 5.0f));
  }
}

// fp64 reference of the backward: base + factor * sum of dout rows per table row; padding row untouched/zero.
std::vector<double> ref_backward(const std::vector<float>& iv, const std::vector<float>& g, std::int64_t V,
                                 std::int64_t D, std::int64_t pad_row, bool accumulate, const std::vector<float>& base,
                                 double factor) {
  std::vector<double> out(static_cast<std::size_t>(V * D), 0.0);
  if (accumulate)
    for (std::size_t k = 0; k < out.size(); ++k) out[k] = base[k];
  std::vector<double> sum(static_cast<std::size_t>(V * D), 0.0);
  for (std::size_t i = 0; i < iv.size(); ++i) {
    const std::int64_t r = static_cast<std::int64_t>(iv[i]);
    if (r == pad_row) continue;
    for (std::int64_t d = 0; d < D; ++d) sum[r * D + d] += g[i * D + d];
  }
  for (std::size_t k = 0; k < out.size(); ++k) out[k] += factor * sum[k];
  return out;
}

TEST_F(Embedding, BackwardScatterAddsWithDuplicatesAndPadding) {
  DLK_TRACE_SEED();
  for (int deterministic : {0, 1}) {
    Context c(backend(), deterministic);
    for (DLDataType dt : kFloatTypes)
      for (DLDataType it : {i32(), i64()})
        for (std::int64_t pad : {DLK_EMBEDDING_NO_PADDING, std::int64_t{2}, std::int64_t{-1}})
          for (int acc : {0, 1}) {
            const std::int64_t V = 9, D = 37;
            const std::vector<std::int64_t> ishape = {5, 13};
            const std::int64_t n = product(ishape);
            SCOPED_TRACE(dtype_str(dt) + " " + dtype_str(it) + " pad " + std::to_string(pad) + " acc " +
                         std::to_string(acc) + " det " + std::to_string(deterministic));
            Tensor idx(c, ishape, it), g(c, with_dim(ishape, D), dt), dw(c, {V, D}, dt);
            std::vector<float> iv = random_indices(n, V);
            iv[0] = iv[1] = iv[2] = 4;  // duplicates for sure
            idx.set(iv);
            g.set(randn(n * D));
            if (acc)
              dw.set(randn(V * D));
            else
              dw.poison();
            const std::vector<float> base = dw.stored();
            dlk_embedding_params p = emb_params(pad, acc);
            ASSERT_EQ(dlk_embedding_backward(c, &p, &idx.t, &g.t, &dw.t), DLK_SUCCESS) << dlk_last_error();
            const std::int64_t pad_row = pad == DLK_EMBEDDING_NO_PADDING ? -1 : (pad < 0 ? pad + V : pad);
            const std::vector<double> ref = ref_backward(iv, g.stored(), V, D, pad_row, acc, base, 1.0);
            const std::vector<float> got = dw.get();
            EXPECT_TRUE(all_finite(got));
            EXPECT_CLOSE(got, ref, tolerance(dt));
            if (pad_row >= 0) {
              for (std::int64_t d = 0; d < D; ++d)
                ASSERT_EQ(got[pad_row * D + d], acc ? base[pad_row * D + d] : 0.0f) << "padding row gets no gradient";
            }
          }
  }
}

TEST_F(Embedding, DeterministicBackwardIsBitwiseReproducible) {
  DLK_TRACE_SEED();
  Context c(backend(), 1);
  const std::int64_t V = 5, D = 19, n = 301;  // many duplicates per row
  Tensor idx(c, {n}, i64()), g(c, {n, D}, f32()), dw(c, {V, D}, f32());
  const std::vector<float> iv = random_indices(n, V);
  idx.set(iv);
  g.set(randn(n * D, 10.0f));
  std::vector<float> first;
  for (int run = 0; run < 3; ++run) {
    dw.poison();
    ASSERT_EQ(dlk_embedding_backward(c, nullptr, &idx.t, &g.t, &dw.t), DLK_SUCCESS) << dlk_last_error();
    if (run == 0)
      first = dw.get();
    else
      EXPECT_TRUE(bitwise_equal(first, dw.get())) << "run " << run;
  }
  EXPECT_CLOSE(first, ref_backward(iv, g.stored(), V, D, -1, false, {}, 1.0), 1e-5);
}

// Central differences of sum(w * embedding(idx, W)) with respect to W against the backward.
TEST_F(Embedding, BackwardMatchesNumericalGradients) {
  DLK_TRACE_SEED();
  const std::int64_t V = 6, D = 3, n = 10;
  const std::vector<float> iv = random_indices(n, V), wv = randn(V * D), cv = randn(n * D);
  auto loss = [&](const std::vector<float>& win) {
    Tensor idx(ctx, {n}, i32()), w(ctx, {V, D}, f32()), out(ctx, {n, D}, f32());
    idx.set(iv);
    w.set(win);
    EXPECT_EQ(dlk_embedding_forward(ctx, nullptr, &idx.t, &w.t, &out.t), DLK_SUCCESS) << dlk_last_error();
    const std::vector<float> os = out.get();
    double l = 0;
    for (std::size_t k = 0; k < os.size(); ++k) l += static_cast<double>(os[k]) * cv[k];
    return l;
  };
  Tensor idx(ctx, {n}, i32()), c(ctx, {n, D}, f32()), dw(ctx, {V, D}, f32());
  idx.set(iv);
  c.set(cv);
  dw.poison();
  ASSERT_EQ(dlk_embedding_backward(ctx, nullptr, &idx.t, &c.t, &dw.t), DLK_SUCCESS) << dlk_last_error();
  std::vector<double> numeric(static_cast<std::size_t>(V * D));
  for (std::int64_t k = 0; k < V * D; ++k) {
    std::vector<float> wp = wv, wm = wv;
    wp[k] += 1e-2f;
    wm[k] -= 1e-2f;
    numeric[k] = (loss(wp) - loss(wm)) / (static_cast<double>(wp[k]) - wm[k]);
  }
  EXPECT_CLOSE(dw.get(), numeric, 1e-4);
}

TEST_F(Embedding, SparseUpdateSubtractsSummedRows) {
  DLK_TRACE_SEED();
  for (int deterministic : {0, 1}) {
    Context c(backend(), deterministic);
    for (DLDataType dt : kFloatTypes) {
      SCOPED_TRACE(dtype_str(dt) + " det " + std::to_string(deterministic));
      const std::int64_t V = 13, D = 8, n = 40;
      Tensor idx(c, {n}, i64()), g(c, {n, D}, dt), w(c, {V, D}, dt);
      std::vector<float> iv = random_indices(n, V);
      iv[3] = iv[4] = 7;
      idx.set(iv);
      g.set(randn(n * D));
      w.set(randn(V * D));
      const std::vector<float> base = w.stored();
      dlk_embedding_params p = emb_params(7, 0);  // the padding row stays as it is even though it is indexed
      ASSERT_EQ(dlk_embedding_sparse_update(c, &p, &idx.t, &g.t, 0.05f, &w.t), DLK_SUCCESS) << dlk_last_error();
      const std::vector<double> ref = ref_backward(iv, g.stored(), V, D, 7, true, base, -0.05f);
      const std::vector<float> got = w.get();
      EXPECT_CLOSE(got, ref, tolerance(dt));
      for (std::int64_t d = 0; d < D; ++d) EXPECT_EQ(got[7 * D + d], base[7 * D + d]);
    }
  }
}

TEST_F(Embedding, EmptyIndicesZeroTheGradient) {
  Tensor idx(ctx, {0}, i64()), g(ctx, {0, 4}, f32()), dw(ctx, {3, 4}, f32()), out(ctx, {0, 4}, f32());
  dw.poison();
  ASSERT_EQ(dlk_embedding_backward(ctx, nullptr, &idx.t, &g.t, &dw.t), DLK_SUCCESS) << dlk_last_error();
  EXPECT_EQ(dw.get(), std::vector<float>(12, 0.0f));
  EXPECT_EQ(dlk_embedding_forward(ctx, nullptr, &idx.t, &dw.t, &out.t), DLK_SUCCESS) << dlk_last_error();
}

TEST_F(Embedding, RejectsBadInputs) {
  Tensor idx(ctx, {4}, i64()), fidx(ctx, {4}, f32()), w(ctx, {10, 3}, f32()), w3(ctx, {2, 5, 3}, f32()),
      out(ctx, {4, 3}, f32()), out_bad(ctx, {4, 2}, f32()), out16(ctx, {4, 3}, f16());
  idx.set({1, 2, 3, 4});
  fidx.set({1, 2, 3, 4});
  out.set(std::vector<float>(12, 5.0f));
  EXPECT_EQ(dlk_embedding_forward(ctx, nullptr, &fidx.t, &w.t, &out.t), DLK_ERROR_DTYPE);
  EXPECT_TRUE(has_substr(dlk_last_error(), "indices has dtype float32")) << dlk_last_error();
  EXPECT_EQ(dlk_embedding_forward(ctx, nullptr, &idx.t, &w3.t, &out.t), DLK_ERROR_SHAPE);
  EXPECT_TRUE(has_substr(dlk_last_error(), "weight must be a table of rank 2")) << dlk_last_error();
  EXPECT_EQ(dlk_embedding_forward(ctx, nullptr, &idx.t, &w.t, &out_bad.t), DLK_ERROR_SHAPE);
  EXPECT_TRUE(has_substr(dlk_last_error(), "indices.shape + [embedding_dim]")) << dlk_last_error();
  EXPECT_EQ(dlk_embedding_forward(ctx, nullptr, &idx.t, &w.t, &out16.t), DLK_ERROR_DTYPE);
  dlk_embedding_params p = emb_params(10);
  EXPECT_EQ(dlk_embedding_forward(ctx, &p, &idx.t, &w.t, &out.t), DLK_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(has_substr(dlk_last_error(), "padding_idx")) << dlk_last_error();
  EXPECT_EQ(dlk_embedding_backward(ctx, nullptr, &fidx.t, &out.t, &w.t), DLK_ERROR_DTYPE);
  EXPECT_EQ(dlk_embedding_backward(ctx, nullptr, &idx.t, &out.t, &w3.t), DLK_ERROR_SHAPE);
  EXPECT_EQ(dlk_embedding_sparse_update(ctx, nullptr, &idx.t, &out.t, NAN, &w.t), DLK_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(has_substr(dlk_last_error(), "lr")) << dlk_last_error();
  EXPECT_EQ(out.get(), std::vector<float>(12, 5.0f)) << "output written by a rejected call";
}

// ===================================================================================================== init

class Init : public ::testing::Test {
 protected:
  void SetUp() override { SKIP_IF_NO_BACKEND(ctx); }
  Context ctx;
};

dlk_init_params init_params(dlk_init_kind kind, std::uint64_t seed, std::uint64_t offset = 0) {
  dlk_init_params p;
  dlk_init_params_init(&p);
  p.kind = kind;
  p.seed = seed;
  p.offset = offset;
  return p;
}

// Issue 4's check: a Linear(64, 128) weight draw lies in +-1/sqrt(64) = +-0.125, fills it, and looks uniform.
TEST_F(Init, LinearDefaultWeightLiesInItsBoundAndFillsIt) {
  DLK_TRACE_SEED();
  for (DLDataType dt : kFloatTypes) {
    SCOPED_TRACE(dtype_str(dt));
    Tensor w(ctx, {128, 64}, dt);
    w.poison();
    dlk_init_params p = init_params(DLK_INIT_LINEAR_WEIGHT, rng()());
    ASSERT_EQ(dlk_init(ctx, &p, &w.t), DLK_SUCCESS) << dlk_last_error();
    const std::vector<float> v = w.get();
    ASSERT_TRUE(all_finite(v)) << "every element written";
    const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    EXPECT_GE(*lo, -0.125f);
    EXPECT_LE(*hi, 0.125f);
    EXPECT_LT(*lo, -0.12f) << "fills the range";
    EXPECT_GT(*hi, 0.12f) << "fills the range";
    const double n = static_cast<double>(v.size()), var = 0.125 * 0.125 / 3.0;
    EXPECT_NEAR(mean_of(v), 0.0, 5.0 * std::sqrt(var / n));
    EXPECT_NEAR(var_of(v), var, 0.05 * var);
    // Roughly uniform: each of 8 equal bins holds n/8 within 5 sigma.
    std::vector<int> bins(8, 0);
    for (float x : v) ++bins[std::min(7, static_cast<int>((x + 0.125) / 0.03125))];
    for (int c : bins) EXPECT_NEAR(c, n / 8, 5 * std::sqrt(n / 8 * 7 / 8));
  }
  // The bias of nn.Linear(64, 128): U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with the weight's fan_in given.
  Tensor b(ctx, {128}, f32());
  dlk_init_params p = init_params(DLK_INIT_LINEAR_BIAS, 3);
  p.fan_in = 64;
  ASSERT_EQ(dlk_init(ctx, &p, &b.t), DLK_SUCCESS) << dlk_last_error();
  for (float x : b.get()) ASSERT_TRUE(x >= -0.125f && x <= 0.125f) << x;
}

TEST_F(Init, UniformMatchesTheStream) {
  DLK_TRACE_SEED();
  for (DLDataType dt : kFloatTypes) {
    const std::int64_t n = 1001;
    const std::uint64_t seed = rng()(), offset = 6;
    Tensor t(ctx, {7, 11, 13}, dt);
    t.poison();
    dlk_init_params p = init_params(DLK_INIT_UNIFORM, seed, offset);
    p.a = -3.0;
    p.b = 5.0;
    ASSERT_EQ(dlk_init(ctx, &p, &t.t), DLK_SUCCESS) << dlk_last_error();
    std::vector<double> ref(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i)
      ref[i] = -3.0 + 8.0 * static_cast<double>(philox_at(seed, offset + i) >> 8) / 16777216.0;
    SCOPED_TRACE(dtype_str(dt));
    EXPECT_CLOSE(t.get(), ref, tolerance(dt));
  }
}

TEST_F(Init, NormalKaimingXavierAndTruncatedStatistics) {
  DLK_TRACE_SEED();
  const bool emu = backend() == DLK_DEVICE_EMU;
  const std::int64_t rows = emu ? 64 : 256, cols = 200;  // fan_in = cols, fan_out = rows
  const double n = static_cast<double>(rows * cols);
  struct Case {
    dlk_init_kind kind;
    double mean, sd;  // expected
    double bound;     // > 0: uniform in [-bound, bound]
    const char* name;
  };
  const double g_relu = std::sqrt(2.0), g_tanh = 5.0 / 3.0;
  std::vector<std::pair<Case, std::function<void(dlk_init_params&)>>> cases = {
      {{DLK_INIT_NORMAL, 2.0, 3.0, 0, "normal(2, 3)"},
       [](dlk_init_params& p) {
         p.mean = 2.0;
         p.std = 3.0;
       }},
      {{DLK_INIT_KAIMING_NORMAL, 0, g_relu / std::sqrt(rows), 0, "kaiming_normal relu fan_out"},
       [](dlk_init_params& p) {
         p.mode = DLK_FAN_OUT;
         p.nonlinearity = DLK_NONLINEARITY_RELU;
       }},
      {{DLK_INIT_KAIMING_UNIFORM, 0, 0, std::sqrt(2.0 / 1.04) * std::sqrt(3.0 / cols), "kaiming_uniform leaky 0.2"},
       [](dlk_init_params& p) { p.negative_slope = 0.2; }},
      {{DLK_INIT_XAVIER_UNIFORM, 0, 0, g_tanh * std::sqrt(6.0 / (rows + cols)), "xavier_uniform tanh gain"},
       [g_tanh](dlk_init_params& p) { p.gain = g_tanh; }},
      {{DLK_INIT_XAVIER_NORMAL, 0, 0.5 * std::sqrt(2.0 / (rows + cols)), 0, "xavier_normal gain 0.5"},
       [](dlk_init_params& p) { p.gain = 0.5; }},
  };
  for (auto& [c, set] : cases) {
    SCOPED_TRACE(c.name);
    Tensor t(ctx, {rows, cols}, f32());
    t.poison();
    dlk_init_params p = init_params(c.kind, rng()(), rng()() >> 16);
    set(p);
    ASSERT_EQ(dlk_init(ctx, &p, &t.t), DLK_SUCCESS) << dlk_last_error();
    const std::vector<float> v = t.get();
    ASSERT_TRUE(all_finite(v));
    double sd = c.sd;
    if (c.bound > 0) {
      sd = c.bound / std::sqrt(3.0);
      for (float x : v) ASSERT_TRUE(x >= -c.bound - 1e-6 && x <= c.bound + 1e-6) << x;
    }
    EXPECT_NEAR(mean_of(v), c.mean, 5.0 * sd / std::sqrt(n));
    EXPECT_NEAR(std::sqrt(var_of(v)), sd, 0.05 * sd);
  }
  // Truncated N(1, 2) cut to [0, 3]: inside the cuts, mean 1 + 2 (phi(-1/2) - phi(1)) / (Phi(1) - Phi(-1/2)).
  Tensor t(ctx, {rows, cols}, f32());
  dlk_init_params p = init_params(DLK_INIT_TRUNC_NORMAL, rng()());
  p.mean = 1.0;
  p.std = 2.0;
  p.a = 0.0;
  p.b = 3.0;
  ASSERT_EQ(dlk_init(ctx, &p, &t.t), DLK_SUCCESS) << dlk_last_error();
  const std::vector<float> v = t.get();
  auto phi = [](double x) { return std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI); };
  auto Phi = [](double x) { return 0.5 * (1 + std::erf(x / std::sqrt(2.0))); };
  const double Z = Phi(1.0) - Phi(-0.5), mu = 1.0 + 2.0 * (phi(-0.5) - phi(1.0)) / Z;
  for (float x : v) ASSERT_TRUE(x >= 0.0f && x <= 3.0f) << x;
  EXPECT_NEAR(mean_of(v), mu, 5.0 * 0.9 / std::sqrt(n));
}

TEST_F(Init, OffsetsShiftTheStreamAndDifferentOffsetsDiffer) {
  DLK_TRACE_SEED();
  for (dlk_init_kind kind : {DLK_INIT_UNIFORM, DLK_INIT_NORMAL, DLK_INIT_TRUNC_NORMAL}) {
    const std::int64_t n = 203, k = 5;
    const std::uint64_t seed = rng()();
    Tensor a(ctx, {n}, f32()), b(ctx, {n - k}, f32()), c(ctx, {n}, f32());
    dlk_init_params p = init_params(kind, seed, 40);
    ASSERT_EQ(dlk_init(ctx, &p, &a.t), DLK_SUCCESS) << dlk_last_error();
    p.offset = 40 + k;
    ASSERT_EQ(dlk_init(ctx, &p, &b.t), DLK_SUCCESS) << dlk_last_error();
    p.offset = 40 + n;
    ASSERT_EQ(dlk_init(ctx, &p, &c.t), DLK_SUCCESS) << dlk_last_error();
    const std::vector<float> av = a.get(), bv = b.get(), cv = c.get();
    EXPECT_TRUE(std::equal(bv.begin(), bv.end(), av.begin() + k)) << "kind " << kind;
    std::size_t same = 0;
    for (std::size_t i = 0; i < av.size(); ++i) same += av[i] == cv[i];
    EXPECT_LT(same, 3u) << "a different offset draws different values";
  }
}

TEST(InitBackends, CpuAndEmuAreBitwiseIdentical) {
  DLK_TRACE_SEED();
  CpuEmu b;
  if (!b.ok()) GTEST_SKIP() << "needs both the cpu and the emu backend";
  for (dlk_init_kind kind : {DLK_INIT_UNIFORM, DLK_INIT_NORMAL, DLK_INIT_TRUNC_NORMAL, DLK_INIT_KAIMING_NORMAL,
                             DLK_INIT_XAVIER_UNIFORM, DLK_INIT_LINEAR_WEIGHT})
    for (DLDataType dt : kFloatTypes) {
      const std::uint64_t seed = rng()(), offset = rng()() >> 12;
      std::vector<float> got[2];
      int k = 0;
      for (Context* c : {&b.cpu, &b.emu}) {
        Tensor t(*c, {33, 31}, dt);
        t.poison();
        dlk_init_params p = init_params(kind, seed, offset);
        ASSERT_EQ(dlk_init(*c, &p, &t.t), DLK_SUCCESS) << dlk_last_error();
        got[k++] = t.get();
      }
      EXPECT_TRUE(all_finite(got[0]));
      EXPECT_TRUE(bitwise_equal(got[0], got[1])) << "kind " << kind << " " << dtype_str(dt);
    }
}

TEST(InitHelpers, FansAndGainsFollowTorch) {
  const std::int64_t conv[] = {16, 3, 5, 5}, linear[] = {128, 64};
  std::int64_t fi = 0, fo = 0;
  ASSERT_EQ(dlk_init_fans(4, conv, &fi, &fo), DLK_SUCCESS);
  EXPECT_EQ(fi, 75);
  EXPECT_EQ(fo, 400);
  ASSERT_EQ(dlk_init_fans(2, linear, &fi, &fo), DLK_SUCCESS);
  EXPECT_EQ(fi, 64);
  EXPECT_EQ(fo, 128);
  EXPECT_EQ(dlk_init_fans(1, linear, &fi, &fo), DLK_ERROR_SHAPE);
  EXPECT_TRUE(has_substr(dlk_last_error(), "rank 1")) << dlk_last_error();
  double g = 0;
  ASSERT_EQ(dlk_init_gain(DLK_NONLINEARITY_RELU, 0, &g), DLK_SUCCESS);
  EXPECT_DOUBLE_EQ(g, std::sqrt(2.0));
  ASSERT_EQ(dlk_init_gain(DLK_NONLINEARITY_TANH, 0, &g), DLK_SUCCESS);
  EXPECT_DOUBLE_EQ(g, 5.0 / 3.0);
  ASSERT_EQ(dlk_init_gain(DLK_NONLINEARITY_LEAKY_RELU, 0.01, &g), DLK_SUCCESS);
  EXPECT_DOUBLE_EQ(g, std::sqrt(2.0 / (1.0 + 0.0001)));
  ASSERT_EQ(dlk_init_gain(DLK_NONLINEARITY_SELU, 0, &g), DLK_SUCCESS);
  EXPECT_DOUBLE_EQ(g, 0.75);
  EXPECT_EQ(dlk_init_gain(static_cast<dlk_nonlinearity>(17), 0, &g), DLK_ERROR_INVALID_ARGUMENT);
}

TEST_F(Init, ConstantAndEmpty) {
  Tensor t(ctx, {3, 7}, bf16()), e(ctx, {0, 4}, f32());
  t.poison();
  dlk_init_params p = init_params(DLK_INIT_CONSTANT, 0);
  p.a = 0.5;
  ASSERT_EQ(dlk_init(ctx, &p, &t.t), DLK_SUCCESS) << dlk_last_error();
  EXPECT_EQ(t.get(), std::vector<float>(21, 0.5f));
  p.kind = DLK_INIT_KAIMING_UNIFORM;
  EXPECT_EQ(dlk_init(ctx, &p, &e.t), DLK_SUCCESS) << dlk_last_error();
}

TEST_F(Init, RejectsBadInputs) {
  Tensor v(ctx, {10}, f32()), m(ctx, {4, 5}, f32()), i(ctx, {4, 5}, i32());
  m.set(std::vector<float>(20, 5.0f));
  dlk_init_params p = init_params(DLK_INIT_KAIMING_UNIFORM, 1);
  EXPECT_EQ(dlk_init(ctx, &p, &v.t), DLK_ERROR_SHAPE);
  EXPECT_TRUE(has_substr(dlk_last_error(), "rank 1")) << dlk_last_error();
  EXPECT_EQ(dlk_init(ctx, &p, &i.t), DLK_ERROR_DTYPE);
  p = init_params(DLK_INIT_UNIFORM, 1);
  p.a = 2;
  p.b = 1;
  EXPECT_EQ(dlk_init(ctx, &p, &m.t), DLK_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(has_substr(dlk_last_error(), "params->a")) << dlk_last_error();
  p = init_params(DLK_INIT_NORMAL, 1);
  p.std = NAN;
  EXPECT_EQ(dlk_init(ctx, &p, &m.t), DLK_ERROR_INVALID_ARGUMENT);
  p.std = -1;
  EXPECT_EQ(dlk_init(ctx, &p, &m.t), DLK_ERROR_INVALID_ARGUMENT);
  p = init_params(static_cast<dlk_init_kind>(42), 1);
  EXPECT_EQ(dlk_init(ctx, &p, &m.t), DLK_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(has_substr(dlk_last_error(), "params->kind is 42")) << dlk_last_error();
  p = init_params(DLK_INIT_LINEAR_BIAS, 1);
  EXPECT_EQ(dlk_init(ctx, &p, &m.t), DLK_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(has_substr(dlk_last_error(), "fan_in")) << dlk_last_error();
  p = init_params(DLK_INIT_KAIMING_NORMAL, 1);
  p.mode = static_cast<dlk_fan_mode>(3);
  EXPECT_EQ(dlk_init(ctx, &p, &m.t), DLK_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(m.get(), std::vector<float>(20, 5.0f)) << "output written by a rejected call";
}

}  // namespace
}  // namespace dlk::test
