// The block-by-block calibrated engine (quant/layerwise.h) end to end:
// method parsing; the engine with no stages writes plain rtn's bytes for
// every tensor (catches weight-lookup and row-order bugs); GPTQ beats RTN in
// the same format (KLD against the F32 model on held-out text, calibration on
// other text) on stories260K and tiny-llama-random at 4 and 3 bits; GPTQ into
// Q4_K beats lowbit's imatrix RTN Q4_K and llama.cpp's pure Q4_K file of the
// same size; bad input through the binary.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include <fmt/format.h>

#include "calib/dataset.h"
#include "calib/stats.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "eval/chunks.h"
#include "eval/kld.h"
#include "model/model.h"
#include "quant/importance.h"
#include "quant/layerwise.h"
#include "quant/method.h"
#include "quant/pipeline.h"
#include "quant/recipe.h"
#include "runtime/session.h"
#include "test_util.h"

namespace lowbit {
namespace {

using testing::RunLowbit;
using testing::SharedPath;

constexpr const char* kStories = "models/stories260K/stories260K-f32.llamacpp.gguf";
constexpr const char* kTiny = "models/tiny-llama-random/tiny-llama-f32.gguf";
constexpr const char* kTinyQ4K = "models/tiny-llama-random/tiny-llama-q4_k_s.gguf";
constexpr const char* kTinyStories = "data/tinystories/validation-head.txt";
constexpr const char* kWikiTrain = "data/wikitext-2-raw/wiki.train.head-1MB.noblank.raw";

std::filesystem::path TempDir() {
  return std::filesystem::temp_directory_path() / fmt::format("lowbit_layerwise_test_{}", getpid());
}

std::string TempPath(const std::string& name) {
  std::filesystem::create_directories(TempDir());
  return (TempDir() / name).string();
}

// Removes the quantized files when the tests are done.
class TempCleanup : public ::testing::Environment {
 public:
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(TempDir(), ec);
  }
};
const auto* const kCleanup = ::testing::AddGlobalTestEnvironment(new TempCleanup);

// Calibration and held-out evaluation text for one model.
struct Texts {
  std::string calib, eval;
};

Texts StoriesTexts() {
  // stories260K knows only TinyStories: calibrate on the first half of the
  // validation head, evaluate on the second half.
  const std::string all = ReadFileToString(SharedPath(kTinyStories));
  const size_t cut = all.find('\n', all.size() / 2);
  return {all.substr(0, cut), all.substr(cut + 1)};
}

Texts TinyTexts() {
  // Random weights: calibrate on WikiText-2 train, evaluate on TinyStories.
  return {ReadFileToString(SharedPath(kWikiTrain)).substr(0, 200000),
          ReadFileToString(SharedPath(kTinyStories)).substr(0, 60000)};
}

QuantizeOptions Options(const std::string& out, const std::string& format, const std::string& method,
                        const std::string& calib) {
  QuantizeOptions o;
  o.output = out;
  o.method = method;
  o.recipe.format = format;
  o.recipe.pure = true;
  o.threads = 2;
  o.progress = false;
  o.calib_text = calib;
  o.calib_source = "calibration text";
  o.calib_samples = 32;
  o.calib_seq_len = 128;
  return o;
}

// KLD of models against the F32 source on held-out chunks (base computed once).
class KldProbe {
 public:
  KldProbe(const Model& source, const std::string& eval_text, const std::string& name) {
    base_ = TempPath(name + "-kld-base.bin");
    const ChunkPlan plan = PlanChunks(*source.tokenizer, eval_text, Protocol::kLlamaCpp, 128, 16, name);
    Session s(source, {.threads = 2, .max_context = plan.ctx});
    SaveKldBase(s, plan, base_, false);
  }
  double Kld(const std::string& path) const {
    const auto m = LoadModel(path);
    Session s(*m, {.threads = 2, .max_context = KldBaseContext(base_)});
    return CompareKld(s, base_, false).kld_mean;
  }

