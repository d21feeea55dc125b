// The `lowbit compare` driver (see compare.h): quantize each variant, measure
// it on the source's KLD base chunks and in a short llama-bench run.
#include "report/compare.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
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
#include "quant/layerwise.h"
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

// What a variant's quantization reports back.
void FillFromReportJson(const nlohmann::json& j, VariantResult* row) {
  const nlohmann::json& tot = j.at("totals");
  row->file = j.at("output").get<std::string>();
  row->file_bytes = tot.at("file_bytes").get<uint64_t>();
  row->bits_per_weight = tot.at("bits_per_weight").get<double>();
  row->quantize_seconds = tot.at("seconds").get<double>();
  row->peak_rss_bytes = tot.at("peak_rss_bytes").get<uint64_t>();
  row->fallbacks = tot.at("fallbacks").get<int>();
  for (const nlohmann::json& t : j.at("tensors")) {
    if (!t.at("quantized").get<bool>()) continue;
    VariantTensorError e{t.at("name").get<std::string>(), t.at("format").get<std::string>(),
                         t.at("rel_rmse").get<double>()};
    if (t.contains("recon_error") && t["recon_error"].is_number()) e.recon_error = t["recon_error"].get<double>();
    row->tensors.push_back(std::move(e));
  }
  if (j.contains("gptq")) {
    const nlohmann::json& g = j["gptq"];
    row->gptq_hessian_s = g.at("hessian_s").get<double>();
    row->gptq_cholesky_s = g.at("cholesky_s").get<double>();
    row->gptq_sweep_s = g.at("sweep_s").get<double>();
    row->gptq_forward_s = g.at("forward_s").get<double>();
  }
}

// Runs `binary args...` with stdout to a pipe and stderr to `err_path`;
// returns stdout and sets *peak_rss to the child's own peak RSS (wait4).
std::string RunChild(const std::string& binary, const std::vector<std::string>& args, const std::string& err_path,
                     uint64_t* peak_rss) {
  int fds[2];
  if (pipe(fds) != 0) Fail("compare: pipe() failed");
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(binary.c_str()));
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) Fail("compare: fork() failed");
  if (pid == 0) {
    const int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fds[1], 1);
    if (err >= 0) dup2(err, 2);
    close(fds[0]);
    close(fds[1]);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
    if (n > 0) out.append(buf, size_t(n));
  close(fds[0]);
  int status = 0;
  struct rusage usage {};
  while (wait4(pid, &status, 0, &usage) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string err = ReadFileToString(err_path);
    while (!err.empty() && err.back() == '\n') err.pop_back();
    Fail("compare: `{} {}` failed ({}): {}", binary, fmt::join(args, " "),
         WIFEXITED(status) ? fmt::format("exit {}", WEXITSTATUS(status)) : fmt::format("signal {}", WTERMSIG(status)),
         err);
  }
  *peak_rss = uint64_t(usage.ru_maxrss) * 1024;  // kilobytes on Linux
  return out;
}

// The part of `text` after the evaluated chunks: their share of the tokens,
// as a share of the bytes plus 10%, cut at the next line end.
size_t HeldOutStart(const std::string& text, const ChunkPlan& plan) {
  if (plan.tokens.empty()) return text.size();
  const double share = double(int64_t(plan.chunks) * plan.ctx) / double(plan.tokens.size());
  const size_t at = size_t(std::ceil(std::min(1.0, share * 1.1) * double(text.size())));
  if (at >= text.size()) return text.size();
  const size_t nl = text.find('\n', at);
  return nl == std::string::npos ? text.size() : nl + 1;
}

}  // namespace

