// SVG scales, ticks, elements, axes and legends (see svg.h).
#include "report/svg.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace lowbit::report {

double Scale::Map(double v) const {
  double t;
  if (log) {
    t = (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo));
  } else {
    t = hi == lo ? 0.5 : (v - lo) / (hi - lo);
  }
  return px_lo + t * (px_hi - px_lo);
}

std::vector<double> NiceTicks(double lo, double hi, int target) {
  std::vector<double> ticks;
  if (!(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi) || target < 1) {
    if (std::isfinite(lo)) ticks.push_back(lo);
    return ticks;
  }
  // The step is the 1-2-5 x 10^k value nearest above the raw step (range / target).
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * mag;
    if (step >= raw) break;
  }
  // Index-based so that ticks do not accumulate rounding; eps keeps the ends.
  const double eps = step * 1e-9;
  for (double k = std::ceil((lo - eps) / step); k * step <= hi + eps; ++k) {
    double v = k * step;
    if (std::abs(v) < eps) v = 0;
    ticks.push_back(v);
  }
  return ticks;
}

void LogRange(double* lo, double* hi) {
  *lo = std::pow(10.0, std::floor(std::log10(*lo)));
  *hi = std::pow(10.0, std::ceil(std::log10(*hi)));
  if (*hi <= *lo) *hi = *lo * 10;
}

std::vector<double> LogTicks(double lo, double hi) {
  std::vector<double> ticks;
  if (!(lo > 0) || !(hi > lo)) return ticks;
  for (int e = int(std::floor(std::log10(lo))) - 1; e <= int(std::ceil(std::log10(hi))) + 1; ++e) {
    const double v = std::pow(10.0, e);
    if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) ticks.push_back(v);
  }
  if (ticks.size() >= 2) return ticks;
  ticks.clear();
  for (int e = int(std::floor(std::log10(lo))) - 1; e <= int(std::ceil(std::log10(hi))) + 1; ++e)
    for (double m : {1.0, 2.0, 5.0}) {
      const double v = m * std::pow(10.0, e);
      if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) ticks.push_back(v);
    }
  return ticks;
}

std::string FormatTick(double v) {
  if (v == 0) return "0";
  const double a = std::abs(v);
  if (a >= 1e-3 && a < 1e5) return fmt::format("{:.6g}", v);
  return fmt::format("{:.0e}", v);
}

std::string XmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::vector<size_t> ParetoFront(const std::vector<double>& x, const std::vector<double>& y) {
  std::vector<size_t> order;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i)
    if (std::isfinite(x[i]) && std::isfinite(y[i])) order.push_back(i);
  // Sweep by x ascending (ties: smaller y first); a point is on the front when
  // its y is below every y seen so far.
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return x[a] != x[b] ? x[a] < x[b] : y[a] < y[b];
  });
  std::vector<size_t> front;
  double best = std::numeric_limits<double>::infinity();
  for (size_t i : order) {
    if (y[i] < best) {
      front.push_back(i);
      best = y[i];
    }
  }
  return front;
}

const char* SeriesColor(size_t i) {
  // Okabe-Ito palette (colour-blind safe), black last.
  static const char* kColors[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00",
                                  "#56B4E9", "#F0E442", "#000000"};
  return kColors[i % (sizeof(kColors) / sizeof(kColors[0]))];
}

SvgCanvas::SvgCanvas(int width, int height, std::string title) : width_(width), height_(height), title_(title) {}

void SvgCanvas::Line(double x1, double y1, double x2, double y2, std::string_view color, double width,
                     std::string_view dash) {
  body_ += fmt::format(R"(<line x1="{:.1f}" y1="{:.1f}" x2="{:.1f}" y2="{:.1f}" stroke="{}" stroke-width="{}")", x1,
                       y1, x2, y2, color, width);
  if (!dash.empty()) body_ += fmt::format(R"( stroke-dasharray="{}")", dash);
  body_ += "/>\n";
}

void SvgCanvas::Rect(double x, double y, double w, double h, std::string_view fill, double opacity,
                     std::string_view stroke) {
  body_ += fmt::format(R"(<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="{}")", x, y,
                       std::max(0.0, w), std::max(0.0, h), fill);
  if (opacity < 1) body_ += fmt::format(R"( fill-opacity="{:.2f}")", opacity);
  if (!stroke.empty()) body_ += fmt::format(R"( stroke="{}")", stroke);
  body_ += "/>\n";
}

void SvgCanvas::Circle(double x, double y, double r, std::string_view fill, std::string_view stroke) {
  body_ += fmt::format(R"(<circle cx="{:.1f}" cy="{:.1f}" r="{:.1f}" fill="{}")", x, y, r, fill);
  if (!stroke.empty()) body_ += fmt::format(R"( stroke="{}" stroke-width="1.5")", stroke);
  body_ += "/>\n";
}

