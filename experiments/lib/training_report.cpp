#include "experiments/lib/training_report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "data/image_io.h"
#include "experiments/lib/chart.h"
#include "experiments/lib/metrics.h"
#include "experiments/lib/recipe.h"
#include "experiments/lib/run_model.h"
#include "experiments/lib/run_record.h"
#include "tensor/error.h"

namespace dl::exp {

namespace fs = std::filesystem;
using nlohmann::json;

double t_quantile_975(int64_t df) {
  static const double table[] = {12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
                                 2.2010,  2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
                                 2.0796,  2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423};
  if (df < 1) fail("t_quantile_975: df must be >= 1, not {}", df);
  if (df <= 30) return table[df - 1];
  // beyond 30: the Cornish-Fisher expansion's first two terms (within 1e-4 of the exact quantile)
  const double z = 1.959964, d = static_cast<double>(df);
  return z + (z * z * z + z) / (4 * d) + (5 * std::pow(z, 5) + 16 * z * z * z + 3 * z) / (96 * d * d);
}

SeedStats seed_stats(const std::vector<double>& v) {
  SeedStats s;
  s.n = static_cast<int64_t>(v.size());
  if (v.empty()) return s;
  for (double x : v) s.mean += x / static_cast<double>(s.n);
  s.low = s.high = s.mean;
  if (s.n < 2) return s;
  double ss = 0;
  for (double x : v) ss += (x - s.mean) * (x - s.mean);
  s.sd = std::sqrt(ss / static_cast<double>(s.n - 1));
  double h = t_quantile_975(s.n - 1) * s.sd / std::sqrt(static_cast<double>(s.n));
  s.low = s.mean - h;
  s.high = s.mean + h;
  return s;
}

namespace {

std::string pp(double v) { return fmt::format("{:+.2f} pp", 100 * v); }

// One run folder of the extended study, read or said why not.
struct RunInfo {
  std::string rel, display;
  fs::path dir;
  bool ok = false;
  std::string why;  // not run / step failed / unreadable
  json metrics, config;
  std::vector<EpochRecord> history;
  double acc() const { return metrics.at("test").at("accuracy").get<double>(); }
  double val() const { return metrics.value("best_val_acc", NAN); }
  int64_t epochs() const { return config.value("epochs", int64_t{0}); }
};

RunInfo read_run(const fs::path& results, const std::string& rel, const std::string& display) {
  RunInfo r;
  r.rel = rel;
  r.display = display;
  r.dir = results / rel;
  if (fs::exists(r.dir / "failed.json")) {
    r.why = "step failed (see " + rel + "/failed.json)";
    return r;
  }
  if (!fs::exists(r.dir / "metrics.json")) {
    std::string note = not_run_note(r.dir);
    r.why = note.empty() ? "not run" : "not run: " + note;
    return r;
  }
  try {
    r.metrics = read_json(r.dir / "metrics.json");
    r.config = read_json(r.dir / "config.json");
    if (fs::exists(r.dir / "history.csv")) r.history = read_history(r.dir / "history.csv");
    (void)r.acc();
    r.ok = true;
  } catch (const std::exception& e) {
    r.why = fmt::format("unreadable ({})", e.what());
  }
  return r;
}

std::string cell(const RunInfo& r, const std::string& text) { return r.ok ? text : r.why; }

// Each test image right (1) or wrong (0), in predictions.csv's order, with the image indices.
std::vector<uint8_t> correct_of(const RunInfo& r, std::vector<int64_t>* indices = nullptr) {
  std::vector<uint8_t> c;
  for (const auto& p : read_predictions(r.dir / "predictions.csv")) {
    c.push_back(p.label == p.prediction);
    if (indices) indices->push_back(p.index);
  }
  return c;
}

// The 95% bootstrap percentile interval of a run's test accuracy (2,000 resamples, seed 12345).
Interval accuracy_interval(const std::vector<uint8_t>& correct) {
  std::vector<double> stats;
  for_each_bootstrap_resample(static_cast<int64_t>(correct.size()), 2000, 12345, [&](const std::vector<int64_t>& idx) {
    int64_t k = 0;
    for (int64_t i : idx) k += correct[i];
    stats.push_back(static_cast<double>(k) / static_cast<double>(idx.size()));
  });
  return percentile_interval_95(stats);
}

// A paired comparison of two runs on the same test images, or why there is none.
std::optional<PairedComparison> paired(const RunInfo& a, const RunInfo& b, std::string& why) {
  std::vector<int64_t> ia, ib;
  auto ca = correct_of(a, &ia), cb = correct_of(b, &ib);
  if (ia != ib) {
    why = "they were tested on different images";
    return std::nullopt;
  }
  return compare_paired(ca, cb);
}

std::string paired_text(const PairedComparison& p) {
  return fmt::format("{} (95% bootstrap interval [{}, {}]; McNemar p = {:.3g}, {} vs {} discordant images)", pp(p.diff),
                     pp(p.ci_low), pp(p.ci_high), p.mcnemar_p, p.a_only, p.b_only);
}
bool significant(const PairedComparison& p) { return p.ci_low > 0 || p.ci_high < 0; }

void save_figure(const data::Image& img, const fs::path& report_dir, const std::string& name, std::string& md,
                 const std::string& alt) {
  fs::create_directories(report_dir);
  data::write_png((report_dir / name).string(), img);
  md += fmt::format("![{}]({})\n\n", alt, name);
}

// Validation accuracy per epoch of several runs, one line each.
data::Image val_curves(const std::vector<const RunInfo*>& runs, const std::string& title) {
  ChartOptions o;
  o.title = title;
  o.x_label = "epoch";
  o.y_label = "validation accuracy";
  double lo = 1, hi = 0;
  int64_t emax = 1;
  std::vector<ChartSeries> series;
  for (size_t k = 0; k < runs.size(); ++k) {
    const RunInfo& r = *runs[k];
    if (!r.ok || r.history.empty()) continue;
    ChartSeries s{r.display, chart_color(k), {}, 2};
    for (const auto& h : r.history) {
      s.points.push_back({static_cast<double>(h.epoch), h.val_acc});
      lo = std::min(lo, h.val_acc);
      hi = std::max(hi, h.val_acc);
      emax = std::max(emax, h.epoch);
    }
    series.push_back(std::move(s));
  }
  if (series.empty()) lo = 0, hi = 1;
  lo = std::floor(lo * 100 - 0.5) / 100;
  hi = std::ceil(hi * 100 + 0.5) / 100;
  o.x_min = 1;
  o.x_max = std::max<double>(emax, 2);
  o.y_min = lo;
  o.y_max = hi;
  for (int64_t e = 1; e <= emax; e += std::max<int64_t>(1, emax / 10)) o.x_ticks.push_back(static_cast<double>(e));
  for (double y = lo; y <= hi + 1e-9; y += std::max(0.01, std::round((hi - lo) / 6 * 100) / 100)) o.y_ticks.push_back(y);
  o.width = 640;
  o.height = 400;
  return draw_line_chart(o, series);
}

}  // namespace

// ---- the recipe ablation -----------------------------------------------------------------------------

ReportSection recipes_section(const fs::path& results, const fs::path& report_dir) {
  ReportSection s;
  const fs::path dir = results / "recipes";
  if (!fs::exists(dir)) return s;
  std::string md = "## Training recipes for the scratch CNN (ablation)\n\n";
  md += "Each row adds one change to the row it builds on (the previous row, except `onecycle`, which replaces "
        "`cosine`'s schedule on the `adamw` row, and `mix`, built on `cosine`), trained with seed 42 on the study's "
        "split; the rows are compared on validation accuracy, the test column is for reading only. Rows are "
        "`scratch_cnn --recipe <row>` (experiments/lib/recipe.h).\n\n";
  std::vector<RunInfo> rows;
  for (const auto& row : ablation_rows()) rows.push_back(read_run(dir, row.name, row.name));
  std::optional<json> best;
  std::string best_summary, best_problem;
  if (fs::exists(dir / "best.json")) {
    try {
      best = read_json(dir / "best.json");
      best_summary = Recipe::from_json(best->at("recipe")).summary();
      (void)best->at("row").get<std::string>();
    } catch (const std::exception& e) {
      best.reset();
      best_problem = e.what();
    }
  }
  int64_t epochs_max = 0;
  for (const auto& r : rows)
    if (r.ok) epochs_max = std::max(epochs_max, r.epochs());
  md += "| row | change | epochs | best validation (epoch) | Δ validation vs previous row | test accuracy | train time |\n"
        "|---|---|---|---|---|---|---|\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    const auto& row = ablation_rows()[i];
    std::string delta = "";
    std::optional<double> base_val;
    for (const auto& b : rows)
      if (b.rel == row.base && b.ok) base_val = b.val();
    if (r.ok && base_val) delta = fmt::format("{} (vs {})", pp(r.val() - *base_val), row.base);
    const bool chosen = best && best->value("row", std::string()) == row.name;
    md += fmt::format("| {}{} | {} | {} | {} | {} | {} | {} |\n", row.name, chosen ? " **(chosen)**" : "", row.change,
                      cell(r, fmt::format("{}{}", r.ok ? r.metrics.value("epochs_run", r.epochs()) : 0,
                                          r.ok && r.metrics.value("stopped_early", int64_t{0}) > 0 ? " (stopped early)" : "")),
                      cell(r, r.ok ? fmt::format("{} ({})", pct(r.val()), r.metrics.value("best_epoch", int64_t{0})) : ""),
                      delta.empty() ? "—" : delta, cell(r, r.ok ? pct(r.acc()) : ""),
                      cell(r, r.ok ? fmt::format("{:.0f} s", r.metrics.value("train_seconds", 0.0)) : ""));
  }
  md += "\n";
  if (epochs_max > 0 && epochs_max < 20)
    md += fmt::format("These rows were **shortened**: {} epoch(s) each (the full-length budget is 20), so that the "
                      "ablation fits the default time budget; a change that pays off only over a long run (augmentation, "
                      "MixUp/CutMix, early stopping) is at a disadvantage here. `./study.sh --extended-full` trains them "
                      "at full length.\n\n",
                      epochs_max);
  // figure: validation and test accuracy per row
  {
    ChartOptions o;
    o.title = "Recipe ablation (x: row, see the table)";
    o.x_label = "row";
    o.y_label = "accuracy";
    ChartSeries v{"validation (best epoch)", chart_color(0), {}, 2}, t{"test", chart_color(1), {}, 2};
    double lo = 1, hi = 0;
    for (size_t i = 0; i < rows.size(); ++i) {
      o.x_ticks.push_back(static_cast<double>(i));
      o.x_tick_labels.push_back(std::to_string(i));
      if (!rows[i].ok) continue;
      v.points.push_back({static_cast<double>(i), rows[i].val()});
      t.points.push_back({static_cast<double>(i), rows[i].acc()});
      lo = std::min({lo, rows[i].val(), rows[i].acc()});
      hi = std::max({hi, rows[i].val(), rows[i].acc()});
    }
    if (!v.points.empty()) {
      o.x_min = -0.5;
      o.x_max = static_cast<double>(rows.size()) - 0.5;
      o.y_min = std::floor(lo * 100 - 0.5) / 100;
      o.y_max = std::ceil(hi * 100 + 0.5) / 100;
      for (double y = o.y_min; y <= o.y_max + 1e-9; y += 0.01) o.y_ticks.push_back(y);
      save_figure(draw_line_chart(o, {v, t}), report_dir, "recipes.png", md, "recipe ablation");
      md += "Rows on the x axis: ";
      for (size_t i = 0; i < rows.size(); ++i) md += fmt::format("{}{} = {}", i ? ", " : "", i, rows[i].rel);
      md += ".\n\n";
    }
  }
  if (!best_problem.empty()) md += fmt::format("recipes/best.json is unreadable ({}), so no chosen row is shown.\n\n", best_problem);
  if (best) {
    md += fmt::format("Chosen on validation accuracy: **{}** ({}), {}. Its recipe: {}.\n\n", best->value("row", std::string("?")),
                      pct(best->value("best_val_acc", NAN)), best->value("selection", std::string()), best_summary);
    s.conclusions.push_back(fmt::format("**Recipe ablation**: the best row on validation accuracy is {} ({}); it was "
                                        "chosen for the seed runs (below: three seeds at the seeds' budget).",
                                        best->value("row", std::string("?")), pct(best->value("best_val_acc", NAN))));
  }
  // conclusions: which single changes helped on validation
  std::vector<std::string> helped, hurt;
  for (size_t i = 1; i < rows.size(); ++i) {
    for (const auto& b : rows)
      if (b.rel == ablation_rows()[i].base && b.ok && rows[i].ok) {
        double d = rows[i].val() - b.val();
        (d > 0 ? helped : hurt).push_back(fmt::format("{} ({})", rows[i].rel, pp(d)));
      }
  }
  if (!helped.empty() || !hurt.empty())
    s.conclusions.push_back(fmt::format("**Recipe ablation** (validation accuracy, one run per row, so a difference of a "
                                        "few tenths of a point is within seed noise; see the seed intervals): raised it: {}; "
                                        "lowered or kept it: {}.",
                                        helped.empty() ? "none" : fmt::format("{}", fmt::join(helped, ", ")),
                                        hurt.empty() ? "none" : fmt::format("{}", fmt::join(hurt, ", "))));
  s.markdown = md;
  return s;
}

