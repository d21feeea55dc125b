// lowbit quantize: plan the per-tensor recipe, then stream tensors from the
// source model through a QuantMethod into a GGUF file, one tensor at a time.
#include "quant/pipeline.h"

#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "calib/dataset.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "io/gguf_writer.h"
#include "quant/gguf_metadata.h"
#include "quant/method.h"

namespace lowbit {

namespace {

// llama.cpp's GPT-2 loader requires output.weight even when the head is tied
// (convert_hf_to_gguf.py writes the embedding twice), so a file written from a
// tied GPT-2 source gets output.weight as a copy of token_embd.weight.
bool NeedsHeadCopy(const Model& model) {
  return model.config.arch == Arch::kGpt2 && model.Find("output.weight") == nullptr &&
         model.Find("token_embd.weight") != nullptr;
}

// The source tensor a planned tensor of the output file reads.
const TensorView& FileTensorSource(const Model& model, const std::string& name) {
  if (name == "output.weight" && NeedsHeadCopy(model)) return model.Get("token_embd.weight");
  return model.Get(name);
}

std::vector<SourceTensor> SourceTensors(const Model& model, bool file_tensors) {
  std::vector<SourceTensor> out;
  for (const TensorView& v : model.tensors()) out.push_back({v.name, v.shape, &GetFormat(v.type)});
  if (file_tensors && NeedsHeadCopy(model)) {
    const TensorView& e = model.Get("token_embd.weight");
    out.push_back({"output.weight", e.shape, &GetFormat(e.type)});
  }
  return out;
}

bool IsQk(const std::string& name) {
  return name.ends_with("attn_q.weight") || name.ends_with("attn_k.weight");
}

// Heads of attn_q / attn_k, checked against the rows.
int64_t QkHeads(const Model& model, const std::string& name, int64_t rows) {
  const int64_t heads = name.ends_with("attn_q.weight") ? model.config.n_heads : model.config.n_kv_heads;
  if (rows != heads * model.config.head_dim)
    Fail("{}: tensor '{}' has {} rows, expected {} heads x {}", model.path, name, rows, heads, model.config.head_dim);
  return heads;
}

// PermuteRowsForGguf on encoded rows: every format stores a row in
// RowBytes(n) bytes of its own (per-tensor formats repeat their scale in
// every row), and every encoder here is row-independent, so permuting encoded
// rows equals encoding permuted rows.
void PermuteByteRowsForGguf(uint8_t* rows, int64_t n_heads, int64_t head_dim, size_t row_bytes) {
  std::vector<uint8_t> head(size_t(head_dim) * row_bytes);
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    uint8_t* base = rows + size_t(h * head_dim) * row_bytes;
    std::memcpy(head.data(), base, head.size());
    for (int64_t i = 0; i < half; ++i)
      for (int64_t j = 0; j < 2; ++j)
        std::memcpy(base + size_t(2 * i + j) * row_bytes, head.data() + size_t(j * half + i) * row_bytes, row_bytes);
  }
}

// A tensor copied as it is still has to decode to finite values.
void CheckFinite(const TensorView& view, const std::string& name) {
  const int64_t rows = view.Rows(), n = view.RowLength();
  std::vector<float> row(static_cast<size_t>(n));
  for (int64_t r = 0; r < rows; ++r) {
    DequantizeRows(view, r, 1, row.data());
    for (int64_t i = 0; i < n; ++i)
      if (!std::isfinite(row[size_t(i)]))
        Fail("quantize: tensor '{}' decodes to a non-finite value ({}) at row {}, column {}; nothing was written",
             name, row[size_t(i)], r, i);
  }
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + ")";
}

}  // namespace

uint64_t PeakRssBytes() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return uint64_t(usage.ru_maxrss) * 1024;  // Linux reports kilobytes
}

Recipe PlanModelRecipe(const Model& model, const RecipeOptions& options, bool file_tensors) {
  RecipeModelInfo info;
  info.n_layers = model.config.n_layers;
  info.n_heads = model.config.n_heads;
  info.n_kv_heads = model.config.n_kv_heads;
  return PlanRecipe(SourceTensors(model, file_tensors), info, options);
}

