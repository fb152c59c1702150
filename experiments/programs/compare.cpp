// compare: reads the study's run folders (and nothing else) and writes report.md with the
// comparison table, figures, error analysis and conclusions computed from the recorded numbers.
//
//   compare --results results/<date-time> [--out DIR]
//
// Runs are looked up as <results>/baseline_transfer, <results>/lr_tuning, <results>/scratch_cnn
// (and <results>/error_analysis for its pictures). A missing run is reported as "not run".
#include <spawn.h>
#include <sys/wait.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>

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

struct Run {
  std::string key, display;
  fs::path dir;
  bool present = false;
  json metrics;
  std::vector<Prediction> predictions;
  std::vector<std::vector<int64_t>> confusion;
  std::vector<std::string> problems;  // inconsistencies found while reading
  std::string not_run_reason;          // from <run>/not_run.txt (written by study.sh)
};

const std::vector<std::pair<std::string, std::string>> kModels = {
    {"baseline_transfer", "Baseline ResNet18"}, {"lr_tuning", "Tuned ResNet18"}, {"scratch_cnn", "Scratch CNN"}};

Run load_run(const fs::path& results, const std::string& key, const std::string& display) {
  Run r{key, display, results / key};
  if (!fs::exists(r.dir / "metrics.json")) {
    if (fs::exists(r.dir / "not_run.txt")) {
      std::ifstream f(r.dir / "not_run.txt");
      std::getline(f, r.not_run_reason, '\0');
      while (!r.not_run_reason.empty() && r.not_run_reason.back() == '\n') r.not_run_reason.pop_back();
    }
    return r;
  }
  try {
    r.metrics = read_json(r.dir / "metrics.json");
    r.confusion = read_confusion(r.dir / "confusion.csv");
    r.predictions = read_predictions(r.dir / "predictions.csv");
    r.present = true;
    // cross-checks: the three files must tell the same story
    Metrics from_conf = metrics_from_confusion(r.confusion);
    double acc = r.metrics.at("test").at("accuracy").get<double>();
    if (std::abs(from_conf.accuracy - acc) > 1e-9)
      r.problems.push_back(fmt::format("metrics.json accuracy {:.6f} disagrees with confusion.csv {:.6f}", acc,
                                       from_conf.accuracy));
    if (static_cast<int64_t>(r.predictions.size()) != from_conf.count)
      r.problems.push_back(fmt::format("predictions.csv has {} rows, confusion.csv counts {}", r.predictions.size(),
                                       from_conf.count));
  } catch (const std::exception& e) {
    r.present = false;
    r.problems.push_back(fmt::format("could not read the run: {}", e.what()));
  }
  return r;
}

std::string pct(double v) { return fmt::format("{:.2f}%", 100 * v); }
std::string num(double v) { return fmt::format("{:.4f}", v); }

