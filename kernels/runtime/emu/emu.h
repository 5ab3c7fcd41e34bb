// The CUDA execution-model emulator: what a .cu kernel sees when it is built by the host compiler with -DDLK_EMU
// (runtime/kernel.h includes this header), so the same source runs on machines without a GPU.
//
// How it runs a launch (runtime/emu/emu.cpp, fibers.cpp):
//  - Blocks are spread over OS threads (OpenMP, schedule(dynamic): blocks start in increasing linear index order);
//    a block runs on one OS thread from start to end.
//  - Every thread of the block is a fiber: a Boost.Context fcontext on a pooled, mmap'ed stack (256 KiB + guard
//    page) so register-tile arrays fit. One scheduler per OS thread resumes the fibers round-robin; a fiber runs
//    until it reaches __syncthreads or a warp collective, records what it waits at, and switches back.
//  - When every fiber has switched back, the scheduler settles what they wait at: a warp collective completes once
//    every lane of its mask waits at the same op with the same mask (the scheduler computes each lane's result, so
//    one rendezvous per shuffle is enough); the block barrier completes once every thread waits at the same
//    __syncthreads call site. Anything else can never complete on a GPU either, and is reported.
//  - Static shared memory (DLK_SHARED) is a `static thread_local SharedArray`: one per OS thread, which is one per
//    running block. Dynamic shared memory is a per-OS-thread buffer, filled with 0xff bytes (NaN as float) before
//    every block so reads of never-written shared memory show up.
//  - Atomics are __atomic builtins, atomic across blocks running on different OS threads.
//
// What is checked; each is thrown from launch() on the calling thread as dlk::Error(DLK_ERROR_DEVICE_FAILURE,
// "<kernel>: <what> (block (x,y,z), thread (x,y,z))"), from the failing block with the lowest linear index:
//  - barrier divergence: threads waiting at different __syncthreads call sites, or threads that exited while others
//    wait at a barrier;
//  - warp collectives: a lane of the mask that exited, waits at a barrier, or waits at another collective or with
//    another mask; a calling lane outside its own mask; a mask naming lanes beyond the block; a shuffle whose
//    source lane has exited; a width that is not a power of two in [1, 32]. (A shuffle reading a live lane outside
//    the mask gets all-ones bits, NaN as float: undefined on a GPU but legal when the value is ignored.)
//  - out-of-bounds indexing of SharedArray / SharedSpan, __trap(), C++ exceptions escaping kernel code, and the
//    launch limits (block <= 1024 threads, block z <= 64, grid y, z <= 65535, dynamic shared memory <= 227 KiB).
//
// What kernels must avoid here: plain `__shared__` and `extern __shared__` (a compile error: use DLK_SHARED,
// DLK_SHARED_2D, DLK_DYNAMIC_SHARED); warp-synchronous code without __syncwarp (a lane runs alone from one barrier
// or collective to the next, as Volta's independent thread scheduling allows); busy-waiting on another thread of the
// same block (fibers switch only at barriers and collectives, so the wait never ends); expecting checks on raw
// pointers into shared memory (indexing a SharedArray / SharedSpan is checked, pointer arithmetic on `&a[0]` or
// `.data()` is not); dynamic parallelism; device-side assert() (it aborts the process: use __trap()).
#pragma once

// Standard headers that spell __attribute__((__noinline__)) must be read before __noinline__ becomes a macro.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>

// __global__, __device__, __host__, __forceinline__, __align__ and __restrict__ already work under the host compiler
// (crt/host_defines.h); these two are left undefined there.
#ifndef __noinline__
#define __noinline__ __attribute__((noinline))
#endif
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif
// host_defines.h makes plain __shared__ expand to nothing, which would silently give every fiber its own copy.
#undef __shared__
#define __shared__                                                                                    \
  _Pragma(                                                                                            \
      "GCC error \"plain __shared__ does not work in the emulator: use DLK_SHARED, DLK_SHARED_2D or " \
      "DLK_DYNAMIC_SHARED from runtime/kernel.h\"")

