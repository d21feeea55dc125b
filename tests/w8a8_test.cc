// W8A8 int8 (dynamic / static) and LLM.int8() products: the SIMD kernels
// against their scalar references on every target (integer sums exact, the
// same y bits), the properties that tie the modes together, and the whole
// path through the binary: quantize with --activations, then kld / ppl / run.
// Seeds: random each run, printed; LOWBIT_SEED=N replays.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "formats/all_formats.h"
#include "formats/format.h"
#include "hwy/targets.h"
#include "kernels/dot_ref.h"
#include "kernels/matmul.h"
#include "kernels/w8a8.h"
#include "test_util.h"
#include "test_random.h"
#include "test_targets.h"
#include "test_weights.h"

namespace lowbit {
namespace {

using testing::RunLowbit;
using testing::SharedPath;

uint64_t Seed() { return testing::ReplayableSeed("w8a8_test"); }

using testing::ForEachTarget;

constexpr DType kInt8Channel = DTypeOf<IntFormat<8, false, kPerChannel>>();
constexpr DType kInt8Tensor = DTypeOf<IntFormat<8, false, kPerTensor>>();

using testing::MakeWeights;
using testing::Weights;

std::vector<float> Normal(std::mt19937_64& rng, size_t count, float scale) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(count);
  for (float& x : v) x = dist(rng);
  return v;
}

// Row lengths around the 32-byte chunks, plus stories260K's 64 / 172 and larger ones.
const std::vector<int64_t> kLengths = {1, 5, 31, 32, 33, 63, 64, 95, 172, 256, 301, 768};

TEST(W8A8Test, Int8WeightsAreTheChannelAndTensorFormats) {
  EXPECT_EQ(GetFormat(kInt8Channel).name, "int8_sym_channel");
  EXPECT_EQ(GetFormat(kInt8Tensor).name, "int8_sym_tensor");
  EXPECT_TRUE(IsW8A8Weight(kInt8Channel));
  EXPECT_TRUE(IsW8A8Weight(kInt8Tensor));
  EXPECT_FALSE(IsW8A8Weight(DType::kF32));
  EXPECT_FALSE(IsW8A8Weight(DTypeOf<Q8_0Format>()));
}

TEST(W8A8Test, QuantizerMatchesReferenceBytes) {
  std::mt19937_64 rng(Seed() ^ 1);
  ForEachTarget([&] {
    for (int64_t in : kLengths) {
      SCOPED_TRACE("in " + std::to_string(in));
      const int64_t rows = 3;
      std::vector<float> x = Normal(rng, size_t(rows * in), 2.0f);
      x[0] = 0.0f;                        // zero,
      std::fill_n(&x[size_t(in)], in, 0.0f);  // an all-zero row,
      x[size_t(2 * in)] = 40.0f;          // and a value the static scale clips
      for (float static_scale : {-1.0f, 0.05f, 0.0f}) {
        std::vector<int8_t> q(x.size()), q_ref(x.size());
        std::vector<float> s(static_cast<size_t>(rows)), s_ref(static_cast<size_t>(rows));
        QuantizeActInt8(x.data(), rows, in, static_scale, q.data(), s.data());
        QuantizeActInt8Ref(x.data(), rows, in, static_scale, q_ref.data(), s_ref.data());
        ASSERT_EQ(q, q_ref) << "static_scale " << static_scale;
        for (int64_t t = 0; t < rows; ++t) ASSERT_EQ(std::bit_cast<uint32_t>(s[size_t(t)]), std::bit_cast<uint32_t>(s_ref[size_t(t)]));
      }
    }
  });
}

TEST(W8A8Test, QuantizerFormula) {
  const float x[4] = {1.0f, -2.54f, 0.5f, 127.0f};
  int8_t q[4];
  float s;
  QuantizeActInt8Ref(x, 1, 4, -1.0f, q, &s);  // dynamic: s = 127 / 127 = 1
  EXPECT_EQ(s, 1.0f);
  EXPECT_EQ(q[0], 1);
  EXPECT_EQ(q[1], -3);
  EXPECT_EQ(q[2], 0);  // ties to even
  EXPECT_EQ(q[3], 127);
  QuantizeActInt8Ref(x, 1, 4, 0.5f, q, &s);  // static, clipped at 127
  EXPECT_EQ(s, 0.5f);
  EXPECT_EQ(q[1], -5);
  EXPECT_EQ(q[3], 127);
  QuantizeActInt8Ref(x, 1, 4, 0.0f, q, &s);  // a zero static scale quantizes to 0
  EXPECT_EQ(q[0], 0);
}

// The integer sums are exact: every target gives the reference's int32s,
// over every code (u = 0, q = -128, included) and leftover sizes.
TEST(W8A8Test, IntegerDotsEqualReferenceExactly) {
  std::mt19937_64 rng(Seed() ^ 2);
  std::uniform_int_distribution<int> u8(0, 255), i8(-127, 127), extreme(0, 1);
  ForEachTarget([&] {
    for (int64_t in : kLengths) {
      for (int64_t rows : {1, 3, 4, 9}) {
        for (int64_t n : {1, 2, 5, 8}) {
          SCOPED_TRACE("in " + std::to_string(in) + " rows " + std::to_string(rows) + " n " + std::to_string(n));
          const int64_t stride = in + 3;  // rows not packed: the stride is honoured
          std::vector<uint8_t> w(size_t(rows * stride));
          std::vector<int8_t> q(size_t(n * in));
          const bool worst = extreme(rng) == 1;  // all-extreme codes: the largest sums
          for (auto& b : w) b = worst ? uint8_t(extreme(rng) ? 255 : 1) : uint8_t(u8(rng));
          for (auto& a : q) a = worst ? int8_t(extreme(rng) ? 127 : -127) : int8_t(i8(rng));
          std::vector<int32_t> acc(size_t(n * rows)), acc_ref(size_t(n * rows));
          DotInt8(w.data(), stride, rows, q.data(), n, in, acc.data());
          DotInt8Ref(w.data(), stride, rows, q.data(), n, in, acc_ref.data());
          ASSERT_EQ(acc, acc_ref);
        }
      }
    }
  });
}

TEST(W8A8Test, LongestRowDoesNotOverflow) {
  const int64_t in = kW8A8MaxIn;
  std::vector<uint8_t> w(size_t(in), 255);
  std::vector<int8_t> q(size_t(in), 127);
  int32_t acc = 0, acc_ref = 0;
  ForEachTarget([&] {
    DotInt8(w.data(), in, 1, q.data(), 1, in, &acc);
    DotInt8Ref(w.data(), in, 1, q.data(), 1, in, &acc_ref);
    EXPECT_EQ(acc, acc_ref);
    EXPECT_EQ(acc, int32_t(127 * 127 * in));
  });
}

// The whole product: fast == reference bit for bit for the int8 kinds; the
// result is the formula of w8a8.h recomputed here from the codes.
TEST(W8A8Test, MatMulFastEqualsReferenceAndFormula) {
  std::mt19937_64 rng(Seed() ^ 3);
  ThreadPool pool(3);
  for (DType type : {kInt8Channel, kInt8Tensor}) {
    for (int64_t in : {5, 33, 172, 256}) {
      const int64_t out = 11, n = 7;
      Weights w = MakeWeights(type, Normal(rng, size_t(out * in), 0.1f), out, in);
      const std::vector<float> x = Normal(rng, size_t(n * in), 1.0f);
      for (ActQuantKind kind : {ActQuantKind::kInt8Dynamic, ActQuantKind::kInt8Static}) {
        SCOPED_TRACE("in " + std::to_string(in) + " kind " + std::to_string(int(kind)));
        const ActQuantParams act{kind, 2.5f / 127.0f, 6.0f};
        std::vector<float> y_ref(size_t(n * out));
        MatMulW8A8(w.view, act, x.data(), n, y_ref.data(), pool, /*reference=*/true);
        // The formula, from the codes.
        std::vector<int8_t> q(x.size());
        std::vector<float> sx(static_cast<size_t>(n));
        QuantizeActInt8Ref(x.data(), n, in, kind == ActQuantKind::kInt8Static ? act.scale : -1.0f, q.data(), sx.data());
        for (int64_t o = 0; o < out; ++o) {
          const uint8_t* row = w.bytes.data() + o * (4 + in);
          float sw;
          std::memcpy(&sw, row, 4);
          for (int64_t t = 0; t < n; ++t) {
            int64_t sum = 0;
            for (int64_t c = 0; c < in; ++c) sum += int64_t(int(row[4 + c]) - 128) * q[size_t(t * in + c)];
            ASSERT_EQ(y_ref[size_t(t * out + o)], (sx[size_t(t)] * sw) * float(sum));
          }
        }
        ForEachTarget([&] {
          std::vector<float> y(size_t(n * out));
          MatMulW8A8(w.view, act, x.data(), n, y.data(), pool, /*reference=*/false);
          for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(std::bit_cast<uint32_t>(y[i]), std::bit_cast<uint32_t>(y_ref[i]));
        });
      }
    }
  }
}

// Per-token int8 of N(0,1) activations is close to the float product of the
// same int8 weights: relative error near the activation step / sqrt(12).
TEST(W8A8Test, DynamicIsCloseToFloatActivations) {
  std::mt19937_64 rng(Seed() ^ 4);
  ThreadPool pool(2);
  const int64_t out = 64, in = 512, n = 9;
  Weights w = MakeWeights(kInt8Channel, Normal(rng, size_t(out * in), 1.0f), out, in);
  const std::vector<float> x = Normal(rng, size_t(n * in), 1.0f);
  std::vector<float> y(size_t(n * out)), y_f(size_t(n * out));
  MatMulW8A8(w.view, {ActQuantKind::kInt8Dynamic, 0, 0}, x.data(), n, y.data(), pool, false);
  MatMul(w.view, x.data(), n, y_f.data(), pool, false);
  double err = 0, norm = 0;
  for (size_t i = 0; i < y.size(); ++i) err += double(y[i] - y_f[i]) * (y[i] - y_f[i]), norm += double(y_f[i]) * y_f[i];
  const double rel = std::sqrt(err / norm);
  // absmax of 512 N(0,1) ~ 3.1: step 3.1/127, error (step/sqrt 12)/1 ~ 0.007.
  EXPECT_GT(rel, 0.002);
  EXPECT_LT(rel, 0.02);
}

// LLM.int8(): threshold 0 makes every column an outlier, i.e. float
// activations against the dequantized int8 weights (weight-only int8); a
// threshold above every |x| leaves none, i.e. vector-wise int8 = int8 dynamic.
TEST(W8A8Test, LlmInt8LimitsAndDecomposition) {
  std::mt19937_64 rng(Seed() ^ 5);
  ThreadPool pool(2);
  for (int64_t in : {33, 172, 256}) {
    SCOPED_TRACE("in " + std::to_string(in));
    const int64_t out = 13, n = 6;
    Weights w = MakeWeights(kInt8Channel, Normal(rng, size_t(out * in), 0.2f), out, in);
    std::vector<float> x = Normal(rng, size_t(n * in), 1.0f);
    for (int64_t c : {int64_t(1), in / 2}) x[size_t(2 * in + c)] = 25.0f;  // two outlier columns (from one token)
    std::vector<float> y_wo(size_t(n * out)), y_dyn(size_t(n * out)), y(size_t(n * out));
    MatMul(w.view, x.data(), n, y_wo.data(), pool, false);
    MatMulW8A8(w.view, {ActQuantKind::kInt8Dynamic, 0, 0}, x.data(), n, y_dyn.data(), pool, false);
    for (bool reference : {false, true}) {
      SCOPED_TRACE(reference ? "reference" : "fast");
      ResetW8A8Counters();
      MatMulW8A8(w.view, {ActQuantKind::kLlmInt8, 0, 0.0f}, x.data(), n, y.data(), pool, reference);
      for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], y_wo[i], 1e-5f * (1.0f + std::fabs(y_wo[i])));
      EXPECT_EQ(GetW8A8Counters().outlier_fraction(), 1.0);
      MatMulW8A8(w.view, {ActQuantKind::kLlmInt8, 0, 1e9f}, x.data(), n, y.data(), pool, reference);
      for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y[i], y_dyn[i]);
      EXPECT_EQ(GetW8A8Counters().products, 2);
      EXPECT_EQ(GetW8A8Counters().outlier_columns, in);
    }
    // Threshold 6: exactly the two planted columns; y = int8 part of the rest + float part.
    ResetW8A8Counters();
    MatMulW8A8(w.view, {ActQuantKind::kLlmInt8, 0, 6.0f}, x.data(), n, y.data(), pool, false);
    EXPECT_EQ(GetW8A8Counters().outlier_columns, 2);
    std::vector<float> x_in = x, x_out(x.size(), 0.0f);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t c : {int64_t(1), in / 2}) x_out[size_t(t * in + c)] = x[size_t(t * in + c)], x_in[size_t(t * in + c)] = 0;
    std::vector<float> y_in(y.size()), y_out(y.size());
    MatMulW8A8(w.view, {ActQuantKind::kInt8Dynamic, 0, 0}, x_in.data(), n, y_in.data(), pool, false);
    MatMul(w.view, x_out.data(), n, y_out.data(), pool, true);
    for (size_t i = 0; i < y.size(); ++i)
      ASSERT_NEAR(y[i], y_in[i] + y_out[i], 1e-5f * (1.0f + std::fabs(y_out[i])));
    // The outlier columns cost the int8 part nothing: its error is that of the
    // inliers, far below plain int8 dynamic, whose token scale the 25s inflate.
    double err_llm = 0, err_dyn = 0;
    for (size_t i = 0; i < y.size(); ++i) {
      err_llm += double(y[i] - y_wo[i]) * (y[i] - y_wo[i]);
      err_dyn += double(y_dyn[i] - y_wo[i]) * (y_dyn[i] - y_wo[i]);
    }
    EXPECT_LT(err_llm, err_dyn);
  }
}

