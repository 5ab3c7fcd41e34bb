// `dlk`: the command-line face of dlkernels, built only on the public C API like any user program.
//   dlk bench [--device auto|cpu|cuda|emu] [--quick]   time the ops on model shapes and print a table
//   dlk devices                                        what this library and machine can run
//   dlk train gpt [...]                                train the character-level GPT (models/gpt)
//   dlk sample gpt --ckpt FILE [...]                   generate text from a GPT checkpoint
//   dlk version
#include <dlk/dlk.h>
#include <unistd.h>

#include "gpt.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "dlk: %s\n", what.c_str());
  std::exit(1);
}

void check(dlk_status s, const char* what) {
  if (s != DLK_SUCCESS) die(std::string(what) + ": " + dlk_status_string(s) + ": " + dlk_last_error());
}

// A float32 tensor in the context's memory, filled with normal noise.
struct Buffer {
  dlk_context* ctx;
  std::vector<std::int64_t> shape;
  void* data = nullptr;
  DLTensor t{};
  Buffer(dlk_context* c, std::vector<std::int64_t> s, bool on_device) : ctx(c), shape(std::move(s)) {
    std::size_t n = 1;
    for (auto d : shape) n *= static_cast<std::size_t>(d);
    check(dlk_alloc(ctx, n * 4, &data), "dlk_alloc");
    std::vector<float> host(n);
    std::mt19937 g(1234);
    std::normal_distribution<float> d;
    for (auto& v : host) v = d(g);
    DLDevice dev = on_device ? DLDevice{kDLCUDA, 0} : DLDevice{kDLCPU, 0};
    check(dlk_copy(ctx, data, dev, host.data(), DLDevice{kDLCPU, 0}, n * 4), "dlk_copy");
    t.data = data;
    t.device = dev;
    t.ndim = static_cast<int>(shape.size());
    t.shape = shape.data();
    t.dtype = DLDataType{kDLFloat, 32, 1};
  }
  ~Buffer() { dlk_free(ctx, data); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  double bytes() const {
    double n = 4;
    for (auto d : shape) n *= static_cast<double>(d);
    return n;
  }
};

// Median wall time of `fn` over enough repetitions to fill ~0.2 s (at least 3).
double time_ms(dlk_context* ctx, const std::function<void()>& fn) {
  fn();
  check(dlk_context_synchronize(ctx), "sync");
  std::vector<double> times;
  auto start = std::chrono::steady_clock::now();
  while (times.size() < 3 || (std::chrono::steady_clock::now() - start < std::chrono::milliseconds(200) && times.size() < 200)) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    check(dlk_context_synchronize(ctx), "sync");
    times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

void row(const char* op, const std::string& shape, const char* pass, double ms, double bytes) {
  std::printf("| %-9s | %-22s | %-8s | %10.3f | %8.2f |\n", op, shape.c_str(), pass, ms, bytes / ms / 1e6);
}

int bench(int argc, char** argv) {
  dlk_device device = DLK_DEVICE_AUTO;
  bool quick = false;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick") {
      quick = true;
    } else if (a == "--device" && i + 1 < argc) {
      std::string d = argv[++i];
      device = d == "cpu" ? DLK_DEVICE_CPU : d == "cuda" ? DLK_DEVICE_CUDA : d == "emu" ? DLK_DEVICE_EMU
             : d == "auto" ? DLK_DEVICE_AUTO : (die("unknown device " + d), DLK_DEVICE_AUTO);
    } else {
      die("bench: unknown argument " + a);
    }
  }
  dlk_context_options o;
  dlk_context_options_init(&o);
  o.device = device;
  dlk_context* ctx = nullptr;
  check(dlk_context_create(&o, &ctx), "dlk_context_create");
  dlk_device used = DLK_DEVICE_CPU;
  dlk_context_device(ctx, &used);
  const bool on_device = used == DLK_DEVICE_CUDA;
  // The emulator runs every GPU thread as a fiber: give it toy sizes.
  const int shrink = used == DLK_DEVICE_EMU ? 64 : (quick ? 8 : 1);
  std::printf("dlkernels %d.%d.%d, device %s, float32; GB/s counts inputs read once and outputs written once\n\n",
              DLK_VERSION_MAJOR, DLK_VERSION_MINOR, DLK_VERSION_PATCH, dlk_device_name(used));
  std::printf("| op        | shape                  | pass     |    time ms |     GB/s |\n");
  std::printf("|-----------|------------------------|----------|------------|----------|\n");

