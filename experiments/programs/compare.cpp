// compare: reads the study's run folders (and nothing else) and writes report.md with the
// comparison table, figures, error analysis and conclusions computed from the recorded numbers.
//
//   compare --results results/<date-time> [--out DIR]
//
// Runs are looked up as <results>/baseline_transfer, <results>/lr_tuning, <results>/scratch_cnn
// (and <results>/error_analysis for its pictures). Each model is one of: a run (its files agree
// with each other), a run whose files disagree (shown, flagged, and kept out of the comparisons and
// conclusions), failed (study.sh wrote <run>/failed.json: exit status and the end of its log),
// unreadable, or not run (no folder, or study.sh's not_run.txt). A field a record lacks is shown
// as "missing", never as a default value.
#include <spawn.h>
#include <sys/wait.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <array>
#include <map>

#include "experiments/lib/extended_report.h"
#include "experiments/lib/finetune_report.h"
#include "experiments/lib/run_model.h"
#include "experiments/lib/training_report.h"
#include "experiments/lib/metrics.h"
#include "experiments/lib/run_record.h"
#include "tensor/error.h"

extern char** environ;

#ifndef DL_SOURCE_DIR
#define DL_SOURCE_DIR "."
#endif

namespace fs = std::filesystem;
using namespace dl::exp;
using nlohmann::json;

namespace {

enum class RunState { Ok, Disagrees, Failed, Unreadable, NotRun };

struct Run {
  std::string key, display;
  fs::path dir;
  RunState state = RunState::NotRun;
  bool present = false;  // its metrics were read (Ok or Disagrees)
  json metrics, config;
  std::vector<Prediction> predictions;
  std::vector<std::vector<int64_t>> confusion;
  std::vector<std::string> problems;  // the files disagree: what with what
  std::string reason;                  // why it failed, could not be read, or was not run
  bool usable() const { return state == RunState::Ok; }  // the only runs conclusions are drawn from
};

const char* kMissing = "missing";

// A field of a record as text: strings as they are, integers as integers, other numbers with {:g};
// "missing" when the record lacks it (or holds null), never a default.
std::string field(const json& m, const char* key) {
  if (!m.is_object() || !m.contains(key) || m[key].is_null()) return kMissing;
  const json& v = m[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer() || v.is_number_unsigned()) return std::to_string(v.get<int64_t>());
  if (v.is_number()) return fmt::format("{:g}", v.get<double>());
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  return v.dump();
}

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '|') c = ' ';
  return s;
}

// "exit status 3; last lines: ..." from study.sh's failed.json.
std::string failure_reason(const fs::path& file) {
  json f = read_json(file);
  std::string why = f.contains("signal") && f["signal"].is_number()
                        ? fmt::format("killed by signal {} (exit status {})", f["signal"].get<int>(), field(f, "exit_status"))
                        : fmt::format("exit status {}", field(f, "exit_status"));
  std::vector<std::string> lines;
  for (const char* k : {"stderr_tail", "log_tail"})
    if (f.contains(k) && f[k].is_array())
      for (const auto& l : f[k])
        if (l.is_string() && !l.get<std::string>().empty()) lines.push_back(l.get<std::string>());
  if (lines.size() > 3) lines.erase(lines.begin(), lines.end() - 3);
  if (!lines.empty()) why += fmt::format("; last lines: \"{}\"", fmt::join(lines, " / "));
  return why;
}

