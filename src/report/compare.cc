// The `lowbit compare` driver (see compare.h): quantize each variant, measure
// it on the source's KLD base chunks and in a short llama-bench run.
#include "report/compare.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <memory>

#include "calib/dataset.h"
#include "calib/stats.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "core/progress.h"
#include "eval/bench.h"
#include "eval/chunks.h"
#include "eval/kld.h"
#include "model/model.h"
#include "quant/importance.h"
#include "quant/method.h"
#include "quant/pipeline.h"

namespace lowbit::report {

namespace fs = std::filesystem;

namespace {

constexpr int kDefaultCtx = 256;
// The read-bandwidth probe behind bench's roofline is not reported here;
// 16 MiB once keeps it to milliseconds.
constexpr size_t kProbeBytes = size_t(16) << 20;

void Measure(const Model& model, const std::string& base, const CompareOptions& o, VariantResult* row) {
  SessionOptions so;
  so.threads = o.threads;
  so.max_context = KldBaseContext(base);
  {
    Session session(model, so);
    const KldStats s = CompareKld(session, base, o.progress);
    row->ppl = s.ppl;
    row->kld_mean = s.kld_mean;
    row->kld_stderr = s.kld_stderr;
    row->kld_p99 = s.kld_p99;
    row->kld_max = s.kld_max;
    row->top1 = s.top1_agreement;
  }
  if (o.bench_prompt > 0 || o.bench_gen > 0) {
    BenchOptions bo;
    bo.prompt_tokens = o.bench_prompt;
    bo.gen_tokens = o.bench_gen;
    bo.repetitions = std::max(1, o.bench_reps);
    bo.threads = o.threads;
    bo.bandwidth_bytes = kProbeBytes;
    bo.bandwidth_runs = 1;
    const BenchResult b = RunBench(model, bo);
    row->pp_tokens_per_s = b.pp_tokens_per_s.mean;
    row->tg_tokens_per_s = b.tg_tokens_per_s.mean;
  }
}

std::string VariantName(const std::string& format, const std::string& method, size_t methods) {
  return methods > 1 ? fmt::format("{}+{}", format, method) : format;
}

}  // namespace

CompareResult RunCompare(const CompareOptions& o) {
  if (o.formats.empty()) Fail("compare: no formats given (--formats)");
  if (o.methods.empty()) Fail("compare: no methods given (--methods)");
  for (const std::string& m : o.methods) MakeQuantMethod(m);  // unknown method: fail before any work
  const bool need_imatrix = std::find(o.methods.begin(), o.methods.end(), "imatrix") != o.methods.end();

  const std::unique_ptr<Model> model = LoadModel(o.model, o.tokenizer);
  // Unknown formats and presets fail here, before the first quantization.
  for (const std::string& f : o.formats) {
    RecipeOptions ro;
    ro.format = f;
    ro.has_imatrix = need_imatrix;
    PlanModelRecipe(*model, ro);
  }
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) Fail("{}: cannot create the report folder: {}", o.out_dir, ec.message());

  CompareResult r;
  r.model = o.model;
  r.data = o.data;
  const int model_ctx = model->config.context_length;
  r.ctx = o.ctx > 0 ? o.ctx : (model_ctx > 0 ? std::min(kDefaultCtx, model_ctx) : kDefaultCtx);
  std::string text = ReadFileToString(o.data);
  if (!text.empty() && text.back() == '\n') text.pop_back();
  const ChunkPlan plan = PlanChunks(*model->tokenizer, text, Protocol::kLlamaCpp, r.ctx, o.chunks, o.data);
  r.chunks = plan.chunks;
  r.tokens_scored = int64_t(plan.chunks) * plan.scored_per_chunk;
  r.bench_prompt = o.bench_prompt, r.bench_gen = o.bench_gen, r.bench_reps = std::max(1, o.bench_reps);
  r.threads = o.threads;

  r.tensor = o.tensor.empty() ? "blk.0.attn_q.weight" : o.tensor;
  const TensorView* chosen = model->Find(r.tensor);
  if (chosen == nullptr) Fail("{}: no tensor '{}' to draw (--tensor)", o.model, r.tensor);
  r.tensor_original = ToF32(*chosen);

