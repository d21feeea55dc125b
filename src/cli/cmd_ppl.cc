// `lowbit ppl MODEL --data FILE [--ctx N] [--protocol llamacpp|gptq] [--chunks K] [--json]`.
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "cli/activation_report.h"
#include "cli/commands.h"
#include "eval/perplexity.h"

namespace lowbit::cli {

Runner AddPplCommand(CLI::App& app) {
  struct Options {
    ModelOptions model;
    std::string data;
    int ctx = 512;
    std::string protocol = "llamacpp";
    int chunks = 0;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("ppl", "Perplexity of a model on a text file");
  AddModelOptions(*cmd, &o->model);
  cmd->add_option("--data,-f", o->data, "text file (e.g. wiki.test.raw)")->required();
  cmd->add_option("-c,--ctx", o->ctx, "tokens per chunk / window")->check(CLI::Range(8, 1 << 20));
  cmd->add_option("--protocol", o->protocol, "llamacpp (second half of each chunk scored) or gptq (all)")
      ->check(CLI::IsMember({"llamacpp", "gptq"}));
  cmd->add_option("--chunks", o->chunks, "evaluate at most this many chunks (0 = all)")->check(CLI::Range(0, 1 << 30));
  cmd->add_flag("--json", o->json, "print a JSON report");
  return [o] {
    auto model = OpenModel(o->model);
    const std::string text = ReadDataFile(o->data);
    const ChunkPlan plan = PlanChunks(*model->tokenizer, text, ParseProtocol(o->protocol), o->ctx, o->chunks, o->data);
    if (plan.ctx > model->config.context_length && !o->json)
      fmt::print(stderr, "warning: ctx {} is longer than the model's trained context {}\n", plan.ctx,
                 model->config.context_length);
    SessionOptions so = MakeSessionOptions(o->model);
    so.max_context = plan.ctx;
    Session session(*model, so);
    const PerplexityResult r = Perplexity(session, plan, /*progress=*/true);
    if (o->json) {
      nlohmann::json j;
      j["ppl"] = r.ppl;
      j["stderr"] = r.ppl_stderr;
      j["tokens"] = r.tokens;
      j["chunks"] = r.chunks;
      j["ctx"] = plan.ctx;
      j["protocol"] = o->protocol;
      if (const nlohmann::json a = ActivationsJson(*model); !a.is_null()) j["activations"] = a;
      PrintJson(j.dump(2));
    } else {
      fmt::print("{} chunks of {} tokens, {} scored predictions ({} protocol)\n", r.chunks, plan.ctx, r.tokens,
                 o->protocol);
      fmt::print("Final estimate: PPL = {:.4f} +/- {:.5f}\n", r.ppl, r.ppl_stderr);
      PrintActivationSummary(*model);
    }
  };
}

}  // namespace lowbit::cli
