// The compare report's figures (see plots.h), drawn with report/svg.h.
#include "report/plots.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "report/svg.h"

namespace lowbit::report {

namespace {

std::vector<double> Histogram(const std::vector<float>& v, double lo, double hi, int bins) {
  std::vector<double> h(size_t(bins), 0.0);
  const double w = (hi - lo) / bins;
  for (float x : v) {
    if (!std::isfinite(x) || x < lo || x > hi) continue;
    const int b = std::min(bins - 1, int((x - lo) / w));
    h[size_t(b)] += 1;
  }
  return h;
}

// Outline of a histogram as a step polyline along the bottom of the area.
std::vector<std::pair<double, double>> StepOutline(const PlotArea& a, const std::vector<double>& h, double lo,
                                                   double w) {
  std::vector<std::pair<double, double>> pts;
  pts.emplace_back(a.x.Map(lo), a.bottom);
  for (size_t b = 0; b < h.size(); ++b) {
    const double y = a.y.Map(h[b]);
    pts.emplace_back(a.x.Map(lo + w * double(b)), y);
    pts.emplace_back(a.x.Map(lo + w * double(b + 1)), y);
  }
  pts.emplace_back(a.x.Map(lo + w * double(h.size())), a.bottom);
  return pts;
}

}  // namespace

std::string WeightHistogramSvg(const std::string& tensor, const std::vector<float>& original,
                               const std::vector<HistogramPanel>& panels, int bins) {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (float x : original)
    if (std::isfinite(x)) lo = std::min(lo, double(x)), hi = std::max(hi, double(x));
  if (!(hi > lo)) lo = -1, hi = 1;
  // A sliver of margin so the extreme values (which quantizers often keep
  // exactly) land inside the first and last bins.
  const double pad = (hi - lo) * 0.01;
  lo -= pad, hi += pad;
  const double w = (hi - lo) / bins;
  const std::vector<double> h0 = Histogram(original, lo, hi, bins);

  const int cols = panels.size() > 1 ? 2 : 1;
  const int rows = std::max<int>(1, int((panels.size() + size_t(cols) - 1) / size_t(cols)));
  const double pw = 600, ph = 230;
  SvgCanvas c(int(pw * cols), int(ph * rows + 40), fmt::format("weight histograms of {}", tensor));
  c.Text(pw * cols / 2, 24, fmt::format("{}: original (grey) vs dequantized weights", tensor), 15, "middle", "#222",
         0, true);
  for (size_t i = 0; i < panels.size(); ++i) {
    const std::vector<double> h = Histogram(panels[i].values, lo, hi, bins);
    double top = 1;
    for (size_t b = 0; b < h.size(); ++b) top = std::max({top, h[b], h0[b]});
    PlotArea a;
    const double ox = pw * double(i % size_t(cols)), oy = 40 + ph * double(i / size_t(cols));
    a.left = ox + 70, a.right = ox + pw - 20, a.top = oy + 30, a.bottom = oy + ph - 50;
    a.title = panels[i].label;
    a.x_label = "weight value";
    a.y_label = "count";
    SetScales(&a, lo, hi, false, 0, top * 1.05, false);
    DrawAxes(c, a);
    c.Polyline(StepOutline(a, h0, lo, w), "#888", 1, "", "#bbb", 0.6);
    c.Polyline(StepOutline(a, h, lo, w), SeriesColor(i), 1.5);
    DrawLegend(c, a.right - 130, a.top + 4,
               {{"original", "#bbb", false, ""}, {panels[i].label, SeriesColor(i), true, ""}});
  }
  return c.Finish();
}

std::string LayerErrorSvg(const std::vector<std::string>& tensors, const std::vector<ErrorSeries>& series) {
  double lo = std::numeric_limits<double>::infinity(), hi = 0;
  for (const ErrorSeries& s : series)
    for (double e : s.rel_rmse)
      if (e > 0 && std::isfinite(e)) lo = std::min(lo, e), hi = std::max(hi, e);
  if (!(hi > 0)) lo = 1e-3, hi = 1;
  LogRange(&lo, &hi);
  const double n = double(std::max<size_t>(1, tensors.size()));
  const double width = std::clamp(160 + 22 * n, 700.0, 1300.0);
  SvgCanvas c(int(width), 420, "per-tensor quantization error");
  PlotArea a;
  a.left = 80, a.right = width - 190, a.top = 40, a.bottom = 330;
  a.title = "relative RMS error ||w - dequant(q(w))|| / ||w|| per weight tensor";
  a.y_label = "relative RMS error";
  SetScales(&a, -0.5, n - 0.5, false, lo, hi, true);
  DrawAxes(c, a, {-0.5}, {});
  // Block boundaries: a vertical rule where the "blk.N." prefix changes.
  std::string prev_block;
  for (size_t i = 0; i < tensors.size(); ++i) {
    int blk = -1;
    std::string block = std::sscanf(tensors[i].c_str(), "blk.%d.", &blk) == 1 ? fmt::format("blk {}", blk) : "";
    if (block != prev_block && !block.empty()) {
      const double px = a.x.Map(double(i) - 0.5);
      c.Line(px, a.top, px, a.bottom, "#999", 1, "4,3");
      c.Text(px + 3, a.top + 12, block, 10, "start", "#666");
    }
    prev_block = block;
    // Tensor labels without the block prefix, rotated under the axis.
    std::string label = tensors[i];
    if (blk >= 0) label = label.substr(label.find('.', 4) + 1);
    if (label.size() > 7 && label.compare(label.size() - 7, 7, ".weight") == 0) label.resize(label.size() - 7);
    c.Text(a.x.Map(double(i)) + 3, a.bottom + 10, label, 9, "end", "#444", -60);
  }
  std::vector<LegendEntry> legend;
  for (size_t k = 0; k < series.size(); ++k) {
    std::vector<std::pair<double, double>> pts;
    for (size_t i = 0; i < series[k].rel_rmse.size() && i < tensors.size(); ++i) {
      const double e = series[k].rel_rmse[i];
      if (!(e > 0) || !std::isfinite(e)) continue;
      pts.emplace_back(a.x.Map(double(i)), a.y.Map(e));
    }
    // The palette has 8 colours; later series repeat them dashed.
    const std::string dash = k >= 8 ? "5,3" : "";
    c.Polyline(pts, SeriesColor(k), 1.5, dash);
    for (const auto& [x, y] : pts) c.Circle(x, y, 2.5, SeriesColor(k));
    legend.push_back({series[k].label, SeriesColor(k), true, dash});
  }
  DrawLegend(c, a.right + 15, a.top, legend);
  return c.Finish();
}

std::string SizeQualitySvg(const std::vector<SizeQualityPoint>& points) {
  std::vector<double> xs, ys;
  double x_lo = std::numeric_limits<double>::infinity(), x_hi = 0;
  double y_lo = std::numeric_limits<double>::infinity(), y_hi = 0;
  for (const SizeQualityPoint& p : points) {
    const bool ok = p.kld > 0 && std::isfinite(p.kld) && std::isfinite(p.bits_per_weight);
    xs.push_back(ok ? p.bits_per_weight : std::numeric_limits<double>::quiet_NaN());
    ys.push_back(ok ? p.kld : std::numeric_limits<double>::quiet_NaN());
    if (!ok) continue;
    x_lo = std::min(x_lo, p.bits_per_weight), x_hi = std::max(x_hi, p.bits_per_weight);
    y_lo = std::min(y_lo, p.kld), y_hi = std::max(y_hi, p.kld);
  }
  if (!(x_hi >= x_lo)) x_lo = 0, x_hi = 16;
  if (!(y_hi > 0)) y_lo = 1e-4, y_hi = 1;
  const double xpad = std::max(0.5, (x_hi - x_lo) * 0.08);
  x_lo = std::max(0.0, x_lo - xpad), x_hi += xpad;
  LogRange(&y_lo, &y_hi);
  SvgCanvas c(900, 520, "quality against size");
  PlotArea a;
  a.left = 80, a.right = 870, a.top = 40, a.bottom = 460;
  a.title = "mean KLD vs the source model against bits per weight (Pareto front joined)";
  a.x_label = "bits per weight (whole file's tensors)";
  a.y_label = "mean KLD (log scale)";
  SetScales(&a, x_lo, x_hi, false, y_lo, y_hi, true);
  DrawAxes(c, a);
  const std::vector<size_t> front = ParetoFront(xs, ys);
  std::vector<std::pair<double, double>> line;
  for (size_t i : front) line.emplace_back(a.x.Map(xs[i]), a.y.Map(ys[i]));
  c.Polyline(line, "#D55E00", 2, "6,4");
  std::vector<bool> on_front(points.size(), false);
  for (size_t i : front) on_front[i] = true;
  std::vector<std::pair<double, double>> placed;  // label anchors drawn so far
  for (size_t i = 0; i < points.size(); ++i) {
    if (std::isnan(xs[i])) continue;
    const double px = a.x.Map(xs[i]), py = a.y.Map(ys[i]);
    c.Circle(px, py, on_front[i] ? 6 : 4.5, on_front[i] ? "#D55E00" : "#0072B2", on_front[i] ? "#000" : "");
    // Alternate label sides, and push a label down while it would overlap
    // one already placed (variants of equal size often land on one spot).
    const bool left = i % 2 == 1 && px > a.left + 120;
    const double lx = left ? px - 9 : px + 9;
    double ly = py - 7;
    for (bool moved = true; moved;) {
      moved = false;
      for (const auto& [ox, oy] : placed)
        // (The 1e-6 slack: after ly = oy + 12, |oy - ly| can round to just
        // below 12, which would move the label onto itself forever.)
        if (std::abs(ox - lx) < 90 && std::abs(oy - ly) < 12 - 1e-6) ly = oy + 12, moved = true;
    }
    placed.emplace_back(lx, ly);
    c.Text(lx, ly, points[i].label, 11, left ? "end" : "start");
  }
  DrawLegend(c, a.right - 170, a.top + 8,
             {{"Pareto front", "#D55E00", true, "6,4"}, {"dominated variant", "#0072B2", false, ""}});
  return c.Finish();
}

}  // namespace lowbit::report
