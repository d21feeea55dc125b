// Read-only memory map of a whole file. Model weights are used in place from
// the map; nothing is copied unless a conversion is needed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace lowbit {

class MappedFile {
 public:
  // Throws Error naming the path if it cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const uint8_t> bytes() const { return {data_, size_}; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Drops the resident pages of [data, data + bytes) when that range lies in a
// read-only file mapping (checked in /proc/self/maps); they are re-read from
// the file if touched again. Owned (heap) memory is never touched. Keeps the
// peak RSS of streaming jobs near one tensor.
void ReleaseFilePages(const void* data, size_t bytes);

// Reads a whole file into a string; throws Error naming the path.
std::string ReadFileToString(const std::string& path);

}  // namespace lowbit
