// Per-fact, per-mediator trace results: FactTrace (tensors) to the stored
// record of analysis/trace_file.h, the run fingerprint, and the optional
// states file. Reading goes through read_trace_file only.
#pragma once
#include <string>

#include "analysis/trace_file.h"
#include "trace/tracer.h"

namespace kt {

// A JSON object naming everything a stored result depends on: model files
// (name, size, mtime), dtype, noise text and resolved level, seed, replace,
// samples, window, convention, code version.
std::string trace_fingerprint(const Model& model, const TraceSettings& s);

// The stored form of one mediator's trace of a fact.
TraceRecord trace_record(const FactTrace& f, const MediatorTrace& m, const TraceSettings& s,
                         const std::string& fingerprint);
void write_trace_npz(const std::string& path, const FactTrace& f, const MediatorTrace& m,
                     const TraceSettings& s, const std::string& fingerprint);

// save_states: every site's clean and corrupted values as float16, keys
// "clean:<site>" [T, d] and "corrupted:<site>" [S, T, d], plus input_ids.
void write_states_npz(const std::string& path, const FactTrace& f, const FactStates& states);

// "<dir>/<fact>_<mediator>.npz"
inline std::string trace_file_name(const std::string& dir, const std::string& fact, Mediator m) {
  return trace_file_name(dir, fact, mediator_name(m));
}

}  // namespace kt
