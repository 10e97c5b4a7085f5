#include "trace/noise.h"

#include <cstdlib>

#include "model/model.h"
#include "util/error.h"
#include "util/numpy_random.h"

namespace kt {

namespace {
bool parse_positive(const std::string& s, double* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !(v >= 0) || !std::isfinite(v)) return false;
  *out = v;
  return true;
}
}  // namespace

NoiseSpec parse_noise(const std::string& text, uint32_t seed, bool replace) {
  NoiseSpec n;
  n.seed = seed;
  n.replace = replace;
  n.text = text;
  double v = 0;
  // s0 and u0 would be no noise at all under another name: as in the YAML
  // config, k and x must be > 0 (a plain 0 is accepted: no corruption).
  if (!text.empty() && text[0] == 's' && parse_positive(text.substr(1), &v) && v > 0) {
    n.std_multiple = v;
  } else if (!text.empty() && text[0] == 'u' && parse_positive(text.substr(1), &v) && v > 0) {
    n.kind = NoiseSpec::Kind::Uniform;
    n.level = v;
  } else if (parse_positive(text, &v)) {
    n.level = v;
  } else {
    throw Error("noise '" + text + "': expected a non-negative number (0.1), s<k> with k > 0 (k x subject embedding std, e.g. s3) or u<x> with x > 0 (uniform in [-x, x])");
  }
  return n;
}

double subject_embedding_std(const Model& model, const std::vector<std::string>& subjects) {
  if (subjects.empty()) throw Error("noise s<k>: no subjects to measure the embedding std from");
  std::vector<at::Tensor> all;
  for (const auto& s : subjects) {
    auto ids = model.tokenizer().encode(s).ids;
    if (ids.empty()) continue;
    at::Tensor t = at::tensor(std::vector<int64_t>(ids.begin(), ids.end()), at::kLong).unsqueeze(0);
    all.push_back(model.embed(t).to(at::kDouble).flatten());
  }
  return at::cat(all).std(/*unbiased=*/true).item<double>();
}

at::Tensor draw_noise(const NoiseSpec& spec, int64_t samples, int64_t n, int64_t d) {
  NumpyRandomState rs(spec.seed);
  std::vector<double> v(static_cast<size_t>(samples * n * d));
  if (spec.kind == NoiseSpec::Kind::Uniform) {
    // ROME: rs.uniform(-1, 1, shape) scaled by the level.
    rs.uniform(v.data(), v.size(), -1.0, 1.0);
  } else {
    rs.standard_normal(v.data(), v.size());
  }
  at::Tensor t = at::from_blob(v.data(), {samples, n, d}, at::kDouble).clone();
  return t * spec.level;
}

}  // namespace kt
