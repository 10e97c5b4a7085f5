// links: kt_pipeline
// Splitting a run and keeping it whole: --shard parsing, the cost-balanced
// split, merging shard directories (equal to one run; refusals), checksummed
// files after a crash, and determinism (reruns, thread counts, engines).
// The multi-process checks (SIGKILL harness, mpirun) are tests/system/*.sh.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <ATen/Parallel.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "pipeline/config.h"
#include "pipeline/pipeline.h"
#include "pipeline/stages.h"
#include "util/error.h"
#include "util/paths.h"
#include "test_support.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::string kSrc = KT_SOURCE_DIR;
const std::string kConfig = kSrc + "/tests/fixtures/resilience/gpt2-tiny.yaml";

using kt_test::error_of;
using kt_test::temp_root;

kt::RunOptions quiet() {
  kt::RunOptions o;
  o.progress = false;
  return o;
}

// Six facts of the resilience fixture, no figures (fast).
kt::RunConfig config(const std::string& name) {
  kt::RunConfig c = kt::load_config(kConfig);
  c.results = (temp_root() / name).string();
  c.facts = {"0", "1", "2", "7", "9", "13"};
  c.stages = {"filter", "trace", "aggregate"};
  return c;
}

// Threads of ATen and of the BLAS under it (OpenBLAS keeps its own count,
// which OMP_NUM_THREADS sets for a whole process).
void set_threads(int n) {
  at::set_num_threads(n);
  using SetThreads = void (*)(int);
  if (auto f = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) f(n);
}

std::string slurp(const fs::path& p) { return kt::read_text_file(p.string()); }

// Max |difference| of the scores (and low/high) of two runs' traces.
double max_score_diff(const std::string& a, const std::string& b) {
  double worst = 0;
  for (const auto& e : fs::directory_iterator(fs::path(a) / "traces")) {
    const std::string name = e.path().filename().string();
    auto x = kt::read_trace_file(e.path().string(), name, "");
    auto y = kt::read_trace_file((fs::path(b) / "traces" / name).string(), name, "");
    EXPECT_EQ(x.scores.size(), y.scores.size()) << name;
    for (size_t i = 0; i < x.scores.size() && i < y.scores.size(); ++i)
      worst = std::max(worst, std::abs(x.scores[i] - y.scores[i]));
    worst = std::max({worst, std::abs(x.low_score - y.low_score), std::abs(x.high_score - y.high_score)});
  }
  return worst;
}

void expect_same_bytes(const std::string& a, const std::string& b) {
  for (const char* f : {"filter.jsonl", "errors.jsonl", "summary.json", "summary.csv"})
    EXPECT_EQ(slurp(fs::path(a) / f), slurp(fs::path(b) / f)) << f;
  int n = 0;
  for (const auto& e : fs::directory_iterator(fs::path(a) / "traces")) {
    EXPECT_EQ(slurp(e.path()), slurp(fs::path(b) / "traces" / e.path().filename())) << e.path();
    ++n;
  }
  EXPECT_EQ(n, 30);
}

TEST(Shards, ParseShard) {
  EXPECT_EQ(kt::parse_shard("0/4"), std::make_pair(0, 4));
  EXPECT_EQ(kt::parse_shard("3/4"), std::make_pair(3, 4));
  for (const char* bad : {"4/4", "1", "a/b", "-1/2", "1/0", "", "1/2/3", "0/9999999"})
    EXPECT_NE(error_of([&] { kt::parse_shard(bad); }).find("expected i/n with 0 <= i < n"), std::string::npos) << bad;
}

TEST(Shards, SplitByCostBalancesAndIsStable) {
  // One very long fact and many short ones: counting facts would give one
  // share 3 long-ish facts; by cost each share gets about the same work.
  const std::vector<double> costs = {100, 10, 10, 10, 10, 10, 10, 10, 10, 10, 50, 50};
  const auto share = kt::split_by_cost(costs, 3);
  std::vector<double> load(3, 0);
  for (size_t i = 0; i < costs.size(); ++i) load[static_cast<size_t>(share[i])] += costs[i];
  EXPECT_EQ(load[0] + load[1] + load[2], 290);
  for (double l : load) EXPECT_NEAR(l, 290.0 / 3, 10);
  EXPECT_EQ(share, kt::split_by_cost(costs, 3)) << "every process computes the same split";
  EXPECT_EQ(kt::split_by_cost({}, 2).size(), 0u);
  for (int s : kt::split_by_cost(costs, 1)) EXPECT_EQ(s, 0);
}

// One run, two shards merged, a rerun and a run on one thread: the same
// stored results (bytes at the same thread count; fp32 rounding otherwise).
class Determinism : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    threads_ = at::get_num_threads();
    set_threads(1);
    whole_ = config("whole");
    kt::run_pipeline(whole_, quiet());
  }
  static void TearDownTestSuite() { set_threads(threads_); }
  static kt::RunConfig whole_;
  static int threads_;
};
kt::RunConfig Determinism::whole_;
int Determinism::threads_ = 1;

