// STUB — being replaced by the real CPU reference.
#include "softmax/softmax.h"
#include "runtime/error.h"
namespace dlk::cpu {
void softmax_forward(const SoftmaxForwardArgs&, const Exec&) { fail(DLK_ERROR_INTERNAL, "stub"); }
void softmax_backward(const SoftmaxBackwardArgs&, const Exec&) { fail(DLK_ERROR_INTERNAL, "stub"); }
}
