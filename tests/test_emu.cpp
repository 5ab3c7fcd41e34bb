// The CUDA emulator (kernels/runtime/emu): kernels written as real CUDA (DLK_SHARED, DLK_DYNAMIC_SHARED,
// dlk::emu::launch) checked against results computed here on the CPU, and kernels with deliberate bugs (barrier and
// warp divergence, out-of-bounds shared memory, exited shuffle sources, bad launches) that must be reported as
// dlk::Error without disturbing later launches.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "common/half.h"
#include "common/mma.cuh"
#include "runtime/kernel.h"

namespace dlk::emu {
namespace {

constexpr unsigned kFull = 0xffffffffu;

// ---------------------------------------------------------------------------------------------------- harness

std::uint64_t seed() {
  static const std::uint64_t s = [] {
    const char* e = std::getenv("DLK_TEST_SEED");
    return e ? std::strtoull(e, nullptr, 10) : static_cast<std::uint64_t>(std::random_device{}()) * 2654435761u;
  }();
  return s;
}
#define TRACE_SEED() SCOPED_TRACE("seed " + std::to_string(seed()) + " (rerun with DLK_TEST_SEED)")

std::mt19937_64& rng() {
  static std::mt19937_64 g(seed());
  return g;
}

std::vector<float> uniform(std::size_t n, float lo, float hi) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng());
  return v;
}

std::vector<int> uniform_int(std::size_t n, int lo, int hi) {
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<int> v(n);
  for (auto& x : v) x = d(rng());
  return v;
}

Exec emu_exec(int threads = 0) {
  Exec e;
  e.backend = Backend::Emu;
  e.num_threads = threads;
  return e;
}

// Runs `f`, which must fail with an emulator error; returns the message.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), DLK_ERROR_DEVICE_FAILURE) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "the emulator reported no error";
  return "";
}

#define EXPECT_CONTAINS(text, part) \
  EXPECT_NE(std::string(text).find(part), std::string::npos) << "\"" << (text) << "\" lacks \"" << (part) << "\""

// ---------------------------------------------------------------------------------------------------- kernels

// Sum of each block's segment, for any block size 1..1024: a shared-memory tree folds the partial sums down to 32,
// then warp 0 finishes with __shfl_down_sync over the lanes that exist.
__global__ void block_sum_kernel(const float* x, float* out, int n_per_block) {
  DLK_SHARED(float, partial, 1024);
  const int t = threadIdx.x, nt = blockDim.x;
  const float* seg = x + static_cast<std::int64_t>(blockIdx.x) * n_per_block;
  float s = 0.0f;
  for (int i = t; i < n_per_block; i += nt) s += seg[i];
  partial[t] = s;
  __syncthreads();
  int pow2 = 1;
  while (pow2 < nt) pow2 <<= 1;
  for (int stride = pow2 / 2; stride >= 32; stride >>= 1) {
    if (t < stride && t + stride < nt) partial[t] += partial[t + stride];
    __syncthreads();
  }
  if (t < 32) {
    const int active = min(nt, 32);
    const unsigned mask = active == 32 ? kFull : (1u << active) - 1;
    float v = partial[t];
    for (int o = 16; o > 0; o >>= 1) {
      const float other = __shfl_down_sync(mask, v, o);  // undefined from lanes past `active`: not used
      if (t + o < active) v += other;
    }
    if (t == 0) out[blockIdx.x] = v;
  }
}

// Per thread: the butterfly (xor) sums over the warp and over segments of 8 and 16 lanes, inclusive scans up
// (width 16) and down (width 8), a broadcast with a source lane past the width, and xor 8 at width 8, which reads
// the lower segment but not the higher one.
struct ShuffleOut {
  int xor32, xor16, xor8, scan_up16, scan_down8, idx8, cross8;
};
__global__ void shuffle_kernel(const int* in, ShuffleOut* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const int lane = threadIdx.x % 32;
  const int v = in[i];
  ShuffleOut r;
  r.xor32 = v;
  for (int o = 16; o > 0; o >>= 1) r.xor32 += __shfl_xor_sync(kFull, r.xor32, o);
  r.xor16 = v;
  for (int o = 8; o > 0; o >>= 1) r.xor16 += __shfl_xor_sync(kFull, r.xor16, o, 16);
  r.xor8 = v;
  for (int o = 4; o > 0; o >>= 1) r.xor8 += __shfl_xor_sync(kFull, r.xor8, o, 8);
  r.scan_up16 = v;
  for (int d = 1; d < 16; d <<= 1) {
    const int y = __shfl_up_sync(kFull, r.scan_up16, d, 16);
    if (lane % 16 >= d) r.scan_up16 += y;
  }
  r.scan_down8 = v;
  for (int d = 1; d < 8; d <<= 1) {
    const int y = __shfl_down_sync(kFull, r.scan_down8, d, 8);
    if (lane % 8 + d < 8) r.scan_down8 += y;
  }
  r.idx8 = __shfl_sync(kFull, v, 11, 8);
  r.cross8 = __shfl_xor_sync(kFull, v, 8, 8);
  out[i] = r;
}

template <typename T>
__global__ void warp_allreduce_kernel(const T* in, T* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  T v = in[i];
  for (int o = 16; o > 0; o >>= 1) v = v + __shfl_xor_sync(kFull, v, o);
  out[i] = v;
}

