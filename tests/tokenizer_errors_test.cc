// Tokenizer loaders on corrupt and unusual input: every problem is an Error
// naming the file; plus hand-built vocabs for special-token splitting.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/gguf.h"
#include "test_util.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/loaders.h"
#include "tokenizer/tokenizer.h"

namespace lowbit {
namespace {

using ::lowbit::testing::SharedPath;

constexpr const char* kTok512 = "models/stories260K/tok512.bin";

std::span<const uint8_t> Bytes(const std::string& s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

// Runs `fn`, expecting an Error whose message contains every one of `parts`.
template <typename Fn>
void ExpectError(Fn&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown; expected one mentioning '" << *parts.begin() << "'";
  } catch (const Error& e) {
    for (const std::string& part : parts)
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << "'" << e.what() << "' lacks '" << part << "'";
  }
}

std::string TempPath(const std::string& name) { return ::testing::TempDir() + "lowbit_tok_" + name; }

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

// ---- llama2.c tokenizer.bin ----

std::string Tok512() { return ReadTokenizerFile(SharedPath(kTok512)); }

TEST(TokenizerErrors, Llama2cTruncatedAnywhere) {
  LOWBIT_REQUIRE_SHARED(kTok512);
  const std::string full = Tok512();
  const std::string path = TempPath("truncated.bin");
  for (size_t cut : {size_t{0}, size_t{3}, size_t{4}, size_t{9}, size_t{20}, full.size() / 2, full.size() - 1}) {
    WriteFile(path, full.substr(0, cut));
    ExpectError([&] { LoadLlama2cTokenizer(path, 512); }, {path, "truncated"});
  }
}

TEST(TokenizerErrors, Llama2cBadFields) {
  LOWBIT_REQUIRE_SHARED(kTok512);
  const std::string full = Tok512();
  std::string bad = full;
  const int32_t negative = -5;
  std::memcpy(bad.data() + 8, &negative, 4);  // length of token 0
  ExpectError([&] { ParseLlama2cVocab(Bytes(bad), "neg.bin", 512); }, {"neg.bin", "token 0", "negative length -5"});
  bad = full;
  std::memcpy(bad.data(), &negative, 4);
  ExpectError([&] { ParseLlama2cVocab(Bytes(bad), "max.bin", 512); }, {"max.bin", "max_token_length -5"});
  bad = full;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(bad.data() + 4, &nan, 4);
  ExpectError([&] { ParseLlama2cVocab(Bytes(bad), "nan.bin", 512); }, {"nan.bin", "non-finite score"});
  ExpectError([&] { ParseLlama2cVocab(Bytes(full), "small.bin", 100); }, {"small.bin", "left after 100 tokens"});
  ExpectError([&] { ParseLlama2cVocab(Bytes(full), "big.bin", 513); }, {"big.bin", "truncated", "token 512"});
  ExpectError([&] { ParseLlama2cVocab(Bytes(full), "x.bin", -1); }, {"x.bin", "negative"});
  EXPECT_EQ(ParseLlama2cVocab(Bytes(full), "all.bin", 0)->vocab_size(), 512);
  ExpectError([&] { LoadLlama2cTokenizer(TempPath("does-not-exist.bin"), 512); }, {"does-not-exist.bin", "not found"});
}

// ---- SentencePiece tokenizer.model ----

// Protobuf writer for hand-made models.
void Varint(std::string& out, uint64_t v) {
  for (; v >= 0x80; v >>= 7) out += static_cast<char>(v | 0x80);
  out += static_cast<char>(v);
}
void Field(std::string& out, int field, int wire) { Varint(out, static_cast<uint64_t>(field) << 3 | wire); }
void Bytes(std::string& out, int field, const std::string& payload) {
  Field(out, field, 2);
  Varint(out, payload.size());
  out += payload;
}
std::string Piece(const std::string& text, float score, int type) {
  std::string p;
  Bytes(p, 1, text);
  Field(p, 2, 5);
  char f[4];
  std::memcpy(f, &score, 4);
  p.append(f, 4);
  Field(p, 3, 0);
  Varint(p, type);
  return p;
}

// <unk> <s> </s>, bytes, then "a", "b", "ab", a user-defined "<tag>" and "▁".
std::string TinySentencePieceModel(int64_t bos_id, bool add_dummy_prefix) {
  std::string model;
  Bytes(model, 1, Piece("<unk>", 0, 2));
  Bytes(model, 1, Piece("<s>", 0, 3));
  Bytes(model, 1, Piece("</s>", 0, 3));
  for (int b = 0; b < 256; ++b) Bytes(model, 1, Piece(fmt::format("<0x{:02X}>", b), 0, 6));
  Bytes(model, 1, Piece("a", -1, 1));
  Bytes(model, 1, Piece("b", -2, 1));
  Bytes(model, 1, Piece("ab", -3, 1));
  Bytes(model, 1, Piece("<tag>", 0, 4));
  Bytes(model, 1, Piece("\xE2\x96\x81", -4, 1));
  std::string trainer;
  Field(trainer, 41, 0);
  Varint(trainer, static_cast<uint64_t>(bos_id));  // negative ids are sign-extended
  Bytes(model, 2, trainer);
  std::string normalizer;
  Field(normalizer, 3, 0);
  Varint(normalizer, add_dummy_prefix);
  Bytes(model, 3, normalizer);
  return model;
}

TEST(TokenizerSentencePiece, HandMadeModel) {
  auto tok = ParseSentencePieceModel(Bytes(TinySentencePieceModel(1, true)), "tiny.model");
  ASSERT_EQ(tok->vocab_size(), 264);
  const int32_t a = 259, ab = 261, tag = 262, space = 263;
  EXPECT_EQ(tok->Encode("ab", true), (std::vector<int32_t>{1, space, ab}));
  // User-defined tokens split the text even without parse_special; the dummy prefix follows them.
  EXPECT_EQ(tok->Encode("a<tag>a", false), (std::vector<int32_t>{space, a, tag, space, a}));
  // No piece for "c": byte fallback.
  EXPECT_EQ(tok->Encode("c", false), (std::vector<int32_t>{space, 3 + 'c'}));
  EXPECT_EQ(tok->Decode(tok->Encode("ab c<tag>", true)), "ab c<tag>");

  auto no_bos = ParseSentencePieceModel(Bytes(TinySentencePieceModel(-1, false)), "nobos.model");
  EXPECT_EQ(no_bos->bos(), -1);
  EXPECT_EQ(no_bos->Encode("ab", true), (std::vector<int32_t>{ab}));
}

TEST(TokenizerErrors, SentencePieceCorrupt) {
  const std::string model = TinySentencePieceModel(1, true);
  for (size_t cut = 1; cut < model.size(); cut += 97) {
    std::string part = model.substr(0, cut);
    try {
      ParseSentencePieceModel(Bytes(part), "cut.model");  // a cut between pieces is a valid smaller model
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("cut.model"), std::string::npos) << e.what();
    }
  }
  ExpectError([&] { ParseSentencePieceModel(Bytes(model.substr(0, model.size() - 1)), "t.model"); },
              {"t.model", "truncated"});
  ExpectError([&] { ParseSentencePieceModel(Bytes(""), "empty.model"); }, {"empty.model", "no pieces"});
  ExpectError([&] { ParseSentencePieceModel(Bytes(TinySentencePieceModel(999, true)), "bos.model"); },
              {"bos.model", "BOS token id 999 is out of range"});
  std::string bad_type;
  Bytes(bad_type, 1, Piece("x", 0, 9));
  ExpectError([&] { ParseSentencePieceModel(Bytes(bad_type), "type.model"); }, {"type.model", "type 9"});
  std::string wrong_wire;
  Field(wrong_wire, 1, 0);
  Varint(wrong_wire, 5);
  ExpectError([&] { ParseSentencePieceModel(Bytes(wrong_wire), "wire.model"); }, {"wire.model", "wire type"});
  ExpectError([&] { ParseSentencePieceModel(Bytes("\xff\xff\xff"), "junk.model"); }, {"junk.model"});
  ExpectError([&] { ParseSentencePieceModel(Bytes(std::string(12, '\xff')), "long.model"); }, {"long.model"});
}

TEST(TokenizerErrors, Llama2TokenizerModelTruncated) {
  LOWBIT_REQUIRE_SHARED("tokenizers/llama2/tokenizer.model");
  const std::string full = ReadTokenizerFile(SharedPath("tokenizers/llama2/tokenizer.model"));
  for (size_t cut : {size_t{1}, size_t{2}, size_t{100}, full.size() / 3, full.size() - 1}) {
    ExpectError([&] { ParseSentencePieceModel(Bytes(full.substr(0, cut)), "llama2.model"); },
                {"llama2.model", "truncated"});
  }
}

// ---- tokenizer.json / vocab.json + merges.txt ----

// A byte-level vocab of the 256 byte symbols, "ab" (merge a b) and `added`.
std::string TinyByteLevelJson(const std::string& added) {
  nlohmann::json vocab = nlohmann::json::object();
  const auto& table = ByteToUnicode();
  for (int b = 0; b < 256; ++b) vocab[table[b]] = b;
  vocab["ab"] = 256;
  nlohmann::json root = {
      {"added_tokens", nlohmann::json::parse(added)},
      {"pre_tokenizer", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"a b"}}}},
  };
  return root.dump();
}

