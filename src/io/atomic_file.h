// Atomic output: bytes go to "<path>.tmp-<pid>" and are renamed over `path`
// only on Commit(), so a failed or interrupted run never leaves a partial file.
#pragma once

#include <cstdio>
#include <string>

namespace lowbit {

class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path);  // throws Error naming the path
  ~AtomicFileWriter();                          // removes the temporary unless committed
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void Write(const void* data, size_t bytes);
  template <typename T>
  void WritePod(const T& value) { Write(&value, sizeof(T)); }
  uint64_t bytes_written() const { return written_; }
  void Commit();  // flush, fsync, rename

 private:
  std::string path_;
  std::string tmp_path_;
  std::FILE* file_ = nullptr;
  uint64_t written_ = 0;
  bool committed_ = false;
};

}  // namespace lowbit
