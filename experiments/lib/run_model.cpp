#include "experiments/lib/run_model.h"

#include "data/fashion_mnist.h"
#include "experiments/lib/study.h"
#include "experiments/lib/transfer.h"
#include "models/checkpoint.h"
#include "models/io/sha256.h"
#include "models/resnet.h"
#include "models/scratch_cnn.h"

namespace dl::exp {

RunModel load_run_model(const std::filesystem::path& run, std::string key) {
  nlohmann::json config = read_json(run / "config.json");
  if (key.empty()) key = config.value("program", std::string());
  if (key != "scratch_cnn" && key != "baseline_transfer" && key != "lr_tuning")
    fail("{}: program '{}' is not one that trains a model (scratch_cnn, baseline_transfer, lr_tuning)",
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
  return l;
}

}  // namespace dl::exp