// ---- seeds ----------------------------------------------------------------------------------------------

ReportSection seeds_section(const fs::path& results, const fs::path& report_dir) {
  ReportSection s;
  if (!fs::exists(results / "seeds")) return s;
  struct Group {
    std::string name;
    std::vector<RunInfo> runs;
  };
  // seed 42 of the seed recipe: the study's own scratch_cnn run, unless the seeds were trained at another
  // budget (--extended-full), which then trained seeds/baseline_s42 too
  const bool own42 = fs::exists(results / "seeds" / "baseline_s42");
  std::vector<Group> groups{
      {"seed recipe",
       {read_run(results, own42 ? "seeds/baseline_s42" : "scratch_cnn", "baseline, seed 42"),
        read_run(results, "seeds/baseline_s43", "baseline, seed 43"),
        read_run(results, "seeds/baseline_s44", "baseline, seed 44")}},
      {"best recipe",
       {read_run(results, "seeds/best_s42", "best, seed 42"), read_run(results, "seeds/best_s43", "best, seed 43"),
        read_run(results, "seeds/best_s44", "best, seed 44")}}};
  std::string md = "## Several seeds\n\n";
  md += fmt::format("Each recipe trained with seeds 42, 43 and 44 (initialisation, shuffling, dropout and augmentation draws) "
                    "on the same split (`--split-seed 42`); seed 42 of the seed recipe is {}. The per-run interval is the 95% "
                    "bootstrap interval over the test images (2,000 resamples): test-set sampling only. The interval over "
                    "seeds is mean ± t(0.975, n − 1) · sd / √n: training randomness, from n = 3 runs.\n\n",
                    own42 ? "`seeds/baseline_s42`, trained at the seeds' budget" : "the study's own scratch_cnn run");
  // pick_recipe chose the seed recipe: study.sh copied the seed recipe's runs (same_run.txt)
  const bool same_runs = fs::exists(results / "seeds" / "best_s42" / "same_run.txt");
  if (same_runs)
    md += "pick_recipe chose the seed recipe, so the best recipe's runs are the seed recipe's runs of the same seeds and "
          "budget, copied rather than trained again (`seeds/best_s*/same_run.txt`; training is deterministic): the two "
          "groups below are the same runs.\n\n";
  md += "| recipe | seed | epochs | best validation | test accuracy | 95% bootstrap interval |\n|---|---|---|---|---|---|\n";
  std::vector<SeedStats> stats;
  std::vector<double> mean_width;
  for (const auto& g : groups) {
    std::vector<double> accs;
    double width = 0;
    int64_t k = 0;
    for (const auto& r : g.runs) {
      std::string ci = r.why;
      if (r.ok) {
        try {
          Interval iv = accuracy_interval(correct_of(r));
          ci = fmt::format("[{}, {}]", pct(iv.low), pct(iv.high));
          width += iv.high - iv.low;
          ++k;
        } catch (const std::exception& e) {
          ci = fmt::format("predictions unreadable ({})", e.what());
        }
        accs.push_back(r.acc());
      }
      md += fmt::format("| {} | {} | {} | {} | {} | {} |\n", g.name, r.display.substr(r.display.find("seed")),
                        cell(r, r.ok ? std::to_string(r.metrics.value("epochs_run", r.epochs())) : ""),
                        cell(r, r.ok ? pct(r.val()) : ""), cell(r, r.ok ? pct(r.acc()) : ""), ci);
    }
    stats.push_back(seed_stats(accs));
    mean_width.push_back(k ? width / static_cast<double>(k) : NAN);
  }
  md += "\n| recipe | runs | mean test accuracy | sd over seeds | 95% interval over seeds | mean width of the per-run bootstrap intervals |\n"
        "|---|---|---|---|---|---|\n";
  for (size_t g = 0; g < groups.size(); ++g) {
    const auto& st = stats[g];
    md += fmt::format("| {} | {} | {} | {} | {} | {} |\n", groups[g].name, st.n, st.n ? pct(st.mean) : "not run",
                      st.n >= 2 ? fmt::format("{:.2f} pp", 100 * st.sd) : "—",
                      st.n >= 2 ? fmt::format("[{}, {}]", pct(st.low), pct(st.high)) : "—",
                      std::isnan(mean_width[g]) ? "—" : fmt::format("{:.2f} pp", 100 * mean_width[g]));
  }
  md += "\n";
  std::vector<const RunInfo*> all;
  for (const auto& g : groups)
    for (const auto& r : g.runs) all.push_back(&r);
  if (std::any_of(all.begin(), all.end(), [](const RunInfo* r) { return r->ok; }))
    save_figure(val_curves(all, "Validation accuracy per epoch, 3 seeds per recipe"), report_dir, "seeds.png", md,
                "seed curves");

  const SeedStats &b = stats[0], &r = stats[1];
  int64_t best_epochs = 0;
  for (const auto& run : groups[1].runs)
    if (run.ok) best_epochs = std::max(best_epochs, run.epochs());
  if (best_epochs > 0 && best_epochs < 20)
    md += fmt::format("The best recipe's runs were **shortened** to {} epochs (the target below allows 20) so that the "
                      "extended study fits the default time budget; `./study.sh --extended-full` trains them for 20.\n\n",
                      best_epochs);
  if (r.n >= 1) {
    int64_t met = 0;
    for (const auto& run : groups[1].runs) met += run.ok && run.acc() >= 0.935;
    s.conclusions.push_back(fmt::format(
        "**Best recipe** ({} epochs): mean test accuracy {} over {} seed(s){}; the 93.5% target is met by {} of {} runs{}.",
        best_epochs, pct(r.mean), r.n, r.n >= 2 ? fmt::format(" (95% interval over seeds [{}, {}])", pct(r.low), pct(r.high)) : "", met, r.n,
        r.n >= 2 ? (r.low >= 0.935 ? ", and the whole interval over seeds lies above it"
                                   : (r.high < 0.935 ? ", and the whole interval over seeds lies below it" : ""))
                 : ""));
  }
  if (same_runs) {
    s.conclusions.push_back("**Best vs seed recipe**: the ablation chose the seed recipe, so both groups are the same "
                            "runs and there is nothing to compare.");
  } else if (b.n >= 2 && r.n >= 2) {
    // Welch's interval for the difference of the means
    double se = std::sqrt(b.sd * b.sd / b.n + r.sd * r.sd / r.n);
    double df_num = std::pow(b.sd * b.sd / b.n + r.sd * r.sd / r.n, 2);
    double df_den = std::pow(b.sd * b.sd / b.n, 2) / (b.n - 1) + std::pow(r.sd * r.sd / r.n, 2) / (r.n - 1);
    int64_t df = df_den > 0 ? std::max<int64_t>(1, static_cast<int64_t>(std::floor(df_num / df_den))) : b.n + r.n - 2;
    double d = r.mean - b.mean, h = t_quantile_975(df) * se;
    std::string seed_verdict = d - h > 0 ? "better, beyond training randomness"
                                         : (d + h < 0 ? "worse, beyond training randomness" : "not distinguishable over seeds");
    std::string paired_part;
    if (groups[0].runs[0].ok && groups[1].runs[0].ok) {
      std::string why;
      if (auto p = paired(groups[1].runs[0], groups[0].runs[0], why))
        paired_part = fmt::format("; on the test images, seed 42's pair differs by {}, {}", paired_text(*p),
                                  significant(*p) ? "beyond test-set sampling" : "within test-set sampling");
    }
    // the test-set standard error of one run's accuracy, from its bootstrap interval's width (2 x 1.96 SE)
    const double test_se = (mean_width[0] + mean_width[1]) / 2 / (2 * 1.96);
    const bool seeds_matter = std::max(b.sd, r.sd) >= test_se;
    int64_t base_epochs = 0;
    for (const auto& run : groups[0].runs)
      if (run.ok) base_epochs = std::max(base_epochs, run.epochs());
    s.conclusions.push_back(fmt::format(
        "**Best vs seed recipe over seeds**: {} in mean test accuracy (Welch 95% interval [{}, {}], df {}): {}{}.{} The "
        "spread over seeds (sd {:.2f} and {:.2f} pp) is {} one run's test-set standard error (~{:.2f} pp), so {}.",
        pp(d), pp(d - h), pp(d + h), df, seed_verdict, paired_part,
        base_epochs != best_epochs
            ? fmt::format(" The recipes had different budgets ({} and {} epochs): the difference is the recipe's and the "
                          "budget's together.", base_epochs, best_epochs)
            : "",
        100 * b.sd, 100 * r.sd, seeds_matter ? "at or above" : "below", 100 * test_se,
        seeds_matter ? "one run's test-set interval understates the uncertainty of a recipe comparison"
                     : "test-set sampling, not training randomness, dominates a single comparison"));
  }
  s.markdown = md;
  return s;
}

