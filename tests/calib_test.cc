// Calibration layer: seeded sampling (determinism, bounds, BOS, clear errors);
// activation statistics on stories260K and tiny-llama-random against an
// independent double-precision recomputation from the same hook; the imatrix
// GGUF round trip, llama.cpp-only files and corrupt files; observers on
// synthetic data with known answers; `lowbit calibrate` end to end.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "calib/dataset.h"
#include "calib/observers.h"
#include "calib/stats.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "model/model.h"
#include "runtime/session.h"
#include "test_util.h"

namespace lowbit {
namespace {

using ::lowbit::testing::CommandResult;
using ::lowbit::testing::RunLowbit;

namespace fs = std::filesystem;
using ::lowbit::testing::SharedPath;

constexpr const char* kStories = "models/stories260K/stories260K-f32.llamacpp.gguf";
constexpr const char* kTinyLlama = "models/tiny-llama-random/tiny-llama-f32.gguf";
constexpr const char* kText = "data/tinystories/validation-head.txt";

std::string TempPath(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / "lowbit_calib";
  fs::create_directories(dir);
  const fs::path p = dir / name;
  fs::remove(p);
  return p.string();
}

// The first `bytes` of the shared text (enough for the samples, quick to tokenize).
std::string TextHead(size_t bytes) {
  std::string text = ReadFileToString(SharedPath(kText));
  if (text.size() > bytes) text.resize(bytes);
  return text;
}

template <typename F>
std::string ErrorOf(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

#define EXPECT_ERROR_HAS(stmt, ...)                                                           \
  do {                                                                                        \
    const std::string msg_ = ErrorOf([&] { stmt; });                                          \
    for (const char* part_ : {__VA_ARGS__})                                                   \
      EXPECT_NE(msg_.find(part_), std::string::npos) << "'" << part_ << "' not in: " << msg_; \
  } while (0)

// ---- sampling ----

TEST(CalibSampling, DeterministicBoundedWindowsOfTheStream) {
  LOWBIT_REQUIRE_SHARED(kStories);
  LOWBIT_REQUIRE_SHARED(kText);
  auto model = LoadModel(SharedPath(kStories));
  const Tokenizer& tok = *model->tokenizer;
  ASSERT_TRUE(tok.add_bos());
  const std::string text = TextHead(20000);
  const std::vector<int32_t> stream = tok.Encode(text, false);

  const auto a = SampleCalibration(tok, text, 16, 64, 7, "text");
  const auto b = SampleCalibration(tok, text, 16, 64, 7, "text");
  const auto c = SampleCalibration(tok, text, 16, 64, 8, "text");
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  ASSERT_EQ(a.size(), 16u);
  std::set<size_t> offsets;
  for (const auto& s : a) {
    ASSERT_EQ(s.size(), 64u);
    EXPECT_EQ(s[0], tok.bos());
    // The rest is a contiguous window of the stream.
    auto it = std::search(stream.begin(), stream.end(), s.begin() + 1, s.end());
    ASSERT_NE(it, stream.end());
    offsets.insert(size_t(it - stream.begin()));
  }
  EXPECT_GT(offsets.size(), 12u);  // ~5000 possible offsets: collisions are rare

  // A text with exactly one window's worth of tokens gives that window every time.
  const std::vector<int32_t> head(stream.begin(), stream.begin() + 40);
  const std::string small = tok.Decode(head);
  const std::vector<int32_t> small_stream = tok.Encode(small, false);
  const auto d = SampleCalibration(tok, small, 3, int(small_stream.size()) + 1, 0, "small");
  for (const auto& s : d) EXPECT_TRUE(std::equal(s.begin() + 1, s.end(), small_stream.begin()));
}

TEST(CalibSampling, ClearErrors) {
  LOWBIT_REQUIRE_SHARED(kStories);
  auto model = LoadModel(SharedPath(kStories));
  const Tokenizer& tok = *model->tokenizer;
  EXPECT_ERROR_HAS(SampleCalibration(tok, "", 4, 32, 0, "empty.txt"), "empty.txt", "calibration file is empty");
  EXPECT_ERROR_HAS(SampleCalibration(tok, "Once upon a time", 4, 32, 0, "short.txt"), "short.txt",
                   "too little calibration data", "32 tokens");
  EXPECT_ERROR_HAS(SampleCalibration(tok, "Once upon a time", 0, 4, 0, "x.txt"), "x.txt", "at least one sample");
  EXPECT_ERROR_HAS(SampleCalibration(tok, "Once upon a time", 1, 1, 0, "x.txt"), "at least 2 tokens");
}

// ---- statistics against an independent recomputation ----

// Everything the test recomputes for one weight, in double.
struct Reference {
  int64_t channels = 0, count = 0, batches = 0;
  std::vector<double> min, max, sum_abs, sum_sq;
  std::vector<float> values_abs;  // every |x|, for the histogram
  float ema_min = 0, ema_max = 0;
};

std::map<std::string, Reference> Recompute(const Model& model, const std::vector<std::vector<int32_t>>& samples,
                                           int threads) {
  SessionOptions so;
  so.threads = threads;
  so.max_context = int(samples[0].size());
  Session session(model, so);
  std::map<std::string, Reference> refs;
  session.on_matmul_input = [&](const TensorView& w, const float* x, int64_t n) {
    Reference& r = refs[w.name];
    const int64_t c = w.shape.back();
    if (r.channels == 0) {
      r.channels = c;
      r.min.assign(size_t(c), 1e300);
      r.max.assign(size_t(c), -1e300);
      r.sum_abs.assign(size_t(c), 0);
      r.sum_sq.assign(size_t(c), 0);
    }
    double bmin = 1e300, bmax = -1e300;
    for (int64_t t = 0; t < n; ++t)
      for (int64_t j = 0; j < c; ++j) {
        const double v = x[t * c + j];
        r.min[size_t(j)] = std::min(r.min[size_t(j)], v);
        r.max[size_t(j)] = std::max(r.max[size_t(j)], v);
        r.sum_abs[size_t(j)] += std::fabs(v);
        r.sum_sq[size_t(j)] += v * v;
        r.values_abs.push_back(float(std::fabs(v)));
        bmin = std::min(bmin, v), bmax = std::max(bmax, v);
      }
    if (r.batches++ == 0) {
      r.ema_min = float(bmin), r.ema_max = float(bmax);
    } else {
      r.ema_min += 0.01f * (float(bmin) - r.ema_min);
      r.ema_max += 0.01f * (float(bmax) - r.ema_max);
    }
    r.count += n;
  };
  for (const auto& s : samples) {
    session.Reset();
    session.Eval(s, true);
  }
  return refs;
}

void ExpectStatsMatch(const std::string& model_rel, int samples, int seq_len) {
  auto model = LoadModel(SharedPath(model_rel));
  const auto windows = SampleCalibration(*model->tokenizer, TextHead(30000), samples, seq_len, 1, kText);
  ActivationStats stats;
  {
    SessionOptions so;
    so.threads = 2;
    so.max_context = seq_len;
    Session session(*model, so);
    int seen = 0;
    CollectActivationStats(session, windows, &stats, [&](int i) { EXPECT_EQ(i, seen++); });
    EXPECT_EQ(seen, samples);
    EXPECT_FALSE(session.on_matmul_input);  // the hook is restored
  }
  const auto refs = Recompute(*model, windows, 1);  // another thread count: same activations

  // Every linear layer: q/k/v/o, gate/up/down per block, and the output head.
  const int layers = model->config.n_layers;
  ASSERT_EQ(stats.all().size(), size_t(7 * layers + 1));
  ASSERT_EQ(refs.size(), stats.all().size());
  for (const char* w : {"attn_q", "attn_k", "attn_v"})
    EXPECT_NE(stats.Find(fmt::format("blk.{}.{}.weight", layers - 1, w)), nullptr) << w;
  EXPECT_TRUE(stats.Find("output.weight") || stats.Find("token_embd.weight"));

  for (const auto& [name, r] : refs) {
    SCOPED_TRACE(name);
    const LinearInputStats* s = stats.Find(name);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->weight, name);
    ASSERT_EQ(s->channels, r.channels);
    EXPECT_EQ(s->count, int64_t(samples) * seq_len);
    EXPECT_EQ(s->count, r.count);
    EXPECT_EQ(s->batches, r.batches);
    double absmax = 0;
    for (int64_t j = 0; j < r.channels; ++j) {
      const size_t k = size_t(j);
      EXPECT_EQ(s->min[k], float(r.min[k])) << j;
      EXPECT_EQ(s->max[k], float(r.max[k])) << j;
      EXPECT_EQ(s->absmax[k], float(std::max(-r.min[k], r.max[k]))) << j;
      absmax = std::max(absmax, double(s->absmax[k]));
      // f32 results of double sums: within a few f32 ulps.
      const double mean_abs = r.sum_abs[k] / double(r.count), mean_sq = r.sum_sq[k] / double(r.count);
      EXPECT_NEAR(s->mean_abs[k], mean_abs, 4e-7 * mean_abs) << j;
      EXPECT_NEAR(s->mean_sq[k], mean_sq, 4e-7 * mean_sq) << j;
    }
    EXPECT_EQ(s->ema_min, r.ema_min);
    EXPECT_EQ(s->ema_max, r.ema_max);
    // Histogram: the range spans the largest |x| within a factor 2, and binning
    // every value at the final range gives the counts the running merges did.
    EXPECT_GE(s->hist_max, absmax);
    EXPECT_LT(s->hist_max, 2 * absmax);
    ASSERT_EQ(s->hist.size(), size_t(ActivationStats::kHistogramBins));
    std::vector<uint64_t> hist(s->hist.size(), 0);
    const double to_bin = double(hist.size()) / double(s->hist_max);
    for (float a : r.values_abs) {
      const int64_t b = int64_t(std::ceil(double(a) * to_bin)) - 1;  // bin b holds (b, b + 1] widths
      ++hist[size_t(std::clamp<int64_t>(b, 0, int64_t(hist.size()) - 1))];
    }
    EXPECT_EQ(hist, s->hist);
    uint64_t total = 0;
    for (uint64_t h : s->hist) total += h;
    EXPECT_EQ(total, uint64_t(r.count * r.channels));
  }
  // q, k and v read the same normalized input.
  const LinearInputStats* q = stats.Find("blk.0.attn_q.weight");
  const LinearInputStats* v = stats.Find("blk.0.attn_v.weight");
  EXPECT_EQ(q->mean_sq, v->mean_sq);
  EXPECT_EQ(q->hist, v->hist);
}

TEST(CalibStats, Stories260KMatchesRecomputation) {
  LOWBIT_REQUIRE_SHARED(kStories);
  LOWBIT_REQUIRE_SHARED(kText);
  ExpectStatsMatch(kStories, 6, 64);
}

TEST(CalibStats, TinyLlamaMatchesRecomputation) {
  LOWBIT_REQUIRE_SHARED(kTinyLlama);
  LOWBIT_REQUIRE_SHARED(kText);
  ExpectStatsMatch(kTinyLlama, 3, 48);
}

// A fake weight (out, channels) for feeding Add directly.
TensorView FakeWeight(const std::string& name, int64_t channels) {
  TensorView w;
  w.name = name;
  w.shape = {1, channels};
  return w;
}

// Standard normal values from a replayable generator (Box-Muller on mt19937_64).
std::vector<float> Gaussian(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto uniform = [&] { return (double(rng() >> 11) + 0.5) * 0x1.0p-53; };
  std::vector<float> out(n);
  for (size_t i = 0; i < n; i += 2) {
    const double r = std::sqrt(-2 * std::log(uniform())), t = 2 * M_PI * uniform();
    out[i] = float(r * std::cos(t));
    if (i + 1 < n) out[i + 1] = float(r * std::sin(t));
  }
  return out;
}

std::vector<float> Uniform(size_t n, uint64_t seed) {  // U(-1, 1)
  std::mt19937_64 rng(seed);
  std::vector<float> out(n);
  for (float& v : out) v = float((double(rng() >> 11) + 0.5) * 0x1.0p-52 - 1);
  return out;
}

// Feeds `values` as batches of (rows, channels).
ActivationStats StatsOf(const std::vector<float>& values, int64_t channels, int64_t rows_per_batch) {
  ActivationStats stats;
  const TensorView w = FakeWeight("blk.0.ffn_up.weight", channels);
  const int64_t rows = int64_t(values.size()) / channels;
  for (int64_t r = 0; r < rows; r += rows_per_batch)
    stats.Add(w, values.data() + r * channels, std::min(rows_per_batch, rows - r));
  return stats;
}

// ---- file round trip and errors ----

ActivationStats SmallStats() {
  ActivationStats stats = StatsOf(Gaussian(64 * 300, 3), 64, 50);
  std::vector<float> x = Uniform(32 * 10, 4);
  x[5] = 0;
  stats.Add(FakeWeight("blk.0.attn_q.weight", 32), x.data(), 10);
  std::vector<float> zeros(16 * 4, 0.0f);  // an all-zero input: hist_max 0
  stats.Add(FakeWeight("blk.1.attn_k.weight", 16), zeros.data(), 4);
  stats.info().datasets = {"calib.txt"};
  stats.info().chunk_count = 6;
  stats.info().chunk_size = 50;
  stats.info().seed = 42;
  return stats;
}

void ExpectSameStats(const ActivationStats& a, const ActivationStats& b) {
  ASSERT_EQ(a.all().size(), b.all().size());
  for (const auto& [name, s] : a.all()) {
    SCOPED_TRACE(name);
    const LinearInputStats* t = b.Find(name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(s.weight, t->weight);
    EXPECT_EQ(s.channels, t->channels);
    EXPECT_EQ(s.count, t->count);
    EXPECT_EQ(s.batches, t->batches);
    EXPECT_EQ(s.min, t->min);
    EXPECT_EQ(s.max, t->max);
    EXPECT_EQ(s.absmax, t->absmax);
    EXPECT_EQ(s.mean_abs, t->mean_abs);
    EXPECT_EQ(s.mean_sq, t->mean_sq);
    EXPECT_EQ(s.hist_max, t->hist_max);
    EXPECT_EQ(s.hist, t->hist);
    EXPECT_EQ(s.ema_min, t->ema_min);
    EXPECT_EQ(s.ema_max, t->ema_max);
  }
}

TEST(CalibFile, RoundTripInImatrixLayout) {
  const ActivationStats stats = SmallStats();
  const std::string path = TempPath("round_trip.gguf");
  stats.Save(path);
  const ActivationStats loaded = ActivationStats::Load(path);
  ExpectSameStats(stats, loaded);
  EXPECT_EQ(loaded.info().datasets, std::vector<std::string>{"calib.txt"});
  EXPECT_EQ(loaded.info().chunk_count, 6);
  EXPECT_EQ(loaded.info().chunk_size, 50);
  EXPECT_EQ(loaded.info().seed, 42u);
  for (Observer o : {Observer::kMinMax, Observer::kEma, Observer::kPercentile, Observer::kKl, Observer::kMse})
    EXPECT_EQ(ActivationRange(*stats.Find("blk.0.ffn_up.weight"), o),
              ActivationRange(*loaded.Find("blk.0.ffn_up.weight"), o));

  // What llama.cpp reads: general.type, in_sum2 (n_in, 1) and counts (1, 1) in f32.
  const GgufFile f(path);
  EXPECT_EQ(f.GetString("general.type"), "imatrix");
  EXPECT_EQ(f.GetInt("imatrix.chunk_count"), 6);
  EXPECT_EQ(f.GetInt("imatrix.chunk_size"), 50);
  EXPECT_EQ(f.GetStringArray("imatrix.datasets"), std::vector<std::string>{"calib.txt"});
  const GgufTensorInfo* sum2 = f.FindTensor("blk.0.ffn_up.weight.in_sum2");
  const GgufTensorInfo* counts = f.FindTensor("blk.0.ffn_up.weight.counts");
  ASSERT_TRUE(sum2 && counts);
  EXPECT_EQ(sum2->ne, (std::vector<uint64_t>{64, 1}));
  EXPECT_EQ(sum2->ggml_type, kGgmlF32);
  EXPECT_EQ(counts->ne, (std::vector<uint64_t>{1, 1}));
  float count = 0, s0 = 0;
  std::memcpy(&count, counts->data, 4);
  std::memcpy(&s0, sum2->data, 4);
  EXPECT_EQ(count, 300.0f);
  const LinearInputStats* s = loaded.Find("blk.0.ffn_up.weight");
  EXPECT_EQ(s->mean_sq[0], float(double(s0) / 300.0));  // llama.cpp's importance: in_sum2 / counts
  EXPECT_EQ(loaded.Find("blk.1.attn_k.weight")->hist_max, 0.0f);
  EXPECT_EQ(ActivationRange(*loaded.Find("blk.1.attn_k.weight"), Observer::kKl), 0.0f);
}

// Rewrites a valid stats file with one tensor or key changed; `edit` gets
// (name, ne, type, bytes) and returns false to drop the tensor.
using TensorEdit = std::function<bool(const std::string&, std::vector<uint64_t>&, uint32_t&, std::vector<uint8_t>&)>;
std::string Mutate(const std::string& src, const std::string& name, const TensorEdit& edit,
                   const std::map<std::string, GgufValue>& replace_keys = {}) {
  const GgufFile f(src);
  const std::string path = TempPath(name);
  GgufWriter w(path);
  for (const auto& [key, value] : f.metadata()) {
    auto it = replace_keys.find(key);
    w.Set(key, it == replace_keys.end() ? value : it->second);
  }
  std::vector<std::vector<uint8_t>> data;
  for (const GgufTensorInfo& t : f.tensors()) {
    std::vector<uint64_t> ne = t.ne;
    uint32_t type = t.ggml_type;
    std::vector<uint8_t> bytes(t.data, t.data + t.bytes);
    if (!edit(t.name, ne, type, bytes)) continue;
    w.AddTensor(t.name, ne, type);
    data.push_back(std::move(bytes));
  }
  w.WriteHeader();
  for (const auto& d : data) w.WriteTensorData(d);
  w.Finish();
  return path;
}

TEST(CalibFile, CorruptFilesGiveClearErrors) {
  const std::string good = TempPath("good.gguf");
  SmallStats().Save(good);
  const std::string q = "blk.0.ffn_up.weight";
  auto keep = [](const std::string&, std::vector<uint64_t>&, uint32_t&, std::vector<uint8_t>&) { return true; };

  EXPECT_ERROR_HAS(ActivationStats::Load(TempPath("missing.gguf")), "missing.gguf");
  {  // truncated
    const std::string bytes = ReadFileToString(good);
    const std::string path = TempPath("truncated.gguf");
    std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size() / 2));
    EXPECT_ERROR_HAS(ActivationStats::Load(path), "truncated.gguf");
  }
  {  // not GGUF at all
    const std::string path = TempPath("garbage.gguf");
    std::ofstream(path, std::ios::binary) << "this is not a stats file";
    EXPECT_ERROR_HAS(ActivationStats::Load(path), "garbage.gguf");
  }
  if (std::filesystem::exists(SharedPath(kStories)))  // a model, not stats
    EXPECT_ERROR_HAS(ActivationStats::Load(SharedPath(kStories)), "stories260K", "not a calibration statistics file");

