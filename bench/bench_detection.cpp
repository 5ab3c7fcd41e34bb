// Detection ops through the public C API at Faster R-CNN shapes: RoI Align forward and backward (one FPN level of
// an 800 x 1088 image, stride 16: [2, 256, 50, 68]; 512 to 5000 RoIs; 7 x 7 and 14 x 14 outputs; sampling ratio 2;
// backward in the default and the deterministic mode) and NMS over 1k to 100k RPN-like proposals (boxes jittered
// around N / 20 objects, so overlap is realistic; IoU threshold 0.7). Baselines: torchvision.ops.roi_align / nms
// from bench/compare_torch.py on the same keys.
//
// Bytes that must move: RoI Align forward reads the feature map and the RoIs once and writes y; the backward reads dy
// and the RoIs and writes dx. NMS reads boxes and scores and writes keep and the count (its mask traffic is internal).
#include <string>
#include <vector>

#include "bench_common.h"

namespace {

using dlkb::Env;
using dlkb::Tensor;

constexpr int64_t kN = 2, kC = 256, kH = 50, kW = 68;  // FPN P4 of an 800 x 1088 image
constexpr double kScale = 1.0 / 16.0;

std::string roi_key(const char* dir, int64_t k, int p) {
  return std::string("roi_align/") + dir + "/fp32/" +
         dlkb::dims({{"N", kN}, {"C", kC}, {"H", kH}, {"W", kW}, {"K", k}, {"P", p}});
}

// RoIs of 32 to 512 pixels inside the 1088 x 800 image, batch index alternating.
std::vector<float> make_rois(int64_t k) {
  dlkb::Rng r(7);
  std::vector<float> v(static_cast<std::size_t>(k * 5));
  for (int64_t i = 0; i < k; ++i) {
    const float w = r.uniform(32, 512), h = r.uniform(32, 512);
    const float x = r.uniform(0, 1088 - w), y = r.uniform(0, 800 - h);
    v[i * 5] = static_cast<float>(i % kN);
    v[i * 5 + 1] = x;
    v[i * 5 + 2] = y;
    v[i * 5 + 3] = x + w;
    v[i * 5 + 4] = y + h;
  }
  return v;
}

void roi_align(benchmark::State& state, int64_t k, int p, bool backward, bool deterministic) {
  Env& e = dlkb::env();
  if (!e.error.empty()) return state.SkipWithError(e.error.c_str());
  dlk_context* ctx = e.ctx;
  dlk_context* det_ctx = nullptr;
  if (deterministic) {
    dlk_context_options o;
    dlk_context_options_init(&o);
    o.device = e.device;
    o.deterministic = 1;
#ifdef DLK_BENCH_CUDA
    o.stream = e.stream;
#endif
    if (dlk_context_create(&o, &det_ctx) != DLK_SUCCESS) return state.SkipWithError(dlk_last_error());
    ctx = det_ctx;
  }
  Tensor x(e, {kN, kC, kH, kW}, DLDataType{kDLFloat, 32, 1}), rois(e, {k, 5}, DLDataType{kDLFloat, 32, 1});
  Tensor y(e, {k, kC, p, p}, DLDataType{kDLFloat, 32, 1});
  const std::vector<float> rv = make_rois(k);
  if (!x.ok() || !rois.ok() || !y.ok() || !dlkb::fill(e, x, dlkb::Dtype::F32, 1) || !dlkb::fill(e, y, dlkb::Dtype::F32, 2) ||
      !dlkb::copy_in(e, rois, rv.data(), rv.size() * 4)) {
    dlk_context_destroy(det_ctx);
    return state.SkipWithError("cannot allocate or fill the RoI Align buffers");
  }
  dlk_roi_align_params prm;
  dlk_roi_align_params_init(&prm);
  prm.pooled_h = prm.pooled_w = p;
  prm.spatial_scale = kScale;
  prm.sampling_ratio = 2;
  const double bytes = 4.0 * (static_cast<double>(x.elements()) + static_cast<double>(rois.elements()) +
                              static_cast<double>(y.elements()));
  dlkb::run_case(state, e, bytes, [&](long) {
    return dlkb::dlk_result(backward ? dlk_roi_align_backward(ctx, &prm, y.dl(), rois.dl(), x.dl())
                                     : dlk_roi_align_forward(ctx, &prm, x.dl(), rois.dl(), y.dl()));
  });
  dlk_context_destroy(det_ctx);
}

// RPN-like proposals: n boxes jittered around n / 20 objects, scores uniform.
void make_proposals(int64_t n, std::vector<float>* boxes, std::vector<float>* scores) {
  dlkb::Rng r(11);
  const int64_t objects = std::max<int64_t>(1, n / 20);
  std::vector<float> obj(static_cast<std::size_t>(objects * 4));
  for (int64_t o = 0; o < objects; ++o) {
    const float w = r.uniform(16, 300), h = r.uniform(16, 300);
    obj[o * 4] = r.uniform(0, 1333 - w);
    obj[o * 4 + 1] = r.uniform(0, 800 - h);
    obj[o * 4 + 2] = w;
    obj[o * 4 + 3] = h;
  }
  boxes->resize(static_cast<std::size_t>(n * 4));
  scores->resize(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const float* o = &obj[(i % objects) * 4];
    const float jx = r.uniform(-0.25f, 0.25f) * o[2], jy = r.uniform(-0.25f, 0.25f) * o[3];
    const float sw = r.uniform(0.7f, 1.3f), sh = r.uniform(0.7f, 1.3f);
    (*boxes)[i * 4] = o[0] + jx;
    (*boxes)[i * 4 + 1] = o[1] + jy;
    (*boxes)[i * 4 + 2] = o[0] + jx + o[2] * sw;
    (*boxes)[i * 4 + 3] = o[1] + jy + o[3] * sh;
    (*scores)[i] = r.uniform(0, 1);
  }
}

void nms(benchmark::State& state, int64_t n) {
  Env& e = dlkb::env();
  if (!e.error.empty()) return state.SkipWithError(e.error.c_str());
  std::vector<float> bv, sv;
  make_proposals(n, &bv, &sv);
  Tensor b(e, {n, 4}, DLDataType{kDLFloat, 32, 1}), s(e, {n}, DLDataType{kDLFloat, 32, 1});
  Tensor keep(e, {n}, DLDataType{kDLInt, 64, 1}), cnt(e, {1}, DLDataType{kDLInt, 64, 1});
  if (!b.ok() || !s.ok() || !keep.ok() || !cnt.ok() || !dlkb::copy_in(e, b, bv.data(), bv.size() * 4) ||
      !dlkb::copy_in(e, s, sv.data(), sv.size() * 4))
    return state.SkipWithError("cannot allocate the NMS buffers");
  const double bytes = 20.0 * static_cast<double>(n) + 8.0 * static_cast<double>(n) + 8.0;
  dlkb::run_case(state, e, bytes, [&](long) {
    return dlkb::dlk_result(dlk_nms(e.ctx, nullptr, b.dl(), s.dl(), 0.7, keep.dl(), cnt.dl()));
  });
  int64_t kept = 0;
  dlk_copy(e.ctx, &kept, DLDevice{kDLCPU, 0}, cnt.data(), e.dl_device(), 8);
  state.counters["kept"] = static_cast<double>(kept);
}

void register_cases(Env& e) {
  const std::vector<int64_t> rois = e.cuda ? std::vector<int64_t>{512, 1000, 2000, 5000} : std::vector<int64_t>{512, 1000};
  for (int64_t k : rois)
    for (int p : {7, 14}) {
      dlkb::add(roi_key("fwd", k, p), "dlk", [=](benchmark::State& st) { roi_align(st, k, p, false, false); });
      dlkb::add(roi_key("bwd", k, p), "dlk", [=](benchmark::State& st) { roi_align(st, k, p, true, false); });
      dlkb::add(roi_key("bwd_det", k, p), "dlk", [=](benchmark::State& st) { roi_align(st, k, p, true, true); });
    }
  const std::vector<int64_t> boxes =
      e.cuda ? std::vector<int64_t>{1000, 5000, 20000, 100000} : std::vector<int64_t>{1000, 5000, 20000};
  for (int64_t n : boxes)
    dlkb::add("nms/fp32/" + dlkb::dims({{"N", n}}), "dlk", [=](benchmark::State& st) { nms(st, n); });
}

}  // namespace

int main(int argc, char** argv) { return dlkb::run_main(argc, argv, register_cases); }
