// lowbit quantize: every weight format on stories260K (llama2.c and GGUF
// sources), byte-identity with llama-quantize's Q4_K, rtn-mse vs rtn, the
// llama.cpp preset mix on the TinyLlama-1.1B shape, overrides, pruning, and
// clean failures that leave no output file.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <fmt/format.h>

#include "core/error.h"
#include "io/gguf.h"
#include "model/model.h"
#include "quant/gguf_metadata.h"
#include "quant/pipeline.h"
#include "runtime/session.h"
#include "test_util.h"

namespace lowbit {
namespace {

using testing::SharedPath;

constexpr const char* kStoriesBin = "models/stories260K/stories260K.bin";
constexpr const char* kStoriesGguf = "models/stories260K/stories260K-f32.llamacpp.gguf";
constexpr const char* kTinyF32 = "models/tiny-llama-random/tiny-llama-f32.gguf";
constexpr const char* kTinyQ4KS = "models/tiny-llama-random/tiny-llama-q4_k_s.gguf";

std::string TempPath(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / fmt::format("lowbit_quantize_test_{}", getpid());
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

QuantizeOptions Options(const std::string& out, const std::string& format, const std::string& method = "rtn") {
  QuantizeOptions o;
  o.output = out;
  o.method = method;
  o.recipe.format = format;
  o.threads = 2;
  o.progress = false;
  return o;
}

std::vector<float> Logits(const Model& m, const std::string& prompt = "Once upon a time") {
  Session s(m, {.threads = 2, .max_context = 64});
  const std::vector<int32_t> tokens = m.tokenizer->Encode(prompt, true);
  s.Eval(tokens, false);
  return {s.logits().begin(), s.logits().end()};
}

void ExpectFinite(const std::vector<float>& logits, const std::string& what) {
  ASSERT_FALSE(logits.empty()) << what;
  for (size_t i = 0; i < logits.size(); ++i) ASSERT_TRUE(std::isfinite(logits[i])) << what << " logit " << i;
}

TEST(Quantize, Stories260KToEveryWeightFormat) {
  for (const char* src : {kStoriesBin, kStoriesGguf}) {
    LOWBIT_REQUIRE_SHARED(src);
    const auto model = LoadModel(SharedPath(src));
    for (const FormatInfo& f : AllFormats()) {
      if (!f.weight_format) continue;
      SCOPED_TRACE(fmt::format("{} -> {}", src, f.name));
      const std::string out = TempPath(fmt::format("s260k_{}.gguf", f.name));
      QuantizeOptions o = Options(out, std::string(f.name));
      o.recipe.pure = true;
      const QuantizeReport r = QuantizeModel(*model, o, nullptr);
      if (f.name != "f32") {
        EXPECT_GT(r.quantized_parameters, 0);
      }
      // Rows of 172 (ffn_down) and 64 fit only some blocks: every other case is a reported fallback.
      for (const TensorReport& t : r.tensors) {
        if (!t.quantized) continue;
        const bool fits = t.shape.back() % f.block_size == 0;
        EXPECT_EQ(t.fallback.empty(), fits) << t.name;
        if (fits) {
          EXPECT_EQ(t.format, f.name) << t.name;
        }
        EXPECT_TRUE(std::isfinite(t.rel_rmse)) << t.name;
        EXPECT_LT(t.rel_rmse, 1.0) << t.name;
      }
      const auto q = LoadModel(out);
      ExpectFinite(Logits(*q), out);
      std::filesystem::remove(out);
    }
  }
}

TEST(Quantize, F32RoundTripKeepsLogitsExactly) {
  LOWBIT_REQUIRE_SHARED(kStoriesBin);
  const auto model = LoadModel(SharedPath(kStoriesBin));
  const std::string out = TempPath("s260k_f32.gguf");
  QuantizeModel(*model, Options(out, "f32"), nullptr);
  const auto q = LoadModel(out);
  EXPECT_EQ(Logits(*model), Logits(*q));
  EXPECT_EQ(q->tokenizer->Encode("Once upon a time, Lily", true), model->tokenizer->Encode("Once upon a time, Lily", true));
}

// Tensor data bytes by name.
std::map<std::string, std::pair<uint32_t, std::vector<uint8_t>>> TensorBytes(const std::string& path) {
  const GgufFile f(path);
  std::map<std::string, std::pair<uint32_t, std::vector<uint8_t>>> out;
  for (const GgufTensorInfo& t : f.tensors()) out[t.name] = {t.ggml_type, {t.data, t.data + t.bytes}};
  return out;
}

TEST(Quantize, PureQ4KIsByteIdenticalToLlamaQuantize) {
  LOWBIT_REQUIRE_SHARED(kTinyF32);
  LOWBIT_REQUIRE_SHARED(kTinyQ4KS);
  const auto model = LoadModel(SharedPath(kTinyF32));
  const std::string out = TempPath("tiny_q4_k.gguf");
  QuantizeOptions o = Options(out, "q4_k");
  o.recipe.pure = true;
  QuantizeModel(*model, o, nullptr);
  const auto ours = TensorBytes(out), theirs = TensorBytes(SharedPath(kTinyQ4KS));
  ASSERT_EQ(ours.size(), theirs.size());
  for (const auto& [name, t] : theirs) {
    ASSERT_TRUE(ours.count(name)) << name;
    EXPECT_EQ(ours.at(name).first, t.first) << name;
    EXPECT_TRUE(ours.at(name).second == t.second) << name << " differs";
  }
  // --tensor-type '.*=q4_k' on a plain format is the same recipe.
  const std::string out2 = TempPath("tiny_q4_k_tt.gguf");
  QuantizeOptions o2 = Options(out2, "f16");
  o2.recipe.tensor_types = {{".*", "q4_k"}};
  QuantizeModel(*model, o2, nullptr);
  const auto ours2 = TensorBytes(out2);
  for (const auto& [name, t] : theirs) EXPECT_TRUE(ours2.at(name).second == t.second) << name;
}

double MeanRelRmse(const QuantizeReport& r) {
  double s = 0;
  int n = 0;
  for (const TensorReport& t : r.tensors)
    if (t.quantized) s += t.rel_rmse, ++n;
  return s / n;
}

TEST(Quantize, RtnMseHasLowerWeightErrorThanRtn) {
  LOWBIT_REQUIRE_SHARED(kTinyF32);
  const auto model = LoadModel(SharedPath(kTinyF32));
  for (const char* format : {"q4_0", "q4_k", "int4_sym_g128", "int3_asym_g32", "nf4"}) {
    SCOPED_TRACE(format);
    const QuantizeReport rtn = QuantizeModel(*model, Options(TempPath("rtn.gguf"), format, "rtn"), nullptr);
    const QuantizeReport mse = QuantizeModel(*model, Options(TempPath("mse.gguf"), format, "rtn-mse"), nullptr);
    ASSERT_EQ(rtn.tensors.size(), mse.tensors.size());
    for (size_t i = 0; i < rtn.tensors.size(); ++i)
      EXPECT_LE(mse.tensors[i].rel_rmse, rtn.tensors[i].rel_rmse * (1 + 1e-12)) << rtn.tensors[i].name;
    EXPECT_LT(MeanRelRmse(mse), MeanRelRmse(rtn) * 0.995);
  }
}

// The TinyLlama-1.1B tensor list (22 layers, 32 heads, 4 KV heads, ffn 5632).
std::vector<SourceTensor> TinyLlamaShape() {
  const FormatInfo* f16 = &GetFormat(DType::kF16);
  std::vector<SourceTensor> t{{"token_embd.weight", {32000, 2048}, f16}};
  for (int l = 0; l < 22; ++l) {
    auto b = [&](const char* n) { return fmt::format("blk.{}.{}", l, n); };
    t.push_back({b("attn_norm.weight"), {2048}, f16});
    t.push_back({b("attn_q.weight"), {2048, 2048}, f16});
    t.push_back({b("attn_k.weight"), {256, 2048}, f16});
    t.push_back({b("attn_v.weight"), {256, 2048}, f16});
    t.push_back({b("attn_output.weight"), {2048, 2048}, f16});
    t.push_back({b("ffn_norm.weight"), {2048}, f16});
    t.push_back({b("ffn_gate.weight"), {5632, 2048}, f16});
    t.push_back({b("ffn_up.weight"), {5632, 2048}, f16});
    t.push_back({b("ffn_down.weight"), {2048, 5632}, f16});
  }
  t.push_back({"output_norm.weight", {2048}, f16});
  t.push_back({"output.weight", {32000, 2048}, f16});
  return t;
}

std::map<std::string, std::string> PlanTypes(const std::string& preset) {
  RecipeOptions o;
  o.format = preset;
  const Recipe r = PlanRecipe(TinyLlamaShape(), {.n_layers = 22, .n_heads = 32, .n_kv_heads = 4}, o);
  std::map<std::string, std::string> m;
  for (const TensorPlan& t : r.tensors) {
    m[t.name] = std::string(t.format->name);
    EXPECT_TRUE(t.fallback.empty()) << t.name;
  }
  return m;
}

TEST(Recipe, Q4KMOnTinyLlamaShapeMatchesLlamaCpp) {
  const auto m = PlanTypes("Q4_K_M");
  std::set<std::string> q6k;
  for (const auto& [name, type] : m)
    if (type == "q6_k") q6k.insert(name);
  // use_more_bits(i, 22): i < 2, i >= 19, or (i - 2) % 3 == 2.
  std::set<std::string> expect{"output.weight"};
  for (int l : {0, 1, 4, 7, 10, 13, 16, 19, 20, 21}) {
    expect.insert(fmt::format("blk.{}.attn_v.weight", l));
    expect.insert(fmt::format("blk.{}.ffn_down.weight", l));
  }
  EXPECT_EQ(q6k, expect);
  EXPECT_EQ(m.at("token_embd.weight"), "q4_k");
  EXPECT_EQ(m.at("blk.3.attn_q.weight"), "q4_k");
  EXPECT_EQ(m.at("blk.3.ffn_down.weight"), "q4_k");
  EXPECT_EQ(m.at("blk.3.attn_norm.weight"), "f16");  // 1-D: kept in source type
  EXPECT_EQ(PlanTypes("Q4_K").at("blk.0.attn_v.weight"), "q6_k");  // alias of Q4_K_M
}

TEST(Recipe, OtherPresetsFollowLlamaCpp) {
  auto s = PlanTypes("Q4_K_S");
  EXPECT_EQ(s.at("blk.3.attn_v.weight"), "q5_k");  // first 4 attn_v
  EXPECT_EQ(s.at("blk.4.attn_v.weight"), "q4_k");
  EXPECT_EQ(s.at("blk.1.ffn_down.weight"), "q5_k");  // layer < 22/8 = 2
  EXPECT_EQ(s.at("blk.2.ffn_down.weight"), "q4_k");
  auto m3 = PlanTypes("Q3_K_M");
  EXPECT_EQ(m3.at("blk.1.attn_v.weight"), "q5_k");
  EXPECT_EQ(m3.at("blk.2.attn_v.weight"), "q4_k");
  EXPECT_EQ(m3.at("blk.0.ffn_down.weight"), "q5_k");  // layer < 22/16 = 1
  EXPECT_EQ(m3.at("blk.1.ffn_down.weight"), "q4_k");
  EXPECT_EQ(m3.at("blk.5.attn_output.weight"), "q4_k");
  EXPECT_EQ(m3.at("blk.5.attn_q.weight"), "q3_k");
  auto q2 = PlanTypes("Q2_K");
  EXPECT_EQ(q2.at("blk.5.attn_v.weight"), "q4_k");  // GQA 8 >= 4
  EXPECT_EQ(q2.at("blk.5.ffn_down.weight"), "q3_k");
  EXPECT_EQ(PlanTypes("Q8_0").at("output.weight"), "q8_0");
  EXPECT_EQ(PlanTypes("Q4_0").at("output.weight"), "q6_k");
  EXPECT_EQ(PlanTypes("IQ4_XS").at("blk.9.attn_v.weight"), "q5_k");
  EXPECT_EQ(PlanTypes("TQ2_0").at("token_embd.weight"), "q4_k");
}

TEST(Recipe, ShapeFallbackChains) {
  std::string why;
  EXPECT_EQ(FitRowLength(*FindFormatByName("q4_k"), 64, &why).name, "q5_0");
  EXPECT_NE(why.find("64"), std::string::npos);
  EXPECT_EQ(FitRowLength(*FindFormatByName("q4_k"), 172, &why).name, "f16");
  EXPECT_EQ(FitRowLength(*FindFormatByName("iq4_xs"), 64, &why).name, "iq4_nl");
  EXPECT_EQ(FitRowLength(*FindFormatByName("int4_sym_g128"), 64, &why).name, "int4_sym_g64");
  EXPECT_EQ(FitRowLength(*FindFormatByName("int4_asym_g32"), 172, &why).name, "int4_asym_channel");
  EXPECT_EQ(FitRowLength(*FindFormatByName("int3_sym_g32"), 172, &why).name, "int4_sym_channel");
  EXPECT_EQ(FitRowLength(*FindFormatByName("int2_sym_tensor"), 172, &why).name, "int2_sym_tensor");
  EXPECT_EQ(FitRowLength(*FindFormatByName("nf4"), 172, &why).name, "int4_sym_channel");
  why.clear();
  EXPECT_EQ(FitRowLength(*FindFormatByName("q8_0"), 64, &why).name, "q8_0");
  EXPECT_TRUE(why.empty());
}

TEST(Quantize, KeepTensorTypeAndOutputOverrides) {
  LOWBIT_REQUIRE_SHARED(kTinyF32);
  const auto model = LoadModel(SharedPath(kTinyF32));
  const std::string out = TempPath("tiny_overrides.gguf");
  QuantizeOptions o = Options(out, "Q4_K_M");
  o.recipe.keep = {"attn_q"};
  o.recipe.tensor_types = {{"ffn_(up|gate)", "q8_0"}, {"blk\\.1\\.ffn_up", "iq4_nl"}};
  o.recipe.output_tensor_type = "q5_k";
  o.recipe.token_embedding_type = "int8_sym_channel";
  QuantizeModel(*model, o, nullptr);
  const GgufFile f(out);
  auto type = [&](const std::string& n) { return std::string(FindFormatByGgufType(f.FindTensor(n)->ggml_type)->name); };
  EXPECT_EQ(type("blk.0.attn_q.weight"), "f32");
  EXPECT_EQ(type("blk.0.ffn_up.weight"), "q8_0");
  EXPECT_EQ(type("blk.1.ffn_up.weight"), "iq4_nl");  // the last matching --tensor-type wins
  EXPECT_EQ(type("blk.1.ffn_gate.weight"), "q8_0");
  EXPECT_EQ(type("output.weight"), "q5_k");
  EXPECT_EQ(type("token_embd.weight"), "int8_sym_channel");
  EXPECT_EQ(type("blk.0.attn_k.weight"), "q4_k");
  EXPECT_EQ(f.GetInt("general.file_type", -1), -1);  // not a pure ggml file any more: no ftype claimed
  ExpectFinite(Logits(*LoadModel(out)), out);
}

TEST(Quantize, PruningSparsityIsExact) {
  LOWBIT_REQUIRE_SHARED(kTinyF32);
  const auto model = LoadModel(SharedPath(kTinyF32));
  QuantizeOptions o = Options(TempPath("tiny_24.gguf"), "f32");
  o.prune = ParsePruneSpec("2:4");
  QuantizeReport r = QuantizeModel(*model, o, nullptr);
  EXPECT_DOUBLE_EQ(r.pruned_sparsity, 0.5);
  for (const TensorReport& t : r.tensors)
    if (t.quantized) {
      EXPECT_DOUBLE_EQ(t.sparsity, 0.5) << t.name;
    }
  // Every group of 4 holds exactly 2 zeros in the written (f32) weights.
  const auto q = LoadModel(o.output);
  const std::vector<float> w = ToF32(q->Get("blk.0.ffn_down.weight"));
  for (size_t g = 0; g < w.size(); g += 4)
    ASSERT_EQ((w[g] == 0) + (w[g + 1] == 0) + (w[g + 2] == 0) + (w[g + 3] == 0), 2) << g;

  o.output = TempPath("tiny_mag.gguf");
  o.prune = ParsePruneSpec("magnitude:0.3");
  o.recipe.format = "q8_0";
  r = QuantizeModel(*model, o, nullptr);
  EXPECT_NEAR(r.pruned_sparsity, 0.3, 1e-5);  // round(0.3 * size) per tensor
  ExpectFinite(Logits(*LoadModel(o.output)), o.output);
  EXPECT_THROW(ParsePruneSpec("magnitude:1.5"), Error);
  EXPECT_THROW(ParsePruneSpec("3:8"), Error);
}

// Expects QuantizeModel to throw an Error whose message contains `needle`, and no output file.
void ExpectFails(const Model& model, const QuantizeOptions& o, const ImportanceSource* imp, const std::string& needle) {
  std::filesystem::remove(o.output);
  try {
    QuantizeModel(model, o, imp);
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(o.output)) << o.output;
  for (const auto& entry : std::filesystem::directory_iterator(std::filesystem::path(o.output).parent_path()))
    EXPECT_EQ(entry.path().string().find(".tmp"), std::string::npos) << "temporary file left: " << entry.path();
}

class FixedImportance final : public ImportanceSource {
 public:
  std::map<std::string, std::vector<float>> data;
  const std::vector<float>* Find(const std::string& name) const override {
    auto it = data.find(name);
    return it == data.end() ? nullptr : &it->second;
  }
  std::string description() const override { return "fixed-importance"; }
};

TEST(Quantize, BadInputFailsCleanlyAndLeavesNoFile) {
  LOWBIT_REQUIRE_SHARED(kStoriesBin);
  const auto model = LoadModel(SharedPath(kStoriesBin));
  const std::string out = TempPath("bad.gguf");
  ExpectFails(*model, Options(out, "q4_x"), nullptr, "unknown --format 'q4_x'");
  ExpectFails(*model, Options(out, "q8_1"), nullptr, "not a weight format");
  ExpectFails(*model, Options(out, "q4_0", "gptq-ish"), nullptr, "unknown quantization method");
  ExpectFails(*model, Options(out, "q4_0", "imatrix"), nullptr, "needs activation statistics");
  QuantizeOptions o = Options(out, "q4_0");
  o.recipe.tensor_types = {{"attn_zz", "q8_0"}};
  ExpectFails(*model, o, nullptr, "matches no quantizable tensor");
  o.recipe.tensor_types = {{"attn_q", "nope"}};
  ExpectFails(*model, o, nullptr, "unknown weight format 'nope'");
  o.recipe.tensor_types = {{"attn_[q", "q8_0"}};
  ExpectFails(*model, o, nullptr, "invalid regular expression");
  o = Options(out, "q4_0");
  o.recipe.keep = {"^nothing$"};
  ExpectFails(*model, o, nullptr, "--keep '^nothing$' matches no tensor");

  // Statistics that lack a tensor, or have the wrong width.
  FixedImportance imp;
  imp.data["blk.0.attn_q.weight"] = std::vector<float>(64, 1.0f);
  ExpectFails(*model, Options(out, "q4_0", "imatrix"), &imp, "no entry for tensor");
  imp.data["blk.0.attn_q.weight"] = std::vector<float>(63, 1.0f);
  ExpectFails(*model, Options(out, "q4_0", "rtn-mse"), &imp, "input channels");

  // A corrupt statistics file.
  const std::string stats = TempPath("corrupt.stats");
  std::ofstream(stats) << "this is not a GGUF imatrix";
  EXPECT_THROW(LoadImportance(stats), Error);
  EXPECT_THROW(LoadImportance(TempPath("missing.stats")), Error);

  // NaN weights (a hand-built model: LoadModel itself rejects NaN files).
  Model bad;
  bad.config = model->config;
  bad.path = "nan-model";
  bad.source_format = "llama2c";
  bad.tokenizer = std::move(LoadModel(SharedPath(kStoriesBin))->tokenizer);
  for (const TensorView& v : model->tensors()) {
    std::vector<float> x = ToF32(v);
    if (v.name == "blk.2.ffn_up.weight") x[77] = NAN;
    bad.AddOwnedF32(v.name, v.shape, std::move(x));
  }
  ExpectFails(bad, Options(out, "q4_0"), nullptr, "non-finite weight");
}

TEST(Quantize, ImatrixMethodUsesImportance) {
  LOWBIT_REQUIRE_SHARED(kTinyF32);
  const auto model = LoadModel(SharedPath(kTinyF32));
  FixedImportance imp;
  for (const TensorView& v : model->tensors())
    if (v.shape.size() == 2 && v.name != "token_embd.weight") {
      std::vector<float> w(size_t(v.shape[1]));
      for (size_t i = 0; i < w.size(); ++i) w[i] = 1.0f + float(i % 7);
      imp.data[v.name] = std::move(w);
    }
  const std::string a = TempPath("imx.gguf"), b = TempPath("noimx.gguf");
  QuantizeModel(*model, Options(a, "q4_k", "imatrix"), &imp);
  QuantizeModel(*model, Options(b, "q4_k", "rtn"), nullptr);
  EXPECT_FALSE(TensorBytes(a).at("blk.0.attn_q.weight").second == TensorBytes(b).at("blk.0.attn_q.weight").second);
  ExpectFinite(Logits(*LoadModel(a)), a);
}

TEST(Quantize, PermuteRowsForGgufInterleavesHalves) {
  // One head of dim 4, rows of 1: HF order (r0 r1 | r2 r3) -> GGUF (r0 r2 r1 r3).
  std::vector<float> w{0, 1, 2, 3, 10, 11, 12, 13};
  PermuteRowsForGguf(w.data(), 2, 4, 1);
  EXPECT_EQ(w, (std::vector<float>{0, 2, 1, 3, 10, 12, 11, 13}));
}

TEST(Quantize, JsonReportHasTotals) {
  LOWBIT_REQUIRE_SHARED(kStoriesBin);
  const auto model = LoadModel(SharedPath(kStoriesBin));
  const QuantizeReport r = QuantizeModel(*model, Options(TempPath("json.gguf"), "Q4_K_M"), nullptr);
  const std::string j = r.ToJson();
  for (const char* key : {"\"tensors\"", "\"rel_rmse\"", "\"fallback\"", "\"bits_per_weight\"", "\"peak_rss_bytes\"",
                          "\"seconds\"", "\"shape\""})
    EXPECT_NE(j.find(key), std::string::npos) << key;
  EXPECT_GT(r.peak_rss_bytes, 0u);
  EXPECT_GT(r.fallbacks, 0);
  EXPECT_EQ(r.file_type, 15u);
}

}  // namespace
}  // namespace lowbit
