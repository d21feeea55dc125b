// `lowbit inspect MODEL [--json]`: architecture, config, every tensor with
// shape, type and bytes, and the total bits per weight.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"

namespace lowbit::cli {

Runner AddInspectCommand(CLI::App& app) {
  struct Options {
    ModelOptions model;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("inspect", "Show a model's config and tensors");
  AddModelOptions(*cmd, &o->model);
  cmd->add_flag("--json", o->json, "print a JSON report");
  return [o] {
    auto model = OpenModel(o->model);
    const ModelConfig& c = model->config;
    int64_t elements = 0, bytes = 0;
    for (const TensorView& t : model->tensors()) {
      elements += t.NumElements();
      bytes += int64_t(t.bytes);
    }
    const double bpw = elements > 0 ? 8.0 * double(bytes) / double(elements) : 0.0;
    if (o->json) {
      nlohmann::json j;
      j["path"] = model->path;
      j["format"] = model->source_format;
      j["arch"] = std::string(ArchName(c.arch));
      j["config"] = {{"dim", c.dim},           {"n_layers", c.n_layers},     {"n_heads", c.n_heads},
                     {"n_kv_heads", c.n_kv_heads}, {"head_dim", c.head_dim}, {"ffn_dim", c.ffn_dim},
                     {"vocab_size", c.vocab_size}, {"context_length", c.context_length},
                     {"norm_eps", c.norm_eps}, {"rope_theta", c.rope_theta},
                     {"rope_style", c.rope_style == RopeStyle::kInterleaved ? "interleaved" : "half"},
                     {"tied_output", c.tied_output}, {"qkv_bias", c.qkv_bias}};
      nlohmann::json tensors = nlohmann::json::array();
      for (const TensorView& t : model->tensors())
        tensors.push_back({{"name", t.name}, {"shape", t.shape}, {"type", std::string(DTypeName(t.type))},
                           {"bytes", t.bytes}});
      j["tensors"] = tensors;
      j["parameters"] = elements;
      j["bytes"] = bytes;
      j["bits_per_weight"] = bpw;
      PrintJson(j.dump(2));
      return;
    }
    fmt::print("{} ({})\n{}\n", model->path, model->source_format, c.ToString());
    fmt::print("tokenizer: {} tokens, bos {}, eos {}\n", model->tokenizer->vocab_size(), model->tokenizer->bos(),
               model->tokenizer->eos());
    fmt::print("{:<32} {:<16} {:<6} {:>12}\n", "tensor", "shape", "type", "bytes");
    for (const TensorView& t : model->tensors())
      fmt::print("{:<32} {:<16} {:<6} {:>12}\n", t.name, t.ShapeString(), DTypeName(t.type), t.bytes);
    fmt::print("{} tensors, {} parameters, {} bytes, {:.4f} bits per weight\n", model->tensors().size(), elements,
               bytes, bpw);
  };
}

}  // namespace lowbit::cli
