// CUDA kernels of the elementwise family and their launchers: broadcast binary ops, sum_to_shape (the reduction of
// a broadcast gradient), concat/split.
//
// Binary ops are memory bound. When both operands are read at the output's own index (same shape) or one is a
// scalar, binary_flat_kernel moves 16-byte packs (4 fp32 / 8 fp16 values) like a copy; any other broadcast goes to
// binary_strided_kernel, one element per thread with the (coalesced, usually 2-3 dim) offsets computed by division.
// sum_to_shape never uses atomics: every output element is summed by one thread, warp or block in a fixed order,
// so results are bitwise reproducible; which of the three owns it depends on the layout (see reduce_sum_to).
// Concat/split are dtype-blind byte copies in the widest unit (16, 8, 4, 2 or 1 bytes) that every pointer and row
// length allows.
#include "runtime/kernel.h"
//
#include <cstdint>
#include <cstring>

#include "common/convert.cuh"
#include "common/reduce.cuh"
#include "common/vec.cuh"
#include "elementwise/elementwise.h"

namespace dlk::DLK_KNS {
namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kMaxBlocks = 8192;
constexpr int kMaxParts = 16;
constexpr std::int64_t kChunkUnits = 4 * kThreads;  // units per block-iteration of concat_kernel
constexpr std::int64_t kRowMin = 128;  // innermost dim length from which broadcasts take the row path  // parts per
                                       // concat/split launch; more parts take several launches

bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

dim3 grid_for(std::int64_t threads) {
  std::int64_t blocks = (threads + kThreads - 1) / kThreads;
  if (blocks < 1) blocks = 1;
  return dim3(static_cast<unsigned>(blocks < kMaxBlocks ? blocks : kMaxBlocks));
}

__device__ __forceinline__ float binary_apply(BinaryOp op, float x, float y, float alpha) {
  return op == BinaryOp::Add ? x + alpha * y : op == BinaryOp::Mul ? x * y : alpha * x;
}

// Flat path: a read at the output index; b at the output index (b_step 1) or its single element (b_step 0, also
// for Scale, which ignores it). A thread owns packs p, p + stride, ... of kPack elements; the n % kPack tail goes
// to the first threads. Traffic: n reads of a (+ n of b), n writes. kPack > 1 needs a, out (and b when b_step) 16-byte
// aligned. out may equal a or b (each element read before its own write, by the same thread).
template <typename T, int kPack>
__global__ void __launch_bounds__(kThreads)
    binary_flat_kernel(const T* a, const T* b, T* out, std::int64_t n, int b_step, BinaryOp op, float alpha) {
  const std::int64_t tid = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const std::int64_t packs = n / kPack;
  const float b0 = (b_step || op == BinaryOp::Scale) ? 0.0f : to_float<T>(b[0]);
  for (std::int64_t p = tid; p < packs; p += stride) {
    float va[kPack], vb[kPack];
    load_floats<T, kPack>(a + p * kPack, va);
    if (b_step) {
      load_floats<T, kPack>(b + p * kPack, vb);
    } else {
#pragma unroll
      for (int e = 0; e < kPack; ++e) vb[e] = b0;
    }
#pragma unroll
    for (int e = 0; e < kPack; ++e) va[e] = binary_apply(op, va[e], vb[e], alpha);
    store_floats<T, kPack>(out + p * kPack, va);
  }
  const std::int64_t t = packs * kPack + tid;
  if (t < n) {
    const float vb = b_step ? to_float<T>(b[t]) : b0;
    out[t] = from_float<T>(binary_apply(op, to_float<T>(a[t]), vb, alpha));
  }
}

// Strided path: a thread owns output elements i, i + stride, ... and reads a and b at their broadcast offsets
// (strided_offset over the coalesced dims: ndim divisions each). Traffic: n writes; reads of the operands mostly hit
// cache where they broadcast. Any shape, any alignment.
template <typename T>
__global__ void __launch_bounds__(kThreads) binary_strided_kernel(const T* a, const T* b, T* out, BinaryArgs args) {
  const std::int64_t tid = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = tid; i < args.n; i += stride) {
    const float va = to_float<T>(a[strided_offset(i, args.ndim, args.shape, args.a_stride)]);
    const float vb =
        args.op == BinaryOp::Scale ? 0.0f : to_float<T>(b[strided_offset(i, args.ndim, args.shape, args.b_stride)]);
    out[i] = from_float<T>(binary_apply(args.op, va, vb, args.alpha));
  }
}

