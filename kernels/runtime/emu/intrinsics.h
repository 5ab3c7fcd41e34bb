// Device functions for the emulator that the CUDA headers provide only to nvcc: fences, atomics, fast-math and
// rounding intrinsics, bit tricks, type punning, cache-hinted loads, min/max, and the __half / __nv_bfloat16 math the
// host side of cuda_fp16.h / cuda_bf16.h lacks. Semantics follow the CUDA Math API; the "fast" intrinsics are
// computed exactly (the tolerance a kernel needs on a GPU covers that). Included by emu.h only.
#pragma once

#include <chrono>
#include <limits>

namespace dlk::emurt {

// Blocks run in parallel on OS threads, so device-scope atomics are real atomics. Sequentially consistent: kernels
// that publish data with __threadfence() + an atomic flag then work as on the GPU.
constexpr int kAtomicOrder = __ATOMIC_SEQ_CST;

// A read-modify-write the __atomic builtins lack (float add, min/max, wrapping inc/dec, half add), as a
// compare-and-swap loop on the value's bits.
template <typename T, typename F>
T atomic_update(T* address, F update) {
  static_assert(sizeof(T) == 2 || sizeof(T) == 4 || sizeof(T) == 8, "atomics work on 2, 4 or 8 bytes");
  using Bits = std::conditional_t<sizeof(T) == 2, std::uint16_t,
                                  std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>>;
  Bits* bits = reinterpret_cast<Bits*>(address);
  Bits old_bits = __atomic_load_n(bits, kAtomicOrder);
  for (;;) {
    T old_value;
    std::memcpy(static_cast<void*>(&old_value), &old_bits, sizeof(T));
    const T new_value = update(old_value);
    Bits new_bits;
    std::memcpy(&new_bits, static_cast<const void*>(&new_value), sizeof(T));
    if (__atomic_compare_exchange_n(bits, &old_bits, new_bits, false, kAtomicOrder, kAtomicOrder)) return old_value;
  }
}

// Float-to-integer conversions saturate and map NaN to 0, as the hardware's cvt does.
template <typename I>
I saturate_to(double rounded) {
  if (rounded != rounded) return 0;
  if (rounded <= static_cast<double>(std::numeric_limits<I>::min())) return std::numeric_limits<I>::min();
  if (rounded >= static_cast<double>(std::numeric_limits<I>::max())) return std::numeric_limits<I>::max();
  return static_cast<I>(rounded);
}

template <typename To, typename From>
To bit_cast(const From& from) {
  static_assert(sizeof(To) == sizeof(From));
  To to;
  std::memcpy(static_cast<void*>(&to), static_cast<const void*>(&from), sizeof(To));
  return to;
}

}  // namespace dlk::emurt

// ---------------------------------------------------------------------------------------------------- fences, time

inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline long long clock64() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
inline void __nanosleep(unsigned) {}
[[noreturn]] inline void __trap() { ::dlk::emurt::fault("__trap() was called"); }
[[noreturn]] inline void __brkpt() { ::dlk::emurt::fault("__brkpt() was called"); }

// ---------------------------------------------------------------------------------------------------- atomics

#define DLK_EMU_ATOMIC_BUILTIN(name, builtin, T) \
  inline T name(T* address, T value) { return builtin(address, value, ::dlk::emurt::kAtomicOrder); }
#define DLK_EMU_ATOMIC_INTEGERS(name, builtin)    \
  DLK_EMU_ATOMIC_BUILTIN(name, builtin, int)      \
  DLK_EMU_ATOMIC_BUILTIN(name, builtin, unsigned) \
  DLK_EMU_ATOMIC_BUILTIN(name, builtin, unsigned long long)