  auto drop = [&](const std::string& victim) {
    return [victim](const std::string& n, std::vector<uint64_t>&, uint32_t&, std::vector<uint8_t>&) {
      return n != victim;
    };
  };
  EXPECT_ERROR_HAS(ActivationStats::Load(Mutate(good, "no_hist.gguf", drop(q + ".in_hist"))), "no_hist.gguf",
                   "has no tensor 'blk.0.ffn_up.weight.in_hist'");
  EXPECT_ERROR_HAS(ActivationStats::Load(Mutate(good, "no_counts.gguf", drop(q + ".counts"))), "no_counts.gguf",
                   ".counts");
  EXPECT_ERROR_HAS(ActivationStats::Load(
                       Mutate(good, "shape.gguf",
                              [&](const std::string& n, std::vector<uint64_t>& ne, uint32_t&, std::vector<uint8_t>& b) {
                                if (n == q + ".in_min") ne = {63}, b.resize(63 * 4);
                                return true;
                              })),
                   "shape.gguf", "blk.0.ffn_up.weight.in_min", "expected {64}");
  EXPECT_ERROR_HAS(ActivationStats::Load(Mutate(
                       good, "type.gguf",
                       [&](const std::string& n, std::vector<uint64_t>&, uint32_t& type, std::vector<uint8_t>& b) {
                         if (n == q + ".in_max") type = kGgmlF16, b.resize(b.size() / 2);
                         return true;
                       })),
                   "type.gguf", "in_max", "expected F32");
  EXPECT_ERROR_HAS(ActivationStats::Load(
                       Mutate(good, "nan.gguf",
                              [&](const std::string& n, std::vector<uint64_t>&, uint32_t&, std::vector<uint8_t>& b) {
                                const float nan = NAN;
                                if (n == q + ".in_sum2") std::memcpy(b.data() + 8, &nan, 4);
                                return true;
                              })),
                   "nan.gguf", "in_sum2", "non-finite");
  EXPECT_ERROR_HAS(ActivationStats::Load(
                       Mutate(good, "hist.gguf",
                              [&](const std::string& n, std::vector<uint64_t>&, uint32_t&, std::vector<uint8_t>& b) {
                                if (n == q + ".in_hist") b[0] ^= 1;
                                return true;
                              })),
                   "hist.gguf", "in_hist", "expected 300 tokens x 64 channels");
  EXPECT_ERROR_HAS(ActivationStats::Load(
                       Mutate(good, "minmax.gguf",
                              [&](const std::string& n, std::vector<uint64_t>&, uint32_t&, std::vector<uint8_t>& b) {
                                const float big = 1e6f;
                                if (n == q + ".in_min") std::memcpy(b.data(), &big, 4);
                                return true;
                              })),
                   "minmax.gguf", "channel 0", "inconsistent");
  EXPECT_ERROR_HAS(ActivationStats::Load(
                       Mutate(good, "moe.gguf",
                              [&](const std::string& n, std::vector<uint64_t>& ne, uint32_t&, std::vector<uint8_t>& b) {
                                if (n == q + ".in_sum2") ne = {32, 2};
                                return true;
                              })),
                   "moe.gguf", "MoE");
  EXPECT_ERROR_HAS(ActivationStats::Load(Mutate(good, "identity.gguf", keep)), "(no error)");
  EXPECT_ERROR_HAS(ActivationStats::Load(
                       Mutate(good, "version.gguf", keep, {{"lowbit.calib.version", GgufUint(GgufType::kUint32, 2)}})),
                   "version.gguf", "lowbit.calib.version 2 is not supported");
  EXPECT_ERROR_HAS(ActivationStats::Load(Mutate(good, "type_key.gguf", keep, {{"general.type", GgufString("model")}})),
                   "type_key.gguf", "not a calibration statistics file");
  {  // a stray tensor
    const std::string path = TempPath("stray.gguf");
    GgufWriter w(path);
    w.SetString("general.type", "imatrix");
    w.AddTensor("blk.0.attn_q.weight.bogus", std::vector<uint64_t>{4}, kGgmlF32);
    w.WriteHeader();
    const std::vector<uint8_t> zeros(16, 0);
    w.WriteTensorData(zeros);
    w.Finish();
    EXPECT_ERROR_HAS(ActivationStats::Load(path), "stray.gguf", "unexpected tensor 'blk.0.attn_q.weight.bogus'");
  }
}

TEST(CalibFile, ReadsLlamaCppImatrix) {
  // llama-imatrix's GGUF: general.type, imatrix.* keys, in_sum2 (n_in, 1) and counts (1, 1) only.
  const std::string path = TempPath("llamacpp_imatrix.gguf");
  {
    GgufWriter w(path);
    w.SetString("general.type", "imatrix");
    w.Set("imatrix.datasets", GgufStringArray({"wiki.train.raw"}));
    w.SetUint32("imatrix.chunk_count", 10);
    w.SetUint32("imatrix.chunk_size", 512);
    w.AddTensor("blk.0.ffn_down.weight.in_sum2", std::vector<uint64_t>{4, 1}, kGgmlF32);
    w.AddTensor("blk.0.ffn_down.weight.counts", std::vector<uint64_t>{1, 1}, kGgmlF32);
    w.WriteHeader();
    const float sums[4] = {5120, 0, 1.5f, 512e3f}, counts[1] = {5120};
    w.WriteTensorData({reinterpret_cast<const uint8_t*>(sums), sizeof(sums)});
    w.WriteTensorData({reinterpret_cast<const uint8_t*>(counts), sizeof(counts)});
    w.Finish();
  }
  const ActivationStats stats = ActivationStats::Load(path);
  const LinearInputStats* s = stats.Find("blk.0.ffn_down.weight");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->channels, 4);
  EXPECT_EQ(s->count, 5120);
  EXPECT_EQ(s->mean_sq, (std::vector<float>{1.0f, 0.0f, float(1.5 / 5120), 100.0f}));
  EXPECT_FALSE(s->has_observer_stats());
  EXPECT_EQ(stats.info().chunk_count, 10);
  EXPECT_ERROR_HAS(ActivationRange(*s, Observer::kKl), "blk.0.ffn_down.weight", "llama.cpp importance");
  EXPECT_ERROR_HAS(stats.Save(TempPath("resave.gguf")), "resave.gguf", "only llama.cpp importance");
}

