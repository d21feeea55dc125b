// `lowbit bench MODEL [-p 512] [-n 128] [-r REPS] [--threads N] [--json]`:
// llama-bench's pp/tg measurement (eval/bench.h) with the generation
// roofline beside it, as a llama-bench-like table or a JSON object.
#include <fmt/format.h>

#include <string>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "eval/bench.h"

namespace lowbit::cli {

Runner AddBenchCommand(CLI::App& app) {
  struct Options {
    ModelOptions model;
    BenchOptions bench;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("bench", "Measure prompt and generation speed against the memory roofline");
  AddModelOptions(*cmd, &o->model);
  cmd->add_option("-p,--n-prompt", o->bench.prompt_tokens, "prompt tokens, evaluated as one batch (0: skip)")
      ->check(CLI::Range(0, 1 << 16));
  cmd->add_option("-n,--n-gen", o->bench.gen_tokens, "generated tokens, one at a time (0: skip)")
      ->check(CLI::Range(0, 1 << 16));
  cmd->add_option("-r,--repetitions", o->bench.repetitions, "repetitions of each test after a warmup")
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--seed", o->bench.seed, "seed for the random token ids");
  cmd->add_flag("--json", o->json, "print a JSON report");
  return [o] {
    auto model = OpenModel(o->model);
    o->bench.threads = o->model.threads;
    o->bench.pack_weights = !o->model.no_pack;
    const BenchResult r = RunBench(*model, o->bench, [&](const std::string& s) {
      if (!o->json) fmt::print(stderr, "bench: {}\n", s);
    });
    if (o->json) {
      nlohmann::json j;
      j["model"] = model->path;
      j["threads"] = r.threads;
      j["packed_weights"] = o->bench.pack_weights;
      j["p"] = r.prompt_tokens;
      j["n"] = r.gen_tokens;
      j["repetitions"] = r.repetitions;
      j["pp_tokens_per_s"] = r.pp_tokens_per_s.mean;
      j["pp_tokens_per_s_stdev"] = r.pp_tokens_per_s.stdev;
      j["tg_tokens_per_s"] = r.tg_tokens_per_s.mean;
      j["tg_tokens_per_s_stdev"] = r.tg_tokens_per_s.stdev;
      j["model_bytes"] = r.model_bytes;
      j["bytes_per_token"] = r.bytes_per_token;
      j["read_bandwidth_gb_s"] = r.read_bandwidth_gb_s;
      j["read_bandwidth_peak_gb_s"] = r.read_bandwidth_peak_gb_s;
      j["tg_repetitions_tokens_per_s"] = r.tg_repetitions;
      j["bandwidth_windows_gb_s"] = r.bandwidth_windows_gb_s;
      j["tg_roofline_tokens_per_s"] = r.tg_roofline_tokens_per_s;
      j["roofline_fraction"] = r.roofline_fraction;
      j["roofline_fraction_paired"] = r.roofline_fraction_paired;
      PrintJson(j.dump(2));
      return;
    }
    int64_t params = 0;
    for (const TensorView& t : model->tensors()) params += t.NumElements();
    const std::string size = fmt::format("{:.2f} GiB", double(r.model_bytes) / double(1 << 30));
    const std::string count = fmt::format("{:.2f} M", double(params) / 1e6);
    fmt::print("| {:<40} | {:>10} | {:>10} | {:>7} | {:>8} | {:>20} |\n", "model", "size", "params", "threads", "test",
               "t/s");
    fmt::print("| {:-<40} | {:->10} | {:->10} | {:->7} | {:->8} | {:->20} |\n", "", "", "", "", "", "");
    auto row = [&](const std::string& test, const MeanStdev& s) {
      fmt::print("| {:<40} | {:>10} | {:>10} | {:>7} | {:>8} | {:>20} |\n", model->path, size, count, r.threads, test,
                 fmt::format("{:.2f} ± {:.2f}", s.mean, s.stdev));
    };
    if (r.prompt_tokens > 0) row(fmt::format("pp{}", r.prompt_tokens), r.pp_tokens_per_s);
    if (r.gen_tokens > 0) row(fmt::format("tg{}", r.gen_tokens), r.tg_tokens_per_s);
    const std::string window =
        r.gen_tokens > 0 ? std::string("as long as a tg repetition") : fmt::format("of {} s", kNoTgWindowSeconds);
    fmt::print("\nroofline: read bandwidth {:.2f} GB/s ({} threads, best window {}; fastest single pass {:.2f}) / "
               "{:.1f} MB read per token = {:.2f} t/s",
               r.read_bandwidth_gb_s, r.threads, window, r.read_bandwidth_peak_gb_s, double(r.bytes_per_token) / 1e6,
               r.tg_roofline_tokens_per_s);
    if (r.gen_tokens > 0)
      fmt::print("; tg reaches {:.1f}% of it ({:.1f}% of the bandwidth measured beside each repetition, median)",
                 100.0 * r.roofline_fraction, 100.0 * r.roofline_fraction_paired);
    fmt::print("\n");
  };
}

}  // namespace lowbit::cli
