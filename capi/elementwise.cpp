// C ABI of the elementwise family: activations, broadcast add/mul and their backward, sum_to_shape, scale, residual
// add, concat/split. Validate every argument, broadcast and coalesce the shapes, describe the call, dispatch.
#include "elementwise/elementwise.h"

#include <dlk/dlk.h>

#include <cstddef>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "activation/activation.h"
#include "capi/dispatch.h"
#include "capi/guard.h"
#include "capi/validate.h"

namespace dlk {
namespace {

// ------------------------------------------------------------------------------------------------- activations

const char* activation_name(int kind) {
  switch (kind) {
    case DLK_ACTIVATION_RELU: return "relu";
    case DLK_ACTIVATION_LEAKY_RELU: return "leaky_relu";
    case DLK_ACTIVATION_ELU: return "elu";
    case DLK_ACTIVATION_GELU: return "gelu";
    case DLK_ACTIVATION_GELU_TANH: return "gelu_tanh";
    case DLK_ACTIVATION_TANH: return "tanh";
    case DLK_ACTIVATION_SIGMOID: return "sigmoid";
    default: return "silu";
  }
}

struct Activation {
  int kind = DLK_ACTIVATION_RELU;
  float slope = 0.01f, alpha = 1.0f;
};

Activation read_activation(const Check& check, const dlk_activation_params* params) {
  dlk_activation_params p;
  dlk_activation_params_init(&p);
  if (params) {
    check.params_size(params->struct_size, offsetof(dlk_activation_params, alpha) + sizeof(float), "params");
    std::memcpy(&p, params, params->struct_size < sizeof(p) ? params->struct_size : sizeof(p));
  }
  Activation a;
  a.kind = enum_value(p.kind);
  if (a.kind < DLK_ACTIVATION_RELU || a.kind > DLK_ACTIVATION_SILU)
    check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->kind is ", a.kind, ", expected a dlk_activation_kind (0 to 7)");
  if (a.kind == DLK_ACTIVATION_LEAKY_RELU) check.finite(p.negative_slope, "params->negative_slope");
  if (a.kind == DLK_ACTIVATION_ELU) check.finite(p.alpha, "params->alpha");
  a.slope = p.negative_slope;
  a.alpha = p.alpha;
  return a;
}

DType float_tensor(const Check& check, const DLTensor* t, const char* name) {
  DType dt = check.contiguous(t, name);
  check.dtype_in(t, name, {DType::F32, DType::F16, DType::BF16});
  return dt;
}

// Like `ref` (same dtype and shape), contiguous.
void like(const Check& check, const DLTensor* ref, const char* rn, const DLTensor* t, const char* tn) {
  check.contiguous(t, tn);
  check.same_dtype(ref, rn, t, tn);
  check.same_shape(ref, rn, t, tn);
}

// ------------------------------------------------------------------------------------------- broadcasting

std::string shape_of(const std::int64_t* s, int n) {
  std::ostringstream o;
  o << '[';
  for (int i = 0; i < n; ++i) o << (i ? "," : "") << s[i];
  o << ']';
  return o.str();
}

// Up to three stride sets over one index space, coalesced: size-1 dims dropped, then a dim merged into the one
// outside it wherever every stride set is contiguous across the pair (stride[outer] == stride[inner] * size[inner];
// two broadcast dims merge too, 0 == 0 * size).
struct Layout {
  int ndim = 0;
  std::int64_t shape[kMaxDims] = {};
  std::int64_t stride[3][kMaxDims] = {};
};

Layout coalesce(int ndim, const std::int64_t* shape, const std::int64_t* const* strides, int sets) {
  Layout l;
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] == 1) continue;
    if (l.ndim > 0) {
      const int p = l.ndim - 1;
      bool merge = true;
      for (int k = 0; k < sets; ++k) merge = merge && l.stride[k][p] == strides[k][d] * shape[d];
      if (merge) {
        l.shape[p] *= shape[d];
        for (int k = 0; k < sets; ++k) l.stride[k][p] = strides[k][d];
        continue;
      }
    }
    l.shape[l.ndim] = shape[d];
    for (int k = 0; k < sets; ++k) l.stride[k][l.ndim] = strides[k][d];
    ++l.ndim;
  }
  return l;
}

