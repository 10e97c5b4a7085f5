#include "trace/noise.h"

#include "model/model.h"
#include "util/error.h"
#include "util/numpy_random.h"

namespace kt {

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

at::Tensor draw_noise(const NoiseSpec& spec, int64_t samples, int64_t n, int64_t d, int64_t draw) {
  NumpyRandomState rs(spec.seed);
  const size_t count = static_cast<size_t>(samples * n * d);
  // Successive calls continue one stream (numpy keeps its cached Gaussian
  // between calls), so draw k is values [k * count, (k + 1) * count).
  std::vector<double> v(count * static_cast<size_t>(draw + 1));
  if (spec.kind == NoiseSpec::Kind::Uniform) {
    // ROME: rs.uniform(-1, 1, shape) scaled by the level.
    rs.uniform(v.data(), v.size(), -1.0, 1.0);
  } else {
    rs.standard_normal(v.data(), v.size());
  }
  at::Tensor t = at::from_blob(v.data() + count * static_cast<size_t>(draw), {samples, n, d}, at::kDouble).clone();
  return t * spec.level;
}

}  // namespace kt
