// Internal interface of dropout. capi/random.cpp validates and fills the struct; the cpu reference, cuda and emu
// implement the same function, so keep decisions are bitwise identical on every backend.
//
// Semantics, for element i of the flattened tensor:
//   bits = philox stream value of `seed` at position offset + i (common/philox.h)
//   keep = (bits >> 8) < keep_threshold          (keep_threshold = ceil((1 - p) * 2^24), an integer: no rounding)
//   out[i] = keep ? in[i] * scale : 0            (scale = 1 / (1 - p); 0 when p == 1)
// With `mask_in` the keep bits are read from it instead of generated (backward from a saved mask); with `mask_out`
// they are also stored (1/0). Eval mode (and p == 0) is `identity`: every element kept with scale 1, no RNG.
#pragma once

#include <cstdint>

#include "common/macros.h"
#include "runtime/exec.h"
#include "runtime/tensor.h"

namespace dlk {

struct DropoutArgs {
  DType dtype = DType::F32;  // of in and out
  std::int64_t n = 0;
  const void* in = nullptr;
  void* out = nullptr;                    // may equal in
  const std::uint8_t* mask_in = nullptr;  // optional: keep = mask_in[i] != 0
  std::uint8_t* mask_out = nullptr;       // optional: receives keep
  std::uint64_t seed = 0, offset = 0;
  std::uint32_t keep_threshold = 1u << 24;  // in [0, 2^24]
  float scale = 1.0f;
  bool identity = false;  // keep everything, scale 1 (eval mode, p == 0)
};

// The keep decision of element i (shared by every backend).
DLK_HD bool dropout_keep(std::uint32_t bits, std::uint32_t keep_threshold) { return (bits >> 8) < keep_threshold; }

namespace cpu {
void dropout(const DropoutArgs& a, const Exec& exec);
}  // namespace cpu
namespace cuda {
void dropout(const DropoutArgs& a, const Exec& exec);
}  // namespace cuda
namespace emu {
void dropout(const DropoutArgs& a, const Exec& exec);
}  // namespace emu

}  // namespace dlk
