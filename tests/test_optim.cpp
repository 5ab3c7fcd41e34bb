// Fused multi-tensor optimizers (SGD, AdamW / Adam), global-norm clipping and zero_grad, on the backend
// DLK_TEST_BACKEND names, against an fp64 reference written here from PyTorch 1.13's update rules
// (torch/optim/sgd.py, adamw.py, adam.py; torch/nn/utils/clip_grad.py). Several steps with fresh gradients, odd sizes
// (1, 7, 1000, 100003: one element, a partial chunk, several chunks), many tensors in one call, every option,
// parameter groups with frozen tensors, and bad inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "test_util.h"

namespace dlk::test {
namespace {

using Vec = std::vector<double>;

std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// A list of float32 tensors with the given sizes (1-D, or 2-D when the size factors as 7 x k) and their fp64 mirror.
struct List {
  std::vector<std::unique_ptr<Tensor>> t;
  std::vector<Vec> ref;
  List(dlk_context* ctx, const std::vector<std::int64_t>& sizes, float scale, bool zero = false) {
    for (std::int64_t n : sizes) {
      std::vector<std::int64_t> shape = n % 7 == 0 && n > 7 ? std::vector<std::int64_t>{7, n / 7}
                                                           : std::vector<std::int64_t>{n};
      t.push_back(std::make_unique<Tensor>(ctx, shape, f32()));
      std::vector<float> v = zero ? std::vector<float>(static_cast<std::size_t>(n), 0.0f)
                                  : randn(static_cast<std::size_t>(n), scale);
      t.back()->set(v);
      ref.push_back(to_double(v));
    }
  }
  std::vector<DLTensor*> ptrs() {
    std::vector<DLTensor*> p;
    for (auto& x : t) p.push_back(&x->t);
    return p;
  }
  // Fresh random values (the next step's gradients).
  void refill(float scale) {
    for (std::size_t i = 0; i < t.size(); ++i) {
      std::vector<float> v = randn(t[i]->numel(), scale);
      t[i]->set(v);
      ref[i] = to_double(v);
    }
  }
  // `scale`: the size of the values that went into each entry (parameters are O(1) draws). An entry that an update
  // brings near zero is ill-conditioned relative to itself, so the error is judged against max(||ref||, scale*sqrt(n)).
  void expect_close(const char* what, double tol = 1e-5, double scale = 0.0) {
    for (std::size_t i = 0; i < t.size(); ++i) {
      SCOPED_TRACE(std::string(what) + "[" + std::to_string(i) + "] of " + std::to_string(t[i]->numel()));
      EXPECT_CLOSE_SCALED(t[i]->get(), ref[i], std::vector<double>(ref[i].size(), scale), tol);
    }
  }
};

const std::vector<std::int64_t> kOddSizes = {1, 7, 1000, 100003};

// ------------------------------------------------------------------------------------------------ references

struct SgdOpt {
  double lr = 0.01, momentum = 0, dampening = 0, wd = 0;
  bool nesterov = false;
};

// torch.optim.SGD 1.13, single tensor, in fp64.
void sgd_ref(Vec& p, const Vec& g, Vec* buf, bool first, const SgdOpt& o) {
  for (std::size_t i = 0; i < p.size(); ++i) {
    double d = g[i];
    if (o.wd != 0) d += o.wd * p[i];
    if (o.momentum != 0) {
      double& b = (*buf)[i];
      b = first ? d : o.momentum * b + (1 - o.dampening) * d;
      d = o.nesterov ? d + o.momentum * b : b;
    }
    p[i] -= o.lr * d;
  }
}

struct AdamOpt {
  double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 1e-2;
  bool amsgrad = false, decoupled = true;
};

// torch.optim.AdamW (decoupled) / Adam 1.13, single tensor, in fp64.
void adam_ref(Vec& p, const Vec& g0, Vec& m, Vec& v, Vec* vmax, std::int64_t step, const AdamOpt& o) {
  const double bc1 = 1 - std::pow(o.b1, static_cast<double>(step));
  const double bc2 = 1 - std::pow(o.b2, static_cast<double>(step));
  for (std::size_t i = 0; i < p.size(); ++i) {
    double g = g0[i];
    if (o.decoupled) p[i] *= 1 - o.lr * o.wd;
    else g += o.wd * p[i];
    m[i] = o.b1 * m[i] + (1 - o.b1) * g;
    v[i] = o.b2 * v[i] + (1 - o.b2) * g * g;
    double vv = v[i];
    if (vmax) {
      (*vmax)[i] = std::max((*vmax)[i], v[i]);
      vv = (*vmax)[i];
    }
    p[i] -= o.lr / bc1 * m[i] / (std::sqrt(vv) / std::sqrt(bc2) + o.eps);
  }
}

dlk_sgd_params sgd_params(const SgdOpt& o, bool first) {
  dlk_sgd_params p;
  dlk_sgd_params_init(&p);
  p.lr = o.lr;
  p.momentum = o.momentum;
  p.dampening = o.dampening;
  p.weight_decay = o.wd;
  p.nesterov = o.nesterov;
  p.first_step = first;
  return p;
}

dlk_adamw_params adam_params(const AdamOpt& o, std::int64_t step) {
  dlk_adamw_params p;
  dlk_adamw_params_init(&p);
  p.lr = o.lr;
  p.beta1 = o.b1;
  p.beta2 = o.b2;
  p.eps = o.eps;
  p.weight_decay = o.wd;
  p.amsgrad = o.amsgrad;
  p.decoupled = o.decoupled;
  p.step = step;
  return p;
}

// The options are exactly representable in fp32 where it matters, so the fp64 reference sees what the kernel sees.
double f(double x) { return static_cast<double>(static_cast<float>(x)); }

// ------------------------------------------------------------------------------------------------ SGD

TEST(Optim, SgdMatchesTorchRulesOverSteps) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  struct Case {
    const char* name;
    SgdOpt o;
  };
  const Case cases[] = {
      {"plain", {f(0.1), 0, 0, 0, false}},
      {"momentum", {f(0.05), f(0.9), 0, 0, false}},
      {"momentum+dampening+wd", {f(0.05), f(0.9), f(0.1), f(1e-2), false}},
      {"nesterov+wd", {f(0.05), f(0.8), 0, f(5e-3), true}},
      {"weight decay only", {f(0.1), 0, 0, f(0.03), false}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    List p(ctx, kOddSizes, 1.0f), g(ctx, kOddSizes, 1.0f), buf(ctx, kOddSizes, 1.0f);
    for (auto& b : buf.t) b->poison();  // the first step must write the buffers without reading them
    auto pp = p.ptrs(), gp = g.ptrs(), bp = buf.ptrs();
    std::vector<const DLTensor*> gc(gp.begin(), gp.end());
    for (int step = 0; step < 4; ++step) {
      if (step) g.refill(1.0f);
      const bool first = step == 0;
      dlk_sgd_params prm = sgd_params(c.o, first);
      ASSERT_EQ(dlk_sgd_step(ctx, &prm, pp.size(), pp.data(), gc.data(), c.o.momentum != 0 ? bp.data() : nullptr),
                DLK_SUCCESS)
          << dlk_last_error();
      for (std::size_t i = 0; i < pp.size(); ++i) sgd_ref(p.ref[i], g.ref[i], &buf.ref[i], first, c.o);
    }
    p.expect_close("params", 1e-5, 1.0);
    if (c.o.momentum != 0) buf.expect_close("momentum_buffers", 1e-5, 1.0);
    for (std::size_t i = 0; i < gp.size(); ++i) EXPECT_EQ(g.t[i]->get(), g.t[i]->stored()) << "grads are read only";
  }
}

// ------------------------------------------------------------------------------------------------ AdamW

TEST(Optim, AdamWMatchesTorchRulesOverSteps) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  struct Case {
    const char* name;
    AdamOpt o;
  };
  AdamOpt dflt;
  dflt.lr = f(1e-3), dflt.b1 = f(0.9), dflt.b2 = f(0.999), dflt.eps = f(1e-8), dflt.wd = f(1e-2);
  AdamOpt ams = dflt;
  ams.amsgrad = true;
  ams.lr = f(1e-2);
  AdamOpt l2 = dflt;
  l2.decoupled = false;
  l2.wd = f(0.05);
  AdamOpt nowd = dflt;
  nowd.wd = 0;
  nowd.b1 = f(0.5), nowd.b2 = f(0.9), nowd.eps = f(1e-3), nowd.lr = f(0.1);
  const Case cases[] = {{"adamw defaults", dflt}, {"amsgrad", ams}, {"adam l2", l2}, {"no wd, odd betas", nowd}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    List p(ctx, kOddSizes, 1.0f), g(ctx, kOddSizes, 1.0f);
    List m(ctx, kOddSizes, 0.0f, true), v(ctx, kOddSizes, 0.0f, true), vmax(ctx, kOddSizes, 0.0f, true);
    auto pp = p.ptrs(), gp = g.ptrs(), mp = m.ptrs(), vp = v.ptrs(), xp = vmax.ptrs();
    std::vector<const DLTensor*> gc(gp.begin(), gp.end());
    for (std::int64_t step = 1; step <= 5; ++step) {
      // Gradients that shrink and change sign make the amsgrad maximum matter.
      if (step > 1) g.refill(step % 2 ? 1.0f : 0.3f);
      dlk_adamw_params prm = adam_params(c.o, step);
      ASSERT_EQ(dlk_adamw_step(ctx, &prm, pp.size(), pp.data(), gc.data(), mp.data(), vp.data(),
                               c.o.amsgrad ? xp.data() : nullptr),
                DLK_SUCCESS)
          << dlk_last_error();
      for (std::size_t i = 0; i < pp.size(); ++i)
        adam_ref(p.ref[i], g.ref[i], m.ref[i], v.ref[i], c.o.amsgrad ? &vmax.ref[i] : nullptr, step, c.o);
    }
    p.expect_close("params", 1e-5, 1.0);
    m.expect_close("exp_avgs", 1e-5, 0.1);  // sign-changing gradients can cancel an entry of m to near zero
    v.expect_close("exp_avg_sqs");
    if (c.o.amsgrad) vmax.expect_close("max_exp_avg_sqs");
  }
}

TEST(Optim, FiftyTensorsInOneCall) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  std::vector<std::int64_t> sizes;
  std::vector<float> u = uniform(50, 0.0f, 1.0f);
  for (int i = 0; i < 50; ++i) sizes.push_back(1 + static_cast<std::int64_t>(u[i] * u[i] * 5000));
  sizes[10] = 0;  // an empty tensor in the middle of the list
  sizes[20] = 70001;
  AdamOpt o;
  o.lr = f(3e-3), o.b1 = f(0.9), o.b2 = f(0.95), o.eps = f(1e-8), o.wd = f(0.1);
  List p(ctx, sizes, 1.0f), g(ctx, sizes, 1.0f), m(ctx, sizes, 0, true), v(ctx, sizes, 0, true);
  auto pp = p.ptrs(), gp = g.ptrs(), mp = m.ptrs(), vp = v.ptrs();
  std::vector<const DLTensor*> gc(gp.begin(), gp.end());
  for (std::int64_t step = 1; step <= 3; ++step) {
    if (step > 1) g.refill(1.0f);
    dlk_adamw_params prm = adam_params(o, step);
    ASSERT_EQ(dlk_adamw_step(ctx, &prm, pp.size(), pp.data(), gc.data(), mp.data(), vp.data(), nullptr),
              DLK_SUCCESS)
        << dlk_last_error();
    for (std::size_t i = 0; i < pp.size(); ++i) adam_ref(p.ref[i], g.ref[i], m.ref[i], v.ref[i], nullptr, step, o);
  }
  p.expect_close("params", 1e-5, 1.0);
  v.expect_close("exp_avg_sqs");
  // The same list through SGD with momentum.
  SgdOpt so{f(0.02), f(0.9), 0, f(1e-4), true};
  List buf(ctx, sizes, 1.0f);
  auto bp = buf.ptrs();
  for (int step = 0; step < 2; ++step) {
    g.refill(1.0f);
    dlk_sgd_params prm = sgd_params(so, step == 0);
    ASSERT_EQ(dlk_sgd_step(ctx, &prm, pp.size(), pp.data(), gc.data(), bp.data()), DLK_SUCCESS) << dlk_last_error();
    for (std::size_t i = 0; i < pp.size(); ++i) sgd_ref(p.ref[i], g.ref[i], &buf.ref[i], step == 0, so);
  }
  p.expect_close("params after sgd", 1e-5, 1.0);
  buf.expect_close("momentum_buffers", 1e-5, 1.0);
}

