// The NMS pipeline on the GPU (semantics in nms.h). Built by nvcc into dlk::cuda and against the emulator into
// dlk::emu. Nothing leaves the device: the candidate count, the sorted order, the suppression mask and the result
// count all live in device memory, and every launch is sized from the host-known N (kernels read the real candidate
// count m from device memory and exit early).
//
//  1. (batched only) nms_max_coord_kernel: max over all 4N coordinates, block max + one atomicMax per block on an
//     order-preserving integer encoding of the float.
//  2. nms_keys_kernel: one thread per box: sort key (nms_sort_key; boxes below the score threshold get key 0, which
//     sorts after every candidate) and value = index; candidates counted with an integer atomicAdd.
//  3. Sort by key, descending and STABLE (equal keys keep ascending indices): cub::DeviceRadixSort::SortPairsDescending
//     on cuda. CUB cannot be compiled for the emulator, so its emulated sibling is std::stable_sort on the host over
//     the same keys, which yields the identical permutation.
//  4. nms_gather_kernel: the first m = min(count, top_k) boxes in sorted order, offset by category, into a compact
//     float4 array.
//  5. nms_mask_kernel (torchvision's scheme): block (row block, column block) of 64 threads; the block stages its 64
//     column boxes in shared memory, thread r compares its row box with them and writes one 64-bit word whose bit c
//     says "IoU(row, col) > threshold" (only columns after the row). Blocks left of the diagonal do nothing: the walk
//     never reads them. Traffic: m * ceil(m / 64) / 2 words written, each box read ~m/64 times from L2.
//  6. nms_walk_kernel: ONE block walks the mask: `removed` (ceil(m/64) words) lives in shared memory. Per 64-box
//     block: every thread settles the block's boxes in order from its `removed` word and the diagonal mask words
//     (uniform work, no barrier), then the threads write the kept indices and OR the kept boxes' mask rows into the
//     later words in parallel, one barrier per 64 boxes (not per kept box). Writes keep, the -1 tail and the count.
// Limits: m <= 2^31 - 1; the mask needs m * ceil(m / 64) * 8 bytes of workspace (1.25 GB at m = 100k) and `removed`
// ceil(m / 64) * 8 bytes of shared memory (m <= 1.8M).
// clang-format off
#include "runtime/kernel.h"  // first: it picks the nvcc or the emulator build
// clang-format on

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "common/grid.cuh"
#include "nms/nms.h"

#if defined(__CUDACC__)
#include <cub/device/device_radix_sort.cuh>
#endif

