// Hugging Face tokenizer files: tokenizer.json (BPE model, GPT-2 byte-level or
// Llama-style with byte fallback) and GPT-2's vocab.json + merges.txt.
#include <nlohmann/json.hpp>

#include <utility>

#include "core/error.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/loaders.h"
#include "tokenizer/spm_tokenizer.h"
#include "tokenizer/utf8.h"

namespace lowbit {
namespace {

using nlohmann::json;
using MergeList = std::vector<std::pair<std::string, std::string>>;

// Token ids beyond this are taken as corrupt rather than allocated.
constexpr int64_t kMaxTokens = 1 << 24;

json ParseJson(std::string_view text, const std::string& name) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    Fail("{}: invalid JSON: {}", name, e.what());
  }
}

const json* Member(const json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

std::string StringMember(const json& object, const char* key, const std::string& name, const char* where) {
  const json* v = Member(object, key);
  if (v == nullptr) return "";
  if (!v->is_string()) Fail("{}: {}.{} is not a string", name, where, key);
  return v->get<std::string>();
}

bool BoolMember(const json& object, const char* key, bool fallback) {
  const json* v = Member(object, key);
  return v != nullptr && v->is_boolean() ? v->get<bool>() : fallback;
}

// The components of a normalizer/pre_tokenizer/decoder, with Sequences flattened.
void Flatten(const json* node, const char* list_key, std::vector<const json*>& out) {
  if (node == nullptr || !node->is_object()) return;
  const json* list = Member(*node, list_key);
  if (list != nullptr && list->is_array()) {
    for (const json& child : *list) Flatten(&child, list_key, out);
  } else {
    out.push_back(node);
  }
}

std::string TypeOf(const json& component) {
  const json* t = Member(component, "type");
  return t != nullptr && t->is_string() ? t->get<std::string>() : "";
}

// Splits "left right" at the first space after the first byte (as llama.cpp does).
std::pair<std::string, std::string> SplitMerge(std::string_view line, const std::string& name, size_t index) {
  const size_t space = line.size() > 1 ? line.find(' ', 1) : std::string_view::npos;
  if (space == std::string_view::npos || space + 1 >= line.size())
    Fail("{}: merge {} ('{}') is not two tokens separated by a space", name, index, line);
  return {std::string(line.substr(0, space)), std::string(line.substr(space + 1))};
}

MergeList ReadJsonMerges(const json& merges, const std::string& name) {
  MergeList out;
  out.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = merges[i];
    if (m.is_string()) {
      out.push_back(SplitMerge(m.get_ref<const std::string&>(), name, i));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      out.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      Fail("{}: model.merges[{}] is neither \"a b\" nor [\"a\", \"b\"]", name, i);
    }
  }
  return out;
}

// Places `text` at `id`, growing the table; a different text already there is an error.
void PlaceToken(std::vector<std::string>& tokens, std::vector<bool>& present, const json& id_value,
                const std::string& text, const std::string& name, const char* where) {
  if (!id_value.is_number_integer()) Fail("{}: {} token '{}' has no integer id", name, where, text);
  const int64_t id = id_value.get<int64_t>();
  if (id < 0 || id >= kMaxTokens) Fail("{}: {} token '{}' has id {}, out of range [0, {})", name, where, text, id, kMaxTokens);
  if (static_cast<size_t>(id) >= tokens.size()) {
    tokens.resize(id + 1);
    present.resize(id + 1, false);
  }
  if (present[id] && tokens[id] != text)
    Fail("{}: token id {} is given to both '{}' and '{}'", name, id, tokens[id], text);
  tokens[id] = text;
  present[id] = true;
}

void CheckDense(const std::vector<bool>& present, const std::string& name) {
  for (size_t i = 0; i < present.size(); ++i) {
    if (!present[i]) Fail("{}: no token has id {} (ids must run from 0 to {})", name, i, present.size() - 1);
  }
}

// A token name from tokenizer_config.json: a string or {"content": "..."}.
std::string ConfigToken(const json& config, const char* key) {
  const json* v = Member(config, key);
  if (v == nullptr) return "";
  if (v->is_string()) return v->get<std::string>();
  const json* content = Member(*v, "content");
  return content != nullptr && content->is_string() ? content->get<std::string>() : "";
}

}  // namespace