  // Base log-probs of the source, once.
  const std::string base = (fs::path(o.out_dir) / "kld-base.bin").string();
  {
    SessionOptions so;
    so.threads = o.threads;
    so.max_context = plan.ctx;
    Session session(*model, so);
    SaveKldBase(session, plan, base, o.progress);
  }

  // Importance for --methods imatrix: a given file, or collected once on the same text.
  std::unique_ptr<ImportanceSource> importance;
  if (need_imatrix) {
    r.imatrix = o.imatrix;
    if (r.imatrix.empty()) {
      r.imatrix = (fs::path(o.out_dir) / "imatrix.gguf").string();
      const auto samples = SampleCalibration(*model->tokenizer, text, o.calib_samples, r.ctx,
                                             kDefaultCalibrationSeed, o.data);
      SessionOptions so;
      so.threads = o.threads;
      so.max_context = r.ctx;
      Session session(*model, so);
      ActivationStats stats;
      stats.info().datasets = {o.data};
      stats.info().chunk_count = o.calib_samples;
      stats.info().chunk_size = r.ctx;
      stats.info().seed = kDefaultCalibrationSeed;
      Progress bar("calibrate", o.calib_samples, o.progress);
      CollectActivationStats(session, samples, &stats, [&](int i) { bar.Update(i + 1); });
      bar.Finish();
      stats.Save(r.imatrix);
    }
    importance = LoadImportance(r.imatrix);
  }

  // The source row.
  {
    VariantResult row;
    row.source = true;
    row.method = "-";
    uint64_t bytes = 0;
    int64_t params = 0;
    std::string type;
    for (const TensorView& t : model->tensors()) {
      bytes += t.bytes;
      params += t.NumElements();
      if (type.empty() && t.shape.size() == 2) type = std::string(DTypeName(t.type));
    }
    row.format = type;
    row.name = fmt::format("{} (source)", type);
    row.file = o.model;
    row.file_bytes = fs::is_regular_file(o.model) ? fs::file_size(o.model) : bytes;
    row.bits_per_weight = params > 0 ? 8.0 * double(bytes) / double(params) : 0;
    row.peak_rss_bytes = PeakRssBytes();
    Measure(*model, base, o, &row);
    row.histogram_values = r.tensor_original;
    r.ppl_source = row.ppl;
    r.rows.push_back(std::move(row));
  }

  for (const std::string& format : o.formats) {
    for (const std::string& method : o.methods) {
      VariantResult row;
      row.format = format;
      row.method = method;
      row.name = VariantName(format, method, o.methods.size());
      QuantizeOptions q;
      q.output = (fs::path(o.out_dir) / fmt::format("{}-{}.gguf", format, method)).string();
      q.method = method;
      q.recipe.format = format;
      q.threads = o.threads;
      q.progress = o.progress;
      const QuantizeReport qr = QuantizeModel(*model, q, method == "imatrix" ? importance.get() : nullptr);
      row.file = qr.output;
      row.file_bytes = qr.file_bytes;
      row.bits_per_weight = qr.bits_per_weight;
      row.quantize_seconds = qr.seconds;
      row.peak_rss_bytes = qr.peak_rss_bytes;
      row.fallbacks = qr.fallbacks;
      for (const TensorReport& t : qr.tensors)
        if (t.quantized) row.tensors.push_back({t.name, t.format, t.rel_rmse});
      {
        const std::unique_ptr<Model> qm = LoadModel(qr.output);
        Measure(*qm, base, o, &row);
        row.histogram_values = ToF32(qm->Get(r.tensor));
      }
      if (!o.keep_models) {
        fs::remove(qr.output, ec);
        row.file.clear();
      }
      r.rows.push_back(std::move(row));
    }
  }
  for (VariantResult& row : r.rows) {
    row.ppl_delta = row.ppl - r.ppl_source;
    row.ppl_delta_pct = r.ppl_source > 0 ? 100.0 * row.ppl_delta / r.ppl_source : 0;
  }
  if (!o.keep_models) fs::remove(base, ec);
  return r;
}

}  // namespace lowbit::report
