#include "experiments/lib/run_model.h"

#include "tensor/autocast.h"

#include "data/fashion_mnist.h"
#include "experiments/lib/study.h"
#include "experiments/lib/transfer.h"
#include "models/checkpoint.h"
#include "models/io/sha256.h"
#include "models/resnet.h"
#include "models/scratch_cnn.h"
#include "autograd/node.h"
#include "tensor/autocast.h"
#include "tensor/ops.h"

namespace dl::exp {

const std::vector<TrainedModel>& trained_models() {
  static const std::vector<TrainedModel> models{
      {"scratch_cnn", "Scratch CNN"}, {"baseline_transfer", "Baseline ResNet18"}, {"lr_tuning", "Tuned ResNet18"}};
  return models;
}

const std::vector<TrainedModel>& extended_trained_models() {
  static const std::vector<TrainedModel> models{{"seeds/best_s42", "Best-recipe CNN (seed 42)"},
                                                {"cost/pair_cost", "Cost-sensitive CNN (seed 42)"},
                                                {"distill/alone", "Small CNN, trained alone"},
                                                {"distill/student", "Small CNN, distilled"},
                                                {"finetune", "ResNet18 fine-tuned (progressive unfreezing)"}};
  return models;
}

std::vector<TrainedModel> evaluated_models() {
  std::vector<TrainedModel> v = trained_models();
  v.insert(v.end(), extended_trained_models().begin(), extended_trained_models().end());
  return v;
}

std::string run_not_usable(const std::filesystem::path& run) {
  if (!std::filesystem::exists(run / "metrics.json")) return "not run";
  if (std::filesystem::exists(run / "failed.json"))
    return "its step failed (see " + (run / "failed.json").string() + ")";
  return "";
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

RunModel load_run_model(const std::filesystem::path& run, std::string key) {
  nlohmann::json config = read_json(run / "config.json");
  if (key.empty()) key = config.value("program", std::string());
  if (key != "scratch_cnn" && key != "baseline_transfer" && key != "lr_tuning" && key != "finetune")
    fail("{}: program '{}' is not one that trains a model (scratch_cnn, baseline_transfer, lr_tuning, finetune)",
         (run / "config.json").string(), key);
  Checkpoint best = load_checkpoint((run / "best.ckpt").string());
  RunModel l;
  l.key = key;
  if (key == "scratch_cnn") {
    models::ScratchCnnConfig mc;
    mc.channels = config.at("model").at("channels").get<std::array<int64_t, 4>>();
    mc.dropout = config.value("dropout", 0.3);
    auto m = std::make_shared<models::ScratchCnn>(mc);
    m->load_state_dict(best.model, true);
    double mean = config.at("normalization").at("mean").get<double>(), sd = config.at("normalization").at("std").get<double>();
    l.transform = data::transforms::Compose({data::transforms::ToFloat(), data::transforms::Normalize({mean}, {sd})});
    l.input_shape = {mc.in_channels, 28, 28};
    l.model = m;
  } else if (key == "finetune") {
    // every tensor was trained or kept by the run: best.ckpt holds the whole state dict, so the
    // backbone weights file is not needed
    auto m = std::make_shared<models::ResNet18>(data::kFashionMnistClasses);
    m->load_state_dict(best.model, true);
    const int64_t size = config.at("image_size").get<int64_t>();
    l.transform = data::transforms::ResnetInput(size);
    l.input_shape = {3, size, size};
    l.model = m;
  } else {
    auto m = std::make_shared<models::ResNet18>(data::kFashionMnistClasses);
    std::string weights = config.at("weights").get<std::string>();
    require_weights(weights);
    // the backbone must be the one the head was trained on: the recorded digest says which
    std::string recorded = config.value("weights_sha256", std::string()), now = io::sha256_file(weights);
    if (!recorded.empty() && recorded != now)
      fail("'{}' has SHA-256 {}, but {} was trained on weights with SHA-256 {}; the run and the weights disagree",
           weights, now, (run / "config.json").string(), recorded);
    models::load_resnet18_weights(*m, weights);
    m->fc->load_state_dict(best.model, true);  // the trained head
    const int64_t size = config.at("image_size").get<int64_t>();
    l.transform = data::transforms::ResnetInput(size);
    l.input_shape = {3, size, size};
    l.model = m;
  }
  l.model->eval();
  l.precision = parse_precision(config.value("precision", std::string("fp32")));
  return l;
}

Tensor run_model_logits(const RunModel& m, const Tensor& raw, int64_t batch_size,
                        const std::function<void(int64_t)>& progress) {
  if (raw.dtype() != DType::UInt8 || raw.dim() != 3) fail("run_model_logits: expected (N, 28, 28) uint8 images");
  const int64_t n = raw.size(0);
  NoGradGuard ng;
  // float16 autocast exists on CUDA only: such a run evaluated on the CPU runs in float32
  const DType precision = m.precision == DType::Float16 && m.device.type != DeviceType::CUDA ? DType::Float32 : m.precision;
  auto scope = autocast(m.device, precision);
  Generator g(0);  // the test transforms draw nothing
  std::vector<Tensor> parts;
  for (int64_t i = 0; i < n; i += batch_size) {
    int64_t e = std::min(n, i + batch_size);
    Tensor x = m.transform->apply(ops::slice(raw, 0, i, e, 1).contiguous(), g);
    parts.push_back(ops::to_device(m.model->forward(ops::to_device(x, m.device)).detach(), kCPU).contiguous());
    if (progress) progress(e);
  }
  if (parts.empty()) return empty({0, static_cast<int64_t>(data::kFashionMnistClasses)});
  return parts.size() == 1 ? parts[0] : ops::cat(parts, 0);
}

int64_t eval_batch_size(const RunModel& m) { return m.key == "scratch_cnn" ? 256 : 64; }

double measure_images_per_second(const RunModel& m, const Tensor& raw, int64_t batch_size) {
  if (raw.dim() < 1 || raw.size(0) == 0) fail("measure_images_per_second: no images");
  run_model_logits(m, ops::slice(raw, 0, 0, std::min<int64_t>(batch_size, raw.size(0)), 1).contiguous(), batch_size);
  double best = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    run_model_logits(m, raw, batch_size);
    best = std::min(best, seconds_since(t0));
  }
  return static_cast<double>(raw.size(0)) / std::max(best, 1e-9);
}

std::vector<double> logits_as_doubles(const Tensor& logits) {
  Tensor c = logits.to(DType::Float64).contiguous();
  const double* p = c.data_ptr<double>();
  return std::vector<double>(p, p + c.numel());
}

StudyData run_study_data(const std::filesystem::path& run, const std::string& data_dir) {
  const auto file = (run / "config.json").string();
  nlohmann::json c = read_json(run / "config.json");
  CommonOptions o;
  try {
    o.data_dir = data_dir.empty() ? c.at("data").at("dir").get<std::string>() : data_dir;
    o.seed = c.at("seed").get<uint64_t>();
    if (c.contains("split_seed")) o.split_seed = c.at("split_seed").get<int64_t>();  // runs before it used --seed
    o.val_fraction = c.at("val_fraction").get<double>();
    o.train_limit = c.at("train_limit").get<int64_t>();
    o.val_limit = c.at("val_limit").get<int64_t>();
    o.test_limit = c.at("test_limit").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    fail("{}: cannot rebuild the run's data: {}", file, e.what());
  }
  StudyData d = load_study_data(o);
  if (c.contains("split") && data::SplitIdentity::from_json(c["split"]) != d.split.identity)
    fail("{}: the recorded split differs from the one rebuilt from its seed and validation share", file);
  const auto& used = c.at("data");
  if (used.value("val_used", int64_t(-1)) != static_cast<int64_t>(d.val_idx.size()) ||
      used.value("test_used", int64_t(-1)) != static_cast<int64_t>(d.test_idx.size()))
    fail("{}: records {} validation and {} test images, the rebuilt data has {} and {}", file,
         used.value("val_used", int64_t(-1)), used.value("test_used", int64_t(-1)), d.val_idx.size(), d.test_idx.size());
  return d;
}

}  // namespace dl::exp
