// study.sh with steps that fail: the other steps still run, each failure is recorded in its step's
// folder (exit status or signal, the end of its log), the report is written and shows it, and the
// study's own exit status says something failed. The programs are stand-ins (small scripts), except
// compare, which is the real one.
#include <sys/stat.h>

#include <filesystem>

#include "experiments/lib/run_record.h"
#include "test_util.h"
#include "unit/file_test_util.h"

using namespace dl;
namespace fs = std::filesystem;

using test::has;
using test::script;

TEST_CASE("study.sh: failed steps are recorded, the rest run, and the report shows them") {
  test::TmpDir tmp;
  const fs::path bin = tmp.dir / "bin", res = tmp.dir / "results";
  fs::create_directories(bin);
  // out_of ARGS: the value after --out
  const std::string out_of = R"(out=""; while [ $# -gt 0 ]; do [ "$1" = --out ] && out=$2; shift; done)";
  script(bin / "eda", out_of + R"(; echo "eda ran" > "$out/ran.txt")");
  script(bin / "scratch_cnn", out_of + R"(; echo "epoch 1/2 loss 0.5" > "$out/log.txt"; echo "error: out of memory in epoch 2" >&2; exit 3)");
  script(bin / "baseline_transfer", "kill -9 $$");
  script(bin / "lr_tuning", "echo lr_tuning ran > \"$(dirname \"$0\")/../lr_ran.txt\"");
  script(bin / "error_analysis", "echo error_analysis ran > \"$(dirname \"$0\")/../ea_ran.txt\"");
  fs::create_symlink(fs::path(test::bin_dir()) / "compare", bin / "compare");
  const fs::path weights = tmp.dir / "w.pth";
  test::write_file(weights.string(), "stand-in");

  auto r = test::run_program({"/bin/bash", test::source_dir() + "/study.sh", "--bin", bin.string(), "--out", res.string(),
                              "--weights", weights.string()},
                             (tmp.dir / "study.log").string());
  INFO(r.output);
  CHECK(r.code == 1);
  CHECK(has(r.output, "these steps failed: scratch_cnn baseline_transfer"));
  // every later step ran
  CHECK(fs::exists(tmp.dir / "lr_ran.txt"));
  CHECK(fs::exists(tmp.dir / "ea_ran.txt"));
  CHECK(fs::exists(res / "eda" / "ran.txt"));

  auto scratch = exp::read_json(res / "scratch_cnn" / "failed.json");
  CHECK(scratch["exit_status"] == 3);
  CHECK(scratch["signal"].is_null());
  CHECK(scratch["log_tail"].dump().find("epoch 1/2 loss 0.5") != std::string::npos);
  CHECK(scratch["stderr_tail"].dump().find("out of memory") != std::string::npos);
  auto transfer = exp::read_json(res / "baseline_transfer" / "failed.json");
  CHECK(transfer["exit_status"] == 137);
  CHECK(transfer["signal"] == 9);
  CHECK_FALSE(fs::exists(res / "eda" / "failed.json"));

  const std::string timings = test::read_file((res / "timings.csv").string());
  CHECK(has(timings, "scratch_cnn,"));
  CHECK(has(timings, ",failed (exit 3)"));
  CHECK(has(timings, ",failed (exit 137)"));

  const std::string md = test::read_file((res / "report" / "report.md").string());
  INFO(md);
  CHECK(has(md, "| Scratch CNN | failed |"));
  CHECK(has(md, "**Scratch CNN failed.** Its step ended with exit status 3"));
  CHECK(has(md, "out of memory in epoch 2"));
  CHECK(has(md, "| Baseline ResNet18 | failed |"));
  CHECK(has(md, "killed by signal 9"));
  CHECK(has(md, "No model has a run whose files agree"));
}
