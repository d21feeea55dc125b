// lowbit compare: the SVG helpers on hand data (ticks, log scale, Pareto
// front), and `lowbit compare` end to end on stories260K with three formats
// and two short chunks (report files, JSON fields and orderings, HTML
// self-contained with its three figures).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "report/plots.h"
#include "report/svg.h"
#include "test_util.h"

namespace lowbit {
namespace {

namespace fs = std::filesystem;
using report::LogTicks;
using report::NiceTicks;
using report::ParetoFront;
using report::Scale;

constexpr const char* kStoriesGguf = "models/stories260K/stories260K-f32.llamacpp.gguf";
constexpr const char* kTinyStories = "data/tinystories/validation-head.txt";

TEST(SvgTest, NiceTicksUseOneTwoFiveSteps) {
  EXPECT_EQ(NiceTicks(0, 10, 5), (std::vector<double>{0, 2, 4, 6, 8, 10}));
  EXPECT_EQ(NiceTicks(0, 1, 4), (std::vector<double>{0, 0.5, 1}));  // raw step 0.25 -> 0.5
  const std::vector<double> t = NiceTicks(-0.37, 0.41, 8);
  ASSERT_FALSE(t.empty());
  EXPECT_GE(t.front(), -0.37);
  EXPECT_LE(t.back(), 0.41);
  for (size_t i = 1; i < t.size(); ++i) EXPECT_NEAR(t[i] - t[i - 1], 0.1, 1e-12);
  EXPECT_EQ(std::count(t.begin(), t.end(), 0.0), 1);  // exact zero, not 1e-17
  EXPECT_EQ(NiceTicks(3, 3, 5), std::vector<double>{3});  // empty range: one tick
}

TEST(SvgTest, LogScaleAndTicks) {
  const Scale s{1e-3, 1e1, 100, 500, true};
  EXPECT_DOUBLE_EQ(s.Map(1e-3), 100);
  EXPECT_DOUBLE_EQ(s.Map(1e1), 500);
  EXPECT_NEAR(s.Map(1e-1), 300, 1e-9);  // decades are equally spaced
  EXPECT_EQ(LogTicks(1e-3, 1e1).size(), 5u);
  EXPECT_NEAR(LogTicks(1e-3, 1e1)[1], 1e-2, 1e-15);
  // Less than a decade: 1-2-5 ticks instead.
  const std::vector<double> narrow = LogTicks(0.15, 0.6);
  EXPECT_EQ(narrow, (std::vector<double>{0.2, 0.5}));
  double lo = 0.0031, hi = 0.42;
  report::LogRange(&lo, &hi);
  EXPECT_DOUBLE_EQ(lo, 1e-3);
  EXPECT_DOUBLE_EQ(hi, 1.0);
  const Scale y{0, 10, 400, 0, false};  // y axes grow upwards
  EXPECT_DOUBLE_EQ(y.Map(2.5), 300);
}

TEST(SvgTest, ParetoFrontOnHandData) {
  //              q8   q6    q4k   q4_0  q5(dominated by q4k) q3   NaN
  std::vector<double> bpw = {8.5, 6.56, 4.5, 4.5, 5.5, 3.4, 2.0};
  std::vector<double> kld = {1e-4, 3e-4, 0.01, 0.02, 0.012, 0.05, NAN};
  EXPECT_EQ(ParetoFront(bpw, kld), (std::vector<size_t>{5, 2, 1, 0}));
  // Equal points: only the first counts; a point equal in x but worse in y is dominated.
  EXPECT_EQ(ParetoFront({1, 1, 2}, {1, 1, 0.5}), (std::vector<size_t>{0, 2}));
  EXPECT_TRUE(ParetoFront({}, {}).empty());
}

// 25 variants in 5 columns of equal size (tiny-llama-random's compare of 5
// formats x 5 methods): label placement once looped forever when
// oy + 12 - oy rounded to just below 12.
TEST(SvgTest, SizeQualityLabelsOfManyEqualSizedVariantsTerminate) {
  const double bpw[] = {4.666387843301268, 4.9240206329290395, 4.0574376132719925, 4.206886937125331,
                        3.207583995538826};
  const double kld[] = {0.35015003244224935, 0.22478388874160354, 0.249418314804428,  0.329761266162903,
                        0.18161662776464388, 0.15355756768313827, 0.08742884943106376, 0.13511919633903954,
                        0.16907023611134867, 0.08457739002430377, 0.32424296866908303, 0.22078973326408047,
                        0.28410054320041495, 0.33042300772393857, 0.22636711132355128, 0.47735315239865617,
                        0.32779111260448696, 0.39395525239529866, 0.42818868120909176, 0.2992327624702115,
                        0.9541237725880425,  0.9173473554755477,  0.8194928403366251,  0.7502846198456246,
                        0.8264954417691872};
  std::vector<report::SizeQualityPoint> points;
  for (int i = 0; i < 25; ++i) {
    std::string label = "v";
    label += std::to_string(i);
    points.push_back({label, bpw[i / 5], kld[i]});
  }
  const std::string svg = report::SizeQualitySvg(points);
  EXPECT_NE(svg.find("v24"), std::string::npos);
}

TEST(SvgTest, EscapingAndPlotsAreSelfContained) {
  EXPECT_EQ(report::XmlEscape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
  const std::string svg = report::SizeQualitySvg({{"q8_0", 8.5, 1e-4}, {"q4_0", 4.5, 0.02}, {"src", 32, 0}});
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("q8_0"), std::string::npos);
  EXPECT_EQ(svg.find("src<"), std::string::npos);  // KLD 0 is off the log axis
  EXPECT_EQ(svg.find("http"), std::string::npos);
  const std::string hist = report::WeightHistogramSvg("w", {-1, 0, 1}, {{"q", {-1, 0, 1}}}, 10);
  EXPECT_NE(hist.find("<polyline"), std::string::npos);
}

std::string Slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

size_t Count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

TEST(CompareTest, Stories260KReport) {
  LOWBIT_REQUIRE_SHARED(kStoriesGguf);
  LOWBIT_REQUIRE_SHARED(kTinyStories);
  const fs::path dir = fs::path(::testing::TempDir()) / "lowbit_compare_test";
  fs::remove_all(dir);
  const std::string cmd = std::string(LOWBIT_BINARY) + " compare " + testing::SharedPath(kStoriesGguf) +
                          " --data " + testing::SharedPath(kTinyStories) +
                          " --formats q8_0,q4_k,q4_0 --ctx 128 --chunks 2 --bench-tokens 8,4 --bench-reps 1 -t 2 -o " +
                          dir.string() + " --json > " + (dir.string() + ".stdout");
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  for (const char* f : {"report.md", "report.json", "report.html"}) EXPECT_TRUE(fs::exists(dir / f)) << f;
  EXPECT_FALSE(fs::exists(dir / "q4_0-rtn.gguf"));  // temp models removed without --keep-models

  const nlohmann::json j = nlohmann::json::parse(Slurp(dir / "report.json"));
  EXPECT_EQ(j["ctx"], 128);
  EXPECT_EQ(j["chunks"], 2);
  EXPECT_EQ(j["histogram_tensor"], "blk.0.attn_q.weight");
  const auto& rows = j["rows"];
  ASSERT_EQ(rows.size(), 4u);
  for (const char* key : {"name", "file_bytes", "bits_per_weight", "ppl", "ppl_delta", "kld_mean", "kld_p99",
                          "top1_agreement", "pp_tokens_per_s", "tg_tokens_per_s", "quantize_seconds",
                          "peak_rss_bytes", "tensors"})
    for (const auto& row : rows) EXPECT_TRUE(row.contains(key)) << key;
  EXPECT_TRUE(rows[0]["source"].get<bool>());
  EXPECT_NEAR(rows[0]["kld_mean"].get<double>(), 0, 1e-4);
  EXPECT_GT(rows[0]["top1_agreement"].get<double>(), 0.99);
  EXPECT_NEAR(rows[0]["bits_per_weight"].get<double>(), 32, 1e-9);
  const double ppl0 = rows[0]["ppl"];
  EXPECT_GT(ppl0, 1);
  EXPECT_LT(ppl0, 100);
  auto row = [&](const std::string& name) {
    for (const auto& r : rows)
      if (r["name"] == name) return r;
    ADD_FAILURE() << "no row " << name;
    return nlohmann::json{};
  };
  const auto q8 = row("q8_0"), q4k = row("q4_k"), q4 = row("q4_0");
  EXPECT_LT(q8["kld_mean"].get<double>(), q4["kld_mean"].get<double>());
  EXPECT_GT(q8["kld_mean"].get<double>(), 0);
  EXPECT_GT(q8["top1_agreement"].get<double>(), q4["top1_agreement"].get<double>() - 0.02);
  EXPECT_GT(q8["bits_per_weight"].get<double>(), q4k["bits_per_weight"].get<double>());
  EXPECT_GT(rows[0]["bits_per_weight"].get<double>(), q8["bits_per_weight"].get<double>());
  EXPECT_GT(q4k["bits_per_weight"].get<double>(), 4);
  EXPECT_LT(q4["file_bytes"].get<uint64_t>(), q8["file_bytes"].get<uint64_t>());
  EXPECT_NEAR(q4["ppl_delta"].get<double>(), q4["ppl"].get<double>() - ppl0, 1e-9);
  ASSERT_FALSE(q4["tensors"].empty());
  for (const auto& t : q4["tensors"]) {
    EXPECT_GT(t["rel_rmse"].get<double>(), 0);
    EXPECT_LT(t["rel_rmse"].get<double>(), 0.5);
  }
  EXPECT_GT(q8["pp_tokens_per_s"].get<double>(), 0);
  EXPECT_GT(q8["tg_tokens_per_s"].get<double>(), 0);
  // --json prints the same document.
  EXPECT_EQ(nlohmann::json::parse(Slurp(dir.string() + ".stdout")), j);

  const std::string html = Slurp(dir / "report.html");
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_EQ(Count(html, "<svg"), 3u);
  EXPECT_EQ(Count(html, "</svg>"), 3u);
  EXPECT_NE(html.find("</html>"), std::string::npos);
  // Self-contained: nothing fetched from anywhere, no scripts.
  for (const char* bad : {"http:", "https:", "<script", "<link", "<img", " src=", "href=", "url(", "@import"})
    EXPECT_EQ(html.find(bad), std::string::npos) << bad;
  const std::string md = Slurp(dir / "report.md");
  EXPECT_EQ(Count(md, "\n| "), 5u);  // header + 4 rows
  EXPECT_NE(md.find("| q4_k |"), std::string::npos);
}

// Calibrated methods: calibration from the text after the evaluated chunks,
// each variant's peak RSS from its own child process, the per-linear
// reconstruction error in the JSON and the Markdown.
TEST(CompareTest, CalibratedMethods) {
  LOWBIT_REQUIRE_SHARED(kStoriesGguf);
  LOWBIT_REQUIRE_SHARED(kTinyStories);
  const fs::path dir = fs::path(::testing::TempDir()) / "lowbit_compare_calibrated";
  fs::remove_all(dir);
  const std::string cmd = std::string(LOWBIT_BINARY) + " compare " + testing::SharedPath(kStoriesGguf) +
                          " --data " + testing::SharedPath(kTinyStories) +
                          " --formats q4_0 --methods rtn,gptq,awq+gptq --ctx 128 --chunks 8 --calib-samples 16"
                          " --bench-tokens 0,0 -t 2 -o " +
                          dir.string() + " --json > " + (dir.string() + ".stdout");
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const nlohmann::json j = nlohmann::json::parse(Slurp(dir / "report.json"));
  EXPECT_NE(j["calibration"].get<std::string>().find("after the 8 evaluated chunks"), std::string::npos)
      << j["calibration"];
  const auto& rows = j["rows"];
  ASSERT_EQ(rows.size(), 4u);
  for (size_t i = 1; i < rows.size(); ++i) {
    EXPECT_TRUE(rows[i]["peak_rss_isolated"].get<bool>());
    EXPECT_GT(rows[i]["peak_rss_bytes"].get<uint64_t>(), 1u << 20);
  }
  EXPECT_EQ(rows[1]["method"], "rtn");
  EXPECT_EQ(rows[2]["method"], "gptq");
  EXPECT_LT(rows[2]["kld_mean"].get<double>(), rows[1]["kld_mean"].get<double>());
  EXPECT_TRUE(rows[2].contains("gptq"));
  int measured = 0;
  for (const auto& t : rows[2]["tensors"])
    if (t["recon_error"].is_number()) {
      EXPECT_GE(t["recon_error"].get<double>(), 0);
      EXPECT_LT(t["recon_error"].get<double>(), 0.5);
      ++measured;
    }
  EXPECT_GE(measured, 25);  // 5 blocks x 6 linears in q4_0 (ffn_down falls back to f16 but is measured too)
  for (const auto& t : rows[1]["tensors"]) EXPECT_TRUE(t["recon_error"].is_null());
  const std::string md = Slurp(dir / "report.md");
  EXPECT_NE(md.find("Reconstruction error per linear"), std::string::npos);
  EXPECT_NE(md.find("| blk.0.attn_q.weight |"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir / "calibration.txt"));
  const std::string html = Slurp(dir / "report.html");
  EXPECT_EQ(Count(html, "<svg"), 4u);  // + the reconstruction-error figure
  EXPECT_NE(html.find("relative output error"), std::string::npos);
}

TEST(CompareTest, BadInputFailsCleanly) {
  LOWBIT_REQUIRE_SHARED(kStoriesGguf);
  LOWBIT_REQUIRE_SHARED(kTinyStories);
  const fs::path dir = fs::path(::testing::TempDir()) / "lowbit_compare_bad";
  const std::string base = std::string(LOWBIT_BINARY) + " compare " + testing::SharedPath(kStoriesGguf) +
                           " --data " + testing::SharedPath(kTinyStories) + " -o " + dir.string() + " --chunks 1 ";
  auto run = [&](const std::string& extra) {
    const std::string out = dir.string() + ".err";
    const int rc = std::system((base + extra + " > /dev/null 2> " + out).c_str());
    return std::make_pair(rc, Slurp(out));
  };
  auto [rc1, err1] = run("--formats q4_k,nosuch");
  EXPECT_NE(rc1, 0);
  EXPECT_NE(err1.find("nosuch"), std::string::npos) << err1;
  auto [rc2, err2] = run("--formats q8_0 --methods bogus");
  EXPECT_NE(rc2, 0);
  EXPECT_NE(err2.find("bogus"), std::string::npos) << err2;
  auto [rc3, err3] = run("--formats q8_0 --tensor blk.99.nope.weight");
  EXPECT_NE(rc3, 0);
  EXPECT_NE(err3.find("blk.99.nope.weight"), std::string::npos) << err3;
}

}  // namespace
}  // namespace lowbit
