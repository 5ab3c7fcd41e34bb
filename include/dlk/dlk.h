/*
 * dlkernels — the public C API. This is the only header users include.
 *
 * Conventions (stated once, they hold for every entry point):
 *  - Tensors cross the ABI as DLPack DLTensor. The caller owns all memory. A NULL `strides` means compact
 *    row-major. `byte_offset` is honoured.
 *  - Every function returns a dlk_status. On failure dlk_last_error() holds one sentence naming the op, the
 *    argument, and the expected and actual values, and no output buffer has been written.
 *  - Options that may grow live in a params struct whose first field, `struct_size`, is sizeof(the struct) as the
 *    caller compiled it. Fill one with its dlk_<op>_params_init() before setting fields.
 *  - A context serialises the calls made on it, so one context may be shared between threads.
 *  - Tensors of a `cpu` or `emu` context live in host memory (kDLCPU or kDLCUDAHost); tensors of a `cuda` context
 *    live on that context's device (kDLCUDA or kDLCUDAManaged with the same device_id).
 */
#ifndef DLK_DLK_H
#define DLK_DLK_H

#include <dlpack/dlpack.h>
#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define DLK_API __declspec(dllexport)
#else
#define DLK_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------------ version */

/** Major version; the SONAME is libdlkernels.so.<major>. */
#define DLK_VERSION_MAJOR 0
/** Minor version: new entry points or params fields, ABI-compatible. */
#define DLK_VERSION_MINOR 1
/** Patch version: fixes only. */
#define DLK_VERSION_PATCH 0
/** The version as one integer, major*10000 + minor*100 + patch. */
#define DLK_VERSION (DLK_VERSION_MAJOR * 10000 + DLK_VERSION_MINOR * 100 + DLK_VERSION_PATCH)

/** The version of the loaded library, encoded as DLK_VERSION is. */
DLK_API int dlk_version(void);

/* ------------------------------------------------------------------------------------------------- status */

/** Result of every entry point. */
typedef enum dlk_status {
  DLK_SUCCESS = 0,                /**< the call did what it was asked */
  DLK_ERROR_INVALID_ARGUMENT = 1, /**< a null pointer, a bad enum or a non-finite / out-of-range scalar */
  DLK_ERROR_SHAPE = 2,            /**< wrong rank, wrong shape, or shapes that do not broadcast */
  DLK_ERROR_DTYPE = 3,            /**< an unsupported dtype or dtypes that do not agree */
  DLK_ERROR_DEVICE = 4,           /**< a tensor lives on a device the context cannot address */
  DLK_ERROR_LAYOUT = 5,           /**< strides the op does not support (e.g. non-contiguous output) */
  DLK_ERROR_OVERFLOW = 6,         /**< a size or byte count does not fit the integer types the op uses */
  DLK_ERROR_OUT_OF_MEMORY = 7,    /**< host or device memory could not be allocated */
  DLK_ERROR_NOT_AVAILABLE = 8,    /**< the requested backend is not built in or has no device */
  DLK_ERROR_DEVICE_FAILURE = 9,   /**< the CUDA runtime or the emulator reported a failure while running */
  DLK_ERROR_INTERNAL = 10         /**< a bug in dlkernels; please report it with dlk_last_error() */
} dlk_status;

/** A static, human-readable name for a status, e.g. "DLK_ERROR_SHAPE". */
DLK_API const char* dlk_status_string(dlk_status status);

/** The sentence describing the last failure on the calling thread; "" after a successful call. */
DLK_API const char* dlk_last_error(void);

/* ---------------------------------------------------------------------------------------------- contexts */

/** Which backend a context runs on. */
typedef enum dlk_device {
  DLK_DEVICE_AUTO = 0, /**< cuda when a GPU is present and CUDA is built in, else cpu */
  DLK_DEVICE_CPU = 1,  /**< the CPU reference implementations (OpenMP) */
  DLK_DEVICE_CUDA = 2, /**< the CUDA kernels on a GPU */
  DLK_DEVICE_EMU = 3   /**< the same CUDA kernels run on the CPU by the emulator (tests and debugging) */
} dlk_device;

