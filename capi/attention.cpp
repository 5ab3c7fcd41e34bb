// C ABI of masked scaled-dot-product attention: validate every argument, describe the call, dispatch.
#include <dlk/dlk.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "attention/attention.h"
#include "capi/dispatch.h"
#include "capi/guard.h"
#include "capi/validate.h"

namespace dlk {
namespace {

constexpr std::int64_t kMaxHeadDim = 256;

void read_params(const Check& check, const dlk_attention_params* params, dlk_attention_params* out) {
  dlk_attention_params_init(out);
  if (!params) return;
  check.params_size(params->struct_size, offsetof(dlk_attention_params, offset) + sizeof(std::uint64_t), "params");
  std::memcpy(out, params, params->struct_size < sizeof(*out) ? params->struct_size : sizeof(*out));
  out->struct_size = sizeof(*out);
  check.finite(out->scale, "params->scale");
  if (!(out->dropout_p >= 0.0f && out->dropout_p < 1.0f))
    check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->dropout_p is ", out->dropout_p,
               ", expected a probability in [0, 1)");
}

// A [B, H, T, D] operand: rank 4, float dtype, unit stride on D. Returns its strides.
AttentionStrides operand(const Check& check, const DLTensor* t, const char* name) {
  check.tensor(t, name, 4, 4);
  check.dtype_in(t, name, {DType::F32, DType::F16, DType::BF16});
  std::int64_t s[kMaxDims];
  strides_of(t, s);
  if (t->shape[3] > 1 && s[3] != 1)
    check.fail(DLK_ERROR_LAYOUT, name, " has stride ", s[3], " on its last dim (D), expected 1");
  // The farthest element must be addressable in int64 bytes.
  std::int64_t far = 0;
  for (int d = 0; d < 4; ++d) {
    if (t->shape[d] > 1 && s[d] > (INT64_MAX / 8 - far) / (t->shape[d] - 1))
      check.fail(DLK_ERROR_OVERFLOW, name, " strides address more than 2^60 elements");
    if (t->shape[d] > 1) far += (t->shape[d] - 1) * s[d];
  }
  AttentionStrides st;
  st.b = s[0];
  st.h = s[1];
  st.t = s[2];
  return st;
}

// Byte range [lo, hi) that a tensor's elements occupy; lo == hi when empty.
struct Span {
  const char* lo = nullptr;
  const char* hi = nullptr;
};

Span span_of(const DLTensor* t) {
  Span sp;
  const char* base = static_cast<const char*>(data_of(t));
  if (numel(t) == 0) return sp;
  std::int64_t s[kMaxDims];
  strides_of(t, s);
  std::int64_t far = 0;
  for (int d = 0; d < t->ndim; ++d) far += (t->shape[d] - 1) * s[d];
  const std::int64_t es = static_cast<std::int64_t>(dtype_size(dtype_of(t->dtype)));
  sp.lo = base;
  sp.hi = base + (far + 1) * es;
  return sp;
}

// Whether delta (elements) is a difference of two element offsets of a tensor with these sizes and strides, i.e.
// delta = sum_k c_k s_k with |c_k| <= n_k - 1. Depth-first over the dims by decreasing stride; `reach[k]` is what the
// dims after k can add at most. Answers true (overlap) when the search would branch too much.
bool offset_difference(const std::vector<std::int64_t>& n, const std::vector<std::int64_t>& s,
                       const std::vector<std::int64_t>& reach, std::size_t k, std::int64_t delta, int* budget) {
  if (k == n.size()) return delta == 0;
  if (--*budget < 0) return true;
  const std::int64_t r = reach[k];
  // c with |delta - c s| <= r, |c| <= n - 1.
  std::int64_t lo = delta - r, hi = delta + r;
  auto floor_div = [](std::int64_t a, std::int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); };
  std::int64_t c_lo = -floor_div(-lo, s[k]), c_hi = floor_div(hi, s[k]);
  c_lo = std::max(c_lo, -(n[k] - 1));
  c_hi = std::min(c_hi, n[k] - 1);
  for (std::int64_t c = c_lo; c <= c_hi; ++c)
    if (offset_difference(n, s, reach, k + 1, delta - c * s[k], budget)) return true;
  return false;
}

