// compare, the study's report: what it says about runs that failed, were not run, lack fields or
// whose files disagree, and that its macro-F1 difference is the one compare_macro_f1 computes; a
// mixed-precision run is labelled.
#include <filesystem>
#include <fstream>

#include "experiments/lib/metrics.h"
#include "experiments/lib/run_record.h"
#include "tensor/generator.h"
#include "test_util.h"
#include "unit/file_test_util.h"

using namespace dl;
using namespace dl::exp;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::vector<std::string> kNames{"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"};

// A run folder with n test images, `wrong_every`-th prediction wrong, written as the programs do.
std::vector<Prediction> write_run(const fs::path& dir, int64_t n, int64_t wrong_every, uint64_t seed, json extra) {
  fs::create_directories(dir);
  Generator g(seed);
  std::vector<Prediction> preds;
  std::vector<int64_t> labels, guesses;
  for (int64_t i = 0; i < n; ++i) {
    Prediction p;
    p.index = i;
    p.label = i % 10;
    p.prediction = (i % wrong_every == 0) ? static_cast<int64_t>(g.below(10)) : p.label;
    p.probs.assign(10, 0.1f);
    preds.push_back(p);
    labels.push_back(p.label);
    guesses.push_back(p.prediction);
  }
  Metrics m = compute_metrics(labels, guesses, 10);
  json j = extra;
  j["test"] = m.to_json(kNames);
  j["class_names"] = kNames;
  write_json(dir / "metrics.json", j);
  write_confusion(dir / "confusion.csv", m.confusion, kNames);
  write_predictions(dir / "predictions.csv", preds);
  return preds;
}

std::string run_compare(const fs::path& results) {
  auto r = test::run_program({test::bin_dir() + "/compare", "--results", results.string()},
                             (results / "compare.log").string());
  INFO(r.output);
  REQUIRE(r.code == 0);
  return test::read_file((results / "report" / "report.md").string());
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// A model description with every field the report's table reads (strategy "S", 2 epochs at 1e-3).
json model_description() {
  return {{"epochs", 2}, {"learning_rate", 0.001}, {"architecture", "A"}, {"training_strategy", "S"},
          {"params_total", 10}, {"params_trained", 10}};
}

}  // namespace

TEST_CASE("compare: a failed step is shown as failed with its reason, a missing field as missing") {
  test::TmpDir tmp;
  fs::path res = tmp.dir;
  // scratch_cnn: a run whose record lacks epochs, learning rate and parameter counts
  write_run(res / "scratch_cnn", 500, 7, 1, {{"display_name", "Scratch CNN"}, {"architecture", "CNN"}});
  // baseline_transfer failed: study.sh's record
  fs::create_directories(res / "baseline_transfer");
  write_json(res / "baseline_transfer" / "failed.json",
             {{"step", "baseline_transfer"}, {"exit_status", 3}, {"signal", nullptr}, {"command", {"x"}},
              {"log_tail", {"epoch 1", "error: the disk is full"}}, {"stderr_tail", json::array()}});
  // its folder also holds a stale metrics.json: failed wins
  write_run(res / "baseline_transfer", 500, 3, 2, {{"epochs", 3}});
  fs::create_directories(res / "lr_tuning");
  test::write_file((res / "lr_tuning" / "not_run.txt").string(), "skipped by study.sh: no weights\n");
  test::write_file((res / "timings.csv").string(),
                   "step,seconds,status\nscratch_cnn,5,ok\nbaseline_transfer,2,failed (exit 3)\nlr_tuning,0,skipped\n");

  const std::string md = run_compare(res);
  INFO(md);
  CHECK(has(md, "| Baseline ResNet18 | failed |"));
  CHECK(has(md, "**Baseline ResNet18 failed.** Its step ended with exit status 3"));
  CHECK(has(md, "error: the disk is full"));
  CHECK(has(md, "**Steps that failed**: baseline_transfer (failed (exit 3))"));
  CHECK(has(md, "| Tuned ResNet18 | not run |"));
  CHECK(has(md, "Baseline ResNet18 failed, so no claim is made about it"));
  // the scratch row: fields the record lacks say "missing", not 0
  auto row_at = md.find("| Scratch CNN |");
  REQUIRE(row_at != std::string::npos);
  std::string row = md.substr(row_at, md.find('\n', row_at) - row_at);
  CHECK(has(row, "| CNN | missing | missing | missing | missing | missing |"));
  CHECK_FALSE(has(row, "| 0 |"));
  CHECK(has(md, "Scratch CNN's epochs are missing from its record"));
  CHECK(has(md, "Only model with a usable run"));
}

