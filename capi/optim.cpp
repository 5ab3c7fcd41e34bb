// C ABI of the fused multi-tensor optimizers, clipping and zeroing: validate every tensor of the list (messages name
// the list and the index, e.g. "adamw_step: grads[3] has shape [7], expected [8] like params[3]"), build the
// per-tensor table (frozen and empty tensors left out, per-group scalars computed here in fp64), dispatch.
#include <dlk/dlk.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "capi/dispatch.h"
#include "capi/guard.h"
#include "capi/validate.h"
#include "optim/optim.h"

namespace dlk {
namespace {

std::string item(const char* list, std::size_t i) { return std::string(list) + "[" + std::to_string(i) + "]"; }

// A float32 contiguous tensor, entry i of `list`; the list itself must be non-null.
void check_f32(const Check& check, const DLTensor* const* list, const char* name, std::size_t i) {
  if (!list) check.fail(DLK_ERROR_INVALID_ARGUMENT, name, " is NULL");
  const std::string n = item(name, i);
  check.contiguous(list[i], n.c_str());
  check.dtype_in(list[i], n.c_str(), {DType::F32});
}

// Entry i of `list` (float32, contiguous) has the shape of params[i] and is a separate buffer.
void check_like(const Check& check, const DLTensor* p, std::size_t i, const DLTensor* const* list, const char* name,
                bool may_alias = false) {
  check_f32(check, list, name, i);
  const std::string pn = item("params", i), n = item(name, i);
  check.same_shape(p, pn.c_str(), list[i], n.c_str());
  if (may_alias) return;
  const char* a = static_cast<const char*>(data_of(p));
  const char* b = static_cast<const char*>(data_of(list[i]));
  const std::size_t bytes = static_cast<std::size_t>(numel(p)) * 4;
  if (bytes > 0 && a < b + bytes && b < a + bytes)
    check.fail(DLK_ERROR_INVALID_ARGUMENT, n, " overlaps ", pn, ", expected separate buffers");
}

// The memory one call touches, to reject overlaps between tensors of the list: on a GPU the tensors are updated by
// different blocks at once, so two written buffers that overlap (or a gradient that overlaps another tensor's
// written buffer) would race. Only grads[i] may be exactly params[i] (each element is read, then written, by the
// same thread).
struct Extent {
  const char* begin;
  const char* end;
  const char* list;
  std::size_t index;
};

class Extents {
 public:
  void written(const void* p, std::int64_t n, const char* list, std::size_t i) { add(written_, p, n, list, i); }
  void read(const void* p, std::int64_t n, const char* list, std::size_t i) { add(read_, p, n, list, i); }
  void check(const Check& check) {
    auto by_begin = [](const Extent& a, const Extent& b) { return a.begin < b.begin; };
    std::sort(written_.begin(), written_.end(), by_begin);
    for (std::size_t k = 1; k < written_.size(); ++k) {
      const Extent &a = written_[k - 1], &b = written_[k];
      if (b.begin < a.end)
        check.fail(DLK_ERROR_INVALID_ARGUMENT, b.list, "[", b.index, "] overlaps ", a.list, "[", a.index,
                   "]; every buffer the step writes must be separate");
    }
    // Written extents are now disjoint and sorted, so their ends are sorted too.
    for (const Extent& r : read_) {
      auto it = std::lower_bound(written_.begin(), written_.end(), r.begin,
                                 [](const Extent& w, const char* v) { return w.end <= v; });
      for (; it != written_.end() && it->begin < r.end; ++it) {
        const bool same_param = it->index == r.index && it->begin == r.begin && it->end == r.end &&
                                std::strcmp(it->list, "params") == 0;
        if (!same_param)
          check.fail(DLK_ERROR_INVALID_ARGUMENT, r.list, "[", r.index, "] overlaps ", it->list, "[", it->index,
                     "], which the step writes");
      }
    }
  }

