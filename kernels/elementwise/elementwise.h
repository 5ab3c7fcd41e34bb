// Internal interface of the elementwise family: broadcast binary ops (add, mul, scale, residual add), the
// reduction of a broadcast gradient to an operand's shape (sum_to_shape, also the backward of add/mul), and
// concat/split. capi/elementwise.cpp validates, broadcasts and coalesces the shapes and fills these structs; the
// three backends (cpu reference, cuda, emu) implement the functions.
//
// Shapes arrive coalesced: size-1 dims dropped and adjacent dims merged wherever every operand's strides allow, so
// a same-shape add is one dim, a bias add [N, C] + [C] two, and the kernels' index arithmetic stays short.
#pragma once

#include <dlk/dlk.h>

#include <cstdint>

#include "common/macros.h"
#include "runtime/error.h"
#include "runtime/exec.h"
#include "runtime/tensor.h"

namespace dlk {

enum class BinaryOp : int {
  Add,    // out = a + alpha * b
  Mul,    // out = a * b
  Scale,  // out = alpha * a (b unused)
};

// out (compact, `n` elements, shape `shape[0..ndim)`) = op(a, b); a and b are read at the element offsets given by
// their strides over out's index (0 where broadcast). ndim 0 means a single element.
struct BinaryArgs {
  DType dtype = DType::F32;
  BinaryOp op = BinaryOp::Add;
  float alpha = 1.0f;
  int ndim = 0;
  std::int64_t n = 0;
  std::int64_t shape[kMaxDims] = {};
  std::int64_t a_stride[kMaxDims] = {};
  std::int64_t b_stride[kMaxDims] = {};
  bool a_flat = false;  // a_stride is out's compact stride: a[i] for out[i]
  bool b_flat = false;
  bool b_scalar = false;  // every b_stride is 0
  const void* a = nullptr;
  const void* b = nullptr;
  void* out = nullptr;  // may equal a (a_flat) or b (b_flat)
};

// out[o] = scale * sum over r of x[x_off(o, r)] * (w ? w[w_off(o, r)] : 1). Output element o (compact, `outputs` of
// them) is indexed over the kept dims, r over the reduced dims; strides are in elements of x and w.
struct ReduceArgs {
  DType dtype = DType::F32;
  float scale = 1.0f;
  int kept_ndim = 0, red_ndim = 0;
  std::int64_t kept_shape[kMaxDims] = {}, kept_x[kMaxDims] = {}, kept_w[kMaxDims] = {};
  std::int64_t red_shape[kMaxDims] = {}, red_x[kMaxDims] = {}, red_w[kMaxDims] = {};
  std::int64_t outputs = 0, reduce_size = 1;
  const void* x = nullptr;
  const void* w = nullptr;  // optional multiplier, broadcast like x
  void* out = nullptr;
};

// Concat (or split): the joined tensor is viewed as [outer, total_cols] bytes, part i owns the byte columns
// [col_begin[i], col_begin[i] + cols[i]) of every row. Concat copies parts -> joined, split joined -> parts.
struct ConcatArgs {
  bool split = false;
  std::int64_t outer = 0;       // product of the dims before `dim`
  std::int64_t total_cols = 0;  // bytes per row of the joined tensor
  int parts = 0;
  const std::int64_t* cols = nullptr;       // [parts] bytes per row of each part
  const std::int64_t* col_begin = nullptr;  // [parts]
  void* const* part_data = nullptr;         // [parts] (const for concat)
  void* joined = nullptr;                   // const for split
};

// Element offset of linear index i over `ndim` dims of `shape` with `stride` (innermost last).
DLK_HD std::int64_t strided_offset(std::int64_t i, int ndim, const std::int64_t* shape, const std::int64_t* stride) {
  std::int64_t off = 0;
  for (int d = ndim - 1; d >= 0; --d) {
    const std::int64_t s = shape[d];
    off += (i % s) * stride[d];
    i /= s;
  }
  return off;
}

namespace cpu {
void binary_forward(const BinaryArgs& a, const Exec& exec);
void reduce_sum_to(const ReduceArgs& a, const Exec& exec);
void concat_copy(const ConcatArgs& a, const Exec& exec);
}  // namespace cpu
namespace cuda {
void binary_forward(const BinaryArgs& a, const Exec& exec);
void reduce_sum_to(const ReduceArgs& a, const Exec& exec);
void concat_copy(const ConcatArgs& a, const Exec& exec);
}  // namespace cuda
namespace emu {
void binary_forward(const BinaryArgs& a, const Exec& exec);
void reduce_sum_to(const ReduceArgs& a, const Exec& exec);
void concat_copy(const ConcatArgs& a, const Exec& exec);
}  // namespace emu

}  // namespace dlk
