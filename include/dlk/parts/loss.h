/* loss: losses (fused softmax cross-entropy, BCE-with-logits, MSE, NLL) and metrics (accuracy, confusion matrix,
 * precision/recall/F1). Folded into dlk.h when it lands.
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
