// The loss-curve PNG, drawn with cairo (Debian libcairo2-dev): per-step training loss in light grey, the evaluated
// train and val losses as lines with markers, on linear axes with labelled ticks.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "gpt.h"

#ifdef DLK_GPT_HAVE_CAIRO
#include <cairo.h>
#endif

namespace gpt {

#ifdef DLK_GPT_HAVE_CAIRO
namespace {

// 1, 2 or 5 times a power of ten, so that about `n` ticks span `range`.
double nice_step(double range, int n) {
  const double raw = range / n;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / p;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

}  // namespace

bool write_loss_png(const std::string& path, const TrainState& s, std::string* error) {
  if (s.losses.empty() && s.eval_train.empty()) {
    *error = "no losses to plot";
    return false;
  }
  const int W = 900, H = 540;
  const double left = 70, right = 20, top = 40, bottom = 55;
  cairo_surface_t* surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, W, H);
  cairo_t* cr = cairo_create(surface);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);

  double x_max = 1, y_min = INFINITY, y_max = -INFINITY;
  for (std::size_t i = 0; i < s.losses.size(); ++i) {
    x_max = std::max<double>(x_max, s.loss_steps[i]);
    if (std::isfinite(s.losses[i]))
      y_min = std::min<double>(y_min, s.losses[i]), y_max = std::max<double>(y_max, s.losses[i]);
  }
  for (std::size_t i = 0; i < s.eval_steps.size(); ++i) {
    x_max = std::max<double>(x_max, s.eval_steps[i]);
    for (float v : {s.eval_train[i], s.eval_val[i]})
      if (std::isfinite(v)) y_min = std::min<double>(y_min, v), y_max = std::max<double>(y_max, v);
  }
  if (!std::isfinite(y_min)) y_min = 0, y_max = 1;
  if (y_max - y_min < 1e-3) y_max = y_min + 1e-3;
  const double pad = 0.05 * (y_max - y_min);
  y_min = std::max(0.0, y_min - pad);
  y_max += pad;
  auto px = [&](double step) { return left + step / x_max * (W - left - right); };
  auto py = [&](double loss) { return H - bottom - (loss - y_min) / (y_max - y_min) * (H - top - bottom); };

  // grid and tick labels
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 12);
  cairo_set_line_width(cr, 1);
  char label[32];
  const double ys = nice_step(y_max - y_min, 6);
  for (double v = std::ceil(y_min / ys) * ys; v <= y_max + 1e-12; v += ys) {
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, left, py(v));
    cairo_line_to(cr, W - right, py(v));
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    std::snprintf(label, sizeof label, "%g", v);
    cairo_text_extents_t ext;
    cairo_text_extents(cr, label, &ext);
    cairo_move_to(cr, left - 6 - ext.width, py(v) + ext.height / 2);
    cairo_show_text(cr, label);
  }
  const double xs = nice_step(x_max, 8);
  for (double v = 0; v <= x_max + 1e-9; v += xs) {
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, px(v), top);
    cairo_line_to(cr, px(v), H - bottom);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    std::snprintf(label, sizeof label, "%g", v);
    cairo_text_extents_t ext;
    cairo_text_extents(cr, label, &ext);
    cairo_move_to(cr, px(v) - ext.width / 2, H - bottom + 16);
    cairo_show_text(cr, label);
  }
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_rectangle(cr, left, top, W - left - right, H - top - bottom);
  cairo_stroke(cr);
  cairo_move_to(cr, left + (W - left - right) / 2 - 15, H - 12);
  cairo_show_text(cr, "step");
  cairo_save(cr);
  cairo_move_to(cr, 18, top + (H - top - bottom) / 2 + 40);
  cairo_rotate(cr, -M_PI / 2);
  cairo_show_text(cr, "cross-entropy loss (nats)");
  cairo_restore(cr);
  cairo_set_font_size(cr, 14);
  cairo_move_to(cr, left, 24);
  cairo_show_text(cr, "dlk train gpt: loss");

  // per-step training loss
  cairo_save(cr);
  cairo_rectangle(cr, left, top, W - left - right, H - top - bottom);
  cairo_clip(cr);
  cairo_set_source_rgb(cr, 0.7, 0.7, 0.7);
  cairo_set_line_width(cr, 1);
  for (std::size_t i = 0; i < s.losses.size(); ++i) {
    if (i == 0)
      cairo_move_to(cr, px(s.loss_steps[i]), py(s.losses[i]));
    else
      cairo_line_to(cr, px(s.loss_steps[i]), py(s.losses[i]));
  }
  cairo_stroke(cr);
  // evaluations
  struct Series {
    const std::vector<float>* v;
    double r, g, b;
  };
  for (Series se : {Series{&s.eval_train, 0.12, 0.47, 0.71}, Series{&s.eval_val, 1.0, 0.5, 0.05}}) {
    cairo_set_source_rgb(cr, se.r, se.g, se.b);
    cairo_set_line_width(cr, 2);
    for (std::size_t i = 0; i < se.v->size(); ++i) {
      if (i == 0)
        cairo_move_to(cr, px(s.eval_steps[i]), py((*se.v)[i]));
      else
        cairo_line_to(cr, px(s.eval_steps[i]), py((*se.v)[i]));
    }
    cairo_stroke(cr);
    for (std::size_t i = 0; i < se.v->size(); ++i) {
      cairo_arc(cr, px(s.eval_steps[i]), py((*se.v)[i]), 3, 0, 2 * M_PI);
      cairo_fill(cr);
    }
  }
  cairo_restore(cr);
  // legend
  struct Entry {
    const char* name;
    double r, g, b;
  };
  double ly = top + 18;
  cairo_set_font_size(cr, 12);
  for (Entry e : {Entry{"train loss (each step)", 0.7, 0.7, 0.7}, Entry{"train loss (eval)", 0.12, 0.47, 0.71},
                  Entry{"val loss (eval)", 1.0, 0.5, 0.05}}) {
    cairo_set_source_rgb(cr, e.r, e.g, e.b);
    cairo_set_line_width(cr, 2);
    cairo_move_to(cr, W - right - 190, ly - 4);
    cairo_line_to(cr, W - right - 165, ly - 4);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    cairo_move_to(cr, W - right - 158, ly);
    cairo_show_text(cr, e.name);
    ly += 18;
  }

  cairo_destroy(cr);
  cairo_surface_flush(surface);
  // cairo writes in place; write beside and rename so a reader never sees half a file
  const std::string tmp = path + ".tmp";
  const cairo_status_t st = cairo_surface_write_to_png(surface, tmp.c_str());
  cairo_surface_destroy(surface);
  if (st != CAIRO_STATUS_SUCCESS || std::rename(tmp.c_str(), path.c_str()) != 0) {
    *error = "cannot write " + path + ": " + cairo_status_to_string(st);
    std::remove(tmp.c_str());
    return false;
  }
  return true;
}

#else

bool write_loss_png(const std::string&, const TrainState&, std::string* error) {
  *error = "this build has no PNG support (install libcairo2-dev and reconfigure); the CSV has the same numbers";
  return false;
}

#endif

}  // namespace gpt
