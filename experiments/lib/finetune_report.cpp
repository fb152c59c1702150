#include "experiments/lib/finetune_report.h"

#include <fmt/format.h>

#include <fstream>
#include <iterator>
#include <optional>

#include "experiments/lib/run_record.h"

namespace dl::exp {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string secs(const std::optional<double>& v) { return v ? fmt::format("{:.0f} s", *v) : "missing"; }
std::string count(const std::optional<double>& v) { return v ? fmt::format("{:.0f}", *v) : "missing"; }

// Why <dir> holds no usable run: "" when it holds one.
std::string why_not(const fs::path& dir) {
  const std::string missing_weights = "ImageNet weights for ResNet18 are not at";
  if (fs::exists(dir / "failed.json")) {
    json f;
    try {
      f = read_json(dir / "failed.json");
    } catch (const std::exception&) {
      return "step failed (its failed.json is unreadable)";
    }
    std::string last, all;
    for (const char* k : {"stderr_tail", "log_tail"})
      if (f.contains(k) && f[k].is_array())
        for (const auto& l : f[k])
          if (l.is_string() && !l.get<std::string>().empty()) {
            all += l.get<std::string>() + "\n";
            if (last.empty() || std::string(k) == "stderr_tail") last = l.get<std::string>();
          }
    if (all.find(missing_weights) != std::string::npos) return "not run: the ResNet18 weights are missing";
    std::string status = f.contains("exit_status") ? f["exit_status"].dump() : std::string("?");
    return table_cell(fmt::format("step failed (exit {}){}", status, last.empty() ? "" : ": " + last));
  }
  if (std::string t = not_run_note(dir); !t.empty()) {
    if (t.find(missing_weights) != std::string::npos) return "not run: the ResNet18 weights are missing";
    return "not run: " + t;
  }
  if (!fs::exists(dir / "metrics.json")) return "not run";
  return "";
}

}  // namespace

