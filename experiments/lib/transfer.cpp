#include "experiments/lib/transfer.h"

#include <chrono>

#include "autograd/node.h"
#include "data/transforms.h"
#include "models/io/sha256.h"
#include "models/weights.h"
#include "nn/optim/adam.h"
#include "onnx/weights.h"
#include "tensor/ops.h"

namespace dl::exp {

namespace fs = std::filesystem;

void TransferOptions::add_to(CLI::App& app) {
  app.add_option("--weights", weights, "torchvision ResNet18 ImageNet weights (.pth or .safetensors)");
  app.add_option("--image-size", image_size, "the 28x28 images are resized to this (224 as ImageNet; 64 is ~12x cheaper)")
      ->check(CLI::Range(32, 512));
  app.add_option("--cache-dir", cache_dir, "where extracted features are kept (default: next to the run folder)");
  app.add_flag("--stand-in-weights", stand_in_weights,
               "the weights are a randomly initialised stand-in (the report says so; a file whose digest is "
               "torchvision's is still reported as verified)");
}

std::string missing_weights_message(const std::string& path) {
  return fmt::format(
      "the ImageNet weights for ResNet18 are not at '{}'.\n"
      "This machine cannot download them. On a machine with internet access, fetch torchvision's file:\n"
      "    https://download.pytorch.org/models/resnet18-f37072fd.pth\n"
      "(or run python3 -c \"import torchvision; torchvision.models.resnet18(weights='IMAGENET1K_V1')\", which "
      "stores it in ~/.cache/torch/hub/checkpoints/),\n"
      "then copy it to weights/resnet18-f37072fd.pth in this project, or pass --weights PATH.",
      path);
}

void require_weights(const std::string& path) {
  if (!fs::exists(path)) fail("{}", missing_weights_message(path));
  onnx::register_weights_format();  // an .onnx ResNet18 is read like a .pth (onnx/weights.h)
}

namespace {

Tensor extract(models::ResNet18& model, const data::ImageSet& set, const std::vector<int64_t>& idx,
               const TransferOptions& t, const CommonOptions& o, Device device, Logger& log, const char* what) {
  data::LoaderOptions lo{.batch_size = 64, .shuffle = false, .drop_last = false, .seed = o.seed,
                         .num_workers = o.workers};
  data::DataLoader loader(set, idx, data::transforms::ResnetInput(t.image_size), lo);
  Tensor out = empty({static_cast<int64_t>(idx.size()), 512});
  NoGradGuard ng;
  auto features = o.with_precision([&](const Tensor& x) { return model.features(x); }, device);
  int64_t row = 0, b = 0, nb = loader.num_batches();
  auto t0 = std::chrono::steady_clock::now();
  for (auto& batch : loader.epoch(0)) {
    if (stop_requested()) fail("interrupted while extracting {} features", what);
    Tensor f = ops::to_device(features(batch.images.to(device)), kCPU);
    ops::copy_(ops::slice(out, 0, row, row + f.size(0), 1), f);
    row += f.size(0);
    ++b;
    double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    log.progress(fmt::format("  features ({}, {}x{}): batch {}/{}  {:.1f} img/s  left {:.0f}s", what, t.image_size,
                             t.image_size, b, nb, row / std::max(el, 1e-9), el / b * (nb - b)));
  }
  log.end_progress();
  return out;
}

std::string hash_indices(const std::vector<int64_t>& v) { return data::fnv1a64_hex(v); }

}  // namespace

std::pair<fs::path, std::string> feature_cache_file(const fs::path& dir, const std::string& weights_sha256,
                                                   int64_t image_size, const StudyData& d,
                                                   const std::string& precision) {
  std::string key_text =
      fmt::format("{}|{}|{}|{}|{}|{}|{}", weights_sha256, image_size, d.train_set.images_path, d.test_set.images_path,
                  hash_indices(d.train_idx), hash_indices(d.val_idx), hash_indices(d.test_idx));
  if (precision != "fp32") key_text += "|" + precision;  // fp32 keys stay those of earlier caches
  std::string key = io::sha256_hex(key_text.data(), key_text.size());
  return {dir / fmt::format("resnet18-{}px-{}.safetensors", image_size, key.substr(0, 16)), key};
}

FeatureSet features_for(const TransferOptions& t, const StudyData& d, const CommonOptions& o, Logger& log) {
  require_weights(t.weights);
  FeatureSet f;
  f.train_idx = d.train_idx;
  f.val_idx = d.val_idx;
  f.test_idx = d.test_idx;
  f.train_labels = select_rows(d.train_set.labels.to(DType::Int64), d.train_idx);
  f.val_labels = select_rows(d.train_set.labels.to(DType::Int64), d.val_idx);
  f.test_labels = select_rows(d.test_set.labels.to(DType::Int64), d.test_idx);
  f.identity = models::identify_weights(t.weights, t.stand_in_weights);
  f.weights_sha256 = f.identity.file_sha256;
  log.info(fmt::format("weights '{}': {}; {}", t.weights, f.identity.label(), f.identity.how));
  fs::path dir = t.cache_dir.empty() ? fs::path(o.out).parent_path() / "feature_cache" : fs::path(t.cache_dir);
  fs::create_directories(dir);
  auto cache = feature_cache_file(dir, f.weights_sha256, t.image_size, d, o.precision);
  const fs::path file = cache.first;
  const std::string key = cache.second;
  f.cache_file = file.string();
  if (fs::exists(file)) {
    std::map<std::string, std::string> md;
    TensorDict c = load_safetensors(file.string(), &md, false);
    auto get = [&](const char* n) {
      const Tensor* p = find_tensor(c, n);
      if (!p) fail("feature cache '{}' lacks '{}'; delete it to extract again", file.string(), n);
      return *p;
    };
    if (md["key"] != key) fail("feature cache '{}' was made for other inputs; delete it to extract again", file.string());
    f.train = get("train");
    f.val = get("val");
    f.test = get("test");
    f.from_cache = true;
    f.load_note = md["load_note"];
    log.info(fmt::format("features read from the cache {}", file.string()));
    return f;
  }
  Device device = parse_device(o.device);
  models::ResNet18 model(static_cast<int64_t>(data::kFashionMnistClasses));
  f.load_note = models::load_resnet18_weights(model, t.weights);
  log.info(f.load_note);
  model.to(device);
  model.eval();
  auto t0 = std::chrono::steady_clock::now();
  f.train = extract(model, d.train_set, d.train_idx, t, o, device, log, "train");
  f.val = extract(model, d.train_set, d.val_idx, t, o, device, log, "validation");
  f.test = extract(model, d.test_set, d.test_idx, t, o, device, log, "test");
  f.extract_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int64_t n = static_cast<int64_t>(d.train_idx.size() + d.val_idx.size() + d.test_idx.size());
  log.info(fmt::format("extracted {} features at {}x{} in {:.1f} s ({:.1f} img/s)", n, t.image_size, t.image_size,
                       f.extract_seconds, n / std::max(f.extract_seconds, 1e-9)));
  save_safetensors(file.string(), {{"train", f.train}, {"val", f.val}, {"test", f.test}},
                   {{"key", key}, {"weights_sha256", f.weights_sha256}, {"image_size", std::to_string(t.image_size)},
                    {"load_note", f.load_note}, {"extract_seconds", fmt::format("{:.3f}", f.extract_seconds)}});
  return f;
}

HeadResult train_head(const FeatureSet& f, double lr, int64_t epochs, const CommonOptions& o, const fs::path& run,
                      nlohmann::json config, Logger& log, bool evaluate_test) {
  HeadResult h;
  manual_seed(o.seed);  // every head of a sweep starts from the same initial weights
  h.head = std::make_shared<nn::Linear>(512, data::kFashionMnistClasses);
  Device device = parse_device(o.device);
  h.head->to(device);
  optim::Adam opt(h.head->parameters(), {.lr = lr});
  data::LoaderOptions lo{.batch_size = o.batch_size, .shuffle = true, .drop_last = false, .seed = o.seed,
                         .num_workers = 0};
  data::LoaderOptions eo = lo;
  eo.shuffle = false;
  auto all = [](const Tensor& t) {
    std::vector<int64_t> v(t.size(0));
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int64_t>(i);
    return v;
  };
  data::DataLoader train(f.train, f.train_labels, all(f.train), nullptr, lo);
  data::DataLoader val(f.val, f.val_labels, all(f.val), nullptr, eo);
  ForwardFn forward = o.with_precision([&](const Tensor& x) { return (*h.head)(x.to(device)); }, device);
  FitOptions fo{.epochs = epochs, .clip_grad_norm = o.clip_grad_norm, .skip_nonfinite = o.skip_nonfinite,
                .resume = o.resume, .config = config};
  fo.config.erase("started");
  fo.loss_scaling = o.loss_scaling();
  h.fit = fit(*h.head, forward, opt, nullptr, train, val, run, fo, log);
  if (evaluate_test && !h.fit.interrupted) {
    load_best_weights(*h.head, run);
    data::DataLoader test(f.test, f.test_labels, all(f.test), nullptr, eo);
    h.test = evaluate(*h.head, forward, test, 0, true, &log, "test");
    // predictions carry positions in the feature table: map them back to test-set indices
    for (auto& p : h.test.predictions) p.index = f.test_idx[p.index];
  }
  return h;
}

nlohmann::json transfer_config(const std::string& program, const CommonOptions& o, const StudyData& d,
                               const TransferOptions& t, const FeatureSet& f, int64_t epochs) {
  nlohmann::json config = base_config(program, o, d);
  config["epochs"] = epochs;
  config["optimizer"] = "Adam";
  config["weights"] = t.weights;
  config["weights_sha256"] = f.weights_sha256;
  config["weights_tensors_sha256"] = f.identity.tensors_sha256;
  config["weights_origin"] = f.identity.origin_name();
  config["weights_label"] = f.identity.label();
  config["weights_identified_by"] = f.identity.how;
  config["stand_in_weights"] = f.identity.origin == models::WeightsOrigin::StandIn;
  config["image_size"] = t.image_size;
  config["input_pipeline"] = "uint8 28x28 -> [0,1] -> bilinear resize -> 3 channels -> ImageNet mean/std";
  return config;
}

nlohmann::json transfer_description(const std::string& key, const std::string& display, const TransferOptions& t,
                                    const FeatureSet& f, double lr, int64_t epochs, const FitResult& r) {
  models::ResNet18 probe(static_cast<int64_t>(data::kFashionMnistClasses));
  int64_t total = probe.num_parameters();
  int64_t head = probe.fc->num_parameters();
  const models::WeightsIdentity& id = f.identity;
  nlohmann::json j = {{"model", key},
                      {"display_name", display},
                      {"architecture", fmt::format("ResNet18 ({}), {}x{} input", id.label(), t.image_size, t.image_size)},
                      {"training_strategy", "backbone frozen (eval-mode batch norm), new 512->10 head trained on cached features"},
                      {"learning_rate", lr},
                      {"epochs", epochs},
                      {"best_epoch", r.best_epoch},
                      {"best_val_acc", r.best_val_acc},
                      {"params_total", total},
                      {"params_trained", head},
                      {"image_size", t.image_size},
                      {"weights", t.weights},
                      {"weights_sha256", f.weights_sha256},
                      {"weights_tensors_sha256", id.tensors_sha256},
                      {"weights_origin", id.origin_name()},
                      {"weights_label", id.label()},
                      {"weights_identified_by", id.how},
                      {"weights_load", f.load_note},
                      {"feature_cache", f.cache_file},
                      {"feature_seconds", f.extract_seconds},
                      {"features_from_cache", f.from_cache},
                      {"train_seconds", r.seconds},
                      {"stand_in_weights", id.origin == models::WeightsOrigin::StandIn}};
  if (id.origin == models::WeightsOrigin::StandIn)
    j["weights_note"] = fmt::format("the weights file '{}' is a randomly initialised stand-in for ImageNet's, used to "
                                    "exercise the pipeline; these numbers are not a transfer-learning result",
                                    t.weights);
  else if (id.origin == models::WeightsOrigin::Unknown)
    j["weights_note"] = fmt::format("the weights file '{}' is of unknown origin: {}. These numbers are not claimed as "
                                    "an ImageNet transfer-learning result",
                                    t.weights, id.how);
  return j;
}

}  // namespace dl::exp
