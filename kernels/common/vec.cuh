// Vector loads and stores: N consecutive elements moved as one access, a 128-bit one when sizeof(T) * N == 16.
// Callers guarantee alignment (the launchers check pointers and row lengths before picking a vector path).
#pragma once

#include "common/convert.cuh"
#include "runtime/kernel.h"

namespace dlk::DLK_KNS {

template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

template <typename T, int N>
__device__ __forceinline__ Pack<T, N> load_pack(const T* p) {
  return *reinterpret_cast<const Pack<T, N>*>(p);
}

template <typename T, int N>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, N>& v) {
  *reinterpret_cast<Pack<T, N>*>(p) = v;
}

// Loads N elements of T as floats.
template <typename T, int N>
__device__ __forceinline__ void load_floats(const T* p, float (&out)[N]) {
  const Pack<T, N> pk = load_pack<T, N>(p);
#pragma unroll
  for (int j = 0; j < N; ++j) out[j] = to_float<T>(pk.v[j]);
}

// Stores N floats as elements of T (rounded to nearest).
template <typename T, int N>
__device__ __forceinline__ void store_floats(T* p, const float (&in)[N]) {
  Pack<T, N> pk;
#pragma unroll
  for (int j = 0; j < N; ++j) pk.v[j] = from_float<T>(in[j]);
  store_pack<T, N>(p, pk);
}

}  // namespace dlk::DLK_KNS