TEST_CASE("compare: a run whose files disagree is flagged and kept out of comparisons and conclusions") {
  test::TmpDir tmp;
  fs::path res = tmp.dir;
  const json desc = model_description();
  write_run(res / "scratch_cnn", 400, 5, 3, desc);
  auto preds = write_run(res / "baseline_transfer", 400, 2, 4, desc);
  // the best run on paper, but its confusion matrix does not match its predictions
  write_run(res / "lr_tuning", 400, 50, 5, desc);
  preds = read_predictions(res / "lr_tuning" / "predictions.csv");
  preds[0].prediction = (preds[0].prediction + 1) % 10;
  write_predictions(res / "lr_tuning" / "predictions.csv", preds);

  const std::string md = run_compare(res);
  INFO(md);
  CHECK(has(md, "Tuned ResNet18: the run's files disagree"));
  CHECK(has(md, "differs from confusion.csv"));
  CHECK(has(md, "| Tuned ResNet18 (files disagree) |"));
  CHECK(has(md, "Tuned ResNet18's files disagree with each other, so no claim is made about it"));
  // not compared with anything, and not the best model although its accuracy is the highest
  CHECK_FALSE(has(md, "| Tuned ResNet18 − "));
  CHECK_FALSE(has(md, "Best model**: Tuned ResNet18"));
  CHECK(has(md, "**Best model**: Scratch CNN"));
  CHECK(has(md, "| Baseline ResNet18 − Scratch CNN |"));
}

TEST_CASE("compare: the macro-F1 difference in the report is compare_macro_f1's, and the accuracy one compare_paired's") {
  test::TmpDir tmp;
  fs::path res = tmp.dir;
  json desc = {{"epochs", 1}, {"learning_rate", 0.01}};
  auto a = write_run(res / "baseline_transfer", 600, 3, 6, desc);
  auto b = write_run(res / "scratch_cnn", 600, 4, 7, desc);
  const std::string md = run_compare(res);
  INFO(md);
  std::vector<int64_t> labels, pa, pb;
  std::vector<uint8_t> ca, cb;
  for (size_t i = 0; i < a.size(); ++i) {
    labels.push_back(a[i].label);
    pa.push_back(a[i].prediction);
    pb.push_back(b[i].prediction);
    ca.push_back(a[i].prediction == a[i].label);
    cb.push_back(b[i].prediction == b[i].label);
  }
  // compare's settings: 500 F1 resamples and 2,000 accuracy resamples, seed 2024
  F1Difference f1 = compare_macro_f1(labels, pa, pb, 10, 500, 2024);
  PairedComparison pc = compare_paired(ca, cb, 2000, 2024);
  CHECK(f1.diff != 0.0);
  const std::string f1_cell = fmt::format("{:+.4f} [{:+.4f}, {:+.4f}]", f1.diff, f1.ci_low, f1.ci_high);
  const std::string acc_cell = fmt::format("{:+.2f} pp [{:+.2f}, {:+.2f}]", 100 * pc.diff, 100 * pc.ci_low, 100 * pc.ci_high);
  INFO("expected cells: ", f1_cell, " and ", acc_cell);
  CHECK(has(md, "| Baseline ResNet18 − Scratch CNN | " + acc_cell + " | " + f1_cell + " |"));
  // and the difference itself is the difference of the two runs' recorded macro F1
  json ma = read_json(res / "baseline_transfer" / "metrics.json"), mb = read_json(res / "scratch_cnn" / "metrics.json");
  CHECK(f1.diff == doctest::Approx(ma["test"]["macro"]["f1"].get<double>() - mb["test"]["macro"]["f1"].get<double>())
                       .epsilon(1e-12));
}

namespace {
// A robustness record as the robustness program writes it: every corruption at `acc` - 0.05 * severity.
json robustness_record(const std::string& key, double clean, double acc, int64_t images) {
  json j{{"model", key}, {"images", images}, {"clean_accuracy", clean}};
  std::vector<double> by_sev(5, 0.0);
  double all = 0;
  for (const char* c : {"gaussian_noise", "blur", "contrast", "brightness", "rotation", "translation", "occlusion"}) {
    std::vector<double> a;
    for (int s = 0; s < 5; ++s) {
      double v = acc - 0.05 * s - (std::string(c) == "contrast" ? 0.2 : 0.0);
      a.push_back(v);
      by_sev[s] += v / 7;
      all += v / 35;
    }
    j["corruptions"][c] = {{"accuracy", a}};
  }
  j["mean_by_severity"] = by_sev;
  j["mean_corruption_accuracy"] = all;
  j["relative_mean_corruption_accuracy"] = all / clean;
  return j;
}
json calibration_record(double t, double ece_before, double ece_after) {
  return {{"temperature", {{"value", t}, {"validation_images", 500}, {"at_bound", false}}},
          {"test", {{"before", {{"ece", ece_before}, {"nll", 0.5}, {"count", 1000}}}, {"after", {{"ece", ece_after}, {"nll", 0.4}, {"count", 1000}}}}},
          {"recorded", {{"ece", ece_before}}}};
}
}  // namespace