TEST(TokenizerJson, AddedTokens) {
  auto tok = ParseTokenizerJson(TinyByteLevelJson(R"([{"id": 257, "content": "<tag>", "special": false},
                                                      {"id": 258, "content": "<|endoftext|>", "special": true}])"),
                                "tiny.json");
  ASSERT_EQ(tok->kind(), TokenizerKind::kBpe);
  EXPECT_EQ(tok->bos(), 258);
  EXPECT_EQ(tok->Encode("ab<tag>a", false), (std::vector<int32_t>{256, 257, 'a'}));
  // Control tokens are not parsed from text (parse_special=false).
  EXPECT_EQ(tok->Encode("<|endoftext|>", false).size(), 13u);
  EXPECT_EQ(tok->TokenToPiece(258), "");
  EXPECT_EQ(tok->TokenToPiece(257), "<tag>");
  EXPECT_EQ(tok->Decode(tok->Encode("x ab\xff<tag>\n", false)), "x ab\xff<tag>\n");  // invalid UTF-8 too
}

TEST(TokenizerErrors, TokenizerJson) {
  auto json_error = [](const std::string& text, std::initializer_list<std::string> parts) {
    ExpectError([&] { ParseTokenizerJson(text, "tok.json"); }, parts);
  };
  json_error("{", {"tok.json", "invalid JSON"});
  json_error("[]", {"tok.json", "not a JSON object"});
  json_error(R"({"model": {"type": "WordPiece", "vocab": {}}})", {"tok.json", "WordPiece", "not supported"});
  json_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}}})", {"tok.json", "merges"});
  json_error(R"({"model": {"type": "BPE", "merges": []}})", {"tok.json", "model.vocab"});
  json_error(R"({"pre_tokenizer": {"type": "ByteLevel"}, "model": {"vocab": {"a": -1}, "merges": []}})",
             {"tok.json", "id -1", "out of range"});
  json_error(R"({"pre_tokenizer": {"type": "ByteLevel"}, "model": {"vocab": {"a": 1073741824}, "merges": []}})",
             {"tok.json", "out of range"});
  json_error(R"({"pre_tokenizer": {"type": "ByteLevel"}, "model": {"vocab": {"a": 0, "b": 2}, "merges": []}})",
             {"tok.json", "no token has id 1"});
  json_error(R"({"pre_tokenizer": {"type": "ByteLevel"}, "model": {"vocab": {"a": "x"}, "merges": []}})",
             {"tok.json", "no integer id"});
  json_error(R"({"pre_tokenizer": {"type": "ByteLevel"}, "model": {"vocab": {"a": 0}, "merges": ["ab"]}})",
             {"tok.json", "merge 0"});
  json_error(R"({"pre_tokenizer": {"type": "ByteLevel"}, "model": {"vocab": {"a": 0}, "merges": [7]}})",
             {"tok.json", "merges[0]"});
  json_error(R"({"pre_tokenizer": {"type": "ByteLevel"},
                 "added_tokens": [{"id": 0, "content": "b"}], "model": {"vocab": {"a": 0}, "merges": []}})",
             {"tok.json", "token id 0 is given to both"});
  json_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})", {"tok.json", "cannot tell"});
  json_error(R"({"pre_tokenizer": {"type": "Split"}, "model": {"vocab": {"a": 0}, "merges": []}})",
             {"tok.json", "Split"});
  ExpectError([&] { ParseTokenizerJson(TinyByteLevelJson("[]"), "tok.json", "{oops"); },
              {"tokenizer_config.json", "invalid JSON"});
}

