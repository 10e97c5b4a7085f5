// The reference causal tracer: ROME's algorithm, one full forward pass per
// restoration, built on the model's site hooks. Simple on purpose: it is
// the oracle every faster engine is tested against.
#pragma once
#include <ATen/ATen.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "trace/noise.h"

namespace kt {

class Model;

// ROME's five restoration mediators, then the three attention knockouts
// of Geva et al. (2023): on the clean run, the last prompt position's
// attention to the subject / to the other positions / to itself is removed
// in a window of layers around l; a knockout trace has one row (the last
// token) and scores the relative change of the target's probability.
// (Their names, in this order: util/names.h's mediator_names().)
enum class Mediator {
  Hidden, HiddenAttnSevered, HiddenMlpSevered, Mlp, Attn,
  KnockoutSubject, KnockoutNonSubject, KnockoutLast
};
enum class HiddenConvention { ResidPost /* ROME: output of block l */, ResidPre /* input of block l */ };

std::string mediator_name(Mediator m);  // "hidden", "hidden_attn_severed", ..., "knockout_subject"
Mediator parse_mediator(const std::string& name);  // kt::Error lists the valid names
std::vector<Mediator> all_mediators();  // ROME's five (the default)
bool is_knockout(Mediator m);

// What the corrupted run is: ROME's noise on the subject's embeddings, or
// the clean run of a counterfactual prompt with as many tokens (one row).
enum class Corruption { Noise, Prompt };
// What a cell scores: the answer's first token (ROME) or every token of
// " " + attribute, teacher-forced.
enum class Target { FirstToken, Answer };
// prob (ROME), logprob (the target's; mean per token for the answer),
// logit_diff (answer vs the counterfactual answer's first token, at the
// first scored position), kl (the clean next-token distribution vs the
// cell's, mean over the scored positions).
enum class Metric { Prob, LogProb, LogitDiff, Kl };
std::string corruption_name(Corruption c);  // noise | prompt
std::string target_name(Target t);          // first-token | answer
std::string metric_name(Metric m);          // prob | logprob | logit_diff | kl
Corruption parse_corruption(const std::string& s);  // kt::Error naming the value otherwise
Target parse_target(const std::string& s);
Metric parse_metric(const std::string& s);
std::string convention_name(HiddenConvention c);
HiddenConvention parse_convention(const std::string& name);

// Where the severed mediators' frozen values and scored pass get their noise:
//   SameDraw      one noise draw for the whole trace (DESIGN.md section 2);
//   RomeNotebook  ROME's causal_trace_frozen_mlp_attn notebook
//                 (trace_with_repatch): the frozen attention / MLP values
//                 come from a corrupted pass with the first draw of the
//                 fact's RandomState, the scored pass is corrupted with its
//                 second draw. Only the two severed mediators change.
enum class Severing { SameDraw, RomeNotebook };
std::string severing_name(Severing s);  // "same-draw" | "rome-notebook"
Severing parse_severing(const std::string& name);

struct TraceSettings {
  int64_t samples = 10;
  NoiseSpec noise;           // level must be resolved (s<k> -> number) before tracing
  int64_t window = 10;
  HiddenConvention convention = HiddenConvention::ResidPost;
  std::vector<Mediator> mediators = all_mediators();
  Severing severing = Severing::SameDraw;
  Corruption corruption = Corruption::Noise;
  Target target = Target::FirstToken;
  Metric metric = Metric::Prob;
  // Scores as the restored fraction (m - m_corrupted) / (m_clean - m_corrupted);
  // low_score becomes 0 and high_score 1 (the raw ones are kept).
  bool normalise = false;
  int64_t knockout_window = 9;  // layers blocked per knockout cell (Geva et al.: 9)
  bool defaults_beyond_rome() const {
    return corruption == Corruption::Noise && target == Target::FirstToken && metric == Metric::Prob && !normalise;
  }
  bool notebook_severing(Mediator m) const {
    return severing == Severing::RomeNotebook && (m == Mediator::HiddenAttnSevered || m == Mediator::HiddenMlpSevered);
  }
};

// Settings from their text forms (command-line flags or config keys);
// kt::Error names the bad value. The noise stays unresolved: see below.
TraceSettings make_trace_settings(int64_t samples, int64_t window, const std::string& convention,
                                  const std::vector<std::string>& mediators, const std::string& noise, uint32_t seed,
                                  bool replace, const std::string& severing = "same-draw");
// The settings beyond ROME's, from their text forms (defaults: ROME's).
struct InterventionText {
  std::string corruption = "noise", target = "first-token", metric = "prob";
  bool normalise = false;
  int64_t knockout_window = 9;
};
void set_interventions(TraceSettings& s, const InterventionText& t);
// kt::Error "<name> <k> is larger than the model's <L> layers" when a
// knockout mediator is traced with a window wider than the model; `name`
// says where the window came from (a key, a flag).
void check_knockout_window(const TraceSettings& s, int64_t n_layers, const std::string& name = "knockout_window");

// Resolves noise s<k> to k x the std of `subjects`' embeddings (ROME: every
// subject of the data set, each tokenized alone); other noise is unchanged.
// `source` names where the subjects came from (noise.source, stored).
void resolve_noise_level(TraceSettings& s, const Model& model, const std::vector<std::string>& subjects,
                         const std::string& source = "");

struct MediatorTrace {
  Mediator mediator;
  at::Tensor scores;  // float64 [tokens, layers] (knockouts: [1, layers]): the metric, mean over samples
  double low_score = 0, high_score = 0;  // the fact's; knockouts: 0 and the clean target probability
};

struct FactTrace {
  std::string prompt, subject;
  std::vector<int32_t> input_ids;
  std::vector<std::string> input_tokens;  // each token decoded alone, as ROME stores them
  int64_t subject_begin = 0, subject_end = 0;
  int32_t answer_id = 0;
  std::string answer;
  double high_score = 0, low_score = 0;  // the metric on the clean / corrupted run (normalised: 1 / 0)
  double raw_high = 0, raw_low = 0;       // before normalising (equal to the above otherwise)
  std::vector<int32_t> target_ids;        // the scored tokens: {answer_id}, or the answer's tokens
  int32_t counter_id = -1;                // logit_diff's counterfactual token, or -1
  std::string counterfactual;             // Corruption::Prompt: the corrupted run's prompt
  bool correct_prediction = true;  // under correct_rule (see FactAnswer)
  std::string correct_rule = "none";
  std::vector<MediatorTrace> traces;
};

// Which answer a trace scores and how correct_prediction is decided.
// Implicit from an expected text, as ROME's calculate_hidden_flow(expect=).
struct FactAnswer {
  FactAnswer() = default;
  FactAnswer(std::optional<std::string> e) : expect(std::move(e)) {}
  FactAnswer(const std::string& e) : expect(e) {}
  FactAnswer(const char* e) : expect(std::string(e)) {}
  // ROME's rule: correct when decode(answer).strip() == expect ("rome");
  // without it the prediction is not checked ("none", always correct).
  std::optional<std::string> expect;
  // The answer token to score instead of the clean pass's argmax, with the
  // verdict already reached on it: `knowtrace run` passes its filter's, so
  // the filter's verdict and the trace's answer are one computation (a
  // batched and a single-row pass can disagree at near ties).
  std::optional<int32_t> answer_id;
  std::optional<bool> verdict;
  std::string rule;  // the rule behind `verdict`: rome | first-token | none
  // Beyond ROME: the counterfactual prompt (Corruption::Prompt, as many
  // tokens as the prompt) and answer (Metric::LogitDiff). Target::Answer
  // scores the tokens of " " + expect.
  std::optional<std::string> counterfactual, counterfactual_answer;
};

// Checks the inputs before any work: empty prompt, subject missing or equal
// to the whole prompt, too many tokens for the context, samples < 1,
// window outside [1, n_layers]. Throws kt::Error with one line.
void validate_fact(const Model& model, const std::string& prompt, const std::string& subject,
                   const TraceSettings& s);

using TraceProgress = std::function<void(int64_t done, int64_t total)>;

// Clean [1, T, d] and corrupted [S, T, d] values of every site (same noise
// as the trace), for `save_states`.
struct FactStates {
  std::vector<std::string> sites;  // site names, forward order
  std::vector<at::Tensor> clean, corrupted;
};
FactStates record_fact_states(const Model& model, const std::string& prompt, const std::string& subject,
                              const TraceSettings& settings, const FactAnswer& answer = {});

FactTrace trace_fact_reference(const Model& model, const std::string& prompt, const std::string& subject,
                               const TraceSettings& settings, const FactAnswer& answer = {},
                               const TraceProgress& progress = nullptr);

}  // namespace kt
