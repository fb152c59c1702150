#pragma once
// Run folders: every experiment program writes its outputs into one (see run_record.h for the
// files it holds). create_run_dir picks and creates it.
#include <filesystem>
#include <optional>
#include <string>

namespace dl::exp {

// `explicit_dir` when given and non-empty (created with its parents if missing), else
// "<runs_root>/<prefix>-<YYYYmmdd-HHMMSS>", with "-2", "-3", ... appended when that folder exists
// already (two runs started in the same second). Throws dl::Error naming the folder on failure.
std::filesystem::path create_run_dir(const std::string& prefix, const std::optional<std::string>& explicit_dir = {},
                                     const std::filesystem::path& runs_root = "runs");

}  // namespace dl::exp
