// CPU reference of the elementwise family, and the fallback on machines without a GPU.
//
// Binary ops walk the output row by row (a row is the innermost coalesced dim), so same-shape and scalar operands
// become plain loops the compiler vectorises. sum_to_shape sums every output element in fp64 in increasing reduced
// index, one thread per output (or per run of neighbouring outputs when x's innermost dim is kept, so reads stay
// contiguous): deterministic for any thread count. Concat/split are memcpy per (row, part), split across threads.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "common/host.h"
#include "elementwise/elementwise.h"

namespace dlk::cpu {
namespace {

// Below this much work a call runs on one thread.
constexpr std::int64_t kMinWork = 65536;

template <typename T>
void binary_typed(const BinaryArgs& a, const Exec& exec) {
  const T* pa = static_cast<const T*>(a.a);
  const T* pb = static_cast<const T*>(a.b);
  T* out = static_cast<T*>(a.out);
  const BinaryOp op = a.op;
  const float alpha = a.alpha;
  auto f = [op, alpha](float x, float y) {
    return op == BinaryOp::Add ? x + alpha * y : op == BinaryOp::Mul ? x * y : alpha * x;
  };
  const int nt = host::threads(exec, a.n, host::kUncapped, kMinWork);
  if (a.a_flat && (a.b_flat || a.b_scalar || op == BinaryOp::Scale)) {
    const std::int64_t bstep = a.b_flat ? 1 : 0;
    const float b0 = op == BinaryOp::Scale ? 0.0f : host::to_f(pb[0]);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (std::int64_t i = 0; i < a.n; ++i) {
      const float bv = bstep ? host::to_f(pb[i]) : b0;
      host::put(out + i, f(host::to_f(pa[i]), bv));
    }
    return;
  }
  // General broadcast: rows of the innermost dim.
  const int nd = a.ndim;
  const std::int64_t inner = nd > 0 ? a.shape[nd - 1] : 1;
  const std::int64_t rows = inner == 0 ? 0 : a.n / inner;
  const std::int64_t sa = nd > 0 ? a.a_stride[nd - 1] : 0, sb = nd > 0 ? a.b_stride[nd - 1] : 0;
  const int outer_nd = nd > 0 ? nd - 1 : 0;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* ar = pa + strided_offset(r, outer_nd, a.shape, a.a_stride);
    const T* br = op == BinaryOp::Scale ? pb : pb + strided_offset(r, outer_nd, a.shape, a.b_stride);
    T* o = out + r * inner;
    for (std::int64_t j = 0; j < inner; ++j) {
      const float bv = op == BinaryOp::Scale ? 0.0f : host::to_f(br[j * sb]);
      host::put(o + j, f(host::to_f(ar[j * sa]), bv));
    }
  }
}

// Sum of output o's reduced elements in fp64, in increasing reduced index.
template <typename T>
double reduce_one(const ReduceArgs& a, const T* x, const T* w, std::int64_t o) {
  const int rn = a.red_ndim;
  const std::int64_t inner = rn > 0 ? a.red_shape[rn - 1] : 1;
  const std::int64_t ix = rn > 0 ? a.red_x[rn - 1] : 0, iw = rn > 0 ? a.red_w[rn - 1] : 0;
  const std::int64_t red_rows = inner == 0 ? 0 : a.reduce_size / inner;
  const int outer_rn = rn > 0 ? rn - 1 : 0;
  const std::int64_t xo = strided_offset(o, a.kept_ndim, a.kept_shape, a.kept_x);
  const std::int64_t wo = w ? strided_offset(o, a.kept_ndim, a.kept_shape, a.kept_w) : 0;
  double sum = 0.0;
  for (std::int64_t r = 0; r < red_rows; ++r) {
    const T* xr = x + xo + strided_offset(r, outer_rn, a.red_shape, a.red_x);
    if (w) {
      const T* wr = w + wo + strided_offset(r, outer_rn, a.red_shape, a.red_w);
      for (std::int64_t j = 0; j < inner; ++j)
        sum += static_cast<double>(host::to_f(xr[j * ix])) * static_cast<double>(host::to_f(wr[j * iw]));
    } else {
      for (std::int64_t j = 0; j < inner; ++j) sum += static_cast<double>(host::to_f(xr[j * ix]));
    }
  }
  return sum;
}

template <typename T>
void reduce_typed(const ReduceArgs& a, const Exec& exec) {
  const T* x = static_cast<const T*>(a.x);
  const T* w = static_cast<const T*>(a.w);
  T* out = static_cast<T*>(a.out);
  const int nt = host::threads(exec, a.outputs * a.reduce_size, host::kUncapped, kMinWork);
  const int kn = a.kept_ndim;
  if (kn > 0 && a.kept_x[kn - 1] == 1 && a.red_ndim > 0) {
    // x's innermost dim is kept (a bias gradient [N, C] -> [C]): a thread owns a run of up to kRun consecutive
    // outputs of one innermost row and walks the reduced index once, adding contiguous runs of x into fp64
    // accumulators. Each output still sums in increasing reduced index, so the result is the general path's.
    constexpr std::int64_t kRun = 256;
    const std::int64_t width = a.kept_shape[kn - 1], runs_per_row = (width + kRun - 1) / kRun;
    const std::int64_t runs = a.outputs / width * runs_per_row;
    const std::int64_t kw = a.kept_w[kn - 1];
#pragma omp parallel for num_threads(nt) schedule(static)
    for (std::int64_t k = 0; k < runs; ++k) {
      const std::int64_t o0 = (k / runs_per_row) * width + (k % runs_per_row) * kRun;
      const std::int64_t len = std::min(kRun, (k / runs_per_row) * width + width - o0);
      const std::int64_t xo = strided_offset(o0, kn, a.kept_shape, a.kept_x);
      const std::int64_t wo = w ? strided_offset(o0, kn, a.kept_shape, a.kept_w) : 0;
      double acc[kRun] = {};
      for (std::int64_t r = 0; r < a.reduce_size; ++r) {
        const T* xr = x + xo + strided_offset(r, a.red_ndim, a.red_shape, a.red_x);
        if (w) {
          const T* wr = w + wo + strided_offset(r, a.red_ndim, a.red_shape, a.red_w);
          for (std::int64_t j = 0; j < len; ++j)
            acc[j] += static_cast<double>(host::to_f(xr[j])) * static_cast<double>(host::to_f(wr[j * kw]));
        } else {
          for (std::int64_t j = 0; j < len; ++j) acc[j] += static_cast<double>(host::to_f(xr[j]));
        }
      }
      for (std::int64_t j = 0; j < len; ++j)
        host::put(out + o0 + j, static_cast<float>(static_cast<double>(a.scale) * acc[j]));
    }
    return;
  }
#pragma omp parallel for num_threads(nt) schedule(static)
  for (std::int64_t o = 0; o < a.outputs; ++o)
    host::put(out + o, static_cast<float>(static_cast<double>(a.scale) * reduce_one(a, x, w, o)));
}

}  // namespace

