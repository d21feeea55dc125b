// `lowbit compare MODEL --data FILE [--formats q8_0,q6_k,q4_k,q4_0] [--methods rtn,gptq,awq,hqq,awq+gptq]
//  [--imatrix STATS] [--calib-data FILE] [--calib-samples N] [--calib-seq-len L] [--ctx N] [--chunks K] [--bench-tokens P,N] [--tensor NAME] [--keep-models]
//  -o REPORT_DIR [--json]`: quantizes the model each way asked, measures every
// result on the same tokens, and writes report.md, report.json and report.html
// (report/compare.h).
#include <fmt/format.h>

#include <unistd.h>

#include <climits>

#include "cli/commands.h"
#include "core/error.h"
#include "report/compare.h"

namespace lowbit::cli {

Runner AddCompareCommand(CLI::App& app) {
  struct Options {
    ModelOptions model;
    report::CompareOptions c;
    std::vector<int> bench_tokens;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "compare", "Quantize a model several ways and compare size, perplexity, KLD and speed (md/json/html report)");
  AddModelOptions(*cmd, &o->model);
  cmd->add_option("--data,-f", o->c.data,
                  "text to evaluate on (its part after the evaluated chunks is the calibration text unless "
                  "--calib-data)")
      ->required();
  cmd->add_option("-o,--output", o->c.out_dir, "report folder (report.md, report.json, report.html)")->required();
  cmd->add_option("--formats", o->c.formats, "formats or llama.cpp presets, comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--methods", o->c.methods,
                  "quantization methods, comma-separated (rtn, rtn-mse, imatrix, hqq, gptq, awq, smoothquant, "
                  "awq+gptq, ...)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--imatrix", o->c.imatrix, "statistics for imatrix (default: collected from --data)");
  cmd->add_option("--calib-data", o->c.calib_data,
                  "calibration text for imatrix statistics and gptq/awq/smoothquant (default: --data after the "
                  "evaluated chunks)");
  cmd->add_option("--calib-samples", o->c.calib_samples, "calibration windows (imatrix statistics, gptq/awq/smoothquant)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--calib-seq-len", o->c.calib_seq_len, "tokens per calibration window (default: --ctx)")
      ->check(CLI::Range(2, 1 << 20));
  cmd->add_option("-c,--ctx", o->c.ctx, "tokens per chunk (default: min(256, model context))")
      ->check(CLI::Range(8, 1 << 20));
  cmd->add_option("--chunks", o->c.chunks, "at most this many chunks (0 = all)")
      ->check(CLI::Range(0, 1 << 30))
      ->capture_default_str();
  cmd->add_option("--bench-tokens", o->bench_tokens, "P,N: prompt and generated tokens of the speed test (0 skips)")
      ->delimiter(',')
      ->expected(2);
  cmd->add_option("--bench-reps", o->c.bench_reps, "speed-test repetitions")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("--tensor", o->c.tensor, "tensor whose weight histograms are drawn (default: blk.0.attn_q.weight)");
  cmd->add_flag("--keep-models", o->c.keep_models, "keep the quantized GGUF files in the report folder");
  cmd->add_flag("--json", o->json, "print report.json to stdout");
  return [o] {
    if (!o->bench_tokens.empty()) {
      if (o->bench_tokens[0] < 0 || o->bench_tokens[1] < 0) Fail("--bench-tokens: expected P,N >= 0");
      o->c.bench_prompt = o->bench_tokens[0];
      o->c.bench_gen = o->bench_tokens[1];
    }
    o->c.model = o->model.model;
    o->c.tokenizer = o->model.tokenizer;
    o->c.threads = o->model.threads;
    o->c.progress = !o->json;
    // Each variant quantizes in a child `lowbit quantize` so its peak RSS is its own.
    char self[PATH_MAX];
    const ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (len > 0) o->c.quantize_binary.assign(self, size_t(len));
    const report::CompareResult r = report::RunCompare(o->c);
    report::WriteCompareReport(r, o->c.out_dir);
    if (o->json) {
      PrintJson(report::CompareJson(r));
    } else {
      fmt::print("{}\nwrote {}/report.md, report.json, report.html\n", report::CompareMarkdown(r), o->c.out_dir);
    }
  };
}

}  // namespace lowbit::cli
