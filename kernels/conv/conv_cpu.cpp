// CPU backend of the convolution family (the conv view of conv.h: forward, backward_data, backward_weight).
//
// Two paths:
//  - direct: the reference. Plain loops over every output element and every tap, fp64 accumulation, OpenMP over
//    (image, channel) planes (weight gradient: over weight elements). Every reduction has one owner, so it is
//    deterministic. Taken for depthwise groups (one input channel per group, groups > 1: im2col would build a column
//    matrix as large as the work) and for problems under kDirectMacs multiply-adds (the fast path's staging and
//    BLAS calls cost more than the arithmetic there).
//  - fast: im2col + OpenBLAS sgemm (col2im for backward_data), fp32 with fp32 accumulation like the GPU. The GEMM
//    columns run over the flattened (image, output pixel) index q, cut into tiles of T columns so that the column
//    matrix [C/g * kh * kw, T] plus the [K/g, T] product stay within kColumnBudget floats of the context workspace
//    (bounded whatever the batch and image size; one tile can span several small images, so Fashion-MNIST-sized
//    images still make large GEMMs). im2col / col2im / the scatters are OpenMP loops; each sgemm uses every OpenBLAS
//    thread (never nested in an OpenMP region). Activations that are not fp32 NCHW (NHWC, float16, bfloat16) are
//    first staged as fp32 NCHW in the workspace and the result converted back (rounded once), so one GEMM
//    formulation serves every layout and dtype; that costs one extra pass over each tensor.
#include <cblas.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common/host.h"
#include "conv/conv.h"