ReportSection finetune_section(const fs::path& results, const fs::path& report_dir) {
  (void)report_dir;  // no figures yet
  ReportSection s;
  const fs::path dir = results / "finetune", base_dir = results / "baseline_transfer";
  if (!fs::exists(dir)) return s;
  std::string md = "## Fine-tuning beyond the frozen head\n\n";
  std::string why = why_not(dir);
  json m;
  if (why.empty()) {
    try {
      m = read_json(dir / "metrics.json");
    } catch (const std::exception& e) {
      why = "its metrics.json is unreadable";
    }
  }
  if (!why.empty()) {
    md += fmt::format("ResNet18 fine-tuned (progressive unfreezing): {}.\n\n", why);
    s.markdown = md;
    s.conclusions.push_back(fmt::format("Fine-tuning beyond the frozen head: {}.", why));
    return s;
  }
  std::optional<json> base;
  std::string base_why = why_not(base_dir);
  if (base_why.empty()) {
    try {
      base = read_json(base_dir / "metrics.json");
    } catch (const std::exception&) {
      base_why = "its metrics.json is unreadable";
    }
  }

  md += fmt::format("{}\n\n", m.value("training_strategy", std::string("progressive unfreezing")));
  if (m.value("stand_in_weights", false) || m.contains("weights_note"))
    md += fmt::format("Note: {}.\n\n", m.value("weights_note", std::string("the weights are a stand-in")));
  md += "| model | test accuracy | macro F1 | best val accuracy | parameters trained | image size | training time |\n"
        "|---|---|---|---|---|---|---|\n";
  auto row = [&](const json& j, const std::string& name) {
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {} |\n", name, fmt4(record_number(j, "/test/accuracy")),
                      fmt4(record_number(j, "/test/macro/f1")), fmt4(record_number(j, "/best_val_acc")),
                      count(record_number(j, "/params_trained")), count(record_number(j, "/image_size")),
                      secs(record_number(j, "/train_seconds")));
  };
  if (base) row(*base, base->value("display_name", std::string("Baseline ResNet18")) + " (frozen backbone)");
  else md += fmt::format("| Baseline ResNet18 (frozen backbone) | {} | | | | | |\n", base_why);
  row(m, m.value("display_name", std::string("ResNet18 fine-tuned (progressive unfreezing)")));

  // the stages, with their learning rates from config.json
  json config;
  try {
    config = read_json(dir / "config.json");
  } catch (const std::exception&) {
  }
  const json stages = m.value("stages", json::array());
  std::optional<double> stage1_val, best_stage_val;
  int64_t best_stage = 0;
  if (!stages.empty()) {
    md += "\n| stage | trains | learning rates | epochs | best epoch | best val accuracy | time |\n|---|---|---|---|---|---|---|\n";
    for (const auto& st : stages) {
      int64_t k = st.value("stage", int64_t(0));
      std::string trains, lrs;
      try {
        for (const auto& g : config.at("stages").at(k - 1).at("param_groups")) {
          trains += (trains.empty() ? "" : ", ") + g.at("name").get<std::string>();
          lrs += fmt::format("{}{} {:g}", lrs.empty() ? "" : ", ", g.at("name").get<std::string>(), g.at("lr").get<double>());
        }
      } catch (const std::exception&) {
        trains = lrs = "missing";
      }
      auto v = record_number(st, "/best_val_acc");
      if (k == 1) stage1_val = v;
      if (v && (!best_stage_val || *v > *best_stage_val)) {
        best_stage_val = v;
        best_stage = k;
      }
      md += fmt::format("| {} | {} | {} | {} | {} | {} | {} |\n", k, trains, lrs, count(record_number(st, "/epochs")),
                        count(record_number(st, "/best_epoch")), fmt4(v), secs(record_number(st, "/seconds")));
    }
  }
  md += fmt::format("\nRun folder: `{}`.\n", fs::relative(dir, results).string());
  s.markdown = md;

  // conclusions, from the numbers
  auto acc = record_number(m, "/test/accuracy");
  if (base && acc) {
    auto b = record_number(*base, "/test/accuracy");
    auto n = record_number(m, "/test/count"), bn = record_number(*base, "/test/count");
    std::string caveats;
    if (n != bn) caveats += "; the two were tested on different numbers of images";
    if (base->value("weights_sha256", std::string()) != m.value("weights_sha256", std::string()))
      caveats += "; they started from different weights files";
    if (record_number(*base, "/image_size") != record_number(m, "/image_size")) caveats += "; at different image sizes";
    if (m.value("stand_in_weights", false)) caveats += "; the weights are a stand-in, so this is no transfer-learning result";
    if (b) {
      double d = 100 * (*acc - *b);
      s.conclusions.push_back(fmt::format(
          "Fine-tuning (progressive unfreezing) {} the frozen-backbone baseline's test accuracy: "
          "{:.4f} vs {:.4f} ({:+.2f} points){}.",
          d > 0 ? "beat" : d < 0 ? "fell short of" : "matched", *acc, *b, d, caveats));
    }
  } else if (acc) {
    s.conclusions.push_back(fmt::format("Fine-tuning (progressive unfreezing) reached test accuracy {:.4f}; the "
                                        "frozen-backbone baseline is {}, so there is no comparison.",
                                        *acc, base_why));
  }
  if (stages.size() > 1 && stage1_val && best_stage_val) {
    if (best_stage == 1)
      s.conclusions.push_back(fmt::format(
          "Unfreezing did not help on validation: the head-only stage's best validation accuracy ({:.4f}) was the highest.",
          *stage1_val));
    else
      s.conclusions.push_back(fmt::format(
          "Unfreezing helped on validation: stage {} reached {:.4f} against the head-only stage's {:.4f} ({:+.2f} points).",
          best_stage, *best_stage_val, *stage1_val, 100 * (*best_stage_val - *stage1_val)));
  }
  return s;
}

}  // namespace dl::exp
