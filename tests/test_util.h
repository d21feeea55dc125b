// Shared test helpers: where ../shared is, and skipping when it is absent.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
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

// What the real `lowbit` binary printed and returned.
struct CommandResult {
  int exit_code = -1;  // 128 + signal when killed
  std::string output;  // stdout, plus stderr when merged
};

// Runs `lowbit ARGS` through the shell and collects its output.
inline CommandResult RunLowbit(const std::string& args, bool merge_stderr = true) {
  const std::string cmd = std::string(LOWBIT_BINARY) + " " + args + (merge_stderr ? " 2>&1" : " 2>/dev/null");
  CommandResult r;
  std::FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

}  // namespace lowbit::testing

// Skips the current test with a clear message when a ../shared file is missing.
#define LOWBIT_REQUIRE_SHARED(rel)                                                            \
  do {                                                                                        \
    if (!std::filesystem::exists(::lowbit::testing::SharedPath(rel)))                         \
      GTEST_SKIP() << "../shared/" << (rel) << " not found (set LOWBIT_SHARED to the shared " \
                   << "data folder); skipping";                                               \
  } while (0)
