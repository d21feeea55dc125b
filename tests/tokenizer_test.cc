// Tokenizer correctness against llama.cpp: its vocab test vectors, the same
// vocabs read from Hugging Face / SentencePiece / llama2.c files, round trips
// and speed on TinyStories.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "io/gguf.h"
#include "test_util.h"
#include "tokenizer/loaders.h"
#include "tokenizer/spm_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace lowbit {
namespace {

using ::lowbit::testing::SharedPath;

constexpr const char* kGpt2Gguf = "data/tokenizer-tests/ggml-vocab-gpt-2.gguf";
constexpr const char* kLlamaGguf = "data/tokenizer-tests/ggml-vocab-llama-spm.gguf";
constexpr const char* kStoriesGguf = "models/stories260K/stories260K-f32.llamacpp.gguf";
constexpr const char* kTok512 = "models/stories260K/tok512.bin";
constexpr const char* kTinyStories = "data/tinystories/validation-head.txt";

struct VocabCase {
  std::string text;
  std::vector<int32_t> ids;
};

// llama.cpp's test-tokenizer-0 format: .inp strings separated by
// "\n__ggml_vocab_test__\n" (the file ends with one), .out one line of ids per string.
std::vector<VocabCase> LoadVectors(const std::string& gguf_rel) {
  const std::string inp = ReadTokenizerFile(SharedPath(gguf_rel + ".inp"));
  const std::string out = ReadTokenizerFile(SharedPath(gguf_rel + ".out"));
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<VocabCase> cases;
  for (size_t pos = 0; pos < inp.size();) {
    size_t end = inp.find(sep, pos);
    if (end == std::string::npos) end = inp.size();
    cases.push_back({inp.substr(pos, end - pos), {}});
    pos = end + sep.size();
  }
  std::istringstream lines(out);
  std::string line;
  for (VocabCase& c : cases) {
    EXPECT_TRUE(std::getline(lines, line)) << "fewer .out lines than .inp strings";
    std::istringstream ids(line);
    for (int32_t id; ids >> id;) c.ids.push_back(id);
  }
  return cases;
}

std::unique_ptr<Tokenizer> LoadGgufTokenizer(const std::string& rel) {
  GgufFile file(SharedPath(rel));
  return LoadTokenizerFromGguf(file);
}

std::string Ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += fmt::format(" {}", id);
  return s;
}

// Encodes every vector with add_special=false (as test-tokenizer-0 does); returns how many match.
int CountPassing(const Tokenizer& tok, const std::vector<VocabCase>& cases, const char* label) {
  int passed = 0;
  for (const VocabCase& c : cases) {
    const std::vector<int32_t> got = tok.Encode(c.text, /*add_special=*/false);
    if (got == c.ids) {
      ++passed;
    } else {
      ADD_FAILURE() << label << ": '" << c.text << "'\n  want" << Ids(c.ids) << "\n  got " << Ids(got);
    }
  }
  std::printf("[ %s ] %d / %zu llama.cpp vocab vectors match\n", label, passed, cases.size());
  return passed;
}

bool IsValidUtf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = s[i];
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += n;
  }
  return true;
}

void ExpectRoundTrips(const Tokenizer& tok, const std::vector<VocabCase>& cases) {
  for (const VocabCase& c : cases) {
    if (!IsValidUtf8(c.text)) continue;
    EXPECT_EQ(tok.Decode(tok.Encode(c.text, false)), c.text);
    EXPECT_EQ(tok.Decode(tok.Encode(c.text, true)), c.text);
  }
}

TEST(TokenizerVectors, Gpt2GgufMatchesLlamaCpp) {
  LOWBIT_REQUIRE_SHARED(kGpt2Gguf);
  auto tok = LoadGgufTokenizer(kGpt2Gguf);
  EXPECT_EQ(tok->kind(), TokenizerKind::kBpe);
  EXPECT_EQ(tok->vocab_size(), 50257);
  EXPECT_EQ(tok->bos(), 50256);
  EXPECT_FALSE(tok->add_bos());
  const auto cases = LoadVectors(kGpt2Gguf);
  ASSERT_EQ(cases.size(), 46u);
  EXPECT_EQ(CountPassing(*tok, cases, "gpt-2 gguf"), 46);
  ExpectRoundTrips(*tok, cases);
}

