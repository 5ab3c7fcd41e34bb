// Device-side loads and stores of float32 / float16 / bfloat16 as float: every kernel does its math in fp32 and
// converts only at the memory boundary. Works under nvcc and under the emulator (cuda_fp16.h host conversions).
#pragma once

#include "runtime/kernel.h"

namespace dlk::DLK_KNS {

template <typename T>
__device__ __forceinline__ float to_float(T v);
template <>
__device__ __forceinline__ float to_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ float to_float<__half>(__half v) { return __half2float(v); }
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Calls f(T{}) with T the storage type of `dtype` (float, __half or __nv_bfloat16): use a generic lambda
// `[&](auto tag) { using T = decltype(tag); ... }`.
template <typename F>
void with_float_type(DType dtype, F&& f) {
  switch (dtype) {
    case DType::F32: f(float{}); break;
    case DType::F16: f(__half{}); break;
    case DType::BF16: f(__nv_bfloat16{}); break;
    default: fail(DLK_ERROR_DTYPE, "internal: kernel called with dtype ", dtype_name(dtype));
  }
}

}  // namespace dlk::DLK_KNS
