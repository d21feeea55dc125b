// Where the imatrix method's per-input-channel importance comes from. The
// quantize pipeline only needs a lookup by weight name; LoadImportance reads
// calibration statistics written by `lowbit calibrate` (calib/: the mean
// squared activation of each input channel of every linear layer, llama.cpp's
// imatrix). Tests can supply their own source.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace lowbit {

class ImportanceSource {
 public:
  virtual ~ImportanceSource() = default;
  // Importance of each input channel of weight `name` ("blk.0.attn_q.weight"),
  // or null when the statistics lack it.
  virtual const std::vector<float>* Find(const std::string& name) const = 0;
  virtual std::string description() const = 0;  // e.g. the file name, for errors and metadata
};

// Loads the statistics file `path`; throws Error naming the file when it is
// missing, corrupt, or when calibration support is not built in.
std::unique_ptr<ImportanceSource> LoadImportance(const std::string& path);

}  // namespace lowbit