// The files of one run must tell the same story; every disagreement is returned in words.
std::vector<std::string> cross_check(const Run& r) {
  std::vector<std::string> p;
  Metrics from_conf = metrics_from_confusion(r.confusion);
  const json& t = r.metrics.at("test");
  auto same = [&](const char* what, double recorded, double computed) {
    if (std::abs(recorded - computed) > 1e-6)
      p.push_back(fmt::format("metrics.json {} {:.6f} disagrees with confusion.csv's {:.6f}", what, recorded, computed));
  };
  same("accuracy", t.at("accuracy").get<double>(), from_conf.accuracy);
  if (t.contains("macro")) {
    same("macro precision", t["macro"].at("precision").get<double>(), from_conf.macro.precision);
    same("macro recall", t["macro"].at("recall").get<double>(), from_conf.macro.recall);
    same("macro F1", t["macro"].at("f1").get<double>(), from_conf.macro.f1);
  }
  if (t.contains("count") && t["count"].get<int64_t>() != from_conf.count)
    p.push_back(fmt::format("metrics.json counts {} test images, confusion.csv {}", t["count"].get<int64_t>(), from_conf.count));
  if (static_cast<int64_t>(r.predictions.size()) != from_conf.count) {
    p.push_back(fmt::format("predictions.csv has {} rows, confusion.csv counts {}", r.predictions.size(), from_conf.count));
  } else {
    const size_t n = r.confusion.size();
    std::vector<std::vector<int64_t>> c(n, std::vector<int64_t>(n, 0));
    bool in_range = true;
    for (const auto& q : r.predictions) {
      if (q.label < 0 || q.prediction < 0 || static_cast<size_t>(q.label) >= n || static_cast<size_t>(q.prediction) >= n)
        in_range = false;
      else
        ++c[q.label][q.prediction];
    }
    if (!in_range)
      p.push_back(fmt::format("predictions.csv holds a class outside the confusion matrix's {}", n));
    else if (c != r.confusion)
      p.push_back("the confusion matrix counted from predictions.csv differs from confusion.csv");
  }
  // config.json and metrics.json describe the same run
  // (not the learning rate: lr_tuning's config holds the sweep, its metrics the chosen rate)
  for (const char* k : {"epochs", "image_size", "weights_sha256"})
    if (r.config.is_object() && r.config.contains(k) && r.metrics.contains(k) && r.config[k] != r.metrics[k])
      p.push_back(fmt::format("config.json says {} = {}, metrics.json {}", k, r.config[k].dump(), r.metrics[k].dump()));
  return p;
}

const std::vector<std::pair<std::string, std::string>> kModels = {
    {"baseline_transfer", "Baseline ResNet18"}, {"lr_tuning", "Tuned ResNet18"}, {"scratch_cnn", "Scratch CNN"}};

Run load_run(const fs::path& results, const std::string& key, const std::string& display) {
  Run r;
  r.key = key;
  r.display = display;
  r.dir = results / key;
  if (fs::exists(r.dir / "failed.json")) {  // wins over any files the failed step left behind
    r.state = RunState::Failed;
    try {
      r.reason = failure_reason(r.dir / "failed.json");
    } catch (const std::exception& e) {
      r.reason = fmt::format("its failure record could not be read: {}", e.what());
    }
    return r;
  }
  if (!fs::exists(r.dir / "metrics.json")) {
    r.state = RunState::NotRun;
    if (fs::exists(r.dir / "not_run.txt")) {
      std::ifstream f(r.dir / "not_run.txt");
      std::getline(f, r.reason, '\0');
      while (!r.reason.empty() && r.reason.back() == '\n') r.reason.pop_back();
    }
    return r;
  }
  try {
    r.metrics = read_json(r.dir / "metrics.json");
    if (fs::exists(r.dir / "config.json")) r.config = read_json(r.dir / "config.json");
    r.confusion = read_confusion(r.dir / "confusion.csv");
    r.predictions = read_predictions(r.dir / "predictions.csv");
    r.metrics.at("test").at("accuracy").get<double>();  // the one field the table cannot do without
    r.problems = cross_check(r);
  } catch (const std::exception& e) {
    r.state = RunState::Unreadable;
    r.reason = fmt::format("could not be read: {}", e.what());
    return r;
  }
  r.present = true;
  r.state = r.problems.empty() ? RunState::Ok : RunState::Disagrees;
  return r;
}

std::string pct(double v) { return fmt::format("{:.2f}%", 100 * v); }
std::string num(double v) { return fmt::format("{:.4f}", v); }

// A metric of the test block, or "missing".
std::string test_metric(const json& m, const char* group, const char* key) {
  const json& t = m["test"];
  const json* v = group ? (t.contains(group) && t[group].contains(key) ? &t[group][key] : nullptr)
                        : (t.contains(key) ? &t[key] : nullptr);
  return v && v->is_number() ? num(v->get<double>()) : kMissing;
}

