// Activation statistics: accumulation from the matmul hook, and the imatrix
// GGUF file (see stats.h for the layout).
#include "calib/stats.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "core/progress.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"

namespace lowbit {

namespace {

constexpr uint32_t kStatsVersion = 1;
constexpr uint32_t kGgmlI64 = 27;

// mean = sum / count, with the sum rounded to f32 first: the value llama.cpp
// computes from the file (in_sum2 / counts), so Save/Load round-trips exactly.
float MeanOfF32Sum(double sum, int64_t count) { return count > 0 ? float(double(float(sum)) / double(count)) : 0.0f; }

// Merges adjacent bins pairwise: the histogram now spans [0, 2 * hist_max).
void DoubleHistogramRange(LinearInputStats& s) {
  const size_t bins = s.hist.size();
  for (size_t b = 0; b < bins / 2; ++b) s.hist[b] = s.hist[2 * b] + s.hist[2 * b + 1];
  std::fill(s.hist.begin() + int64_t(bins / 2), s.hist.end(), 0);
  s.hist_max *= 2;
}

}  // namespace

const LinearInputStats* ActivationStats::Find(const std::string& weight) const {
  auto it = stats_.find(weight);
  return it == stats_.end() ? nullptr : &it->second;
}

void ActivationStats::Add(const TensorView& weight, const float* x, int64_t n) {
  const int64_t c = weight.RowLength();
  if (n <= 0 || c <= 0) return;
  LinearInputStats& s = stats_[weight.name];
  Sums& sums = sums_[weight.name];
  if (s.channels == 0) {
    s.weight = weight.name;
    s.channels = c;
    s.min.assign(size_t(c), std::numeric_limits<float>::infinity());
    s.max.assign(size_t(c), -std::numeric_limits<float>::infinity());
    s.absmax.assign(size_t(c), 0.0f);
    s.mean_abs.assign(size_t(c), 0.0f);
    s.mean_sq.assign(size_t(c), 0.0f);
    s.hist.assign(kHistogramBins, 0);
    sums.sum_abs.assign(size_t(c), 0.0);
    sums.sum_sq.assign(size_t(c), 0.0);
  } else if (s.channels != c) {
    Fail("calibration: input of '{}' has {} channels, earlier batches had {}", weight.name, c, s.channels);
  } else if (!s.has_observer_stats()) {
    Fail("calibration: '{}' was loaded from a llama.cpp imatrix (no histogram); cannot add lowbit statistics",
         weight.name);
  }

  // Per-channel extremes and sums, x (n, c) row by row so sums are added in token order.
  float batch_min = std::numeric_limits<float>::infinity();
  float batch_max = -std::numeric_limits<float>::infinity();
  for (int64_t r = 0; r < n; ++r) {
    const float* row = x + r * c;
    for (int64_t j = 0; j < c; ++j) {
      const float v = row[j];
      const float a = std::fabs(v);
      batch_min = std::min(batch_min, v);
      batch_max = std::max(batch_max, v);
      s.min[size_t(j)] = std::min(s.min[size_t(j)], v);
      s.max[size_t(j)] = std::max(s.max[size_t(j)], v);
      s.absmax[size_t(j)] = std::max(s.absmax[size_t(j)], a);
      sums.sum_abs[size_t(j)] += double(a);
      sums.sum_sq[size_t(j)] += double(v) * double(v);
    }
  }
  // NaN and inf reach the sums whatever the comparisons above made of them.
  for (int64_t j = 0; j < c; ++j)
    if (!std::isfinite(sums.sum_sq[size_t(j)]))
      Fail("calibration: non-finite activation in the input of '{}' (channel {})", weight.name, j);
  s.count += n;
  for (int64_t j = 0; j < c; ++j) {
    s.mean_abs[size_t(j)] = float(sums.sum_abs[size_t(j)] / double(s.count));
    s.mean_sq[size_t(j)] = MeanOfF32Sum(sums.sum_sq[size_t(j)], s.count);
  }

  // Moving average of the batch extremes (PyTorch MovingAverageMinMaxObserver).
  if (s.batches == 0) {
    s.ema_min = batch_min;
    s.ema_max = batch_max;
  } else {
    s.ema_min += kEmaConstant * (batch_min - s.ema_min);
    s.ema_max += kEmaConstant * (batch_max - s.ema_max);
  }
  ++s.batches;

  // Histogram of |x|: the range starts at the first non-zero batch max and doubles as needed.
  const float batch_absmax = std::max(-batch_min, batch_max);
  if (s.hist_max == 0) {
    s.hist_max = batch_absmax;  // earlier values were all 0 and sit in bin 0 for any range
  } else {
    while (batch_absmax > s.hist_max) {
      if (!std::isfinite(s.hist_max * 2))
        Fail("calibration: activation magnitude {} in the input of '{}' is too large", batch_absmax, weight.name);
      DoubleHistogramRange(s);
    }
  }
  if (s.hist_max == 0) {
    s.hist[0] += uint64_t(n * c);
    return;
  }
  // Bin b holds (b, b + 1] * width: with that closed upper edge, and to_bin
  // scaling exactly by 1/2 per doubling, pairwise merging gives bit for bit
  // the bins that binning at the final range would (the range's maximum stays
  // in the last bin before and after).
  const double to_bin = double(kHistogramBins) / double(s.hist_max);
  for (int64_t i = 0; i < n * c; ++i) {
    const int b = int(std::ceil(double(std::fabs(x[i])) * to_bin)) - 1;
    ++s.hist[size_t(std::clamp(b, 0, kHistogramBins - 1))];
  }
}

void CollectActivationStats(Session& session, const std::vector<std::vector<int32_t>>& samples, ActivationStats* stats,
                            const std::function<void(int)>& on_sample) {
  auto previous = std::move(session.on_matmul_input);
  session.on_matmul_input = [stats](const TensorView& w, const float* x, int64_t n) { stats->Add(w, x, n); };
  try {
    for (size_t i = 0; i < samples.size(); ++i) {
      ThrowIfInterrupted();
      session.Reset();
      session.Eval(samples[i], /*all_logits=*/true);
      if (on_sample) on_sample(int(i));
    }
  } catch (...) {
    session.on_matmul_input = std::move(previous);
    throw;
  }
  session.on_matmul_input = std::move(previous);
}

// ---- file ----

namespace {

std::span<const uint8_t> Bytes(const std::vector<float>& v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(float)};
}

}  // namespace

