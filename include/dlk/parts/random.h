/* random: dropout, embedding and initialisation; folded into dlk.h when it lands. */

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
