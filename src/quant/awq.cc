// AWQ as a block stage: activation-aware scale search, folding and clipping
// (the algorithm and its choices are in awq.h). SmoothQuant is in
// smoothquant.cc; both share the folding helpers defined here.
#include "quant/awq.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/thread_pool.h"
#include "kernels/matmul.h"
#include "quant/method.h"

namespace lowbit {

namespace {

constexpr int64_t kTokenChunk = 256;  // rows per MatMul in the loss, bounds the (rows, out) buffer

bool IsFloatFormat(const FormatInfo& fmt) {
  return fmt.id == DType::kF32 || fmt.id == DType::kF16 || fmt.id == DType::kBF16;
}

TensorView F32View(const float* w, int64_t rows, int64_t n) {
  TensorView v;
  v.type = DType::kF32;
  v.shape = {rows, n};
  v.data = w;
  v.bytes = size_t(rows * n) * sizeof(float);
  return v;
}

// sum over the m rows of x (m, n) of ||d x_t||^2 for d (rows, n).
double OutputSquaredNorm(const float* d, int64_t rows, int64_t n, const float* x, int64_t m, ThreadPool& pool) {
  const TensorView view = F32View(d, rows, n);
  std::vector<float> y(size_t(std::min(m, kTokenChunk) * rows));  // (chunk, rows)
  double total = 0;
  for (int64_t t0 = 0; t0 < m; t0 += kTokenChunk) {
    const int64_t cnt = std::min(kTokenChunk, m - t0);
    MatMul(view, x + t0 * n, cnt, y.data(), pool, false);
    for (int64_t i = 0; i < cnt * rows; ++i) total += double(y[size_t(i)]) * double(y[size_t(i)]);
  }
  return total;
}

// The rows a loss is measured on: x (m, n) itself, or, when n < m, its Gram
// matrix G = X^T X (n, n), since sum_t ||d x_t||^2 = sum_r d_r^T G d_r costs
// rows * n^2 per candidate instead of m * rows * n.
class OutputEnergy {
 public:
  OutputEnergy(const float* x, int64_t m, int64_t n, ThreadPool& pool) : x_(x), m_(m), n_(n) {
    if (n >= m) return;
    std::vector<float> xt(size_t(n * m));  // X^T (n, m)
    for (int64_t t = 0; t < m; ++t)
      for (int64_t j = 0; j < n; ++j) xt[size_t(j * m + t)] = x[t * n + j];
    gram_.resize(size_t(n * n));
    MatMul(F32View(xt.data(), n, m), xt.data(), n, gram_.data(), pool, false);  // X^T X
  }

  // sum_t ||d x_t||^2 for d (rows, n).
  double operator()(const float* d, int64_t rows, ThreadPool& pool) const {
    if (gram_.empty()) return OutputSquaredNorm(d, rows, n_, x_, m_, pool);
    std::vector<float> z(size_t(rows * n_));  // d G (rows, n); G is symmetric
    MatMul(F32View(gram_.data(), n_, n_), d, rows, z.data(), pool, false);
    double total = 0;
    for (size_t i = 0; i < z.size(); ++i) total += double(d[i]) * double(z[i]);
    return std::max(total, 0.0);
  }

