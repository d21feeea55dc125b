// AWQ and SmoothQuant (quant/awq.h): the scale search, clipping and scale
// formulas on seeded random data; the stages on a real block forward pass
// (runtime ForwardBlock) through an in-test BlockContext: folding leaves the
// block's f32 function unchanged (Llama with and without GQA, GPT-2), and
// AWQ + RTN at int3 g128 reproduces the block's output better than RTN; end
// to end through the binary on stories260K and tiny-llama-random: AWQ beats
// RTN in KLD at INT3/INT4 g128, SmoothQuant into f32 leaves the logits as
// they were.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/thread_pool.h"
#include "formats/format.h"
#include "quant/awq.h"
#include "quant/method.h"
#include "runtime/block.h"
#include "test_util.h"

namespace lowbit {
namespace {

const FormatInfo& Format(const char* name) {
  const FormatInfo* f = FindFormatByName(name);
  EXPECT_NE(f, nullptr) << name;
  return f != nullptr ? *f : GetFormat(DType::kF32);
}

std::vector<float> Gaussian(size_t size, float sigma, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> v(size);
  for (float& e : v) e = dist(rng);
  return v;
}

// x (m, n) ~ N(0, 1) with the channels in `salient` multiplied by `gain`.
std::vector<float> Activations(int64_t m, int64_t n, const std::vector<int64_t>& salient, float gain,
                               std::mt19937& rng) {
  std::vector<float> x = Gaussian(size_t(m * n), 1.0f, rng);
  for (int64_t t = 0; t < m; ++t)
    for (int64_t j : salient) x[size_t(t * n + j)] *= gain;
  return x;
}

std::vector<float> MeanAbs(const std::vector<float>& x, int64_t n) {
  const int64_t m = int64_t(x.size()) / n;
  std::vector<float> mean(size_t(n), 0.0f);
  for (int64_t t = 0; t < m; ++t)
    for (int64_t j = 0; j < n; ++j) mean[size_t(j)] += std::fabs(x[size_t(t * n + j)]) / float(m);
  return mean;
}

// ---------------------------------------------------------------- pure pieces

TEST(AwqScales, GuardsZeroNanAndInf) {
  const std::vector<float> x_mean = {0.0f, 1.0f, 4.0f, NAN, INFINITY, 1e-30f, 0.5f};
  for (double alpha : {0.0, 0.05, 0.5, 0.95}) {
    const std::vector<float> s = AwqScales(x_mean, {}, alpha);
    ASSERT_EQ(s.size(), x_mean.size()) << alpha;
    for (float v : s) EXPECT_TRUE(std::isfinite(v) && v > 0) << alpha;
    // normalised: max * min = 1
    const auto [mn, mx] = std::minmax_element(s.begin(), s.end());
    EXPECT_NEAR(double(*mn) * double(*mx), 1.0, 1e-5) << alpha;
  }
  for (float v : AwqScales(x_mean, {}, 0.0)) EXPECT_EQ(v, 1.0f);
  for (float v : AwqScales(std::vector<float>(8, 0.0f), {}, 0.5)) EXPECT_EQ(v, 1.0f);
  const std::vector<float> w_mean = {0.0f, 0.5f, 1.0f, 0.2f, NAN, 0.1f, 0.3f};
  for (float v : AwqScales(x_mean, w_mean, 0.3)) EXPECT_TRUE(std::isfinite(v) && v > 0);
}

TEST(SmoothQuantScales, FormulaAndGuards) {
  const std::vector<float> x = {4.0f, 0.0f, 9.0f, NAN, 1.0f};
  const std::vector<float> w = {1.0f, 2.0f, 0.0f, 1.0f, 0.25f};
  const std::vector<float> s = SmoothQuantScales(x, w, 0.5);
  EXPECT_FLOAT_EQ(s[0], 2.0f);                              // sqrt(4) / sqrt(1)
  EXPECT_EQ(s[1], 1.0f);                                    // never active
  EXPECT_FLOAT_EQ(s[2], float(3.0 / std::sqrt(1e-5)));      // max|W| clamped to 1e-5
  EXPECT_EQ(s[3], 1.0f);                                    // NaN statistic
  EXPECT_FLOAT_EQ(s[4], 2.0f);                              // 1 / sqrt(0.25)
  const std::vector<float> s8 = SmoothQuantScales(x, w, 0.8);
  EXPECT_NEAR(s8[0], std::pow(4.0, 0.8) / std::pow(1.0, 0.2), 1e-5);
}

TEST(AwqSearch, EqualChannelsPickAlphaZero) {
  std::mt19937 rng(11);
  const int64_t m = 256, n = 256, rows = 96;
  std::vector<float> x(size_t(m * n));
  std::bernoulli_distribution sign(0.5);
  for (float& e : x) e = sign(rng) ? 0.7f : -0.7f;  // |x| = 0.7 in every channel
  const std::vector<float> w = Gaussian(size_t(rows * n), 0.02f, rng);
  ThreadPool pool(2);
  for (const char* f : {"int4_asym_g128", "int3_asym_g128"}) {
    const AwqLinear lin{w.data(), rows, &Format(f)};
    const AwqSearchResult r = AwqSearchScales({&lin, 1}, x.data(), m, n, MeanAbs(x, n), AwqOptions(), pool);
    EXPECT_EQ(r.alpha, 0.0) << f;
    for (float s : r.scales) ASSERT_EQ(s, 1.0f) << f;
    EXPECT_EQ(r.loss, r.loss_rtn) << f;
    EXPECT_GT(r.loss_rtn, 0.0) << f;
  }
}

TEST(AwqSearch, SalientChannelsAreProtected) {
  const int64_t m = 512, n = 512, rows = 128;
  const std::vector<int64_t> salient = {7, 100, 260, 301, 480};  // ~1% of the channels
  for (const char* f : {"int3_asym_g128", "int4_asym_g128", "int3_sym_g128"}) {
    for (bool duo : {false, true}) {
      std::mt19937 rng(23);
      const std::vector<float> x = Activations(m, n, salient, 12.0f, rng);
      const std::vector<float> held_out = Activations(m, n, salient, 12.0f, rng);
      const std::vector<float> w1 = Gaussian(size_t(rows * n), 0.02f, rng);
      const std::vector<float> w2 = Gaussian(size_t(2 * rows * n), 0.05f, rng);
      const AwqLinear lins[] = {{w1.data(), rows, &Format(f)}, {w2.data(), 2 * rows, &Format(f)}};
      ThreadPool pool(2);
      AwqOptions options;
      options.duo_scaling = duo;
      const AwqSearchResult r = AwqSearchScales(lins, x.data(), m, n, MeanAbs(x, n), options, pool);
      SCOPED_TRACE(fmt::format("{} duo {} alpha {} loss {:.4g} rtn {:.4g}", f, duo, r.alpha, r.loss, r.loss_rtn));
      EXPECT_GT(r.alpha, 0.0);
      EXPECT_LT(r.loss, 0.8 * r.loss_rtn);
      // The salient channels get the largest scales.
      float others = 0;
      for (int64_t j = 0; j < n; ++j)
        if (std::find(salient.begin(), salient.end(), j) == salient.end()) others = std::max(others, r.scales[j]);
      for (int64_t j : salient) EXPECT_GT(r.scales[size_t(j)], others) << j;
      // And the gain holds on rows the search never saw.
      const double held_awq = AwqGroupLoss(lins, held_out.data(), m, n, r.scales.data(), pool);
      const double held_rtn = AwqGroupLoss(lins, held_out.data(), m, n, nullptr, pool);
      EXPECT_LT(held_awq, 0.8 * held_rtn);
    }
  }
}

TEST(AwqClip, NeverIncreasesTheLoss) {
  const int64_t m = 256, n = 512, rows = 64;
  std::mt19937 rng(5);
  const std::vector<float> x = Activations(m, n, {3, 77, 300}, 8.0f, rng);
  std::student_t_distribution<float> t3(3.0f);
  std::vector<float> w0(size_t(rows * n));
  for (float& e : w0) e = 0.01f * t3(rng);
  ThreadPool pool(2);
  for (const char* f : {"int3_asym_g128", "int4_asym_g128", "int4_sym_g32", "int3_asym_channel", "int4_asym_tensor",
                        "q4_k", "q3_k", "q4_0", "nf4", "f16"}) {
    std::vector<float> w = w0;
    const AwqClipResult r = AwqClip(Format(f), w.data(), rows, n, x.data(), m, AwqOptions(), pool);
    SCOPED_TRACE(fmt::format("{}: {:.4g} -> {:.4g}, {}/{} clamped", f, r.loss_before, r.loss_after, r.clipped, r.units));
    EXPECT_LE(r.loss_after, r.loss_before);
    EXPECT_TRUE(std::isfinite(r.loss_after));
    // Only clamping: same sign, never larger.
    for (size_t i = 0; i < w.size(); ++i) {
      ASSERT_LE(std::fabs(w[i]), std::fabs(w0[i]));
      ASSERT_GE(w[i] * w0[i], 0.0f);
    }
    const std::string name = f;
    if (name == "int3_asym_g128" || name == "int4_asym_g128") {
      EXPECT_GT(r.clipped, 0);
      EXPECT_LT(r.loss_after, r.loss_before);
    }
    if (name == "f16") {
      EXPECT_EQ(w, w0);
    }
  }
}

// ---------------------------------------------------------------- a block

// A BlockContext over one random block held in memory: Forward runs the
// runtime's own ForwardBlock on each calibration sample.
class TestBlock final : public BlockContext {
 public:
  TestBlock(const ModelConfig& config, const FormatInfo& linear_format, uint32_t seed, int samples = 4,
            int seq = 48)
      : config_(config), pool_(2), format_(&linear_format) {
    std::mt19937 rng(seed);
    const int64_t d = config.dim, f = config.ffn_dim, hd = config.head_dim;
    const int64_t q = int64_t(config.n_heads) * hd, kv = int64_t(config.n_kv_heads) * hd;
    // A few residual channels are large (LLM activation outliers), and the
    // norms have uneven gains, so the linears' inputs have salient channels.
    auto norm = [&](const char* name) {
      std::vector<float> g = Gaussian(size_t(d), 0.2f, rng);
      for (float& e : g) e += 1.0f;
      for (int64_t j = 0; j < d; j += 37) g[size_t(j)] *= 6.0f;
      Add(name, {d}, g);
    };
    auto linear = [&](const char* name, int64_t rows, int64_t cols) {
      Add(name, {rows, cols}, Gaussian(size_t(rows * cols), 1.0f / std::sqrt(float(cols)), rng));
    };
    auto bias = [&](const char* name, int64_t size) { Add(name, {size}, Gaussian(size_t(size), 0.1f, rng)); };
    if (config.arch == Arch::kGpt2) {
      norm("attn_norm.weight");
      bias("attn_norm.bias", d);
      linear("attn_qkv.weight", 3 * d, d);
      bias("attn_qkv.bias", 3 * d);
      linear("attn_output.weight", d, d);
      bias("attn_output.bias", d);
      norm("ffn_norm.weight");
      bias("ffn_norm.bias", d);
      linear("ffn_up.weight", f, d);
      bias("ffn_up.bias", f);
      linear("ffn_down.weight", d, f);
      bias("ffn_down.bias", d);
    } else {
      norm("attn_norm.weight");
      linear("attn_q.weight", q, d);
      linear("attn_k.weight", kv, d);
      linear("attn_v.weight", kv, d);
      linear("attn_output.weight", d, q);
      norm("ffn_norm.weight");
      linear("ffn_gate.weight", f, d);
      linear("ffn_up.weight", f, d);
      linear("ffn_down.weight", d, f);
    }
    for (int s = 0; s < samples; ++s) {
      std::vector<float> x = Gaussian(size_t(seq * d), 1.0f, rng);
      for (int64_t t = 0; t < seq; ++t)
        for (int64_t j = 5; j < d; j += 53) x[size_t(t * d + j)] *= 10.0f;
      inputs_.push_back(std::move(x));
    }
    seq_ = seq;
  }

