// Each subcommand registers itself on the app and runs from its callback.
#pragma once
#include <CLI/CLI.hpp>

namespace kt::cli {

void add_predict(CLI::App& app);
void add_inspect(CLI::App& app);
void add_tokenize(CLI::App& app);
void add_trace(CLI::App& app);
void add_bench(CLI::App& app);
void add_run(CLI::App& app);
void add_plot(CLI::App& app);
void add_merge(CLI::App& app);
void add_export(CLI::App& app);

}  // namespace kt::cli
