// Internal interface of the fused masked softmax. capi/softmax.cpp validates and fills these structs; the three
// backends (cpu reference, cuda, emu) implement the same two functions.
//
// Semantics shared by every backend, for row r of the [rows, cols] view of x and column j:
//   v = scale * x[r, j]  (+ mask[r, j] when the mask tensor is floating point)
//   v is masked (excluded) when the causal / key-padding / boolean rule says so, or when v == -inf.
//   y[r, j] = exp(v - max) / sum(exp(v - max)) over unmasked j; 0 for masked j.
//   A row with no unmasked entry is all zeros (not NaN).
#pragma once

#include <dlk/dlk.h>

#include <cstdint>

#include "common/macros.h"
#include "runtime/exec.h"
#include "runtime/tensor.h"

namespace dlk {

struct SoftmaxMask {
  dlk_mask_kind kind = DLK_MASK_NONE;
  // Causal: row r is matrix row i = r % rows_per_matrix; column j is masked when j > i + causal_offset.
  std::int64_t rows_per_matrix = 1;
  std::int64_t causal_offset = 0;
  // Key padding: row r belongs to batch entry b = r / rows_per_batch; columns j >= lengths[b] are masked.
  std::int64_t rows_per_batch = 1;
  const void* lengths = nullptr;
  DType lengths_dtype = DType::I32;
  // Tensor mask, already broadcast: element (r, j) is at mask + row_offset(r) + j * col_stride (elements).
  const void* mask = nullptr;
  DType mask_dtype = DType::U8;  // I8/U8: nonzero keeps; F32/F16/BF16: added to scale * x
  int row_ndim = 0;              // number of leading dims of x (x.ndim - 1)
  std::int64_t row_sizes[kMaxDims] = {};
  std::int64_t row_strides[kMaxDims] = {};  // mask strides for x's leading dims, 0 where broadcast
  std::int64_t col_stride = 0;
};

// Offset (in mask elements) of row r's first column.
DLK_HD std::int64_t softmax_mask_row_offset(const SoftmaxMask& m, std::int64_t r) {
  std::int64_t off = 0;
  for (int d = m.row_ndim - 1; d >= 0; --d) {
    std::int64_t size = m.row_sizes[d];
    off += (r % size) * m.row_strides[d];
    r /= size;
  }
  return off;
}

// Number of leading columns of row r that the causal or key-padding rule may leave unmasked (cols otherwise).
DLK_HD std::int64_t softmax_row_limit(const SoftmaxMask& m, std::int64_t r, std::int64_t cols) {
  std::int64_t limit = cols;
  if (m.kind == DLK_MASK_CAUSAL || m.kind == DLK_MASK_CAUSAL_BOTTOM_RIGHT) {
    limit = r % m.rows_per_matrix + m.causal_offset + 1;
  } else if (m.kind == DLK_MASK_KEY_PADDING) {
    std::int64_t b = r / m.rows_per_batch;
    limit = m.lengths_dtype == DType::I64 ? static_cast<const std::int64_t*>(m.lengths)[b]
                                          : static_cast<const std::int32_t*>(m.lengths)[b];
  }
  return limit < 0 ? 0 : (limit > cols ? cols : limit);
}

struct SoftmaxForwardArgs {
  DType dtype = DType::F32;  // of x and y
  std::int64_t rows = 0, cols = 0;
  const void* x = nullptr;
  void* y = nullptr;  // may equal x
  float scale = 1.0f;
  SoftmaxMask mask;
};

struct SoftmaxBackwardArgs {
  DType dtype = DType::F32;  // of y, dy and dx
  std::int64_t rows = 0, cols = 0;
  const void* y = nullptr;
  const void* dy = nullptr;
  void* dx = nullptr;  // may equal dy
  float scale = 1.0f;
};

namespace cpu {
void softmax_forward(const SoftmaxForwardArgs& a, const Exec& exec);
void softmax_backward(const SoftmaxBackwardArgs& a, const Exec& exec);
}  // namespace cpu
namespace cuda {
void softmax_forward(const SoftmaxForwardArgs& a, const Exec& exec);
void softmax_backward(const SoftmaxBackwardArgs& a, const Exec& exec);
}  // namespace cuda
namespace emu {
void softmax_forward(const SoftmaxForwardArgs& a, const Exec& exec);
void softmax_backward(const SoftmaxBackwardArgs& a, const Exec& exec);
}  // namespace emu

}  // namespace dlk