TEST(TokenizerVectors, LlamaSpmGgufMatchesLlamaCpp) {
  LOWBIT_REQUIRE_SHARED(kLlamaGguf);
  auto tok = LoadGgufTokenizer(kLlamaGguf);
  EXPECT_EQ(tok->kind(), TokenizerKind::kSpm);
  EXPECT_EQ(tok->vocab_size(), 32000);
  EXPECT_EQ(tok->bos(), 1);
  EXPECT_EQ(tok->eos(), 2);
  EXPECT_TRUE(tok->add_bos());
  const auto cases = LoadVectors(kLlamaGguf);
  ASSERT_EQ(cases.size(), 46u);
  EXPECT_EQ(CountPassing(*tok, cases, "llama-spm gguf"), 46);
  ExpectRoundTrips(*tok, cases);
  EXPECT_EQ(tok->Encode("Hello world", true), (std::vector<int32_t>{1, 15043, 3186}));
  EXPECT_TRUE(tok->Encode("", false).empty());
  EXPECT_EQ(tok->Encode("", true), std::vector<int32_t>{1});
}

TEST(TokenizerVectors, Gpt2VocabJsonAndMergesMatchGguf) {
  LOWBIT_REQUIRE_SHARED(kGpt2Gguf);
  LOWBIT_REQUIRE_SHARED("tokenizers/gpt2/vocab.json");
  auto gguf = LoadGgufTokenizer(kGpt2Gguf);
  auto hf = LoadTokenizerFromHfFolder(SharedPath("tokenizers/gpt2"));
  ASSERT_EQ(hf->kind(), TokenizerKind::kBpe);
  ASSERT_EQ(hf->vocab_size(), gguf->vocab_size());
  for (int32_t i = 0; i < hf->vocab_size(); ++i) ASSERT_EQ(hf->TokenText(i), gguf->TokenText(i)) << i;
  EXPECT_EQ(hf->bos(), gguf->bos());
  EXPECT_EQ(hf->eos(), gguf->eos());
  EXPECT_EQ(CountPassing(*hf, LoadVectors(kGpt2Gguf), "gpt-2 vocab.json+merges.txt"), 46);
}

TEST(TokenizerVectors, Llama2SentencePieceModelMatchesGguf) {
  LOWBIT_REQUIRE_SHARED(kLlamaGguf);
  LOWBIT_REQUIRE_SHARED("tokenizers/llama2/tokenizer.model");
  auto gguf = LoadGgufTokenizer(kLlamaGguf);
  auto spm = LoadTokenizerFromHfFolder(SharedPath("tokenizers/llama2"));
  ASSERT_EQ(spm->kind(), TokenizerKind::kSpm);
  ASSERT_EQ(spm->vocab_size(), gguf->vocab_size());
  for (int32_t i = 0; i < spm->vocab_size(); ++i) {
    ASSERT_EQ(spm->TokenText(i), gguf->TokenText(i)) << i;
    ASSERT_EQ(spm->TokenToPiece(i), gguf->TokenToPiece(i)) << i;
  }
  EXPECT_EQ(spm->bos(), 1);
  EXPECT_EQ(spm->eos(), 2);
  EXPECT_TRUE(spm->add_bos());
  EXPECT_EQ(CountPassing(*spm, LoadVectors(kLlamaGguf), "llama-2 tokenizer.model"), 46);
}

// Writes GPT-2's vocab.json + merges.txt as a tokenizer.json, the way `tokenizers` saves GPT-2.
std::string Gpt2TokenizerJson() {
  nlohmann::json vocab = nlohmann::json::parse(ReadTokenizerFile(SharedPath("tokenizers/gpt2/vocab.json")));
  const std::string merges_txt = ReadTokenizerFile(SharedPath("tokenizers/gpt2/merges.txt"));
  nlohmann::json merges = nlohmann::json::array();
  std::istringstream lines(merges_txt);
  std::string line;
  std::getline(lines, line);  // #version
  while (std::getline(lines, line)) {
    if (!line.empty()) merges.push_back(line);
  }
  nlohmann::json root = {
      {"version", "1.0"},
      {"added_tokens", {{{"id", 50256}, {"content", "<|endoftext|>"}, {"special", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}},
  };
  return root.dump();
}

TEST(TokenizerVectors, Gpt2TokenizerJsonMatchesGguf) {
  LOWBIT_REQUIRE_SHARED(kGpt2Gguf);
  LOWBIT_REQUIRE_SHARED("tokenizers/gpt2/vocab.json");
  auto tok = ParseTokenizerJson(Gpt2TokenizerJson(), "gpt2/tokenizer.json");
  ASSERT_EQ(tok->kind(), TokenizerKind::kBpe);
  EXPECT_EQ(tok->bos(), 50256);
  EXPECT_EQ(tok->TokenToPiece(50256), "");
  EXPECT_EQ(CountPassing(*tok, LoadVectors(kGpt2Gguf), "gpt-2 tokenizer.json"), 46);
}

// A Llama-style tokenizer.json made from the Llama-2 GGUF vocab: merges are
// every split of a token into two tokens, ranked by the merged token's score
// (what `tokenizers`' SentencePiece converter does).
std::string LlamaTokenizerJson(const Tokenizer& spm, const std::vector<double>& scores) {
  nlohmann::json vocab = nlohmann::json::object();
  std::map<std::string, int32_t> ids;
  for (int32_t i = 0; i < spm.vocab_size(); ++i) {
    vocab[spm.TokenText(i)] = i;
    ids[spm.TokenText(i)] = i;
  }
  struct Merge {
    double score;
    int32_t left, right;
  };
  std::vector<Merge> list;
  for (int32_t i = 3; i < spm.vocab_size(); ++i) {
    const std::string& t = spm.TokenText(i);
    for (size_t k = 1; k < t.size(); ++k) {
      auto l = ids.find(t.substr(0, k)), r = ids.find(t.substr(k));
      if (l != ids.end() && r != ids.end()) list.push_back({scores[i], l->second, r->second});
    }
  }
  std::stable_sort(list.begin(), list.end(), [](const Merge& a, const Merge& b) {
    return a.score != b.score ? a.score > b.score : std::pair(a.left, a.right) < std::pair(b.left, b.right);
  });
  nlohmann::json merges = nlohmann::json::array();
  for (const Merge& m : list) merges.push_back({spm.TokenText(m.left), spm.TokenText(m.right)});
  nlohmann::json root = {
      {"added_tokens",
       {{{"id", 0}, {"content", "<unk>"}, {"special", true}},
        {{"id", 1}, {"content", "<s>"}, {"special", true}},
        {{"id", 2}, {"content", "</s>"}, {"special", true}}}},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
          {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}}}}},
      {"pre_tokenizer", nullptr},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}}}},
      {"model",
       {{"type", "BPE"}, {"byte_fallback", true}, {"unk_token", "<unk>"}, {"vocab", vocab}, {"merges", merges}}},
  };
  return root.dump();
}

