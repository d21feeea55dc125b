#include "quant/importance.h"

#include "core/error.h"

#if defined(LOWBIT_QUANT_HAVE_CALIB) && __has_include("calib/stats.h")
#include "calib/stats.h"
#define LOWBIT_QUANT_CALIB 1
#endif

namespace lowbit {

#ifdef LOWBIT_QUANT_CALIB
namespace {

// ActivationStats::Load may return the stats or a pointer to them.
using StatsHolder = decltype(ActivationStats::Load(std::string()));
template <typename T>
const ActivationStats& Deref(const T& t) {
  if constexpr (requires { *t; })
    return *t;
  else
    return t;
}

class StatsImportance final : public ImportanceSource {
 public:
  StatsImportance(std::string path, StatsHolder stats) : path_(std::move(path)), stats_(std::move(stats)) {}
  const std::vector<float>* Find(const std::string& name) const override {
    const LinearInputStats* s = Deref(stats_).Find(name);
    return s == nullptr ? nullptr : &s->mean_sq;
  }
  std::string description() const override { return path_; }

 private:
  std::string path_;
  StatsHolder stats_;
};

}  // namespace

std::unique_ptr<ImportanceSource> LoadImportance(const std::string& path) {
  return std::make_unique<StatsImportance>(path, ActivationStats::Load(path));
}
#else
std::unique_ptr<ImportanceSource> LoadImportance(const std::string& path) {
  Fail("{}: cannot read activation statistics: this lowbit was built without calib/ (lowbit calibrate)", path);
}
#endif

}  // namespace lowbit