namespace dlk::DLK_KNS {
namespace {

constexpr int kThreads = 256;
constexpr int kBoxesPerWord = 64;
constexpr int kWalkThreads = 512;
constexpr std::int64_t kMaxWalkWords = 227 * 1024 / 8;

// Order-preserving encoding of a float as unsigned (for atomicMax) and back.
__device__ __forceinline__ unsigned float_order(float f) {
  const unsigned u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float order_float(unsigned u) {
  return __uint_as_float((u & 0x80000000u) ? (u & 0x7fffffffu) : ~u);
}

// The state the pipeline keeps in the workspace.
struct NmsState {
  int* count;           // candidates passing the score threshold
  unsigned* max_coord;  // float_order of the max coordinate (batched)
  unsigned* keys_in;
  unsigned* keys_out;
  int* vals_in;
  int* vals_out;
  float4* sorted;            // [n] boxes in sorted order (first m valid)
  unsigned long long* mask;  // [n, words]
  std::int64_t words;        // ceil(n / 64)
};

__global__ void nms_clear_kernel(NmsState s) {
  if (global_id() == 0) {
    *s.count = 0;
    *s.max_coord = 0u;
  }
}

__global__ void nms_max_coord_kernel(const float* boxes, std::int64_t total, NmsState s) {
  unsigned m = 0u;
  for (std::int64_t e = global_id(); e < total; e += grid_step()) {
    const unsigned v = float_order(boxes[e]);
    m = v > m ? v : m;
  }
  DLK_SHARED(unsigned, part, kThreads);
  part[threadIdx.x] = m;
  __syncthreads();
  for (int h = kThreads / 2; h > 0; h >>= 1) {
    if (static_cast<int>(threadIdx.x) < h && part[threadIdx.x + h] > part[threadIdx.x])
      part[threadIdx.x] = part[threadIdx.x + h];
    __syncthreads();
  }
  if (threadIdx.x == 0) atomicMax(s.max_coord, part[0]);
}

__global__ void nms_keys_kernel(NmsArgs a, NmsState s) {
  int passed = 0;
  for (std::int64_t i = global_id(); i < a.n; i += grid_step()) {
    const float sc = a.scores[i];
    const bool pass = nms_passes(sc, a.score_threshold);
    s.keys_in[i] = pass ? nms_sort_key(sc) : 0u;
    s.vals_in[i] = static_cast<int>(i);
    passed += pass ? 1 : 0;
  }
  if (passed) atomicAdd(s.count, passed);
}

__device__ __forceinline__ std::int64_t candidates(const NmsArgs& a, const NmsState& s) {
  std::int64_t m = *s.count;
  if (a.top_k > 0 && a.top_k < m) m = a.top_k;
  return m;
}

__global__ void nms_gather_kernel(NmsArgs a, NmsState s) {
  const std::int64_t m = candidates(a, s);
  const float mc = a.idxs ? order_float(*s.max_coord) : 0.0f;
  for (std::int64_t p = global_id(); p < m; p += grid_step()) {
    float b[4];
    nms_box(a, s.vals_out[p], mc, b);
    s.sorted[p] = make_float4(b[0], b[1], b[2], b[3]);
  }
}

__global__ void nms_mask_kernel(NmsArgs a, NmsState s) {
  const std::int64_t m = candidates(a, s);
  const std::int64_t row_block = blockIdx.y, col_block = blockIdx.x;
  if (col_block < row_block || row_block * kBoxesPerWord >= m) return;  // uniform per block
  DLK_SHARED(float4, cols, kBoxesPerWord);
  const std::int64_t col0 = col_block * kBoxesPerWord, row0 = row_block * kBoxesPerWord;
  const int ncols = static_cast<int>(m - col0 < kBoxesPerWord ? m - col0 : kBoxesPerWord);
  const int t = static_cast<int>(threadIdx.x);
  if (t < ncols) cols[t] = s.sorted[col0 + t];
  __syncthreads();
  const std::int64_t row = row0 + t;
  if (row >= m || ncols <= 0) return;
  const float4 rb = s.sorted[row];
  const float r[4] = {rb.x, rb.y, rb.z, rb.w};
  const float ra = box_area(r);
  unsigned long long bits = 0ull;
  for (int c = row_block == col_block ? t + 1 : 0; c < ncols; ++c) {
    const float4 cb = cols[c];
    const float q[4] = {cb.x, cb.y, cb.z, cb.w};
    if (static_cast<double>(box_iou_of(r, ra, q, box_area(q))) > a.iou_threshold) bits |= 1ull << c;
  }
  s.mask[row * s.words + col_block] = bits;
}

__global__ void nms_walk_kernel(NmsArgs a, NmsState s) {
  DLK_DYNAMIC_SHARED(unsigned long long, removed);
  const std::int64_t m = candidates(a, s);
  const std::int64_t words = (m + kBoxesPerWord - 1) / kBoxesPerWord;
  const int t = static_cast<int>(threadIdx.x), nt = static_cast<int>(blockDim.x);
  for (std::int64_t j = t; j < words; j += nt) removed[j] = 0ull;
  __syncthreads();
  std::int64_t kept = 0;
  for (std::int64_t wb = 0; wb < words; ++wb) {
    // Settle the 64 boxes of this block in order. Every thread does it (same reads, same result: uniform), using
    // only the diagonal words of the mask, which hold the suppressions inside the block.
    unsigned long long word = removed[wb], kept_bits = 0ull;
    const int nbox = static_cast<int>(m - wb * kBoxesPerWord < kBoxesPerWord ? m - wb * kBoxesPerWord : kBoxesPerWord);
    for (int ib = 0; ib < nbox; ++ib) {
      if ((word >> ib) & 1ull) continue;
      kept_bits |= 1ull << ib;
      word |= s.mask[(wb * kBoxesPerWord + ib) * s.words + wb];
    }
    // The block's kept boxes, in order, to keep[]; their mask rows ORed into the later words.
    for (int ib = t; ib < nbox; ib += nt)
      if ((kept_bits >> ib) & 1ull)
        a.keep[kept + __popcll(kept_bits & ((1ull << ib) - 1ull))] = s.vals_out[wb * kBoxesPerWord + ib];
    for (std::int64_t j = wb + 1 + t; j < words; j += nt) {
      unsigned long long acc = removed[j];
      for (unsigned long long bits = kept_bits; bits; bits &= bits - 1ull) {
        const int ib = __ffsll(static_cast<long long>(bits)) - 1;
        acc |= s.mask[(wb * kBoxesPerWord + ib) * s.words + j];
      }
      removed[j] = acc;
    }
    kept += __popcll(kept_bits);
    __syncthreads();  // the later words are final before the next block reads its own
  }
  for (std::int64_t i = kept + t; i < a.n; i += nt) a.keep[i] = -1;
  if (t == 0) *a.count = kept;
}

std::size_t align_up(std::size_t v) { return (v + 255) / 256 * 256; }

#if defined(__CUDACC__)
void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail(DLK_ERROR_DEVICE_FAILURE, "nms: ", what, ": ", cudaGetErrorString(e));
}
#endif

}  // namespace

void nms(const NmsArgs& a, const Exec& exec) {
  const std::int64_t n = a.n;
  const std::int64_t words = (n + kBoxesPerWord - 1) / kBoxesPerWord;
  if (words > kMaxWalkWords)
    fail(DLK_ERROR_OVERFLOW, "nms: ", n, " boxes: the mask walk holds at most ", kMaxWalkWords * kBoxesPerWord,
         " in shared memory");
  std::size_t sort_bytes = 0;
#if defined(__CUDACC__)
  check_cuda(cub::DeviceRadixSort::SortPairsDescending(
                 nullptr, sort_bytes, static_cast<const unsigned*>(nullptr), static_cast<unsigned*>(nullptr),
                 static_cast<const int*>(nullptr), static_cast<int*>(nullptr), static_cast<int>(n), 0, 32,
                 static_cast<cudaStream_t>(exec.stream)),
             "radix sort size query");
#endif
  const std::size_t nb = static_cast<std::size_t>(n);
  const std::size_t sizes[] = {256,
                               256,
                               align_up(nb * 4),
                               align_up(nb * 4),
                               align_up(nb * 4),
                               align_up(nb * 4),
                               align_up(nb * 16),
                               align_up(nb * static_cast<std::size_t>(words) * 8),
                               align_up(sort_bytes)};
  std::size_t total = 0;
  for (std::size_t v : sizes) total += v;
  char* ws = static_cast<char*>(exec.workspace(total));
  char* p = ws;
  auto take = [&](std::size_t bytes) {
    char* r = p;
    p += bytes;
    return r;
  };
  NmsState s;
  s.count = reinterpret_cast<int*>(take(sizes[0]));
  s.max_coord = reinterpret_cast<unsigned*>(take(sizes[1]));
  s.keys_in = reinterpret_cast<unsigned*>(take(sizes[2]));
  s.keys_out = reinterpret_cast<unsigned*>(take(sizes[3]));
  s.vals_in = reinterpret_cast<int*>(take(sizes[4]));
  s.vals_out = reinterpret_cast<int*>(take(sizes[5]));
  s.sorted = reinterpret_cast<float4*>(take(sizes[6]));
  s.mask = reinterpret_cast<unsigned long long*>(take(sizes[7]));
  void* sort_tmp = take(sizes[8]);
  s.words = words;

  launch("nms_clear_kernel", nms_clear_kernel, dim3(1), dim3(32), 0, exec, s);
  if (n > 0) {
    if (a.idxs)
      launch("nms_max_coord_kernel", nms_max_coord_kernel, dim3(grid_blocks(4 * n, kThreads)), dim3(kThreads), 0, exec,
             a.boxes, 4 * n, s);
    launch("nms_keys_kernel", nms_keys_kernel, dim3(grid_blocks(n, kThreads)), dim3(kThreads), 0, exec, a, s);
#if defined(__CUDACC__)
    check_cuda(
        cub::DeviceRadixSort::SortPairsDescending(sort_tmp, sort_bytes, s.keys_in, s.keys_out, s.vals_in, s.vals_out,
                                                  static_cast<int>(n), 0, 32, static_cast<cudaStream_t>(exec.stream)),
        "radix sort");
#else
    // The emulated sibling of the CUB sort (the emulator runs launches synchronously, so the keys are ready).
    (void)sort_tmp;
    std::vector<int> order(nb);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return s.keys_in[x] > s.keys_in[y]; });
    for (std::size_t i = 0; i < nb; ++i) {
      s.vals_out[i] = order[i];
      s.keys_out[i] = s.keys_in[order[i]];
    }
#endif
    launch("nms_gather_kernel", nms_gather_kernel, dim3(grid_blocks(n, kThreads)), dim3(kThreads), 0, exec, a, s);
    launch("nms_mask_kernel", nms_mask_kernel, dim3(static_cast<unsigned>(words), static_cast<unsigned>(words)),
           dim3(kBoxesPerWord), 0, exec, a, s);
  }
  launch("nms_walk_kernel", nms_walk_kernel, dim3(1), dim3(kWalkThreads),
         static_cast<std::size_t>(words > 0 ? words : 1) * 8, exec, a, s);
}

}  // namespace dlk::DLK_KNS
