// GPTQ as a block stage (quant/layerwise.h): per true-sequential group, the
// block's resumed forward (BlockContext::ForwardGroup) gives the group's
// shared input, its Hessian is accumulated and factored once, then every
// quantized member goes through GptqQuantize (quant/gptq.h) into its planned
// format. Later groups see the earlier groups' quantized weights, as GPTQ's
// true-sequential mode does.
//
// H = 2/N sum_t x_t x_t^T is accumulated by cblas_ssyrk over batches of
// kBatchRows input rows into a float (n, n) upper triangle, each batch then
// added into a double accumulator: float keeps the O(N n^2) product at
// single-precision BLAS speed, double keeps the sum over many batches exact
// enough (a batch of 2048 rows of O(1) values sums to ~1e3 with float's 24
// bits; the double sum of 64 such batches loses nothing more).
#include <cblas.h>

#include <chrono>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"
#include "quant/gptq.h"
#include "quant/layerwise.h"

namespace lowbit {

namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

constexpr int64_t kBatchRows = 2048;

bool IsFloatFormat(const FormatInfo& f) { return f.name == "f32" || f.name == "f16" || f.name == "bf16"; }

// H (n, n) accumulated from row-major input rows.
class HessianAccumulator {
 public:
  explicit HessianAccumulator(int64_t n) : n_(n), batch_(size_t(kBatchRows * n)), h_f_(size_t(n * n)),
                                           h_(size_t(n * n), 0.0) {}

  void Add(const float* x, int64_t rows) {
    while (rows > 0) {
      const int64_t take = std::min(rows, kBatchRows - batch_rows_);
      std::copy(x, x + take * n_, batch_.begin() + batch_rows_ * n_);
      batch_rows_ += take;
      x += take * n_;
      rows -= take;
      if (batch_rows_ == kBatchRows) Flush();
    }
  }

  // 2/N X^T X, both triangles filled.
  std::vector<double> Finish() {
    Flush();
    const double scale = total_ > 0 ? 2.0 / double(total_) : 0.0;
    for (int64_t i = 0; i < n_; ++i)
      for (int64_t j = i; j < n_; ++j) {
        const double v = h_[size_t(i * n_ + j)] * scale;
        h_[size_t(i * n_ + j)] = v;
        h_[size_t(j * n_ + i)] = v;
      }
    batch_.clear();
    batch_.shrink_to_fit();
    h_f_.clear();
    h_f_.shrink_to_fit();
    return std::move(h_);
  }

  int64_t rows() const { return total_ + batch_rows_; }

 private:
  void Flush() {
    if (batch_rows_ == 0) return;
    // Upper triangle of X^T X for X (batch_rows, n) row-major.
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, int(n_), int(batch_rows_), 1.0f, batch_.data(), int(n_),
                0.0f, h_f_.data(), int(n_));
    for (int64_t i = 0; i < n_; ++i) {
      const float* src = &h_f_[size_t(i * n_)];
      double* dst = &h_[size_t(i * n_)];
      for (int64_t j = i; j < n_; ++j) dst[j] += double(src[j]);
    }
    total_ += batch_rows_;
    batch_rows_ = 0;
  }

  int64_t n_;
  std::vector<float> batch_;  // (kBatchRows, n)
  int64_t batch_rows_ = 0;
  std::vector<float> h_f_;    // (n, n) one batch, upper triangle
  std::vector<double> h_;     // (n, n) the sum
  int64_t total_ = 0;
};

class GptqStage final : public BlockStage {
 public:
  GptqStage(const GptqOptions& options, LayerwiseTimings* timings) : options_(options), timings_(timings) {}
  std::string_view name() const override { return "gptq"; }

  void ProcessBlock(BlockContext& block) override {
    LayerwiseTimings local;
    LayerwiseTimings& tm = timings_ != nullptr ? *timings_ : local;
    const std::vector<std::vector<std::string>>& groups = block.groups();
    for (size_t g = 0; g < groups.size(); ++g) {
      const std::vector<std::string>& group = groups[g];
      std::vector<std::string> members;
      for (const std::string& name : group)
        if (block.Has(name) && block.Quantized(name) && !block.Encoded(name) && !IsFloatFormat(block.Format(name)))
          members.push_back(name);
      if (members.empty()) continue;
      // Every member of a true-sequential group reads the same input: one
      // Hessian, accumulated on the first member's product.
      const std::string& first = members.front();
      const int64_t n = block.Shape(first).back();
      HessianAccumulator acc(n);
      double hessian_s = 0;
      const double forward_before = tm.stage_forward_s;
      // The block resumes from where the previous group's forward stopped
      // (that group is encoded by now), so a block costs about one forward.
      block.ForwardGroup(g, [&](const std::string& name, const float* x, int64_t rows) {
        if (name != first) return;
        const auto t0 = Clock::now();
        acc.Add(x, rows);
        hessian_s += Since(t0);
      });
      tm.gptq_forward_s += tm.stage_forward_s - forward_before;
      auto t0 = Clock::now();
      const int64_t rows_seen = acc.rows();
      std::vector<double> hessian = acc.Finish();
      hessian_s += Since(t0);
      tm.hessian_s += hessian_s;
      // One dampened inverse factor for the group's shared Hessian.
      GptqHessianFactor factor;
      try {
        factor = GptqFactorHessian(std::move(hessian), n, options_, &block.pool());
      } catch (const Error& e) {
        Fail("gptq: tensor '{}' ({}): {}", first, block.Format(first).name, e.what());
      }
      tm.cholesky_s += factor.seconds;
      tm.gptq_factorizations += 1;
      for (size_t i = 0; i < members.size(); ++i) {
        const std::string& name = members[i];
        const FormatInfo& format = block.Format(name);
        const std::vector<int64_t>& shape = block.Shape(name);
        const int64_t rows = shape.front(), cols = shape.back();
        LOWBIT_CHECK(cols == n);
        std::vector<float> w = block.Weight(name);  // GPTQ updates its copy; Weight stays the reference W
        std::vector<uint8_t> out(size_t(rows) * format.RowBytes(cols));
        GptqStats stats;
        try {
          stats = GptqQuantize(format, w.data(), rows, cols, factor, options_, out.data(), &block.pool());
        } catch (const Error& e) {
          Fail("gptq: tensor '{}' ({}): {}", name, format.name, e.what());
        }
        tm.sweep_s += stats.seconds_sweep;
        tm.gptq_damp_retries += stats.damp_retries;
        tm.gptq_dead_columns += stats.dead_columns;
        tm.gptq_linears += 1;
        block.SetEncoded(name, std::move(out));
        block.Note(fmt::format("gptq {} -> {}: {} rows of input, loss {:.4g}, damp {:.3g}{}{}, {}, sweep {:.3f} s",
                               name, format.name, rows_seen, stats.loss, stats.damp,
                               stats.damp_retries ? fmt::format(" (raised {}x)", stats.damp_retries) : "",
                               stats.dead_columns ? fmt::format(", {} dead columns", stats.dead_columns) : "",
                               i == 0 ? fmt::format("cholesky {:.3f} s", factor.seconds)
                                      : fmt::format("cholesky shared with {}", first),
                               stats.seconds_sweep));
      }
    }
  }

 private:
  GptqOptions options_;
  LayerwiseTimings* timings_;
};

}  // namespace

std::unique_ptr<BlockStage> MakeGptqStage(const GptqOptions& options, LayerwiseTimings* timings) {
  return std::make_unique<GptqStage>(options, timings);
}

}  // namespace lowbit
