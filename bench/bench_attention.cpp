// Masked scaled-dot-product attention through the public C API, at GPT-2 / nanoGPT shapes: q, k, v, out
// [B, H, T, D]. Forward for no mask, causal and key padding; backward (from the forward's out and lse) for no mask
// and causal. Baseline in the same run, same buffers and timing: the naive three-call version, S = scale Q K^T
// (dlk_matmul: cuBLAS on cuda, OpenBLAS on cpu), P = softmax(S) (dlk_softmax_forward with the same mask), O = P V
// (dlk_matmul), which stores the [B, H, T, T] matrix (cases where it would exceed 2 GiB are not registered).
//
// Counters: `TFLOP/s` counts the two products of the forward, 4 B H T^2 D, and 2.5 times that for the backward (its
// five products), halved for causal masks (half the scores exist); key padding counts the full T^2 (lengths keep
// between half and all keys). `bytes` is q, k, v read and out (+ lse) written; backward also dout read and dq, dk, dv
// written. Keep the shapes and keys in step with attention_cases() in bench/compare_torch.py.
#include <string>
#include <vector>

#include "bench_common.h"

namespace {

using dlkb::Dtype;
using dlkb::Env;
using dlkb::Tensor;

struct Shape {
  int64_t b, h, t, d;
  std::string key;
};

Shape shape(int64_t b, int64_t h, int64_t t, int64_t d) {
  return {b, h, t, d, dlkb::dims({{"B", b}, {"H", h}, {"T", t}, {"D", d}})};
}

// GPU: GPT-2 small (B = 8, H = 12, D = 64) at T = 256 and 1024, nanoGPT's GPT-2 training config (B = 12, H = 12,
// T = 1024), nanoGPT shakespeare-char (B = 64, H = 6, T = 256), long contexts at T = 4096 (B = 8, H = 16, D = 64
// and D = 128) and T = 16384 (B = 1, H = 16, D = 128).
std::vector<Shape> gpu_shapes() {
  return {shape(8, 12, 256, 64),  shape(8, 12, 1024, 64), shape(12, 12, 1024, 64), shape(64, 6, 256, 64),
          shape(8, 16, 4096, 64), shape(8, 16, 4096, 128), shape(1, 16, 16384, 128)};
}
// CPU: nanoGPT shakespeare-char heads at small batches, and one GPT-2 small head set at T = 1024.
std::vector<Shape> cpu_shapes() { return {shape(1, 6, 256, 64), shape(4, 6, 256, 64), shape(1, 12, 1024, 64)}; }

enum class Mask { None, Causal, KeyPadding };
const char* mask_name(Mask m) { return m == Mask::None ? "none" : m == Mask::Causal ? "causal" : "keypad"; }

std::string key(const char* dir, Dtype dt, Mask m, const Shape& s) {
  return std::string("attention/") + dir + "/" + dlkb::dtype_name(dt) + "/" + mask_name(m) + "/" + s.key;
}

double forward_flops(const Shape& s, Mask m) {
  const double f = 4.0 * static_cast<double>(s.b * s.h) * static_cast<double>(s.t) * static_cast<double>(s.t) *
                   static_cast<double>(s.d);
  return m == Mask::Causal ? f / 2 : f;
}

struct Operands {
  Tensor q, k, v, o, lse, dout, dq, dk, dv, lengths;
  bool ok = true;
};

bool make(Env& e, Operands& x, const Shape& s, Dtype dt, bool backward) {
  const std::vector<int64_t> sh = {s.b, s.h, s.t, s.d};
  x.q = Tensor(e, sh, dlkb::dl_dtype(dt));
  x.k = Tensor(e, sh, dlkb::dl_dtype(dt));
  x.v = Tensor(e, sh, dlkb::dl_dtype(dt));
  x.o = Tensor(e, sh, dlkb::dl_dtype(dt));
  x.lse = Tensor(e, {s.b, s.h, s.t}, DLDataType{kDLFloat, 32, 1});
  if (!x.q.ok() || !x.k.ok() || !x.v.ok() || !x.o.ok() || !x.lse.ok()) return false;
  if (!dlkb::fill(e, x.q, dt, 1) || !dlkb::fill(e, x.k, dt, 2) || !dlkb::fill(e, x.v, dt, 3)) return false;
  if (backward) {
    x.dout = Tensor(e, sh, dlkb::dl_dtype(dt));
    x.dq = Tensor(e, sh, dlkb::dl_dtype(dt));
    x.dk = Tensor(e, sh, dlkb::dl_dtype(dt));
    x.dv = Tensor(e, sh, dlkb::dl_dtype(dt));
    if (!x.dout.ok() || !x.dq.ok() || !x.dk.ok() || !x.dv.ok() || !dlkb::fill(e, x.dout, dt, 4)) return false;
  }
  // Key-padding lengths: each batch entry keeps between half and all of its keys.
  x.lengths = Tensor(e, {s.b}, DLDataType{kDLInt, 32, 1});
  std::vector<int32_t> len(static_cast<std::size_t>(s.b));
  for (int64_t i = 0; i < s.b; ++i) len[i] = static_cast<int32_t>(s.t / 2 + (i * 7919) % (s.t / 2 + 1));
  return x.lengths.ok() && dlkb::copy_in(e, x.lengths, len.data(), len.size() * 4);
}

dlk_attention_params params_for(Mask m, Operands& x) {
  dlk_attention_params p;
  dlk_attention_params_init(&p);
  p.mask_kind = m == Mask::None ? DLK_MASK_NONE : m == Mask::Causal ? DLK_MASK_CAUSAL : DLK_MASK_KEY_PADDING;
  p.lengths = m == Mask::KeyPadding ? x.lengths.dl() : nullptr;
  return p;
}

void attention_forward(benchmark::State& state, Shape s, Dtype dt, Mask m) {
  Env& e = dlkb::env();
  if (!e.error.empty()) return state.SkipWithError(e.error.c_str());
  Operands x;
  if (!make(e, x, s, dt, false)) return state.SkipWithError("cannot allocate or fill the attention buffers");
  dlk_attention_params p = params_for(m, x);
  const double bytes = 4.0 * static_cast<double>(x.q.elements() * dlkb::dtype_size(dt)) + 4.0 * x.lse.elements();
  dlkb::run_case(state, e, bytes, [&](long) {
    return dlkb::dlk_result(dlk_attention_forward(e.ctx, &p, x.q.dl(), x.k.dl(), x.v.dl(), x.o.dl(), x.lse.dl()));
  });
  state.counters["TFLOP/s"] =
      benchmark::Counter(forward_flops(s, m) / 1e12, benchmark::Counter::kIsIterationInvariantRate);
}

void attention_backward(benchmark::State& state, Shape s, Dtype dt, Mask m) {
  Env& e = dlkb::env();
  if (!e.error.empty()) return state.SkipWithError(e.error.c_str());
  Operands x;
  if (!make(e, x, s, dt, true)) return state.SkipWithError("cannot allocate or fill the attention buffers");
  dlk_attention_params p = params_for(m, x);
  const std::string err = dlkb::dlk_result(
      dlk_attention_forward(e.ctx, &p, x.q.dl(), x.k.dl(), x.v.dl(), x.o.dl(), x.lse.dl()));
  if (!err.empty()) return state.SkipWithError(err.c_str());
  const double bytes = 8.0 * static_cast<double>(x.q.elements() * dlkb::dtype_size(dt)) + 4.0 * x.lse.elements();
  dlkb::run_case(state, e, bytes, [&](long) {
    return dlkb::dlk_result(dlk_attention_backward(e.ctx, &p, x.q.dl(), x.k.dl(), x.v.dl(), x.o.dl(), x.lse.dl(),
                                                   x.dout.dl(), x.dq.dl(), x.dk.dl(), x.dv.dl()));
  });
  state.counters["TFLOP/s"] =
      benchmark::Counter(2.5 * forward_flops(s, m) / 1e12, benchmark::Counter::kIsIterationInvariantRate);
}

// The naive baseline: matmul, softmax, matmul through the public API, with the [B, H, T, T] scores in memory.
void naive_forward(benchmark::State& state, Shape s, Dtype dt, Mask m) {
  Env& e = dlkb::env();
  if (!e.error.empty()) return state.SkipWithError(e.error.c_str());
  Operands x;
  if (!make(e, x, s, dt, false)) return state.SkipWithError("cannot allocate or fill the attention buffers");
  Tensor scores(e, {s.b, s.h, s.t, s.t}, dlkb::dl_dtype(dt));
  if (!scores.ok()) return state.SkipWithError("cannot allocate the [B, H, T, T] scores");
  dlk_matmul_params qk, pv;
  dlk_matmul_params_init(&qk);
  dlk_matmul_params_init(&pv);
  qk.transpose_b = 1;
  qk.alpha = 1.0f / std::sqrt(static_cast<float>(s.d));
  dlk_softmax_params sp;
  dlk_softmax_params_init(&sp);
  sp.mask_kind = m == Mask::None ? DLK_MASK_NONE : m == Mask::Causal ? DLK_MASK_CAUSAL : DLK_MASK_KEY_PADDING;
  sp.lengths = m == Mask::KeyPadding ? x.lengths.dl() : nullptr;
  const double bytes = 4.0 * static_cast<double>(x.q.elements() * dlkb::dtype_size(dt));
  dlkb::run_case(state, e, bytes, [&](long) {
    std::string r = dlkb::dlk_result(dlk_matmul(e.ctx, &qk, x.q.dl(), x.k.dl(), scores.dl()));
    if (r.empty()) r = dlkb::dlk_result(dlk_softmax_forward(e.ctx, &sp, scores.dl(), scores.dl()));
    if (r.empty()) r = dlkb::dlk_result(dlk_matmul(e.ctx, &pv, scores.dl(), x.v.dl(), x.o.dl()));
    return r;
  });
  state.counters["TFLOP/s"] =
      benchmark::Counter(forward_flops(s, m) / 1e12, benchmark::Counter::kIsIterationInvariantRate);
}

void register_cases(Env& e) {
  const std::vector<Shape> shapes = e.cuda ? gpu_shapes() : cpu_shapes();
  const std::vector<Dtype> dtypes =
      e.cuda ? std::vector<Dtype>{Dtype::F32, Dtype::F16, Dtype::BF16} : std::vector<Dtype>{Dtype::F32};
  for (const Shape& s : shapes) {
    const double score_bytes = static_cast<double>(s.b * s.h) * static_cast<double>(s.t * s.t) * 4.0;
    for (Dtype dt : dtypes) {
      for (Mask m : {Mask::None, Mask::Causal, Mask::KeyPadding}) {
        dlkb::add(key("fwd", dt, m, s), "dlk", [=](benchmark::State& st) { attention_forward(st, s, dt, m); });
        if (score_bytes <= 2.0 * (1u << 30) && m != Mask::KeyPadding)
          dlkb::add(key("fwd", dt, m, s), "naive", [=](benchmark::State& st) { naive_forward(st, s, dt, m); });
      }
      for (Mask m : {Mask::None, Mask::Causal})
        dlkb::add(key("bwd", dt, m, s), "dlk", [=](benchmark::State& st) { attention_backward(st, s, dt, m); });
    }
  }
}

}  // namespace

int main(int argc, char** argv) { return dlkb::run_main(argc, argv, register_cases); }