std::string params_str(const json& m, const char* key) {
  if (!m.contains(key)) return "?";
  return std::to_string(m[key].get<int64_t>());
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
  for (const auto& r : runs) args.push_back(r.key + "=" + (r.present ? r.dir.string() : ""));
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
    for (const auto& r : runs) {
      if (r.present && r.metrics.contains("weights_note"))
        md += fmt::format("> **{}**: {}\n\n", r.display, r.metrics["weights_note"].get<std::string>());
      for (const auto& p : r.problems) md += fmt::format("> **Problem in {}**: {}\n\n", r.display, p);
    }

    md += "## Comparison\n\n";
    md += "| Model | Test accuracy | Precision (macro) | Recall (macro) | F1 (macro) | Architecture | Training strategy "
          "| Learning rate | Epochs | Parameters (total) | Parameters (trained) |\n";
    md += "|---|---|---|---|---|---|---|---|---|---|---|\n";
    for (const auto& r : runs) {
      if (!r.present) {
        md += fmt::format("| {} | not run | | | | | | | | | |\n", r.display);
        continue;
      }
      const json& m = r.metrics;
      const json& t = m["test"];
      md += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", r.display,
                        num(t["accuracy"].get<double>()), num(t["macro"]["precision"].get<double>()),
                        num(t["macro"]["recall"].get<double>()), num(t["macro"]["f1"].get<double>()),
                        m.value("architecture", "?"), m.value("training_strategy", "?"),
                        fmt::format("{:g}", m.value("learning_rate", 0.0)), m.value("epochs", 0),
                        params_str(m, "params_total"), params_str(m, "params_trained"));
    }
    md += "\n";
    for (const auto& r : runs)
      if (!r.present && !r.not_run_reason.empty())
        md += fmt::format("**{} was not run.** {}\n\n", r.display, r.not_run_reason);

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
      if (!runs[i].present || !runs[j].present) return;
      std::string row;
      verdicts[runs[i].key + "|" + runs[j].key] = compare_two(runs[i], runs[j], num_classes, row);
      rows += row;
    };
    pair(1, 0);
    pair(0, 2);
    pair(1, 2);
    md += rows.empty() ? "| (fewer than two models were run) | | | | | |\n" : rows;
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

    fs::path timings = fs::path(results) / "timings.csv";
    if (fs::exists(timings)) {
      md += "## Run times\n\n| step | seconds | status |\n|---|---|---|\n";
      std::ifstream f(timings);
      std::string line;
      std::getline(f, line);  // header
      while (std::getline(f, line)) {
        auto a = line.find(','), b = line.find(',', a + 1);
        if (a == std::string::npos || b == std::string::npos) continue;
        md += fmt::format("| {} | {} | {} |\n", line.substr(0, a), line.substr(a + 1, b - a - 1), line.substr(b + 1));
      }
      for (const auto& r : runs)
        if (r.present && r.metrics.contains("feature_seconds") && !r.metrics.value("features_from_cache", false))
          md += fmt::format("\n{}: feature extraction at {}x{} took {:.1f} s.\n", r.display,
                            r.metrics.value("image_size", 0), r.metrics.value("image_size", 0),
                            r.metrics["feature_seconds"].get<double>());
      md += "\n";
    }

    md += "## Conclusions (computed from the numbers above)\n\n";
    std::vector<const Run*> present;
    for (const auto& r : runs)
      if (r.present) present.push_back(&r);
    if (present.empty()) {
      md += "No model was run, so there is nothing to conclude.\n";
    } else {
      const Run* best = present[0];
      for (const Run* r : present)
        if (r->metrics["test"]["accuracy"].get<double>() > best->metrics["test"]["accuracy"].get<double>()) best = r;
      md += fmt::format("- **{}**: {} with test accuracy {} and macro F1 {}.\n",
                        present.size() > 1 ? "Best model" : "Only model run", best->display,
                        pct(best->metrics["test"]["accuracy"].get<double>()),
                        num(best->metrics["test"]["macro"]["f1"].get<double>()));
      auto say = [&](const std::string& key, const char* title) {
        auto it = verdicts.find(key);
        if (it != verdicts.end()) md += fmt::format("- **{}**: {}\n", title, it->second.text);
      };
      say("lr_tuning|baseline_transfer", "Tuned vs baseline");
      say("baseline_transfer|scratch_cnn", "Pretrained (baseline) vs scratch");
      say("lr_tuning|scratch_cnn", "Pretrained (tuned) vs scratch");
      for (const auto& r : runs)
        if (!r.present) md += fmt::format("- {} was not run, so no claim is made about it.\n", r.display);
      md += "- **Limitations**: each model was trained once, with one seed, on one train/validation split";
      for (const auto& r : runs)
        if (r.present && r.metrics.contains("epochs"))
          md += fmt::format("; {} trained {} epochs", r.display, r.metrics["epochs"].get<int64_t>());
      md += ". The intervals above cover test-set sampling only, not training randomness.\n";
      for (const auto& r : runs)
        if (r.present && r.metrics.value("stand_in_weights", false))
          md += fmt::format("- {} used stand-in (randomly initialised) weights, not ImageNet's: its numbers say "
                            "nothing about transfer learning.\n", r.display);
    }
    write_text_atomic(outdir / "report.md", md);
    std::cout << "report: " << (outdir / "report.md").string() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "compare: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