DLK_EMU_ATOMIC_INTEGERS(atomicAdd, __atomic_fetch_add)
DLK_EMU_ATOMIC_INTEGERS(atomicAnd, __atomic_fetch_and)
DLK_EMU_ATOMIC_INTEGERS(atomicOr, __atomic_fetch_or)
DLK_EMU_ATOMIC_INTEGERS(atomicXor, __atomic_fetch_xor)
DLK_EMU_ATOMIC_INTEGERS(atomicExch, __atomic_exchange_n)
DLK_EMU_ATOMIC_BUILTIN(atomicSub, __atomic_fetch_sub, int)
DLK_EMU_ATOMIC_BUILTIN(atomicSub, __atomic_fetch_sub, unsigned)
#undef DLK_EMU_ATOMIC_INTEGERS
#undef DLK_EMU_ATOMIC_BUILTIN

#define DLK_EMU_ATOMIC_CAS_LOOP(name, T, expr)                                         \
  inline T name(T* address, T value) {                                                 \
    return ::dlk::emurt::atomic_update(address, [value](T old) -> T { return expr; }); \
  }
DLK_EMU_ATOMIC_CAS_LOOP(atomicAdd, float, old + value)
DLK_EMU_ATOMIC_CAS_LOOP(atomicAdd, double, old + value)
DLK_EMU_ATOMIC_CAS_LOOP(atomicAdd, __half, __hadd(old, value))
DLK_EMU_ATOMIC_CAS_LOOP(atomicAdd, __half2, __hadd2(old, value))
DLK_EMU_ATOMIC_CAS_LOOP(atomicAdd, __nv_bfloat16, __hadd(old, value))
DLK_EMU_ATOMIC_CAS_LOOP(atomicAdd, __nv_bfloat162, __hadd2(old, value))
DLK_EMU_ATOMIC_CAS_LOOP(atomicExch, float, ((void)old, value))
DLK_EMU_ATOMIC_CAS_LOOP(atomicMax, int, old < value ? value : old)
DLK_EMU_ATOMIC_CAS_LOOP(atomicMax, unsigned, old < value ? value : old)
DLK_EMU_ATOMIC_CAS_LOOP(atomicMax, long long, old < value ? value : old)
DLK_EMU_ATOMIC_CAS_LOOP(atomicMax, unsigned long long, old < value ? value : old)
DLK_EMU_ATOMIC_CAS_LOOP(atomicMin, int, value < old ? value : old)
DLK_EMU_ATOMIC_CAS_LOOP(atomicMin, unsigned, value < old ? value : old)
DLK_EMU_ATOMIC_CAS_LOOP(atomicMin, long long, value < old ? value : old)
DLK_EMU_ATOMIC_CAS_LOOP(atomicMin, unsigned long long, value < old ? value : old)
DLK_EMU_ATOMIC_CAS_LOOP(atomicInc, unsigned, old >= value ? 0u : old + 1u)
DLK_EMU_ATOMIC_CAS_LOOP(atomicDec, unsigned, (old == 0u || old > value) ? value : old - 1u)
#undef DLK_EMU_ATOMIC_CAS_LOOP

#define DLK_EMU_ATOMIC_CAS(T)                                                                \
  inline T atomicCAS(T* address, T compare, T value) {                                       \
    __atomic_compare_exchange_n(address, &compare, value, false, ::dlk::emurt::kAtomicOrder, \
                                ::dlk::emurt::kAtomicOrder);                                 \
    return compare; /* the old value, whether or not the swap happened */                    \
  }
DLK_EMU_ATOMIC_CAS(int)
DLK_EMU_ATOMIC_CAS(unsigned)
DLK_EMU_ATOMIC_CAS(unsigned long long)
DLK_EMU_ATOMIC_CAS(unsigned short)
#undef DLK_EMU_ATOMIC_CAS

// ---------------------------------------------------------------------------------------------------- float math

inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return exp10f(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __log10f(float x) { return log10f(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline void __sincosf(float x, float* s, float* c) { sincosf(x, s, c); }
inline float __fdividef(float x, float y) { return x / y; }
inline float fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline double __drcp_rn(double x) { return 1.0 / x; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __frsqrt_rn(float x) { return 1.0f / sqrtf(x); }
inline float rcbrtf(float x) { return 1.0f / cbrtf(x); }
inline double rcbrt(double x) { return 1.0 / cbrt(x); }
inline float normcdff(float x) { return 0.5f * erfcf(-x * 0.70710678118654752f); }
inline double normcdf(double x) { return 0.5 * erfc(-x * 0.70710678118654752); }
inline float __saturatef(float x) { return fminf(fmaxf(x, 0.0f), 1.0f); }  // NaN -> 0, as on the GPU
inline float __fadd_rn(float x, float y) { return x + y; }
inline float __fsub_rn(float x, float y) { return x - y; }
inline float __fmul_rn(float x, float y) { return x * y; }
inline float __fdiv_rn(float x, float y) { return x / y; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __fmaf_rn(float x, float y, float z) { return fmaf(x, y, z); }
inline double __dadd_rn(double x, double y) { return x + y; }
inline double __dmul_rn(double x, double y) { return x * y; }
inline double __fma_rn(double x, double y, double z) { return fma(x, y, z); }

// ---------------------------------------------------------------------------------------------------- conversions

inline float __int_as_float(int x) { return ::dlk::emurt::bit_cast<float>(x); }
inline int __float_as_int(float x) { return ::dlk::emurt::bit_cast<int>(x); }
inline float __uint_as_float(unsigned x) { return ::dlk::emurt::bit_cast<float>(x); }
inline unsigned __float_as_uint(float x) { return ::dlk::emurt::bit_cast<unsigned>(x); }
inline double __longlong_as_double(long long x) { return ::dlk::emurt::bit_cast<double>(x); }
inline long long __double_as_longlong(double x) { return ::dlk::emurt::bit_cast<long long>(x); }
inline int __double2hiint(double x) { return static_cast<int>(__double_as_longlong(x) >> 32); }
inline int __double2loint(double x) { return static_cast<int>(__double_as_longlong(x)); }
inline double __hiloint2double(int hi, int lo) {
  return __longlong_as_double(static_cast<long long>(
      (static_cast<unsigned long long>(static_cast<unsigned>(hi)) << 32) | static_cast<unsigned>(lo)));
}

#define DLK_EMU_FLOAT_TO_INT(suffix, round)                                                                \
  inline int __float2int_##suffix(float x) { return ::dlk::emurt::saturate_to<int>(round(x)); }            \
  inline unsigned __float2uint_##suffix(float x) { return ::dlk::emurt::saturate_to<unsigned>(round(x)); } \
  inline long long __float2ll_##suffix(float x) { return ::dlk::emurt::saturate_to<long long>(round(x)); } \
  inline int __double2int_##suffix(double x) { return ::dlk::emurt::saturate_to<int>(round(x)); }
DLK_EMU_FLOAT_TO_INT(rn, nearbyint)
DLK_EMU_FLOAT_TO_INT(rz, trunc)
DLK_EMU_FLOAT_TO_INT(rd, floor)
DLK_EMU_FLOAT_TO_INT(ru, ceil)
#undef DLK_EMU_FLOAT_TO_INT
inline float __int2float_rn(int x) { return static_cast<float>(x); }
inline float __uint2float_rn(unsigned x) { return static_cast<float>(x); }
inline float __ll2float_rn(long long x) { return static_cast<float>(x); }
inline float __double2float_rn(double x) { return static_cast<float>(x); }
inline double __int2double_rn(int x) { return static_cast<double>(x); }

// ---------------------------------------------------------------------------------------------------- integer bits

inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
  x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
  return __builtin_bswap32(x);
}
inline unsigned long long __brevll(unsigned long long x) {
  return (static_cast<unsigned long long>(__brev(static_cast<unsigned>(x))) << 32) |
         __brev(static_cast<unsigned>(x >> 32));
}
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned selector) {
  const unsigned long long bytes = (static_cast<unsigned long long>(y) << 32) | x;
  unsigned result = 0;
  for (int i = 0; i < 4; ++i)
    result |= static_cast<unsigned>((bytes >> (8 * ((selector >> (4 * i)) & 7))) & 0xff) << (8 * i);
  return result;
}
inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned shift) {
  return static_cast<unsigned>((((static_cast<unsigned long long>(hi) << 32) | lo) << (shift & 31)) >> 32);
}
inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned shift) {
  return static_cast<unsigned>(((static_cast<unsigned long long>(hi) << 32) | lo) >> (shift & 31));
}
inline unsigned __umulhi(unsigned x, unsigned y) {
  return static_cast<unsigned>((static_cast<unsigned long long>(x) * y) >> 32);
}
inline int __mulhi(int x, int y) { return static_cast<int>((static_cast<long long>(x) * y) >> 32); }
inline unsigned long long __umul64hi(unsigned long long x, unsigned long long y) {
  return static_cast<unsigned long long>((static_cast<unsigned __int128>(x) * y) >> 64);
}
inline long long __mul64hi(long long x, long long y) {
  return static_cast<long long>((static_cast<__int128>(x) * y) >> 64);
}
inline int __mul24(int x, int y) { return ((x << 8) >> 8) * ((y << 8) >> 8); }
inline unsigned __umul24(unsigned x, unsigned y) { return (x & 0xffffffu) * (y & 0xffffffu); }

// ---------------------------------------------------------------------------------------------------- min / max
// The overload set of CUDA's math_functions.hpp, so mixed signed/unsigned calls pick the same type as under nvcc.

#define DLK_EMU_MINMAX(A, B, R)                                                                                    \
  inline R min(A a, B b) { return static_cast<R>(a) < static_cast<R>(b) ? static_cast<R>(a) : static_cast<R>(b); } \
  inline R max(A a, B b) { return static_cast<R>(a) > static_cast<R>(b) ? static_cast<R>(a) : static_cast<R>(b); }
DLK_EMU_MINMAX(int, int, int)
DLK_EMU_MINMAX(unsigned, unsigned, unsigned)
DLK_EMU_MINMAX(int, unsigned, unsigned)
DLK_EMU_MINMAX(unsigned, int, unsigned)
DLK_EMU_MINMAX(long, long, long)
DLK_EMU_MINMAX(unsigned long, unsigned long, unsigned long)
DLK_EMU_MINMAX(long, unsigned long, unsigned long)
DLK_EMU_MINMAX(unsigned long, long, unsigned long)
DLK_EMU_MINMAX(long long, long long, long long)
DLK_EMU_MINMAX(unsigned long long, unsigned long long, unsigned long long)
DLK_EMU_MINMAX(long long, unsigned long long, unsigned long long)
DLK_EMU_MINMAX(unsigned long long, long long, unsigned long long)
#undef DLK_EMU_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline double min(float a, double b) { return fmin(a, b); }
inline double max(float a, double b) { return fmax(a, b); }
inline double min(double a, float b) { return fmin(a, b); }
inline double max(double a, float b) { return fmax(a, b); }

// ---------------------------------------------------------------------------------------------------- loads, stores
// Cache hints mean nothing on the CPU.

template <typename T>
T __ldg(const T* p) {
  return *p;
}
template <typename T>
T __ldca(const T* p) {
  return *p;
}
template <typename T>
T __ldcg(const T* p) {
  return *p;
}
template <typename T>
T __ldcs(const T* p) {
  return *p;
}
template <typename T>
T __ldlu(const T* p) {
  return *p;
}
template <typename T>
T __ldcv(const T* p) {
  return *p;
}
template <typename T>
void __stcg(T* p, T v) {
  *p = v;
}
template <typename T>
void __stcs(T* p, T v) {
  *p = v;
}
template <typename T>
void __stwb(T* p, T v) {
  *p = v;
}
template <typename T>
void __stwt(T* p, T v) {
  *p = v;
}

// ---------------------------------------------------------------------------------------------------- half, bfloat16
// Computed in float and rounded once to the 16-bit type (the hardware's approximations are within that rounding).

namespace dlk::emurt {
inline float rcpf(float x) { return 1.0f / x; }
}  // namespace dlk::emurt

#define DLK_EMU_HALF_MATH(name, f)                                                                        \
  inline __half h##name(__half x) { return __float2half(f(__half2float(x))); }                            \
  inline __nv_bfloat16 h##name(__nv_bfloat16 x) { return __float2bfloat16(f(__bfloat162float(x))); }      \
  inline __half2 h2##name(__half2 x) { return __floats2half2_rn(f(__low2float(x)), f(__high2float(x))); } \
  inline __nv_bfloat162 h2##name(__nv_bfloat162 x) {                                                      \
    return __floats2bfloat162_rn(f(__low2float(x)), f(__high2float(x)));                                  \
  }
