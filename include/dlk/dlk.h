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

/* ----------------------------------------------------------------------------------------------- activations */

/** Which activation dlk_activation_forward / dlk_activation_backward compute (PyTorch's formulas). */
typedef enum dlk_activation_kind {
  DLK_ACTIVATION_RELU = 0,       /**< max(x, 0) (NaN stays NaN); gradient 0 at x == 0 */
  DLK_ACTIVATION_LEAKY_RELU = 1, /**< x > 0 ? x : negative_slope * x; gradient negative_slope at x == 0 */
  DLK_ACTIVATION_ELU = 2,        /**< x > 0 ? x : alpha * (exp(x) - 1); gradient alpha * exp(x) at x <= 0 */
  DLK_ACTIVATION_GELU = 3,       /**< x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) (approximate='none') */
  DLK_ACTIVATION_GELU_TANH = 4,  /**< 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (approximate='tanh') */
  DLK_ACTIVATION_TANH = 5,       /**< tanh(x) */
  DLK_ACTIVATION_SIGMOID = 6,    /**< 1 / (1 + exp(-x)) */
  DLK_ACTIVATION_SILU = 7        /**< x * sigmoid(x) */
} dlk_activation_kind;

/** Parameters of an activation. */
typedef struct dlk_activation_params {
  size_t struct_size;       /**< sizeof(dlk_activation_params) */
  dlk_activation_kind kind; /**< DLK_ACTIVATION_RELU by default */
  float negative_slope;     /**< LeakyReLU only: slope for x <= 0; 0.01 by default; must be finite */
  float alpha;              /**< ELU only: the saturation value for x -> -inf is -alpha; 1.0 by default; finite */
} dlk_activation_params;

/** Fills `params` with the defaults (ReLU, negative_slope 0.01, alpha 1). */
DLK_API dlk_status dlk_activation_params_init(dlk_activation_params* params);

/**
 * y = act(x) elementwise. x, y: same shape (any rank, empty allowed) and dtype (float32/float16/bfloat16),
 * contiguous; y may alias x (in place). Math is fp32 inside. `params` may be NULL for ReLU.
 */
DLK_API dlk_status dlk_activation_forward(dlk_context* context, const dlk_activation_params* params, const DLTensor* x,
                                          DLTensor* y);

/**
 * dx = dy * act'(x) elementwise, from the saved input x and/or output y (NULL when not saved), as PyTorch computes it:
 *  - RELU: from y when given (PyTorch's threshold_backward(dy, result, 0)), else from x: dy where > 0, else 0.
 *  - LEAKY_RELU, GELU, GELU_TANH, SILU: from x (required).
 *  - ELU: from x when given (dy * alpha * exp(x) where x <= 0); else from y (dy * (y + alpha) where y <= 0,
 *    PyTorch's is_result form, which needs alpha >= 0).
 *  - TANH: from y when given (dy * (1 - y^2)), else from x. SIGMOID: from y when given (dy * y * (1 - y)), else x.
 * Every tensor has the same shape and dtype, contiguous; dx may alias dy (or the x/y it is computed from).
 */
DLK_API dlk_status dlk_activation_backward(dlk_context* context, const dlk_activation_params* params, const DLTensor* x,
                                           const DLTensor* y, const DLTensor* dy, DLTensor* dx);

/* ------------------------------------------------------------------------------- broadcast elementwise arithmetic */

/*
 * Broadcasting is NumPy's / PyTorch's: shapes are aligned from the right, a missing leading dim or a dim of size 1
 * stretches to the other operand's size, anything else is an error naming both shapes. Ranks up to 8; shape [] (a
 * scalar) and [1] broadcast to anything. All tensors of one call share one dtype (float32/float16/bfloat16) and are
 * contiguous; the output has exactly the broadcast shape. Math is fp32 inside.
 */

/** out = a + alpha * b, with a and b broadcast to out's shape. out may alias a or b when it has that operand's shape.
 */
DLK_API dlk_status dlk_add_forward(dlk_context* context, const DLTensor* a, const DLTensor* b, float alpha,
                                   DLTensor* out);

/**
 * Backward of dlk_add_forward: da = sum_to_shape(dout, a.shape), db = alpha * sum_to_shape(dout, b.shape), where
 * sum_to_shape sums over the broadcast dims. da and db have the shapes of the forward's a and b; either may be NULL.
 * Deterministic (no atomics).
 */
DLK_API dlk_status dlk_add_backward(dlk_context* context, const DLTensor* dout, float alpha, DLTensor* da,
                                    DLTensor* db);

/** out = a * b, with a and b broadcast to out's shape. out may alias a or b when it has that operand's shape. */
DLK_API dlk_status dlk_mul_forward(dlk_context* context, const DLTensor* a, const DLTensor* b, DLTensor* out);

/**
 * Backward of dlk_mul_forward: da = sum_to_shape(dout * b, a.shape), db = sum_to_shape(dout * a, b.shape). da (the
 * shape of a) and db (the shape of b) may each be NULL; a is read only for db and b only for da. Deterministic.
 * da / db must not overlap dout, a or b.
 */
DLK_API dlk_status dlk_mul_backward(dlk_context* context, const DLTensor* a, const DLTensor* b, const DLTensor* dout,
                                    DLTensor* da, DLTensor* db);

/**
 * out = scale * (x summed over the dims where out's shape broadcasts to x's): the reduction of a gradient to the
 * shape of a broadcast operand (PyTorch's sum_to_size). out's shape must broadcast to x's; out must not overlap x.
 * fp32 accumulation in a fixed order on every backend (fp64 on cpu): deterministic, no atomics.
 */
DLK_API dlk_status dlk_sum_to_shape(dlk_context* context, const DLTensor* x, float scale, DLTensor* out);

/** y = alpha * x. Same shape and dtype; y may alias x (in place). */
DLK_API dlk_status dlk_scale(dlk_context* context, const DLTensor* x, float alpha, DLTensor* y);

/** y += alpha * x in place (the residual connection), x broadcast to y's shape. x must not overlap y. */
DLK_API dlk_status dlk_residual_add(dlk_context* context, const DLTensor* x, float alpha, DLTensor* y);

/* --------------------------------------------------------------------------------------------- concat / split */

/**
 * torch.cat(inputs, dim): out is the `num_inputs` tensors (>= 1, one dtype, any dtype the library knows) joined
 * along `dim` (negative counts from the end). Every input has out's rank and out's shape except along dim; out's
 * size along dim is the sum of theirs (inputs of size 0 there are allowed). All contiguous; out must not overlap
 * an input. The backward of concat is dlk_split with the inputs' shapes, and the other way round.
 */
DLK_API dlk_status dlk_concat(dlk_context* context, const DLTensor* const* inputs, int num_inputs, int dim,
                              DLTensor* out);

