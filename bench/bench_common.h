// What every benchmark suite shares: the device chosen by DLK_BENCH_DEVICE (cpu by default; cuda; emu), buffers
// allocated and filled through the public C API, the timing loop, and the counters every case reports.
//
// Timing. cpu/emu: wall-clock time of each synchronous call (UseRealTime, so the rates count all OpenMP threads).
// cuda: a CUDA event pair around a batch of launches (sized to ~2 ms so launch gaps and event resolution vanish),
// the per-launch time reported as manual time, dlk_context_synchronize before reading the events. Small cases
// rotate through several buffer sets so the timed traffic comes from HBM, not from the 50 MB L2.
//
// Counters. `bytes` is what must move: every input read once, every output written once. `GB/s` is that over the
// time (1e9 bytes). On cuda `pct_copy_bw` is GB/s over the device-to-device copy bandwidth measured once at start
// (bytes read + bytes written of a 1 GiB cudaMemcpy), and `launches_per_iter` says how many launches one timed
// iteration holds.
//
// The CUDA runtime appears only under DLK_BENCH_CUDA (defined by bench/CMakeLists.txt when CUDA is built).
#pragma once

#include <benchmark/benchmark.h>
#include <dlk/dlk.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "common/half.h"

#ifdef DLK_BENCH_CUDA
#include <cuda_runtime.h>
#endif

namespace dlkb {

enum class Dtype { F32, F16, BF16 };

inline const char* dtype_name(Dtype t) { return t == Dtype::F32 ? "fp32" : t == Dtype::F16 ? "fp16" : "bf16"; }
inline std::size_t dtype_size(Dtype t) { return t == Dtype::F32 ? 4 : 2; }
inline DLDataType dl_dtype(Dtype t) {
  if (t == Dtype::F32) return DLDataType{kDLFloat, 32, 1};
  if (t == Dtype::F16) return DLDataType{kDLFloat, 16, 1};
  return DLDataType{kDLBfloat, 16, 1};
}

// The process-wide benchmark device: one context, and on cuda the stream it runs on (ours, so that events can be
// recorded on it) and the measured copy bandwidth.
struct Env {
  std::string requested = "cpu";  // DLK_BENCH_DEVICE as given
  dlk_device device = DLK_DEVICE_CPU;
  dlk_context* ctx = nullptr;
  std::string error;  // why there is no context; every case skips with it
  bool cuda = false;
  double copy_bw_gbps = 0.0;
#ifdef DLK_BENCH_CUDA
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
#endif
  DLDevice dl_device() const { return cuda ? DLDevice{kDLCUDA, 0} : DLDevice{kDLCPU, 0}; }
};

#ifdef DLK_BENCH_CUDA
inline std::string cuda_error(const char* what, cudaError_t e) {
  return std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
}

// Device-to-device copy bandwidth, bytes read + bytes written per second, median of 20 copies of 1 GiB.
inline double measure_copy_bandwidth(Env& e, std::string* device_name) {
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) *device_name = prop.name;
  const std::size_t bytes = std::size_t(1) << 30;
  void *a = nullptr, *b = nullptr;
  if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) {
    cudaFree(a);
    (void)cudaGetLastError();
    return 0.0;
  }
  cudaMemsetAsync(a, 1, bytes, e.stream);
  std::vector<float> ms;
  for (int i = 0; i < 23; ++i) {
    cudaEventRecord(e.start, e.stream);
    cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, e.stream);
    cudaEventRecord(e.stop, e.stream);
    cudaStreamSynchronize(e.stream);
    float t = 0.0f;
    cudaEventElapsedTime(&t, e.start, e.stop);
    if (i >= 3) ms.push_back(t);  // three warm-ups
  }
  cudaFree(a);
  cudaFree(b);
  if (cudaGetLastError() != cudaSuccess || ms.empty()) return 0.0;
  std::sort(ms.begin(), ms.end());
  double median_s = ms[ms.size() / 2] * 1e-3;
  return median_s > 0 ? 2.0 * static_cast<double>(bytes) / median_s / 1e9 : 0.0;
}
#endif