namespace dlk::cpu {
namespace {

constexpr std::int64_t kDirectMacs = std::int64_t(1) << 18;    // below this the direct loops are as fast
constexpr std::int64_t kColumnBudget = std::int64_t(1) << 22;  // floats of column matrix + product per tile (16 MB)

// Element offset of (n, c, h, w) in an activation of `ch` channels and h x w planes, either layout.
inline std::int64_t act_index(bool nhwc, std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w,
                              std::int64_t ch, std::int64_t hh, std::int64_t ww) {
  return nhwc ? ((n * hh + h) * ww + w) * ch + c : ((n * ch + c) * hh + h) * ww + w;
}

// ------------------------------------------------------------------------------------------------ direct path

template <typename T>
void forward_direct(const ConvArgs& a, const Exec& exec) {
  const ConvGeom& g = a.g;
  const T* x = static_cast<const T*>(a.x);
  const T* w = static_cast<const T*>(a.w);
  const T* bias = static_cast<const T*>(a.bias);
  T* y = static_cast<T*>(a.y);
  const std::int64_t cg = g.cg(), kg = g.kg(), planes = g.n * g.k;
  const std::int64_t work = planes * g.oh * g.ow * cg * g.kh * g.kw;
#pragma omp parallel for num_threads(host::threads(exec, work, planes)) schedule(static)
  for (std::int64_t pl = 0; pl < planes; ++pl) {
    const std::int64_t n = pl / g.k, o = pl % g.k, c0 = (o / kg) * cg;
    for (std::int64_t oh = 0; oh < g.oh; ++oh)
      for (std::int64_t ow = 0; ow < g.ow; ++ow) {
        double s = bias ? host::load(bias, o) : 0.0;
        for (std::int64_t c = 0; c < cg; ++c)
          for (int i = 0; i < g.kh; ++i) {
            const std::int64_t ih = oh * g.sh - g.pt + static_cast<std::int64_t>(i) * g.dh;
            if (ih < 0 || ih >= g.h) continue;
            for (int j = 0; j < g.kw; ++j) {
              const std::int64_t iw = ow * g.sw - g.pl + static_cast<std::int64_t>(j) * g.dw;
              if (iw < 0 || iw >= g.w) continue;
              s += static_cast<double>(host::load(x, act_index(g.nhwc, n, c0 + c, ih, iw, g.c, g.h, g.w))) *
                   host::load(w, ((o * cg + c) * g.kh + i) * g.kw + j);
            }
          }
        host::store(y, act_index(g.nhwc, n, o, oh, ow, g.k, g.oh, g.ow), static_cast<float>(s));
      }
  }
}

template <typename T>
void backward_data_direct(const ConvArgs& a, const Exec& exec) {
  const ConvGeom& g = a.g;
  const T* dy = static_cast<const T*>(a.dy);
  const T* w = static_cast<const T*>(a.w);
  const T* bias = static_cast<const T*>(a.bias);
  T* dx = static_cast<T*>(a.dx);
  const std::int64_t cg = g.cg(), kg = g.kg(), planes = g.n * g.c;
  const std::int64_t work = planes * g.h * g.w * kg * g.kh * g.kw;
#pragma omp parallel for num_threads(host::threads(exec, work, planes)) schedule(static)
  for (std::int64_t pl = 0; pl < planes; ++pl) {
    const std::int64_t n = pl / g.c, c = pl % g.c, grp = c / cg, cc = c % cg;
    for (std::int64_t ih = 0; ih < g.h; ++ih)
      for (std::int64_t iw = 0; iw < g.w; ++iw) {
        double s = bias ? host::load(bias, c) : 0.0;
        for (int i = 0; i < g.kh; ++i) {
          const std::int64_t th = ih + g.pt - static_cast<std::int64_t>(i) * g.dh;
          if (th < 0 || th % g.sh) continue;
          const std::int64_t oh = th / g.sh;
          if (oh >= g.oh) continue;
          for (int j = 0; j < g.kw; ++j) {
            const std::int64_t tw = iw + g.pl - static_cast<std::int64_t>(j) * g.dw;
            if (tw < 0 || tw % g.sw) continue;
            const std::int64_t ow = tw / g.sw;
            if (ow >= g.ow) continue;
            for (std::int64_t ko = 0; ko < kg; ++ko) {
              const std::int64_t o = grp * kg + ko;
              s += static_cast<double>(host::load(dy, act_index(g.nhwc, n, o, oh, ow, g.k, g.oh, g.ow))) *
                   host::load(w, ((o * cg + cc) * g.kh + i) * g.kw + j);
            }
          }
        }
        host::store(dx, act_index(g.nhwc, n, c, ih, iw, g.c, g.h, g.w), static_cast<float>(s));
      }
  }
}

template <typename T>
void backward_weight_direct(const ConvArgs& a, const Exec& exec) {
  const ConvGeom& g = a.g;
  const T* x = static_cast<const T*>(a.x);
  const T* dy = static_cast<const T*>(a.dy);
  T* dw = static_cast<T*>(a.dw);
  const std::int64_t cg = g.cg(), kg = g.kg(), taps = g.kh * g.kw;
  const std::int64_t elems = g.k * cg * taps;
  const std::int64_t work = elems * g.n * g.oh * g.ow;
#pragma omp parallel for num_threads(host::threads(exec, work, elems)) schedule(static)
  for (std::int64_t e = 0; e < elems; ++e) {
    const std::int64_t o = e / (cg * taps), cc = (e / taps) % cg, i = (e % taps) / g.kw, j = e % g.kw;
    const std::int64_t c = (o / kg) * cg + cc;
    double s = 0.0;
    for (std::int64_t n = 0; n < g.n; ++n)
      for (std::int64_t oh = 0; oh < g.oh; ++oh) {
        const std::int64_t ih = oh * g.sh - g.pt + i * g.dh;
        if (ih < 0 || ih >= g.h) continue;
        for (std::int64_t ow = 0; ow < g.ow; ++ow) {
          const std::int64_t iw = ow * g.sw - g.pl + j * g.dw;
          if (iw < 0 || iw >= g.w) continue;
          s += static_cast<double>(host::load(x, act_index(g.nhwc, n, c, ih, iw, g.c, g.h, g.w))) *
               host::load(dy, act_index(g.nhwc, n, o, oh, ow, g.k, g.oh, g.ow));
        }
      }
    host::store(dw, e, static_cast<float>(s));
  }
}

// ------------------------------------------------------------------------------------------------ fast path

// Carves consecutive float buffers out of one workspace request (the workspace may move when it grows, so every
// size is known before the one call).
struct Carve {
  std::int64_t total = 0;
  std::int64_t add(std::int64_t floats) {
    const std::int64_t at = total;
    total += (floats + 15) / 16 * 16;  // 64-byte alignment
    return at;
  }
};

// Threads for the fast path's data-movement loops (staging, im2col, col2im, gathers). An OpenMP team keeps
// spinning for a while after its region ends; with OpenBLAS's own threads starting the next sgemm at that moment the
// cores are oversubscribed (measured on 2 cores: a ResNet 3x3 forward 7x slower than with passive OpenMP waits).
// So when OpenBLAS runs multi-threaded, these loops stay on the calling thread and the parallelism is the sgemm's;
// with a single-threaded OpenBLAS they use the OpenMP team as usual.
inline int fast_threads(const Exec& exec, std::int64_t work, std::int64_t items = host::kUncapped) {
  if (openblas_get_num_threads() > 1) return 1;
  return host::threads(exec, work, items);
}

// Activation `src` (dtype, layout) as fp32 NCHW into dst.
template <typename T>
void stage_act(const T* src, bool nhwc, std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w, float* dst,
               const Exec& exec) {
  const std::int64_t planes = n * c, hw = h * w;
#pragma omp parallel for num_threads(fast_threads(exec, planes* hw, planes)) schedule(static)
  for (std::int64_t p = 0; p < planes; ++p) {
    const std::int64_t nn = p / c, cc = p % c;
    float* d = dst + p * hw;
    if (nhwc) {
      const T* s = src + nn * hw * c + cc;
      for (std::int64_t e = 0; e < hw; ++e) d[e] = host::to_f(s[e * c]);
    } else {
      const T* s = src + p * hw;
      for (std::int64_t e = 0; e < hw; ++e) d[e] = host::to_f(s[e]);
    }
  }
}

// fp32 NCHW `src` into the activation dst (dtype, layout), rounded once.
template <typename T>
void unstage_act(const float* src, bool nhwc, std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w, T* dst,
                 const Exec& exec) {
  const std::int64_t hw = h * w;
  if (nhwc) {
    const std::int64_t pixels = n * hw;
#pragma omp parallel for num_threads(fast_threads(exec, pixels* c, pixels)) schedule(static)
    for (std::int64_t q = 0; q < pixels; ++q) {
      const std::int64_t nn = q / hw, e = q % hw;
      for (std::int64_t cc = 0; cc < c; ++cc) host::put(dst + q * c + cc, src[(nn * c + cc) * hw + e]);
    }
  } else {
    const std::int64_t total = n * c * hw;
#pragma omp parallel for num_threads(fast_threads(exec, total)) schedule(static)
    for (std::int64_t e = 0; e < total; ++e) host::put(dst + e, src[e]);
  }
}

template <typename T>
void convert_flat(const T* src, std::int64_t count, float* dst, const Exec& exec) {
#pragma omp parallel for num_threads(fast_threads(exec, count)) schedule(static)
  for (std::int64_t e = 0; e < count; ++e) dst[e] = host::to_f(src[e]);
}

// The tile of GEMM columns: q in [q0, q0 + t) over (image, output pixel).
struct Tile {
  std::int64_t q0, t;
};

// The fp32 NCHW problem the fast path runs, with pointers into the caller's tensors or the staging buffers.
struct Fast {
  ConvGeom g;
  std::int64_t cg, kg, kk, p, q, tile;  // per-group channels, K = cg*kh*kw, output pixels per image, n*p, tile cols
};

Fast fast_shape(const ConvGeom& g) {
  Fast f;
  f.g = g;
  f.cg = g.cg();
  f.kg = g.kg();
  f.kk = f.cg * g.kh * g.kw;
  f.p = g.oh * g.ow;
  f.q = g.n * f.p;
  f.tile = std::max<std::int64_t>(1, std::min<std::int64_t>(f.q, kColumnBudget / (f.kk + f.kg)));
  return f;
}

// Calls seg(e, n, oh, ow0, len) for the runs of tile columns that lie in one output row: columns e .. e + len of
// the tile are output pixels (n, oh, ow0 .. ow0 + len). The loops below work run by run, so the bounds tests are
// hoisted out of the inner loops, which are unit-stride copies (vectorised) for stride-1 convolutions.
template <typename Seg>
inline void for_each_row_run(const Fast& f, Tile tl, Seg&& seg) {
  const ConvGeom& g = f.g;
  std::int64_t n = tl.q0 / f.p, oh = (tl.q0 % f.p) / g.ow, ow0 = tl.q0 % g.ow;
  std::int64_t e = 0;
  while (e < tl.t) {
    const std::int64_t len = std::min(tl.t - e, g.ow - ow0);
    seg(e, n, oh, ow0, len);
    e += len;
    ow0 = 0;
    if (++oh == g.oh) oh = 0, ++n;
  }
}

// The output columns ow whose tap column iw = ow * sw - pl + j * dw lies in [0, W): [lo, hi), computed once per
// kernel column j (the runs below clip it to their own span without dividing).
struct OwRange {
  std::int64_t lo, hi;
};
inline OwRange valid_ow(const ConvGeom& g, int j) {
  const std::int64_t off = static_cast<std::int64_t>(j) * g.dw - g.pl;  // iw = ow * sw + off
  // iw >= 0  <=>  ow >= ceil(-off / sw);  iw < W  <=>  ow <= floor((W - 1 - off) / sw)
  const std::int64_t a = off >= 0 ? 0 : (-off + g.sw - 1) / g.sw;
  const std::int64_t b = g.w - 1 - off < 0 ? -1 : (g.w - 1 - off) / g.sw;
  return OwRange{a, b + 1};
}

// col[kk][t] = x (NCHW fp32) gathered for group grp, columns q0 .. q0 + t. Parallel over the kk rows.
void im2col(const Fast& f, const float* x, std::int64_t grp, Tile tl, float* col, const Exec& exec) {
  const ConvGeom& g = f.g;
#pragma omp parallel for num_threads(fast_threads(exec, f.kk* tl.t, f.kk)) schedule(static)
  for (std::int64_t r = 0; r < f.kk; ++r) {
    const std::int64_t c = grp * f.cg + r / (g.kh * g.kw);
    const int i = static_cast<int>((r / g.kw) % g.kh), j = static_cast<int>(r % g.kw);
    const OwRange range = valid_ow(g, j);
    float* out = col + r * tl.t;
    for_each_row_run(f, tl, [&](std::int64_t e, std::int64_t n, std::int64_t oh, std::int64_t ow0, std::int64_t len) {
      float* o = out + e - ow0;  // o[ow] is column (n, oh, ow)
      const std::int64_t ih = oh * g.sh - g.pt + static_cast<std::int64_t>(i) * g.dh;
      if (ih < 0 || ih >= g.h) {
        for (std::int64_t ow = ow0; ow < ow0 + len; ++ow) o[ow] = 0.0f;
        return;
      }
      const std::int64_t lo = std::min(std::max(range.lo, ow0), ow0 + len);
      const std::int64_t hi = std::max(std::min(range.hi, ow0 + len), lo);
      for (std::int64_t ow = ow0; ow < lo; ++ow) o[ow] = 0.0f;
      const float* xr = x + ((n * g.c + c) * g.h + ih) * g.w + static_cast<std::int64_t>(j) * g.dw - g.pl;
      if (g.sw == 1) {
        for (std::int64_t ow = lo; ow < hi; ++ow) o[ow] = xr[ow];
      } else {
        for (std::int64_t ow = lo; ow < hi; ++ow) o[ow] = xr[ow * g.sw];
      }
      for (std::int64_t ow = hi; ow < ow0 + len; ++ow) o[ow] = 0.0f;
    });
  }
}

// dx (NCHW fp32) += col2im(dcol) for group grp. Parallel over the group's input channels: a channel's rows of dcol
// land only in that channel's planes, so no two threads write the same element.
void col2im_add(const Fast& f, const float* dcol, std::int64_t grp, Tile tl, float* dx, const Exec& exec) {
  const ConvGeom& g = f.g;
  const std::int64_t taps = g.kh * g.kw;
#pragma omp parallel for num_threads(fast_threads(exec, f.kk* tl.t, f.cg)) schedule(static)
  for (std::int64_t cc = 0; cc < f.cg; ++cc) {
    const std::int64_t c = grp * f.cg + cc;
    for (std::int64_t tap = 0; tap < taps; ++tap) {
      const int i = static_cast<int>(tap / g.kw), j = static_cast<int>(tap % g.kw);
      const OwRange range = valid_ow(g, j);
      const float* in = dcol + (cc * taps + tap) * tl.t;
      for_each_row_run(f, tl, [&](std::int64_t e, std::int64_t n, std::int64_t oh, std::int64_t ow0, std::int64_t len) {
        const std::int64_t ih = oh * g.sh - g.pt + static_cast<std::int64_t>(i) * g.dh;
        if (ih < 0 || ih >= g.h) return;
        const std::int64_t lo = std::max(range.lo, ow0), hi = std::min(range.hi, ow0 + len);
        const float* src = in + e - ow0;
        float* xr = dx + ((n * g.c + c) * g.h + ih) * g.w + static_cast<std::int64_t>(j) * g.dw - g.pl;
        if (g.sw == 1) {
          for (std::int64_t ow = lo; ow < hi; ++ow) xr[ow] += src[ow];
        } else {
          for (std::int64_t ow = lo; ow < hi; ++ow) xr[ow * g.sw] += src[ow];
        }
      });
    }
  }
}

// prod[kg][t] <-> y (NCHW fp32, k channels, p pixels per image) for group grp: `to_y` scatters prod (+ bias) into
// y, else gathers y into prod.
void move_cols(const Fast& f, float* prod, float* y, std::int64_t grp, Tile tl, bool to_y, const float* bias,
               const Exec& exec) {
  const ConvGeom& g = f.g;
#pragma omp parallel for num_threads(fast_threads(exec, f.kg* tl.t, f.kg)) schedule(static)
  for (std::int64_t ko = 0; ko < f.kg; ++ko) {
    const std::int64_t o = grp * f.kg + ko;
    float* row = prod + ko * tl.t;
    const float b = bias ? bias[o] : 0.0f;
    std::int64_t e = 0;
    while (e < tl.t) {  // runs of columns inside one image are contiguous in y
      const std::int64_t q = tl.q0 + e, n = q / f.p, pix = q % f.p;
      const std::int64_t run = std::min(tl.t - e, f.p - pix);
      float* yp = y + (n * g.k + o) * f.p + pix;
      if (to_y) {
        for (std::int64_t u = 0; u < run; ++u) yp[u] = row[e + u] + b;
      } else {
        std::memcpy(row + e, yp, static_cast<std::size_t>(run) * sizeof(float));
      }
      e += run;
    }
  }
}

void sgemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const float* a, std::int64_t lda,
           const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), 1.0f, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta,
              c, static_cast<int>(ldc));
}

