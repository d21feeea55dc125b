// Memory for data read as long sequential streams (packed weights, the
// bandwidth probe): 64-byte aligned, and from a megabyte up in 2 MiB
// transparent huge pages (madvise), because the hardware prefetchers stop at
// every 4 KiB page boundary of a stream.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <memory>

namespace lowbit {

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
template <class T>
using StreamBuffer = std::unique_ptr<T[], FreeDeleter>;

// Uninitialized; throws Error when out of memory. `what` names the buffer in the message.
void* AllocateStream(size_t bytes, const char* what);

template <class T>
StreamBuffer<T> MakeStreamBuffer(size_t count, const char* what) {
  return StreamBuffer<T>(static_cast<T*>(AllocateStream(count * sizeof(T), what)));
}

}  // namespace lowbit
