// study.sh's resume rule and --extended: each finished step writes done.json; a rerun into the same
// folder skips the finished steps until one runs again (then every later step runs), compare always
// runs; the extended steps run after error_analysis with their --estimate printed first, and
// --extended-only runs only them and compare. The programs are stand-ins (small scripts that log
// each run), except compare, which is the real one.
#include <sys/stat.h>

#include <filesystem>

#include "experiments/lib/run_record.h"
#include "test_util.h"
#include "unit/file_test_util.h"

using namespace dl;
namespace fs = std::filesystem;

namespace {

using test::has;
using test::script;

// The stand-ins: each appends its name to <tmp>/ran.log when it runs (not for --estimate), and fails
// with status 3 while <tmp>/fail_<name> exists.
void stand_ins(const fs::path& tmp) {
  const fs::path bin = tmp / "bin";
  fs::create_directories(bin);
  for (const char* name : {"eda", "scratch_cnn", "baseline_transfer", "lr_tuning", "error_analysis", "pick_recipe",
                           "ensemble", "finetune", "robustness", "calibration"}) {
    std::string n = name;
    script(bin / n, "for a in \"$@\"; do [ \"$a\" = --estimate ] && { echo \"" + n + " estimate: total ~ 1 s\"; exit 0; }; done\n"
                    "[ -f '" + (tmp / ("fail_" + n)).string() + "' ] && exit 3\n"
                    "echo " + n + " >> '" + (tmp / "ran.log").string() + "'");
  }
  fs::create_symlink(fs::path(test::bin_dir()) / "compare", bin / "compare");
  test::write_file((tmp / "w.pth").string(), "stand-in");
}

test::ProgramResult study(const fs::path& tmp, std::vector<std::string> extra) {
  std::vector<std::string> args{"/bin/bash", test::source_dir() + "/study.sh", "--bin", (tmp / "bin").string(),
                                "--out", (tmp / "results").string(), "--weights", (tmp / "w.pth").string()};
  args.insert(args.end(), extra.begin(), extra.end());
  auto r = test::run_program(args, (tmp / "study.log").string());
  fs::remove(tmp / "ran.log.prev");
  if (fs::exists(tmp / "ran.log")) fs::rename(tmp / "ran.log", tmp / "ran.log.prev");
  return r;
}
// What the extended steps run, in order (study.sh's extended_steps): the 9 rows of the recipe
// ablation, pick_recipe, 2 + 3 seed runs, 3 ensembles, the distillation pair, the pair-cost run,
// finetune (the weights file exists), robustness, calibration. (The early_stop row is recorded as
// not run when the rows' budget cannot use its patience: tests/e2e/study_test.cpp, --quick.)
std::string extended_ran() {
  std::string s;
  for (int i = 0; i < 9; ++i) s += "scratch_cnn\n";
  s += "pick_recipe\n";
  for (int i = 0; i < 5; ++i) s += "scratch_cnn\n";
  s += "ensemble\nensemble\nensemble\n";
  for (int i = 0; i < 3; ++i) s += "scratch_cnn\n";
  return s + "finetune\nrobustness\ncalibration\n";
}
std::string ran(const fs::path& tmp) {
  return fs::exists(tmp / "ran.log.prev") ? test::read_file((tmp / "ran.log.prev").string()) : "";
}

}  // namespace

