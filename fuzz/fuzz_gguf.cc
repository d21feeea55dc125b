// libFuzzer target: arbitrary bytes through the GGUF parser, every metadata
// getter and every tensor view. Errors are expected; crashes are bugs.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    lowbit::GgufFile f(std::span(data, size), "fuzz.gguf");
    for (const auto& [key, value] : f.metadata()) {
      try {
        if (value.type == lowbit::GgufType::kArray) {
          (void)f.GetStringArray(key);
        } else {
          (void)f.GetFloat(key);
        }
      } catch (const lowbit::Error&) {
      }
    }
    for (const auto& t : f.tensors()) {
      try {
        const lowbit::TensorView v = f.View(t);
        if (v.NumElements() > 0) (void)lowbit::ToF32(v).size();
      } catch (const lowbit::Error&) {
      }
    }
  } catch (const lowbit::Error&) {
  }
  return 0;
}