// Compact row-major strides of `t` over an index space of rank nd (t aligned to the right), 0 where t broadcasts.
void broadcast_strides(const DLTensor* t, int nd, std::int64_t* out) {
  std::int64_t acc = 1;
  const int lead = nd - t->ndim;
  for (int d = nd - 1; d >= 0; --d) {
    if (d < lead) {
      out[d] = 0;
      continue;
    }
    const std::int64_t s = t->shape[d - lead];
    out[d] = s == 1 ? 0 : acc;
    acc *= s;
  }
}

// The broadcast shape of a and b (NumPy rules), or a failure naming both shapes and the first clashing dim.
int broadcast_shape(const Check& check, const DLTensor* a, const char* an, const DLTensor* b, const char* bn,
                    std::int64_t* out) {
  const int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
  for (int d = 0; d < nd; ++d) {
    const int da = d - (nd - a->ndim), db = d - (nd - b->ndim);
    const std::int64_t sa = da >= 0 ? a->shape[da] : 1, sb = db >= 0 ? b->shape[db] : 1;
    if (sa != sb && sa != 1 && sb != 1)
      check.fail(DLK_ERROR_SHAPE, an, " shape ", shape_string(a), " and ", bn, " shape ", shape_string(b),
                 " do not broadcast (aligned from the right, dim ", d, " of the result: ", sa, " vs ", sb, ")");
    out[d] = sa == 1 ? sb : sa;
  }
  return nd;
}

// `t`'s shape must broadcast to `shape` (rank nd): the reduction targets of sum_to_shape and the backward.
void broadcasts_to(const Check& check, const DLTensor* t, const char* tn, const DLTensor* full, const char* fn) {
  bool ok = t->ndim <= full->ndim;
  int bad = -1;
  for (int d = 0; ok && d < t->ndim; ++d) {
    const std::int64_t s = t->shape[d], f = full->shape[d + full->ndim - t->ndim];
    if (s != f && s != 1) {
      ok = false;
      bad = d + full->ndim - t->ndim;
    }
  }
  if (!ok) {
    if (bad < 0)
      check.fail(DLK_ERROR_SHAPE, tn, " shape ", shape_string(t), " does not broadcast to ", fn, " shape ",
                 shape_string(full), " (", tn, " has more dims)");
    check.fail(DLK_ERROR_SHAPE, tn, " shape ", shape_string(t), " does not broadcast to ", fn, " shape ",
               shape_string(full), " (dim ", bad, ": ", t->shape[bad - (full->ndim - t->ndim)], " vs ",
               full->shape[bad], ")");
  }
}

bool same_shape(const DLTensor* a, const DLTensor* b) {
  if (a->ndim != b->ndim) return false;
  for (int i = 0; i < a->ndim; ++i)
    if (a->shape[i] != b->shape[i]) return false;
  return true;
}

