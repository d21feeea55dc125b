// `lowbit synth` through the real binary: tiny random Llama and GPT-2 models
// load with LoadModel, carry the real vocab and the requested shapes and
// formats, and run; the file depends on the seed alone; bad requests fail
// cleanly without leaving a file. `lowbit bench` gets a smoke test of its
// JSON fields (never a timed assertion: benchmarks are not tests).
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/mapped_file.h"
#include "formats/format.h"
#include "io/gguf.h"
#include "model/model.h"
#include "runtime/session.h"
#include "test_util.h"

namespace lowbit {
namespace {

using ::lowbit::testing::CommandResult;
using ::lowbit::testing::RunLowbit;

namespace fs = std::filesystem;
using ::lowbit::testing::SharedPath;

constexpr const char* kLlamaVocab = "data/tokenizer-tests/ggml-vocab-llama-spm.gguf";
constexpr const char* kGpt2Vocab = "data/tokenizer-tests/ggml-vocab-gpt-2.gguf";


std::string TempPath(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / "lowbit_synth";
  fs::create_directories(dir);
  fs::remove(dir / name);
  return (dir / name).string();
}

// Writes a tiny model; returns its path.
std::string Synth(const std::string& arch, const std::string& type, int seed, const std::string& name) {
  const std::string path = TempPath(name);
  const std::string vocab = SharedPath(arch == "gpt2" ? kGpt2Vocab : kLlamaVocab);
  const CommandResult r = RunLowbit(fmt::format("synth --arch {} --shape tiny --type {} --seed {} -o {} --vocab-from {}", arch,
                                         type, seed, path, vocab));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return path;
}

// Evaluates a short prompt, then a few greedy tokens one by one; logits must
// be finite and O(1) (the 0.02 weight std keeps activations near unit scale).
void ExpectRuns(const Model& m) {
  Session s(m, {.threads = 2, .max_context = 64});
  std::vector<int32_t> tokens = m.tokenizer->Encode("Once upon a time", true);
  ASSERT_GE(tokens.size(), 2u);
  s.Eval(tokens, false);
  for (int step = 0; step < 4; ++step) {
    const auto logits = s.logits();
    ASSERT_EQ(logits.size(), size_t(m.config.vocab_size));
    double sum = 0, sum2 = 0;
    int32_t best = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
      ASSERT_TRUE(std::isfinite(logits[i])) << i;
      sum += logits[i];
      sum2 += double(logits[i]) * logits[i];
      if (logits[i] > logits[size_t(best)]) best = int32_t(i);
    }
    const double mean = sum / double(logits.size());
    const double std = std::sqrt(sum2 / double(logits.size()) - mean * mean);
    EXPECT_GT(std, 0.05) << "logits collapsed";
    EXPECT_LT(std, 5.0) << "logits blew up";
    s.Eval(std::span(&best, 1), false);
  }
}

TEST(Synth, TinyLlamaLoadsWithRealVocabAndRuns) {
  LOWBIT_REQUIRE_SHARED(kLlamaVocab);
  const std::string path = Synth("llama", "f16", 1, "tiny-llama.gguf");
  auto m = LoadModel(path);
  const ModelConfig& c = m->config;
  EXPECT_EQ(c.arch, Arch::kLlama);
  EXPECT_EQ(c.dim, 256);
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.n_heads, 4);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.ffn_dim, 768);
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_FALSE(c.tied_output);
  EXPECT_EQ(m->tokenizer->vocab_size(), 32000);
  EXPECT_EQ(m->tokenizer->bos(), 1);
  EXPECT_EQ(m->Get("blk.1.ffn_down.weight").type, DType::kF16);
  EXPECT_EQ(m->Get("blk.1.ffn_norm.weight").type, DType::kF32);
  // The tokenizer keys are the vocab file's, byte for byte.
  GgufFile out(path), vocab(SharedPath(kLlamaVocab));
  EXPECT_EQ(out.GetStringArray("tokenizer.ggml.tokens"), vocab.GetStringArray("tokenizer.ggml.tokens"));
  EXPECT_EQ(out.GetFloatArray("tokenizer.ggml.scores"), vocab.GetFloatArray("tokenizer.ggml.scores"));
  EXPECT_FALSE(out.Has("general.quantization_version"));
  ExpectRuns(*m);
}

TEST(Synth, TinyGpt2LoadsAndRuns) {
  LOWBIT_REQUIRE_SHARED(kGpt2Vocab);
  const std::string path = Synth("gpt2", "f32", 3, "tiny-gpt2.gguf");
  auto m = LoadModel(path);
  EXPECT_EQ(m->config.arch, Arch::kGpt2);
  EXPECT_EQ(m->config.vocab_size, 50257);
  EXPECT_EQ(m->config.context_length, 256);
  EXPECT_EQ(GgufFile(path).GetStringArray("tokenizer.ggml.merges").size(), 50000u);
  ExpectRuns(*m);
}

TEST(Synth, SameSeedSameBytesOtherSeedOtherWeights) {
  LOWBIT_REQUIRE_SHARED(kLlamaVocab);
  const std::string a = Synth("llama", "f16", 7, "seed7a.gguf");
  const std::string b = Synth("llama", "f16", 7, "seed7b.gguf");
  const std::string c = Synth("llama", "f16", 8, "seed8.gguf");
  MappedFile fa(a), fb(b), fc(c);
  ASSERT_EQ(fa.size(), fb.size());
  EXPECT_EQ(std::memcmp(fa.data(), fb.data(), fa.size()), 0);
  GgufFile ga(a), gc(c);
  const GgufTensorInfo* ta = ga.FindTensor("blk.0.attn_q.weight");
  const GgufTensorInfo* tc = gc.FindTensor("blk.0.attn_q.weight");
  EXPECT_NE(std::memcmp(ta->data, tc->data, ta->bytes), 0);
  // N(0, 0.02^2): the sample std of 65536 weights is within a few percent of 0.02.
  const std::vector<float> w = ToF32(ga.View(*ta));
  double s2 = 0;
  for (float v : w) s2 += double(v) * v;
  EXPECT_NEAR(std::sqrt(s2 / double(w.size())), 0.02, 0.0005);
}

