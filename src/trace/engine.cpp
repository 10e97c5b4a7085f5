#include "trace/engine.h"

#include "util/error.h"

namespace kt {

std::string engine_name(Engine e) { return e == Engine::Fast ? "fast" : "reference"; }

Engine parse_engine(const std::string& name) {
  if (name == "fast") return Engine::Fast;
  if (name == "reference") return Engine::Reference;
  throw Error("engine '" + name + "' is not one of fast, reference");
}

FactTrace trace_fact(const Model& model, const std::string& prompt, const std::string& subject,
                     const TraceSettings& settings, const FactAnswer& answer, const EngineOptions& o) {
  if (o.engine == Engine::Fast) {
    FastOptions fo;
    fo.max_batch_tokens = o.max_batch_tokens;
    fo.poll = o.poll;
    return trace_fact_fast(model, prompt, subject, settings, answer, fo);
  }
  return trace_fact_reference(model, prompt, subject, settings, answer, [&](int64_t done, int64_t total) {
    if (o.poll) o.poll();
    if (o.progress) o.progress(done, total);
  });
}

}  // namespace kt