// ---- observers ----

TEST(CalibObservers, GaussianThresholds) {
  // 4M values of N(0, 1) over 64 channels, batches of 512 rows.
  const std::vector<float> x = Gaussian(size_t(1) << 22, 11);
  const ActivationStats stats = StatsOf(x, 64, 512);
  const LinearInputStats& s = *stats.Find("blk.0.ffn_up.weight");
  float absmax = 0;
  for (float v : x) absmax = std::max(absmax, std::fabs(v));

  const float minmax = ActivationRange(s, Observer::kMinMax);
  const float ema = ActivationRange(s, Observer::kEma);
  const float pct = ActivationRange(s, Observer::kPercentile);
  const float p999 = ActivationRange(s, Observer::kPercentile, 99.9);
  const float kl = ActivationRange(s, Observer::kKl);
  const float mse = ActivationRange(s, Observer::kMse);
  std::printf("N(0,1), 4M values: max %.4f ema %.4f p99.99 %.4f p99.9 %.4f kl %.4f mse %.4f (hist_max %.4f)\n", minmax,
              ema, pct, p999, kl, mse, s.hist_max);
  EXPECT_EQ(minmax, absmax);
  // P(|x| < t) = 0.9999 at t = 3.8906; sampling sd of the estimate ~0.012.
  EXPECT_NEAR(pct, 3.8906, 0.05);
  EXPECT_NEAR(p999, 3.2905, 0.03);
  // Batches of 32768 values: the expected batch max of |x| is ~4.2-4.3 sigma.
  EXPECT_GT(ema, 3.9f);
  EXPECT_LT(ema, minmax);
  // TensorRT-style KL clips a Gaussian at a few sigma, inside the max: with
  // millions of values the sparse tail costs little KL, so it lands high
  // (the Python port of NVIDIA's code gives 4.0-4.3 on 0.2-1M values).
  EXPECT_GT(kl, 3.5f);
  EXPECT_LT(kl, 0.95f * minmax);
  // int8 MSE clipping of a Gaussian: ~4 sigma (ACIQ), between p99.9 and the max.
  EXPECT_GT(mse, p999);
  EXPECT_LT(mse, minmax);
}

