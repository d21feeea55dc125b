// `lowbit kld MODEL --save-base FILE --data TEXT [--ctx N]` stores a base
// model's log-probabilities; `lowbit kld MODEL --base FILE [--json]` compares
// another model on the same tokens.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/activation_report.h"
#include "cli/commands.h"
#include "core/error.h"
#include "eval/kld.h"

namespace lowbit::cli {

Runner AddKldCommand(CLI::App& app) {
  struct Options {
    ModelOptions model;
    std::string save_base, base, data;
    int ctx = 512;
    int chunks = 0;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("kld", "KL divergence of a model against a base model's stored log-probs");
  AddModelOptions(*cmd, &o->model);
  auto* save = cmd->add_option("--save-base", o->save_base, "write the base log-probs file (needs --data)");
  auto* base = cmd->add_option("--base", o->base, "compare against this base log-probs file");
  save->excludes(base);
  cmd->add_option("--data,-f", o->data, "text file to evaluate (with --save-base)");
  cmd->add_option("-c,--ctx", o->ctx, "tokens per chunk (with --save-base)")->check(CLI::Range(8, 1 << 20));
  cmd->add_option("--chunks", o->chunks, "at most this many chunks (0 = all)")->check(CLI::Range(0, 1 << 30));
  cmd->add_flag("--json", o->json, "print a JSON report");
  return [o] {
    if (o->save_base.empty() == o->base.empty()) Fail("kld: give exactly one of --save-base FILE or --base FILE");
    auto model = OpenModel(o->model);
    SessionOptions so = MakeSessionOptions(o->model);
    if (!o->save_base.empty()) {
      if (o->data.empty()) Fail("kld --save-base needs --data FILE");
      const ChunkPlan plan =
          PlanChunks(*model->tokenizer, ReadDataFile(o->data), Protocol::kLlamaCpp, o->ctx, o->chunks, o->data);
      so.max_context = plan.ctx;
      Session session(*model, so);
      SaveKldBase(session, plan, o->save_base, true);
      if (o->json) {
        nlohmann::json j;
        j["base"] = o->save_base;
        j["chunks"] = plan.chunks;
        j["ctx"] = plan.ctx;
        j["tokens"] = int64_t(plan.chunks) * plan.scored_per_chunk;
        PrintJson(j.dump(2));
      } else {
        fmt::print("saved base log-probs of {} chunks x {} scored tokens to {}\n", plan.chunks, plan.scored_per_chunk,
                   o->save_base);
      }
      return;
    }
    so.max_context = KldBaseContext(o->base);
    Session session(*model, so);
    const KldStats s = CompareKld(session, o->base, true);
    if (o->json) {
      nlohmann::json j;
      j["tokens"] = s.tokens;
      j["ppl"] = s.ppl;
      j["ppl_base"] = s.ppl_base;
      j["kld_mean"] = s.kld_mean;
      j["kld_stderr"] = s.kld_stderr;
      j["kld_median"] = s.kld_median;
      j["kld_p99"] = s.kld_p99;
      j["kld_max"] = s.kld_max;
      j["top1_agreement"] = s.top1_agreement;
      j["delta_p_mean"] = s.dp_mean;
      j["delta_p_rms"] = s.dp_rms;
      if (const nlohmann::json a = ActivationsJson(*model); !a.is_null()) j["activations"] = a;
      PrintJson(j.dump(2));
      return;
    }
    fmt::print("tokens scored:   {}\n", s.tokens);
    fmt::print("PPL(Q):          {:.6f}\nPPL(base):       {:.6f}\n", s.ppl, s.ppl_base);
    fmt::print("Mean KLD:        {:.6f} +/- {:.6f}\n", s.kld_mean, s.kld_stderr);
    fmt::print("Median KLD:      {:.6f}\n99.0% KLD:       {:.6f}\nMaximum KLD:     {:.6f}\n", s.kld_median,
               s.kld_p99, s.kld_max);
    fmt::print("Same top p:      {:.3f} +/- {:.3f} %\n", 100 * s.top1_agreement, 100 * s.top1_stderr);
    fmt::print("Mean dp:         {:.4f} +/- {:.4f} %\nRMS dp:          {:.4f} %\n", 100 * s.dp_mean,
               100 * s.dp_stderr, 100 * s.dp_rms);
    PrintActivationSummary(*model);
  };
}

}  // namespace lowbit::cli
