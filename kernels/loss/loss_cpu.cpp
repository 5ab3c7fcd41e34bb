// CPU reference of the losses, and the fallback on machines without a GPU.
//
// Rows (or elements) are split across OpenMP threads; each row is reduced in fp64 (max, log-sum-exp, the target
// sums), so this is the ground truth the kernels are compared to. Per-row losses go to a scratch vector that is then
// summed in fp64 in index order: mean and sum do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "common/half.h"
#include "common/cpu_math.h"
#include "common/host.h"
#include "loss/loss.h"
#include "runtime/error.h"

namespace dlk::cpu {
namespace {

inline float load(DType t, const void* p, std::int64_t i) {
  switch (t) {
    case DType::F32: return static_cast<const float*>(p)[i];
    case DType::F16: return fp16_to_float(static_cast<const std::uint16_t*>(p)[i]);
    case DType::BF16: return bf16_to_float(static_cast<const std::uint16_t*>(p)[i]);
    default: return 0.0f;
  }
}

inline void store(DType t, void* p, std::int64_t i, float v) {
  switch (t) {
    case DType::F32: static_cast<float*>(p)[i] = v; break;
    case DType::F16: static_cast<std::uint16_t*>(p)[i] = float_to_fp16(v); break;
    case DType::BF16: static_cast<std::uint16_t*>(p)[i] = float_to_bf16(v); break;
    default: break;
  }
}

inline std::int64_t load_index(DType t, const void* p, std::int64_t i) {
  return t == DType::I64 ? static_cast<const std::int64_t*>(p)[i] : static_cast<const std::int32_t*>(p)[i];
}

double sum_in_order(const std::vector<double>& v) {
  double s = 0.0;
  for (double x : v) s += x;
  return s;
}

// Upstream gradient of element i, before the mean's division.
inline double upstream(const float* dloss, int reduction, std::int64_t i) {
  if (!dloss) return 1.0;
  return reduction == DLK_REDUCTION_NONE ? dloss[i] : dloss[0];
}

}  // namespace

// Rows of the cross-entropy: each row is converted to fp32 once (load_row), exponentiated once in fp32, and its sums
// (softmax denominator, logits, target mass) accumulated in fp64; dlogits is built in the same buffer and stored
// (store_row) in the logits dtype.
template <typename Load, typename Store>
void cross_entropy_rows(const CrossEntropyArgs& a, const Exec& exec, const std::vector<char>& valid, double div,
                        std::vector<double>* row_loss, Load load_row, Store store_row) {
  const std::int64_t rows = a.rows, cols = a.cols;
  const float s = a.label_smoothing, uni = s / static_cast<float>(cols);
  const int nt = host::threads(exec, rows * cols);
#pragma omp parallel num_threads(nt)
  {
    std::vector<float> zbuf(static_cast<std::size_t>(cols)), ebuf(static_cast<std::size_t>(cols)),
        qbuf(a.prob_target ? static_cast<std::size_t>(cols) : 0);
    float* z = zbuf.data();
    float* e = ebuf.data();
    float* q = qbuf.data();
#pragma omp for schedule(static)
    for (std::int64_t r = 0; r < rows; ++r) {
      if (!valid[r]) {
        if (a.dlogits) {
          std::fill(e, e + cols, 0.0f);
          store_row(r, e);
        }
        continue;
      }
      load_row(a.logits, r, z);
      std::int64_t t = -1;
      if (!a.prob_target) t = load_index(a.target_dtype, a.target, r);
      const bool bad = !a.prob_target && (t < 0 || t >= cols);
      float mx = -std::numeric_limits<float>::infinity();
      // simd reductions and vmath::exp so the loops vectorise (a NaN logit still reaches the sums through e).
#pragma omp simd reduction(max : mx)
      for (std::int64_t j = 0; j < cols; ++j) mx = z[j] > mx ? z[j] : mx;
      for (std::int64_t j = 0; j < cols; ++j) e[j] = vmath::exp(z[j] - mx);
      double total = 0.0, zsum = 0.0;
#pragma omp simd reduction(+ : total, zsum)
      for (std::int64_t j = 0; j < cols; ++j) {
        total += e[j];
        zsum += z[j];
      }
      const double lse = mx + std::log(total);
      double qsum = 1.0, loss;
      if (a.prob_target) {
        load_row(a.target, r, q);
        double qs = 0.0, qz = 0.0;
        for (std::int64_t c = 0; c < cols; ++c) {
          q[c] = (1.0f - s) * q[c] + uni;
          qs += q[c];
          qz += static_cast<double>(q[c]) * z[c];
        }
        qsum = qs;
        loss = lse * qs - qz;
      } else {
        loss = bad ? std::nan("")
                   : lse - (1.0 - s) * z[t] - (s > 0.0f ? static_cast<double>(uni) * zsum : 0.0);  // 0 * -inf is NaN
      }
      (*row_loss)[r] = loss;
      if (!a.dlogits) continue;
      const double g = bad ? std::nan("") : upstream(a.dloss, a.reduction, r) / div;
      const float pscale = static_cast<float>(qsum / total * g), gf = static_cast<float>(g);
      if (a.prob_target) {
        for (std::int64_t c = 0; c < cols; ++c) e[c] = e[c] * pscale - q[c] * gf;
      } else {
        for (std::int64_t c = 0; c < cols; ++c) e[c] = e[c] * pscale - uni * gf;
        if (!bad) e[t] -= (1.0f - s) * gf;
      }
      store_row(r, e);
    }
  }
}

void cross_entropy(const CrossEntropyArgs& a, const Exec& exec) {
  const std::int64_t rows = a.rows, cols = a.cols;
  std::vector<double> row_loss(static_cast<std::size_t>(rows), 0.0);
  std::vector<char> valid(static_cast<std::size_t>(rows), 1);
  std::int64_t count = rows;
  if (!a.prob_target) {
    count = 0;
    for (std::int64_t r = 0; r < rows; ++r) {
      valid[r] = load_index(a.target_dtype, a.target, r) != a.ignore_index;
      count += valid[r];
    }
  }
  const double div = a.reduction == DLK_REDUCTION_MEAN ? static_cast<double>(count) : 1.0;
  const DType dt = a.dtype;
  auto load_row = [dt, cols](const void* base, std::int64_t r, float* out) {
    if (dt == DType::F32) {
      std::memcpy(out, static_cast<const float*>(base) + r * cols, static_cast<std::size_t>(cols) * sizeof(float));
    } else {
      const std::uint16_t* p = static_cast<const std::uint16_t*>(base) + r * cols;
      if (dt == DType::F16)
        for (std::int64_t j = 0; j < cols; ++j) out[j] = fp16_to_float(p[j]);
      else
        for (std::int64_t j = 0; j < cols; ++j) out[j] = bf16_to_float(p[j]);
    }
  };
  auto store_row = [&a, dt, cols](std::int64_t r, const float* v) {
    if (dt == DType::F32) {
      std::memcpy(static_cast<float*>(a.dlogits) + r * cols, v, static_cast<std::size_t>(cols) * sizeof(float));
    } else {
      std::uint16_t* p = static_cast<std::uint16_t*>(a.dlogits) + r * cols;
      if (dt == DType::F16)
        for (std::int64_t j = 0; j < cols; ++j) p[j] = float_to_fp16(v[j]);
      else
        for (std::int64_t j = 0; j < cols; ++j) p[j] = float_to_bf16(v[j]);
    }
  };
  cross_entropy_rows(a, exec, valid, div, &row_loss, load_row, store_row);
  if (!a.loss) return;
  if (a.reduction == DLK_REDUCTION_NONE) {
    for (std::int64_t r = 0; r < rows; ++r) a.loss[r] = static_cast<float>(row_loss[r]);
  } else {
    a.loss[0] = static_cast<float>(sum_in_order(row_loss) / div);
  }
}

void nll_loss(const NllArgs& a, const Exec&) {
  const std::int64_t rows = a.rows, cols = a.cols;
  double wsum = 0.0;
  std::vector<double> row_loss(static_cast<std::size_t>(rows), 0.0);
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t t = load_index(a.target_dtype, a.target, r);
    if (t == a.ignore_index) continue;
    if (t < 0 || t >= cols) {
      row_loss[r] = std::nan("");
      continue;
    }
    const double w = a.weight ? load(a.dtype, a.weight, t) : 1.0;
    wsum += w;
    row_loss[r] = -w * load(a.dtype, a.input, r * cols + t);
  }
  const double div = a.reduction == DLK_REDUCTION_MEAN ? wsum : 1.0;
  if (a.loss) {
    if (a.reduction == DLK_REDUCTION_NONE) {
      for (std::int64_t r = 0; r < rows; ++r) a.loss[r] = static_cast<float>(row_loss[r]);
    } else {
      a.loss[0] = static_cast<float>(sum_in_order(row_loss) / div);
    }
  }
  if (a.dinput) {
    for (std::int64_t r = 0; r < rows; ++r) {
      const std::int64_t t = load_index(a.target_dtype, a.target, r);
      for (std::int64_t j = 0; j < cols; ++j) store(a.dtype, a.dinput, r * cols + j, 0.0f);
      if (t == a.ignore_index) continue;
      if (t < 0 || t >= cols) {
        for (std::int64_t j = 0; j < cols; ++j) store(a.dtype, a.dinput, r * cols + j, std::nanf(""));
        continue;
      }
      const double w = a.weight ? load(a.dtype, a.weight, t) : 1.0;
      store(a.dtype, a.dinput, r * cols + t, static_cast<float>(-w * upstream(a.dloss, a.reduction, r) / div));
    }
  }
}

