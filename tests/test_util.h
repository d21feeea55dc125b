// Shared test helpers: where ../shared is, and skipping when it is absent.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace lowbit::testing {

inline std::string SharedDir() {
  if (const char* env = std::getenv("LOWBIT_SHARED")) return env;
  return LOWBIT_SHARED_DIR;
}

inline std::string SharedPath(const std::string& rel) { return SharedDir() + "/" + rel; }

inline std::string SourcePath(const std::string& rel) { return std::string(LOWBIT_SOURCE_DIR) + "/" + rel; }

}  // namespace lowbit::testing

// Skips the current test with a clear message when a ../shared file is missing.
#define LOWBIT_REQUIRE_SHARED(rel)                                                            \
  do {                                                                                        \
    if (!std::filesystem::exists(::lowbit::testing::SharedPath(rel)))                         \
      GTEST_SKIP() << "../shared/" << (rel) << " not found (set LOWBIT_SHARED to the shared " \
                   << "data folder); skipping";                                               \
  } while (0)