std::unique_ptr<Tokenizer> ParseTokenizerJson(std::string_view text, const std::string& name,
                                              std::string_view config_text) {
  const json root = ParseJson(text, name);
  if (!root.is_object()) Fail("{}: the top level is not a JSON object", name);
  const json* model = Member(root, "model");
  if (model == nullptr || !model->is_object()) Fail("{}: no \"model\" object", name);
  const std::string type = StringMember(*model, "type", name, "model");
  if (!type.empty() && type != "BPE") Fail("{}: model.type '{}' is not supported (only BPE)", name, type);
  const json* vocab_json = Member(*model, "vocab");
  if (vocab_json == nullptr || !vocab_json->is_object()) Fail("{}: model.vocab is missing or not an object", name);
  const json* merges_json = Member(*model, "merges");
  if (merges_json == nullptr || !merges_json->is_array()) Fail("{}: model.merges is missing or not an array", name);
  if (BoolMember(*model, "ignore_merges", false)) Fail("{}: model.ignore_merges is not supported", name);
  if (!StringMember(*model, "continuing_subword_prefix", name, "model").empty() ||
      !StringMember(*model, "end_of_word_suffix", name, "model").empty())
    Fail("{}: BPE subword prefixes/suffixes are not supported", name);

  // Which kind: byte-level (GPT-2) or U+2581 with byte fallback (Llama).
  std::vector<const json*> normalizers, pre_tokenizers, decoders;
  Flatten(Member(root, "normalizer"), "normalizers", normalizers);
  Flatten(Member(root, "pre_tokenizer"), "pretokenizers", pre_tokenizers);
  Flatten(Member(root, "decoder"), "decoders", decoders);
  bool byte_level = false, metaspace = BoolMember(*model, "byte_fallback", false);
  bool prepend = false;
  for (const json* c : pre_tokenizers) {
    const std::string t = TypeOf(*c);
    if (t == "ByteLevel") {
      byte_level = true;
      if (BoolMember(*c, "add_prefix_space", false)) Fail("{}: ByteLevel add_prefix_space is not supported", name);
      if (!BoolMember(*c, "use_regex", true)) Fail("{}: ByteLevel without use_regex is not supported", name);
    } else if (t == "Metaspace") {
      metaspace = true;
      const std::string scheme = StringMember(*c, "prepend_scheme", name, "pre_tokenizer");
      prepend = scheme.empty() ? BoolMember(*c, "add_prefix_space", true) : scheme != "never";
    } else {
      Fail("{}: pre_tokenizer '{}' is not supported (only GPT-2 ByteLevel or Metaspace)", name, t);
    }
  }
  for (const json* c : decoders) byte_level |= TypeOf(*c) == "ByteLevel";
  for (const json* c : normalizers) {
    const std::string t = TypeOf(*c);
    if (t == "Prepend" && StringMember(*c, "prepend", name, "normalizer") == kSpmSpace) {
      metaspace = prepend = true;
    } else if (t == "Replace" && StringMember(*c, "content", name, "normalizer") == kSpmSpace) {
      metaspace = true;
    } else {
      Fail("{}: normalizer '{}' is not supported", name, t);
    }
  }
  if (byte_level == metaspace)
    Fail("{}: cannot tell whether this is a GPT-2 byte-level or a Llama (U+2581) BPE tokenizer", name);

  Vocab vocab;
  std::vector<bool> present;
  for (auto it = vocab_json->begin(); it != vocab_json->end(); ++it)
    PlaceToken(vocab.tokens, present, it.value(), it.key(), name, "model.vocab");
  std::vector<std::pair<int32_t, bool>> added;  // id, special
  if (const json* list = Member(root, "added_tokens"); list != nullptr) {
    if (!list->is_array()) Fail("{}: added_tokens is not an array", name);
    for (const json& t : *list) {
      const json* content = Member(t, "content");
      const json* id = Member(t, "id");
      if (content == nullptr || !content->is_string() || id == nullptr)
        Fail("{}: an added_tokens entry lacks a string \"content\" or an \"id\"", name);
      PlaceToken(vocab.tokens, present, *id, content->get<std::string>(), name, "added_tokens");
      added.emplace_back(static_cast<int32_t>(id->get<int64_t>()), BoolMember(t, "special", false));
    }
  }
  CheckDense(present, name);
  vocab.types.assign(vocab.tokens.size(), TokenType::kNormal);
  if (metaspace) {
    for (size_t i = 0; i < vocab.tokens.size(); ++i) {
      if (ParseByteToken(vocab.tokens[i]) >= 0) vocab.types[i] = TokenType::kByte;
    }
  }
  for (auto [id, special] : added) vocab.types[id] = special ? TokenType::kControl : TokenType::kUserDefined;
  vocab.Finalize(name);  // builds the index used below

  // Special tokens: tokenizer_config.json, else the post-processor template, else the usual names.
  json config = json::object();
  if (!config_text.empty()) config = ParseJson(config_text, name + " (tokenizer_config.json)");
  std::string bos_text = ConfigToken(config, "bos_token"), eos_text = ConfigToken(config, "eos_token");
  std::string unk_text = StringMember(*model, "unk_token", name, "model");
  if (unk_text.empty()) unk_text = ConfigToken(config, "unk_token");
  vocab.add_bos = metaspace;
  if (const json* post = Member(root, "post_processor"); post != nullptr && TypeOf(*post) == "TemplateProcessing") {
    const json* single = Member(*post, "single");
    const json* first = single != nullptr && single->is_array() && !single->empty() ? &(*single)[0] : nullptr;
    const json* special = first != nullptr ? Member(*first, "SpecialToken") : nullptr;
    vocab.add_bos = special != nullptr;
    if (special != nullptr && bos_text.empty()) bos_text = StringMember(*special, "id", name, "post_processor");
  }
  vocab.add_bos = BoolMember(config, "add_bos_token", vocab.add_bos);
  vocab.add_eos = BoolMember(config, "add_eos_token", false);
  if (bos_text.empty()) bos_text = metaspace ? "<s>" : "<|endoftext|>";
  if (eos_text.empty()) eos_text = metaspace ? "</s>" : "<|endoftext|>";
  if (unk_text.empty() && metaspace) unk_text = "<unk>";
  vocab.bos = vocab.Find(bos_text);
  vocab.eos = vocab.Find(eos_text);
  vocab.unk = unk_text.empty() ? -1 : vocab.Find(unk_text);
  if (vocab.unk >= 0) vocab.types[vocab.unk] = TokenType::kUnknown;
  vocab.Finalize(name);

  const MergeList merges = ReadJsonMerges(*merges_json, name);
  if (byte_level) return std::make_unique<BpeTokenizer>(std::move(vocab), merges);
  MergeTable table(vocab, merges);
  return std::make_unique<SpmTokenizer>(std::move(vocab), prepend, std::move(table));
}

