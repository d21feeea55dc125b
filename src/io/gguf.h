// GGUF v2/v3 reader: header, every metadata value type (nested arrays too),
// tensor infos, alignment, and bounds-checked access to tensor data in a
// memory map. Every inconsistency is reported as Error("<file>: <problem>").
// Layout reference: ggml docs/gguf.md (see ../shared/docs/research/llamacpp.md §5).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "core/tensor.h"
#include "formats/format.h"

namespace lowbit {

enum class GgufType : uint32_t {
  kUint8 = 0, kInt8 = 1, kUint16 = 2, kInt16 = 3, kUint32 = 4, kInt32 = 5, kFloat32 = 6,
  kBool = 7, kString = 8, kArray = 9, kUint64 = 10, kInt64 = 11, kFloat64 = 12,
};

// One metadata value. Scalars live in the field matching their kind; arrays
// keep their element type and the elements in `array` (strings, numbers or
// nested arrays alike), so a writer can reproduce the file's exact types.
struct GgufValue {
  GgufType type = GgufType::kUint32;
  GgufType array_type = GgufType::kUint32;  // element type when type == kArray
  uint64_t u = 0;      // unsigned integers and bool
  int64_t i = 0;       // signed integers
  double f = 0;        // floats
  std::string str;     // kString
  std::vector<GgufValue> array;

  bool IsInteger() const;
  bool IsFloat() const;
  // Numeric conversions; throw Error if the value is not numeric.
  int64_t AsInt() const;
  double AsDouble() const;
};

std::string GgufTypeName(GgufType type);

// ggml tensor type ids as they appear in GGUF files.
struct GgmlTypeInfo {
  uint32_t id;
  const char* name;
  int block_size;   // elements per block
  int type_size;    // bytes per block
};
// Returns nullptr for an id that ggml does not define.
const GgmlTypeInfo* FindGgmlType(uint32_t id);
constexpr uint32_t kGgmlF32 = 0, kGgmlF16 = 1, kGgmlBF16 = 30;

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> ne;  // GGUF order: ne[0] is the row length
  uint32_t ggml_type = 0;
  uint64_t offset = 0;       // relative to the data section
  const uint8_t* data = nullptr;
  uint64_t bytes = 0;
};

class GgufFile {
 public:
  // Maps and parses `path`.
  explicit GgufFile(const std::string& path);
  // Parses bytes that the caller keeps alive; `name` is used in errors.
  GgufFile(std::span<const uint8_t> bytes, std::string name);

  const std::string& name() const { return name_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  uint64_t file_size() const { return size_; }

  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* Find(const std::string& key) const;
  bool Has(const std::string& key) const { return Find(key) != nullptr; }

  // Typed getters: throw Error naming the file and key when the key is
  // missing (no default given) or has the wrong type.
  int64_t GetInt(const std::string& key) const;
  int64_t GetInt(const std::string& key, int64_t fallback) const;
  double GetFloat(const std::string& key) const;
  double GetFloat(const std::string& key, double fallback) const;
  std::string GetString(const std::string& key) const;
  std::string GetString(const std::string& key, const std::string& fallback) const;
  std::vector<std::string> GetStringArray(const std::string& key) const;
  std::vector<double> GetFloatArray(const std::string& key) const;
  std::vector<int64_t> GetIntArray(const std::string& key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* FindTensor(const std::string& name) const;

  // A row-major view of an F32/F16/BF16 tensor (shape = reversed ne).
  // Throws Error for other types.
  TensorView View(const GgufTensorInfo& info) const;

 private:
  void Parse();

  std::unique_ptr<MappedFile> map_;
  std::string name_;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::map<std::string, size_t> metadata_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace lowbit