// sm_80 warp reductions and matches over a warp.
struct WarpReduceOut {
  int add, min_s, max_s;
  unsigned min_u, max_u, and_u, or_u, xor_u, match_any, match_all, match_all_random;
  int match_pred, match_pred_random;
};
__global__ void warp_reduce_kernel(const int* in, WarpReduceOut* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const int v = in[i];
  const unsigned u = static_cast<unsigned>(v);
  WarpReduceOut r;
  r.add = __reduce_add_sync(kFull, v);
  r.min_s = __reduce_min_sync(kFull, v);
  r.max_s = __reduce_max_sync(kFull, v);
  r.min_u = __reduce_min_sync(kFull, u);
  r.max_u = __reduce_max_sync(kFull, u);
  r.and_u = __reduce_and_sync(kFull, u);
  r.or_u = __reduce_or_sync(kFull, u);
  r.xor_u = __reduce_xor_sync(kFull, u);
  r.match_any = __match_any_sync(kFull, u % 4);
  r.match_all = __match_all_sync(kFull, static_cast<int>(threadIdx.x) / 64, &r.match_pred);
  r.match_all_random = __match_all_sync(kFull, v, &r.match_pred_random);
  out[i] = r;
}

// Transpose of a rows x cols matrix through a [32][33] shared tile (the padding column avoids bank conflicts on a
// GPU); blocks of 32 x 8 threads, each moving four rows of the tile.
constexpr int kTile = 32, kTileRows = 8;
__global__ void transpose_kernel(const float* in, float* out, int rows, int cols) {
  DLK_SHARED_2D(float, tile, kTile, kTile + 1);
  int x = blockIdx.x * kTile + threadIdx.x;
  int y = blockIdx.y * kTile + threadIdx.y;
  for (int j = 0; j < kTile; j += kTileRows)
    if (x < cols && y + j < rows) tile[threadIdx.y + j][threadIdx.x] = in[(y + j) * cols + x];
  __syncthreads();
  x = blockIdx.y * kTile + threadIdx.x;
  y = blockIdx.x * kTile + threadIdx.y;
  for (int j = 0; j < kTile; j += kTileRows)
    if (x < rows && y + j < cols) out[(y + j) * rows + x] = tile[threadIdx.x][threadIdx.y + j];
}

// Histogram: shared-memory bins per block (shared atomics), merged into global bins (global atomics across blocks
// running on different OS threads).
__global__ void histogram_kernel(const int* data, int n, unsigned* bins, int nbins) {
  DLK_SHARED(unsigned, local, 256);
  for (int b = threadIdx.x; b < nbins; b += blockDim.x) local[b] = 0;
  __syncthreads();
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    atomicAdd(&local[data[i]], 1u);
  __syncthreads();
  for (int b = threadIdx.x; b < nbins; b += blockDim.x)
    if (local[b] != 0) atomicAdd(&bins[b], local[b]);
}

struct AtomicOut {
  int sum_i;
  unsigned long long sum_u64;
  float sum_f;
  double sum_d;
  int max_i;
  unsigned min_u;
  unsigned cas_count;
  unsigned or_bits;
  int sub_i;
};
__global__ void atomics_kernel(const int* v, int n, AtomicOut* o) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    atomicAdd(&o->sum_i, v[i]);
    atomicAdd(&o->sum_u64, static_cast<unsigned long long>(v[i]));
    atomicAdd(&o->sum_f, static_cast<float>(v[i]));
    atomicAdd(&o->sum_d, static_cast<double>(v[i]));
    atomicMax(&o->max_i, v[i]);
    atomicMin(&o->min_u, static_cast<unsigned>(v[i]));
    atomicOr(&o->or_bits, 1u << (v[i] % 31));
    atomicSub(&o->sub_i, v[i]);
    unsigned old = atomicAdd(&o->cas_count, 0u), assumed;
    do {
      assumed = old;
      old = atomicCAS(&o->cas_count, assumed, assumed + 1);
    } while (old != assumed);
  }
}

// Dynamic shared memory: blockDim floats, then blockDim ints (the same bytes seen as int, as with extern __shared__).
// Reverses each block's segment and counts its positive values with shared atomics. `first_read` gets what a
// thread finds in shared memory before anything was written.
__global__ void reverse_kernel(const float* in, float* out, int* positives, float* first_read) {
  DLK_DYNAMIC_SHARED(float, buf);
  DLK_DYNAMIC_SHARED(int, ibuf);
  const int t = threadIdx.x, nt = blockDim.x, base = blockIdx.x * nt;
  auto count = ibuf + nt;
  if (t == 0) {
    first_read[blockIdx.x] = buf[0];
    count[0] = 0;
  }
  __syncthreads();
  buf[t] = in[base + t];
  if (in[base + t] > 0.0f) atomicAdd(&count[0], 1);
  __syncthreads();
  out[base + t] = buf[nt - 1 - t];
  if (t == 0) positives[blockIdx.x] = count[0];
}

// All of a large (200 KiB) dynamic shared buffer, written and read back across threads.
__global__ void big_smem_kernel(int* out, int words) {
  DLK_DYNAMIC_SHARED(int, buf);
  for (int i = threadIdx.x; i < words; i += blockDim.x) buf[i] = i * 3 + static_cast<int>(blockIdx.x);
  __syncthreads();
  int s = 0;
  for (int i = (threadIdx.x + 1) % blockDim.x; i < words; i += blockDim.x) s += buf[i];
  atomicAdd(out + blockIdx.x, s);
}

struct VoteOut {
  unsigned ballot, half_ballot;
  int any, all;
};
struct BlockVoteOut {
  int count, all, any;
};
__global__ void vote_kernel(const float* x, float threshold, VoteOut* warps, BlockVoteOut* blocks) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const int lane = threadIdx.x % 32, warp = i / 32;
  const bool p = x[i] > threshold;
  const unsigned b = __ballot_sync(kFull, p);
  const int any = __any_sync(kFull, p), all = __all_sync(kFull, p);
  unsigned half = 0;
  if (lane < 16) half = __ballot_sync(0x0000ffffu, p);
  __syncwarp();
  if (lane == 0) warps[warp] = VoteOut{b, half, any, all};
  const int count = __syncthreads_count(p), all_b = __syncthreads_and(p), any_b = __syncthreads_or(p);
  if (threadIdx.x == 0) blocks[blockIdx.x] = BlockVoteOut{count, all_b, any_b};
}

