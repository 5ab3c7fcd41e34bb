// STUB — being replaced by the real kernels.
#include "runtime/kernel.h"
#include "softmax/softmax.h"
namespace dlk::DLK_KNS {
void softmax_forward(const SoftmaxForwardArgs&, const Exec&) { fail(DLK_ERROR_INTERNAL, "stub"); }
void softmax_backward(const SoftmaxBackwardArgs&, const Exec&) { fail(DLK_ERROR_INTERNAL, "stub"); }
}
