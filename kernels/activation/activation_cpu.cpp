// CPU reference of the activations, and the fallback on machines without a GPU: one fp32 loop per call over the
// flat tensor, split across OpenMP threads, calling the per-element math of activation.h with the kind fixed at
// compile time. Element i is read before it is written, so every in-place form (y = x, dx = dy, dx = saved) is safe.
#include <cstdint>
#include <type_traits>

#include "activation/activation.h"
#include "common/host.h"

namespace dlk::cpu {
namespace {

// Below this much work a call runs on one thread.
constexpr std::int64_t kMinWork = 65536;

// The kind as a template argument: each instantiation is one loop without the per-element switch, vectorised
// (the transcendentals are common/cpu_math.h's, plain arithmetic).
template <int kKind, typename T>
void forward_loop(const ActivationForwardArgs& a, int nt) {
  const T* x = static_cast<const T*>(a.x);
  T* y = static_cast<T*>(a.y);
  const float slope = a.slope, alpha = a.alpha;
#pragma omp parallel for simd num_threads(nt) schedule(static)
  for (std::int64_t i = 0; i < a.n; ++i) host::put(y + i, activation_value(kKind, host::to_f(x[i]), slope, alpha));
}

// `from_output` is a template argument too: as a runtime flag inside the loop GCC keeps tanh and sigmoid
// backward scalar (4x slower than the forward).
template <int kKind, bool kFromOutput, typename T>
void backward_loop(const ActivationBackwardArgs& a, int nt) {
  const T* s = static_cast<const T*>(a.saved);
  const T* dy = static_cast<const T*>(a.dy);
  T* dx = static_cast<T*>(a.dx);
  const float slope = a.slope, alpha = a.alpha;
#pragma omp parallel for simd num_threads(nt) schedule(static)
  for (std::int64_t i = 0; i < a.n; ++i)
    host::put(dx + i, activation_grad(kKind, host::to_f(s[i]), host::to_f(dy[i]), kFromOutput, slope, alpha));
}

// Calls f(std::integral_constant<int, kind>{}).
template <typename F>
void with_kind(int kind, F&& f) {
  switch (kind) {
    case DLK_ACTIVATION_RELU: f(std::integral_constant<int, DLK_ACTIVATION_RELU>{}); break;
    case DLK_ACTIVATION_LEAKY_RELU: f(std::integral_constant<int, DLK_ACTIVATION_LEAKY_RELU>{}); break;
    case DLK_ACTIVATION_ELU: f(std::integral_constant<int, DLK_ACTIVATION_ELU>{}); break;
    case DLK_ACTIVATION_GELU: f(std::integral_constant<int, DLK_ACTIVATION_GELU>{}); break;
    case DLK_ACTIVATION_GELU_TANH: f(std::integral_constant<int, DLK_ACTIVATION_GELU_TANH>{}); break;
    case DLK_ACTIVATION_TANH: f(std::integral_constant<int, DLK_ACTIVATION_TANH>{}); break;
    case DLK_ACTIVATION_SIGMOID: f(std::integral_constant<int, DLK_ACTIVATION_SIGMOID>{}); break;
    default: f(std::integral_constant<int, DLK_ACTIVATION_SILU>{}); break;
  }
}

}  // namespace

void activation_forward(const ActivationForwardArgs& a, const Exec& exec) {
  const int nt = host::threads(exec, a.n, host::kUncapped, kMinWork);
  host::with_type(a.dtype, "activation_forward", [&](auto tag) {
    with_kind(a.kind, [&](auto kind) { forward_loop<decltype(kind)::value, decltype(tag)>(a, nt); });
  });
}

void activation_backward(const ActivationBackwardArgs& a, const Exec& exec) {
  const int nt = host::threads(exec, a.n, host::kUncapped, kMinWork);
  host::with_type(a.dtype, "activation_backward", [&](auto tag) {
    with_kind(a.kind, [&](auto kind) {
      if (a.from_output)
        backward_loop<decltype(kind)::value, true, decltype(tag)>(a, nt);
      else
        backward_loop<decltype(kind)::value, false, decltype(tag)>(a, nt);
    });
  });
}

}  // namespace dlk::cpu
