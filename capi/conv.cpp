// C ABI of the convolution family (conv2d and conv_transpose2d, forward and both backwards, FCN's bilinear weight
// initialiser): validate every argument with PyTorch's checks and output-size formulas, map the call onto the one
// "conv view" the kernels implement (kernels/conv/conv.h), dispatch.
#include "conv/conv.h"

#include <dlk/dlk.h>

#include <cstring>
#include <string>
#include <vector>

#include "capi/dispatch.h"
#include "capi/guard.h"
#include "capi/validate.h"
#include "common/half.h"
#include "runtime/context.h"
#include "runtime/device.h"

namespace dlk {
namespace {

const std::initializer_list<DType> kFloatTypes = {DType::F32, DType::F16, DType::BF16};

// Reads and checks the params (NULL: defaults). `transposed` allows output_padding.
dlk_conv2d_params read_params(const Check& check, const dlk_conv2d_params* params, bool transposed) {
  dlk_conv2d_params p;
  dlk_conv2d_params_init(&p);
  if (params) {
    check.params_size(params->struct_size, sizeof(dlk_conv2d_params), "params");
    std::memcpy(&p, params, sizeof(p));
  }
  if (p.stride[0] <= 0 || p.stride[1] <= 0)
    check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->stride should be greater than zero, but got (", p.stride[0], ", ",
               p.stride[1], ")");
  if (p.dilation[0] <= 0 || p.dilation[1] <= 0)
    check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->dilation should be greater than zero, but got (", p.dilation[0],
               ", ", p.dilation[1], ")");
  for (int i = 0; i < 4; ++i)
    if (p.padding[i] < 0)
      check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->padding (top, bottom, left, right) should be >= 0, but got (",
                 p.padding[0], ", ", p.padding[1], ", ", p.padding[2], ", ", p.padding[3], ")");
  if (p.groups <= 0)
    check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->groups should be greater than zero, but got ", p.groups);
  const int layout = enum_value(p.layout);
  if (layout != DLK_CONV_NCHW && layout != DLK_CONV_NHWC)
    check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->layout is ", layout,
               ", expected DLK_CONV_NCHW (0) or "
               "DLK_CONV_NHWC (1)");
  if (!transposed) {
    if (p.output_padding[0] != 0 || p.output_padding[1] != 0)
      check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->output_padding is (", p.output_padding[0], ", ",
                 p.output_padding[1], "), expected (0, 0): output_padding belongs to the transposed convolution");
  } else {
    for (int a = 0; a < 2; ++a) {
      const int limit = p.stride[a] > p.dilation[a] ? p.stride[a] : p.dilation[a];
      if (p.output_padding[a] < 0 || p.output_padding[a] >= limit)
        check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->output_padding[", a, "] is ", p.output_padding[a],
                   ", expected >= 0 and smaller than either stride or dilation (stride ", p.stride[a], ", dilation ",
                   p.dilation[a], ")");
    }
  }
  return p;
}

// An activation tensor: rank 4, contiguous, float. Returns (N, C, H, W) in logical order whatever the layout.
struct Act {
  std::int64_t n, c, h, w;
};
Act check_act(const Check& check, const DLTensor* t, const char* name, bool nhwc) {
  check.contiguous(t, name, 4, 4);
  check.dtype_in(t, name, kFloatTypes);
  if (nhwc) return Act{t->shape[0], t->shape[3], t->shape[1], t->shape[2]};
  return Act{t->shape[0], t->shape[1], t->shape[2], t->shape[3]};
}

std::string act_string(const Act& a, bool nhwc) {
  auto s = [](std::int64_t v) { return std::to_string(v); };
  return nhwc ? "[" + s(a.n) + "," + s(a.h) + "," + s(a.w) + "," + s(a.c) + "] (NHWC)"
              : "[" + s(a.n) + "," + s(a.c) + "," + s(a.h) + "," + s(a.w) + "] (NCHW)";
}

void check_act_shape(const Check& check, const DLTensor* t, const char* name, const Act& want, bool nhwc,
                     const char* what) {
  const Act got = check_act(check, t, name, nhwc);
  if (got.n != want.n || got.c != want.c || got.h != want.h || got.w != want.w)
    check.fail(DLK_ERROR_SHAPE, name, " has shape ", shape_string(t), ", expected ", act_string(want, nhwc), " (", what,
               ")");
}

