// Figures with cairo: per-fact heatmaps, averaged heatmaps, AIE line plots,
// and the self-contained HTML report. No model, no torch.
#pragma once
#include <string>
#include <vector>

#include "analysis/aggregate.h"

namespace kt {

enum class ImageFormat { Png, Pdf, Svg };

// Writes `<stem>.png/.pdf/.svg` for each format; returns the paths written.
// Colour maps as ROME: purple hidden, green mlp, red attn, and a distinct
// one for each severed mediator. Colour bar labelled p(answer).
std::vector<std::string> plot_fact_heatmap(const TraceRecord& r, const std::string& stem,
                                           const std::vector<ImageFormat>& formats);
// Categories x layers, colour = AIE (clipped at 0 for display).
std::vector<std::string> plot_average_heatmap(const MediatorSummary& s, const std::string& stem,
                                              const std::vector<ImageFormat>& formats);
// AIE per layer for each category with 95% bands, one panel per mediator.
std::vector<std::string> plot_aie_lines(const std::vector<MediatorSummary>& summaries, const std::string& stem,
                                        const std::vector<ImageFormat>& formats);

// report.html in `run_dir`: summary table + figures embedded (self-contained).
void write_html_report(const std::string& path, const std::string& title,
                       const std::vector<MediatorSummary>& summaries, const std::vector<std::string>& png_figures);

}  // namespace kt
