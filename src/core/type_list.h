// Compile-time type lists: the single list of formats (formats/all_formats.h)
// generates the runtime table, the dispatch visitor and the typed tests.
#pragma once

#include <cstddef>
#include <type_traits>

namespace lowbit {

template <typename... Ts>
struct TypeList {
  static constexpr size_t kSize = sizeof...(Ts);
};

// Index of T in a TypeList (compile error if absent).
template <typename T, typename List>
struct IndexOf;
template <typename T, typename... Rest>
struct IndexOf<T, TypeList<T, Rest...>> : std::integral_constant<size_t, 0> {};
template <typename T, typename First, typename... Rest>
struct IndexOf<T, TypeList<First, Rest...>>
    : std::integral_constant<size_t, 1 + IndexOf<T, TypeList<Rest...>>::value> {};

}  // namespace lowbit
