// CPU reference of NMS (semantics in nms.h). The candidates are gathered, stably sorted by nms_sort_key, and their
// (offset) boxes and areas copied into sorted, contiguous arrays; then torchvision's greedy walk: each box not yet
// suppressed is kept and suppresses the later boxes whose IoU with it is > threshold. For large inputs the inner
// loop over later boxes runs on an OpenMP team that lives for the whole walk (one barrier per kept box); the
// decisions do not depend on the thread count.
#include <algorithm>
#include <numeric>
#include <vector>

#include "common/host.h"
#include "nms/nms.h"

namespace dlk::cpu {

void nms(const NmsArgs& a, const Exec& exec) {
  float max_coord = 0.0f;
  if (a.idxs && a.n > 0) {
    max_coord = a.boxes[0];
    for (std::int64_t i = 0; i < 4 * a.n; ++i) max_coord = std::max(max_coord, a.boxes[i]);
  }
  std::vector<std::int64_t> order;
  order.reserve(static_cast<std::size_t>(a.n));
  for (std::int64_t i = 0; i < a.n; ++i)
    if (nms_passes(a.scores[i], a.score_threshold)) order.push_back(i);
  std::vector<unsigned> key(static_cast<std::size_t>(a.n));
  for (std::int64_t i = 0; i < a.n; ++i) key[i] = nms_sort_key(a.scores[i]);
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t p, std::int64_t q) { return key[p] > key[q]; });
  std::int64_t m = static_cast<std::int64_t>(order.size());
  if (a.top_k > 0 && a.top_k < m) m = a.top_k;

  std::vector<float> box(static_cast<std::size_t>(4 * m)), area(static_cast<std::size_t>(m));
  for (std::int64_t p = 0; p < m; ++p) {
    nms_box(a, order[p], max_coord, &box[4 * p]);
    area[p] = box_area(&box[4 * p]);
  }
  std::vector<unsigned char> suppressed(static_cast<std::size_t>(m), 0);
  std::int64_t kept = 0;
  const double thr = a.iou_threshold;
  const int nt = m > 4096 ? host::threads(exec, m * 64, m) : 1;
#pragma omp parallel num_threads(nt)
  for (std::int64_t p = 0; p < m; ++p) {
    if (suppressed[p]) continue;  // every thread sees the same value: written before the last barrier
#pragma omp master
    a.keep[kept++] = order[p];
    const float* bp = &box[4 * p];
    const float ap = area[p];
#pragma omp for schedule(static)
    for (std::int64_t q = p + 1; q < m; ++q)
      if (!suppressed[q] && static_cast<double>(box_iou_of(bp, ap, &box[4 * q], area[q])) > thr) suppressed[q] = 1;
  }
  for (std::int64_t i = kept; i < a.n; ++i) a.keep[i] = -1;
  *a.count = kept;
}

}  // namespace dlk::cpu
