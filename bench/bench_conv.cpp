// Convolution benchmarks: conv2d and conv_transpose2d forward, backward-data and backward-weight on the shapes of the
// seed models, in TFLOP/s (2 * N * K * OH * OW * C/g * kh * kw of the conv view, the same for every direction).
//   ResNet-18 layers at batch 32, 224^2 (the 7x7 stem, a 3x3 of every stage, the strided 3x3s, a 1x1 downsample);
//   the Fashion-MNIST CNN (28^2, 1 -> 32 -> 64 channels, batch 64);
//   DCGAN at 64^2, batch 64: the generator's 4x4 stride-2 transposed convs and the discriminator's 4x4 stride-2 convs;
//   U-Net encoder 3x3 levels and decoder 2x2 stride-2 transposed convs at 256^2, batch 4;
//   ViT patch embedding 3 -> 768 with 14x14 and 16x16 patches (stride = kernel) on 224^2, batch 32.
// On the CPU the batches are cut (ResNet, U-Net, ViT to 1; DCGAN to 8) so a run stays in minutes; the Fashion-MNIST
// CNN keeps its training batch. Names: conv/<op>/<dir>/<dtype>/<layout>/<model>_<layer>/<impl>.
//
// Baseline on cuda (DLK_BENCH_CUDNN, linked into this binary only): cuDNN with the best algorithm that
// cudnnFindConvolution*Algorithm reports for the shape, its workspace allocated once; fp32 in CUDNN_FMA_MATH (no
// TF32, like our FFMA kernels), fp16/bf16 in CUDNN_TENSOR_OP_MATH with fp32 compute. The transposed conv is cuDNN's
// conv with the directions swapped, exactly as our kernels reuse them. PyTorch (cuDNN through torch, or its CPU
// convolution) is timed on the same shapes by bench/compare_torch.py.
#include <string>
#include <vector>

#include "bench_common.h"

#ifdef DLK_BENCH_CUDNN
#include <cudnn.h>
#endif