 private:
  const float* x_;
  int64_t m_, n_;
  std::vector<float> gram_;  // (n, n), empty when x is used directly
};

double GroupLoss(std::span<const AwqLinear> linears, const OutputEnergy& energy, int64_t n, const float* s,
                 ThreadPool& pool) {
  double total = 0;
  for (const AwqLinear& l : linears) {
    const size_t size = size_t(l.rows * n);
    std::vector<float> d(l.w, l.w + size);  // W (rows, n), then W diag(s), then the error
    if (s != nullptr) ScaleColumns(d.data(), l.rows, n, s);
    std::vector<float> q(size);
    PseudoQuantize(*l.format, d.data(), l.rows, n, q.data(), &pool);
    for (int64_t r = 0; r < l.rows; ++r)
      for (int64_t j = 0; j < n; ++j) {
        const size_t i = size_t(r * n + j);
        d[i] = l.w[i] - (s != nullptr ? q[i] / s[j] : q[i]);
      }
    total += energy(d.data(), l.rows, pool);
  }
  return total;
}

// Every row of x (m, n) divided element-wise by s (n).
void DivideColumns(std::vector<float>& x, int64_t n, const float* s) {
  const int64_t m = n > 0 ? int64_t(x.size()) / n : 0;
  for (int64_t t = 0; t < m; ++t)
    for (int64_t j = 0; j < n; ++j) x[size_t(t * n + j)] /= s[j];
}

bool AllFinite(const std::vector<float>& v) {
  return std::all_of(v.begin(), v.end(), [](float e) { return std::isfinite(e); });
}

}  // namespace

// ---------------------------------------------------------------- pieces

void PseudoQuantize(const FormatInfo& fmt, const float* w, int64_t rows, int64_t n, float* out, ThreadPool* pool) {
  const size_t row_bytes = fmt.RowBytes(n);
  std::vector<uint8_t> bytes(size_t(rows) * row_bytes);
  QuantizeRowsParallel(fmt, w, rows, n, nullptr, bytes.data(), pool);
  for (int64_t r = 0; r < rows; ++r) fmt.dequantize(bytes.data() + size_t(r) * row_bytes, out + r * n, n);
}

int64_t AwqUnit(const FormatInfo& fmt, int64_t n) {
  if (fmt.row_header_bytes > 0 || !RowsIndependent(fmt)) return n;
  return std::max<int64_t>(1, fmt.block_size);
}

void ScaleColumns(float* w, int64_t rows, int64_t n, const float* s) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) w[r * n + j] *= s[j];
}

void DivideBy(float* v, int64_t n, const float* s) {
  for (int64_t j = 0; j < n; ++j) v[j] /= s[j];
}

void DivideRows(float* w, int64_t rows, int64_t n, const float* s) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) w[r * n + j] /= s[r];
}

std::vector<float> AwqWeightMean(std::span<const AwqLinear> linears, int64_t n) {
  std::vector<double> acc(size_t(n), 0.0);
  int64_t total_rows = 0;
  for (const AwqLinear& l : linears) {
    const int64_t unit = AwqUnit(*l.format, n);
    for (int64_t r = 0; r < l.rows; ++r) {
      const float* row = l.w + r * n;
      for (int64_t j0 = 0; j0 < n; j0 += unit) {
        float mx = 0;
        for (int64_t j = j0; j < j0 + unit; ++j) mx = std::max(mx, std::fabs(row[j]));
        for (int64_t j = j0; j < j0 + unit; ++j) acc[size_t(j)] += std::fabs(row[j]) / (double(mx) + 1e-6);
      }
    }
    total_rows += l.rows;
  }
  std::vector<float> mean(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) mean[size_t(j)] = float(acc[size_t(j)] / double(std::max<int64_t>(1, total_rows)));
  return mean;
}

std::vector<float> AwqScales(std::span<const float> x_mean, std::span<const float> w_mean, double alpha) {
  const size_t n = x_mean.size();
  std::vector<double> s(n);
  double mx = 0, mn = INFINITY;
  for (size_t j = 0; j < n; ++j) {
    const double xm = std::isfinite(x_mean[j]) && x_mean[j] > 0 ? double(x_mean[j]) : 0.0;
    double v = std::pow(xm, alpha);  // pow(0, 0) = 1: alpha = 0 is s = 1
    if (!w_mean.empty()) {
      const double wm = std::isfinite(w_mean[j]) && w_mean[j] > 0 ? double(w_mean[j]) : 0.0;
      v /= std::pow(wm, 1.0 - alpha) + 1e-4;
    }
    v = std::max(v, 1e-4);
    s[j] = v;
    mx = std::max(mx, v);
    mn = std::min(mn, v);
  }
  const double norm = std::sqrt(mx * mn);
  std::vector<float> out(n);
  for (size_t j = 0; j < n; ++j) {
    out[j] = float(s[j] / norm);
    if (!std::isfinite(out[j]) || !(out[j] > 0)) return {};
  }
  return out;
}