void ActivationStats::Save(const std::string& path) const {
  GgufWriter w(path);
  w.SetString("general.type", "imatrix");
  w.Set("imatrix.datasets", GgufStringArray(info_.datasets));
  w.SetUint32("imatrix.chunk_count", uint32_t(info_.chunk_count));
  w.SetUint32("imatrix.chunk_size", uint32_t(info_.chunk_size));
  w.SetUint32("lowbit.calib.version", kStatsVersion);
  w.SetUint32("lowbit.calib.hist_bins", kHistogramBins);
  w.SetFloat32("lowbit.calib.ema_constant", kEmaConstant);
  w.Set("lowbit.calib.seed", GgufUint(GgufType::kUint64, info_.seed));
  for (const auto& [name, s] : stats_) {
    if (!s.has_observer_stats())
      Fail("{}: '{}' holds only llama.cpp importance (loaded from an imatrix); cannot write lowbit statistics", path,
           name);
    const uint64_t c = uint64_t(s.channels);
    w.AddTensor(name + ".in_sum2", std::vector<uint64_t>{c, 1}, kGgmlF32);
    w.AddTensor(name + ".counts", std::vector<uint64_t>{1, 1}, kGgmlF32);
    for (const char* suffix : {".in_min", ".in_max", ".in_absmax", ".in_mean_abs"})
      w.AddTensor(name + suffix, std::vector<uint64_t>{c}, kGgmlF32);
    w.AddTensor(name + ".in_hist", std::vector<uint64_t>{uint64_t(kHistogramBins)}, kGgmlI64);
    w.AddTensor(name + ".in_hist_max", std::vector<uint64_t>{1}, kGgmlF32);
    w.AddTensor(name + ".in_ema", std::vector<uint64_t>{2}, kGgmlF32);
    w.AddTensor(name + ".in_tally", std::vector<uint64_t>{2}, kGgmlI64);
  }
  w.WriteHeader();
  for (const auto& [name, s] : stats_) {
    const Sums& sums = sums_.at(name);
    std::vector<float> sum2(sums.sum_sq.begin(), sums.sum_sq.end());
    w.WriteTensorData(Bytes(sum2));
    w.WriteTensorData(Bytes(std::vector<float>{float(s.count)}));
    for (const auto* v : {&s.min, &s.max, &s.absmax, &s.mean_abs}) w.WriteTensorData(Bytes(*v));
    std::vector<int64_t> hist(s.hist.begin(), s.hist.end());
    w.WriteTensorData({reinterpret_cast<const uint8_t*>(hist.data()), hist.size() * sizeof(int64_t)});
    w.WriteTensorData(Bytes(std::vector<float>{s.hist_max}));
    w.WriteTensorData(Bytes(std::vector<float>{s.ema_min, s.ema_max}));
    const int64_t tally[2] = {s.count, s.batches};
    w.WriteTensorData({reinterpret_cast<const uint8_t*>(tally), sizeof(tally)});
  }
  w.Finish();
}