TEST(CalibObservers, UniformThresholds) {
  const std::vector<float> x = Uniform(size_t(1) << 20, 12);
  const ActivationStats stats = StatsOf(x, 128, 256);
  const LinearInputStats& s = *stats.Find("blk.0.ffn_up.weight");
  const float minmax = ActivationRange(s, Observer::kMinMax);
  const float pct = ActivationRange(s, Observer::kPercentile);
  const float kl = ActivationRange(s, Observer::kKl);
  const float mse = ActivationRange(s, Observer::kMse);
  std::printf("U(-1,1), 1M values: max %.5f p99.99 %.5f p50 %.5f kl %.5f mse %.5f\n", minmax, pct,
              ActivationRange(s, Observer::kPercentile, 50), kl, mse);
  EXPECT_NEAR(minmax, 1.0, 1e-5);
  EXPECT_NEAR(pct, 0.9999, 2e-4);
  EXPECT_NEAR(ActivationRange(s, Observer::kPercentile, 50), 0.5, 3e-3);
  // Nothing to clip in a uniform distribution: KL and MSE keep (nearly) the whole range.
  EXPECT_GT(kl, 0.97f);
  EXPECT_LE(kl, s.hist_max);
  EXPECT_GT(mse, 0.97f);
  EXPECT_LE(mse, s.hist_max);
}

