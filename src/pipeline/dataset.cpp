#include "pipeline/dataset.h"

#include <nlohmann/json.hpp>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <set>
#include <sstream>

#include "pipeline/config.h"
#include "util/error.h"
#include "util/paths.h"

namespace kt {
namespace fs = std::filesystem;
using nlohmann::json;

const char* const kKnown1000Url = "https://rome.baulab.info/data/dsets/known_1000.json";

namespace {

bool safe_id(const std::string& id) {
  return !id.empty() && id[0] != '.' &&
         id.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") == std::string::npos;
}

// Reads one record; returns false (with `why`) when it is unusable.
bool read_record(const json& r, size_t index, Fact& f, std::string& why) {
  f.id = "#" + std::to_string(index);
  if (!r.is_object()) {
    why = "record is not an object";
    return false;
  }
  if (r.contains("known_id")) {
    const json& k = r["known_id"];
    if (!k.is_number_integer()) {
      why = "'known_id' is not an integer";
      return false;
    }
    f.id = std::to_string(k.get<int64_t>());
  } else if (r.contains("id")) {
    const json& k = r["id"];
    if (k.is_number_integer()) {
      f.id = std::to_string(k.get<int64_t>());
    } else if (k.is_string() && safe_id(k.get<std::string>())) {
      f.id = k.get<std::string>();
    } else {
      why = "'id' must be an integer or a string of letters, digits, '_', '-', '.'";
      return false;
    }
  } else {
    f.id = std::to_string(index);
  }
  for (const char* key : {"prompt", "subject", "attribute"}) {
    if (!r.contains(key)) {
      why = std::string("no '") + key + "' field";
      return false;
    }
    if (!r[key].is_string()) {
      why = std::string("'") + key + "' is not a string";
      return false;
    }
  }
  f.prompt = r["prompt"].get<std::string>();
  f.subject = r["subject"].get<std::string>();
  f.attribute = r["attribute"].get<std::string>();
  if (r.contains("relation_id") && r["relation_id"].is_string()) f.relation_id = r["relation_id"].get<std::string>();
  for (const char* key : {"counterfactual", "counterfactual_answer"}) {
    if (!r.contains(key)) continue;
    if (!r[key].is_string() || r[key].get<std::string>().empty()) {
      why = std::string("'") + key + "' must be a non-empty string";
      return false;
    }
    (std::string(key) == "counterfactual" ? f.counterfactual : f.counterfactual_answer) = r[key].get<std::string>();
  }
  if (f.prompt.empty()) why = "'prompt' is empty";
  else if (f.subject.empty()) why = "'subject' is empty";
  else if (f.attribute.empty() || f.attribute.find_first_not_of(" \t\n") == std::string::npos) why = "'attribute' is empty";
  else if (f.prompt.find(f.subject) == std::string::npos)
    why = "subject '" + f.subject + "' does not occur in prompt '" + f.prompt + "'";
  else if (f.subject == f.prompt) why = "subject is the whole prompt: nothing follows it";
  return why.empty();
}

std::string home_cache_dir() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return (fs::path(x) / "knowtrace").string();
  if (const char* h = std::getenv("HOME"); h && *h) return (fs::path(h) / ".cache" / "knowtrace").string();
  return "";
}

std::string exe_dir() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : p.parent_path().string();
}

}  // namespace

Dataset parse_dataset(const std::string& text, const std::string& origin) {
  Dataset d;
  d.source = origin;
  std::vector<json> records;
  json j;
  bool parsed = false;
  try {
    j = json::parse(text);
    parsed = true;
  } catch (const json::exception&) {
  }
  if (parsed) {
    if (j.is_object() && j.contains("facts") && j["facts"].is_array()) j = j["facts"];
    if (!j.is_array()) throw Error(origin + ": expected a JSON list of facts ({prompt, subject, attribute}) or JSONL");
    for (auto& r : j) records.push_back(std::move(r));
  } else {
    // JSONL: one object per non-empty line; a line that does not parse is a
    // bad record, a file with no parsable line is not a data set at all.
    std::istringstream in(text);
    std::string line;
    size_t lineno = 0, good = 0;
    std::vector<std::pair<size_t, std::string>> bad;
    while (std::getline(in, line)) {
      ++lineno;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      try {
        records.push_back(json::parse(line));
        ++good;
      } catch (const json::exception& e) {
        records.push_back(json());  // keeps the index; reported below
        bad.emplace_back(records.size() - 1, "line " + std::to_string(lineno) + " is not valid JSON");
      }
    }
    if (good == 0) throw Error(origin + ": neither a JSON list nor JSONL (one JSON object per line)");
    for (auto& [idx, why] : bad) records[idx] = json{{"__bad__", why}};
  }
  std::set<std::string> ids;
  for (size_t i = 0; i < records.size(); ++i) {
    Fact f;
    std::string why;
    if (records[i].is_object() && records[i].contains("__bad__")) {
      d.errors.push_back({"#" + std::to_string(i), "data", origin + ": " + records[i]["__bad__"].get<std::string>()});
      continue;
    }
    if (!read_record(records[i], i, f, why)) {
      d.errors.push_back({f.id, "data", origin + ": record " + std::to_string(i) + " (id " + f.id + "): " + why});
      continue;
    }
    if (!ids.insert(f.id).second) {
      d.errors.push_back({f.id, "data", origin + ": record " + std::to_string(i) + ": duplicate id " + f.id});
      continue;
    }
    d.facts.push_back(std::move(f));
  }
  return d;
}

