// Figures with cairo's image (PNG), PDF and SVG surfaces. Every figure is
// laid out in points by a layout function (which measures its labels with
// the same fonts) and drawn by one draw function for all three surfaces; the
// PNG surface is scaled by kPngScale. Text uses cairo's toy API with
// "DejaVu Sans" (Debian: fonts-dejavu-core), hint metrics off so that
// measurements agree between surfaces.
#include "report/plots.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "report/text.h"
#include "util/error.h"

#ifdef KT_HAVE_CAIRO
#include <cairo-pdf.h>
#include <cairo-svg.h>
#include <cairo.h>
#endif

namespace kt {

std::string image_format_extension(ImageFormat f) {
  switch (f) {
    case ImageFormat::Png:
      return "png";
    case ImageFormat::Pdf:
      return "pdf";
    case ImageFormat::Svg:
      return "svg";
  }
  return "png";
}

ImageFormat parse_image_format(const std::string& name) {
  std::string n = name;
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (n == "png") return ImageFormat::Png;
  if (n == "pdf") return ImageFormat::Pdf;
  if (n == "svg") return ImageFormat::Svg;
  throw Error("unknown image format '" + name + "' (expected png, pdf or svg)");
}

std::string colormap_name(const std::string& mediator) {
  if (mediator == "hidden") return "Purples";
  if (mediator == "mlp") return "Greens";
  if (mediator == "attn") return "Reds";
  if (mediator == "hidden_attn_severed") return "Blues";
  if (mediator == "hidden_mlp_severed") return "Oranges";
  return "Greys";
}

#ifndef KT_HAVE_CAIRO

namespace {
[[noreturn]] void no_cairo() { throw Error("knowtrace was built without cairo: plots unavailable"); }
}  // namespace

bool plots_available() { return false; }
FigureSize fact_heatmap_size(const TraceRecord&) { no_cairo(); }
FigureSize average_heatmap_size(const MediatorSummary&) { no_cairo(); }
FigureSize average_heatmap_size(const MediatorSummary&, double) { no_cairo(); }
FigureSize aie_lines_size(const std::vector<MediatorSummary>&) { no_cairo(); }
std::vector<std::string> plot_fact_heatmap(const TraceRecord&, const std::string&, const std::vector<ImageFormat>&) {
  no_cairo();
}
std::vector<std::string> plot_average_heatmap(const MediatorSummary&, const std::string&,
                                              const std::vector<ImageFormat>&) {
  no_cairo();
}
std::vector<std::string> plot_average_heatmap(const MediatorSummary&, const std::string&,
                                              const std::vector<ImageFormat>&, double) {
  no_cairo();
}
std::vector<std::string> plot_aie_lines(const std::vector<MediatorSummary>&, const std::string&,
                                        const std::vector<ImageFormat>&) {
  no_cairo();
}

#else  // KT_HAVE_CAIRO

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
const char* const kFont = "DejaVu Sans";
constexpr double kMargin = 12;
constexpr double kTitleSize = 12;
constexpr double kSubtitleSize = 9;
constexpr double kLabelSize = 9.5;
constexpr double kTickSize = 8.5;
constexpr double kAxisSize = 9.5;

// ---------------------------------------------------------------- colours

struct Rgb {
  double r, g, b;
};

Rgb hex(uint32_t v) { return {((v >> 16) & 255) / 255.0, ((v >> 8) & 255) / 255.0, (v & 255) / 255.0}; }

// Nine anchors per sequential ramp, light to dark (the ColorBrewer
// sequential schemes that matplotlib's maps of the same names use).
const std::vector<uint32_t>& ramp(const std::string& name) {
  static const std::vector<uint32_t> purples = {0xfcfbfd, 0xefedf5, 0xdadaeb, 0xbcbddc, 0x9e9ac8,
                                                0x807dba, 0x6a51a3, 0x54278f, 0x3f007d};
  static const std::vector<uint32_t> greens = {0xf7fcf5, 0xe5f5e0, 0xc7e9c0, 0xa1d99b, 0x74c476,
                                               0x41ab5d, 0x238b45, 0x006d2c, 0x00441b};
  static const std::vector<uint32_t> reds = {0xfff5f0, 0xfee0d2, 0xfcbba1, 0xfc9272, 0xfb6a4a,
                                             0xef3b2c, 0xcb181d, 0xa50f15, 0x67000d};
  static const std::vector<uint32_t> blues = {0xf7fbff, 0xdeebf7, 0xc6dbef, 0x9ecae1, 0x6baed6,
                                              0x4292c6, 0x2171b5, 0x08519c, 0x08306b};
  static const std::vector<uint32_t> oranges = {0xfff5eb, 0xfee6ce, 0xfdd0a2, 0xfdae6b, 0xfd8d3c,
                                                0xf16913, 0xd94801, 0xa63603, 0x7f2704};
  static const std::vector<uint32_t> greys = {0xffffff, 0xf0f0f0, 0xd9d9d9, 0xbdbdbd, 0x969696,
                                              0x737373, 0x525252, 0x252525, 0x000000};
  if (name == "Purples") return purples;
  if (name == "Greens") return greens;
  if (name == "Reds") return reds;
  if (name == "Blues") return blues;
  if (name == "Oranges") return oranges;
  return greys;
}

Rgb colormap(const std::string& name, double t) {
  const auto& a = ramp(name);
  t = std::clamp(t, 0.0, 1.0);
  const double x = t * static_cast<double>(a.size() - 1);
  const auto i = std::min(static_cast<size_t>(x), a.size() - 2);
  const double f = x - static_cast<double>(i);
  const Rgb lo = hex(a[i]), hi = hex(a[i + 1]);
  return {lo.r + (hi.r - lo.r) * f, lo.g + (hi.g - lo.g) * f, lo.b + (hi.b - lo.b) * f};
}

const Rgb kMissing{0.80, 0.80, 0.80};  // NaN cells
const Rgb kText{0.10, 0.10, 0.10};
const Rgb kAxis{0.35, 0.35, 0.35};

// Category line colours (matplotlib tab10 in ROME's colour_order).
Rgb category_colour(const std::string& name, size_t index) {
  if (name == "first_subject_token") return hex(0x1f77b4);
  if (name == "middle_subject_tokens") return hex(0xff7f0e);
  if (name == "last_subject_token") return hex(0x2ca02c);
  if (name == "first_subsequent_token") return hex(0x9467bd);
  if (name == "further_tokens") return hex(0x8c564b);
  if (name == "last_token") return hex(0xd62728);
  static const uint32_t extra[] = {0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf};
  return hex(extra[index % 4]);
}

void set_rgb(cairo_t* cr, Rgb c, double alpha = 1.0) { cairo_set_source_rgba(cr, c.r, c.g, c.b, alpha); }

// ---------------------------------------------------------------- text

void set_font(cairo_t* cr, const char* family, double size, bool bold) {
  cairo_select_font_face(cr, family, CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
}

void no_hinting(cairo_t* cr) {
  cairo_font_options_t* fo = cairo_font_options_create();
  cairo_font_options_set_hint_metrics(fo, CAIRO_HINT_METRICS_OFF);
  cairo_font_options_set_hint_style(fo, CAIRO_HINT_STYLE_NONE);
  cairo_set_font_options(cr, fo);
  cairo_font_options_destroy(fo);
}

// The toy text API draws every character with one font and shows a box
// where that font has no glyph. Characters DejaVu Sans lacks (CJK, say) are
// drawn with the first fallback family that has them; where none does, the
// character is written as an escape ("\u5317") rather than as a box.
const char* const kFallbackFonts[] = {
    "Noto Sans CJK SC", "Noto Sans CJK JP", "WenQuanYi Zen Hei", "Droid Sans Fallback", "Noto Sans",
    "FreeSans",         "Unifont"};

bool font_has_glyph(cairo_t* cr, const char* family, bool bold, const std::string& ch) {
  static std::mutex mu;
  static std::map<std::string, bool> cache;
  const std::string key = std::string(family) + (bold ? "|b|" : "|r|") + ch;
  {
    std::lock_guard<std::mutex> lock(mu);
    const auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  cairo_save(cr);
  set_font(cr, family, 10, bold);
  cairo_scaled_font_t* sf = cairo_get_scaled_font(cr);
  cairo_glyph_t* glyphs = nullptr;
  int n = 0;
  const cairo_status_t st = cairo_scaled_font_text_to_glyphs(sf, 0, 0, ch.data(), static_cast<int>(ch.size()), &glyphs,
                                                             &n, nullptr, nullptr, nullptr);
  bool ok = st == CAIRO_STATUS_SUCCESS && n > 0;
  for (int i = 0; ok && i < n; ++i) ok = glyphs[i].index != 0;
  if (glyphs) cairo_glyph_free(glyphs);
  cairo_restore(cr);
  std::lock_guard<std::mutex> lock(mu);
  cache[key] = ok;
  return ok;
}

struct FontRun {
  const char* family;
  std::string text;
};

// Splits sanitized UTF-8 into runs of one font each.
std::vector<FontRun> font_runs(cairo_t* cr, const std::string& s, bool bold) {
  std::vector<FontRun> runs;
  auto add = [&](const char* family, const std::string& t) {
    if (!runs.empty() && runs.back().family == family)
      runs.back().text += t;
    else
      runs.push_back({family, t});
  };
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
    const std::string ch = s.substr(i, n);
    i += n;
    if (n == 1 || font_has_glyph(cr, kFont, bold, ch)) {
      add(kFont, ch);
      continue;
    }
    const char* found = nullptr;
    for (const char* f : kFallbackFonts)
      if (font_has_glyph(cr, f, bold, ch)) {
        found = f;
        break;
      }
    if (found) {
      add(found, ch);
    } else {
      uint32_t cp = n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
      for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(ch[k]) & 0x3F);
      char buf[16];
      std::snprintf(buf, sizeof buf, cp > 0xFFFF ? "\\U%08X" : "\\u%04X", cp);
      add(kFont, buf);
    }
  }
  return runs;
}

// Advance width of s; draws it from the current point when `draw`.
double show_runs(cairo_t* cr, const std::string& s, double size, bool bold, bool draw) {
  double w = 0;
  for (const auto& run : font_runs(cr, s, bold)) {
    set_font(cr, run.family, size, bold);
    cairo_text_extents_t e;
    cairo_text_extents(cr, run.text.c_str(), &e);
    w += e.x_advance;
    if (draw) cairo_show_text(cr, run.text.c_str());
  }
  return w;
}

// A scratch context for measuring text.
class Measure {
 public:
  Measure() {
    surface_ = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, 4, 4);
    cr_ = cairo_create(surface_);
    no_hinting(cr_);
  }
  ~Measure() {
    cairo_destroy(cr_);
    cairo_surface_destroy(surface_);
  }
  Measure(const Measure&) = delete;
  Measure& operator=(const Measure&) = delete;
  double width(const std::string& s, double size, bool bold = false) const {
    return show_runs(cr_, s, size, bold, false);
  }