// Correctness vectors aligned on test index; empty when the two runs scored different images.
bool aligned(const Run& a, const Run& b, std::vector<uint8_t>& ca, std::vector<uint8_t>& cb, std::vector<int64_t>& labels,
             std::vector<int64_t>& pa, std::vector<int64_t>& pb) {
  std::map<int64_t, const Prediction*> ib;
  for (const auto& p : b.predictions) ib[p.index] = &p;
  if (ib.size() != a.predictions.size()) return false;
  for (const auto& p : a.predictions) {
    auto it = ib.find(p.index);
    if (it == ib.end() || it->second->label != p.label) return false;
    ca.push_back(p.prediction == p.label);
    cb.push_back(it->second->prediction == it->second->label);
    labels.push_back(p.label);
    pa.push_back(p.prediction);
    pb.push_back(it->second->prediction);
  }
  return true;
}

struct Verdict {
  std::string text;
  bool significant = false;
  double diff = 0;
};

Verdict compare_two(const Run& a, const Run& b, int64_t num_classes, std::string& table_row) {
  std::vector<uint8_t> ca, cb;
  std::vector<int64_t> labels, pa, pb;
  if (!aligned(a, b, ca, cb, labels, pa, pb)) {
    table_row = fmt::format("| {} vs {} | – | – | – | – | the runs scored different test images |\n", a.display, b.display);
    return {fmt::format("{} and {} cannot be compared: they were not scored on the same test images.", a.display,
                        b.display)};
  }
  PairedComparison pc = compare_paired(ca, cb, 2000, 2024);
  F1Difference f1 = compare_macro_f1(labels, pa, pb, num_classes, 500, 2024);
  bool sig = (pc.ci_low > 0 || pc.ci_high < 0) && pc.mcnemar_p < 0.05;
  table_row = fmt::format("| {} − {} | {:+.2f} pp [{:+.2f}, {:+.2f}] | {:+.4f} [{:+.4f}, {:+.4f}] | {} / {} | {:.3g} | {} |\n",
                          a.display, b.display, 100 * pc.diff, 100 * pc.ci_low, 100 * pc.ci_high, f1.diff, f1.ci_low,
                          f1.ci_high, pc.a_only, pc.b_only, pc.mcnemar_p, sig ? "yes" : "no");
  std::string text;
  const Run& hi = pc.diff >= 0 ? a : b;
  const Run& lo = pc.diff >= 0 ? b : a;
  if (pc.diff == 0) {
    text = fmt::format("{} and {} reach the same test accuracy.", a.display, b.display);
  } else if (sig) {
    text = fmt::format("{} beats {} by {:.2f} percentage points of test accuracy (95% bootstrap interval "
                       "[{:+.2f}, {:+.2f}] pp for {} − {}; McNemar p = {:.3g}): a significant difference on this test set.",
                       hi.display, lo.display, 100 * std::abs(pc.diff), 100 * pc.ci_low, 100 * pc.ci_high, a.display,
                       b.display, pc.mcnemar_p);
  } else {
    text = fmt::format("{} is ahead of {} by {:.2f} percentage points of test accuracy, but the difference is not "
                       "significant (95% bootstrap interval [{:+.2f}, {:+.2f}] pp for {} − {}; McNemar p = {:.3g}).",
                       hi.display, lo.display, 100 * std::abs(pc.diff), 100 * pc.ci_low, 100 * pc.ci_high, a.display,
                       b.display, pc.mcnemar_p);
  }
  return {text, sig, pc.diff};
}