// ---- ensembles and distillation -------------------------------------------------------------------------

ReportSection ensembles_section(const fs::path& results, const fs::path& report_dir) {
  ReportSection s;
  if (!fs::exists(results / "ensembles") && !fs::exists(results / "distill")) return s;
  std::string md = "## Ensembles and distillation\n\n";
  md += "An ensemble averages its members' softmax probabilities. It is compared, on the same test images, with its "
        "best member by test accuracy (the hardest comparison for the ensemble).\n\n"
        "| ensemble | members | test accuracy | mean member | best member | ensemble − best member | NLL | ECE |\n"
        "|---|---|---|---|---|---|---|---|\n";
  for (const char* name : {"baseline", "best_recipe", "architectures"}) {
    fs::path d = results / "ensembles" / name;
    std::string row;
    if (fs::exists(d / "failed.json")) row = "step failed";
    else if (fs::exists(d / "not_run.txt")) row = not_run_note(d);
    else if (!fs::exists(d / "ensemble.json")) row = "not run";
    if (!row.empty()) {
      md += fmt::format("| {} | {} | | | | | | |\n", name, row);
      continue;
    }
    try {
      json e = read_json(d / "ensemble.json");
      std::vector<std::string> mem;
      double best_acc = 0;
      for (const auto& m : e.at("members")) {
        mem.push_back(fmt::format("{} ({})", m.at("run").get<std::string>(), pct(m.at("test_accuracy").get<double>())));
        best_acc = std::max(best_acc, m.at("test_accuracy").get<double>());
      }
      const json& v = e.at("vs_best_member");
      PairedComparison p;
      p.diff = v.at("diff");
      p.ci_low = v.at("ci_low");
      p.ci_high = v.at("ci_high");
      p.mcnemar_p = v.at("mcnemar_p");
      p.a_only = v.at("ensemble_only");
      p.b_only = v.at("member_only");
      md += fmt::format("| {} | {} | {} | {} | {} | {} | {:.4f} | {:.4f} |\n", name, fmt::join(mem, ", "),
                        pct(e.at("accuracy").get<double>()), pct(e.at("mean_member_accuracy").get<double>()),
                        e.at("best_member").get<std::string>(), paired_text(p), e.at("test_nll").get<double>(),
                        e.at("test_ece").get<double>());
      s.conclusions.push_back(fmt::format("**Ensemble {}** of {} models: {} test accuracy, {} against its best member: {}.",
                                          name, mem.size(), pct(e.at("accuracy").get<double>()), pp(p.diff),
                                          significant(p) ? (p.diff > 0 ? "better beyond test-set sampling"
                                                                       : "worse beyond test-set sampling")
                                                         : "not distinguishable from it on this test set"));
    } catch (const std::exception& ex) {
      md += fmt::format("| {} | unreadable record ({}) | | | | | | |\n", name, ex.what());
    }
  }
  md += "\n";
  // distillation
  RunInfo alone = read_run(results, "distill/alone", "small CNN alone"),
          student = read_run(results, "distill/student", "small CNN distilled");
  if (fs::exists(results / "distill")) {
    md += "### Distillation into a quarter-size CNN\n\n";
    md += "The same small CNN (channels 24-48-128-256), the same recipe (the best one, without batch mixing) and seed, "
          "trained alone and with the best-recipe ensemble as teacher (its members' probabilities at temperature T "
          "averaged, on the unaugmented training images; loss (1 − α) CE + α T² KL).\n\n"
          "| model | parameters | epochs | best validation | test accuracy |\n|---|---|---|---|---|\n";
    for (const RunInfo* r : {&alone, &student})
      md += fmt::format("| {} | {} | {} | {} | {} |\n", r->display,
                        cell(*r, r->ok ? std::to_string(r->metrics.value("params_total", int64_t{0})) : ""),
                        cell(*r, r->ok ? std::to_string(r->metrics.value("epochs_run", r->epochs())) : ""),
                        cell(*r, r->ok ? pct(r->val()) : ""), cell(*r, r->ok ? pct(r->acc()) : ""));
    md += "\n";
    if (alone.ok || student.ok)
      save_figure(val_curves({&alone, &student}, "Small CNN: alone vs distilled"), report_dir, "distillation.png", md,
                  "distillation curves");
    if (alone.ok && student.ok) {
      std::string why;
      if (auto p = paired(student, alone, why)) {
        md += fmt::format("Distilled − alone: {}.\n\n", paired_text(*p));
        RunInfo big = read_run(results, "seeds/best_s42", "");
        s.conclusions.push_back(fmt::format(
            "**Distillation**: the distilled small CNN ({} parameters) reaches {} against {} trained alone, {}: {}{}.",
            student.metrics.value("params_total", int64_t{0}), pct(student.acc()), pct(alone.acc()), paired_text(*p),
            significant(*p) ? (p->diff > 0 ? "distillation helps beyond test-set sampling" : "distillation hurts beyond test-set sampling")
                            : "no difference beyond test-set sampling",
            big.ok ? fmt::format(" (the full-size best-recipe CNN, seed 42: {})", pct(big.acc())) : ""));
      }
    }
  }
  s.markdown = md;
  return s;
}

