// C ABI of batch norm: validate every argument, describe the call, dispatch.
#include <dlk/dlk.h>

#include <cstring>

#include "batchnorm/batchnorm.h"
#include "capi/dispatch.h"
#include "capi/guard.h"
#include "capi/validate.h"

namespace dlk {
namespace {

void read_params(const Check& check, const dlk_batchnorm_params* params, dlk_batchnorm_params* out) {
  dlk_batchnorm_params_init(out);
  if (!params) return;
  check.params_size(params->struct_size, sizeof(dlk_batchnorm_params), "params");
  std::memcpy(out, params, sizeof(*out));
  out->struct_size = sizeof(*out);
  check.finite(out->momentum, "params->momentum");
  check.finite(out->eps, "params->eps");
  if (out->eps < 0) check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->eps is ", out->eps, ", expected >= 0");
}

// The [n, c, l] view of x (rank 2 to 5, channels in dim 1).
struct View {
  std::int64_t n, c, l;
};
View view_of(const DLTensor* x) {
  View v{x->shape[0], x->shape[1], 1};
  for (int d = 2; d < x->ndim; ++d) v.l *= x->shape[d];
  return v;
}

// A float32 [C] per-channel vector (gamma, beta, statistics, their gradients).
void check_channel_vector(const Check& check, const DLTensor* t, const char* name, const DLTensor* x) {
  check.contiguous(t, name, 1, 1);
  check.dtype_in(t, name, {DType::F32});
  check.shape_is(t, name, x->shape + 1, 1, "one value per channel, x's dim 1");
}

}  // namespace
}  // namespace dlk