// Built-in variables in a 3D block and grid; lane 0's linear id, through a shuffle, shows how warps are formed.
struct Coords {
  uint3 thread, block;
  dim3 block_dim, grid_dim;
  int lane0;
};
__global__ void coords_kernel(Coords* out) {
  const int linear = threadIdx.x + threadIdx.y * blockDim.x + threadIdx.z * blockDim.x * blockDim.y;
  const int block = blockIdx.x + blockIdx.y * gridDim.x + blockIdx.z * gridDim.x * gridDim.y;
  const int nt = blockDim.x * blockDim.y * blockDim.z;
  const int lanes = min(32, nt - linear / 32 * 32);
  const int lane0 = __shfl_sync(lanes == 32 ? kFull : (1u << lanes) - 1, linear, 0);
  out[block * nt + linear] = Coords{threadIdx, blockIdx, blockDim, gridDim, lane0};
}

// A 64 KiB register tile per thread: fibers need real stacks.
__global__ void big_stack_kernel(float* out) {
  float acc[16384];
  for (int i = 0; i < 16384; ++i) acc[i] = static_cast<float>(i + threadIdx.x);
  float s = 0.0f;
  for (int i = 0; i < 16384; i += 97) s += acc[(i * 31 + threadIdx.x) % 16384];
  out[threadIdx.x] = s;
}

// ---- kernels with deliberate bugs

__global__ void split_barrier_kernel(float* out) {
  DLK_SHARED(float, s, 64);
  if (threadIdx.x < 32) {
    s[threadIdx.x] = 1.0f;
    __syncthreads();
  } else {
    __syncthreads();
    s[threadIdx.x] = 2.0f;
  }
  out[threadIdx.x] = s[threadIdx.x];
}

__global__ void early_return_kernel(const float* x, float* out, int n) {
  DLK_SHARED(float, s, 128);
  const int i = threadIdx.x;
  if (i >= n) return;  // the barrier below then waits for threads that are gone
  s[i] = x[i];
  __syncthreads();
  out[i] = s[n - 1 - i];
}

__global__ void shared_oob_kernel(int* out, int pad) {
  DLK_SHARED(int, s, 64);
  s[threadIdx.x + pad] = 1;
  __syncthreads();
  out[threadIdx.x] = s[threadIdx.x];
}

__global__ void tile_oob_kernel(float* out) {
  DLK_SHARED_2D(float, tile, 32, 33);
  tile[threadIdx.x][threadIdx.x + 1] = 1.0f;  // row 32 of 32 for thread 32
  __syncthreads();
  out[threadIdx.x] = tile[0][threadIdx.x % 33];
}

__global__ void dynamic_oob_kernel(float* out, int offset) {
  DLK_DYNAMIC_SHARED(float, buf);
  auto row = buf + offset;
  row[threadIdx.x] = 1.0f;
  __syncthreads();
  out[threadIdx.x] = buf[threadIdx.x];
}

__global__ void shuffle_from_exited_kernel(int* out, unsigned mask) {
  const int lane = threadIdx.x % 32;
  if (lane == 5) return;
  out[threadIdx.x] = __shfl_sync(mask, lane, 5);
}

__global__ void mixed_warp_ops_kernel(int* out) {
  int v = static_cast<int>(threadIdx.x);
  if (threadIdx.x % 32 < 16)
    v = __shfl_xor_sync(kFull, v, 1);
  else
    v = static_cast<int>(__ballot_sync(kFull, v > 20));
  out[threadIdx.x] = v;
}

__global__ void barrier_vs_shuffle_kernel(int* out) {
  int v = static_cast<int>(threadIdx.x);
  if (threadIdx.x == 0)
    __syncthreads();
  else
    v = __shfl_sync(kFull, v, 0);
  out[threadIdx.x] = v;
}

__global__ void bad_width_kernel(int* out) {
  out[threadIdx.x] = __shfl_xor_sync(kFull, static_cast<int>(threadIdx.x), 1, 12);
}

__global__ void trap_kernel(int* out) {
  if (blockIdx.x == 2 && threadIdx.x == 3) __trap();
  out[blockIdx.x * blockDim.x + threadIdx.x] = 1;
}

__global__ void noop_kernel() {}

// ---------------------------------------------------------------------------------------------------- tests

TEST(Emu, BlockReduceAnyBlockSize) {
  TRACE_SEED();
  for (int threads : {1, 7, 32, 96, 100, 128, 256, 1000, 1024}) {
    SCOPED_TRACE("block of " + std::to_string(threads));
    const int blocks = 5, per_block = 3001;
    const std::vector<float> x = uniform(static_cast<std::size_t>(blocks) * per_block, -1.0f, 1.0f);
    std::vector<float> out(blocks, NAN);
    launch("block_sum_kernel", block_sum_kernel, dim3(blocks), dim3(threads), 0, emu_exec(), x.data(), out.data(),
           per_block);
    for (int b = 0; b < blocks; ++b) {
      double ref = 0.0, mag = 0.0;
      for (int i = 0; i < per_block; ++i) {
        ref += x[b * per_block + i];
        mag += std::fabs(x[b * per_block + i]);
      }
      EXPECT_NEAR(out[b], ref, 1e-5 * mag) << "block " << b;
    }
  }
}