 private:
  std::string base_;
};

TEST(Layerwise, ParseMethodSpec) {
  MethodSpec s = ParseMethodSpec("gptq");
  EXPECT_EQ(s.stages, std::vector<std::string>{"gptq"});
  EXPECT_EQ(s.base, "rtn");
  EXPECT_TRUE(s.calibrated());
  s = ParseMethodSpec("awq+gptq");
  EXPECT_EQ(s.stages, (std::vector<std::string>{"awq", "gptq"}));
  s = ParseMethodSpec("awq+rtn-mse");
  EXPECT_EQ(s.stages, std::vector<std::string>{"awq"});
  EXPECT_EQ(s.base, "rtn-mse");
  s = ParseMethodSpec("hqq");
  EXPECT_FALSE(s.calibrated());
  EXPECT_EQ(s.base, "hqq");
  for (const char* bad : {"gptqq", "awq+", "rtn+gptq", "gptq+awq", "gptq+gptq", "rtn+rtn-mse", ""}) {
    SCOPED_TRACE(bad);
    EXPECT_THROW(ParseMethodSpec(bad), Error);
  }
  try {
    ParseMethodSpec("awq+foo");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'foo'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("smoothquant"), std::string::npos) << e.what();
  }
  EXPECT_EQ(BlockLayer("blk.12.attn_q.weight"), 12);
  EXPECT_EQ(BlockLayer("output.weight"), -1);
  EXPECT_EQ(BlockLayer("blk.x.attn_q.weight"), -1);
}

// The engine with no stages and base rtn must write what plain rtn writes,
// tensor for tensor: every block weight passes through its lookup, encoding
// and row handling.
TEST(Layerwise, NoStagesRtnWritesPlainRtnBytes) {
  LOWBIT_REQUIRE_SHARED(kStories);
  LOWBIT_REQUIRE_SHARED(kTiny);
  LOWBIT_REQUIRE_SHARED(kTinyStories);
  const std::string text = ReadFileToString(SharedPath(kTinyStories)).substr(0, 100000);
  struct Case {
    std::string model;
    const char* format;
    bool pure;
  };
  std::vector<Case> cases = {{SharedPath(kStories), "q4_0", true}, {SharedPath(kStories), "Q4_K_M", false},
                             {SharedPath(kTiny), "q4_k", true}, {SharedPath(kTiny), "int3_asym_g128", true},
                             {SharedPath(kTiny), "Q3_K_M", false}};
  // The Hugging Face models hf_reference_test's fixture writes (with torch):
  // HF Llama's q/k rows are permuted for GGUF (the engine's byte-row
  // permutation), GPT-2 has the fused qkv, biases and LayerNorm.
  const auto hf = std::filesystem::path(LOWBIT_BINARY).parent_path() / "tests" / "hf_models";
  if (std::filesystem::exists(hf / "DONE")) {
    cases.push_back({(hf / "llama").string(), "q4_0", true});
    cases.push_back({(hf / "gpt2").string(), "q8_0", true});
  } else {
    std::printf("no %s: the HF Llama (q/k permutation) and GPT-2 cases are skipped\n", hf.c_str());
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(fmt::format("{} {}", c.model, c.format));
    const auto model = LoadModel(c.model);
    QuantizeOptions plain = Options(TempPath("plain.gguf"), c.format, "rtn", "");
    plain.recipe.pure = c.pure;
    QuantizeOptions engine = Options(TempPath("engine.gguf"), c.format, "rtn", text);
    engine.recipe.pure = c.pure;
    engine.force_layerwise = true;
    engine.calib_samples = 4;
    engine.calib_seq_len = 64;
    QuantizeModel(*model, plain, nullptr);
    const QuantizeReport r = QuantizeModel(*model, engine, nullptr);
    EXPECT_TRUE(r.calibrated);
    const auto a = LoadModel(plain.output);
    const auto b = LoadModel(engine.output);
    ASSERT_EQ(a->tensors().size(), b->tensors().size());
    int measured = 0;
    for (size_t i = 0; i < a->tensors().size(); ++i) {
      const TensorView& ta = a->tensors()[i];
      const TensorView& tb = b->Get(ta.name);
      ASSERT_EQ(ta.type, tb.type) << ta.name;
      ASSERT_EQ(ta.bytes, tb.bytes) << ta.name;
      EXPECT_EQ(std::memcmp(ta.data, tb.data, ta.bytes), 0) << ta.name;
    }
    for (const TensorReport& t : r.tensors) {
      if (!t.quantized || BlockLayer(t.name) < 0) continue;
      EXPECT_GE(t.recon_error, 0) << t.name;
      EXPECT_LT(t.recon_error, 0.5) << t.name;
      ++measured;
    }
    EXPECT_GT(measured, 0);
  }
}