TEST_CASE("compare: the robustness and calibration sections show the records, not-run models, and computed conclusions") {
  test::TmpDir tmp;
  fs::path res = tmp.dir;
  write_run(res / "scratch_cnn", 500, 7, 1, {{"epochs", 2}});
  write_run(res / "baseline_transfer", 500, 5, 2, {{"epochs", 3}});
  // no extended records at all: no sections
  std::string plain = run_compare(res);
  CHECK_FALSE(has(plain, "## Robustness"));
  CHECK_FALSE(has(plain, "## Calibration"));

  fs::create_directories(res / "robustness" / "scratch_cnn");
  fs::create_directories(res / "robustness" / "baseline_transfer");
  fs::create_directories(res / "calibration" / "scratch_cnn");
  fs::create_directories(res / "calibration" / "baseline_transfer");
  auto write_records = [&](double scratch_acc, double baseline_acc, double scratch_ece, double baseline_ece) {
    write_json(res / "robustness" / "scratch_cnn" / "robustness.json", robustness_record("scratch_cnn", 0.9, scratch_acc, 300));
    write_json(res / "robustness" / "baseline_transfer" / "robustness.json",
               robustness_record("baseline_transfer", 0.85, baseline_acc, 300));
    write_json(res / "calibration" / "scratch_cnn" / "calibration.json", calibration_record(1.5, 0.08, scratch_ece));
    write_json(res / "calibration" / "baseline_transfer" / "calibration.json", calibration_record(0.7, 0.05, baseline_ece));
  };
  write_records(0.7, 0.6, 0.02, 0.03);
  std::string md = run_compare(res);
  INFO(md);
  CHECK(has(md, "## Robustness"));
  CHECK(has(md, "## Calibration"));
  CHECK(has(md, "| Tuned ResNet18 | not run |"));
  // scratch: mean over 35 = 0.7 - 0.1 - 0.2/7
  CHECK(has(md, fmt::format("| Scratch CNN | 300 | 90.00% | {:.2f}% |", 100 * (0.7 - 0.1 - 0.2 / 7))));
  CHECK(has(md, "contrast"));
  CHECK(has(md, "**Most robust (mean corruption accuracy)**: Scratch CNN"));
  CHECK(has(md, "Scratch CNN's hardest corruption is contrast"));
  CHECK(has(md, "**Best calibrated after temperature scaling (test ECE)**: Scratch CNN with 0.0200"));
  CHECK(has(md, "Temperature scaling lowered the test ECE of Baseline ResNet18 (0.0500 → 0.0300), Scratch CNN (0.0800 → 0.0200)"));

  // the other way round: the conclusions follow the numbers
  write_records(0.5, 0.6, 0.04, 0.01);
  md = run_compare(res);
  CHECK(has(md, "**Most robust (mean corruption accuracy)**: Baseline ResNet18"));
  CHECK(has(md, "**Best calibrated after temperature scaling (test ECE)**: Baseline ResNet18 with 0.0100"));

  // a record that lacks a field shows "missing"; a failed step is said
  json broken = robustness_record("scratch_cnn", 0.9, 0.7, 300);
  broken.erase("clean_accuracy");
  write_json(res / "robustness" / "scratch_cnn" / "robustness.json", broken);
  write_json(res / "calibration" / "failed.json", {{"step", "calibration"}, {"exit_status", 1}});
  fs::remove_all(res / "calibration" / "scratch_cnn");
  fs::remove(res / "calibration" / "baseline_transfer" / "calibration.json");
  write_json(res / "calibration" / "baseline_transfer" / "failed.json",
             {{"model", "baseline_transfer"}, {"error", "the weights | are missing"}});
  md = run_compare(res);
  CHECK(has(md, "| Scratch CNN | 300 | missing |"));
  CHECK(has(md, "**The calibration step failed**"));
  CHECK(has(md, "| Scratch CNN | step failed |"));
  CHECK(has(md, "| Baseline ResNet18 | failed: the weights   are missing |"));
  CHECK_FALSE(has(md, "Best calibrated after temperature scaling"));
  // a failed step's records that are there are shown (the programs write only this run's)
  fs::create_directories(res / "calibration" / "scratch_cnn");
  write_json(res / "calibration" / "scratch_cnn" / "calibration.json", calibration_record(1.5, 0.08, 0.02));
  md = run_compare(res);
  CHECK(has(md, "| Scratch CNN | 1.500 |"));
  CHECK(has(md, "**The calibration step failed**"));
}

TEST_CASE("compare: a run trained with --precision bf16 says so next to its training strategy") {
  test::TmpDir tmp;
  fs::path res = tmp.dir;
  const json desc = model_description();
  write_run(res / "scratch_cnn", 200, 5, 3, desc);
  write_json(res / "scratch_cnn" / "config.json", json{{"precision", "bf16"}, {"epochs", 2}});
  write_run(res / "baseline_transfer", 200, 4, 4, desc);
  write_json(res / "baseline_transfer" / "config.json", json{{"precision", "fp32"}, {"epochs", 2}});
  const std::string md = run_compare(res);
  INFO(md);
  CHECK(has(md, "| S; bf16 mixed precision |"));
  CHECK(has(md, "| S | 0.001 |"));  // the float32 run's cell is unchanged
}