/**
 * torch.split(x, sections, dim) with explicit sizes, copying: x is cut along `dim` into the `num_outputs` tensors
 * (>= 1), whose sizes along dim (their shapes) must add up to x's; their other dims equal x's. One dtype, all
 * contiguous; outputs must not overlap x or each other.
 */
DLK_API dlk_status dlk_split(dlk_context* context, const DLTensor* x, int dim, DLTensor* const* outputs,
                             int num_outputs);

/* gemm: matrix multiplication and linear layers.
 *
 * Conventions of this section:
 *  - Matrices are the last two dims of a tensor; the dims before them are batch dims, broadcast numpy-style (aligned
 *    from the right, a size-1 or missing dim repeats), as torch.matmul does.
 *  - Inputs may be strided: within each matrix one of the last two strides must be 1 (row-major with any row
 *    stride >= cols, or column-major, e.g. a transposed view expressed by strides instead of a flag); batch strides
 *    are free (>= 0). Outputs need a unit column stride and must not overlap themselves or an input.
 *  - float32, float16 and bfloat16, all operands of one dtype; products accumulate in fp32. On cuda the products
 *    run in cuBLAS (TF32 tensor cores for float32 only when allow_tf32 is set), on cpu in OpenBLAS's sgemm
 *    (float16/bfloat16 converted to fp32 panels and rounded back), on emu in a tiled shared-memory kernel.
 */

/** Options of dlk_matmul. */
typedef struct dlk_matmul_params {
  size_t struct_size; /**< sizeof(dlk_matmul_params) */
  float alpha;        /**< scales op(A) @ op(B); 1 by default; finite */
  float beta;         /**< scales the C read before the call; 0 by default (C is then write-only, never read) */
  int transpose_a;    /**< nonzero: op(A) = A^T over A's last two dims; 0 by default */
  int transpose_b;    /**< nonzero: op(B) = B^T over B's last two dims; 0 by default */
  int allow_tf32;     /**< nonzero: float32 products may use TF32 tensor cores on cuda (~1e-3 relative); 0 */
} dlk_matmul_params;

/** Fills `params` with the defaults (alpha 1, beta 0, no transposes, no TF32). */
DLK_API dlk_status dlk_matmul_params_init(dlk_matmul_params* params);

/**
 * C = alpha * op(A) @ op(B) + beta * C, batched. op(A) is [..., M, K] and op(B) [..., K, N] (both rank >= 2); C is
 * [broadcast(batch A, batch B)..., M, N] exactly (e.g. A [B,H,M,K] with B [K,N] or [1,H,K,N] gives C [B,H,M,N]).
 * `params` may be NULL for the defaults. K == 0 gives C = beta * C.
 */
DLK_API dlk_status dlk_matmul(dlk_context* context, const dlk_matmul_params* params, const DLTensor* a,
                              const DLTensor* b, DLTensor* c);

/* ----------------------------------------------------------------------------------------------- linear */

/** The activation fused into a linear layer's epilogue, after the bias (as cuBLASLt's epilogues). */
typedef enum dlk_epilogue {
  DLK_EPILOGUE_NONE = 0,     /**< identity: y = z */
  DLK_EPILOGUE_RELU = 1,     /**< max(z, 0); the gradient at z == 0 is 0, as PyTorch's */
  DLK_EPILOGUE_GELU = 2,     /**< z * Phi(z) = 0.5 z (1 + erf(z / sqrt 2)), PyTorch's gelu(approximate='none') */
  DLK_EPILOGUE_GELU_TANH = 3 /**< 0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3))), gelu(approximate='tanh') */
} dlk_epilogue;

/** Options of dlk_linear_forward / dlk_linear_backward. */
typedef struct dlk_linear_params {
  size_t struct_size;        /**< sizeof(dlk_linear_params) */
  dlk_epilogue activation;   /**< applied to z = x @ W^T + b; DLK_EPILOGUE_NONE by default */
  int allow_tf32;            /**< nonzero: float32 products may use TF32 on cuda; 0 by default */
  int accumulate;            /**< backward only: nonzero adds into dW and db (gradient accumulation); 0 overwrites */
} dlk_linear_params;

/** Fills `params` with the defaults (no activation, no TF32, overwrite gradients). */
DLK_API dlk_status dlk_linear_params_init(dlk_linear_params* params);

/**
 * PyTorch's linear layer with a fused epilogue: z = x @ W^T + b, y = activation(z).
 * x [..., in], W [out, in], b [out] or NULL, y [..., out]: one dtype (float32/float16/bfloat16), contiguous.
 * `pre_activation` (z, shape and dtype of y, or NULL) receives z when the activation is not DLK_EPILOGUE_NONE: the backward
 * needs it, as cuBLASLt's *_AUX epilogues save it. With activation NONE it is ignored (the backward needs no z).
 * z is rounded to the dtype before the activation is applied, so y == activation(stored z) exactly.
 */
DLK_API dlk_status dlk_linear_forward(dlk_context* context, const dlk_linear_params* params, const DLTensor* x,
                                      const DLTensor* weight, const DLTensor* bias, DLTensor* y,
                                      DLTensor* pre_activation);

/**
 * Backward of dlk_linear_forward. With g = dy * activation'(z) (g = dy for NONE; `pre_activation` z is required
 * otherwise and ignored for NONE): dx = g @ W [..., in], dW = g^T @ x [out, in] summed over every leading dim of x,
 * db = sum of g over the leading dims [out]. dy, z: [..., out] like y; dx like x; dW like W; db [out]; one dtype,
 * contiguous. dx, dW and db may each be NULL when not wanted. With params->accumulate, dW += and db += (dx is always
 * overwritten). db is reduced in a fixed order in fp32 (fp64 on cpu): deterministic on every backend.
 */
DLK_API dlk_status dlk_linear_backward(dlk_context* context, const dlk_linear_params* params, const DLTensor* dy,
                                       const DLTensor* x, const DLTensor* weight, const DLTensor* pre_activation,
                                       DLTensor* dx, DLTensor* dweight, DLTensor* dbias);

/* loss: losses (fused softmax cross-entropy, BCE-with-logits, MSE, NLL) and metrics (accuracy, confusion matrix,
 * precision/recall/F1).
 *
 * Conventions of this section (PyTorch's semantics unless stated):
 *  - Losses are computed in fp32 and written as float32, whatever the input dtype. `loss` has the target's shape
 *    ([N] for the class-dimension losses, the input's shape for the elementwise ones) with DLK_REDUCTION_NONE, and
 *    one element (shape [] or [1]) with MEAN or SUM.
 *  - `dloss` is the upstream gradient: float32 with the shape of `loss`. Where an entry point takes it optionally,
 *    NULL means 1 (the usual "this loss is the objective").
 *  - mean and sum are reduced deterministically (fixed order, no float atomics) on every backend.
 *  - Class indices (int32 or int64) must lie in [0, C) or equal ignore_index. The cpu and emu backends reject
 *    anything else with DLK_ERROR_INVALID_ARGUMENT before writing. The cuda backend does not read the targets on the
 *    host: a row with an out-of-range target gets a NaN loss (and NaN gradients), so the bad value is visible but
 *    never causes an out-of-bounds access.
 */