/** Options for dlk_context_create. */
typedef struct dlk_context_options {
  size_t struct_size; /**< sizeof(dlk_context_options) */
  dlk_device device;  /**< backend to use; DLK_DEVICE_AUTO by default */
  int device_index;   /**< CUDA device ordinal for the cuda backend; 0 by default */
  void* stream;       /**< a cudaStream_t to run on; NULL makes the context create and own one */
  int deterministic;  /**< nonzero: reductions give bitwise-identical results run to run */
  uint64_t seed;      /**< seed of the context's random streams (dropout, init); 0 by default */
  int num_threads;    /**< CPU threads for cpu/emu work; 0 uses OpenMP's default */
} dlk_context_options;

/** Opaque handle that owns a backend, its stream and its workspace. */
typedef struct dlk_context dlk_context;

/** Fills `options` with the defaults (auto device, index 0, own stream, non-deterministic, seed 0). */
DLK_API dlk_status dlk_context_options_init(dlk_context_options* options);

/** Creates a context; `options` may be NULL for the defaults. */
DLK_API dlk_status dlk_context_create(const dlk_context_options* options, dlk_context** context);

/** Destroys a context created by dlk_context_create; NULL is accepted and ignored. */
DLK_API dlk_status dlk_context_destroy(dlk_context* context);

/** The backend a context resolved to (never DLK_DEVICE_AUTO). */
DLK_API dlk_status dlk_context_device(const dlk_context* context, dlk_device* device);

/** Waits for all work issued on the context to finish. */
DLK_API dlk_status dlk_context_synchronize(dlk_context* context);

/** A static name for a device kind: "auto", "cpu", "cuda" or "emu". */
DLK_API const char* dlk_device_name(dlk_device device);

/** Number of CUDA devices usable by this library (0 without CUDA, a driver or a GPU). */
DLK_API int dlk_cuda_device_count(void);

/** Whether a backend is compiled into this library (1) or not (0). */
DLK_API int dlk_backend_available(dlk_device device);

/* ------------------------------------------------------------------------------------------------ memory */

/** Allocates `bytes` (256-byte aligned) where the context's tensors live; *ptr is NULL for bytes == 0. */
DLK_API dlk_status dlk_alloc(dlk_context* context, size_t bytes, void** ptr);

/** Frees memory from dlk_alloc on the same context; NULL is accepted. */
DLK_API dlk_status dlk_free(dlk_context* context, void* ptr);

/** Copies `bytes` between host and device memory in any direction, ordered on the context's stream, and waits. */
DLK_API dlk_status dlk_copy(dlk_context* context, void* dst, DLDevice dst_device, const void* src,
                            DLDevice src_device, size_t bytes);

/* ------------------------------------------------------------------------------------------------- masks */

/** How a softmax (or attention) row is masked before normalisation. */
typedef enum dlk_mask_kind {
  DLK_MASK_NONE = 0,                 /**< no mask */
  DLK_MASK_CAUSAL = 1,               /**< over the last two dims [.., R, C]: column j masked when j > i (top-left) */
  DLK_MASK_CAUSAL_BOTTOM_RIGHT = 2,  /**< column j masked when j > i + (C - R), as in PyTorch's bottom-right */
  DLK_MASK_KEY_PADDING = 3,          /**< `lengths[b]` valid columns for every row of batch entry b (dim 0) */
  DLK_MASK_TENSOR = 4                /**< `mask`, broadcast to the input: 8-bit int = keep when nonzero, float = added */
} dlk_mask_kind;

/* ----------------------------------------------------------------------------------------------- softmax */

/**
 * Parameters of the fused masked softmax over the last dimension: y = softmax(scale * x (+ additive mask)).
 * Masked entries are excluded; a row whose entries are all masked produces all zeros (not NaN), and its
 * gradient is zero too.
 */
