// Splitting a run into shards and putting the shards back together:
// `--shard i/n` (parse_shard, split_by_cost) and `knowtrace merge`. No model.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <map>
#include <numeric>
#include <set>

#include "pipeline/stages.h"
#include "util/error.h"
#include "util/paths.h"
#include "util/stored_file.h"

namespace kt {
namespace fs = std::filesystem;
using nlohmann::json;

std::pair<int, int> parse_shard(const std::string& text) {
  const size_t slash = text.find('/');
  auto number = [&](const std::string& part) {
    if (part.empty() || part.size() > 6 || part.find_first_not_of("0123456789") != std::string::npos)
      throw Error("--shard '" + text + "': expected i/n with 0 <= i < n, e.g. 0/4");
    return std::stoi(part);
  };
  if (slash == std::string::npos) number("");
  const int i = number(text.substr(0, slash)), n = number(text.substr(slash + 1));
  if (n < 1 || i >= n) throw Error("--shard '" + text + "': expected i/n with 0 <= i < n, e.g. 0/4");
  return {i, n};
}

std::vector<int> split_by_cost(const std::vector<double>& costs, int parts) {
  if (parts < 1) throw Error("split_by_cost: parts must be >= 1");
  std::vector<size_t> order(costs.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return costs[a] > costs[b]; });
  std::vector<double> load(static_cast<size_t>(parts), 0.0);
  std::vector<int> share(costs.size(), 0);
  for (size_t i : order) {
    const size_t least = static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    share[i] = static_cast<int>(least);
    load[least] += costs[i];
  }
  return share;
}

namespace {

// The config of a run without the keys that may differ between its shards.
json shard_config(json config) {
  config.erase("results");
  return config;
}

// "<fact>_<mediator>.npz" -> fact, for the run's mediators (ids may hold '_').
std::string fact_of(const std::string& file, const std::vector<std::string>& mediators) {
  const std::string stem = fs::path(file).stem().string();
  for (const auto& m : mediators) {
    const std::string tail = "_" + m;
    if (stem.size() > tail.size() && stem.compare(stem.size() - tail.size(), tail.size(), tail) == 0)
      return stem.substr(0, stem.size() - tail.size());
  }
  return "";
}

}  // namespace

