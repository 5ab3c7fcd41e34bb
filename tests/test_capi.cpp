// The C ABI's promises: versioning, contexts, memory, and that every bad call is rejected with the right status,
// a sentence naming the op, the argument and the expected and actual values, and untouched outputs.
#include <dlk/dlk.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"

using dlk::test::Context;
using dlk::test::Tensor;
using dlk::test::f32;

namespace {

std::string err() { return dlk_last_error(); }

// Expects `status` and a message containing every fragment.
void expect_error(dlk_status got, dlk_status want, std::initializer_list<const char*> fragments) {
  EXPECT_EQ(got, want) << dlk_status_string(got) << ": " << dlk_last_error();
  std::string m = err();
  for (const char* f : fragments) EXPECT_NE(m.find(f), std::string::npos) << "'" << f << "' not in: " << m;
}

// Bytes of a tensor as a vector, to check that failed calls left outputs untouched.
std::vector<float> snapshot(Tensor& t) { return t.get(); }

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST(Version, MacrosMatchLibrary) {
  EXPECT_EQ(dlk_version(), DLK_VERSION);
  EXPECT_EQ(DLK_VERSION, DLK_VERSION_MAJOR * 10000 + DLK_VERSION_MINOR * 100 + DLK_VERSION_PATCH);
}

TEST(Status, NamesEveryStatus) {
  EXPECT_STREQ(dlk_status_string(DLK_SUCCESS), "DLK_SUCCESS");
  EXPECT_STREQ(dlk_status_string(DLK_ERROR_DEVICE), "DLK_ERROR_DEVICE");
  EXPECT_STREQ(dlk_status_string(static_cast<dlk_status>(999)), "DLK_ERROR_UNKNOWN_STATUS");
  EXPECT_STREQ(dlk_device_name(DLK_DEVICE_EMU), "emu");
}

TEST(Context, AutoFallsBackToCpuWithoutGpu) {
  dlk_context* ctx = nullptr;
  ASSERT_EQ(dlk_context_create(nullptr, &ctx), DLK_SUCCESS) << err();
  dlk_device d = DLK_DEVICE_AUTO;
  ASSERT_EQ(dlk_context_device(ctx, &d), DLK_SUCCESS);
  EXPECT_EQ(d, dlk_cuda_device_count() > 0 ? DLK_DEVICE_CUDA : DLK_DEVICE_CPU);
  EXPECT_EQ(dlk_context_destroy(ctx), DLK_SUCCESS);
  EXPECT_EQ(dlk_context_destroy(nullptr), DLK_SUCCESS);
}

TEST(Context, CudaWithoutGpuIsNotAvailable) {
  if (dlk_cuda_device_count() > 0) GTEST_SKIP() << "a GPU is present";
  dlk_context_options o;
  dlk_context_options_init(&o);
  o.device = DLK_DEVICE_CUDA;
  dlk_context* ctx = nullptr;
  expect_error(dlk_context_create(&o, &ctx), DLK_ERROR_NOT_AVAILABLE, {"dlk_context_create", "cuda"});
  EXPECT_EQ(ctx, nullptr);
}

TEST(Context, RejectsBadOptions) {
  dlk_context_options o;
  dlk_context_options_init(&o);
  dlk_context* ctx = nullptr;
  o.device = static_cast<dlk_device>(7);
  expect_error(dlk_context_create(&o, &ctx), DLK_ERROR_INVALID_ARGUMENT, {"options->device", "7"});
  dlk_context_options_init(&o);
  o.device_index = -1;
  expect_error(dlk_context_create(&o, &ctx), DLK_ERROR_INVALID_ARGUMENT, {"device_index", "-1"});
  dlk_context_options_init(&o);
  o.struct_size = 4;
  expect_error(dlk_context_create(&o, &ctx), DLK_ERROR_INVALID_ARGUMENT, {"struct_size", "4"});
  expect_error(dlk_context_create(nullptr, nullptr), DLK_ERROR_INVALID_ARGUMENT, {"NULL"});
  EXPECT_EQ(ctx, nullptr);
}

TEST(LastError, ClearedBySuccessAndThreadLocal) {
  EXPECT_NE(dlk_softmax_forward(nullptr, nullptr, nullptr, nullptr), DLK_SUCCESS);
  EXPECT_NE(err(), "");
  std::string other = "unset";
  std::thread([&] { other = dlk_last_error(); }).join();
  EXPECT_EQ(other, "");
  dlk_softmax_params p;
  EXPECT_EQ(dlk_softmax_params_init(&p), DLK_SUCCESS);
  EXPECT_EQ(err(), "");
}

class CapiOnBackend : public ::testing::Test {
 protected:
  Context ctx;
  void SetUp() override { SKIP_IF_NO_BACKEND(ctx); }
};

TEST_F(CapiOnBackend, AllocCopyRoundTrip) {
  std::vector<float> src = dlk::test::randn(1000), back(1000, 0.0f);
  void* dev = nullptr;
  ASSERT_EQ(dlk_alloc(ctx, src.size() * 4, &dev), DLK_SUCCESS) << err();
  ASSERT_NE(dev, nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(dev) % 256, 0u);
  DLDevice host{kDLCPU, 0};
  DLDevice where = ctx.on_device() ? DLDevice{kDLCUDA, 0} : host;
  ASSERT_EQ(dlk_copy(ctx, dev, where, src.data(), host, src.size() * 4), DLK_SUCCESS) << err();
  ASSERT_EQ(dlk_copy(ctx, back.data(), host, dev, where, src.size() * 4), DLK_SUCCESS) << err();
  EXPECT_EQ(src, back);
  EXPECT_EQ(dlk_free(ctx, dev), DLK_SUCCESS);
  void* none = reinterpret_cast<void*>(1);
  EXPECT_EQ(dlk_alloc(ctx, 0, &none), DLK_SUCCESS);
  EXPECT_EQ(none, nullptr);
  expect_error(dlk_alloc(ctx, 16, nullptr), DLK_ERROR_INVALID_ARGUMENT, {"dlk_alloc", "ptr"});
  expect_error(dlk_alloc(ctx, std::numeric_limits<size_t>::max(), &dev), DLK_ERROR_OVERFLOW, {"dlk_alloc"});
  if (!ctx.on_device())
    expect_error(dlk_copy(ctx, back.data(), DLDevice{kDLCUDA, 0}, src.data(), host, 4), DLK_ERROR_DEVICE,
                 {"dlk_copy", "dst", "cuda:0"});
}

TEST_F(CapiOnBackend, SoftmaxRejectsBadArgumentsWithoutWriting) {
  Tensor x(ctx, {4, 8, 8}, f32()), y(ctx, {4, 8, 8}, f32());
  x.set(dlk::test::randn(x.numel()));
  y.set(std::vector<float>(y.numel(), 42.0f));
  const std::vector<float> before = snapshot(y);
  dlk_softmax_params p;
  dlk_softmax_params_init(&p);

  expect_error(dlk_softmax_forward(nullptr, &p, &x.t, &y.t), DLK_ERROR_INVALID_ARGUMENT, {"softmax_forward", "context"});
  expect_error(dlk_softmax_forward(ctx, &p, nullptr, &y.t), DLK_ERROR_INVALID_ARGUMENT, {"softmax_forward", "x is NULL"});
  expect_error(dlk_softmax_forward(ctx, &p, &x.t, nullptr), DLK_ERROR_INVALID_ARGUMENT, {"y is NULL"});

  // A mask that does not broadcast: the example of DESIGN.md.
  Tensor bad_mask(ctx, {4, 1, 7}, dlk::test::u8());
  bad_mask.set(std::vector<float>(bad_mask.numel(), 1.0f));
  p.mask_kind = DLK_MASK_TENSOR;
  p.mask = &bad_mask.t;
  expect_error(dlk_softmax_forward(ctx, &p, &x.t, &y.t), DLK_ERROR_SHAPE,
               {"softmax_forward", "params->mask", "[4,1,7]", "[4,8,8]"});
  p.mask = nullptr;
  expect_error(dlk_softmax_forward(ctx, &p, &x.t, &y.t), DLK_ERROR_INVALID_ARGUMENT, {"params->mask is NULL"});
  Tensor f64_mask(ctx, {8}, DLDataType{kDLFloat, 64, 1});
  p.mask = &f64_mask.t;
  expect_error(dlk_softmax_forward(ctx, &p, &x.t, &y.t), DLK_ERROR_DTYPE, {"params->mask", "float64"});

  dlk_softmax_params_init(&p);
  p.scale = NAN;
  expect_error(dlk_softmax_forward(ctx, &p, &x.t, &y.t), DLK_ERROR_INVALID_ARGUMENT, {"params->scale", "finite"});
  p.scale = INFINITY;
  expect_error(dlk_softmax_forward(ctx, &p, &x.t, &y.t), DLK_ERROR_INVALID_ARGUMENT, {"params->scale"});
  dlk_softmax_params_init(&p);
  p.mask_kind = static_cast<dlk_mask_kind>(9);
  expect_error(dlk_softmax_forward(ctx, &p, &x.t, &y.t), DLK_ERROR_INVALID_ARGUMENT, {"mask_kind", "9"});
  dlk_softmax_params_init(&p);
  p.struct_size = 3;
  expect_error(dlk_softmax_forward(ctx, &p, &x.t, &y.t), DLK_ERROR_INVALID_ARGUMENT, {"struct_size", "3"});

  // Key padding: lengths of the wrong shape and dtype.
  dlk_softmax_params_init(&p);
  p.mask_kind = DLK_MASK_KEY_PADDING;
  Tensor lengths(ctx, {3}, dlk::test::i32());
  p.lengths = &lengths.t;
  expect_error(dlk_softmax_forward(ctx, &p, &x.t, &y.t), DLK_ERROR_SHAPE, {"params->lengths", "[3]", "[4]"});
  Tensor flen(ctx, {4}, f32());
  p.lengths = &flen.t;
  expect_error(dlk_softmax_forward(ctx, &p, &x.t, &y.t), DLK_ERROR_DTYPE, {"params->lengths", "float32", "int32"});

  // Causal on rank 1.
  Tensor x1(ctx, {8}, f32()), y1(ctx, {8}, f32());
  dlk_softmax_params_init(&p);
  p.mask_kind = DLK_MASK_CAUSAL;
  expect_error(dlk_softmax_forward(ctx, &p, &x1.t, &y1.t), DLK_ERROR_SHAPE, {"causal", "rank"});

  // Shape, dtype and layout of y.
  Tensor y_bad(ctx, {4, 8, 9}, f32());
  expect_error(dlk_softmax_forward(ctx, nullptr, &x.t, &y_bad.t), DLK_ERROR_SHAPE, {"y", "[4,8,9]", "[4,8,8]"});
  Tensor y_half(ctx, {4, 8, 8}, dlk::test::f16());
  expect_error(dlk_softmax_forward(ctx, nullptr, &x.t, &y_half.t), DLK_ERROR_DTYPE, {"y", "float16", "float32"});
  Tensor x64(ctx, {4, 8}, DLDataType{kDLFloat, 64, 1}), y64(ctx, {4, 8}, DLDataType{kDLFloat, 64, 1});
  expect_error(dlk_softmax_forward(ctx, nullptr, &x64.t, &y64.t), DLK_ERROR_DTYPE, {"x", "float64"});
  std::int64_t strides[3] = {64, 1, 8};  // a transposed view
  x.t.strides = strides;
  expect_error(dlk_softmax_forward(ctx, nullptr, &x.t, &y.t), DLK_ERROR_LAYOUT, {"x must be contiguous"});
  x.t.strides = nullptr;

  // Rank 0 and a negative dim.
  DLTensor scalar = x.t;
  scalar.ndim = 0;
  expect_error(dlk_softmax_forward(ctx, nullptr, &scalar, &y.t), DLK_ERROR_SHAPE, {"x has rank 0"});
  std::int64_t neg_shape[3] = {4, -8, 8};
  DLTensor neg = x.t;
  neg.shape = neg_shape;
  expect_error(dlk_softmax_forward(ctx, nullptr, &neg, &y.t), DLK_ERROR_SHAPE, {"negative size"});

  // Sizes whose element count overflows int64.
  std::int64_t huge_shape[3] = {std::int64_t{1} << 40, std::int64_t{1} << 40, 8};
  DLTensor huge = x.t;
  huge.shape = huge_shape;
  expect_error(dlk_softmax_forward(ctx, nullptr, &huge, &y.t), DLK_ERROR_OVERFLOW, {"x", "2^63"});

  // A tensor on a device the context cannot address.
  DLTensor elsewhere = x.t;
  elsewhere.device = ctx.on_device() ? DLDevice{kDLCPU, 0} : DLDevice{kDLCUDA, 0};
  expect_error(dlk_softmax_forward(ctx, nullptr, &elsewhere, &y.t), DLK_ERROR_DEVICE, {"x is on"});

  // Partial overlap between output and input.
  Tensor big(ctx, {4 * 8 * 8 + 1}, f32());
  DLTensor xin = x.t, yout = x.t;
  xin.data = big.t.data;
  yout.data = big.t.data;
  yout.byte_offset = 4;
  expect_error(dlk_softmax_forward(ctx, nullptr, &xin, &yout), DLK_ERROR_LAYOUT, {"overlaps"});

  EXPECT_TRUE(same_bits(before, snapshot(y))) << "a rejected call wrote its output";
}

TEST_F(CapiOnBackend, SoftmaxBackwardRejectsMismatches) {
  Tensor y(ctx, {3, 5}, f32()), dy(ctx, {3, 5}, f32()), dx(ctx, {3, 6}, f32());
  expect_error(dlk_softmax_backward(ctx, nullptr, &y.t, &dy.t, &dx.t), DLK_ERROR_SHAPE,
               {"softmax_backward", "dx", "[3,6]", "[3,5]"});
  Tensor dyh(ctx, {3, 5}, dlk::test::f16()), dx2(ctx, {3, 5}, f32());
  expect_error(dlk_softmax_backward(ctx, nullptr, &y.t, &dyh.t, &dx2.t), DLK_ERROR_DTYPE, {"dy", "float16"});
}

TEST_F(CapiOnBackend, LayerNormRejectsBadArgumentsWithoutWriting) {
  Tensor x(ctx, {6, 16}, f32()), y(ctx, {6, 16}, f32());
  Tensor gamma(ctx, {15}, f32()), beta(ctx, {16}, f32()), mean(ctx, {6}, f32()), rstd(ctx, {5}, f32());
  x.set(dlk::test::randn(x.numel()));
  y.set(std::vector<float>(y.numel(), 7.0f));
  const std::vector<float> before = snapshot(y);
  dlk_layernorm_params p;
  dlk_layernorm_params_init(&p);
  expect_error(dlk_layernorm_forward(ctx, &p, &x.t, &gamma.t, &beta.t, &y.t, nullptr, nullptr), DLK_ERROR_SHAPE,
               {"layernorm_forward", "gamma", "[15]", "[16]"});
  expect_error(dlk_layernorm_forward(ctx, &p, &x.t, nullptr, nullptr, &y.t, nullptr, &rstd.t), DLK_ERROR_SHAPE,
               {"rstd", "[5]", "[6]"});
  p.eps = NAN;
  expect_error(dlk_layernorm_forward(ctx, &p, &x.t, nullptr, nullptr, &y.t, nullptr, nullptr),
               DLK_ERROR_INVALID_ARGUMENT, {"params->eps", "finite"});
  p.eps = -1.0f;
  expect_error(dlk_layernorm_forward(ctx, &p, &x.t, nullptr, nullptr, &y.t, nullptr, nullptr),
               DLK_ERROR_INVALID_ARGUMENT, {"params->eps", ">= 0"});
  dlk_layernorm_params_init(&p);
  p.normalized_ndim = 3;
  expect_error(dlk_layernorm_forward(ctx, &p, &x.t, nullptr, nullptr, &y.t, nullptr, nullptr),
               DLK_ERROR_INVALID_ARGUMENT, {"normalized_ndim", "3"});
  dlk_layernorm_params_init(&p);
  Tensor gamma_i(ctx, {16}, dlk::test::i32());
  expect_error(dlk_layernorm_forward(ctx, &p, &x.t, &gamma_i.t, nullptr, &y.t, nullptr, nullptr), DLK_ERROR_DTYPE,
               {"gamma", "int32"});
  Tensor mean_h(ctx, {6}, dlk::test::f16());
  expect_error(dlk_layernorm_forward(ctx, &p, &x.t, nullptr, nullptr, &y.t, &mean_h.t, nullptr), DLK_ERROR_DTYPE,
               {"mean", "float16"});
  EXPECT_TRUE(same_bits(before, snapshot(y))) << "a rejected call wrote its output";

  Tensor dy(ctx, {6, 16}, f32()), dx(ctx, {6, 16}, f32()), dgamma(ctx, {16}, dlk::test::f16());
  Tensor good_rstd(ctx, {6}, f32()), gamma16(ctx, {16}, f32());
  expect_error(dlk_layernorm_backward(ctx, &p, &dy.t, &x.t, nullptr, &good_rstd.t, nullptr, &dx.t, nullptr, nullptr),
               DLK_ERROR_INVALID_ARGUMENT, {"layernorm_backward", "mean is NULL"});
  expect_error(dlk_layernorm_backward(ctx, &p, &dy.t, &x.t, &mean.t, &good_rstd.t, &gamma16.t, &dx.t, &dgamma.t,
                                      nullptr),
               DLK_ERROR_DTYPE, {"dgamma", "float16"});
  expect_error(dlk_layernorm_backward(ctx, &p, &dy.t, &x.t, &mean.t, &good_rstd.t, nullptr, &x.t, nullptr, nullptr),
               DLK_ERROR_LAYOUT, {"dx aliases x"});
}

TEST_F(CapiOnBackend, ContextIsSafeToShareBetweenThreads) {
  constexpr int kThreads = 4;
  std::vector<std::thread> threads;
  std::vector<int> ok(kThreads, 0);
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      Tensor x(ctx, {16, 33}, f32()), y(ctx, {16, 33}, f32());
      std::vector<float> v(x.numel());
      for (std::size_t k = 0; k < v.size(); ++k) v[k] = static_cast<float>((k * 7 + i) % 13) * 0.1f;
      x.set(v);
      bool good = true;
      for (int r = 0; r < 10 && good; ++r) {
        good = dlk_softmax_forward(ctx, nullptr, &x.t, &y.t) == DLK_SUCCESS;
        std::vector<float> out = y.get();
        for (int row = 0; row < 16 && good; ++row) {
          double s = 0;
          for (int c = 0; c < 33; ++c) s += out[row * 33 + c];
          good = std::fabs(s - 1.0) < 1e-5;
        }
      }
      ok[i] = good;
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kThreads; ++i) EXPECT_TRUE(ok[i]) << "thread " << i;
}