namespace {

using dlkb::Dtype;
using dlkb::Env;
using dlkb::Tensor;

struct Shape {
  std::string key;
  bool transposed;
  int64_t n, cin, h, w, cout;  // the op's input and output channels
  int k, s, p, g;              // square kernel, stride, symmetric padding, groups
};

// The op's output size (H and W are square in every case here).
int64_t out_size(const Shape& c, int64_t in) {
  return c.transposed ? (in - 1) * c.s - 2 * c.p + (c.k - 1) + 1 : (in + 2 * c.p - (c.k - 1) - 1) / c.s + 1;
}

std::vector<Shape> shapes(bool cuda) {
  const int64_t rb = cuda ? 32 : 1, ub = cuda ? 4 : 1, gb = cuda ? 64 : 8, vb = cuda ? 32 : 1;
  return {
      {"resnet18_conv1_7x7s2", false, rb, 3, 224, 224, 64, 7, 2, 3, 1},
      {"resnet18_layer1_3x3", false, rb, 64, 56, 56, 64, 3, 1, 1, 1},
      {"resnet18_layer2_3x3s2", false, rb, 64, 56, 56, 128, 3, 2, 1, 1},
      {"resnet18_layer2_down1x1s2", false, rb, 64, 56, 56, 128, 1, 2, 0, 1},
      {"resnet18_layer2_3x3", false, rb, 128, 28, 28, 128, 3, 1, 1, 1},
      {"resnet18_layer3_3x3", false, rb, 256, 14, 14, 256, 3, 1, 1, 1},
      {"resnet18_layer4_3x3", false, rb, 512, 7, 7, 512, 3, 1, 1, 1},
      {"fmnist_conv1_3x3", false, 64, 1, 28, 28, 32, 3, 1, 1, 1},
      {"fmnist_conv2_3x3", false, 64, 32, 14, 14, 64, 3, 1, 1, 1},
      {"dcgan_G_4x4s2_512to256", true, gb, 512, 4, 4, 256, 4, 2, 1, 1},
      {"dcgan_G_4x4s2_128to64", true, gb, 128, 16, 16, 64, 4, 2, 1, 1},
      {"dcgan_G_4x4s2_64to3", true, gb, 64, 32, 32, 3, 4, 2, 1, 1},
      {"dcgan_D_4x4s2_3to64", false, gb, 3, 64, 64, 64, 4, 2, 1, 1},
      {"dcgan_D_4x4s2_128to256", false, gb, 128, 16, 16, 256, 4, 2, 1, 1},
      {"unet_enc1_3x3", false, ub, 64, 256, 256, 64, 3, 1, 1, 1},
      {"unet_enc3_3x3", false, ub, 256, 64, 64, 256, 3, 1, 1, 1},
      {"unet_bottleneck_3x3", false, ub, 512, 16, 16, 1024, 3, 1, 1, 1},
      {"unet_up1_2x2s2", true, ub, 1024, 16, 16, 512, 2, 2, 0, 1},
      {"unet_up4_2x2s2", true, ub, 128, 128, 128, 64, 2, 2, 0, 1},
      {"vit_patch14", false, vb, 3, 224, 224, 768, 14, 14, 0, 1},
      {"vit_patch16", false, vb, 3, 224, 224, 768, 16, 16, 0, 1},
  };
}

enum class Dir { Fwd, BwdData, BwdWeight };
const char* dir_name(Dir d) { return d == Dir::Fwd ? "fwd" : d == Dir::BwdData ? "bwd_data" : "bwd_weight"; }

struct Set {
  Tensor x, w, b, y;  // the op's input, weight, bias, output (backward: y holds dy, x receives dx)
  Tensor dw;
};

std::vector<int64_t> act(int64_t n, int64_t c, int64_t h, int64_t w, bool nhwc) {
  return nhwc ? std::vector<int64_t>{n, h, w, c} : std::vector<int64_t>{n, c, h, w};
}

#ifdef DLK_BENCH_CUDNN
std::string cudnn_result(cudnnStatus_t s) {
  return s == CUDNN_STATUS_SUCCESS ? std::string() : std::string("cuDNN: ") + cudnnGetErrorString(s);
}

cudnnHandle_t cudnn(Env& e) {
  static cudnnHandle_t h = [&] {
    cudnnHandle_t v = nullptr;
    if (cudnnCreate(&v) != CUDNN_STATUS_SUCCESS) return static_cast<cudnnHandle_t>(nullptr);
    cudnnSetStream(v, e.stream);
    return v;
  }();
  return h;
}

// The conv view of a case in cuDNN's descriptors, the best algorithm of the direction, and its workspace.
struct Cudnn {
  cudnnTensorDescriptor_t xd = nullptr, yd = nullptr;  // conv-view input and output
  cudnnFilterDescriptor_t wd = nullptr;
  cudnnConvolutionDescriptor_t cd = nullptr;
  int algo = -1;
  void* ws = nullptr;
  std::size_t ws_bytes = 0;
  std::string error;
  ~Cudnn() {
    if (xd) cudnnDestroyTensorDescriptor(xd);
    if (yd) cudnnDestroyTensorDescriptor(yd);
    if (wd) cudnnDestroyFilterDescriptor(wd);
    if (cd) cudnnDestroyConvolutionDescriptor(cd);
    if (ws) cudaFree(ws);
  }
};

cudnnDataType_t cudnn_type(Dtype dt) {
  return dt == Dtype::F32 ? CUDNN_DATA_FLOAT : dt == Dtype::F16 ? CUDNN_DATA_HALF : CUDNN_DATA_BFLOAT16;
}

// Which cuDNN call runs our direction: the transposed conv swaps forward and backward-data.
enum class CudnnOp { Forward, BackwardData, BackwardFilter };
CudnnOp cudnn_op(const Shape& c, Dir d) {
  if (d == Dir::BwdWeight) return CudnnOp::BackwardFilter;
  const bool fwd = (d == Dir::Fwd) != c.transposed;
  return fwd ? CudnnOp::Forward : CudnnOp::BackwardData;
}

// `set` holds the op's tensors: conv view x = op input (conv) or op output (transposed).
bool cudnn_setup(Env& e, Cudnn& cd, const Shape& c, Dtype dt, bool nhwc, Dir d, Set& set) {
  cudnnHandle_t h = cudnn(e);
  if (!h) return cd.error = "cudnnCreate failed", false;
  const int64_t oh = out_size(c, c.h), ow = out_size(c, c.w);
  // conv view: input channels/size, output channels/size
  const int vc = static_cast<int>(c.transposed ? c.cout : c.cin), vk = static_cast<int>(c.transposed ? c.cin : c.cout);
  const int vh = static_cast<int>(c.transposed ? oh : c.h), vw = static_cast<int>(c.transposed ? ow : c.w);
  const int voh = static_cast<int>(c.transposed ? c.h : oh), vow = static_cast<int>(c.transposed ? c.w : ow);
  const cudnnTensorFormat_t fmt = nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
  const cudnnDataType_t t = cudnn_type(dt);
  cudnnStatus_t s = CUDNN_STATUS_SUCCESS;
  auto ok = [&](cudnnStatus_t r) {
    if (s == CUDNN_STATUS_SUCCESS) s = r;
    return s == CUDNN_STATUS_SUCCESS;
  };
  ok(cudnnCreateTensorDescriptor(&cd.xd));
  ok(cudnnCreateTensorDescriptor(&cd.yd));
  ok(cudnnCreateFilterDescriptor(&cd.wd));
  ok(cudnnCreateConvolutionDescriptor(&cd.cd));
  ok(cudnnSetTensor4dDescriptor(cd.xd, fmt, t, static_cast<int>(c.n), vc, vh, vw));
  ok(cudnnSetTensor4dDescriptor(cd.yd, fmt, t, static_cast<int>(c.n), vk, voh, vow));
  // Our weights are [K, C/g, kh, kw] in both layouts; cuDNN's NHWC filter is [K, kh, kw, C/g], so NHWC runs give
  // cuDNN its own filter layout (a layout a channels-last framework would keep its weights in).
  ok(cudnnSetFilter4dDescriptor(cd.wd, t, fmt, vk, vc / c.g, c.k, c.k));
  ok(cudnnSetConvolution2dDescriptor(cd.cd, c.p, c.p, c.s, c.s, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  ok(cudnnSetConvolutionGroupCount(cd.cd, c.g));
  ok(cudnnSetConvolutionMathType(cd.cd, dt == Dtype::F32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH));
  if (s != CUDNN_STATUS_SUCCESS) return cd.error = cudnn_result(s), false;
  int found = 0;
  const CudnnOp op = cudnn_op(c, d);
  if (op == CudnnOp::Forward) {
    cudnnConvolutionFwdAlgoPerf_t perf[8];
    ok(cudnnFindConvolutionForwardAlgorithm(h, cd.xd, cd.wd, cd.cd, cd.yd, 8, &found, perf));
    for (int i = 0; i < found && cd.algo < 0; ++i)
      if (perf[i].status == CUDNN_STATUS_SUCCESS) cd.algo = perf[i].algo, cd.ws_bytes = perf[i].memory;
  } else if (op == CudnnOp::BackwardData) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[8];
    ok(cudnnFindConvolutionBackwardDataAlgorithm(h, cd.wd, cd.yd, cd.cd, cd.xd, 8, &found, perf));
    for (int i = 0; i < found && cd.algo < 0; ++i)
      if (perf[i].status == CUDNN_STATUS_SUCCESS) cd.algo = perf[i].algo, cd.ws_bytes = perf[i].memory;
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[8];
    ok(cudnnFindConvolutionBackwardFilterAlgorithm(h, cd.xd, cd.yd, cd.cd, cd.wd, 8, &found, perf));
    for (int i = 0; i < found && cd.algo < 0; ++i)
      if (perf[i].status == CUDNN_STATUS_SUCCESS) cd.algo = perf[i].algo, cd.ws_bytes = perf[i].memory;
  }
  if (s != CUDNN_STATUS_SUCCESS) return cd.error = cudnn_result(s), false;
  if (cd.algo < 0) return cd.error = "cuDNN found no algorithm", false;
  if (cd.ws_bytes && cudaMalloc(&cd.ws, cd.ws_bytes) != cudaSuccess) return cd.error = "cudaMalloc failed", false;
  (void)set;
  return true;
}

// One cuDNN call of the direction on the set's buffers.
std::string cudnn_call(Env& e, Cudnn& cd, const Shape& c, Dir d, Set& st) {
  const float one = 1.0f, zero = 0.0f;
  cudnnHandle_t h = cudnn(e);
  // conv-view buffers: x_v (conv input), y_v (conv output)
  switch (cudnn_op(c, d)) {
    case CudnnOp::Forward: {  // conv fwd: x -> y; transposed bwd_data: dy (st.y) -> dx (st.x)
      void* xv = c.transposed ? st.y.data() : st.x.data();
      void* yv = c.transposed ? st.x.data() : st.y.data();
      return cudnn_result(cudnnConvolutionForward(h, &one, cd.xd, xv, cd.wd, st.w.data(), cd.cd,
                                                  static_cast<cudnnConvolutionFwdAlgo_t>(cd.algo), cd.ws, cd.ws_bytes,
                                                  &zero, cd.yd, yv));
    }
    case CudnnOp::BackwardData: {  // conv bwd_data: dy (st.y) -> dx (st.x); transposed fwd: x -> y
      void* dyv = c.transposed ? st.x.data() : st.y.data();
      void* dxv = c.transposed ? st.y.data() : st.x.data();
      return cudnn_result(cudnnConvolutionBackwardData(h, &one, cd.wd, st.w.data(), cd.yd, dyv, cd.cd,
                                                       static_cast<cudnnConvolutionBwdDataAlgo_t>(cd.algo), cd.ws,
                                                       cd.ws_bytes, &zero, cd.xd, dxv));
    }
    default: {  // weight gradient: conv view x and dy
      void* xv = c.transposed ? st.y.data() : st.x.data();
      void* dyv = c.transposed ? st.x.data() : st.y.data();
      return cudnn_result(cudnnConvolutionBackwardFilter(h, &one, cd.xd, xv, cd.yd, dyv, cd.cd,
                                                         static_cast<cudnnConvolutionBwdFilterAlgo_t>(cd.algo), cd.ws,
                                                         cd.ws_bytes, &zero, cd.wd, st.dw.data()));
    }
  }
}
#endif

void conv_case(benchmark::State& state, Shape c, Dtype dt, bool nhwc, Dir d, bool use_cudnn) {
  Env& e = dlkb::env();
  if (!e.error.empty()) return state.SkipWithError(e.error.c_str());
  const DLDataType t = dlkb::dl_dtype(dt);
  const int64_t oh = out_size(c, c.h), ow = out_size(c, c.w);
  const std::vector<int64_t> wshape = c.transposed ? std::vector<int64_t>{c.cin, c.cout / c.g, c.k, c.k}
                                                   : std::vector<int64_t>{c.cout, c.cin / c.g, c.k, c.k};
  const double in_el = static_cast<double>(c.n * c.cin * c.h * c.w),
               out_el = static_cast<double>(c.n * c.cout * oh * ow);
  const double w_el = static_cast<double>(wshape[0] * wshape[1] * c.k * c.k);
  // MACs of the conv view: every (small-side pixel, big-side channel in the group, tap).
  const double small_px = c.transposed ? in_el : out_el;
  const double flops = 2.0 * small_px * static_cast<double>((c.transposed ? c.cout : c.cin) / c.g) * c.k * c.k;
  const double es = static_cast<double>(dlkb::dtype_size(dt));
  const double bytes = (in_el + out_el + w_el) * es;
  const int sets = dlkb::rotation_sets(e, static_cast<std::size_t>(bytes));
  std::vector<Set> v(static_cast<std::size_t>(sets));
  for (int i = 0; i < sets; ++i) {
    Set& st = v[static_cast<std::size_t>(i)];
    st.x = Tensor(e, act(c.n, c.cin, c.h, c.w, nhwc), t);
    st.y = Tensor(e, act(c.n, c.cout, oh, ow, nhwc), t);
    st.w = Tensor(e, wshape, t);
    st.b = Tensor(e, {c.cout}, t);
    st.dw = Tensor(e, wshape, t);
    const bool ok = st.x.ok() && st.y.ok() && st.w.ok() && st.b.ok() && st.dw.ok() && dlkb::fill(e, st.x, dt, 7 * i) &&
                    dlkb::fill(e, st.y, dt, 7 * i + 1) && dlkb::fill(e, st.w, dt, 7 * i + 2) &&
                    dlkb::fill(e, st.b, dt, 7 * i + 3);
    if (!ok) return state.SkipWithError("cannot allocate or fill the convolution buffers");
  }
  dlk_conv2d_params p;
  dlk_conv2d_params_init(&p);
  p.stride[0] = p.stride[1] = c.s;
  p.padding[0] = p.padding[1] = p.padding[2] = p.padding[3] = c.p;
  p.groups = c.g;
  p.layout = nhwc ? DLK_CONV_NHWC : DLK_CONV_NCHW;
#ifdef DLK_BENCH_CUDNN
  Cudnn cd;
  if (use_cudnn && !cudnn_setup(e, cd, c, dt, nhwc, d, v[0])) return state.SkipWithError(cd.error.c_str());
#else
  (void)use_cudnn;
#endif
  dlkb::run_case(state, e, bytes, [&](long i) -> std::string {
    Set& st = v[static_cast<std::size_t>(i % sets)];
#ifdef DLK_BENCH_CUDNN
    if (use_cudnn) return cudnn_call(e, cd, c, d, st);
#endif
    dlk_status s;
    if (!c.transposed) {
      s = d == Dir::Fwd       ? dlk_conv2d_forward(e.ctx, &p, st.x.dl(), st.w.dl(), st.b.dl(), st.y.dl())
          : d == Dir::BwdData ? dlk_conv2d_backward_data(e.ctx, &p, st.y.dl(), st.w.dl(), st.x.dl())
                              : dlk_conv2d_backward_weight(e.ctx, &p, st.x.dl(), st.y.dl(), st.dw.dl(), nullptr);
    } else {
      s = d == Dir::Fwd ? dlk_conv_transpose2d_forward(e.ctx, &p, st.x.dl(), st.w.dl(), st.b.dl(), st.y.dl())
          : d == Dir::BwdData
              ? dlk_conv_transpose2d_backward_data(e.ctx, &p, st.y.dl(), st.w.dl(), st.x.dl())
              : dlk_conv_transpose2d_backward_weight(e.ctx, &p, st.x.dl(), st.y.dl(), st.dw.dl(), nullptr);
    }
    return dlkb::dlk_result(s);
  });
  state.counters["TFLOP/s"] = benchmark::Counter(flops / 1e12, benchmark::Counter::kIsIterationInvariantRate);
}

void register_cases(Env& e) {
  std::vector<Dtype> dtypes = {Dtype::F32};
  if (e.cuda) dtypes = {Dtype::F32, Dtype::F16, Dtype::BF16};
  std::vector<bool> layouts = {false};
  if (e.cuda) layouts = {false, true};
  std::vector<const char*> impls = {"dlk"};
#ifdef DLK_BENCH_CUDNN
  if (e.cuda) impls.push_back("cudnn");
#endif
  for (Dtype dt : dtypes)
    for (bool nhwc : layouts)
      for (const Shape& c : shapes(e.cuda))
        for (Dir d : {Dir::Fwd, Dir::BwdData, Dir::BwdWeight})
          for (const char* impl : impls) {
            const bool cd = std::string(impl) == "cudnn";
            const std::string key = std::string("conv/") + (c.transposed ? "conv_transpose2d/" : "conv2d/") +
                                    dir_name(d) + "/" + dlkb::dtype_name(dt) + "/" + (nhwc ? "nhwc/" : "nchw/") + c.key;
            dlkb::add(key, impl, [=](benchmark::State& st) { conv_case(st, c, dt, nhwc, d, cd); });
          }
}

}  // namespace

int main(int argc, char** argv) { return dlkb::run_main(argc, argv, register_cases); }
