// Figures with cairo: per-fact heatmaps, averaged heatmaps, AIE line plots,
// and the self-contained HTML report. No model, no torch.
#pragma once
#include <string>
#include <vector>

#include "analysis/aggregate.h"

namespace kt {

enum class ImageFormat { Png, Pdf, Svg };
std::string image_format_extension(ImageFormat f);        // "png", "pdf", "svg"
ImageFormat parse_image_format(const std::string& name);  // png|pdf|svg (any case); kt::Error otherwise

// False when knowtrace was built without cairo: every plot_* and *_size
// function then throws kt::Error. (write_html_report needs no cairo.)
bool plots_available();

// Figure sizes as the plot_* functions lay them out. PDF and SVG pages are
// width_pt x height_pt points; PNGs are drawn at kPngScale pixels per point,
// i.e. png_width x png_height pixels. Labels are measured with the same
// fonts, so the numbers are exactly those of the files written.
constexpr double kPngScale = 2.0;
struct FigureSize {
  double width_pt = 0, height_pt = 0;
  int png_width = 0, png_height = 0;
};
FigureSize fact_heatmap_size(const TraceRecord& r);
FigureSize average_heatmap_size(const MediatorSummary& s);
FigureSize average_heatmap_size(const MediatorSummary& s, double vmax);  // for the vmax overload
FigureSize aie_lines_size(const std::vector<MediatorSummary>& summaries);

// Colour map of a mediator's figures: "Purples" (hidden), "Greens" (mlp),
// "Reds" (attn), "Blues" (hidden_attn_severed), "Oranges"
// (hidden_mlp_severed), "Greys" (anything else).
std::string colormap_name(const std::string& mediator);

// Writes `<stem>.png/.pdf/.svg` for each format; returns the paths written.
// Colour maps as ROME: purple hidden, green mlp, red attn, and a distinct
// one for each severed mediator. Colour bar labelled p(answer).
std::vector<std::string> plot_fact_heatmap(const TraceRecord& r, const std::string& stem,
                                           const std::vector<ImageFormat>& formats);
// Categories x layers, colour = AIE (clipped at 0 for display). The colour
// scale runs from 0 to the largest AIE of `s`; the overload takes the top of
// the scale (ROME scales mlp / attn like hidden) — NaN or <= 0 means auto.
// Categories without samples are drawn grey and labelled "(no samples)".
std::vector<std::string> plot_average_heatmap(const MediatorSummary& s, const std::string& stem,
                                              const std::vector<ImageFormat>& formats);
std::vector<std::string> plot_average_heatmap(const MediatorSummary& s, const std::string& stem,
                                              const std::vector<ImageFormat>& formats, double vmax);
// AIE per layer for each category with 95% bands, one panel per mediator,
// all panels in one figure (up to 3 per row, shared y range, one legend).
std::vector<std::string> plot_aie_lines(const std::vector<MediatorSummary>& summaries, const std::string& stem,
                                        const std::vector<ImageFormat>& formats);

// report.html in `run_dir`: summary table + figures embedded (self-contained).
// `png_figures` are paths of PNG files (kt::Error if missing or not PNG);
// each is embedded as a base64 data URI with its file name as caption.
// Written atomically.
void write_html_report(const std::string& path, const std::string& title,
                       const std::vector<MediatorSummary>& summaries, const std::vector<std::string>& png_figures);

}  // namespace kt
