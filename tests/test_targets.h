// Runs a test body once per SIMD target the kernels can dispatch to
// (kernels::KernelTargets: the best this CPU has down to the scalar
// fallback), so every fast path is checked against its reference.
#pragma once

#include <type_traits>

#include <gtest/gtest.h>

#include "hwy/targets.h"
#include "kernels/matmul.h"

namespace lowbit::testing {

// body() or body(target), with Highway dispatching to that target only; the
// CPU's own targets are restored after each call, also after a failed ASSERT.
template <typename Body>
void ForEachTarget(const Body& body) {
  for (const KernelTarget& t : KernelTargets()) {
    SCOPED_TRACE("target " + t.name);
    hwy::SetSupportedTargetsForTest(t.bits);
    if constexpr (std::is_invocable_v<const Body&, const KernelTarget&>) {
      body(t);
    } else {
      body();
    }
    hwy::SetSupportedTargetsForTest(0);
  }
}

}  // namespace lowbit::testing