  const ModelConfig& config() const override { return config_; }
  int layer() const override { return 0; }
  ThreadPool& pool() override { return pool_; }
  const std::vector<std::vector<std::string>>& groups() const override { return groups_; }
  bool Has(const std::string& name) const override { return weights_.count(name) > 0; }
  const std::vector<int64_t>& Shape(const std::string& name) const override { return shapes_.at(name); }
  std::vector<float>& Weight(const std::string& name) override { return weights_.at(name); }
  const FormatInfo& Format(const std::string& name) const override {
    return Quantized(name) ? *format_ : GetFormat(DType::kF32);
  }
  bool Quantized(const std::string& name) const override {
    return shapes_.at(name).size() == 2 && !keep_.count(name);
  }
  const float* Importance(const std::string&) const override { return nullptr; }
  void SetEncoded(const std::string& name, std::vector<uint8_t> bytes) override { encoded_[name] = std::move(bytes); }
  bool Encoded(const std::string& name) const override { return encoded_.count(name) > 0; }
  void Note(std::string line) override { notes_.push_back(std::move(line)); }

  void Forward(const MatMulInputFn& on_input, const char* stop_after) override {
    Run(on_input, stop_after);
  }
  // Not resumed (the engine's is): group g's input from a forward from the block input.
  void ForwardGroup(size_t g, const MatMulInputFn& on_input) override {
    const std::vector<std::string>& members = groups_.at(g);
    const std::string stop = members.front().substr(members.front().find('.', 4) + 1);
    Run(
        [&](const std::string& name, const float* x, int64_t n) {
          if (name != members.front()) return;
          for (const std::string& m : members)
            if (Has(m)) on_input(m, x, n);
        },
        stop.c_str());
  }