// Tensors whose data starts 4 bytes past a 16-byte boundary (byte_offset) cannot use the kernels' 16-byte packs:
// the scalar path must give the same update, and must not touch the element before the view.
TEST(Optim, MisalignedTensorsMatchTheReference) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  const std::int64_t n = 40003;
  AdamOpt o;
  o.lr = f(1e-2), o.b1 = f(0.9), o.b2 = f(0.99), o.eps = f(1e-6), o.wd = f(0.1);
  List base(ctx, {n + 1, n + 1, n + 1, n + 1}, 1.0f);  // p, g, m, v, each viewed from element 1
  for (int k = 2; k < 4; ++k) {
    std::vector<float> z(static_cast<std::size_t>(n + 1), 0.0f);
    z[0] = 7.0f;
    base.t[k]->set(z);
    base.ref[k] = to_double(z);
  }
  std::vector<DLTensor> views(4);
  std::int64_t shape[1] = {n};
  for (int k = 0; k < 4; ++k) {
    views[k] = base.t[k]->t;
    views[k].shape = shape;
    views[k].ndim = 1;
    views[k].byte_offset = 4;
  }
  DLTensor* pp[1] = {&views[0]};
  const DLTensor* gp[1] = {&views[1]};
  DLTensor* mp[1] = {&views[2]};
  DLTensor* vp[1] = {&views[3]};
  Vec p(base.ref[0].begin() + 1, base.ref[0].end()), g(base.ref[1].begin() + 1, base.ref[1].end());
  Vec m(static_cast<std::size_t>(n), 0.0), v(static_cast<std::size_t>(n), 0.0);
  for (std::int64_t step = 1; step <= 2; ++step) {
    dlk_adamw_params prm = adam_params(o, step);
    ASSERT_EQ(dlk_adamw_step(ctx, &prm, 1, pp, gp, mp, vp, nullptr), DLK_SUCCESS) << dlk_last_error();
    adam_ref(p, g, m, v, nullptr, step, o);
  }
  std::vector<float> got = base.t[0]->get(), gm = base.t[2]->get();
  EXPECT_EQ(got[0], base.t[0]->stored()[0]);
  EXPECT_EQ(gm[0], 7.0f);
  EXPECT_CLOSE(std::vector<float>(got.begin() + 1, got.end()), p, 1e-5);
  EXPECT_CLOSE(std::vector<float>(gm.begin() + 1, gm.end()), m, 1e-5);
}

