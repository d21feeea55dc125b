// HQQ: half-quadratic lp-error quantization (see hqq.h for the algorithm).
#include "quant/hqq.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/thread_pool.h"
#include "formats/all_formats.h"
#include "formats/int_formats.h"
#include "formats/quant_util.h"

namespace lowbit {

namespace {

template <typename T>
struct IsIntFormat : std::false_type {};
template <int kBits, bool kAsym, int kGroup>
struct IsIntFormat<IntFormat<kBits, kAsym, kGroup>> : std::true_type {};

void ForRows(int64_t rows, ThreadPool* pool, const std::function<void(int64_t, int64_t)>& fn) {
  if (pool == nullptr || pool->size() <= 1 || rows < 2)
    fn(0, rows);
  else
    pool->ParallelFor(rows, fn);
}


// ---- INT asymmetric formats: HQQ on (scale, zero) -------------------------

struct StepResult {
  double err;  // sum |W - W_r|^p at the step's (scale, zero)
  float zero;  // the updated zero, mean(W_q - (W - W_e)/s)
};

// |x|^p in float (the objective is a sum of these; float powf is several
// times faster than double pow, and 24 bits are plenty to rank candidates).
inline float AbsPow(float x, float p) { return x == 0.0f ? 0.0f : std::pow(std::fabs(x), p); }

double LpSum(const float* w, const float* q, int64_t n, float p) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += AbsPow(w[i] - q[i], p);
  return sum;
}

// ShrinkLp(x) is 0 for |x|^(2-p) <= 1/beta: below that threshold skip its pow.
inline float ShrinkThreshold(float beta, float p) { return std::pow(1.0f / beta, 1.0f / (2.0f - p)); }

// One half-quadratic step at real-valued (s, z): fills the codes q = W_q and
// y = W - W_e, and returns the lp error and the reference's zero update.
StepResult HalfQuadraticStep(const float* w, int64_t n, float s, float z, int max_code, float beta, float p,
                             float* q, float* y) {
  const float threshold = ShrinkThreshold(beta, p);
  double err = 0, zsum = 0;
  for (int64_t i = 0; i < n; ++i) {
    q[i] = std::clamp(std::nearbyint(w[i] / s + z), 0.0f, float(max_code));
    const float e = w[i] - s * (q[i] - z);  // W - W_r
    err += AbsPow(e, p);
    const float e_steps = e / s;
    y[i] = std::fabs(e_steps) <= threshold ? w[i] : w[i] - s * ShrinkLp(e_steps, beta, p);
    zsum += double(q[i]) - double(y[i]) / s;
  }
  return {err, float(zsum / double(n))};
}

// HQQ over one scale group of n weights of IntFormat F; returns the stored
// parameters with the least lp error. q and y: scratch of n floats.
template <typename F>
int_format_internal::Params HqqAffineGroup(const float* w, int64_t n, float (*round_scale)(float),
                                           const HqqOptions& o, float* q, float* y) {
  using Codec = typename F::Codec;
  using int_format_internal::Params;
  constexpr int kMax = Codec::kMaxCode;
  // lp error of stored parameters (codes round to nearest, as the format encodes)
  auto stored_error = [&](Params sp) {
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += AbsPow(w[i] - Codec::Decode(Codec::Encode(w[i], sp), sp), o.p);
    return sum;
  };
  float lo = w[0], hi = w[0];
  Codec::MinMax(w, n, &lo, &hi);
  const Params rtn = Codec::Choose(lo, hi, round_scale);
  Params best = rtn;
  double best_err = stored_error(rtn);
  if (!(rtn.scale > 0.0f) || best_err == 0) return best;  // constant (all-zero) group: rtn is exact
  for (int k = 0; k < o.starts; ++k) {
    const float r = 1.0f - o.start_step * float(k);
    const Params start = Codec::Choose(lo * r, hi * r, round_scale);
    if (!(start.scale > 0.0f)) continue;
    float s = start.scale, z = float(start.zero), beta = o.beta;
    double prev = std::numeric_limits<double>::infinity();
    Params last{-1.0f, 0};  // the stored parameters evaluated last (iterates often round to the same)
    for (int it = 0; it < o.iters; ++it) {
      const Params sp{round_scale(s), std::clamp(int(std::nearbyint(z)), 0, kMax)};
      if (sp.scale > 0.0f && (sp.scale != last.scale || sp.zero != last.zero)) {
        last = sp;
        const double err = stored_error(sp);
        if (err < best_err) {
          best_err = err;
          best = sp;
        }
      }
      // The early stop looks at the real-valued iterate, as the reference does.
      const StepResult step = HalfQuadraticStep(w, n, s, z, kMax, beta, o.p, q, y);
      if (!(step.err < prev)) break;
      prev = step.err;
      z = step.zero;
      double num = 0, den = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double c = double(q[i]) - double(z);
        num += double(y[i]) * c;
        den += c * c;
      }
      const float s_new = den > 0 ? float(num / den) : 0.0f;
      if (!(s_new > 0.0f) || !std::isfinite(s_new)) break;
      s = s_new;
      beta *= o.kappa;
    }
  }
  return best;
}

