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