// ------------------------------------------------------------------------------------------------ groups

// Three groups plus frozen tensors: group 0 a normal lr, group 1 lr 0 (params stay, state moves, as in torch),
// group 2 another lr, weight decay and (Adam) step; tensors with group -1 keep params AND state bit for bit.
TEST(Optim, ParameterGroupsAndFrozenTensors) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  const std::vector<std::int64_t> sizes = {1000, 7, 1, 300, 100003, 33};
  const std::vector<std::int32_t> group = {0, -1, 1, 2, -1, 2};
  const double lr[3] = {1e-2, 0.0, 3e-2}, wd[3] = {1e-2, 0.5, 0.0};
  const std::int64_t steps[3] = {1, 4, 9};
  // AdamW.
  {
    List p(ctx, sizes, 1.0f), g(ctx, sizes, 1.0f), m(ctx, sizes, 0.1f), v(ctx, sizes, 0.1f);
    for (auto& x : v.ref) for (auto& e : x) e = e * e;  // a second moment is non-negative
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      std::vector<float> vv(v.ref[i].begin(), v.ref[i].end());
      v.t[i]->set(vv);
    }
    auto pp = p.ptrs(), gp = g.ptrs(), mp = m.ptrs(), vp = v.ptrs();
    std::vector<const DLTensor*> gc(gp.begin(), gp.end());
    dlk_adamw_params prm;
    dlk_adamw_params_init(&prm);
    prm.step = 0;  // every tensor takes its group's step
    prm.num_groups = 3;
    prm.tensor_group = group.data();
    prm.group_lr = lr;
    prm.group_weight_decay = wd;
    prm.group_step = steps;
    std::vector<std::vector<float>> frozen_p, frozen_m, frozen_v;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      frozen_p.push_back(p.t[i]->stored());
      frozen_m.push_back(m.t[i]->stored());
      frozen_v.push_back(v.t[i]->stored());
    }
    ASSERT_EQ(dlk_adamw_step(ctx, &prm, pp.size(), pp.data(), gc.data(), mp.data(), vp.data(), nullptr), DLK_SUCCESS)
        << dlk_last_error();
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      SCOPED_TRACE("tensor " + std::to_string(i) + " group " + std::to_string(group[i]));
      if (group[i] < 0) {
        EXPECT_EQ(p.t[i]->get(), frozen_p[i]);
        EXPECT_EQ(m.t[i]->get(), frozen_m[i]);
        EXPECT_EQ(v.t[i]->get(), frozen_v[i]);
        continue;
      }
      AdamOpt o;
      o.lr = lr[group[i]], o.wd = wd[group[i]], o.b1 = 0.9, o.b2 = 0.999, o.eps = 1e-8;  // the params_init defaults
      adam_ref(p.ref[i], g.ref[i], m.ref[i], v.ref[i], nullptr, steps[group[i]], o);
      EXPECT_CLOSE(p.t[i]->get(), p.ref[i], 1e-5);
      EXPECT_CLOSE(m.t[i]->get(), m.ref[i], 1e-5);
      EXPECT_CLOSE(v.t[i]->get(), v.ref[i], 1e-5);
      if (lr[group[i]] == 0.0) {
        EXPECT_EQ(p.t[i]->get(), frozen_p[i]) << "lr 0 leaves the parameter";
      }
    }
  }
  // SGD with momentum (not the first step: buffers are read).
  {
    List p(ctx, sizes, 1.0f), g(ctx, sizes, 1.0f), buf(ctx, sizes, 1.0f);
    auto pp = p.ptrs(), gp = g.ptrs(), bp = buf.ptrs();
    std::vector<const DLTensor*> gc(gp.begin(), gp.end());
    SgdOpt base{0.1, f(0.9), f(0.25), 0, false};
    dlk_sgd_params prm = sgd_params(base, false);
    prm.num_groups = 3;
    prm.tensor_group = group.data();
    prm.group_lr = lr;
    prm.group_weight_decay = wd;
    std::vector<std::vector<float>> frozen_p, frozen_b;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      frozen_p.push_back(p.t[i]->stored());
      frozen_b.push_back(buf.t[i]->stored());
    }
    ASSERT_EQ(dlk_sgd_step(ctx, &prm, pp.size(), pp.data(), gc.data(), bp.data()), DLK_SUCCESS) << dlk_last_error();
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      SCOPED_TRACE("sgd tensor " + std::to_string(i) + " group " + std::to_string(group[i]));
      if (group[i] < 0) {
        EXPECT_EQ(p.t[i]->get(), frozen_p[i]);
        EXPECT_EQ(buf.t[i]->get(), frozen_b[i]);
        continue;
      }
      SgdOpt o = base;
      o.lr = lr[group[i]], o.wd = wd[group[i]];
      sgd_ref(p.ref[i], g.ref[i], &buf.ref[i], false, o);
      EXPECT_CLOSE(p.t[i]->get(), p.ref[i], 1e-5);
      EXPECT_CLOSE(buf.t[i]->get(), buf.ref[i], 1e-5);
      if (lr[group[i]] == 0.0) {
        EXPECT_EQ(p.t[i]->get(), frozen_p[i]) << "lr 0 leaves the parameter";
        EXPECT_NE(buf.t[i]->get(), frozen_b[i]) << "lr 0 still moves the momentum (torch)";
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------ clipping

double norm_ref(const List& g, float type) {
  double s = 0;
  for (const auto& x : g.ref) {
    for (double e : x) {
      if (std::isinf(type)) {
        s = std::max(s, std::fabs(e));
      } else {
        s += type == 1.0f ? std::fabs(e) : e * e;
      }
    }
  }
  return type == 2.0f ? std::sqrt(s) : s;
}

TEST(Optim, ClipGradNormMatchesTorch) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  const float types[] = {2.0f, 1.0f, std::numeric_limits<float>::infinity()};
  for (float type : types) {
    for (bool clip : {true, false}) {
      SCOPED_TRACE("norm_type " + std::to_string(type) + (clip ? " clipped" : " not clipped"));
      std::vector<std::int64_t> sizes = {1, 7, 0, 1000, 100003, 5};
      List g(ctx, sizes, 0.5f);
      const double total = norm_ref(g, type);
      Tensor dev_norm(ctx, {1}, f32());
      dev_norm.poison();
      dlk_clip_grad_norm_params prm;
      dlk_clip_grad_norm_params_init(&prm);
      prm.norm_type = type;
      prm.max_norm = clip ? total * 0.3 : total * 2.0;
      prm.total_norm = &dev_norm.t;
      auto gp = g.ptrs();
      float host_norm = -1.0f;
      ASSERT_EQ(dlk_clip_grad_norm(ctx, &prm, gp.size(), gp.data(), &host_norm), DLK_SUCCESS) << dlk_last_error();
      EXPECT_NEAR(host_norm, total, 1e-6 * total);
      EXPECT_EQ(dev_norm.get()[0], host_norm);
      const double coef = static_cast<float>(prm.max_norm) / (static_cast<double>(host_norm) + 1e-6);
      for (std::size_t i = 0; i < sizes.size(); ++i) {
        if (clip) {
          for (auto& e : g.ref[i]) e *= coef;
          EXPECT_CLOSE(g.t[i]->get(), g.ref[i], 1e-6);
        } else {
          EXPECT_EQ(g.t[i]->get(), g.t[i]->stored()) << "below max_norm the gradients are not touched";
        }
      }
    }
  }
  // max_norm 0 zeroes the gradients; no gradients at all gives a norm of 0; NULL host pointer is fine.
  {
    List g(ctx, {9, 4}, 1.0f);
    auto gp = g.ptrs();
    dlk_clip_grad_norm_params prm;
    dlk_clip_grad_norm_params_init(&prm);
    prm.max_norm = 0.0;
    ASSERT_EQ(dlk_clip_grad_norm(ctx, &prm, gp.size(), gp.data(), nullptr), DLK_SUCCESS) << dlk_last_error();
    for (auto& t : g.t) {
      for (float e : t->get()) EXPECT_EQ(e, 0.0f);
    }
    float n = -1.0f;
    ASSERT_EQ(dlk_clip_grad_norm(ctx, &prm, 0, nullptr, &n), DLK_SUCCESS) << dlk_last_error();
    EXPECT_EQ(n, 0.0f);
  }
}

