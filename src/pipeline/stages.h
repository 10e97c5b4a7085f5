// Internal to kt_pipeline: what the model stages (pipeline.cpp, ATen) and
// the model-free stages (results.cpp) share.
#pragma once
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "analysis/aggregate.h"
#include "pipeline/config.h"
#include "pipeline/dataset.h"
#include "pipeline/pipeline.h"

namespace kt::pipeline {

// One fact's filter verdict, as stored in filter.jsonl.
struct Verdict {
  std::string id, prompt, subject, attribute;
  int64_t n_tokens = 0;
  int32_t top1_id = 0;
  std::string top1_token;
  double top1_prob = 0;
  int32_t attribute_first_id = -1;  // first token of " " + attribute
  bool first_token = false;         // top1_id == attribute_first_id
  bool rome = false;                // strip(decode(top1)) == attribute
  bool same_fact(const Fact& f) const { return id == f.id && prompt == f.prompt && subject == f.subject && attribute == f.attribute; }
};

// {} when the file does not exist; kt::Error naming the path when it is
// corrupt (checksum) or a line is not a verdict.
std::vector<Verdict> read_verdicts(const std::string& path);
void write_verdicts(const std::string& path, const std::vector<Verdict>& v);

// The facts to trace: the `facts` subset, the filter rule, then `limit`.
std::vector<Verdict> kept_facts(const std::vector<Verdict>& verdicts, const RunConfig& cfg);

void write_errors(const std::string& path, const std::vector<FactError>& errors);
std::vector<FactError> read_errors(const std::string& path);  // {} when the file does not exist

// The aggregate and plot stages over the kept facts' stored traces.
void aggregate_stage(const RunConfig& cfg, const std::string& dir, const std::string& fingerprint, bool plot,
                     const RunOptions& opts, RunReport& report);

std::string run_json_path(const std::string& dir);
// run.json of a results directory, parsed; kt::Error when it is missing,
// not JSON, or has no fingerprint.
nlohmann::json read_run_json(const std::string& dir);

// Progress of a stage on stderr: a bar with rate and ETA on a terminal,
// a plain line at most every few seconds otherwise.
class Progress {
 public:
  Progress(std::string stage, int64_t total, std::string unit, bool enabled);
  void tick(int64_t n = 1);
  // Progress inside the current item (0..1), e.g. restorations of a fact.
  void partial(double fraction);
  void finish();
  ~Progress();

 private:
  void draw(bool final);
  std::string stage_, unit_;
  int64_t total_, done_ = 0;
  double partial_ = 0;
  bool enabled_, tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

// SIGINT handling: install for the lifetime of the object.
class InterruptGuard {
 public:
  InterruptGuard();
  ~InterruptGuard();
};
bool stop_requested();
void clear_stop();

void note(RunReport& r, const std::string& msg);  // stderr + report.notes

}  // namespace kt::pipeline
