#include "trace/noise_spec.h"

#include <cmath>
#include <cstdlib>

#include "util/error.h"

namespace kt {

const char* const kNoiseForms =
    "a non-negative number (0.1), s<k> with k > 0 (k x subject embedding std, e.g. s3; s = s1) or u<x> with x > 0 "
    "(uniform in [-x, x])";

namespace {
bool parse_non_negative(const std::string& s, double* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
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
  // s0 and u0 would be no noise at all under another name: k and x must be
  // > 0 (a plain 0 is accepted: no corruption). "s" is ROME's s1.
  if (text == "s") {
    n.std_multiple = 1.0;
  } else if (!text.empty() && text[0] == 's' && parse_non_negative(text.substr(1), &v) && v > 0) {
    n.std_multiple = v;
  } else if (!text.empty() && text[0] == 'u' && parse_non_negative(text.substr(1), &v) && v > 0) {
    n.kind = NoiseSpec::Kind::Uniform;
    n.level = v;
  } else if (parse_non_negative(text, &v)) {
    n.level = v;
  } else {
    throw Error("noise '" + text + "': expected " + kNoiseForms);
  }
  return n;
}

}  // namespace kt