TEST(W8A8Test, RejectsOtherWeightTypes) {
  ThreadPool pool(1);
  std::vector<float> wv(32, 0.5f), x(32, 1.0f), y(1);
  const TensorView w{"blk.0.attn_q.weight", DType::kF32, {1, 32}, wv.data(), wv.size() * 4};
  try {
    MatMulW8A8(w, {}, x.data(), 1, y.data(), pool, false);
    FAIL() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("int8_sym_channel"), std::string::npos) << e.what();
  }
}

// ---- End to end, through the binary ----

// KLD bounds: about 2-3x the values measured on this slice (docs/FORMATS.md):
//   stories260K        int8 weight-only 6.1e-4, dynamic 1.3e-3, static 5.8e-3 (percentile) .. 1.1e-2 (minmax), llm.int8 1.3e-3
//   tiny-llama-random  int8 weight-only 8.4e-3, dynamic 9.9e-3, static 1.6e-2 .. 2.5e-2, llm.int8 9.2e-3
struct TestModel {
  const char* name;
  const char* path;  // under ../shared
  double dynamic_max, static_max;
};
const TestModel kModels[] = {
    {"stories260K", "models/stories260K/stories260K-f32.llamacpp.gguf", 3e-3, 3e-2},
    {"tiny-llama-random", "models/tiny-llama-random/tiny-llama-f32.gguf", 2e-2, 6e-2},
};
constexpr const char* kData = "data/tinystories/validation-head.txt";