int run_plot_script(const fs::path& out, const std::vector<Run>& runs, std::string& why) {
  std::string python = "/usr/bin/python3";
  fs::path script = fs::path(DL_SOURCE_DIR) / "experiments" / "plot_report.py";
  if (!fs::exists(python) || !fs::exists(script)) {
    why = "python3 or experiments/plot_report.py not found";
    return -1;
  }
  std::vector<std::string> args{python, script.string(), out.string()};
  for (const auto& r : runs) args.push_back(r.key + "=" + (r.usable() ? r.dir.string() : ""));
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid;
  if (posix_spawn(&pid, python.c_str(), nullptr, nullptr, argv.data(), environ) != 0) {
    why = "could not start python3";
    return -1;
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    why = "the plotting script failed (is python3-matplotlib installed?)";
    return -1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"compare: the study's report, computed from recorded runs only"};
  std::string results, out;
  app.add_option("--results", results, "folder holding the run folders (baseline_transfer, lr_tuning, scratch_cnn)")
      ->required();
  app.add_option("--out", out, "report folder (default: <results>/report)");
  CLI11_PARSE(app, argc, argv);
  try {
    if (!fs::is_directory(results)) dl::fail("results folder '{}' does not exist", results);
    fs::path outdir = out.empty() ? fs::path(results) / "report" : fs::path(out);
    fs::create_directories(outdir);

    std::vector<Run> runs;
    for (const auto& [key, display] : kModels) runs.push_back(load_run(results, key, display));
    int64_t num_classes = 10;
    std::vector<std::string> class_names;
    for (const auto& r : runs)
      if (r.present && r.metrics.contains("class_names")) class_names = r.metrics["class_names"].get<std::vector<std::string>>();
    if (!class_names.empty()) num_classes = static_cast<int64_t>(class_names.size());

    std::string md = "# Fashion-MNIST: pretrained ResNet18 vs a CNN from scratch\n\n";
    md += fmt::format("Generated by `compare` from the run folders in `{}`. Every number below is read from those "
                      "folders; a model without a run is shown as not run.\n\n",
                      fs::absolute(results).string());
    std::vector<std::array<std::string, 3>> timing_rows;  // step, seconds, status (study.sh's timings.csv)
    fs::path timings = fs::path(results) / "timings.csv";
    if (fs::exists(timings)) {
      std::ifstream f(timings);
      std::string line;
      std::getline(f, line);  // header
      while (std::getline(f, line)) {
        auto a = line.find(','), b = line.find(',', a + 1);
        if (a == std::string::npos || b == std::string::npos) continue;
        timing_rows.push_back({line.substr(0, a), line.substr(a + 1, b - a - 1), line.substr(b + 1)});
      }
    }
    std::vector<std::string> failed_steps;
    for (const auto& row : timing_rows)
      if (row[2].rfind("failed", 0) == 0) failed_steps.push_back(fmt::format("{} ({})", row[0], row[2]));
    if (!failed_steps.empty())
      md += fmt::format("> **Steps that failed**: {}. Each one's folder holds `failed.json` (exit status, the end of its "
                        "log); what they would have produced is missing below.\n\n",
                        fmt::join(failed_steps, ", "));
    for (const auto& r : runs) {
      if (r.present && r.metrics.contains("weights_note"))
        md += fmt::format("> **{}**: {}\n\n", r.display, r.metrics["weights_note"].get<std::string>());
      if (r.state == RunState::Disagrees) {
        md += fmt::format("> **{}: the run's files disagree**, so it is kept out of the comparisons and conclusions:\n", r.display);
        for (const auto& p : r.problems) md += fmt::format(">   - {}\n", p);
        md += "\n";
      }
    }

    md += "## Comparison\n\n";
    md += "| Model | Test accuracy | Precision (macro) | Recall (macro) | F1 (macro) | Architecture | Training strategy "
          "| Learning rate | Epochs | Parameters (total) | Parameters (trained) |\n";
    md += "|---|---|---|---|---|---|---|---|---|---|---|\n";
    for (const auto& r : runs) {
      switch (r.state) {
        case RunState::NotRun: md += fmt::format("| {} | not run | | | | | | | | | |\n", r.display); continue;
        case RunState::Failed: md += fmt::format("| {} | failed | | | | | | | | | |\n", r.display); continue;
        case RunState::Unreadable: md += fmt::format("| {} | unreadable | | | | | | | | | |\n", r.display); continue;
        case RunState::Ok:
        case RunState::Disagrees: break;
      }
      const json& m = r.metrics;
      // a run trained under --precision bf16 / fp16 says so next to its strategy (config.json)
      std::string strategy = one_line(field(m, "training_strategy"));
      if (r.config.is_object() && r.config.contains("precision") && r.config["precision"].is_string() &&
          r.config["precision"].get<std::string>() != "fp32")
        strategy += fmt::format("; {} mixed precision", r.config["precision"].get<std::string>());
      md += fmt::format("| {}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", r.display,
                        r.state == RunState::Disagrees ? " (files disagree)" : "", test_metric(m, nullptr, "accuracy"),
                        test_metric(m, "macro", "precision"), test_metric(m, "macro", "recall"),
                        test_metric(m, "macro", "f1"), one_line(field(m, "architecture")),
                        strategy, field(m, "learning_rate"), field(m, "epochs"),
                        field(m, "params_total"), field(m, "params_trained"));
    }
    md += "\n";
    for (const auto& r : runs) {
      if (r.state == RunState::NotRun && !r.reason.empty())
        md += fmt::format("**{} was not run.** {}\n\n", r.display, r.reason);
      if (r.state == RunState::Failed)
        md += fmt::format("**{} failed.** Its step ended with {} (the whole record: `{}`).\n\n", r.display, r.reason,
                          (r.dir / "failed.json").string());
      if (r.state == RunState::Unreadable) md += fmt::format("**{}** {}\n\n", r.display, r.reason);
    }

    std::string why;
    bool figures = run_plot_script(outdir, runs, why) == 0;
    md += "## Figures\n\n";
    if (figures) {
      md += "![training curves](curves.png)\n\n*Training curves per epoch: train loss, validation loss, train "
            "accuracy, validation accuracy.*\n\n![accuracy and F1](bars.png)\n\n";
      if (fs::exists(outdir / "lr_sweep.png")) md += "![learning-rate sweep](lr_sweep.png)\n\n";
    } else {
      md += fmt::format("Figures could not be drawn: {}.\n\n", why);
    }

    md += "## Differences between models (paired, on the shared test set)\n\n";
    md += "| Difference | Test accuracy, 95% CI | Macro F1, 95% CI | Discordant (first right / second right) | "
          "McNemar p | Significant |\n|---|---|---|---|---|---|\n";
    std::map<std::string, Verdict> verdicts;
    std::string rows;
    auto pair = [&](size_t i, size_t j) {
      if (!runs[i].usable() || !runs[j].usable()) return;
      std::string row;
      verdicts[runs[i].key + "|" + runs[j].key] = compare_two(runs[i], runs[j], num_classes, row);
      rows += row;
    };
    pair(1, 0);
    pair(0, 2);
    pair(1, 2);
    md += rows.empty() ? "| (fewer than two models have a run whose files agree) | | | | | |\n" : rows;
    md += "\nIntervals are 95% bootstrap percentile intervals over the test images (2,000 resamples for accuracy, 500 "
          "for F1); McNemar's test uses the discordant pairs (exact binomial below 25 pairs).\n\n";

    md += "## Error analysis\n\n";
    for (const auto& r : runs) {
      if (!r.present) continue;
      md += fmt::format("**{}**: most confused pairs (true → predicted): ", r.display);
      auto pairs = most_confused(r.confusion, 5);
      std::vector<std::string> items;
      for (const auto& p : pairs)
        items.push_back(fmt::format("{} → {} ({})",
                                    p.true_class < num_classes && !class_names.empty() ? class_names[p.true_class] : std::to_string(p.true_class),
                                    p.predicted_class < num_classes && !class_names.empty() ? class_names[p.predicted_class] : std::to_string(p.predicted_class),
                                    p.count));
      md += fmt::format("{}\n\n", fmt::join(items, "; "));
      if (figures && fs::exists(outdir / fmt::format("confusion_{}.png", r.key)))
        md += fmt::format("![confusion {}](confusion_{}.png)\n\n", r.display, r.key);
      fs::path ea = fs::path(results) / "error_analysis" / r.key;
      for (const char* pic : {"misclassified.png", "gradcam.png"})
        if (fs::exists(ea / pic))
          md += fmt::format("![{} {}]({})\n\n", r.display, pic, fs::relative(ea / pic, outdir).string());
    }

    // the extended study's sections (experiments/lib/extended_report.h), when their steps ran
    std::vector<ExtendedModel> extended_models;
    std::set<std::string> usable_keys;
    for (const auto& r : runs) {
      extended_models.push_back({r.key, r.display});
      if (r.usable()) usable_keys.insert(r.key);
    }
    // the extended study's own trained models, where their steps ran (their run folders are read by
    // the sections themselves; robustness and calibration cover them too)
    for (const auto& m : extended_trained_models()) {
      if (!fs::exists(fs::path(results) / m.key)) continue;
      extended_models.push_back({m.key, m.display});
      if (run_not_usable(fs::path(results) / m.key).empty()) usable_keys.insert(m.key);
    }
    std::vector<std::string> extended_conclusions;
    for (const auto& sec : {recipes_section(results, outdir), seeds_section(results, outdir),
                            ensembles_section(results, outdir), cost_section(results, outdir),
                            finetune_section(results, outdir),
                            robustness_section(results, outdir, extended_models, usable_keys),
                            calibration_section(results, outdir, extended_models, usable_keys)}) {
      md += sec.markdown;
      extended_conclusions.insert(extended_conclusions.end(), sec.conclusions.begin(), sec.conclusions.end());
    }

    if (fs::exists(timings)) {
      md += "## Run times\n\n| step | seconds | status |\n|---|---|---|\n";
      for (const auto& row : timing_rows) md += fmt::format("| {} | {} | {} |\n", row[0], row[1], row[2]);
      for (const auto& r : runs)
        if (r.present && r.metrics.contains("feature_seconds") && !r.metrics.value("features_from_cache", false))
          md += fmt::format("\n{}: feature extraction at {}x{} took {} s.\n", r.display, field(r.metrics, "image_size"),
                            field(r.metrics, "image_size"), field(r.metrics, "feature_seconds"));
      md += "\n";
    }

    md += "## Conclusions (computed from the numbers above)\n\n";
    std::vector<const Run*> present;
    for (const auto& r : runs)
      if (r.usable()) present.push_back(&r);
    if (present.empty()) {
      md += "No model has a run whose files agree, so there is nothing to conclude.\n";
    } else {
      const Run* best = present[0];
      for (const Run* r : present)
        if (r->metrics["test"]["accuracy"].get<double>() > best->metrics["test"]["accuracy"].get<double>()) best = r;
      md += fmt::format("- **{}**: {} with test accuracy {} and macro F1 {}.\n",
                        present.size() > 1 ? "Best model" : "Only model with a usable run", best->display,
                        pct(best->metrics["test"]["accuracy"].get<double>()), test_metric(best->metrics, "macro", "f1"));
      auto say = [&](const std::string& key, const char* title) {
        auto it = verdicts.find(key);
        if (it != verdicts.end()) md += fmt::format("- **{}**: {}\n", title, it->second.text);
      };
      say("lr_tuning|baseline_transfer", "Tuned vs baseline");
      say("baseline_transfer|scratch_cnn", "Pretrained (baseline) vs scratch");
      say("lr_tuning|scratch_cnn", "Pretrained (tuned) vs scratch");
      for (const auto& r : runs) {
        switch (r.state) {
          case RunState::NotRun: md += fmt::format("- {} was not run, so no claim is made about it.\n", r.display); break;
          case RunState::Failed: md += fmt::format("- {} failed, so no claim is made about it.\n", r.display); break;
          case RunState::Unreadable: md += fmt::format("- {} could not be read, so no claim is made about it.\n", r.display); break;
          case RunState::Disagrees:
            md += fmt::format("- {}'s files disagree with each other, so no claim is made about it.\n", r.display);
            break;
          case RunState::Ok: break;
        }
      }
      md += fs::exists(fs::path(results) / "seeds")
                ? "- **Limitations**: each model of the table above was trained once, on one train/validation split (the "
                  "section *Several seeds* gives the scratch CNN's spread over 3 seeds)"
                : "- **Limitations**: each model was trained once, with one seed, on one train/validation split";
      for (const Run* r : present)
        md += r->metrics.contains("epochs") ? fmt::format("; {} trained {} epochs", r->display, field(r->metrics, "epochs"))
                                            : fmt::format("; {}'s epochs are missing from its record", r->display);
      md += ". The intervals above cover test-set sampling only, not training randomness.\n";
      for (const auto& line : extended_conclusions) md += "- " + line + "\n";
      for (const Run* r : present) {
        std::string origin = r->metrics.value("weights_origin", std::string());
        if (origin == "stand_in" || (origin.empty() && r->metrics.value("stand_in_weights", false)))
          md += fmt::format("- {} used stand-in (randomly initialised) weights, not ImageNet's: its numbers say "
                            "nothing about transfer learning.\n", r->display);
        else if (origin == "unknown")
          md += fmt::format("- {} used weights of unknown origin (their SHA-256 matches no published file): its "
                            "numbers are not claimed as an ImageNet transfer-learning result.\n", r->display);
        else if (origin.empty() && r->metrics.contains("weights"))
          md += fmt::format("- {}: its record does not say where its weights came from (made before they were "
                            "checked), so they count as of unknown origin.\n", r->display);
      }
    }
    write_text_atomic(outdir / "report.md", md);
    std::cout << "report: " << (outdir / "report.md").string() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "compare: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
