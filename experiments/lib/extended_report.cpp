#include "experiments/lib/extended_report.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <optional>

#include "experiments/lib/corruptions.h"
#include "experiments/lib/run_record.h"

namespace dl::exp {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The record of one model, or why there is none.
struct Record {
  const ExtendedModel* model;
  std::optional<json> j;
  std::string why;  // not run / failed / unreadable
};

std::vector<Record> read_records(const fs::path& step_dir, const std::string& file, const std::vector<ExtendedModel>& models) {
  std::vector<Record> out;
  bool step_failed = fs::exists(step_dir / "failed.json");
  for (const auto& m : models) {
    Record r{&m, std::nullopt, ""};
    fs::path f = step_dir / m.key / file, failed = step_dir / m.key / "failed.json";
    if (fs::exists(f)) {  // the programs clear every model's folder first: a record is from their last run
      try {
        r.j = read_json(f);
      } catch (const std::exception& e) {
        r.why = "unreadable";
      }
    } else if (fs::exists(failed)) {  // the program could not evaluate this model, and said why
      std::string why = "unknown reason";
      try {
        why = read_json(failed).value("error", why);
      } catch (const std::exception&) {
      }
      r.why = "failed: " + table_cell(why, 200);
    } else {
      r.why = step_failed ? "step failed" : "not run";
    }
    out.push_back(std::move(r));
  }
  return out;
}

std::string link(const fs::path& file, const fs::path& report_dir, const std::string& alt) {
  if (!fs::exists(file)) return "";
  return fmt::format("![{}]({})\n\n", alt, fs::relative(file, report_dir).string());
}

}  // namespace

std::optional<double> record_number(const json& j, const std::string& pointer) {
  try {
    const json& v = j.at(json::json_pointer(pointer));
    if (v.is_number()) return v.get<double>();
  } catch (const json::exception&) {
  }
  return std::nullopt;
}
std::string fmt4(const std::optional<double>& v) { return v ? fmt::format("{:.4f}", *v) : "missing"; }
std::string pct(const std::optional<double>& v) { return v ? fmt::format("{:.2f}%", 100 * *v) : "missing"; }

std::string table_cell(std::string s, size_t max) {
  for (char& c : s)
    if (c == '\n' || c == '\r' || c == '|') c = ' ';
  while (!s.empty() && (s.back() == ' ' || s.back() == '.')) s.pop_back();
  if (s.size() > max) s = s.substr(0, max) + "...";
  return s;
}

std::string not_run_note(const fs::path& dir) {
  std::ifstream f(dir / "not_run.txt");
  if (!f) return "";
  return table_cell(std::string(std::istreambuf_iterator<char>(f), {}));
}

