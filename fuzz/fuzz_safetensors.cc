// libFuzzer target: bytes -> SafetensorsFile. Every tensor the parser accepts
// is then read end to end (F32/F16/BF16 converted, other dtypes touched at
// both ends), so an offset check that lets a tensor escape the input shows up
// under AddressSanitizer.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const lowbit::SafetensorsFile file(std::span<const uint8_t>(data, size), "fuzz.safetensors");
    volatile uint8_t sink = 0;
    for (const lowbit::SafetensorsTensorInfo& info : file.tensors()) {
      if (info.bytes() > 0) sink = sink ^ info.data[0] ^ info.data[info.bytes() - 1];
      if (!lowbit::SafetensorsToDType(info.dtype)) continue;
      const std::vector<float> values = lowbit::ToF32(file.View(info));
      if (!values.empty()) sink = sink ^ uint8_t(values.back() > 0.0f);
    }
  } catch (const lowbit::Error&) {
  }
  return 0;
}