namespace {

bool RemoveSuffix(std::string& name, const std::string& suffix) {
  if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return false;
  name.resize(name.size() - suffix.size());
  return true;
}

// The tensors of one weight's entry, by suffix.
struct Entry {
  std::map<std::string, const GgufTensorInfo*> parts;
};

const char* const kSuffixes[] = {".in_sum2",     ".counts",  ".in_min",      ".in_max", ".in_absmax",
                                 ".in_mean_abs", ".in_hist", ".in_hist_max", ".in_ema", ".in_tally"};

// Checks `t` has ggml type `type` and `elements` elements laid out as ne
// {elements} or {elements, 1}; returns its data.
const uint8_t* Expect(const GgufFile& f, const std::string& weight, const std::string& suffix, const Entry& e,
                      uint32_t type, uint64_t elements) {
  auto it = e.parts.find(suffix);
  if (it == e.parts.end()) Fail("{}: '{}' has no tensor '{}{}'", f.name(), weight, weight, suffix);
  const GgufTensorInfo& t = *it->second;
  if (t.ggml_type != type) {
    const GgmlTypeInfo* actual = FindGgmlType(t.ggml_type);
    Fail("{}: tensor '{}' has type {}, expected {}", f.name(), t.name,
         actual ? std::string(actual->name) : "id " + std::to_string(t.ggml_type), FindGgmlType(type)->name);
  }
  const bool shape_ok = !t.ne.empty() && t.ne[0] == elements &&
                        std::all_of(t.ne.begin() + 1, t.ne.end(), [](uint64_t d) { return d == 1; });
  if (!shape_ok) {
    std::string ne;
    for (uint64_t d : t.ne) ne += (ne.empty() ? "" : ", ") + std::to_string(d);
    if (suffix == ".in_sum2" && t.ne.size() >= 2 && t.ne[1] > 1)
      Fail("{}: tensor '{}' holds {} matrices (per-expert MoE importance is not supported)", f.name(), t.name, t.ne[1]);
    Fail("{}: tensor '{}' has ne {{{}}}, expected {{{}}}", f.name(), t.name, ne, elements);
  }
  LOWBIT_CHECK(t.bytes == elements * FindGgmlType(type)->type_size);
  return t.data;
}

std::vector<float> ReadF32(const GgufFile& f, const std::string& weight, const std::string& suffix, const Entry& e,
                           uint64_t elements) {
  std::vector<float> v(elements);
  std::memcpy(v.data(), Expect(f, weight, suffix, e, kGgmlF32, elements), elements * sizeof(float));
  for (float x : v)
    if (!std::isfinite(x)) Fail("{}: tensor '{}{}' holds a non-finite value", f.name(), weight, suffix);
  return v;
}

std::vector<int64_t> ReadI64(const GgufFile& f, const std::string& weight, const std::string& suffix, const Entry& e,
                             uint64_t elements) {
  std::vector<int64_t> v(elements);
  std::memcpy(v.data(), Expect(f, weight, suffix, e, kGgmlI64, elements), elements * sizeof(int64_t));
  for (int64_t x : v)
    if (x < 0) Fail("{}: tensor '{}{}' holds a negative count {}", f.name(), weight, suffix, x);
  return v;
}

}  // namespace

ActivationStats ActivationStats::Load(const std::string& path) { return FromGguf(GgufFile(path)); }

