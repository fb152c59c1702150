#pragma once
// Linear probing of a frozen, ImageNet-pretrained ResNet18 (the study's baseline and tuned models).
//
// Why features can be cached exactly: the backbone is frozen and its batch norm runs in eval mode
// (running statistics), and the ResNet input pipeline has no random augmentation, so each image's
// pooled 512-d feature is the same in every epoch. Computing it once and training the 512->10
// head on the stored features gives the same head, step for step, as running the whole network
// every epoch, at a small fraction of the cost (one backbone pass over the data instead of one per
// epoch, and per learning rate of the sweep).
#include <filesystem>
#include <string>

#include "experiments/lib/study.h"
#include "models/resnet.h"
#include "models/weights_identity.h"

namespace dl::exp {

struct TransferOptions {
  std::string weights = "weights/resnet18-f37072fd.pth";
  int64_t image_size = 224;
  std::string cache_dir;           // default: <run folder's parent>/feature_cache
  bool stand_in_weights = false;   // the user says the weights are a random stand-in (tests, demos)
  void add_to(CLI::App& app);
};

// Fails with instructions (where to put the file, how to fetch it) when the weights are missing;
// makes load_weights accept ONNX files (onnx/weights.h) for what follows.
void require_weights(const std::string& path);
std::string missing_weights_message(const std::string& path);

struct FeatureSet {
  Tensor train, val, test;                    // (N, 512) float32, rows in index order
  Tensor train_labels, val_labels, test_labels;  // int64
  std::vector<int64_t> train_idx, val_idx, test_idx;
  double extract_seconds = 0;                 // 0 when loaded from the cache
  std::string cache_file;
  bool from_cache = false;
  std::string weights_sha256, load_note;
  models::WeightsIdentity identity;          // what the weights are, checked by digest
};

// The cache file features_for reads and writes in `dir` for these weights (by SHA-256), image size
// and data, and the key its metadata must hold; features extracted under --precision bf16 have keys
// of their own.
std::pair<std::filesystem::path, std::string> feature_cache_file(const std::filesystem::path& dir,
                                                                 const std::string& weights_sha256, int64_t image_size,
                                                                 const StudyData& d,
                                                                 const std::string& precision = "fp32");

// Loads the backbone weights, then reads the features from the cache when a file for exactly
// these weights, image size, data and indices exists; otherwise extracts and stores them.
FeatureSet features_for(const TransferOptions& t, const StudyData& d, const CommonOptions& o, Logger& log);

struct HeadResult {
  FitResult fit;
  EvalResult test;                 // only when evaluate_test
  std::shared_ptr<nn::Linear> head;
};

// Trains a fresh 512->classes head (torchvision's Linear init, seeded) with Adam on the features.
HeadResult train_head(const FeatureSet& f, double lr, int64_t epochs, const CommonOptions& o,
                      const std::filesystem::path& run, nlohmann::json config, Logger& log, bool evaluate_test);

// config.json's contents shared by the transfer programs (base_config plus weights, image size,
// epochs, optimizer and input pipeline).
nlohmann::json transfer_config(const std::string& program, const CommonOptions& o, const StudyData& d,
                               const TransferOptions& t, const FeatureSet& f, int64_t epochs);

// The model description for metrics.json.
nlohmann::json transfer_description(const std::string& key, const std::string& display, const TransferOptions& t,
                                    const FeatureSet& f, double lr, int64_t epochs, const FitResult& r);

}  // namespace dl::exp