  // The block's output for every sample, concatenated.
  std::vector<float> Output() { return Run(nullptr, nullptr); }

  // Encodes every quantized linear not yet encoded with rtn, as the engine's base method would.
  void EncodeRest() {
    for (const auto& entry : shapes_) {
      const std::string& name = entry.first;
      if (!Quantized(name) || Encoded(name)) continue;
      const int64_t rows = entry.second[0], n = entry.second[1];
      std::vector<uint8_t> bytes(size_t(rows) * format_->RowBytes(n));
      QuantizeRowsParallel(*format_, weights_.at(name).data(), rows, n, nullptr, bytes.data(), &pool_);
      SetEncoded(name, std::move(bytes));
    }
  }

  void Keep(const std::string& name) { keep_[name] = true; }
  const std::vector<std::string>& notes() const { return notes_; }

 private:
  void Add(const char* name, std::vector<int64_t> shape, std::vector<float> values) {
    const std::string full = fmt::format("blk.0.{}", name);
    shapes_[full] = std::move(shape);
    weights_[full] = std::move(values);
  }

  std::vector<float> Run(const MatMulInputFn& on_input, const char* stop_after) {
    std::map<std::string, TensorView> views;
    for (const auto& entry : shapes_) {
      TensorView v;
      v.name = entry.first;
      v.shape = entry.second;
      auto enc = encoded_.find(entry.first);
      if (enc != encoded_.end()) {
        v.type = format_->id;
        v.data = enc->second.data();
        v.bytes = enc->second.size();
      } else {
        const std::vector<float>& w = weights_.at(entry.first);
        v.data = w.data();
        v.bytes = w.size() * sizeof(float);
      }
      views[entry.first] = v;
    }
    const WeightLookup lookup = [&views](const std::string& name) -> const TensorView& { return views.at(name); };
    const MatMulInputHook hook = [&on_input](const TensorView& w, const float* x, int64_t n) {
      if (on_input) on_input(w.name, x, n);
    };
    const int64_t d = config_.dim, kv = int64_t(config_.n_kv_heads) * config_.head_dim;
    std::vector<float> out;
    for (const std::vector<float>& input : inputs_) {
      std::vector<float> x = input, kc(size_t(seq_ * kv)), vc(size_t(seq_ * kv));
      BlockContextArgs args;
      args.config = &config_;
      args.weights = &lookup;
      args.pool = &pool_;
      args.key_cache = kc.data();
      args.value_cache = vc.data();
      args.cache_rows = seq_;
      args.on_matmul_input = &hook;
      args.stop_after = stop_after;
      ForwardBlock(args, x.data(), seq_);
      if (stop_after == nullptr) out.insert(out.end(), x.begin(), x.begin() + seq_ * d);
    }
    return out;
  }

