// `lowbit compare`: quantizes one model each way asked (format or preset x
// method) and measures every result on the same tokens against the source:
// file bytes, bits per weight, perplexity (llama.cpp protocol) and its
// change, mean / p99 KLD and top-1 agreement (base log-probs computed once),
// pp/tg tokens/s (llama-bench protocol, small sizes), quantize seconds and
// peak RSS. The source model is the first row.
//
// Calibration (imatrix statistics, gptq/awq/smoothquant windows) never sees
// the evaluated tokens: it reads --calib-data, or else the part of --data
// after the evaluated chunks (their share of the text's bytes plus 10%, cut
// at a line end). Each variant's quantization can run as a child process
// (`lowbit quantize ... --json`, CompareOptions::quantize_binary), whose own
// peak RSS, read from wait4(), is that variant's peak memory. WriteCompareReport turns the
// result into report.md, report.json and a self-contained report.html with
// the figures of report/plots.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lowbit::report {

struct CompareOptions {
  std::string model;
  std::string tokenizer;                 // llama2.c checkpoints
  std::string data;                      // evaluation (and calibration) text
  std::string out_dir;                   // REPORT_DIR
  std::vector<std::string> formats = {"q8_0", "q6_k", "q4_k", "q4_0"};
  std::vector<std::string> methods = {"rtn"};
  std::string imatrix;                   // statistics file; empty: collected from the calibration text when asked
  std::string calib_data;                // calibration text; empty: `data` after the evaluated chunks
  int calib_samples = 32;                // calibration windows (imatrix statistics, gptq/awq/smoothquant)
  int calib_seq_len = 0;                 // <= 0: the evaluation ctx
  // The `lowbit` binary to run each variant's quantization in (a child
  // process: its peak RSS is the variant's own); empty: in this process.
  std::string quantize_binary;
  int ctx = 0;                           // <= 0: min(256, model context)
  int chunks = 8;                        // <= 0: all
  int bench_prompt = 64, bench_gen = 16, bench_reps = 2;  // 0 tokens: skip that part
  std::string tensor;                    // histogram tensor; empty: blk.0.attn_q.weight
  bool keep_models = false;
  int threads = 0;
  bool progress = true;
};

struct VariantTensorError {
  std::string name;
  std::string format;
  double rel_rmse = 0;
  double recon_error = -1;  // ||WX - Q(W)X||^2 / ||WX||^2 on calibration inputs (< 0: not measured)
};

struct VariantResult {
  std::string name;  // "f32 (source)", "q4_k", "q4_k+imatrix"
  std::string format, method;
  bool source = false;
  std::string file;  // quantized GGUF (removed unless keep_models)
  uint64_t file_bytes = 0;
  double bits_per_weight = 0;
  double ppl = 0, ppl_delta = 0, ppl_delta_pct = 0;
  double kld_mean = 0, kld_stderr = 0, kld_p99 = 0, kld_max = 0, top1 = 0;
  double pp_tokens_per_s = 0, tg_tokens_per_s = 0;
  double quantize_seconds = 0;
  uint64_t peak_rss_bytes = 0;  // the quantizing child's peak RSS (or this process's so far, monotonic over rows)
  bool rss_isolated = false;    // peak_rss_bytes is the child's own
  // GPTQ's time (gptq variants): Hessian accumulation, Cholesky, sweep, capture forwards.
  double gptq_hessian_s = 0, gptq_cholesky_s = 0, gptq_sweep_s = 0, gptq_forward_s = 0;
  int fallbacks = 0;
  std::vector<VariantTensorError> tensors;  // weight tensors in model order
  std::vector<float> histogram_values;      // the chosen tensor, dequantized (not in the JSON)
};

struct CompareResult {
  std::string model, data;
  int ctx = 0, chunks = 0;
  int64_t tokens_scored = 0;
  double ppl_source = 0;
  int bench_prompt = 0, bench_gen = 0, bench_reps = 0, threads = 0;
  std::string tensor;
  std::vector<float> tensor_original;
  std::string imatrix;  // statistics used ("" when none)
  std::string calibration;  // where the calibration windows came from ("" when none were needed)
  std::vector<VariantResult> rows;
};

// Runs the comparison; throws Error naming the file and problem (unknown
// format or method, missing tensor, too little data, ...). Writes quantized
// files and the KLD base under options.out_dir (created when missing).
CompareResult RunCompare(const CompareOptions& options);

std::string CompareMarkdown(const CompareResult& result);
std::string CompareJson(const CompareResult& result);
std::string CompareHtml(const CompareResult& result);
// Writes report.md, report.json and report.html into `dir`.
void WriteCompareReport(const CompareResult& result, const std::string& dir);

}  // namespace lowbit::report
