// `lowbit sensitivity MODEL --data FILE --format F[,F2...] [--samples N]
//  [--seq-len L] [--seed S] [-o RANKING.json] [--json]`: quantizes one tensor
// at a time to F (the others stay as in the source), measures the mean KLD
// against the unmodified model on calibration windows, and prints and saves
// the ranking (most sensitive first). See quant/sensitivity.h.
#include <fmt/format.h>

#include "cli/commands.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "quant/sensitivity.h"

namespace lowbit::cli {

Runner AddSensitivityCommand(CLI::App& app) {
  struct Options {
    ModelOptions model;
    std::string data;
    std::string formats;
    int samples = kSensitivitySamples;
    int seq_len = 0;
    uint64_t seed = 0;
    std::string out;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd =
      app.add_subcommand("sensitivity", "Rank tensors by the KLD that quantizing each one alone causes");
  AddModelOptions(*cmd, &o->model);
  cmd->add_option("--data,-f", o->data, "calibration text file")->required();
  cmd->add_option("--format", o->formats, "weight format(s) to quantize each tensor to (comma-separated)")
      ->required();
  cmd->add_option("--samples,-n", o->samples, "calibration windows (default 8)")->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--seq-len,--ctx,-c", o->seq_len, "tokens per window (default: min(128, model context))")
      ->check(CLI::Range(2, 1 << 20));
  cmd->add_option("--seed", o->seed, "seed of the window offsets");
  cmd->add_option("-o,--output", o->out, "ranking JSON file to write");
  cmd->add_flag("--json", o->json, "print the ranking as JSON");
  return [o] {
    const std::vector<const FormatInfo*> formats = ParseFormatList(o->formats, "--format");
    const std::unique_ptr<Model> model = OpenModel(o->model);
    const KldProbe probe = MakeCalibrationProbe(*model, ReadDataFile(o->data), o->data, o->samples, o->seq_len,
                                                o->seed, MakeSessionOptions(o->model));
    SensitivityRanking ranking = MeasureSensitivity(*model, probe, formats, o->model.threads, !o->json);
    ranking.data = o->data;
    if (!o->out.empty()) {
      const std::string json = ranking.ToJson() + "\n";
      AtomicFileWriter file(o->out);
      file.Write(json.data(), json.size());
      file.Commit();
    }
    if (o->json) {
      PrintJson(ranking.ToJson());
    } else {
      fmt::print("{}", ranking.ToTable());
      if (!o->out.empty()) fmt::print("wrote {}\n", o->out);
    }
  };
}

}  // namespace lowbit::cli
