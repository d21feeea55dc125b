// `lowbit quantize MODEL -o OUT.gguf --format F [--method rtn|rtn-mse|imatrix]
//  [--imatrix STATS] [--keep REGEX]... [--tensor-type REGEX=FORMAT]...
//  [--output-tensor-type F] [--token-embedding-type F] [--pure]
//  [--prune magnitude:0.5|2:4] [--threads N] [--dry-run] [--json]`
// The recipe, methods and streaming writer live in quant/ (docs/QUANTIZE.md).
#include <fmt/format.h>

#include "cli/commands.h"
#include "core/error.h"
#include "quant/method.h"
#include "quant/pipeline.h"

namespace lowbit::cli {

Runner AddQuantizeCommand(CLI::App& app) {
  struct Options {
    ModelOptions model;
    QuantizeOptions q;
    std::string imatrix;
    std::vector<std::string> tensor_types;
    std::string prune;
    bool json = false;
    bool dry_run = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("quantize", "Quantize a model into a GGUF file (formats, presets, methods)");
  AddModelOptions(*cmd, &o->model);
  cmd->add_option("-o,--output", o->q.output, "output .gguf file")->required();
  cmd->add_option("-f,--format", o->q.recipe.format,
                  "a weight format (lowbit formats) or a llama.cpp preset (Q4_K_M, Q5_K_S, Q3_K_L, Q2_K, Q8_0, ...)")
      ->required();
  cmd->add_option("-m,--method", o->q.method, fmt::format("quantization method: {}", QuantMethodNames()));
  cmd->add_option("--imatrix", o->imatrix, "activation statistics (lowbit calibrate) for --method imatrix");
  cmd->add_option("--keep", o->q.recipe.keep, "leave tensors whose name matches REGEX in source precision");
  cmd->add_option("--tensor-type", o->tensor_types, "REGEX=FORMAT: quantize matching tensors to FORMAT (last wins)");
  cmd->add_option("--output-tensor-type", o->q.recipe.output_tensor_type, "format of output.weight");
  cmd->add_option("--token-embedding-type", o->q.recipe.token_embedding_type, "format of token_embd.weight");
  cmd->add_flag("--pure", o->q.recipe.pure, "no per-tensor mix: every quantizable tensor gets the preset's base type");
  cmd->add_option("--prune", o->prune, "prune before quantizing: magnitude:FRACTION or 2:4");
  cmd->add_flag("--dry-run", o->dry_run, "print the recipe (format of every tensor) and write nothing");
  cmd->add_flag("--json", o->json, "print a JSON report");
  return [o] {
    for (const std::string& tt : o->tensor_types) {
      const size_t eq = tt.rfind('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == tt.size())
        Fail("--tensor-type '{}': expected REGEX=FORMAT", tt);
      o->q.recipe.tensor_types.emplace_back(tt.substr(0, eq), tt.substr(eq + 1));
    }
    o->q.prune = ParsePruneSpec(o->prune);
    o->q.threads = o->model.threads;
    o->q.progress = !o->json;
    MakeQuantMethod(o->q.method);  // unknown method: fail before loading the model
    std::unique_ptr<ImportanceSource> importance;
    if (!o->imatrix.empty()) importance = LoadImportance(o->imatrix);
    const std::unique_ptr<Model> model = OpenModel(o->model);
    if (o->dry_run) {
      RecipeOptions ro = o->q.recipe;
      ro.has_imatrix = importance != nullptr;
      const Recipe r = PlanModelRecipe(*model, ro);
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
