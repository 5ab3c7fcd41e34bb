// CPU reference of dropout, and the fallback without a GPU. Elements are walked in Philox blocks of four stream
// positions (one philox4x32_10 per four elements, as the CUDA kernel does); OpenMP splits the blocks. The Philox
// rounds are scalar (GCC does not vectorise the 32x32->64 multiplies), so the random forms are compute bound.
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
  const float scale = a.scale;
  const int nt = host::threads(exec, n, host::kUncapped, kMinWork);
  // The mask-free and saved-mask forms: one vectorised pass each (omp simd: out may alias in element for element, and
  // the uint8 mask pointers would otherwise make the compiler assume they alias everything).
  if (a.identity || a.mask_in) {
    const std::uint8_t* mask_in = a.mask_in;
    if (a.identity) {
#pragma omp parallel for simd num_threads(nt) schedule(static)
      for (std::int64_t i = 0; i < n; ++i) host::store(out, i, host::load(in, i) * scale);
    } else {
#pragma omp parallel for simd num_threads(nt) schedule(static)
      for (std::int64_t i = 0; i < n; ++i) host::store(out, i, mask_in[i] != 0 ? host::load(in, i) * scale : 0.0f);
    }
    if (std::uint8_t* mask_out = a.mask_out) {
#pragma omp parallel for simd num_threads(nt) schedule(static)
      for (std::int64_t i = 0; i < n; ++i) mask_out[i] = a.identity || mask_in[i] != 0 ? 1 : 0;
    }
    return;
  }
  // Stream positions offset .. offset + n - 1 lie in Philox blocks first .. last.
  const std::uint64_t first = a.offset >> 2, last = (a.offset + static_cast<std::uint64_t>(n) - 1) >> 2;
  const std::int64_t blocks = static_cast<std::int64_t>(last - first + 1);
#pragma omp parallel for num_threads(nt) schedule(static)
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
      host::store(out, k, keep ? host::load(in, k) * scale : 0.0f);
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