TEST(TokenizerVectors, LlamaTokenizerJsonMatchesGguf) {
  LOWBIT_REQUIRE_SHARED(kLlamaGguf);
  GgufFile file(SharedPath(kLlamaGguf));
  auto gguf = LoadTokenizerFromGguf(file);
  auto tok = ParseTokenizerJson(LlamaTokenizerJson(*gguf, file.GetFloatArray("tokenizer.ggml.scores")),
                                "llama/tokenizer.json");
  ASSERT_EQ(tok->kind(), TokenizerKind::kSpm);
  EXPECT_EQ(tok->bos(), 1);
  EXPECT_EQ(tok->eos(), 2);
  EXPECT_TRUE(tok->add_bos());
  EXPECT_EQ(CountPassing(*tok, LoadVectors(kLlamaGguf), "llama tokenizer.json"), 46);
  ExpectRoundTrips(*tok, LoadVectors(kLlamaGguf));
}

TEST(TokenizerStories, Tok512MatchesGgufVocab) {
  LOWBIT_REQUIRE_SHARED(kTok512);
  LOWBIT_REQUIRE_SHARED(kStoriesGguf);
  LOWBIT_REQUIRE_SHARED(kTinyStories);
  auto bin = LoadLlama2cTokenizer(SharedPath(kTok512), 512);
  auto gguf = LoadGgufTokenizer(kStoriesGguf);
  ASSERT_EQ(bin->vocab_size(), 512);
  ASSERT_EQ(gguf->vocab_size(), 512);
  for (int32_t i = 0; i < 512; ++i) {
    ASSERT_EQ(bin->TokenText(i), gguf->TokenText(i)) << i;
    ASSERT_EQ(bin->TokenToPiece(i), gguf->TokenToPiece(i)) << i;
  }
  EXPECT_EQ(bin->bos(), 1);
  EXPECT_EQ(bin->eos(), 2);

  const std::vector<int32_t> want = {1, 403, 407, 261, 378};
  EXPECT_EQ(bin->Encode("Once upon a time", true), want);
  EXPECT_EQ(gguf->Encode("Once upon a time", true), want);

  const std::string text = ReadTokenizerFile(SharedPath(kTinyStories)).substr(0, 100 * 1024);
  const std::vector<int32_t> a = bin->Encode(text, true);
  const std::vector<int32_t> b = gguf->Encode(text, true);
  EXPECT_EQ(a, b);
  EXPECT_GT(a.size(), 20000u);
  EXPECT_EQ(bin->Decode(a), text);
}