/** How a loss over many elements is reduced. */
typedef enum dlk_reduction {
  DLK_REDUCTION_NONE = 0, /**< one loss per element (row) */
  DLK_REDUCTION_MEAN = 1, /**< the mean (over non-ignored targets, or by total weight where weights apply) */
  DLK_REDUCTION_SUM = 2   /**< the sum */
} dlk_reduction;

/* ------------------------------------------------------------------------------------------ cross-entropy */

/** Parameters of the softmax cross-entropy and of NLL. */
typedef struct dlk_cross_entropy_params {
  size_t struct_size;      /**< sizeof(dlk_cross_entropy_params) */
  dlk_reduction reduction; /**< DLK_REDUCTION_MEAN by default */
  int64_t ignore_index;    /**< class-index targets equal to it give 0 loss, 0 gradient, and do not count; -100 */
  float label_smoothing;   /**< PyTorch's: target = (1 - s) * target + s / C; in [0, 1]; 0 by default (CE only) */
} dlk_cross_entropy_params;

/** Fills `params` with the defaults (mean, ignore_index -100, no label smoothing). */
DLK_API dlk_status dlk_cross_entropy_params_init(dlk_cross_entropy_params* params);

/**
 * Fused softmax cross-entropy over `logits` [N, C] (float32/float16/bfloat16, contiguous), forward and backward in
 * one pass over each row. `target` is either class indices (int32/int64 [N]) or class probabilities (same dtype and
 * shape as logits; ignore_index does not apply). `loss`: float32, [N] for reduction none, else one element; may be
 * NULL when only the gradient is wanted. `dlogits`: NULL, or the shape and dtype of logits; it receives
 * (softmax(logits) - smoothed target) * dloss_row, the gradient of `loss` scaled by the upstream `dloss` (NULL: 1),
 * e.g. dloss / (number of non-ignored rows) for mean. dlogits may be logits itself (in place, as llm.c does), not a
 * partial overlap. At least one of loss and dlogits must be given. With mean and
 * every row ignored, the loss is NaN (0/0, as PyTorch) and the gradient 0.
 */
DLK_API dlk_status dlk_cross_entropy_forward(dlk_context* context, const dlk_cross_entropy_params* params,
                                             const DLTensor* logits, const DLTensor* target, DLTensor* loss,
                                             DLTensor* dlogits, const DLTensor* dloss);

/** Backward of dlk_cross_entropy_forward for callers that do not fuse: dlogits from logits, target and dloss (the
 * shape of the loss; required). Same gradient as the fused forward, bit for bit. */
DLK_API dlk_status dlk_cross_entropy_backward(dlk_context* context, const dlk_cross_entropy_params* params,
                                              const DLTensor* logits, const DLTensor* target, const DLTensor* dloss,
                                              DLTensor* dlogits);

/**
 * Negative log-likelihood over log-probabilities `input` [N, C] (float32/float16/bfloat16, contiguous) with class
 * indices `target` (int32/int64 [N]): loss_n = -weight[t_n] * input[n, t_n], 0 for ignored rows. `weight`: NULL or
 * [C] of input's dtype. Mean divides by the sum of weight[t_n] over non-ignored rows (their count without weight).
 * params->label_smoothing must be 0.
 */
DLK_API dlk_status dlk_nll_loss_forward(dlk_context* context, const dlk_cross_entropy_params* params,
                                        const DLTensor* input, const DLTensor* target, const DLTensor* weight,
                                        DLTensor* loss);

/** Backward of dlk_nll_loss_forward: dinput (shape and dtype of input) is -weight[t] * dloss_n / (mean's divisor)
 * at [n, t_n] and 0 elsewhere. `dloss` is required. */
DLK_API dlk_status dlk_nll_loss_backward(dlk_context* context, const dlk_cross_entropy_params* params,
                                         const DLTensor* input, const DLTensor* target, const DLTensor* weight,
                                         const DLTensor* dloss, DLTensor* dinput);

/* ------------------------------------------------------------------------------------ elementwise losses */

/** Parameters of BCE-with-logits and MSE. */
typedef struct dlk_elementwise_loss_params {
  size_t struct_size;      /**< sizeof(dlk_elementwise_loss_params) */
  dlk_reduction reduction; /**< DLK_REDUCTION_MEAN by default; mean divides by the number of elements */
} dlk_elementwise_loss_params;

/** Fills `params` with the defaults (mean). */
DLK_API dlk_status dlk_elementwise_loss_params_init(dlk_elementwise_loss_params* params);

/**
 * Binary cross-entropy on logits, numerically stable (PyTorch's formula):
 * loss = w * ((1 - y) * x + (1 + (pos_weight - 1) * y) * (log1p(exp(-|x|)) + max(-x, 0))).
 * input, target: same shape (any rank), float32/float16/bfloat16, same dtype, contiguous. weight: NULL or a tensor
 * of input's dtype whose shape is a trailing part of input's shape (leading 1s allowed), repeated over the leading
 * dims. pos_weight: NULL, one element, or [input.shape[-1]], input's dtype.
 */
DLK_API dlk_status dlk_bce_with_logits_forward(dlk_context* context, const dlk_elementwise_loss_params* params,
                                               const DLTensor* input, const DLTensor* target, const DLTensor* weight,
                                               const DLTensor* pos_weight, DLTensor* loss);

/** Backward of dlk_bce_with_logits_forward: dinput = w * ((1 - y) - lw * sigmoid(-x)) * dloss (/ numel for mean),
 * lw = 1 + (pos_weight - 1) * y. dinput: shape and dtype of input. */
DLK_API dlk_status dlk_bce_with_logits_backward(dlk_context* context, const dlk_elementwise_loss_params* params,
                                                const DLTensor* input, const DLTensor* target, const DLTensor* weight,
                                                const DLTensor* pos_weight, const DLTensor* dloss, DLTensor* dinput);

/** Mean squared error: loss = (input - target)^2; input and target as for BCE-with-logits (no weights). */
DLK_API dlk_status dlk_mse_loss_forward(dlk_context* context, const dlk_elementwise_loss_params* params,
                                        const DLTensor* input, const DLTensor* target, DLTensor* loss);

/** Backward of dlk_mse_loss_forward: dinput = 2 * (input - target) * dloss (/ numel for mean); the target's
 * gradient is -dinput. */
DLK_API dlk_status dlk_mse_loss_backward(dlk_context* context, const dlk_elementwise_loss_params* params,
                                         const DLTensor* input, const DLTensor* target, const DLTensor* dloss,
                                         DLTensor* dinput);

