// The one entry point to trace a fact: the engine is a typed choice, not a
// string each caller compares. Both engines read the same cell plans
// (fact_setup.h) and give the same numbers to fp32 rounding.
#pragma once
#include <functional>
#include <string>

#include "trace/fast_engine.h"
#include "trace/tracer.h"

namespace kt {

enum class Engine { Fast, Reference };
std::string engine_name(Engine e);             // "fast" | "reference"
Engine parse_engine(const std::string& name);  // kt::Error naming the value otherwise

struct EngineOptions {
  Engine engine = Engine::Fast;
  int64_t max_batch_tokens = kAutoBatchTokens;  // fast engine: live tokens per sweep (0 = unlimited)
  std::function<void()> poll;            // called often; may throw to abandon the trace
  TraceProgress progress;                // reference engine: restorations done / total
};

FactTrace trace_fact(const Model& model, const std::string& prompt, const std::string& subject,
                     const TraceSettings& settings, const FactAnswer& answer = {}, const EngineOptions& options = {});

}  // namespace kt
