// End to end: ./study.sh --quick with a randomly initialised torchvision-format checkpoint standing
// in for the ImageNet weights; every artefact exists, the run files agree with each other, and
// compare marks a deleted run as not run; with --extended, the robustness and calibration records
// exist and agree with themselves and with the runs, and a second study.sh into the same folder
// skips every finished step. Then: a training run killed with SIGKILL and resumed
// ends with exactly the metrics of an uninterrupted run.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "experiments/lib/metrics.h"
#include "experiments/lib/run_record.h"
#include "test_util.h"

using namespace dl;
namespace fs = std::filesystem;

namespace {

// appending to the log: a resumed run adds to the first part's
pid_t spawn(const std::vector<std::string>& args, const fs::path& log) { return test::spawn_program(args, log, true); }
int wait_for(pid_t pid) { return test::wait_program(pid); }
int run(const std::vector<std::string>& args, const fs::path& log) { return wait_for(spawn(args, log)); }

std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

size_t data_rows(const fs::path& csv) {
  std::ifstream f(csv);
  std::string line;
  size_t n = 0;
  while (std::getline(f, line))
    if (!line.empty()) ++n;
  return n ? n - 1 : 0;
}

void check_model_run(const fs::path& run, int64_t epochs) {
  INFO("run folder ", run.string());
  for (const char* f : {"config.json", "history.csv", "metrics.json", "confusion.csv", "predictions.csv", "best.ckpt",
                        "last.ckpt", "log.txt"})
    CHECK_MESSAGE(fs::exists(run / f), f << " is missing");
  CHECK(data_rows(run / "history.csv") == static_cast<size_t>(epochs));
  auto metrics = exp::read_json(run / "metrics.json");
  auto conf = exp::read_confusion(run / "confusion.csv");
  auto m = exp::metrics_from_confusion(conf);
  CHECK(metrics["test"]["accuracy"].get<double>() == doctest::Approx(m.accuracy).epsilon(1e-12));
  CHECK(metrics["test"]["count"].get<int64_t>() == m.count);
  CHECK(metrics["test"]["macro"]["f1"].get<double>() == doctest::Approx(m.macro.f1).epsilon(1e-12));
  CHECK(data_rows(run / "predictions.csv") == static_cast<size_t>(m.count));
  CHECK(metrics["epochs"].get<int64_t>() == epochs);
}

// The extended study's records (robustness, calibration) for one model: present and consistent.
void check_extended(const fs::path& r, const std::string& m) {
  INFO("model ", m);
  fs::path rob = r / "robustness" / m, cal = r / "calibration" / m;
  for (const fs::path& f : {rob / "robustness.json", rob / "robustness.csv", cal / "calibration.json", cal / "reliability.png"})
    CHECK_MESSAGE(fs::exists(f), f.string() << " is missing");
  if (!fs::exists(rob / "robustness.json") || !fs::exists(cal / "calibration.json")) return;
  auto j = exp::read_json(rob / "robustness.json");
  const int64_t n = j["images"].get<int64_t>();
  CHECK(n == 300);  // --quick: --limit 300
  CHECK(j["clean_accuracy"].get<double>() == doctest::Approx(j["clean_correct"].get<double>() / n));
  CHECK(data_rows(rob / "robustness.csv") == 1 + 7 * 5);
  double sum = 0;
  int count = 0;
  for (auto& [name, c] : j["corruptions"].items()) {
    REQUIRE(c["accuracy"].size() == 5);
    for (int s = 0; s < 5; ++s) {
      double a = c["accuracy"][s].get<double>();
      CHECK(a >= 0.0);
      CHECK(a <= 1.0);
      CHECK(a == doctest::Approx(c["correct"][s].get<double>() / n));
      sum += a;
      ++count;
    }
  }
  CHECK(count == 35);
  CHECK(j["mean_corruption_accuracy"].get<double>() == doctest::Approx(sum / 35).epsilon(1e-12));

  auto c = exp::read_json(cal / "calibration.json");
  auto metrics = exp::read_json(r / m / "metrics.json");
  CHECK(c["test"]["before"]["count"].get<int64_t>() == metrics["test"]["count"].get<int64_t>());
  CHECK(c["test"]["before"]["accuracy"].get<double>() == doctest::Approx(metrics["test"]["accuracy"].get<double>()).epsilon(1e-12));
  CHECK(c["test"]["after"]["accuracy"].get<double>() == c["test"]["before"]["accuracy"].get<double>());  // T keeps the argmax
  CHECK(c["check_against_predictions_csv"]["predictions_differing"].get<int64_t>() == 0);
  CHECK(c["check_against_predictions_csv"]["max_abs_probability_difference"].get<double>() < 1e-4);
  // the recorded probabilities (6 significant digits) give the same ECE as the recomputed logits
  CHECK(c["recorded"]["ece"].get<double>() == doctest::Approx(c["test"]["before"]["ece"].get<double>()).epsilon(1e-3));
  double t = c["temperature"]["value"].get<double>();
  CHECK(t > 0.05);
  CHECK(t < 20);
  CHECK(c["temperature"]["validation_nll_at_T"].get<double>() <= c["temperature"]["validation_nll_at_1"].get<double>());
  CHECK(c["temperature"]["validation_images"].get<int64_t>() == 500);  // --quick: --val-limit 500
}

}  // namespace

