/* elementwise: API under construction; folded into dlk.h when it lands. */

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