TEST(Optim, ClipGradNormIsReproducible) {
  DLK_TRACE_SEED();
  Context ctx(backend(), 1);
  SKIP_IF_NO_BACKEND(ctx);
  List g(ctx, {100003, 70000, 3}, 1.0f);
  auto gp = g.ptrs();
  dlk_clip_grad_norm_params prm;
  dlk_clip_grad_norm_params_init(&prm);
  prm.max_norm = 1e30;  // never clips
  float a = 0, b = 0;
  ASSERT_EQ(dlk_clip_grad_norm(ctx, &prm, gp.size(), gp.data(), &a), DLK_SUCCESS) << dlk_last_error();
  ASSERT_EQ(dlk_clip_grad_norm(ctx, &prm, gp.size(), gp.data(), &b), DLK_SUCCESS) << dlk_last_error();
  std::uint32_t ab, bb;
  std::memcpy(&ab, &a, 4);
  std::memcpy(&bb, &b, 4);
  EXPECT_EQ(ab, bb);
}

// ------------------------------------------------------------------------------------------------ zero_grad

TEST(Optim, ZeroGradClearsEveryTensorOfAnyDtype) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  std::vector<std::unique_ptr<Tensor>> ts;
  ts.push_back(std::make_unique<Tensor>(ctx, std::vector<std::int64_t>{100003}, f32()));
  ts.push_back(std::make_unique<Tensor>(ctx, std::vector<std::int64_t>{7, 3}, f16()));
  ts.push_back(std::make_unique<Tensor>(ctx, std::vector<std::int64_t>{1}, bf16()));
  ts.push_back(std::make_unique<Tensor>(ctx, std::vector<std::int64_t>{0}, f32()));
  ts.push_back(std::make_unique<Tensor>(ctx, std::vector<std::int64_t>{13}, u8()));
  ts.push_back(std::make_unique<Tensor>(ctx, std::vector<std::int64_t>{1000}, f32()));
  std::vector<DLTensor*> ptrs;
  for (auto& t : ts) {
    t->set(randn(t->numel()));
    if (t->dtype().code == kDLUInt) t->set(uniform(t->numel(), 1.0f, 200.0f));
    ptrs.push_back(&t->t);
  }
  Tensor untouched(ctx, {5}, f32());
  untouched.set({1, 2, 3, 4, 5});
  ASSERT_EQ(dlk_zero_grad(ctx, ptrs.size(), ptrs.data()), DLK_SUCCESS) << dlk_last_error();
  for (auto& t : ts) {
    for (float e : t->get()) ASSERT_EQ(e, 0.0f);
  }
  EXPECT_EQ(untouched.get(), (std::vector<float>{1, 2, 3, 4, 5}));
  EXPECT_EQ(dlk_zero_grad(ctx, 0, nullptr), DLK_SUCCESS);
}