extern "C" {

DLK_API dlk_status dlk_batchnorm_params_init(dlk_batchnorm_params* params) {
  return dlk::guard("dlk_batchnorm_params_init", [&] {
    if (!params) dlk::fail(DLK_ERROR_INVALID_ARGUMENT, "dlk_batchnorm_params_init: params is NULL");
    std::memset(params, 0, sizeof(*params));
    params->struct_size = sizeof(*params);
    params->training = 0;
    params->momentum = 0.1f;
    params->eps = 1e-5f;
  });
}

DLK_API dlk_status dlk_batchnorm_forward(dlk_context* context, const dlk_batchnorm_params* params, const DLTensor* x,
                                         const DLTensor* gamma, const DLTensor* beta, DLTensor* running_mean,
                                         DLTensor* running_var, DLTensor* y, DLTensor* save_mean,
                                         DLTensor* save_invstd) {
  using namespace dlk;
  return with_context("batchnorm_forward", context, [&](const Exec& exec) {
    Check check("batchnorm_forward", context);
    dlk_batchnorm_params p;
    read_params(check, params, &p);
    DType dt = check.contiguous(x, "x", 2, 5);
    check.dtype_in(x, "x", {DType::F32, DType::F16, DType::BF16});
    check.contiguous(y, "y", 2, 5);
    check.same_dtype(x, "x", y, "y");
    check.same_shape(x, "x", y, "y");
    check.no_partial_overlap(y, "y", x, "x");
    if (gamma) check_channel_vector(check, gamma, "gamma", x);
    if (beta) check_channel_vector(check, beta, "beta", x);
    const bool training = p.training != 0;
    if (training) {
      if (!running_mean != !running_var)
        check.fail(DLK_ERROR_INVALID_ARGUMENT, running_mean ? "running_var" : "running_mean",
                   " is NULL but ", running_mean ? "running_mean" : "running_var",
                   " is not: give both running statistics or neither");
    } else {
      if (!running_mean || !running_var)
        check.fail(DLK_ERROR_INVALID_ARGUMENT, running_mean ? "running_var" : "running_mean",
                   " is NULL; eval mode (params->training == 0) normalises with the running statistics");
    }
    if (running_mean) check_channel_vector(check, running_mean, "running_mean", x);
    if (running_var) check_channel_vector(check, running_var, "running_var", x);
    if (save_mean) check_channel_vector(check, save_mean, "save_mean", x);
    if (save_invstd) check_channel_vector(check, save_invstd, "save_invstd", x);
    const View v = view_of(x);
    if (training && v.n * v.l <= 1)
      check.fail(DLK_ERROR_SHAPE, "expected more than 1 value per channel when training, got x shape ",
                 shape_string(x));
    BatchNormForwardArgs a;
    a.dtype = dt;
    a.n = v.n;
    a.c = v.c;
    a.l = v.l;
    a.x = data_of(x);
    a.y = data_of(y);
    a.gamma = static_cast<const float*>(data_of(gamma));
    a.beta = static_cast<const float*>(data_of(beta));
    a.running_mean = static_cast<float*>(data_of(running_mean));
    a.running_var = static_cast<float*>(data_of(running_var));
    a.save_mean = static_cast<float*>(data_of(save_mean));
    a.save_invstd = static_cast<float*>(data_of(save_invstd));
    a.training = training;
    a.momentum = p.momentum;
    a.eps = p.eps;
    if (a.c == 0 || a.n * a.l == 0) return;
    DLK_DISPATCH(batchnorm_forward, a, exec);
  });
}

DLK_API dlk_status dlk_batchnorm_backward(dlk_context* context, const dlk_batchnorm_params* params, const DLTensor* dy,
                                          const DLTensor* x, const DLTensor* gamma, const DLTensor* running_mean,
                                          const DLTensor* running_var, const DLTensor* save_mean,
                                          const DLTensor* save_invstd, DLTensor* dx, DLTensor* dgamma,
                                          DLTensor* dbeta) {
  using namespace dlk;
  return with_context("batchnorm_backward", context, [&](const Exec& exec) {
    Check check("batchnorm_backward", context);
    dlk_batchnorm_params p;
    read_params(check, params, &p);
    DType dt = check.contiguous(x, "x", 2, 5);
    check.dtype_in(x, "x", {DType::F32, DType::F16, DType::BF16});
    check.contiguous(dy, "dy", 2, 5);
    check.same_dtype(x, "x", dy, "dy");
    check.same_shape(x, "x", dy, "dy");
    if (gamma) check_channel_vector(check, gamma, "gamma", x);
    const bool training = p.training != 0;
    if (training) {
      if (!save_mean || !save_invstd)
        check.fail(DLK_ERROR_INVALID_ARGUMENT, save_mean ? "save_invstd" : "save_mean",
                   " is NULL; the training-mode backward needs the forward's saved statistics");
      check_channel_vector(check, save_mean, "save_mean", x);
      check_channel_vector(check, save_invstd, "save_invstd", x);
    } else {
      if (!running_mean || !running_var)
        check.fail(DLK_ERROR_INVALID_ARGUMENT, running_mean ? "running_var" : "running_mean",
                   " is NULL; the eval-mode backward reads the running statistics");
      check_channel_vector(check, running_mean, "running_mean", x);
      check_channel_vector(check, running_var, "running_var", x);
    }
    if (dx) {
      check.contiguous(dx, "dx", 2, 5);
      check.same_dtype(x, "x", dx, "dx");
      check.same_shape(x, "x", dx, "dx");
      check.no_partial_overlap(dx, "dx", x, "x");
      check.no_partial_overlap(dx, "dx", dy, "dy");
    }
    if (dgamma) check_channel_vector(check, dgamma, "dgamma", x);
    if (dbeta) check_channel_vector(check, dbeta, "dbeta", x);
    const View v = view_of(x);
    BatchNormBackwardArgs a;
    a.dtype = dt;
    a.n = v.n;
    a.c = v.c;
    a.l = v.l;
    a.dy = data_of(dy);
    a.x = data_of(x);
    a.gamma = static_cast<const float*>(data_of(gamma));
    a.mean = static_cast<const float*>(data_of(training ? save_mean : running_mean));
    a.invstd = training ? static_cast<const float*>(data_of(save_invstd)) : nullptr;
    a.var = training ? nullptr : static_cast<const float*>(data_of(running_var));
    a.training = training;
    a.eps = p.eps;
    a.dx = data_of(dx);
    a.dgamma = static_cast<float*>(data_of(dgamma));
    a.dbeta = static_cast<float*>(data_of(dbeta));
    if (a.c == 0) return;
    DLK_DISPATCH(batchnorm_backward, a, exec);
  });
}

}  // extern "C"
