// links: kt_report
// Figures (per-fact heatmaps, averaged heatmaps, AIE line plots) drawn for
// synthetic traces with a ROME-like shape, read back and measured; the HTML
// report; and, where Debian's chromium is installed, the report rendered by
// headless Chromium. Figures land in <build>/test_report_out for a look.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "analysis/aggregate.h"
#include "report/plots.h"
#include "report/text.h"
#include "util/error.h"
#include "util/stored_file.h"
#include "util/paths.h"

#ifdef KT_HAVE_CAIRO
#include <cairo.h>
#endif

namespace fs = std::filesystem;

namespace {

const std::vector<kt::ImageFormat> kAll = {kt::ImageFormat::Png, kt::ImageFormat::Pdf, kt::ImageFormat::Svg};
const std::vector<std::string> kMediators = {"hidden", "hidden_attn_severed", "hidden_mlp_severed", "mlp", "attn"};

std::string out_dir(const std::string& name) {
  const fs::path d = fs::path(KT_BINARY_DIR) / "test_report_out" / name;
  fs::create_directories(d);
  return d.string();
}

// Deterministic noise in [-1, 1).
struct Lcg {
  uint64_t s;
  double next() {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>((s >> 11) & ((1ULL << 53) - 1)) / static_cast<double>(1ULL << 52) - 1.0;
  }
};

// A ROME-shaped trace: restoring the last subject token matters in early to
// middle layers (MLP: a middle-layer peak), the last token in late layers,
// other subject tokens a little, tokens before the subject not at all.
kt::TraceRecord synthetic(const std::string& id, const std::string& mediator, std::vector<std::string> tokens,
                          int64_t b, int64_t e, int64_t layers, uint64_t seed) {
  kt::TraceRecord r;
  r.fact_id = id;
  r.mediator = mediator;
  r.tokens = std::move(tokens);
  r.n_tokens = static_cast<int64_t>(r.tokens.size());
  r.n_layers = layers;
  r.subject_begin = b;
  r.subject_end = e;
  r.model = "SmolLM2-135M";
  r.window = 10;
  for (const auto& t : r.tokens) r.prompt += t;
  r.answer = " Paris";
  Lcg rng{seed};
  r.high_score = 0.55 + 0.3 * (rng.next() + 1) / 2;
  r.low_score = 0.02 + 0.05 * (rng.next() + 1) / 2;
  const double gain = r.high_score - r.low_score;
  const double L = static_cast<double>(layers);
  const bool window = mediator == "mlp" || mediator == "attn";
  const bool severed = mediator.find("severed") != std::string::npos;
  for (int64_t t = 0; t < r.n_tokens; ++t) {
    for (int64_t l = 0; l < layers; ++l) {
      const double x = static_cast<double>(l) / L;
      double effect = 0;
      if (t < b) {
        effect = 0;
      } else if (t == e - 1) {
        if (mediator == "mlp")
          effect = 0.75 * std::exp(-std::pow((x - 0.3) / 0.15, 2));
        else if (mediator == "attn")
          effect = 0.08 * std::exp(-std::pow((x - 0.5) / 0.2, 2));
        else
          effect = 0.85 / (1 + std::exp((x - (severed ? 0.3 : 0.45)) / 0.06));
      } else if (t < e) {
        effect = (window ? 0.2 : 0.35) / (1 + std::exp((x - 0.25) / 0.05));
      } else if (t == r.n_tokens - 1) {
        effect = mediator == "mlp" ? 0.1 * x : (mediator == "attn" ? 0.6 : 0.95) / (1 + std::exp(-(x - 0.6) / 0.06));
      } else {
        effect = 0.04 / (1 + std::exp((x - 0.5) / 0.1));
      }
      const double noise = t < b ? 0.0 : 0.02 * rng.next();
      r.scores.push_back(std::clamp(r.low_score + gain * effect + noise, 0.0, 1.0));
    }
  }
  return r;
}

kt::TraceRecord eiffel(const std::string& mediator = "hidden", int64_t layers = 30) {
  return synthetic("eiffel", mediator,
                   {"<s>", "The", " E", "iff", "el", " Tower", " is", " located", " in", " the", " city", " of"}, 1, 6,
                   layers, 7);
}

// Many facts with varied subject lengths and positions.
std::vector<kt::TraceRecord> many_facts(int64_t layers, int n_facts, bool with_edge_cases) {
  std::vector<kt::TraceRecord> out;
  for (int f = 0; f < n_facts; ++f) {
    const int64_t pre = f % 3, subj = 1 + f % 4, post = with_edge_cases && f % 5 == 0 ? 1 : 2 + f % 4;
    std::vector<std::string> toks;
    for (int64_t i = 0; i < pre + subj + post; ++i) toks.push_back(" w" + std::to_string(i));
    for (const auto& m : kMediators)
      out.push_back(synthetic("f" + std::to_string(f), m, toks, pre, pre + subj, layers, 1000 + f));
  }
  return out;
}

std::vector<kt::MediatorSummary> summaries_of(const std::vector<kt::TraceRecord>& recs, bool per_fact = false,
                                              kt::PositionScheme scheme = kt::PositionScheme::Rome6) {
  std::vector<kt::MediatorSummary> out;
  for (const auto& m : kMediators) out.push_back(kt::aggregate(recs, m, scheme, per_fact));
  return out;
}

// A summary whose middle-subject and further-token categories have no
// samples (one-token subjects ending right before the last token).
kt::MediatorSummary nan_summary(const std::string& mediator) {
  std::vector<kt::TraceRecord> recs;
  for (int f = 0; f < 6; ++f)
    recs.push_back(synthetic("n" + std::to_string(f), mediator, {"<s>", " Paris", " is"}, 1, 2, 12, 50 + f));
  return kt::aggregate(recs, mediator, kt::PositionScheme::Rome6);
}

std::string head(const std::string& path, size_t n) {
  std::ifstream in(path, std::ios::binary);
  std::string s(n, '\0');
  in.read(&s[0], static_cast<std::streamsize>(n));
  s.resize(static_cast<size_t>(in.gcount()));
  return s;
}

std::string tail(const std::string& path, size_t n) {
  const std::string all = kt::read_text_file(path);
  return all.substr(all.size() > n ? all.size() - n : 0);
}

bool is_svg(const std::string& path) {
  const std::string h = head(path, 64);
  return h.rfind("<?xml", 0) == 0 || h.rfind("<svg", 0) == 0;
}

struct PngInfo {
  int width = 0, height = 0;
  size_t coloured = 0;  // pixels with a clearly saturated colour
  size_t non_white = 0;
};

PngInfo read_png(const std::string& path) {
  PngInfo info;
#ifdef KT_HAVE_CAIRO
  cairo_surface_t* s = cairo_image_surface_create_from_png(path.c_str());
  EXPECT_EQ(cairo_surface_status(s), CAIRO_STATUS_SUCCESS) << path;
  if (cairo_surface_status(s) == CAIRO_STATUS_SUCCESS) {
    info.width = cairo_image_surface_get_width(s);
    info.height = cairo_image_surface_get_height(s);
    cairo_surface_flush(s);
    const unsigned char* data = cairo_image_surface_get_data(s);
    const int stride = cairo_image_surface_get_stride(s);
    const cairo_format_t fmt = cairo_image_surface_get_format(s);
    for (int y = 0; y < info.height; ++y)
      for (int x = 0; x < info.width; ++x) {
        uint32_t px;
        std::memcpy(&px, data + y * stride + 4 * x, 4);
        int a = fmt == CAIRO_FORMAT_ARGB32 ? static_cast<int>(px >> 24) : 255;
        const int r = (px >> 16) & 255, g = (px >> 8) & 255, b = px & 255;
        if (a == 0) continue;
        const int mx = std::max({r, g, b}), mn = std::min({r, g, b});
        if (mx - mn > 80) ++info.coloured;
        if (mn < 240) ++info.non_white;
      }
  }
  cairo_surface_destroy(s);
#else
  (void)path;
#endif
  return info;
}

// Checks the three files of one figure and the PNG's size.
void check_figure(const std::vector<std::string>& paths, const std::string& stem, const kt::FigureSize& size) {
  ASSERT_EQ(paths.size(), 3u);
  EXPECT_EQ(paths[0], stem + ".png");
  EXPECT_EQ(paths[1], stem + ".pdf");
  EXPECT_EQ(paths[2], stem + ".svg");
  for (const auto& p : paths) {
    ASSERT_TRUE(fs::exists(p)) << p;
    EXPECT_GT(fs::file_size(p), 200u) << p;
  }
  const PngInfo png = read_png(paths[0]);
  EXPECT_EQ(png.width, size.png_width) << stem;
  EXPECT_EQ(png.height, size.png_height) << stem;
  EXPECT_EQ(size.png_width, static_cast<int>(std::lround(size.width_pt * kt::kPngScale)));
  EXPECT_GT(png.coloured, 1000u) << stem << ": the figure has (almost) no coloured pixels";
  EXPECT_EQ(head(paths[1], 4), "%PDF");
  EXPECT_NE(tail(paths[1], 16).find("%%EOF"), std::string::npos);  // the surface was finished
  EXPECT_TRUE(is_svg(paths[2])) << head(paths[2], 40);
  EXPECT_NE(tail(paths[2], 16).find("</svg>"), std::string::npos);
  // Nothing temporary left beside the figures.
  for (const auto& entry : fs::directory_iterator(fs::path(stem).parent_path()))
    EXPECT_EQ(entry.path().string().find(".tmp."), std::string::npos) << entry.path();
}

// Runs a shell command; returns its exit status.
int run(const std::string& cmd) {
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string find_chromium() {
  if (const char* env = std::getenv("KT_CHROMIUM")) return env;
  for (const char* name : {"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"})
    if (run(std::string("command -v ") + name + " >/dev/null 2>&1") == 0) return name;
  return "";
}

}  // namespace

TEST(ReportText, Base64) {
  using kt::report::base64_encode;
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("foob"), "Zm9vYg==");
  EXPECT_EQ(base64_encode("fooba"), "Zm9vYmE=");
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64_encode(std::string("\x00\xff\xfe\x80", 4)), "AP/+gA==");
}

