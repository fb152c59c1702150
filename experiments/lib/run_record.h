#pragma once
// The files a run folder holds, and reading them back. Training programs write them through
// these functions; `compare` and `error_analysis` read them and nothing else.
//
//   config.json      every option, seeds, split identity, git commit, machine
//   history.csv      epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds (one row per epoch)
//   metrics.json     the model's description and its test metrics (see ModelSummary)
//   confusion.csv    header "true\predicted,<class names>", one row per true class
//   predictions.csv  index,label,prediction,prob_0..prob_{C-1} for every test image
//   log.txt          what the program printed
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "experiments/lib/metrics.h"

namespace dl::exp {

namespace fs = std::filesystem;

struct EpochRecord {
  int64_t epoch = 0;
  double train_loss = 0, train_acc = 0, val_loss = 0, val_acc = 0, lr = 0, seconds = 0;
};

struct Prediction {
  int64_t index = 0, label = 0, prediction = 0;
  std::vector<float> probs;
};

// Writes text atomically: <path>.tmp, flush, rename. Throws dl::Error naming the path.
void write_text_atomic(const fs::path& path, const std::string& text);
void write_json(const fs::path& path, const nlohmann::json& j);
nlohmann::json read_json(const fs::path& path);

void write_history(const fs::path& path, const std::vector<EpochRecord>& rows);
std::vector<EpochRecord> read_history(const fs::path& path);

void write_confusion(const fs::path& path, const std::vector<std::vector<int64_t>>& confusion,
                     const std::vector<std::string>& class_names);
std::vector<std::vector<int64_t>> read_confusion(const fs::path& path);

void write_predictions(const fs::path& path, const std::vector<Prediction>& preds);
std::vector<Prediction> read_predictions(const fs::path& path);

// The current git commit of the source tree (or "unknown"), and a one-line machine description.
std::string git_commit();
std::string machine_description();
std::string timestamp();  // YYYYmmdd-HHMMSS, local time

}  // namespace dl::exp
