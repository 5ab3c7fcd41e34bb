// Fused multi-tensor optimizers through the public C API, on the parameter lists of real models: nanoGPT's
// shakespeare-char GPT (6 layers, d 384, vocab 65, block 256: 10.7M parameters in 74 tensors) and GPT-2 small
// (12 layers, d 768, vocab 50257, block 1024, tied embedding: 124.4M parameters in 148 tensors). One call updates
// the whole list (one launch on cuda). Keep the lists in step with bench/compare_torch.py (optim section), which
// times torch.optim.AdamW(foreach=True).step() on the same tensors.
//
// Bytes that must move per parameter: AdamW reads p, g, m, v and writes p, m, v (28 B); SGD with momentum reads p,
// g, buf and writes p, buf (20 B); clip_grad_norm reads g twice and writes it once when it clips (12 B, the case
// here); zero_grad writes g (4 B).
#include <string>
#include <vector>

#include "bench_common.h"

namespace {

using dlkb::Dtype;
using dlkb::Env;
using dlkb::Tensor;

struct Model {
  std::string key;
  std::vector<std::vector<int64_t>> shapes;
  int64_t params() const {
    int64_t n = 0;
    for (auto& s : shapes) {
      int64_t k = 1;
      for (int64_t d : s) k *= d;
      n += k;
    }
    return n;
  }
};

// The parameter tensors of a nanoGPT GPT (tied lm_head, biases on).
Model gpt(const char* key, int64_t layers, int64_t d, int64_t vocab, int64_t block) {
  Model m{key, {}};
  m.shapes.push_back({vocab, d});
  m.shapes.push_back({block, d});
  for (int64_t l = 0; l < layers; ++l) {
    for (auto s : std::vector<std::vector<int64_t>>{{d}, {d}, {3 * d, d}, {3 * d}, {d, d}, {d}, {d}, {d},
                                                    {4 * d, d}, {4 * d}, {d, 4 * d}, {d}})
      m.shapes.push_back(s);
  }
  m.shapes.push_back({d});
  m.shapes.push_back({d});
  return m;
}

Model shakespeare() { return gpt("nanogpt-10.7M", 6, 384, 65, 256); }
Model gpt2_small() { return gpt("gpt2-124M", 12, 768, 50257, 1024); }

// `count` lists of tensors shaped like the model: count 1 for what the op only writes.
struct Lists {
  std::vector<std::vector<Tensor>> t;
  std::vector<std::vector<DLTensor*>> ptr;
  bool make(Env& e, const Model& m, int count, bool filled, uint64_t seed) {
    t.resize(count);
    ptr.resize(count);
    for (int c = 0; c < count; ++c) {
      for (std::size_t i = 0; i < m.shapes.size(); ++i) {
        t[c].emplace_back(e, m.shapes[i], dlkb::dl_dtype(Dtype::F32));
        if (!t[c].back().ok()) return false;
        if (filled && !dlkb::fill(e, t[c].back(), Dtype::F32, seed + 1000 * c + i)) return false;
      }
      for (auto& x : t[c]) ptr[c].push_back(x.dl());
    }
    return true;
  }
};

enum class Op { AdamW, Sgd, Clip, Zero };

void run(benchmark::State& state, const Model& m, Op op) {
  Env& e = dlkb::env();
  if (!e.error.empty()) return state.SkipWithError(e.error.c_str());
  const double n = static_cast<double>(m.params());
  Lists p, g, s0, s1;
  if (!p.make(e, m, 1, true, 1) || !g.make(e, m, 1, true, 2))
    return state.SkipWithError("cannot allocate or fill the parameter lists");
  const std::size_t k = m.shapes.size();
  std::vector<const DLTensor*> gc(g.ptr[0].begin(), g.ptr[0].end());
  if (op == Op::AdamW) {
    if (!s0.make(e, m, 1, true, 3) || !s1.make(e, m, 1, true, 4))
      return state.SkipWithError("cannot allocate the AdamW state");
    dlk_adamw_params prm;
    dlk_adamw_params_init(&prm);
    // The moments are filled from the pattern, whose squares are positive: a valid exp_avg_sq.
    dlkb::run_case(state, e, 28.0 * n, [&](long i) {
      prm.step = 1 + i % 1000;
      return dlkb::dlk_result(dlk_adamw_step(e.ctx, &prm, k, p.ptr[0].data(), gc.data(), s0.ptr[0].data(),
                                             s1.ptr[0].data(), nullptr));
    });
  } else if (op == Op::Sgd) {
    if (!s0.make(e, m, 1, true, 3)) return state.SkipWithError("cannot allocate the momentum buffers");
    dlk_sgd_params prm;
    dlk_sgd_params_init(&prm);
    prm.lr = 1e-6;
    prm.momentum = 0.9;
    prm.weight_decay = 1e-4;
    dlkb::run_case(state, e, 20.0 * n, [&](long) {
      return dlkb::dlk_result(dlk_sgd_step(e.ctx, &prm, k, p.ptr[0].data(), gc.data(), s0.ptr[0].data()));
    });
  } else if (op == Op::Clip) {
    dlk_clip_grad_norm_params prm;
    dlk_clip_grad_norm_params_init(&prm);
    prm.max_norm = 1e30;  // the norm is taken, no scaling: gradients stay the same across iterations
    dlkb::run_case(state, e, 4.0 * n, [&](long) {
      return dlkb::dlk_result(dlk_clip_grad_norm(e.ctx, &prm, k, g.ptr[0].data(), nullptr));
    });
  } else {
    dlkb::run_case(state, e, 4.0 * n, [&](long) { return dlkb::dlk_result(dlk_zero_grad(e.ctx, k, g.ptr[0].data())); });
  }
  state.counters["params"] = n;
  state.counters["tensors"] = static_cast<double>(k);
}

void register_cases(Env& e) {
  std::vector<Model> models = {shakespeare()};
  if (e.cuda) models.push_back(gpt2_small());  // 2 GiB of fp32 state: GPU only (and a large host could run it)
  const struct {
    Op op;
    const char* name;
  } ops[] = {{Op::AdamW, "adamw"}, {Op::Sgd, "sgd_momentum"}, {Op::Clip, "clip_grad_norm"}, {Op::Zero, "zero_grad"}};
  for (const Model& m : models)
    for (const auto& o : ops)
      dlkb::add(std::string("optim/") + o.name + "/fp32/" + m.key, "dlk",
                [m, op = o.op](benchmark::State& st) { run(st, m, op); });
}

}  // namespace

int main(int argc, char** argv) { return dlkb::run_main(argc, argv, register_cases); }
