// The extended study's training sections of the report (experiments/lib/training_report.h), on run
// folders written here: the ablation's table marks the chosen row and the rows not run, says when
// the rows were shortened, and its conclusion lists the changes by their validation effect; the seed
// tables' mean, sd and Student-t interval are the numbers computed here, and so is the 93.5% count;
// the ensembles show a not_run.txt; the pair-cost table sums the group's confusions.
#include <filesystem>

#include "experiments/lib/metrics.h"
#include "experiments/lib/recipe.h"
#include "experiments/lib/run_record.h"
#include "experiments/lib/training_report.h"
#include "test_util.h"

using namespace dl;
using namespace dl::exp;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::vector<std::string> kNames{"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"};

struct TempDir {
  fs::path dir = fs::temp_directory_path() / ("dl_training_report_test_" + std::to_string(getpid()));
  TempDir() {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~TempDir() { fs::remove_all(dir); }
};

// A run folder of 1,000 test images with `right` of them right (the first ones), a recipe and epochs.
void write_run(const fs::path& dir, int64_t right, double val, int64_t epochs, const Recipe& recipe,
               int64_t confuse_6_as_2 = 0) {
  fs::create_directories(dir);
  std::vector<Prediction> preds;
  std::vector<int64_t> labels, guesses;
  int64_t confused = 0;
  for (int64_t i = 0; i < 1000; ++i) {
    Prediction p;
    p.index = i;
    p.label = i % 10;
    p.prediction = p.label;
    if (i >= right) {
      if (p.label == 6 && confused < confuse_6_as_2) {
        p.prediction = 2;
        ++confused;
      } else {
        p.prediction = (p.label + 1) % 10 == 2 ? 3 : (p.label + 1) % 10;  // never into the garment group's 2
      }
    }
    p.probs.assign(10, 0.1f);
    preds.push_back(p);
    labels.push_back(p.label);
    guesses.push_back(p.prediction);
  }
  Metrics m = compute_metrics(labels, guesses, 10);
  json j{{"best_val_acc", val}, {"best_epoch", epochs}, {"epochs", epochs}, {"epochs_run", epochs},
         {"train_seconds", 10.0}, {"params_total", 100}};
  j["test"] = m.to_json(kNames);
  write_json(dir / "metrics.json", j);
  write_json(dir / "config.json", {{"epochs", epochs}, {"recipe", recipe.to_json()}});
  write_confusion(dir / "confusion.csv", m.confusion, kNames);
  write_predictions(dir / "predictions.csv", preds);
  std::vector<EpochRecord> h;
  for (int64_t e = 1; e <= epochs; ++e) h.push_back({e, 0.5, 0.8, 0.5, val - 0.01 * static_cast<double>(epochs - e), 1e-3, 1});
  write_history(dir / "history.csv", h);
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("the ablation section: chosen row, rows not run, shortened budget, changes by validation effect") {
  TempDir t;
  const fs::path R = t.dir;
  CHECK(recipes_section(R, R / "report").markdown.empty());  // the step never ran
  // every row but `mix` ran; validation rises except at label_smoothing; cosine is best
  std::map<std::string, double> val{{"baseline", 0.90},  {"crop_flip", 0.905}, {"erasing", 0.91},
                                    {"label_smoothing", 0.905}, {"adamw", 0.912}, {"cosine", 0.925},
                                    {"onecycle", 0.92}, {"early_stop", 0.924}};
  for (const auto& [row, v] : val) write_run(R / "recipes" / row, 900, v, 3, named_recipe(row));
  write_json(R / "recipes" / "best.json", {{"row", "cosine"}, {"best_val_acc", 0.925}, {"selection", "rule"},
                                           {"recipe", named_recipe("cosine").to_json()}});
  ReportSection s = recipes_section(R, R / "report");
  INFO(s.markdown);
  CHECK(has(s.markdown, "| cosine **(chosen)** |"));
  CHECK(has(s.markdown, "| mix | cosine row + CutMix"));
  CHECK(has(s.markdown, "| not run |"));
  CHECK(has(s.markdown, "-0.50 pp (vs erasing)"));     // label_smoothing
  CHECK(has(s.markdown, "+0.80 pp (vs adamw)"));       // onecycle is compared with adamw, not cosine
  CHECK(has(s.markdown, "**shortened**: 3 epoch(s)"));
  CHECK(fs::exists(R / "report" / "recipes.png"));
  REQUIRE(s.conclusions.size() == 2);
  CHECK(has(s.conclusions[0], "cosine (92.50%)"));
  CHECK(has(s.conclusions[1], "raised it: crop_flip (+0.50 pp), erasing (+0.50 pp), adamw (+0.70 pp), cosine (+1.30 pp), "
                              "onecycle (+0.80 pp)"));
  CHECK(has(s.conclusions[1], "lowered or kept it: label_smoothing (-0.50 pp)"));
  CHECK_FALSE(has(s.conclusions[1], "mix"));  // not run: no claim
}

TEST_CASE("the seeds section: mean, sd and Student-t interval over seeds, the target count, Welch's difference") {
  TempDir t;
  const fs::path R = t.dir;
  Recipe base, best = named_recipe("cosine");
  write_run(R / "scratch_cnn", 920, 0.92, 10, base);
  write_run(R / "seeds" / "baseline_s43", 918, 0.92, 10, base);
  write_run(R / "seeds" / "baseline_s44", 922, 0.92, 10, base);
  write_run(R / "seeds" / "best_s42", 936, 0.94, 15, best);
  write_run(R / "seeds" / "best_s43", 934, 0.94, 15, best);
  write_run(R / "seeds" / "best_s44", 938, 0.94, 15, best);
  ReportSection s = seeds_section(R, R / "report");
  INFO(s.markdown);
  SeedStats b = seed_stats({0.920, 0.918, 0.922}), r = seed_stats({0.936, 0.934, 0.938});
  CHECK(has(s.markdown, fmt::format("| best recipe | 3 | {:.2f}% | {:.2f} pp | [{:.2f}%, {:.2f}%] |", 100 * r.mean,
                                    100 * r.sd, 100 * r.low, 100 * r.high)));
  CHECK(has(s.markdown, fmt::format("| seed recipe | 3 | {:.2f}% |", 100 * b.mean)));
  CHECK(fs::exists(R / "report" / "seeds.png"));
  REQUIRE(s.conclusions.size() == 2);
  CHECK(has(s.conclusions[0], "met by 2 of 3 runs"));  // 93.6% and 93.8%, not 93.4%
  CHECK(has(s.conclusions[1], "+1.60 pp in mean test accuracy"));
  CHECK(has(s.conclusions[1], "better, beyond training randomness"));
  // a missing seed: shown as not run, the statistics over the two that ran
  fs::remove_all(R / "seeds" / "best_s44");
  s = seeds_section(R, R / "report");
  CHECK(has(s.markdown, "| best recipe | seed 44 | not run |"));
  CHECK(has(s.markdown, "| best recipe | 2 | 93.50% |"));
}

TEST_CASE("the seeds section when the seed recipe was chosen: the copied runs are said to be the same, not compared") {
  TempDir t;
  const fs::path R = t.dir;
  Recipe base;
  write_run(R / "scratch_cnn", 920, 0.92, 10, base);
  for (const char* seed : {"43", "44"}) write_run(R / "seeds" / (std::string("baseline_s") + seed), 918, 0.92, 10, base);
  for (const char* seed : {"42", "43", "44"}) {
    write_run(R / "seeds" / (std::string("best_s") + seed), 918, 0.92, 10, base);
    write_text_atomic(R / "seeds" / (std::string("best_s") + seed) / "same_run.txt", "pick_recipe chose the seed recipe\n");
  }
  ReportSection s = seeds_section(R, R / "report");
  INFO(s.markdown);
  CHECK(has(s.markdown, "the two groups below are the same runs"));
  REQUIRE(s.conclusions.size() == 2);
  CHECK(has(s.conclusions[1], "both groups are the same runs"));
  CHECK_FALSE(has(s.conclusions[1], "Welch"));
}

TEST_CASE("the ensembles and pair-cost sections read their records, and say what did not run") {
  TempDir t;
  const fs::path R = t.dir;
  fs::create_directories(R / "ensembles" / "architectures");
  write_text_atomic(R / "ensembles" / "architectures" / "not_run.txt", "ensemble 'architectures' not run: 1 usable member\n");
  ReportSection e = ensembles_section(R, R / "report");
  CHECK(has(e.markdown, "| architectures | ensemble 'architectures' not run: 1 usable member |"));
  CHECK(has(e.markdown, "| baseline | not run |"));

  Recipe best = named_recipe("cosine"), cost = best;
  cost.pair_cost = 1;
  write_run(R / "seeds" / "best_s42", 700, 0.93, 15, best, 30);  // 30 shirts (6) taken for pullovers (2)
  write_run(R / "cost" / "pair_cost", 700, 0.93, 15, cost, 10);
  ReportSection c = cost_section(R, R / "report");
  INFO(c.markdown);
  CHECK(has(c.markdown, "| Shirt → Pullover | 30 | 10 | -20 |"));
  CHECK(has(c.markdown, "| Coat → Shirt | 0 | 0 | +0 |"));
  CHECK(has(c.markdown, "| **all pairs in the group** | **30** | **10** | **-20** (-66.7%) |"));
  REQUIRE(c.conclusions.size() == 1);
  CHECK(has(c.conclusions[0], "went from 30 to 10"));
  CHECK(fs::exists(R / "report" / "pair_costs.png"));
}
