// knowtrace command line: one CLI11 app, one function per subcommand.
#include <CLI/CLI.hpp>

#include <ATen/Parallel.h>

#include <cstdlib>
#include <iostream>
#include <thread>

#include "cli/commands.h"
#include "util/error.h"

int main(int argc, char** argv) {
  // Debian's libtorch starts with one intra-op thread; use every core unless
  // the user chose a count the usual way.
  if (!std::getenv("OMP_NUM_THREADS")) at::set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  CLI::App app{"knowtrace: locate factual knowledge in language models by causal tracing"};
  app.require_subcommand(1);
  kt::cli::add_predict(app);
  kt::cli::add_inspect(app);
  kt::cli::add_trace(app);
  kt::cli::add_bench(app);
  kt::cli::add_run(app);
  kt::cli::add_plot(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const kt::Error& e) {
    std::cerr << "knowtrace: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    // libtorch errors carry multi-line backtraces: keep the first line.
    std::string msg = e.what();
    std::cerr << "knowtrace: error: " << msg.substr(0, msg.find('\n')) << "\n";
    return 1;
  }
  return 0;
}