// `out` must share no element with `in`. Interleaved tensors (dq, dk and dv as views of one fused [B,T,3,H,D]
// buffer) pass: when the byte ranges meet, two tensors of one dtype, shape and strides are disjoint exactly when
// their base distance is no difference of two element offsets.
void no_overlap(const Check& check, const DLTensor* out, const char* on, const DLTensor* in, const char* in_name) {
  if (!out || !in) return;
  const Span a = span_of(out), b = span_of(in);
  if (a.lo == a.hi || b.lo == b.hi || a.hi <= b.lo || b.hi <= a.lo) return;
  bool overlap = true;
  const DType dt = dtype_of(out->dtype);
  const std::int64_t es = static_cast<std::int64_t>(dtype_size(dt));
  const std::int64_t bytes = b.lo - a.lo;
  std::int64_t sa[kMaxDims], sb[kMaxDims];
  strides_of(out, sa);
  strides_of(in, sb);
  bool same = dt == dtype_of(in->dtype) && out->ndim == in->ndim && bytes % es == 0 && bytes != 0;
  for (int d = 0; same && d < out->ndim; ++d)
    same = out->shape[d] == in->shape[d] && (out->shape[d] == 1 || sa[d] == sb[d]);
  if (same) {
    std::vector<int> dims;
    for (int d = 0; d < out->ndim; ++d)
      if (out->shape[d] > 1 && sa[d] > 0) dims.push_back(d);
    std::sort(dims.begin(), dims.end(), [&](int x, int y) { return sa[x] > sa[y]; });
    std::vector<std::int64_t> n, s, reach(dims.size() + 1, 0);
    for (int d : dims) {
      n.push_back(out->shape[d]);
      s.push_back(sa[d]);
    }
    for (std::size_t k = dims.size(); k-- > 0;) reach[k] = reach[k + 1] + (n[k] - 1) * s[k];
    // reach[k] as used by offset_difference is what dims after k add: shift by one.
    std::vector<std::int64_t> after(dims.size(), 0);
    for (std::size_t k = 0; k < dims.size(); ++k) after[k] = reach[k + 1];
    int budget = 4096;
    overlap = offset_difference(n, s, after, 0, bytes / es, &budget);
  }
  if (overlap) check.fail(DLK_ERROR_LAYOUT, on, " overlaps ", in_name, "; attention outputs may not alias any input");
}

AttentionMask build_mask(const Check& check, const dlk_attention_params& p, std::int64_t B, std::int64_t H,
                         std::int64_t Tq, std::int64_t Tk) {
  AttentionMask m;
  const int kind = enum_value(p.mask_kind);
  switch (kind) {
    case DLK_MASK_NONE: break;
    case DLK_MASK_CAUSAL: m.causal_offset = 0; break;
    case DLK_MASK_CAUSAL_BOTTOM_RIGHT: m.causal_offset = Tk - Tq; break;
    case DLK_MASK_KEY_PADDING: {
      DType lt = check.contiguous(p.lengths, "params->lengths", 1, 1);
      check.dtype_in(p.lengths, "params->lengths", {DType::I32, DType::I64});
      check.shape_is(p.lengths, "params->lengths", &B, 1, "one length per batch entry of q");
      m.lengths = data_of(p.lengths);
      m.lengths_dtype = lt;
      break;
    }
    case DLK_MASK_TENSOR: {
      const DLTensor* mk = p.mask;
      DType mt = check.tensor(mk, "params->mask", 0, 4);
      check.dtype_in(mk, "params->mask", {DType::I8, DType::U8, DType::F32, DType::F16, DType::BF16});
      const std::int64_t full[4] = {B, H, Tq, Tk};
      std::int64_t ms[kMaxDims];
      strides_of(mk, ms);
      std::int64_t st[4] = {0, 0, 0, 0};
      const int lead = 4 - mk->ndim;
      for (int d = lead; d < 4; ++d) {
        const std::int64_t size = mk->shape[d - lead];
        if (size == full[d]) {
          st[d] = size == 1 ? 0 : ms[d - lead];
        } else if (size == 1) {
          st[d] = 0;
        } else {
          check.fail(DLK_ERROR_SHAPE, "params->mask shape ", shape_string(mk), " does not broadcast to [", B, ",", H,
                     ",", Tq, ",", Tk, "] (dim ", d, ": ", size, " vs ", full[d], ")");
        }
      }
      m.mask = data_of(mk);
      m.mask_dtype = mt;
      m.sb = st[0];
      m.sh = st[1];
      m.si = st[2];
      m.sj = st[3];
      break;
    }
    default:
      check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->mask_kind is ", kind, ", expected a dlk_mask_kind (0 to 4)");
  }
  m.kind = static_cast<dlk_mask_kind>(kind);
  return m;
}

