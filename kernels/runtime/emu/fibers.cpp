// The per-OS-thread scheduler: runs the threads of one block as fibers and settles their barriers and warp
// collectives (design in emu.h).
//
// A block runs in passes: every ready fiber is resumed in thread order and runs until it waits at a barrier or a
// warp op, or returns. After a pass no fiber is ready, so every waiting group is either complete (all lanes of the
// mask are there, with the same op and mask; all threads at one __syncthreads) or can never complete, which on a GPU
// is a hang or undefined behaviour and here is an error. Warp ops are settled first; the block barrier is released
// only when nothing else can move.
#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <sstream>
#include <system_error>

#include "common/half.h"
#include "runtime/emu/scheduler.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define DLK_EMU_ASAN 1
#endif

namespace dlk::emurt {

namespace bc = boost::context::detail;

namespace {

// Kernels keep register tiles on the stack; ASan's redzones make frames larger.
#if defined(DLK_EMU_ASAN)
constexpr std::size_t kStackBytes = 512 * 1024;
#else
constexpr std::size_t kStackBytes = 256 * 1024;
#endif
constexpr std::size_t kGuardBytes = 4096;  // PROT_NONE below each stack: an overflow faults instead of corrupting
// Stacks are page-aligned, so without an offset the hot top frames of all fibers would share the same few cache sets
// and every switch would miss; fiber i starts (i % 256) cache lines below its top (space added on top of kStackBytes).
constexpr std::size_t kColorBytes = 256 * 64;
constexpr std::size_t kMappedBytes = kStackBytes + kColorBytes;

char* map_stack() {
  void* p = mmap(nullptr, kMappedBytes + kGuardBytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap of a fiber stack");
  mprotect(p, kGuardBytes, PROT_NONE);
  return static_cast<char*>(p) + kGuardBytes;
}

const char* op_name(WarpOp op) {
  switch (op) {
    case WarpOp::ShflIdx: return "__shfl_sync";
    case WarpOp::ShflUp: return "__shfl_up_sync";
    case WarpOp::ShflDown: return "__shfl_down_sync";
    case WarpOp::ShflXor: return "__shfl_xor_sync";
    case WarpOp::Ballot: return "__ballot_sync";
    case WarpOp::Any: return "__any_sync";
    case WarpOp::All: return "__all_sync";
    case WarpOp::Syncwarp: return "__syncwarp";
    case WarpOp::ReduceAdd: return "__reduce_add_sync";
    case WarpOp::ReduceMinU:
    case WarpOp::ReduceMinS: return "__reduce_min_sync";
    case WarpOp::ReduceMaxU:
    case WarpOp::ReduceMaxS: return "__reduce_max_sync";
    case WarpOp::ReduceAnd: return "__reduce_and_sync";
    case WarpOp::ReduceOr: return "__reduce_or_sync";
    case WarpOp::ReduceXor: return "__reduce_xor_sync";
    case WarpOp::MatchAny: return "__match_any_sync";
    case WarpOp::MatchAll: return "__match_all_sync";
    case WarpOp::Mma: return "mma.sync.m16n8k16";
  }
  return "warp op";
}

const char* op_name(BarrierOp op) {
  switch (op) {
    case BarrierOp::Sync: return "__syncthreads()";
    case BarrierOp::Count: return "__syncthreads_count()";
    case BarrierOp::And: return "__syncthreads_and()";
    case BarrierOp::Or: return "__syncthreads_or()";
  }
  return "barrier";
}

bool is_shuffle(WarpOp op) {
  return op == WarpOp::ShflIdx || op == WarpOp::ShflUp || op == WarpOp::ShflDown || op == WarpOp::ShflXor;
}

std::string where(const char* file, int line) {
  const char* slash = file ? std::strrchr(file, '/') : nullptr;
  return std::string(slash ? slash + 1 : (file ? file : "?")) + ":" + std::to_string(line);
}

std::string hex(std::uint32_t mask) {
  std::ostringstream out;
  out << "0x" << std::hex << mask;
  return out.str();
}

std::string coords(const uint3& v) {
  return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")";
}

// "__shfl_sync(mask 0xffffffff) at file.cu:12" — what a lane waits at, for messages.
std::string waiting_at(const Fiber& f) {
  if (f.state == FiberState::AtBarrier) return std::string(op_name(f.barrier_op)) + " at " + where(f.file, f.line);
  return std::string(op_name(f.warp_op)) + "(mask " + hex(f.mask) + ") at " + where(f.file, f.line);
}

bool same_site(const Fiber& a, const Fiber& b) {
  return a.line == b.line && a.barrier_op == b.barrier_op &&
         (a.file == b.file || (a.file && b.file && std::strcmp(a.file, b.file) == 0));
}

// The lane a shuffle reads, by the PTX shfl.sync rules for the c operand CUDA passes ((32 - width) << 8 | clamp):
// lanes form segments of `width`; idx wraps within the segment, up/down read the caller's own value when the source
// leaves the segment, xor may read from a lower segment but not a higher one.
int shuffle_source(WarpOp op, int lane, unsigned arg, int width) {
  const long long segment_bits = 32 - width;
  const long long first = lane & segment_bits;
  const long long last = first | (31 & ~segment_bits);
  long long j = lane;
  switch (op) {
    case WarpOp::ShflIdx: j = first | (arg & 31 & ~segment_bits); break;
    case WarpOp::ShflUp:
      j = lane - static_cast<long long>(arg);
      if (j < first) j = lane;
      break;
    case WarpOp::ShflDown:
      j = lane + static_cast<long long>(arg);
      if (j > last) j = lane;
      break;
    case WarpOp::ShflXor:
      j = lane ^ static_cast<long long>(arg);
      if (j > last) j = lane;
      break;
    default: break;
  }
  return static_cast<int>(j);
}

// What every lane of a completed vote, reduction, match_all or __syncwarp group receives. Values of int reductions
// arrive sign-extended to 64 bits, so the low 32 bits of a sum are right for both signednesses.
std::uint64_t group_result(WarpOp op, std::uint32_t mask, const Fiber* lanes) {
  const std::uint64_t first_value = lanes[__builtin_ctz(mask)].value;
  std::uint32_t votes = 0;  // lanes whose predicate is true
  bool all_equal = true;
  std::uint64_t acc = first_value;
  for (std::uint32_t rest = mask; rest != 0; rest &= rest - 1) {
    const int j = __builtin_ctz(rest);
    const std::uint64_t v = lanes[j].value;
    const auto u = static_cast<std::uint32_t>(v), au = static_cast<std::uint32_t>(acc);
    const auto s = static_cast<std::int32_t>(v), as = static_cast<std::int32_t>(acc);
    if (v != 0) votes |= 1u << j;
    all_equal &= v == first_value;
    if (j == __builtin_ctz(mask)) continue;  // acc starts as the first lane's value
    switch (op) {
      case WarpOp::ReduceAdd: acc += v; break;
      case WarpOp::ReduceMinU: acc = u < au ? v : acc; break;
      case WarpOp::ReduceMaxU: acc = u > au ? v : acc; break;
      case WarpOp::ReduceMinS: acc = s < as ? v : acc; break;
      case WarpOp::ReduceMaxS: acc = s > as ? v : acc; break;
      case WarpOp::ReduceAnd: acc &= v; break;
      case WarpOp::ReduceOr: acc |= v; break;
      case WarpOp::ReduceXor: acc ^= v; break;
      default: break;
    }
  }
  switch (op) {
    case WarpOp::Ballot: return votes;
    case WarpOp::Any: return votes != 0;
    case WarpOp::All: return votes == mask;
    case WarpOp::MatchAll: return all_equal ? (std::uint64_t{1} << 32 | mask) : 0;  // bit 32: the predicate
    case WarpOp::Syncwarp: return 0;
    default: return acc;
  }
}

// One warp's mma.sync m16n8k16 (row.col, fp32 accumulators) from the lanes' fragments, by the PTX ISA layouts.
// With g = lane / 4 and t = lane % 4:
//   A (16x16, 4 regs of 2 elements): reg r holds row g + 8*(r % 2), cols 2t + 8*(r / 2) + {0, 1};
//   B (16x8, 2 regs of 2 elements):  reg r holds rows (k) 2t + 8*r + {0, 1}, col (n) g;
//   C/D (16x8, 4 floats):            element i is row g + 8*(i / 2), col 2t + i % 2.
void mma_group(MmaType type, Fiber* lanes) {
  const auto element = [type](std::uint32_t reg, int half) {
    const auto bits = static_cast<std::uint16_t>(half ? reg >> 16 : reg & 0xffffu);
    return static_cast<double>(type == MmaType::BF16 ? bf16_to_float(bits) : fp16_to_float(bits));
  };
  double a[16][16], b[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    const auto& in = *reinterpret_cast<const MmaLane*>(lanes[lane].value);
    const int g = lane / 4, t = lane % 4;
    for (int r = 0; r < 4; ++r)
      for (int h = 0; h < 2; ++h) a[g + 8 * (r % 2)][2 * t + 8 * (r / 2) + h] = element(in.a[r], h);
    for (int r = 0; r < 2; ++r)
      for (int h = 0; h < 2; ++h) b[2 * t + 8 * r + h][g] = element(in.b[r], h);
  }
  for (int lane = 0; lane < 32; ++lane) {
    auto& io = *reinterpret_cast<MmaLane*>(lanes[lane].value);
    const int g = lane / 4, t = lane % 4;
    for (int i = 0; i < 4; ++i) {
      const int row = g + 8 * (i / 2), col = 2 * t + i % 2;
      double acc = io.c[i];
      for (int k = 0; k < 16; ++k) acc += a[row][k] * b[k][col];
      io.d[i] = static_cast<float>(acc);
    }
  }
}

}  // namespace

Scheduler& Scheduler::here() {
  static thread_local Scheduler scheduler;
  return scheduler;
}

Scheduler::~Scheduler() {
  for (char* lo : stacks_) munmap(lo - kGuardBytes, kMappedBytes + kGuardBytes);
}

void Scheduler::fail(const Fiber& fiber, const std::string& what) {
  if (!error_.empty()) return;
  error_ = std::string(launch_->name) + ": " + what + " (block " + coords(fiber.block_idx) + ", thread " +
           coords(fiber.thread_idx) + ")";
}

void Scheduler::prepare(const Launch& launch, long long linear) {
  launch_ = &launch;
  error_.clear();
  exited_ = 0;
  const unsigned bx = launch.block.x, by = launch.block.y;
  const unsigned n = bx * by * launch.block.z;
  while (stacks_.size() < n) stacks_.push_back(map_stack());

  const unsigned warps = (n + 31) / 32;
  warp_waiting_.assign(warps, 0);
  warp_exited_.assign(warps, 0);
  warp_present_.assign(warps, ~0u);
  if (n % 32 != 0) warp_present_.back() = (1u << (n % 32)) - 1;

  const std::size_t chunks = (launch.dynamic_smem + sizeof(SmemChunk) - 1) / sizeof(SmemChunk);
  if (dynamic_smem_.size() < chunks) dynamic_smem_.resize(chunks);
  unsigned char* smem = dynamic_smem_.empty() ? nullptr : dynamic_smem_.front().bytes;
  if (launch.dynamic_smem > 0) std::memset(smem, 0xff, launch.dynamic_smem);

  const unsigned long long gx = launch.grid.x, gy = launch.grid.y;
  const unsigned long long b = static_cast<unsigned long long>(linear);
  const uint3 block_idx = make_uint3(static_cast<unsigned>(b % gx), static_cast<unsigned>((b / gx) % gy),
                                     static_cast<unsigned>(b / (gx * gy)));
  fibers_.assign(n, Fiber{});
  for (unsigned i = 0; i < n; ++i) {
    Fiber& f = fibers_[i];
    f.thread_idx = make_uint3(i % bx, (i / bx) % by, i / (bx * by));
    f.block_idx = block_idx;
    f.block_dim = launch.block;
    f.grid_dim = launch.grid;
    f.dynamic_smem = smem;
    f.dynamic_smem_bytes = launch.dynamic_smem;
    f.stack_lo = stacks_[i];
    f.stack_size = kMappedBytes - (i % 256) * 64;
    f.context = bc::make_fcontext(f.stack_lo + f.stack_size, f.stack_size, &Scheduler::fiber_entry);
    f.warp = static_cast<int>(i / 32);
    f.lane = static_cast<int>(i % 32);
  }
}

std::string Scheduler::run_block(const Launch& launch, long long linear) noexcept {
  try {
    prepare(launch, linear);
    const int n = static_cast<int>(fibers_.size());
    while (error_.empty()) {
      for (Fiber& f : fibers_) {
        if (f.state == FiberState::Ready) resume(f);
        if (!error_.empty()) break;
      }
      if (!error_.empty() || exited_ == n) break;
      if (!settle_warps() && error_.empty()) settle_barrier();
    }
    if (!error_.empty()) cancel_all();
  } catch (const std::exception& e) {
    error_ = std::string(launch.name) + ": the emulator failed: " + e.what();
  }
  return error_;
}

// Switches from the scheduler into `fiber` until it waits or returns.
void Scheduler::resume(Fiber& fiber) {
  tls_thread = &fiber;
#if defined(DLK_EMU_ASAN)
  __sanitizer_start_switch_fiber(&scheduler_fake_stack_, fiber.stack_lo, fiber.stack_size);
#endif
  const bc::transfer_t back = bc::jump_fcontext(fiber.context, &fiber);
#if defined(DLK_EMU_ASAN)
  __sanitizer_finish_switch_fiber(scheduler_fake_stack_, nullptr, nullptr);
#endif
  fiber.context = back.fctx;
  tls_thread = nullptr;
}

// Switches from the running fiber back to the scheduler; returns when the scheduler resumes it.
void Scheduler::wait(Fiber& fiber) {
  if (fiber.cancel) throw Unwind{};
#if defined(DLK_EMU_ASAN)
  __sanitizer_start_switch_fiber(&fiber.asan_fake_stack, scheduler_stack_lo_, scheduler_stack_size_);
#endif
  const bc::transfer_t back = bc::jump_fcontext(scheduler_context_, nullptr);
  scheduler_context_ = back.fctx;
#if defined(DLK_EMU_ASAN)
  __sanitizer_finish_switch_fiber(fiber.asan_fake_stack, &scheduler_stack_lo_, &scheduler_stack_size_);
#endif
  if (fiber.cancel) throw Unwind{};
}

// First frame on a fiber's stack. It holds no objects (the kernel runs one call deeper), so once the kernel returns
// the stack is clean for the next block, ASan shadow included.
void Scheduler::fiber_entry(bc::transfer_t from) {
  Fiber& fiber = *static_cast<Fiber*>(from.data);
  Scheduler& s = here();
  s.scheduler_context_ = from.fctx;
#if defined(DLK_EMU_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &s.scheduler_stack_lo_, &s.scheduler_stack_size_);
#endif
  s.run_kernel(fiber);
  fiber.state = FiberState::Exited;
  ++s.exited_;
  s.warp_exited_[fiber.warp] |= 1u << fiber.lane;
#if defined(DLK_EMU_ASAN)
  __sanitizer_start_switch_fiber(nullptr, s.scheduler_stack_lo_, s.scheduler_stack_size_);
#endif
  bc::jump_fcontext(s.scheduler_context_, nullptr);
  __builtin_unreachable();  // an exited fiber is never resumed
}

__attribute__((noinline)) void Scheduler::run_kernel(Fiber& fiber) noexcept {
  try {
    if (!fiber.cancel) launch_->body(launch_->callable);
  } catch (const Unwind&) {
  } catch (const std::exception& e) {
    fail(fiber, std::string("the kernel threw an exception: ") + e.what());
  } catch (...) {
    fail(fiber, "the kernel threw an exception");
  }
}

// After a failure, every fiber still suspended unwinds from its wait (destructors run, the stack is left clean).
void Scheduler::cancel_all() {
  for (Fiber& f : fibers_) {
    if (f.state == FiberState::Exited) continue;
    f.cancel = true;
    resume(f);
  }
}

std::uint64_t Scheduler::arrive_at_warp_op(Fiber& f, WarpOp op, unsigned mask, std::uint64_t value, unsigned arg,
                                           int width, const char* file, int line) {
  f.state = FiberState::AtWarpOp;
  f.warp_op = op;
  f.mask = mask;
  f.value = value;
  f.arg = arg;
  f.width = width;
  f.file = file;
  f.line = line;
  const bool bad_width = is_shuffle(op) && (width < 1 || width > 32 || (width & (width - 1)) != 0);
  if (!(mask >> f.lane & 1u) || (mask & ~warp_present_[f.warp]) != 0 || bad_width) reject_warp_op(f);
  warp_waiting_[f.warp] |= 1u << f.lane;
  wait(f);
  return f.result;
}

// Out of line and cold: building messages would otherwise give every warp op a large stack frame.
__attribute__((noinline, cold)) void Scheduler::reject_warp_op(const Fiber& f) {
  const std::string at = std::string(op_name(f.warp_op)) + " at " + where(f.file, f.line);
  if (!(f.mask >> f.lane & 1u))
    fault(at + ": the calling lane " + std::to_string(f.lane) + " is not in mask " + hex(f.mask));
  if (f.mask & ~warp_present_[f.warp])
    fault(at + ": mask " + hex(f.mask) + " names lanes beyond the block's " + std::to_string(fibers_.size()) +
          " threads");
  fault(at + ": width " + std::to_string(f.width) + " is not a power of two in [1, 32]");
}

std::uint64_t Scheduler::arrive_at_barrier(Fiber& f, BarrierOp op, int predicate, const char* file, int line) {
  f.state = FiberState::AtBarrier;
  f.barrier_op = op;
  f.value = predicate != 0;
  f.file = file;
  f.line = line;
  wait(f);
  return f.result;
}

// Completes every warp-op group whose lanes have all arrived; false when none did (or on an error).
bool Scheduler::settle_warps() {
  bool released = false;
  for (int w = 0; w < static_cast<int>(warp_waiting_.size()); ++w) {
    for (std::uint32_t todo = warp_waiting_[w]; todo != 0;) {
      const Fiber& caller = fibers_[w * 32 + __builtin_ctz(todo)];
      todo &= ~caller.mask;
      switch (settle_group(w, caller)) {
        case Settled::Waiting: break;
        case Settled::Done: released = true; break;
        case Settled::Failed: return false;
      }
    }
  }
  return released;
}

Scheduler::Settled Scheduler::settle_group(int w, const Fiber& caller) {
  const std::uint32_t mask = caller.mask;
  Fiber* lanes = &fibers_[w * 32];
  for (std::uint32_t rest = mask; rest != 0; rest &= rest - 1) {
    const Fiber& other = lanes[__builtin_ctz(rest)];
    // Released by another group just now: it runs in the next pass and may still arrive here.
    if (other.state == FiberState::Ready) return Settled::Waiting;
  }
  for (std::uint32_t rest = mask; rest != 0; rest &= rest - 1) {
    const Fiber& other = lanes[__builtin_ctz(rest)];
    const auto other_lane = [&] {
      return "lane " + std::to_string(other.lane) + " (thread " + coords(other.thread_idx) + ")";
    };
    if (other.state == FiberState::Exited) {
      fail(caller, "warp divergence: " + waiting_at(caller) + " waits for " + other_lane() + ", which has exited");
    } else if (other.state == FiberState::AtBarrier ||
               (other.state == FiberState::AtWarpOp && (other.warp_op != caller.warp_op || other.mask != mask))) {
      fail(caller, "warp divergence: lane " + std::to_string(caller.lane) + " waits at " + waiting_at(caller) +
                       " while " + other_lane() + " waits at " + waiting_at(other));
    }
    if (!error_.empty()) return Settled::Failed;
  }

  const WarpOp op = caller.warp_op;
  if (op == WarpOp::Mma) {
    if (mask != ~0u || warp_present_[w] != ~0u) {
      fail(caller, "warp divergence: " + waiting_at(caller) + " needs all 32 lanes of the warp converged");
      return Settled::Failed;
    }
    mma_group(static_cast<MmaType>(caller.arg), lanes);
  }
  const std::uint64_t common = is_shuffle(op) || op == WarpOp::Mma ? 0 : group_result(op, mask, lanes);
  for (std::uint32_t rest = mask; rest != 0; rest &= rest - 1) {
    Fiber& f = lanes[__builtin_ctz(rest)];
    if (op == WarpOp::MatchAny) {
      f.result = 0;
      for (std::uint32_t each = mask; each != 0; each &= each - 1)
        if (lanes[__builtin_ctz(each)].value == f.value) f.result |= 1u << __builtin_ctz(each);
    } else if (!is_shuffle(op)) {
      f.result = common;
    } else {
      const int src = shuffle_source(op, f.lane, f.arg, f.width);
      if (mask >> src & 1u) {
        f.result = lanes[src].value;
      } else if (warp_exited_[w] >> src & 1u) {
        fail(f,
             "warp divergence: " + waiting_at(f) + " reads source lane " + std::to_string(src) + ", which has exited");
        return Settled::Failed;
      } else {
        // A live lane outside the mask (or past the block's end): the value is undefined on a GPU, and code may read
        // it as long as it ignores it, so it is poisoned (NaN as float) rather than reported.
        f.result = ~std::uint64_t{0};
      }
    }
  }
  for (std::uint32_t rest = mask; rest != 0; rest &= rest - 1) lanes[__builtin_ctz(rest)].state = FiberState::Ready;
  warp_waiting_[w] &= ~mask;
  return Settled::Done;
}

// Called when no fiber can move and no warp op is pending: every live thread waits at a block barrier. It completes
// only if all threads wait at the same call site; exited threads never arrive.
void Scheduler::settle_barrier() {
  const Fiber* first = nullptr;
  const Fiber* gone = nullptr;
  for (const Fiber& f : fibers_) {
    if (f.state == FiberState::AtBarrier && !first) first = &f;
    if (f.state == FiberState::Exited && !gone) gone = &f;
    if (f.state == FiberState::AtWarpOp || f.state == FiberState::Ready) {
      fail(f, "emulator deadlock at " + waiting_at(f) + " (a bug in the emulator)");
      return;
    }
  }
  if (gone) {
    fail(*first, "barrier divergence: " + waiting_at(*first) + " waits for threads that have exited (" +
                     std::to_string(exited_) + " of " + std::to_string(fibers_.size()) + " threads, e.g. thread " +
                     coords(gone->thread_idx) + ")");
    return;
  }
  int count = 0;
  for (const Fiber& f : fibers_) {
    if (!same_site(f, *first)) {
      fail(f, "barrier divergence: thread " + coords(f.thread_idx) + " waits at " + waiting_at(f) + " while thread " +
                  coords(first->thread_idx) + " waits at " + waiting_at(*first));
      return;
    }
    count += f.value != 0;
  }
  const int n = static_cast<int>(fibers_.size());
  int result = 0;
  switch (first->barrier_op) {
    case BarrierOp::Sync: break;
    case BarrierOp::Count: result = count; break;
    case BarrierOp::And: result = count == n; break;
    case BarrierOp::Or: result = count > 0; break;
  }
  for (Fiber& f : fibers_) {
    f.result = static_cast<std::uint64_t>(result);
    f.state = FiberState::Ready;
  }
}

// ---------------------------------------------------------------------------------------------------- entry points

namespace {
template <typename Op>
void require_kernel(Op op) {
  if (!tls_thread) fault(std::string(op_name(op)) + " called outside a kernel");
}
}  // namespace

std::uint64_t warp_op(WarpOp op, unsigned mask, std::uint64_t value, unsigned arg, int width, const char* file,
                      int line) {
  require_kernel(op);
  Scheduler& s = Scheduler::here();
  return s.arrive_at_warp_op(s.current(), op, mask, value, arg, width, file, line);
}

int block_barrier(BarrierOp op, int predicate, const char* file, int line) {
  require_kernel(op);
  Scheduler& s = Scheduler::here();
  return static_cast<int>(s.arrive_at_barrier(s.current(), op, predicate, file, line));
}

void mma_m16n8k16(MmaType type, MmaLane& lane, const char* file, int line) {
  warp_op(WarpOp::Mma, ~0u, reinterpret_cast<std::uintptr_t>(&lane), static_cast<unsigned>(type), 32, file, line);
}

unsigned active_mask() {
  if (!tls_thread) fault("__activemask() called outside a kernel");
  Scheduler& s = Scheduler::here();
  return s.active_mask(s.current());
}

// The error is recorded before unwinding, so a kernel's catch (...) cannot hide it.
void fault(const std::string& what) {
  if (!tls_thread) throw Error(DLK_ERROR_DEVICE_FAILURE, "emulator: " + what + " (outside a kernel)");
  Scheduler& s = Scheduler::here();
  s.fail(s.current(), what);
  throw Unwind{};
}

void shared_out_of_bounds(const char* what, long long index, long long size, std::size_t elem_bytes) {
  fault(std::string(what) + " index " + std::to_string(index) + " is out of bounds [0, " + std::to_string(size) +
        ") (" + std::to_string(elem_bytes) + "-byte elements)");
}

}  // namespace dlk::emurt
