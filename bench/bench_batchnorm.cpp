// Batch norm (training mode) through the public C API at ResNet shapes: x is [N, C, H, W] as ResNet-50's stages
// produce it at batch 32 (CPU: batch 8, so the suite stays short on two cores). Cases: the training forward (batch
// statistics, running-stat update, saved mean/invstd), the backward (dx, dgamma, dbeta from the saved statistics),
// and fwdbwd, one forward plus one backward, the work a training step does per batch-norm layer.
//
// Bytes that must move: forward reads x and writes y (2 N es) plus the per-channel vectors; backward reads dy and x
// and writes dx (3 N es) plus the per-channel vectors; fwdbwd the sum. Keep the shapes in step with the
// "batchnorm" section of bench/compare_torch.py, which times F.batch_norm and aten.native_batch_norm_backward.
#include <string>
#include <vector>

#include "bench_common.h"

namespace {

using dlkb::Dtype;
using dlkb::Env;
using dlkb::Tensor;

struct Shape {
  int64_t n, c, h, w;
  std::string key;
};

Shape resnet(int64_t n, int64_t c, int64_t hw) {
  return {n, c, hw, hw, dlkb::dims({{"N", n}, {"C", c}, {"H", hw}, {"W", hw}})};
}

std::vector<Shape> shapes(bool cuda) {
  const int64_t n = cuda ? 32 : 8;
  return {resnet(n, 64, 56), resnet(n, 128, 28), resnet(n, 256, 14), resnet(n, 512, 7)};
}

enum class Dir { Fwd, Bwd, FwdBwd };
const char* dir_name(Dir d) { return d == Dir::Fwd ? "fwd" : d == Dir::Bwd ? "bwd" : "fwdbwd"; }

struct Set {
  Tensor x, y, dy, dx, gamma, beta, rm, rv, sm, si, dg, db;
};

bool make_set(Env& e, Set& st, const Shape& s, Dtype dt, uint64_t seed) {
  const DLDataType t = dlkb::dl_dtype(dt), f32{kDLFloat, 32, 1};
  const std::vector<int64_t> shape = {s.n, s.c, s.h, s.w};
  st.x = Tensor(e, shape, t);
  st.y = Tensor(e, shape, t);
  st.dy = Tensor(e, shape, t);
  st.dx = Tensor(e, shape, t);
  Tensor* vecs[] = {&st.gamma, &st.beta, &st.rm, &st.rv, &st.sm, &st.si, &st.dg, &st.db};
  for (Tensor* v : vecs) {
    *v = Tensor(e, {s.c}, f32);
    if (!v->ok() || !dlkb::fill(e, *v, Dtype::F32, seed + 7)) return false;
  }
  return st.x.ok() && st.y.ok() && st.dy.ok() && st.dx.ok() && dlkb::fill(e, st.x, dt, seed) &&
         dlkb::fill(e, st.dy, dt, seed + 1);
}

void batchnorm(benchmark::State& state, Shape s, Dtype dt, Dir dir) {
  Env& e = dlkb::env();
  if (!e.error.empty()) return state.SkipWithError(e.error.c_str());
  const double es = static_cast<double>(dlkb::dtype_size(dt));
  const double n = static_cast<double>(s.n * s.c * s.h * s.w), c = static_cast<double>(s.c);
  const double fwd = 2 * n * es + 8 * c * 4;  // x, y; gamma, beta, running stats read+written, saved stats
  const double bwd = 3 * n * es + 5 * c * 4;  // dy, x, dx; gamma, saved stats, dgamma, dbeta
  const double bytes = dir == Dir::Fwd ? fwd : dir == Dir::Bwd ? bwd : fwd + bwd;
  const int sets = dlkb::rotation_sets(e, static_cast<std::size_t>(bytes));
  std::vector<Set> v(static_cast<std::size_t>(sets));
  dlk_batchnorm_params p;
  dlk_batchnorm_params_init(&p);
  p.training = 1;
  auto forward = [&](Set& st) {
    return dlkb::dlk_result(dlk_batchnorm_forward(e.ctx, &p, st.x.dl(), st.gamma.dl(), st.beta.dl(), st.rm.dl(),
                                                  st.rv.dl(), st.y.dl(), st.sm.dl(), st.si.dl()));
  };
  auto backward = [&](Set& st) {
    return dlkb::dlk_result(dlk_batchnorm_backward(e.ctx, &p, st.dy.dl(), st.x.dl(), st.gamma.dl(), nullptr, nullptr,
                                                   st.sm.dl(), st.si.dl(), st.dx.dl(), st.dg.dl(), st.db.dl()));
  };
  for (int k = 0; k < sets; ++k) {
    if (!make_set(e, v[k], s, dt, 100 * static_cast<uint64_t>(k)))
      return state.SkipWithError("cannot allocate or fill the batch-norm buffers");
    std::string err = forward(v[k]);  // real saved statistics for the backward
    if (!err.empty()) {
      static thread_local std::string msg;
      msg = "forward before backward: " + err;
      return state.SkipWithError(msg.c_str());
    }
  }
  dlkb::run_case(state, e, bytes, [&](long i) -> std::string {
    Set& st = v[static_cast<std::size_t>(i % sets)];
    if (dir == Dir::Fwd) return forward(st);
    if (dir == Dir::Bwd) return backward(st);
    std::string err = forward(st);
    return err.empty() ? backward(st) : err;
  });
}

void register_cases(Env& e) {
  const std::vector<Dtype> dtypes =
      e.cuda ? std::vector<Dtype>{Dtype::F32, Dtype::F16, Dtype::BF16} : std::vector<Dtype>{Dtype::F32};
  for (const Shape& s : shapes(e.cuda))
    for (Dtype dt : dtypes)
      for (Dir d : {Dir::Fwd, Dir::Bwd, Dir::FwdBwd})
        dlkb::add(std::string("batchnorm/") + dir_name(d) + "/" + dlkb::dtype_name(dt) + "/" + s.key, "dlk",
                  [=](benchmark::State& st) { batchnorm(st, s, dt, d); });
}

}  // namespace

int main(int argc, char** argv) { return dlkb::run_main(argc, argv, register_cases); }
