#pragma once
// The trained model of a run folder (scratch_cnn, baseline_transfer, lr_tuning), rebuilt from its
// config.json and best.ckpt, with the transform its inputs need: what error_analysis and
// export_onnx start from.
#include <filesystem>
#include <string>

#include "data/transforms.h"
#include "models/classifier.h"

namespace dl::exp {

struct RunModel {
  std::string key;                             // scratch_cnn, baseline_transfer or lr_tuning
  std::shared_ptr<models::Classifier> model;   // in eval mode
  data::TransformPtr transform;                // test-image preprocessing (Fashion-MNIST uint8 in)
  Shape input_shape;                           // one preprocessed image: (C, H, W)
};

// `key` empty: read from config.json's "program". A ResNet18 run needs the backbone weights it was
// trained on, at the recorded path, with the recorded SHA-256 (a different file is refused).
RunModel load_run_model(const std::filesystem::path& run, std::string key = "");

}  // namespace dl::exp