TEST(Emu, ShuffleButterflyAndScans) {
  TRACE_SEED();
  const int blocks = 3, threads = 96, n = blocks * threads;
  const std::vector<int> in = uniform_int(n, -1000, 1000);
  std::vector<ShuffleOut> out(n);
  launch("shuffle_kernel", shuffle_kernel, dim3(blocks), dim3(threads), 0, emu_exec(), in.data(), out.data());
  auto seg_sum = [&](int i, int w) {
    const int base = i / w * w;
    return std::accumulate(in.begin() + base, in.begin() + base + w, 0);
  };
  for (int i = 0; i < n; ++i) {
    const int lane = i % 32;
    SCOPED_TRACE("thread " + std::to_string(i));
    EXPECT_EQ(out[i].xor32, seg_sum(i, 32));
    EXPECT_EQ(out[i].xor16, seg_sum(i, 16));
    EXPECT_EQ(out[i].xor8, seg_sum(i, 8));
    EXPECT_EQ(out[i].scan_up16, std::accumulate(in.begin() + i / 16 * 16, in.begin() + i + 1, 0));
    EXPECT_EQ(out[i].scan_down8, std::accumulate(in.begin() + i, in.begin() + i / 8 * 8 + 8, 0));
    EXPECT_EQ(out[i].idx8, in[i / 8 * 8 + 3]);  // source lane 11 wraps to 11 % 8 within the segment
    // xor 8 at width 8: lanes 8-15 and 24-31 read the segment below; 0-7 and 16-23 would read above: own value.
    EXPECT_EQ(out[i].cross8, lane % 16 >= 8 ? in[i - 8] : in[i]);
  }
}

template <typename T>
void check_allreduce(float (*to_f)(T), T (*from_f)(float)) {
  TRACE_SEED();
  const int n = 64;
  const std::vector<int> small = uniform_int(n, 0, 7);  // sums stay exact in every type
  std::vector<T> in(n), out(n);
  for (int i = 0; i < n; ++i) in[i] = from_f(static_cast<float>(small[i]));
  launch("warp_allreduce_kernel", warp_allreduce_kernel<T>, dim3(1), dim3(n), 0, emu_exec(), in.data(), out.data());
  for (int i = 0; i < n; ++i) {
    const int ref = std::accumulate(small.begin() + i / 32 * 32, small.begin() + i / 32 * 32 + 32, 0);
    EXPECT_EQ(to_f(out[i]), static_cast<float>(ref)) << "thread " << i;
  }
}

TEST(Emu, ShuffleTypes) {
  check_allreduce<double>([](double v) { return static_cast<float>(v); },
                          [](float v) { return static_cast<double>(v); });
  check_allreduce<long long>([](long long v) { return static_cast<float>(v); },
                             [](float v) { return static_cast<long long>(v); });
  check_allreduce<unsigned>([](unsigned v) { return static_cast<float>(v); },
                            [](float v) { return static_cast<unsigned>(v); });
  check_allreduce<__half>([](__half v) { return __half2float(v); }, [](float v) { return __float2half(v); });
  check_allreduce<__nv_bfloat16>([](__nv_bfloat16 v) { return __bfloat162float(v); },
                                 [](float v) { return __float2bfloat16(v); });
}

TEST(Emu, WarpReductionsAndMatch) {
  TRACE_SEED();
  const int n = 128;
  const std::vector<int> in = uniform_int(n, -1000, 1000);
  std::vector<WarpReduceOut> out(n);
  launch("warp_reduce_kernel", warp_reduce_kernel, dim3(2), dim3(64), 0, emu_exec(), in.data(), out.data());
  for (int i = 0; i < n; ++i) {
    SCOPED_TRACE("thread " + std::to_string(i));
    const auto first = in.begin() + i / 32 * 32, last = first + 32;
    unsigned and_u = ~0u, or_u = 0, xor_u = 0, min_u = ~0u, max_u = 0, match = 0;
    for (auto it = first; it != last; ++it) {
      const unsigned u = static_cast<unsigned>(*it);
      and_u &= u;
      or_u |= u;
      xor_u ^= u;
      min_u = std::min(min_u, u);
      max_u = std::max(max_u, u);
      if (u % 4 == static_cast<unsigned>(in[i]) % 4) match |= 1u << (it - first);
    }
    EXPECT_EQ(out[i].add, std::accumulate(first, last, 0));
    EXPECT_EQ(out[i].min_s, *std::min_element(first, last));
    EXPECT_EQ(out[i].max_s, *std::max_element(first, last));
    EXPECT_EQ(out[i].min_u, min_u);
    EXPECT_EQ(out[i].max_u, max_u);
    EXPECT_EQ(out[i].and_u, and_u);
    EXPECT_EQ(out[i].or_u, or_u);
    EXPECT_EQ(out[i].xor_u, xor_u);
    EXPECT_EQ(out[i].match_any, match);
    EXPECT_EQ(out[i].match_all, kFull);  // threadIdx / 64 is 0 in every lane of a 64-thread block
    EXPECT_EQ(out[i].match_pred, 1);
    const bool equal = std::all_of(first, last, [&](int x) { return x == *first; });
    EXPECT_EQ(out[i].match_all_random, equal ? kFull : 0u);
    EXPECT_EQ(out[i].match_pred_random, equal ? 1 : 0);
  }
}

TEST(Emu, SharedTileTranspose) {
  TRACE_SEED();
  static_assert(sizeof(dlk::emurt::SharedArray<dlk::emurt::SharedArray<float, 33>, 32>) == 32 * 33 * 4,
                "a 2D shared array keeps CUDA's layout");
  for (auto [rows, cols] : {std::pair{70, 45}, std::pair{33, 100}, std::pair{1, 7}}) {
    SCOPED_TRACE(std::to_string(rows) + " x " + std::to_string(cols));
    const std::vector<float> in = uniform(static_cast<std::size_t>(rows) * cols, -5.0f, 5.0f);
    std::vector<float> out(in.size(), NAN);
    const dim3 grid((cols + kTile - 1) / kTile, (rows + kTile - 1) / kTile);
    launch("transpose_kernel", transpose_kernel, grid, dim3(kTile, kTileRows), 0, emu_exec(), in.data(), out.data(),
           rows, cols);
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) ASSERT_EQ(out[c * rows + r], in[r * cols + c]) << "at " << r << "," << c;
  }
}