// Created on first use from DLK_BENCH_DEVICE; its facts go into the benchmark JSON's "context".
inline Env& env() {
  static Env e = [] {
    Env v;
    const char* d = std::getenv("DLK_BENCH_DEVICE");
    if (d && *d) v.requested = d;
    dlk_context_options o;
    dlk_context_options_init(&o);
    if (v.requested == "cpu") {
      o.device = DLK_DEVICE_CPU;
    } else if (v.requested == "emu") {
      o.device = DLK_DEVICE_EMU;
    } else if (v.requested == "cuda" || v.requested == "gpu") {
      v.requested = "cuda";
      v.cuda = true;
      o.device = DLK_DEVICE_CUDA;
#ifdef DLK_BENCH_CUDA
      int n = 0;
      if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        (void)cudaGetLastError();
        v.error = "DLK_BENCH_DEVICE=cuda but no CUDA device is visible";
      } else if (cudaSetDevice(0) != cudaSuccess || cudaStreamCreateWithFlags(&v.stream, cudaStreamNonBlocking) !=
                                                         cudaSuccess ||
                 cudaEventCreate(&v.start) != cudaSuccess || cudaEventCreate(&v.stop) != cudaSuccess) {
        v.error = cuda_error("creating the benchmark stream/events", cudaGetLastError());
      }
      o.stream = v.stream;
#else
      v.error = "DLK_BENCH_DEVICE=cuda but the benchmarks were built without CUDA";
#endif
    } else {
      v.error = "DLK_BENCH_DEVICE must be cpu, cuda or emu, not '" + v.requested + "'";
    }
    if (v.error.empty()) {
      dlk_status s = dlk_context_create(&o, &v.ctx);
      if (s != DLK_SUCCESS) {
        v.error = std::string("dlk_context_create(") + v.requested + "): " + dlk_status_string(s) + ": " +
                  dlk_last_error();
        v.ctx = nullptr;
      } else {
        dlk_context_device(v.ctx, &v.device);
      }
    }
    benchmark::AddCustomContext("dlk_device", v.requested);
    benchmark::AddCustomContext("dlk_version", std::to_string(dlk_version()));
#ifdef DLK_BENCH_CUDA
    if (v.cuda && v.error.empty()) {
      std::string name = "?";
      v.copy_bw_gbps = measure_copy_bandwidth(v, &name);
      benchmark::AddCustomContext("gpu_name", name);
      benchmark::AddCustomContext("copy_bw_GBps", std::to_string(v.copy_bw_gbps));
    }
#endif
    if (!v.error.empty()) {
      benchmark::AddCustomContext("dlk_device_error", v.error);
      std::fprintf(stderr, "dlk bench: %s; every case will be skipped\n", v.error.c_str());
    }
    return v;
  }();
  return e;
}

inline void env_shutdown() {
  Env& e = env();
  dlk_context_destroy(e.ctx);
  e.ctx = nullptr;
#ifdef DLK_BENCH_CUDA
  if (e.start) cudaEventDestroy(e.start);
  if (e.stop) cudaEventDestroy(e.stop);
  if (e.stream) cudaStreamDestroy(e.stream);
#endif
}

// Memory where the context's tensors live, from dlk_alloc; freed with the object.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Env& e, std::size_t bytes) : ctx_(e.ctx), bytes_(bytes) {
    if (dlk_alloc(ctx_, bytes, &ptr_) != DLK_SUCCESS) ptr_ = nullptr;
  }
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    std::swap(ctx_, o.ctx_);
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() {
    if (ptr_) dlk_free(ctx_, ptr_);
  }
  void* get() const { return ptr_; }
  std::size_t bytes() const { return bytes_; }
  bool ok() const { return ptr_ != nullptr || bytes_ == 0; }

 private:
  dlk_context* ctx_ = nullptr;
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

// A tensor over a buffer; owns its shape so the DLTensor stays valid.
struct Tensor {
  Buffer buf;
  std::vector<int64_t> shape;
  DLTensor t{};

