// study.sh --extended's time budget: when the estimate of the extended steps at the default budgets
// (5 epochs per ablation row, 10 for the rest) exceeds --extended-budget, shorter budgets are
// chosen, the commands carry them, and a rerun into the same folder keeps them (every step is then
// skipped as done). The programs are stand-ins (small scripts) whose --estimate prints a fixed time
// per epoch: 60 s for the study CNN, 20 s for the quarter-size one, 100 s of robustness per CNN.
// Their pick_recipe chooses the seed recipe, whose seeds the best recipe's then copy.
#include <filesystem>

#include "test_util.h"
#include "unit/file_test_util.h"

using namespace dl;
namespace fs = std::filesystem;

using test::has;
using test::script;

TEST_CASE("study.sh --extended-budget steps down the budgets, records them and keeps them on a rerun") {
  test::TmpDir tmp;
  const fs::path bin = tmp.dir / "bin", res = tmp.dir / "results";
  fs::create_directories(bin);
  // args: --out, --epochs (default 10), --channels, --estimate
  const std::string args = R"(out=""; epochs=10; small=0; est=0
for a in "$@"; do case "$prev" in --out) out=$a ;; --epochs) epochs=$a ;; esac
  case "$a" in --channels) small=1 ;; --estimate) est=1 ;; esac; prev=$a; done
)";
  script(bin / "scratch_cnn", args + R"(if [ $est = 1 ]; then
  per=60; [ $small = 1 ] && per=20
  echo "scratch_cnn estimate: stand-in ~ $((per * epochs)) s"; exit 0
fi
mkdir -p "$out"; echo "$epochs" > "$out/epochs.txt"; echo ran >> "$out/runs.txt"; echo '{}' > "$out/metrics.json")");
  script(bin / "robustness", args + R"(if [ $est = 1 ]; then
  echo "robustness estimate: Scratch CNN: stand-in ~ 100 s"; echo "robustness estimate: total ~ 100 s"; fi)");
  script(bin / "calibration", args + R"(if [ $est = 1 ]; then echo "calibration estimate ~ 5 s"; fi)");
  // the seed recipe wins the ablation: the best recipe's seeds are then copies of the seed recipe's
  script(bin / "pick_recipe", args + R"([ $est = 1 ] && exit 0
mkdir -p "$2/recipes"; echo '{"row": "baseline"}' > "$2/recipes/best.json")");
  for (const char* name : {"eda", "ensemble", "error_analysis", "compare", "baseline_transfer", "finetune"})
    script(bin / name, "exit 0");

  auto study = [&](const std::string& budget, const std::string& log) {
    return test::run_program({"/bin/bash", test::source_dir() + "/study.sh", "--extended", "--extended-budget", budget,
                              "--bin", bin.string(), "--out", res.string(), "--weights", (tmp.dir / "none.pth").string()},
                             (tmp.dir / log).string());
  };
  // at 90 minutes: 5/10 is 120 min, 4/8 about 105 min, 3/6 about 78 min (early_stop then not run)
  auto r = study("90", "study.log");
  INFO(r.output);
  REQUIRE(r.code == 0);
  CHECK(has(r.output, "~ 120 min at these budgets, over the time budget of 90 min"));
  CHECK(has(r.output, "at 4 epoch(s) per ablation row and 8 for the other runs: ~ 105 min"));
  CHECK(has(r.output, "chosen: 3 epoch(s) per ablation row, 6 for the other runs"));
  CHECK(test::read_file((res / "extended_plan.txt").string()) == "defaults=5,10 ablation_epochs=3 full_epochs=6\n");
  CHECK(test::read_file((res / "recipes" / "baseline" / "epochs.txt").string()) == "3\n");
  CHECK(fs::exists(res / "recipes" / "early_stop" / "not_run.txt"));
  CHECK_FALSE(fs::exists(res / "recipes" / "early_stop" / "epochs.txt"));
  // the seeds' budget is no longer the study's: the seed recipe's seed 42 is a run of its own
  CHECK(test::read_file((res / "seeds" / "baseline_s42" / "epochs.txt").string()) == "6\n");
  CHECK(test::read_file((res / "seeds" / "best_s44" / "epochs.txt").string()) == "6\n");
  for (const char* seed : {"42", "43", "44"}) {
    const fs::path best = res / "seeds" / (std::string("best_s") + seed);
    CHECK(test::read_file((best / "runs.txt").string()) == "ran\n");  // trained once, as baseline_s<seed>
    CHECK(has(test::read_file((best / "same_run.txt").string()), "seeds/baseline_s" + std::string(seed)));
    CHECK(fs::exists(best / "done.json"));
  }
  CHECK(test::read_file((res / "distill" / "student" / "epochs.txt").string()) == "6\n");
  CHECK(test::read_file((res / "scratch_cnn" / "epochs.txt").string()) == "10\n");

  // a rerun, whatever its budget, repeats the recorded plan: every step is done
  auto r2 = study("1000", "study2.log");
  INFO(r2.output);
  REQUIRE(r2.code == 0);
  CHECK(has(r2.output, "budgets chosen earlier"));
  CHECK(has(r2.output, "recipe_baseline: done earlier, will be skipped"));
  CHECK(test::read_file((res / "recipes" / "baseline" / "runs.txt").string()) == "ran\n");
  CHECK(test::read_file((res / "seeds" / "baseline_s42" / "runs.txt").string()) == "ran\n");
}
