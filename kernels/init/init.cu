// CUDA kernel of initialisation. A thread owns one Philox block (four consecutive stream positions = four elements)
// per grid-stride step and writes the values init_value gives, the expression the cpu reference evaluates. Write
// bound (one store per element) plus 10 Philox rounds per four elements. Limits: any size.
#include "runtime/kernel.h"
//
#include <cstdint>

#include "common/convert.cuh"
#include "common/philox.h"
#include "init/init.h"

namespace dlk::DLK_KNS {
namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kMaxBlocks = 65535;

template <typename T>
__global__ void __launch_bounds__(kThreads) init_fill_kernel(T* out, InitArgs a, std::int64_t blocks) {
  const std::uint64_t first = a.offset >> 2;
  for (std::int64_t b = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < blocks;
       b += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::uint64_t g = first + static_cast<std::uint64_t>(b);
    const Philox4 r = a.dist == InitDist::Constant ? Philox4{} : philox_block(a.seed, g);
    float v[4];
    init_block(a, r, v);
#pragma unroll
    for (unsigned lane = 0; lane < 4; ++lane) {
      const std::uint64_t pos = 4 * g + lane;
      if (pos < a.offset || pos - a.offset >= static_cast<std::uint64_t>(a.n)) continue;
      out[pos - a.offset] = from_float<T>(v[lane]);
    }
  }
}

}  // namespace

void init_fill(const InitArgs& a, const Exec& exec) {
  if (a.n == 0) return;
  const std::uint64_t first = a.offset >> 2, last = (a.offset + static_cast<std::uint64_t>(a.n) - 1) >> 2;
  const std::int64_t blocks = static_cast<std::int64_t>(last - first + 1);
  std::int64_t grid = (blocks + kThreads - 1) / kThreads;
  grid = grid > kMaxBlocks ? kMaxBlocks : grid;
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    launch("init_fill_kernel", init_fill_kernel<T>, dim3(static_cast<unsigned>(grid)), dim3(kThreads), 0, exec,
           static_cast<T*>(a.data), a, blocks);
  });
}

}  // namespace dlk::DLK_KNS