TEST_CASE("study.sh --quick --onnx --extended produces every artefact, consistent, and compare marks a deleted run") {
  fs::path src = test::source_dir(), bin = test::bin_dir();
  fs::path weights = test::fixtures_dir() + "/resnet18_random.pth";
  REQUIRE_MESSAGE(fs::exists(weights), "stand-in weights missing: " << weights);
  fs::path out = fs::temp_directory_path() / ("dl_e2e_study_" + std::to_string(getpid()));
  fs::remove_all(out);
  fs::create_directories(out);
  int rc = run({"/bin/bash", (src / "study.sh").string(), "--quick", "--bin", bin.string(), "--weights",
                weights.string(), "--stand-in-weights", "--onnx", "--extended", "--out", (out / "results").string()},
               out / "study.log");
  INFO("study.sh log:\n", slurp(out / "study.log"));
  REQUIRE(rc == 0);
  fs::path r = out / "results";
  for (const char* f : {"eda/summary.json", "eda/samples.png", "eda/class_means.png", "lr_tuning/sweep.csv",
                        "report/report.md", "report/curves.png", "report/bars.png", "report/lr_sweep.png",
                        "timings.csv"})
    CHECK_MESSAGE(fs::exists(r / f), f << " is missing");
  check_model_run(r / "scratch_cnn", 2);
  check_model_run(r / "baseline_transfer", 3);
  check_model_run(r / "lr_tuning", 3);
  for (const char* m : {"scratch_cnn", "baseline_transfer", "lr_tuning"})
    for (const char* f : {"confusion.png", "misclassified.png", "gradcam.png", "confused_pairs.csv"})
      CHECK_MESSAGE(fs::exists(r / "error_analysis" / m / f), m << "/" << f << " is missing");
  for (const char* m : {"scratch_cnn", "baseline_transfer", "lr_tuning"})  // --onnx: exported, re-imported, checked
    CHECK_MESSAGE((fs::exists(r / m / "model.onnx") && fs::file_size(r / m / "model.onnx") > 100000),
                  m << "/model.onnx is missing or small");
  std::string report = slurp(r / "report" / "report.md");
  CHECK(report.find("stand-in") != std::string::npos);
  CHECK(report.find("| not run |") == std::string::npos);
  CHECK(report.find("McNemar") != std::string::npos);
  // --extended: the robustness and calibration steps, their records and report sections
  for (const char* f : {"robustness/samples.png", "robustness/robustness.png", "robustness/done.json",
                        "calibration/done.json"})
    CHECK_MESSAGE(fs::exists(r / f), f << " is missing");
  for (const char* m : {"scratch_cnn", "baseline_transfer", "lr_tuning"}) check_extended(r, m);
  CHECK(report.find("## Robustness") != std::string::npos);
  CHECK(report.find("## Calibration") != std::string::npos);
  CHECK(report.find("Most robust (mean corruption accuracy)") != std::string::npos);
  CHECK(report.find("Best calibrated after temperature scaling") != std::string::npos);
  std::string log = slurp(out / "study.log");
  CHECK(log.find("robustness estimate: total") != std::string::npos);
  CHECK(log.find("extended steps in all: ~") != std::string::npos);

  // the training experiments: every run folder complete, one split for all, the recipe chosen on
  // validation, ensembles checked against their members, the teacher and the distillation pair,
  // the pair-cost run, fine-tuning; each evaluated by robustness and calibration, each in the report
  for (const char* m : {"recipes/baseline", "recipes/crop_flip", "recipes/cosine", "recipes/mix"}) check_model_run(r / m, 1);
  CHECK(fs::exists(r / "recipes" / "early_stop" / "not_run.txt"));  // 1 epoch: its patience cannot act
  for (const char* m : {"seeds/baseline_s43", "seeds/baseline_s44", "seeds/best_s42", "seeds/best_s43", "seeds/best_s44",
                        "distill/alone", "distill/student", "cost/pair_cost"})
    check_model_run(r / m, 2);
  check_model_run(r / "finetune", 3);
  const auto split = exp::read_json(r / "scratch_cnn" / "config.json")["split"];
  for (const char* m : {"recipes/mix", "seeds/baseline_s44", "seeds/best_s43", "distill/student", "cost/pair_cost"})
    CHECK_MESSAGE(exp::read_json(r / m / "config.json")["split"] == split, m << " trained on another split");
  auto best = exp::read_json(r / "recipes" / "best.json");
  double best_val = -1;
  std::string best_row;
  for (const auto& row : best["rows"])
    if (row.contains("best_val_acc") && row["best_val_acc"].get<double>() > best_val)
      best_val = row["best_val_acc"].get<double>(), best_row = row["row"].get<std::string>();
  CHECK(best["row"] == best_row);
  CHECK(exp::read_json(r / "seeds" / "best_s44" / "config.json")["recipe"]["name"] == best_row);
  CHECK(exp::read_json(r / "seeds" / "best_s44" / "config.json")["seed"] == 44);
  auto ens = exp::read_json(r / "ensembles" / "best_recipe" / "ensemble.json");
  CHECK(ens["members"].size() == 3);
  CHECK(ens["members"][2]["test_accuracy"].get<double>() ==
        exp::read_json(r / "seeds" / "best_s44" / "metrics.json")["test"]["accuracy"].get<double>());
  CHECK(fs::exists(r / "ensembles" / "best_recipe" / "teacher_T4.ckpt"));
  CHECK(fs::exists(r / "ensembles" / "architectures" / "ensemble.json"));  // with the (stand-in) ResNet18
  CHECK(exp::read_json(r / "distill" / "student" / "config.json")["teacher_members"].size() == 3);
  CHECK(exp::read_json(r / "distill" / "student" / "metrics.json")["params_total"] == 364730);
  CHECK(exp::read_json(r / "cost" / "pair_cost" / "config.json")["recipe"]["pair_cost"] == 1.0);
  for (const char* m : {"seeds/best_s42", "distill/student", "cost/pair_cost", "finetune"}) check_extended(r, m);
  for (const char* h : {"## Training recipes", "## Several seeds", "## Ensembles and distillation",
                        "## Errors that cost more", "## Fine-tuning beyond the frozen head", "**Recipe ablation**",
                        "**Best recipe**", "**Distillation**", "**Pair costs**", "recipes.png", "seeds.png"})
    CHECK_MESSAGE(report.find(h) != std::string::npos, h << " is missing from the report");

  // the same study again into the same folder: every finished step is skipped, compare runs
  auto robustness_time = fs::last_write_time(r / "robustness" / "scratch_cnn" / "robustness.json");
  int rc2 = run({"/bin/bash", (src / "study.sh").string(), "--quick", "--bin", bin.string(), "--weights",
                 weights.string(), "--stand-in-weights", "--onnx", "--extended", "--out", r.string()},
                out / "study2.log");
  std::string log2 = slurp(out / "study2.log");
  INFO("second study.sh log:\n", log2);
  REQUIRE(rc2 == 0);
  std::string timings = slurp(r / "timings.csv");
  for (const char* s : {"scratch_cnn,", "lr_tuning,", "robustness,", "calibration,"})
    CHECK_MESSAGE(timings.find(std::string(s)) != std::string::npos, s);
  CHECK(timings.find(",ok") != std::string::npos);
  CHECK(timings.find(",ok") == timings.rfind(",ok"));  // only compare ran
  CHECK(timings.find("compare,") != std::string::npos);
  CHECK(fs::last_write_time(r / "robustness" / "scratch_cnn" / "robustness.json") == robustness_time);

  // delete a run: compare must show it as not run, with no bar and no curve
  fs::remove_all(r / "scratch_cnn");
  REQUIRE(run({(bin / "compare").string(), "--results", r.string(), "--out", (out / "report2").string()},
              out / "compare.log") == 0);
  std::string report2 = slurp(out / "report2" / "report.md");
  CHECK(report2.find("| Scratch CNN | not run |") != std::string::npos);
  CHECK(report2.find("Scratch CNN was not run") != std::string::npos);
  fs::remove_all(out);
}