 private:
  cairo_surface_t* surface_;
  cairo_t* cr_;
};

// Text with its baseline at y; align 0 = left, 0.5 = centre, 1 = right.
void text(cairo_t* cr, const std::string& s, double x, double y, double size, bool bold, double align, Rgb colour) {
  const double w = show_runs(cr, s, size, bold, false);
  set_rgb(cr, colour);
  cairo_move_to(cr, x - align * w, y);
  show_runs(cr, s, size, bold, true);
  cairo_new_path(cr);
}

// Text rotated 90 degrees counter-clockwise, centred on (x, y) along its
// run; its baseline runs vertically at x.
void text_vertical(cairo_t* cr, const std::string& s, double x, double y, double size, Rgb colour) {
  const double w = show_runs(cr, s, size, false, false);
  cairo_save(cr);
  cairo_translate(cr, x, y);
  cairo_rotate(cr, -M_PI / 2);
  set_rgb(cr, colour);
  cairo_move_to(cr, -w / 2, 0);
  show_runs(cr, s, size, false, true);
  cairo_new_path(cr);
  cairo_restore(cr);
}

// Baseline that centres digits / capitals vertically on y.
double centred_baseline(double y, double size) { return y + 0.36 * size; }

// Longest prefix of s (ellipsized) that fits max_w.
std::string fit_text(const Measure& m, const std::string& s, double size, bool bold, double max_w) {
  if (m.width(s, size, bold) <= max_w) return s;
  size_t chars = 0;
  for (size_t i = 0; i < s.size(); ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) ++chars;
  while (chars > 1) {
    --chars;
    const std::string t = report::ellipsize(s, chars);
    if (m.width(t, size, bold) <= max_w) return t;
  }
  return report::ellipsize(s, 1);
}

// ---------------------------------------------------------------- ticks

struct Ticks {
  std::vector<double> values;
  int decimals = 2;
  std::string label(double v) const { return report::format_fixed(std::fabs(v) < 1e-12 ? 0.0 : v, decimals); }
};