TEST(Emu, AtomicHistogramIsExact) {
  TRACE_SEED();
  const int n = 100003, nbins = 200;
  // Skewed data: many collisions on the low bins.
  std::vector<int> data = uniform_int(n, 0, nbins - 1);
  for (int i = 0; i < n; i += 3) data[i] = data[i] % 5;
  std::vector<unsigned> ref(nbins, 0);
  for (int v : data) ++ref[v];
  for (int threads : {1, 4}) {
    std::vector<unsigned> bins(nbins, 0);
    launch("histogram_kernel", histogram_kernel, dim3(64), dim3(128), 0, emu_exec(threads), data.data(), n, bins.data(),
           nbins);
    EXPECT_EQ(bins, ref) << threads << " OS threads";
  }
}

TEST(Emu, GlobalAtomics) {
  TRACE_SEED();
  const int n = 20000;
  const std::vector<int> v = uniform_int(n, 1, 100);  // float sums of these stay exact
  AtomicOut o{0, 0, 0.0f, 0.0, INT32_MIN, 0xffffffffu, 0, 0, 0};
  launch("atomics_kernel", atomics_kernel, dim3(40), dim3(64), 0, emu_exec(4), v.data(), n, &o);
  long long sum = 0;
  unsigned bits = 0;
  for (int x : v) {
    sum += x;
    bits |= 1u << (x % 31);
  }
  EXPECT_EQ(o.sum_i, sum);
  EXPECT_EQ(o.sum_u64, static_cast<unsigned long long>(sum));
  EXPECT_EQ(o.sum_f, static_cast<float>(sum));
  EXPECT_EQ(o.sum_d, static_cast<double>(sum));
  EXPECT_EQ(o.max_i, *std::max_element(v.begin(), v.end()));
  EXPECT_EQ(o.min_u, static_cast<unsigned>(*std::min_element(v.begin(), v.end())));
  EXPECT_EQ(o.or_bits, bits);
  EXPECT_EQ(o.sub_i, -sum);
  EXPECT_EQ(o.cas_count, static_cast<unsigned>(n));
}

TEST(Emu, DynamicSharedMemory) {
  TRACE_SEED();
  const int blocks = 6, threads = 160, n = blocks * threads;
  const std::vector<float> in = uniform(n, -1.0f, 1.0f);
  std::vector<float> out(n, NAN), first(blocks, 0.0f);
  std::vector<int> positives(blocks, -1);
  launch("reverse_kernel", reverse_kernel, dim3(blocks), dim3(threads), 2 * threads * sizeof(float), emu_exec(),
         in.data(), out.data(), positives.data(), first.data());
  for (int b = 0; b < blocks; ++b) {
    int pos = 0;
    for (int t = 0; t < threads; ++t) {
      EXPECT_EQ(out[b * threads + t], in[b * threads + threads - 1 - t]);
      pos += in[b * threads + t] > 0.0f;
    }
    EXPECT_EQ(positives[b], pos);
    EXPECT_TRUE(std::isnan(first[b])) << "dynamic shared memory starts poisoned, not " << first[b];
  }

  const int words = 200 * 1024 / 4;
  std::vector<int> sums(3, 0);
  launch("big_smem_kernel", big_smem_kernel, dim3(3), dim3(256), words * sizeof(int), emu_exec(), sums.data(), words);
  // Thread t reads from index (t + 1) % 256 on with stride 256: together every word once.
  for (int b = 0; b < 3; ++b) {
    long long ref = 0;
    for (int i = 0; i < words; ++i) ref += i * 3 + b;
    EXPECT_EQ(sums[b], static_cast<int>(ref)) << "block " << b;
  }
}

TEST(Emu, VotesAndBarrierPredicates) {
  TRACE_SEED();
  const int blocks = 4, threads = 128, n = blocks * threads;
  std::vector<float> x = uniform(n, 0.0f, 1.0f);
  for (int i = threads; i < 2 * threads; ++i) x[i] = 2.0f;       // block 1: every predicate true
  for (int i = 2 * threads; i < 3 * threads; ++i) x[i] = -1.0f;  // block 2: every predicate false
  std::vector<VoteOut> warps(n / 32);
  std::vector<BlockVoteOut> block_out(blocks);
  launch("vote_kernel", vote_kernel, dim3(blocks), dim3(threads), 0, emu_exec(), x.data(), 0.5f, warps.data(),
         block_out.data());
  for (int w = 0; w < n / 32; ++w) {
    unsigned ref = 0;
    for (int l = 0; l < 32; ++l) ref |= static_cast<unsigned>(x[w * 32 + l] > 0.5f) << l;
    EXPECT_EQ(warps[w].ballot, ref) << "warp " << w;
    EXPECT_EQ(warps[w].half_ballot, ref & 0xffffu) << "warp " << w;
    EXPECT_EQ(warps[w].any, ref != 0);
    EXPECT_EQ(warps[w].all, ref == kFull);
  }
  for (int b = 0; b < blocks; ++b) {
    int count = 0;
    for (int t = 0; t < threads; ++t) count += x[b * threads + t] > 0.5f;
    EXPECT_EQ(block_out[b].count, count) << "block " << b;
    EXPECT_EQ(block_out[b].all, count == threads);
    EXPECT_EQ(block_out[b].any, count > 0);
  }
}

TEST(Emu, BuiltinVariables) {
  const dim3 grid(2, 3, 2), block(5, 3, 4);  // 60 threads: one full warp and one of 28 lanes
  const int nt = 60, nb = 12;
  std::vector<Coords> out(nt * nb);
  launch("coords_kernel", coords_kernel, grid, block, 0, emu_exec(), out.data());
  for (int b = 0; b < nb; ++b) {
    for (int t = 0; t < nt; ++t) {
      const Coords& c = out[b * nt + t];
      EXPECT_EQ(c.thread.x, t % 5u);
      EXPECT_EQ(c.thread.y, t / 5 % 3u);
      EXPECT_EQ(c.thread.z, t / 15u);
      EXPECT_EQ(c.block.x, b % 2u);
      EXPECT_EQ(c.block.y, b / 2 % 3u);
      EXPECT_EQ(c.block.z, b / 6u);
      EXPECT_EQ(c.block_dim.x * c.block_dim.y * c.block_dim.z, 60u);
      EXPECT_EQ(c.grid_dim.x * c.grid_dim.y * c.grid_dim.z, 12u);
      EXPECT_EQ(c.lane0, t / 32 * 32);
    }
  }
}

