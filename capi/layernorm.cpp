// C ABI of layer normalisation: validate every argument, describe the call, dispatch.
#include <dlk/dlk.h>

#include <cstring>

#include "capi/dispatch.h"
#include "capi/guard.h"
#include "capi/validate.h"
#include "layernorm/layernorm.h"

namespace dlk {
namespace {

void read_params(const Check& check, const dlk_layernorm_params* params, dlk_layernorm_params* out) {
  dlk_layernorm_params_init(out);
  if (!params) return;
  check.params_size(params->struct_size, sizeof(dlk_layernorm_params), "params");
  std::memcpy(out, params, sizeof(*out));
  check.finite(out->eps, "params->eps");
  if (out->eps < 0) check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->eps is ", out->eps, ", expected >= 0");
}

// Splits x into rows x cols at normalized_ndim and checks the per-row and per-column companions.
struct Split {
  std::int64_t rows = 0, cols = 1;
};

Split split(const Check& check, const dlk_layernorm_params& p, const DLTensor* x) {
  if (p.normalized_ndim < 1 || p.normalized_ndim > x->ndim)
    check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->normalized_ndim is ", p.normalized_ndim, ", expected 1 to ",
               x->ndim, " (the rank of x ", shape_string(x), ")");
  Split s;
  for (int d = x->ndim - p.normalized_ndim; d < x->ndim; ++d) s.cols *= x->shape[d];
  s.rows = 1;
  for (int d = 0; d < x->ndim - p.normalized_ndim; ++d) s.rows *= x->shape[d];
  return s;
}

// gamma/beta/dgamma/dbeta: the normalised (trailing) shape of x, dtype float32 or that of x.
DType check_weight(const Check& check, const DLTensor* w, const char* name, const DLTensor* x, int nd) {
  DType wt = check.contiguous(w, name);
  check.shape_is(w, name, x->shape + (x->ndim - nd), nd, "the normalised trailing shape of x");
  DType xt = dtype_of(x->dtype);
  if (wt != DType::F32 && wt != xt)
    check.fail(DLK_ERROR_DTYPE, name, " has dtype ", dtype_name(wt), ", expected float32 or ", dtype_name(xt),
               " like x");
  return wt;
}

// mean/rstd: float32 with the leading (row) shape of x.
void check_stat(const Check& check, const DLTensor* s, const char* name, const DLTensor* x, int nd) {
  check.contiguous(s, name);
  check.dtype_in(s, name, {DType::F32});
  check.shape_is(s, name, x->shape, x->ndim - nd, "the leading shape of x, one value per row");
}

}  // namespace
}  // namespace dlk