Ticks nice_ticks(double lo, double hi, int target) {
  Ticks t;
  if (!(hi - lo > 1e-12)) {
    t.values = {lo};
    t.decimals = 2;
    return t;
  }
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / mag;
  double unit;
  if (norm < 1.5)
    unit = 1;
  else if (norm < 2.25)
    unit = 2;
  else if (norm < 3.5)
    unit = 2.5;
  else if (norm < 7.5)
    unit = 5;
  else
    unit = 10;
  const double step = unit * mag;
  t.decimals = std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9)));
  if (unit == 2.5) t.decimals += 1;
  const double first = std::ceil(lo / step - 1e-9) * step;
  for (int i = 0;; ++i) {
    const double v = first + i * step;
    if (v > hi + step * 1e-9) break;
    t.values.push_back(std::fabs(v) < step * 1e-9 ? 0.0 : v);
  }
  return t;
}

// Every `step`-th integer label fits when step * spacing covers the widest.
int label_step(double spacing, double widest) {
  static const int steps[] = {1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000};
  for (int s : steps)
    if (s * spacing >= widest + 6) return s;
  return 1000;
}

// ---------------------------------------------------------------- labels

std::string what_restored(const std::string& mediator) {
  if (mediator == "hidden") return "state";
  if (mediator == "mlp") return "MLP";
  if (mediator == "attn") return "Attn";
  if (mediator == "hidden_attn_severed") return "state";
  if (mediator == "hidden_mlp_severed") return "state";
  return mediator;
}

std::string severed_suffix(const std::string& mediator) {
  if (mediator == "hidden_attn_severed") return " (Attn severed)";
  if (mediator == "hidden_mlp_severed") return " (MLP severed)";
  return "";
}

bool windowed(const std::string& mediator) { return mediator == "mlp" || mediator == "attn"; }

// Which AIE formula a summary figure shows (aggregate.h).
std::string aie_formula_text(AieFormula f) {
  return f == AieFormula::Rome ? "AIE = mean score \xE2\x88\x92 mean low score (ROME)"
                               : "AIE = mean of (score \xE2\x88\x92 own low score)";
}

std::string model_name(const std::string& model) { return model.empty() ? "the model" : report::sanitize_utf8(model); }

std::string layer_axis_label(const std::string& mediator, const std::string& model, int64_t window) {
  if (mediator.rfind("knockout_", 0) == 0)
    return "center of " + std::to_string(window) + " layers whose attention edges are removed";
  if (windowed(mediator))
    return "center of interval of " + std::to_string(window) + " restored " + what_restored(mediator) + " layers";
  return "single restored layer within " + model_name(model);
}

std::string mean_mode_text(bool per_fact_mean) {
  return per_fact_mean ? "per-fact means" : "token-weighted means (ROME)";
}

// ---------------------------------------------------------------- output

using DrawFn = std::function<void(cairo_t*)>;

void check(cairo_status_t st, const std::string& path, const char* what) {
  if (st != CAIRO_STATUS_SUCCESS)
    throw Error(path + ": cairo could not " + what + " (" + cairo_status_to_string(st) + ")");
}

std::vector<std::string> render(const std::string& stem, const std::vector<ImageFormat>& formats, double w, double h,
                                const DrawFn& draw) {
  if (formats.empty()) throw Error(stem + ": no image format requested");
  namespace fs = std::filesystem;
  const fs::path parent = fs::path(stem).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    fs::create_directories(parent, ec);
    if (ec) throw Error(parent.string() + ": cannot create directory (" + ec.message() + ")");
  }
  std::vector<std::string> written;
  for (const ImageFormat f : formats) {
    const std::string path = stem + "." + image_format_extension(f);
    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    cairo_surface_t* surface = nullptr;
    if (f == ImageFormat::Png)
      surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, static_cast<int>(std::lround(w * kPngScale)),
                                           static_cast<int>(std::lround(h * kPngScale)));
    else if (f == ImageFormat::Pdf)
      surface = cairo_pdf_surface_create(tmp.c_str(), w, h);
    else
      surface = cairo_svg_surface_create(tmp.c_str(), w, h);
    const cairo_status_t created = cairo_surface_status(surface);
    if (created != CAIRO_STATUS_SUCCESS) {
      cairo_surface_destroy(surface);
      ::unlink(tmp.c_str());
      check(created, path, "create the surface");
    }
    if (f == ImageFormat::Pdf) {
      cairo_pdf_surface_set_metadata(surface, CAIRO_PDF_METADATA_CREATOR, "knowtrace");
    }
    cairo_t* cr = cairo_create(surface);
    no_hinting(cr);
    if (f == ImageFormat::Png) cairo_scale(cr, kPngScale, kPngScale);
    cairo_status_t st = CAIRO_STATUS_SUCCESS;
    try {
      draw(cr);
    } catch (...) {
      cairo_destroy(cr);
      cairo_surface_destroy(surface);
      ::unlink(tmp.c_str());
      throw;
    }
    st = cairo_status(cr);
    cairo_destroy(cr);
    if (st == CAIRO_STATUS_SUCCESS && f == ImageFormat::Png) st = cairo_surface_write_to_png(surface, tmp.c_str());
    cairo_surface_finish(surface);
    if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_status(surface);
    cairo_surface_destroy(surface);
    if (st != CAIRO_STATUS_SUCCESS) {
      ::unlink(tmp.c_str());
      check(st, path, "draw or write the figure");
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      ::unlink(tmp.c_str());
      throw Error(path + ": cannot rename the temporary file into place");
    }
    written.push_back(path);
  }
  return written;
}

FigureSize make_size(double w, double h) {
  FigureSize s;
  s.width_pt = w;
  s.height_pt = h;
  s.png_width = static_cast<int>(std::lround(w * kPngScale));
  s.png_height = static_cast<int>(std::lround(h * kPngScale));
  return s;
}

// ---------------------------------------------------------------- heatmap

struct HeatSpec {
  int64_t rows = 0, cols = 0;
  std::vector<double> values;  // [rows, cols]; NaN = missing
  double vmin = 0, vmax = 1;
  std::string cmap;
  std::vector<std::string> row_labels;
  std::vector<bool> row_bold;
  int64_t bracket_lo = -1, bracket_hi = -1;  // rows marked by a bracket
  std::string title, subtitle, xlabel, cbar_label;
};

struct HeatLayout {
  double w = 0, h = 0;
  double grid_x = 0, grid_y = 0, cell_w = 0, cell_h = 16;
  int tick_step = 1;
  double title_x = 0, title_y = 0, subtitle_x = 0, subtitle_y = 0;
  double tick_label_y = 0, xlabel_x = 0, xlabel_y = 0;
  double cbar_x = 0, cbar_y = 0, cbar_w = 12, cbar_h = 0, cbar_label_x = 0;
  Ticks cticks;
  std::string subtitle;
};

