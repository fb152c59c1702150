#pragma once
// The report sections of the extended study (docs/extended-study.md), for compare: built from the
// records the extended programs write (<results>/robustness/<model>/robustness.json,
// <results>/calibration/<model>/calibration.json) and nothing else. A section appears when its
// step's folder exists; a model without a record is shown as not run (or its step as failed when
// study.sh recorded a failed.json); a field a record lacks is "missing". Conclusions are computed
// from the numbers, over the models in `usable` only (compare's runs whose files agree).
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace dl::exp {

// Shared by the report sections: the number at a JSON pointer of a record (nullopt when the record
// lacks it or holds something else), and such a number as text, "missing" when absent.
std::optional<double> record_number(const nlohmann::json& j, const std::string& pointer);
std::string fmt4(const std::optional<double>& v);  // 4 decimals
std::string pct(const std::optional<double>& v);   // a share as a percentage, 2 decimals
// Text made safe for one markdown table cell: line breaks and '|' become spaces, trailing spaces and
// full stops go, and more than `max` characters are cut with "...".
std::string table_cell(std::string s, size_t max = 300);
// What <dir>/not_run.txt says (study.sh writes it for a step it could not run), as a table cell;
// "" when there is no such file.
std::string not_run_note(const std::filesystem::path& dir);

struct ExtendedModel {
  std::string key, display;
};

struct ReportSection {
  std::string markdown;                  // empty: the step never ran on this results folder
  std::vector<std::string> conclusions;  // one line each, without the leading "- "
};

// Figures are linked relative to `report_dir`.
ReportSection robustness_section(const std::filesystem::path& results, const std::filesystem::path& report_dir,
                                 const std::vector<ExtendedModel>& models, const std::set<std::string>& usable);
ReportSection calibration_section(const std::filesystem::path& results, const std::filesystem::path& report_dir,
                                  const std::vector<ExtendedModel>& models, const std::set<std::string>& usable);

}  // namespace dl::exp
