// End-to-end check of the Hugging Face loader and the FP32 runtime against
// float64 PyTorch forward passes (tools/reference/make_hf_models.py): the
// embedding output, the residual stream after every block and the logits of
// tiny random GPT-2, Llama (GQA; F32, F16, BF16, 2 shards), Qwen2 and Mistral
// models, compared element by element with derived bounds.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/gguf.h"
#include "model/model.h"
#include "runtime/session.h"
#include "test_util.h"

namespace lowbit {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPython = "/usr/bin/python3";

// What make_hf_models.py writes as reference.bin (layout documented there).
struct Reference {
  int n_tokens = 0, n_layers = 0, dim = 0, vocab = 0;
  std::vector<int32_t> tokens;
  std::vector<std::vector<float>> residual;  // [0]: embedding output, [1 + l]: after block l; each (T, D)
  std::vector<float> logits;                 // (T, V)
};

Reference ReadReference(const std::string& path) {
  const std::string bytes = ReadFileToString(path);
  size_t pos = 0;
  auto take = [&](void* dst, size_t n) {
    if (bytes.size() - pos < n) Fail("{}: truncated reference dump", path);
    std::memcpy(dst, bytes.data() + pos, n);
    pos += n;
  };
  char magic[8];
  take(magic, 8);
  if (std::memcmp(magic, "LBHFREF1", 8) != 0) Fail("{}: not a reference dump", path);
  Reference r;
  int32_t dims[4];
  take(dims, sizeof(dims));
  r.n_tokens = dims[0], r.n_layers = dims[1], r.dim = dims[2], r.vocab = dims[3];
  if (r.n_tokens <= 0 || r.n_layers <= 0 || r.dim <= 0 || r.vocab <= 0) Fail("{}: bad dimensions", path);
  r.tokens.resize(size_t(r.n_tokens));
  take(r.tokens.data(), 4 * r.tokens.size());
  r.residual.resize(size_t(r.n_layers) + 1);
  for (auto& h : r.residual) {
    h.resize(size_t(r.n_tokens) * size_t(r.dim));
    take(h.data(), 4 * h.size());
  }
  r.logits.resize(size_t(r.n_tokens) * size_t(r.vocab));
  take(r.logits.data(), 4 * r.logits.size());
  if (pos != bytes.size()) Fail("{}: {} trailing bytes", path, bytes.size() - pos);
  return r;
}

// The models come from the CTest fixture hf_reference_models; run directly,
// the test writes them itself. Returns why they are unavailable, or "".
std::string EnsureModels() {
  static const std::string status = [] {
    const std::string dir = LOWBIT_HF_MODELS_DIR;
    if (fs::exists(dir + "/DONE")) return std::string();
    if (std::system(fmt::format("{} -c 'import torch' > /dev/null 2>&1", kPython).c_str()) != 0)
      return fmt::format("{} cannot import torch, so the reference models cannot be built; skipping", kPython);
    const std::string cmd = fmt::format("{} {} {} --shared {}", kPython,
                                        testing::SourcePath("tools/reference/make_hf_models.py"), dir,
                                        testing::SharedDir());
    if (std::system(cmd.c_str()) != 0 || !fs::exists(dir + "/DONE")) return "FAILED: " + cmd;
    return std::string();
  }();
  return status;
}

struct Stats {
  double max_err = 0;
  double max_ref = 0;
};

Stats Compare(std::span<const float> got, std::span<const float> want) {
  Stats s;
  for (size_t i = 0; i < want.size(); ++i) {
    s.max_err = std::max(s.max_err, double(std::fabs(got[i] - want[i])));
    if (!std::isfinite(got[i])) s.max_err = INFINITY;
    s.max_ref = std::max(s.max_ref, double(std::fabs(want[i])));
  }
  return s;
}

// Tolerances. The runtime computes in FP32 (unit roundoff u = 2^-24 ~ 6e-8)
// from the same weights the float64 reference used (F16/BF16 weights widen to
// FP32 exactly, and their references were computed from the rounded values),
// so only FP32 rounding separates the two. A length-n FP32 dot product errs by
// ~sqrt(n)*u relative to its terms with random rounding (n*u worst case):
// 8u-13u for n = 64..172 here. A block passes its branch through about six
// such stages (norm, q/k/v, RoPE + softmax, o-proj, two MLP matmuls), but the
// branch adds into a residual at least as large, so each block contributes a
// few u of max|residual| (2u-9u measured), and earlier errors ride along the
// residual with gain ~1. After stage s (s = 0: embedding, exact; s = 1..L:
// blocks; s = L + 1: final norm + head matmul, n = 64) the bound is therefore
//   kUlpsPerStage * (s + 1) * u * max|reference at that stage|,
// with kUlpsPerStage = 32: 3.5x above the worst stage measured (~9.5u), and
// still tight enough to flag systematic deviations of ~1e-5 relative (a wrong
// norm epsilon, say), let alone real bugs (RoPE pairing, a missing bias, an
// untransposed Conv1D), which are of order max|value| itself.
constexpr double kUnitRoundoff = 1.0 / (1 << 24);
constexpr double kUlpsPerStage = 32;

struct Expect {
  const char* name;
  Arch arch;
  DType weights;  // of the stored tensors (GPT-2's Conv1D weights become F32 transposes)
  bool tied;
  bool qkv_bias;
  int head_dim;
};

void PrintTo(const Expect& e, std::ostream* os) { *os << e.name; }

class HfReferenceTest : public ::testing::TestWithParam<Expect> {};

TEST_P(HfReferenceTest, MatchesFloat64Reference) {
  const std::string status = EnsureModels();
  if (status.starts_with("FAILED")) FAIL() << status;
  if (!status.empty()) GTEST_SKIP() << status;
  const Expect& e = GetParam();
  const std::string dir = std::string(LOWBIT_HF_MODELS_DIR) + "/" + e.name;
  const Reference ref = ReadReference(dir + "/reference.bin");

  const std::unique_ptr<Model> model = LoadModel(dir);
  const ModelConfig& c = model->config;
  EXPECT_EQ(model->source_format, "safetensors");
  EXPECT_EQ(c.arch, e.arch);
  EXPECT_EQ(c.n_layers, ref.n_layers);
  EXPECT_EQ(c.dim, ref.dim);
  EXPECT_EQ(c.vocab_size, ref.vocab);
  EXPECT_EQ(c.head_dim, e.head_dim);
  EXPECT_EQ(c.tied_output, e.tied);
  EXPECT_EQ(c.qkv_bias, e.qkv_bias);
  if (c.arch == Arch::kLlama) {
    EXPECT_EQ(c.rope_style, RopeStyle::kHalf);
    EXPECT_EQ(model->Get("blk.0.attn_q.weight").type, e.weights);
  } else {
    EXPECT_EQ(model->Get("token_embd.weight").type, e.weights);
  }

  SessionOptions options;
  options.threads = 2;
  Session session(*model, options);
  std::vector<std::vector<float>> captured(size_t(ref.n_layers) + 1);
  session.on_hidden = [&](int layer, std::span<const float> hidden) {
    ASSERT_GE(layer, -1);
    ASSERT_LT(layer, ref.n_layers);
    captured[size_t(layer + 1)].assign(hidden.begin(), hidden.end());
  };
  session.Eval(ref.tokens, /*all_logits=*/true);

  for (int l = -1; l < ref.n_layers; ++l) {
    const std::vector<float>& got = captured[size_t(l + 1)];
    const std::vector<float>& want = ref.residual[size_t(l + 1)];
    ASSERT_EQ(got.size(), want.size()) << "layer " << l << ": on_hidden not called or wrong size";
    const Stats s = Compare(got, want);
    const double bound = kUlpsPerStage * (l + 2) * kUnitRoundoff * s.max_ref;
    std::printf("%-14s %-9s max|err| %.3g  max|ref| %.3g  err/(u*max|ref|) %6.1f  bound %.3g\n", e.name,
                l < 0 ? "embedding" : fmt::format("block {}", l).c_str(), s.max_err, s.max_ref,
                s.max_err / (kUnitRoundoff * s.max_ref), bound);
    EXPECT_LE(s.max_err, bound) << e.name << (l < 0 ? " embedding" : fmt::format(" block {}", l));
  }
  ASSERT_EQ(session.logits().size(), ref.logits.size());
  const Stats s = Compare(session.logits(), ref.logits);
  const double bound = kUlpsPerStage * (ref.n_layers + 2) * kUnitRoundoff * s.max_ref;
  std::printf("%-14s %-9s max|err| %.3g  max|ref| %.3g  err/(u*max|ref|) %6.1f  bound %.3g\n", e.name, "logits",
              s.max_err, s.max_ref, s.max_err / (kUnitRoundoff * s.max_ref), bound);
  EXPECT_LE(s.max_err, bound) << e.name << " logits";
}

// `lowbit quantize --format f32` turns an HF folder into a GGUF whose
// tokenizer (SPM or GPT-2 byte-level BPE, written as convert_hf_to_gguf.py
// does) and logits match the folder's.
TEST_P(HfReferenceTest, ConvertsToGgufWithItsTokenizer) {
  const std::string status = EnsureModels();
  if (status.starts_with("FAILED")) FAIL() << status;
  if (!status.empty()) GTEST_SKIP() << status;
  const Expect& e = GetParam();
  const std::string dir = std::string(LOWBIT_HF_MODELS_DIR) + "/" + e.name;
  const std::string out = (fs::temp_directory_path() / fmt::format("lowbit_hf_{}_{}.gguf", e.name, getpid())).string();
  const auto r = testing::RunLowbit(fmt::format("quantize {} -o {} --format f32 --json", dir, out), false);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::unique_ptr<Model> hf = LoadModel(dir);
  const std::unique_ptr<Model> gguf = LoadModel(out);
  // llama.cpp's GPT-2 loader requires output.weight even for a tied head.
  if (e.arch == Arch::kGpt2) {
    EXPECT_NE(GgufFile(out).FindTensor("output.weight"), nullptr);
  }
  fs::remove(out);
  const std::string text = "Hello world! It's 2026; the quick brown fox -- jumps over 3 lazy dogs.\n  Twice.";
  const std::vector<int32_t> ids = hf->tokenizer->Encode(text, true);
  EXPECT_EQ(ids, gguf->tokenizer->Encode(text, true));
  for (int32_t id : ids) EXPECT_EQ(hf->tokenizer->TokenToPiece(id), gguf->tokenizer->TokenToPiece(id));

  std::vector<int32_t> tokens;
  for (int32_t id : ids)
    if (id < hf->config.vocab_size) tokens.push_back(id);  // the tiny models keep a prefix of the vocab
  if (tokens.empty()) tokens = {0, 1, 2};
  SessionOptions so;
  so.threads = 1;
  Session a(*hf, so), b(*gguf, so);
  a.Eval(tokens, true);
  b.Eval(tokens, true);
  const Stats st = Compare(b.logits(), a.logits());
  EXPECT_LE(st.max_err, 1e-5 * std::max(1.0, double(st.max_ref))) << e.name;
}

INSTANTIATE_TEST_SUITE_P(
    Models, HfReferenceTest,
    ::testing::Values(Expect{"gpt2", Arch::kGpt2, DType::kF32, true, false, 16},
                      Expect{"gpt2-f16", Arch::kGpt2, DType::kF16, true, false, 16},
                      Expect{"llama", Arch::kLlama, DType::kF32, true, false, 8},
                      Expect{"llama-bf16", Arch::kLlama, DType::kBF16, true, false, 8},
                      Expect{"llama-f16", Arch::kLlama, DType::kF16, true, false, 8},
                      Expect{"llama-sharded", Arch::kLlama, DType::kF32, true, false, 8},
                      Expect{"qwen2", Arch::kLlama, DType::kF32, false, true, 16},
                      Expect{"mistral", Arch::kLlama, DType::kF32, true, false, 16}),
    [](const ::testing::TestParamInfo<Expect>& info) {
      std::string name = info.param.name;
      std::replace(name.begin(), name.end(), '-', '_');
      return name;
    });

}  // namespace
}  // namespace lowbit