  ModelConfig config_;
  ThreadPool pool_;
  const FormatInfo* format_;
  int64_t seq_ = 0;
  std::map<std::string, std::vector<int64_t>> shapes_;
  std::map<std::string, std::vector<float>> weights_;
  std::map<std::string, std::vector<uint8_t>> encoded_;
  std::map<std::string, bool> keep_;
  std::vector<std::vector<float>> inputs_;
  std::vector<std::vector<std::string>> groups_;
  std::vector<std::string> notes_;
};

ModelConfig BlockConfig(Arch arch, int kv_heads) {
  ModelConfig c;
  c.arch = arch;
  c.dim = 256;
  c.n_layers = 1;
  c.n_heads = 4;
  c.n_kv_heads = kv_heads;
  c.head_dim = 64;
  c.ffn_dim = 512;
  c.vocab_size = 16;
  c.context_length = 64;
  return c;
}

// max |a - b| / max |a|
double RelMaxDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, double(std::fabs(a[i] - b[i])));
    scale = std::max(scale, double(std::fabs(a[i])));
  }
  return diff / scale;
}

double RelMse(const std::vector<float>& ref, const std::vector<float>& x) {
  double e = 0, s = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    e += double(ref[i] - x[i]) * double(ref[i] - x[i]);
    s += double(ref[i]) * double(ref[i]);
  }
  return e / s;
}

