// libFuzzer target: arbitrary bytes as a calibration statistics file (GGUF
// parse, then the imatrix / lowbit validation), and every observer on what
// loads. Errors are expected; crashes are bugs.
#include <cstddef>
#include <cstdint>

#include "calib/observers.h"
#include "calib/stats.h"
#include "core/error.h"
#include "io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const lowbit::GgufFile f(std::span(data, size), "fuzz.gguf");
    const lowbit::ActivationStats stats = lowbit::ActivationStats::FromGguf(f);
    for (const auto& [name, s] : stats.all()) {
      for (lowbit::Observer o : {lowbit::Observer::kMinMax, lowbit::Observer::kEma, lowbit::Observer::kPercentile,
                                 lowbit::Observer::kKl, lowbit::Observer::kMse}) {
        try {
          (void)lowbit::ActivationRange(s, o);
        } catch (const lowbit::Error&) {
        }
      }
    }
  } catch (const lowbit::Error&) {
  }
  return 0;
}