// out = op(a, b) with a, b broadcast to out. Validates shapes, dtypes and aliasing, then dispatches.
void binary(const Check& check, const Exec& exec, BinaryOp op, const DLTensor* a, const char* an, const DLTensor* b,
            const char* bn, float alpha, DLTensor* out, const char* on) {
  DType dt = float_tensor(check, a, an);
  if (op != BinaryOp::Scale) {
    check.contiguous(b, bn);
    check.same_dtype(a, an, b, bn);
  }
  check.contiguous(out, on);
  check.same_dtype(a, an, out, on);
  std::int64_t full[kMaxDims] = {};
  int nd = a->ndim;
  if (op == BinaryOp::Scale) {
    for (int d = 0; d < nd; ++d) full[d] = a->shape[d];
  } else {
    nd = broadcast_shape(check, a, an, b, bn, full);
  }
  bool out_ok = out->ndim == nd;
  for (int d = 0; out_ok && d < nd; ++d) out_ok = out->shape[d] == full[d];
  if (!out_ok) {
    if (op == BinaryOp::Scale)
      check.fail(DLK_ERROR_SHAPE, on, " has shape ", shape_string(out), ", expected ", shape_of(full, nd), " like ",
                 an);
    check.fail(DLK_ERROR_SHAPE, on, " has shape ", shape_string(out), ", expected ", shape_of(full, nd),
               ", the broadcast of ", an, " ", shape_string(a), " and ", bn, " ", shape_string(b));
  }
  const bool a_full = same_shape(a, out), b_full = op != BinaryOp::Scale && same_shape(b, out);
  check.no_partial_overlap(out, on, a, an);
  if (data_of(out) == data_of(a) && !a_full && numel(out) > 0)
    check.fail(DLK_ERROR_LAYOUT, on, " aliases ", an, ", which is broadcast (", an, " ", shape_string(a), ", ", on, " ",
               shape_string(out), "); only an operand of the output's shape may be overwritten");
  if (op != BinaryOp::Scale) {
    check.no_partial_overlap(out, on, b, bn);
    if (data_of(out) == data_of(b) && !b_full && numel(out) > 0)
      check.fail(DLK_ERROR_LAYOUT, on, " aliases ", bn, ", which is broadcast (", bn, " ", shape_string(b), ", ", on,
                 " ", shape_string(out), "); only an operand of the output's shape may be overwritten");
  }
  BinaryArgs args;
  args.dtype = dt;
  args.op = op;
  args.alpha = alpha;
  args.n = numel(out);
  if (args.n == 0) return;
  std::int64_t sa[kMaxDims] = {}, sb[kMaxDims] = {};
  broadcast_strides(a, nd, sa);
  if (op != BinaryOp::Scale) broadcast_strides(b, nd, sb);
  const std::int64_t* sets[2] = {sa, sb};
  const Layout l = coalesce(nd, full, sets, 2);
  args.ndim = l.ndim;
  bool b_scalar = true;
  for (int d = 0; d < l.ndim; ++d) {
    args.shape[d] = l.shape[d];
    args.a_stride[d] = l.stride[0][d];
    args.b_stride[d] = l.stride[1][d];
    b_scalar = b_scalar && l.stride[1][d] == 0;
  }
  args.a_flat = a_full;
  args.b_flat = b_full;
  args.b_scalar = op != BinaryOp::Scale && b_scalar;
  args.a = data_of(a);
  args.b = op == BinaryOp::Scale ? nullptr : data_of(b);
  args.out = data_of(out);
  DLK_DISPATCH(binary_forward, args, exec);
}

// out = scale * sum_to_shape(x * w) where out's (and w's) shape broadcast to x's. w may be NULL.
void sum_to(const Exec& exec, const DLTensor* x, const DLTensor* w, float scale, DLTensor* out) {
  const int nd = x->ndim;
  std::int64_t sx[kMaxDims] = {}, so[kMaxDims] = {}, sw[kMaxDims] = {};
  broadcast_strides(x, nd, sx);
  broadcast_strides(out, nd, so);
  if (w) broadcast_strides(w, nd, sw);
  ReduceArgs r;
  r.dtype = dtype_of(x->dtype);
  r.scale = scale;
  r.outputs = numel(out);
  if (r.outputs == 0) return;
  const std::int64_t* sets[3] = {sx, so, sw};
  const Layout l = coalesce(nd, x->shape, sets, 3);
  r.reduce_size = 1;
  for (int d = 0; d < l.ndim; ++d) {
    if (l.stride[1][d] != 0) {
      r.kept_shape[r.kept_ndim] = l.shape[d];
      r.kept_x[r.kept_ndim] = l.stride[0][d];
      r.kept_w[r.kept_ndim] = l.stride[2][d];
      ++r.kept_ndim;
    } else {
      r.red_shape[r.red_ndim] = l.shape[d];
      r.red_x[r.red_ndim] = l.stride[0][d];
      r.red_w[r.red_ndim] = l.stride[2][d];
      ++r.red_ndim;
      r.reduce_size *= l.shape[d];
    }
  }
  r.x = data_of(x);
  r.w = w ? data_of(w) : nullptr;
  r.out = data_of(out);
  DLK_DISPATCH(reduce_sum_to, r, exec);
}