 private:
  static void add(std::vector<Extent>& v, const void* p, std::int64_t n, const char* list, std::size_t i) {
    const char* b = static_cast<const char*>(p);
    v.push_back(Extent{b, b + n * 4, list, i});
  }
  std::vector<Extent> written_, read_;
};

void check_scalar(const Check& check, double v, const char* name, double lo, bool lo_open, double hi, bool hi_open,
                  const char* expected) {
  const bool ok = std::isfinite(v) && (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
  if (!ok) check.fail(DLK_ERROR_INVALID_ARGUMENT, name, " is ", v, ", expected ", expected);
}

constexpr double kInfD = HUGE_VAL;

// Per-tensor (lr, weight decay, step) from the groups; returns false for a frozen tensor.
struct GroupInfo {
  int num_groups;
  const std::int32_t* tensor_group;
  const double* group_lr;
  const double* group_wd;
  const std::int64_t* group_step;
  double lr, wd;
  std::int64_t step;
};

void check_groups(const Check& check, const GroupInfo& g, std::size_t num_tensors, bool has_step) {
  if (g.num_groups < 0) check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->num_groups is ", g.num_groups, ", expected >= 0");
  if (g.num_groups == 0) return;
  if (!g.tensor_group && num_tensors > 0) check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->tensor_group is NULL with num_groups ", g.num_groups);
  if (!g.group_lr) check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->group_lr is NULL with num_groups ", g.num_groups);
  for (int k = 0; k < g.num_groups; ++k) {
    const std::string n = item("params->group_lr", static_cast<std::size_t>(k));
    check_scalar(check, g.group_lr[k], n.c_str(), 0, false, kInfD, true, "a finite number >= 0");
    if (g.group_wd) {
      const std::string w = item("params->group_weight_decay", static_cast<std::size_t>(k));
      check_scalar(check, g.group_wd[k], w.c_str(), 0, false, kInfD, true, "a finite number >= 0");
    }
    if (has_step && g.group_step && g.group_step[k] < 1)
      check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->group_step[", k, "] is ", g.group_step[k],
                 ", expected >= 1 (steps count from 1)");
  }
  for (std::size_t i = 0; i < num_tensors; ++i) {
    const std::int32_t t = g.tensor_group[i];
    if (t < -1 || t >= g.num_groups)
      check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->tensor_group[", i, "] is ", t, ", expected -1 (frozen) or a group in [0, ",
                 g.num_groups, ")");
  }
}

bool tensor_scalars(const GroupInfo& g, std::size_t i, double* lr, double* wd, std::int64_t* step) {
  *lr = g.lr;
  *wd = g.wd;
  *step = g.step;
  if (g.num_groups == 0) return true;
  const std::int32_t k = g.tensor_group[i];
  if (k < 0) return false;
  *lr = g.group_lr[k];
  if (g.group_wd) *wd = g.group_wd[k];
  if (g.group_step) *step = g.group_step[k];
  return true;
}

void check_list(const Check& check, std::size_t num_tensors, const void* list, const char* name) {
  if (num_tensors > 0 && !list) check.fail(DLK_ERROR_INVALID_ARGUMENT, name, " is NULL with num_tensors ", num_tensors);
}

template <typename P>
void read_params(const Check& check, const P* params, P* out, std::size_t min_size, dlk_status (*init)(P*)) {
  init(out);
  if (!params) return;
  check.params_size(params->struct_size, min_size, "params");
  std::memcpy(out, params, params->struct_size < sizeof(*out) ? params->struct_size : sizeof(*out));
  out->struct_size = sizeof(*out);
}

}  // namespace
}  // namespace dlk

