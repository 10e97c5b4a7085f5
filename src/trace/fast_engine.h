// The fast exact tracer: every restoration of a fact in one sweep over the
// layers, with nothing recomputed that a restoration cannot change.
//
// A restoration at token t whose first change happens in layer s leaves
// layers below s and positions before t exactly as in the corrupted run
// (causal attention), so it starts from the corrupted residual at layer s,
// computes only positions t..T-1, and reads the keys/values of positions
// < t from the corrupted run's cache. Positions before the subject are not
// computed at all: noise enters at the subject, so their score is exactly
// low_score. All restorations (mediators x tokens x layers x samples) run
// together; at each layer the live tokens of every restoration are packed
// into one matrix for the projections and the MLP, and attention runs per
// restored token. Results equal trace_fact_reference to fp32 rounding.
#pragma once
#include <functional>
#include <optional>
#include <string>

#include "trace/tracer.h"

namespace kt {

struct FastOptions {
  // Upper bound on tokens (rows x positions) live in one sweep; larger fact
  // sets of restorations run as several sweeps. 0 = no limit.
  int64_t max_batch_tokens = 0;
  // Called between layers of every sweep; it may throw to abandon the
  // trace (the Python module turns a pending Ctrl-C into KeyboardInterrupt).
  std::function<void()> poll;
};

struct FastStats {
  int64_t restorations = 0;  // computed (cells before the subject are not)
  int64_t sweeps = 0;
  double flops = 0;          // useful multiply-adds x 2, from the shapes computed
};

FactTrace trace_fact_fast(const Model& model, const std::string& prompt, const std::string& subject,
                          const TraceSettings& settings, const FactAnswer& answer = {},
                          const FastOptions& options = {}, FastStats* stats = nullptr);

}  // namespace kt