/* ---------------------------------------------------------------------------------------------- metrics */

/** Fraction of entries where y_pred == y_true: y_true, y_pred int32/int64 [N] (dtypes may differ); `accuracy` is
 * float32 with one element. N == 0 gives 0. */
DLK_API dlk_status dlk_accuracy(dlk_context* context, const DLTensor* y_true, const DLTensor* y_pred,
                                DLTensor* accuracy);

/** Confusion matrix `matrix` (int64 [K, K], K = num_classes >= 1): matrix[i, j] counts entries with true class i
 * and predicted class j. Labels must lie in [0, K) (checked on cpu/emu; skipped on cuda). Integer atomics on cuda,
 * so the result is exact and deterministic. */
DLK_API dlk_status dlk_confusion_matrix(dlk_context* context, const DLTensor* y_true, const DLTensor* y_pred,
                                        int64_t num_classes, DLTensor* matrix);

/** How per-class precision/recall/F1 are averaged (scikit-learn's `average`). */
typedef enum dlk_metric_average {
  DLK_AVERAGE_NONE = 0,    /**< per class: outputs are [K] */
  DLK_AVERAGE_MICRO = 1,   /**< from the global tp/fp/fn counts */
  DLK_AVERAGE_MACRO = 2,   /**< unweighted mean over the classes present in y_true or y_pred */
  DLK_AVERAGE_WEIGHTED = 3 /**< mean weighted by support (true count) */
} dlk_metric_average;

/**
 * Precision, recall and F1 from a confusion matrix (int64 [K, K], rows = true class), scikit-learn's definitions with
 * zero_division=0 and its default labels (the classes present in y_true or y_pred: a class whose row and column are
 * all zero is left out of the averages and reports 0). precision, recall, f1: float32, [K] for DLK_AVERAGE_NONE,
 * else one element; each may be NULL.
 */
DLK_API dlk_status dlk_precision_recall_f1(dlk_context* context, const DLTensor* matrix, dlk_metric_average average,
                                           DLTensor* precision, DLTensor* recall, DLTensor* f1);

/* random: dropout, embedding and initialisation. */

/* ------------------------------------------------------------------------------------------- random streams */

/*
 * Every random op draws from Philox4x32-10 (as in cuRAND): key = the 64-bit seed, counter = (offset, subsequence 0).
 * Element i of a call (row-major) uses stream position `offset + i`, so its value depends only on (seed, offset, i)
 * and is identical on the cpu, emu and cuda backends. Offset policy: a caller that wants fresh randomness each call
 * advances `offset` by the element count of the call (like PyTorch's Philox offset), or changes the seed; reusing
 * (seed, offset) reproduces the same draw (dropout's backward relies on that).
 */

/* ------------------------------------------------------------------------------------------------- dropout */

/** Parameters of dropout. */
typedef struct dlk_dropout_params {
  size_t struct_size;   /**< sizeof(dlk_dropout_params) */
  float p;              /**< probability of zeroing an element, in [0, 1]; 0.5 by default */
  int training;         /**< nonzero (default): drop and scale; 0: eval mode, y = x and dx = dy */
  uint64_t seed;        /**< Philox seed; 0 by default */
  uint64_t offset;      /**< stream position of element 0; 0 by default (advance by numel per call) */
  int use_context_seed; /**< nonzero: use the context's seed (dlk_context_options.seed) instead of `seed` */
} dlk_dropout_params;

/** Fills `params` with the defaults (p 0.5, training, seed 0, offset 0, params seed). */
DLK_API dlk_status dlk_dropout_params_init(dlk_dropout_params* params);

/**
 * y = x * keep / (1 - p), keep = (u < 1 - p) with u = the top 24 bits of the stream value at offset + i, times 2^-24
 * (so the keep probability is 1 - p rounded up to a multiple of 2^-24). Dropped elements are exactly 0, even where
 * x is inf or NaN. p = 0 copies x; p = 1 gives zeros (never NaN); eval mode copies x. x, y: same shape and dtype
 * (float32/float16/bfloat16), contiguous; y may alias x. `mask`: NULL, or a uint8 tensor of x's shape that receives
 * keep (1) / drop (0) (all ones in eval mode). `params` NULL: defaults.
 */
DLK_API dlk_status dlk_dropout_forward(dlk_context* context, const dlk_dropout_params* params, const DLTensor* x,
                                       DLTensor* y, DLTensor* mask);

/**
 * dx = dy * keep / (1 - p). keep comes from `mask` (uint8 of dy's shape, nonzero keeps, as saved by the forward) when
 * it is given, else it is regenerated from params' (seed, offset), which must be the forward's. Eval mode: dx = dy.
 * dy, dx: same shape and dtype (float32/float16/bfloat16), contiguous; dx may alias dy.
 */
DLK_API dlk_status dlk_dropout_backward(dlk_context* context, const dlk_dropout_params* params, const DLTensor* dy,
                                        const DLTensor* mask, DLTensor* dx);

/* ----------------------------------------------------------------------------------------------- embedding */

/** padding_idx value meaning "no padding row" (the default). */
#define DLK_EMBEDDING_NO_PADDING INT64_MIN

/** Parameters of embedding lookups and their gradients. */
typedef struct dlk_embedding_params {
  size_t struct_size;  /**< sizeof(dlk_embedding_params) */
  int64_t padding_idx; /**< row that receives no gradient (PyTorch's padding_idx; negative counts from V, in [-V, V));
                            DLK_EMBEDDING_NO_PADDING by default */
  int accumulate;      /**< backward: nonzero adds into dweight instead of overwriting it; 0 by default */
} dlk_embedding_params;

/** Fills `params` with the defaults (no padding row, overwrite). */
DLK_API dlk_status dlk_embedding_params_init(dlk_embedding_params* params);

/**
 * out[..., :] = weight[indices[...], :]. indices: int32/int64, any shape (rank <= 7); weight: [V, D]
 * float32/float16/bfloat16; out: indices.shape + [D], weight's dtype, contiguous. An index outside [0, V) is an
 * error (DLK_ERROR_INVALID_ARGUMENT) on cpu and emu, checked before anything is written; on cuda (where checking
 * would cost a device sync) its output row is zeros. The padding row is gathered like any other (as in PyTorch).
 */
DLK_API dlk_status dlk_embedding_forward(dlk_context* context, const dlk_embedding_params* params,
                                         const DLTensor* indices, const DLTensor* weight, DLTensor* out);

/**
 * dweight[r, :] (=, or += with params->accumulate) sum over i with indices[i] == r of dout[i, :], r != padding_idx
 * (the padding row is zeroed, or left as is when accumulating). dout: indices.shape + [D]; dweight: [V, D], dout's
 * dtype (float32/float16/bfloat16), contiguous. In deterministic mode (and always for float16/bfloat16) the sums run
 * in ascending i with no atomics (indices sorted once per call), so results are bitwise reproducible; otherwise fp32
 * gradients may use float atomics. Index range as in the forward (on cuda an out-of-range index contributes nothing).
 */
