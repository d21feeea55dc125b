// Small SVG toolkit for the report pages: linear/log scales, "nice" tick
// positions (1-2-5 steps; powers of ten on log axes), an element writer with
// XML escaping, axis/legend helpers, and the Pareto front of (size, error)
// points. Everything is plain text so the HTML stays self-contained (no
// scripts, fonts or images fetched from anywhere).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace lowbit::report {

// Maps data values [lo, hi] to pixels [px_lo, px_hi] (px_hi < px_lo for a y
// axis, whose pixels grow downwards). Log scales need lo > 0.
struct Scale {
  double lo = 0, hi = 1;
  double px_lo = 0, px_hi = 1;
  bool log = false;
  double Map(double v) const;
};

// Ticks at multiples of 1, 2 or 5 x 10^k inside [lo, hi], about `target` of them.
std::vector<double> NiceTicks(double lo, double hi, int target);
// Powers of ten inside [lo, hi] (lo > 0); when fewer than two fit, 1-2-5 x 10^k ones.
std::vector<double> LogTicks(double lo, double hi);
// Widens [lo, hi] outwards to the enclosing powers of ten (lo, hi > 0).
void LogRange(double* lo, double* hi);
// Short tick labels: "0", "0.25", "1e-05", "1000".
std::string FormatTick(double v);
std::string XmlEscape(std::string_view text);

// Indices of the points no other point dominates when both coordinates are
// to be minimised (smaller size, smaller error), sorted by x. A point is
// dominated when another is <= in both and < in one. Non-finite points are
// ignored.
std::vector<size_t> ParetoFront(const std::vector<double>& x, const std::vector<double>& y);

// The i-th series colour (a fixed colour-blind-safe palette, cycled).
const char* SeriesColor(size_t i);

// Collects SVG elements; Finish() returns the <svg> element (no xmlns: it is
// meant to be inlined in HTML5, which needs none, so the page names no URL).
class SvgCanvas {
 public:
  SvgCanvas(int width, int height, std::string title);
  void Line(double x1, double y1, double x2, double y2, std::string_view color, double width = 1,
            std::string_view dash = "");
  void Rect(double x, double y, double w, double h, std::string_view fill, double opacity = 1,
            std::string_view stroke = "");
  void Circle(double x, double y, double r, std::string_view fill, std::string_view stroke = "");
  // anchor: "start", "middle" or "end"; rotate in degrees about (x, y).
  void Text(double x, double y, std::string_view text, double size = 12, std::string_view anchor = "start",
            std::string_view color = "#222", double rotate = 0, bool bold = false);
  void Polyline(const std::vector<std::pair<double, double>>& points, std::string_view color, double width = 1.5,
                std::string_view dash = "", std::string_view fill = "none", double opacity = 1);
  int width() const { return width_; }
  int height() const { return height_; }
  std::string Finish() const;

 private:
  int width_, height_;
  std::string title_;
  std::string body_;
};

// A plot area inside a canvas: the frame, grid lines, ticks and axis labels.
struct PlotArea {
  double left = 0, top = 0, right = 0, bottom = 0;  // pixel box of the data area
  Scale x, y;
  std::string title, x_label, y_label;
};
// Builds the scales of `area` from its pixel box and the data ranges.
void SetScales(PlotArea* area, double x_lo, double x_hi, bool x_log, double y_lo, double y_hi, bool y_log);
// Frame, grid, ticks (given positions, or automatic when empty) and labels.
void DrawAxes(SvgCanvas& canvas, const PlotArea& area, std::vector<double> x_ticks = {},
              std::vector<double> y_ticks = {});
struct LegendEntry {
  std::string label;
  std::string color;
  bool line = false;  // a short line sample instead of a square
  std::string dash;
};
// A legend box with its top-left corner at (x, y), entries stacked down.
void DrawLegend(SvgCanvas& canvas, double x, double y, const std::vector<LegendEntry>& entries);

}  // namespace lowbit::report
