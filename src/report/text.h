// Text helpers of the report (private to src/report and its tests): safe
// UTF-8 for cairo's toy text API and for HTML, token display, base64.
#pragma once
#include <string>

namespace kt::report {

// Valid UTF-8 passes through; every byte of an invalid sequence becomes
// "\xNN" (cairo refuses invalid UTF-8 and would stop drawing).
std::string sanitize_utf8(const std::string& s);

// How a token is shown on an axis: sanitized; control characters escaped
// ("\n", "\t", "\r", "\xNN"); a token of spaces only shown as one U+2423
// (open box) per space so it is visible. Other leading spaces are kept.
std::string display_token(const std::string& token);

// Shortens `s` to at most `max_chars` code points, ending with U+2026.
std::string ellipsize(const std::string& s, size_t max_chars);

std::string html_escape(const std::string& s);  // sanitized; & < > " ' escaped
std::string base64_encode(const std::string& bytes);

// Number for tables: "nan" -> "–" (en dash); otherwise %.*f / %.3g.
std::string format_fixed(double v, int decimals);

}  // namespace kt::report