DLK_API dlk_status dlk_embedding_backward(dlk_context* context, const dlk_embedding_params* params,
                                          const DLTensor* indices, const DLTensor* dout, DLTensor* dweight);

/**
 * The sparse SGD step of skip-gram / word2vec: weight[indices[i], :] -= lr * grad_rows[i, :], duplicate indices
 * summed first (exactly dlk_embedding_backward into weight with accumulate and a factor -lr), deterministic as the
 * backward is. grad_rows: indices.shape + [D], weight's dtype; weight: [V, D]; lr finite. padding_idx rows are left
 * untouched; params->accumulate is ignored.
 */
DLK_API dlk_status dlk_embedding_sparse_update(dlk_context* context, const dlk_embedding_params* params,
                                               const DLTensor* indices, const DLTensor* grad_rows, float lr,
                                               DLTensor* weight);

/* -------------------------------------------------------------------------------------------- initialisation */

/** Which distribution dlk_init draws (PyTorch's torch.nn.init functions). */
typedef enum dlk_init_kind {
  DLK_INIT_UNIFORM = 0,         /**< U[a, b) */
  DLK_INIT_NORMAL = 1,          /**< N(mean, std^2) */
  DLK_INIT_TRUNC_NORMAL = 2,    /**< N(mean, std^2) truncated to [a, b] (inverse-CDF method, as torch's) */
  DLK_INIT_KAIMING_UNIFORM = 3, /**< U(-bound, bound), bound = gain * sqrt(3 / fan) */
  DLK_INIT_KAIMING_NORMAL = 4,  /**< N(0, std^2), std = gain / sqrt(fan) */
  DLK_INIT_XAVIER_UNIFORM = 5,  /**< U(-bound, bound), bound = gain * sqrt(6 / (fan_in + fan_out)) */
  DLK_INIT_XAVIER_NORMAL = 6,   /**< N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)) */
  DLK_INIT_LINEAR_WEIGHT = 7,   /**< nn.Linear's weight: kaiming_uniform(a = sqrt 5) = U(+-1/sqrt(fan_in)) */
  DLK_INIT_LINEAR_BIAS = 8,     /**< nn.Linear's bias: U(+-1/sqrt(fan_in)), params->fan_in given */
  DLK_INIT_CONSTANT = 9         /**< every element = a */
} dlk_init_kind;

/** Nonlinearities of torch.nn.init.calculate_gain. */
typedef enum dlk_nonlinearity {
  DLK_NONLINEARITY_LINEAR = 0,     /**< gain 1 (also conv*, conv_transpose*) */
  DLK_NONLINEARITY_SIGMOID = 1,    /**< gain 1 */
  DLK_NONLINEARITY_TANH = 2,       /**< gain 5/3 */
  DLK_NONLINEARITY_RELU = 3,       /**< gain sqrt(2) */
  DLK_NONLINEARITY_LEAKY_RELU = 4, /**< gain sqrt(2 / (1 + negative_slope^2)) */
  DLK_NONLINEARITY_SELU = 5        /**< gain 3/4 */
} dlk_nonlinearity;

/** Whether Kaiming initialisation scales by fan_in (preserves forward variance) or fan_out (backward). */
typedef enum dlk_fan_mode { DLK_FAN_IN = 0, DLK_FAN_OUT = 1 } dlk_fan_mode;

/** Parameters of dlk_init. Fields a kind does not use are ignored. */
typedef struct dlk_init_params {
  size_t struct_size;            /**< sizeof(dlk_init_params) */
  dlk_init_kind kind;            /**< DLK_INIT_UNIFORM by default */
  double a;                      /**< UNIFORM: low (0); TRUNC_NORMAL: lower cut (-2); CONSTANT: the value */
  double b;                      /**< UNIFORM: high (1), b >= a; TRUNC_NORMAL: upper cut (2), b > a */
  double mean;                   /**< NORMAL, TRUNC_NORMAL: mean (0) */
  double std;                    /**< NORMAL, TRUNC_NORMAL: standard deviation (1), >= 0 (> 0 for TRUNC_NORMAL) */
  dlk_fan_mode mode;             /**< KAIMING_*: DLK_FAN_IN by default */
  dlk_nonlinearity nonlinearity; /**< KAIMING_*: DLK_NONLINEARITY_LEAKY_RELU by default (torch's default) */
  double negative_slope;         /**< KAIMING_* with LEAKY_RELU: torch's `a` (0 by default) */
  double gain;                   /**< XAVIER_*: gain (1) */
  int64_t fan_in;                /**< > 0: overrides the fan_in computed from the shape; LINEAR_BIAS needs it (0) */
  int64_t fan_out;               /**< > 0: overrides the fan_out computed from the shape (0) */
  uint64_t seed;                 /**< Philox seed (0) */
  uint64_t offset;               /**< stream position of element 0 (0): advance by numel per call */
  int use_context_seed;          /**< nonzero: use the context's seed instead of `seed` */
} dlk_init_params;

/** Fills `params` with the defaults listed field by field above. */
DLK_API dlk_status dlk_init_params_init(dlk_init_params* params);

/**
 * Fills `tensor` (float32/float16/bfloat16, contiguous, any shape; fan-based kinds need rank >= 2 unless the fans
 * are given) in place, element i from stream position offset + i: uniforms from the top 24 bits, normals by
 * Box-Muller on pairs of positions. The values are computed in fp32 and rounded to the dtype.
 */
DLK_API dlk_status dlk_init(dlk_context* context, const dlk_init_params* params, DLTensor* tensor);

/**
 * torch.nn.init._calculate_fan_in_and_fan_out from a shape: fan_in = shape[1] * receptive, fan_out = shape[0] *
 * receptive, receptive = product of shape[2:]. Rank < 2 is DLK_ERROR_SHAPE. Either output may be NULL.
 */
DLK_API dlk_status dlk_init_fans(int ndim, const int64_t* shape, int64_t* fan_in, int64_t* fan_out);

/** torch.nn.init.calculate_gain(nonlinearity, param = negative_slope) into *gain. */
DLK_API dlk_status dlk_init_gain(dlk_nonlinearity nonlinearity, double negative_slope, double* gain);

/* norm_pool: batch norm, pooling, unpooling and upsampling.
 *
 * Layout: NCHW (or [N, C] / [N, C, L] for batch norm), contiguous. Semantics and output-size formulas are
 * PyTorch's (torch.nn.functional). Every reduction here is deterministic in every mode: no float atomics, sums are
 * taken in an order fixed by the shape (two-stage partial sums in the context workspace, or gathers). */

