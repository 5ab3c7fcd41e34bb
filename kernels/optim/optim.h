// Internal interface of the fused multi-tensor optimizers (SGD, AdamW), global-norm gradient clipping and gradient
// zeroing. capi/optim.cpp validates the call and builds one table entry per tensor that takes part (frozen tensors
// and empty ones are left out); the backends walk the table in fixed-size chunks: chunk c belongs to the tensor t
// with chunk_begin[t] <= c < chunk_begin[t + 1], so one launch (cuda/emu) or one OpenMP loop (cpu) covers the list.
//
// The element updates below are shared by every backend (PyTorch 1.13's rules, fp32 math as torch does on fp32
// tensors); per-tensor scalars (lr, weight decay, Adam's bias corrections) are computed once on the host in fp64.
#pragma once

#include <dlk/dlk.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "common/macros.h"
#include "runtime/exec.h"
#include "runtime/tensor.h"

namespace dlk {

// Elements per chunk (a multiple of 4, so 16-byte packs stay aligned across chunks): 64 per thread of a 256-thread
// block, enough to amortise the table lookup, small enough that GPT-2's 124M parameters make ~7600 chunks and the
// last wave of blocks is short.
constexpr std::int64_t kOptimChunk = 16384;

// One tensor of a multi-tensor call. Pointers a call does not use are null.
struct OptimTensor {
  float* p = nullptr;        // parameter (zero_grad: the tensor to clear, `units` of `unit_bytes`)
  const float* g = nullptr;  // gradient
  float* s0 = nullptr;       // SGD: momentum buffer; Adam: exp_avg
  float* s1 = nullptr;       // Adam: exp_avg_sq
  float* s2 = nullptr;       // Adam amsgrad: max_exp_avg_sq
  std::int64_t n = 0;        // elements (zero_grad: units)
  std::int64_t chunk_begin = 0;  // chunks of all earlier table entries
  float lr = 0.0f;
  float wd = 0.0f;
  float decay = 1.0f;      // AdamW: 1 - lr * wd (Adam: 1)
  float l2 = 0.0f;         // Adam: wd (AdamW: 0)
  float step_size = 0.0f;  // Adam: lr / (1 - beta1^t)
  float bc2_sqrt = 1.0f;   // Adam: sqrt(1 - beta2^t)
  int unit_bytes = 4;      // zero_grad: 4 (words) or 1 (bytes)
  int vec4 = 0;            // every pointer 16-byte aligned: the kernels move 4 floats per access (set by finish())
};

// The table and its chunk count; chunk_begin filled by finish().
struct OptimTable {
  std::vector<OptimTensor> tensors;
  std::int64_t chunks = 0;
  void finish() {
    chunks = 0;
    for (auto& t : tensors) {
      auto aligned = [](const void* q) { return reinterpret_cast<std::uintptr_t>(q) % 16 == 0; };
      t.vec4 = t.unit_bytes == 4 && aligned(t.p) && aligned(t.g) && aligned(t.s0) && aligned(t.s1) && aligned(t.s2);
      t.chunk_begin = chunks;
      chunks += (t.n + kOptimChunk - 1) / kOptimChunk;
    }
  }
};

// Index of the table entry owning chunk c (binary search over chunk_begin; entries have n > 0).
DLK_HD int optim_find_tensor(const OptimTensor* table, int count, std::int64_t c) {
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (table[mid].chunk_begin <= c) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

struct SgdArgs {
  OptimTable table;
  float momentum = 0.0f, one_minus_dampening = 1.0f;
  bool nesterov = false, first_step = false;
};

// Adam's constants, the same for every tensor. 1 - beta is computed in fp64 from the caller's double, as torch
// does (1 - float(beta) would differ by ~1e-5 relative).
struct AdamConsts {
  float beta1, one_minus_beta1, beta2, one_minus_beta2, eps;
};

struct AdamArgs {
  OptimTable table;
  AdamConsts k{0.9f, 0.1f, 0.999f, 0.001f, 1e-8f};
  bool amsgrad = false;
};

enum class NormKind : int { L1 = 1, L2 = 2, Inf = 3 };

struct ClipArgs {
  OptimTable table;  // p = the gradient, clipped in place
  NormKind norm = NormKind::L2;
  float max_norm = 1.0f;
  float* total_norm_device = nullptr;  // optional, on the context's device
  float* total_norm_host = nullptr;    // optional, host
};

struct ZeroArgs {
  OptimTable table;
};

// One SGD element update (torch.optim.SGD, 1.13).
DLK_HD void sgd_update(float& p, float g, float* buf, const OptimTensor& t, float momentum,
                       float one_minus_dampening, bool nesterov, bool first_step) {
  float d = g;
  if (t.wd != 0.0f) d = d + t.wd * p;
  if (buf) {
    const float b = first_step ? d : momentum * *buf + one_minus_dampening * d;
    *buf = b;
    d = nesterov ? d + momentum * b : b;
  }
  p = p - t.lr * d;
}

// One Adam/AdamW element update (torch.optim.AdamW / Adam, 1.13). Branch-free so the CPU loop vectorises: AdamW
// has decay = 1 - lr * wd and l2 = 0; Adam has decay = 1 and l2 = wd (g += wd * p, from the undecayed p).
template <bool kAmsgrad>
DLK_HD void adam_update(float& p, float g, float& m, float& v, float& vmax, const OptimTensor& t,
                        const AdamConsts& k) {
  g = g + t.l2 * p;
  p = p * t.decay;
  m = k.beta1 * m + k.one_minus_beta1 * g;
  v = k.beta2 * v + k.one_minus_beta2 * (g * g);
  float vv = v;
  if (kAmsgrad) {
    vv = vmax > v ? vmax : v;
    vmax = vv;
  }
  const float denom = sqrtf(vv) / t.bc2_sqrt + k.eps;
  p = p - t.step_size * (m / denom);
}

namespace cpu {
void sgd_step(const SgdArgs& a, const Exec& exec);
void adam_step(const AdamArgs& a, const Exec& exec);
void clip_grad_norm(const ClipArgs& a, const Exec& exec);
void zero_grad(const ZeroArgs& a, const Exec& exec);
}  // namespace cpu
namespace cuda {
void sgd_step(const SgdArgs& a, const Exec& exec);
void adam_step(const AdamArgs& a, const Exec& exec);
void clip_grad_norm(const ClipArgs& a, const Exec& exec);
void zero_grad(const ZeroArgs& a, const Exec& exec);
}  // namespace cuda
namespace emu {
void sgd_step(const SgdArgs& a, const Exec& exec);
void adam_step(const AdamArgs& a, const Exec& exec);
void clip_grad_norm(const ClipArgs& a, const Exec& exec);
void zero_grad(const ZeroArgs& a, const Exec& exec);
}  // namespace emu

}  // namespace dlk
