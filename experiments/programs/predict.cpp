// predict: classify images with ResNet18 or scratch-CNN weights and print the top-5 classes.
//
//   build/bin/predict --weights FILE [--model resnet18|scratch_cnn] [--num-classes N] IMAGE...
//   build/bin/predict --weights FILE --input X.safetensors --output Y.safetensors
//
// Weights: torchvision .pth, safetensors, a checkpoint of this project (best.ckpt), or an ONNX file of a
// ResNet18 or scratch CNN (onnx/weights.h: exported here, or by torch.onnx.export). The model
// type and class count are read from the weights when not given. ResNet18 images get
// torchvision's ImageNet evaluation preprocessing (resize the shorter side to 256, centre crop
// 224, ImageNet mean/std; bilinear without antialiasing, as on tensors); scratch-CNN images are
// made grayscale, resized to 28x28 and normalised with the training run's mean/std (from the
// config.json beside the weights). --input takes key "input" (N, C, H, W float32, already
// preprocessed) and --output writes key "logits", in eval mode, without image preprocessing.
#include <iostream>

#include <CLI/CLI.hpp>

#include "autograd/node.h"
#include "data/image_io.h"
#include "data/transforms.h"
#include "experiments/lib/run_record.h"
#include "models/class_names.h"
#include "models/resnet.h"
#include "models/scratch_cnn.h"
#include "models/weights.h"
#include "onnx/weights.h"
#include "tensor/ops.h"

using namespace dl;
namespace fs = std::filesystem;