double AwqGroupLoss(std::span<const AwqLinear> linears, const float* x, int64_t m, int64_t n, const float* s,
                    ThreadPool& pool) {
  return GroupLoss(linears, OutputEnergy(x, m, n, pool), n, s, pool);
}

AwqSearchResult AwqSearchScales(std::span<const AwqLinear> linears, const float* x, int64_t m, int64_t n,
                                std::span<const float> x_mean, const AwqOptions& options, ThreadPool& pool) {
  AwqSearchResult result;
  const OutputEnergy energy(x, m, n, pool);
  for (const AwqLinear& l : linears) result.norm += energy(l.w, l.rows, pool);
  // s = 1 first: plain quantization, the baseline every candidate must beat.
  result.scales.assign(size_t(n), 1.0f);
  result.loss_rtn = GroupLoss(linears, energy, n, nullptr, pool);
  result.loss = result.loss_rtn;
  const std::vector<float> w_mean = options.duo_scaling ? AwqWeightMean(linears, n) : std::vector<float>();
  const int grid = std::max(1, options.grid);
  for (int i = options.duo_scaling ? 0 : 1; i < grid; ++i) {
    const double alpha = double(i) / double(grid);
    const std::vector<float> s = AwqScales(x_mean, w_mean, alpha);
    if (s.empty()) continue;
    const double loss = GroupLoss(linears, energy, n, s.data(), pool);
    if (loss < result.loss) {  // strict: ties keep the smaller alpha; NaN never wins
      result.loss = loss;
      result.alpha = alpha;
      result.scales = s;
    }
  }
  return result;
}