RunReport merge_runs(const std::vector<std::string>& shard_dirs, const std::string& out_dir, const RunOptions& opts) {
  using namespace pipeline;
  if (shard_dirs.empty()) throw Error("merge: no shard directories given");
  RunReport rep;
  rep.dir = out_dir;
  const fs::path out(out_dir);

  // ---- every shard's run.json: one fingerprint, one config.
  std::vector<json> runs;
  std::set<std::string> seen_dirs;
  std::set<int> indices;
  int count = 0;
  for (const auto& d : shard_dirs) {
    if (fs::exists(d) && fs::exists(out) && fs::equivalent(d, out))
      throw Error("merge: " + d + " is the output directory itself; give --into a new directory");
    if (!seen_dirs.insert(fs::weakly_canonical(d).string()).second) throw Error("merge: " + d + " is given twice");
    runs.push_back(read_run_json(d));
    const json& j = runs.back();
    const json& first = runs.front();
    const std::string diff = fingerprint_difference(first["fingerprint"].dump(), j["fingerprint"].dump());
    if (!diff.empty())
      throw Error("merge: " + d + " was made with a different " + diff + " than " + shard_dirs[0] +
                  ": only shards of one run can be merged");
    const json a = shard_config(first["config"]), b = shard_config(j["config"]);
    if (a != b)
      for (auto& [k, v] : b.items())
        if (!a.contains(k) || a[k] != v)
          throw Error("merge: " + d + " has config key '" + k + "' = " + v.dump() + ", " + shard_dirs[0] + " has " +
                      (a.contains(k) ? a[k].dump() : "none") + ": only shards of one run can be merged");
    const std::string shard = j.value("shard", "");
    if (!shard.empty()) {
      const auto [i, n] = parse_shard(shard);
      if (count != 0 && n != count)
        throw Error("merge: " + d + " is shard " + shard + " but another directory is a shard of " + std::to_string(count));
      count = n;
      if (!indices.insert(i).second) throw Error("merge: shard " + shard + " is given twice (" + d + ")");
    }
    const std::string status = j.value("status", "");
    if (status != "complete")
      note(rep, "merge: " + d + " is " + (status.empty() ? std::string("unfinished") : status) +
                    ": its facts not stored yet are missing from the summary (rerun that shard, then merge again)");
  }
  for (int i = 0; i < count; ++i)
    if (!indices.count(i))
      note(rep, "merge: shard " + std::to_string(i) + "/" + std::to_string(count) + " is not among the directories given");
  const std::string fp = runs.front()["fingerprint"].dump();
  RunConfig cfg = config_from_json(runs.front()["config"].dump(), run_json_path(shard_dirs[0]));
  cfg.results = out_dir;
  if (fs::exists(run_json_path(out_dir))) {
    const std::string diff = fingerprint_difference(read_run_json(out_dir)["fingerprint"].dump(), fp);
    if (!diff.empty())
      throw Error("merge: " + out_dir + " holds results made with a different " + diff + "; choose another --into");
  }
  fs::create_directories(out / "traces");
  remove_stale_temporaries(out.string());
  remove_stale_temporaries((out / "traces").string());

  // ---- verdicts and errors: every shard filtered every fact, so their
  // verdicts must agree; errors are united.
  std::vector<Verdict> verdicts;
  std::map<std::string, size_t> by_id;
  std::vector<FactError> errors;
  std::set<std::tuple<std::string, std::string, std::string>> seen_errors;
  for (size_t k = 0; k < shard_dirs.size(); ++k) {
    const std::string path = (fs::path(shard_dirs[k]) / "filter.jsonl").string();
    for (auto& v : read_verdicts(path)) {
      auto it = by_id.find(v.id);
      if (it == by_id.end()) {
        by_id[v.id] = verdicts.size();
        verdicts.push_back(std::move(v));
      } else {
        const Verdict& w = verdicts[it->second];
        if (w.prompt != v.prompt || w.subject != v.subject || w.attribute != v.attribute || w.top1_id != v.top1_id || w.rome != v.rome || w.first_token != v.first_token)
          throw Error("merge: " + path + ": fact '" + v.id + "' has another filter verdict than in " + shard_dirs[0]);
      }
    }
    for (auto& e : read_errors((fs::path(shard_dirs[k]) / "errors.jsonl").string()))
      if (seen_errors.insert({e.id, e.stage, e.message}).second) errors.push_back(std::move(e));
  }
  write_verdicts((out / "filter.jsonl").string(), verdicts);
  write_errors((out / "errors.jsonl").string(), errors);

  // ---- traces (and saved states): checked, then copied atomically.
  int64_t copied = 0, present = 0;
  for (const auto& d : shard_dirs) {
    for (const char* sub : {"traces", "states"}) {
      const fs::path from_dir = fs::path(d) / sub;
      if (!fs::is_directory(from_dir)) continue;
      std::vector<fs::path> files;
      for (const auto& e : fs::directory_iterator(from_dir))
        if (e.is_regular_file() && e.path().extension() == ".npz") files.push_back(e.path());
      std::sort(files.begin(), files.end());
      for (const auto& f : files) {
        const fs::path to = out / sub / f.filename();
        const bool is_trace = std::string(sub) == "traces";
        if (is_trace) {
          const std::string fact = fact_of(f.string(), cfg.mediators);
          if (fact.empty()) continue;  // not one of this run's mediators
          if (fs::exists(to)) {
            try {
              read_trace_file(to.string(), fact, fp);
              ++present;
              continue;
            } catch (const Error&) {
              // replaced below
            }
          }
          try {
            read_trace_file(f.string(), fact, fp);
          } catch (const Error& e) {
            ++rep.traces_invalid;
            note(rep, std::string(e.what()) + "; not merged (rerun its shard to recompute it)");
            continue;
          }
        } else if (fs::exists(to)) {
          continue;
        }
        write_file_atomic(to.string(), read_text_file(f.string()));
        ++copied;
      }
    }
  }
  rep.traces_written = copied;
  std::fprintf(stderr, "merge: %zu directories -> %s: %lld files copied, %lld already there, %zu verdicts, %zu errors\n",
               shard_dirs.size(), out_dir.c_str(), (long long)copied, (long long)present, verdicts.size(), errors.size());

  json run = runs.front();
  run.erase("shard");
  run["config"]["results"] = out_dir;
  run["status"] = "merged";
  run["merged_from"] = shard_dirs;
  write_file_checked(run_json_path(out_dir), run.dump(2) + "\n");
  rep.facts = static_cast<int64_t>(verdicts.size());
  rep.kept = static_cast<int64_t>(kept_facts(verdicts, cfg).size());
  rep.noise_level = run.value("noise_level", 0.0);
  aggregate_stage(cfg, out_dir, fp, has_stage(cfg, "plot"), opts, rep);
  return rep;
}

}  // namespace kt
