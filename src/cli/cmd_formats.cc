// `lowbit formats [--json]`: every storage format of the format table
// (formats/all_formats.h) with its facts: GGUF type id, whether llama.cpp
// loads it, block size and bytes, row header, bits per weight on a 4096 row,
// the activation format its dot products pair with, and its datasheet line.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "formats/format.h"

namespace lowbit::cli {

namespace {

// Bits per weight are quoted for rows of this length (a typical hidden size;
// formats with a per-row header cost slightly more on shorter rows).
constexpr int64_t kReportRow = 4096;

}  // namespace

Runner AddFormatsCommand(CLI::App& app) {
  auto json = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand("formats", "List every storage format with its layout facts");
  cmd->add_flag("--json", *json, "print a JSON array");
  return [json] {
    if (*json) {
      nlohmann::json out = nlohmann::json::array();
      for (const FormatInfo& f : AllFormats()) {
        out.push_back({{"name", std::string(f.name)},
                       {"gguf_type", f.gguf_type},
                       {"ggml_native", f.ggml_native},
                       {"weight_format", f.weight_format},
                       {"block_size", f.block_size},
                       {"block_bytes", f.block_bytes},
                       {"row_header_bytes", f.row_header_bytes},
                       {"bits_per_weight", f.BitsPerWeight(kReportRow)},
                       {"bits_per_weight_row", kReportRow},
                       {"activation", std::string(DTypeName(f.activation))},
                       {"rmse_gaussian", {f.rmse_lo, f.rmse_hi}},
                       {"datasheet", std::string(f.datasheet)}});
      }
      PrintJson(out.dump(2));
      return;
    }
    fmt::print("{:<18} {:>5} {:>6} {:>5} {:>5} {:>6} {:>8}  {:<17} {}\n", "format", "gguf", "native", "block", "bytes",
               "header", "bpw", "activation", "datasheet");
    for (const FormatInfo& f : AllFormats()) {
      fmt::print("{:<18} {:>5} {:>6} {:>5} {:>5} {:>6} {:>8.4f}  {:<17} {}{}\n", f.name, f.gguf_type,
                 f.ggml_native ? "yes" : "no", f.block_size, f.block_bytes, f.row_header_bytes,
                 f.BitsPerWeight(kReportRow), DTypeName(f.activation), f.weight_format ? "" : "(activations only) ",
                 f.datasheet);
    }
    fmt::print(
        "{} formats; bpw = bits per weight on a row of {}; native = llama.cpp loads it "
        "(lowbit-private GGUF ids are >= 1024)\n",
        AllFormats().size(), kReportRow);
  };
}

}  // namespace lowbit::cli