// Any byte in common between an output and another tensor of the call is an error: no conv runs in place.
void no_overlap(const Check& check, const DLTensor* out, const char* on, const DLTensor* other,
                const char* other_name) {
  if (!out || !other) return;
  const char* o = static_cast<const char*>(data_of(out));
  const char* i = static_cast<const char*>(data_of(other));
  const std::size_t ob = static_cast<std::size_t>(numel(out)) * dtype_size(dtype_of(out->dtype));
  const std::size_t ib = static_cast<std::size_t>(numel(other)) * dtype_size(dtype_of(other->dtype));
  if (ob == 0 || ib == 0) return;
  if (o < i + ib && i < o + ob)
    check.fail(DLK_ERROR_LAYOUT, on, " overlaps ", other_name, "; convolution outputs may not alias any argument");
}

void check_bias(const Check& check, const DLTensor* bias, const char* name, std::int64_t channels, const DLTensor* like,
                const char* what) {
  check.contiguous(bias, name, 1, 1);
  check.same_dtype(like, "x", bias, name);
  if (bias->shape[0] != channels)
    check.fail(DLK_ERROR_SHAPE, name, " has shape ", shape_string(bias), ", expected [", channels, "] (", what, ")");
}

// The whole geometry of one call. For a conv, the view is the call itself; for a transposed conv, the view's input
// is the transposed output (channels C_out, size H_out) and the view's output the transposed input.
struct Setup {
  ConvGeom g;
  Act in, out;  // the op's own input and output activations (logical NCHW order)
  std::int64_t w_shape[4];
};

// Checks x and w and computes the op's output size. `x` is the op's input (for backward_data: the shape of dx).
Setup setup(const Check& check, const dlk_conv2d_params& p, bool transposed, const Act& x, const DLTensor* w,
            const char* x_name, const char* w_name) {
  check.contiguous(w, w_name, 4, 4);
  check.dtype_in(w, w_name, kFloatTypes);
  const bool nhwc = enum_value(p.layout) == DLK_CONV_NHWC;
  const std::int64_t g = p.groups;
  if (x.c < 1) check.fail(DLK_ERROR_SHAPE, x_name, " has ", x.c, " channels, expected at least 1");
  if (x.c % g != 0)
    check.fail(DLK_ERROR_SHAPE, x_name, " has ", x.c, " channels, which groups = ", g, " does not divide");
  const std::int64_t kh = w->shape[2], kw = w->shape[3];
  if (kh < 1 || kw < 1)
    check.fail(DLK_ERROR_SHAPE, w_name, " has shape ", shape_string(w), ": the kernel size must be at least 1x1");
  if (kh > (1 << 20) || kw > (1 << 20))
    check.fail(DLK_ERROR_OVERFLOW, w_name, " has shape ", shape_string(w),
               ": kernel sizes above 2^20 are not supported");
  Setup s;
  s.in = x;
  s.out.n = x.n;
  if (!transposed) {
    const std::int64_t k = w->shape[0];
    if (k < 1 || k % g != 0)
      check.fail(DLK_ERROR_SHAPE, w_name, " has shape ", shape_string(w), ": its out_channels ", k,
                 " must be a positive multiple of groups = ", g);
    if (w->shape[1] != x.c / g)
      check.fail(DLK_ERROR_SHAPE, w_name, " has shape ", shape_string(w), ", expected [", k, ",", x.c / g, ",", kh, ",",
                 kw, "]: ", x_name, " has ", x.c, " channels and groups = ", g,
                 " (weight dim 1 = in_channels / groups)");
    s.out.c = k;
    s.out.h = conv_output_size(x.h, static_cast<int>(kh), p.padding[0], p.padding[1], p.stride[0], p.dilation[0]);
    s.out.w = conv_output_size(x.w, static_cast<int>(kw), p.padding[2], p.padding[3], p.stride[1], p.dilation[1]);
  } else {
    if (w->shape[0] != x.c || w->shape[1] < 1)
      check.fail(DLK_ERROR_SHAPE, w_name, " has shape ", shape_string(w), ", expected [", x.c, ",out_channels/groups,",
                 kh, ",", kw, "]: ", x_name, " has ", x.c, " channels (transposed weight dim 0 = in_channels)");
    s.out.c = w->shape[1] * g;
    s.out.h = conv_transpose_output_size(x.h, static_cast<int>(kh), p.padding[0], p.padding[1], p.stride[0],
                                         p.dilation[0], p.output_padding[0]);
    s.out.w = conv_transpose_output_size(x.w, static_cast<int>(kw), p.padding[2], p.padding[3], p.stride[1],
                                         p.dilation[1], p.output_padding[1]);
  }
  if (x.h < 1 || x.w < 1)
    check.fail(DLK_ERROR_SHAPE, x_name, " has shape ", act_string(x, nhwc), ": H and W must be at least 1");
  if (s.out.h < 1 || s.out.w < 1)
    check.fail(DLK_ERROR_SHAPE, "given input size (", x.h, "x", x.w, ") with padding (", p.padding[0], ",",
               p.padding[1], ",", p.padding[2], ",", p.padding[3], "), kernel (", kh, "x", kw, "), dilation (",
               p.dilation[0], ",", p.dilation[1], ") and stride (", p.stride[0], ",", p.stride[1],
               transposed ? "), the calculated transposed output size (" : "), the calculated output size (", s.out.h,
               "x", s.out.w, ") is too small");
  // Element counts must fit int64 with room for the kernels' index arithmetic (checked products).
  const std::int64_t limit = std::int64_t(1) << 62;
  auto mul_ok = [&](std::int64_t a, std::int64_t b) { return a == 0 || b <= limit / a; };
  if (!mul_ok(s.out.n, s.out.c) || !mul_ok(s.out.n * s.out.c, s.out.h) || !mul_ok(s.out.n * s.out.c * s.out.h, s.out.w))
    check.fail(DLK_ERROR_OVERFLOW, "the output size ", act_string(s.out, nhwc), " does not fit in 64 bits");
  for (int d = 0; d < 4; ++d) s.w_shape[d] = w->shape[d];
  // The conv view.
  const Act& vin = transposed ? s.out : s.in;
  const Act& vout = transposed ? s.in : s.out;
  ConvGeom& v = s.g;
  v.n = x.n;
  v.c = vin.c;
  v.h = vin.h;
  v.w = vin.w;
  v.k = vout.c;
  v.oh = vout.h;
  v.ow = vout.w;
  v.kh = static_cast<int>(kh);
  v.kw = static_cast<int>(kw);
  v.sh = p.stride[0];
  v.sw = p.stride[1];
  v.pt = p.padding[0];
  v.pl = p.padding[2];
  v.dh = p.dilation[0];
  v.dw = p.dilation[1];
  v.groups = p.groups;
  v.nhwc = nhwc;
  // The GEMM depth of every direction (channels per group times taps) is indexed with 32-bit ints in the kernels.
  const std::int64_t depth_in = v.c / v.groups * kh * kw, depth_out = v.k / v.groups * kh * kw;
  if (depth_in > 0x7fffffff || depth_out > 0x7fffffff)
    check.fail(DLK_ERROR_OVERFLOW, "channels per group times kernel taps (", depth_in, " and ", depth_out,
               ") must stay below 2^31");
  return s;
}

