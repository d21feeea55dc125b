// THE list of storage formats. Adding a format = its own header + one line
// here. The position in this list is the format's DType id, so the first
// three must stay F32, F16, BF16 (DType::kF32/kF16/kBF16).
#pragma once

#include "core/tensor.h"
#include "core/type_list.h"
#include "formats/float_formats.h"
#include "formats/ggml_legacy.h"
#include "formats/ggml_nl_ternary.h"
#include "formats/ggml_kquants.h"
#include "formats/fp8_formats.h"
#include "formats/int_formats.h"
#include "formats/bnb_formats.h"
#include "formats/log_formats.h"

namespace lowbit {

using AllFormatTypes = TypeList<
    F32Format,
    F16Format,
    BF16Format,
    Q8_0Format,
    Q4_0Format,
    Q8_1Format,
    Q4_1Format,
    Q5_0Format,
    Q5_1Format,
    IQ4_NLFormat,
    TQ1_0Format,
    TQ2_0Format,
    Q8_KFormat,
    Q4_KFormat,
    Q2_KFormat,
    Q3_KFormat,
    Q5_KFormat,
    Q6_KFormat,
    IQ4_XSFormat,
    // lowbit's own formats (private GGUF ids >= 1024): FP8, INT (bits, sym/asym,
    // tensor/channel/g32/g64/g128), bitsandbytes 4-bit, log4.
    Fp8E4M3Format, Fp8E5M2Format,
    IntFormat<8, false, kPerTensor>, IntFormat<8, false, kPerChannel>, IntFormat<8, false, 32>, IntFormat<8, false, 64>, IntFormat<8, false, 128>,
    IntFormat<8, true, kPerTensor>, IntFormat<8, true, kPerChannel>, IntFormat<8, true, 32>, IntFormat<8, true, 64>, IntFormat<8, true, 128>,
    IntFormat<4, false, kPerTensor>, IntFormat<4, false, kPerChannel>, IntFormat<4, false, 32>, IntFormat<4, false, 64>, IntFormat<4, false, 128>,
    IntFormat<4, true, kPerTensor>, IntFormat<4, true, kPerChannel>, IntFormat<4, true, 32>, IntFormat<4, true, 64>, IntFormat<4, true, 128>,
    IntFormat<3, false, kPerTensor>, IntFormat<3, false, kPerChannel>, IntFormat<3, false, 32>, IntFormat<3, false, 64>, IntFormat<3, false, 128>,
    IntFormat<3, true, kPerTensor>, IntFormat<3, true, kPerChannel>, IntFormat<3, true, 32>, IntFormat<3, true, 64>, IntFormat<3, true, 128>,
    IntFormat<2, false, kPerTensor>, IntFormat<2, false, kPerChannel>, IntFormat<2, false, 32>, IntFormat<2, false, 64>, IntFormat<2, false, 128>,
    IntFormat<2, true, kPerTensor>, IntFormat<2, true, kPerChannel>, IntFormat<2, true, 32>, IntFormat<2, true, 64>, IntFormat<2, true, 128>,
    Nf4Format, Fp4Format, Nf4DqFormat, Fp4DqFormat,
    Log4Format
    >;

// DType of a format traits struct.
template <typename F>
constexpr DType DTypeOf() { return DType(IndexOf<F, AllFormatTypes>::value); }

}  // namespace lowbit

namespace lowbit {

// Calls fn.template operator()<F>() with the traits struct F of format `id`;
// returns what it returns. For templated kernels and codecs.
template <typename Fn>
decltype(auto) VisitFormat(DType id, Fn&& fn) {
  return [&]<typename... Fs>(TypeList<Fs...>) -> decltype(auto) {
    using R = decltype(fn.template operator()<F32Format>());
    if constexpr (std::is_void_v<R>) {
      (void)((size_t(id) == IndexOf<Fs, AllFormatTypes>::value ? (fn.template operator()<Fs>(), true) : false) || ...);
    } else {
      R result{};
      (void)((size_t(id) == IndexOf<Fs, AllFormatTypes>::value ? (result = fn.template operator()<Fs>(), true)
                                                                : false) ||
             ...);
      return result;
    }
  }(AllFormatTypes{});
}

}  // namespace lowbit