// Row path, for broadcasts whose innermost coalesced dim is long (>= kRowMin, e.g. a bias row [N, C] + [C]): a
// block owns rows r, r + gridDim.x, ... of the output; the operands' row offsets are computed once per row (the
// divisions amortised over the row) and the threads stride along it, so loads and stores are coalesced. Traffic: n
// writes, operand reads as the strided path. Any alignment.
template <typename T>
__global__ void __launch_bounds__(kThreads) binary_rows_kernel(const T* a, const T* b, T* out, BinaryArgs args) {
  const int nd = args.ndim;
  const std::int64_t inner = args.shape[nd - 1], rows = args.n / inner;
  const std::int64_t sa = args.a_stride[nd - 1], sb = args.b_stride[nd - 1];
  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* ar = a + strided_offset(r, nd - 1, args.shape, args.a_stride);
    const T* br = args.op == BinaryOp::Scale ? b : b + strided_offset(r, nd - 1, args.shape, args.b_stride);
    T* o = out + r * inner;
    for (std::int64_t j = threadIdx.x; j < inner; j += blockDim.x) {
      const float vb = args.op == BinaryOp::Scale ? 0.0f : to_float<T>(br[j * sb]);
      o[j] = from_float<T>(binary_apply(args.op, to_float<T>(ar[j * sa]), vb, args.alpha));
    }
  }
}

// sum_to_shape, one output element's sum over the reduced index range [r0, r1) stepping by `step`, fp32.
template <typename T>
__device__ __forceinline__ float reduce_range(const T* x, const T* w, const ReduceArgs& a, std::int64_t xo,
                                              std::int64_t wo, std::int64_t r0, std::int64_t step) {
  float s = 0.0f;
  if (a.red_ndim == 1) {  // the common case after coalescing: no division per element
    const std::int64_t sx = a.red_x[0], sw = a.red_w[0];
    for (std::int64_t r = r0; r < a.reduce_size; r += step) {
      float v = to_float<T>(x[xo + r * sx]);
      if (w) v *= to_float<T>(w[wo + r * sw]);
      s += v;
    }
    return s;
  }
  for (std::int64_t r = r0; r < a.reduce_size; r += step) {
    float v = to_float<T>(x[xo + strided_offset(r, a.red_ndim, a.red_shape, a.red_x)]);
    if (w) v *= to_float<T>(w[wo + strided_offset(r, a.red_ndim, a.red_shape, a.red_w)]);
    s += v;
  }
  return s;
}

// Thread per output: a thread sums its output's reduced elements serially. Used when x's innermost dim is kept
// (e.g. [N, C] -> [C]), so neighbouring threads read neighbouring elements and every load is coalesced. Traffic:
// one read of x (and w), one write. Limits: parallelism is the output count.
template <typename T>
__global__ void __launch_bounds__(kThreads) reduce_thread_kernel(const T* x, const T* w, T* out, ReduceArgs a) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t o = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < a.outputs; o += stride) {
    const std::int64_t xo = strided_offset(o, a.kept_ndim, a.kept_shape, a.kept_x);
    const std::int64_t wo = w ? strided_offset(o, a.kept_ndim, a.kept_shape, a.kept_w) : 0;
    out[o] = from_float<T>(a.scale * reduce_range(x, w, a, xo, wo, 0, 1));
  }
}

// Warp per output: the 32 lanes stride over the reduced elements (coalesced when x's innermost dim is reduced),
// then a shuffle tree. A block owns kThreads / 32 outputs at a time, grid stride over outputs. Traffic: one read,
// one write.
template <typename T>
__global__ void __launch_bounds__(kThreads) reduce_warp_kernel(const T* x, const T* w, T* out, ReduceArgs a) {
  const int lane = threadIdx.x % 32;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / 32);
  for (std::int64_t base = static_cast<std::int64_t>(blockIdx.x) * (blockDim.x / 32); base < a.outputs; base += warps) {
    const std::int64_t o = base + threadIdx.x / 32;
    float s = 0.0f;
    if (o < a.outputs) {
      const std::int64_t xo = strided_offset(o, a.kept_ndim, a.kept_shape, a.kept_x);
      const std::int64_t wo = w ? strided_offset(o, a.kept_ndim, a.kept_shape, a.kept_w) : 0;
      s = reduce_range(x, w, a, xo, wo, lane, 32);
    }
    s = warp_sum(s);  // every lane of the warp takes part, valid output or not
    if (o < a.outputs && lane == 0) out[o] = from_float<T>(a.scale * s);
  }
}