class W8A8EndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("lowbit_w8a8_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }
  // Runs lowbit and expects success; returns stdout (stderr merged when asked).
  std::string Ok(const std::string& args, bool merge = false) {
    const auto r = RunLowbit(args, merge);
    EXPECT_EQ(r.exit_code, 0) << "lowbit " << args << "\n" << r.output;
    return r.output;
  }
  nlohmann::json Json(const std::string& args) {
    const std::string out = Ok(args);
    try {
      return nlohmann::json::parse(out);
    } catch (const std::exception&) {
      ADD_FAILURE() << "not JSON from lowbit " << args << ":\n" << out;
      return {};
    }
  }
  std::filesystem::path dir_;
};

// A small slice of the validation text, so every kld/ppl run is quick.
std::string MakeSlice(const std::string& path, size_t bytes) {
  std::ifstream in(SharedPath(kData), std::ios::binary);
  std::string text(bytes, '\0');
  in.read(text.data(), std::streamsize(bytes));
  text.resize(size_t(in.gcount()));
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

TEST_F(W8A8EndToEnd, KldOfEachModeOnBothModels) {
  LOWBIT_REQUIRE_SHARED(kData);
  const std::string data = MakeSlice(Path("slice.txt"), 24000);
  for (const TestModel& m : kModels) {
    if (!std::filesystem::exists(SharedPath(m.path))) GTEST_SKIP() << m.path << " missing";
    SCOPED_TRACE(m.name);
    const std::string src = SharedPath(m.path), base = Path(std::string(m.name) + ".kld");
    const std::string stats = Path(std::string(m.name) + ".stats.gguf");
    Ok(fmt::format("kld {} --save-base {} --data {} --ctx 128 --chunks 12", src, base, data));
    Ok(fmt::format("calibrate {} --data {} --samples 8 --seq-len 128 --seed 7 -o {}", src, data, stats));
    auto quantize = [&](const std::string& out, const std::string& extra) {
      Ok(fmt::format("quantize {} -o {} --format int8_sym_channel --json {}", src, Path(out), extra));
      return Path(out);
    };
    auto kld = [&](const std::string& file) { return Json(fmt::format("kld {} --base {} --json", file, base)); };
    const std::string wo = quantize("wo.gguf", "");
    const double kld_wo = kld(wo)["kld_mean"];
    struct Variant {
      const char* name;
      const char* mode;
      std::string args;
      double kld_max;
    };
    const std::vector<Variant> variants = {
        {"int8-dynamic", "int8-dynamic", "--activations int8-dynamic", m.dynamic_max},
        {"int8-static-minmax", "int8-static", "--activations int8-static --act-stats " + stats, m.static_max},
        {"int8-static-percentile", "int8-static",
         "--activations int8-static --act-stats " + stats + " --act-observer percentile", m.static_max},
        {"llm.int8", "llm.int8", "--activations llm.int8", m.dynamic_max},
    };
    std::map<std::string, double> klds;
    for (const Variant& v : variants) {
      SCOPED_TRACE(v.name);
      const std::string file = quantize(std::string(v.name) + ".gguf", v.args);
      const nlohmann::json j = kld(file);
      const double k = j["kld_mean"];
      klds[v.name] = k;
      std::printf("%s %-24s KLD %.3g (weight-only int8 %.3g)", m.name, v.name, k, kld_wo);
      if (j.contains("activations")) std::printf("  %s", j["activations"].dump().c_str());
      std::printf("\n");
      EXPECT_LT(k, v.kld_max);
      // The activations really are quantized: worse than float activations.
      EXPECT_GT(k, kld_wo * (v.mode == std::string("llm.int8") ? 1.0 : 1.05));
      EXPECT_EQ(j["activations"]["mode"], v.mode);
    }
    // Outlier columns in f32 cost no more than int8 everywhere.
    EXPECT_LT(klds["llm.int8"], 1.1 * klds["int8-dynamic"]);
    EXPECT_LT(klds["int8-dynamic"], klds["int8-static-minmax"]);
    // LLM.int8() limits, end to end: threshold 0 is weight-only int8 with
    // float activations; a huge threshold is int8-dynamic exactly.
    const std::string all = quantize("llm0.gguf", "--activations llm.int8:0");
    const nlohmann::json j0 = kld(all);
    EXPECT_NEAR(double(j0["kld_mean"]), kld_wo, 1e-6 + 1e-3 * kld_wo);
    EXPECT_EQ(j0["activations"]["outlier_fraction"], 1.0);
    const std::string none = quantize("llmbig.gguf", "--activations llm.int8:1e9");
    const nlohmann::json jn = kld(none);
    EXPECT_EQ(double(jn["kld_mean"]), klds["int8-dynamic"]);
    EXPECT_EQ(jn["activations"]["outlier_fraction"], 0.0);
    // ppl and run work, and --reference gives the same int8 products.
    const std::string dyn = Path("int8-dynamic.gguf");
    const nlohmann::json p = Json(fmt::format("ppl {} --data {} --ctx 128 --chunks 4 --json", dyn, data));
    const nlohmann::json pr = Json(fmt::format("ppl {} --data {} --ctx 128 --chunks 4 --json --reference", dyn, data));
    EXPECT_TRUE(std::isfinite(double(p["ppl"])));
    EXPECT_NEAR(double(p["ppl"]), double(pr["ppl"]), 1e-4 * double(p["ppl"]));
    const nlohmann::json r = Json(fmt::format("run {} -n 16 --json", Path("llm.int8.gguf")));
    EXPECT_EQ(r["tokens"].size(), 16u);
    EXPECT_TRUE(r.contains("activations"));
  }
}

TEST_F(W8A8EndToEnd, BadInputGetsAClearError) {
  const std::string src = SharedPath(kModels[0].path);
  LOWBIT_REQUIRE_SHARED(kModels[0].path);
  const std::string out = Path("bad.gguf");
  auto fails = [&](const std::string& args, const std::string& expect) {
    const auto r = RunLowbit(fmt::format("quantize {} -o {} {}", src, out, args));
    EXPECT_NE(r.exit_code, 0) << args;
    EXPECT_NE(r.output.find(expect), std::string::npos) << args << "\n" << r.output;
    EXPECT_NE(r.output.find("lowbit: error: "), std::string::npos) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << "one line:\n" << r.output;
    EXPECT_FALSE(std::filesystem::exists(out)) << args;
  };
  fails("--format q4_k --activations int8-dynamic", "needs int8 weights per output channel");
  fails("--format int4_sym_channel --activations llm.int8", "needs int8 weights per output channel");
  fails("--format int8_sym_channel --activations int8-static", "needs calibration statistics: --act-stats");
  fails("--format int8_sym_channel --activations int8-fast", "unknown mode");
  fails("--format int8_sym_channel --activations llm.int8:-1", "threshold must be a number >= 0");
  fails("--format int8_sym_channel --activations int8-dynamic --act-stats x.gguf", "only used by --activations int8-static");
  const std::string corrupt = Path("corrupt.stats.gguf");
  std::ofstream(corrupt, std::ios::binary) << "GGUF\x03\0\0\0garbage";
  fails("--format int8_sym_channel --activations int8-static --act-stats " + corrupt, corrupt);
  fails("--format int8_sym_channel --activations int8-static --act-stats " + Path("missing.gguf"), "missing.gguf");
}

// A file whose activation metadata is corrupt fails at load, naming the key.
TEST_F(W8A8EndToEnd, CorruptMetadataFailsAtLoad) {
  const std::string src = SharedPath(kModels[0].path);
  LOWBIT_REQUIRE_SHARED(kModels[0].path);
  const std::string good = Path("dyn.gguf"), bad = Path("bad_mode.gguf");
  Ok(fmt::format("quantize {} -o {} --format int8_sym_channel --activations int8-dynamic --json", src, good));
  std::ifstream in(good, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t at = bytes.find("int8-dynamic");  // the value of lowbit.activations.mode
  ASSERT_NE(at, std::string::npos);
  bytes[at + 11] = 'X';
  std::ofstream(bad, std::ios::binary) << bytes;
  const auto r = RunLowbit(fmt::format("run {} -n 2", bad));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("unknown lowbit.activations.mode 'int8-dynamiX'"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace lowbit
