// The three figures of `lowbit compare`, each returned as one <svg> element:
//  (a) weight histograms of one tensor, original against each variant's
//      dequantized values (small multiples, one panel per variant);
//  (b) relative RMS quantization error of every weight tensor, in model order
//      with block boundaries marked, one series per variant (log y);
//  (c) quality against size: mean KLD (log y) over bits per weight, every
//      variant labelled, the Pareto front joined and ringed.
#pragma once

#include <string>
#include <vector>

namespace lowbit::report {

struct HistogramPanel {
  std::string label;          // "q4_k"
  std::vector<float> values;  // the dequantized tensor
};
// Panels share the original's range and bin edges; `bins` bins.
std::string WeightHistogramSvg(const std::string& tensor, const std::vector<float>& original,
                               const std::vector<HistogramPanel>& panels, int bins = 120);

struct ErrorSeries {
  std::string label;
  std::vector<double> rel_rmse;  // one per tensor in `tensors` order (<= 0 or NaN: not drawn)
};
std::string LayerErrorSvg(const std::vector<std::string>& tensors, const std::vector<ErrorSeries>& series);

struct SizeQualityPoint {
  std::string label;
  double bits_per_weight = 0;
  double kld = 0;  // <= 0: not drawable on the log axis, left out
};
std::string SizeQualitySvg(const std::vector<SizeQualityPoint>& points);

}  // namespace lowbit::report
