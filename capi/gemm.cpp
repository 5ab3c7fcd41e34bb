// C ABI of the GEMM family: dlk_matmul and the linear layer. Validates every argument, turns tensors into the
// stride description of kernels/gemm/gemm.h (transposes folded into strides, batch dims broadcast and collapsed),
// and dispatches. The linear layer is composed here from the same backend functions: one product plus an epilogue
// forward; an activation gradient, two products and a bias reduction backward.
#include "gemm/gemm.h"

#include <dlk/dlk.h>

#include <algorithm>
#include <cstring>
#include <sstream>
#include <vector>

#include "capi/dispatch.h"
#include "capi/guard.h"
#include "capi/validate.h"

namespace dlk {
namespace {

std::string dims_string(const std::int64_t* d, int n) {
  std::ostringstream s;
  s << '[';
  for (int i = 0; i < n; ++i) s << (i ? "," : "") << d[i];
  s << ']';
  return s.str();
}

// Makes the strides of a logical [rows, cols] matrix BLAS-legal where a size-1 dim leaves its stride free, and says
// whether the layout is one BLAS accepts: row-major (cs == 1, rs >= cols) or column-major (rs == 1, cs >= rows, and
// then cs != 1 so the two cannot be confused).
bool normalize_matrix(std::int64_t rows, std::int64_t cols, std::int64_t* rs, std::int64_t* cs) {
  if (rows == 0 || cols == 0) {  // never read
    *cs = 1;
    *rs = std::max<std::int64_t>(cols, 1);
    return true;
  }
  if (rows <= 1) {
    if (*cs == 1 || cols <= 1) {
      *cs = 1;
      *rs = std::max<std::int64_t>(cols, 1);
    } else {
      *rs = 1;
    }
  } else if (cols <= 1) {
    if (*rs == 1) {
      *cs = rows;
    } else {
      *cs = 1;
    }
  }
  if (*cs == 1 && *rs >= std::max<std::int64_t>(cols, 1)) return true;
  return *rs == 1 && *cs != 1 && *cs >= rows;
}

// The output's layout: unit column stride (free when n == 1) and row stride >= n (free when m == 1).
bool normalize_output(std::int64_t m, std::int64_t n, std::int64_t* rs, std::int64_t* cs) {
  if (n <= 1) *cs = 1;
  if (m <= 1) *rs = std::max<std::int64_t>(n, 1);
  return *cs == 1 && *rs >= n;
}

// First and one-past-last byte a strided tensor touches (empty: equal).
void byte_span(const DLTensor* t, const char** lo, const char** hi) {
  std::int64_t st[kMaxDims];
  strides_of(t, st);
  std::int64_t last = 0;
  for (int d = 0; d < t->ndim; ++d) {
    if (t->shape[d] == 0) {
      *lo = *hi = static_cast<const char*>(data_of(t));
      return;
    }
    last += (t->shape[d] - 1) * st[d];
  }
  *lo = static_cast<const char*>(data_of(t));
  *hi = *lo + (last + 1) * static_cast<std::int64_t>(dtype_size(dtype_of(t->dtype)));
}

// An output may not share any byte with another tensor of the call (products read their inputs while writing).
void no_overlap(const Check& check, const DLTensor* out, const char* on, const DLTensor* other,
                const char* other_name) {
  if (!out || !other) return;
  const char *a0, *a1, *b0, *b1;
  byte_span(out, &a0, &a1);
  byte_span(other, &b0, &b1);
  if (a0 == a1 || b0 == b1) return;
  if (a0 < b1 && b0 < a1)
    check.fail(DLK_ERROR_LAYOUT, on, " overlaps ", other_name, " in memory; the op cannot run in place");
}

// The output's own elements must not overlap each other: sorted by stride, each stride exceeds the extent of the
// smaller ones.
void no_self_overlap(const Check& check, const DLTensor* t, const char* name) {
  std::int64_t st[kMaxDims];
  strides_of(t, st);
  std::vector<std::pair<std::int64_t, std::int64_t>> dims;  // (stride, size)
  for (int d = 0; d < t->ndim; ++d) {
    if (t->shape[d] == 0) return;
    if (t->shape[d] > 1) dims.emplace_back(st[d], t->shape[d]);
  }
  std::sort(dims.begin(), dims.end());
  std::int64_t extent = 0;  // largest offset reached by the dims so far
  for (auto& [stride, size] : dims) {
    if (stride <= extent)
      check.fail(DLK_ERROR_LAYOUT, name, " has overlapping elements (stride ", stride, " for shape ", shape_string(t),
                 "); an output needs distinct elements");
    extent += (size - 1) * stride;
  }
}

void read_matmul_params(const Check& check, const dlk_matmul_params* params, dlk_matmul_params* out) {
  dlk_matmul_params_init(out);
  if (!params) return;
  check.params_size(params->struct_size, offsetof(dlk_matmul_params, allow_tf32) + sizeof(int), "params");
  std::memcpy(out, params, std::min(params->struct_size, sizeof(*out)));
  check.finite(out->alpha, "params->alpha");
  check.finite(out->beta, "params->beta");
}

void read_linear_params(const Check& check, const dlk_linear_params* params, dlk_linear_params* out) {
  dlk_linear_params_init(out);
  if (params) {
    check.params_size(params->struct_size, offsetof(dlk_linear_params, accumulate) + sizeof(int), "params");
    std::memcpy(out, params, std::min(params->struct_size, sizeof(*out)));
  }
  const int act = enum_value(out->activation);
  if (act < DLK_EPILOGUE_NONE || act > DLK_EPILOGUE_GELU_TANH)
    check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->activation is ", act,
               ", expected a dlk_epilogue (DLK_EPILOGUE_NONE, _RELU, _GELU or _GELU_TANH)");
}

// A 2-D product on contiguous/simple operands built by the linear layer; strides already describe op(A), op(B).
MatmulArgs matmul_2d(DType dt, std::int64_t m, std::int64_t n, std::int64_t k, const void* a, std::int64_t a_rs,
                     std::int64_t a_cs, const void* b, std::int64_t b_rs, std::int64_t b_cs, void* c, float beta,
                     bool tf32) {
  MatmulArgs g;
  g.dtype = dt;
  g.m = m;
  g.n = n;
  g.k = k;
  g.a = a;
  g.b = b;
  g.c = c;
  g.a_rs = a_rs;
  g.a_cs = a_cs;
  g.b_rs = b_rs;
  g.b_cs = b_cs;
  g.c_rs = n;
  g.beta = beta;
  g.allow_tf32 = tf32;
  std::int64_t c_cs = 1;
  if (!normalize_matrix(m, k, &g.a_rs, &g.a_cs) || !normalize_matrix(k, n, &g.b_rs, &g.b_cs) ||
      !normalize_output(m, n, &g.c_rs, &c_cs))
    fail(DLK_ERROR_INTERNAL, "linear: internal: operand layout is not BLAS-legal");
  return g;
}

std::int64_t leading_rows(const DLTensor* t) {
  std::int64_t r = 1;
  for (int d = 0; d + 1 < t->ndim; ++d) r *= t->shape[d];
  return r;
}

}  // namespace
}  // namespace dlk

