// CPU reference of the classification metrics: plain loops over the labels (integer counts are exact, so the
// order does not matter), then the per-class ratios in fp64.
#include <cstdint>
#include <vector>

#include "metrics/metrics.h"

namespace dlk::cpu {
namespace {

inline std::int64_t label(DType t, const void* p, std::int64_t i) {
  return t == DType::I64 ? static_cast<const std::int64_t*>(p)[i] : static_cast<const std::int32_t*>(p)[i];
}

inline double ratio(double num, double den) { return den > 0 ? num / den : 0.0; }

}  // namespace

void accuracy(const LabelPairArgs& a, const Exec&) {
  std::int64_t hits = 0;
  for (std::int64_t i = 0; i < a.n; ++i) hits += label(a.true_dtype, a.y_true, i) == label(a.pred_dtype, a.y_pred, i);
  a.accuracy[0] = a.n ? static_cast<float>(static_cast<double>(hits) / static_cast<double>(a.n)) : 0.0f;
}

void confusion_matrix(const LabelPairArgs& a, const Exec&) {
  const std::int64_t k = a.num_classes;
  for (std::int64_t i = 0; i < k * k; ++i) a.matrix[i] = 0;
  for (std::int64_t i = 0; i < a.n; ++i) {
    const std::int64_t t = label(a.true_dtype, a.y_true, i), p = label(a.pred_dtype, a.y_pred, i);
    if (t >= 0 && t < k && p >= 0 && p < k) ++a.matrix[t * k + p];
  }
}

void precision_recall_f1(const PrfArgs& a, const Exec&) {
  const std::int64_t k = a.k;
  std::vector<double> tp(k), fp(k), fn(k);
  std::vector<char> present(k);
  for (std::int64_t c = 0; c < k; ++c) {
    double row = 0, col = 0;
    for (std::int64_t j = 0; j < k; ++j) {
      row += static_cast<double>(a.matrix[c * k + j]);
      col += static_cast<double>(a.matrix[j * k + c]);
    }
    tp[c] = static_cast<double>(a.matrix[c * k + c]);
    fp[c] = col - tp[c];
    fn[c] = row - tp[c];
    present[c] = row > 0 || col > 0;
  }
  auto put = [](float* out, std::int64_t i, double v) {
    if (out) out[i] = static_cast<float>(v);
  };
  if (a.average == DLK_AVERAGE_NONE) {
    for (std::int64_t c = 0; c < k; ++c) {
      put(a.precision, c, ratio(tp[c], tp[c] + fp[c]));
      put(a.recall, c, ratio(tp[c], tp[c] + fn[c]));
      put(a.f1, c, ratio(2 * tp[c], 2 * tp[c] + fp[c] + fn[c]));
    }
    return;
  }
  if (a.average == DLK_AVERAGE_MICRO) {
    double t = 0, p = 0, n = 0;
    for (std::int64_t c = 0; c < k; ++c)
      if (present[c]) t += tp[c], p += fp[c], n += fn[c];
    put(a.precision, 0, ratio(t, t + p));
    put(a.recall, 0, ratio(t, t + n));
    put(a.f1, 0, ratio(2 * t, 2 * t + p + n));
    return;
  }
  const bool weighted = a.average == DLK_AVERAGE_WEIGHTED;
  double sp = 0, sr = 0, sf = 0, sw = 0;
  for (std::int64_t c = 0; c < k; ++c) {
    if (!present[c]) continue;
    const double w = weighted ? tp[c] + fn[c] : 1.0;
    sp += w * ratio(tp[c], tp[c] + fp[c]);
    sr += w * ratio(tp[c], tp[c] + fn[c]);
    sf += w * ratio(2 * tp[c], 2 * tp[c] + fp[c] + fn[c]);
    sw += w;
  }
  put(a.precision, 0, ratio(sp, sw));
  put(a.recall, 0, ratio(sr, sw));
  put(a.f1, 0, ratio(sf, sw));
}

}  // namespace dlk::cpu