// Everything both directions share: operands q, k, v (and out), shapes, scale, mask, dropout.
AttentionArgs common_args(const Check& check, const dlk_attention_params& p, const Exec& exec, const DLTensor* q,
                          const DLTensor* k, const DLTensor* v) {
  AttentionArgs a;
  a.sq = operand(check, q, "q");
  a.sk = operand(check, k, "k");
  a.sv = operand(check, v, "v");
  check.same_dtype(q, "q", k, "k");
  check.same_dtype(q, "q", v, "v");
  a.dtype = dtype_of(q->dtype);
  a.B = q->shape[0];
  a.H = q->shape[1];
  a.Tq = q->shape[2];
  a.D = q->shape[3];
  a.Tk = k->shape[2];
  if (a.D < 1 || a.D > kMaxHeadDim)
    check.fail(DLK_ERROR_SHAPE, "q has head dim (shape[3]) ", a.D, ", expected 1 to ", kMaxHeadDim);
  const std::int64_t kshape[4] = {a.B, a.H, a.Tk, a.D};
  check.shape_is(k, "k", kshape, 4, "[B, H, Tk, D] with B, H, D of q");
  check.shape_is(v, "v", kshape, 4, "the shape of k");
  a.scale = p.scale == 0.0f ? static_cast<float>(1.0 / std::sqrt(static_cast<double>(a.D))) : p.scale;
  a.mask = build_mask(check, p, a.B, a.H, a.Tq, a.Tk);
  if (p.dropout_p > 0.0f) {
    // The dropout op's rule (capi/random.cpp): keep when the top 24 bits < ceil((1 - p) 2^24), kept values scaled
    // by 1 / (1 - p).
    const double keep = 1.0 - static_cast<double>(p.dropout_p);
    a.dropout = true;
    a.keep_threshold = static_cast<std::uint32_t>(std::ceil(keep * 16777216.0));
    a.dropout_scale = static_cast<float>(1.0 / keep);
    a.seed = p.seed;
    a.offset = p.offset;
  }
  (void)exec;
  return a;
}

void check_lse(const Check& check, const DLTensor* lse, const AttentionArgs& a) {
  check.contiguous(lse, "lse", 3, 3);
  check.dtype_in(lse, "lse", {DType::F32});
  const std::int64_t shape[3] = {a.B, a.H, a.Tq};
  check.shape_is(lse, "lse", shape, 3, "[B, H, Tq] of q");
}

}  // namespace
}  // namespace dlk