TEST(TokenizerErrors, VocabAndMerges) {
  ExpectError([&] { ParseGpt2VocabAndMerges("{\"a\": 0", "a b", "v.json", "m.txt"); }, {"v.json", "invalid JSON"});
  ExpectError([&] { ParseGpt2VocabAndMerges("{\"a\": 0}", "#version: 0.2\n", "v.json", "m.txt"); },
              {"m.txt", "no merges"});
  ExpectError([&] { ParseGpt2VocabAndMerges("{\"a\": 0}", "#version: 0.2\na b\nab\n", "v.json", "m.txt"); },
              {"m.txt:3", "not two tokens"});

  const std::string dir = TempPath("vocab_only");
  std::filesystem::create_directories(dir);
  WriteFile(dir + "/vocab.json", "{\"a\": 0}");
  ExpectError([&] { LoadTokenizerFromHfFolder(dir); }, {dir, "merges.txt"});
  const std::string empty = TempPath("empty_dir");
  std::filesystem::create_directories(empty);
  ExpectError([&] { LoadTokenizerFromHfFolder(empty); }, {empty, "no tokenizer.json"});
  ExpectError([&] { LoadTokenizerFromHfFolder(TempPath("missing_dir")); }, {"missing_dir", "not a directory"});
  const std::string bad = TempPath("bad_json_dir");
  std::filesystem::create_directories(bad);
  WriteFile(bad + "/tokenizer.json", "{\"model\": ");
  ExpectError([&] { LoadTokenizerFromHfFolder(bad); }, {"tokenizer.json", "invalid JSON"});
}

