/* norm_pool: batch norm, pooling, unpooling and upsampling (issue 4). Included inside extern "C" by dlk/dlk.h.
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