struct KldCase {
  const char* format;
  double rtn = 0, gptq = 0;
};

void GptqBeatsRtn(const char* model_path, const Texts& texts, std::vector<KldCase> cases) {
  const auto model = LoadModel(SharedPath(model_path));
  const KldProbe probe(*model, texts.eval, std::filesystem::path(model_path).stem().string());
  for (KldCase& c : cases) {
    SCOPED_TRACE(fmt::format("{} {}", model_path, c.format));
    const std::string rtn = TempPath(fmt::format("rtn-{}.gguf", c.format));
    const std::string gptq = TempPath(fmt::format("gptq-{}.gguf", c.format));
    QuantizeModel(*model, Options(rtn, c.format, "rtn", texts.calib), nullptr);
    const QuantizeReport r = QuantizeModel(*model, Options(gptq, c.format, "gptq", texts.calib), nullptr);
    EXPECT_GT(r.timings.gptq_linears, 0);
    // q/k/v and gate/up share their group's factor.
    EXPECT_GT(r.timings.gptq_factorizations, 0);
    EXPECT_LT(r.timings.gptq_factorizations, r.timings.gptq_linears);
    c.rtn = probe.Kld(rtn);
    c.gptq = probe.Kld(gptq);
    std::printf("%s %-16s KLD rtn %.6f gptq %.6f (%.1f%%)\n", model_path, c.format, c.rtn, c.gptq,
                100.0 * (c.gptq / c.rtn - 1));
    EXPECT_LT(c.gptq, c.rtn);
  }
}

TEST(Layerwise, GptqBeatsRtnOnStories260K) {
  LOWBIT_REQUIRE_SHARED(kStories);
  LOWBIT_REQUIRE_SHARED(kTinyStories);
  // Rows of 64 (and ffn_down's 172, which falls back alike for both methods).
  GptqBeatsRtn(kStories, StoriesTexts(), {{"q4_0"}, {"int3_asym_g32"}});
}

TEST(Layerwise, GptqBeatsRtnOnTinyLlama) {
  LOWBIT_REQUIRE_SHARED(kTiny);
  LOWBIT_REQUIRE_SHARED(kWikiTrain);
  LOWBIT_REQUIRE_SHARED(kTinyStories);
  GptqBeatsRtn(kTiny, TinyTexts(), {{"q4_0"}, {"q3_k"}, {"int3_asym_g128"}});
}

