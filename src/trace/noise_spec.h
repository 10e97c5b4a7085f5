// The corruption's noise as the user writes it, parsed once: torch-free,
// shared by the config parser, the command line and the tracer.
#pragma once
#include <cstdint>
#include <string>

namespace kt {

struct NoiseSpec {
  enum class Kind { Gaussian, Uniform } kind = Kind::Gaussian;
  double level = 0.0;          // Gaussian: multiplier of randn; Uniform: half-width
  double std_multiple = 0.0;   // > 0 for "s<k>": level = k * embedding std (resolved later)
  bool replace = false;        // set embeddings to the noise instead of adding it
  uint32_t seed = 1;
  std::string text;            // as the user wrote it, for results and messages
  std::string source;          // s<k>: the subjects the std came from ("known_1000: 1209 subjects")
};

// "s3" (3 x std of subject embeddings; "s" alone = s1, as ROME), "0.1"
// (Gaussian scale), "u0.5" (uniform in [-0.5, 0.5]). Throws kt::Error
// "noise '<text>': expected <kNoiseForms>" otherwise.
NoiseSpec parse_noise(const std::string& text, uint32_t seed = 1, bool replace = false);

// What a noise text may be, for messages.
extern const char* const kNoiseForms;

}  // namespace kt
