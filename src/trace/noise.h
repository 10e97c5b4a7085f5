// The corruption of a causal trace: noise added to (or replacing) the
// subject's token embeddings, drawn exactly as ROME draws it so results
// compare number for number (numpy RandomState, reseeded for every fact).
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace kt {

class Model;

struct NoiseSpec {
  enum class Kind { Gaussian, Uniform } kind = Kind::Gaussian;
  double level = 0.0;          // Gaussian: multiplier of randn; Uniform: half-width
  double std_multiple = 0.0;   // > 0 for "s<k>": level = k * embedding std (resolved later)
  bool replace = false;        // set embeddings to the noise instead of adding it
  uint32_t seed = 1;
  std::string text;            // as the user wrote it, for results and messages
};

// "s3" (3 x std of subject embeddings), "0.1" (Gaussian scale), "u0.5"
// (uniform in [-0.5, 0.5]). Throws kt::Error naming the value otherwise.
NoiseSpec parse_noise(const std::string& text, uint32_t seed = 1, bool replace = false);

// Unbiased standard deviation of every embedding value of every subject,
// each tokenized alone as ROME's make_inputs does (special tokens included).
double subject_embedding_std(const Model& model, const std::vector<std::string>& subjects);

// Noise for rows [samples] x tokens [n] x hidden [d], float64 as numpy
// draws it (C order, RandomState(seed) fresh), already scaled by level.
at::Tensor draw_noise(const NoiseSpec& spec, int64_t samples, int64_t n, int64_t d);

}  // namespace kt