TEST_F(Determinism, RerunGivesTheSameBytes) {
  kt::RunConfig again = config("again");
  kt::run_pipeline(again, quiet());
  expect_same_bytes(whole_.results, again.results);
}

TEST_F(Determinism, TwoShardsMergedEqualOneRun) {
  kt::RunConfig c = config("shards");
  std::vector<std::string> dirs;
  int64_t traced = 0;
  for (int i = 0; i < 2; ++i) {
    kt::RunOptions o = quiet();
    o.shard_index = i, o.shard_count = 2;
    c.results = (temp_root() / ("shard" + std::to_string(i))).string();
    kt::RunReport r = kt::run_pipeline(c, o);
    EXPECT_GT(r.facts_traced, 0) << "shard " << i;
    EXPECT_FALSE(fs::exists(fs::path(c.results) / "summary.json")) << "a shard is not summarized";
    EXPECT_EQ(json::parse(slurp(fs::path(c.results) / "run.json"))["shard"], std::to_string(i) + "/2");
    traced += r.facts_traced;
    dirs.push_back(c.results);
  }
  EXPECT_EQ(traced, 6);
  const std::string out = (temp_root() / "merged").string();
  kt::RunReport m = kt::merge_runs(dirs, out, quiet());
  EXPECT_EQ(m.aggregated_facts, 6);
  expect_same_bytes(whole_.results, out);
  // Merging again changes nothing; a missing shard is reported, not fatal.
  m = kt::merge_runs(dirs, out, quiet());
  EXPECT_EQ(m.traces_written, 0);
  expect_same_bytes(whole_.results, out);
  m = kt::merge_runs({dirs[0]}, (temp_root() / "half").string(), quiet());
  bool noted = false;
  for (const auto& n : m.notes) noted = noted || n.find("shard 1/2 is not among") != std::string::npos;
  EXPECT_TRUE(noted) << "no note about the missing shard";
  // Refusals: the same shard twice, a shard of another run, a shard rerun
  // into another shard's directory.
  EXPECT_NE(error_of([&] { kt::merge_runs({dirs[0], dirs[0]}, out, quiet()); }).find("given twice"), std::string::npos);
  kt::RunConfig other = config("other");
  other.samples = 2;
  other.stages = {"filter"};
  kt::RunOptions o = quiet();
  o.shard_index = 1, o.shard_count = 2;
  kt::run_pipeline(other, o);
  std::string e = error_of([&] { kt::merge_runs({dirs[0], other.results}, out, quiet()); });
  EXPECT_NE(e.find("different 'samples'"), std::string::npos) << e;
  o.shard_index = 0;
  c.results = dirs[1];
  e = error_of([&] { kt::run_pipeline(c, o); });
  EXPECT_NE(e.find("holds shard 1/2, not shard 0/2"), std::string::npos) << e;
}

TEST_F(Determinism, ThreadCountsAgreeToFp32Rounding) {
  set_threads(2);
  kt::RunConfig two = config("two_threads");
  kt::run_pipeline(two, quiet());
  set_threads(1);
  const double d = max_score_diff(whole_.results, two.results);
  std::printf("max |score difference| 1 vs 2 threads: %.3g\n", d);
  EXPECT_LE(d, 1e-6);
}

TEST_F(Determinism, EnginesAgreeToFp32Rounding) {
  kt::RunConfig ref = config("reference");
  ref.engine = "reference";
  ref.facts = {"2", "13"};  // the reference engine is slow: two short facts
  kt::run_pipeline(ref, quiet());
  const double d = max_score_diff(ref.results, whole_.results);
  std::printf("max |score difference| fast vs reference engine: %.3g\n", d);
  EXPECT_LE(d, 1e-5);
}

// Checksummed files: a corrupt filter.jsonl or run.json is reported with its
// path and redone; nothing half-written is read.
TEST_F(Determinism, CorruptBookkeepingFilesAreRedone) {
  kt::RunConfig c = config("corrupt");
  fs::copy(whole_.results, c.results, fs::copy_options::recursive);
  std::ofstream(fs::path(c.results) / "filter.jsonl", std::ios::app) << "{\"id\": \"x\"}\n";
  std::ofstream(fs::path(c.results) / "run.json", std::ios::app) << " ";
  std::ofstream(fs::path(c.results) / "traces" / "7_mlp.npz.tmp.999") << "half a file";
  kt::RunReport r = kt::run_pipeline(c, quiet());
  ASSERT_GE(r.notes.size(), 2u);
  EXPECT_NE(r.notes[0].find(c.results + "/run.json: checksum mismatch"), std::string::npos) << r.notes[0];
  EXPECT_NE(r.notes[1].find(c.results + "/filter.jsonl: checksum mismatch"), std::string::npos) << r.notes[1];
  EXPECT_EQ(r.filter_computed, 6);
  EXPECT_EQ(r.facts_traced, 0);
  EXPECT_FALSE(fs::exists(fs::path(c.results) / "traces" / "7_mlp.npz.tmp.999"));
  expect_same_bytes(whole_.results, c.results);
}

}  // namespace
