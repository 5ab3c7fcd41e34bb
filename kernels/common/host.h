// Host-side helpers shared by the cpu backends (kernels/<op>/*_cpu.cpp): the storage types of float16/bfloat16
// tensors and their conversion to and from float (round to nearest even, common/half.h), the dtype dispatch that
// instantiates a loop per storage type, and the OpenMP thread-count rule. Plain C++ and OpenMP: CPU only, so .cu
// files (nvcc and the emu build) do not include it. Everything is inline, so loops under `#pragma omp simd` that call
// these still vectorise.
#pragma once

#include <omp.h>

#include <cstdint>
#include <limits>

#include "common/half.h"
#include "runtime/error.h"
#include "runtime/exec.h"
#include "runtime/tensor.h"

namespace dlk::host {

// Storage of one float16 / bfloat16 element: distinct types, so overloads and templates tell them apart.
struct F16 {
  std::uint16_t bits;
};
struct BF16 {
  std::uint16_t bits;
};

// One element as float, and a float stored rounded into one element.
inline float to_f(float v) { return v; }
inline float to_f(F16 v) { return fp16_to_float(v.bits); }
inline float to_f(BF16 v) { return bf16_to_float(v.bits); }
inline void put(float* p, float v) { *p = v; }
inline void put(F16* p, float v) { p->bits = float_to_fp16(v); }
inline void put(BF16* p, float v) { p->bits = float_to_bf16(v); }

// The same, indexed: p[i] as float, and p[i] = v rounded.
inline float load(const float* p, std::int64_t i) { return p[i]; }
inline float load(const F16* p, std::int64_t i) { return to_f(p[i]); }
inline float load(const BF16* p, std::int64_t i) { return to_f(p[i]); }
inline void store(float* p, std::int64_t i, float v) { p[i] = v; }
inline void store(F16* p, std::int64_t i, float v) { put(p + i, v); }
inline void store(BF16* p, std::int64_t i, float v) { put(p + i, v); }

// Calls f(T{}) with T the host storage type of `dtype` (float, F16 or BF16); any other dtype fails naming `op`.
template <typename F>
void with_type(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::F32: f(float{}); break;
    case DType::F16: f(F16{}); break;
    case DType::BF16: f(BF16{}); break;
    default: fail(DLK_ERROR_DTYPE, op, ": cpu backend got dtype ", dtype_name(dtype));
  }
}

// `items` for a loop whose thread count needs no cap.
inline constexpr std::int64_t kUncapped = std::numeric_limits<std::int64_t>::max();

// Threads for a parallel region doing `work` element operations over `items` independent items: the context's
// num_threads when set (else OpenMP's default), 1 when work < min_work (too little to amortise starting a team), and
// never more than items (an idle thread would only cost its start). Always >= 1.
inline int threads(const Exec& exec, std::int64_t work, std::int64_t items = kUncapped, std::int64_t min_work = 32768) {
  int nt = exec.num_threads > 0 ? exec.num_threads : omp_get_max_threads();
  if (work < min_work) nt = 1;
  if (nt > items) nt = static_cast<int>(items);
  return nt < 1 ? 1 : nt;
}

}  // namespace dlk::host
