// Entry points for versioning, status names, contexts and memory.
#include <dlk/dlk.h>

#include <cstring>
#include <memory>

#include "capi/guard.h"
#include "capi/validate.h"
#include "runtime/device.h"

using dlk::Backend;
using dlk::fail;

namespace {

// The cpu backend's kernels are compiled for x86-64-v3 (see DLK_CPU_ARCH in CMakeLists.txt); refuse it, rather than
// die of an illegal instruction, on a CPU without AVX2 and FMA.
void check_cpu_supports_backend(const char* op) {
#if defined(DLK_CPU_ARCH_X86_64_V3) && DLK_CPU_ARCH_X86_64_V3 && (defined(__x86_64__) || defined(__i386__))
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
    fail(DLK_ERROR_NOT_AVAILABLE, op, ": the cpu backend was built for x86-64-v3 (AVX2, FMA) and this CPU lacks "
         "them; rebuild with -DDLK_CPU_ARCH= (empty) for a portable build");
#else
  (void)op;
#endif
}

}  // namespace

extern "C" {

DLK_API int dlk_version(void) { return DLK_VERSION; }

DLK_API const char* dlk_status_string(dlk_status status) {
  switch (dlk::enum_value(status)) {
    case DLK_SUCCESS: return "DLK_SUCCESS";
    case DLK_ERROR_INVALID_ARGUMENT: return "DLK_ERROR_INVALID_ARGUMENT";
    case DLK_ERROR_SHAPE: return "DLK_ERROR_SHAPE";
    case DLK_ERROR_DTYPE: return "DLK_ERROR_DTYPE";
    case DLK_ERROR_DEVICE: return "DLK_ERROR_DEVICE";
    case DLK_ERROR_LAYOUT: return "DLK_ERROR_LAYOUT";
    case DLK_ERROR_OVERFLOW: return "DLK_ERROR_OVERFLOW";
    case DLK_ERROR_OUT_OF_MEMORY: return "DLK_ERROR_OUT_OF_MEMORY";
    case DLK_ERROR_NOT_AVAILABLE: return "DLK_ERROR_NOT_AVAILABLE";
    case DLK_ERROR_DEVICE_FAILURE: return "DLK_ERROR_DEVICE_FAILURE";
    case DLK_ERROR_INTERNAL: return "DLK_ERROR_INTERNAL";
  }
  return "DLK_ERROR_UNKNOWN_STATUS";
}

DLK_API const char* dlk_device_name(dlk_device device) {
  switch (dlk::enum_value(device)) {
    case DLK_DEVICE_AUTO: return "auto";
    case DLK_DEVICE_CPU: return "cpu";
    case DLK_DEVICE_CUDA: return "cuda";
    case DLK_DEVICE_EMU: return "emu";
  }
  return "unknown";
}

DLK_API int dlk_cuda_device_count(void) {
  try {
    return dlk::device::cuda_device_count();
  } catch (...) {
    return 0;
  }
}

DLK_API int dlk_backend_available(dlk_device device) {
  switch (dlk::enum_value(device)) {
    case DLK_DEVICE_AUTO:
    case DLK_DEVICE_CPU: return 1;
    case DLK_DEVICE_CUDA: return dlk::device::cuda_built() ? 1 : 0;
    case DLK_DEVICE_EMU:
#ifdef DLK_HAVE_EMU
      return 1;
#else
      return 0;
#endif
  }
  return 0;
}

DLK_API dlk_status dlk_context_options_init(dlk_context_options* options) {
  return dlk::guard("dlk_context_options_init", [&] {
    if (!options) fail(DLK_ERROR_INVALID_ARGUMENT, "dlk_context_options_init: options is NULL");
    std::memset(options, 0, sizeof(*options));
    options->struct_size = sizeof(*options);
    options->device = DLK_DEVICE_AUTO;
  });
}

DLK_API dlk_status dlk_context_create(const dlk_context_options* options, dlk_context** context) {
  const char* op = "dlk_context_create";
  return dlk::guard(op, [&] {
    if (!context) fail(DLK_ERROR_INVALID_ARGUMENT, op, ": context (the output pointer) is NULL");
    dlk_context_options o;
    dlk_context_options_init(&o);
    if (options) {
      if (options->struct_size < offsetof(dlk_context_options, num_threads))
        fail(DLK_ERROR_INVALID_ARGUMENT, op, ": options->struct_size is ", options->struct_size,
             ", expected sizeof(dlk_context_options) = ", sizeof(dlk_context_options),
             " (initialise it with dlk_context_options_init)");
      std::memcpy(&o, options, options->struct_size < sizeof(o) ? options->struct_size : sizeof(o));
      o.struct_size = sizeof(o);
    }
    if (o.device_index < 0) fail(DLK_ERROR_INVALID_ARGUMENT, op, ": options->device_index is ", o.device_index, ", expected >= 0");
    if (o.num_threads < 0) fail(DLK_ERROR_INVALID_ARGUMENT, op, ": options->num_threads is ", o.num_threads, ", expected >= 0");
    auto ctx = std::make_unique<dlk_context>();
    ctx->device_index = o.device_index;
    ctx->deterministic = o.deterministic != 0;
    ctx->seed = o.seed;
    ctx->num_threads = o.num_threads;
    switch (dlk::enum_value(o.device)) {
      case DLK_DEVICE_AUTO:
        ctx->backend = dlk::device::cuda_device_count() > o.device_index ? Backend::Cuda : Backend::Cpu;
        break;
      case DLK_DEVICE_CPU: ctx->backend = Backend::Cpu; break;
      case DLK_DEVICE_EMU:
        if (!dlk_backend_available(DLK_DEVICE_EMU))
          fail(DLK_ERROR_NOT_AVAILABLE, op, ": the emu backend is not built into this library");
        ctx->backend = Backend::Emu;
        break;
      case DLK_DEVICE_CUDA: {
        if (!dlk::device::cuda_built())
          fail(DLK_ERROR_NOT_AVAILABLE, op, ": device cuda requested but this library was built without CUDA");
        int n = dlk::device::cuda_device_count();
        if (n <= o.device_index)
          fail(DLK_ERROR_NOT_AVAILABLE, op, ": device cuda:", o.device_index, " requested but ", n,
               " CUDA device(s) are usable (no driver or no GPU?)");
        ctx->backend = Backend::Cuda;
        break;
      }
      default:
        fail(DLK_ERROR_INVALID_ARGUMENT, op, ": options->device is ", dlk::enum_value(o.device),
             ", expected DLK_DEVICE_AUTO, _CPU, _CUDA or _EMU");
    }
    if (ctx->backend == Backend::Cpu) check_cpu_supports_backend(op);
    if (ctx->backend == Backend::Cuda) {
      dlk::device::set_device(ctx->device_index);
      if (o.stream) {
        ctx->stream = o.stream;
      } else {
        ctx->stream = dlk::device::stream_create();
        ctx->owns_stream = true;
      }
    }
    *context = ctx.release();
  });
}

DLK_API dlk_status dlk_context_destroy(dlk_context* context) {
  return dlk::guard("dlk_context_destroy", [&] { delete context; });
}

DLK_API dlk_status dlk_context_device(const dlk_context* context, dlk_device* device) {
  return dlk::guard("dlk_context_device", [&] {
    if (!context) fail(DLK_ERROR_INVALID_ARGUMENT, "dlk_context_device: context is NULL");
    if (!device) fail(DLK_ERROR_INVALID_ARGUMENT, "dlk_context_device: device (the output pointer) is NULL");
    *device = static_cast<dlk_device>(static_cast<int>(context->backend));
  });
}

DLK_API dlk_status dlk_context_synchronize(dlk_context* context) {
  return dlk::with_context("dlk_context_synchronize", context, [&](const dlk::Exec&) { dlk::context_synchronize(context); });
}

DLK_API dlk_status dlk_alloc(dlk_context* context, size_t bytes, void** ptr) {
  return dlk::with_context("dlk_alloc", context, [&](const dlk::Exec&) {
    if (!ptr) fail(DLK_ERROR_INVALID_ARGUMENT, "dlk_alloc: ptr (the output pointer) is NULL");
    if (bytes > (size_t{1} << 62)) fail(DLK_ERROR_OVERFLOW, "dlk_alloc: bytes is ", bytes, ", more than 2^62");
    *ptr = dlk::context_alloc(context, bytes);
  });
}

DLK_API dlk_status dlk_free(dlk_context* context, void* ptr) {
  return dlk::with_context("dlk_free", context, [&](const dlk::Exec&) {
    dlk::context_synchronize(context);
    dlk::context_free(context, ptr);
  });
}

static bool is_device_memory(DLDevice d) { return d.device_type == kDLCUDA; }

DLK_API dlk_status dlk_copy(dlk_context* context, void* dst, DLDevice dst_device, const void* src,
                            DLDevice src_device, size_t bytes) {
  const char* op = "dlk_copy";
  return dlk::with_context(op, context, [&](const dlk::Exec& exec) {
    if (bytes == 0) return;
    if (!dst) fail(DLK_ERROR_INVALID_ARGUMENT, op, ": dst is NULL");
    if (!src) fail(DLK_ERROR_INVALID_ARGUMENT, op, ": src is NULL");
    const DLDevice devs[2] = {dst_device, src_device};
    for (const DLDevice& d : devs) {
      bool known = d.device_type == kDLCPU || d.device_type == kDLCUDA || d.device_type == kDLCUDAHost ||
                   d.device_type == kDLCUDAManaged;
      if (!known) fail(DLK_ERROR_DEVICE, op, ": unsupported device ", dlk::device_string(d));
      if (is_device_memory(d) && (exec.backend != Backend::Cuda || d.device_id != exec.device_index))
        fail(DLK_ERROR_DEVICE, op, ": ", (&d == &devs[0] ? "dst" : "src"), " is on ", dlk::device_string(d),
             " but the context runs on ", dlk_device_name(static_cast<dlk_device>(static_cast<int>(exec.backend))),
             exec.backend == Backend::Cuda ? ":" + std::to_string(exec.device_index) : std::string());
    }
    bool d_dev = is_device_memory(dst_device), s_dev = is_device_memory(src_device);
    if (!d_dev && !s_dev && exec.backend != Backend::Cuda) {
      std::memmove(dst, src, bytes);
      return;
    }
    int kind = (s_dev ? 2 : 0) + (d_dev ? 1 : 0);  // 0 h2h, 1 h2d, 2 d2h, 3 d2d
    dlk::device::memcpy_async(dst, src, bytes, kind, exec.stream);
    dlk::device::stream_synchronize(exec.stream);
  });
}

}  // extern "C"
