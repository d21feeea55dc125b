// Tokenizers from GGUF metadata, with llama.cpp's defaults for missing keys.
#include "core/error.h"
#include "io/gguf.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/spm_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace lowbit {
namespace {

// Special ids are often written as uint32, with 0xFFFFFFFF meaning "none".
int32_t SpecialId(const GgufFile& file, const char* key, int32_t fallback) {
  const int64_t id = file.GetInt(key, fallback);
  if (id == 0xFFFFFFFFll || id == -1) return -1;
  if (id < 0 || id > INT32_MAX) Fail("{}: {} = {} is not a token id", file.name(), key, id);
  return static_cast<int32_t>(id);
}

bool GetBool(const GgufFile& file, const char* key, bool fallback) { return file.GetInt(key, fallback) != 0; }

}  // namespace

std::unique_ptr<Tokenizer> LoadTokenizerFromGguf(const GgufFile& file) {
  const std::string& name = file.name();
  const std::string model = file.GetString("tokenizer.ggml.model");
  Vocab vocab;
  vocab.tokens = file.GetStringArray("tokenizer.ggml.tokens");
  if (file.Has("tokenizer.ggml.scores")) {
    for (double s : file.GetFloatArray("tokenizer.ggml.scores")) vocab.scores.push_back(static_cast<float>(s));
  }
  if (file.Has("tokenizer.ggml.token_type")) {
    for (int64_t t : file.GetIntArray("tokenizer.ggml.token_type")) {
      if (t < 0 || t > 6) Fail("{}: tokenizer.ggml.token_type holds {}, not a token type (0..6)", name, t);
      vocab.types.push_back(static_cast<TokenType>(t));
    }
  }
  vocab.add_eos = GetBool(file, "tokenizer.ggml.add_eos_token", false);

  if (model == "llama") {
    vocab.bos = SpecialId(file, "tokenizer.ggml.bos_token_id", 1);
    vocab.eos = SpecialId(file, "tokenizer.ggml.eos_token_id", 2);
    vocab.unk = SpecialId(file, "tokenizer.ggml.unknown_token_id", 0);
    vocab.add_bos = GetBool(file, "tokenizer.ggml.add_bos_token", true);
    if (vocab.types.empty()) {
      // Without types llama.cpp would print byte tokens literally; recognise them instead.
      vocab.types.assign(vocab.tokens.size(), TokenType::kNormal);
      for (size_t i = 0; i < vocab.tokens.size(); ++i) {
        if (ParseByteToken(vocab.tokens[i]) >= 0) vocab.types[i] = TokenType::kByte;
      }
    }
    vocab.Finalize(name);
    const bool add_space_prefix = GetBool(file, "tokenizer.ggml.add_space_prefix", true);
    return std::make_unique<SpmTokenizer>(std::move(vocab), add_space_prefix);
  }
  if (model == "gpt2") {
    const std::string pre = file.GetString("tokenizer.ggml.pre", "gpt-2");
    if (pre != "gpt-2" && pre != "gpt2" && pre != "default")
      Fail("{}: tokenizer.ggml.pre '{}' is not supported (only the GPT-2 pre-tokenizer)", name, pre);
    vocab.bos = SpecialId(file, "tokenizer.ggml.bos_token_id", -1);
    vocab.eos = SpecialId(file, "tokenizer.ggml.eos_token_id", -1);
    vocab.unk = SpecialId(file, "tokenizer.ggml.unknown_token_id", -1);
    vocab.add_bos = GetBool(file, "tokenizer.ggml.add_bos_token", false);
    if (!file.Has("tokenizer.ggml.merges")) Fail("{}: GPT-2 vocab without tokenizer.ggml.merges", name);
    std::vector<std::pair<std::string, std::string>> merges;
    const std::vector<std::string> lines = file.GetStringArray("tokenizer.ggml.merges");
    merges.reserve(lines.size());
    for (size_t i = 0; i < lines.size(); ++i) {
      const std::string& line = lines[i];
      const size_t space = line.size() > 1 ? line.find(' ', 1) : std::string::npos;
      if (space == std::string::npos || space + 1 >= line.size())
        Fail("{}: tokenizer.ggml.merges[{}] ('{}') is not two tokens separated by a space", name, i, line);
      merges.emplace_back(line.substr(0, space), line.substr(space + 1));
    }
    vocab.Finalize(name);
    return std::make_unique<BpeTokenizer>(std::move(vocab), merges);
  }
  Fail("{}: tokenizer.ggml.model '{}' is not supported (expected 'llama' or 'gpt2')", name, model);
}

}  // namespace lowbit
