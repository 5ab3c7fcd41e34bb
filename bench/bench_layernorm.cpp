// Layer norm through the public C API at GPT shapes: x is [B, T, C] normalised over C, with affine gamma/beta of
// x's dtype, the forward saving mean and rstd (fp32) as training does, the backward producing dx, dgamma and dbeta.
// C spans the GPT-2 family and nanoGPT: 384 (shakespeare-char), 768 (small), 1024 (medium), 1600 (XL), 2048 and
// 4096 (larger models).
//
// Bytes that must move: forward reads x, gamma, beta and writes y, mean, rstd; backward reads dy, x, mean, rstd,
// gamma and writes dx, dgamma, dbeta. Keep the shape lists in step with bench/compare_torch.py.
#include <string>
#include <vector>

#include "bench_common.h"

namespace {

using dlkb::Dtype;
using dlkb::Env;
using dlkb::Tensor;

struct Shape {
  int64_t b, t, c;
  std::string key;
};

std::vector<Shape> shapes(bool cuda) {
  // GPU: 8 and 16 sequences of 1024 tokens. CPU: 1 and 4 sequences, so the suite stays under a minute on two cores.
  const std::vector<int64_t> batches = cuda ? std::vector<int64_t>{8, 16} : std::vector<int64_t>{1, 4};
  std::vector<Shape> out;
  for (int64_t b : batches)
    for (int64_t c : {384, 768, 1024, 1600, 2048, 4096})
      out.push_back({b, 1024, c, dlkb::dims({{"B", b}, {"T", 1024}, {"C", c}})});
  return out;
}

std::string key(const char* dir, Dtype dt, const Shape& s) {
  return std::string("layernorm/") + dir + "/" + dlkb::dtype_name(dt) + "/" + s.key;
}

// One buffer set of a case: everything one forward or backward call touches.
struct Set {
  Tensor x, gamma, beta, y, mean, rstd, dy, dx, dgamma, dbeta;
};

bool make_set(Env& e, Set& st, const Shape& s, Dtype dt, bool backward, uint64_t seed) {
  const DLDataType t = dlkb::dl_dtype(dt), f32{kDLFloat, 32, 1};
  st.x = Tensor(e, {s.b, s.t, s.c}, t);
  st.gamma = Tensor(e, {s.c}, t);
  st.beta = Tensor(e, {s.c}, t);
  st.mean = Tensor(e, {s.b, s.t}, f32);
  st.rstd = Tensor(e, {s.b, s.t}, f32);
  bool ok = st.x.ok() && st.gamma.ok() && st.beta.ok() && st.mean.ok() && st.rstd.ok() &&
            dlkb::fill(e, st.x, dt, seed) && dlkb::fill(e, st.gamma, dt, seed + 1) && dlkb::fill(e, st.beta, dt, seed + 2);
  if (!ok) return false;
  if (!backward) {
    st.y = Tensor(e, {s.b, s.t, s.c}, t);
    return st.y.ok();
  }
  st.dy = Tensor(e, {s.b, s.t, s.c}, t);
  st.dx = Tensor(e, {s.b, s.t, s.c}, t);
  st.dgamma = Tensor(e, {s.c}, t);
  st.dbeta = Tensor(e, {s.c}, t);
  return st.dy.ok() && st.dx.ok() && st.dgamma.ok() && st.dbeta.ok() && dlkb::fill(e, st.dy, dt, seed + 3);
}

void layernorm(benchmark::State& state, Shape s, Dtype dt, bool backward) {
  Env& e = dlkb::env();
  if (!e.error.empty()) return state.SkipWithError(e.error.c_str());
  const double es = static_cast<double>(dlkb::dtype_size(dt));
  const double rows = static_cast<double>(s.b * s.t), c = static_cast<double>(s.c);
  const double bytes = backward ? 3 * rows * c * es + 2 * rows * 4 + 3 * c * es   // dy, x, dx; mean, rstd; g, dg, db
                                : 2 * rows * c * es + 2 * c * es + 2 * rows * 4;  // x, y; gamma, beta; mean, rstd
  const int sets = dlkb::rotation_sets(e, static_cast<std::size_t>(bytes));
  std::vector<Set> v(static_cast<std::size_t>(sets));
  dlk_layernorm_params p;
  dlk_layernorm_params_init(&p);
  for (int k = 0; k < sets; ++k) {
    if (!make_set(e, v[k], s, dt, backward, 100 * static_cast<uint64_t>(k)))
      return state.SkipWithError("cannot allocate or fill the layer-norm buffers");
    // The backward needs a real mean/rstd: one forward fills them (into dx, which the backward overwrites).
    if (backward) {
      std::string err = dlkb::dlk_result(dlk_layernorm_forward(e.ctx, &p, v[k].x.dl(), v[k].gamma.dl(),
                                                               v[k].beta.dl(), v[k].dx.dl(), v[k].mean.dl(),
                                                               v[k].rstd.dl()));
      if (!err.empty()) {
        static thread_local std::string msg;
        msg = "forward before backward: " + err;
        return state.SkipWithError(msg.c_str());
      }
    }
  }
  dlkb::run_case(state, e, bytes, [&](long i) {
    Set& st = v[static_cast<std::size_t>(i % sets)];
    if (backward)
      return dlkb::dlk_result(dlk_layernorm_backward(e.ctx, &p, st.dy.dl(), st.x.dl(), st.mean.dl(), st.rstd.dl(),
                                                     st.gamma.dl(), st.dx.dl(), st.dgamma.dl(), st.dbeta.dl()));
    return dlkb::dlk_result(dlk_layernorm_forward(e.ctx, &p, st.x.dl(), st.gamma.dl(), st.beta.dl(), st.y.dl(),
                                                  st.mean.dl(), st.rstd.dl()));
  });
}

void register_cases(Env& e) {
  const std::vector<Dtype> dtypes =
      e.cuda ? std::vector<Dtype>{Dtype::F32, Dtype::F16, Dtype::BF16} : std::vector<Dtype>{Dtype::F32};
  for (const Shape& s : shapes(e.cuda))
    for (Dtype dt : dtypes)
      for (bool backward : {false, true})
        dlkb::add(key(backward ? "bwd" : "fwd", dt, s), "dlk",
                  [=](benchmark::State& st) { layernorm(st, s, dt, backward); });
}

}  // namespace

int main(int argc, char** argv) { return dlkb::run_main(argc, argv, register_cases); }