struct BlockCase {
  const char* label;
  Arch arch;
  int kv_heads;
};
const BlockCase kBlocks[] = {{"llama", Arch::kLlama, 4}, {"llama-gqa", Arch::kLlama, 2}, {"gpt2", Arch::kGpt2, 4}};

TEST(AwqStage, FoldingKeepsTheBlockFunction) {
  for (const BlockCase& bc : kBlocks) {
    for (bool smooth : {false, true}) {
      SCOPED_TRACE(fmt::format("{} {}", bc.label, smooth ? "smoothquant" : "awq"));
      TestBlock block(BlockConfig(bc.arch, bc.kv_heads), Format("int3_asym_g128"), 31);
      if (bc.kv_heads == 4 && !smooth) block.Keep("blk.0.attn_k.weight");  // kept tensors are rescaled too
      const std::vector<float> before = block.Output();
      const std::map<std::string, std::vector<float>> w0 = {
          {"norm", block.Weight("blk.0.attn_norm.weight")}, {"ffn_norm", block.Weight("blk.0.ffn_norm.weight")},
          {"o", block.Weight("blk.0.attn_output.weight")}, {"down", block.Weight("blk.0.ffn_down.weight")}};
      AwqOptions options;
      options.clip_search = false;  // clipping changes the function; scaling alone must not
      std::unique_ptr<BlockStage> stage =
          smooth ? MakeSmoothQuantStage(SmoothQuantOptions{0.5}) : MakeAwqStage(options);
      stage->ProcessBlock(block);
      const std::vector<float> after = block.Output();
      for (const std::string& note : block.notes()) std::printf("  %s\n", note.c_str());
      EXPECT_LT(RelMaxDiff(before, after), 2e-5);
      for (const char* name : {"blk.0.attn_norm.weight", "blk.0.ffn_norm.weight"})
        for (float v : block.Weight(name)) ASSERT_TRUE(std::isfinite(v));
      // The folds really happened where they apply.
      EXPECT_NE(block.Weight("blk.0.attn_norm.weight"), w0.at("norm"));
      EXPECT_NE(block.Weight("blk.0.ffn_norm.weight"), w0.at("ffn_norm"));
      const bool v_to_o = !smooth && bc.kv_heads == 4, up_to_down = !smooth && bc.arch == Arch::kLlama;
      EXPECT_EQ(block.Weight("blk.0.attn_output.weight") != w0.at("o"), v_to_o);
      EXPECT_EQ(block.Weight("blk.0.ffn_down.weight") != w0.at("down"), up_to_down);
      EXPECT_FALSE(block.notes().empty());
    }
  }
}

TEST(AwqStage, BeatsRtnOnTheBlockOutput) {
  for (const BlockCase& bc : kBlocks) {
    for (const char* f : {"int3_asym_g128", "int4_asym_g128"}) {
      SCOPED_TRACE(fmt::format("{} {}", bc.label, f));
      TestBlock rtn(BlockConfig(bc.arch, bc.kv_heads), Format(f), 47);
      const std::vector<float> ref = rtn.Output();
      rtn.EncodeRest();
      const double err_rtn = RelMse(ref, rtn.Output());

      TestBlock awq(BlockConfig(bc.arch, bc.kv_heads), Format(f), 47);
      MakeAwqStage(AwqOptions())->ProcessBlock(awq);
      awq.EncodeRest();
      const double err_awq = RelMse(ref, awq.Output());
      std::printf("  %s %s: block output rel. MSE rtn %.4g, awq %.4g\n", bc.label, f, err_rtn, err_awq);
      EXPECT_LT(err_awq, 0.9 * err_rtn);
    }
  }
}

// ---------------------------------------------------------------- end to end