template <typename F>
void HqqIntAsym(const float* w, int64_t rows, int64_t n, uint8_t* out, ThreadPool* pool, const HqqOptions& o) {
  const size_t row_bytes = size_t(F::kRowHeaderBytes) + size_t(n / F::kBlockSize) * F::kBlockBytes;
  if constexpr (F::kGroupSize == kPerTensor) {
    std::vector<float> q(size_t(rows * n)), y(q.size());
    const auto params = HqqAffineGroup<F>(w, rows * n, quant::RoundScaleToF32Bits16Down, o, q.data(), y.data());
    for (int64_t r = 0; r < rows; ++r) EncodeIntWithParams<F>(w + r * n, n, params, out + size_t(r) * row_bytes);
  } else {
    ForRows(rows, pool, [&](int64_t r0, int64_t r1) {
      std::vector<float> q(static_cast<size_t>(n)), y(static_cast<size_t>(n));
      for (int64_t r = r0; r < r1; ++r) {
        const float* wr = w + r * n;
        uint8_t* o_row = out + size_t(r) * row_bytes;
        if constexpr (F::kGroupSize == kPerChannel) {
          EncodeIntWithParams<F>(
              wr, n, HqqAffineGroup<F>(wr, n, quant::RoundScaleToF32Bits16Down, o, q.data(), y.data()), o_row);
        } else {
          for (int64_t g = 0; g < n / F::kGroupSize; ++g) {
            const float* wg = wr + g * F::kGroupSize;
            const auto params =
                HqqAffineGroup<F>(wg, F::kGroupSize, quant::RoundScaleToF16Down, o, q.data(), y.data());
            EncodeIntWithParams<F>(wg, F::kGroupSize, params, o_row + size_t(g) * F::kBlockBytes);
          }
        }
      }
    });
  }
}

// ---- Any other format: HQQ with the codec as the fitting step -------------