// Block per output, for few outputs with long reductions (e.g. a [] bias gradient): the block's threads stride over
// the reduced elements, then block_sum. Grid stride over outputs. Traffic: one read, one write.
template <typename T>
__global__ void __launch_bounds__(kThreads) reduce_block_kernel(const T* x, const T* w, T* out, ReduceArgs a) {
  for (std::int64_t o = blockIdx.x; o < a.outputs; o += gridDim.x) {
    const std::int64_t xo = strided_offset(o, a.kept_ndim, a.kept_shape, a.kept_x);
    const std::int64_t wo = w ? strided_offset(o, a.kept_ndim, a.kept_shape, a.kept_w) : 0;
    const float s = block_sum(reduce_range(x, w, a, xo, wo, threadIdx.x, blockDim.x));
    if (threadIdx.x == 0) out[o] = from_float<T>(a.scale * s);
  }
}

// Up to kMaxParts parts of a concat/split, in units of U: part i is columns [begin[i], begin[i+1]) of this batch's
// row of `width` units, and columns [jcol[i], ...) of the joined row of `jwidth` units.
struct PartTable {
  void* data[kMaxParts];
  std::int64_t begin[kMaxParts + 1];
  std::int64_t jcol[kMaxParts];
  int n;
};

// A block owns chunks c, c + gridDim.x, ... of kChunkUnits consecutive units of one row of the batch's outer x
// width grid (one division per chunk, not per unit); its threads copy the chunk's units between their part and the
// joined tensor (direction by kSplit), coalesced on both sides. Traffic: one read + one write of every byte.
// Limits: U-aligned pointers and U-multiple row lengths (the launcher picks U).
template <typename U, bool kSplit>
__global__ void __launch_bounds__(kThreads)
    concat_kernel(U* joined, PartTable t, std::int64_t outer, std::int64_t width, std::int64_t jwidth) {
  const std::int64_t chunks_per_row = (width + kChunkUnits - 1) / kChunkUnits;
  const std::int64_t chunks = outer * chunks_per_row;
  for (std::int64_t ch = blockIdx.x; ch < chunks; ch += gridDim.x) {
    const std::int64_t row = ch / chunks_per_row, c0 = (ch % chunks_per_row) * kChunkUnits;
    const std::int64_t c1 = c0 + kChunkUnits < width ? c0 + kChunkUnits : width;
    for (std::int64_t c = c0 + threadIdx.x; c < c1; c += blockDim.x) {
      int p = 0;
      while (p + 1 < t.n && c >= t.begin[p + 1]) ++p;
      const std::int64_t pc = c - t.begin[p], pw = t.begin[p + 1] - t.begin[p];
      U* part = static_cast<U*>(t.data[p]) + row * pw + pc;
      U* j = joined + row * jwidth + t.jcol[p] + pc;
      if (kSplit)
        *part = *j;
      else
        *j = *part;
    }
  }
}

template <typename U>
void concat_launch(const ConcatArgs& a, const Exec& exec) {
  const std::int64_t us = sizeof(U);
  for (int first = 0; first < a.parts; first += kMaxParts) {
    PartTable t{};
    t.n = 0;
    std::int64_t width = 0;
    for (int p = first; p < a.parts && t.n < kMaxParts; ++p) {
      if (a.cols[p] == 0) continue;
      t.data[t.n] = a.part_data[p];
      t.begin[t.n] = width;
      t.jcol[t.n] = a.col_begin[p] / us;
      width += a.cols[p] / us;
      ++t.n;
    }
    if (t.n == 0) continue;
    t.begin[t.n] = width;
    U* joined = static_cast<U*>(a.joined);
    const std::int64_t chunks = a.outer * ((width + kChunkUnits - 1) / kChunkUnits);
    const dim3 grid(static_cast<unsigned>(chunks < kMaxBlocks ? chunks : kMaxBlocks));
    if (a.split)
      launch("concat_kernel", concat_kernel<U, true>, grid, dim3(kThreads), 0, exec, joined, t, a.outer, width,
             a.total_cols / us);
    else
      launch("concat_kernel", concat_kernel<U, false>, grid, dim3(kThreads), 0, exec, joined, t, a.outer, width,
             a.total_cols / us);
  }
}

}  // namespace

