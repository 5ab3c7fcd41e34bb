// STUB — being replaced by the real CPU reference.
#include "layernorm/layernorm.h"
#include "runtime/error.h"
namespace dlk::cpu {
void layernorm_forward(const LayerNormForwardArgs&, const Exec&) { fail(DLK_ERROR_INTERNAL, "stub"); }
void layernorm_backward(const LayerNormBackwardArgs&, const Exec&) { fail(DLK_ERROR_INTERNAL, "stub"); }
}