TEST(CalibObservers, ExactAnswersOnHandBuiltHistograms) {
  std::vector<uint64_t> hist(2048, 0);
  // Uniform over all bins: P == Q at i = 2048 (16 equal bins per level), so KL keeps the full range.
  std::fill(hist.begin(), hist.end(), 10);
  EXPECT_EQ(KlThreshold(hist, 8.0f), 8.0f);
  EXPECT_FLOAT_EQ(PercentileThreshold(hist, 8.0f, 50), 4.0f);
  EXPECT_FLOAT_EQ(PercentileThreshold(hist, 8.0f, 100), 8.0f);
  // Uniform over the first 1024 bins: the search ends at the last non-empty bin, where P == Q again.
  std::fill(hist.begin() + 1024, hist.end(), 0);
  EXPECT_EQ(KlThreshold(hist, 8.0f), 4.0f);
  EXPECT_FLOAT_EQ(PercentileThreshold(hist, 8.0f, 25), 1.0f);
  // MSE over U(0, a): rounding error T^3 / (12 127^2 a) + clipping error (a - T)^3 / (3a) is least
  // at T = a * 254 / 255; the search steps by one bin.
  EXPECT_NEAR(MseThreshold(hist, 8.0f), 4.0 * 254 / 255, 8.0 / 2048);
  // A clipped tail must land in a non-empty bin: data at bins 0..999 and one value at bin 1500.
  std::fill(hist.begin(), hist.end(), 0);
  std::fill(hist.begin(), hist.begin() + 1000, 1000);
  hist[1500] = 1;
  const float kl = KlThreshold(hist, 2048.0f);
  EXPECT_TRUE(kl == 1000.0f || kl == 1501.0f) << kl;
  // Everything in one bin: percentile interpolates inside it.
  std::fill(hist.begin(), hist.end(), 0);
  hist[100] = 1000;
  EXPECT_FLOAT_EQ(PercentileThreshold(hist, 2048.0f, 50), 100.5f);
  // Empty and all-zero inputs.
  std::fill(hist.begin(), hist.end(), 0);
  EXPECT_EQ(KlThreshold(hist, 1.0f), 0.0f);
  EXPECT_EQ(MseThreshold(hist, 1.0f), 0.0f);
  EXPECT_EQ(PercentileThreshold(hist, 1.0f, 99.99), 0.0f);
}