// A gradient output of the broadcast backward: contiguous, dtype of dout, shape broadcasting to dout's, not
// overlapping the inputs.
void check_grad_out(const Check& check, const DLTensor* g, const char* gn, const DLTensor* dout) {
  check.contiguous(g, gn);
  check.same_dtype(dout, "dout", g, gn);
  broadcasts_to(check, g, gn, dout, "dout");
}

void no_overlap(const Check& check, const DLTensor* o, const char* on, const DLTensor* i, const char* in) {
  if (!o || !i) return;
  const char* op = static_cast<const char*>(data_of(o));
  const char* ip = static_cast<const char*>(data_of(i));
  const std::size_t ob = static_cast<std::size_t>(numel(o)) * dtype_size(dtype_of(o->dtype));
  const std::size_t ib = static_cast<std::size_t>(numel(i)) * dtype_size(dtype_of(i->dtype));
  if (ob == 0 || ib == 0) return;
  if (op < ip + ib && ip < op + ob) check.fail(DLK_ERROR_LAYOUT, on, " overlaps ", in, "; it must not");
}

// Normalises a torch-style dim (negative counts from the end) for rank nd.
int norm_dim(const Check& check, int dim, int nd, const char* what) {
  if (dim < -nd || dim >= nd)
    check.fail(DLK_ERROR_INVALID_ARGUMENT, "dim is ", dim, ", expected ", -nd, " to ", nd - 1, " for ", what,
               " of rank ", nd);
  return dim < 0 ? dim + nd : dim;
}

