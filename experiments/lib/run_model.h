#pragma once
// The trained model of a run folder (scratch_cnn, baseline_transfer, lr_tuning, finetune), rebuilt from its
// config.json and best.ckpt, with the transform its inputs need: what error_analysis and
// export_onnx start from.
#include <chrono>
#include <filesystem>
#include <vector>
#include <functional>
#include <string>
#include <vector>

#include "data/transforms.h"
#include "experiments/lib/study.h"
#include "models/classifier.h"

namespace dl::exp {

// The study's trained models in the report's order: run folder name and display name.
struct TrainedModel {
  std::string key, display;
};
const std::vector<TrainedModel>& trained_models();
// The extended study's trained models that the evaluation steps (robustness, calibration) also
// cover: key = the run folder relative to the results folder (docs/extended-study.md).
const std::vector<TrainedModel>& extended_trained_models();
// trained_models() then extended_trained_models(): what robustness and calibration evaluate.
std::vector<TrainedModel> evaluated_models();

// Why a run folder holds no finished model ("not run", "its step failed (see .../failed.json)"),
// or "" when it holds one.
std::string run_not_usable(const std::filesystem::path& run);

// Seconds since t0, for progress lines.
double seconds_since(std::chrono::steady_clock::time_point t0);

struct RunModel {
  std::string key;                             // scratch_cnn, baseline_transfer, lr_tuning or finetune
  std::shared_ptr<models::Classifier> model;   // in eval mode
  data::TransformPtr transform;                // test-image preprocessing (Fashion-MNIST uint8 in)
  Shape input_shape;                           // one preprocessed image: (C, H, W)
  Device device = kCPU;                        // where the model is (move it with to())
  // the run's --precision: run_model_logits runs the model under that autocast, as the run scored its
  // test set (bf16/fp16 logits differ from fp32 ones in the last bits, and a borderline image may flip)
  DType precision = DType::Float32;
  void to(Device d) {
    model->to(d);
    device = d;
  }
};

// `key` empty: read from config.json's "program". A finetune run's best.ckpt holds the whole
// network. A linear-probe ResNet18 run needs the backbone weights it was
// trained on, at the recorded path, with the recorded SHA-256 (a different file is refused).
RunModel load_run_model(const std::filesystem::path& run, std::string key = "");

// The logits (N, classes), float32 on the CPU, of raw Fashion-MNIST images (N, 28, 28) uint8 through
// the run's transform (on the CPU) and model (on m.device), in batches, without gradients; progress(images done) after each
// batch when given.
Tensor run_model_logits(const RunModel& m, const Tensor& raw, int64_t batch_size = 256,
                        const std::function<void(int64_t)>& progress = {});

// The batch size the evaluation programs run a trained model with: 256 for the scratch CNNs, 64 for
// a ResNet18 (its activations at 224x224 are large).
int64_t eval_batch_size(const RunModel& m);

// Images per second of run_model_logits on `raw` ((N, 28, 28) uint8) in batches of `batch_size`: one
// batch first (allocations, first touches), then the fastest of three timed passes over all of raw.
// What the evaluation programs' --estimate measures.
double measure_images_per_second(const RunModel& m, const Tensor& raw, int64_t batch_size);

// (N, C) float logits as N * C doubles, row-major (what experiments/lib/calibration.h takes).
std::vector<double> logits_as_doubles(const Tensor& logits);

// The data a run folder was trained and tested on, rebuilt from its config.json (seed, validation
// share, limits): the same split (its recorded identity is checked) and the same index lists
// (checked against the recorded counts). data_dir empty: the recorded folder.
StudyData run_study_data(const std::filesystem::path& run, const std::string& data_dir = "");

}  // namespace dl::exp