TEST(CalibObservers, ParsingAndErrors) {
  EXPECT_EQ(ParseObserver("minmax"), Observer::kMinMax);
  EXPECT_EQ(ParseObserver("ema"), Observer::kEma);
  EXPECT_EQ(ParseObserver("percentile"), Observer::kPercentile);
  EXPECT_EQ(ParseObserver("kl"), Observer::kKl);
  EXPECT_EQ(ParseObserver("entropy"), Observer::kKl);
  EXPECT_EQ(ParseObserver("mse"), Observer::kMse);
  for (Observer o : {Observer::kMinMax, Observer::kEma, Observer::kPercentile, Observer::kKl, Observer::kMse})
    EXPECT_EQ(ParseObserver(ObserverName(o)), o);
  EXPECT_ERROR_HAS(ParseObserver("max"), "unknown observer 'max'", "minmax, ema, percentile, kl or mse");

  LinearInputStats empty;
  empty.weight = "blk.3.ffn_down.weight";
  EXPECT_ERROR_HAS(ActivationRange(empty, Observer::kMinMax), "blk.3.ffn_down.weight", "no activations");
  const ActivationStats stats = SmallStats();
  const LinearInputStats& s = *stats.Find("blk.0.ffn_up.weight");
  EXPECT_ERROR_HAS(ActivationRange(s, Observer::kKl, 3), "takes no parameter");
  EXPECT_ERROR_HAS(ActivationRange(s, Observer::kPercentile, 101), "percentile 101");

  // Add rejects non-finite activations and a changed channel count.
  ActivationStats bad;
  std::vector<float> x(8, 1.0f);
  x[3] = NAN;
  EXPECT_ERROR_HAS(bad.Add(FakeWeight("blk.0.attn_q.weight", 8), x.data(), 1), "blk.0.attn_q.weight",
                   "non-finite activation");
  x[3] = 1;
  bad.Add(FakeWeight("blk.0.attn_k.weight", 8), x.data(), 1);
  EXPECT_ERROR_HAS(bad.Add(FakeWeight("blk.0.attn_k.weight", 4), x.data(), 2), "4 channels", "had 8");
}

