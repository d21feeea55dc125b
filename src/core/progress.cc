// Progress bar / plain progress lines and the SIGINT flag.
#include "core/progress.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>

#include <fmt/format.h>

#include "core/error.h"

namespace lowbit {

namespace {
std::atomic<bool> g_interrupted{false};

void OnSigint(int) {
  if (g_interrupted.exchange(true)) {
    std::signal(SIGINT, SIG_DFL);
    std::raise(SIGINT);
  }
}

std::string FormatSeconds(double s) {
  if (s < 0) s = 0;
  const int total = int(s + 0.5);
  if (total >= 3600) return fmt::format("{}h{:02}m", total / 3600, (total / 60) % 60);
  return fmt::format("{}:{:02}", total / 60, total % 60);
}
}  // namespace

void InstallInterruptHandler() { std::signal(SIGINT, OnSigint); }
bool Interrupted() { return g_interrupted.load(std::memory_order_relaxed); }
void ThrowIfInterrupted() {
  if (Interrupted()) Fail("interrupted");
}

Progress::Progress(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)), total_(total), enabled_(enabled), tty_(isatty(STDERR_FILENO) != 0) {
  start_ = last_ = std::chrono::steady_clock::now();
}

Progress::~Progress() {
  if (tty_ && enabled_ && !finished_) std::fputc('\n', stderr);
}

void Progress::Update(int64_t done, const std::string& extra) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  const double since_last = std::chrono::duration<double>(now - last_).count();
  const bool last_step = done >= total_;
  if (!last_step && since_last < (tty_ ? 0.1 : 2.0)) return;
  last_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double frac = total_ > 0 ? double(done) / double(total_) : 1.0;
  const double eta = frac > 0 ? elapsed / frac - elapsed : 0.0;
  if (tty_) {
    constexpr int kWidth = 30;
    const int filled = int(frac * kWidth);
    std::string bar(size_t(filled), '#');
    bar.resize(kWidth, '.');
    fmt::print(stderr, "\r{} [{}] {}/{} {:3.0f}% elapsed {} eta {} {}\x1b[K", label_, bar, done, total_,
               frac * 100, FormatSeconds(elapsed), FormatSeconds(eta), extra);
  } else {
    fmt::print(stderr, "{}: {}/{} ({:.0f}%) elapsed {} eta {} {}\n", label_, done, total_, frac * 100,
               FormatSeconds(elapsed), FormatSeconds(eta), extra);
  }
  std::fflush(stderr);
}

void Progress::Finish() {
  if (!enabled_ || finished_) return;
  finished_ = true;
  if (tty_) std::fputc('\n', stderr);
}

}  // namespace lowbit