TEST(ReportText, TokensShownSafely) {
  using kt::report::display_token;
  EXPECT_EQ(display_token(" Paris"), " Paris");
  EXPECT_EQ(display_token("\n"), "\\n");
  EXPECT_EQ(display_token("\n\n"), "\\n\\n");
  EXPECT_EQ(display_token("\t x"), "\\t x");
  EXPECT_EQ(display_token(" "), "\xE2\x90\xA3");
  EXPECT_EQ(display_token("  "), "\xE2\x90\xA3\xE2\x90\xA3");
  EXPECT_EQ(display_token(""), "\xE2\x88\x85");
  EXPECT_EQ(display_token("\x01"), "\\x01");
  EXPECT_EQ(display_token("北京"), "北京");
  EXPECT_EQ(display_token(" Ünï"), " Ünï");
  // A multi-byte character split across byte-level tokens.
  EXPECT_EQ(display_token("\xE5\x8C"), "\\xE5\\x8C");
  EXPECT_EQ(display_token("a\xC0\xAF"), "a\\xC0\\xAF");         // overlong '/'
  EXPECT_EQ(display_token("\xED\xA0\x80"), "\\xED\\xA0\\x80");  // surrogate
  EXPECT_EQ(kt::report::sanitize_utf8("ok \xF0\x9F\x98\x80"), "ok \xF0\x9F\x98\x80");
  EXPECT_EQ(kt::report::html_escape("<a href=\"x\">&'</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
  EXPECT_EQ(kt::report::ellipsize("abcdef", 4), "abc\xE2\x80\xA6");
  EXPECT_EQ(kt::report::ellipsize("abc", 4), "abc");
  EXPECT_EQ(kt::report::ellipsize("北京北京", 3), "北京\xE2\x80\xA6");
  EXPECT_EQ(kt::report::format_fixed(NAN, 3), "\xE2\x80\x93");
  EXPECT_EQ(kt::report::format_fixed(0.12345, 3), "0.123");
}

TEST(Report, FormatsAndColourMaps) {
  EXPECT_EQ(kt::parse_image_format("PNG"), kt::ImageFormat::Png);
  EXPECT_EQ(kt::parse_image_format("pdf"), kt::ImageFormat::Pdf);
  EXPECT_EQ(kt::parse_image_format("svg"), kt::ImageFormat::Svg);
  EXPECT_THROW(kt::parse_image_format("jpeg"), kt::Error);
  EXPECT_EQ(kt::image_format_extension(kt::ImageFormat::Svg), "svg");
  EXPECT_EQ(kt::colormap_name("hidden"), "Purples");
  EXPECT_EQ(kt::colormap_name("mlp"), "Greens");
  EXPECT_EQ(kt::colormap_name("attn"), "Reds");
  EXPECT_EQ(kt::colormap_name("hidden_attn_severed"), "Blues");
  EXPECT_EQ(kt::colormap_name("hidden_mlp_severed"), "Oranges");
  EXPECT_EQ(kt::colormap_name("other"), "Greys");
}

TEST(Report, WithoutCairoEveryPlotThrows) {
  if (kt::plots_available()) GTEST_SKIP() << "built with cairo";
  EXPECT_THROW(kt::plot_fact_heatmap(eiffel(), out_dir("none") + "/x", kAll), kt::Error);
  EXPECT_THROW(kt::fact_heatmap_size(eiffel()), kt::Error);
}

TEST(Report, FactHeatmapEveryMediator) {
  if (!kt::plots_available()) GTEST_SKIP() << "built without cairo";
  const std::string dir = out_dir("fact");
  for (const auto& m : kMediators) {
    const auto r = eiffel(m);
    const std::string stem = dir + "/eiffel_" + m;
    const auto paths = kt::plot_fact_heatmap(r, stem, kAll);
    check_figure(paths, stem, kt::fact_heatmap_size(r));
  }
}

TEST(Report, FactHeatmapDenseAndAwkwardTokens) {
  if (!kt::plots_available()) GTEST_SKIP() << "built without cairo";
  // 40 layers x 25 tokens, with UTF-8, whitespace, newlines, a split
  // multi-byte character, an empty token and a very long token.
  std::vector<std::string> toks = {"<|begin_of_text|>", "\n", " Ünïcödé", " 北京", "\xE5\x8C", "  ", "\t", ""};
  toks.push_back(" a-very-long-token-that-goes-on-and-on-and-on-and-on-and-on-and-on");
  while (toks.size() < 25) toks.push_back(" tok" + std::to_string(toks.size()));
  auto r = synthetic("dense", "hidden", toks, 2, 6, 40, 3);
  r.answer = " 北京";
  r.model = "Llama-3.2-1B";
  const std::string dir = out_dir("fact_dense");
  const std::string stem = dir + "/dense_40x25";
  check_figure(kt::plot_fact_heatmap(r, stem, kAll), stem, kt::fact_heatmap_size(r));
  const auto size = kt::fact_heatmap_size(r);
  EXPECT_LT(size.width_pt, 1100);  // the long token is shortened
  // NaN cells (e.g. an unfinished trace) are drawn grey, not as errors.
  r.scores[5] = NAN;
  r.scores[100] = NAN;
  const std::string stem2 = dir + "/with_nan";
  check_figure(kt::plot_fact_heatmap(r, stem2, kAll), stem2, kt::fact_heatmap_size(r));
  // Tiny: one token, one layer, subject = the whole prompt.
  auto tiny = synthetic("tiny", "mlp", {"Paris"}, 0, 1, 1, 9);
  const std::string stem3 = dir + "/tiny";
  const auto tiny_paths = kt::plot_fact_heatmap(tiny, stem3, kAll);
  EXPECT_EQ(read_png(tiny_paths[0]).width, kt::fact_heatmap_size(tiny).png_width);
  // Flat scores (max == low_score) do not divide by zero.
  auto flat = eiffel();
  for (auto& v : flat.scores) v = flat.low_score;
  const std::string stem4 = dir + "/flat";
  const auto flat_paths = kt::plot_fact_heatmap(flat, stem4, {kt::ImageFormat::Png});
  ASSERT_EQ(flat_paths.size(), 1u);
  EXPECT_EQ(read_png(flat_paths[0]).height, kt::fact_heatmap_size(flat).png_height);
}

TEST(Report, FactHeatmapSizeGrowsWithCounts) {
  if (!kt::plots_available()) GTEST_SKIP() << "built without cairo";
  const auto small = kt::fact_heatmap_size(eiffel("hidden", 12));
  const auto big = kt::fact_heatmap_size(eiffel("hidden", 48));
  EXPECT_GT(big.width_pt, small.width_pt);
  auto longer = eiffel();
  longer.tokens.insert(longer.tokens.end(), {" and", " more", " words"});
  longer.n_tokens += 3;
  longer.scores.resize(static_cast<size_t>(longer.n_tokens * longer.n_layers), longer.low_score);
  EXPECT_GT(kt::fact_heatmap_size(longer).height_pt, kt::fact_heatmap_size(eiffel()).height_pt);
}

TEST(Report, BadInputThrows) {
  if (!kt::plots_available()) GTEST_SKIP() << "built without cairo";
  auto r = eiffel();
  r.scores.pop_back();
  EXPECT_THROW(kt::plot_fact_heatmap(r, out_dir("bad") + "/x", kAll), kt::Error);
  EXPECT_THROW(kt::plot_fact_heatmap(eiffel(), out_dir("bad") + "/x", {}), kt::Error);
  EXPECT_THROW(kt::plot_aie_lines({}, out_dir("bad") + "/x", kAll), kt::Error);
  EXPECT_THROW(kt::plot_average_heatmap(kt::MediatorSummary{}, out_dir("bad") + "/x", kAll), kt::Error);
}

TEST(Report, AverageHeatmaps) {
  if (!kt::plots_available()) GTEST_SKIP() << "built without cairo";
  const std::string dir = out_dir("average");
  const auto sums = summaries_of(many_facts(30, 40, true));
  for (const auto& s : sums) {
    const std::string stem = dir + "/avg_" + s.mediator;
    check_figure(kt::plot_average_heatmap(s, stem, kAll), stem, kt::average_heatmap_size(s));
  }
  // A shared scale (ROME scales mlp / attn like hidden).
  const std::string stem = dir + "/avg_attn_shared";
  check_figure(kt::plot_average_heatmap(sums[4], stem, kAll, 0.5), stem, kt::average_heatmap_size(sums[4], 0.5));
  // seed4 and per-fact means.
  const auto seed = kt::aggregate(many_facts(30, 10, false), "hidden", kt::PositionScheme::Seed4, true);
  const std::string stem_seed = dir + "/avg_seed4";
  check_figure(kt::plot_average_heatmap(seed, stem_seed, kAll), stem_seed, kt::average_heatmap_size(seed));
  // Categories without samples.
  const auto nan = nan_summary("hidden");
  ASSERT_EQ(nan.categories[1].n, 0);
  ASSERT_EQ(nan.categories[4].n, 0);
  const std::string stem_nan = dir + "/avg_nan";
  check_figure(kt::plot_average_heatmap(nan, stem_nan, kAll), stem_nan, kt::average_heatmap_size(nan));
}

TEST(Report, AieLines) {
  if (!kt::plots_available()) GTEST_SKIP() << "built without cairo";
  const std::string dir = out_dir("lines");
  const auto sums = summaries_of(many_facts(30, 40, true));
  const std::string stem = dir + "/lines_all";
  check_figure(kt::plot_aie_lines(sums, stem, kAll), stem, kt::aie_lines_size(sums));
  const std::vector<kt::MediatorSummary> three = {sums[0], sums[3], sums[4]};
  const std::string stem3 = dir + "/lines_rome3";
  check_figure(kt::plot_aie_lines(three, stem3, kAll), stem3, kt::aie_lines_size(three));
  const std::vector<kt::MediatorSummary> one = {sums[0]};
  const std::string stem1 = dir + "/lines_one";
  check_figure(kt::plot_aie_lines(one, stem1, kAll), stem1, kt::aie_lines_size(one));
  EXPECT_GT(kt::aie_lines_size(sums).height_pt, kt::aie_lines_size(three).height_pt);  // two rows of panels
  // NaN categories and 80 layers.
  const std::vector<kt::MediatorSummary> nan = {nan_summary("hidden"), nan_summary("mlp")};
  const std::string stem_nan = dir + "/lines_nan";
  check_figure(kt::plot_aie_lines(nan, stem_nan, kAll), stem_nan, kt::aie_lines_size(nan));
  const auto deep = summaries_of(many_facts(80, 8, false), false, kt::PositionScheme::Seed4);
  const std::string stem_deep = dir + "/lines_deep";
  check_figure(kt::plot_aie_lines(deep, stem_deep, kAll), stem_deep, kt::aie_lines_size(deep));
}

namespace {

// Writes the figures of a small run and its report; returns the report path.
std::string make_report(const std::string& dir, std::vector<std::string>* pngs,
                        std::vector<kt::MediatorSummary>* sums_out) {
  auto sums = summaries_of(many_facts(30, 24, true));
  sums.push_back(nan_summary("attn"));
  sums.back().mediator = "attn_nan";
  for (const auto& s : sums) {
    if (s.mediator == "attn_nan") continue;
    pngs->push_back(kt::plot_average_heatmap(s, dir + "/avg_" + s.mediator, {kt::ImageFormat::Png})[0]);
  }
  pngs->push_back(kt::plot_aie_lines(sums, dir + "/lines", {kt::ImageFormat::Png})[0]);
  pngs->push_back(kt::plot_fact_heatmap(eiffel(), dir + "/fact_eiffel", {kt::ImageFormat::Png})[0]);
  const std::string path = dir + "/report.html";
  kt::write_html_report(path, "knowtrace <test> & report", sums, *pngs);
  *sums_out = sums;
  return path;
}

}  // namespace

TEST(Report, HtmlSelfContained) {
  if (!kt::plots_available()) GTEST_SKIP() << "built without cairo";
  const std::string dir = out_dir("html");
  std::vector<std::string> pngs;
  std::vector<kt::MediatorSummary> sums;
  const std::string path = make_report(dir, &pngs, &sums);
  const std::string html = kt::read_text_file(path);
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(html.find("<title>knowtrace &lt;test&gt; &amp; report</title>"), std::string::npos);
  // Every figure embedded byte for byte.
  for (const auto& p : pngs) {
    const std::string b64 = kt::report::base64_encode(kt::read_text_file(p));
    EXPECT_NE(html.find("src=\"data:image/png;base64," + b64 + "\""), std::string::npos) << p;
    EXPECT_NE(html.find(fs::path(p).filename().string()), std::string::npos);
  }
  size_t imgs = 0;
  for (size_t at = html.find("<img "); at != std::string::npos; at = html.find("<img ", at + 1)) ++imgs;
  EXPECT_EQ(imgs, pngs.size());
  // The summary table: one row per mediator with its numbers.
  EXPECT_NE(html.find("<table class=\"summary\">"), std::string::npos);
  for (const auto& s : sums) {
    EXPECT_NE(html.find("<tr><td>" + s.mediator + "</td>"), std::string::npos) << s.mediator;
    EXPECT_NE(html.find(kt::report::format_fixed(s.ate, 4)), std::string::npos);
  }
  EXPECT_NE(html.find("Best AIE, last subject token"), std::string::npos);
  EXPECT_NE(html.find("Best AIE, last token"), std::string::npos);
  EXPECT_NE(html.find("Middle subject tokens"), std::string::npos);
  // No external resources.
  for (const std::string bad : {"http://", "https://", "<link", "<script", "src=\"file", "@import"})
    EXPECT_EQ(html.find(bad), std::string::npos) << bad;

  // Errors: a missing figure, a file that is not a PNG.
  EXPECT_THROW(kt::write_html_report(dir + "/bad.html", "x", sums, {dir + "/missing.png"}), kt::Error);
  kt::write_file_atomic(dir + "/not_a_png.png", "%PDF-1.5 nothing");
  EXPECT_THROW(kt::write_html_report(dir + "/bad.html", "x", sums, {dir + "/not_a_png.png"}), kt::Error);
  EXPECT_FALSE(fs::exists(dir + "/bad.html"));
  // No summaries, no figures: still a valid page.
  kt::write_html_report(dir + "/empty.html", "empty", {}, {});
  EXPECT_NE(kt::read_text_file(dir + "/empty.html").find("No aggregated results"), std::string::npos);
}

// DESIGN.md section 1: the report renders its figures in headless Chromium.
// Needs Debian's `chromium`; skipped where it is not installed (set
// KT_CHROMIUM to use another binary).
TEST(Report, ChromiumRendersReport) {
  if (!kt::plots_available()) GTEST_SKIP() << "built without cairo";
  const std::string chromium = find_chromium();
  if (chromium.empty()) GTEST_SKIP() << "chromium not installed (apt-get install chromium)";
  const std::string dir = out_dir("chromium");
  std::vector<std::string> pngs;
  std::vector<kt::MediatorSummary> sums;
  const std::string report = fs::absolute(make_report(dir, &pngs, &sums)).string();
  kt::write_html_report(dir + "/no_figures.html", "knowtrace", sums, {});

  auto shoot = [&](const std::string& html, const std::string& shot) {
    fs::remove(shot);
    const std::string cmd = "timeout 120 " + chromium +
                            " --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars"
                            " --no-first-run --no-default-browser-check --run-all-compositor-stages-before-draw "
                            "--virtual-time-budget=10000 --user-data-dir=" +
                            dir + "/profile --window-size=1400,3200 --screenshot=" + shot + " file://" + html + " >" +
                            dir + "/chromium.log 2>&1";
    return run(cmd);
  };
  const std::string shot = dir + "/report.png";
  ASSERT_EQ(shoot(report, shot), 0) << kt::read_text_file(dir + "/chromium.log");
  ASSERT_TRUE(fs::exists(shot)) << kt::read_text_file(dir + "/chromium.log");
  const PngInfo with = read_png(shot);
  EXPECT_EQ(with.width, 1400);
  EXPECT_GT(with.non_white, 10000u) << "blank screenshot";

  const std::string control = dir + "/no_figures.png";
  ASSERT_EQ(shoot(fs::absolute(dir + "/no_figures.html").string(), control), 0);
  const PngInfo without = read_png(control);
  EXPECT_GT(without.non_white, 1000u) << "the tables did not render";
  // The figures' colours (heatmap ramps, line colours) appear only when the
  // embedded images decoded and rendered.
  EXPECT_GT(with.coloured, 20000u);
  EXPECT_LT(without.coloured, 2000u);
  fs::remove_all(dir + "/profile");
}
