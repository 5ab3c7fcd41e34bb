// Fused masked softmax through the public C API, at GPT attention shapes: x is [B, H, T, T] (rows = B*H*T,
// cols = T), as nanoGPT's attention produces it. Forward for every mask kind the models use (none, causal,
// key-padding), backward from the saved output (it reads no mask, so it is timed once per shape). Baselines on
// cuda, same shapes, same buffers, same timing: a naive two-pass kernel (bench/naive_softmax.cu) and cuDNN's
// cudnnSoftmaxForward/Backward (ACCURATE, INSTANCE mode on an [N, C, 1, 1] view) when cuDNN was found.
//
// Bytes that must move: forward reads x and writes y (plus the key-padding lengths); backward reads y and dy and
// writes dx. Keep the shape lists in step with bench/compare_torch.py, which times PyTorch on the same keys.
#include <string>
#include <vector>

#include "bench_common.h"

#ifdef DLK_BENCH_CUDA
#include "naive_softmax.h"
#endif
#ifdef DLK_BENCH_CUDNN
#include <cudnn.h>
#endif

namespace {

using dlkb::Dtype;
using dlkb::Env;
using dlkb::Tensor;

struct Shape {
  int64_t b, h, r, c;  // x is [b, h, r, c]
  std::string key;
};

Shape gpt(int64_t b, int64_t h, int64_t t) { return {b, h, t, t, dlkb::dims({{"B", b}, {"H", h}, {"T", t}})}; }

// GPU: GPT-2 small at T = 256 and 1024 (B = 8, H = 12), GPT-2 medium heads at T = 2048 (B = 4, H = 16), nanoGPT's
// GPT-2 training config (B = 12, H = 12, T = 1024), nanoGPT shakespeare-char (B = 64, H = 6, T = 256), and one
// long-row case (1024 rows of 65536) that takes the block-per-row path.
std::vector<Shape> gpu_shapes() {
  return {gpt(8, 12, 256), gpt(8, 12, 1024), gpt(4, 16, 2048), gpt(12, 12, 1024), gpt(64, 6, 256),
          {1, 1, 1024, 65536, dlkb::dims({{"R", 1024}, {"C", 65536}})}};
}
// CPU: the same models at batch sizes that keep the whole suite under a minute on two cores.
std::vector<Shape> cpu_shapes() { return {gpt(1, 12, 256), gpt(4, 6, 256), gpt(1, 12, 1024)}; }

enum class Mask { None, Causal, KeyPadding };
const char* mask_name(Mask m) { return m == Mask::None ? "none" : m == Mask::Causal ? "causal" : "keypad"; }
enum class Impl { Dlk, Naive, Cudnn };
const char* impl_name(Impl i) { return i == Impl::Dlk ? "dlk" : i == Impl::Naive ? "naive" : "cudnn"; }

std::string key(const char* dir, Dtype dt, Mask m, const Shape& s) {
  return std::string("softmax/") + dir + "/" + dlkb::dtype_name(dt) + "/" + mask_name(m) + "/" + s.key;
}

#ifdef DLK_BENCH_CUDNN
// One handle for the process, on the benchmark stream.
struct Cudnn {
  cudnnHandle_t handle = nullptr;
  std::string error;
};
Cudnn& cudnn(Env& e) {
  static Cudnn c = [&] {
    Cudnn v;
    cudnnStatus_t s = cudnnCreate(&v.handle);
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnSetStream(v.handle, e.stream);
    if (s != CUDNN_STATUS_SUCCESS) v.error = std::string("cudnnCreate: ") + cudnnGetErrorString(s);
    return v;
  }();
  return c;
}
struct CudnnDesc {
  cudnnTensorDescriptor_t d = nullptr;
  std::string error;
  CudnnDesc(Dtype dt, int64_t rows, int64_t cols) {
    cudnnDataType_t t = dt == Dtype::F32 ? CUDNN_DATA_FLOAT : dt == Dtype::F16 ? CUDNN_DATA_HALF : CUDNN_DATA_BFLOAT16;
    cudnnStatus_t s = cudnnCreateTensorDescriptor(&d);
    if (s == CUDNN_STATUS_SUCCESS)
      s = cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, t, static_cast<int>(rows), static_cast<int>(cols), 1, 1);
    if (s != CUDNN_STATUS_SUCCESS) error = std::string("cudnn tensor descriptor: ") + cudnnGetErrorString(s);
  }
  CudnnDesc(const CudnnDesc&) = delete;
  CudnnDesc& operator=(const CudnnDesc&) = delete;
  ~CudnnDesc() {
    if (d) cudnnDestroyTensorDescriptor(d);
  }
};
std::string cudnn_result(const char* what, cudnnStatus_t s) {
  return s == CUDNN_STATUS_SUCCESS ? std::string() : std::string(what) + ": " + cudnnGetErrorString(s);
}
#endif

