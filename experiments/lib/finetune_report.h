#pragma once
// The report section of the fine-tuning experiment (build/bin/finetune, docs/extended-study.md), for
// compare: built from <results>/finetune/metrics.json (and history.csv) and, when it exists,
// <results>/baseline_transfer/metrics.json, whose frozen-backbone test accuracy it is compared
// with. Without a finished run the section says "not run" with the reason study.sh recorded
// (<results>/finetune/not_run.txt) or "step failed" with the exit status and the last error line
// (<results>/finetune/failed.json; a failure for missing weights reads as not run). A field the
// record lacks is "missing". Conclusions are computed from the numbers.
#include <filesystem>

#include "experiments/lib/extended_report.h"

namespace dl::exp {

// markdown empty: <results>/finetune does not exist (the step was never part of this study).
ReportSection finetune_section(const std::filesystem::path& results, const std::filesystem::path& report_dir);

}  // namespace dl::exp
