// lowbit: entry point. Parses the command line, runs one subcommand, and
// turns every lowbit::Error into "lowbit: error: ..." and exit code 1.
#include <cstdio>
#include <exception>

#include <fmt/format.h>

#include "cli/commands.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/mapped_file.h"

namespace lowbit::cli {

void AddModelOptions(CLI::App& cmd, ModelOptions* options) {
  cmd.add_option("MODEL", options->model, "GGUF file, llama2.c checkpoint or Hugging Face folder")->required();
  cmd.add_option("--tokenizer", options->tokenizer, "tokenizer.bin for a llama2.c checkpoint (default: beside it)");
  cmd.add_option("-t,--threads", options->threads, "worker threads (default: one per core)")
      ->check(CLI::Range(0, 1024));
  cmd.add_flag("--reference", options->reference,
               "run every matrix product on the scalar reference kernels (to check the fast paths)");
  cmd.add_flag("--no-pack", options->no_pack,
               "keep Q4_0/Q8_0/Q4_K weights in the file's row layout (no row-interleaved copy for the "
               "AVX-512 VNNI kernels)");
}

SessionOptions MakeSessionOptions(const ModelOptions& options) {
  SessionOptions so;
  so.threads = options.threads;
  so.reference = options.reference;
  so.pack_weights = !options.no_pack;
  return so;
}

std::unique_ptr<Model> OpenModel(const ModelOptions& options) { return LoadModel(options.model, options.tokenizer); }

std::string ReadDataFile(const std::string& path) {
  std::string text = ReadFileToString(path);
  if (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

void PrintJson(const std::string& json) { fmt::print("{}\n", json); }

}  // namespace lowbit::cli

int main(int argc, char** argv) {
  using namespace lowbit;
  CLI::App app{"lowbit: quantize, run and measure LLMs on CPU"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "lowbit 0.1.0");
  std::vector<std::pair<CLI::App*, cli::Runner>> commands;
  auto add = [&](cli::Runner (*adder)(CLI::App&)) {
    cli::Runner r = adder(app);
    commands.emplace_back(app.get_subcommands({}).back(), std::move(r));
  };
  add(cli::AddRunCommand);
  add(cli::AddPplCommand);
  add(cli::AddKldCommand);
  add(cli::AddInspectCommand);
  add(cli::AddSynthCommand);
  add(cli::AddBenchCommand);
  add(cli::AddFormatsCommand);
  add(cli::AddQuantizeCommand);
  add(cli::AddCalibrateCommand);
  add(cli::AddSensitivityCommand);
  add(cli::AddCompareCommand);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  InstallInterruptHandler();
  try {
    for (auto& [cmd, run] : commands)
      if (cmd->parsed()) run();
  } catch (const Error& e) {
    std::fflush(stdout);
    fmt::print(stderr, "lowbit: error: {}\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "lowbit: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "lowbit: error: {}\n", e.what());
    return 1;
  }
  return 0;
}
