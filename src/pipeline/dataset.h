// Fact data sets: ROME's known_1000, the bundled default set, or any JSON
// list / JSONL file of {prompt, subject, attribute}. No model, no torch.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace kt {

struct RunConfig;

struct Fact {
  std::string id;         // known_id, else "id", else the record's index
  std::string prompt;     // the fact without its answer
  std::string subject;    // occurs verbatim in the prompt
  std::string attribute;  // the expected next word(s), without a leading space
  std::string relation_id;
  // Optional (corruption: prompt, metric: logit_diff): a prompt with as
  // many tokens whose answer differs, and that other answer.
  std::string counterfactual, counterfactual_answer;
};

struct FactError {
  std::string id;       // as far as the record tells it ("#<index>" when it has none)
  std::string stage;    // "data", "trace", ...
  std::string message;  // one line
};

struct Dataset {
  std::string source;  // the file read
  std::vector<Fact> facts;
  std::vector<FactError> errors;  // records that were skipped
};

// Parses a JSON list or JSONL text. Bad records (missing or non-string
// fields, subject not in the prompt, duplicate id, ...) go to `errors` with
// their id and are skipped; a file that is not JSON at all throws kt::Error.
Dataset parse_dataset(const std::string& text, const std::string& origin);
Dataset load_dataset_file(const std::string& path);

// Checks ROME's known_1000 by content: 1209 records, known_id 0..1208 in
// order, each with subject, attribute, template, prediction, prompt and
// relation_id. kt::Error naming the file otherwise.
void check_known_1000(const std::string& text, const std::string& path);

// Where "known_1000" is looked for: $KNOWTRACE_DATA_DIR/known_1000.json,
// then ${XDG_CACHE_HOME:-~/.cache}/knowtrace/known_1000.json.
std::vector<std::string> known_1000_candidates();
extern const char* const kKnown1000Url;
// Downloads known_1000 with curl into $KNOWTRACE_DATA_DIR (else the cache
// folder above), checks its content and returns the path.
std::string download_known_1000();

// Where the bundled default set is: data/facts_default.json beside the
// config's repository (the config's folder or any folder above it), the
// current directory, or the executable's repository (<exe>/../data).
std::string default_facts_path(const RunConfig& cfg);

// The config's dataset: "default", "known_1000" or a path. Throws a
// one-line kt::Error when the file is missing, saying where it looked and
// how to get it.
Dataset load_dataset(const RunConfig& cfg);

// The facts a run considers: the config's `facts` subset (unknown ids are
// an error listing a few valid ones), in data set order.
std::vector<Fact> select_facts(const Dataset& d, const RunConfig& cfg);

}  // namespace kt