TEST_CASE("a run killed with SIGKILL and resumed ends with the metrics of an uninterrupted run") {
  fs::path bin = test::bin_dir();
  fs::path out = fs::temp_directory_path() / ("dl_e2e_resume_" + std::to_string(getpid()));
  fs::remove_all(out);
  fs::create_directories(out);
  std::vector<std::string> base{(bin / "scratch_cnn").string(), "--train-limit", "640", "--val-limit", "200",
                                "--test-limit", "300", "--epochs", "3", "--batch-size", "32", "--workers", "1"};
  auto with = [&](std::vector<std::string> extra) {
    auto a = base;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  REQUIRE(run(with({"--out", (out / "full").string()}), out / "full.log") == 0);

  // the same run, killed during its second epoch, then resumed
  pid_t pid = spawn(with({"--out", (out / "killed").string()}), out / "killed.log");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(10);
  while (data_rows(out / "killed" / "history.csv") < 1 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  kill(pid, SIGKILL);
  CHECK(wait_for(pid) == 128 + SIGKILL);
  size_t done = data_rows(out / "killed" / "history.csv");
  CHECK(done >= 1);
  CHECK(done < 3);
  CHECK_FALSE(fs::exists(out / "killed" / "metrics.json"));
  INFO("resume log:\n", slurp(out / "killed.log"));
  REQUIRE(run(with({"--out", (out / "killed").string(), "--resume"}), out / "killed.log") == 0);

  auto a = exp::read_json(out / "full" / "metrics.json");
  auto b = exp::read_json(out / "killed" / "metrics.json");
  CHECK(a["test"]["accuracy"].get<double>() == b["test"]["accuracy"].get<double>());
  CHECK(a["test"]["loss"].get<double>() == b["test"]["loss"].get<double>());
  CHECK(a["best_epoch"] == b["best_epoch"]);
  CHECK(slurp(out / "full" / "predictions.csv") == slurp(out / "killed" / "predictions.csv"));
  auto ha = exp::read_history(out / "full" / "history.csv"), hb = exp::read_history(out / "killed" / "history.csv");
  REQUIRE(ha.size() == hb.size());
  for (size_t i = 0; i < ha.size(); ++i) {
    CHECK(ha[i].train_loss == hb[i].train_loss);
    CHECK(ha[i].val_acc == hb[i].val_acc);
  }
  fs::remove_all(out);
}

TEST_CASE("SIGINT stops a run after saving its last completed epoch, --resume finishes it") {
  fs::path bin = test::bin_dir();
  fs::path out = fs::temp_directory_path() / ("dl_e2e_sigint_" + std::to_string(getpid()));
  fs::remove_all(out);
  fs::create_directories(out);
  std::vector<std::string> args{(bin / "scratch_cnn").string(), "--train-limit", "320", "--val-limit", "100",
                                "--test-limit", "100", "--epochs", "3", "--batch-size", "32",
                                "--out", (out / "run").string()};
  pid_t pid = spawn(args, out / "log");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(10);
  while (data_rows(out / "run" / "history.csv") < 1 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  kill(pid, SIGINT);
  CHECK(wait_for(pid) == 130);
  std::string log = slurp(out / "log");
  INFO("log:\n", log);
  CHECK(log.find("--resume") != std::string::npos);
  CHECK(fs::exists(out / "run" / "last.ckpt"));
  CHECK_FALSE(fs::exists(out / "run" / "metrics.json"));
  args.push_back("--resume");
  REQUIRE(run(args, out / "log") == 0);
  CHECK(data_rows(out / "run" / "history.csv") == 3);
  CHECK(fs::exists(out / "run" / "metrics.json"));
  // an output folder that cannot be written is refused before any training
  CHECK(run({(bin / "scratch_cnn").string(), "--out", "/proc/dl-no-such-place/run"}, out / "log2") == 1);
  CHECK(slurp(out / "log2").find("/proc/dl-no-such-place/run") != std::string::npos);
  fs::remove_all(out);
}