// concat and split: `joined` is the concatenation of `parts` along dim. Checks every part against joined and builds
// the byte view.
void concat_or_split(const Check& check, const Exec& exec, bool split, const DLTensor* joined, const char* jn,
                     const DLTensor* const* parts, int n, const char* pn, int dim) {
  check.contiguous(joined, jn, 1);
  if (!parts) check.fail(DLK_ERROR_INVALID_ARGUMENT, pn, " is NULL");
  if (n < 1) check.fail(DLK_ERROR_INVALID_ARGUMENT, "num_", pn, " is ", n, ", expected at least 1");
  const int nd = joined->ndim;
  const int d = norm_dim(check, dim, nd, jn);
  const DType dt = dtype_of(joined->dtype);
  const std::int64_t esize = static_cast<std::int64_t>(dtype_size(dt));
  std::int64_t outer = 1, inner = 1;
  for (int k = 0; k < d; ++k) outer *= joined->shape[k];
  for (int k = d + 1; k < nd; ++k) inner *= joined->shape[k];
  std::vector<std::int64_t> cols(static_cast<std::size_t>(n)), begin(static_cast<std::size_t>(n));
  std::vector<void*> data(static_cast<std::size_t>(n));
  std::int64_t total = 0;
  for (int i = 0; i < n; ++i) {
    const DLTensor* p = parts[i];
    const std::string name = std::string(pn) + "[" + std::to_string(i) + "]";
    if (!p) check.fail(DLK_ERROR_INVALID_ARGUMENT, name, " is NULL");
    check.contiguous(p, name.c_str());
    if (dtype_of(p->dtype) != dt)
      check.fail(DLK_ERROR_DTYPE, name, " has dtype ", dtype_name(dtype_of(p->dtype)), ", expected ", dtype_name(dt),
                 " like ", jn);
    if (p->ndim != nd)
      check.fail(DLK_ERROR_SHAPE, name, " has rank ", p->ndim, " (shape ", shape_string(p), "), expected ", nd,
                 " like ", jn, " ", shape_string(joined));
    for (int k = 0; k < nd; ++k)
      if (k != d && p->shape[k] != joined->shape[k])
        check.fail(DLK_ERROR_SHAPE, name, " has shape ", shape_string(p), ", which differs from ", jn, " ",
                   shape_string(joined), " in dim ", k, " (", p->shape[k], " vs ", joined->shape[k], "); only dim ", d,
                   " may differ");
    total += p->shape[d];
    cols[static_cast<std::size_t>(i)] = p->shape[d] * inner * esize;
    data[static_cast<std::size_t>(i)] = data_of(p);
  }
  if (total != joined->shape[d]) {
    std::ostringstream sizes;
    for (int i = 0; i < n; ++i) sizes << (i ? "+" : "") << parts[i]->shape[d];
    check.fail(DLK_ERROR_SHAPE, "the sizes of ", pn, " along dim ", d, " add up to ", total, " (", sizes.str(),
               "), but ", jn, " ", shape_string(joined), " has ", joined->shape[d]);
  }
  for (int i = 0; i < n; ++i) {
    const std::string name = std::string(pn) + "[" + std::to_string(i) + "]";
    no_overlap(check, split ? parts[i] : joined, split ? name.c_str() : jn, split ? joined : parts[i],
               split ? jn : name.c_str());
    if (split)
      for (int j = 0; j < i; ++j) {
        const std::string other = std::string(pn) + "[" + std::to_string(j) + "]";
        no_overlap(check, parts[i], name.c_str(), parts[j], other.c_str());
      }
  }
  std::int64_t acc = 0;
  for (int i = 0; i < n; ++i) {
    begin[static_cast<std::size_t>(i)] = acc;
    acc += cols[static_cast<std::size_t>(i)];
  }
  ConcatArgs a;
  a.split = split;
  a.outer = outer;
  a.total_cols = joined->shape[d] * inner * esize;
  a.parts = n;
  a.cols = cols.data();
  a.col_begin = begin.data();
  a.part_data = data.data();
  a.joined = data_of(joined);
  if (outer == 0 || a.total_cols == 0) return;
  DLK_DISPATCH(concat_copy, a, exec);
}

}  // namespace
}  // namespace dlk

