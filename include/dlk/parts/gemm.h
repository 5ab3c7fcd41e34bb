/* gemm: matrix multiplication and linear layers. Folded into dlk.h when it lands.
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
