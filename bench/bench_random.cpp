// Dropout, embedding and initialisation through the public C API at GPT-2 shapes.
//   dropout:   the residual/attention-output dropout on [B, T, C] activations, forward with a saved uint8 mask (reads
//              x, writes y and the mask), backward from that mask as PyTorch's (reads dy and the mask, writes dx), and
//              bwd_regen: backward regenerating the mask from (seed, offset) (reads dy, writes dx; no saved mask).
//   embedding: the token table wte [50257, 768] gathered by B*T int64 tokens (reads indices and the gathered rows,
//              writes out), and its backward scatter-adding dout into the table (reads indices and dout, writes the
//              whole table: overwrite mode zeroes untouched rows), deterministic and atomic variants.
//   init:      a GPT-2 MLP weight [3072, 768] drawn with the Linear default (writes it once).
// Keep the shape lists in step with bench/compare_torch.py.
#include <string>
#include <utility>
#include <vector>

#include "bench_common.h"

namespace {

using dlkb::Dtype;
using dlkb::Env;
using dlkb::Tensor;

constexpr int64_t kVocab = 50257, kDim = 768;

enum class DropoutPass { Forward, BackwardFromMask, BackwardRegenerated };

void dropout_case(benchmark::State& state, int64_t b, int64_t t, int64_t c, Dtype dt, DropoutPass pass) {
  Env& e = dlkb::env();
  if (!e.error.empty()) return state.SkipWithError(e.error.c_str());
  const DLDataType ty = dlkb::dl_dtype(dt);
  Tensor x(e, {b, t, c}, ty), y(e, {b, t, c}, ty), m(e, {b, t, c}, DLDataType{kDLUInt, 8, 1});
  if (!x.ok() || !y.ok() || !m.ok() || !dlkb::fill(e, x, dt, 1)) return state.SkipWithError("cannot allocate");
  const double n = static_cast<double>(b * t * c), es = static_cast<double>(dlkb::dtype_size(dt));
  const double bytes = pass == DropoutPass::BackwardRegenerated ? 2 * n * es : 2 * n * es + n;
  dlk_dropout_params p;
  dlk_dropout_params_init(&p);
  p.p = 0.1f;
  p.seed = 1234;
  if (pass == DropoutPass::BackwardFromMask && dlk_dropout_forward(e.ctx, &p, x.dl(), y.dl(), m.dl()) != DLK_SUCCESS)
    return state.SkipWithError(dlk_last_error());
  dlkb::run_case(state, e, bytes, [&](long) {
    switch (pass) {
      case DropoutPass::Forward: return dlkb::dlk_result(dlk_dropout_forward(e.ctx, &p, x.dl(), y.dl(), m.dl()));
      case DropoutPass::BackwardFromMask:
        return dlkb::dlk_result(dlk_dropout_backward(e.ctx, &p, x.dl(), m.dl(), y.dl()));
      default: return dlkb::dlk_result(dlk_dropout_backward(e.ctx, &p, x.dl(), nullptr, y.dl()));
    }
  });
}

void embedding_case(benchmark::State& state, int64_t tokens, Dtype dt, bool backward, bool deterministic) {
  Env& e = dlkb::env();
  if (!e.error.empty()) return state.SkipWithError(e.error.c_str());
  // A deterministic context on the same device for the sorted backward (the shared one is not deterministic).
  dlk_context* ctx = e.ctx;
  dlk_context* own = nullptr;
  if (deterministic) {
    dlk_context_options o;
    dlk_context_options_init(&o);
    o.device = e.device;
    o.deterministic = 1;
    if (dlk_context_create(&o, &own) != DLK_SUCCESS) return state.SkipWithError("cannot create a context");
    ctx = own;
  }
  const DLDataType ty = dlkb::dl_dtype(dt);
  Tensor idx(e, {tokens}, DLDataType{kDLInt, 64, 1}), w(e, {kVocab, kDim}, ty), out(e, {tokens, kDim}, ty);
  std::vector<int64_t> host(static_cast<std::size_t>(tokens));
  dlkb::Rng r(7);
  for (auto& v : host) v = static_cast<int64_t>(r.next() % kVocab);
  if (!idx.ok() || !w.ok() || !out.ok() || !dlkb::copy_in(e, idx, host.data(), host.size() * 8) ||
      !dlkb::fill(e, w, dt, 2) || !dlkb::fill(e, out, dt, 3)) {
    dlk_context_destroy(own);
    return state.SkipWithError("cannot allocate or fill the embedding buffers");
  }
  const double es = static_cast<double>(dlkb::dtype_size(dt)), rows = static_cast<double>(tokens);
  const double bytes = backward ? rows * 8 + rows * kDim * es + static_cast<double>(kVocab) * kDim * es
                                : rows * 8 + 2 * rows * kDim * es;
  dlkb::run_case(state, e, bytes, [&](long) {
    if (backward) return dlkb::dlk_result(dlk_embedding_backward(ctx, nullptr, idx.dl(), out.dl(), w.dl()));
    return dlkb::dlk_result(dlk_embedding_forward(ctx, nullptr, idx.dl(), w.dl(), out.dl()));
  });
  dlk_context_destroy(own);
}

void init_case(benchmark::State& state, int64_t rows, int64_t cols, Dtype dt, dlk_init_kind kind) {
  Env& e = dlkb::env();
  if (!e.error.empty()) return state.SkipWithError(e.error.c_str());
  Tensor w(e, {rows, cols}, dlkb::dl_dtype(dt));
  if (!w.ok()) return state.SkipWithError("cannot allocate");
  dlk_init_params p;
  dlk_init_params_init(&p);
  p.kind = kind;
  p.seed = 5;
  dlkb::run_case(state, e, static_cast<double>(rows * cols) * static_cast<double>(dlkb::dtype_size(dt)),
                 [&](long) { return dlkb::dlk_result(dlk_init(e.ctx, &p, w.dl())); });
}

void register_cases(Env& e) {
  const std::vector<Dtype> dtypes =
      e.cuda ? std::vector<Dtype>{Dtype::F32, Dtype::BF16} : std::vector<Dtype>{Dtype::F32};
  const int64_t batch = e.cuda ? 16 : 4;
  for (Dtype dt : dtypes) {
    const std::string d = dlkb::dtype_name(dt);
    const std::string shape = dlkb::dims({{"B", batch}, {"T", 1024}, {"C", kDim}});
    for (auto [name, pass] : {std::pair{"fwd", DropoutPass::Forward}, std::pair{"bwd", DropoutPass::BackwardFromMask},
                              std::pair{"bwd_regen", DropoutPass::BackwardRegenerated}})
      dlkb::add(std::string("dropout/") + name + "/" + d + "/" + shape, "dlk",
                [=](benchmark::State& st) { dropout_case(st, batch, 1024, kDim, dt, pass); });
    const int64_t tokens = batch * 1024;
    const std::string eshape = dlkb::dims({{"N", tokens}, {"V", kVocab}, {"D", kDim}});
    dlkb::add("embedding/fwd/" + d + "/" + eshape, "dlk",
              [=](benchmark::State& st) { embedding_case(st, tokens, dt, false, false); });
    for (bool det : {false, true})
      dlkb::add("embedding/bwd" + std::string(det ? "_det/" : "/") + d + "/" + eshape, "dlk",
                [=](benchmark::State& st) { embedding_case(st, tokens, dt, true, det); });
    dlkb::add("init/linear_weight/" + d + "/" + dlkb::dims({{"O", 3072}, {"I", kDim}}), "dlk",
              [=](benchmark::State& st) { init_case(st, 3072, kDim, dt, DLK_INIT_LINEAR_WEIGHT); });
    dlkb::add("init/normal/" + d + "/" + dlkb::dims({{"O", 3072}, {"I", kDim}}), "dlk",
              [=](benchmark::State& st) { init_case(st, 3072, kDim, dt, DLK_INIT_NORMAL); });
  }
}

}  // namespace

int main(int argc, char** argv) { return dlkb::run_main(argc, argv, register_cases); }