/* ------------------------------------------------------------------------------------------- batch norm */

/** Parameters of batch normalisation (PyTorch's F.batch_norm). */
typedef struct dlk_batchnorm_params {
  size_t struct_size; /**< sizeof(dlk_batchnorm_params) */
  int training;       /**< nonzero: batch statistics (and running-stat update); 0 (default): running statistics */
  float momentum;     /**< running = (1 - momentum) * running + momentum * batch stat; 0.1 by default; finite */
  float eps;          /**< added to the variance; 1e-5 by default; finite and >= 0 */
} dlk_batchnorm_params;

/** Fills `params` with the defaults (eval mode, momentum 0.1, eps 1e-5). */
DLK_API dlk_status dlk_batchnorm_params_init(dlk_batchnorm_params* params);

/**
 * Batch norm over channel dim 1 of x ([N, C], [N, C, L], [N, C, H, W] or [N, C, D, H, W]; float32/float16/bfloat16;
 * contiguous) into y (same shape and dtype; may alias x). Statistics per channel over N and the spatial dims:
 * y = (x - mean) * invstd * gamma + beta, invstd = 1 / sqrt(var + eps).
 * Training: mean/var are the batch's (biased var); running_mean/running_var (float32 [C], both or neither) are
 * updated in place with momentum using the UNBIASED variance var * n / (n - 1); needs n = N * spatial > 1.
 * Eval: mean/var are running_mean/running_var (required). gamma, beta: float32 [C], each may be NULL.
 * save_mean, save_invstd: float32 [C], may be NULL; written in training mode only (the backward's inputs).
 */
DLK_API dlk_status dlk_batchnorm_forward(dlk_context* context, const dlk_batchnorm_params* params, const DLTensor* x,
                                         const DLTensor* gamma, const DLTensor* beta, DLTensor* running_mean,
                                         DLTensor* running_var, DLTensor* y, DLTensor* save_mean,
                                         DLTensor* save_invstd);

/**
 * Backward of dlk_batchnorm_forward (PyTorch's native_batch_norm_backward). Training (params->training): from
 * save_mean/save_invstd, dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)). Eval: from
 * running_mean/running_var and params->eps, dx = dy * gamma * invstd. dgamma = sum(dy * xhat), dbeta = sum(dy)
 * (float32 [C]). dx (shape/dtype of x), dgamma, dbeta may each be NULL; gamma NULL means gamma = 1. Tensors the
 * mode does not read may be NULL.
 */
DLK_API dlk_status dlk_batchnorm_backward(dlk_context* context, const dlk_batchnorm_params* params, const DLTensor* dy,
                                          const DLTensor* x, const DLTensor* gamma, const DLTensor* running_mean,
                                          const DLTensor* running_var, const DLTensor* save_mean,
                                          const DLTensor* save_invstd, DLTensor* dx, DLTensor* dgamma,
                                          DLTensor* dbeta);

/* ----------------------------------------------------------------------------------------------- pooling */

/** Window of max/avg pooling 2d over the last two dims of [N, C, H, W] or [C, H, W] tensors. */
typedef struct dlk_pool2d_params {
  size_t struct_size;    /**< sizeof(dlk_pool2d_params) */
  int kernel_h, kernel_w; /**< window size; > 0 (no default: 0 is rejected) */
  int stride_h, stride_w; /**< step; 0 (default) means the kernel size, as PyTorch's stride=None */
  int pad_h, pad_w;       /**< implicit padding on both sides; 0 by default; at most kernel/2 */
  int dilation_h, dilation_w; /**< max pool only; 1 by default; > 0 */
  int ceil_mode;          /**< nonzero: ceil instead of floor in the output-size formula */
  int count_include_pad;  /**< avg pool only: padded zeros count in the divisor; 1 by default */
  int divisor_override;   /**< avg pool only: > 0 replaces the divisor; 0 (default) none */
} dlk_pool2d_params;

/** Fills `params` with the defaults (kernel 0 must be set; stride = kernel, pad 0, dilation 1, floor mode,
 * count_include_pad 1, no divisor override). */
DLK_API dlk_status dlk_pool2d_params_init(dlk_pool2d_params* params);

/**
 * Max pool 2d: out = floor_or_ceil((in + 2 pad - dil (k - 1) - 1) / stride) + 1 (ceil: minus one when the last
 * window would start in the right padding). x float32/float16/bfloat16; y its dtype with the computed shape.
 * indices: int64 of y's shape or NULL, the argmax as h * W + w in the input plane (PyTorch's return_indices; the
 * first maximum wins, NaN propagates).
 */
DLK_API dlk_status dlk_max_pool2d_forward(dlk_context* context, const dlk_pool2d_params* params, const DLTensor* x,
                                          DLTensor* y, DLTensor* indices);

/** Backward of max pool from its indices: dx (the input's shape, dtype of dy) = sum of dy over the outputs whose
 * index names that input element (a gather: deterministic). params must be the forward's. */
DLK_API dlk_status dlk_max_pool2d_backward(dlk_context* context, const dlk_pool2d_params* params, const DLTensor* dy,
                                           const DLTensor* indices, DLTensor* dx);

/** Avg pool 2d (dilation must be 1): mean over the window, divisor per count_include_pad / divisor_override as
 * PyTorch; output size as max pool with dilation 1. */
DLK_API dlk_status dlk_avg_pool2d_forward(dlk_context* context, const dlk_pool2d_params* params, const DLTensor* x,
                                          DLTensor* y);

/** Backward of avg pool 2d into dx (the input's shape, dtype of dy); a gather, deterministic. */
DLK_API dlk_status dlk_avg_pool2d_backward(dlk_context* context, const dlk_pool2d_params* params, const DLTensor* dy,
                                           DLTensor* dx);

/** Adaptive avg pool 2d to y's spatial size (>= 1 each): output o averages input [floor(o*I/O), ceil((o+1)*I/O)). */
DLK_API dlk_status dlk_adaptive_avg_pool2d_forward(dlk_context* context, const DLTensor* x, DLTensor* y);

/** Backward of adaptive avg pool 2d into dx (the input's shape, dtype of dy); a gather, deterministic. */
DLK_API dlk_status dlk_adaptive_avg_pool2d_backward(dlk_context* context, const DLTensor* dy, DLTensor* dx);

/**
 * Max unpool 2d: y (zeros) gets y[n, c, indices[n,c,i]] = x[n, c, i] per plane; y's spatial size is the output size
 * (the caller applies PyTorch's default (in - 1) * stride - 2 pad + kernel). indices int64 of x's shape; an index
 * outside [0, H_out * W_out) is ignored. Duplicate indices: the last input in row-major order wins (as PyTorch's
 * CPU), deterministically on every backend.
 */
DLK_API dlk_status dlk_max_unpool2d_forward(dlk_context* context, const DLTensor* x, const DLTensor* indices,
                                            DLTensor* y);