TEST(Emu, LargeStackArrays) {
  std::vector<float> out(256, NAN);
  launch("big_stack_kernel", big_stack_kernel, dim3(2), dim3(256), 0, emu_exec(), out.data());
  for (int t = 0; t < 256; ++t) {
    float s = 0.0f;
    for (int i = 0; i < 16384; i += 97) s += static_cast<float>((i * 31 + t) % 16384 + t);
    EXPECT_EQ(out[t], s);
  }
}

TEST(Emu, Intrinsics) {
  EXPECT_EQ(__brev(1u), 0x80000000u);
  EXPECT_EQ(__brevll(1ull), 1ull << 63);
  EXPECT_EQ(__clz(0), 32);
  EXPECT_EQ(__clz(1), 31);
  EXPECT_EQ(__clzll(1), 63);
  EXPECT_EQ(__ffs(0), 0);
  EXPECT_EQ(__ffs(8), 4);
  EXPECT_EQ(__popc(0xf0f0u), 8);
  EXPECT_EQ(__popcll(~0ull), 64);
  EXPECT_EQ(__byte_perm(0x33221100u, 0x77665544u, 0x5140u), 0x55114400u);
  EXPECT_EQ(__umulhi(0xffffffffu, 2u), 1u);
  EXPECT_EQ(__funnelshift_l(0x80000000u, 1u, 1u), 3u);
  EXPECT_EQ(__float2int_rn(2.5f), 2);
  EXPECT_EQ(__float2int_rn(3.5f), 4);
  EXPECT_EQ(__float2int_rn(NAN), 0);
  EXPECT_EQ(__float2int_rn(1e10f), INT32_MAX);
  EXPECT_EQ(__float2int_rd(-1.5f), -2);
  EXPECT_EQ(__float_as_uint(1.0f), 0x3f800000u);
  EXPECT_EQ(__int_as_float(0x40000000), 2.0f);
  EXPECT_EQ(__saturatef(-1.0f), 0.0f);
  EXPECT_EQ(__saturatef(NAN), 0.0f);
  EXPECT_EQ(__saturatef(2.0f), 1.0f);
  EXPECT_FLOAT_EQ(rsqrtf(4.0f), 0.5f);
  EXPECT_FLOAT_EQ(__expf(1.0f), std::exp(1.0f));
  EXPECT_EQ(min(-1, 1u), 1u);  // CUDA's overloads: int and unsigned compare as unsigned
  EXPECT_EQ(max(2.0f, NAN), 2.0f);
  EXPECT_EQ(max(3ll, 4ll), 4ll);
  EXPECT_EQ(__half2float(hexp(__float2half(0.0f))), 1.0f);
  EXPECT_EQ(__half2float(__hfma(__float2half(2.0f), __float2half(3.0f), __float2half(1.0f))), 7.0f);
  EXPECT_EQ(__bfloat162float(hsqrt(__float2bfloat16(16.0f))), 4.0f);
  const __half2 h2 = h2exp(__floats2half2_rn(0.0f, 0.0f));
  EXPECT_EQ(__low2float(h2), 1.0f);
  unsigned u = 5;
  EXPECT_EQ(atomicInc(&u, 5u), 5u);
  EXPECT_EQ(u, 0u);
  EXPECT_EQ(atomicDec(&u, 7u), 0u);
  EXPECT_EQ(u, 7u);
  float f = 1.5f;
  EXPECT_EQ(atomicExch(&f, 2.5f), 1.5f);
  EXPECT_EQ(f, 2.5f);
  __half h = __float2half(1.0f);
  atomicAdd(&h, __float2half(2.0f));
  EXPECT_EQ(__half2float(h), 3.0f);
}

// ---- errors

TEST(EmuErrors, BarrierDivergenceAtTwoSites) {
  std::vector<float> out(64);
  const std::string e = error_of(
      [&] { launch("split_barrier_kernel", split_barrier_kernel, dim3(3), dim3(64), 0, emu_exec(), out.data()); });
  EXPECT_CONTAINS(e, "split_barrier_kernel");
  EXPECT_CONTAINS(e, "barrier divergence");
  EXPECT_CONTAINS(e, "test_emu.cpp:");
  EXPECT_CONTAINS(e, "block (0,0,0)");  // the lowest failing block is the one reported
}

TEST(EmuErrors, ThreadsExitedBeforeBarrier) {
  TRACE_SEED();
  const std::vector<float> x = uniform(128, -1.0f, 1.0f);
  std::vector<float> out(128);
  const std::string e = error_of([&] {
    launch("early_return_kernel", early_return_kernel, dim3(1), dim3(128), 0, emu_exec(), x.data(), out.data(), 100);
  });
  EXPECT_CONTAINS(e, "barrier divergence");
  EXPECT_CONTAINS(e, "exited");
  // The same kernel with no early exits is fine.
  launch("early_return_kernel", early_return_kernel, dim3(1), dim3(128), 0, emu_exec(), x.data(), out.data(), 128);
  for (int i = 0; i < 128; ++i) EXPECT_EQ(out[i], x[127 - i]);
}

