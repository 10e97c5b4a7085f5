// The fast exact tracer: every restoration of a fact in one sweep over the
// layers, with nothing recomputed that a restoration cannot change.
//
// A restoration at token t whose first change happens in layer s leaves
// layers below s and positions before t exactly as in the corrupted run
// (causal attention), so it starts from the corrupted residual at layer s,
// computes only positions t..T-1, and reads the keys/values of positions
// < t from the corrupted run's cache. Positions before the subject are not
// computed at all: noise enters at the subject, so their score is exactly
// low_score. At its first layer only token t's input differs from the base
// run, so the queries / keys / values after t are the base run's; the
// severed cells of a (t, l) take their hidden cell's first block, which
// differs from theirs at token t alone. All restorations (mediators x
// tokens x layers x samples) run together; at each layer the live tokens
// of every restoration are packed into one matrix for the projections and
// the MLP, and attention runs per restored token. Results equal
// trace_fact_reference to fp32 rounding.
#pragma once
#include <functional>
#include <optional>
#include <string>

#include "model/model.h"
#include "trace/tracer.h"

namespace kt {

// max_batch_tokens: sized from the memory available (the default).
constexpr int64_t kAutoBatchTokens = -1;
constexpr int64_t kAutoBatchTokensCpu = 16384;     // auto's upper bound on the CPU
constexpr int64_t kAutoBatchTokensDevice = 65536;  // ... on a GPU
constexpr int64_t kAutoBatchTokensUnknown = 32768;  // a GPU whose free memory cannot be read

// How many live tokens a sweep of a fact may hold: the sweep's working
// memory (activations, attention scores, the keys/values of the positions
// before each restored token) at most half of the memory available (CPU:
// MemAvailable and the cgroups' room; CUDA: the device's free memory plus
// the caching allocator's unused reserve, model/device_memory.h). The bytes
// per live token are the model's activation widths x 4 bytes, scaled by
// what was measured on SmolLM2 (fp32 0.83, bf16 2.0 of that figure, taken
// as 1.25 and 2.5), and at most auto_batch_cap(device): on the CPU beyond
// 16384 a sweep's products are no faster and its larger heap costs page
// faults (SmolLM2, Vinson fact, 3 mediators: fp32 19.3 s at 16384 tokens vs
// 20.0 s at 65536; bf16 14.0 s vs 17.6 s); on a GPU 65536, twice the
// fixed figure of docs/gpu-results-h200.md's runs (not timed there yet).
struct BatchSize {
  int64_t tokens = 0;
  int64_t bytes_per_token = 0, available_bytes = -1;
  std::string how;  // "auto: 4.1 GiB of 8.2 GiB available, 61.2 KiB per live token"
};
BatchSize auto_batch_size(const Model& model, int64_t run_tokens, int64_t rows);
int64_t auto_batch_cap(c10::Device device);
// "auto" -> kAutoBatchTokens, else an integer >= 0; kt::Error naming `what` otherwise.
int64_t parse_batch_tokens(const std::string& text, const std::string& what);

struct FastOptions {
  // Upper bound on tokens (rows x positions) live in one sweep; larger fact
  // sets of restorations run as several sweeps. 0 = no limit;
  // kAutoBatchTokens = auto_batch_size's.
  int64_t max_batch_tokens = kAutoBatchTokens;
  // Called between layers of every sweep; it may throw to abandon the
  // trace (the Python module turns a pending Ctrl-C into KeyboardInterrupt).
  std::function<void()> poll;
};

struct FastStats {
  int64_t restorations = 0;  // computed (cells before the subject are not)
  int64_t shared = 0;        // of those, started from another's state (Restoration::parent)
  int64_t sweeps = 0;
  int64_t max_batch_tokens = 0;  // the bound the sweeps had (0 = none)
  double flops = 0;          // useful multiply-adds x 2, from the shapes computed
  // ROME's loop on the same cells: one forward of S + 1 rows per cell (and
  // one for the clean / corrupted scores), counted with the same formulas.
  double rome_flops = 0;
};

// FLOPs of one forward of `rows` x T tokens scored at the last `scored`
// positions (projections, MLP, attention, the head), as the engine counts.
double forward_flops(const ModelConfig& c, int64_t rows, int64_t T, int64_t scored = 1);

// A trace's FastStats (restorations, flops, rome_flops) from its plan,
// without the sweeps: one clean forward pass.
FastStats count_trace_flops(const Model& model, const std::string& prompt, const std::string& subject,
                            const TraceSettings& settings, const FactAnswer& answer = {});

FactTrace trace_fact_fast(const Model& model, const std::string& prompt, const std::string& subject,
                          const TraceSettings& settings, const FactAnswer& answer = {},
                          const FastOptions& options = {}, FastStats* stats = nullptr);

}  // namespace kt