enum class Dir { Forward, BackwardData, BackwardWeight };

// Runs one entry point. For forward: a = x, b = w, out = y. backward_data: a = dy, b = w, out = dx.
// backward_weight: a = x, b = dy, out = dw, out2 = dbias.
void run(const char* op, dlk_context* ctx, const Exec& exec, const dlk_conv2d_params* params, bool transposed, Dir dir,
         const DLTensor* a, const DLTensor* b, const DLTensor* bias, DLTensor* out, DLTensor* out2) {
  Check check(op, ctx);
  const dlk_conv2d_params p = read_params(check, params, transposed);
  const bool nhwc = enum_value(p.layout) == DLK_CONV_NHWC;
  const char* a_name = dir == Dir::BackwardData ? "dy" : "x";
  const char* out_name = dir == Dir::Forward ? "y" : dir == Dir::BackwardData ? "dx" : "dw";
  ConvArgs args;
  Setup s;
  if (dir == Dir::Forward) {
    const Act x = check_act(check, a, "x", nhwc);
    check.same_dtype(a, "x", b, "w");
    s = setup(check, p, transposed, x, b, "x", "w");
    if (bias) check_bias(check, bias, "bias", s.out.c, a, "out_channels");
    check_act_shape(check, out, "y", s.out, nhwc,
                    transposed ? "the transposed convolution's output size" : "the convolution's output size");
    check.same_dtype(a, "x", out, "y");
  } else if (dir == Dir::BackwardData) {
    // dx is the op's input: its shape defines the geometry; dy must match the output computed from it.
    const Act dx = check_act(check, out, "dx", nhwc);
    check.same_dtype(out, "dx", b, "w");
    s = setup(check, p, transposed, dx, b, "dx", "w");
    check_act_shape(check, a, "dy", s.out, nhwc, "the output size computed from dx");
    check.same_dtype(out, "dx", a, "dy");
  } else {
    const Act x = check_act(check, a, "x", nhwc);
    check.contiguous(out, "dw", 4, 4);
    check.same_dtype(a, "x", out, "dw");
    s = setup(check, p, transposed, x, out, "x", "dw");
    check_act_shape(check, b, "dy", s.out, nhwc, "the output size computed from x and dw");
    check.same_dtype(a, "x", b, "dy");
    if (out2) check_bias(check, out2, "dbias", s.out.c, a, "out_channels");
  }
  no_overlap(check, out, out_name, a, a_name);
  no_overlap(check, out, out_name, b, dir == Dir::BackwardWeight ? "dy" : "w");
  if (bias) no_overlap(check, out, out_name, bias, "bias");
  if (out2) {
    no_overlap(check, out2, "dbias", a, "x");
    no_overlap(check, out2, "dbias", b, "dy");
    no_overlap(check, out2, "dbias", out, "dw");
  }
  args.dtype = dtype_of(a->dtype);
  args.g = s.g;
  const Exec& e = exec;
  if (dir == Dir::Forward) {
    if (s.g.n == 0) return;
    if (!transposed) {
      args.x = data_of(a), args.w = data_of(b), args.bias = data_of(bias), args.y = data_of(out);
      DLK_DISPATCH(conv2d_forward, args, e);
    } else {  // transposed forward = the view's backward_data with the bias per view-input channel
      args.dy = data_of(a), args.w = data_of(b), args.bias = data_of(bias), args.dx = data_of(out);
      DLK_DISPATCH(conv2d_backward_data, args, e);
    }
  } else if (dir == Dir::BackwardData) {
    if (s.g.n == 0) return;
    if (!transposed) {
      args.dy = data_of(a), args.w = data_of(b), args.dx = data_of(out);
      DLK_DISPATCH(conv2d_backward_data, args, e);
    } else {  // transposed backward_data = the view's forward without bias (dy is the view's x)
      args.x = data_of(a), args.w = data_of(b), args.y = data_of(out);
      DLK_DISPATCH(conv2d_forward, args, e);
    }
  } else {
    // The view's x is the op's x (conv) or the op's dy (transposed), and the view's dy the other one. An empty batch
    // still writes zeros: the kernels treat n == 0 as an empty reduction.
    args.x = data_of(transposed ? b : a);
    args.dy = data_of(transposed ? a : b);
    args.dw = data_of(out);
    DLK_DISPATCH(conv2d_backward_weight, args, e);
    if (out2) {
      ChannelSumArgs cs;
      cs.dtype = args.dtype;
      cs.n = s.g.n;
      cs.channels = s.out.c;
      cs.hw = s.out.h * s.out.w;
      cs.nhwc = nhwc;
      cs.in = data_of(b);
      cs.out = data_of(out2);
      DLK_DISPATCH(conv_channel_sum, cs, e);
    }
  }
}

}  // namespace
}  // namespace dlk

