// `lowbit quantize MODEL -o OUT.gguf --format F [--method rtn|rtn-mse|imatrix|hqq|gptq|awq|smoothquant|awq+gptq...]
//  [--data FILE --samples N --seq-len L --seed S] [--act-order] [--static-groups] [--damp D] [--gptq-batch B]
//  [--awq-duo] [--no-awq-clip] [--sq-alpha A] [--imatrix STATS] [--keep REGEX]... [--tensor-type REGEX=FORMAT]...
//  [--output-tensor-type F] [--token-embedding-type F] [--pure]
//  [--prune magnitude:0.5|2:4] [--threads N] [--dry-run] [--json]
//  [--target-bpw B | --max-size BYTES] [--sensitivity RANKING.json | --data FILE]
//  [--candidates q2_k,q3_k,q4_k,q5_k,q6_k,q8_0] [--samples N] [--seq-len L]`
// The recipe, methods, block-by-block engine (quant/layerwise.h) and
// streaming writer live in quant/ (docs/QUANTIZE.md);
// with a budget the per-tensor formats come from quant/mixed_precision.h and
// --format only names the file's base type (default: the most used choice).
#include <fmt/format.h>

#include "cli/commands.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "calib/dataset.h"
#include "quant/layerwise.h"
#include "quant/method.h"
#include "quant/mixed_precision.h"
#include "quant/pipeline.h"

