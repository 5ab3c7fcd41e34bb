// CPU reference of the box ops: OpenMP loops over the formulas of boxes.h (one box or one IoU pair per iteration).
// remove_small_boxes is a sequential compaction (ascending indices), as torch.where.
#include <algorithm>

#include "boxes/boxes.h"
#include "common/host.h"

namespace dlk::cpu {

void box_iou(const BoxIouArgs& a, const Exec& exec) {
  std::vector<float> area_b(static_cast<std::size_t>(a.m));
  for (std::int64_t j = 0; j < a.m; ++j) area_b[j] = box_area(a.b + 4 * j);
  const int nt = host::threads(exec, a.n * a.m * 8, a.n);
#pragma omp parallel for schedule(static) num_threads(nt)
  for (std::int64_t i = 0; i < a.n; ++i) {
    const float* bi = a.a + 4 * i;
    const float ai = box_area(bi);
    for (std::int64_t j = 0; j < a.m; ++j) a.iou[i * a.m + j] = box_iou_of(bi, ai, a.b + 4 * j, area_b[j]);
  }
}

void box_encode(const BoxCoderArgs& a, const Exec& exec) {
  const int nt = host::threads(exec, a.n * 32, a.n);
#pragma omp parallel for schedule(static) num_threads(nt)
  for (std::int64_t i = 0; i < a.n; ++i) box_encode_one(a, a.codes + 4 * i, a.boxes + 4 * i, a.out + 4 * i);
}

void box_decode(const BoxCoderArgs& a, const Exec& exec) {
  const int nt = host::threads(exec, a.n * a.j * 32, a.n);
#pragma omp parallel for schedule(static) num_threads(nt)
  for (std::int64_t i = 0; i < a.n; ++i)
    for (std::int64_t j = 0; j < a.j; ++j)
      box_decode_one(a, a.codes + 4 * (i * a.j + j), a.boxes + 4 * i, a.out + 4 * (i * a.j + j));
}

void clip_boxes(const ClipBoxesArgs& a, const Exec& exec) {
  const int nt = host::threads(exec, a.n * 4, a.n);
#pragma omp parallel for schedule(static) num_threads(nt)
  for (std::int64_t i = 0; i < a.n; ++i)
    for (int c = 0; c < 4; ++c) {
      const float hi = c % 2 == 0 ? a.width : a.height;
      const float v = a.in[4 * i + c];
      a.out[4 * i + c] = std::min(std::max(v, 0.0f), hi);
    }
}

void remove_small_boxes(const RemoveSmallArgs& a, const Exec&) {
  std::int64_t k = 0;
  for (std::int64_t i = 0; i < a.n; ++i)
    if (box_is_large(a.boxes + 4 * i, a.min_size)) a.keep[k++] = i;
  for (std::int64_t i = k; i < a.n; ++i) a.keep[i] = -1;
  *a.count = k;
}

void anchor_generator(const AnchorArgs& a, const Exec& exec) {
  const std::int64_t cells = a.grid_h * a.grid_w;
  const int nt = host::threads(exec, cells * a.num_base * 4, cells);
#pragma omp parallel for schedule(static) num_threads(nt)
  for (std::int64_t cell = 0; cell < cells; ++cell) {
    const float sx = static_cast<float>((cell % a.grid_w) * a.stride_w);
    const float sy = static_cast<float>((cell / a.grid_w) * a.stride_h);
    for (int b = 0; b < a.num_base; ++b) {
      float* o = a.out + (cell * a.num_base + b) * 4;
      o[0] = sx + a.base[4 * b];
      o[1] = sy + a.base[4 * b + 1];
      o[2] = sx + a.base[4 * b + 2];
      o[3] = sy + a.base[4 * b + 3];
    }
  }
}

void fpn_level_mapper(const LevelMapperArgs& a, const Exec& exec) {
  const int nt = host::threads(exec, a.n * 16, a.n);
#pragma omp parallel for schedule(static) num_threads(nt)
  for (std::int64_t i = 0; i < a.n; ++i) a.levels[i] = fpn_level_of(a, a.boxes + 4 * i);
}

}  // namespace dlk::cpu
