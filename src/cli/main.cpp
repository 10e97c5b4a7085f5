// knowtrace command line: one CLI11 app, one function per subcommand.
#include <CLI/CLI.hpp>

#include <ATen/Parallel.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>

#include "analysis/trace_file.h"
#include "cli/commands.h"
#include "pipeline/cluster.h"
#include "util/error.h"

namespace {

// An error on one MPI rank must stop the others, which may be waiting for it.
int fail(const std::string& msg) {
  std::cerr << "knowtrace: error: " << msg << "\n";
  if (kt::cluster().size > 1) kt::cluster_abort(1);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    kt::cluster_init(&argc, &argv);
  } catch (const kt::Error& e) {
    return fail(e.what());
  }
  // Debian's libtorch starts with one intra-op thread; use every core (shared
  // by the MPI ranks on this node) unless the user chose a count the usual way.
  if (!std::getenv("OMP_NUM_THREADS")) {
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    at::set_num_threads(static_cast<int>(std::max(1u, cores / static_cast<unsigned>(kt::cluster().local_size))));
  }
  CLI::App app{"knowtrace: locate factual knowledge in language models by causal tracing"};
  app.set_version_flag("--version", std::string("knowtrace ") + kt::kKnowtraceVersion);
  app.require_subcommand(1);
  kt::cli::add_predict(app);
  kt::cli::add_inspect(app);
  kt::cli::add_tokenize(app);
  kt::cli::add_trace(app);
  kt::cli::add_bench(app);
  kt::cli::add_run(app);
  kt::cli::add_plot(app);
  kt::cli::add_merge(app);
  kt::cli::add_export(app);
  int rc = 0;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    rc = app.exit(e);
  } catch (const kt::Error& e) {
    return fail(e.what());
  } catch (const std::exception& e) {
    // libtorch errors carry multi-line backtraces: keep the first line.
    const std::string msg = e.what();
    return fail(msg.substr(0, msg.find('\n')));
  }
  kt::cluster_finalize();
  return rc;
}
