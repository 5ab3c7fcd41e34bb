// Internal interface of embedding lookups, their gradient and the sparse-row update. capi/random.cpp validates and
// fills the structs (on cpu and emu it has also checked every index against [0, V)).
//
// Semantics, with indices flattened to n entries and the table [V, D]:
//   forward:  out[i, :] = weight[idx[i], :]                 (zeros for an index outside [0, V): cuda only)
//   backward: dweight[r, :] = (accumulate ? dweight[r, :] : 0) + factor * sum_{i: idx[i] == r} dout[i, :]
//             for r != padding_row; the padding row is zeroed (overwrite) or left alone (accumulate). Indices
//             outside [0, V) contribute nothing (cuda only; the others reject them).
//   The sparse update is the backward with accumulate = true and factor = -lr.
// Deterministic backward: sums run over i in ascending order without atomics (cuda/emu sort (idx[i], i) first).
#pragma once

#include <cstdint>

#include "runtime/exec.h"
#include "runtime/tensor.h"

namespace dlk {

struct EmbeddingForwardArgs {
  DType dtype = DType::F32;               // of weight and out
  DType index_dtype = DType::I64;         // I32 or I64
  std::int64_t n = 0, rows = 0, dim = 0;  // n indices, table [rows, dim]
  const void* indices = nullptr;
  const void* weight = nullptr;
  void* out = nullptr;
};

struct EmbeddingBackwardArgs {
  DType dtype = DType::F32;  // of dout and dweight
  DType index_dtype = DType::I64;
  std::int64_t n = 0, rows = 0, dim = 0;
  const void* indices = nullptr;
  const void* dout = nullptr;     // [n, dim]
  void* dweight = nullptr;        // [rows, dim]
  std::int64_t padding_row = -1;  // in [0, rows), or -1 for none
  bool accumulate = false;
  float factor = 1.0f;
};

namespace cpu {
void embedding_forward(const EmbeddingForwardArgs& a, const Exec& exec);
void embedding_backward(const EmbeddingBackwardArgs& a, const Exec& exec);
}  // namespace cpu
namespace cuda {
void embedding_forward(const EmbeddingForwardArgs& a, const Exec& exec);
void embedding_backward(const EmbeddingBackwardArgs& a, const Exec& exec);
}  // namespace cuda
namespace emu {
void embedding_forward(const EmbeddingForwardArgs& a, const Exec& exec);
void embedding_backward(const EmbeddingBackwardArgs& a, const Exec& exec);
}  // namespace emu

}  // namespace dlk