// The binary without the block-by-block engine (quant/layerwise.cc) rejects the method.
bool EngineMissing(const testing::CommandResult& r) {
  return r.exit_code != 0 && r.output.find("unknown quantization method") != std::string::npos;
}

double KldMean(const testing::CommandResult& r) {
  try {
    return nlohmann::json::parse(r.output).at("kld_mean").get<double>();
  } catch (const std::exception&) {
    ADD_FAILURE() << "no kld_mean in: " << r.output;
    return NAN;
  }
}

// Quantizes each model with rtn, awq and smoothquant (calibrated on the first
// half of TinyStories validation-head.txt) and measures the KLD against its
// f32 logits on the second half.
class AwqEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / fmt::format("lowbit_awq_{}", ::getpid());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Splits the TinyStories text at a story boundary near the middle.
  void SplitData() {
    std::ifstream in(testing::SharedPath("data/tinystories/validation-head.txt"), std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t cut = text.find("\n\n", text.size() / 2);
    ASSERT_NE(cut, std::string::npos);
    calib_ = (dir_ / "calib.txt").string();
    heldout_ = (dir_ / "heldout.txt").string();
    std::ofstream(calib_, std::ios::binary) << text.substr(0, cut);
    std::ofstream(heldout_, std::ios::binary) << text.substr(cut + 2);
  }

  // Mean KLD of `model` quantized with method/format against `base`; NaN and
  // *missing = true when the binary has no block-by-block engine.
  double Kld(const std::string& model, const std::string& base, const std::string& method, const std::string& format,
             bool* missing) {
    const std::string out = (dir_ / fmt::format("{}-{}.gguf", method, format)).string();
    std::string cmd = fmt::format("quantize {} -o {} --format {} --method {} -t 2", model, out, format, method);
    if (method != "rtn") cmd += fmt::format(" --data {} --samples 16 --seq-len 128", calib_);
    const testing::CommandResult q = testing::RunLowbit(cmd);
    if (EngineMissing(q)) {
      *missing = true;
      return NAN;
    }
    EXPECT_EQ(q.exit_code, 0) << cmd << "\n" << q.output;
    const testing::CommandResult k = testing::RunLowbit(fmt::format("kld {} --base {} -t 2 --json", out, base), false);
    EXPECT_EQ(k.exit_code, 0) << k.output;
    return KldMean(k);
  }

  std::filesystem::path dir_;
  std::string calib_, heldout_;
};

TEST_F(AwqEndToEnd, AwqBeatsRtnAndSmoothQuantIsExact) {
  LOWBIT_REQUIRE_SHARED("models/stories260K/stories260K-f32.llamacpp.gguf");
  LOWBIT_REQUIRE_SHARED("models/tiny-llama-random/tiny-llama-f32.gguf");
  LOWBIT_REQUIRE_SHARED("data/tinystories/validation-head.txt");
  SplitData();
  for (const char* rel : {"models/stories260K/stories260K-f32.llamacpp.gguf", "models/tiny-llama-random/tiny-llama-f32.gguf"}) {
    SCOPED_TRACE(rel);
    const std::string model = testing::SharedPath(rel);
    const std::string base = (dir_ / "base.kld").string();
    const testing::CommandResult b = testing::RunLowbit(
        fmt::format("kld {} --save-base {} -f {} -c 128 --chunks 40 -t 2", model, base, heldout_));
    ASSERT_EQ(b.exit_code, 0) << b.output;
    bool missing = false;
    const double smooth = Kld(model, base, "smoothquant", "f32", &missing);
    if (missing) GTEST_SKIP() << "lowbit has no --method awq/smoothquant yet (the block-by-block engine, "
                                 "src/quant/layerwise.cc, is not in this build)";
    std::printf("%s smoothquant f32: KLD %.3g\n", rel, smooth);
    EXPECT_LT(std::fabs(smooth), 1e-6);  // exact folding: the same function up to float rounding
    for (const char* format : {"int4_asym_g128", "int3_asym_g128"}) {
      const double rtn = Kld(model, base, "rtn", format, &missing);
      const double awq = Kld(model, base, "awq", format, &missing);
      std::printf("%s %s: KLD rtn %.5f awq %.5f (%+.0f%%)\n", rel, format, rtn, awq, 100.0 * (awq / rtn - 1.0));
      EXPECT_LT(awq, rtn) << format;
    }
  }
}

}  // namespace
}  // namespace lowbit
