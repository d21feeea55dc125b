// safetensors reader: an 8-byte little-endian header length N, N bytes of
// JSON ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...,
// "__metadata__": {...}}), then the raw little-endian tensor bytes, offsets
// relative to the end of the header. Files are memory-mapped and F32/F16/BF16
// tensors are handed out in place. Every inconsistency is reported as
// Error("<file>: <problem>"). Also reads sharded checkpoints
// (model.safetensors.index.json: {"weight_map": {tensor: shard file}}).
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

struct SafetensorsTensorInfo {
  std::string name;
  std::string dtype;            // as written in the header: "F32", "BF16", "I64", ...
  std::vector<int64_t> shape;   // row-major, outermost first (as in the file)
  uint64_t begin = 0;           // data_offsets, relative to the data section
  uint64_t end = 0;
  const uint8_t* data = nullptr;  // points into the file bytes
  uint64_t bytes() const { return end - begin; }
};

// Bytes per element of a safetensors dtype name, or 0 for a name the format
// does not define.
size_t SafetensorsDTypeSize(const std::string& dtype);
// The lowbit DType of a safetensors dtype, when lowbit can compute with it.
std::optional<DType> SafetensorsToDType(const std::string& dtype);

class SafetensorsFile {
 public:
  // Maps and parses `path`.
  explicit SafetensorsFile(const std::string& path);
  // Parses bytes that the caller keeps alive (fuzzing, tests); `name` is used in errors.
  SafetensorsFile(std::span<const uint8_t> bytes, std::string name);

  const std::string& name() const { return name_; }
  uint64_t header_size() const { return header_size_; }
  uint64_t file_size() const { return size_; }

  // In the order of their data offsets.
  const std::vector<SafetensorsTensorInfo>& tensors() const { return tensors_; }
  const SafetensorsTensorInfo* Find(const std::string& tensor) const;

  // A view of an F32/F16/BF16 tensor in the file bytes; throws Error naming
  // the file, the tensor and its dtype for any other dtype.
  TensorView View(const SafetensorsTensorInfo& info) const;
  // Same, by name; throws Error if the file has no such tensor.
  TensorView View(const std::string& tensor) const;

 private:
  void Parse();

  std::unique_ptr<MappedFile> map_;
  std::string name_;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  uint64_t header_size_ = 0;
  std::vector<SafetensorsTensorInfo> tensors_;
  std::map<std::string, size_t> index_;
};

// A whole checkpoint in a Hugging Face folder: model.safetensors.index.json
// with its shards, or a single model.safetensors (or the folder's one
// .safetensors file under another name).
class SafetensorsCheckpoint {
 public:
  // Throws Error naming `dir` if it holds neither file, or naming the file at fault.
  explicit SafetensorsCheckpoint(const std::string& dir);

  const std::string& dir() const { return dir_; }
  // Every tensor name, sorted.
  std::vector<std::string> TensorNames() const;
  bool Has(const std::string& tensor) const { return where_.count(tensor) != 0; }
  // The file holding `tensor`; throws Error naming the checkpoint if it is absent.
  const SafetensorsFile& FileOf(const std::string& tensor) const;
  const SafetensorsTensorInfo& Info(const std::string& tensor) const;
  TensorView View(const std::string& tensor) const;

  // The open shards, for a model to keep alive while it uses the views.
  const std::vector<std::shared_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  std::string dir_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> where_;  // tensor -> index in files_
};

}  // namespace lowbit
