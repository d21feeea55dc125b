// GGUF reader: real files written by llama.cpp (stories260K, all 16
// tiny-llama-random types, the tokenizer-test vocabs), and hand-built corrupt
// files that must fail with an error naming the file and the problem.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "core/error.h"
#include "io/gguf.h"
#include "test_util.h"

namespace lowbit {
namespace {

using ::lowbit::testing::SharedPath;

TEST(Gguf, ReadsStories260KWrittenByLlamaCpp) {
  LOWBIT_REQUIRE_SHARED("models/stories260K/stories260K-f32.llamacpp.gguf");
  GgufFile f(SharedPath("models/stories260K/stories260K-f32.llamacpp.gguf"));
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.tensors().size(), 48u);
  EXPECT_EQ(f.GetString("general.architecture"), "llama");
  EXPECT_EQ(f.GetInt("llama.embedding_length"), 64);
  EXPECT_EQ(f.GetInt("llama.attention.head_count_kv"), 4);
  EXPECT_NEAR(f.GetFloat("llama.attention.layer_norm_rms_epsilon"), 1e-5, 1e-12);
  const auto tokens = f.GetStringArray("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), 512u);
  EXPECT_EQ(tokens[1], "<s>");
  EXPECT_EQ(tokens[13], "<0x0A>");
  EXPECT_EQ(f.GetFloatArray("tokenizer.ggml.scores").size(), 512u);
  const GgufTensorInfo* t = f.FindTensor("blk.0.ffn_down.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->ne, (std::vector<uint64_t>{172, 64}));
  const TensorView v = f.View(*t);
  EXPECT_EQ(v.shape, (std::vector<int64_t>{64, 172}));
  EXPECT_EQ(v.bytes, 64u * 172u * 4u);
  // The separator id is stored as uint32 0xFFFFFFFF: kept unsigned.
  EXPECT_EQ(f.GetInt("tokenizer.ggml.seperator_token_id"), 4294967295LL);
}

TEST(Gguf, ReadsEveryTinyLlamaTypeFile) {
  LOWBIT_REQUIRE_SHARED("models/tiny-llama-random/tiny-llama-f32.gguf");
  const std::map<std::string, std::string> files = {
      {"f32", "F32"},       {"f16", "F16"},       {"bf16", "BF16"},     {"q8_0", "Q8_0"},
      {"q4_0", "Q4_0"},     {"q4_1", "Q4_1"},     {"q5_0", "Q5_0"},     {"q5_1", "Q5_1"},
      {"q2_k", "Q2_K"},     {"q3_k_s", "Q3_K"},   {"q4_k_s", "Q4_K"},   {"q5_k_s", "Q5_K"},
      {"q6_k", "Q6_K"},     {"iq4_nl", "IQ4_NL"}, {"iq4_xs", "IQ4_XS"}, {"tq1_0", "TQ1_0"},
      {"tq2_0", "TQ2_0"}};
  for (const auto& [suffix, type] : files) {
    GgufFile f(SharedPath("models/tiny-llama-random/tiny-llama-" + suffix + ".gguf"));
    const GgufTensorInfo* q = f.FindTensor("blk.0.attn_q.weight");
    ASSERT_NE(q, nullptr) << suffix;
    EXPECT_STREQ(FindGgmlType(q->ggml_type)->name, type.c_str()) << suffix;
    EXPECT_EQ(q->ne, (std::vector<uint64_t>{256, 256})) << suffix;
    EXPECT_LE(f.data_offset() + q->offset + q->bytes, f.file_size());
  }
}

// Minimal GGUF writer for building corrupt inputs.
struct Builder {
  std::string bytes;
  template <typename T>
  void Pod(T v) { bytes.append(reinterpret_cast<const char*>(&v), sizeof(T)); }
  void Str(const std::string& s) {
    Pod<uint64_t>(s.size());
    bytes += s;
  }
  void Header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    bytes += "GGUF";
    Pod(version);
    Pod(n_tensors);
    Pod(n_kv);
  }
  void KvU32(const std::string& k, uint32_t v) {
    Str(k);
    Pod<uint32_t>(4);
    Pod(v);
  }
  void KvStr(const std::string& k, const std::string& v) {
    Str(k);
    Pod<uint32_t>(8);
    Str(v);
  }
  void Tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
    Str(name);
    Pod<uint32_t>(uint32_t(ne.size()));
    for (uint64_t n : ne) Pod(n);
    Pod(type);
    Pod(offset);
  }
  void Align(size_t a) { bytes.resize((bytes.size() + a - 1) / a * a, '\0'); }
};

std::string ParseError(const std::string& bytes) {
  try {
    GgufFile f(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), "bad.gguf");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

Builder ValidFile() {
  Builder b;
  b.Header(3, 1, 2);
  b.KvStr("general.architecture", "llama");
  b.KvU32("llama.block_count", 1);
  b.Tensor("w", {4, 2}, kGgmlF32, 0);
  b.Align(32);
  b.bytes.append(32, '\0');
  return b;
}

TEST(Gguf, ValidHandBuiltFileParses) {
  const Builder b = ValidFile();
  EXPECT_EQ(ParseError(b.bytes), "");
  GgufFile f(std::span(reinterpret_cast<const uint8_t*>(b.bytes.data()), b.bytes.size()), "ok.gguf");
  EXPECT_EQ(f.View(f.tensors()[0]).shape, (std::vector<int64_t>{2, 4}));
}

TEST(Gguf, EveryTruncationIsAnErrorNamingTheFile) {
  const Builder b = ValidFile();
  for (size_t len = 0; len < b.bytes.size(); ++len) {
    const std::string err = ParseError(b.bytes.substr(0, len));
    ASSERT_NE(err, "") << "truncated at " << len << " parsed";
    EXPECT_NE(err.find("bad.gguf"), std::string::npos) << err;
  }
}

TEST(Gguf, CorruptHeadersAreRejectedWithReasons) {
  struct Case {
    std::string bytes, expect;
  };
  std::vector<Case> cases;
  {
    Builder b = ValidFile();
    b.bytes[0] = 'X';
    cases.push_back({b.bytes, "bad magic"});
  }
  {
    Builder b;
    b.Header(1, 0, 0);
    cases.push_back({b.bytes, "unsupported GGUF version 1"});
  }
  {
    Builder b;
    b.Header(3, 0, 1ull << 60);
    cases.push_back({b.bytes, "metadata count"});
  }
  {
    Builder b;
    b.Header(3, 0, 1);
    b.Str("k");
    b.Pod<uint32_t>(99);
    cases.push_back({b.bytes, "unknown value type 99"});
  }
  {
    Builder b;
    b.Header(3, 0, 1);
    b.Str("k");
    b.Pod<uint32_t>(9);
    b.Pod<uint32_t>(4);
    b.Pod<uint64_t>(1ull << 40);
    cases.push_back({b.bytes, "runs past the end"});
  }
  {
    Builder b;
    b.Header(3, 0, 2);
    b.KvU32("a", 1);
    b.KvU32("a", 2);
    cases.push_back({b.bytes, "duplicate metadata key 'a'"});
  }
  {
    Builder b;
    b.Header(3, 0, 1);
    b.KvU32("general.alignment", 12);
    cases.push_back({b.bytes, "alignment"});
  }
  {
    Builder b;
    b.Header(3, 1, 0);
    b.Tensor("w", {4, 2}, 77, 0);
    cases.push_back({b.bytes, "unknown ggml type 77"});
  }
  {
    Builder b;
    b.Header(3, 1, 0);
    b.Tensor("w", {33, 2}, 2 /*Q4_0*/, 0);
    cases.push_back({b.bytes, "not a multiple"});
  }
  {
    Builder b;
    b.Header(3, 1, 0);
    b.Tensor("w", {4, 2}, kGgmlF32, 7);
    cases.push_back({b.bytes, "not a multiple of the alignment"});
  }
  {
    Builder b;
    b.Header(3, 1, 0);
    b.Tensor("w", {4, 2}, kGgmlF32, 0);
    b.Align(32);
    b.bytes.append(16, '\0');  // 32 bytes needed
    cases.push_back({b.bytes, "truncated: tensor 'w'"});
  }
  {
    Builder b;
    b.Header(3, 2, 0);
    b.Tensor("w", {4}, kGgmlF32, 0);
    b.Tensor("w", {4}, kGgmlF32, 32);
    b.Align(32);
    b.bytes.append(64, '\0');
    cases.push_back({b.bytes, "duplicate tensor name"});
  }
  {
    Builder b;
    b.Header(3, 1, 0);
    b.Tensor("w", {4, 0}, kGgmlF32, 0);
    cases.push_back({b.bytes, "invalid dimension"});
  }
  {
    Builder b;
    b.Header(3, 1, 0);
    b.Tensor("w", {1, 1, 1, 1, 1}, kGgmlF32, 0);
    cases.push_back({b.bytes, "5 dimensions"});
  }
  for (const Case& c : cases) {
    const std::string err = ParseError(c.bytes);
    EXPECT_NE(err.find(c.expect), std::string::npos) << "expected '" << c.expect << "', got '" << err << "'";
    EXPECT_NE(err.find("bad.gguf"), std::string::npos) << err;
  }
}

TEST(Gguf, MissingFileAndWrongTypesNameTheProblem) {
  try {
    GgufFile f("/nonexistent/model.gguf");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model.gguf: cannot open"), std::string::npos);
  }
  const Builder b = ValidFile();
  GgufFile f(std::span(reinterpret_cast<const uint8_t*>(b.bytes.data()), b.bytes.size()), "ok.gguf");
  EXPECT_THROW(f.GetInt("general.architecture"), Error);
  EXPECT_THROW(f.GetString("missing.key"), Error);
  EXPECT_EQ(f.GetInt("missing.key", 7), 7);
}

}  // namespace
}  // namespace lowbit
