// Internal interface of masked scaled-dot-product attention. capi/attention.cpp validates and fills AttentionArgs;
// the cpu backend (blocked, BLAS products, online softmax) and the cuda / emu backends (attention.cu, flash-style
// tiles) implement the same two functions.
//
// Semantics shared by every backend, for batch b, head h, query i and key j:
//   s = scale * <q[b,h,i,:], k[b,h,j,:]>  (+ mask[b,h,i,j] when the tensor mask is floating point)
//   (i, j) is masked when j >= attention_row_limit(b, i) (causal / key padding), when a boolean mask holds 0 there,
//   or when s == -inf. Masked entries have probability 0.
//   lse[b,h,i] = log(sum_j exp(s)) over unmasked j (-inf when none); p = exp(s - lse).
//   Dropout (dropout_p > 0): keep = dropout_keep(philox(seed, offset + ((b*H + h)*Tq + i)*Tk + j)), the rule and
//   threshold of the dropout op (dropout/dropout.h), and p' = keep ? p * dropout_scale : 0.
//   out[b,h,i,:] = sum_j p' v[b,h,j,:]; a row with no unmasked key gets 0 (and lse -inf).
// Backward, with dO = d_out and Dl_i = <dO_i, O_i> (= sum_j p'_ij <dO_i, v_j>):
//   dv_j = sum_i p'_ij dO_i;  ds_ij = p_ij (z_ij <dO_i, v_j> - Dl_i) with z = keep * dropout_scale;
//   dq_i = scale * sum_j ds_ij k_j;  dk_j = scale * sum_i ds_ij q_i.
// Rows whose lse is -inf contribute nothing (zero gradients).
#pragma once

#include <dlk/dlk.h>

#include <cstdint>

#include "common/macros.h"
#include "runtime/exec.h"
#include "runtime/tensor.h"

namespace dlk {

struct AttentionMask {
  dlk_mask_kind kind = DLK_MASK_NONE;
  // Causal (both alignments): key j is kept for query i when j <= i + causal_offset (0 top-left, Tk - Tq
  // bottom-right).
  std::int64_t causal_offset = 0;
  // Key padding: keys j >= lengths[b] are masked (lengths clamped to [0, Tk]).
  const void* lengths = nullptr;
  DType lengths_dtype = DType::I32;
  // Tensor mask, broadcast to [B, H, Tq, Tk]: element (b, h, i, j) is mask[b*sb + h*sh + i*si + j*sj] (elements;
  // strides 0 where broadcast). I8/U8: nonzero keeps; F32/F16/BF16: added to the scaled score.
  const void* mask = nullptr;
  DType mask_dtype = DType::U8;
  std::int64_t sb = 0, sh = 0, si = 0, sj = 0;
};

// Number of leading keys that causal / key-padding rules may leave unmasked for query i of batch entry b (Tk for
// the other kinds), in [0, Tk].
DLK_HD std::int64_t attention_row_limit(const AttentionMask& m, std::int64_t b, std::int64_t i, std::int64_t tk) {
  std::int64_t limit = tk;
  if (m.kind == DLK_MASK_CAUSAL || m.kind == DLK_MASK_CAUSAL_BOTTOM_RIGHT) {
    limit = i + m.causal_offset + 1;
  } else if (m.kind == DLK_MASK_KEY_PADDING) {
    limit = m.lengths_dtype == DType::I64 ? static_cast<const std::int64_t*>(m.lengths)[b]
                                          : static_cast<const std::int32_t*>(m.lengths)[b];
  }
  return limit < 0 ? 0 : (limit > tk ? tk : limit);
}

// Strides (in elements) of a [B, H, T, D] operand; the D stride is 1.
struct AttentionStrides {
  std::int64_t b = 0, h = 0, t = 0;
};

struct AttentionArgs {
  DType dtype = DType::F32;  // of q, k, v, out (and d_out, dq, dk, dv)
  std::int64_t B = 0, H = 0, Tq = 0, Tk = 0, D = 0;
  float scale = 1.0f;  // resolved (never 0 for the default)
  AttentionMask mask;
  // Dropout on the probabilities.
  bool dropout = false;
  std::uint32_t keep_threshold = 1u << 24;
  float dropout_scale = 1.0f;
  std::uint64_t seed = 0, offset = 0;

  const void *q = nullptr, *k = nullptr, *v = nullptr;
  AttentionStrides sq, sk, sv;
  // Forward outputs; backward inputs.
  const void* out = nullptr;  // the forward writes through out_w
  void* out_w = nullptr;
  AttentionStrides so;
  float* lse = nullptr;  // [B, H, Tq] contiguous; may be null in the forward
  // Backward only.
  const void* d_out = nullptr;
  AttentionStrides sdo;
  void *dq = nullptr, *dk = nullptr, *dv = nullptr;
  AttentionStrides sdq, sdk, sdv;
};

// Stream position of probability element (b, h, i, j).
DLK_HD std::uint64_t attention_dropout_position(const AttentionArgs& a, std::int64_t b, std::int64_t h,
                                                std::int64_t i, std::int64_t j) {
  return a.offset + static_cast<std::uint64_t>(((b * a.H + h) * a.Tq + i) * a.Tk + j);
}

namespace cpu {
void attention_forward(const AttentionArgs& a, const Exec& exec);
void attention_backward(const AttentionArgs& a, const Exec& exec);
}  // namespace cpu
namespace cuda {
void attention_forward(const AttentionArgs& a, const Exec& exec);
void attention_backward(const AttentionArgs& a, const Exec& exec);
}  // namespace cuda
namespace emu {
void attention_forward(const AttentionArgs& a, const Exec& exec);
void attention_backward(const AttentionArgs& a, const Exec& exec);
}  // namespace emu

}  // namespace dlk
