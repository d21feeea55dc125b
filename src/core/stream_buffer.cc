#include "core/stream_buffer.h"

#include <sys/mman.h>

#include <algorithm>

#include "core/error.h"

namespace lowbit {

void* AllocateStream(size_t bytes, const char* what) {
  constexpr size_t kHuge = size_t(2) << 20;
  const bool huge = bytes >= (size_t(1) << 20);
  const size_t align = huge ? kHuge : 64;
  const size_t rounded = (std::max<size_t>(bytes, 1) + align - 1) & ~(align - 1);
  void* p = std::aligned_alloc(align, rounded);
  if (p == nullptr) Fail("{}: out of memory allocating {} bytes", what, rounded);
  if (huge) ::madvise(p, rounded, MADV_HUGEPAGE);  // a hint: failure only costs speed
  return p;
}

}  // namespace lowbit
