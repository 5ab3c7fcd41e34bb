// Fused softmax cross-entropy through the public C API, at the classifier shapes of the models: a character-level
// vocabulary (V = 65, nanoGPT shakespeare-char) and GPT-2's 50257, N = 8 * 1024 rows (B * T) on cuda, fewer on
// the CPU. Cases: "fwdbwd" is the fused call a training step makes (mean loss + dlogits in one pass), "fwd" the loss
// alone (evaluation).
//
// Bytes that must move: fwd reads the logits and the int64 targets and writes the loss; fwdbwd also writes dlogits
// (the second read of the row is the kernel's business, not the op's). Keep the shapes in step with
// bench/compare_torch.py (cross-entropy section), which times F.cross_entropy + backward on the same keys.
#include <string>
#include <vector>

#include "bench_common.h"

namespace {

using dlkb::Dtype;
using dlkb::Env;
using dlkb::Tensor;

struct Shape {
  int64_t n, v;
  std::string key;
};

Shape shape(int64_t n, int64_t v) { return {n, v, dlkb::dims({{"N", n}, {"V", v}})}; }

std::vector<Shape> gpu_shapes() { return {shape(8192, 65), shape(8192, 50257)}; }
std::vector<Shape> cpu_shapes() { return {shape(8192, 65), shape(512, 50257)}; }

void cross_entropy(benchmark::State& state, Shape s, Dtype dt, bool backward) {
  Env& e = dlkb::env();
  if (!e.error.empty()) return state.SkipWithError(e.error.c_str());
  const double io = static_cast<double>(s.n * s.v) * static_cast<double>(dlkb::dtype_size(dt));
  const double bytes = (backward ? 2 : 1) * io + 8.0 * static_cast<double>(s.n) + 4.0;
  const int sets = dlkb::rotation_sets(e, static_cast<std::size_t>(bytes));
  std::vector<Tensor> xs, dxs, ts;
  std::vector<int64_t> labels(static_cast<std::size_t>(s.n));
  for (int64_t i = 0; i < s.n; ++i) labels[i] = (i * 7919) % s.v;
  for (int k = 0; k < sets; ++k) {
    xs.emplace_back(e, std::vector<int64_t>{s.n, s.v}, dlkb::dl_dtype(dt));
    ts.emplace_back(e, std::vector<int64_t>{s.n}, DLDataType{kDLInt, 64, 1});
    if (backward) dxs.emplace_back(e, std::vector<int64_t>{s.n, s.v}, dlkb::dl_dtype(dt));
    if (!xs.back().ok() || !ts.back().ok() || (backward && !dxs.back().ok()) ||
        !dlkb::fill(e, xs.back(), dt, 3 + static_cast<uint64_t>(k)) ||
        !dlkb::copy_in(e, ts.back(), labels.data(), labels.size() * 8))
      return state.SkipWithError("cannot allocate or fill the cross-entropy buffers");
  }
  Tensor loss(e, {}, DLDataType{kDLFloat, 32, 1});
  if (!loss.ok()) return state.SkipWithError("cannot allocate the loss");
  dlk_cross_entropy_params p;
  dlk_cross_entropy_params_init(&p);
  dlkb::run_case(state, e, bytes, [&](long i) {
    const int k = static_cast<int>(i % sets);
    return dlkb::dlk_result(dlk_cross_entropy_forward(e.ctx, &p, xs[k].dl(), ts[k].dl(), loss.dl(),
                                                      backward ? dxs[k].dl() : nullptr, nullptr));
  });
}

void register_cases(Env& e) {
  const std::vector<Shape> shapes = e.cuda ? gpu_shapes() : cpu_shapes();
  const std::vector<Dtype> dtypes =
      e.cuda ? std::vector<Dtype>{Dtype::F32, Dtype::F16, Dtype::BF16} : std::vector<Dtype>{Dtype::F32};
  for (const Shape& s : shapes)
    for (Dtype dt : dtypes)
      for (bool bwd : {true, false})
        dlkb::add(std::string("cross_entropy/") + (bwd ? "fwdbwd/" : "fwd/") + dlkb::dtype_name(dt) + "/" + s.key,
                  "dlk", [=](benchmark::State& st) { cross_entropy(st, s, dt, bwd); });
}

}  // namespace

int main(int argc, char** argv) { return dlkb::run_main(argc, argv, register_cases); }