namespace lowbit::cli {

namespace {

// Measures or reads the sensitivities, solves the knapsack, and puts the
// per-tensor formats and the lowbit.recipe metadata into `q`.
template <typename Options>
void PlanMixed(const Options& o, const Model& model, QuantizeOptions* q) {
  MixedPrecisionOptions mo;
  mo.candidates = ParseFormatList(o.candidates, "--candidates");
  mo.target_bpw = o.target_bpw;
  mo.max_bytes = o.max_size;
  mo.threads = o.model.threads;
  mo.keep = q->recipe.keep;
  SensitivityRanking ranking;
  if (!o.sensitivity.empty()) {
    ranking = SensitivityRanking::FromJson(ReadFileToString(o.sensitivity), o.sensitivity);
  } else {
    const KldProbe probe = MakeCalibrationProbe(model, ReadDataFile(o.data), o.data,
                                                o.samples > 0 ? o.samples : kSensitivitySamples, o.seq_len, o.seed,
                                                MakeSessionOptions(o.model));
    ranking = MeasureSensitivity(model, probe, mo.candidates, o.model.threads, !o.json);
  }
  const MixedPrecisionPlan plan = PlanMixedPrecision(model, ranking, mo);
  q->recipe.tensor_formats = plan.TensorFormats();
  q->metadata.emplace_back("lowbit.recipe", plan.ToJson());
  if (q->recipe.format.empty()) {  // the base names the file: the format holding the most bytes
    std::map<std::string, uint64_t> bytes;
    for (const TensorChoice& t : plan.tensors) bytes[t.format] += t.bytes;
    q->recipe.format = std::max_element(bytes.begin(), bytes.end(), [](auto& a, auto& b) {
                         return a.second < b.second;
                       })->first;
  }
  if (!o.json) fmt::print("{}", plan.ToTable());
}

}  // namespace

Runner AddQuantizeCommand(CLI::App& app) {
  struct Options {
    ModelOptions model;
    QuantizeOptions q;
    std::string imatrix;
    std::vector<std::string> tensor_types;
    std::string prune;
    bool json = false;
    bool dry_run = false;
    double target_bpw = 0;
    uint64_t max_size = 0;
    std::string sensitivity;
    std::string data;
    std::string candidates = "q2_k,q3_k,q4_k,q5_k,q6_k,q8_0";
    int samples = 0;  // 0: kDefaultCalibrationSamples for calibrated methods, kSensitivitySamples for a budget
    int seq_len = 0;
    uint64_t seed = kDefaultCalibrationSeed;
    bool no_awq_clip = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("quantize", "Quantize a model into a GGUF file (formats, presets, methods)");
  AddModelOptions(*cmd, &o->model);
  cmd->add_option("-o,--output", o->q.output, "output .gguf file")->required();
  cmd->add_option("-f,--format", o->q.recipe.format,
                  "a weight format (lowbit formats) or a llama.cpp preset (Q4_K_M, Q5_K_S, Q3_K_L, Q2_K, Q8_0, ...)");
  cmd->add_option("-m,--method", o->q.method, fmt::format("quantization method: {}", MethodSpecHelp()));
  cmd->add_option("--imatrix", o->imatrix, "activation statistics (lowbit calibrate) for --method imatrix");
  cmd->add_option("--keep", o->q.recipe.keep, "leave tensors whose name matches REGEX in source precision");
  cmd->add_option("--tensor-type", o->tensor_types, "REGEX=FORMAT: quantize matching tensors to FORMAT (last wins)");
  cmd->add_option("--output-tensor-type", o->q.recipe.output_tensor_type, "format of output.weight");
  cmd->add_option("--token-embedding-type", o->q.recipe.token_embedding_type, "format of token_embd.weight");
  cmd->add_flag("--pure", o->q.recipe.pure, "no per-tensor mix: every quantizable tensor gets the preset's base type");
  cmd->add_option("--activations", o->q.activations.mode,
                  "activation quantization stored in the file: none, int8-dynamic, int8-static, llm.int8[:THRESHOLD]");
  cmd->add_option("--act-stats", o->q.activations.stats, "calibration statistics (lowbit calibrate) for int8-static");
  cmd->add_option("--act-observer", o->q.activations.observer,
                  "int8-static ranges from: minmax, ema, percentile, kl, mse (default minmax)");
  cmd->add_option("--prune", o->prune, "prune before quantizing: magnitude:FRACTION or 2:4");
  cmd->add_flag("--dry-run", o->dry_run, "print the recipe (format of every tensor) and write nothing");
  cmd->add_flag("--json", o->json, "print a JSON report");
  cmd->add_option("--target-bpw", o->target_bpw, "mixed precision: bits per weight budget of the tensor data")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-size", o->max_size, "mixed precision: budget in bytes of the tensor data");
  cmd->add_option("--sensitivity", o->sensitivity, "mixed precision: ranking JSON from lowbit sensitivity");
  cmd->add_option("--data", o->data,
                  "calibration text: for gptq/awq/smoothquant, and for mixed precision to measure the sensitivities on");
  cmd->add_option("--candidates", o->candidates, "mixed precision: formats to choose from (comma-separated)");
  cmd->add_option("--samples", o->samples,
                  fmt::format("calibration windows of --data (default {} for gptq/awq/smoothquant, {} for mixed "
                              "precision)",
                              kDefaultCalibrationSamples, kSensitivitySamples))
      ->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--seq-len", o->seq_len, "tokens per calibration window (default min(512, model context))")
      ->check(CLI::Range(2, 1 << 20));
  cmd->add_option("--seed", o->seed, "seed of the calibration windows")->capture_default_str();
  cmd->add_flag("--act-order", o->q.gptq.act_order, "gptq: sweep columns in order of decreasing Hessian diagonal");
  cmd->add_flag("--static-groups", o->q.gptq.static_groups, "gptq: every group's scales from the original weights");
  cmd->add_option("--damp", o->q.gptq.damp_percent, "gptq: dampening, fraction of the mean Hessian diagonal")
      ->check(CLI::Range(0.0, 10.0))
      ->capture_default_str();
  cmd->add_option("--gptq-batch", o->q.gptq.batch, "gptq: lazy-batch width in columns")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_flag("--awq-duo", o->q.awq.duo_scaling, "awq: duo scaling (activation and weight statistics)");
  cmd->add_flag("--no-awq-clip", o->no_awq_clip, "awq: skip the weight clipping search");
  cmd->add_option("--sq-alpha", o->q.smoothquant.alpha, "smoothquant: migration strength alpha")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  return [o] {
    const bool mixed = o->target_bpw > 0 || o->max_size > 0;
    if (!mixed && o->q.recipe.format.empty()) Fail("quantize: no format given (--format F, or a --target-bpw budget)");
    // Unknown method parts fail before the model is loaded.
    const MethodSpec spec = ParseMethodSpec(o->q.method);
    MakeQuantMethod(spec.base);
    if (spec.calibrated() && o->data.empty())
      Fail("quantize: --method {} quantizes block by block on calibration text: pass --data FILE (e.g. "
           "../shared/data/wikitext-2-raw/wiki.train.head-1MB.noblank.raw)",
           spec.name);
    if (mixed && o->sensitivity.empty() && o->data.empty())
      Fail("quantize: a --target-bpw/--max-size budget needs one of --sensitivity RANKING.json or --data FILE");
    if (mixed && !o->sensitivity.empty() && !o->data.empty() && !spec.calibrated())
      Fail("quantize: a --target-bpw/--max-size budget needs exactly one of --sensitivity RANKING.json or --data FILE");
    if (!mixed && !o->sensitivity.empty()) Fail("quantize: --sensitivity needs a budget (--target-bpw B or --max-size BYTES)");
    if (!mixed && !o->data.empty() && !spec.calibrated())
      Fail("quantize: --data is calibration text for gptq/awq/smoothquant or for a --target-bpw/--max-size budget; "
           "--method {} uses neither",
           spec.name);
    o->q.awq.clip_search = !o->no_awq_clip;
    if (spec.calibrated()) {
      o->q.calib_text = ReadDataFile(o->data);
      o->q.calib_source = o->data;
      o->q.calib_samples = o->samples > 0 ? o->samples : kDefaultCalibrationSamples;
      o->q.calib_seq_len = o->seq_len;
      o->q.calib_seed = o->seed;
    }
    for (const std::string& tt : o->tensor_types) {
      const size_t eq = tt.rfind('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == tt.size())
        Fail("--tensor-type '{}': expected REGEX=FORMAT", tt);
      o->q.recipe.tensor_types.emplace_back(tt.substr(0, eq), tt.substr(eq + 1));
    }
    o->q.prune = ParsePruneSpec(o->prune);
    o->q.threads = o->model.threads;
    o->q.progress = !o->json;
    std::unique_ptr<ImportanceSource> importance;
    if (!o->imatrix.empty()) importance = LoadImportance(o->imatrix);
    const std::unique_ptr<Model> model = OpenModel(o->model);
    if (mixed) PlanMixed(*o, *model, &o->q);  // with a calibrated method, --data serves both
    if (o->dry_run) {
      RecipeOptions ro = o->q.recipe;
      ro.has_imatrix = importance != nullptr;
      const Recipe r = PlanModelRecipe(*model, ro, /*file_tensors=*/true);
      for (const TensorPlan& t : r.tensors)
        fmt::print("{:<32} {:<10} {}\n", t.name, t.format->name, t.fallback.empty() ? t.rule : "FALLBACK " + t.fallback);
      return;
    }
    const QuantizeReport report = QuantizeModel(*model, o->q, importance.get());
    if (o->json) {
      PrintJson(report.ToJson());
    } else {
      fmt::print("{}", report.ToTable());
      fmt::print("wrote {} ({} bytes)\n", report.output, report.file_bytes);
    }
  };
}

}  // namespace lowbit::cli