TEST(TokenizerStories, DecodeNextDropsSpaceAfterBos) {
  LOWBIT_REQUIRE_SHARED(kTok512);
  auto tok = LoadLlama2cTokenizer(SharedPath(kTok512), 512);
  EXPECT_EQ(tok->TokenToPiece(403), " Once");
  EXPECT_EQ(tok->DecodeNext(1, 403), "Once");
  EXPECT_EQ(tok->DecodeNext(403, 407), " upon");
  EXPECT_EQ(tok->TokenToPiece(1), "");
  EXPECT_EQ(tok->TokenToPiece(2), "");
  EXPECT_EQ(tok->TokenToPiece(3 + '\n'), "\n");  // <0x0A>
  const std::vector<int32_t> ids = {1, 403, 407, 261, 378};
  EXPECT_EQ(tok->Decode(ids), "Once upon a time");
  EXPECT_THROW(tok->TokenToPiece(512), Error);
  EXPECT_THROW(tok->TokenToPiece(-1), Error);
}

// SPM merges word by word when no token has U+2581 after another character;
// a vocab with one such (never used) token takes the whole-text path instead.
TEST(TokenizerStories, WordByWordMergingIsExact) {
  LOWBIT_REQUIRE_SHARED(kTinyStories);
  const std::string text = ReadTokenizerFile(SharedPath(kTinyStories));
  for (const char* rel : {kStoriesGguf, kLlamaGguf}) {
    if (!std::filesystem::exists(SharedPath(rel))) continue;
    auto tok = LoadGgufTokenizer(rel);
    const auto* spm = dynamic_cast<const SpmTokenizer*>(tok.get());
    ASSERT_NE(spm, nullptr);
    Vocab vocab = spm->vocab();
    vocab.tokens.push_back("\x01\xE2\x96\x81\x01");
    vocab.scores.push_back(-1e9f);
    vocab.types.push_back(TokenType::kNormal);
    vocab.Finalize("whole-text vocab");
    const SpmTokenizer whole(std::move(vocab), true);
    EXPECT_EQ(whole.Encode(text, true), tok->Encode(text, true)) << rel;
    const std::string odd = "\xF0\xE2\x96\x81 a  b\xE2\x96\x81\xE2\x96\x81" "c \xE2 d";
    EXPECT_EQ(whole.Encode(odd, false), tok->Encode(odd, false)) << rel;
  }
}

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

TEST(TokenizerSpeed, TinyStories) {
  LOWBIT_REQUIRE_SHARED(kTinyStories);
  const std::string text = ReadTokenizerFile(SharedPath(kTinyStories));
  struct Case {
    const char* label;
    const char* rel;
  };
  for (const Case& c : {Case{"stories260K spm", kStoriesGguf}, Case{"llama-2 spm", kLlamaGguf},
                        Case{"gpt-2 bpe", kGpt2Gguf}}) {
    if (!std::filesystem::exists(SharedPath(c.rel))) continue;
    auto tok = LoadGgufTokenizer(c.rel);
    const auto start = std::chrono::steady_clock::now();
    const std::vector<int32_t> ids = tok->Encode(text, true);
    const double seconds = Seconds(start);
    std::printf("[ %s ] %zu bytes -> %zu tokens in %.3f s (%.1f MB/s)\n", c.label, text.size(), ids.size(), seconds,
                text.size() / seconds / 1e6);
    EXPECT_LT(seconds, 10.0) << c.label;  // loose: sanitizer and debug builds run here too
    EXPECT_EQ(tok->Decode(ids), text) << c.label;
  }
}

// Long runs of one character class stress the regex (PCRE2 JIT stack) and the merge queues.
TEST(TokenizerSpeed, LongRuns) {
  for (const char* rel : {kGpt2Gguf, kLlamaGguf}) {
    if (!std::filesystem::exists(SharedPath(rel))) continue;
    auto tok = LoadGgufTokenizer(rel);
    for (const std::string& text : {std::string(1 << 20, 'a'), std::string(1 << 20, ' '), std::string(1 << 20, '7'),
                                    std::string(1 << 20, '!') + "\xC3\xA9 x", std::string(1 << 18, '\xff')}) {
      const auto start = std::chrono::steady_clock::now();
      const std::vector<int32_t> ids = tok->Encode(text, false);
      EXPECT_LT(Seconds(start), 10.0) << rel;
      EXPECT_EQ(tok->Decode(ids), text) << rel;
    }
  }
}

TEST(TokenizerSpeed, ConcurrentEncodeAgrees) {
  LOWBIT_REQUIRE_SHARED(kGpt2Gguf);
  LOWBIT_REQUIRE_SHARED(kTinyStories);
  auto tok = LoadGgufTokenizer(kGpt2Gguf);
  const std::string text = ReadTokenizerFile(SharedPath(kTinyStories)).substr(0, 200000);
  const std::vector<int32_t> want = tok->Encode(text, false);
  std::vector<std::vector<int32_t>> got(4);
  std::vector<std::thread> threads;
  for (auto& g : got) threads.emplace_back([&] { g = tok->Encode(text, false); });
  for (auto& t : threads) t.join();
  for (const auto& g : got) EXPECT_EQ(g, want);
}

}  // namespace
}  // namespace lowbit