// GPTQ into Q4_K against lowbit's imatrix RTN Q4_K and llama.cpp's Q4_K file.
// That file was written with llama-quantize --pure Q4_K_S: every 2-D tensor
// (token_embd and output included) is Q4_K, as --format q4_k --pure writes,
// so the three files have the same size.
TEST(Layerwise, GptqQ4KBeatsImatrixAndLlamaCpp) {
  LOWBIT_REQUIRE_SHARED(kTiny);
  LOWBIT_REQUIRE_SHARED(kTinyQ4K);
  LOWBIT_REQUIRE_SHARED(kWikiTrain);
  LOWBIT_REQUIRE_SHARED(kTinyStories);
  const Texts texts = TinyTexts();
  const auto model = LoadModel(SharedPath(kTiny));
  const KldProbe probe(*model, texts.eval, "tiny-q4k");

  // imatrix statistics on the same calibration windows GPTQ uses.
  const std::string stats_path = TempPath("tiny.imatrix.gguf");
  {
    const auto samples = SampleCalibration(*model->tokenizer, texts.calib, 32, 128, kDefaultCalibrationSeed, "calib");
    Session s(*model, {.threads = 2, .max_context = 128});
    ActivationStats stats;
    CollectActivationStats(s, samples, &stats, nullptr);
    stats.Save(stats_path);
  }
  const auto importance = LoadImportance(stats_path);
  const std::string imatrix = TempPath("imatrix-q4k.gguf"), gptq = TempPath("gptq-q4k.gguf");
  const QuantizeReport ri = QuantizeModel(*model, Options(imatrix, "q4_k", "imatrix", texts.calib), importance.get());
  const QuantizeReport rg = QuantizeModel(*model, Options(gptq, "q4_k", "gptq", texts.calib), nullptr);
  const uint64_t llama_bytes = std::filesystem::file_size(SharedPath(kTinyQ4K));
  const auto llama = LoadModel(SharedPath(kTinyQ4K));
  uint64_t llama_tensor_bytes = 0;
  for (const TensorView& t : llama->tensors()) llama_tensor_bytes += t.bytes;
  EXPECT_EQ(rg.total_bytes, ri.total_bytes);
  EXPECT_LE(rg.total_bytes, llama_tensor_bytes);
  const double k_imatrix = probe.Kld(imatrix), k_gptq = probe.Kld(gptq), k_llama = probe.Kld(SharedPath(kTinyQ4K));
  std::printf("tiny-llama q4_k (tensor bytes: lowbit %llu, llama.cpp %llu; file %llu): KLD llama.cpp %.6f, "
              "imatrix %.6f, gptq %.6f\n",
              (unsigned long long)rg.total_bytes, (unsigned long long)llama_tensor_bytes,
              (unsigned long long)llama_bytes, k_llama, k_imatrix, k_gptq);
  EXPECT_LT(k_gptq, k_imatrix);
  EXPECT_LT(k_gptq, k_llama);
}

// A stage that encodes each true-sequential group in its planned format and
// records the input each group's first member sees, either through
// ForwardGroup (the block resumed part by part, as GPTQ runs it) or through
// Forward from the block input. `leave_float`: members planned in a float
// type are left to the base method (ForwardGroup must then encode them before
// a later group reads them, as the full forward path does when the stage
// encodes them itself).
class RecordingStage final : public BlockStage {
 public:
  RecordingStage(bool resumed, std::map<std::string, std::vector<float>>* inputs)
      : resumed_(resumed), inputs_(inputs) {}
  std::string_view name() const override { return resumed_ ? "resumed" : "full"; }
  void ProcessBlock(BlockContext& block) override {
    const std::vector<std::vector<std::string>>& groups = block.groups();
    for (size_t g = 0; g < groups.size(); ++g) {
      const std::string& first = groups[g].front();
      if (!block.Has(first)) continue;
      std::vector<float>& seen = (*inputs_)[first];
      const int64_t width = block.Shape(first).back();
      int calls = 0;
      const MatMulInputFn record = [&](const std::string& name, const float* x, int64_t n) {
        ++calls;
        if (name == first) seen.insert(seen.end(), x, x + n * width);
      };
      if (resumed_)
        block.ForwardGroup(g, record);
      else
        block.Forward(record, first.substr(first.find('.', 4) + 1).c_str());
      EXPECT_GT(calls, 0) << first;
      for (const std::string& name : groups[g]) {
        if (!block.Has(name) || !block.Quantized(name)) continue;
        const FormatInfo& f = block.Format(name);
        const bool is_float = f.name == "f32" || f.name == "f16" || f.name == "bf16";
        if (resumed_ && is_float) continue;  // the base method's, when part g is run
        const std::vector<int64_t>& shape = block.Shape(name);
        std::vector<uint8_t> bytes(size_t(shape[0]) * f.RowBytes(shape[1]));
        f.quantize(block.Weight(name).data(), shape[0], shape[1], bytes.data(), nullptr);
        block.SetEncoded(name, std::move(bytes));
      }
    }
  }

 private:
  bool resumed_;
  std::map<std::string, std::vector<float>>* inputs_;
};