TEST_CASE("study.sh --extended: finished steps are skipped on a rerun, a failed one reruns with every step after it") {
  test::TmpDir tmp;
  stand_ins(tmp.dir);
  const fs::path res = tmp.dir / "results";

  auto r = study(tmp.dir, {"--extended"});
  INFO(r.output);
  REQUIRE(r.code == 0);
  CHECK(ran(tmp.dir) == "eda\nscratch_cnn\nbaseline_transfer\nlr_tuning\nerror_analysis\n" + extended_ran());
  CHECK(has(r.output, "extended steps in all: ~ 0 min"));  // 24 estimates of ~1 s summed
  for (const char* d : {"recipes/baseline", "recipes/early_stop", "recipes/pick", "seeds/baseline_s43", "seeds/best_s44",
                        "ensembles/best_recipe", "distill/student", "cost/pair_cost", "finetune"})
    CHECK_MESSAGE(fs::exists(res / d / "done.json"), d);
  CHECK(has(r.output, "robustness estimate: total"));
  CHECK(has(r.output, "calibration estimate: total"));
  CHECK(r.output.find("estimate: total") < r.output.find("== robustness =="));  // printed before the steps
  auto done = exp::read_json(res / "robustness" / "done.json");
  CHECK(done["step"] == "robustness");
  CHECK(done["command"][0].get<std::string>() == (tmp.dir / "bin" / "robustness").string());
  for (const char* d : {"eda", "scratch_cnn", "baseline_transfer", "lr_tuning", "error_analysis", "calibration", "report"})
    CHECK_MESSAGE(fs::exists(res / d / "done.json"), d);

  // everything done: only compare runs (it is not a stand-in, so it logs nothing)
  r = study(tmp.dir, {"--extended"});
  REQUIRE(r.code == 0);
  CHECK(ran(tmp.dir) == "");
  CHECK(has(r.output, "robustness: done earlier, will be skipped"));
  std::string timings = test::read_file((res / "timings.csv").string());
  CHECK(has(timings, "lr_tuning,0,done earlier (skipped)"));
  CHECK(has(timings, "compare,"));
  CHECK(fs::exists(res / "report" / "report.md"));

  // another command line for a step (a robustness limit): that step and every later one run
  r = study(tmp.dir, {"--extended", "--robustness-limit", "50"});
  REQUIRE(r.code == 0);
  CHECK(ran(tmp.dir) == "robustness\ncalibration\n");

  // lr_tuning's done.json removed: it runs again, and so does every step after it
  fs::remove(res / "lr_tuning" / "done.json");
  r = study(tmp.dir, {"--extended", "--robustness-limit", "50"});
  REQUIRE(r.code == 0);
  CHECK(ran(tmp.dir) == "lr_tuning\nerror_analysis\n" + extended_ran());

  // a failing step leaves no done.json: the next run retries it
  test::write_file((tmp.dir / "fail_robustness").string(), "");
  fs::remove(res / "robustness" / "done.json");
  r = study(tmp.dir, {"--extended", "--robustness-limit", "50"});
  CHECK(r.code == 1);
  CHECK(ran(tmp.dir) == "calibration\n");
  CHECK(fs::exists(res / "robustness" / "failed.json"));
  CHECK_FALSE(fs::exists(res / "robustness" / "done.json"));
  fs::remove(tmp.dir / "fail_robustness");
  r = study(tmp.dir, {"--extended", "--robustness-limit", "50"});
  REQUIRE(r.code == 0);
  CHECK(ran(tmp.dir) == "robustness\ncalibration\n");
  CHECK_FALSE(fs::exists(res / "robustness" / "failed.json"));

  // without --extended the extended steps do not run
  fs::remove(res / "eda" / "done.json");
  r = study(tmp.dir, {});
  REQUIRE(r.code == 0);
  CHECK(ran(tmp.dir) == "eda\nscratch_cnn\nbaseline_transfer\nlr_tuning\nerror_analysis\n");
}

TEST_CASE("study.sh --extended-only runs the extended steps and compare on an existing folder, keeping its timings") {
  test::TmpDir tmp;
  stand_ins(tmp.dir);
  const fs::path res = tmp.dir / "results";
  auto r = study(tmp.dir, {"--extended-only"});
  CHECK(r.code == 2);  // the folder does not exist yet
  CHECK(has(r.output, "--extended-only needs --out"));
  REQUIRE(study(tmp.dir, {}).code == 0);
  r = study(tmp.dir, {"--extended-only"});
  INFO(r.output);
  REQUIRE(r.code == 0);
  CHECK(ran(tmp.dir) == extended_ran());
  std::string timings = test::read_file((res / "timings.csv").string());
  CHECK(has(timings, "scratch_cnn,"));  // the earlier rows stay
  CHECK(has(timings, "robustness,"));
  CHECK(timings.find("compare,") == timings.rfind("compare,"));  // once
}