void binary_forward(const BinaryArgs& a, const Exec& exec) {
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int kVec = 16 / sizeof(T);
    const T* pa = static_cast<const T*>(a.a);
    const T* pb = static_cast<const T*>(a.b);
    T* out = static_cast<T*>(a.out);
    const bool flat = a.a_flat && (a.b_flat || a.b_scalar || a.op == BinaryOp::Scale);
    if (flat) {
      const int b_step = a.op != BinaryOp::Scale && a.b_flat ? 1 : 0;
      const bool vec = aligned16(pa) && aligned16(out) && (!b_step || aligned16(pb));
      if (vec)
        launch("binary_flat_kernel", binary_flat_kernel<T, kVec>, grid_for(a.n / kVec + kVec), dim3(kThreads), 0, exec,
               pa, pb, out, a.n, b_step, a.op, a.alpha);
      else
        launch("binary_flat_kernel", binary_flat_kernel<T, 1>, grid_for(a.n), dim3(kThreads), 0, exec, pa, pb, out, a.n,
               b_step, a.op, a.alpha);
      return;
    }
    // Long rows amortise the offset arithmetic over a row; short ones would leave most of a block idle.
    if (a.ndim > 0 && a.shape[a.ndim - 1] >= kRowMin) {
      const std::int64_t rows = a.n / a.shape[a.ndim - 1];
      launch("binary_rows_kernel", binary_rows_kernel<T>,
             dim3(static_cast<unsigned>(rows < kMaxBlocks ? rows : kMaxBlocks)), dim3(kThreads), 0, exec, pa, pb, out,
             a);
      return;
    }
    launch("binary_strided_kernel", binary_strided_kernel<T>, grid_for(a.n), dim3(kThreads), 0, exec, pa, pb, out, a);
  });
}

void reduce_sum_to(const ReduceArgs& a, const Exec& exec) {
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* x = static_cast<const T*>(a.x);
    const T* w = static_cast<const T*>(a.w);
    T* out = static_cast<T*>(a.out);
    // Coalesced loads decide: an inner kept dim wants a thread per output (neighbours read neighbours) unless there
    // are too few outputs to fill the GPU; an inner reduced dim wants lanes along it (warp per output, or a block
    // per output when the outputs are few and the reductions long).
    const bool inner_kept = a.kept_ndim > 0 && a.kept_x[a.kept_ndim - 1] == 1;
    if (a.reduce_size == 1 || (inner_kept && a.outputs >= 4096))
      launch("reduce_thread_kernel", reduce_thread_kernel<T>, grid_for(a.outputs), dim3(kThreads), 0, exec, x, w, out,
             a);
    else if (a.outputs <= 1024 && a.reduce_size >= 2048)
      launch("reduce_block_kernel", reduce_block_kernel<T>,
             dim3(static_cast<unsigned>(a.outputs < kMaxBlocks ? a.outputs : kMaxBlocks)), dim3(kThreads), 0, exec, x,
             w, out, a);
    else
      launch("reduce_warp_kernel", reduce_warp_kernel<T>, grid_for(a.outputs * 32), dim3(kThreads), 0, exec, x, w, out,
             a);
  });
}

void concat_copy(const ConcatArgs& a, const Exec& exec) {
  // The widest unit dividing every address and row length involved.
  std::uintptr_t bits = reinterpret_cast<std::uintptr_t>(a.joined) | static_cast<std::uintptr_t>(a.total_cols);
  for (int p = 0; p < a.parts; ++p) {
    if (a.cols[p] == 0) continue;
    bits |= reinterpret_cast<std::uintptr_t>(a.part_data[p]) | static_cast<std::uintptr_t>(a.cols[p]) |
            static_cast<std::uintptr_t>(a.col_begin[p]);
  }
  if ((bits & 15u) == 0)
    concat_launch<uint4>(a, exec);
  else if ((bits & 7u) == 0)
    concat_launch<uint2>(a, exec);
  else if ((bits & 3u) == 0)
    concat_launch<unsigned>(a, exec);
  else if ((bits & 1u) == 0)
    concat_launch<unsigned short>(a, exec);
  else
    concat_launch<unsigned char>(a, exec);
}

}  // namespace dlk::DLK_KNS
