// Progress reporting for long jobs: a redrawn bar with ETA on a terminal,
// plain "label: i/n" lines (at most one per ~2 s) when stderr is not a TTY.
// Also owns the Ctrl-C flag that long loops poll to stop cleanly.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace lowbit {

class Progress {
 public:
  Progress(std::string label, int64_t total, bool enabled = true);
  ~Progress();
  void Update(int64_t done, const std::string& extra = "");
  void Finish();

 private:
  std::string label_;
  int64_t total_;
  bool enabled_;
  bool tty_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_;
};

// Installs a SIGINT handler that sets a flag (a second Ctrl-C kills).
void InstallInterruptHandler();
bool Interrupted();
// Throws Error("interrupted") if Ctrl-C was pressed.
void ThrowIfInterrupted();

}  // namespace lowbit