extern "C" {

DLK_API dlk_status dlk_attention_params_init(dlk_attention_params* params) {
  return dlk::guard("dlk_attention_params_init", [&] {
    if (!params) dlk::fail(DLK_ERROR_INVALID_ARGUMENT, "dlk_attention_params_init: params is NULL");
    std::memset(params, 0, sizeof(*params));
    params->struct_size = sizeof(*params);
    params->scale = 0.0f;
    params->mask_kind = DLK_MASK_NONE;
    params->dropout_p = 0.0f;
  });
}

DLK_API dlk_status dlk_attention_forward(dlk_context* context, const dlk_attention_params* params, const DLTensor* q,
                                         const DLTensor* k, const DLTensor* v, DLTensor* out, DLTensor* lse) {
  using namespace dlk;
  return with_context("attention_forward", context, [&](const Exec& exec) {
    Check check("attention_forward", context);
    dlk_attention_params p;
    read_params(check, params, &p);
    AttentionArgs a = common_args(check, p, exec, q, k, v);
    a.so = operand(check, out, "out");
    check.same_dtype(q, "q", out, "out");
    check.same_shape(q, "q", out, "out");
    if (lse) check_lse(check, lse, a);
    for (auto [t, n] : {std::pair{q, "q"}, {k, "k"}, {v, "v"}}) {
      no_overlap(check, out, "out", t, n);
      no_overlap(check, lse, "lse", t, n);
    }
    no_overlap(check, lse, "lse", out, "out");
    if (p.mask_kind == DLK_MASK_TENSOR) {
      no_overlap(check, out, "out", p.mask, "params->mask");
      no_overlap(check, lse, "lse", p.mask, "params->mask");
    }
    a.out = data_of(out);
    a.out_w = data_of(out);
    a.lse = lse ? static_cast<float*>(data_of(lse)) : nullptr;
    a.q = data_of(q);
    a.k = data_of(k);
    a.v = data_of(v);
    if (a.B == 0 || a.H == 0 || a.Tq == 0) return;
    DLK_DISPATCH(attention_forward, a, exec);
  });
}

DLK_API dlk_status dlk_attention_backward(dlk_context* context, const dlk_attention_params* params, const DLTensor* q,
                                          const DLTensor* k, const DLTensor* v, const DLTensor* out,
                                          const DLTensor* lse, const DLTensor* d_out, DLTensor* dq, DLTensor* dk,
                                          DLTensor* dv) {
  using namespace dlk;
  return with_context("attention_backward", context, [&](const Exec& exec) {
    Check check("attention_backward", context);
    dlk_attention_params p;
    read_params(check, params, &p);
    AttentionArgs a = common_args(check, p, exec, q, k, v);
    a.so = operand(check, out, "out");
    check.same_dtype(q, "q", out, "out");
    check.same_shape(q, "q", out, "out");
    check_lse(check, lse, a);
    a.sdo = operand(check, d_out, "d_out");
    check.same_dtype(q, "q", d_out, "d_out");
    check.same_shape(q, "q", d_out, "d_out");
    a.sdq = operand(check, dq, "dq");
    check.same_dtype(q, "q", dq, "dq");
    check.same_shape(q, "q", dq, "dq");
    a.sdk = operand(check, dk, "dk");
    check.same_dtype(q, "q", dk, "dk");
    check.same_shape(k, "k", dk, "dk");
    a.sdv = operand(check, dv, "dv");
    check.same_dtype(q, "q", dv, "dv");
    check.same_shape(v, "v", dv, "dv");
    const DLTensor* mask = p.mask_kind == DLK_MASK_TENSOR ? p.mask : nullptr;
    for (auto [o, on] : {std::pair{dq, "dq"}, {dk, "dk"}, {dv, "dv"}}) {
      for (auto [t, n] : {std::pair{q, "q"}, {k, "k"}, {v, "v"}, {out, "out"}, {lse, "lse"}, {d_out, "d_out"},
                          {mask, "params->mask"}})
        no_overlap(check, o, on, t, n);
    }
    no_overlap(check, dq, "dq", dk, "dk");
    no_overlap(check, dq, "dq", dv, "dv");
    no_overlap(check, dk, "dk", dv, "dv");
    a.q = data_of(q);
    a.k = data_of(k);
    a.v = data_of(v);
    a.out = data_of(out);
    a.lse = static_cast<float*>(data_of(lse));
    a.d_out = data_of(d_out);
    a.dq = data_of(dq);
    a.dk = data_of(dk);
    a.dv = data_of(dv);
    if (a.B == 0 || a.H == 0 || (a.Tq == 0 && a.Tk == 0)) return;
    DLK_DISPATCH(attention_backward, a, exec);
  });
}

}  // extern "C"