/** Backward of max unpool: dx[i] = dy[indices[i]] in the same plane (0 for an out-of-range index). Note: with
 * duplicate indices every duplicate receives the gradient, as PyTorch's. */
DLK_API dlk_status dlk_max_unpool2d_backward(dlk_context* context, const DLTensor* dy, const DLTensor* indices,
                                             DLTensor* dx);

/** Interpolation kernel of dlk_upsample2d_*. */
typedef enum dlk_upsample_mode {
  DLK_UPSAMPLE_NEAREST = 0, /**< PyTorch 'nearest': src = min(floor(dst * scale), in - 1) */
  DLK_UPSAMPLE_BILINEAR = 1 /**< PyTorch 'bilinear', align_corners either way */
} dlk_upsample_mode;

/** Parameters of 2d upsampling; the output size is y's (dx's input size in the backward). */
typedef struct dlk_upsample2d_params {
  size_t struct_size;      /**< sizeof(dlk_upsample2d_params) */
  dlk_upsample_mode mode;  /**< DLK_UPSAMPLE_NEAREST by default */
  int align_corners;       /**< bilinear only: PyTorch's align_corners; 0 by default */
  double scale_h, scale_w; /**< the scale_factor a caller gave (as F.interpolate passes it); 0 (default): in/out */
} dlk_upsample2d_params;

/** Fills `params` with the defaults (nearest, align_corners 0, scales from the sizes). */
DLK_API dlk_status dlk_upsample2d_params_init(dlk_upsample2d_params* params);

/** Upsample (or resample) x [N, C, H, W] / [C, H, W] to y's spatial size with PyTorch's source-index rules. */
DLK_API dlk_status dlk_upsample2d_forward(dlk_context* context, const dlk_upsample2d_params* params, const DLTensor* x,
                                          DLTensor* y);

/** Backward of dlk_upsample2d_forward into dx (the input's shape, dtype of dy); a gather, deterministic. */
DLK_API dlk_status dlk_upsample2d_backward(dlk_context* context, const dlk_upsample2d_params* params,
                                           const DLTensor* dy, DLTensor* dx);

/* --------------------------------------------------------------------------------------------- optimizers
 *
 * Fused multi-tensor optimizers: one call updates a whole list of parameter tensors (arrays of DLTensor pointers:
 * params, grads and state buffers, entry i of every array belonging to parameter i). On cuda a call is one kernel
 * launch for the whole list, whatever the number of tensors (clip_grad_norm: a fixed three). Every tensor is
 * float32 and contiguous; entry i of grads and of each state array has the shape of params[i]. A state buffer may
 * not overlap its parameter or gradient. Hyperparameters are doubles, like the Python floats torch takes: derived
 * constants (1 - beta, 1 - dampening, bias corrections) are computed in fp64 and rounded once to the fp32 the
 * element math uses, exactly as torch does.
 *
 * Parameter groups (fine-tuning): `num_groups` > 0 gives each tensor a group through `tensor_group[i]`
 * (host int32 array, one entry per tensor), and each group its own learning rate `group_lr[g]` (host array) and,
 * optionally, weight decay `group_weight_decay[g]` (else params->weight_decay) and, for Adam, step
 * `group_step[g]` (else params->step). A tensor whose group is -1 is frozen: its parameter AND its state are left
 * untouched. A group with lr 0 is not frozen: like PyTorch, its state is still updated. With num_groups == 0 every
 * tensor uses lr / weight_decay / step of the params struct.
 */

/** Parameters of dlk_sgd_step (PyTorch's torch.optim.SGD). */
typedef struct dlk_sgd_params {
  size_t struct_size;               /**< sizeof(dlk_sgd_params) */
  double lr;                        /**< learning rate; 0.01 by default; finite and >= 0 */
  double momentum;                  /**< 0 by default; finite and >= 0; 0 reads no momentum buffers */
  double dampening;                 /**< 0 by default; finite */
  double weight_decay;              /**< L2 penalty added to the gradient; 0 by default; finite and >= 0 */
  int nesterov;                     /**< nonzero: Nesterov momentum (needs momentum > 0 and dampening == 0) */
  int first_step;                   /**< nonzero: the buffers are initialised to the gradient (torch's first step) */
  int num_groups;                   /**< number of parameter groups; 0 (no groups) by default */
  const int32_t* tensor_group;      /**< host [num_tensors]: group of each tensor, -1 = frozen */
  const double* group_lr;           /**< host [num_groups]: learning rate of each group */
  const double* group_weight_decay; /**< host [num_groups] or NULL: weight decay of each group */
} dlk_sgd_params;

/** Fills `params` with the defaults (lr 0.01, no momentum, dampening or weight decay, not first step, no groups). */
DLK_API dlk_status dlk_sgd_params_init(dlk_sgd_params* params);

/**
 * One SGD step over `num_tensors` parameters, PyTorch 1.13's rule per element:
 *   d = grad + weight_decay * p;
 *   if momentum != 0: buf = first_step ? d : momentum * buf + (1 - dampening) * d;
 *                     d = nesterov ? d + momentum * buf : buf;
 *   p = p - lr * d.
 * momentum_buffers may be NULL when momentum == 0. grads are read only.
 */
DLK_API dlk_status dlk_sgd_step(dlk_context* context, const dlk_sgd_params* params, size_t num_tensors,
                                DLTensor* const* param_tensors, const DLTensor* const* grads,
                                DLTensor* const* momentum_buffers);

/** Parameters of dlk_adamw_step (PyTorch's torch.optim.AdamW, or torch.optim.Adam with decoupled = 0). */
typedef struct dlk_adamw_params {
  size_t struct_size;               /**< sizeof(dlk_adamw_params) */
  double lr;                        /**< learning rate; 1e-3 by default; finite and >= 0 */
  double beta1;                     /**< 0.9 by default; in [0, 1) */
  double beta2;                     /**< 0.999 by default; in [0, 1) */
  double eps;                       /**< 1e-8 by default; finite and > 0 */
  double weight_decay;              /**< 1e-2 by default; finite and >= 0 */
  int amsgrad;                      /**< nonzero: keep max(exp_avg_sq) in max_exp_avg_sqs and divide by its root */
  int decoupled;                    /**< 1 (default): AdamW's p *= 1 - lr*wd; 0: Adam's L2, grad += wd * p */
  int64_t step;                     /**< the step being taken, counted from 1 (torch's state['step'] after += 1) */
  int num_groups;                   /**< number of parameter groups; 0 (no groups) by default */
  const int32_t* tensor_group;      /**< host [num_tensors]: group of each tensor, -1 = frozen */
  const double* group_lr;           /**< host [num_groups]: learning rate of each group */
  const double* group_weight_decay; /**< host [num_groups] or NULL: weight decay of each group */
  const int64_t* group_step;        /**< host [num_groups] or NULL: step of each group (>= 1) */
} dlk_adamw_params;

