// CPU reference of initialisation, and the fallback without a GPU: one Philox block per four consecutive elements,
// the value of each from init_value (the same expression the CUDA kernel evaluates), OpenMP over blocks.
#include <omp.h>

#include <cstdint>

#include "common/half.h"
#include "init/init.h"
#include "runtime/error.h"

namespace dlk::cpu {
namespace {

inline void store(float* p, std::int64_t i, float v) { p[i] = v; }
struct F16 {
  std::uint16_t bits;
};
struct BF16 {
  std::uint16_t bits;
};
inline void store(F16* p, std::int64_t i, float v) { p[i].bits = float_to_fp16(v); }
inline void store(BF16* p, std::int64_t i, float v) { p[i].bits = float_to_bf16(v); }

template <typename T>
void fill(const InitArgs& a, const Exec& exec) {
  T* out = static_cast<T*>(a.data);
  const std::uint64_t first = a.offset >> 2, last = (a.offset + static_cast<std::uint64_t>(a.n) - 1) >> 2;
  const std::int64_t blocks = static_cast<std::int64_t>(last - first + 1);
  int nt = exec.num_threads > 0 ? exec.num_threads : omp_get_max_threads();
  if (a.n < 16384) nt = 1;
#pragma omp parallel for num_threads(nt < 1 ? 1 : nt) schedule(static)
  for (std::int64_t b = 0; b < blocks; ++b) {
    const std::uint64_t g = first + static_cast<std::uint64_t>(b);
    const Philox4 r = a.dist == InitDist::Constant ? Philox4{} : philox_block(a.seed, g);
    float v[4];
    init_block(a, r, v);
    for (unsigned lane = 0; lane < 4; ++lane) {
      const std::uint64_t pos = 4 * g + lane;
      if (pos < a.offset) continue;
      const std::uint64_t i = pos - a.offset;
      if (i >= static_cast<std::uint64_t>(a.n)) break;
      store(out, static_cast<std::int64_t>(i), v[lane]);
    }
  }
}

}  // namespace

void init_fill(const InitArgs& a, const Exec& exec) {
  if (a.n == 0) return;
  switch (a.dtype) {
    case DType::F32: fill<float>(a, exec); break;
    case DType::F16: fill<F16>(a, exec); break;
    case DType::BF16: fill<BF16>(a, exec); break;
    default: fail(DLK_ERROR_DTYPE, "init: cpu backend got dtype ", dtype_name(a.dtype));
  }
}

}  // namespace dlk::cpu