// ---- GGUF metadata ----

// Minimal GGUF v3 writer: metadata only, no tensors.
class GgufBuilder {
 public:
  GgufBuilder& Str(const std::string& key, const std::string& value) {
    Key(key, 8);
    String(value);
    return *this;
  }
  GgufBuilder& U32(const std::string& key, uint32_t value) {
    Key(key, 4);
    Raw(value);
    return *this;
  }
  GgufBuilder& Strings(const std::string& key, const std::vector<std::string>& values) {
    Key(key, 9);
    Raw(uint32_t{8});
    Raw(uint64_t{values.size()});
    for (const auto& v : values) String(v);
    return *this;
  }
  GgufBuilder& Ints(const std::string& key, const std::vector<int32_t>& values) {
    Key(key, 9);
    Raw(uint32_t{5});
    Raw(uint64_t{values.size()});
    for (int32_t v : values) Raw(v);
    return *this;
  }
  std::string Build() const {
    std::string out = "GGUF";
    auto raw = [&](auto v) { out.append(reinterpret_cast<const char*>(&v), sizeof(v)); };
    raw(uint32_t{3});
    raw(uint64_t{0});
    raw(uint64_t{count_});
    out += body_;
    out.resize((out.size() + 31) / 32 * 32, '\0');
    return out;
  }

 private:
  template <typename T>
  void Raw(T v) {
    body_.append(reinterpret_cast<const char*>(&v), sizeof(v));
  }
  void String(const std::string& s) {
    Raw(uint64_t{s.size()});
    body_ += s;
  }
  void Key(const std::string& key, uint32_t type) {
    String(key);
    Raw(type);
    ++count_;
  }
  std::string body_;
  uint64_t count_ = 0;
};

std::unique_ptr<Tokenizer> FromGguf(const std::string& bytes, const std::string& name) {
  GgufFile file(Bytes(bytes), name);
  return LoadTokenizerFromGguf(file);
}

TEST(TokenizerErrors, GgufMetadata) {
  const std::vector<std::string> tokens = {"<unk>", "<s>", "</s>", "a"};
  auto base = [&](const std::string& model) {
    GgufBuilder b;
    b.Str("general.architecture", "llama").Str("tokenizer.ggml.model", model).Strings("tokenizer.ggml.tokens", tokens);
    return b;
  };
  EXPECT_EQ(FromGguf(base("llama").Build(), "ok.gguf")->vocab_size(), 4);
  ExpectError([&] { FromGguf(base("bert").Build(), "bert.gguf"); }, {"bert.gguf", "'bert' is not supported"});
  ExpectError([&] { FromGguf(base("gpt2").Build(), "gpt2.gguf"); }, {"gpt2.gguf", "merges"});
  ExpectError([&] { FromGguf(base("llama").U32("tokenizer.ggml.bos_token_id", 7).Build(), "bos.gguf"); },
              {"bos.gguf", "BOS token id 7 is out of range"});
  ExpectError([&] { FromGguf(base("llama").Ints("tokenizer.ggml.token_type", {1, 1}).Build(), "types.gguf"); },
              {"types.gguf", "2 token types for 4 tokens"});
  ExpectError([&] { FromGguf(base("llama").Ints("tokenizer.ggml.token_type", {1, 1, 1, 42}).Build(), "t.gguf"); },
              {"t.gguf", "42"});
  ExpectError([&] { FromGguf(base("gpt2").Strings("tokenizer.ggml.merges", {"ab"}).Build(), "m.gguf"); },
              {"m.gguf", "merges[0]"});
  ExpectError(
      [&] {
        FromGguf(base("gpt2").Str("tokenizer.ggml.pre", "llama3").Strings("tokenizer.ggml.merges", {"a b"}).Build(),
                 "pre.gguf");
      },
      {"pre.gguf", "llama3"});
  GgufBuilder no_tokens;
  no_tokens.Str("tokenizer.ggml.model", "llama");
  ExpectError([&] { FromGguf(no_tokens.Build(), "notok.gguf"); }, {"notok.gguf", "tokenizer.ggml.tokens"});
  // 0xFFFFFFFF means "no such token".
  EXPECT_EQ(FromGguf(base("llama").U32("tokenizer.ggml.eos_token_id", 0xFFFFFFFFu).Build(), "x.gguf")->eos(), -1);
}

}  // namespace
}  // namespace lowbit