// OpenBLAS takes 32-bit sizes (Debian builds it without ILP64).
void check_blas_ints(const Fast& f, const char* op) {
  const std::int64_t limit = 0x7fffffff;
  if (f.kk > limit || f.kg > limit || f.tile > limit || f.kk * f.tile > (std::int64_t(1) << 40))
    fail(DLK_ERROR_OVERFLOW, op, ": the cpu backend's BLAS takes 32-bit sizes; got K = ", f.kk, ", tile ", f.tile);
}

template <typename T>
void forward_fast(const ConvArgs& a, const Exec& exec) {
  const ConvGeom& g = a.g;
  const Fast f = fast_shape(g);
  check_blas_ints(f, "conv2d_forward");
  const bool direct_io = std::is_same<T, float>::value && !g.nhwc;
  const std::int64_t xn = g.n * g.c * g.h * g.w, yn = g.n * g.k * f.p, wn = g.k * f.kk;
  Carve cv;
  const std::int64_t o_col = cv.add(f.kk * f.tile), o_prod = cv.add(f.kg * f.tile);
  const std::int64_t o_x = direct_io ? -1 : cv.add(xn), o_y = direct_io ? -1 : cv.add(yn);
  const std::int64_t o_w = std::is_same<T, float>::value ? -1 : cv.add(wn);
  const std::int64_t o_b = std::is_same<T, float>::value || !a.bias ? -1 : cv.add(g.k);
  float* ws = static_cast<float*>(exec.workspace(static_cast<std::size_t>(cv.total) * sizeof(float)));
  const float* x;
  float* y;
  const float* w;
  const float* bias;
  if (direct_io) {
    x = reinterpret_cast<const float*>(a.x);
    y = reinterpret_cast<float*>(a.y);
  } else {
    stage_act(static_cast<const T*>(a.x), g.nhwc, g.n, g.c, g.h, g.w, ws + o_x, exec);
    x = ws + o_x;
    y = ws + o_y;
  }
  if (o_w >= 0) {
    convert_flat(static_cast<const T*>(a.w), wn, ws + o_w, exec);
    w = ws + o_w;
  } else {
    w = reinterpret_cast<const float*>(a.w);
  }
  if (o_b >= 0) {
    convert_flat(static_cast<const T*>(a.bias), g.k, ws + o_b, exec);
    bias = ws + o_b;
  } else {
    bias = reinterpret_cast<const float*>(a.bias);
  }
  for (std::int64_t grp = 0; grp < g.groups; ++grp)
    for (std::int64_t q0 = 0; q0 < f.q; q0 += f.tile) {
      const Tile tl{q0, std::min(f.tile, f.q - q0)};
      im2col(f, x, grp, tl, ws + o_col, exec);
      sgemm(false, false, f.kg, tl.t, f.kk, w + grp * f.kg * f.kk, f.kk, ws + o_col, tl.t, 0.0f, ws + o_prod, tl.t);
      move_cols(f, ws + o_prod, y, grp, tl, true, bias, exec);
    }
  if (!direct_io) unstage_act(y, g.nhwc, g.n, g.k, g.oh, g.ow, static_cast<T*>(a.y), exec);
}

