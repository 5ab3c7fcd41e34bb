// CUDA kernels of the activations (forward and backward) and their launchers.
//
// Memory bound: one read of x (forward) or of the saved tensor and dy (backward), one write, so the goal is copy
// bandwidth. Each thread moves 16-byte packs (4 fp32 or 8 fp16/bf16 values) whenever every pointer is 16-byte
// aligned, else single elements; the per-element math is activation.h's, in fp32. The kind is a runtime switch
// taken once per pack: uniform across the grid, so it costs no divergence, and one kernel per dtype and pack width
// serves all eight kinds.
#include "runtime/kernel.h"
//
#include <cstdint>

#include "activation/activation.h"
#include "common/convert.cuh"
#include "common/vec.cuh"

namespace dlk::DLK_KNS {
namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kMaxBlocks = 8192;  // grid-stride beyond this: ~8 resident blocks per SM on 132 SMs, x8

bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

dim3 grid_for(std::int64_t work) {
  std::int64_t blocks = (work + kThreads - 1) / kThreads;
  if (blocks < 1) blocks = 1;
  return dim3(static_cast<unsigned>(blocks < kMaxBlocks ? blocks : kMaxBlocks));
}

// Forward. A thread owns packs i, i + stride, ... of kPack consecutive elements (grid stride over n / kPack packs);
// the n % kPack tail elements go one each to the first threads of the grid. Traffic: n reads + n writes of T.
// Limits: kPack > 1 needs x and y 16-byte aligned; y may equal x (each element is read before it is written by the
// same thread).
template <typename T, int kPack>
__global__ void __launch_bounds__(kThreads)
    activation_forward_kernel(const T* x, T* y, std::int64_t n, int kind, float slope, float alpha) {
  const std::int64_t tid = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const std::int64_t packs = n / kPack;
  for (std::int64_t p = tid; p < packs; p += stride) {
    float v[kPack];
    load_floats<T, kPack>(x + p * kPack, v);
#pragma unroll
    for (int e = 0; e < kPack; ++e) v[e] = activation_value(kind, v[e], slope, alpha);
    store_floats<T, kPack>(y + p * kPack, v);
  }
  const std::int64_t tail = packs * kPack + tid;
  if (tail < n) y[tail] = from_float<T>(activation_value(kind, to_float<T>(x[tail]), slope, alpha));
}

// Backward, laid out as the forward: dx = dy * act'(saved). Traffic: 2n reads + n writes of T. dx may equal dy or
// saved.
template <typename T, int kPack>
__global__ void __launch_bounds__(kThreads)
    activation_backward_kernel(const T* saved, const T* dy, T* dx, std::int64_t n, int kind, bool from_output,
                               float slope, float alpha) {
  const std::int64_t tid = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const std::int64_t packs = n / kPack;
  for (std::int64_t p = tid; p < packs; p += stride) {
    float s[kPack], g[kPack];
    load_floats<T, kPack>(saved + p * kPack, s);
    load_floats<T, kPack>(dy + p * kPack, g);
#pragma unroll
    for (int e = 0; e < kPack; ++e) g[e] = activation_grad(kind, s[e], g[e], from_output, slope, alpha);
    store_floats<T, kPack>(dx + p * kPack, g);
  }
  const std::int64_t tail = packs * kPack + tid;
  if (tail < n)
    dx[tail] = from_float<T>(
        activation_grad(kind, to_float<T>(saved[tail]), to_float<T>(dy[tail]), from_output, slope, alpha));
}

}  // namespace

void activation_forward(const ActivationForwardArgs& a, const Exec& exec) {
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int kVec = 16 / sizeof(T);
    const T* x = static_cast<const T*>(a.x);
    T* y = static_cast<T*>(a.y);
    if (aligned16(x) && aligned16(y))
      launch("activation_forward_kernel", activation_forward_kernel<T, kVec>, grid_for(a.n / kVec + kVec),
             dim3(kThreads), 0, exec, x, y, a.n, a.kind, a.slope, a.alpha);
    else
      launch("activation_forward_kernel", activation_forward_kernel<T, 1>, grid_for(a.n), dim3(kThreads), 0, exec, x, y,
             a.n, a.kind, a.slope, a.alpha);
  });
}

void activation_backward(const ActivationBackwardArgs& a, const Exec& exec) {
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int kVec = 16 / sizeof(T);
    const T* s = static_cast<const T*>(a.saved);
    const T* dy = static_cast<const T*>(a.dy);
    T* dx = static_cast<T*>(a.dx);
    if (aligned16(s) && aligned16(dy) && aligned16(dx))
      launch("activation_backward_kernel", activation_backward_kernel<T, kVec>, grid_for(a.n / kVec + kVec),
             dim3(kThreads), 0, exec, s, dy, dx, a.n, a.kind, a.from_output, a.slope, a.alpha);
    else
      launch("activation_backward_kernel", activation_backward_kernel<T, 1>, grid_for(a.n), dim3(kThreads), 0, exec, s,
             dy, dx, a.n, a.kind, a.from_output, a.slope, a.alpha);
  });
}

}  // namespace dlk::DLK_KNS