QuantizeReport QuantizeModel(const Model& model, const QuantizeOptions& options, const ImportanceSource* importance) {
  const auto start = std::chrono::steady_clock::now();
  if (options.output.empty()) Fail("quantize: no output file given (-o OUT.gguf)");
  ThreadPool pool(options.threads);
  const MethodSpec spec = ParseMethodSpec(options.method);
  const std::unique_ptr<QuantMethod> method = MakeQuantMethod(spec.base, &pool);
  const bool layerwise = spec.calibrated() || options.force_layerwise;
  const std::string method_name = spec.calibrated() ? spec.name : std::string(method->name());
  if (method->needs_importance() && importance == nullptr)
    Fail("--method {} needs activation statistics: pass --imatrix STATS (from lowbit calibrate)", method_name);
  RecipeOptions ro = options.recipe;
  ro.has_imatrix = importance != nullptr;
  const Recipe recipe = PlanModelRecipe(model, ro, /*file_tensors=*/true);

  // Check every input before the first byte is written.
  CheckActivationOptions(options.activations, model, recipe);
  std::vector<const float*> imp(recipe.tensors.size(), nullptr);
  for (size_t k = 0; k < recipe.tensors.size(); ++k) {
    const TensorPlan& t = recipe.tensors[k];
    if (!t.weight || importance == nullptr) continue;
    const std::vector<float>* v = importance->Find(t.name);
    if (v == nullptr) {
      if (t.name == "token_embd.weight") continue;  // an embedding lookup has no matmul input to measure
      if (method->needs_importance())
        Fail("{}: the activation statistics have no entry for tensor '{}' (needed by --method {})",
             importance->description(), t.name, method->name());
      continue;
    }
    if (int64_t(v->size()) != t.row_length())
      Fail("{}: statistics for '{}' have {} input channels, the tensor has rows of {}", importance->description(),
           t.name, v->size(), t.row_length());
    for (float x : *v)
      if (!std::isfinite(x) || x < 0)
        Fail("{}: statistics for '{}' hold a negative or non-finite value ({})", importance->description(), t.name,
             x);
    imp[k] = v->data();
  }

  // Calibration windows and the block-by-block engine for gptq/awq/smoothquant.
  QuantizeReport report;
  std::unique_ptr<LayerwiseQuantizer> engine;
  if (layerwise) {
    if (options.calib_text.empty())
      Fail("--method {} quantizes block by block on calibration text: pass --data FILE{}", method_name,
           options.calib_source.empty() ? "" : fmt::format(" ({} is empty)", options.calib_source));
    if (model.tokenizer == nullptr) Fail("{}: the model has no tokenizer to read the calibration text with", model.path);
    const int seq_len = options.calib_seq_len > 0 ? options.calib_seq_len : DefaultCalibrationSeqLen(model.config);
    if (model.config.context_length > 0 && seq_len > model.config.context_length)
      Fail("--seq-len {}: longer than the model's context ({} tokens)", seq_len, model.config.context_length);
    const std::string source = options.calib_source.empty() ? "calibration text" : options.calib_source;
    LayerwiseQuantizer::Args args;
    args.model = &model;
    args.recipe = &recipe;
    args.importance = imp;
    args.base = method.get();
    args.samples = SampleCalibration(*model.tokenizer, options.calib_text, options.calib_samples, seq_len,
                                     options.calib_seed, source);
    for (const std::string& stage : spec.stages) {
      if (stage == "gptq")
        args.stages.push_back(MakeGptqStage(options.gptq, &report.timings));
      else if (stage == "awq")
        args.stages.push_back(MakeAwqStage(options.awq));
      else if (stage == "smoothquant")
        args.stages.push_back(MakeSmoothQuantStage(options.smoothquant));
    }
    args.prune = &options.prune;
    args.pool = &pool;
    args.recon_rows = options.recon_rows;
    args.log = options.progress;
    args.timings = &report.timings;
    engine = std::make_unique<LayerwiseQuantizer>(std::move(args));
    report.calibrated = true;
    report.calibration = fmt::format("{} x {} tokens, seed {}, from {}", options.calib_samples, seq_len,
                                     options.calib_seed, source);
    report.stages = spec.stages;
    report.base_method = spec.base;
  }

  GgufWriter writer(options.output);
  const OutputMetadata meta = WriteModelMetadata(model, writer);
  if (recipe.ggml_only && (recipe.file_type != 0 || recipe.base->gguf_type == 0))
    writer.SetUint32("general.file_type", recipe.file_type);
  writer.SetUint32("general.quantization_version", 2);
  writer.SetString("lowbit.quantize.method", method_name);
  writer.SetString("lowbit.quantize.format", options.recipe.format);
  if (options.prune.kind != PruneSpec::Kind::kNone) writer.SetString("lowbit.quantize.prune", options.prune.ToString());
  if (importance != nullptr) writer.SetString("quantize.imatrix.file", importance->description());
  if (layerwise) {
    writer.SetString("lowbit.quantize.calibration", report.calibration);
    for (const std::string& stage : spec.stages) {
      if (stage == "gptq")
        writer.SetString("lowbit.quantize.gptq",
                         fmt::format("damp {}, batch {}, act_order {}, static_groups {}", options.gptq.damp_percent,
                                     options.gptq.batch, options.gptq.act_order, options.gptq.static_groups));
      else if (stage == "awq")
        writer.SetString("lowbit.quantize.awq", fmt::format("grid {}, duo_scaling {}, clip_search {}", options.awq.grid,
                                                            options.awq.duo_scaling, options.awq.clip_search));
      else if (stage == "smoothquant")
        writer.SetString("lowbit.quantize.smoothquant", fmt::format("alpha {}", options.smoothquant.alpha));
    }
  }
  for (const auto& [key, value] : options.metadata) writer.SetString(key, value);
  WriteActivationMetadata(options.activations, model, recipe, writer);
  for (const TensorPlan& t : recipe.tensors) writer.AddTensor(t.name, t.shape, *t.format);
  writer.WriteHeader();

  report.source = model.path;
  report.output = options.output;
  report.method = method_name;
  report.format = options.recipe.format;
  report.preset = recipe.preset ? std::string(recipe.preset->name) : "";
  report.file_type = recipe.file_type;
  report.prune = options.prune.ToString();
  report.fallbacks = recipe.fallbacks();

  int64_t total_elements = 0;
  for (const TensorPlan& t : recipe.tensors) total_elements += t.elements();
  Progress progress("quantize", total_elements, options.progress);
  int64_t done = 0, pruned_zeros = 0, pruned_weights = 0;
  std::vector<float> w, deq;
  std::vector<uint8_t> bytes;
  LayerwiseTensor lt;
  for (size_t k = 0; k < recipe.tensors.size(); ++k) {
    ThrowIfInterrupted();
    const TensorPlan& t = recipe.tensors[k];
    const TensorView& view = FileTensorSource(model, t.name);
    const int64_t rows = t.rows(), n = t.row_length();
    const bool permute = meta.permute_qk && IsQk(t.name);
    const bool prune = t.weight && options.prune.kind != PruneSpec::Kind::kNone;
    const bool encode = t.quantize || prune;  // through the method (pruned f32 -> f32 included)
    const bool from_engine = engine != nullptr && engine->Take(t.name, &lt);
    TensorReport tr;
    tr.name = t.name;
    tr.shape = t.shape;
    tr.source_type = std::string(t.source->name);
    tr.format = std::string(t.format->name);
    tr.quantized = encode;
    tr.rule = t.rule;
    tr.fallback = t.fallback;
    tr.bytes = writer.TensorBytes(k);
    report.largest_tensor_f32_bytes = std::max(report.largest_tensor_f32_bytes, uint64_t(t.elements()) * 4);

    if (!encode && !permute && !from_engine) {  // copied unchanged
      LOWBIT_CHECK(view.bytes == tr.bytes);
      CheckFinite(view, t.name);
      writer.WriteTensorData({static_cast<const uint8_t*>(view.data), view.bytes});
    } else {
      if (from_engine) {
        // The engine's bytes and the f32 they encode, in the runtime's row order.
        LOWBIT_CHECK(lt.bytes.size() == tr.bytes && lt.weights.size() == size_t(rows * n));
        w = std::move(lt.weights);
        bytes = std::move(lt.bytes);
        tr.recon_error = lt.recon_error;
        if (permute) {
          const int64_t heads = QkHeads(model, t.name, rows);
          PermuteRowsForGguf(w.data(), heads, model.config.head_dim, n);
          PermuteByteRowsForGguf(bytes.data(), heads, model.config.head_dim, t.format->RowBytes(n));
        }
        if (prune) {
          tr.sparsity = double(lt.zeros) / double(rows * n);
          pruned_zeros += lt.zeros;
          pruned_weights += rows * n;
        }
      } else {
        w.resize(size_t(rows * n));
        DequantizeRows(view, 0, rows, w.data());
        for (int64_t i = 0; i < rows * n; ++i)
          if (!std::isfinite(w[size_t(i)]))
            Fail("{}: tensor '{}' holds a non-finite weight ({}) at row {}, column {}", model.path, t.name,
                 w[size_t(i)], i / n, i % n);
        if (permute) PermuteRowsForGguf(w.data(), QkHeads(model, t.name, rows), model.config.head_dim, n);
        if (prune) {
          const int64_t zeros = Prune(options.prune, w.data(), rows, n);
          tr.sparsity = double(zeros) / double(rows * n);
          pruned_zeros += zeros;
          pruned_weights += rows * n;
        }
        bytes.resize(tr.bytes);
        LOWBIT_CHECK(bytes.size() == size_t(rows) * t.format->RowBytes(n));
        if (encode)
          method->QuantizeTensor(t.name, w.data(), rows, n, *t.format, imp[k], bytes.data());
        else
          t.format->quantize(w.data(), rows, n, bytes.data(), nullptr);  // re-encode a permuted kept tensor
      }
      // Check: the stored tensor decodes to finite values; measure its error.
      deq.resize(size_t(n));
      const size_t row_bytes = t.format->RowBytes(n);
      double err = 0, norm = 0;
      for (int64_t r = 0; r < rows; ++r) {
        t.format->dequantize(bytes.data() + size_t(r) * row_bytes, deq.data(), n);
        for (int64_t i = 0; i < n; ++i) {
          const float d = deq[size_t(i)];
          if (!std::isfinite(d))
            Fail("quantize: tensor '{}' in {} decodes to a non-finite value ({}) at row {}, column {}; "
                 "nothing was written",
                 t.name, t.format->name, d, r, i);
          const double e = double(d) - double(w[size_t(r * n + i)]);
          err += e * e;
          norm += double(w[size_t(r * n + i)]) * double(w[size_t(r * n + i)]);
        }
      }
      tr.rel_rmse = norm > 0 ? std::sqrt(err / norm) : std::sqrt(err);
      writer.WriteTensorData(bytes);
    }
    ReleaseFilePages(view.data, view.bytes);
    report.total_bytes += tr.bytes;
    report.parameters += t.elements();
    if (encode) {
      report.quantized_parameters += t.elements();
      report.quantized_bytes += tr.bytes;
    }
    report.tensors.push_back(std::move(tr));
    done += t.elements();
    progress.Update(done, t.name);
  }
  ThrowIfInterrupted();
  writer.Finish();
  progress.Finish();
  if (engine != nullptr) report.notes = engine->notes();

  std::error_code ec;
  report.file_bytes = uint64_t(std::filesystem::file_size(options.output, ec));
  report.bits_per_weight = report.parameters ? 8.0 * double(report.total_bytes) / double(report.parameters) : 0;
  report.quantized_bits_per_weight =
      report.quantized_parameters ? 8.0 * double(report.quantized_bytes) / double(report.quantized_parameters) : 0;
  report.pruned_sparsity = pruned_weights ? double(pruned_zeros) / double(pruned_weights) : 0;
  report.peak_rss_bytes = PeakRssBytes();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

std::string QuantizeReport::ToJson() const {
  nlohmann::ordered_json j;
  j["source"] = source;
  j["output"] = output;
  j["method"] = method;
  j["format"] = format;
  j["preset"] = preset;
  j["file_type"] = file_type;
  nlohmann::ordered_json ts = nlohmann::ordered_json::array();
  for (const TensorReport& t : tensors) {
    nlohmann::ordered_json x;
    x["name"] = t.name;
    x["shape"] = t.shape;
    x["source_type"] = t.source_type;
    x["format"] = t.format;
    x["quantized"] = t.quantized;
    x["bytes"] = t.bytes;
    x["rule"] = t.rule;
    x["fallback"] = t.fallback.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(t.fallback);
    x["rel_rmse"] = t.rel_rmse;
    if (prune != "none") x["sparsity"] = t.sparsity;
    if (calibrated)
      x["recon_error"] = t.recon_error >= 0 ? nlohmann::ordered_json(t.recon_error) : nlohmann::ordered_json(nullptr);
    ts.push_back(std::move(x));
  }
  j["tensors"] = std::move(ts);
  nlohmann::ordered_json tot;
  tot["tensor_bytes"] = total_bytes;
  tot["file_bytes"] = file_bytes;
  tot["parameters"] = parameters;
  tot["bits_per_weight"] = bits_per_weight;
  tot["quantized_parameters"] = quantized_parameters;
  tot["quantized_bits_per_weight"] = quantized_bits_per_weight;
  tot["fallbacks"] = fallbacks;
  tot["prune"] = prune;
  tot["pruned_sparsity"] = pruned_sparsity;
  tot["peak_rss_bytes"] = peak_rss_bytes;
  tot["largest_tensor_f32_bytes"] = largest_tensor_f32_bytes;
  tot["seconds"] = seconds;
  j["totals"] = std::move(tot);
  if (calibrated) {
    j["calibration"] = calibration;
    j["stages"] = stages;
    j["base_method"] = base_method;
    const LayerwiseTimings& tm = timings;
    nlohmann::ordered_json lw;
    lw["embed_s"] = tm.embed_s;
    lw["load_s"] = tm.load_s;
    lw["stages_s"] = tm.stages_s;
    lw["stage_forward_s"] = tm.stage_forward_s;
    lw["base_s"] = tm.base_s;
    lw["final_forward_s"] = tm.final_forward_s;
    lw["recon_s"] = tm.recon_s;
    j["layerwise"] = std::move(lw);
    if (std::find(stages.begin(), stages.end(), "gptq") != stages.end()) {
      nlohmann::ordered_json g;
      g["hessian_s"] = tm.hessian_s;
      g["cholesky_s"] = tm.cholesky_s;
      g["sweep_s"] = tm.sweep_s;
      g["forward_s"] = tm.gptq_forward_s;
      g["linears"] = tm.gptq_linears;
      g["factorizations"] = tm.gptq_factorizations;
      g["damp_retries"] = tm.gptq_damp_retries;
      g["dead_columns"] = tm.gptq_dead_columns;
      j["gptq"] = std::move(g);
    }
    j["notes"] = notes;
  }
  return j.dump(2);
}

std::string QuantizeReport::ToTable() const {
  std::string s = fmt::format("{:<32} {:<14} {:<10} {:>10} {:>9}{}  {}\n", "tensor", "shape", "format", "bytes",
                              "rel_rmse", calibrated ? fmt::format(" {:>11}", "recon_err") : "", "rule / fallback");
  for (const TensorReport& t : tensors)
    s += fmt::format("{:<32} {:<14} {:<10} {:>10} {:>9.5f}{}  {}{}\n", t.name, ShapeString(t.shape), t.format, t.bytes,
                     t.rel_rmse,
                     !calibrated            ? ""
                     : t.recon_error >= 0 ? fmt::format(" {:>11.4e}", t.recon_error)
                                          : fmt::format(" {:>11}", "-"),
                     t.fallback.empty() ? t.rule : "FALLBACK " + t.fallback,
                     t.sparsity > 0 ? fmt::format(" (sparsity {:.4f})", t.sparsity) : "");
  s += fmt::format(
      "{} tensors, {} parameters, {} bytes of tensors ({:.4f} bits/weight; quantized tensors {:.4f}), "
      "{} fallbacks{}\npeak RSS {:.1f} MiB (largest tensor in f32: {:.1f} MiB), {:.2f} s, method {}\n",
      tensors.size(), parameters, total_bytes, bits_per_weight, quantized_bits_per_weight, fallbacks,
      prune != "none" ? fmt::format(", prune {} sparsity {:.4f}", prune, pruned_sparsity) : "",
      double(peak_rss_bytes) / (1 << 20), double(largest_tensor_f32_bytes) / (1 << 20), seconds, method);
  if (calibrated) {
    const LayerwiseTimings& tm = timings;
    s += fmt::format("calibration {}; block-by-block: embed {:.2f} s, stages {:.2f} s, base {:.2f} s, "
                     "forward with quantized weights {:.2f} s, reconstruction error {:.2f} s\n",
                     calibration, tm.embed_s, tm.stages_s, tm.base_s, tm.final_forward_s, tm.recon_s);
    if (std::find(stages.begin(), stages.end(), "gptq") != stages.end())
      s += fmt::format("gptq: {} linears, Hessian {:.2f} s, Cholesky {:.2f} s ({} factorizations), sweep {:.2f} s, "
                       "capture forward {:.2f} s; dampening raised {}x, {} dead columns\n",
                       tm.gptq_linears, tm.hessian_s, tm.cholesky_s, tm.gptq_factorizations, tm.sweep_s,
                       tm.gptq_forward_s, tm.gptq_damp_retries, tm.gptq_dead_columns);
  }
  return s;
}

}  // namespace lowbit