constexpr double kBracketSpace = 12;  // between row labels and grid

// Like std::clamp, but lo wins when hi < lo (a label wider than its room).
double clamp_safe(double v, double lo, double hi) { return std::max(lo, std::min(v, hi)); }

HeatLayout layout_heat(const HeatSpec& s) {
  const Measure m;
  HeatLayout L;
  double label_w = 0;
  for (int64_t r = 0; r < s.rows; ++r) label_w = std::max(label_w, m.width(s.row_labels[r], kLabelSize, s.row_bold[r]));
  L.grid_x = std::ceil(kMargin + label_w + 4 + kBracketSpace);
  L.title_y = kMargin + kTitleSize;
  double y = L.title_y + 4;
  if (!s.subtitle.empty()) {
    L.subtitle_y = y + kSubtitleSize + 1;
    y = L.subtitle_y + 3;
  }
  L.grid_y = std::ceil(y + 8);
  L.cell_w = std::clamp(540.0 / static_cast<double>(std::max<int64_t>(s.cols, 1)), 10.0, 28.0);
  L.cell_h = 16;
  const double grid_w = s.cols * L.cell_w, grid_h = s.rows * L.cell_h;
  L.tick_step = label_step(L.cell_w, m.width(std::to_string(std::max<int64_t>(s.cols - 1, 0)), kTickSize));

  // Colour bar with ticks on its right and its label, rotated, beyond them.
  L.cticks = nice_ticks(s.vmin, s.vmax, 5);
  double ctick_w = 0;
  for (double v : L.cticks.values) ctick_w = std::max(ctick_w, m.width(L.cticks.label(v), kTickSize));
  const double cbar_label_w = m.width(s.cbar_label, kAxisSize);
  // An x label wider than the grid starts at the grid's left edge and
  // pushes the colour bar right, so the two never overlap.
  const double xlabel_w = m.width(s.xlabel, kAxisSize);
  L.cbar_x = L.grid_x + std::max(grid_w, xlabel_w) + 16;
  L.cbar_y = L.grid_y;
  L.cbar_h = std::max({grid_h, cbar_label_w + 12, 80.0});
  L.cbar_label_x = L.cbar_x + L.cbar_w + 3 + 3 + ctick_w + 6 + kAxisSize;
  const double right = L.cbar_label_x + 3;

  L.tick_label_y = L.grid_y + grid_h + 4 + kTickSize;
  L.xlabel_y = L.tick_label_y + 6 + kAxisSize;
  const double bottom = std::max(L.xlabel_y + 3, L.cbar_y + L.cbar_h);

  const double title_w = m.width(s.title, kTitleSize, true);
  L.w = std::ceil(std::max({right + kMargin, title_w + 2 * kMargin, L.grid_x + xlabel_w + kMargin}));
  L.h = std::ceil(bottom + kMargin);

  const double grid_cx = L.grid_x + grid_w / 2;
  L.title_x = clamp_safe(grid_cx - title_w / 2, kMargin, L.w - kMargin - title_w);
  L.xlabel_x = clamp_safe(grid_cx - xlabel_w / 2, L.grid_x, L.w - kMargin - xlabel_w);
  if (!s.subtitle.empty()) {
    L.subtitle = fit_text(m, s.subtitle, kSubtitleSize, false, L.w - 2 * kMargin);
    const double sw = m.width(L.subtitle, kSubtitleSize);
    L.subtitle_x = clamp_safe(grid_cx - sw / 2, kMargin, L.w - kMargin - sw);
  }
  return L;
}

void draw_heat(cairo_t* cr, const HeatSpec& s, const HeatLayout& L) {
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  const double grid_w = s.cols * L.cell_w, grid_h = s.rows * L.cell_h;
  const double span = s.vmax - s.vmin;

  // Cells, each a hair larger than its slot so no seam shows between them.
  for (int64_t r = 0; r < s.rows; ++r) {
    for (int64_t c = 0; c < s.cols; ++c) {
      const double v = s.values[static_cast<size_t>(r * s.cols + c)];
      const double x = L.grid_x + c * L.cell_w, y = L.grid_y + r * L.cell_h;
      const double ew = c + 1 < s.cols ? 0.4 : 0.0, eh = r + 1 < s.rows ? 0.4 : 0.0;
      if (std::isnan(v)) {
        set_rgb(cr, kMissing);
      } else {
        const double t = span > 0 ? (v - s.vmin) / span : 0.0;
        set_rgb(cr, colormap(s.cmap, t));
      }
      cairo_rectangle(cr, x, y, L.cell_w + ew, L.cell_h + eh);
      cairo_fill(cr);
    }
  }
  // Missing cells get a diagonal hatch so they never read as "low".
  cairo_set_line_width(cr, 0.5);
  set_rgb(cr, {0.62, 0.62, 0.62});
  for (int64_t r = 0; r < s.rows; ++r)
    for (int64_t c = 0; c < s.cols; ++c)
      if (std::isnan(s.values[static_cast<size_t>(r * s.cols + c)])) {
        const double x = L.grid_x + c * L.cell_w, y = L.grid_y + r * L.cell_h;
        cairo_move_to(cr, x + 1, y + L.cell_h - 1);
        cairo_line_to(cr, x + L.cell_w - 1, y + 1);
      }
  cairo_stroke(cr);

  set_rgb(cr, kAxis);
  cairo_set_line_width(cr, 0.6);
  cairo_rectangle(cr, L.grid_x, L.grid_y, grid_w, grid_h);
  cairo_stroke(cr);

  // Row labels, right-aligned, and the subject bracket.
  const double label_right = L.grid_x - kBracketSpace;
  for (int64_t r = 0; r < s.rows; ++r)
    text(cr, s.row_labels[r], label_right, centred_baseline(L.grid_y + (r + 0.5) * L.cell_h, kLabelSize), kLabelSize,
         s.row_bold[r], 1.0, kText);
  if (s.bracket_lo >= 0 && s.bracket_hi > s.bracket_lo) {
    const double bx = L.grid_x - kBracketSpace / 2 - 1;
    const double y0 = L.grid_y + s.bracket_lo * L.cell_h + 2, y1 = L.grid_y + s.bracket_hi * L.cell_h - 2;
    set_rgb(cr, kText);
    cairo_set_line_width(cr, 1.0);
    cairo_move_to(cr, bx + 3.5, y0);
    cairo_line_to(cr, bx, y0);
    cairo_line_to(cr, bx, y1);
    cairo_line_to(cr, bx + 3.5, y1);
    cairo_stroke(cr);
  }

  // Layer ticks and labels.
  set_rgb(cr, kAxis);
  cairo_set_line_width(cr, 0.6);
  for (int64_t c = 0; c < s.cols; ++c) {
    const double x = L.grid_x + (c + 0.5) * L.cell_w;
    const bool labelled = c % L.tick_step == 0;
    cairo_move_to(cr, x, L.grid_y + grid_h);
    cairo_line_to(cr, x, L.grid_y + grid_h + (labelled ? 3.0 : 1.5));
  }
  cairo_stroke(cr);
  for (int64_t c = 0; c < s.cols; c += L.tick_step)
    text(cr, std::to_string(c), L.grid_x + (c + 0.5) * L.cell_w, L.tick_label_y, kTickSize, false, 0.5, kText);
  text(cr, s.xlabel, L.xlabel_x, L.xlabel_y, kAxisSize, false, 0.0, kText);

  // Colour bar: vmin at the bottom, vmax at the top. The ramps are linear
  // between their anchors, so a gradient with the anchors as stops is exact
  // (and stays one object in PDF / SVG).
  {
    cairo_pattern_t* grad = cairo_pattern_create_linear(0, L.cbar_y + L.cbar_h, 0, L.cbar_y);
    const auto& anchors = ramp(s.cmap);
    for (size_t i = 0; i < anchors.size(); ++i) {
      const Rgb c = hex(anchors[i]);
      cairo_pattern_add_color_stop_rgb(grad, static_cast<double>(i) / static_cast<double>(anchors.size() - 1), c.r, c.g,
                                       c.b);
    }
    cairo_rectangle(cr, L.cbar_x, L.cbar_y, L.cbar_w, L.cbar_h);
    cairo_set_source(cr, grad);
    cairo_fill(cr);
    cairo_pattern_destroy(grad);
  }
  set_rgb(cr, kAxis);
  cairo_set_line_width(cr, 0.6);
  cairo_rectangle(cr, L.cbar_x, L.cbar_y, L.cbar_w, L.cbar_h);
  cairo_stroke(cr);
  for (double v : L.cticks.values) {
    const double t = span > 0 ? (v - s.vmin) / span : 0.0;
    const double y = L.cbar_y + L.cbar_h * (1.0 - t);
    set_rgb(cr, kAxis);
    cairo_move_to(cr, L.cbar_x + L.cbar_w, y);
    cairo_line_to(cr, L.cbar_x + L.cbar_w + 3, y);
    cairo_stroke(cr);
    text(cr, L.cticks.label(v), L.cbar_x + L.cbar_w + 6, centred_baseline(y, kTickSize), kTickSize, false, 0.0, kText);
  }
  text_vertical(cr, s.cbar_label, L.cbar_label_x, L.cbar_y + L.cbar_h / 2, kAxisSize, kText);

  text(cr, s.title, L.title_x, L.title_y, kTitleSize, true, 0.0, kText);
  if (!L.subtitle.empty()) text(cr, L.subtitle, L.subtitle_x, L.subtitle_y, kSubtitleSize, false, 0.0, kAxis);
}

