// CUDA kernels of the box ops (formulas in boxes.h, shared with the cpu reference). Built by nvcc into dlk::cuda and
// against the emulator into dlk::emu.
//
// Everything is elementwise and memory bound: one thread per IoU pair, per box, or per anchor, grid-stride loops.
// box_iou reads both box lists through L1/L2 and writes the [N, M] matrix once (coalesced along M).
// remove_small_boxes is an order-preserving compaction in ONE block: the block walks the boxes in chunks of its
// size, a shared-memory scan gives each kept box its slot, and a running base carries across chunks; the count is
// written to device memory (no host round trip). One block is enough: it is a single pass over N * 16 bytes.
// The base anchors (at most a few dozen) are computed on the host (boxes.h) and staged through the workspace.
// clang-format off
#include "runtime/kernel.h"  // first: it picks the nvcc or the emulator build
// clang-format on

#include <cstdint>
#include <cstring>

#include "boxes/boxes.h"
#include "common/grid.cuh"
#include "runtime/device.h"

namespace dlk::DLK_KNS {
namespace {

constexpr int kThreads = 256;
constexpr int kScanThreads = 1024;

__global__ void box_iou_kernel(BoxIouArgs a, std::int64_t total) {
  for (std::int64_t e = global_id(); e < total; e += grid_step()) {
    const std::int64_t i = e / a.m, j = e % a.m;
    const float* bi = a.a + 4 * i;
    const float* bj = a.b + 4 * j;
    a.iou[e] = box_iou_of(bi, box_area(bi), bj, box_area(bj));
  }
}

__global__ void box_encode_kernel(BoxCoderArgs a) {
  for (std::int64_t i = global_id(); i < a.n; i += grid_step()) {
    float d[4];
    box_encode_one(a, a.codes + 4 * i, a.boxes + 4 * i, d);
    for (int c = 0; c < 4; ++c) a.out[4 * i + c] = d[c];
  }
}

__global__ void box_decode_kernel(BoxCoderArgs a, std::int64_t total) {
  for (std::int64_t e = global_id(); e < total; e += grid_step()) {
    float o[4];
    box_decode_one(a, a.codes + 4 * e, a.boxes + 4 * (e / a.j), o);
    for (int c = 0; c < 4; ++c) a.out[4 * e + c] = o[c];
  }
}

__global__ void clip_boxes_kernel(ClipBoxesArgs a, std::int64_t total) {
  for (std::int64_t e = global_id(); e < total; e += grid_step()) {
    const float hi = e % 2 == 0 ? a.width : a.height;
    const float v = a.in[e];
    a.out[e] = fminf(fmaxf(v, 0.0f), hi);
  }
}

// Single-block ordered compaction (see the file comment). blockDim.x == kScanThreads.
__global__ void remove_small_boxes_kernel(RemoveSmallArgs a) {
  DLK_SHARED(int, scan, kScanThreads);
  std::int64_t base = 0;
  const int t = static_cast<int>(threadIdx.x);
  for (std::int64_t start = 0; start < a.n; start += kScanThreads) {
    const std::int64_t i = start + t;
    const int flag = i < a.n && box_is_large(a.boxes + 4 * i, a.min_size) ? 1 : 0;
    scan[t] = flag;
    __syncthreads();
    for (int off = 1; off < kScanThreads; off <<= 1) {  // Hillis-Steele inclusive scan
      const int v = t >= off ? scan[t - off] : 0;
      __syncthreads();
      scan[t] += v;
      __syncthreads();
    }
    if (flag) a.keep[base + scan[t] - 1] = i;
    base += scan[kScanThreads - 1];
    __syncthreads();
  }
  for (std::int64_t i = base + t; i < a.n; i += kScanThreads) a.keep[i] = -1;
  if (t == 0) *a.count = base;
}

__global__ void anchor_kernel(const float* base, int num_base, std::int64_t grid_w, std::int64_t stride_h,
                              std::int64_t stride_w, float* out, std::int64_t total) {
  for (std::int64_t e = global_id(); e < total; e += grid_step()) {
    const std::int64_t b = e % num_base, cell = e / num_base;
    const float sx = static_cast<float>((cell % grid_w) * stride_w);
    const float sy = static_cast<float>((cell / grid_w) * stride_h);
    out[4 * e] = sx + base[4 * b];
    out[4 * e + 1] = sy + base[4 * b + 1];
    out[4 * e + 2] = sx + base[4 * b + 2];
    out[4 * e + 3] = sy + base[4 * b + 3];
  }
}

__global__ void fpn_level_kernel(LevelMapperArgs a) {
  for (std::int64_t i = global_id(); i < a.n; i += grid_step()) a.levels[i] = fpn_level_of(a, a.boxes + 4 * i);
}

}  // namespace

void box_iou(const BoxIouArgs& a, const Exec& exec) {
  const std::int64_t total = a.n * a.m;
  if (total == 0) return;
  launch("box_iou_kernel", box_iou_kernel, dim3(grid_blocks(total, kThreads)), dim3(kThreads), 0, exec, a, total);
}

void box_encode(const BoxCoderArgs& a, const Exec& exec) {
  if (a.n == 0) return;
  launch("box_encode_kernel", box_encode_kernel, dim3(grid_blocks(a.n, kThreads)), dim3(kThreads), 0, exec, a);
}

void box_decode(const BoxCoderArgs& a, const Exec& exec) {
  const std::int64_t total = a.n * a.j;
  if (total == 0) return;
  launch("box_decode_kernel", box_decode_kernel, dim3(grid_blocks(total, kThreads)), dim3(kThreads), 0, exec, a, total);
}

void clip_boxes(const ClipBoxesArgs& a, const Exec& exec) {
  const std::int64_t total = a.n * 4;
  if (total == 0) return;
  launch("clip_boxes_kernel", clip_boxes_kernel, dim3(grid_blocks(total, kThreads)), dim3(kThreads), 0, exec, a, total);
}

void remove_small_boxes(const RemoveSmallArgs& a, const Exec& exec) {
  launch("remove_small_boxes_kernel", remove_small_boxes_kernel, dim3(1), dim3(kScanThreads), 0, exec, a);
}

void anchor_generator(const AnchorArgs& a, const Exec& exec) {
  const std::int64_t total = a.grid_h * a.grid_w * a.num_base;
  if (total == 0) return;
  const std::size_t bytes = a.base.size() * sizeof(float);
  float* base = static_cast<float*>(exec.workspace(bytes));
  if (exec.backend == Backend::Cuda)
    device::memcpy_async(base, a.base.data(), bytes, 1, exec.stream);  // pageable: read before it returns
  else
    std::memcpy(base, a.base.data(), bytes);
  launch("anchor_kernel", anchor_kernel, dim3(grid_blocks(total, kThreads)), dim3(kThreads), 0, exec,
         static_cast<const float*>(base), a.num_base, a.grid_w, a.stride_h, a.stride_w, a.out, total);
}

void fpn_level_mapper(const LevelMapperArgs& a, const Exec& exec) {
  if (a.n == 0) return;
  launch("fpn_level_kernel", fpn_level_kernel, dim3(grid_blocks(a.n, kThreads)), dim3(kThreads), 0, exec, a);
}

}  // namespace dlk::DLK_KNS