namespace dlk::emurt {

// What kernel code reads through threadIdx & co. Points at the running fiber's; the scheduler sets it at every switch.
struct ThreadContext {
  uint3 thread_idx;
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
  unsigned char* dynamic_smem;
  std::size_t dynamic_smem_bytes;
};
inline thread_local const ThreadContext* tls_thread = nullptr;

// Stops the calling CUDA thread and fails its launch with `what` (thrown as dlk::Error outside a kernel).
[[noreturn]] void fault(const std::string& what);
[[noreturn]] void shared_out_of_bounds(const char* what, long long index, long long size, std::size_t elem_bytes);

template <typename I>
constexpr bool is_index_v = std::is_integral_v<I> || std::is_enum_v<I>;

// An index as a signed value; unsigned values too large for it come out negative, so they fail the bounds check.
template <typename I>
constexpr long long to_index(I i) {
  if constexpr (std::is_enum_v<I>) {
    return static_cast<long long>(static_cast<std::underlying_type_t<I>>(i));
  } else {
    return static_cast<long long>(i);
  }
}

// Rows of SharedArray<SharedArray<T, C>, R> must keep CUDA's layout (a [32][33] tile is 32 x 132 bytes), so the
// alignment is raised to 16 (for float4 access) only when that leaves the size unchanged.
template <typename T, std::size_t N>
constexpr std::size_t shared_align() {
  return (sizeof(T) * N) % 16 == 0 && alignof(T) < 16 ? 16 : alignof(T);
}

// Static shared memory: DLK_SHARED(T, name, N) declares `static thread_local SharedArray<T, N> name`. Trivially
// constructible (no TLS init guard), same size and layout as T[N]; indexing is bounds-checked and a bad index fails
// the launch. It converts to T* like an array, for code that passes it on (unchecked from there).
template <typename T, std::size_t N>
struct alignas(shared_align<T, N>()) SharedArray {
  T elems_[N];

  template <typename I, std::enable_if_t<is_index_v<I>, int> = 0>
  T& operator[](I i) {
    const long long k = to_index(i);
    if (__builtin_expect(k < 0 || k >= static_cast<long long>(N), 0))
      shared_out_of_bounds("shared array", k, static_cast<long long>(N), sizeof(T));
    return elems_[k];
  }
  template <typename I, std::enable_if_t<is_index_v<I>, int> = 0>
  const T& operator[](I i) const {
    return const_cast<SharedArray&>(*this)[i];
  }
  operator T*() { return elems_; }
  operator const T*() const { return elems_; }
  T* data() { return elems_; }
  static constexpr std::size_t size() { return N; }
};
static_assert(std::is_trivially_default_constructible_v<SharedArray<SharedArray<float, 33>, 32>> &&
              sizeof(SharedArray<SharedArray<float, 33>, 32>) == 32 * 33 * sizeof(float));

// Dynamic shared memory, or any offset view of it: `buf + n` keeps the bounds of the whole buffer, so
// `(buf + 64)[-1]` is fine and `(buf + 64)[n - 64]` for n past the end is reported.
template <typename T>
class SharedSpan {
 public:
  SharedSpan(T* base, long long size, long long pos) : base_(base), size_(size), pos_(pos) {}

  template <typename I, std::enable_if_t<is_index_v<I>, int> = 0>
  T& operator[](I i) const {
    const long long k = pos_ + to_index(i);
    if (__builtin_expect(k < 0 || k >= size_, 0)) shared_out_of_bounds("dynamic shared memory", k, size_, sizeof(T));
    return base_[k];
  }
  T& operator*() const { return (*this)[0]; }
  template <typename I, std::enable_if_t<is_index_v<I>, int> = 0>
  SharedSpan operator+(I n) const {
    return SharedSpan(base_, size_, pos_ + to_index(n));
  }
  template <typename I, std::enable_if_t<is_index_v<I>, int> = 0>
  SharedSpan operator-(I n) const {
    return SharedSpan(base_, size_, pos_ - to_index(n));
  }
  template <typename I, std::enable_if_t<is_index_v<I>, int> = 0>
  SharedSpan& operator+=(I n) {
    pos_ += to_index(n);
    return *this;
  }
  // Raw pointers: unchecked from here on.
  T* data() const { return base_ + pos_; }
  operator T*() const { return data(); }
  long long size() const { return size_ - pos_; }  // elements from this view's start to the end of the buffer

  // The same bytes, from this view's start, as another type (dynamic shared memory shared by several arrays).
  template <typename U>
  SharedSpan<U> reinterpret() const {
    const long long byte = pos_ * static_cast<long long>(sizeof(T));
    if (pos_ < 0 || pos_ > size_) shared_out_of_bounds("dynamic shared memory", pos_, size_, sizeof(T));
    if (byte % static_cast<long long>(alignof(U)) != 0)
      fault("dynamic shared memory: reinterpreting element " + std::to_string(pos_) + " as a type aligned to " +
            std::to_string(alignof(U)) + " bytes is misaligned");
    const long long bytes = size_ * static_cast<long long>(sizeof(T));
    return SharedSpan<U>(reinterpret_cast<U*>(reinterpret_cast<unsigned char*>(base_) + byte),
                         (bytes - byte) / static_cast<long long>(sizeof(U)), 0);
  }

