// C ABI of the random family: dropout, embedding (forward, backward, sparse update) and initialisation. Validate every
// argument, resolve seeds and distributions to concrete numbers, dispatch.
#include <dlk/dlk.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "capi/dispatch.h"
#include "capi/guard.h"
#include "capi/validate.h"
#include "dropout/dropout.h"
#include "embedding/embedding.h"
#include "init/init.h"

namespace dlk {
namespace {

constexpr std::uint64_t kU64Max = std::numeric_limits<std::uint64_t>::max();

// Stream positions offset .. offset + n - 1 must not wrap around 2^64.
void check_offset(const Check& check, std::uint64_t offset, std::int64_t n) {
  if (n > 0 && offset > kU64Max - static_cast<std::uint64_t>(n - 1))
    check.fail(DLK_ERROR_OVERFLOW, "params->offset ", offset, " + ", n, " elements passes 2^64");
}

// ------------------------------------------------------------------------------------------------- dropout

void read_dropout(const Check& check, const dlk_dropout_params* params, dlk_dropout_params* out) {
  dlk_dropout_params_init(out);
  if (!params) return;
  check.params_size(params->struct_size, offsetof(dlk_dropout_params, use_context_seed) + sizeof(int), "params");
  std::memcpy(out, params, params->struct_size < sizeof(*out) ? params->struct_size : sizeof(*out));
  out->struct_size = sizeof(*out);
  if (!(out->p >= 0.0f && out->p <= 1.0f))
    check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->p is ", out->p, ", expected a probability in [0, 1]");
}

// The shared part of both directions: element count, keep threshold, scale, seed.
void fill_dropout(const dlk_dropout_params& p, const Exec& exec, DropoutArgs* a) {
  a->seed = p.use_context_seed ? exec.seed : p.seed;
  a->offset = p.offset;
  const double keep = 1.0 - static_cast<double>(p.p);
  a->keep_threshold = static_cast<std::uint32_t>(std::ceil(keep * 16777216.0));
  a->scale = p.p >= 1.0f ? 0.0f : static_cast<float>(1.0 / keep);
  a->identity = !p.training || p.p == 0.0f;
  if (a->identity) a->scale = 1.0f;
}

const std::uint8_t* optional_mask(const Check& check, const DLTensor* mask, const DLTensor* like,
                                  const char* like_name) {
  if (!mask) return nullptr;
  check.contiguous(mask, "mask");
  check.dtype_in(mask, "mask", {DType::U8, DType::I8});
  check.same_shape(like, like_name, mask, "mask");
  return static_cast<const std::uint8_t*>(data_of(mask));
}

// ----------------------------------------------------------------------------------------------- embedding

void read_embedding(const Check& check, const dlk_embedding_params* params, dlk_embedding_params* out) {
  dlk_embedding_params_init(out);
  if (!params) return;
  check.params_size(params->struct_size, offsetof(dlk_embedding_params, accumulate) + sizeof(int), "params");
  std::memcpy(out, params, params->struct_size < sizeof(*out) ? params->struct_size : sizeof(*out));
  out->struct_size = sizeof(*out);
}

// indices: int32/int64, rank <= 7 (the output appends D). Returns the dtype.
DType check_indices(const Check& check, const DLTensor* indices) {
  DType it = check.contiguous(indices, "indices", 0, kMaxDims - 1);
  check.dtype_in(indices, "indices", {DType::I32, DType::I64});
  return it;
}

// The table [V, D]: rank exactly 2, float32/float16/bfloat16, contiguous.
DType check_table(const Check& check, const DLTensor* table, const char* name) {
  if (table && table->ndim != 2)
    check.fail(DLK_ERROR_SHAPE, name, " must be a table of rank 2 [num_embeddings, embedding_dim], got rank ",
               table->ndim);
  DType dt = check.contiguous(table, name, 2, 2);
  check.dtype_in(table, name, {DType::F32, DType::F16, DType::BF16});
  return dt;
}

// `t` must have shape indices.shape + [D].
void check_rows_shape(const Check& check, const DLTensor* t, const char* name, const DLTensor* indices,
                      std::int64_t D) {
  std::int64_t shape[kMaxDims];
  for (int d = 0; d < indices->ndim; ++d) shape[d] = indices->shape[d];
  shape[indices->ndim] = D;
  check.contiguous(t, name);
  check.shape_is(t, name, shape, indices->ndim + 1, "indices.shape + [embedding_dim]");
}

std::int64_t padding_row(const Check& check, const dlk_embedding_params& p, std::int64_t V) {
  if (p.padding_idx == DLK_EMBEDDING_NO_PADDING) return -1;
  if (p.padding_idx < -V || p.padding_idx >= V)
    check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->padding_idx is ", p.padding_idx, ", expected a row in [", -V, ", ",
               V, ") or DLK_EMBEDDING_NO_PADDING");
  return p.padding_idx < 0 ? p.padding_idx + V : p.padding_idx;
}

// On host backends every index is checked before anything runs (the cuda kernels treat bad ones as documented).
void check_index_range(const Check& check, const Exec& exec, const void* idx, DType it, std::int64_t n,
                       std::int64_t V) {
  if (exec.backend == Backend::Cuda) return;
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t r =
        it == DType::I64 ? static_cast<const std::int64_t*>(idx)[i] : static_cast<const std::int32_t*>(idx)[i];
    if (r < 0 || r >= V)
      check.fail(DLK_ERROR_INVALID_ARGUMENT, "indices[", i, "] (flattened) is ", r, ", out of range for a table of ", V,
                 " rows (expected 0 <= index < ", V, ")");
  }
}

// Validates and fills the backward / sparse-update args (grads = dout or grad_rows, table = dweight or weight).
EmbeddingBackwardArgs embedding_backward_args(const Check& check, const Exec& exec, const dlk_embedding_params& p,
                                              const DLTensor* indices, const DLTensor* grads, const char* grads_name,
                                              DLTensor* table, const char* table_name) {
  DType it = check_indices(check, indices);
  DType dt = check_table(check, table, table_name);
  const std::int64_t V = table->shape[0], D = table->shape[1];
  check_rows_shape(check, grads, grads_name, indices, D);
  check.same_dtype(table, table_name, grads, grads_name);
  check.no_partial_overlap(table, table_name, grads, grads_name);
  check.no_partial_overlap(table, table_name, indices, "indices");
  EmbeddingBackwardArgs a;
  a.dtype = dt;
  a.index_dtype = it;
  a.n = numel(indices);
  a.rows = V;
  a.dim = D;
  a.indices = data_of(indices);
  a.dout = data_of(grads);
  a.dweight = data_of(table);
  a.padding_row = padding_row(check, p, V);
  a.accumulate = p.accumulate != 0;
  if (D > 0) check_index_range(check, exec, a.indices, it, a.n, V);
  return a;
}

// ---------------------------------------------------------------------------------------------------- init

void read_init(const Check& check, const dlk_init_params* params, dlk_init_params* out) {
  dlk_init_params_init(out);
  if (!params) return;
  check.params_size(params->struct_size, offsetof(dlk_init_params, use_context_seed) + sizeof(int), "params");
  std::memcpy(out, params, params->struct_size < sizeof(*out) ? params->struct_size : sizeof(*out));
  out->struct_size = sizeof(*out);
}

double gain_of(const Check& check, int nonlinearity, double slope) {
  switch (nonlinearity) {
    case DLK_NONLINEARITY_LINEAR:
    case DLK_NONLINEARITY_SIGMOID: return 1.0;
    case DLK_NONLINEARITY_TANH: return 5.0 / 3.0;
    case DLK_NONLINEARITY_RELU: return std::sqrt(2.0);
    case DLK_NONLINEARITY_LEAKY_RELU:
      check.finite(slope, "negative_slope");
      return std::sqrt(2.0 / (1.0 + slope * slope));
    case DLK_NONLINEARITY_SELU: return 0.75;
    default:
      check.fail(DLK_ERROR_INVALID_ARGUMENT, "nonlinearity is ", nonlinearity,
                 ", expected a dlk_nonlinearity (0 to 5)");
  }
}

void fans_of(const Check& check, int ndim, const std::int64_t* shape, std::int64_t* fan_in, std::int64_t* fan_out) {
  if (ndim < 2)
    check.fail(DLK_ERROR_SHAPE, "fan_in and fan_out cannot be computed for a tensor of rank ", ndim,
               " (expected rank >= 2, like torch.nn.init)");
  std::int64_t receptive = 1;
  for (int d = 2; d < ndim; ++d) receptive *= shape[d];
  if (fan_in) *fan_in = shape[1] * receptive;
  if (fan_out) *fan_out = shape[0] * receptive;
}

double normal_cdf(double x) { return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))); }