extern "C" {

DLK_API dlk_status dlk_matmul_params_init(dlk_matmul_params* params) {
  return dlk::guard("dlk_matmul_params_init", [&] {
    if (!params) dlk::fail(DLK_ERROR_INVALID_ARGUMENT, "dlk_matmul_params_init: params is NULL");
    std::memset(params, 0, sizeof(*params));
    params->struct_size = sizeof(*params);
    params->alpha = 1.0f;
    params->beta = 0.0f;
  });
}

DLK_API dlk_status dlk_linear_params_init(dlk_linear_params* params) {
  return dlk::guard("dlk_linear_params_init", [&] {
    if (!params) dlk::fail(DLK_ERROR_INVALID_ARGUMENT, "dlk_linear_params_init: params is NULL");
    std::memset(params, 0, sizeof(*params));
    params->struct_size = sizeof(*params);
    params->activation = DLK_EPILOGUE_NONE;
  });
}

DLK_API dlk_status dlk_matmul(dlk_context* context, const dlk_matmul_params* params, const DLTensor* a,
                              const DLTensor* b, DLTensor* c) {
  using namespace dlk;
  return with_context("matmul", context, [&](const Exec& exec) {
    Check check("matmul", context);
    dlk_matmul_params p;
    read_matmul_params(check, params, &p);
    DType dt = check.tensor(a, "a", 2);
    check.dtype_in(a, "a", {DType::F32, DType::F16, DType::BF16});
    check.tensor(b, "b", 2);
    check.tensor(c, "c", 2);
    check.same_dtype(a, "a", b, "b");
    check.same_dtype(a, "a", c, "c");
    std::int64_t as[kMaxDims], bs[kMaxDims], cs[kMaxDims];
    strides_of(a, as);
    strides_of(b, bs);
    strides_of(c, cs);
    const int an = a->ndim, bn = b->ndim, cn = c->ndim;
    // op(A) [M, K], op(B) [K, N]: a transpose swaps the sizes and the strides of the last two dims.
    const bool ta = p.transpose_a != 0, tb = p.transpose_b != 0;
    const std::int64_t m = a->shape[an - (ta ? 1 : 2)], ka = a->shape[an - (ta ? 2 : 1)];
    const std::int64_t kb = b->shape[bn - (tb ? 1 : 2)], n = b->shape[bn - (tb ? 2 : 1)];
    std::int64_t a_rs = as[an - (ta ? 1 : 2)], a_cs = as[an - (ta ? 2 : 1)];
    std::int64_t b_rs = bs[bn - (tb ? 1 : 2)], b_cs = bs[bn - (tb ? 2 : 1)];
    if (ka != kb) {
      std::int64_t opa[2] = {m, ka}, opb[2] = {kb, n};
      check.fail(DLK_ERROR_SHAPE, "inner dimensions do not match: op(a) is ", dims_string(opa, 2), " (a shape ",
                 shape_string(a), ta ? ", transposed" : "", ") and op(b) is ", dims_string(opb, 2), " (b shape ",
                 shape_string(b), tb ? ", transposed" : "", "); expected op(a) [M, K] and op(b) [K, N]");
    }
    const std::int64_t k = ka;
    // Broadcast batch dims, aligned from the right.
    const int nb = std::max(an, bn) - 2;
    std::int64_t bsz[kMaxDims] = {}, abs_[kMaxDims] = {}, bbs[kMaxDims] = {};
    for (int d = 0; d < nb; ++d) {
      const int da = d - (nb - (an - 2)), db = d - (nb - (bn - 2));
      const std::int64_t sa = da >= 0 ? a->shape[da] : 1, sb = db >= 0 ? b->shape[db] : 1;
      if (sa != sb && sa != 1 && sb != 1)
        check.fail(DLK_ERROR_SHAPE, "batch dims of a shape ", shape_string(a), " and b shape ", shape_string(b),
                   " do not broadcast (batch dim ", d, ": ", sa, " vs ", sb, ")");
      bsz[d] = sa == 1 ? sb : sa;
      abs_[d] = da >= 0 && sa != 1 ? as[da] : 0;
      bbs[d] = db >= 0 && sb != 1 ? bs[db] : 0;
    }
    std::int64_t want[kMaxDims];
    for (int d = 0; d < nb; ++d) want[d] = bsz[d];
    want[nb] = m;
    want[nb + 1] = n;
    check.shape_is(c, "c", want, nb + 2, "broadcast batch of a and b, then [M, N] of op(a) @ op(b)");
    std::int64_t c_rs = cs[cn - 2], c_cs = cs[cn - 1];
    if (m == 0 || n == 0) return;
    for (int d = 0; d < nb; ++d)
      if (bsz[d] == 0) return;
    if (!normalize_output(m, n, &c_rs, &c_cs))
      check.fail(DLK_ERROR_LAYOUT, "c must have unit stride in its last dim and a row stride >= N = ", n,
                 "; got strides (", cs[cn - 2], ", ", cs[cn - 1], ") for shape ", shape_string(c));
    if (k > 0 && !normalize_matrix(m, k, &a_rs, &a_cs))
      check.fail(DLK_ERROR_LAYOUT,
                 "a's matrices need one of their last two strides to be 1 (row- or column-major, "
                 "leading dimension >= the other size); got strides (",
                 as[an - 2], ", ", as[an - 1], ") for shape ", shape_string(a));
    if (k > 0 && !normalize_matrix(k, n, &b_rs, &b_cs))
      check.fail(DLK_ERROR_LAYOUT,
                 "b's matrices need one of their last two strides to be 1 (row- or column-major, "
                 "leading dimension >= the other size); got strides (",
                 bs[bn - 2], ", ", bs[bn - 1], ") for shape ", shape_string(b));
    no_self_overlap(check, c, "c");
    no_overlap(check, c, "c", a, "a");
    no_overlap(check, c, "c", b, "b");

    MatmulArgs g;
    g.dtype = dt;
    g.m = m;
    g.n = n;
    g.k = k;
    g.a = data_of(a);
    g.b = data_of(b);
    g.c = data_of(c);
    g.a_rs = a_rs;
    g.a_cs = a_cs;
    g.b_rs = b_rs;
    g.b_cs = b_cs;
    g.c_rs = c_rs;
    g.alpha = p.alpha;
    g.beta = p.beta;
    g.allow_tf32 = p.allow_tf32 != 0;
    // Collapse the batch: drop size-1 dims, merge neighbours whose strides chain in every operand.
    for (int d = 0; d < nb; ++d) {
      if (bsz[d] == 1) continue;
      const int q = g.batch_ndim;
      const std::int64_t cst = cs[d];
      if (q > 0 && g.a_bs[q - 1] == abs_[d] * bsz[d] && g.b_bs[q - 1] == bbs[d] * bsz[d] &&
          g.c_bs[q - 1] == cst * bsz[d]) {
        g.batch_sizes[q - 1] *= bsz[d];
        g.a_bs[q - 1] = abs_[d];
        g.b_bs[q - 1] = bbs[d];
        g.c_bs[q - 1] = cst;
      } else {
        g.batch_sizes[q] = bsz[d];
        g.a_bs[q] = abs_[d];
        g.b_bs[q] = bbs[d];
        g.c_bs[q] = cst;
        g.batch_ndim = q + 1;
      }
      g.batch *= bsz[d];
    }
    DLK_DISPATCH(matmul, g, exec);
  });
}

DLK_API dlk_status dlk_linear_forward(dlk_context* context, const dlk_linear_params* params, const DLTensor* x,
                                      const DLTensor* weight, const DLTensor* bias, DLTensor* y,
                                      DLTensor* pre_activation) {
  using namespace dlk;
  return with_context("linear_forward", context, [&](const Exec& exec) {
    Check check("linear_forward", context);
    dlk_linear_params p;
    read_linear_params(check, params, &p);
    const dlk_epilogue act = static_cast<dlk_epilogue>(enum_value(p.activation));
    DType dt = check.contiguous(x, "x", 1);
    check.dtype_in(x, "x", {DType::F32, DType::F16, DType::BF16});
    check.contiguous(weight, "weight", 2, 2);
    check.same_dtype(x, "x", weight, "weight");
    const std::int64_t in = x->shape[x->ndim - 1], out = weight->shape[0];
    if (weight->shape[1] != in)
      check.fail(DLK_ERROR_SHAPE, "weight shape ", shape_string(weight), " does not match x shape ", shape_string(x),
                 ": expected [out, ", in, "] (weight's last dim is x's last dim)");
    if (bias) {
      check.contiguous(bias, "bias", 1, 1);
      check.same_dtype(x, "x", bias, "bias");
      check.shape_is(bias, "bias", &out, 1, "[out], out = weight.shape[0]");
    }
    std::int64_t want[kMaxDims];
    for (int d = 0; d + 1 < x->ndim; ++d) want[d] = x->shape[d];
    want[x->ndim - 1] = out;
    check.contiguous(y, "y", 1);
    check.same_dtype(x, "x", y, "y");
    check.shape_is(y, "y", want, x->ndim, "x's leading dims, then out = weight.shape[0]");
    DLTensor* z = act == DLK_EPILOGUE_NONE ? nullptr : pre_activation;
    if (z) {
      check.contiguous(z, "pre_activation", 1);
      check.same_dtype(x, "x", z, "pre_activation");
      check.same_shape(y, "y", z, "pre_activation");
      no_overlap(check, z, "pre_activation", y, "y");
      no_overlap(check, z, "pre_activation", x, "x");
      no_overlap(check, z, "pre_activation", weight, "weight");
      no_overlap(check, z, "pre_activation", bias, "bias");
    }
    no_overlap(check, y, "y", x, "x");
    no_overlap(check, y, "y", weight, "weight");
    no_overlap(check, y, "y", bias, "bias");
    const std::int64_t rows = leading_rows(x);
    if (rows == 0 || out == 0) return;
    // y = x @ W^T: op(B) = W^T is [in, out] with element (p, j) at W[j, p].
    MatmulArgs g =
        matmul_2d(dt, rows, out, in, data_of(x), in, 1, data_of(weight), 1, in, data_of(y), 0.0f, p.allow_tf32 != 0);
    DLK_DISPATCH(matmul, g, exec);
    if (!bias && act == DLK_EPILOGUE_NONE) return;
    LinearEpilogueArgs e;
    e.dtype = dt;
    e.rows = rows;
    e.cols = out;
    e.y = data_of(y);
    e.bias = bias ? data_of(bias) : nullptr;
    e.z = z ? data_of(z) : nullptr;
    e.act = act;
    DLK_DISPATCH(linear_epilogue, e, exec);
  });
}

DLK_API dlk_status dlk_linear_backward(dlk_context* context, const dlk_linear_params* params, const DLTensor* dy,
                                       const DLTensor* x, const DLTensor* weight, const DLTensor* pre_activation,
                                       DLTensor* dx, DLTensor* dweight, DLTensor* dbias) {
  using namespace dlk;
  return with_context("linear_backward", context, [&](const Exec& exec) {
    Check check("linear_backward", context);
    dlk_linear_params p;
    read_linear_params(check, params, &p);
    const dlk_epilogue act = static_cast<dlk_epilogue>(enum_value(p.activation));
    DType dt = check.contiguous(x, "x", 1);
    check.dtype_in(x, "x", {DType::F32, DType::F16, DType::BF16});
    check.contiguous(weight, "weight", 2, 2);
    check.same_dtype(x, "x", weight, "weight");
    const std::int64_t in = x->shape[x->ndim - 1], out = weight->shape[0];
    if (weight->shape[1] != in)
      check.fail(DLK_ERROR_SHAPE, "weight shape ", shape_string(weight), " does not match x shape ", shape_string(x),
                 ": expected [out, ", in, "] (weight's last dim is x's last dim)");
    std::int64_t want[kMaxDims];
    for (int d = 0; d + 1 < x->ndim; ++d) want[d] = x->shape[d];
    want[x->ndim - 1] = out;
    check.contiguous(dy, "dy", 1);
    check.same_dtype(x, "x", dy, "dy");
    check.shape_is(dy, "dy", want, x->ndim, "x's leading dims, then out = weight.shape[0]");
    const DLTensor* z = act == DLK_EPILOGUE_NONE ? nullptr : pre_activation;
    if (act != DLK_EPILOGUE_NONE) {
      if (!pre_activation)
        check.fail(DLK_ERROR_INVALID_ARGUMENT, "pre_activation is NULL but params->activation is ",
                   static_cast<int>(act), "; the backward of an activation needs the saved z from linear_forward");
      check.contiguous(z, "pre_activation", 1);
      check.same_dtype(x, "x", z, "pre_activation");
      check.same_shape(dy, "dy", z, "pre_activation");
    }
    if (dx) {
      check.contiguous(dx, "dx", 1);
      check.same_dtype(x, "x", dx, "dx");
      check.same_shape(x, "x", dx, "dx");
    }
    if (dweight) {
      check.contiguous(dweight, "dweight", 2, 2);
      check.same_dtype(x, "x", dweight, "dweight");
      check.same_shape(weight, "weight", dweight, "dweight");
    }
    if (dbias) {
      check.contiguous(dbias, "dbias", 1, 1);
      check.same_dtype(x, "x", dbias, "dbias");
      check.shape_is(dbias, "dbias", &out, 1, "[out], out = weight.shape[0]");
    }
    const DLTensor* inputs[] = {dy, x, weight, z};
    const char* input_names[] = {"dy", "x", "weight", "pre_activation"};
    DLTensor* outputs[] = {dx, dweight, dbias};
    const char* output_names[] = {"dx", "dweight", "dbias"};
    for (int o = 0; o < 3; ++o) {
      for (int i = 0; i < 4; ++i) no_overlap(check, outputs[o], output_names[o], inputs[i], input_names[i]);
      for (int q = o + 1; q < 3; ++q) no_overlap(check, outputs[o], output_names[o], outputs[q], output_names[q]);
    }
    const std::int64_t rows = leading_rows(x);
    const bool tf32 = p.allow_tf32 != 0;
    const float beta = p.accumulate ? 1.0f : 0.0f;
    // g = dy * act'(z), in workspace memory, when there is an activation.
    const void* g = data_of(dy);
    if (act != DLK_EPILOGUE_NONE && rows > 0 && out > 0 && (dx || dweight || dbias)) {
      LinearActGradArgs ag;
      ag.dtype = dt;
      ag.n = rows * out;
      ag.dy = data_of(dy);
      ag.z = data_of(z);
      ag.g = exec.workspace(static_cast<std::size_t>(ag.n) * dtype_size(dt));
      ag.act = act;
      DLK_DISPATCH(linear_act_grad, ag, exec);
      g = ag.g;
    }
    if (dx && rows > 0 && in > 0) {  // dx [rows, in] = g [rows, out] @ W [out, in]
      MatmulArgs m = matmul_2d(dt, rows, in, out, g, out, 1, data_of(weight), in, 1, data_of(dx), 0.0f, tf32);
      DLK_DISPATCH(matmul, m, exec);
    }
    if (dweight && out > 0 && in > 0) {  // dW [out, in] (+)= g^T [out, rows] @ x [rows, in]
      MatmulArgs m = matmul_2d(dt, out, in, rows, g, 1, out, data_of(x), in, 1, data_of(dweight), beta, tf32);
      DLK_DISPATCH(matmul, m, exec);
    }
    if (dbias && out > 0) {
      BiasGradArgs bg;
      bg.dtype = dt;
      bg.rows = rows;
      bg.cols = out;
      bg.g = g;
      bg.db = data_of(dbias);
      bg.accumulate = p.accumulate != 0;
      DLK_DISPATCH(bias_grad, bg, exec);
    }
  });
}

}  // extern "C"
