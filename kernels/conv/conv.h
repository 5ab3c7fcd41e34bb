// Internal interface of the convolution family. Everything is stated in the terms of ONE convolution, the "conv
// view": input x [N, C, H, W], weight w [K, C / groups, kh, kw], output y [N, K, OH, OW] (or NHWC). The three
// functions below are its forward, its gradient with respect to the input and with respect to the weight.
// conv_transpose2d is the same three functions with the roles swapped (capi/conv.cpp does the mapping):
//   transposed forward        = backward_data   (its x is the conv view's dy, its y the view's dx)
//   transposed backward_data  = forward         (no bias)
//   transposed backward_weight= backward_weight (with x and dy swapped)
// so one set of kernels serves both ops. OH/OW are given, never recomputed from H/W: a transposed conv with
// output_padding >= stride has a conv-view OH larger than the conv formula would give, and the kernels handle any
// (H, OH) pair by checking every tap against the bounds.
#pragma once

#include <cstdint>

#include "common/macros.h"
#include "runtime/exec.h"
#include "runtime/tensor.h"

namespace dlk {

struct ConvGeom {
  std::int64_t n = 0;                  // batch
  std::int64_t c = 0, h = 0, w = 0;    // conv-view input: channels, height, width
  std::int64_t k = 0, oh = 0, ow = 0;  // conv-view output: channels, height, width
  int kh = 1, kw = 1;                  // kernel
  int sh = 1, sw = 1;                  // stride
  int pt = 0, pl = 0;                  // top / left padding (bottom / right only shape OH / OW)
  int dh = 1, dw = 1;                  // dilation
  int groups = 1;
  bool nhwc = false;  // activation layout of x, y (weights are always [K, C/groups, kh, kw])

  DLK_HD std::int64_t cg() const { return c / groups; }  // input channels per group
  DLK_HD std::int64_t kg() const { return k / groups; }  // output channels per group
};

// One call. Pointers are typed by `dtype` (x, w, y, dy, dx, dw, bias all one dtype).
//  forward:         reads x, w, bias (per conv-view output channel, may be null), writes y
//  backward_data:   reads dy, w, bias (per conv-view INPUT channel, may be null: the transposed conv's bias), writes dx
//  backward_weight: reads x, dy, writes dw
//  bias_grad:       reads `dy` as a [N, channels, HW] (or NHWC) tensor, writes bias_grad[channels]
struct ConvArgs {
  DType dtype = DType::F32;
  ConvGeom g;
  const void* x = nullptr;
  const void* w = nullptr;
  const void* dy = nullptr;
  const void* bias = nullptr;
  void* y = nullptr;
  void* dx = nullptr;
  void* dw = nullptr;
};

// Channel sum of a [n, channels, hw] (NCHW) or [n, hw, channels] (NHWC) tensor into out[channels]: the bias
// gradient of both ops. Deterministic (fixed order) on every backend.
struct ChannelSumArgs {
  DType dtype = DType::F32;
  std::int64_t n = 0, channels = 0, hw = 0;
  bool nhwc = false;
  const void* in = nullptr;
  void* out = nullptr;
};

// PyTorch's conv output size (floor division; may be <= 0, which capi rejects).
inline std::int64_t conv_output_size(std::int64_t in, int k, int pad_lo, int pad_hi, int stride, int dil) {
  const std::int64_t num = in + pad_lo + pad_hi - static_cast<std::int64_t>(dil) * (k - 1) - 1;
  return (num >= 0 ? num / stride : -((-num + stride - 1) / stride)) + 1;
}

// PyTorch's conv_transpose output size.
inline std::int64_t conv_transpose_output_size(std::int64_t in, int k, int pad_lo, int pad_hi, int stride, int dil,
                                               int out_pad) {
  return (in - 1) * stride - pad_lo - pad_hi + static_cast<std::int64_t>(dil) * (k - 1) + out_pad + 1;
}

// FCN's bilinear filter tap i of a size-k kernel: 1 - |i - center| / factor.
inline double bilinear_tap(int i, int k) {
  const int factor = (k + 1) / 2;
  const double center = k % 2 == 1 ? factor - 1.0 : factor - 0.5;
  const double d = i - center;
  return 1.0 - (d < 0 ? -d : d) / factor;
}

namespace cpu {
void conv2d_forward(const ConvArgs& a, const Exec& exec);
void conv2d_backward_data(const ConvArgs& a, const Exec& exec);
void conv2d_backward_weight(const ConvArgs& a, const Exec& exec);
void conv_channel_sum(const ChannelSumArgs& a, const Exec& exec);
// The direct-loop reference (fp64 accumulation); conv2d_* use it for depthwise and small problems.
void conv2d_forward_direct(const ConvArgs& a, const Exec& exec);
void conv2d_backward_data_direct(const ConvArgs& a, const Exec& exec);
void conv2d_backward_weight_direct(const ConvArgs& a, const Exec& exec);
}  // namespace cpu
namespace cuda {
void conv2d_forward(const ConvArgs& a, const Exec& exec);
void conv2d_backward_data(const ConvArgs& a, const Exec& exec);
void conv2d_backward_weight(const ConvArgs& a, const Exec& exec);
void conv_channel_sum(const ChannelSumArgs& a, const Exec& exec);
}  // namespace cuda
namespace emu {
void conv2d_forward(const ConvArgs& a, const Exec& exec);
void conv2d_backward_data(const ConvArgs& a, const Exec& exec);
void conv2d_backward_weight(const ConvArgs& a, const Exec& exec);
void conv_channel_sum(const ChannelSumArgs& a, const Exec& exec);
}  // namespace emu

}  // namespace dlk