 private:
  T* base_;
  long long size_;  // elements in the whole buffer
  long long pos_;   // this view's first element, relative to base_
};

// The launch's dynamic shared memory as Ts (DLK_DYNAMIC_SHARED); every call in a block sees the same bytes.
template <typename T>
SharedSpan<T> dynamic_shared() {
  return SharedSpan<T>(reinterpret_cast<T*>(tls_thread->dynamic_smem),
                       static_cast<long long>(tls_thread->dynamic_smem_bytes / sizeof(T)), 0);
}

// Warp collectives and block barriers: the calling fiber waits in the scheduler until its whole group has arrived.
// `value` carries the lane's operand as raw bits, `arg` the source lane / delta / xor mask of a shuffle.
enum class WarpOp : int {
  ShflIdx,
  ShflUp,
  ShflDown,
  ShflXor,
  Ballot,
  Any,
  All,
  Syncwarp,
  ReduceAdd,
  ReduceMinU,
  ReduceMaxU,
  ReduceMinS,
  ReduceMaxS,
  ReduceAnd,
  ReduceOr,
  ReduceXor,
  MatchAny,
  MatchAll,
  Mma,
};
std::uint64_t warp_op(WarpOp op, unsigned mask, std::uint64_t value, unsigned arg, int width, const char* file,
                      int line);
unsigned active_mask();

// mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}: each lane passes its A/B/C fragments (PTX ISA layouts) and
// receives its D fragment. The scheduler computes the warp's product once all 32 lanes have arrived, so a lane
// that diverges or exits is reported as for any warp collective. Products are exact in fp32 and summed in fp64,
// then rounded once: the hardware's fp32 accumulation differs from this in the last bits only.
enum class MmaType : unsigned { F16 = 0, BF16 = 1 };
struct MmaLane {
  std::uint32_t a[4];
  std::uint32_t b[2];
  float c[4];
  float d[4];
};
void mma_m16n8k16(MmaType type, MmaLane& lane, const char* file, int line);

enum class BarrierOp : int { Sync, Count, And, Or };
int block_barrier(BarrierOp op, int predicate, const char* file, int line);

// Values up to 8 bytes travel through collectives as raw bits, as they do through the hardware's 32-bit lanes.
template <typename T>
std::uint64_t to_bits(const T& v) {
  static_assert(sizeof(T) <= 8, "warp shuffles move values of at most 8 bytes");
  std::uint64_t bits = 0;
  std::memcpy(&bits, static_cast<const void*>(&v), sizeof(T));
  return bits;
}
template <typename T>
T from_bits(std::uint64_t bits) {
  T v;
  std::memcpy(static_cast<void*>(&v), &bits, sizeof(T));
  return v;
}

// Type-erased launch; use launch() below.
using ErasedBody = void (*)(const void* callable);
void launch_erased(const char* name, dim3 grid, dim3 block, std::size_t dynamic_smem, int num_threads, ErasedBody body,
                   const void* callable);

// Runs `body` (the kernel call, a callable safe to call concurrently) as every thread of every block of the grid;
// `num_threads` OS threads, 0 for the OpenMP default. Throws dlk::Error on any error the emulator detects.
template <typename F>
void launch(const char* name, dim3 grid, dim3 block, std::size_t dynamic_smem, int num_threads, const F& body) {
  launch_erased(
      name, grid, block, dynamic_smem, num_threads, [](const void* callable) { (*static_cast<const F*>(callable))(); },
      &body);
}

}  // namespace dlk::emurt

// ---------------------------------------------------------------------------------------------------- built-ins

#define threadIdx (::dlk::emurt::tls_thread->thread_idx)
#define blockIdx (::dlk::emurt::tls_thread->block_idx)
#define blockDim (::dlk::emurt::tls_thread->block_dim)
#define gridDim (::dlk::emurt::tls_thread->grid_dim)
inline constexpr int warpSize = 32;

// The call site (file, line) is a defaulted trailing argument, so barriers and collectives stay plain functions
// while the scheduler can name where each thread waits.
#define DLK_EMU_SITE const char *file = __builtin_FILE(), int line = __builtin_LINE()

inline void __syncthreads(DLK_EMU_SITE) { ::dlk::emurt::block_barrier(::dlk::emurt::BarrierOp::Sync, 0, file, line); }
inline int __syncthreads_count(int predicate, DLK_EMU_SITE) {
  return ::dlk::emurt::block_barrier(::dlk::emurt::BarrierOp::Count, predicate, file, line);
}
inline int __syncthreads_and(int predicate, DLK_EMU_SITE) {
  return ::dlk::emurt::block_barrier(::dlk::emurt::BarrierOp::And, predicate, file, line);
}
inline int __syncthreads_or(int predicate, DLK_EMU_SITE) {
  return ::dlk::emurt::block_barrier(::dlk::emurt::BarrierOp::Or, predicate, file, line);
}

