// CPU reference of dropout, and the fallback without a GPU. Elements are walked in Philox blocks of four stream
// positions (one philox4x32_10 per four elements, as the CUDA kernel does); OpenMP splits the blocks.
#include <cstdint>

#include "common/host.h"
#include "common/philox.h"
#include "dropout/dropout.h"

namespace dlk::cpu {
namespace {

// Below this much work a call runs on one thread.
constexpr std::int64_t kMinWork = 65536;

template <typename T>
void run(const DropoutArgs& a, const Exec& exec) {
  const T* in = static_cast<const T*>(a.in);
  T* out = static_cast<T*>(a.out);
  const std::int64_t n = a.n;
  if (a.identity || a.mask_in) {
#pragma omp parallel for num_threads(host::threads(exec, n, host::kUncapped, kMinWork)) schedule(static)
    for (std::int64_t i = 0; i < n; ++i) {
      const bool keep = a.identity || a.mask_in[i] != 0;
      host::store(out, i, keep ? host::load(in, i) * a.scale : 0.0f);
      if (a.mask_out) a.mask_out[i] = keep ? 1 : 0;
    }
    return;
  }
  // Stream positions offset .. offset + n - 1 lie in Philox blocks first .. last.
  const std::uint64_t first = a.offset >> 2, last = (a.offset + static_cast<std::uint64_t>(n) - 1) >> 2;
  const std::int64_t blocks = static_cast<std::int64_t>(last - first + 1);
#pragma omp parallel for num_threads(host::threads(exec, n, host::kUncapped, kMinWork)) schedule(static)
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
      host::store(out, k, keep ? host::load(in, k) * a.scale : 0.0f);
      if (a.mask_out) a.mask_out[k] = keep ? 1 : 0;
    }
  }
}

}  // namespace

void dropout(const DropoutArgs& a, const Exec& exec) {
  if (a.n == 0) return;
  host::with_type(a.dtype, "dropout", [&](auto tag) { run<decltype(tag)>(a, exec); });
}

}  // namespace dlk::cpu