  Tensor() = default;
  Tensor(Env& e, std::vector<int64_t> s, DLDataType dt) : shape(std::move(s)) {
    std::size_t n = 1;
    for (int64_t d : shape) n *= static_cast<std::size_t>(d);
    buf = Buffer(e, n * ((dt.bits * dt.lanes + 7) / 8));
    t.data = buf.get();
    t.device = e.dl_device();
    t.ndim = static_cast<int32_t>(shape.size());
    t.dtype = dt;
    t.shape = shape.data();
    t.strides = nullptr;
    t.byte_offset = 0;
  }
  Tensor(Tensor&& o) noexcept : buf(std::move(o.buf)), shape(std::move(o.shape)), t(o.t) { t.shape = shape.data(); }
  Tensor& operator=(Tensor&& o) noexcept {
    buf = std::move(o.buf);
    shape = std::move(o.shape);
    t = o.t;
    t.shape = shape.data();
    return *this;
  }
  std::size_t elements() const {
    std::size_t n = 1;
    for (int64_t d : shape) n *= static_cast<std::size_t>(d);
    return n;
  }
  bool ok() const { return buf.ok(); }
  DLTensor* dl() { return &t; }
  void* data() const { return t.data; }
};

// A cheap, seeded generator (xorshift64).
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  float uniform(float lo, float hi) {
    return lo + (hi - lo) * static_cast<float>(next() >> 40) * (1.0f / 16777216.0f);
  }
};

// A fixed host pattern of uniform values in [-4, 4) per dtype, generated once: filling a gigabyte on the device is
// then a few copies, not a billion random draws. Never zeros (they can time faster than real data).
inline const std::vector<unsigned char>& pattern(Dtype dt) {
  static std::vector<unsigned char> p[3];
  std::vector<unsigned char>& v = p[static_cast<int>(dt)];
  if (v.empty()) {
    const std::size_t n = std::size_t(1) << 22;
    v.resize(n * dtype_size(dt));
    Rng r(42 + static_cast<uint64_t>(dt));
    for (std::size_t i = 0; i < n; ++i) {
      float f = r.uniform(-4.0f, 4.0f);
      if (dt == Dtype::F32) {
        std::memcpy(v.data() + 4 * i, &f, 4);
      } else {
        std::uint16_t h = dt == Dtype::F16 ? dlk::float_to_fp16(f) : dlk::float_to_bf16(f);
        std::memcpy(v.data() + 2 * i, &h, 2);
      }
    }
  }
  return v;
}

// Fills a floating tensor with the pattern, starting at an offset picked by `seed` so that buffer sets differ.
// Returns false when a copy fails.
inline bool fill(Env& e, Tensor& x, Dtype dt, uint64_t seed) {
  const std::vector<unsigned char>& p = pattern(dt);
  const std::size_t es = dtype_size(dt), pn = p.size() / es, n = x.elements();
  std::size_t off = static_cast<std::size_t>(Rng(seed).next() % pn), done = 0;
  auto* dst = static_cast<unsigned char*>(x.buf.get());
  while (done < n) {
    std::size_t k = std::min(n - done, pn - off);
    if (dlk_copy(e.ctx, dst + done * es, e.dl_device(), p.data() + off * es, DLDevice{kDLCPU, 0}, k * es) !=
        DLK_SUCCESS)
      return false;
    done += k;
    off = 0;
  }
  return true;
}

inline bool copy_in(Env& e, Tensor& x, const void* host, std::size_t bytes) {
  return dlk_copy(e.ctx, x.buf.get(), e.dl_device(), host, DLDevice{kDLCPU, 0}, bytes) == DLK_SUCCESS;
}

// How many independent buffer sets to rotate through: on cuda enough that one pass over them is >= 256 MiB (five
// times the H100's L2), at most 8; on the CPU one (PyTorch is timed the same way in bench/compare_torch.py).
inline int rotation_sets(const Env& e, std::size_t bytes_per_set) {
  if (!e.cuda || bytes_per_set == 0) return 1;
  std::size_t want = (std::size_t(256) << 20) / bytes_per_set + 1;
  return static_cast<int>(std::min<std::size_t>(8, std::max<std::size_t>(1, want)));
}