AwqClipResult AwqClip(const FormatInfo& fmt, float* w, int64_t rows, int64_t n, const float* x, int64_t m,
                      const AwqOptions& options, ThreadPool& pool) {
  AwqClipResult result;
  const size_t size = size_t(rows * n);
  const std::vector<float> orig(w, w + size);
  std::vector<float> deq(size), d(size);
  const OutputEnergy energy(x, m, n, pool);
  // ||X (orig - Q(cand))^T||^2
  auto loss_of = [&](const float* cand) {
    PseudoQuantize(fmt, cand, rows, n, deq.data(), &pool);
    for (size_t i = 0; i < size; ++i) d[i] = orig[i] - deq[i];
    return energy(d.data(), rows, pool);
  };
  result.norm = energy(orig.data(), rows, pool);
  result.loss_before = loss_of(orig.data());
  result.loss_after = result.loss_before;
  if (IsFloatFormat(fmt) || m == 0 || rows == 0) return result;

  const int64_t unit = AwqUnit(fmt, n), units = n / unit;
  result.units = rows * units;
  std::vector<float> amax(size_t(rows * units), 0.0f);  // (rows, units)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) {
      float& a = amax[size_t(r * units + j / unit)];
      a = std::max(a, std::fabs(orig[size_t(r * n + j)]));
    }
  // Each unit's share of the outputs is measured on x_u (m, unit), the unit's
  // columns of x, or on its Gram block x_u^T x_u (unit, unit) when unit < m
  // (as OutputEnergy). du (rows, unit): the unit's error columns.
  const bool gram = unit < m;
  std::vector<std::vector<float>> xu(static_cast<size_t>(units));
  for (int64_t u = 0; u < units; ++u) {
    std::vector<float> cols(size_t(m * unit));  // x_u (m, unit), then x_u^T (unit, m) for the Gram block
    for (int64_t t = 0; t < m; ++t)
      for (int64_t j = 0; j < unit; ++j) {
        const float v = x[t * n + u * unit + j];
        cols[size_t(gram ? j * m + t : t * unit + j)] = v;
      }
    if (gram) {
      xu[size_t(u)].resize(size_t(unit * unit));
      MatMul(F32View(cols.data(), unit, m), cols.data(), unit, xu[size_t(u)].data(), pool, false);
    } else {
      xu[size_t(u)] = std::move(cols);
    }
  }
  std::vector<float> du(size_t(rows * unit)), y(size_t((gram ? unit : m) * rows)), cand(size);
  // e[r] = the error energy of row r of du in unit u.
  std::vector<double> e(static_cast<size_t>(rows));
  auto row_energies = [&](int64_t u) {
    if (gram) {  // y (rows, unit) = du G_u; e_r = du_r . y_r
      MatMul(F32View(xu[size_t(u)].data(), unit, unit), du.data(), rows, y.data(), pool, false);
      for (int64_t r = 0; r < rows; ++r) {
        double acc = 0;
        for (int64_t j = 0; j < unit; ++j) acc += double(du[size_t(r * unit + j)]) * double(y[size_t(r * unit + j)]);
        e[size_t(r)] = acc;
      }
      return;
    }
    // y (m, rows) = x_u (m, unit) @ du^T: the unit's share of every output.
    MatMul(F32View(du.data(), rows, unit), xu[size_t(u)].data(), m, y.data(), pool, false);
    for (int64_t r = 0; r < rows; ++r) {
      double acc = 0;
      for (int64_t t = 0; t < m; ++t) acc += double(y[size_t(t * rows + r)]) * double(y[size_t(t * rows + r)]);
      e[size_t(r)] = acc;
    }
  };
  std::vector<double> best(size_t(rows * units), INFINITY);
  std::vector<float> best_ratio(size_t(rows * units), 1.0f);
  const int steps = std::max(1, int(options.max_shrink * options.clip_grid));
  for (int step = 0; step < steps; ++step) {
    const float ratio = 1.0f - float(step) / float(options.clip_grid);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < n; ++j) {
        const float lim = amax[size_t(r * units + j / unit)] * ratio;
        cand[size_t(r * n + j)] = std::clamp(orig[size_t(r * n + j)], -lim, lim);
      }
    PseudoQuantize(fmt, cand.data(), rows, n, deq.data(), &pool);
    for (int64_t u = 0; u < units; ++u) {
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < unit; ++j) {
          const size_t i = size_t(r * n + u * unit + j);
          du[size_t(r * unit + j)] = orig[i] - deq[i];
        }
      row_energies(u);
      for (int64_t r = 0; r < rows; ++r) {
        const size_t k = size_t(r * units + u);
        if (e[size_t(r)] < best[k]) {
          best[k] = e[size_t(r)];
          best_ratio[k] = ratio;
        }
      }
    }
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) {
      const float lim = amax[size_t(r * units + j / unit)] * best_ratio[size_t(r * units + j / unit)];
      cand[size_t(r * n + j)] = std::clamp(orig[size_t(r * n + j)], -lim, lim);
    }
  const double after = loss_of(cand.data());
  if (after <= result.loss_before) {  // units are scored alone; keep the clamp only if the whole tensor gains
    std::copy(cand.begin(), cand.end(), w);
    result.loss_after = after;
    result.clipped = std::count_if(best_ratio.begin(), best_ratio.end(), [](float e) { return e < 1.0f; });
  }
  return result;
}

// ---------------------------------------------------------------- the stage