HeatSpec fact_spec(const TraceRecord& r) {
  if (r.n_tokens <= 0 || r.n_layers <= 0 || static_cast<int64_t>(r.scores.size()) != r.n_tokens * r.n_layers)
    throw Error("heatmap of '" + r.fact_id + "' (" + r.mediator + "): scores has " + std::to_string(r.scores.size()) +
                " values for " + std::to_string(r.n_tokens) + " tokens x " + std::to_string(r.n_layers) + " layers");
  HeatSpec s;
  s.rows = r.n_tokens;
  s.cols = r.n_layers;
  s.values = r.scores;
  s.cmap = colormap_name(r.mediator);
  // Colour from low_score (as ROME's vmin) to the largest score; signed
  // quantities (knockouts, logprob, logit_diff, kl) from their smallest.
  double hi = -std::numeric_limits<double>::infinity(), lo = std::numeric_limits<double>::infinity();
  for (double v : r.scores)
    if (std::isfinite(v)) hi = std::max(hi, v), lo = std::min(lo, v);
  const bool probability = !r.knockout() && (r.metric == "prob" || r.normalised);
  s.vmin = probability ? (std::isfinite(r.low_score) ? r.low_score : 0.0) : (std::isfinite(lo) ? lo : 0.0);
  s.vmax = std::isfinite(hi) && hi > s.vmin ? hi : s.vmin + 1e-6;
  const bool subject_ok = !r.knockout() && r.subject_begin >= 0 && r.subject_end > r.subject_begin &&
                          r.subject_end <= r.n_tokens;
  for (int64_t t = 0; t < r.n_tokens; ++t) {
    // A knockout's one row is the last token's.
    const int64_t tok = r.knockout() ? r.prompt_tokens() - 1 : t;
    std::string label =
        tok < static_cast<int64_t>(r.tokens.size()) ? report::display_token(r.tokens[tok]) : "#" + std::to_string(t);
    const bool subject = subject_ok && t >= r.subject_begin && t < r.subject_end;
    if (subject) label += "*";
    s.row_labels.push_back(fit_text(Measure(), label, kLabelSize, subject, 220));
    s.row_bold.push_back(subject);
  }
  if (subject_ok) {
    s.bracket_lo = r.subject_begin;
    s.bracket_hi = r.subject_end;
  }
  s.title = r.knockout() ? "Relative change of p(answer) with the last token's attention edges removed"
                         : "Impact of restoring " + what_restored(r.mediator) + " after corrupted input" +
                               severed_suffix(r.mediator);
  std::string answer = report::display_token(r.answer);
  while (!answer.empty() && answer.front() == ' ') answer.erase(answer.begin());
  while (!answer.empty() && answer.back() == ' ') answer.pop_back();
  const std::string pa = "p(" + (answer.empty() ? std::string("answer") : answer) + ")";
  s.cbar_label = r.knockout() ? "relative change of " + pa
                 : r.normalised ? "restored fraction"
                 : r.metric == "logprob" ? "log " + pa
                 : r.metric == "logit_diff" ? "logit difference"
                 : r.metric == "kl" ? "KL(clean || restored)"
                 : pa;
  if (!r.prompt.empty()) {
    std::string prompt = report::sanitize_utf8(r.prompt);
    for (char& c : prompt)
      if (c == '\n' || c == '\t' || c == '\r') c = ' ';
    s.subtitle = prompt + (answer.empty() ? "" : "  \xE2\x86\x92  " + answer);  // U+2192
  }
  s.xlabel = layer_axis_label(r.mediator, r.model, r.window);
  return s;
}

std::string average_what(const std::string& mediator) {
  if (mediator == "hidden") return "hidden state";
  if (mediator == "mlp") return "MLP";
  if (mediator == "attn") return "Attn";
  if (mediator == "hidden_attn_severed") return "hidden state, Attn severed,";
  if (mediator == "hidden_mlp_severed") return "hidden state, MLP severed,";
  return mediator;
}