extern "C" {

DLK_API dlk_status dlk_conv2d_params_init(dlk_conv2d_params* params) {
  return dlk::guard("dlk_conv2d_params_init", [&] {
    if (!params) dlk::fail(DLK_ERROR_INVALID_ARGUMENT, "dlk_conv2d_params_init: params is NULL");
    std::memset(params, 0, sizeof(*params));
    params->struct_size = sizeof(*params);
    params->stride[0] = params->stride[1] = 1;
    params->dilation[0] = params->dilation[1] = 1;
    params->groups = 1;
    params->layout = DLK_CONV_NCHW;
  });
}

DLK_API dlk_status dlk_conv2d_forward(dlk_context* context, const dlk_conv2d_params* params, const DLTensor* x,
                                      const DLTensor* w, const DLTensor* bias, DLTensor* y) {
  return dlk::with_context("conv2d_forward", context, [&](const dlk::Exec& exec) {
    dlk::run("conv2d_forward", context, exec, params, false, dlk::Dir::Forward, x, w, bias, y, nullptr);
  });
}

DLK_API dlk_status dlk_conv2d_backward_data(dlk_context* context, const dlk_conv2d_params* params, const DLTensor* dy,
                                            const DLTensor* w, DLTensor* dx) {
  return dlk::with_context("conv2d_backward_data", context, [&](const dlk::Exec& exec) {
    dlk::run("conv2d_backward_data", context, exec, params, false, dlk::Dir::BackwardData, dy, w, nullptr, dx, nullptr);
  });
}

DLK_API dlk_status dlk_conv2d_backward_weight(dlk_context* context, const dlk_conv2d_params* params, const DLTensor* x,
                                              const DLTensor* dy, DLTensor* dw, DLTensor* dbias) {
  return dlk::with_context("conv2d_backward_weight", context, [&](const dlk::Exec& exec) {
    dlk::run("conv2d_backward_weight", context, exec, params, false, dlk::Dir::BackwardWeight, x, dy, nullptr, dw,
             dbias);
  });
}

DLK_API dlk_status dlk_conv_transpose2d_forward(dlk_context* context, const dlk_conv2d_params* params,
                                                const DLTensor* x, const DLTensor* w, const DLTensor* bias,
                                                DLTensor* y) {
  return dlk::with_context("conv_transpose2d_forward", context, [&](const dlk::Exec& exec) {
    dlk::run("conv_transpose2d_forward", context, exec, params, true, dlk::Dir::Forward, x, w, bias, y, nullptr);
  });
}

DLK_API dlk_status dlk_conv_transpose2d_backward_data(dlk_context* context, const dlk_conv2d_params* params,
                                                      const DLTensor* dy, const DLTensor* w, DLTensor* dx) {
  return dlk::with_context("conv_transpose2d_backward_data", context, [&](const dlk::Exec& exec) {
    dlk::run("conv_transpose2d_backward_data", context, exec, params, true, dlk::Dir::BackwardData, dy, w, nullptr, dx,
             nullptr);
  });
}

DLK_API dlk_status dlk_conv_transpose2d_backward_weight(dlk_context* context, const dlk_conv2d_params* params,
                                                        const DLTensor* x, const DLTensor* dy, DLTensor* dw,
                                                        DLTensor* dbias) {
  return dlk::with_context("conv_transpose2d_backward_weight", context, [&](const dlk::Exec& exec) {
    dlk::run("conv_transpose2d_backward_weight", context, exec, params, true, dlk::Dir::BackwardWeight, x, dy, nullptr,
             dw, dbias);
  });
}

DLK_API dlk_status dlk_init_bilinear_upsampling(dlk_context* context, int groups, DLTensor* w) {
  using namespace dlk;
  return with_context("init_bilinear_upsampling", context, [&](const Exec& exec) {
    Check check("init_bilinear_upsampling", context);
    const DType dt = check.contiguous(w, "w", 4, 4);
    check.dtype_in(w, "w", kFloatTypes);
    if (groups <= 0) check.fail(DLK_ERROR_INVALID_ARGUMENT, "groups should be greater than zero, but got ", groups);
    const std::int64_t cin = w->shape[0], cout_g = w->shape[1], kh = w->shape[2], kw = w->shape[3];
    if (cin % groups != 0)
      check.fail(DLK_ERROR_SHAPE, "w has shape ", shape_string(w), ": its in_channels ", cin,
                 " are not divisible by groups = ", groups);
    if (kh < 1 || kw < 1 || kh > (1 << 20) || kw > (1 << 20))
      check.fail(DLK_ERROR_SHAPE, "w has shape ", shape_string(w), ": kernel sizes must be in [1, 2^20]");
    const std::int64_t n = numel(w);
    if (n == 0) return;
    const std::int64_t cin_g = cin / groups;
    const std::size_t esize = dtype_size(dt);
    std::vector<unsigned char> host(static_cast<std::size_t>(n) * esize);
    for (std::int64_t a = 0; a < cin; ++a)
      for (std::int64_t b = 0; b < cout_g; ++b)
        for (std::int64_t i = 0; i < kh; ++i)
          for (std::int64_t j = 0; j < kw; ++j) {
            const bool on = cout_g == 1 || a % cin_g == b;
            const float v = on ? static_cast<float>(bilinear_tap(static_cast<int>(i), static_cast<int>(kh)) *
                                                    bilinear_tap(static_cast<int>(j), static_cast<int>(kw)))
                               : 0.0f;
            const std::size_t e = static_cast<std::size_t>(((a * cout_g + b) * kh + i) * kw + j);
            if (dt == DType::F32) {
              std::memcpy(&host[e * 4], &v, 4);
            } else {
              const std::uint16_t bits = dt == DType::F16 ? float_to_fp16(v) : float_to_bf16(v);
              std::memcpy(&host[e * 2], &bits, 2);
            }
          }
    if (exec.backend == Backend::Cuda) {
      device::memcpy_async(data_of(w), host.data(), host.size(), 1, exec.stream);
      device::stream_synchronize(exec.stream);
    } else {
      std::memcpy(data_of(w), host.data(), host.size());
    }
  });
}

}  // extern "C"