void binary_forward(const BinaryArgs& a, const Exec& exec) {
  host::with_type(a.dtype, "binary_forward", [&](auto tag) { binary_typed<decltype(tag)>(a, exec); });
}

void reduce_sum_to(const ReduceArgs& a, const Exec& exec) {
  host::with_type(a.dtype, "sum_to_shape", [&](auto tag) { reduce_typed<decltype(tag)>(a, exec); });
}

void concat_copy(const ConcatArgs& a, const Exec& exec) {
  const std::int64_t work = a.outer * a.parts;
  const int nt = host::threads(exec, a.outer * a.total_cols / 4, host::kUncapped, kMinWork);
  auto* joined = static_cast<unsigned char*>(a.joined);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (std::int64_t k = 0; k < work; ++k) {
    const std::int64_t row = k / a.parts;
    const int p = static_cast<int>(k % a.parts);
    const std::int64_t c = a.cols[p];
    if (c == 0) continue;
    unsigned char* j = joined + row * a.total_cols + a.col_begin[p];
    unsigned char* part = static_cast<unsigned char*>(a.part_data[p]) + row * c;
    if (a.split)
      std::memcpy(part, j, static_cast<std::size_t>(c));
    else
      std::memcpy(j, part, static_cast<std::size_t>(c));
  }
}

}  // namespace dlk::cpu
