// report.md / report.json / report.html of `lowbit compare` (see compare.h).
// The HTML is one file: inline CSS, the table, and the three inline SVG
// figures of report/plots.h; no scripts, fonts or images from elsewhere.
#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "report/compare.h"
#include "report/plots.h"
#include "report/svg.h"

namespace lowbit::report {

namespace {

std::string Mib(uint64_t bytes) { return fmt::format("{:.1f}", double(bytes) / (1 << 20)); }

struct Column {
  const char* head;
  std::string (*cell)(const VariantResult&);
};

// One list of columns for both the Markdown and the HTML table.
const std::vector<Column>& Columns() {
  static const std::vector<Column> kColumns = {
      {"variant", [](const VariantResult& r) { return r.name; }},
      {"method", [](const VariantResult& r) { return r.method; }},
      {"file bytes", [](const VariantResult& r) { return fmt::format("{}", r.file_bytes); }},
      {"bpw", [](const VariantResult& r) { return fmt::format("{:.3f}", r.bits_per_weight); }},
      {"PPL", [](const VariantResult& r) { return fmt::format("{:.4f}", r.ppl); }},
      {"ΔPPL", [](const VariantResult& r) {
         return r.source ? std::string("-") : fmt::format("{:+.4f} ({:+.2f}%)", r.ppl_delta, r.ppl_delta_pct);
       }},
      {"mean KLD", [](const VariantResult& r) { return fmt::format("{:.6f}", r.kld_mean); }},
      {"p99 KLD", [](const VariantResult& r) { return fmt::format("{:.6f}", r.kld_p99); }},
      {"top-1 agree", [](const VariantResult& r) { return fmt::format("{:.2f}%", 100 * r.top1); }},
      {"pp t/s", [](const VariantResult& r) { return fmt::format("{:.1f}", r.pp_tokens_per_s); }},
      {"tg t/s", [](const VariantResult& r) { return fmt::format("{:.1f}", r.tg_tokens_per_s); }},
      {"quantize s", [](const VariantResult& r) {
         return r.source ? std::string("-") : fmt::format("{:.2f}", r.quantize_seconds);
       }},
      {"peak RSS MiB", [](const VariantResult& r) { return Mib(r.peak_rss_bytes); }},
  };
  return kColumns;
}

std::string Protocol(const CompareResult& r) {
  return fmt::format(
      "{} chunks x ctx {} of `{}` (llama.cpp protocol, {} scored tokens, the same for every row); KLD and top-1 "
      "against the source's log-probs; speed: pp {} / tg {} tokens, {} repetition(s), {} threads",
      r.chunks, r.ctx, r.data, r.tokens_scored, r.bench_prompt, r.bench_gen, r.bench_reps,
      r.threads > 0 ? fmt::format("{}", r.threads) : std::string("all"));
}

std::string RssNote(const CompareResult& r) {
  for (const VariantResult& v : r.rows)
    if (v.rss_isolated)
      return "Peak RSS of a quantized row is its own quantization's (a child process, wait4()); the source row's is "
             "this process's after loading and evaluating it.";
  return "Peak RSS is the process's high-water mark after each quantization (it only grows down the table).";
}

void WriteText(const std::string& path, const std::string& text) {
  AtomicFileWriter w(path);
  w.Write(text.data(), text.size());
  w.Commit();
}

}  // namespace

std::string CompareMarkdown(const CompareResult& r) {
  std::string md = fmt::format("# lowbit compare: {}\n\n{}.\n\n", r.model, Protocol(r));
  std::string head = "|", rule = "|";
  for (const Column& c : Columns()) head += fmt::format(" {} |", c.head), rule += "---|";
  md += head + "\n" + rule + "\n";
  for (const VariantResult& row : r.rows) {
    md += "|";
    for (const Column& c : Columns()) md += fmt::format(" {} |", c.cell(row));
    md += "\n";
  }
  md += fmt::format("\n{}\n", RssNote(r));
  if (!r.imatrix.empty()) md += fmt::format("imatrix statistics: `{}`\n", r.imatrix);
  if (!r.calibration.empty()) md += fmt::format("calibration text: `{}` (never the evaluated chunks)\n", r.calibration);
  for (const VariantResult& v : r.rows)
    if (v.gptq_hessian_s + v.gptq_cholesky_s + v.gptq_sweep_s > 0)
      md += fmt::format("{}: GPTQ Hessian {:.2f} s, Cholesky {:.2f} s, sweep {:.2f} s, capture forwards {:.2f} s\n",
                        v.name, v.gptq_hessian_s, v.gptq_cholesky_s, v.gptq_sweep_s, v.gptq_forward_s);
  // Per-layer reconstruction error of the block-by-block variants.
  std::vector<const VariantResult*> measured;
  for (const VariantResult& v : r.rows)
    for (const VariantTensorError& t : v.tensors)
      if (t.recon_error >= 0) {
        measured.push_back(&v);
        break;
      }
  if (!measured.empty()) {
    md += "\n## Reconstruction error per linear\n\n||WX - Q(W)X||² / ||WX||² on calibration inputs (the "
          "block's input with every earlier block quantized).\n\n| tensor |";
    std::string rule = "|---|";
    for (const VariantResult* v : measured) md += fmt::format(" {} |", v->name), rule += "---|";
    md += "\n" + rule + "\n";
    for (const VariantTensorError& t : measured.front()->tensors) {
      if (t.recon_error < 0) continue;
      md += fmt::format("| {} |", t.name);
      for (const VariantResult* v : measured) {
        std::string cell = "-";
        for (const VariantTensorError& u : v->tensors)
          if (u.name == t.name && u.recon_error >= 0) cell = fmt::format("{:.3e}", u.recon_error);
        md += fmt::format(" {} |", cell);
      }
      md += "\n";
    }
  }
  return md;
}

std::string CompareJson(const CompareResult& r) {
  nlohmann::json j;
  j["model"] = r.model;
  j["data"] = r.data;
  j["protocol"] = "llamacpp";
  j["ctx"] = r.ctx;
  j["chunks"] = r.chunks;
  j["tokens_scored"] = r.tokens_scored;
  j["ppl_source"] = r.ppl_source;
  j["bench"] = {{"prompt_tokens", r.bench_prompt}, {"gen_tokens", r.bench_gen}, {"repetitions", r.bench_reps},
                {"threads", r.threads}};
  j["histogram_tensor"] = r.tensor;
  j["imatrix"] = r.imatrix;
  j["calibration"] = r.calibration;
  j["rows"] = nlohmann::json::array();
  for (const VariantResult& v : r.rows) {
    nlohmann::json row = {{"name", v.name},
                          {"format", v.format},
                          {"method", v.method},
                          {"source", v.source},
                          {"file", v.file},
                          {"file_bytes", v.file_bytes},
                          {"bits_per_weight", v.bits_per_weight},
                          {"ppl", v.ppl},
                          {"ppl_delta", v.ppl_delta},
                          {"ppl_delta_pct", v.ppl_delta_pct},
                          {"kld_mean", v.kld_mean},
                          {"kld_stderr", v.kld_stderr},
                          {"kld_p99", v.kld_p99},
                          {"kld_max", v.kld_max},
                          {"top1_agreement", v.top1},
                          {"pp_tokens_per_s", v.pp_tokens_per_s},
                          {"tg_tokens_per_s", v.tg_tokens_per_s},
                          {"quantize_seconds", v.quantize_seconds},
                          {"peak_rss_bytes", v.peak_rss_bytes},
                          {"peak_rss_isolated", v.rss_isolated},
                          {"fallbacks", v.fallbacks}};
    if (v.gptq_hessian_s + v.gptq_cholesky_s + v.gptq_sweep_s > 0)
      row["gptq"] = {{"hessian_s", v.gptq_hessian_s},
                     {"cholesky_s", v.gptq_cholesky_s},
                     {"sweep_s", v.gptq_sweep_s},
                     {"forward_s", v.gptq_forward_s}};
    row["tensors"] = nlohmann::json::array();
    for (const VariantTensorError& t : v.tensors)
      row["tensors"].push_back({{"name", t.name},
                                {"format", t.format},
                                {"rel_rmse", t.rel_rmse},
                                {"recon_error", t.recon_error >= 0 ? nlohmann::json(t.recon_error) : nlohmann::json()}});
    j["rows"].push_back(std::move(row));
  }
  return j.dump(2);
}

std::string CompareHtml(const CompareResult& r) {
  // (a) histograms: every quantized variant against the original.
  std::vector<HistogramPanel> panels;
  for (const VariantResult& v : r.rows)
    if (!v.source) panels.push_back({v.name, v.histogram_values});
  // (b) per-tensor error: tensors in the first variant's order.
  std::vector<std::string> tensors;
  for (const VariantResult& v : r.rows)
    if (!v.source && tensors.empty())
      for (const VariantTensorError& t : v.tensors) tensors.push_back(t.name);
  std::vector<ErrorSeries> series;
  for (const VariantResult& v : r.rows) {
    if (v.source) continue;
    ErrorSeries s{v.name, std::vector<double>(tensors.size(), 0.0)};
    for (size_t i = 0; i < tensors.size(); ++i)
      for (const VariantTensorError& t : v.tensors)
        if (t.name == tensors[i]) s.rel_rmse[i] = t.rel_rmse;
    series.push_back(std::move(s));
  }
  // (b') per-linear reconstruction error of the block-by-block variants,
  // drawn as sqrt(||WX - Q(W)X||^2 / ||WX||^2) on the same log chart.
  std::vector<std::string> linears;
  std::vector<ErrorSeries> recon;
  for (const VariantResult& v : r.rows) {
    bool any = false;
    for (const VariantTensorError& t : v.tensors) any = any || t.recon_error >= 0;
    if (v.source || !any) continue;
    if (linears.empty())
      for (const VariantTensorError& t : v.tensors)
        if (t.recon_error >= 0) linears.push_back(t.name);
    ErrorSeries s{v.name, std::vector<double>(linears.size(), 0.0)};
    for (size_t i = 0; i < linears.size(); ++i)
      for (const VariantTensorError& t : v.tensors)
        if (t.name == linears[i] && t.recon_error >= 0) s.rel_rmse[i] = std::sqrt(t.recon_error);
    recon.push_back(std::move(s));
  }
  std::string recon_figure;
  if (!recon.empty()) {
    std::string svg = LayerErrorSvg(linears, recon);
    auto replace = [&svg](const std::string& from, const std::string& to) {
      const size_t at = svg.find(from);
      if (at != std::string::npos) svg.replace(at, from.size(), to);
    };
    replace("relative RMS error ||w - dequant(q(w))|| / ||w|| per weight tensor",
            "relative output error sqrt(||WX - Q(W)X||² / ||WX||²) per linear, calibration inputs");
    replace(">relative RMS error<", ">relative output error<");
    recon_figure = "<h2>Reconstruction error per linear</h2>\n<figure>" + svg +
                   "<figcaption>Relative error of each linear's output on calibration inputs (the block's input "
                   "with every earlier block quantized), for the block-by-block methods (log scale).</figcaption>"
                   "</figure>\n";
  }
  // (c) size vs quality.
  std::vector<SizeQualityPoint> points;
  for (const VariantResult& v : r.rows)
    if (!v.source) points.push_back({v.name, v.bits_per_weight, v.kld_mean});

  std::string table = "<table>\n<tr>";
  for (const Column& c : Columns()) table += fmt::format("<th>{}</th>", XmlEscape(c.head));
  table += "</tr>\n";
  for (const VariantResult& row : r.rows) {
    table += row.source ? "<tr class=\"source\">" : "<tr>";
    for (const Column& c : Columns()) table += fmt::format("<td>{}</td>", XmlEscape(c.cell(row)));
    table += "</tr>\n";
  }
  table += "</table>\n";

  return fmt::format(
      R"html(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>lowbit compare: {0}</title>
<style>
body {{ font-family: sans-serif; margin: 24px 32px; color: #222; max-width: 1340px; }}
h1 {{ font-size: 22px; margin-bottom: 4px; }}
h2 {{ font-size: 17px; margin: 28px 0 6px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }}
p.note {{ color: #555; font-size: 13px; margin: 4px 0 10px; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; white-space: nowrap; }}
th {{ background: #f0f3f7; }}
td:first-child, th:first-child, td:nth-child(2) {{ text-align: left; }}
tr.source td {{ background: #f7f7f2; font-style: italic; }}
figure {{ margin: 8px 0 16px; overflow-x: auto; }}
figcaption {{ font-size: 13px; color: #555; margin-top: 4px; }}
</style>
</head>
<body>
<h1>lowbit compare: {0}</h1>
<p class="note">{1}.</p>
<h2>Summary</h2>
{2}<p class="note">ΔPPL is against the source row. {7}</p>
<h2>Size against quality</h2>
<figure>{3}<figcaption>Mean KL divergence from the source model's next-token distribution against bits per weight. Points on the dashed line are Pareto-optimal: no other variant is both smaller and closer to the source. The source row (KLD 0) is off the log scale.</figcaption></figure>
<h2>Quantization error per tensor</h2>
<figure>{4}<figcaption>Relative RMS error of each quantized weight tensor (log scale), blocks in model order.</figcaption></figure>
{8}
<h2>Weights of {5}</h2>
<figure>{6}<figcaption>Histogram of {5}'s original weights (grey) and of each variant's dequantized weights: the quantization grid shows as spikes.</figcaption></figure>
</body>
</html>
)html",
      XmlEscape(r.model), XmlEscape(Protocol(r)), table, SizeQualitySvg(points), LayerErrorSvg(tensors, series),
      XmlEscape(r.tensor), WeightHistogramSvg(r.tensor, r.tensor_original, panels), XmlEscape(RssNote(r)),
      recon_figure);
}

void WriteCompareReport(const CompareResult& r, const std::string& dir) {
  const std::filesystem::path d(dir);
  WriteText((d / "report.md").string(), CompareMarkdown(r));
  WriteText((d / "report.json").string(), CompareJson(r) + "\n");
  WriteText((d / "report.html").string(), CompareHtml(r));
}

}  // namespace lowbit::report