template <typename T>
void backward_data_fast(const ConvArgs& a, const Exec& exec) {
  const ConvGeom& g = a.g;
  const Fast f = fast_shape(g);
  check_blas_ints(f, "conv2d_backward_data");
  const bool direct_io = std::is_same<T, float>::value && !g.nhwc;
  const std::int64_t xn = g.n * g.c * g.h * g.w, yn = g.n * g.k * f.p, wn = g.k * f.kk;
  Carve cv;
  const std::int64_t o_col = cv.add(f.kk * f.tile), o_prod = cv.add(f.kg * f.tile);
  const std::int64_t o_dy = direct_io ? -1 : cv.add(yn), o_dx = direct_io ? -1 : cv.add(xn);
  const std::int64_t o_w = std::is_same<T, float>::value ? -1 : cv.add(wn);
  float* ws = static_cast<float*>(exec.workspace(static_cast<std::size_t>(cv.total) * sizeof(float)));
  float* dy;
  float* dx;
  const float* w;
  if (direct_io) {
    dy = const_cast<float*>(reinterpret_cast<const float*>(a.dy));  // only read (move_cols gathers)
    dx = reinterpret_cast<float*>(a.dx);
  } else {
    stage_act(static_cast<const T*>(a.dy), g.nhwc, g.n, g.k, g.oh, g.ow, ws + o_dy, exec);
    dy = ws + o_dy;
    dx = ws + o_dx;
  }
  if (o_w >= 0) {
    convert_flat(static_cast<const T*>(a.w), wn, ws + o_w, exec);
    w = ws + o_w;
  } else {
    w = reinterpret_cast<const float*>(a.w);
  }
  // dx starts at the bias (the transposed conv's) or zero; col2im adds every tap into it.
  {
    const T* bias = static_cast<const T*>(a.bias);
    const std::int64_t planes = g.n * g.c, hw = g.h * g.w;
#pragma omp parallel for num_threads(fast_threads(exec, xn, planes)) schedule(static)
    for (std::int64_t p = 0; p < planes; ++p) {
      const float b = bias ? host::load(bias, p % g.c) : 0.0f;
      std::fill(dx + p * hw, dx + (p + 1) * hw, b);
    }
  }
  for (std::int64_t grp = 0; grp < g.groups; ++grp)
    for (std::int64_t q0 = 0; q0 < f.q; q0 += f.tile) {
      const Tile tl{q0, std::min(f.tile, f.q - q0)};
      move_cols(f, ws + o_prod, dy, grp, tl, false, nullptr, exec);
      // dcol [kk, t] = W_g^T [kk, kg] @ dy_tile [kg, t]
      sgemm(true, false, f.kk, tl.t, f.kg, w + grp * f.kg * f.kk, f.kk, ws + o_prod, tl.t, 0.0f, ws + o_col, tl.t);
      col2im_add(f, ws + o_col, grp, tl, dx, exec);
    }
  if (!direct_io) unstage_act(dx, g.nhwc, g.n, g.c, g.h, g.w, static_cast<T*>(a.dx), exec);
}

