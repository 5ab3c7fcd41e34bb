// The naive two-pass softmax baseline (bench/naive_softmax.cu): what a first CUDA softmax looks like, so the
// benchmark shows what the fused kernel buys. Built only with CUDA.
#pragma once

#include <cstdint>

namespace dlkb {

// y = softmax(x) over rows of `cols` elements; dtype 0 = fp32, 1 = fp16, 2 = bf16; `row_max` is scratch of `rows`
// floats; `stream` a cudaStream_t. Returns the cudaError_t of the launches (0 on success).
int naive_softmax_forward(const void* x, void* y, float* row_max, int64_t rows, int cols, int dtype, void* stream);

}  // namespace dlkb