extern "C" {

DLK_API dlk_status dlk_sgd_params_init(dlk_sgd_params* params) {
  return dlk::guard("dlk_sgd_params_init", [&] {
    if (!params) dlk::fail(DLK_ERROR_INVALID_ARGUMENT, "dlk_sgd_params_init: params is NULL");
    std::memset(params, 0, sizeof(*params));
    params->struct_size = sizeof(*params);
    params->lr = 0.01;
  });
}

DLK_API dlk_status dlk_adamw_params_init(dlk_adamw_params* params) {
  return dlk::guard("dlk_adamw_params_init", [&] {
    if (!params) dlk::fail(DLK_ERROR_INVALID_ARGUMENT, "dlk_adamw_params_init: params is NULL");
    std::memset(params, 0, sizeof(*params));
    params->struct_size = sizeof(*params);
    params->lr = 1e-3;
    params->beta1 = 0.9;
    params->beta2 = 0.999;
    params->eps = 1e-8;
    params->weight_decay = 1e-2;
    params->decoupled = 1;
    params->step = 1;
  });
}

DLK_API dlk_status dlk_clip_grad_norm_params_init(dlk_clip_grad_norm_params* params) {
  return dlk::guard("dlk_clip_grad_norm_params_init", [&] {
    if (!params) dlk::fail(DLK_ERROR_INVALID_ARGUMENT, "dlk_clip_grad_norm_params_init: params is NULL");
    std::memset(params, 0, sizeof(*params));
    params->struct_size = sizeof(*params);
    params->max_norm = 1.0;
    params->norm_type = 2.0;
  });
}

DLK_API dlk_status dlk_sgd_step(dlk_context* context, const dlk_sgd_params* params, size_t num_tensors,
                                DLTensor* const* param_tensors, const DLTensor* const* grads,
                                DLTensor* const* momentum_buffers) {
  using namespace dlk;
  return with_context("sgd_step", context, [&](const Exec& exec) {
    Check check("sgd_step", context);
    dlk_sgd_params p;
    read_params(check, params, &p, offsetof(dlk_sgd_params, group_weight_decay) + sizeof(void*), dlk_sgd_params_init);
    check_scalar(check, p.lr, "params->lr", 0, false, kInfD, true, "a finite number >= 0");
    check_scalar(check, p.momentum, "params->momentum", 0, false, kInfD, true, "a finite number >= 0");
    check.finite(p.dampening, "params->dampening");
    check_scalar(check, p.weight_decay, "params->weight_decay", 0, false, kInfD, true, "a finite number >= 0");
    if (p.nesterov && (p.momentum <= 0.0 || p.dampening != 0.0))
      check.fail(DLK_ERROR_INVALID_ARGUMENT, "Nesterov momentum requires a momentum > 0 and zero dampening, got momentum ",
                 p.momentum, " and dampening ", p.dampening);
    const bool use_momentum = p.momentum != 0.0;
    check_list(check, num_tensors, param_tensors, "params");
    check_list(check, num_tensors, grads, "grads");
    if (use_momentum) check_list(check, num_tensors, momentum_buffers, "momentum_buffers");
    GroupInfo g{p.num_groups, p.tensor_group, p.group_lr, p.group_weight_decay, nullptr, p.lr, p.weight_decay, 1};
    check_groups(check, g, num_tensors, false);
    SgdArgs a;
    a.momentum = static_cast<float>(p.momentum);
    a.one_minus_dampening = static_cast<float>(1.0 - p.dampening);
    a.nesterov = p.nesterov != 0;
    a.first_step = p.first_step != 0;
    a.table.tensors.reserve(num_tensors);
    Extents extents;
    for (std::size_t i = 0; i < num_tensors; ++i) {
      check_f32(check, param_tensors, "params", i);
      const DLTensor* pt = param_tensors[i];
      check_like(check, pt, i, grads, "grads", true);
      if (use_momentum) {
        check_like(check, pt, i, momentum_buffers, "momentum_buffers");
        const std::string n = item("momentum_buffers", i), gn = item("grads", i);
        check.no_partial_overlap(momentum_buffers[i], n.c_str(), grads[i], gn.c_str());
      }
      OptimTensor t;
      std::int64_t step;
      double lr, wd;
      if (!tensor_scalars(g, i, &lr, &wd, &step)) continue;
      t.lr = static_cast<float>(lr);
      t.wd = static_cast<float>(wd);
      t.n = numel(pt);
      if (t.n == 0) continue;
      t.p = static_cast<float*>(data_of(pt));
      t.g = static_cast<const float*>(data_of(grads[i]));
      if (use_momentum) t.s0 = static_cast<float*>(data_of(momentum_buffers[i]));
      a.table.tensors.push_back(t);
      extents.written(t.p, t.n, "params", i);
      extents.read(t.g, t.n, "grads", i);
      if (t.s0) extents.written(t.s0, t.n, "momentum_buffers", i);
    }
    extents.check(check);
    a.table.finish();
    if (a.table.chunks == 0) return;
    DLK_DISPATCH(sgd_step, a, exec);
  });
}

DLK_API dlk_status dlk_adamw_step(dlk_context* context, const dlk_adamw_params* params, size_t num_tensors,
                                  DLTensor* const* param_tensors, const DLTensor* const* grads,
                                  DLTensor* const* exp_avgs, DLTensor* const* exp_avg_sqs,
                                  DLTensor* const* max_exp_avg_sqs) {
  using namespace dlk;
  return with_context("adamw_step", context, [&](const Exec& exec) {
    Check check("adamw_step", context);
    dlk_adamw_params p;
    read_params(check, params, &p, offsetof(dlk_adamw_params, group_step) + sizeof(void*), dlk_adamw_params_init);
    check_scalar(check, p.lr, "params->lr", 0, false, kInfD, true, "a finite number >= 0");
    check_scalar(check, p.beta1, "params->beta1", 0, false, 1, true, "a number in [0, 1)");
    check_scalar(check, p.beta2, "params->beta2", 0, false, 1, true, "a number in [0, 1)");
    check_scalar(check, p.eps, "params->eps", 0, true, kInfD, true, "a finite number > 0");
    check_scalar(check, p.weight_decay, "params->weight_decay", 0, false, kInfD, true, "a finite number >= 0");
    if (p.step < 1 && !(p.num_groups > 0 && p.group_step))
      check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->step is ", p.step, ", expected >= 1 (steps count from 1)");
    check_list(check, num_tensors, param_tensors, "params");
    check_list(check, num_tensors, grads, "grads");
    check_list(check, num_tensors, exp_avgs, "exp_avgs");
    check_list(check, num_tensors, exp_avg_sqs, "exp_avg_sqs");
    if (p.amsgrad) check_list(check, num_tensors, max_exp_avg_sqs, "max_exp_avg_sqs");
    GroupInfo g{p.num_groups, p.tensor_group, p.group_lr, p.group_weight_decay, p.group_step, p.lr, p.weight_decay,
                p.step};
    check_groups(check, g, num_tensors, true);
    AdamArgs a;
    a.k.beta1 = static_cast<float>(p.beta1);
    a.k.one_minus_beta1 = static_cast<float>(1.0 - p.beta1);
    a.k.beta2 = static_cast<float>(p.beta2);
    a.k.one_minus_beta2 = static_cast<float>(1.0 - p.beta2);
    a.k.eps = static_cast<float>(p.eps);
    a.amsgrad = p.amsgrad != 0;
    a.table.tensors.reserve(num_tensors);
    Extents extents;
    for (std::size_t i = 0; i < num_tensors; ++i) {
      check_f32(check, param_tensors, "params", i);
      const DLTensor* pt = param_tensors[i];
      check_like(check, pt, i, grads, "grads", true);
      check_like(check, pt, i, exp_avgs, "exp_avgs");
      check_like(check, pt, i, exp_avg_sqs, "exp_avg_sqs");
      const std::string mn = item("exp_avgs", i), vn = item("exp_avg_sqs", i), gn = item("grads", i);
      check.no_partial_overlap(exp_avgs[i], mn.c_str(), grads[i], gn.c_str());
      check.no_partial_overlap(exp_avg_sqs[i], vn.c_str(), grads[i], gn.c_str());
      check.no_partial_overlap(exp_avg_sqs[i], vn.c_str(), exp_avgs[i], mn.c_str());
      if (data_of(exp_avgs[i]) == data_of(exp_avg_sqs[i]) && numel(pt) > 0)
        check.fail(DLK_ERROR_INVALID_ARGUMENT, vn, " is the same buffer as ", mn, ", expected separate buffers");
      if (p.amsgrad) check_like(check, pt, i, max_exp_avg_sqs, "max_exp_avg_sqs");
      OptimTensor t;
      std::int64_t step;
      double lr, wd;
      if (!tensor_scalars(g, i, &lr, &wd, &step)) continue;
      t.lr = static_cast<float>(lr);
      t.wd = static_cast<float>(wd);
      if (step < 1)
        check.fail(DLK_ERROR_INVALID_ARGUMENT, "the step of params[", i, "] is ", step, ", expected >= 1");
      t.n = numel(pt);
      if (t.n == 0) continue;
      t.p = static_cast<float*>(data_of(pt));
      t.g = static_cast<const float*>(data_of(grads[i]));
      t.s0 = static_cast<float*>(data_of(exp_avgs[i]));
      t.s1 = static_cast<float*>(data_of(exp_avg_sqs[i]));
      if (p.amsgrad) t.s2 = static_cast<float*>(data_of(max_exp_avg_sqs[i]));
      // torch: bias corrections and step size as Python floats (fp64), rounded to fp32 where the kernel uses them.
      const double s = static_cast<double>(step);
      const double bc1 = 1.0 - std::pow(p.beta1, s);
      const double bc2 = 1.0 - std::pow(p.beta2, s);
      t.decay = p.decoupled ? static_cast<float>(1.0 - lr * wd) : 1.0f;
      t.l2 = p.decoupled ? 0.0f : t.wd;
      t.step_size = static_cast<float>(bc1 > 0 ? lr / bc1 : 0.0);
      t.bc2_sqrt = static_cast<float>(std::sqrt(bc2));
      if (!(t.bc2_sqrt > 0.0f)) t.bc2_sqrt = 1.0f;  // beta2 == 0 is impossible past step 0; guard anyway
      a.table.tensors.push_back(t);
      extents.written(t.p, t.n, "params", i);
      extents.read(t.g, t.n, "grads", i);
      extents.written(t.s0, t.n, "exp_avgs", i);
      extents.written(t.s1, t.n, "exp_avg_sqs", i);
      if (t.s2) extents.written(t.s2, t.n, "max_exp_avg_sqs", i);
    }
    extents.check(check);
    a.table.finish();
    if (a.table.chunks == 0) return;
    DLK_DISPATCH(adam_step, a, exec);
  });
}

DLK_API dlk_status dlk_clip_grad_norm(dlk_context* context, const dlk_clip_grad_norm_params* params,
                                      size_t num_tensors, DLTensor* const* grads, float* total_norm_host) {
  using namespace dlk;
  return with_context("clip_grad_norm", context, [&](const Exec& exec) {
    Check check("clip_grad_norm", context);
    dlk_clip_grad_norm_params p;
    read_params(check, params, &p, offsetof(dlk_clip_grad_norm_params, total_norm) + sizeof(void*),
                dlk_clip_grad_norm_params_init);
    check_scalar(check, p.max_norm, "params->max_norm", 0, false, kInfD, true, "a finite number >= 0");
    ClipArgs a;
    a.max_norm = static_cast<float>(p.max_norm);
    if (p.norm_type == 2.0) a.norm = NormKind::L2;
    else if (p.norm_type == 1.0) a.norm = NormKind::L1;
    else if (std::isinf(p.norm_type) && p.norm_type > 0) a.norm = NormKind::Inf;
    else check.fail(DLK_ERROR_INVALID_ARGUMENT, "params->norm_type is ", p.norm_type, ", expected 1, 2 or inf");
    if (p.total_norm) {
      check.contiguous(p.total_norm, "params->total_norm");
      check.dtype_in(p.total_norm, "params->total_norm", {DType::F32});
      if (numel(p.total_norm) != 1)
        check.fail(DLK_ERROR_SHAPE, "params->total_norm has shape ", shape_string(p.total_norm),
                   ", expected one element");
      a.total_norm_device = static_cast<float*>(data_of(p.total_norm));
    }
    a.total_norm_host = total_norm_host;
    check_list(check, num_tensors, grads, "grads");
    a.table.tensors.reserve(num_tensors);
    Extents extents;
    for (std::size_t i = 0; i < num_tensors; ++i) {
      check_f32(check, grads, "grads", i);
      OptimTensor t;
      t.n = numel(grads[i]);
      if (t.n == 0) continue;
      t.p = static_cast<float*>(data_of(grads[i]));
      a.table.tensors.push_back(t);
      extents.written(t.p, t.n, "grads", i);
    }
    extents.check(check);
    a.table.finish();
    DLK_DISPATCH(clip_grad_norm, a, exec);
  });
}

DLK_API dlk_status dlk_zero_grad(dlk_context* context, size_t num_tensors, DLTensor* const* grads) {
  using namespace dlk;
  return with_context("zero_grad", context, [&](const Exec& exec) {
    Check check("zero_grad", context);
    check_list(check, num_tensors, grads, "grads");
    ZeroArgs a;
    a.table.tensors.reserve(num_tensors);
    for (std::size_t i = 0; i < num_tensors; ++i) {
      const std::string n = item("grads", i);
      const DType dt = check.contiguous(grads[i], n.c_str());
      const std::int64_t bytes = numel(grads[i]) * static_cast<std::int64_t>(dtype_size(dt));
      if (bytes == 0) continue;
      OptimTensor t;
      t.p = static_cast<float*>(data_of(grads[i]));
      const bool words = bytes % 4 == 0 && reinterpret_cast<std::uintptr_t>(t.p) % 4 == 0;
      t.unit_bytes = words ? 4 : 1;
      t.n = words ? bytes / 4 : bytes;
      a.table.tensors.push_back(t);
    }
    a.table.finish();
    if (a.table.chunks == 0) return;
    DLK_DISPATCH(zero_grad, a, exec);
  });
}

}  // extern "C"