HeatSpec average_spec(const MediatorSummary& sm, double vmax) {
  if (sm.categories.empty()) throw Error("average heatmap of '" + sm.mediator + "': the summary has no categories");
  HeatSpec s;
  s.rows = static_cast<int64_t>(sm.categories.size());
  s.cols = sm.n_layers;
  for (const auto& c : sm.categories) s.cols = std::max<int64_t>(s.cols, static_cast<int64_t>(c.aie.size()));
  if (s.cols <= 0) throw Error("average heatmap of '" + sm.mediator + "': no layers");
  double hi = 0, lo = 0;
  for (const auto& c : sm.categories) {
    for (int64_t l = 0; l < s.cols; ++l) {
      const double v = l < static_cast<int64_t>(c.aie.size()) ? c.aie[l] : kNaN;
      const double shown = std::isnan(v) ? kNaN : sm.signed_values ? v : std::max(v, 0.0);  // clipped for display only
      s.values.push_back(shown);
      if (std::isfinite(shown)) hi = std::max(hi, shown), lo = std::min(lo, shown);
    }
    std::string label = c.label.empty() ? c.name : c.label;
    if (c.n == 0) label += " (no samples)";
    s.row_labels.push_back(report::sanitize_utf8(label));
    s.row_bold.push_back(false);
  }
  s.cmap = colormap_name(sm.mediator);
  // Signed quantities (log-probabilities, KL, ...) span their own range.
  s.vmin = sm.signed_values ? lo : 0;
  s.vmax = std::isfinite(vmax) && vmax > 0 ? vmax : (hi > s.vmin ? hi : s.vmin + 1e-6);
  s.title = "Average indirect effect of " + average_what(sm.mediator) + " over " + std::to_string(sm.n_facts) +
            (sm.n_facts == 1 ? " fact" : " facts");
  s.subtitle = scheme_name(sm.scheme) + " categories \xC2\xB7 " + mean_mode_text(sm.per_fact_mean) + " \xC2\xB7 " +
               aie_formula_text(sm.aie_formula) + (sm.signed_values ? "" : " \xC2\xB7 colour clipped at 0");
  if (sm.quantity != "p(answer)") s.subtitle += " \xC2\xB7 on " + sm.quantity;
  s.xlabel = layer_axis_label(sm.mediator, sm.model, sm.window);
  s.cbar_label = "AIE";
  return s;
}

// ---------------------------------------------------------------- lines

struct LineLayout {
  double w = 0, h = 0;
  int ncols = 1, nrows = 1;
  double pw = 0, ph = 170;  // plot area of one panel
  double ylabel_w = 0, ytick_w = 0;
  double panel_w0 = 0, panel_w = 0, panel_h = 0;  // column 0 carries the y label
  double panels_y = 0, legend_y = 0;
  double ylo = 0, yhi = 1;
  Ticks yticks;
  std::string subtitle;
  // legend: entries with positions
  struct Entry {
    std::string name, label;
    Rgb colour;
    double x, y;
  };
  std::vector<Entry> legend;
};

constexpr double kPanelTitleSize = 10;
constexpr double kPanelGapX = 22, kPanelGapY = 16;
constexpr double kPanelTop = 34;     // title + subtitle above the plot area
constexpr double kPanelBottom = 36;  // ticks, tick labels, x label

std::string panel_title(const MediatorSummary& s) {
  const std::string w = std::to_string(s.window);
  if (s.mediator == "hidden") return "Single hidden state";
  if (s.mediator == "mlp") return "Run of " + w + " MLP layers";
  if (s.mediator == "attn") return "Run of " + w + " Attn layers";
  if (s.mediator == "hidden_attn_severed") return "Hidden state, Attn severed";
  if (s.mediator == "hidden_mlp_severed") return "Hidden state, MLP severed";
  if (s.mediator == "knockout_subject") return "Knockout: subject \xE2\x86\x92 last";
  if (s.mediator == "knockout_nonsubject") return "Knockout: non-subject \xE2\x86\x92 last";
  if (s.mediator == "knockout_last") return "Knockout: last \xE2\x86\x92 last";
  return report::sanitize_utf8(s.mediator);
}

std::string panel_subtitle(const MediatorSummary& s) {
  if (s.mediator.rfind("knockout_", 0) == 0)
    return std::to_string(s.n_facts) + (s.n_facts == 1 ? " fact" : " facts") +
           " \xC2\xB7 mean over facts of (p \xE2\x88\x92 p_clean) / p_clean";
  return std::to_string(s.n_facts) + (s.n_facts == 1 ? " fact" : " facts") + " \xC2\xB7 " + scheme_name(s.scheme) +
         " \xC2\xB7 " + (s.per_fact_mean ? "per-fact means" : "token-weighted") + " \xC2\xB7 " +
         aie_formula_text(s.aie_formula);
}

// The band rule, for the line plot's subtitle.
std::string band_text(BandRule b) {
  return b == BandRule::Rome ? "95% bands (ROME's): 1.96 \xC2\xB7 std of the scores / \xE2\x88\x9A(facts)"
                             : "95% bands (per-row): 1.96 \xC2\xB7 s / \xE2\x88\x9An of the per-row indirect effects";
}

std::string lines_title(const MediatorSummary& s) {
  if (s.mediator.rfind("knockout_", 0) == 0) return "Attention knockout: " + s.quantity;
  return "Average indirect effect on " + s.quantity;
}

int64_t layers_of(const MediatorSummary& s) {
  int64_t L = s.n_layers;
  for (const auto& c : s.categories) L = std::max<int64_t>(L, static_cast<int64_t>(c.aie.size()));
  return L;
}

double at(const std::vector<double>& v, size_t i) { return i < v.size() ? v[i] : kNaN; }