// One format of each block family (legacy 32-blocks, k-quant 256-blocks,
// 8-bit) and one lowbit-private format, where the list has them: the 2-D
// weights carry it, the model loads and runs. The codecs themselves are
// tested per format elsewhere; this checks the synth -> GGUF -> load path.
TEST(Synth, QuantizedFormatsLoadAndRun) {
  LOWBIT_REQUIRE_SHARED(kLlamaVocab);
  std::vector<const FormatInfo*> formats;
  for (const char* name : {"q4_0", "q8_0", "q4_k", "int4_sym_g128"})
    if (const FormatInfo* f = FindFormatByName(name)) formats.push_back(f);
  if (formats.empty()) GTEST_SKIP() << "no quantized weight formats in the list yet";
  for (const FormatInfo* f : formats) {
    SCOPED_TRACE(std::string(f->name));
    const std::string path = Synth("llama", std::string(f->name), 1, fmt::format("tiny-{}.gguf", f->name));
    auto m = LoadModel(path);
    EXPECT_EQ(m->Get("blk.0.attn_q.weight").type, f->id);
    EXPECT_EQ(m->Get("token_embd.weight").type, f->id);
    EXPECT_EQ(m->Get("output_norm.weight").type, DType::kF32);
    EXPECT_EQ(GgufFile(path).GetInt("general.quantization_version"), 2);
    ExpectRuns(*m);
  }
}

TEST(Synth, BadRequestsFailCleanlyAndLeaveNoFile) {
  LOWBIT_REQUIRE_SHARED(kLlamaVocab);
  const std::string path = TempPath("bad.gguf");
  const std::string vocab = " --vocab-from " + SharedPath(kLlamaVocab);
  struct Case {
    std::string args, expect;
  };
  for (const Case& c : std::vector<Case>{
           {"synth --shape huge -o " + path + vocab, "unknown --shape 'huge' for --arch llama"},
           {"synth --shape gpt2-124m -o " + path + vocab, "unknown --shape 'gpt2-124m'"},
           {"synth --shape tiny --type q9_9 -o " + path + vocab, "unknown weight format --type 'q9_9'"},
           {"synth --shape tiny -o " + path + " --vocab-from /nonexistent/vocab.gguf", "/nonexistent/vocab.gguf"},
           {"synth --arch gpt2 --shape tiny -o " + path + vocab, "does not suit --arch gpt2"},
           {"synth --shape tiny -o /nonexistent-dir/out.gguf" + vocab, "/nonexistent-dir/out.gguf"},
       }) {
    const CommandResult r = RunLowbit(c.args);
    EXPECT_EQ(r.exit_code, 1) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find("lowbit: error:"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << "expected '" << c.expect << "' in: " << r.output;
  }
  EXPECT_FALSE(fs::exists(path));
}

TEST(Bench, SmokeJsonHasEveryField) {
  LOWBIT_REQUIRE_SHARED(kLlamaVocab);
  const std::string path = Synth("llama", "f16", 1, "bench.gguf");
  const CommandResult r = RunLowbit("bench " + path + " -p 8 -n 4 -r 1 --threads 2 --json", /*merge_stderr=*/false);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json j = nlohmann::json::parse(r.output);
  for (const char* k :
       {"pp_tokens_per_s", "pp_tokens_per_s_stdev", "tg_tokens_per_s", "tg_tokens_per_s_stdev", "model_bytes",
        "bytes_per_token", "read_bandwidth_gb_s", "tg_roofline_tokens_per_s", "roofline_fraction",
        "roofline_fraction_paired", "threads", "p", "n", "read_bandwidth_peak_gb_s", "tg_repetitions_tokens_per_s",
        "bandwidth_windows_gb_s"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j["threads"], 2);
  EXPECT_EQ(j["p"], 8);
  EXPECT_EQ(j["n"], 4);
  EXPECT_GT(j["pp_tokens_per_s"].get<double>(), 0);
  EXPECT_GT(j["tg_tokens_per_s"].get<double>(), 0);
  EXPECT_GT(j["read_bandwidth_gb_s"].get<double>(), 0);
  // The roofline is the best probe window (one before and one after the
  // repetition, at least), and a window's mean rate is at most its fastest pass.
  const std::vector<double> windows = j["bandwidth_windows_gb_s"];
  ASSERT_GE(windows.size(), 2u);
  EXPECT_EQ(*std::max_element(windows.begin(), windows.end()), j["read_bandwidth_gb_s"].get<double>());
  EXPECT_GE(j["read_bandwidth_peak_gb_s"].get<double>(), j["read_bandwidth_gb_s"].get<double>());
  ASSERT_EQ(j["tg_repetitions_tokens_per_s"].size(), 1u);
  EXPECT_EQ(j["tg_repetitions_tokens_per_s"][0].get<double>(), j["tg_tokens_per_s"].get<double>());
  // One repetition: the windows beside it are at most the best window.
  EXPECT_GE(j["roofline_fraction_paired"].get<double>(), j["roofline_fraction"].get<double>() * (1 - 1e-12));
  // Per token: every matrix but the embedding, output head included.
  const uint64_t model_bytes = j["model_bytes"], per_token = j["bytes_per_token"];
  EXPECT_EQ(model_bytes - per_token, uint64_t(32000) * 256 * 2);
}

}  // namespace
}  // namespace lowbit
