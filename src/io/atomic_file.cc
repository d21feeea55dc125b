// AtomicFileWriter: temp file + fsync + rename.
#include "io/atomic_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace lowbit {

AtomicFileWriter::AtomicFileWriter(std::string path)
    : path_(std::move(path)), tmp_path_(path_ + ".tmp-" + std::to_string(::getpid())) {
  file_ = std::fopen(tmp_path_.c_str(), "wb");
  if (file_ == nullptr) Fail("{}: cannot create output: {}", path_, std::strerror(errno));
}

AtomicFileWriter::~AtomicFileWriter() {
  if (file_ != nullptr) std::fclose(file_);
  if (!committed_) std::remove(tmp_path_.c_str());
}

void AtomicFileWriter::Write(const void* data, size_t bytes) {
  if (bytes == 0) return;
  if (std::fwrite(data, 1, bytes, file_) != bytes) Fail("{}: write failed: {}", path_, std::strerror(errno));
  written_ += bytes;
}

void AtomicFileWriter::Commit() {
  if (std::fflush(file_) != 0 || ::fsync(::fileno(file_)) != 0)
    Fail("{}: write failed: {}", path_, std::strerror(errno));
  std::fclose(file_);
  file_ = nullptr;
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0)
    Fail("{}: cannot rename the finished output into place: {}", path_, std::strerror(errno));
  committed_ = true;
}

}  // namespace lowbit