// ------------------------------------------------------------------------------------------------ bad inputs

void expect_error(dlk_status got, dlk_status want, std::initializer_list<const char*> fragments) {
  EXPECT_EQ(got, want) << dlk_last_error();
  const std::string msg = dlk_last_error();
  for (const char* f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "'" << f << "' not in: " << msg;
}

TEST(Optim, BadInputsAreRejectedAndNothingIsWritten) {
  DLK_TRACE_SEED();
  Context ctx;
  SKIP_IF_NO_BACKEND(ctx);
  const std::vector<std::int64_t> sizes = {5, 6, 7, 8};
  List p(ctx, sizes, 1.0f), g(ctx, sizes, 1.0f), m(ctx, sizes, 1.0f), v(ctx, sizes, 1.0f);
  auto pp = p.ptrs(), gp = g.ptrs(), mp = m.ptrs(), vp = v.ptrs();
  std::vector<const DLTensor*> gc(gp.begin(), gp.end());
  std::vector<std::vector<float>> before;
  for (auto& t : p.t) before.push_back(t->stored());
  auto adam = [&](const dlk_adamw_params& prm) {
    return dlk_adamw_step(ctx, &prm, pp.size(), pp.data(), gc.data(), mp.data(), vp.data(), nullptr);
  };
  dlk_adamw_params prm;
  dlk_adamw_params_init(&prm);
  // A gradient whose shape differs from its parameter's: the message names the index.
  Tensor wrong(ctx, {9}, f32());
  gc[3] = &wrong.t;
  expect_error(adam(prm), DLK_ERROR_SHAPE, {"adamw_step", "grads[3]", "[9]", "[8]", "params[3]"});
  gc[3] = gp[3];
  Tensor half(ctx, {6}, f16());
  mp[1] = &half.t;
  expect_error(adam(prm), DLK_ERROR_DTYPE, {"exp_avgs[1]", "float16"});
  mp[1] = &m.t[1]->t;
  mp[2] = vp[2];
  expect_error(adam(prm), DLK_ERROR_INVALID_ARGUMENT, {"exp_avg_sqs[2]", "exp_avgs[2]"});
  mp[2] = &m.t[2]->t;
  mp[0] = pp[0];
  expect_error(adam(prm), DLK_ERROR_INVALID_ARGUMENT, {"exp_avgs[0]", "overlaps", "params[0]"});
  mp[0] = &m.t[0]->t;
  dlk_adamw_params bad = prm;
  bad.lr = -1e-3;
  expect_error(adam(bad), DLK_ERROR_INVALID_ARGUMENT, {"params->lr", "-0.001", ">= 0"});
  bad = prm;
  bad.beta1 = std::numeric_limits<double>::quiet_NaN();
  expect_error(adam(bad), DLK_ERROR_INVALID_ARGUMENT, {"params->beta1", "nan", "[0, 1)"});
  bad = prm;
  bad.beta2 = 1.0;
  expect_error(adam(bad), DLK_ERROR_INVALID_ARGUMENT, {"params->beta2"});
  bad = prm;
  bad.eps = 0.0;
  expect_error(adam(bad), DLK_ERROR_INVALID_ARGUMENT, {"params->eps", "> 0"});
  bad = prm;
  bad.eps = -1e-8;
  expect_error(adam(bad), DLK_ERROR_INVALID_ARGUMENT, {"params->eps"});
  bad = prm;
  bad.step = 0;
  expect_error(adam(bad), DLK_ERROR_INVALID_ARGUMENT, {"params->step", "0"});
  bad = prm;
  const std::int32_t groups[4] = {0, 0, 2, -1};
  const double lrs[2] = {1e-3, 1e-3};
  bad.num_groups = 2;
  bad.tensor_group = groups;
  bad.group_lr = lrs;
  expect_error(adam(bad), DLK_ERROR_INVALID_ARGUMENT, {"params->tensor_group[2]", "2"});
  const double neg_lrs[2] = {1e-3, -1.0};
  const std::int32_t ok_groups[4] = {0, 0, 1, -1};
  bad.tensor_group = ok_groups;
  bad.group_lr = neg_lrs;
  expect_error(adam(bad), DLK_ERROR_INVALID_ARGUMENT, {"params->group_lr[1]"});
  bad = prm;
  bad.struct_size = 8;
  expect_error(adam(bad), DLK_ERROR_INVALID_ARGUMENT, {"struct_size"});
  expect_error(dlk_adamw_step(ctx, &prm, pp.size(), pp.data(), nullptr, mp.data(), vp.data(), nullptr),
               DLK_ERROR_INVALID_ARGUMENT, {"grads", "NULL"});
  prm.amsgrad = 1;
  expect_error(adam(prm), DLK_ERROR_INVALID_ARGUMENT, {"max_exp_avg_sqs", "NULL"});
  prm.amsgrad = 0;
  expect_error(dlk_adamw_step(nullptr, &prm, pp.size(), pp.data(), gc.data(), mp.data(), vp.data(), nullptr),
               DLK_ERROR_INVALID_ARGUMENT, {"context"});
  std::vector<DLTensor*> with_null = pp;
  with_null[1] = nullptr;
  expect_error(dlk_adamw_step(ctx, &prm, pp.size(), with_null.data(), gc.data(), mp.data(), vp.data(), nullptr),
               DLK_ERROR_INVALID_ARGUMENT, {"params[1]"});

  // Buffers shared between tensors of the list would race on a GPU.
  pp[3] = pp[1];
  gc[3] = gc[1];
  mp[3] = &m.t[1]->t;
  vp[3] = &v.t[1]->t;
  expect_error(adam(prm), DLK_ERROR_INVALID_ARGUMENT, {"overlaps", "[1]", "[3]"});
  pp[3] = &p.t[3]->t;
  gc[3] = gp[3];
  mp[3] = &m.t[3]->t;
  vp[3] = &v.t[3]->t;
  Tensor six(ctx, {6}, f32());  // a gradient that is another tensor's parameter
  std::vector<DLTensor*> p2 = {&p.t[1]->t, &six.t};
  std::vector<const DLTensor*> g2 = {&six.t, &p.t[1]->t};
  List m2(ctx, {6, 6}, 0.0f, true), v2(ctx, {6, 6}, 0.0f, true);
  auto m2p = m2.ptrs(), v2p = v2.ptrs();
  expect_error(dlk_adamw_step(ctx, &prm, 2, p2.data(), g2.data(), m2p.data(), v2p.data(), nullptr),
               DLK_ERROR_INVALID_ARGUMENT, {"overlaps params[", "writes"});
  gc[0] = gp[0];
  std::vector<DLTensor*> dup = {gp[0], gp[1], gp[0]};
  dlk_clip_grad_norm_params cp0;
  dlk_clip_grad_norm_params_init(&cp0);
  expect_error(dlk_clip_grad_norm(ctx, &cp0, dup.size(), dup.data(), nullptr), DLK_ERROR_INVALID_ARGUMENT,
               {"grads[2]", "overlaps grads[0]"});

  // SGD.
  dlk_sgd_params sp;
  dlk_sgd_params_init(&sp);
  sp.lr = -0.1;
  expect_error(dlk_sgd_step(ctx, &sp, pp.size(), pp.data(), gc.data(), nullptr), DLK_ERROR_INVALID_ARGUMENT,
               {"sgd_step", "params->lr"});
  dlk_sgd_params_init(&sp);
  sp.nesterov = 1;
  expect_error(dlk_sgd_step(ctx, &sp, pp.size(), pp.data(), gc.data(), nullptr), DLK_ERROR_INVALID_ARGUMENT,
               {"Nesterov"});
  sp.momentum = 0.9;
  sp.dampening = 0.1;
  expect_error(dlk_sgd_step(ctx, &sp, pp.size(), pp.data(), gc.data(), mp.data()), DLK_ERROR_INVALID_ARGUMENT,
               {"Nesterov", "dampening"});
  dlk_sgd_params_init(&sp);
  sp.momentum = 0.9f;
  expect_error(dlk_sgd_step(ctx, &sp, pp.size(), pp.data(), gc.data(), nullptr), DLK_ERROR_INVALID_ARGUMENT,
               {"momentum_buffers", "NULL"});
  sp.momentum = std::numeric_limits<double>::infinity();
  expect_error(dlk_sgd_step(ctx, &sp, pp.size(), pp.data(), gc.data(), mp.data()), DLK_ERROR_INVALID_ARGUMENT,
               {"params->momentum"});
  dlk_sgd_params_init(&sp);
  gc[2] = &wrong.t;
  expect_error(dlk_sgd_step(ctx, &sp, pp.size(), pp.data(), gc.data(), nullptr), DLK_ERROR_SHAPE, {"grads[2]"});
  gc[2] = gp[2];

  // Clipping and zeroing.
  dlk_clip_grad_norm_params cp;
  dlk_clip_grad_norm_params_init(&cp);
  cp.norm_type = 3.0;
  expect_error(dlk_clip_grad_norm(ctx, &cp, gp.size(), gp.data(), nullptr), DLK_ERROR_INVALID_ARGUMENT,
               {"clip_grad_norm", "norm_type", "3"});
  dlk_clip_grad_norm_params_init(&cp);
  cp.max_norm = -1.0;
  expect_error(dlk_clip_grad_norm(ctx, &cp, gp.size(), gp.data(), nullptr), DLK_ERROR_INVALID_ARGUMENT,
               {"max_norm"});
  dlk_clip_grad_norm_params_init(&cp);
  Tensor two(ctx, {2}, f32());
  cp.total_norm = &two.t;
  expect_error(dlk_clip_grad_norm(ctx, &cp, gp.size(), gp.data(), nullptr), DLK_ERROR_SHAPE, {"total_norm"});
  std::vector<DLTensor*> gm = gp;
  gm[1] = &half.t;
  expect_error(dlk_clip_grad_norm(ctx, nullptr, gm.size(), gm.data(), nullptr), DLK_ERROR_DTYPE, {"grads[1]"});
  expect_error(dlk_zero_grad(ctx, 2, nullptr), DLK_ERROR_INVALID_ARGUMENT, {"zero_grad", "grads"});

  for (std::size_t i = 0; i < pp.size(); ++i) EXPECT_EQ(p.t[i]->get(), before[i]) << "params[" << i << "] written";
  EXPECT_EQ(dlk_sgd_params_init(nullptr), DLK_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(dlk_adamw_params_init(nullptr), DLK_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(dlk_clip_grad_norm_params_init(nullptr), DLK_ERROR_INVALID_ARGUMENT);
}

}  // namespace
}  // namespace dlk::test