// ---- CLI ----


TEST(CalibCli, CalibrateWritesStatsAndReports) {
  LOWBIT_REQUIRE_SHARED(kStories);
  LOWBIT_REQUIRE_SHARED(kText);
  if (!fs::exists(LOWBIT_BINARY)) GTEST_SKIP() << LOWBIT_BINARY << " not built";
  const std::string data = TempPath("calib.txt");
  std::ofstream(data) << TextHead(20000);
  const std::string out = TempPath("stats.gguf");
  const CommandResult r = RunLowbit(fmt::format("calibrate {} --data {} --samples 4 --seq-len 32 --seed 5 -o {} --json -t 1",
                                         SharedPath(kStories), data, out),
                             false);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["samples"], 4);
  EXPECT_EQ(j["seq_len"], 32);
  EXPECT_EQ(j["tokens"], 128);
  const ActivationStats stats = ActivationStats::Load(out);
  ASSERT_EQ(j["layers"].size(), stats.all().size());
  EXPECT_EQ(j["layers"][0]["weight"], "blk.0.attn_q.weight");  // model order
  for (const auto& layer : j["layers"]) {
    const LinearInputStats* s = stats.Find(layer["weight"]);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(layer["count"], 128);
    EXPECT_EQ(layer["range"]["kl"].get<float>(), ActivationRange(*s, Observer::kKl));
    EXPECT_EQ(layer["range"]["minmax"].get<float>(), layer["absmax"].get<float>());
  }
  // The same seed gives the same file.
  const std::string again = TempPath("stats2.gguf");
  ASSERT_EQ(
      RunLowbit(fmt::format("calibrate {} -f {} -n 4 -c 32 --seed 5 -o {} -t 2", SharedPath(kStories), data, again),
                false)
          .exit_code,
      0);
  EXPECT_EQ(ReadFileToString(out), ReadFileToString(again));
}

TEST(CalibCli, EmptyCalibrationFileIsAClearError) {
  LOWBIT_REQUIRE_SHARED(kStories);
  if (!fs::exists(LOWBIT_BINARY)) GTEST_SKIP() << LOWBIT_BINARY << " not built";
  const std::string data = TempPath("empty_calib.txt");
  std::ofstream(data).flush();
  const std::string out = TempPath("never.gguf");
  const CommandResult r = RunLowbit(fmt::format("calibrate {} --data {} -o {}", SharedPath(kStories), data, out), true);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("lowbit: error: " + data + ": calibration file is empty"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out));
}

}  // namespace
}  // namespace lowbit