template <typename T>
void backward_weight_fast(const ConvArgs& a, const Exec& exec) {
  const ConvGeom& g = a.g;
  const Fast f = fast_shape(g);
  check_blas_ints(f, "conv2d_backward_weight");
  const bool direct_io = std::is_same<T, float>::value && !g.nhwc;
  const std::int64_t xn = g.n * g.c * g.h * g.w, yn = g.n * g.k * f.p, wn = g.k * f.kk;
  Carve cv;
  const std::int64_t o_col = cv.add(f.kk * f.tile), o_prod = cv.add(f.kg * f.tile);
  const std::int64_t o_x = direct_io ? -1 : cv.add(xn), o_dy = direct_io ? -1 : cv.add(yn);
  const std::int64_t o_w = std::is_same<T, float>::value ? -1 : cv.add(wn);
  float* ws = static_cast<float*>(exec.workspace(static_cast<std::size_t>(cv.total) * sizeof(float)));
  const float* x;
  float* dy;
  float* dw = o_w >= 0 ? ws + o_w : reinterpret_cast<float*>(a.dw);
  if (direct_io) {
    x = reinterpret_cast<const float*>(a.x);
    dy = const_cast<float*>(reinterpret_cast<const float*>(a.dy));  // only read (move_cols gathers)
  } else {
    stage_act(static_cast<const T*>(a.x), g.nhwc, g.n, g.c, g.h, g.w, ws + o_x, exec);
    stage_act(static_cast<const T*>(a.dy), g.nhwc, g.n, g.k, g.oh, g.ow, ws + o_dy, exec);
    x = ws + o_x;
    dy = ws + o_dy;
  }
  if (f.q == 0) std::fill(dw, dw + wn, 0.0f);
  for (std::int64_t grp = 0; grp < g.groups; ++grp)
    for (std::int64_t q0 = 0; q0 < f.q; q0 += f.tile) {
      const Tile tl{q0, std::min(f.tile, f.q - q0)};
      im2col(f, x, grp, tl, ws + o_col, exec);
      move_cols(f, ws + o_prod, dy, grp, tl, false, nullptr, exec);
      // dW_g [kg, kk] (+)= dy_tile [kg, t] @ col^T [t, kk]; tiles in order: deterministic
      sgemm(false, true, f.kg, f.kk, tl.t, ws + o_prod, tl.t, ws + o_col, tl.t, q0 == 0 ? 0.0f : 1.0f,
            dw + grp * f.kg * f.kk, f.kk);
    }
  if (o_w >= 0) {
    T* out = static_cast<T*>(a.dw);
#pragma omp parallel for num_threads(fast_threads(exec, wn)) schedule(static)
    for (std::int64_t e = 0; e < wn; ++e) host::put(out + e, dw[e]);
  }
}