extern "C" {

DLK_API dlk_status dlk_layernorm_params_init(dlk_layernorm_params* params) {
  return dlk::guard("dlk_layernorm_params_init", [&] {
    if (!params) dlk::fail(DLK_ERROR_INVALID_ARGUMENT, "dlk_layernorm_params_init: params is NULL");
    std::memset(params, 0, sizeof(*params));
    params->struct_size = sizeof(*params);
    params->eps = 1e-5f;
    params->normalized_ndim = 1;
    params->accumulate = 0;
  });
}

DLK_API dlk_status dlk_layernorm_forward(dlk_context* context, const dlk_layernorm_params* params, const DLTensor* x,
                                         const DLTensor* gamma, const DLTensor* beta, DLTensor* y, DLTensor* mean,
                                         DLTensor* rstd) {
  using namespace dlk;
  return with_context("layernorm_forward", context, [&](const Exec& exec) {
    Check check("layernorm_forward", context);
    dlk_layernorm_params p;
    read_params(check, params, &p);
    DType dt = check.contiguous(x, "x", 1);
    check.dtype_in(x, "x", {DType::F32, DType::F16, DType::BF16});
    Split s = split(check, p, x);
    const int nd = p.normalized_ndim;
    check.contiguous(y, "y", 1);
    check.same_dtype(x, "x", y, "y");
    check.same_shape(x, "x", y, "y");
    check.no_partial_overlap(y, "y", x, "x");
    DType wt = DType::F32;
    if (gamma) wt = check_weight(check, gamma, "gamma", x, nd);
    if (beta) {
      DType bt = check_weight(check, beta, "beta", x, nd);
      if (gamma && bt != wt) check.same_dtype(gamma, "gamma", beta, "beta");
      wt = bt;
    }
    if (mean) check_stat(check, mean, "mean", x, nd);
    if (rstd) check_stat(check, rstd, "rstd", x, nd);
    LayerNormForwardArgs a;
    a.dtype = dt;
    a.weight_dtype = wt;
    a.rows = s.rows;
    a.cols = s.cols;
    a.eps = p.eps;
    a.x = data_of(x);
    a.gamma = data_of(gamma);
    a.beta = data_of(beta);
    a.y = data_of(y);
    a.mean = static_cast<float*>(data_of(mean));
    a.rstd = static_cast<float*>(data_of(rstd));
    if (a.rows == 0) return;
    if (a.cols == 0) check.fail(DLK_ERROR_SHAPE, "x shape ", shape_string(x), " normalises over zero elements");
    DLK_DISPATCH(layernorm_forward, a, exec);
  });
}

DLK_API dlk_status dlk_layernorm_backward(dlk_context* context, const dlk_layernorm_params* params,
                                          const DLTensor* dy, const DLTensor* x, const DLTensor* mean,
                                          const DLTensor* rstd, const DLTensor* gamma, DLTensor* dx, DLTensor* dgamma,
                                          DLTensor* dbeta) {
  using namespace dlk;
  return with_context("layernorm_backward", context, [&](const Exec& exec) {
    Check check("layernorm_backward", context);
    dlk_layernorm_params p;
    read_params(check, params, &p);
    DType dt = check.contiguous(x, "x", 1);
    check.dtype_in(x, "x", {DType::F32, DType::F16, DType::BF16});
    Split s = split(check, p, x);
    const int nd = p.normalized_ndim;
    check.contiguous(dy, "dy", 1);
    check.same_dtype(x, "x", dy, "dy");
    check.same_shape(x, "x", dy, "dy");
    check_stat(check, mean, "mean", x, nd);
    check_stat(check, rstd, "rstd", x, nd);
    DType wt = DType::F32;
    if (gamma) wt = check_weight(check, gamma, "gamma", x, nd);
    if (dx) {
      check.contiguous(dx, "dx", 1);
      check.same_dtype(x, "x", dx, "dx");
      check.same_shape(x, "x", dx, "dx");
      check.no_partial_overlap(dx, "dx", x, "x");
      check.no_partial_overlap(dx, "dx", dy, "dy");
      if (data_of(dx) == data_of(x) && s.rows * s.cols > 0)
        check.fail(DLK_ERROR_LAYOUT, "dx aliases x, which the backward still reads; dx may alias dy only");
    }
    for (DLTensor* g : {dgamma, dbeta}) {
      if (!g) continue;
      const char* name = g == dgamma ? "dgamma" : "dbeta";
      DType gt = check_weight(check, g, name, x, nd);
      if (gamma && gt != wt)
        check.fail(DLK_ERROR_DTYPE, name, " has dtype ", dtype_name(gt), ", expected ", dtype_name(wt), " like gamma");
      wt = gt;
    }
    if (dgamma && dbeta) check.same_dtype(dgamma, "dgamma", dbeta, "dbeta");
    LayerNormBackwardArgs a;
    a.dtype = dt;
    a.weight_dtype = wt;
    a.rows = s.rows;
    a.cols = s.cols;
    a.dy = data_of(dy);
    a.x = data_of(x);
    a.mean = static_cast<const float*>(data_of(mean));
    a.rstd = static_cast<const float*>(data_of(rstd));
    a.gamma = data_of(gamma);
    a.dx = data_of(dx);
    a.dgamma = data_of(dgamma);
    a.dbeta = data_of(dbeta);
    a.accumulate = p.accumulate != 0;
    if (s.cols == 0) check.fail(DLK_ERROR_SHAPE, "x shape ", shape_string(x), " normalises over zero elements");
    DLK_DISPATCH(layernorm_backward, a, exec);
  });
}

}  // extern "C"