extern "C" {

DLK_API dlk_status dlk_activation_params_init(dlk_activation_params* params) {
  return dlk::guard("dlk_activation_params_init", [&] {
    if (!params) dlk::fail(DLK_ERROR_INVALID_ARGUMENT, "dlk_activation_params_init: params is NULL");
    std::memset(params, 0, sizeof(*params));
    params->struct_size = sizeof(*params);
    params->kind = DLK_ACTIVATION_RELU;
    params->negative_slope = 0.01f;
    params->alpha = 1.0f;
  });
}

DLK_API dlk_status dlk_activation_forward(dlk_context* context, const dlk_activation_params* params, const DLTensor* x,
                                          DLTensor* y) {
  using namespace dlk;
  return with_context("activation_forward", context, [&](const Exec& exec) {
    Check check("activation_forward", context);
    const Activation act = read_activation(check, params);
    DType dt = float_tensor(check, x, "x");
    like(check, x, "x", y, "y");
    check.no_partial_overlap(y, "y", x, "x");
    ActivationForwardArgs a;
    a.dtype = dt;
    a.n = numel(x);
    a.kind = act.kind;
    a.slope = act.slope;
    a.alpha = act.alpha;
    a.x = data_of(x);
    a.y = data_of(y);
    if (a.n == 0) return;
    DLK_DISPATCH(activation_forward, a, exec);
  });
}

DLK_API dlk_status dlk_activation_backward(dlk_context* context, const dlk_activation_params* params, const DLTensor* x,
                                           const DLTensor* y, const DLTensor* dy, DLTensor* dx) {
  using namespace dlk;
  return with_context("activation_backward", context, [&](const Exec& exec) {
    Check check("activation_backward", context);
    const Activation act = read_activation(check, params);
    // Which saved tensor this kind reads (see dlk.h).
    bool from_output = false;
    switch (act.kind) {
      case DLK_ACTIVATION_RELU:
      case DLK_ACTIVATION_TANH:
      case DLK_ACTIVATION_SIGMOID: from_output = y != nullptr; break;
      case DLK_ACTIVATION_ELU: from_output = x == nullptr; break;
      default: from_output = false; break;
    }
    const DLTensor* saved = from_output ? y : x;
    const char* sn = from_output ? "y" : "x";
    if (!saved) {
      const bool either = act.kind == DLK_ACTIVATION_RELU || act.kind == DLK_ACTIVATION_TANH ||
                          act.kind == DLK_ACTIVATION_SIGMOID || act.kind == DLK_ACTIVATION_ELU;
      check.fail(DLK_ERROR_INVALID_ARGUMENT, either ? "x and y are both NULL; " : "x is NULL; ",
                 activation_name(act.kind), " backward needs ",
                 either ? "the saved input x or output y" : "the saved input x");
    }
    if (from_output && act.kind == DLK_ACTIVATION_ELU && act.alpha < 0)
      check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->alpha is ", act.alpha,
                 ": elu backward from the output y needs alpha >= 0 (pass x instead)");
    DType dt = float_tensor(check, saved, sn);
    like(check, saved, sn, dy, "dy");
    like(check, saved, sn, dx, "dx");
    check.no_partial_overlap(dx, "dx", dy, "dy");
    check.no_partial_overlap(dx, "dx", saved, sn);
    ActivationBackwardArgs a;
    a.dtype = dt;
    a.n = numel(saved);
    a.kind = act.kind;
    a.slope = act.slope;
    a.alpha = act.alpha;
    a.saved = data_of(saved);
    a.from_output = from_output;
    a.dy = data_of(dy);
    a.dx = data_of(dx);
    if (a.n == 0) return;
    DLK_DISPATCH(activation_backward, a, exec);
  });
}

DLK_API dlk_status dlk_add_forward(dlk_context* context, const DLTensor* a, const DLTensor* b, float alpha,
                                   DLTensor* out) {
  using namespace dlk;
  return with_context("add_forward", context, [&](const Exec& exec) {
    Check check("add_forward", context);
    check.finite(alpha, "alpha");
    binary(check, exec, BinaryOp::Add, a, "a", b, "b", alpha, out, "out");
  });
}

DLK_API dlk_status dlk_mul_forward(dlk_context* context, const DLTensor* a, const DLTensor* b, DLTensor* out) {
  using namespace dlk;
  return with_context("mul_forward", context, [&](const Exec& exec) {
    Check check("mul_forward", context);
    binary(check, exec, BinaryOp::Mul, a, "a", b, "b", 1.0f, out, "out");
  });
}

DLK_API dlk_status dlk_scale(dlk_context* context, const DLTensor* x, float alpha, DLTensor* y) {
  using namespace dlk;
  return with_context("scale", context, [&](const Exec& exec) {
    Check check("scale", context);
    check.finite(alpha, "alpha");
    binary(check, exec, BinaryOp::Scale, x, "x", nullptr, "", alpha, y, "y");
  });
}

DLK_API dlk_status dlk_residual_add(dlk_context* context, const DLTensor* x, float alpha, DLTensor* y) {
  using namespace dlk;
  return with_context("residual_add", context, [&](const Exec& exec) {
    Check check("residual_add", context);
    check.finite(alpha, "alpha");
    float_tensor(check, y, "y");
    check.tensor(x, "x");
    // y's shape is the result: x must broadcast to it (a larger x is an error naming both shapes).
    broadcasts_to(check, x, "x", y, "y");
    binary(check, exec, BinaryOp::Add, y, "y", x, "x", alpha, y, "y");
  });
}