// One call of the thing being timed; "" on success, else why it failed.
inline std::string dlk_result(dlk_status s) {
  if (s == DLK_SUCCESS) return {};
  return std::string(dlk_status_string(s)) + ": " + dlk_last_error();
}

// The benchmark loop shared by every case. `call(i)` issues launch number i (callers rotate buffer sets with it)
// and returns "" on success. `bytes` is what one call must move.
template <class Call>
void run_case(benchmark::State& state, Env& e, double bytes, Call&& call) {
  if (!e.error.empty()) {
    state.SkipWithError(e.error.c_str());
    return;
  }
  static thread_local std::string err;  // SkipWithError keeps the pointer until the case is reported
  long i = 0;
  // Warm-up: module load, workspace growth and library handles stay out of the numbers.
  for (; i < 3; ++i) {
    err = call(i);
    if (!err.empty()) {
      state.SkipWithError(err.c_str());
      return;
    }
  }
  if (dlk_context_synchronize(e.ctx) != DLK_SUCCESS) {
    err = dlk_result(DLK_ERROR_DEVICE_FAILURE);
    state.SkipWithError(err.c_str());
    return;
  }
  state.counters["bytes"] = benchmark::Counter(bytes);
  state.counters["GB/s"] = benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);

  if (!e.cuda) {
    for (auto _ : state) {
      err = call(i++);
      if (!err.empty()) {
        state.SkipWithError(err.c_str());
        break;
      }
    }
    return;
  }
#ifdef DLK_BENCH_CUDA
  // One timed batch of n launches, in seconds; negative on failure (err says why).
  auto batch = [&](int n) -> double {
    cudaEventRecord(e.start, e.stream);
    for (int k = 0; k < n; ++k) {
      err = call(i++);
      if (!err.empty()) return -1.0;
    }
    cudaEventRecord(e.stop, e.stream);
    if (dlk_context_synchronize(e.ctx) != DLK_SUCCESS) {
      err = dlk_result(DLK_ERROR_DEVICE_FAILURE);
      return -1.0;
    }
    float ms = 0.0f;
    cudaError_t ce = cudaEventElapsedTime(&ms, e.start, e.stop);
    if (ce != cudaSuccess) {
      err = cuda_error("cudaEventElapsedTime", ce);
      return -1.0;
    }
    return ms * 1e-3;
  };
  double probe = batch(5);
  if (probe < 0) {
    state.SkipWithError(err.c_str());
    return;
  }
  int per_batch = static_cast<int>(std::clamp(2e-3 / std::max(probe / 5, 1e-7), 5.0, 2000.0));
  double total_s = 0.0;
  long launches = 0;
  for (auto _ : state) {
    double s = batch(per_batch);
    if (s < 0) {
      state.SkipWithError(err.c_str());
      break;
    }
    state.SetIterationTime(s / per_batch);
    total_s += s;
    launches += per_batch;
  }
  state.counters["launches_per_iter"] = per_batch;
  if (total_s > 0 && e.copy_bw_gbps > 0)
    state.counters["pct_copy_bw"] = 100.0 * (bytes * static_cast<double>(launches) / total_s / 1e9) / e.copy_bw_gbps;
#endif
}

// Registers a case with the timing mode its device needs. Names are "<key>/<impl>"; bench_report.py splits them.
template <class Fn>
benchmark::internal::Benchmark* add(const std::string& key, const std::string& impl, Fn&& fn) {
  Env& e = env();
  auto* b = benchmark::RegisterBenchmark((key + "/" + impl).c_str(), std::forward<Fn>(fn));
  b->Unit(benchmark::kMicrosecond);
  if (e.cuda) {
    b->UseManualTime()->Iterations(20);  // 20 batches of ~2 ms each
  } else {
    b->UseRealTime()->MinTime(0.1);
  }
  return b;
}

inline std::string dims(std::initializer_list<std::pair<const char*, int64_t>> ds) {
  std::string s;
  for (auto& d : ds) s += (s.empty() ? "" : "x") + std::string(d.first) + std::to_string(d.second);
  return s;
}

inline int run_main(int argc, char** argv, void (*register_cases)(Env&)) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_cases(env());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  env_shutdown();
  return 0;
}

}  // namespace dlkb
