// Warp-level tensor-core matrix multiply: mma.sync m16n8k16 with fp16 or bf16 inputs and fp32 accumulators, and
// the fragment loaders around it. Under nvcc the product is the PTX instruction; under the emulator it is a warp
// collective that the scheduler computes from all 32 lanes' fragments with the PTX ISA's layouts, so a kernel that
// puts an element in the wrong register computes the wrong answer in CI too.
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16"), with g = lane / 4 and t = lane % 4:
//   FragA, A 16x16 row-major: x[r] packs A(g + 8*(r%2), 2t + 8*(r/2) + {0, 1})   (lower column in the low half)
//   FragB, B 16x8 (k x n):    x[r] packs B(2t + 8*r + {0, 1}, g)
//   FragC, C 16x8 fp32:       x[i] is C(g + 8*(i/2), 2t + i%2)
//
// The loaders read any indexable `Ptr` (a raw pointer, or the emulator's bounds-checked shared-memory views), so
// they work from shared or global memory. They read element by element; a kernel that needs ldmatrix-speed loads
// on the GPU can add them here beside an emulated sibling.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "runtime/kernel.h"

namespace dlk::DLK_KNS::mma {

struct FragA {
  std::uint32_t x[4];
};
struct FragB {
  std::uint32_t x[2];
};
struct FragC {
  float x[4];
};

// Row and column of element i of a lane's FragC.
__device__ __forceinline__ int c_row(int lane, int i) { return lane / 4 + 8 * (i / 2); }
__device__ __forceinline__ int c_col(int lane, int i) { return 2 * (lane % 4) + i % 2; }

__device__ __forceinline__ void zero(FragC& c) {
  for (int i = 0; i < 4; ++i) c.x[i] = 0.0f;
}

// Two 16-bit elements in one register, `lo` in the low half.
template <typename T>
__device__ __forceinline__ std::uint32_t pack(T lo, T hi) {
  static_assert(sizeof(T) == 2, "mma fragments hold 16-bit elements");
  std::uint16_t l, h;
  std::memcpy(&l, &lo, 2);
  std::memcpy(&h, &hi, 2);
  return static_cast<std::uint32_t>(l) | static_cast<std::uint32_t>(h) << 16;
}

// Rounds two floats to T and packs them.
template <typename T>
__device__ __forceinline__ std::uint32_t pack_floats(float lo, float hi) {
  if constexpr (std::is_same_v<T, __half>) {
    return pack(__float2half_rn(lo), __float2half_rn(hi));
  } else {
    return pack(__float2bfloat16_rn(lo), __float2bfloat16_rn(hi));
  }
}

__device__ __forceinline__ int lane_id() { return static_cast<int>(threadIdx.x) & 31; }

// A(r, c) = base[r * ld + c].
template <typename T, typename Ptr>
__device__ __forceinline__ void load_a(FragA& a, Ptr base, int ld) {
  const int g = lane_id() / 4, t = lane_id() % 4;
  for (int r = 0; r < 4; ++r) {
    const int row = g + 8 * (r % 2), col = 2 * t + 8 * (r / 2);
    a.x[r] = pack<T>(base[row * ld + col], base[row * ld + col + 1]);
  }
}

// A(r, c) = base[c * ld + r]: A stored transposed (column-major).
template <typename T, typename Ptr>
__device__ __forceinline__ void load_a_t(FragA& a, Ptr base, int ld) {
  const int g = lane_id() / 4, t = lane_id() % 4;
  for (int r = 0; r < 4; ++r) {
    const int row = g + 8 * (r % 2), col = 2 * t + 8 * (r / 2);
    a.x[r] = pack<T>(base[col * ld + row], base[(col + 1) * ld + row]);
  }
}

// B(k, n) = base[k * ld + n]: B stored row-major as [k][n] (e.g. V for P·V).
template <typename T, typename Ptr>
__device__ __forceinline__ void load_b(FragB& b, Ptr base, int ld) {
  const int g = lane_id() / 4, t = lane_id() % 4;
  for (int r = 0; r < 2; ++r) {
    const int k = 2 * t + 8 * r;
    b.x[r] = pack<T>(base[k * ld + g], base[(k + 1) * ld + g]);
  }
}

// B(k, n) = base[n * ld + k]: B stored as [n][k] (e.g. K for Q·Kᵀ, or a weight matrix [out][in]).
template <typename T, typename Ptr>
__device__ __forceinline__ void load_b_t(FragB& b, Ptr base, int ld) {
  const int g = lane_id() / 4, t = lane_id() % 4;
  for (int r = 0; r < 2; ++r) {
    const int k = 2 * t + 8 * r;
    b.x[r] = pack<T>(base[g * ld + k], base[g * ld + k + 1]);
  }
}

// The A fragment of a 16x16 tile whose columns 0-7 and 8-15 are two accumulator tiles (rounded to T): a product
// such as P in attention feeds the next mma without a trip through shared memory.
template <typename T>
__device__ __forceinline__ void a_from_c(FragA& a, const FragC& cols0_7, const FragC& cols8_15) {
  a.x[0] = pack_floats<T>(cols0_7.x[0], cols0_7.x[1]);
  a.x[1] = pack_floats<T>(cols0_7.x[2], cols0_7.x[3]);
  a.x[2] = pack_floats<T>(cols8_15.x[0], cols8_15.x[1]);
  a.x[3] = pack_floats<T>(cols8_15.x[2], cols8_15.x[3]);
}

#if defined(__CUDACC__)

// acc += a * b over the warp (all 32 lanes, converged).
template <typename T>
__device__ __forceinline__ void mma_16816(FragC& acc, const FragA& a, const FragB& b) {
  static_assert(std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>, "mma_16816: fp16 or bf16 inputs");
  if constexpr (std::is_same_v<T, __half>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(acc.x[0]), "+f"(acc.x[1]), "+f"(acc.x[2]), "+f"(acc.x[3])
        : "r"(a.x[0]), "r"(a.x[1]), "r"(a.x[2]), "r"(a.x[3]), "r"(b.x[0]), "r"(b.x[1]));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(acc.x[0]), "+f"(acc.x[1]), "+f"(acc.x[2]), "+f"(acc.x[3])
        : "r"(a.x[0]), "r"(a.x[1]), "r"(a.x[2]), "r"(a.x[3]), "r"(b.x[0]), "r"(b.x[1]));
  }
}

#else

// acc += a * b over the warp (all 32 lanes, converged): the emulator's warp collective.
template <typename T>
inline void mma_16816(FragC& acc, const FragA& a, const FragB& b, const char* file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
  static_assert(std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>, "mma_16816: fp16 or bf16 inputs");
  ::dlk::emurt::MmaLane lane;
  for (int r = 0; r < 4; ++r) lane.a[r] = a.x[r];
  for (int r = 0; r < 2; ++r) lane.b[r] = b.x[r];
  for (int i = 0; i < 4; ++i) lane.c[i] = acc.x[i];
  ::dlk::emurt::mma_m16n8k16(
      std::is_same_v<T, __half> ? ::dlk::emurt::MmaType::F16 : ::dlk::emurt::MmaType::BF16, lane, file, line);
  for (int i = 0; i < 4; ++i) acc.x[i] = lane.d[i];
}

#endif

}  // namespace dlk::DLK_KNS::mma
