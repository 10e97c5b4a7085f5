// The self-contained HTML report: summary tables and the PNG figures as
// base64 data URIs. No scripts, no external resources; needs no cairo.
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <sstream>

#include "report/plots.h"
#include "report/text.h"
#include "util/error.h"
#include "util/stored_file.h"
#include "util/paths.h"

namespace kt {
namespace {

using report::format_fixed;
using report::html_escape;

struct Png {
  std::string bytes;
  uint32_t width = 0, height = 0;
};

Png read_png(const std::string& path) {
  Png p;
  p.bytes = read_text_file(path);
  static const char kMagic[] = "\x89PNG\r\n\x1a\n";
  if (p.bytes.size() < 24 || p.bytes.compare(0, 8, kMagic, 8) != 0 || p.bytes.compare(12, 4, "IHDR") != 0)
    throw Error(path + ": not a PNG file (the report embeds PNG figures only)");
  auto be32 = [&](size_t at) {
    uint32_t v = 0;
    for (size_t k = 0; k < 4; ++k) v = (v << 8) | static_cast<unsigned char>(p.bytes[at + k]);
    return v;
  };
  p.width = be32(16);
  p.height = be32(20);
  return p;
}

std::string mediator_title(const std::string& m) {
  if (m == "hidden") return "hidden state";
  if (m == "mlp") return "MLP (window)";
  if (m == "attn") return "Attn (window)";
  if (m == "hidden_attn_severed") return "hidden state, Attn severed";
  if (m == "hidden_mlp_severed") return "hidden state, MLP severed";
  return m;
}

std::string best_cell(double v, int64_t layer) {
  if (!std::isfinite(v) || layer < 0) return "<td class=\"num\">&ndash;</td><td class=\"num\">&ndash;</td>";
  return "<td class=\"num\">" + format_fixed(v, 4) + "</td><td class=\"num\">" + std::to_string(layer) + "</td>";
}

const char* kCss = R"css(
:root { color-scheme: light; }
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; color: #1a1a1a; background: #fff;
       margin: 0; line-height: 1.45; }
main { max-width: 1280px; margin: 0 auto; padding: 24px 28px 40px; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.25em; margin: 32px 0 10px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 1.05em; margin: 22px 0 8px; }
p.meta { color: #555; margin: 0 0 8px; }
table { border-collapse: collapse; margin: 6px 0 14px; font-size: 0.92em; }
th, td { border: 1px solid #d4d4d4; padding: 4px 9px; }
th { background: #f1f1f1; text-align: left; font-weight: 600; }
td { white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) td { background: #fafafa; }
figure { margin: 18px 0 26px; padding: 10px; border: 1px solid #e2e2e2; display: inline-block; max-width: 100%;
         box-sizing: border-box; vertical-align: top; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.88em; margin-top: 6px; font-family: "DejaVu Sans Mono", monospace; }
.notes { color: #444; font-size: 0.9em; }
.notes dt { font-weight: 600; margin-top: 6px; }
.notes dd { margin-left: 18px; }
)css";

}  // namespace

void write_html_report(const std::string& path, const std::string& title, const std::vector<MediatorSummary>& summaries,
                       const std::vector<std::string>& png_figures) {
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    << "<meta name=\"generator\" content=\"knowtrace\">\n"
    << "<title>" << html_escape(title) << "</title>\n<style>" << kCss << "</style>\n</head>\n<body>\n<main>\n";
  h << "<h1>" << html_escape(title) << "</h1>\n";
  h << "<p class=\"meta\">Causal tracing (Meng et al., 2022) &middot; " << summaries.size()
    << (summaries.size() == 1 ? " mediator" : " mediators") << " &middot; " << png_figures.size()
    << (png_figures.size() == 1 ? " figure" : " figures") << "</p>\n";

  // Summary: one row per mediator.
  h << "<h2 id=\"summary\">Summary</h2>\n";
  if (summaries.empty()) {
    h << "<p>No aggregated results.</p>\n";
  } else {
    h << "<table class=\"summary\">\n<thead><tr><th rowspan=\"2\">Mediator</th><th rowspan=\"2\">Score</th><th rowspan=\"2\">Categories</th>"
         "<th rowspan=\"2\">Means</th><th rowspan=\"2\">Facts</th><th rowspan=\"2\">Layers</th>"
         "<th rowspan=\"2\">Mean low score</th><th rowspan=\"2\">Mean high score</th><th rowspan=\"2\">ATE</th>"
         "<th colspan=\"2\">Best AIE, last subject token</th><th colspan=\"2\">Best AIE, last token</th></tr>\n"
         "<tr><th>AIE</th><th>layer</th><th>AIE</th><th>layer</th></tr></thead>\n<tbody>\n";
    for (const auto& s : summaries) {
      h << "<tr><td>" << html_escape(s.mediator) << "</td><td>" << html_escape(s.quantity) << "</td><td>"
        << scheme_name(s.scheme) << "</td><td>"
        << (s.per_fact_mean ? "per fact" : "token-weighted") << "</td><td class=\"num\">" << s.n_facts
        << "</td><td class=\"num\">" << s.n_layers << "</td><td class=\"num\">" << format_fixed(s.mean_low, 4)
        << "</td><td class=\"num\">" << format_fixed(s.mean_high, 4) << "</td><td class=\"num\">"
        << format_fixed(s.ate, 4) << "</td>" << best_cell(s.best_aie_last_subject, s.best_layer_last_subject)
        << best_cell(s.best_aie_last_token, s.best_layer_last_token) << "</tr>\n";
    }
    h << "</tbody>\n</table>\n";
  }

  h << "<h2 id=\"figures\">Figures</h2>\n";
  if (png_figures.empty()) h << "<p>No figures.</p>\n";
  for (const auto& fig : png_figures) {
    const Png png = read_png(fig);
    const std::string name = std::filesystem::path(fig).filename().string();
    // PNGs are drawn at kPngScale pixels per point: show them at their size
    // in points (1pt = 4/3 CSS px), so 9pt labels read as 9pt text.
    const auto w = static_cast<uint32_t>(std::lround(png.width / kPngScale * 4.0 / 3.0));
    const auto ht = static_cast<uint32_t>(std::lround(png.height / kPngScale * 4.0 / 3.0));
    h << "<figure><img src=\"data:image/png;base64," << report::base64_encode(png.bytes) << "\" width=\"" << w
      << "\" height=\"" << ht << "\" alt=\"" << html_escape(name) << "\"><figcaption>" << html_escape(name)
      << "</figcaption></figure>\n";
  }

  if (!summaries.empty()) {
    // Per mediator: every category's samples and its peak.
    h << "<h2 id=\"categories\">Categories</h2>\n";
    for (const auto& s : summaries) {
      h << "<h3>" << html_escape(s.mediator) << " &mdash; " << html_escape(mediator_title(s.mediator)) << "</h3>\n";
      h << "<table class=\"categories\">\n<thead><tr><th>Category</th><th>Samples</th><th>Facts</th>"
           "<th>Peak AIE</th><th>&plusmn; 95%</th><th>at layer</th></tr></thead>\n<tbody>\n";
      for (const auto& c : s.categories) {
        int64_t best = -1;
        for (size_t l = 0; l < c.aie.size(); ++l)
          if (std::isfinite(c.aie[l]) && (best < 0 || c.aie[l] > c.aie[static_cast<size_t>(best)]))
            best = static_cast<int64_t>(l);
        h << "<tr><td>" << html_escape(c.label.empty() ? c.name : c.label) << "</td><td class=\"num\">" << c.n
          << "</td><td class=\"num\">" << c.n_facts << "</td>";
        if (best < 0) {
          h << "<td class=\"num\">&ndash;</td><td class=\"num\">&ndash;</td><td class=\"num\">&ndash;</td>";
        } else {
          const auto b = static_cast<size_t>(best);
          h << "<td class=\"num\">" << format_fixed(c.aie[b], 4) << "</td><td class=\"num\">"
            << format_fixed(b < c.ci95.size() ? c.ci95[b] : NAN, 4) << "</td><td class=\"num\">" << best << "</td>";
        }
        h << "</tr>\n";
      }
      h << "</tbody>\n</table>\n";
    }
  }

  const bool rome_aie = summaries.empty() || summaries.front().aie_formula == AieFormula::Rome;
  const bool rome_band = summaries.empty() || summaries.front().band == BandRule::Rome;
  h << "<h2 id=\"notes\">Notes</h2>\n<dl class=\"notes\">\n"
       "<dt>Indirect effect</dt><dd>p(answer) with one site restored to its clean value, minus the low score "
       "(p(answer) with the subject corrupted). The samples of a category are every token of the category "
       "(token-weighted, as ROME) or every fact's mean over its tokens (per fact). "
    << (rome_aie ? "AIE (ROME's notebook): the mean score of the samples minus the mean low score of the facts."
                 : "AIE (per-row): the mean over the samples of the score minus the low score of the sample's own fact.")
    << "</dd>\n<dt>ATE</dt><dd>Average total effect: mean over facts of high score minus low score.</dd>\n"
    << (rome_band ? "<dt>95% band</dt><dd>ROME's: 1.96 &middot; &sigma; / &radic;N, with &sigma; the population standard "
                    "deviation of the samples' scores and N the number of facts.</dd>\n"
                  : "<dt>95% band</dt><dd>Per-row: 1.96 &middot; s / &radic;n, with s the sample standard deviation of "
                    "the per-sample indirect effects and n the number of samples.</dd>\n")
    << "<dt>Facts</dt><dd>Only facts whose stored correct_prediction holds are averaged, as ROME's notebook does.</dd>\n"
       "<dt>&ndash;</dt><dd>A category without samples (e.g. middle subject tokens when every subject is one "
       "token).</dd>\n</dl>\n";
  h << "</main>\n</body>\n</html>\n";
  write_file_atomic(path, h.str());
}

}  // namespace kt