ReportSection robustness_section(const fs::path& results, const fs::path& report_dir,
                                 const std::vector<ExtendedModel>& models, const std::set<std::string>& usable) {
  ReportSection s;
  fs::path dir = results / "robustness";
  if (!fs::exists(dir)) return s;
  auto recs = read_records(dir, "robustness.json", models);
  const auto& suite = corruption_suite();
  std::string& md = s.markdown;
  md += "## Robustness (corrupted test images)\n\n";
  md += "Accuracy on test images corrupted before each model's own preprocessing: 7 corruptions at severities "
        "1 to 5 (docs/extended-study.md gives every parameter). *Mean corruption accuracy* is the mean over all 35 "
        "corruption-severity pairs; *relative* divides it by the clean accuracy on the same images. The images are the first N of the official "
        "test set (the column *images*), the same for every model; they need not be the test subset a run was "
        "scored on, so *clean* can differ from the comparison table's accuracy.\n\n";
  if (fs::exists(dir / "failed.json"))
    md += "**The robustness step failed** (see robustness/failed.json); the records below are those it wrote before it failed.\n\n";
  md += "| model | images | clean | mean corruption acc | relative |";
  for (const auto& c : suite) md += " " + c.name + " |";
  md += "\n|---|---|---|---|---|";
  for (size_t i = 0; i < suite.size(); ++i) md += "---|";
  md += "\n";
  for (const auto& r : recs) {
    if (!r.j) {
      std::string cells;
      for (size_t i = 0; i < suite.size(); ++i) cells += " |";
      md += fmt::format("| {} | {} | | | |{}\n", r.model->display, r.why, cells);
      continue;
    }
    const json& j = *r.j;
    std::optional<double> n = record_number(j, "/images");
    md += fmt::format("| {} | {} | {} | {} | {} |", r.model->display, n ? fmt::format("{:.0f}", *n) : "missing",
                      pct(record_number(j, "/clean_accuracy")), pct(record_number(j, "/mean_corruption_accuracy")),
                      fmt4(record_number(j, "/relative_mean_corruption_accuracy")));
    for (const auto& c : suite) {  // mean over the five severities
      std::optional<double> mean = 0.0;
      for (int k = 0; k < kSeverities && mean; ++k) {
        auto a = record_number(j, fmt::format("/corruptions/{}/accuracy/{}", c.name, k));
        mean = a ? std::optional<double>(*mean + *a / kSeverities) : std::nullopt;
      }
      md += " " + pct(mean) + " |";
    }
    md += "\n";
  }
  md += "\nMean accuracy over the corruptions, per severity:\n\n| model | clean |";
  for (int k = 1; k <= kSeverities; ++k) md += fmt::format(" severity {} |", k);
  md += "\n|---|---|";
  for (int k = 1; k <= kSeverities; ++k) md += "---|";
  md += "\n";
  for (const auto& r : recs) {
    if (!r.j) continue;
    md += fmt::format("| {} | {} |", r.model->display, pct(record_number(*r.j, "/clean_accuracy")));
    for (int k = 0; k < kSeverities; ++k) md += " " + pct(record_number(*r.j, fmt::format("/mean_by_severity/{}", k))) + " |";
    md += "\n";
  }
  md += "\n";
  md += link(dir / "robustness.png", report_dir, "accuracy against severity");
  md += link(dir / "samples.png", report_dir, "the corruption suite on one test image");

  // conclusions: over usable models with a complete record, on the same images
  std::vector<std::pair<const Record*, double>> ok;
  std::set<double> sizes;
  for (const auto& r : recs) {
    if (!r.j || !usable.count(r.model->key)) continue;
    auto m = record_number(*r.j, "/mean_corruption_accuracy"), n = record_number(*r.j, "/images");
    if (!m || !n) continue;
    ok.push_back({&r, *m});
    sizes.insert(*n);
  }
  if (ok.size() >= 2 && sizes.size() == 1) {
    std::sort(ok.begin(), ok.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    std::string rest;
    for (size_t i = 1; i < ok.size(); ++i)
      rest += fmt::format("{}{} {}", i > 1 ? ", " : "", ok[i].first->model->display, pct(ok[i].second));
    s.conclusions.push_back(fmt::format(
        "**Most robust (mean corruption accuracy)**: {} with {} (then {}), on {:.0f} test images; one run per model, "
        "no interval.",
        ok[0].first->model->display, pct(ok[0].second), rest, *sizes.begin()));
  } else if (ok.size() >= 2) {
    s.conclusions.push_back("The robustness records cover different numbers of images, so the models are not ranked.");
  }
  for (const auto& [r, m] : ok) {  // each model's hardest corruption
    std::string worst;
    double worst_acc = 2;
    for (const auto& c : suite) {
      double mean = 0;
      bool all = true;
      for (int k = 0; k < kSeverities; ++k) {
        auto a = record_number(*r->j, fmt::format("/corruptions/{}/accuracy/{}", c.name, k));
        all = all && a;
        mean += a.value_or(0) / kSeverities;
      }
      if (all && mean < worst_acc) {
        worst_acc = mean;
        worst = c.name;
      }
    }
    if (!worst.empty())
      s.conclusions.push_back(fmt::format("{}'s hardest corruption is {} ({} averaged over its severities).",
                                          r->model->display, worst, pct(worst_acc)));
  }
  return s;
}

ReportSection calibration_section(const fs::path& results, const fs::path& report_dir,
                                  const std::vector<ExtendedModel>& models, const std::set<std::string>& usable) {
  ReportSection s;
  fs::path dir = results / "calibration";
  if (!fs::exists(dir)) return s;
  auto recs = read_records(dir, "calibration.json", models);
  std::string& md = s.markdown;
  md += "## Calibration\n\n";
  md += "Expected calibration error (ECE, 15 equal-width confidence bins) and negative log-likelihood (NLL) on the "
        "test images, before and after temperature scaling; the temperature T is fitted on the validation split "
        "by minimising its NLL (golden-section search on log T). *Recorded* is the ECE of the probabilities the "
        "run wrote in predictions.csv.\n\n";
  if (fs::exists(dir / "failed.json"))
    md += "**The calibration step failed** (see calibration/failed.json); the records below are those it wrote before it failed.\n\n";
  md += "| model | T | test ECE before | test ECE after | test NLL before | test NLL after | recorded ECE | "
        "validation images | test images |\n|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& r : recs) {
    if (!r.j) {
      md += fmt::format("| {} | {} | | | | | | | |\n", r.model->display, r.why);
      continue;
    }
    const json& j = *r.j;
    auto t = record_number(j, "/temperature/value");
    bool at_bound = j.contains("temperature") && j["temperature"].value("at_bound", false);
    auto n_val = record_number(j, "/temperature/validation_images"), n_test = record_number(j, "/test/before/count");
    md += fmt::format("| {} | {}{} | {} | {} | {} | {} | {} | {} | {} |\n", r.model->display, t ? fmt::format("{:.3f}", *t) : "missing",
                      at_bound ? " (at its bound)" : "", fmt4(record_number(j, "/test/before/ece")), fmt4(record_number(j, "/test/after/ece")),
                      fmt4(record_number(j, "/test/before/nll")), fmt4(record_number(j, "/test/after/nll")), fmt4(record_number(j, "/recorded/ece")),
                      n_val ? fmt::format("{:.0f}", *n_val) : "missing", n_test ? fmt::format("{:.0f}", *n_test) : "missing");
  }
  md += "\n";
  for (const auto& r : recs)
    if (r.j) md += link(dir / r.model->key / "reliability.png", report_dir, r.model->display + " reliability diagram");

  std::vector<std::pair<const Record*, double>> after;
  std::vector<std::string> better, worse;
  for (const auto& r : recs) {
    if (!r.j || !usable.count(r.model->key)) continue;
    auto b = record_number(*r.j, "/test/before/ece"), a = record_number(*r.j, "/test/after/ece");
    if (!a || !b) continue;
    after.push_back({&r, *a});
    (*a < *b ? better : worse).push_back(fmt::format("{} ({:.4f} → {:.4f})", r.model->display, *b, *a));
  }
  if (after.size() >= 2) {
    std::sort(after.begin(), after.end(), [](const auto& x, const auto& y) { return x.second < y.second; });
    s.conclusions.push_back(fmt::format("**Best calibrated after temperature scaling (test ECE)**: {} with {:.4f} "
                                        "(next: {} {:.4f}).",
                                        after[0].first->model->display, after[0].second,
                                        after[1].first->model->display, after[1].second));
  }
  if (!better.empty())
    s.conclusions.push_back(fmt::format("Temperature scaling lowered the test ECE of {}.", fmt::join(better, ", ")));
  if (!worse.empty())
    s.conclusions.push_back(fmt::format("Temperature scaling did not lower the test ECE of {} (T is fitted for the "
                                        "validation NLL, not for the ECE).", fmt::join(worse, ", ")));
  return s;
}

}  // namespace dl::exp