// The resumed block (ForwardGroup, then the engine finishing the block from
// where it stopped) sees every group's input, writes every tensor and
// measures every reconstruction error bit for bit as running the block from
// its input for each group and once more at the end does; on Llama (GQA,
// a float-planned member left to the base method) and, when present, the HF
// Llama and GPT-2 models.
TEST(Layerwise, ResumedForwardEqualsFullForwards) {
  LOWBIT_REQUIRE_SHARED(kTiny);
  LOWBIT_REQUIRE_SHARED(kStories);
  LOWBIT_REQUIRE_SHARED(kTinyStories);
  const std::string text = ReadFileToString(SharedPath(kTinyStories)).substr(0, 100000);
  std::vector<std::string> models = {SharedPath(kTiny), SharedPath(kStories)};
  const auto hf = std::filesystem::path(LOWBIT_BINARY).parent_path() / "tests" / "hf_models";
  if (std::filesystem::exists(hf / "DONE")) {
    models.push_back((hf / "llama").string());
    models.push_back((hf / "gpt2").string());
  }
  for (const std::string& path : models) {
    SCOPED_TRACE(path);
    const auto model = LoadModel(path);
    RecipeOptions ro;
    ro.format = "q4_0";
    ro.pure = true;
    if (model->config.arch != Arch::kGpt2) ro.tensor_types = {{"attn_k", "f16"}};
    const Recipe recipe = PlanModelRecipe(*model, ro);
    ThreadPool pool(2);
    const std::unique_ptr<QuantMethod> rtn = MakeQuantMethod("rtn", &pool);
    const auto samples = SampleCalibration(*model->tokenizer, text, 3, 48, 0, "text");
    std::map<std::string, std::vector<float>> inputs[2];
    std::map<std::string, LayerwiseTensor> results[2];
    for (int resumed = 0; resumed < 2; ++resumed) {
      LayerwiseQuantizer::Args args;
      args.model = model.get();
      args.recipe = &recipe;
      args.importance.assign(recipe.tensors.size(), nullptr);
      args.base = rtn.get();
      args.stages.push_back(std::make_unique<RecordingStage>(resumed == 1, &inputs[resumed]));
      args.samples = samples;
      args.pool = &pool;
      args.recon_rows = 64;
      args.log = false;
      LayerwiseQuantizer engine(std::move(args));
      for (const TensorPlan& t : recipe.tensors) {
        LayerwiseTensor out;
        if (engine.Take(t.name, &out)) results[resumed].emplace(t.name, std::move(out));
      }
    }
    EXPECT_EQ(inputs[0].size(), size_t(4 * model->config.n_layers));
    for (const auto& [name, x] : inputs[0]) {
      ASSERT_EQ(inputs[1].count(name), 1u) << name;
      EXPECT_EQ(x.size(), size_t(samples.size() * samples[0].size()) * size_t(model->Get(name).RowLength()));
      EXPECT_TRUE(x == inputs[1].at(name)) << name << ": the resumed forward sees another input";
    }
    ASSERT_EQ(results[0].size(), results[1].size());
    int errors = 0;
    for (const auto& [name, a] : results[0]) {
      const LayerwiseTensor& b = results[1].at(name);
      EXPECT_TRUE(a.bytes == b.bytes) << name;
      EXPECT_EQ(a.recon_error, b.recon_error) << name;
      errors += a.recon_error >= 0;
    }
    EXPECT_EQ(errors, 7 * model->config.n_layers - (model->config.arch == Arch::kGpt2 ? 3 * model->config.n_layers : 0));
  }
}

TEST(Layerwise, BadInputThroughTheBinary) {
  LOWBIT_REQUIRE_SHARED(kStories);
  const std::string model = SharedPath(kStories);
  const std::string out = TempPath("bad.gguf");
  std::filesystem::remove(out);

  auto r = RunLowbit(fmt::format("quantize {} -o {} -f q4_0 -m gptq", model, out));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("--data"), std::string::npos) << r.output;

  r = RunLowbit(fmt::format("quantize {} -o {} -f q4_0 -m awq+gptqq", model, out));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("unknown quantization method 'gptqq'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("smoothquant"), std::string::npos) << r.output;

  const std::string short_text = TempPath("short.txt");
  std::ofstream(short_text) << "Once upon a time there was a cat.";
  r = RunLowbit(fmt::format("quantize {} -o {} -f q4_0 -m gptq --data {} --seq-len 64", model, out, short_text));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(short_text), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(out));

  r = RunLowbit(fmt::format("quantize {} -o {} -f q4_0 -m gptq --data {} --seq-len 100000", model, out, short_text));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_FALSE(std::filesystem::exists(out));
}

}  // namespace
}  // namespace lowbit