TEST(EmuErrors, SharedOutOfBounds) {
  std::vector<int> out(64);
  std::string e = error_of(
      [&] { launch("shared_oob_kernel", shared_oob_kernel, dim3(2), dim3(64), 0, emu_exec(), out.data(), 1); });
  EXPECT_CONTAINS(e, "shared_oob_kernel");
  EXPECT_CONTAINS(e, "index 64 is out of bounds [0, 64)");
  EXPECT_CONTAINS(e, "thread (63,0,0)");
  launch("shared_oob_kernel", shared_oob_kernel, dim3(2), dim3(64), 0, emu_exec(), out.data(), 0);

  std::vector<float> fout(33);
  e = error_of([&] { launch("tile_oob_kernel", tile_oob_kernel, dim3(1), dim3(33), 0, emu_exec(), fout.data()); });
  EXPECT_CONTAINS(e, "index 32 is out of bounds [0, 32)");

  e = error_of([&] {
    launch("dynamic_oob_kernel", dynamic_oob_kernel, dim3(1), dim3(32), 32 * sizeof(float), emu_exec(), fout.data(), 1);
  });
  EXPECT_CONTAINS(e, "dynamic shared memory index 32 is out of bounds [0, 32)");
  e = error_of([&] {
    launch("dynamic_oob_kernel", dynamic_oob_kernel, dim3(1), dim3(32), 32 * sizeof(float), emu_exec(), fout.data(),
           -1);
  });
  EXPECT_CONTAINS(e, "index -1 is out of bounds");
}

TEST(EmuErrors, ShuffleFromExitedLane) {
  std::vector<int> out(64);
  std::string e = error_of([&] {
    launch("shuffle_from_exited_kernel", shuffle_from_exited_kernel, dim3(1), dim3(64), 0, emu_exec(), out.data(),
           ~(1u << 5));
  });
  EXPECT_CONTAINS(e, "source lane 5, which has exited");
  e = error_of([&] {
    launch("shuffle_from_exited_kernel", shuffle_from_exited_kernel, dim3(1), dim3(64), 0, emu_exec(), out.data(),
           kFull);
  });
  EXPECT_CONTAINS(e, "lane 5 (thread (5,0,0)), which has exited");
}

TEST(EmuErrors, WarpDivergence) {
  std::vector<int> out(64);
  std::string e = error_of(
      [&] { launch("mixed_warp_ops_kernel", mixed_warp_ops_kernel, dim3(1), dim3(64), 0, emu_exec(), out.data()); });
  EXPECT_CONTAINS(e, "warp divergence");
  EXPECT_CONTAINS(e, "__ballot_sync");
  e = error_of([&] {
    launch("barrier_vs_shuffle_kernel", barrier_vs_shuffle_kernel, dim3(1), dim3(32), 0, emu_exec(), out.data());
  });
  EXPECT_CONTAINS(e, "__syncthreads()");
  EXPECT_CONTAINS(e, "divergence");
  e = error_of([&] { launch("bad_width_kernel", bad_width_kernel, dim3(1), dim3(32), 0, emu_exec(), out.data()); });
  EXPECT_CONTAINS(e, "width 12 is not a power of two");
}

TEST(EmuErrors, Trap) {
  std::vector<int> out(8 * 32);
  const std::string e =
      error_of([&] { launch("trap_kernel", trap_kernel, dim3(8), dim3(32), 0, emu_exec(4), out.data()); });
  EXPECT_CONTAINS(e, "__trap()");
  EXPECT_CONTAINS(e, "block (2,0,0), thread (3,0,0)");
}

TEST(EmuErrors, BadLaunchConfiguration) {
  struct Case {
    dim3 grid, block;
    std::size_t smem;
    const char* why;
  };
  for (const Case& c : {Case{dim3(1), dim3(1025), 0, "1025 threads"}, Case{dim3(1), dim3(32, 32, 2), 0, "2048 threads"},
                        Case{dim3(1), dim3(1, 1, 65), 0, "block z is 65"}, Case{dim3(1), dim3(0), 0, "0 threads"},
                        Case{dim3(1, 65536), dim3(32), 0, "grid y and z"}, Case{dim3(0), dim3(32), 0, "empty"},
                        Case{dim3(1), dim3(32), 228 * 1024, "227"}}) {
    const std::string e = error_of([&] { launch("noop_kernel", noop_kernel, c.grid, c.block, c.smem, emu_exec()); });
    EXPECT_CONTAINS(e, "noop_kernel: invalid launch configuration");
    EXPECT_CONTAINS(e, c.why);
  }
  // The limits themselves are fine.
  launch("noop_kernel", noop_kernel, dim3(1, 65535, 2), dim3(1), 0, emu_exec());
  launch("noop_kernel", noop_kernel, dim3(1), dim3(1024), 227 * 1024, emu_exec());
  launch("noop_kernel", noop_kernel, dim3(1), dim3(16, 1, 64), 0, emu_exec());
}

// Failed blocks leave suspended fibers behind; they must be unwound so stacks and shared memory stay usable.
TEST(EmuErrors, LaterLaunchesStillWork) {
  TRACE_SEED();
  for (int round = 0; round < 3; ++round) {
    std::vector<float> out(64);
    error_of(
        [&] { launch("split_barrier_kernel", split_barrier_kernel, dim3(4), dim3(64), 0, emu_exec(2), out.data()); });
    const std::vector<float> x = uniform(4 * 1000, -1.0f, 1.0f);
    std::vector<float> sums(4, NAN);
    launch("block_sum_kernel", block_sum_kernel, dim3(4), dim3(256), 0, emu_exec(2), x.data(), sums.data(), 1000);
    for (int b = 0; b < 4; ++b) {
      double ref = 0.0;
      for (int i = 0; i < 1000; ++i) ref += x[b * 1000 + i];
      EXPECT_NEAR(sums[b], ref, 1e-3);
    }
  }
}

// ---------------------------------------------------------------------------------------------------- mma.sync