// Resolves params into a distribution with concrete fp32 parameters.
void resolve_init(const Check& check, const dlk_init_params& p, const DLTensor* t, InitArgs* a) {
  const int kind = enum_value(p.kind);
  const int mode = enum_value(p.mode);
  const int nonlin = enum_value(p.nonlinearity);
  if (kind < DLK_INIT_UNIFORM || kind > DLK_INIT_CONSTANT)
    check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->kind is ", kind, ", expected a dlk_init_kind (0 to 9)");
  check.finite(p.a, "params->a");
  check.finite(p.b, "params->b");
  check.finite(p.mean, "params->mean");
  check.finite(p.std, "params->std");
  check.finite(p.gain, "params->gain");
  if (p.fan_in < 0) check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->fan_in is ", p.fan_in, ", expected >= 0");
  if (p.fan_out < 0) check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->fan_out is ", p.fan_out, ", expected >= 0");
  // The fans a kind needs: from the shape unless overridden.
  auto fans = [&](std::int64_t* fi, std::int64_t* fo) {
    *fi = p.fan_in;
    *fo = p.fan_out;
    if (*fi == 0 || *fo == 0) {  // fans_of rejects rank < 2 (set params->fan_in / fan_out for such tensors)
      std::int64_t si = 0, so = 0;
      fans_of(check, t->ndim, t->shape, &si, &so);
      if (*fi == 0) *fi = si;
      if (*fo == 0) *fo = so;
    }
  };
  auto uniform = [&](double lo, double hi) {
    a->dist = InitDist::Uniform;
    a->p0 = static_cast<float>(lo);
    a->p1 = static_cast<float>(hi);
  };
  auto normal = [&](double mean, double sd) {
    a->dist = InitDist::Normal;
    a->p0 = static_cast<float>(mean);
    a->p1 = static_cast<float>(sd);
  };
  switch (kind) {
    case DLK_INIT_UNIFORM:
      if (!(p.a <= p.b))
        check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->a (", p.a, ") must be <= params->b (", p.b, ")");
      uniform(p.a, p.b);
      break;
    case DLK_INIT_NORMAL:
      if (p.std < 0) check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->std is ", p.std, ", expected >= 0");
      normal(p.mean, p.std);
      break;
    case DLK_INIT_TRUNC_NORMAL: {
      if (!(p.std > 0)) check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->std is ", p.std, ", expected > 0");
      if (!(p.a < p.b)) check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->a (", p.a, ") must be < params->b (", p.b, ")");
      a->dist = InitDist::TruncNormal;
      a->p0 = static_cast<float>(p.mean);
      a->p1 = static_cast<float>(p.std);
      a->a = static_cast<float>(p.a);
      a->b = static_cast<float>(p.b);
      a->v_lo = static_cast<float>(2.0 * normal_cdf((p.a - p.mean) / p.std) - 1.0);
      a->v_hi = static_cast<float>(2.0 * normal_cdf((p.b - p.mean) / p.std) - 1.0);
      break;
    }
    case DLK_INIT_KAIMING_UNIFORM:
    case DLK_INIT_KAIMING_NORMAL: {
      if (mode != DLK_FAN_IN && mode != DLK_FAN_OUT)
        check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->mode is ", mode, ", expected DLK_FAN_IN or DLK_FAN_OUT");
      const double gain = gain_of(check, nonlin, p.negative_slope);
      std::int64_t fi, fo;
      fans(&fi, &fo);
      const std::int64_t fan = mode == DLK_FAN_IN ? fi : fo;
      if (fan <= 0) check.fail(DLK_ERROR_SHAPE, "kaiming init: fan is 0 for shape ", shape_string(t));
      const double sd = gain / std::sqrt(static_cast<double>(fan));
      if (kind == DLK_INIT_KAIMING_UNIFORM)
        uniform(-std::sqrt(3.0) * sd, std::sqrt(3.0) * sd);
      else
        normal(0.0, sd);
      break;
    }
    case DLK_INIT_XAVIER_UNIFORM:
    case DLK_INIT_XAVIER_NORMAL: {
      std::int64_t fi, fo;
      fans(&fi, &fo);
      if (fi + fo <= 0) check.fail(DLK_ERROR_SHAPE, "xavier init: fan_in + fan_out is 0 for shape ", shape_string(t));
      const double sd = p.gain * std::sqrt(2.0 / static_cast<double>(fi + fo));
      if (kind == DLK_INIT_XAVIER_UNIFORM)
        uniform(-std::sqrt(3.0) * sd, std::sqrt(3.0) * sd);
      else
        normal(0.0, sd);
      break;
    }
    case DLK_INIT_LINEAR_WEIGHT: {
      std::int64_t fi, fo;
      fans(&fi, &fo);
      if (fi <= 0) check.fail(DLK_ERROR_SHAPE, "linear weight init: fan_in is 0 for shape ", shape_string(t));
      // kaiming_uniform_(a = sqrt(5)): gain sqrt(2 / (1 + 5)), bound sqrt(3) * gain / sqrt(fan_in) = 1 / sqrt(fan_in).
      const double bound = std::sqrt(3.0) * std::sqrt(2.0 / 6.0) / std::sqrt(static_cast<double>(fi));
      uniform(-bound, bound);
      break;
    }
    case DLK_INIT_LINEAR_BIAS: {
      if (p.fan_in <= 0)
        check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->fan_in is ", p.fan_in,
                   ", expected the weight's fan_in (> 0) for DLK_INIT_LINEAR_BIAS");
      const double bound = 1.0 / std::sqrt(static_cast<double>(p.fan_in));
      uniform(-bound, bound);
      break;
    }
    default:  // DLK_INIT_CONSTANT
      a->dist = InitDist::Constant;
      a->p0 = static_cast<float>(p.a);
      break;
  }
}

}  // namespace
}  // namespace dlk