// The direct loops win for depthwise-like groups and tiny problems (see the file comment).
bool use_direct(const ConvGeom& g) {
  const std::int64_t macs = g.n * g.k * g.oh * g.ow * g.cg() * g.kh * g.kw;
  return (g.cg() == 1 && g.groups > 1) || macs < kDirectMacs;
}

}  // namespace

void conv2d_forward_direct(const ConvArgs& a, const Exec& exec) {
  host::with_type(a.dtype, "conv2d_forward", [&](auto tag) { forward_direct<decltype(tag)>(a, exec); });
}
void conv2d_backward_data_direct(const ConvArgs& a, const Exec& exec) {
  host::with_type(a.dtype, "conv2d_backward_data", [&](auto tag) { backward_data_direct<decltype(tag)>(a, exec); });
}
void conv2d_backward_weight_direct(const ConvArgs& a, const Exec& exec) {
  host::with_type(a.dtype, "conv2d_backward_weight", [&](auto tag) { backward_weight_direct<decltype(tag)>(a, exec); });
}

void conv2d_forward(const ConvArgs& a, const Exec& exec) {
  if (use_direct(a.g)) return conv2d_forward_direct(a, exec);
  host::with_type(a.dtype, "conv2d_forward", [&](auto tag) { forward_fast<decltype(tag)>(a, exec); });
}
void conv2d_backward_data(const ConvArgs& a, const Exec& exec) {
  if (use_direct(a.g)) return conv2d_backward_data_direct(a, exec);
  host::with_type(a.dtype, "conv2d_backward_data", [&](auto tag) { backward_data_fast<decltype(tag)>(a, exec); });
}
void conv2d_backward_weight(const ConvArgs& a, const Exec& exec) {
  if (use_direct(a.g)) return conv2d_backward_weight_direct(a, exec);
  host::with_type(a.dtype, "conv2d_backward_weight", [&](auto tag) { backward_weight_fast<decltype(tag)>(a, exec); });
}

void conv_channel_sum(const ChannelSumArgs& a, const Exec& exec) {
  host::with_type(a.dtype, "conv_channel_sum", [&](auto tag) {
    using T = decltype(tag);
    const T* in = static_cast<const T*>(a.in);
    T* out = static_cast<T*>(a.out);
#pragma omp parallel for num_threads(host::threads(exec, a.n* a.channels* a.hw, a.channels)) schedule(static)
    for (std::int64_t c = 0; c < a.channels; ++c) {
      double s = 0.0;
      for (std::int64_t n = 0; n < a.n; ++n)
        for (std::int64_t e = 0; e < a.hw; ++e)
          s += host::load(in, a.nhwc ? (n * a.hw + e) * a.channels + c : (n * a.channels + c) * a.hw + e);
      host::store(out, c, static_cast<float>(s));
    }
  });
}

}  // namespace dlk::cpu