// One warp: C = A·B (16x16 · 16x8) through every loader, then E = [C | C2] · B3 with the product re-packed as an A
// fragment by a_from_c. `a` is row-major 16x16, `bt` is B stored as [n][k] (8x16), `b3` row-major [k][n] (16x8).
// Out: c (16x8, load_a + load_b_t from global), c_shared (16x8, load_a_t + load_b from shared copies stored the
// other way round), e (16x8).
template <typename T>
__global__ void mma_kernel(const T* a, const T* bt, const T* b2t, const T* b3, float* c, float* c_shared, float* e) {
  DLK_SHARED(T, a_cols, 16 * 16);  // A column-major
  DLK_SHARED(T, b_rows, 16 * 8);   // B row-major [k][n]
  const int lane = threadIdx.x;
  for (int i = lane; i < 256; i += 32) a_cols[(i % 16) * 16 + i / 16] = a[i];
  for (int i = lane; i < 128; i += 32) b_rows[(i % 16) * 8 + i / 16] = bt[i];
  __syncwarp();
  mma::FragA fa;
  mma::FragB fb;
  mma::FragC acc;
  mma::zero(acc);
  mma::load_a<T>(fa, a, 16);
  mma::load_b_t<T>(fb, bt, 16);
  mma::mma_16816<T>(acc, fa, fb);
  mma::FragC acc2;
  mma::zero(acc2);
  mma::FragB fb2;
  mma::load_b_t<T>(fb2, b2t, 16);
  mma::mma_16816<T>(acc2, fa, fb2);
  for (int i = 0; i < 4; ++i) c[mma::c_row(lane, i) * 8 + mma::c_col(lane, i)] = acc.x[i];

  mma::FragA sa;
  mma::FragB sb;
  mma::FragC sacc;
  for (int i = 0; i < 4; ++i) sacc.x[i] = 1.0f;  // the accumulator's input is added
  mma::load_a_t<T>(sa, a_cols, 16);
  mma::load_b<T>(sb, b_rows, 8);
  mma::mma_16816<T>(sacc, sa, sb);
  for (int i = 0; i < 4; ++i) c_shared[mma::c_row(lane, i) * 8 + mma::c_col(lane, i)] = sacc.x[i];

  mma::FragA p;
  mma::a_from_c<T>(p, acc, acc2);
  mma::FragB f3;
  mma::load_b<T>(f3, b3, 8);
  mma::FragC eacc;
  mma::zero(eacc);
  mma::mma_16816<T>(eacc, p, f3);
  for (int i = 0; i < 4; ++i) e[mma::c_row(lane, i) * 8 + mma::c_col(lane, i)] = eacc.x[i];
}

// Lane 7 skips the mma: a warp that is not converged at mma.sync.
__global__ void mma_divergent_kernel(float* out) {
  mma::FragA a{};
  mma::FragB b{};
  mma::FragC c{};
  if (threadIdx.x != 7) mma::mma_16816<__half>(c, a, b);
  out[threadIdx.x] = c.x[0];
}

template <typename T>
void check_mma(float (*to_f)(std::uint16_t), std::uint16_t (*from_f)(float)) {
  TRACE_SEED();
  // Inputs rounded to T on the host; the products are exact in fp32, so the reference is fp64 over those values.
  const auto rounded = [&](std::size_t n) {
    std::vector<float> v = uniform(n, -2.0f, 2.0f);
    std::vector<T> bits(n);
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint16_t h = from_f(v[i]);
      std::memcpy(static_cast<void*>(&bits[i]), &h, 2);
    }
    return bits;
  };
  const auto value = [&](const std::vector<T>& v, std::size_t i) {
    std::uint16_t h;
    std::memcpy(&h, &v[i], 2);
    return static_cast<double>(to_f(h));
  };
  const std::vector<T> a = rounded(256), bt = rounded(128), b2t = rounded(128), b3 = rounded(128);
  std::vector<float> c(128, NAN), cs(128, NAN), e(128, NAN);
  launch("mma_kernel", mma_kernel<T>, dim3(1), dim3(32), 0, emu_exec(), a.data(), bt.data(), b2t.data(), b3.data(),
         c.data(), cs.data(), e.data());
  double p[16][16];
  for (int r = 0; r < 16; ++r)
    for (int n = 0; n < 8; ++n) {
      double s = 0.0, s2 = 0.0;
      for (int k = 0; k < 16; ++k) {
        s += value(a, r * 16 + k) * value(bt, n * 16 + k);
        s2 += value(a, r * 16 + k) * value(b2t, n * 16 + k);
      }
      EXPECT_NEAR(c[r * 8 + n], s, 1e-5 * (1 + std::abs(s))) << "C(" << r << "," << n << ")";
      EXPECT_NEAR(cs[r * 8 + n], s + 1.0, 1e-5 * (1 + std::abs(s))) << "C shared (" << r << "," << n << ")";
      // P is rounded to T before the second product, as a kernel's P would be.
      p[r][n] = to_f(from_f(static_cast<float>(s)));
      p[r][n + 8] = to_f(from_f(static_cast<float>(s2)));
    }
  for (int r = 0; r < 16; ++r)
    for (int n = 0; n < 8; ++n) {
      double s = 0.0, mag = 0.0;
      for (int k = 0; k < 16; ++k) {
        s += p[r][k] * value(b3, k * 8 + n);
        mag += std::abs(p[r][k] * value(b3, k * 8 + n));
      }
      EXPECT_NEAR(e[r * 8 + n], s, 1e-6 * (1 + mag)) << "E(" << r << "," << n << ")";
    }
}

TEST(Emu, MmaM16n8k16Fp16) { check_mma<__half>(fp16_to_float, float_to_fp16); }
TEST(Emu, MmaM16n8k16Bf16) { check_mma<__nv_bfloat16>(bf16_to_float, float_to_bf16); }

TEST(EmuErrors, MmaNeedsTheWholeWarp) {
  std::vector<float> out(64);
  std::string e =
      error_of([&] { launch("mma_divergent_kernel", mma_divergent_kernel, dim3(1), dim3(32), 0, emu_exec(), out.data()); });
  EXPECT_CONTAINS(e, "mma.sync.m16n8k16");
  EXPECT_CONTAINS(e, "lane 7");
  e = error_of([&] { launch("mma_divergent_kernel", mma_divergent_kernel, dim3(1), dim3(20), 0, emu_exec(), out.data()); });
  EXPECT_CONTAINS(e, "mma.sync.m16n8k16");
}

}  // namespace
}  // namespace dlk::emu
