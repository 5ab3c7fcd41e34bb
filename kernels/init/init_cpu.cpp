// CPU reference of initialisation, and the fallback without a GPU: one Philox block per four consecutive elements,
// the value of each from init_value (the same expression the CUDA kernel evaluates), OpenMP over blocks.
#include <cstdint>

#include "common/host.h"
#include "init/init.h"

namespace dlk::cpu {
namespace {

template <typename T>
void fill(const InitArgs& a, const Exec& exec) {
  T* out = static_cast<T*>(a.data);
  const std::uint64_t first = a.offset >> 2, last = (a.offset + static_cast<std::uint64_t>(a.n) - 1) >> 2;
  const std::int64_t blocks = static_cast<std::int64_t>(last - first + 1);
#pragma omp parallel for num_threads(host::threads(exec, a.n, host::kUncapped, 16384)) schedule(static)
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
      host::store(out, static_cast<std::int64_t>(i), v[lane]);
    }
  }
}

}  // namespace

void init_fill(const InitArgs& a, const Exec& exec) {
  if (a.n == 0) return;
  host::with_type(a.dtype, "init", [&](auto tag) { fill<decltype(tag)>(a, exec); });
}

}  // namespace dlk::cpu
