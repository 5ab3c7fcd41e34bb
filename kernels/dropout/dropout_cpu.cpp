// CPU reference of dropout, and the fallback without a GPU. Elements are walked in Philox blocks of four stream
// positions (one philox4x32_10 per four elements, as the CUDA kernel does); OpenMP splits the blocks.
#include <omp.h>

#include <cstdint>

#include "common/half.h"
#include "common/philox.h"
#include "dropout/dropout.h"
#include "runtime/error.h"

namespace dlk::cpu {
namespace {

inline float load(const float* p, std::int64_t i) { return p[i]; }
inline void store(float* p, std::int64_t i, float v) { p[i] = v; }

struct F16 {
  std::uint16_t bits;
};
struct BF16 {
  std::uint16_t bits;
};
inline float load(const F16* p, std::int64_t i) { return fp16_to_float(p[i].bits); }
inline float load(const BF16* p, std::int64_t i) { return bf16_to_float(p[i].bits); }
inline void store(F16* p, std::int64_t i, float v) { p[i].bits = float_to_fp16(v); }
inline void store(BF16* p, std::int64_t i, float v) { p[i].bits = float_to_bf16(v); }

int threads_for(const Exec& exec, std::int64_t n) {
  int nt = exec.num_threads > 0 ? exec.num_threads : omp_get_max_threads();
  if (n < 65536) nt = 1;
  return nt < 1 ? 1 : nt;
}

template <typename T>
void run(const DropoutArgs& a, const Exec& exec) {
  const T* in = static_cast<const T*>(a.in);
  T* out = static_cast<T*>(a.out);
  const std::int64_t n = a.n;
  if (a.identity || a.mask_in) {
#pragma omp parallel for num_threads(threads_for(exec, n)) schedule(static)
    for (std::int64_t i = 0; i < n; ++i) {
      const bool keep = a.identity || a.mask_in[i] != 0;
      store(out, i, keep ? load(in, i) * a.scale : 0.0f);
      if (a.mask_out) a.mask_out[i] = keep ? 1 : 0;
    }
    return;
  }
  // Stream positions offset .. offset + n - 1 lie in Philox blocks first .. last.
  const std::uint64_t first = a.offset >> 2, last = (a.offset + static_cast<std::uint64_t>(n) - 1) >> 2;
  const std::int64_t blocks = static_cast<std::int64_t>(last - first + 1);
#pragma omp parallel for num_threads(threads_for(exec, n)) schedule(static)
  for (std::int64_t b = 0; b < blocks; ++b) {
    const std::uint64_t g = first + static_cast<std::uint64_t>(b);
    const Philox4 r = philox_block(a.seed, g);
    for (unsigned lane = 0; lane < 4; ++lane) {
      const std::uint64_t pos = 4 * g + lane;
      if (pos < a.offset) continue;
      const std::uint64_t i = pos - a.offset;
      if (i >= static_cast<std::uint64_t>(n)) break;
      const bool keep = dropout_keep(r.v[lane], a.keep_threshold);
      const std::int64_t k = static_cast<std::int64_t>(i);
      store(out, k, keep ? load(in, k) * a.scale : 0.0f);
      if (a.mask_out) a.mask_out[k] = keep ? 1 : 0;
    }
  }
}

}  // namespace

void dropout(const DropoutArgs& a, const Exec& exec) {
  if (a.n == 0) return;
  switch (a.dtype) {
    case DType::F32: run<float>(a, exec); break;
    case DType::F16: run<F16>(a, exec); break;
    case DType::BF16: run<BF16>(a, exec); break;
    default: fail(DLK_ERROR_DTYPE, "dropout: cpu backend got dtype ", dtype_name(a.dtype));
  }
}

}  // namespace dlk::cpu