namespace {

// What one Forward recorded of a product's input x (rows, n).
struct CapturedInput {
  int64_t n = 0;
  int64_t rows_seen = 0;
  std::vector<double> abs_sum;  // (n) sum |x|
  std::vector<float> rows;      // (kept, n) evenly spaced subsample
  int64_t kept() const { return n > 0 ? int64_t(rows.size()) / n : 0; }
};

std::string FullName(int layer, const std::string& name) {
  return name.starts_with("blk.") ? name : fmt::format("blk.{}.{}", layer, name);
}

// One Forward recording the inputs of the products in `names` (full names);
// stops after the last product whose input is needed.
std::map<std::string, CapturedInput> CaptureInputs(BlockContext& block, const std::vector<std::string>& names,
                                                   const char* stop_after, int max_tokens) {
  const int layer = block.layer();
  // Rows per product = calibration samples x seq_len: count them on the
  // first product (stopping there) to pick the subsampling stride.
  int64_t total = 0;
  const std::string first = names.front();
  const std::string first_short = first.substr(first.find('.', 4) + 1);
  block.Forward(
      [&](const std::string& name, const float*, int64_t n) {
        if (FullName(layer, name) == first) total += n;
      },
      first_short.c_str());
  const int64_t stride = std::max<int64_t>(1, (total + max_tokens - 1) / std::max(1, max_tokens));

  std::map<std::string, CapturedInput> captured;
  for (const std::string& name : names) {
    CapturedInput& c = captured[name];
    c.n = block.Shape(name).back();
    c.abs_sum.assign(size_t(c.n), 0.0);
    c.rows.reserve(size_t(std::min<int64_t>(total, max_tokens) * c.n));
  }
  block.Forward(
      [&](const std::string& name, const float* x, int64_t n) {
        auto it = captured.find(FullName(layer, name));
        if (it == captured.end()) return;
        CapturedInput& c = it->second;
        for (int64_t t = 0; t < n; ++t) {
          const float* row = x + t * c.n;
          for (int64_t j = 0; j < c.n; ++j) c.abs_sum[size_t(j)] += std::fabs(row[j]);
          if ((c.rows_seen + t) % stride == 0) c.rows.insert(c.rows.end(), row, row + c.n);
        }
        c.rows_seen += n;
      },
      stop_after);
  return captured;
}

// Every `step`-th row of x (m, n) so that at most `max_rows` remain.
std::vector<float> Subsample(const std::vector<float>& x, int64_t n, int64_t max_rows) {
  const int64_t m = n > 0 ? int64_t(x.size()) / n : 0;
  if (m <= max_rows) return x;
  const int64_t step = (m + max_rows - 1) / max_rows;
  std::vector<float> out;
  for (int64_t t = 0; t < m; t += step) out.insert(out.end(), x.begin() + t * n, x.begin() + (t + 1) * n);
  return out;
}

// A scaling group: the previous op (norm weight/bias, or rows of a linear
// and its bias) receives 1/s, every linear's input columns s.
struct ScalingGroup {
  std::string label;                      // "attn_norm->q,k,v"
  std::string input;                      // product whose captured input the linears share
  std::vector<std::string> linears;       // every linear fed by the previous op
  std::vector<std::string> prev_vectors;  // (n) norm weight and bias
  std::string prev_rows;                  // linear whose rows [prev_row0, prev_row0 + n) get 1/s
  int64_t prev_row0 = 0;
  std::string prev_bias;  // its bias, same slice
};

class AwqStage final : public BlockStage {
 public:
  explicit AwqStage(const AwqOptions& options) : options_(options) {}
  std::string_view name() const override { return "awq"; }

