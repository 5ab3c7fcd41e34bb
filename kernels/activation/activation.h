// Internal interface of the activations. capi/elementwise.cpp validates and fills these structs; the three
// backends (cpu reference, cuda, emu) implement the two functions. The per-element math lives here once, as DLK_HD
// functions in fp32 that the CPU loop and the CUDA kernels both call, so the backends agree to the rounding of
// expf/tanhf/erfcf on the device and common/cpu_math.h on the cpu backend (act_math below); the tests check it
// against an independent fp64 reference.
#pragma once

#include <dlk/dlk.h>

#include <cmath>
#include <cstdint>

#include "common/macros.h"
#if !defined(__CUDACC__) && !defined(DLK_EMU)
#include "common/cpu_math.h"
#endif
#include "runtime/exec.h"
#include "runtime/tensor.h"

namespace dlk {

struct ActivationForwardArgs {
  DType dtype = DType::F32;  // of x and y
  std::int64_t n = 0;
  int kind = DLK_ACTIVATION_RELU;
  float slope = 0.01f;  // LeakyReLU
  float alpha = 1.0f;   // ELU
  const void* x = nullptr;
  void* y = nullptr;  // may equal x
};

struct ActivationBackwardArgs {
  DType dtype = DType::F32;  // of saved, dy and dx
  std::int64_t n = 0;
  int kind = DLK_ACTIVATION_RELU;
  float slope = 0.01f;
  float alpha = 1.0f;
  const void* saved = nullptr;  // x, or y when from_output
  bool from_output = false;     // saved holds the forward's output y
  const void* dy = nullptr;
  void* dx = nullptr;  // may equal dy or saved
};

// The transcendentals of the formulas below: CUDA's on the device (and in the emulator, which runs the device code),
// the vectorisable ones of common/cpu_math.h on the cpu backend (libm's are scalar calls GCC will not vectorise).
namespace act_math {
#if defined(__CUDACC__) || defined(DLK_EMU)
DLK_HD float exp(float x) { return expf(x); }
DLK_HD float expm1(float x) { return expm1f(x); }
DLK_HD float tanh(float x) { return tanhf(x); }
DLK_HD float erfc(float x) { return erfcf(x); }
#else
inline float exp(float x) { return vmath::exp(x); }
inline float expm1(float x) { return vmath::expm1(x); }
inline float tanh(float x) { return vmath::tanh(x); }
inline float erfc(float x) { return vmath::erfc(x); }
#endif
}  // namespace act_math

// y = act(x), PyTorch's formulas in fp32.
DLK_HD float activation_value(int kind, float x, float slope, float alpha) {
  switch (kind) {
    case DLK_ACTIVATION_RELU: return x <= 0.0f ? 0.0f : x;  // NaN fails the compare and stays NaN
    case DLK_ACTIVATION_LEAKY_RELU: return x > 0.0f ? x : x * slope;
    case DLK_ACTIVATION_ELU: return x > 0.0f ? x : alpha * act_math::expm1(x);
    case DLK_ACTIVATION_GELU: return 0.5f * x * act_math::erfc(x * -0.70710678118654752f);
    case DLK_ACTIVATION_GELU_TANH: {
      const float inner = 0.7978845608028654f * (x + 0.044715f * x * x * x);
      return 0.5f * x * (1.0f + act_math::tanh(inner));
    }
    case DLK_ACTIVATION_TANH: return act_math::tanh(x);
    case DLK_ACTIVATION_SIGMOID: return 1.0f / (1.0f + act_math::exp(-x));
    default: return x / (1.0f + act_math::exp(-x));  // SILU
  }
}

// dx = dy * act'(.), from the saved input x (from_output false) or output y (true), as ATen computes it.
DLK_HD float activation_grad(int kind, float s, float dy, bool from_output, float slope, float alpha) {
  switch (kind) {
    case DLK_ACTIVATION_RELU: return s > 0.0f ? dy : 0.0f;
    case DLK_ACTIVATION_LEAKY_RELU: return s > 0.0f ? dy : dy * slope;
    case DLK_ACTIVATION_ELU:
      if (from_output) return s <= 0.0f ? dy * (s + alpha) : dy;
      return s <= 0.0f ? dy * alpha * act_math::exp(s) : dy;
    case DLK_ACTIVATION_GELU: {
      const float cdf = 0.5f * act_math::erfc(s * -0.70710678118654752f);
      const float pdf = 0.3989422804014327f * act_math::exp(-0.5f * s * s);
      return dy * (cdf + s * pdf);
    }
    case DLK_ACTIVATION_GELU_TANH: {
      const float kBeta = 0.7978845608028654f, kKappa = 0.044715f;
      const float x2 = s * s;
      const float t = act_math::tanh(kBeta * (s + kKappa * x2 * s));
      const float left = 0.5f * s, right = 1.0f + t;
      const float dleft = 0.5f * right;
      const float dright = left * (1.0f - t * t) * kBeta * (1.0f + 3.0f * kKappa * x2);
      return dy * (dleft + dright);
    }
    case DLK_ACTIVATION_TANH: {
      const float y = from_output ? s : act_math::tanh(s);
      return dy * (1.0f - y * y);
    }
    case DLK_ACTIVATION_SIGMOID: {
      const float y = from_output ? s : 1.0f / (1.0f + act_math::exp(-s));
      return dy * (1.0f - y) * y;
    }
    default: {  // SILU
      const float sg = 1.0f / (1.0f + act_math::exp(-s));
      return dy * sg * (1.0f + s * (1.0f - sg));
    }
  }
}

namespace cpu {
void activation_forward(const ActivationForwardArgs& a, const Exec& exec);
void activation_backward(const ActivationBackwardArgs& a, const Exec& exec);
}  // namespace cpu
namespace cuda {
void activation_forward(const ActivationForwardArgs& a, const Exec& exec);
void activation_backward(const ActivationBackwardArgs& a, const Exec& exec);
}  // namespace cuda
namespace emu {
void activation_forward(const ActivationForwardArgs& a, const Exec& exec);
void activation_backward(const ActivationBackwardArgs& a, const Exec& exec);
}  // namespace emu

}  // namespace dlk