  struct SoftmaxShape { std::int64_t bh, t; dlk_mask_kind mask; };
  for (SoftmaxShape s : {SoftmaxShape{8 * 12, 256, DLK_MASK_NONE}, SoftmaxShape{8 * 12, 256, DLK_MASK_CAUSAL},
                         SoftmaxShape{4 * 12, 1024, DLK_MASK_CAUSAL}}) {
    std::int64_t bh = std::max<std::int64_t>(1, s.bh / shrink);
    Buffer x(ctx, {bh, s.t, s.t}, on_device), y(ctx, {bh, s.t, s.t}, on_device), dx(ctx, {bh, s.t, s.t}, on_device);
    dlk_softmax_params p;
    dlk_softmax_params_init(&p);
    p.mask_kind = s.mask;
    p.scale = 0.125f;
    std::string shape = "[" + std::to_string(bh) + "," + std::to_string(s.t) + "," + std::to_string(s.t) + "]" +
                        (s.mask == DLK_MASK_CAUSAL ? " causal" : "");
    row("softmax", shape, "forward", time_ms(ctx, [&] { check(dlk_softmax_forward(ctx, &p, &x.t, &y.t), "softmax"); }),
        2 * x.bytes());
    row("softmax", shape, "backward",
        time_ms(ctx, [&] { check(dlk_softmax_backward(ctx, &p, &y.t, &x.t, &dx.t), "softmax_backward"); }),
        3 * x.bytes());
  }
  for (std::int64_t c : {384, 768, 1600, 4096}) {
    std::int64_t rows = std::max<std::int64_t>(1, 8 * 1024 / shrink);
    Buffer x(ctx, {rows, c}, on_device), y(ctx, {rows, c}, on_device), dx(ctx, {rows, c}, on_device);
    Buffer g(ctx, {c}, on_device), b(ctx, {c}, on_device), dg(ctx, {c}, on_device), db(ctx, {c}, on_device);
    Buffer mean(ctx, {rows}, on_device), rstd(ctx, {rows}, on_device);
    dlk_layernorm_params p;
    dlk_layernorm_params_init(&p);
    std::string shape = "[" + std::to_string(rows) + "," + std::to_string(c) + "]";
    row("layernorm", shape, "forward", time_ms(ctx, [&] {
          check(dlk_layernorm_forward(ctx, &p, &x.t, &g.t, &b.t, &y.t, &mean.t, &rstd.t), "layernorm");
        }), 2 * x.bytes());
    row("layernorm", shape, "backward", time_ms(ctx, [&] {
          check(dlk_layernorm_backward(ctx, &p, &y.t, &x.t, &mean.t, &rstd.t, &g.t, &dx.t, &dg.t, &db.t),
                "layernorm_backward");
        }), 3 * x.bytes());
  }
  dlk_context_destroy(ctx);
  return 0;
}

int devices() {
  std::printf("cpu   available\n");
  std::printf("emu   %s\n", dlk_backend_available(DLK_DEVICE_EMU) ? "available" : "not built");
  int n = dlk_cuda_device_count();
  std::printf("cuda  %s, %d device(s)\n", dlk_backend_available(DLK_DEVICE_CUDA) ? "built" : "not built", n);
  return 0;
}

void usage() {
  std::puts("usage: dlk bench [--device auto|cpu|cuda|emu] [--quick]\n"
            "       dlk devices\n"
            "       dlk train gpt [--data FILE|--task counting] [--config small|nanogpt] [--device auto|cpu|cuda|emu]"
            " [...]   (dlk train gpt --help)\n"
            "       dlk sample gpt --ckpt FILE [--prompt STR] [--temperature T] [--top-k K] [--max-new-tokens N]\n"
            "       dlk version");
}

}  // namespace

int main(int argc, char** argv) {
  // libgomp's threads spin for a while after every parallel region, and OpenBLAS's own threads then fight them for
  // the cores (a GPT training step on 2 cores ran 2x slower). libgomp reads OMP_WAIT_POLICY when it loads, before
  // main, so when the user has not chosen a policy the program sets "passive" and re-executes itself once.
  if (!std::getenv("OMP_WAIT_POLICY") && setenv("OMP_WAIT_POLICY", "passive", 1) == 0) execv("/proc/self/exe", argv);
  if (argc < 2) {
    usage();
    return 2;
  }
  std::string cmd = argv[1];
  if (cmd == "bench") return bench(argc - 2, argv + 2);
  if (cmd == "devices") return devices();
  if ((cmd == "train" || cmd == "sample") && (argc < 3 || std::string(argv[2]) != "gpt")) {
    std::fprintf(stderr, "dlk %s: the model to %s (known: gpt)\n", cmd.c_str(), cmd.c_str());
    return 2;
  }
  if (cmd == "train") return gpt::train_cli(argc - 3, argv + 3);
  if (cmd == "sample") return gpt::sample_cli(argc - 3, argv + 3);
  if (cmd == "version") {
    int v = dlk_version();
    std::printf("dlkernels %d.%d.%d\n", v / 10000, v / 100 % 100, v % 100);
    return 0;
  }
  usage();
  return 2;
}