// Allocates `sets` tensors shaped like x and fills them unless `fill` is false. False when memory ran out.
bool make_set(Env& e, std::vector<Tensor>& out, int sets, const Shape& s, Dtype dt, bool fill, uint64_t seed) {
  for (int k = 0; k < sets; ++k) {
    out.emplace_back(e, std::vector<int64_t>{s.b, s.h, s.r, s.c}, dlkb::dl_dtype(dt));
    if (!out.back().ok()) return false;
    if (fill && !dlkb::fill(e, out.back(), dt, seed + static_cast<uint64_t>(k))) return false;
  }
  return true;
}

void softmax_forward(benchmark::State& state, Shape s, Dtype dt, Mask mask, Impl impl) {
  Env& e = dlkb::env();
  if (!e.error.empty()) return state.SkipWithError(e.error.c_str());
  const int64_t rows = s.b * s.h * s.r;
  const double io = static_cast<double>(rows * s.c) * static_cast<double>(dlkb::dtype_size(dt));
  const double bytes = 2 * io + (mask == Mask::KeyPadding ? 4.0 * static_cast<double>(s.b) : 0.0);
  const int sets = dlkb::rotation_sets(e, static_cast<std::size_t>(2 * io));
  std::vector<Tensor> xs, ys;
  if (!make_set(e, xs, sets, s, dt, true, 1) || !make_set(e, ys, sets, s, dt, false, 0))
    return state.SkipWithError("cannot allocate or fill the softmax buffers");

  // Key-padding lengths: each batch entry keeps between half and all of its columns.
  Tensor lengths(e, {s.b}, DLDataType{kDLInt, 32, 1});
  std::vector<int32_t> len(static_cast<std::size_t>(s.b));
  for (int64_t i = 0; i < s.b; ++i) len[i] = static_cast<int32_t>(s.c / 2 + (i * 7919) % (s.c / 2 + 1));
  if (!lengths.ok() || !dlkb::copy_in(e, lengths, len.data(), len.size() * 4))
    return state.SkipWithError("cannot allocate the lengths tensor");

  dlk_softmax_params p;
  dlk_softmax_params_init(&p);
  p.mask_kind = mask == Mask::None ? DLK_MASK_NONE : mask == Mask::Causal ? DLK_MASK_CAUSAL : DLK_MASK_KEY_PADDING;
  p.lengths = mask == Mask::KeyPadding ? lengths.dl() : nullptr;

  if (impl == Impl::Dlk) {
    dlkb::run_case(state, e, bytes, [&](long i) {
      const int k = static_cast<int>(i % sets);
      return dlkb::dlk_result(dlk_softmax_forward(e.ctx, &p, xs[k].dl(), ys[k].dl()));
    });
  }
#ifdef DLK_BENCH_CUDA
  if (impl == Impl::Naive) {
    dlkb::Buffer row_max(e, static_cast<std::size_t>(rows) * 4);
    if (!row_max.ok()) return state.SkipWithError("cannot allocate the row-max scratch");
    dlkb::run_case(state, e, bytes, [&](long i) -> std::string {
      const int k = static_cast<int>(i % sets);
      int err = dlkb::naive_softmax_forward(xs[k].data(), ys[k].data(), static_cast<float*>(row_max.get()), rows,
                                            static_cast<int>(s.c), static_cast<int>(dt), e.stream);
      return err ? dlkb::cuda_error("naive softmax", static_cast<cudaError_t>(err)) : std::string();
    });
  }
#endif
#ifdef DLK_BENCH_CUDNN
  if (impl == Impl::Cudnn) {
    Cudnn& c = cudnn(e);
    if (!c.error.empty()) return state.SkipWithError(c.error.c_str());
    CudnnDesc d(dt, rows, s.c);
    if (!d.error.empty()) return state.SkipWithError(d.error.c_str());
    const float alpha = 1.0f, beta = 0.0f;
    dlkb::run_case(state, e, bytes, [&](long i) {
      const int k = static_cast<int>(i % sets);
      return cudnn_result("cudnnSoftmaxForward",
                          cudnnSoftmaxForward(c.handle, CUDNN_SOFTMAX_ACCURATE, CUDNN_SOFTMAX_MODE_INSTANCE, &alpha,
                                              d.d, xs[k].data(), &beta, d.d, ys[k].data()));
    });
  }
#endif
}

