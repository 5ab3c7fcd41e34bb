// Internal to the emulator: the per-OS-thread scheduler that runs one block's threads as fibers (see emu.h for the
// design). emu.cpp drives it block by block; fibers.cpp implements it.
#pragma once

#include <boost/context/detail/fcontext.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/emu/emu.h"
#include "runtime/error.h"

namespace dlk::emurt {

// One launch, as every block sees it.
struct Launch {
  const char* name;
  dim3 grid;
  dim3 block;
  std::size_t dynamic_smem;
  ErasedBody body;
  const void* callable;
};

// Thrown inside a fiber once its block has failed (the error is already recorded): unwinds the CUDA thread's stack up
// to its fiber entry, running destructors, so the stack can be reused.
struct Unwind {};

enum class FiberState : std::uint8_t { Ready, AtBarrier, AtWarpOp, Exited };

struct Fiber : ThreadContext {
  boost::context::detail::fcontext_t context = nullptr;
  char* stack_lo = nullptr;  // for the ASan fiber annotations
  std::size_t stack_size = 0;
  void* asan_fake_stack = nullptr;
  FiberState state = FiberState::Ready;
  bool cancel = false;  // the block failed: unwind from the current wait instead of continuing
  int warp = 0;
  int lane = 0;
  // What the fiber waits at (a barrier or a warp op) and what the scheduler hands back when it completes.
  const char* file = nullptr;
  int line = 0;
  BarrierOp barrier_op = BarrierOp::Sync;
  WarpOp warp_op = WarpOp::Syncwarp;
  unsigned mask = 0;
  unsigned arg = 0;
  int width = 32;
  std::uint64_t value = 0;
  std::uint64_t result = 0;
};

class Scheduler {
 public:
  Scheduler() = default;
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;
  ~Scheduler();

  // The scheduler of the calling OS thread.
  static Scheduler& here();

  // Runs block `linear` of `launch` to completion; "" or the error message. Never throws.
  std::string run_block(const Launch& launch, long long linear) noexcept;

  // Called on a fiber's stack by the entry points in emu.h: the running fiber, and its arrival at a collective
  // (returns the fiber's result once the collective completes).
  Fiber& current() { return *static_cast<Fiber*>(const_cast<ThreadContext*>(tls_thread)); }
  std::uint64_t arrive_at_warp_op(Fiber& fiber, WarpOp op, unsigned mask, std::uint64_t value, unsigned arg, int width,
                                  const char* file, int line);
  std::uint64_t arrive_at_barrier(Fiber& fiber, BarrierOp op, int predicate, const char* file, int line);
  unsigned active_mask(const Fiber& fiber) const { return warp_present_[fiber.warp] & ~warp_exited_[fiber.warp]; }
  // Fails the block with `what`, reported at `fiber` (the first failure of a block wins).
  void fail(const Fiber& fiber, const std::string& what);

 private:
  static void fiber_entry(boost::context::detail::transfer_t from);
  void run_kernel(Fiber& fiber) noexcept;
  void prepare(const Launch& launch, long long linear);
  void resume(Fiber& fiber);
  void wait(Fiber& fiber);
  [[noreturn]] void reject_warp_op(const Fiber& fiber);
  void cancel_all();
  bool settle_warps();
  enum class Settled { Waiting, Done, Failed };
  Settled settle_group(int warp, const Fiber& caller);
  void settle_barrier();

  const Launch* launch_ = nullptr;
  std::vector<Fiber> fibers_;
  std::vector<char*> stacks_;                // mapped [lo, lo + kMappedBytes); a guard page below each
  std::vector<std::uint32_t> warp_waiting_;  // per warp: lanes waiting at a warp op
  std::vector<std::uint32_t> warp_exited_;   // per warp: lanes that returned
  std::vector<std::uint32_t> warp_present_;  // per warp: lanes that exist (the last warp may be partial)
  int exited_ = 0;
  std::string error_;
  struct alignas(128) SmemChunk {
    unsigned char bytes[128];
  };
  std::vector<SmemChunk> dynamic_smem_;
  // The scheduler's own context while a fiber runs, and its stack for the ASan annotations.
  boost::context::detail::fcontext_t scheduler_context_ = nullptr;
  const void* scheduler_stack_lo_ = nullptr;
  std::size_t scheduler_stack_size_ = 0;
  void* scheduler_fake_stack_ = nullptr;
};

}  // namespace dlk::emurt