  void ProcessBlock(BlockContext& block) override {
    const ModelConfig& c = block.config();
    const int l = block.layer();
    const bool gpt2 = c.arch == Arch::kGpt2;
    auto N = [l](const char* s) { return fmt::format("blk.{}.{}", l, s); };
    const std::vector<ScalingGroup> groups = Groups(block);

    // Which captured input each linear reads.
    std::map<std::string, std::string> input_of;
    std::vector<std::string> inputs;
    for (const ScalingGroup& g : groups) {
      for (const std::string& lin : g.linears) input_of[lin] = g.input;
      inputs.push_back(g.input);
    }
    for (const char* s : {"attn_output.weight", "ffn_down.weight"})  // clipped even without a scaling group
      if (block.Has(N(s)) && !input_of.count(N(s))) {
        input_of[N(s)] = N(s);
        inputs.push_back(N(s));
      }
    std::sort(inputs.begin(), inputs.end(), [&](const std::string& a, const std::string& b) {
      return Order(a) < Order(b);
    });
    inputs.erase(std::unique(inputs.begin(), inputs.end()), inputs.end());
    const std::string last_short = inputs.back().substr(inputs.back().find('.', 4) + 1);
    std::map<std::string, CapturedInput> captured =
        CaptureInputs(block, inputs, last_short.c_str(), options_.max_tokens);

    for (const ScalingGroup& g : groups) ApplyGroup(block, g, captured[g.input]);

    if (!options_.clip_search) return;
    std::vector<std::string> clip = {N("attn_v.weight"), N("attn_output.weight"), N("ffn_gate.weight"),
                                     N("ffn_up.weight"), N("ffn_down.weight")};
    if (gpt2) clip = {N("attn_output.weight"), N("ffn_up.weight"), N("ffn_down.weight")};
    for (const std::string& name : clip) {
      if (!block.Has(name) || !block.Quantized(name) || block.Encoded(name) || !input_of.count(name)) continue;
      const FormatInfo& fmt = block.Format(name);
      if (IsFloatFormat(fmt)) continue;
      const CapturedInput& in = captured[input_of[name]];
      const std::vector<float> x = Subsample(in.rows, in.n, options_.clip_tokens);
      const int64_t rows = block.Shape(name)[0];
      const AwqClipResult r =
          AwqClip(fmt, block.Weight(name).data(), rows, in.n, x.data(), int64_t(x.size()) / in.n, options_,
                  block.pool());
      const double norm = r.norm > 0 ? r.norm : 1.0;
      block.Note(fmt::format("awq {} clip: {}/{} units clamped, loss {:.3e} -> {:.3e}", name, r.clipped, r.units,
                             r.loss_before / norm, r.loss_after / norm));
    }
  }

 private:
  // Position of a product in the block's forward order.
  static int Order(const std::string& name) {
    static const char* const kOrder[] = {"attn_qkv", "attn_q.", "attn_k.", "attn_v.", "attn_output",
                                         "ffn_gate", "ffn_up",  "ffn_down"};
    for (int i = 0; i < 8; ++i)
      if (name.find(kOrder[i]) != std::string::npos) return i;
    return 8;
  }

  static std::vector<ScalingGroup> Groups(BlockContext& block) {
    const ModelConfig& c = block.config();
    const int l = block.layer();
    auto N = [l](const char* s) { return fmt::format("blk.{}.{}", l, s); };
    std::vector<ScalingGroup> groups;
    if (c.arch == Arch::kGpt2) {
      groups.push_back({"ln_1->qkv", N("attn_qkv.weight"), {N("attn_qkv.weight")},
                        {N("attn_norm.weight"), N("attn_norm.bias")}, "", 0, ""});
      groups.push_back({"v->o", N("attn_output.weight"), {N("attn_output.weight")}, {}, N("attn_qkv.weight"),
                        2 * int64_t(c.dim), N("attn_qkv.bias")});
      groups.push_back({"ln_2->up", N("ffn_up.weight"), {N("ffn_up.weight")},
                        {N("ffn_norm.weight"), N("ffn_norm.bias")}, "", 0, ""});
      return groups;
    }
    groups.push_back({"attn_norm->q,k,v", N("attn_q.weight"),
                      {N("attn_q.weight"), N("attn_k.weight"), N("attn_v.weight")}, {N("attn_norm.weight")}, "", 0,
                      ""});
    // v -> o needs o's input channels to be v's rows one to one (no GQA).
    if (block.Shape(N("attn_v.weight"))[0] == block.Shape(N("attn_output.weight")).back())
      groups.push_back({"v->o", N("attn_output.weight"), {N("attn_output.weight")}, {}, N("attn_v.weight"), 0,
                        block.Has(N("attn_v.bias")) ? N("attn_v.bias") : ""});
    groups.push_back({"ffn_norm->gate,up", N("ffn_gate.weight"), {N("ffn_gate.weight"), N("ffn_up.weight")},
                      {N("ffn_norm.weight")}, "", 0, ""});
    groups.push_back({"up->down", N("ffn_down.weight"), {N("ffn_down.weight")}, {}, N("ffn_up.weight"), 0,
                      block.Has(N("ffn_up.bias")) ? N("ffn_up.bias") : ""});
    return groups;
  }