DLK_EMU_HALF_MATH(exp, expf)
DLK_EMU_HALF_MATH(exp2, exp2f)
DLK_EMU_HALF_MATH(exp10, exp10f)
DLK_EMU_HALF_MATH(log, logf)
DLK_EMU_HALF_MATH(log2, log2f)
DLK_EMU_HALF_MATH(log10, log10f)
DLK_EMU_HALF_MATH(sqrt, sqrtf)
DLK_EMU_HALF_MATH(rsqrt, rsqrtf)
DLK_EMU_HALF_MATH(rcp, ::dlk::emurt::rcpf)
DLK_EMU_HALF_MATH(sin, sinf)
DLK_EMU_HALF_MATH(cos, cosf)
DLK_EMU_HALF_MATH(tanh, tanhf)
DLK_EMU_HALF_MATH(floor, floorf)
DLK_EMU_HALF_MATH(ceil, ceilf)
DLK_EMU_HALF_MATH(trunc, truncf)
DLK_EMU_HALF_MATH(rint, rintf)
#undef DLK_EMU_HALF_MATH

inline __half __hfma(__half a, __half b, __half c) {
  return __float2half(fmaf(__half2float(a), __half2float(b), __half2float(c)));
}
inline __nv_bfloat16 __hfma(__nv_bfloat16 a, __nv_bfloat16 b, __nv_bfloat16 c) {
  return __float2bfloat16(fmaf(__bfloat162float(a), __bfloat162float(b), __bfloat162float(c)));
}
inline __half2 __hfma2(__half2 a, __half2 b, __half2 c) {
  return __floats2half2_rn(fmaf(__low2float(a), __low2float(b), __low2float(c)),
                           fmaf(__high2float(a), __high2float(b), __high2float(c)));
}
inline __nv_bfloat162 __hfma2(__nv_bfloat162 a, __nv_bfloat162 b, __nv_bfloat162 c) {
  return __floats2bfloat162_rn(fmaf(__low2float(a), __low2float(b), __low2float(c)),
                               fmaf(__high2float(a), __high2float(b), __high2float(c)));
}

#define DLK_EMU_HALF_TO_INT(suffix, round)                                                                    \
  inline int __half2int_##suffix(__half x) { return ::dlk::emurt::saturate_to<int>(round(__half2float(x))); } \
  inline int __bfloat162int_##suffix(__nv_bfloat16 x) {                                                       \
    return ::dlk::emurt::saturate_to<int>(round(__bfloat162float(x)));                                        \
  }
DLK_EMU_HALF_TO_INT(rn, nearbyintf)
DLK_EMU_HALF_TO_INT(rd, floorf)
DLK_EMU_HALF_TO_INT(ru, ceilf)
#undef DLK_EMU_HALF_TO_INT
