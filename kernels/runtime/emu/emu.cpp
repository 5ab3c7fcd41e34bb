// Launching a kernel in the emulator: checks the configuration against the hardware's limits, then runs the blocks
// on OpenMP threads, each block by that thread's fiber scheduler (fibers.cpp), and rethrows the first failure.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <climits>

#include "runtime/emu/scheduler.h"

namespace dlk::emurt {

namespace {

// Limits of compute capability 8.0 / 9.0, where the CUDA build runs.
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr unsigned kMaxBlockZ = 64;
constexpr unsigned kMaxGridYZ = 65535;
constexpr std::size_t kMaxDynamicSmem = 227 * 1024;

std::string dims(const dim3& d) {
  return "(" + std::to_string(d.x) + "," + std::to_string(d.y) + "," + std::to_string(d.z) + ")";
}

void check_configuration(const char* name, dim3 grid, dim3 block, std::size_t dynamic_smem) {
  const unsigned long long threads = 1ull * block.x * block.y * block.z;
  auto bad = [&](const std::string& why) {
    fail(DLK_ERROR_DEVICE_FAILURE, name, ": invalid launch configuration: grid ", dims(grid), ", block ", dims(block),
         ", ", dynamic_smem, " bytes of dynamic shared memory: ", why);
  };
  if (threads == 0 || threads > kMaxThreadsPerBlock)
    bad("a block has " + std::to_string(threads) + " threads, not 1.." + std::to_string(kMaxThreadsPerBlock));
  if (block.z > kMaxBlockZ)
    bad("block z is " + std::to_string(block.z) + ", the limit is " + std::to_string(kMaxBlockZ));
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) bad("the grid is empty");
  if (grid.x > static_cast<unsigned>(INT_MAX)) bad("grid x is larger than 2^31 - 1");
  if (grid.y > kMaxGridYZ || grid.z > kMaxGridYZ) bad("grid y and z must be at most " + std::to_string(kMaxGridYZ));
  if (dynamic_smem > kMaxDynamicSmem) bad("the limit is " + std::to_string(kMaxDynamicSmem) + " bytes (227 KiB)");
}

}  // namespace

void launch_erased(const char* name, dim3 grid, dim3 block, std::size_t dynamic_smem, int num_threads, ErasedBody body,
                   const void* callable) {
  check_configuration(name, grid, block, dynamic_smem);
  if (tls_thread) fail(DLK_ERROR_DEVICE_FAILURE, name, ": launched from inside a kernel (not emulated)");

  const Launch launch{name, grid, block, dynamic_smem, body, callable};
  const long long blocks = 1ll * grid.x * grid.y * grid.z;
  const int threads =
      static_cast<int>(std::min<long long>(num_threads > 0 ? num_threads : omp_get_max_threads(), blocks));
  // The failing block with the lowest index is reported, so the message does not depend on the thread count;
  // blocks after it are skipped.
  std::atomic<long long> first_failed{blocks};
  std::string message;
#pragma omp parallel for schedule(dynamic) num_threads(threads) if (threads > 1)
  for (long long b = 0; b < blocks; ++b) {
    if (b > first_failed.load(std::memory_order_relaxed)) continue;
    std::string error = Scheduler::here().run_block(launch, b);
    if (!error.empty()) {
#pragma omp critical(dlk_emu_launch_error)
      if (b < first_failed.load()) {
        first_failed.store(b);
        message = std::move(error);
      }
    }
  }
  if (!message.empty()) throw Error(DLK_ERROR_DEVICE_FAILURE, message);
}

}  // namespace dlk::emurt