LineLayout layout_lines(const std::vector<MediatorSummary>& sums) {
  if (sums.empty()) throw Error("AIE line plot: no mediator summaries");
  const Measure m;
  LineLayout L;
  const int n = static_cast<int>(sums.size());
  L.ncols = std::min(n, 3);
  L.nrows = (n + L.ncols - 1) / L.ncols;

  // Shared y range over all finite aie +- ci95, including 0.
  double lo = 0, hi = 0;
  bool any = false;
  int64_t maxL = 1;
  for (const auto& s : sums) {
    maxL = std::max(maxL, layers_of(s));
    for (const auto& c : s.categories)
      for (size_t l = 0; l < c.aie.size(); ++l) {
        const double a = c.aie[l], e = std::isfinite(at(c.ci95, l)) ? at(c.ci95, l) : 0.0;
        if (!std::isfinite(a)) continue;
        lo = std::min(lo, a - e);
        hi = std::max(hi, a + e);
        any = true;
      }
  }
  if (!any || hi - lo < 1e-9) hi = lo + (any ? 0.01 : 1.0);
  const double pad = 0.05 * (hi - lo);
  L.ylo = lo < 0 ? lo - pad : 0.0;
  L.yhi = hi + pad;
  L.yticks = nice_ticks(L.ylo, L.yhi, 5);
  for (double v : L.yticks.values) L.ytick_w = std::max(L.ytick_w, m.width(L.yticks.label(v), kTickSize));
  L.ylabel_w = kAxisSize + 6;

  double title_w = 0;
  for (const auto& s : sums) {
    title_w = std::max(title_w, m.width(panel_title(s), kPanelTitleSize, true));
    title_w = std::max(title_w, m.width(panel_subtitle(s), kTickSize));
    title_w = std::max(title_w, m.width(layer_axis_label(s.mediator, s.model, s.window), kAxisSize));
  }
  L.pw = std::ceil(std::max({std::clamp(static_cast<double>(maxL) * 8.0, 240.0, 400.0), title_w + 4}));
  L.ph = 170;
  const double left = L.ytick_w + 3 + 4;
  L.panel_w = left + L.pw;
  L.panel_w0 = L.ylabel_w + left + L.pw;
  L.panel_h = kPanelTop + L.ph + kPanelBottom;

  L.panels_y = kMargin + kTitleSize + 4 + kSubtitleSize + 10;
  const double content_w = L.panel_w0 + (L.ncols - 1) * (L.panel_w + kPanelGapX);
  const std::string fig_title = lines_title(sums.front());
  L.subtitle = band_text(sums.front().band);
  L.w = std::ceil(std::max({content_w + 2 * kMargin, m.width(fig_title, kTitleSize, true) + 2 * kMargin,
                            m.width(L.subtitle, kSubtitleSize) + 2 * kMargin}));

  // Legend: union of categories in order of appearance, flowing in rows.
  std::vector<std::string> seen;
  for (const auto& s : sums)
    for (const auto& c : s.categories)
      if (std::find(seen.begin(), seen.end(), c.name) == seen.end() &&
          !(c.n == 0 && s.mediator.rfind("knockout_", 0) == 0)) {  // a knockout has only the last token
        seen.push_back(c.name);
        LineLayout::Entry e;
        e.name = c.name;
        e.label = report::sanitize_utf8(c.label.empty() ? c.name : c.label);
        e.colour = category_colour(c.name, seen.size() - 1);
        L.legend.push_back(e);
      }
  // Legend: a grid of equal columns, as many as fit (at least two).
  L.legend_y = L.panels_y + L.nrows * L.panel_h + (L.nrows - 1) * kPanelGapY + 8;
  const double row_h = 16, swatch = 22, gap = 18;
  double col_w = 0;
  for (const auto& e : L.legend) col_w = std::max(col_w, swatch + 5 + m.width(e.label, kLabelSize) + gap);
  const double x0 = kMargin + L.ylabel_w;
  const size_t want_cols = std::min<size_t>(L.legend.size(), 2);
  L.w = std::max(L.w, std::ceil(x0 + want_cols * col_w - gap + kMargin));
  const auto fit =
      std::max<size_t>(1, std::min<size_t>(L.legend.size(), static_cast<size_t>((L.w - kMargin - x0 + gap) / col_w)));
  // Balanced rows: 6 entries in 5 possible columns make 2 rows of 3.
  const size_t rows = L.legend.empty() ? 1 : (L.legend.size() + fit - 1) / fit;
  const size_t cols = L.legend.empty() ? 1 : (L.legend.size() + rows - 1) / rows;
  double y = L.legend_y + row_h / 2;
  for (size_t i = 0; i < L.legend.size(); ++i) {
    L.legend[i].x = x0 + static_cast<double>(i % cols) * col_w;
    L.legend[i].y = y + static_cast<double>(i / cols) * row_h;
  }
  if (!L.legend.empty()) y += static_cast<double>((L.legend.size() - 1) / cols) * row_h;
  L.h = std::ceil(y + row_h / 2 + kMargin);
  return L;
}