typedef struct dlk_softmax_params {
  size_t struct_size;      /**< sizeof(dlk_softmax_params) */
  float scale;             /**< multiplies x before the mask and the softmax; 1.0 by default; must be finite */
  dlk_mask_kind mask_kind; /**< DLK_MASK_NONE by default */
  const DLTensor* mask;    /**< DLK_MASK_TENSOR: int8/uint8 (nonzero keeps) or float (added), broadcastable */
  const DLTensor* lengths; /**< DLK_MASK_KEY_PADDING: int32 or int64 [x.shape[0]], clamped to [0, C] */
} dlk_softmax_params;

/** Fills `params` with the defaults (scale 1, no mask). */
DLK_API dlk_status dlk_softmax_params_init(dlk_softmax_params* params);

/**
 * Softmax over the last dimension of `x` (any rank >= 1, float32/float16/bfloat16, contiguous) into `y` (same
 * shape and dtype, contiguous; may alias x). Math is fp32 inside. `params` may be NULL for the defaults.
 */
DLK_API dlk_status dlk_softmax_forward(dlk_context* context, const dlk_softmax_params* params, const DLTensor* x,
                                       DLTensor* y);

/**
 * Backward of dlk_softmax_forward from its saved output: dx = scale * y * (dy - sum(dy * y)) along the last
 * dimension. Only `params->scale` is read (masked entries have y == 0). dx may alias dy.
 */
DLK_API dlk_status dlk_softmax_backward(dlk_context* context, const dlk_softmax_params* params, const DLTensor* y,
                                        const DLTensor* dy, DLTensor* dx);

/* -------------------------------------------------------------------------------------------- layer norm */

/** Parameters of layer normalisation over the trailing `normalized_ndim` dimensions. */
typedef struct dlk_layernorm_params {
  size_t struct_size;  /**< sizeof(dlk_layernorm_params) */
  float eps;           /**< added to the variance; 1e-5 by default; must be finite and >= 0 */
  int normalized_ndim; /**< how many trailing dims are normalised together (PyTorch's normalized_shape); 1 */
  int accumulate;      /**< backward only: nonzero adds into dgamma/dbeta instead of overwriting them */
} dlk_layernorm_params;

/** Fills `params` with the defaults (eps 1e-5, one normalised dim, overwrite gradients). */
DLK_API dlk_status dlk_layernorm_params_init(dlk_layernorm_params* params);

/**
 * y = (x - mean) * rstd * gamma + beta over the trailing dims, rstd = 1 / sqrt(var + eps) with the biased variance.
 * x, y: same shape, float32/float16/bfloat16, contiguous. gamma, beta: the normalised shape, dtype of x or float32,
 * each may be NULL (no scale / no shift). mean, rstd: float32 with the leading shape (rows), may be NULL when the
 * caller does not need them for a backward.
 */
DLK_API dlk_status dlk_layernorm_forward(dlk_context* context, const dlk_layernorm_params* params, const DLTensor* x,
                                         const DLTensor* gamma, const DLTensor* beta, DLTensor* y, DLTensor* mean,
                                         DLTensor* rstd);

/**
 * Backward of dlk_layernorm_forward from the saved mean and rstd. dx has the shape and dtype of x. dgamma and dbeta
 * have the shape and dtype of gamma; dx, dgamma and dbeta may each be NULL when not wanted; `gamma` NULL means an unscaled forward. The
 * dgamma/dbeta reduction over rows uses no atomics, so it is deterministic in every mode.
 */
DLK_API dlk_status dlk_layernorm_backward(dlk_context* context, const dlk_layernorm_params* params,
                                          const DLTensor* dy, const DLTensor* x, const DLTensor* mean,
                                          const DLTensor* rstd, const DLTensor* gamma, DLTensor* dx, DLTensor* dgamma,
                                          DLTensor* dbeta);

/* DEVELOPMENT ONLY: op families under construction declare their API in include/dlk/parts/<family>.h; each is
 * folded into this file when it lands, so users keep including one header. */
#include "dlk/parts/all.h"

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* DLK_DLK_H */