extern "C" {

// ------------------------------------------------------------------------------------------------- dropout

DLK_API dlk_status dlk_dropout_params_init(dlk_dropout_params* params) {
  return dlk::guard("dlk_dropout_params_init", [&] {
    if (!params) dlk::fail(DLK_ERROR_INVALID_ARGUMENT, "dlk_dropout_params_init: params is NULL");
    std::memset(params, 0, sizeof(*params));
    params->struct_size = sizeof(*params);
    params->p = 0.5f;
    params->training = 1;
  });
}

DLK_API dlk_status dlk_dropout_forward(dlk_context* context, const dlk_dropout_params* params, const DLTensor* x,
                                       DLTensor* y, DLTensor* mask) {
  using namespace dlk;
  return with_context("dropout_forward", context, [&](const Exec& exec) {
    Check check("dropout_forward", context);
    dlk_dropout_params p;
    read_dropout(check, params, &p);
    DType dt = check.contiguous(x, "x");
    check.dtype_in(x, "x", {DType::F32, DType::F16, DType::BF16});
    check.contiguous(y, "y");
    check.same_dtype(x, "x", y, "y");
    check.same_shape(x, "x", y, "y");
    check.no_partial_overlap(y, "y", x, "x");
    optional_mask(check, mask, x, "x");
    if (mask) {
      check.no_partial_overlap(mask, "mask", x, "x");
      check.no_partial_overlap(mask, "mask", y, "y");
    }
    DropoutArgs a;
    a.dtype = dt;
    a.n = numel(x);
    a.in = data_of(x);
    a.out = data_of(y);
    a.mask_out = mask ? static_cast<std::uint8_t*>(data_of(mask)) : nullptr;
    check_offset(check, p.offset, a.n);
    fill_dropout(p, exec, &a);
    if (a.n == 0) return;
    DLK_DISPATCH(dropout, a, exec);
  });
}

DLK_API dlk_status dlk_dropout_backward(dlk_context* context, const dlk_dropout_params* params, const DLTensor* dy,
                                        const DLTensor* mask, DLTensor* dx) {
  using namespace dlk;
  return with_context("dropout_backward", context, [&](const Exec& exec) {
    Check check("dropout_backward", context);
    dlk_dropout_params p;
    read_dropout(check, params, &p);
    DType dt = check.contiguous(dy, "dy");
    check.dtype_in(dy, "dy", {DType::F32, DType::F16, DType::BF16});
    check.contiguous(dx, "dx");
    check.same_dtype(dy, "dy", dx, "dx");
    check.same_shape(dy, "dy", dx, "dx");
    check.no_partial_overlap(dx, "dx", dy, "dy");
    const std::uint8_t* m = optional_mask(check, mask, dy, "dy");
    if (mask) check.no_partial_overlap(dx, "dx", mask, "mask");
    DropoutArgs a;
    a.dtype = dt;
    a.n = numel(dy);
    a.in = data_of(dy);
    a.out = data_of(dx);
    check_offset(check, p.offset, a.n);
    fill_dropout(p, exec, &a);
    if (!a.identity) a.mask_in = m;
    if (a.n == 0) return;
    DLK_DISPATCH(dropout, a, exec);
  });
}

// ----------------------------------------------------------------------------------------------- embedding

DLK_API dlk_status dlk_embedding_params_init(dlk_embedding_params* params) {
  return dlk::guard("dlk_embedding_params_init", [&] {
    if (!params) dlk::fail(DLK_ERROR_INVALID_ARGUMENT, "dlk_embedding_params_init: params is NULL");
    std::memset(params, 0, sizeof(*params));
    params->struct_size = sizeof(*params);
    params->padding_idx = DLK_EMBEDDING_NO_PADDING;
    params->accumulate = 0;
  });
}

DLK_API dlk_status dlk_embedding_forward(dlk_context* context, const dlk_embedding_params* params,
                                         const DLTensor* indices, const DLTensor* weight, DLTensor* out) {
  using namespace dlk;
  return with_context("embedding_forward", context, [&](const Exec& exec) {
    Check check("embedding_forward", context);
    dlk_embedding_params p;
    read_embedding(check, params, &p);
    DType it = check_indices(check, indices);
    DType dt = check_table(check, weight, "weight");
    const std::int64_t V = weight->shape[0], D = weight->shape[1];
    check_rows_shape(check, out, "out", indices, D);
    check.same_dtype(weight, "weight", out, "out");
    check.no_partial_overlap(out, "out", weight, "weight");
    check.no_partial_overlap(out, "out", indices, "indices");
    padding_row(check, p, V);
    EmbeddingForwardArgs a;
    a.dtype = dt;
    a.index_dtype = it;
    a.n = numel(indices);
    a.rows = V;
    a.dim = D;
    a.indices = data_of(indices);
    a.weight = data_of(weight);
    a.out = data_of(out);
    if (a.n == 0 || D == 0) return;
    check_index_range(check, exec, a.indices, it, a.n, V);
    DLK_DISPATCH(embedding_forward, a, exec);
  });
}

DLK_API dlk_status dlk_embedding_backward(dlk_context* context, const dlk_embedding_params* params,
                                          const DLTensor* indices, const DLTensor* dout, DLTensor* dweight) {
  using namespace dlk;
  return with_context("embedding_backward", context, [&](const Exec& exec) {
    Check check("embedding_backward", context);
    dlk_embedding_params p;
    read_embedding(check, params, &p);
    EmbeddingBackwardArgs a = embedding_backward_args(check, exec, p, indices, dout, "dout", dweight, "dweight");
    a.factor = 1.0f;
    if (a.rows == 0 || a.dim == 0) return;
    if (a.n == 0 && a.accumulate) return;
    DLK_DISPATCH(embedding_backward, a, exec);
  });
}

DLK_API dlk_status dlk_embedding_sparse_update(dlk_context* context, const dlk_embedding_params* params,
                                               const DLTensor* indices, const DLTensor* grad_rows, float lr,
                                               DLTensor* weight) {
  using namespace dlk;
  return with_context("embedding_sparse_update", context, [&](const Exec& exec) {
    Check check("embedding_sparse_update", context);
    dlk_embedding_params p;
    read_embedding(check, params, &p);
    check.finite(lr, "lr");
    EmbeddingBackwardArgs a =
        embedding_backward_args(check, exec, p, indices, grad_rows, "grad_rows", weight, "weight");
    a.accumulate = true;
    a.factor = -lr;
    if (a.rows == 0 || a.dim == 0 || a.n == 0) return;
    DLK_DISPATCH(embedding_backward, a, exec);
  });
}

// ---------------------------------------------------------------------------------------------------- init

DLK_API dlk_status dlk_init_params_init(dlk_init_params* params) {
  return dlk::guard("dlk_init_params_init", [&] {
    if (!params) dlk::fail(DLK_ERROR_INVALID_ARGUMENT, "dlk_init_params_init: params is NULL");
    std::memset(params, 0, sizeof(*params));
    params->struct_size = sizeof(*params);
    params->kind = DLK_INIT_UNIFORM;
    params->a = 0.0;
    params->b = 1.0;
    params->mean = 0.0;
    params->std = 1.0;
    params->mode = DLK_FAN_IN;
    params->nonlinearity = DLK_NONLINEARITY_LEAKY_RELU;
    params->negative_slope = 0.0;
    params->gain = 1.0;
  });
}

DLK_API dlk_status dlk_init(dlk_context* context, const dlk_init_params* params, DLTensor* tensor) {
  using namespace dlk;
  return with_context("init", context, [&](const Exec& exec) {
    Check check("init", context);
    dlk_init_params p;
    read_init(check, params, &p);
    DType dt = check.contiguous(tensor, "tensor");
    check.dtype_in(tensor, "tensor", {DType::F32, DType::F16, DType::BF16});
    InitArgs a;
    a.dtype = dt;
    a.n = numel(tensor);
    a.data = data_of(tensor);
    a.seed = p.use_context_seed ? exec.seed : p.seed;
    a.offset = p.offset;
    check_offset(check, p.offset, a.n);
    if (a.n == 0) return;  // like torch.nn.init: a no-op on empty tensors
    resolve_init(check, p, tensor, &a);
    DLK_DISPATCH(init_fill, a, exec);
  });
}

DLK_API dlk_status dlk_init_fans(int ndim, const int64_t* shape, int64_t* fan_in, int64_t* fan_out) {
  return dlk::guard("dlk_init_fans", [&] {
    dlk::Check check("init_fans", nullptr);
    if (ndim < 0 || ndim > dlk::kMaxDims)
      check.fail(DLK_ERROR_SHAPE, "ndim is ", ndim, ", expected 2 to ", dlk::kMaxDims);
    if (ndim > 0 && !shape) check.fail(DLK_ERROR_INVALID_ARGUMENT, "shape is NULL");
    for (int d = 0; d < ndim; ++d)
      if (shape[d] < 0) check.fail(DLK_ERROR_SHAPE, "shape[", d, "] is ", shape[d], ", expected >= 0");
    std::int64_t fi = 0, fo = 0;
    dlk::fans_of(check, ndim, shape, &fi, &fo);
    if (fan_in) *fan_in = fi;
    if (fan_out) *fan_out = fo;
  });
}

DLK_API dlk_status dlk_init_gain(dlk_nonlinearity nonlinearity, double negative_slope, double* gain) {
  return dlk::guard("dlk_init_gain", [&] {
    dlk::Check check("init_gain", nullptr);
    if (!gain) check.fail(DLK_ERROR_INVALID_ARGUMENT, "gain is NULL");
    *gain = dlk::gain_of(check, dlk::enum_value(nonlinearity), negative_slope);
  });
}

}  // extern "C"
