// GGUF v3 writer, streaming: metadata and tensor infos are declared first
// (every tensor's size follows from its shape and type), the header is
// written, then each tensor's bytes are appended as they are produced, so a
// writer never holds more than the tensor in hand. Output goes through
// AtomicFileWriter: nothing appears at the path unless Finish() succeeds.
// Layout reference: ggml docs/gguf.md (../shared/docs/research/llamacpp.md §5).
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "formats/format.h"
#include "io/atomic_file.h"
#include "io/gguf.h"

namespace lowbit {

// Metadata value builders (GgufValue keeps each kind in its own field).
GgufValue GgufUint(GgufType type, uint64_t value);  // kUint8/16/32/64
GgufValue GgufInt(GgufType type, int64_t value);    // kInt8/16/32/64
GgufValue GgufFloat(GgufType type, double value);   // kFloat32/64
GgufValue GgufBool(bool value);
GgufValue GgufString(std::string value);
// An array of `element_type`; every element must have that type (nested
// arrays are elements of type kArray).
GgufValue GgufArray(GgufType element_type, std::vector<GgufValue> elements);
GgufValue GgufStringArray(const std::vector<std::string>& values);

constexpr uint32_t kGgufDefaultAlignment = 32;

class GgufWriter {
 public:
  // Creates the temporary output; `alignment` must be a power of two and a
  // multiple of 8. A non-default alignment is recorded as general.alignment.
  explicit GgufWriter(std::string path, uint32_t alignment = kGgufDefaultAlignment);
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;

  // Adds a metadata key (kept in insertion order). Throws on a duplicate key,
  // a value whose type and fields disagree, or after the header is written.
  void Set(const std::string& key, GgufValue value);
  void SetString(const std::string& key, std::string value) { Set(key, GgufString(std::move(value))); }
  void SetUint32(const std::string& key, uint32_t value) { Set(key, GgufUint(GgufType::kUint32, value)); }
  void SetFloat32(const std::string& key, float value) { Set(key, GgufFloat(GgufType::kFloat32, value)); }
  bool Has(const std::string& key) const { return index_.count(key) != 0; }

  // Declares a tensor of a lowbit format; `shape` is row-major (outermost
  // first), written as GGUF ne in reverse. The row length must be a multiple
  // of the format's block size.
  void AddTensor(const std::string& name, const std::vector<int64_t>& shape, const FormatInfo& format);
  // Declares a tensor of any ggml type id or lowbit-private id, by its GGUF
  // dimensions (ne[0] = row length), e.g. to copy tensors without decoding.
  void AddTensor(const std::string& name, const std::vector<uint64_t>& ne, uint32_t gguf_type);

  // Bytes the data of tensor `index` (declaration order) must have.
  uint64_t TensorBytes(size_t index) const { return tensors_[index].bytes; }
  size_t tensor_count() const { return tensors_.size(); }

  // Writes header, metadata and tensor infos. Adds general.quantization_version
  // = 2 when a tensor is quantized and the key is absent. Called by the first
  // WriteTensorData if not called before; nothing may be declared after it.
  void WriteHeader();

  // Appends bytes of the tensors in declaration order. One call may hold a
  // whole tensor or a piece of one, but never cross into the next tensor;
  // each tensor is padded to the alignment once it is complete.
  void WriteTensorData(std::span<const uint8_t> bytes);
  // Name of the tensor the next WriteTensorData feeds ("" when all are done).
  const std::string& next_tensor_name() const;

  // Checks that every tensor is complete, then syncs and renames the file
  // into place. Without Finish() the destructor removes the temporary file.
  void Finish();

  const std::string& path() const { return path_; }

 private:
  struct Tensor {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type = 0;
    uint64_t bytes = 0;
    uint64_t offset = 0;  // within the data section
    bool quantized = false;
  };
  void WriteValue(const std::string& key, const GgufValue& v, int depth);
  void WriteString(const std::string& s);
  void Pad();

  std::string path_;
  uint32_t alignment_;
  AtomicFileWriter out_;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::map<std::string, size_t> index_;
  std::vector<Tensor> tensors_;
  std::map<std::string, size_t> tensor_index_;
  uint64_t data_bytes_ = 0;  // data section size so far (declared)
  bool header_written_ = false;
  size_t current_ = 0;            // tensor being written
  uint64_t current_written_ = 0;  // its bytes so far
};

}  // namespace lowbit
