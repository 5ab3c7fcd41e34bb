// Internal view of DLPack tensors: dtypes the kernels know, element sizes, and shape helpers used by capi/ and by
// the op interfaces. No validation here: capi/validate.h does that once, before dispatch.
#pragma once

#include <dlpack/dlpack.h>

#include <cstddef>
#include <cstdint>

namespace dlk {

constexpr int kMaxDims = 8;

enum class DType : int { F32, F16, BF16, F64, I8, U8, I32, I64, Unknown };

inline DType dtype_of(DLDataType t) {
  if (t.lanes != 1) return DType::Unknown;
  if (t.code == kDLFloat && t.bits == 32) return DType::F32;
  if (t.code == kDLFloat && t.bits == 16) return DType::F16;
  if (t.code == kDLFloat && t.bits == 64) return DType::F64;
  if (t.code == kDLBfloat && t.bits == 16) return DType::BF16;
  if (t.code == kDLInt && t.bits == 8) return DType::I8;
  if (t.code == kDLUInt && t.bits == 8) return DType::U8;
  if (t.code == kDLInt && t.bits == 32) return DType::I32;
  if (t.code == kDLInt && t.bits == 64) return DType::I64;
  return DType::Unknown;
}

inline std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: return 2;
    case DType::F64: case DType::I64: return 8;
    case DType::I8: case DType::U8: return 1;
    default: return 0;
  }
}

inline bool is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::F64; }

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
    case DType::F64: return "float64";
    case DType::I8: return "int8";
    case DType::U8: return "uint8";
    case DType::I32: return "int32";
    case DType::I64: return "int64";
    default: return "unknown";
  }
}

inline void* data_of(const DLTensor* t) {
  return t ? static_cast<char*>(t->data) + t->byte_offset : nullptr;
}

inline std::int64_t numel(const DLTensor* t) {
  std::int64_t n = 1;
  for (int i = 0; i < t->ndim; ++i) n *= t->shape[i];
  return n;
}

}  // namespace dlk