  void ApplyGroup(BlockContext& block, const ScalingGroup& g, CapturedInput& in) {
    const int l = block.layer();
    const int64_t n = in.n;
    std::vector<std::string> touched = g.linears;
    touched.insert(touched.end(), g.prev_vectors.begin(), g.prev_vectors.end());
    if (!g.prev_rows.empty()) touched.push_back(g.prev_rows);
    if (!g.prev_bias.empty()) touched.push_back(g.prev_bias);
    std::vector<AwqLinear> linears;
    for (const std::string& name : touched)
      if (!block.Has(name) || block.Encoded(name)) return;  // an earlier stage fixed it: leave the group alone
    for (const std::string& name : g.linears)
      if (block.Quantized(name)) linears.push_back({block.Weight(name).data(), block.Shape(name)[0], &block.Format(name)});
    if (linears.empty() || in.rows_seen == 0) return;

    std::vector<float> x_mean(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) x_mean[size_t(j)] = float(in.abs_sum[size_t(j)] / double(in.rows_seen));
    const AwqSearchResult r =
        AwqSearchScales(linears, in.rows.data(), in.kept(), n, x_mean, options_, block.pool());
    const double norm = r.norm > 0 ? r.norm : 1.0;
    const bool identity = std::all_of(r.scales.begin(), r.scales.end(), [](float s) { return s == 1.0f; });
    std::string line = fmt::format("awq blk.{} {}: alpha {:.2f} loss {:.3e} -> {:.3e}", l, g.label, r.alpha,
                                   r.loss_rtn / norm, r.loss / norm);
    if (r.loss_rtn > 0) line += fmt::format(" ({:+.0f}%)", 100.0 * (r.loss / r.loss_rtn - 1.0));
    if (identity) {
      block.Note(line);
      return;
    }
    // Fold into copies first: nothing changes unless every value stays finite.
    const float* s = r.scales.data();
    std::map<std::string, std::vector<float>> next;
    for (const std::string& name : g.linears) {
      std::vector<float> w = block.Weight(name);
      ScaleColumns(w.data(), block.Shape(name)[0], n, s);
      next[name] = std::move(w);
    }
    for (const std::string& name : g.prev_vectors) {
      std::vector<float> v = block.Weight(name);
      DivideBy(v.data(), n, s);
      next[name] = std::move(v);
    }
    if (!g.prev_rows.empty()) {
      std::vector<float> w = block.Weight(g.prev_rows);
      const int64_t cols = block.Shape(g.prev_rows).back();
      DivideRows(w.data() + g.prev_row0 * cols, n, cols, s);
      next[g.prev_rows] = std::move(w);
      if (!g.prev_bias.empty()) {
        std::vector<float> b = block.Weight(g.prev_bias);
        DivideBy(b.data() + g.prev_row0, n, s);
        next[g.prev_bias] = std::move(b);
      }
    }
    for (const auto& entry : next)
      if (!AllFinite(entry.second)) {
        block.Note(line + " (not applied: the folded weights would not be finite)");
        return;
      }
    for (auto& entry : next) block.Weight(entry.first) = std::move(entry.second);
    DivideColumns(in.rows, n, s);  // the linears now see x / s
    for (int64_t j = 0; j < n; ++j) in.abs_sum[size_t(j)] /= s[j];
    block.Note(line);
  }

  AwqOptions options_;
};

}  // namespace

std::unique_ptr<BlockStage> MakeAwqStage(const AwqOptions& options) { return std::make_unique<AwqStage>(options); }

}  // namespace lowbit