void SvgCanvas::Text(double x, double y, std::string_view text, double size, std::string_view anchor,
                     std::string_view color, double rotate, bool bold) {
  body_ += fmt::format(R"(<text x="{:.1f}" y="{:.1f}" font-size="{}" text-anchor="{}" fill="{}")", x, y, size,
                       anchor, color);
  if (rotate != 0) body_ += fmt::format(R"x( transform="rotate({} {:.1f} {:.1f})")x", rotate, x, y);
  if (bold) body_ += R"( font-weight="bold")";
  body_ += fmt::format(">{}</text>\n", XmlEscape(text));
}

void SvgCanvas::Polyline(const std::vector<std::pair<double, double>>& points, std::string_view color, double width,
                         std::string_view dash, std::string_view fill, double opacity) {
  if (points.empty()) return;
  std::string pts;
  for (const auto& [x, y] : points) pts += fmt::format("{:.1f},{:.1f} ", x, y);
  pts.pop_back();
  body_ += fmt::format(R"(<polyline points="{}" fill="{}" stroke="{}" stroke-width="{}")", pts, fill, color, width);
  if (opacity < 1) body_ += fmt::format(R"( fill-opacity="{:.2f}")", opacity);
  if (!dash.empty()) body_ += fmt::format(R"( stroke-dasharray="{}")", dash);
  body_ += " stroke-linejoin=\"round\"/>\n";
}

std::string SvgCanvas::Finish() const {
  return fmt::format(
      "<svg width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" role=\"img\">\n<title>{2}</title>\n"
      "<rect x=\"0\" y=\"0\" width=\"{0}\" height=\"{1}\" fill=\"#fff\"/>\n{3}</svg>\n",
      width_, height_, XmlEscape(title_), body_);
}

void SetScales(PlotArea* a, double x_lo, double x_hi, bool x_log, double y_lo, double y_hi, bool y_log) {
  a->x = Scale{x_lo, x_hi, a->left, a->right, x_log};
  a->y = Scale{y_lo, y_hi, a->bottom, a->top, y_log};
}

void DrawAxes(SvgCanvas& c, const PlotArea& a, std::vector<double> x_ticks, std::vector<double> y_ticks) {
  if (x_ticks.empty()) x_ticks = a.x.log ? LogTicks(a.x.lo, a.x.hi) : NiceTicks(a.x.lo, a.x.hi, 6);
  if (y_ticks.empty()) y_ticks = a.y.log ? LogTicks(a.y.lo, a.y.hi) : NiceTicks(a.y.lo, a.y.hi, 5);
  for (double t : x_ticks) {
    const double px = a.x.Map(t);
    c.Line(px, a.top, px, a.bottom, "#e6e6e6");
    c.Line(px, a.bottom, px, a.bottom + 5, "#444");
    c.Text(px, a.bottom + 18, FormatTick(t), 11, "middle", "#444");
  }
  for (double t : y_ticks) {
    const double py = a.y.Map(t);
    c.Line(a.left, py, a.right, py, "#e6e6e6");
    c.Line(a.left - 5, py, a.left, py, "#444");
    c.Text(a.left - 8, py + 4, FormatTick(t), 11, "end", "#444");
  }
  c.Line(a.left, a.bottom, a.right, a.bottom, "#444");
  c.Line(a.left, a.top, a.left, a.bottom, "#444");
  if (!a.title.empty()) c.Text((a.left + a.right) / 2, a.top - 10, a.title, 13, "middle", "#222", 0, true);
  if (!a.x_label.empty()) c.Text((a.left + a.right) / 2, a.bottom + 38, a.x_label, 12, "middle");
  if (!a.y_label.empty()) c.Text(a.left - 48, (a.top + a.bottom) / 2, a.y_label, 12, "middle", "#222", -90);
}

void DrawLegend(SvgCanvas& c, double x, double y, const std::vector<LegendEntry>& entries) {
  if (entries.empty()) return;
  size_t longest = 0;
  for (const LegendEntry& e : entries) longest = std::max(longest, e.label.size());
  const double w = 36 + 6.5 * double(longest), h = 8 + 18 * double(entries.size());
  c.Rect(x, y, w, h, "#fff", 0.9, "#bbb");
  for (size_t i = 0; i < entries.size(); ++i) {
    const LegendEntry& e = entries[i];
    const double cy = y + 13 + 18 * double(i);
    if (e.line) {
      c.Line(x + 6, cy, x + 24, cy, e.color, 2.5, e.dash);
    } else {
      c.Rect(x + 8, cy - 6, 12, 12, e.color, 0.8);
    }
    c.Text(x + 30, cy + 4, e.label, 11);
  }
}

}  // namespace lowbit::report
