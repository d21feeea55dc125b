// `lowbit run MODEL [-p PROMPT] [-n N] [--temp T] [--top-k K] [--top-p P] [--seed S]`:
// generates text, streaming it to stdout, or prints a JSON report.
#include <algorithm>
#include <cstdio>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/activation_report.h"
#include "cli/commands.h"
#include "runtime/generate.h"

namespace lowbit::cli {

Runner AddRunCommand(CLI::App& app) {
  struct Options {
    ModelOptions model;
    std::string prompt;
    int n = 128;
    SamplerOptions sampler;
    int ctx = 0;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("run", "Generate text from a prompt");
  AddModelOptions(*cmd, &o->model);
  cmd->add_option("-p,--prompt", o->prompt, "prompt text (empty: start from BOS alone)");
  cmd->add_option("-n,--n-predict", o->n, "tokens to generate")->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--temp", o->sampler.temperature, "temperature; 0 = greedy")->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top-k", o->sampler.top_k, "keep the k most likely tokens (0 = all)")->check(CLI::Range(0, 1 << 24));
  cmd->add_option("--top-p", o->sampler.top_p, "nucleus sampling mass")->check(CLI::Range(1e-6, 1.0));
  cmd->add_option("--seed", o->sampler.seed, "random seed for sampling");
  cmd->add_option("-c,--ctx", o->ctx, "context size (default: the model's)")->check(CLI::Range(0, 1 << 20));
  cmd->add_flag("--json", o->json, "print a JSON report instead of streaming text");
  return [o] {
    auto model = OpenModel(o->model);
    SessionOptions so = MakeSessionOptions(o->model);
    so.max_context = o->ctx;
    if (o->ctx == 0) {
      // Default: the trained context, grown to fit prompt + generation (llama.cpp also
      // runs past n_ctx_train, with a warning).
      const int64_t need = int64_t(model->tokenizer->Encode(o->prompt, true).size()) + 1 + o->n;
      so.max_context = int(std::max<int64_t>(model->config.context_length, need));
      if (need > model->config.context_length)
        fmt::print(stderr, "warning: context {} is longer than the model's trained context {}\n", need,
                   model->config.context_length);
    }
    Session session(*model, so);
    Sampler sampler(o->sampler);
    auto stream = [&](const std::string& piece) {
      if (o->json) return;
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    };
    if (!o->json) {
      std::fwrite(o->prompt.data(), 1, o->prompt.size(), stdout);
      std::fflush(stdout);
    }
    GenerateResult r = Generate(session, o->prompt, o->n, sampler, stream);
    const double pp = r.prompt_seconds > 0 ? double(r.prompt_tokens.size()) / r.prompt_seconds : 0;
    const double tg = r.gen_seconds > 0 ? double(r.tokens.size()) / r.gen_seconds : 0;
    if (o->json) {
      nlohmann::json j;
      j["text"] = r.text;
      j["tokens"] = r.tokens;
      j["prompt_tokens"] = r.prompt_tokens.size();
      j["prompt_tokens_per_s"] = pp;
      j["gen_tokens_per_s"] = tg;
      if (const nlohmann::json a = ActivationsJson(*model); !a.is_null()) j["activations"] = a;
      PrintJson(j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
    } else {
      fmt::print("\n");
      fmt::print(stderr, "prompt: {} tokens, {:.1f} tokens/s | generated: {} tokens, {:.1f} tokens/s\n",
                 r.prompt_tokens.size(), pp, r.tokens.size(), tg);
      PrintActivationSummary(*model);
    }
  };
}

}  // namespace lowbit::cli
