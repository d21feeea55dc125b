// THE list of storage formats. Adding a format = its own header + one line
// here. The position in this list is the format's DType id, so the first
// three must stay F32, F16, BF16 (DType::kF32/kF16/kBF16).
#pragma once

#include "core/tensor.h"
#include "core/type_list.h"
#include "formats/float_formats.h"
#include "formats/ggml_legacy.h"
#include "formats/ggml_kquants.h"

namespace lowbit {

using AllFormatTypes = TypeList<
    F32Format,
    F16Format,
    BF16Format,
    Q8_0Format,
    Q4_0Format,
    Q8_1Format,
    Q8_KFormat,
    Q4_KFormat
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