template <typename T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize, DLK_EMU_SITE) {
  using namespace ::dlk::emurt;
  return from_bits<T>(warp_op(WarpOp::ShflIdx, mask, to_bits(var), static_cast<unsigned>(src_lane), width, file, line));
}
template <typename T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize, DLK_EMU_SITE) {
  using namespace ::dlk::emurt;
  return from_bits<T>(warp_op(WarpOp::ShflUp, mask, to_bits(var), delta, width, file, line));
}
template <typename T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize, DLK_EMU_SITE) {
  using namespace ::dlk::emurt;
  return from_bits<T>(warp_op(WarpOp::ShflDown, mask, to_bits(var), delta, width, file, line));
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize, DLK_EMU_SITE) {
  using namespace ::dlk::emurt;
  return from_bits<T>(
      warp_op(WarpOp::ShflXor, mask, to_bits(var), static_cast<unsigned>(lane_mask), width, file, line));
}

inline unsigned __ballot_sync(unsigned mask, int predicate, DLK_EMU_SITE) {
  return static_cast<unsigned>(
      ::dlk::emurt::warp_op(::dlk::emurt::WarpOp::Ballot, mask, predicate != 0, 0, warpSize, file, line));
}
inline int __any_sync(unsigned mask, int predicate, DLK_EMU_SITE) {
  return static_cast<int>(
      ::dlk::emurt::warp_op(::dlk::emurt::WarpOp::Any, mask, predicate != 0, 0, warpSize, file, line));
}
inline int __all_sync(unsigned mask, int predicate, DLK_EMU_SITE) {
  return static_cast<int>(
      ::dlk::emurt::warp_op(::dlk::emurt::WarpOp::All, mask, predicate != 0, 0, warpSize, file, line));
}
inline void __syncwarp(unsigned mask = 0xffffffffu, DLK_EMU_SITE) {
  ::dlk::emurt::warp_op(::dlk::emurt::WarpOp::Syncwarp, mask, 0, 0, warpSize, file, line);
}
// The lanes of the caller's warp that have not exited: fibers reconverge at every collective, so this is what a
// converged warp reports.
inline unsigned __activemask() { return ::dlk::emurt::active_mask(); }

// sm_80 warp reductions.
#define DLK_EMU_WARP_REDUCE(name, T, op)                                                                      \
  inline T name(unsigned mask, T value, DLK_EMU_SITE) {                                                       \
    return static_cast<T>(::dlk::emurt::warp_op(::dlk::emurt::WarpOp::op, mask,                               \
                                                static_cast<std::uint64_t>(static_cast<long long>(value)), 0, \
                                                warpSize, file, line));                                       \
  }
DLK_EMU_WARP_REDUCE(__reduce_add_sync, unsigned, ReduceAdd)
DLK_EMU_WARP_REDUCE(__reduce_add_sync, int, ReduceAdd)
DLK_EMU_WARP_REDUCE(__reduce_min_sync, unsigned, ReduceMinU)
DLK_EMU_WARP_REDUCE(__reduce_min_sync, int, ReduceMinS)
DLK_EMU_WARP_REDUCE(__reduce_max_sync, unsigned, ReduceMaxU)
DLK_EMU_WARP_REDUCE(__reduce_max_sync, int, ReduceMaxS)
DLK_EMU_WARP_REDUCE(__reduce_and_sync, unsigned, ReduceAnd)
DLK_EMU_WARP_REDUCE(__reduce_or_sync, unsigned, ReduceOr)
DLK_EMU_WARP_REDUCE(__reduce_xor_sync, unsigned, ReduceXor)
#undef DLK_EMU_WARP_REDUCE

template <typename T>
unsigned __match_any_sync(unsigned mask, T value, DLK_EMU_SITE) {
  using namespace ::dlk::emurt;
  return static_cast<unsigned>(warp_op(WarpOp::MatchAny, mask, to_bits(value), 0, warpSize, file, line));
}
template <typename T>
unsigned __match_all_sync(unsigned mask, T value, int* pred, DLK_EMU_SITE) {
  using namespace ::dlk::emurt;
  const std::uint64_t r = warp_op(WarpOp::MatchAll, mask, to_bits(value), 0, warpSize, file, line);
  *pred = static_cast<int>(r >> 32);
  return static_cast<unsigned>(r);
}

#undef DLK_EMU_SITE

#include "runtime/emu/intrinsics.h"