namespace {

// A checkpoint of ours stores the model under "model/"; a plain state dict has no prefix.
nn::StateDict model_tensors(const TensorDict& file) {
  bool ours = !file.empty() && file.front().first.rfind("model/", 0) == 0;
  nn::StateDict sd;
  for (const auto& [k, t] : file) {
    if (!ours) {
      sd.emplace_back(k, t);
    } else if (k.rfind("model/", 0) == 0) {
      sd.emplace_back(k.substr(6), t);
    }
  }
  return sd;
}

const Tensor* find(const nn::StateDict& sd, const std::string& name) {
  for (const auto& [k, t] : sd)
    if (k == name) return &t;
  return nullptr;
}

Tensor resize_shorter_and_crop(const Tensor& x, int64_t shorter, int64_t crop) {
  int64_t h = x.size(2), w = x.size(3);
  int64_t nh = h <= w ? shorter : static_cast<int64_t>(static_cast<double>(shorter) * h / w);
  int64_t nw = h <= w ? static_cast<int64_t>(static_cast<double>(shorter) * w / h) : shorter;
  Tensor r = data::resize_bilinear(x, nh, nw);
  int64_t top = static_cast<int64_t>(std::round((nh - crop) / 2.0)), left = static_cast<int64_t>(std::round((nw - crop) / 2.0));
  return ops::contiguous(ops::slice(ops::slice(r, 2, top, top + crop, 1), 3, left, left + crop, 1));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"predict: top-5 classes of images, or logits of a preprocessed batch"};
  std::string weights, model_name, input, output;
  int64_t num_classes = 0;
  std::vector<std::string> images;
  app.add_option("--weights", weights, "weights file (.pth, .safetensors, best.ckpt or .onnx)")->required();
  app.add_option("--model", model_name, "resnet18 or scratch_cnn (default: read from the weights)");
  app.add_option("--num-classes", num_classes, "class count (default: read from the weights)")->check(CLI::PositiveNumber);
  app.add_option("--input", input, "safetensors with key 'input' (N, C, H, W float32, preprocessed)");
  app.add_option("--output", output, "safetensors to write key 'logits' to (with --input)");
  app.add_option("images", images, "image files (PNG, JPEG, BMP)");
  CLI11_PARSE(app, argc, argv);
  try {
    if (input.empty() == images.empty())
      fail("give either image files or --input X.safetensors (with --output Y.safetensors)");
    if (!input.empty() && output.empty()) fail("--input needs --output, where the logits are written");
    onnx::register_weights_format();  // --weights model.onnx: its state dict (onnx/weights.h)
    nn::StateDict sd = model_tensors(load_weights(weights));
    if (model_name.empty()) model_name = find(sd, "block1.0.weight") ? "scratch_cnn" : "resnet18";
    const Tensor* fcw = find(sd, "fc.weight");
    if (!fcw) fail("'{}' has no fc.weight, so it is not a classifier of this project or torchvision", weights);
    int64_t file_classes = fcw->size(0);
    if (num_classes == 0) num_classes = file_classes;
    if (num_classes != file_classes)
      fail("--num-classes {} differs from the weights, which have {} classes (fc.weight is {})", num_classes,
           file_classes, shape_str(fcw->sizes()));

    std::shared_ptr<models::Classifier> model;
    data::TransformPtr prep;
    if (model_name == "resnet18") {
      auto m = std::make_shared<models::ResNet18>(num_classes);
      nn::StateDict loadable;
      for (const auto& [k, t] : sd) loadable.emplace_back(k, t);
      auto r = m->load_state_dict(loadable, false);
      for (const auto& k : r.missing_keys)
        if (k.find("num_batches_tracked") == std::string::npos) fail("'{}' lacks ResNet18 weight '{}'\n{}", weights, k, r.str());
      if (!r.unexpected_keys.empty() || !r.mismatched.empty()) fail("'{}' does not fit ResNet18:\n{}", weights, r.str());
      model = m;
    } else if (model_name == "scratch_cnn") {
      models::ScratchCnnConfig mc;
      mc.num_classes = num_classes;
      for (int b = 0; b < 4; ++b) {
        const Tensor* w = find(sd, fmt::format("block{}.0.weight", b + 1));
        if (!w) fail("'{}' lacks scratch-CNN weight 'block{}.0.weight'", weights, b + 1);
        mc.channels[b] = w->size(0);
        if (b == 0) mc.in_channels = w->size(1);
      }
      auto m = std::make_shared<models::ScratchCnn>(mc);
      m->load_state_dict(sd, true);
      model = m;
    } else {
      fail("--model must be resnet18 or scratch_cnn, got '{}'", model_name);
    }
    model->eval();
    NoGradGuard ng;

    if (!input.empty()) {
      TensorDict in = load_safetensors(input, nullptr, false);
      const Tensor* x = find_tensor(in, "input");
      if (!x) fail("'{}' has no tensor named 'input'", input);
      if (x->dim() != 4) fail("'{}': input must be (N, C, H, W), got {}", input, shape_str(x->sizes()));
      Tensor logits = (*model)(x->to(DType::Float32));
      save_safetensors(output, {{"logits", logits}});
      std::cout << "wrote logits " << shape_str(logits.sizes()) << " to " << output << "\n";
      return 0;
    }

    auto names = models::class_names_for(num_classes);
    double mean = 0.2860, sd_px = 0.3530;  // Fashion-MNIST training split, when no run config is found
    std::string norm_note = "Fashion-MNIST training-split statistics";
    fs::path cfg = fs::path(weights).parent_path() / "config.json";
    if (model_name == "scratch_cnn" && fs::exists(cfg)) {
      auto j = exp::read_json(cfg);
      if (j.contains("normalization")) {
        mean = j["normalization"]["mean"].get<double>();
        sd_px = j["normalization"]["std"].get<double>();
        norm_note = "the run's " + cfg.string();
      }
    }
    for (const auto& path : images) {
      Tensor x;
      if (model_name == "resnet18") {
        data::Image img = data::read_image(path, 3);
        Tensor t = data::to_float(data::image_to_tensor(img).unsqueeze(0));
        t = resize_shorter_and_crop(t, 256, 224);
        x = data::normalize(t, {0.485, 0.456, 0.406}, {0.229, 0.224, 0.225});
      } else {
        data::Image img = data::read_image(path, 1);
        Tensor t = data::to_float(data::image_to_tensor(img).unsqueeze(0));
        t = data::resize_bilinear(t, 28, 28);
        x = data::normalize(t, {mean}, {sd_px});
      }
      Tensor p = ops::softmax((*model)(x), 1).select(0, 0);
      auto v = p.to_vector<float>();
      std::vector<int64_t> order(v.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
      std::partial_sort(order.begin(), order.begin() + std::min<size_t>(5, order.size()), order.end(),
                        [&](int64_t a, int64_t b) { return v[a] > v[b]; });
      std::cout << path << ":\n";
      for (size_t k = 0; k < std::min<size_t>(5, order.size()); ++k)
        std::cout << fmt::format("  {:6.2f}%  {}\n", 100.0 * v[order[k]], names[order[k]]);
    }
    if (model_name == "scratch_cnn") std::cout << "(normalised with " << norm_note << ")\n";
  } catch (const std::exception& e) {
    std::cerr << "predict: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
