// CUDA kernels of masked scaled-dot-product attention: not written yet; the cuda and emu backends report that
// honestly (DLK_ERROR_NOT_AVAILABLE) instead of computing anything.
#include "runtime/kernel.h"
//
#include "attention/attention.h"

namespace dlk::DLK_KNS {

void attention_forward(const AttentionArgs&, const Exec&) {
  fail(DLK_ERROR_NOT_AVAILABLE, "attention_forward: the GPU kernels are not written yet (use the cpu backend)");
}

void attention_backward(const AttentionArgs&, const Exec&) {
  fail(DLK_ERROR_NOT_AVAILABLE, "attention_backward: the GPU kernels are not written yet (use the cpu backend)");
}

}  // namespace dlk::DLK_KNS