void pointwise_loss(const PointwiseLossArgs& a, const Exec& exec) {
  const std::int64_t n = a.n;
  const double div = a.reduction == DLK_REDUCTION_MEAN ? static_cast<double>(n) : 1.0;
  const bool bce = a.kind == PointwiseLoss::Bce;
  std::vector<double> el;
  if (a.loss) el.assign(static_cast<std::size_t>(n), 0.0);
  const int nt = host::threads(exec, n);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (std::int64_t i = 0; i < n; ++i) {
    const double x = load(a.dtype, a.input, i), y = load(a.dtype, a.target, i);
    double l, d;
    if (bce) {
      const double w = a.weight ? load(a.dtype, a.weight, i % a.weight_n) : 1.0;
      const double pw = a.pos_weight ? load(a.dtype, a.pos_weight, i % a.pos_weight_n) : 1.0;
      const double lw = 1.0 + (pw - 1.0) * y;
      l = w * ((1.0 - y) * x + lw * (std::log1p(std::exp(-std::fabs(x))) + std::fmax(-x, 0.0)));
      d = w * ((1.0 - y) - lw / (1.0 + std::exp(x)));  // sigmoid(-x) = 1 / (1 + e^x)
    } else {
      l = (x - y) * (x - y);
      d = 2.0 * (x - y);
    }
    if (a.loss) el[i] = l;
    if (a.dinput) store(a.dtype, a.dinput, i, static_cast<float>(d * upstream(a.dloss, a.reduction, i) / div));
  }
  if (!a.loss) return;
  if (a.reduction == DLK_REDUCTION_NONE) {
    for (std::int64_t i = 0; i < n; ++i) a.loss[i] = static_cast<float>(el[i]);
  } else {
    a.loss[0] = static_cast<float>(sum_in_order(el) / div);
  }
}

}  // namespace dlk::cpu
