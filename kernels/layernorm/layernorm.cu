// STUB — being replaced by the real kernels.
#include "runtime/kernel.h"
#include "layernorm/layernorm.h"
namespace dlk::DLK_KNS {
void layernorm_forward(const LayerNormForwardArgs&, const Exec&) { fail(DLK_ERROR_INTERNAL, "stub"); }
void layernorm_backward(const LayerNormBackwardArgs&, const Exec&) { fail(DLK_ERROR_INTERNAL, "stub"); }
}