void softmax_backward(benchmark::State& state, Shape s, Dtype dt, Impl impl) {
  Env& e = dlkb::env();
  if (!e.error.empty()) return state.SkipWithError(e.error.c_str());
  const int64_t rows = s.b * s.h * s.r;
  const double io = static_cast<double>(rows * s.c) * static_cast<double>(dlkb::dtype_size(dt));
  const double bytes = 3 * io;
  const int sets = dlkb::rotation_sets(e, static_cast<std::size_t>(bytes));
  std::vector<Tensor> ys, dys, dxs;
  if (!make_set(e, ys, sets, s, dt, true, 11) || !make_set(e, dys, sets, s, dt, true, 23) ||
      !make_set(e, dxs, sets, s, dt, false, 0))
    return state.SkipWithError("cannot allocate or fill the softmax buffers");
  dlk_softmax_params p;
  dlk_softmax_params_init(&p);

  if (impl == Impl::Dlk) {
    dlkb::run_case(state, e, bytes, [&](long i) {
      const int k = static_cast<int>(i % sets);
      return dlkb::dlk_result(dlk_softmax_backward(e.ctx, &p, ys[k].dl(), dys[k].dl(), dxs[k].dl()));
    });
  }
#ifdef DLK_BENCH_CUDNN
  if (impl == Impl::Cudnn) {
    Cudnn& c = cudnn(e);
    if (!c.error.empty()) return state.SkipWithError(c.error.c_str());
    CudnnDesc d(dt, rows, s.c);
    if (!d.error.empty()) return state.SkipWithError(d.error.c_str());
    const float alpha = 1.0f, beta = 0.0f;
    dlkb::run_case(state, e, bytes, [&](long i) {
      const int k = static_cast<int>(i % sets);
      return cudnn_result("cudnnSoftmaxBackward",
                          cudnnSoftmaxBackward(c.handle, CUDNN_SOFTMAX_ACCURATE, CUDNN_SOFTMAX_MODE_INSTANCE, &alpha,
                                               d.d, ys[k].data(), d.d, dys[k].data(), &beta, d.d, dxs[k].data()));
    });
  }
#endif
}

void register_cases(Env& e) {
  const std::vector<Shape> shapes = e.cuda ? gpu_shapes() : cpu_shapes();
  const std::vector<Dtype> dtypes =
      e.cuda ? std::vector<Dtype>{Dtype::F32, Dtype::F16, Dtype::BF16} : std::vector<Dtype>{Dtype::F32};
  std::vector<Impl> fwd_baselines, bwd_baselines;
  if (e.cuda) {
#ifdef DLK_BENCH_CUDA
    fwd_baselines.push_back(Impl::Naive);
#endif
#ifdef DLK_BENCH_CUDNN
    fwd_baselines.push_back(Impl::Cudnn);
    bwd_baselines.push_back(Impl::Cudnn);
#endif
  }
  for (const Shape& s : shapes) {
    for (Dtype dt : dtypes) {
      for (Mask m : {Mask::None, Mask::Causal, Mask::KeyPadding}) {
        if (m != Mask::None && s.r != s.c) continue;  // the long-row case is an unmasked row-length test
        dlkb::add(key("fwd", dt, m, s), "dlk",
                  [=](benchmark::State& st) { softmax_forward(st, s, dt, m, Impl::Dlk); });
      }
      for (Impl b : fwd_baselines)
        dlkb::add(key("fwd", dt, Mask::None, s), impl_name(b),
                  [=](benchmark::State& st) { softmax_forward(st, s, dt, Mask::None, b); });
      dlkb::add(key("bwd", dt, Mask::None, s), "dlk",
                [=](benchmark::State& st) { softmax_backward(st, s, dt, Impl::Dlk); });
      for (Impl b : bwd_baselines)
        dlkb::add(key("bwd", dt, Mask::None, s), impl_name(b),
                  [=](benchmark::State& st) { softmax_backward(st, s, dt, b); });
    }
  }
}

}  // namespace

int main(int argc, char** argv) { return dlkb::run_main(argc, argv, register_cases); }
