// The `lowbit` subcommands. Each cmd_*.cc registers one subcommand on the
// CLI11 app and returns the callback that runs it after parsing.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <string>

#include "model/model.h"
#include "runtime/session.h"

namespace lowbit::cli {

using Runner = std::function<void()>;

Runner AddRunCommand(CLI::App& app);
Runner AddPplCommand(CLI::App& app);
Runner AddKldCommand(CLI::App& app);
Runner AddInspectCommand(CLI::App& app);
Runner AddSynthCommand(CLI::App& app);
Runner AddBenchCommand(CLI::App& app);
Runner AddFormatsCommand(CLI::App& app);
Runner AddQuantizeCommand(CLI::App& app);
Runner AddCalibrateCommand(CLI::App& app);
Runner AddSensitivityCommand(CLI::App& app);
Runner AddCompareCommand(CLI::App& app);

// Options every model-consuming command shares.
struct ModelOptions {
  std::string model;
  std::string tokenizer;  // llama2.c checkpoints: explicit tokenizer.bin
  int threads = 0;
  bool reference = false;  // --reference: scalar reference kernels for every matrix product
  bool no_pack = false;    // --no-pack: no row-interleaved weight copies (SessionOptions::pack_weights)
};
void AddModelOptions(CLI::App& cmd, ModelOptions* options);
std::unique_ptr<Model> OpenModel(const ModelOptions& options);
// Session options carrying --threads and --reference.
SessionOptions MakeSessionOptions(const ModelOptions& options);

// Reads a text data file as llama.cpp's -f does (one trailing newline dropped).
std::string ReadDataFile(const std::string& path);

// Prints a JSON object to stdout followed by a newline.
void PrintJson(const std::string& json);

}  // namespace lowbit::cli
