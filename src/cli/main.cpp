// knowtrace command line: one CLI11 app, one function per subcommand.
#include <CLI/CLI.hpp>

#include <iostream>

#include "cli/commands.h"
#include "util/error.h"

int main(int argc, char** argv) {
  CLI::App app{"knowtrace: locate factual knowledge in language models by causal tracing"};
  app.require_subcommand(1);
  kt::cli::add_predict(app);
  kt::cli::add_inspect(app);
  kt::cli::add_trace(app);
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