/** Fills `params` with torch.optim.AdamW's defaults (lr 1e-3, betas (0.9, 0.999), eps 1e-8, wd 1e-2), step 1. */
DLK_API dlk_status dlk_adamw_params_init(dlk_adamw_params* params);

/**
 * One AdamW step over `num_tensors` parameters, PyTorch 1.13's rule per element (t = step, g = grad):
 *   decoupled: p = p * (1 - lr * wd);   else: g = g + wd * p;
 *   m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g * g;
 *   amsgrad: vmax = max(vmax, v) and vmax replaces v below;
 *   p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps).
 * exp_avgs / exp_avg_sqs start at zero (the caller's job on step 1); max_exp_avg_sqs is read only with amsgrad
 * (else may be NULL). grads are read only.
 */
DLK_API dlk_status dlk_adamw_step(dlk_context* context, const dlk_adamw_params* params, size_t num_tensors,
                                  DLTensor* const* param_tensors, const DLTensor* const* grads,
                                  DLTensor* const* exp_avgs, DLTensor* const* exp_avg_sqs,
                                  DLTensor* const* max_exp_avg_sqs);

/** Parameters of dlk_clip_grad_norm (torch.nn.utils.clip_grad_norm_). */
typedef struct dlk_clip_grad_norm_params {
  size_t struct_size;  /**< sizeof(dlk_clip_grad_norm_params) */
  double max_norm;     /**< 1.0 by default; finite and >= 0 */
  double norm_type;    /**< 2 (default), 1 or +inf */
  DLTensor* total_norm; /**< optional float32 tensor of one element, on the context's device: receives the norm */
} dlk_clip_grad_norm_params;

/** Fills `params` with the defaults (max_norm 1, norm_type 2, no device output). */
DLK_API dlk_status dlk_clip_grad_norm_params_init(dlk_clip_grad_norm_params* params);

/**
 * Clips the gradients in place by their global norm, as torch.nn.utils.clip_grad_norm_: total = the norm_type-norm
 * of all elements of all grads; when c = max_norm / (total + 1e-6) < 1 every gradient is multiplied by c (a NaN
 * total leaves them unchanged). The reduction is two-stage with a fixed order, so the norm is bitwise reproducible.
 * `total_norm_host` (may be NULL) receives the norm, which waits for the device on cuda; params->total_norm (may be
 * NULL) receives it on the device without waiting.
 */
DLK_API dlk_status dlk_clip_grad_norm(dlk_context* context, const dlk_clip_grad_norm_params* params,
                                      size_t num_tensors, DLTensor* const* grads, float* total_norm_host);

/** Sets every element of every tensor to zero (any dtype, contiguous), in one launch on cuda. */
DLK_API dlk_status dlk_zero_grad(dlk_context* context, size_t num_tensors, DLTensor* const* grads);

/* ---------------------------------------------------------------------------------------------- attention */

/**
 * Parameters of masked scaled-dot-product attention: O = softmax(scale * Q K^T + mask) V per (batch, head).
 * Masks (see dlk_mask_kind) act on the [Tq, Tk] score matrix: CAUSAL keeps key j for query i when j <= i (top-left
 * alignment, PyTorch's is_causal); CAUSAL_BOTTOM_RIGHT keeps j <= i + (Tk - Tq) (aligned to the last key, as in
 * decoding with a KV cache); KEY_PADDING keeps j < lengths[b]; TENSOR adds or applies `mask`, broadcast over
 * [B, H, Tq, Tk]. A query row whose keys are all masked gives a zero output, a zero gradient and lse = -inf.
 */
typedef struct dlk_attention_params {
  size_t struct_size;      /**< sizeof(dlk_attention_params) */
  float scale;             /**< multiplies Q K^T; 0 (the default) selects 1/sqrt(D); must be finite */
  dlk_mask_kind mask_kind; /**< DLK_MASK_NONE by default */
  const DLTensor* mask;    /**< DLK_MASK_TENSOR: bool/int8/uint8 (nonzero keeps) or float (added), rank <= 4 */
  const DLTensor* lengths; /**< DLK_MASK_KEY_PADDING: int32 or int64 [B] valid keys per batch entry, clamped to [0,Tk] */
  float dropout_p;         /**< dropout on the probabilities, in [0, 1); 0 by default (and in eval) */
  uint64_t seed;           /**< Philox seed of the dropout (see random streams); 0 by default */
  uint64_t offset;         /**< stream position of probability element 0, row-major over [B, H, Tq, Tk] */
} dlk_attention_params;

/** Fills `params` with the defaults (scale 1/sqrt(D), no mask, no dropout). */
DLK_API dlk_status dlk_attention_params_init(dlk_attention_params* params);

/**
 * Forward. q [B,H,Tq,D], k and v [B,H,Tk,D], out [B,H,Tq,D]: float32/float16/bfloat16 (all one dtype), 1 <= D <= 256,
 * any strides with a unit stride on D (so a [B,T,H,D] or fused-QKV buffer is passed by its strides, without a
 * copy). lse: NULL or float32 [B,H,Tq] contiguous, receives the natural log of each row's softmax denominator
 * (of the scaled, masked scores), which the backward needs. Accumulation is fp32; T x T is never stored. Dropout
 * keeps probability (b,h,i,j) exactly when dlk_dropout_forward with the same seed and offset keeps element
 * ((b*H + h)*Tq + i)*Tk + j, and scales kept ones by 1/(1-p). out and lse may not overlap any input.
 */
DLK_API dlk_status dlk_attention_forward(dlk_context* context, const dlk_attention_params* params, const DLTensor* q,
                                         const DLTensor* k, const DLTensor* v, DLTensor* out, DLTensor* lse);

/**
 * Backward from the forward's q, k, v, out and lse (same params, dropout seed and offset included): dq, dk, dv
 * (shapes and dtype of q, k, v; any strides with a unit stride on D) from d_out. The probabilities are recomputed
 * from lse (required), so memory stays linear in T. No atomics: deterministic in every mode. dq, dk and dv may not
 * overlap any input or each other, but may interleave (views of one fused [B,T,3,H,D] gradient buffer).
 */
DLK_API dlk_status dlk_attention_backward(dlk_context* context, const dlk_attention_params* params, const DLTensor* q,
                                          const DLTensor* k, const DLTensor* v, const DLTensor* out,
                                          const DLTensor* lse, const DLTensor* d_out, DLTensor* dq, DLTensor* dk,
                                          DLTensor* dv);

/* ------------------------------------------------------------------------------------------- convolution */

/* ------------------------------------------------------------------------------- detection (RoI, boxes, NMS) */

/* ------------------------------------------------------------------------------------------------- k-means */

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* DLK_DLK_H */