std::unique_ptr<Tokenizer> ParseGpt2VocabAndMerges(std::string_view vocab_text, std::string_view merges_text,
                                                   const std::string& vocab_name, const std::string& merges_name) {
  const json vocab_json = ParseJson(vocab_text, vocab_name);
  if (!vocab_json.is_object()) Fail("{}: not a JSON object of token -> id", vocab_name);
  Vocab vocab;
  std::vector<bool> present;
  for (auto it = vocab_json.begin(); it != vocab_json.end(); ++it)
    PlaceToken(vocab.tokens, present, it.value(), it.key(), vocab_name, "vocab");
  CheckDense(present, vocab_name);

  MergeList merges;
  size_t line_number = 0;
  for (size_t pos = 0; pos < merges_text.size();) {
    size_t end = merges_text.find('\n', pos);
    if (end == std::string_view::npos) end = merges_text.size();
    std::string_view line = merges_text.substr(pos, end - pos);
    pos = end + 1;
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || (line_number == 1 && line.starts_with("#version"))) continue;
    merges.push_back(SplitMerge(line, fmt::format("{}:{}", merges_name, line_number), merges.size()));
  }
  if (merges.empty()) Fail("{}: no merges", merges_name);

  vocab.types.assign(vocab.tokens.size(), TokenType::kNormal);
  vocab.Finalize(vocab_name);
  const int32_t end_of_text = vocab.Find("<|endoftext|>");
  if (end_of_text >= 0) vocab.types[end_of_text] = TokenType::kControl;
  vocab.bos = vocab.eos = end_of_text;
  vocab.Finalize(vocab_name);
  return std::make_unique<BpeTokenizer>(std::move(vocab), merges);
}

}  // namespace lowbit