void draw_lines(cairo_t* cr, const std::vector<MediatorSummary>& sums, const LineLayout& L) {
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  text(cr, lines_title(sums.front()), kMargin, kMargin + kTitleSize, kTitleSize, true, 0.0, kText);
  text(cr, L.subtitle, kMargin, kMargin + kTitleSize + 4 + kSubtitleSize, kSubtitleSize, false, 0.0, kAxis);

  const double left = L.ytick_w + 3 + 4;
  auto ymap = [&](double v, double py) { return py + L.ph * (1.0 - (v - L.ylo) / (L.yhi - L.ylo)); };

  for (size_t i = 0; i < sums.size(); ++i) {
    const auto& s = sums[i];
    const int col = static_cast<int>(i) % L.ncols, row = static_cast<int>(i) / L.ncols;
    const double panel_x = kMargin + (col == 0 ? 0.0 : L.panel_w0 + kPanelGapX + (col - 1) * (L.panel_w + kPanelGapX));
    const double panel_y = L.panels_y + row * (L.panel_h + kPanelGapY);
    const double px = panel_x + (col == 0 ? L.ylabel_w : 0.0) + left;
    const double py = panel_y + kPanelTop;
    const int64_t nl = layers_of(s);
    auto xmap = [&](double l) { return px + (nl > 1 ? l / static_cast<double>(nl - 1) : 0.5) * L.pw; };

    text(cr, panel_title(s), px, panel_y + kPanelTitleSize, kPanelTitleSize, true, 0.0, kText);
    text(cr, panel_subtitle(s), px, panel_y + kPanelTitleSize + 4 + kTickSize, kTickSize, false, 0.0, kAxis);

    // Grid lines, zero line, frame.
    cairo_set_line_width(cr, 0.5);
    set_rgb(cr, {0.91, 0.91, 0.91});
    for (double v : L.yticks.values) {
      cairo_move_to(cr, px, ymap(v, py));
      cairo_line_to(cr, px + L.pw, ymap(v, py));
    }
    cairo_stroke(cr);
    if (L.ylo < 0 && L.yhi > 0) {
      const double dash[] = {3.0, 2.0};
      cairo_set_dash(cr, dash, 2, 0);
      set_rgb(cr, {0.55, 0.55, 0.55});
      cairo_set_line_width(cr, 0.7);
      cairo_move_to(cr, px, ymap(0, py));
      cairo_line_to(cr, px + L.pw, ymap(0, py));
      cairo_stroke(cr);
      cairo_set_dash(cr, nullptr, 0, 0);
    }

    // Bands and lines, clipped to the plot area; NaN breaks a line.
    cairo_save(cr);
    cairo_rectangle(cr, px, py, L.pw, L.ph);
    cairo_clip(cr);
    for (size_t ci = 0; ci < s.categories.size(); ++ci) {
      const auto& c = s.categories[ci];
      Rgb colour = category_colour(c.name, ci);
      for (const auto& e : L.legend)
        if (e.name == c.name) colour = e.colour;
      size_t l = 0;
      while (l < c.aie.size()) {
        if (!std::isfinite(c.aie[l])) {
          ++l;
          continue;
        }
        size_t end = l;
        while (end < c.aie.size() && std::isfinite(c.aie[end])) ++end;
        auto err = [&](size_t k) { return std::isfinite(at(c.ci95, k)) ? at(c.ci95, k) : 0.0; };
        if (end - l == 1) {
          set_rgb(cr, colour);
          cairo_arc(cr, xmap(static_cast<double>(l)), ymap(c.aie[l], py), 2.0, 0, 2 * M_PI);
          cairo_fill(cr);
        } else {
          for (size_t k = l; k < end; ++k) cairo_line_to(cr, xmap(static_cast<double>(k)), ymap(c.aie[k] + err(k), py));
          for (size_t k = end; k-- > l;) cairo_line_to(cr, xmap(static_cast<double>(k)), ymap(c.aie[k] - err(k), py));
          cairo_close_path(cr);
          set_rgb(cr, colour, 0.22);
          cairo_fill(cr);
          for (size_t k = l; k < end; ++k) cairo_line_to(cr, xmap(static_cast<double>(k)), ymap(c.aie[k], py));
          set_rgb(cr, colour);
          cairo_set_line_width(cr, 1.5);
          cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
          cairo_stroke(cr);
        }
        l = end;
      }
    }
    cairo_restore(cr);

    set_rgb(cr, kAxis);
    cairo_set_line_width(cr, 0.6);
    cairo_rectangle(cr, px, py, L.pw, L.ph);
    cairo_stroke(cr);

    // y ticks.
    for (double v : L.yticks.values) {
      const double y = ymap(v, py);
      set_rgb(cr, kAxis);
      cairo_move_to(cr, px - 3, y);
      cairo_line_to(cr, px, y);
      cairo_stroke(cr);
      text(cr, L.yticks.label(v), px - 5, centred_baseline(y, kTickSize), kTickSize, false, 1.0, kText);
    }
    if (col == 0)
      text_vertical(cr, sums.front().mediator.rfind("knockout_", 0) == 0 ? "relative change" : "AIE on " + sums.front().quantity,
                    panel_x + kAxisSize, py + L.ph / 2, kAxisSize, kText);

    // x ticks: every layer gets a mark, labels where they fit.
    const Measure m;
    const double spacing = nl > 1 ? L.pw / static_cast<double>(nl - 1) : L.pw;
    const int step = label_step(spacing, m.width(std::to_string(std::max<int64_t>(nl - 1, 0)), kTickSize));
    set_rgb(cr, kAxis);
    for (int64_t l = 0; l < nl; ++l) {
      cairo_move_to(cr, xmap(static_cast<double>(l)), py + L.ph);
      cairo_line_to(cr, xmap(static_cast<double>(l)), py + L.ph + (l % step == 0 ? 3.0 : 1.5));
    }
    cairo_stroke(cr);
    for (int64_t l = 0; l < nl; l += step)
      text(cr, std::to_string(l), xmap(static_cast<double>(l)), py + L.ph + 4 + kTickSize, kTickSize, false, 0.5,
           kText);
    text(cr, layer_axis_label(s.mediator, s.model, s.window), px + L.pw / 2, py + L.ph + 4 + kTickSize + 6 + kAxisSize,
         kAxisSize, false, 0.5, kText);
  }

  // Legend.
  for (const auto& e : L.legend) {
    set_rgb(cr, e.colour, 0.22);
    cairo_rectangle(cr, e.x, e.y - 4, 22, 8);
    cairo_fill(cr);
    set_rgb(cr, e.colour);
    cairo_set_line_width(cr, 1.5);
    cairo_move_to(cr, e.x, e.y);
    cairo_line_to(cr, e.x + 22, e.y);
    cairo_stroke(cr);
    text(cr, e.label, e.x + 27, centred_baseline(e.y, kLabelSize), kLabelSize, false, 0.0, kText);
  }
}

}  // namespace

bool plots_available() { return true; }

FigureSize fact_heatmap_size(const TraceRecord& r) {
  const HeatLayout L = layout_heat(fact_spec(r));
  return make_size(L.w, L.h);
}

FigureSize average_heatmap_size(const MediatorSummary& s) { return average_heatmap_size(s, kNaN); }

FigureSize average_heatmap_size(const MediatorSummary& s, double vmax) {
  const HeatLayout L = layout_heat(average_spec(s, vmax));
  return make_size(L.w, L.h);
}

FigureSize aie_lines_size(const std::vector<MediatorSummary>& summaries) {
  const LineLayout L = layout_lines(summaries);
  return make_size(L.w, L.h);
}

std::vector<std::string> plot_fact_heatmap(const TraceRecord& r, const std::string& stem,
                                           const std::vector<ImageFormat>& formats) {
  const HeatSpec spec = fact_spec(r);
  const HeatLayout L = layout_heat(spec);
  return render(stem, formats, L.w, L.h, [&](cairo_t* cr) { draw_heat(cr, spec, L); });
}

std::vector<std::string> plot_average_heatmap(const MediatorSummary& s, const std::string& stem,
                                              const std::vector<ImageFormat>& formats) {
  return plot_average_heatmap(s, stem, formats, kNaN);
}

std::vector<std::string> plot_average_heatmap(const MediatorSummary& s, const std::string& stem,
                                              const std::vector<ImageFormat>& formats, double vmax) {
  const HeatSpec spec = average_spec(s, vmax);
  const HeatLayout L = layout_heat(spec);
  return render(stem, formats, L.w, L.h, [&](cairo_t* cr) { draw_heat(cr, spec, L); });
}

std::vector<std::string> plot_aie_lines(const std::vector<MediatorSummary>& summaries, const std::string& stem,
                                        const std::vector<ImageFormat>& formats) {
  const LineLayout L = layout_lines(summaries);
  return render(stem, formats, L.w, L.h, [&](cairo_t* cr) { draw_lines(cr, summaries, L); });
}

#endif  // KT_HAVE_CAIRO

}  // namespace kt
