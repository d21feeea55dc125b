// Errors: every failure the user can cause (bad file, bad flag, bad shape) is
// thrown as lowbit::Error with a message that names the file and the problem;
// the CLI prints it and exits non-zero. Programming errors use LOWBIT_CHECK.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace lowbit {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Throws Error with a fmt-formatted message.
template <typename... Args>
[[noreturn]] void Fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace lowbit

// Internal invariant; failure is a bug in lowbit, reported with its location.
#define LOWBIT_CHECK(cond)                                                        \
  do {                                                                            \
    if (!(cond)) ::lowbit::Fail("internal error: {}:{}: check failed: {}", __FILE__, \
                                __LINE__, #cond);                                 \
  } while (0)
