// Per-fact, per-mediator trace results as ROME-compatible .npz files.
//
// Keys ROME's notebooks read: scores, low_score, high_score, input_ids,
// input_tokens, subject_range, answer, window, correct_prediction, kind.
// knowtrace adds: mediator, convention, noise, noise_level, noise_seed,
// samples, answer_id, prompt, subject, fingerprint, knowtrace_version.
// Files are written atomically; a reader refuses a file whose fingerprint
// differs from the current settings and says which setting differs.
#pragma once
#include <string>

#include "trace/tracer.h"

namespace kt {

extern const char* const kKnowtraceVersion;

// A JSON object naming everything a stored result depends on: model files
// (name, size, mtime), dtype, noise text and resolved level, seed, replace,
// samples, window, convention, code version.
std::string trace_fingerprint(const Model& model, const TraceSettings& s);

void write_trace_npz(const std::string& path, const FactTrace& f, const MediatorTrace& m,
                     const TraceSettings& s, const std::string& fingerprint);

// Reads a stored trace back. When `expected_fingerprint` is non-empty and
// differs, throws kt::Error naming the file and the first differing field.
FactTrace read_trace_npz(const std::string& path, const std::string& expected_fingerprint = "");

// save_states: every site's clean and corrupted values as float16, keys
// "clean:<site>" [T, d] and "corrupted:<site>" [S, T, d], plus input_ids.
void write_states_npz(const std::string& path, const FactTrace& f, const FactStates& states);

// "<dir>/<fact>_<mediator>.npz"
std::string trace_file_name(const std::string& dir, const std::string& fact, Mediator m);

}  // namespace kt