Dataset load_dataset_file(const std::string& path) {
  if (!fs::exists(path)) throw NotFound(path + ": data set file not found");
  return parse_dataset(read_text_file(path), path);
}

void check_known_1000(const std::string& text, const std::string& path) {
  const std::string how = std::string(" (get it from ") + kKnown1000Url + ")";
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception&) {
    throw Error(path + ": not valid JSON, so not known_1000" + how);
  }
  if (!j.is_array() || j.size() != 1209)
    throw Error(path + ": known_1000 has 1209 records, this file has " + (j.is_array() ? std::to_string(j.size()) : "no list") + how);
  for (size_t i = 0; i < j.size(); ++i) {
    const json& r = j[i];
    if (!r.is_object() || !r.contains("known_id") || !r["known_id"].is_number_integer() ||
        r["known_id"].get<int64_t>() != static_cast<int64_t>(i))
      throw Error(path + ": record " + std::to_string(i) + " should have known_id " + std::to_string(i) + how);
    for (const char* k : {"subject", "attribute", "template", "prediction", "prompt", "relation_id"})
      if (!r.contains(k) || !r[k].is_string())
        throw Error(path + ": record " + std::to_string(i) + " has no string '" + k + "'" + how);
  }
}

std::vector<std::string> known_1000_candidates() {
  std::vector<std::string> out;
  const std::string env = data_dir_from_env();
  if (!env.empty()) out.push_back((fs::path(env) / "known_1000.json").string());
  const std::string cache = home_cache_dir();
  if (!cache.empty()) out.push_back((fs::path(cache) / "known_1000.json").string());
  return out;
}

std::string download_known_1000() {
  std::string dir = data_dir_from_env();
  if (dir.empty()) dir = home_cache_dir();
  if (dir.empty()) throw Error("known_1000: set KNOWTRACE_DATA_DIR to the folder to download into");
  fs::create_directories(dir);
  const fs::path dest = fs::path(dir) / "known_1000.json";
  const fs::path tmp = fs::path(dir) / ("known_1000.json.tmp" + std::to_string(getpid()));
  const std::string cmd = "curl -fsSL --retry 2 -o '" + tmp.string() + "' '" + kKnown1000Url + "'";
  std::fprintf(stderr, "knowtrace: downloading %s -> %s\n", kKnown1000Url, dest.string().c_str());
  if (std::system(cmd.c_str()) != 0) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw Error(std::string("known_1000: download from ") + kKnown1000Url +
                " failed (is curl installed and the machine online?); download it by hand into " + dir);
  }
  try {
    check_known_1000(read_text_file(tmp.string()), tmp.string());
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  fs::rename(tmp, dest);
  return dest.string();
}

std::string default_facts_path(const RunConfig& cfg) {
  const std::string rel = "data/facts_default.json";
  try {
    return resolve_input_path(cfg, "dataset", rel);
  } catch (const Error&) {
  }
  const std::string exe = exe_dir();
  if (!exe.empty()) {
    const fs::path p = fs::path(exe).parent_path() / rel;
    if (fs::exists(p)) return p.lexically_normal().string();
  }
  throw NotFound(cfg.where("dataset") + ": key 'dataset': the bundled fact set " + rel +
              " was not found next to the config, in the current folder or beside the executable; "
              "give a data set path instead");
}

Dataset load_dataset(const RunConfig& cfg) {
  if (cfg.dataset == "default") return load_dataset_file(default_facts_path(cfg));
  if (cfg.dataset == "known_1000") {
    std::vector<std::string> where = known_1000_candidates();
    for (const auto& p : where) {
      if (!fs::exists(p)) continue;
      const std::string text = read_text_file(p);
      check_known_1000(text, p);
      return parse_dataset(text, p);
    }
    std::string looked;
    for (const auto& p : where) looked += (looked.empty() ? "" : ", ") + p;
    throw NotFound(cfg.where("dataset") + ": key 'dataset': known_1000.json not found (looked at " +
                (looked.empty() ? std::string("nothing: KNOWTRACE_DATA_DIR and HOME are unset") : looked) +
                "); download " + kKnown1000Url + " into $KNOWTRACE_DATA_DIR, or run with --download-data, "
                "or set 'dataset' to its path");
  }
  const std::string text = read_text_file(cfg.dataset);
  // A file named known_1000.json given by path gets the same content check.
  if (fs::path(cfg.dataset).filename() == "known_1000.json") check_known_1000(text, cfg.dataset);
  return parse_dataset(text, cfg.dataset);
}

std::vector<Fact> select_facts(const Dataset& d, const RunConfig& cfg) {
  if (cfg.facts.empty()) return d.facts;
  std::set<std::string> want(cfg.facts.begin(), cfg.facts.end());
  std::vector<Fact> out;
  std::set<std::string> found;
  for (const auto& f : d.facts)
    if (want.count(f.id)) out.push_back(f), found.insert(f.id);
  // Ids of skipped records are already reported (errors.jsonl).
  for (const auto& e : d.errors) found.insert(e.id);
  for (const auto& id : cfg.facts) {
    if (found.count(id)) continue;
    std::string some;
    for (size_t i = 0; i < d.facts.size() && i < 5; ++i) some += (i ? ", " : "") + d.facts[i].id;
    throw Error(cfg.where("facts") + ": key 'facts': no fact with id '" + id + "' in " + d.source + " (ids look like " +
                some + (d.facts.size() > 5 ? ", ..." : "") + ")");
  }
  return out;
}

}  // namespace kt
