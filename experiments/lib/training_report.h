#pragma once
// The report sections of the extended study's training experiments (docs/extended-study.md), for
// compare: the recipe ablation, the seed intervals, the ensembles and distillation, and the pair
// costs. Built from the run folders those steps wrote (metrics.json, config.json, history.csv,
// predictions.csv, confusion.csv, ensemble.json, recipes/best.json) and nothing else; a missing run
// is shown as not run (or failed, when study.sh recorded its failure); conclusions are computed from
// the numbers. Each section draws its figure into report_dir.
#include <filesystem>
#include <string>
#include <vector>

#include "experiments/lib/extended_report.h"

namespace dl::exp {

ReportSection recipes_section(const std::filesystem::path& results, const std::filesystem::path& report_dir);
ReportSection seeds_section(const std::filesystem::path& results, const std::filesystem::path& report_dir);
ReportSection ensembles_section(const std::filesystem::path& results, const std::filesystem::path& report_dir);
ReportSection cost_section(const std::filesystem::path& results, const std::filesystem::path& report_dir);

// Statistics over seeds: mean, sample standard deviation (n - 1) and the two-sided 95% Student-t
// interval mean +- t(0.975, n - 1) * sd / sqrt(n) (none for n < 2).
struct SeedStats {
  int64_t n = 0;
  double mean = 0, sd = 0, low = 0, high = 0;
};
SeedStats seed_stats(const std::vector<double>& values);
// t(0.975, df) for df >= 1: a table to df 30 (4 decimals), then a Cornish-Fisher expansion (within 1e-4).
double t_quantile_975(int64_t df);

}  // namespace dl::exp