DLK_API dlk_status dlk_sum_to_shape(dlk_context* context, const DLTensor* x, float scale, DLTensor* out) {
  using namespace dlk;
  return with_context("sum_to_shape", context, [&](const Exec& exec) {
    Check check("sum_to_shape", context);
    check.finite(scale, "scale");
    float_tensor(check, x, "x");
    check.contiguous(out, "out");
    check.same_dtype(x, "x", out, "out");
    broadcasts_to(check, out, "out", x, "x");
    no_overlap(check, out, "out", x, "x");
    sum_to(exec, x, nullptr, scale, out);
  });
}

DLK_API dlk_status dlk_add_backward(dlk_context* context, const DLTensor* dout, float alpha, DLTensor* da,
                                    DLTensor* db) {
  using namespace dlk;
  return with_context("add_backward", context, [&](const Exec& exec) {
    Check check("add_backward", context);
    check.finite(alpha, "alpha");
    float_tensor(check, dout, "dout");
    if (da) check_grad_out(check, da, "da", dout);
    if (db) check_grad_out(check, db, "db", dout);
    no_overlap(check, da, "da", dout, "dout");
    no_overlap(check, db, "db", dout, "dout");
    no_overlap(check, db, "db", da, "da");
    if (da) sum_to(exec, dout, nullptr, 1.0f, da);
    if (db) sum_to(exec, dout, nullptr, alpha, db);
  });
}

DLK_API dlk_status dlk_mul_backward(dlk_context* context, const DLTensor* a, const DLTensor* b, const DLTensor* dout,
                                    DLTensor* da, DLTensor* db) {
  using namespace dlk;
  return with_context("mul_backward", context, [&](const Exec& exec) {
    Check check("mul_backward", context);
    float_tensor(check, dout, "dout");
    if (da) {
      if (!b) check.fail(DLK_ERROR_INVALID_ARGUMENT, "b is NULL; da = sum_to_shape(dout * b) needs it");
      check_grad_out(check, da, "da", dout);
      check.contiguous(b, "b");
      check.same_dtype(dout, "dout", b, "b");
      broadcasts_to(check, b, "b", dout, "dout");
      if (a) check.same_shape(a, "a", da, "da");
    }
    if (db) {
      if (!a) check.fail(DLK_ERROR_INVALID_ARGUMENT, "a is NULL; db = sum_to_shape(dout * a) needs it");
      check_grad_out(check, db, "db", dout);
      check.contiguous(a, "a");
      check.same_dtype(dout, "dout", a, "a");
      broadcasts_to(check, a, "a", dout, "dout");
      if (b) check.same_shape(b, "b", db, "db");
    }
    for (DLTensor* g : {da, db}) {
      const char* gn = g == da ? "da" : "db";
      no_overlap(check, g, gn, dout, "dout");
      no_overlap(check, g, gn, a, "a");
      no_overlap(check, g, gn, b, "b");
    }
    no_overlap(check, db, "db", da, "da");
    if (da) sum_to(exec, dout, b, 1.0f, da);
    if (db) sum_to(exec, dout, a, 1.0f, db);
  });
}

DLK_API dlk_status dlk_concat(dlk_context* context, const DLTensor* const* inputs, int num_inputs, int dim,
                              DLTensor* out) {
  using namespace dlk;
  return with_context("concat", context, [&](const Exec& exec) {
    Check check("concat", context);
    concat_or_split(check, exec, false, out, "out", inputs, num_inputs, "inputs", dim);
  });
}

DLK_API dlk_status dlk_split(dlk_context* context, const DLTensor* x, int dim, DLTensor* const* outputs,
                             int num_outputs) {
  using namespace dlk;
  return with_context("split", context, [&](const Exec& exec) {
    Check check("split", context);
    concat_or_split(check, exec, true, x, "x", outputs, num_outputs, "outputs", dim);
  });
}

}  // extern "C"