CompareResult RunCompare(const CompareOptions& o) {
  if (o.formats.empty()) Fail("compare: no formats given (--formats)");
  if (o.methods.empty()) Fail("compare: no methods given (--methods)");
  // Unknown methods fail before any work.
  bool need_imatrix = false, need_calibration = false;
  for (const std::string& m : o.methods) {
    const MethodSpec spec = ParseMethodSpec(m);
    MakeQuantMethod(spec.base);
    need_imatrix = need_imatrix || spec.base == "imatrix";
    need_calibration = need_calibration || spec.calibrated();
  }

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

  // Calibration text that the evaluation never sees.
  std::string calib_text;
  const int calib_seq_len = o.calib_seq_len > 0 ? o.calib_seq_len : r.ctx;
  if (need_calibration || (need_imatrix && o.imatrix.empty())) {
    if (!o.calib_data.empty()) {
      calib_text = ReadFileToString(o.calib_data);
      if (!calib_text.empty() && calib_text.back() == '\n') calib_text.pop_back();
      r.calibration = o.calib_data;
    } else {
      const size_t start = HeldOutStart(text, plan);
      calib_text = text.substr(start);
      if (calib_text.empty())
        Fail("compare: {} has no text left after the {} evaluated chunks to calibrate on: pass --calib-data FILE "
             "or fewer --chunks",
             o.data, plan.chunks);
      r.calibration = fmt::format("{} from byte {} (after the {} evaluated chunks)", o.data, start, plan.chunks);
    }
    // Too short for one window: fail before the first variant.
    SampleCalibration(*model->tokenizer, calib_text, 1, calib_seq_len, kDefaultCalibrationSeed, r.calibration);
  }
  const std::string calib_file = (fs::path(o.out_dir) / "calibration.txt").string();
  if (!o.quantize_binary.empty() && need_calibration) {
    std::FILE* f = std::fopen(calib_file.c_str(), "wb");
    if (f == nullptr || std::fwrite(calib_text.data(), 1, calib_text.size(), f) != calib_text.size())
      Fail("{}: cannot write the calibration text", calib_file);
    std::fclose(f);
  }

  // Importance for imatrix methods: a given file, or collected once on the calibration text.
  std::unique_ptr<ImportanceSource> importance;
  if (need_imatrix) {
    r.imatrix = o.imatrix;
    if (r.imatrix.empty()) {
      r.imatrix = (fs::path(o.out_dir) / "imatrix.gguf").string();
      const auto samples = SampleCalibration(*model->tokenizer, calib_text, o.calib_samples, calib_seq_len,
                                             kDefaultCalibrationSeed, r.calibration);
      SessionOptions so;
      so.threads = o.threads;
      so.max_context = calib_seq_len;
      Session session(*model, so);
      ActivationStats stats;
      stats.info().datasets = {r.calibration};
      stats.info().chunk_count = o.calib_samples;
      stats.info().chunk_size = calib_seq_len;
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
      const MethodSpec spec = ParseMethodSpec(method);
      const bool uses_imatrix = spec.base == "imatrix";
      const std::string output = (fs::path(o.out_dir) / fmt::format("{}-{}.gguf", format, method)).string();
      if (!o.quantize_binary.empty()) {
        // A child process per variant: its peak RSS is this variant's alone.
        std::vector<std::string> args = {"quantize", o.model, "-o", output, "-f", format, "-m", method, "--json"};
        if (!o.tokenizer.empty()) args.insert(args.end(), {"--tokenizer", o.tokenizer});
        if (o.threads > 0) args.insert(args.end(), {"--threads", std::to_string(o.threads)});
        if (uses_imatrix) args.insert(args.end(), {"--imatrix", r.imatrix});
        if (spec.calibrated())
          args.insert(args.end(), {"--data", calib_file, "--samples", std::to_string(o.calib_samples), "--seq-len",
                                   std::to_string(calib_seq_len)});
        if (o.progress) fmt::print(stderr, "quantize {} ({})\n", row.name, fmt::join(args, " "));
        uint64_t peak = 0;
        const std::string json =
            RunChild(o.quantize_binary, args, (fs::path(o.out_dir) / "quantize.err").string(), &peak);
        try {
          FillFromReportJson(nlohmann::json::parse(json), &row);
        } catch (const std::exception& e) {
          Fail("compare: cannot read the report of `{} quantize` for {}: {}", o.quantize_binary, row.name, e.what());
        }
        row.peak_rss_bytes = peak;
        row.rss_isolated = true;
      } else {
        QuantizeOptions q;
        q.output = output;
        q.method = method;
        q.recipe.format = format;
        q.threads = o.threads;
        q.progress = o.progress;
        if (spec.calibrated()) {
          q.calib_text = calib_text;
          q.calib_source = r.calibration;
          q.calib_samples = o.calib_samples;
          q.calib_seq_len = calib_seq_len;
        }
        const QuantizeReport qr = QuantizeModel(*model, q, uses_imatrix ? importance.get() : nullptr);
        FillFromReportJson(nlohmann::json::parse(qr.ToJson()), &row);
      }
      {
        const std::unique_ptr<Model> qm = LoadModel(row.file);
        Measure(*qm, base, o, &row);
        row.histogram_values = ToF32(qm->Get(r.tensor));
      }
      if (!o.keep_models) {
        fs::remove(row.file, ec);
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
  fs::remove(calib_file, ec);
  fs::remove(fs::path(o.out_dir) / "quantize.err", ec);
  return r;
}

}  // namespace lowbit::report