ActivationStats ActivationStats::FromGguf(const GgufFile& f) {
  const std::string& path = f.name();
  const std::string type = f.GetString("general.type", "");
  if (type != "imatrix")
    Fail("{}: not a calibration statistics file (general.type is '{}', expected 'imatrix')", path, type);
  ActivationStats out;
  if (f.Has("imatrix.datasets")) out.info_.datasets = f.GetStringArray("imatrix.datasets");
  out.info_.chunk_count = f.GetInt("imatrix.chunk_count", 0);
  out.info_.chunk_size = f.GetInt("imatrix.chunk_size", 0);
  const bool lowbit = f.Has("lowbit.calib.version");
  if (lowbit) {
    const int64_t version = f.GetInt("lowbit.calib.version");
    if (version != kStatsVersion)
      Fail("{}: lowbit.calib.version {} is not supported (expected {})", path, version, kStatsVersion);
    const int64_t bins = f.GetInt("lowbit.calib.hist_bins");
    if (bins != kHistogramBins) Fail("{}: lowbit.calib.hist_bins is {}, expected {}", path, bins, kHistogramBins);
    out.info_.seed = uint64_t(f.GetInt("lowbit.calib.seed", 0));
  }

  std::map<std::string, Entry> entries;
  for (const GgufTensorInfo& t : f.tensors()) {
    std::string weight = t.name;
    bool known = false;
    for (const char* suffix : kSuffixes) {
      if (RemoveSuffix(weight, suffix)) {
        if (!lowbit && std::string(suffix) != ".in_sum2" && std::string(suffix) != ".counts") break;
        entries[weight].parts[suffix] = &t;
        known = true;
        break;
      }
    }
    if (!known) Fail("{}: unexpected tensor '{}' in a calibration statistics file", path, t.name);
  }
  if (entries.empty()) Fail("{}: calibration statistics file holds no tensors", path);

  for (const auto& [weight, e] : entries) {
    auto sum2_it = e.parts.find(".in_sum2");
    if (sum2_it == e.parts.end()) Fail("{}: '{}' has no tensor '{}.in_sum2'", path, weight, weight);
    const uint64_t c = sum2_it->second->ne.empty() ? 0 : sum2_it->second->ne[0];
    if (c == 0) Fail("{}: tensor '{}.in_sum2' is empty", path, weight);
    LinearInputStats s;
    s.weight = weight;
    s.channels = int64_t(c);
    const std::vector<float> sum2 = ReadF32(f, weight, ".in_sum2", e, c);
    const float count_f = ReadF32(f, weight, ".counts", e, 1)[0];
    if (!(count_f >= 0 && count_f <= 0x1p53f) || count_f != std::floor(count_f))
      Fail("{}: tensor '{}.counts' holds {}, not a token count", path, weight, count_f);
    s.count = int64_t(count_f);
    for (float v : sum2)
      if (v < 0) Fail("{}: tensor '{}.in_sum2' holds a negative sum of squares {}", path, weight, v);
    Sums sums;
    sums.sum_sq.assign(sum2.begin(), sum2.end());
    s.mean_sq.resize(c);
    for (size_t j = 0; j < c; ++j) s.mean_sq[j] = MeanOfF32Sum(sums.sum_sq[j], s.count);

    if (lowbit) {
      const std::vector<int64_t> tally = ReadI64(f, weight, ".in_tally", e, 2);
      if (float(tally[0]) != count_f)
        Fail("{}: '{}': {}.in_tally counts {} tokens but {}.counts says {}", path, weight, weight, tally[0], weight,
             count_f);
      s.count = tally[0];
      s.batches = tally[1];
      if (s.count == 0 || s.batches == 0 || s.batches > s.count)
        Fail("{}: '{}': {} tokens in {} batches is inconsistent", path, weight, s.count, s.batches);
      for (size_t j = 0; j < c; ++j) s.mean_sq[j] = MeanOfF32Sum(sums.sum_sq[j], s.count);
      s.min = ReadF32(f, weight, ".in_min", e, c);
      s.max = ReadF32(f, weight, ".in_max", e, c);
      s.absmax = ReadF32(f, weight, ".in_absmax", e, c);
      s.mean_abs = ReadF32(f, weight, ".in_mean_abs", e, c);
      for (size_t j = 0; j < c; ++j) {
        const float a = std::max(-s.min[j], s.max[j]);
        const double slack = 1 + 1e-5;  // f32 rounding of the stored sums and means
        if (s.min[j] > s.max[j] || s.absmax[j] != a || s.mean_abs[j] < 0 || s.mean_abs[j] > a * slack ||
            s.mean_sq[j] > double(a) * a * slack)
          Fail("{}: '{}' channel {}: min {} max {} absmax {} mean|x| {} mean x^2 {} are inconsistent", path, weight, j,
               s.min[j], s.max[j], s.absmax[j], s.mean_abs[j], s.mean_sq[j]);
      }
      const std::vector<int64_t> hist = ReadI64(f, weight, ".in_hist", e, kHistogramBins);
      s.hist.assign(hist.begin(), hist.end());
      uint64_t total = 0;
      for (uint64_t h : s.hist) total += h;
      if (total != uint64_t(s.count) * c)
        Fail("{}: tensor '{}.in_hist' counts {} values, expected {} tokens x {} channels", path, weight, total, s.count,
             c);
      s.hist_max = ReadF32(f, weight, ".in_hist_max", e, 1)[0];
      const float absmax = *std::max_element(s.absmax.begin(), s.absmax.end());
      if (s.hist_max < absmax || (s.hist_max > 2 * absmax && absmax > 0) || (absmax == 0 && s.hist_max != 0))
        Fail("{}: tensor '{}.in_hist_max' is {}, inconsistent with the largest |x| {}", path, weight, s.hist_max,
             absmax);
      const std::vector<float> ema = ReadF32(f, weight, ".in_ema", e, 2);
      s.ema_min = ema[0];
      s.ema_max = ema[1];
      if (s.ema_min > s.ema_max)
        Fail("{}: tensor '{}.in_ema' has min {} above max {}", path, weight, s.ema_min, s.ema_max);
      sums.sum_abs.resize(c);
      for (size_t j = 0; j < c; ++j) sums.sum_abs[j] = double(s.mean_abs[j]) * double(s.count);
    }
    out.stats_.emplace(weight, std::move(s));
    out.sums_.emplace(weight, std::move(sums));
  }
  return out;
}

}  // namespace lowbit