// ---- errors that cost more ----------------------------------------------------------------------------

ReportSection cost_section(const fs::path& results, const fs::path& report_dir) {
  ReportSection s;
  if (!fs::exists(results / "cost")) return s;
  RunInfo before = read_run(results, "seeds/best_s42", "best recipe, seed 42"),
          after = read_run(results, "cost/pair_cost", "best recipe + pair cost, seed 42");
  std::string md = "## Errors that cost more: the upper-body garments\n\n";
  md += "The most confused classes are the upper-body garments (T-shirt/top, pullover, coat, shirt). The cost-sensitive "
        "CNN adds `pair_cost` × (expected probability on another class of that group) to its training loss; otherwise "
        "it is the best recipe with seed 42, compared with that run.\n\n";
  const auto names = class_names();
  if (!before.ok || !after.ok) {
    md += fmt::format("| run | status |\n|---|---|\n| {} | {} |\n| {} | {} |\n\n", before.display,
                      before.ok ? "ok" : before.why, after.display, after.ok ? "ok" : after.why);
    s.markdown = md;
    return s;
  }
  std::vector<int64_t> group = after.config.at("recipe").value("cost_classes", std::vector<int64_t>{0, 2, 4, 6});
  auto cb = read_confusion(before.dir / "confusion.csv"), ca = read_confusion(after.dir / "confusion.csv");
  std::string group_names;
  for (int64_t c : group) group_names += (group_names.empty() ? "" : ", ") + names.at(c);
  md += "| true → predicted | before | after | change |\n|---|---|---|---|\n";
  int64_t tb = 0, ta = 0;
  ChartSeries sb{"before", chart_color(0), {}, 2}, sa{"with pair cost", chart_color(1), {}, 2};
  ChartOptions o;
  o.title = "Confusions within the garment group";
  o.x_label = "pair (see the table)";
  o.y_label = "test images";
  int64_t k = 0, ymax = 1;
  for (int64_t a : group)
    for (int64_t b : group) {
      if (a == b) continue;
      int64_t nb = cb.at(a).at(b), na = ca.at(a).at(b);
      tb += nb;
      ta += na;
      md += fmt::format("| {} → {} | {} | {} | {:+d} |\n", names.at(a), names.at(b), nb, na, na - nb);
      sb.points.push_back({static_cast<double>(k), static_cast<double>(nb)});
      sa.points.push_back({static_cast<double>(k), static_cast<double>(na)});
      o.x_ticks.push_back(static_cast<double>(k));
      o.x_tick_labels.push_back(std::to_string(k));
      ymax = std::max({ymax, nb, na});
      ++k;
    }
  std::string why;
  auto p = paired(after, before, why);
  md += fmt::format("| **all pairs in the group** | **{}** | **{}** | **{:+d}** ({:+.1f}%) |\n\n", tb, ta, ta - tb,
                    tb ? 100.0 * static_cast<double>(ta - tb) / static_cast<double>(tb) : 0.0);
  md += fmt::format("Overall test accuracy: {} before, {} with the pair cost{}.\n\n", pct(before.acc()), pct(after.acc()),
                    p ? fmt::format(" ({})", paired_text(*p)) : fmt::format(" (no paired test: {})", why));
  o.x_min = -0.5;
  o.x_max = static_cast<double>(k) - 0.5;
  o.y_min = 0;
  o.y_max = static_cast<double>(ymax) * 1.1;
  for (int64_t y = 0; y <= ymax; y += std::max<int64_t>(1, ymax / 6)) o.y_ticks.push_back(static_cast<double>(y));
  save_figure(draw_line_chart(o, {sb, sa}), report_dir, "pair_costs.png", md, "pair confusions");
  s.conclusions.push_back(fmt::format(
      "**Pair costs**: confusions within {{{}}} went from {} to {} ({:+.1f}%), at an "
      "overall accuracy change of {}{} (one seed each: a change of this size {} the seed spread above).",
      group_names, tb, ta, tb ? 100.0 * static_cast<double>(ta - tb) / static_cast<double>(tb) : 0.0, pp(after.acc() - before.acc()),
      p ? (significant(*p) ? ", beyond test-set sampling" : ", within test-set sampling") : "", "should be read against"));
  s.markdown = md;
  return s;
}

}  // namespace dl::exp