// Encodes the (rows, unit) block at x (row stride `stride`) into out.
void HqqCodecUnit(const FormatInfo& fmt, const float* x, int64_t rows, int64_t unit, int64_t stride,
                  const HqqOptions& o, uint8_t* out) {
  const size_t count = size_t(rows * unit);
  std::vector<float> orig(count), target(count), deq(count);
  const float amax = GatherUnit(x, rows, unit, stride, orig.data());
  const size_t row_bytes = fmt.RowBytes(unit), bytes = size_t(rows) * row_bytes;
  std::vector<uint8_t> trial(bytes);
  auto encode = [&](const std::vector<float>& t) {
    fmt.quantize(t.data(), rows, unit, trial.data(), nullptr);
    for (int64_t r = 0; r < rows; ++r)
      fmt.dequantize(trial.data() + size_t(r) * row_bytes, deq.data() + size_t(r * unit), unit);
    return LpSum(orig.data(), deq.data(), int64_t(count), o.p);
  };
  double best = encode(orig);  // rtn
  std::copy(trial.begin(), trial.end(), out);
  if (!(best > 0)) return;  // exact (or non-finite: leave rtn's encoding)
  double sq = 0;
  for (size_t i = 0; i < count; ++i) sq += double(orig[i] - deq[i]) * double(orig[i] - deq[i]);
  const float step = float(std::sqrt(12.0 * sq / double(count)));
  if (!(step > 0.0f)) return;
  for (int k = 0; k < o.starts; ++k) {
    const float limit = amax * (1.0f - o.start_step * float(k));
    for (size_t i = 0; i < count; ++i) target[i] = std::clamp(orig[i], -limit, limit);
    float beta = o.beta;
    double prev = std::numeric_limits<double>::infinity();
    for (int it = 0; it < o.iters; ++it) {
      const double err = encode(target);
      if (err < best) {
        best = err;
        std::copy(trial.begin(), trial.end(), out);
      }
      if (!(err < prev)) break;
      prev = err;
      for (size_t i = 0; i < count; ++i) target[i] = orig[i] - step * ShrinkLp((orig[i] - deq[i]) / step, beta, o.p);
      beta *= o.kappa;
    }
  }
}

class HqqMethod final : public QuantMethod {
 public:
  HqqMethod(ThreadPool* pool, const HqqOptions& options) : pool_(pool), options_(options) {}
  std::string_view name() const override { return "hqq"; }
  void QuantizeTensor(const std::string&, const float* w, int64_t rows, int64_t n, const FormatInfo& fmt,
                      const float*, uint8_t* out) const override {
    if (rows <= 0 || n <= 0) return;
    if (fmt.id == DType::kF32 || fmt.id == DType::kF16 || fmt.id == DType::kBF16) {
      QuantizeRowsParallel(fmt, w, rows, n, nullptr, out, pool_);
      return;
    }
    const bool done = VisitFormat(fmt.id, [&]<typename F>() {
      if constexpr (IsIntFormat<F>::value) {
        if constexpr (F::kAsymmetric) {
          HqqIntAsym<F>(w, rows, n, out, pool_, options_);
          return true;
        }
      }
      return false;
    });
    if (done) return;
    if (!RowsIndependent(fmt)) {
      HqqCodecUnit(fmt, w, rows, n, n, options_, out);
      return;
    }
    const size_t row_bytes = fmt.RowBytes(n);
    const int64_t unit = fmt.row_header_bytes > 0 ? n : fmt.block_size;
    const size_t unit_bytes = fmt.row_header_bytes > 0 ? row_bytes : size_t(fmt.block_bytes);
    ForRows(rows, pool_, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t j = 0; j < n; j += unit)
          HqqCodecUnit(fmt, w + r * n + j, 1, unit, n, options_,
                       out + size_t(r) * row_bytes + size_t(j / unit) * unit_bytes);
    });
  }

 private:
  ThreadPool* pool_;
  HqqOptions options_;
};

}  // namespace

float ShrinkLp(float x, float beta, float p) {
  const float ax = std::fabs(x);
  const float t = ax - std::pow(ax + 1e-8f, p - 1.0f) / beta;  // 1e-8: the reference's guard at x = 0
  return t > 0.0f ? std::copysign(t, x) : 0.0f;
}

float HqqZeroStep(const float* w, int64_t n, float scale, float zero, int max_code, float beta, float p) {
  std::vector<float> q(static_cast<size_t>(n)), y(static_cast<size_t>(n));
  return HalfQuadraticStep(w, n, scale, zero, max_code, beta, p, q.data(), y.data()).zero;
}

double MeanLpError(const float* w, const float* q, int64_t n, float p) {
  return n > 0 ? LpSum(w, q, n, p) / double(n) : 0.0;
}

std::unique_ptr<QuantMethod> MakeHqqMethod(ThreadPool* pool, const HqqOptions& options) {
  return std::make_unique<HqqMethod>(pool, options);
}

}  // namespace lowbit
