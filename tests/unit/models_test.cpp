// The study's models: names, counts, heads, freezing, Grad-CAM split, checkpoints, bad inputs.
#include <filesystem>

#include "autograd/node.h"
#include "models/checkpoint.h"
#include "models/resnet.h"
#include "models/scratch_cnn.h"
#include "nn/optim/adam.h"
#include "test_util.h"

using namespace dl;
namespace fs = std::filesystem;

TEST_CASE("ResNet18 has torchvision's names, shapes and parameter count") {
  models::ResNet18 m(1000);
  CHECK(m.num_parameters() == 11689512);  // torchvision's resnet18
  auto sd = m.state_dict();
  CHECK(sd.size() == 122);  // 102 parameters and running stats + 20 num_batches_tracked
  CHECK(sd.front().first == "conv1.weight");
  CHECK(sd.back().first == "fc.bias");
  CHECK(m.get_parameter("layer2.0.downsample.0.weight").sizes() == Shape{128, 64, 1, 1});
  CHECK(m.get_buffer("layer4.1.bn2.running_var").sizes() == Shape{512});
  CHECK(m.get_parameter("fc.weight").sizes() == Shape{1000, 512});
}

TEST_CASE("ResNet18: replacing the head, freezing the backbone, features and Grad-CAM split") {
  manual_seed(1);
  models::ResNet18 m(1000);
  m.replace_head(10);
  CHECK(m.num_classes() == 10);
  CHECK(m.get_parameter("fc.weight").sizes() == Shape{10, 512});
  CHECK(m.state_dict().back().first == "fc.bias");
  m.freeze_backbone();
  CHECK(m.num_parameters(true) == 5130);
  m.eval();
  Tensor x = randn({2, 3, 32, 32});
  Tensor f = m.features(x);
  CHECK(f.sizes() == Shape{2, 512});
  Tensor act = m.forward_to_cam_layer(x).detach().requires_grad_();
  CHECK(act.sizes() == Shape{2, 512, 1, 1});
  Tensor logits = m.forward_from_cam_layer(act);
  CHECK_CLOSE(logits, m(x), 1e-5, 1e-5);
  logits.select(1, 3).sum().backward();
  CHECK(act.grad().defined());
  CHECK_FALSE(m.conv1->weight.grad().defined());  // frozen
  CHECK_THROWS_WITH_AS(m(randn({1, 1, 32, 32})), doctest::Contains("(N, 3, H, W)"), dl::Error);
  CHECK_THROWS_WITH_AS(m(randn({1, 3, 16, 16})), doctest::Contains("at least 32x32"), dl::Error);
}

TEST_CASE("the scratch CNN: about 1.5M parameters, 1x28x28 input, Grad-CAM on its last block") {
  models::ScratchCnn m;
  CHECK(m.num_parameters() == 1450602);
  CHECK(m.num_parameters(true) == 1450602);
  m.eval();
  Tensor x = randn({3, 1, 28, 28});
  CHECK(m(x).sizes() == Shape{3, 10});
  CHECK(m.forward_to_cam_layer(x).sizes() == Shape{3, 512, 3, 3});
  CHECK_THROWS_WITH_AS(m(randn({1, 3, 28, 28})), doctest::Contains("(N, 1, H, W)"), dl::Error);
  CHECK_THROWS_WITH_AS(m(randn({1, 1, 4, 4})), doctest::Contains("at least 8x8"), dl::Error);
}

TEST_CASE("checkpoints: model, optimizer and RNG state round trip, atomically written") {
  fs::path dir = fs::temp_directory_path() / "dl_models_test";
  fs::create_directories(dir);
  manual_seed(3);
  models::ScratchCnn m({.channels = {4, 8, 8, 8}});
  optim::Adam opt(m.parameters(), {.lr = 1e-2});
  Tensor x = randn({4, 1, 28, 28});
  (m(x).sum()).backward();
  opt.step();
  Checkpoint c;
  c.model = m.state_dict();
  auto os = opt.state_dict();
  c.optimizer = os.tensors;
  c.meta = {{"epoch", 3}, {"optimizer", os.meta}, {"generator", generator_state_to_json(default_generator().state())}};
  Generator expected;
  expected.set_state(default_generator().state());
  std::string path = (dir / "a.ckpt").string();
  save_checkpoint(path, c);
  CHECK_FALSE(fs::exists(path + ".tmp"));
  Checkpoint r = load_checkpoint(path);
  CHECK(r.meta["epoch"] == 3);
  models::ScratchCnn m2({.channels = {4, 8, 8, 8}});
  m2.load_state_dict(r.model);
  m.eval();
  m2.eval();
  NoGradGuard ng;
  CHECK(max_difference(m(x), m2(x)).abs_diff == 0.0);
  optim::Adam opt2(m2.parameters(), {.lr = 1e-2});
  opt2.load_state_dict({r.optimizer, r.meta["optimizer"]});
  CHECK(opt2.state_dict().tensors.size() == os.tensors.size());
  auto st = generator_state_from_json(r.meta["generator"]);
  Generator g;
  g.set_state(st);
  CHECK(g.next_u64() == expected.next_u64());
  // not ours: a plain safetensors file
  save_safetensors((dir / "plain.safetensors").string(), {{"w", ones({2})}});
  CHECK_THROWS_WITH_AS(load_checkpoint((dir / "plain.safetensors").string()), doctest::Contains("not a checkpoint"), dl::Error);
  CHECK_THROWS_WITH_AS(load_checkpoint((dir / "missing.ckpt").string()), doctest::Contains("missing.ckpt"), dl::Error);
  // a class count that differs from the checkpoint
  models::ScratchCnn m3({.channels = {4, 8, 8, 8}, .num_classes = 5});
  CHECK_THROWS_WITH_AS(m3.load_state_dict(r.model), doctest::Contains("fc.weight"), dl::Error);
  fs::remove_all(dir);
}

TEST_CASE("weights that are not a ResNet18 are refused with every problem listed") {
  fs::path dir = fs::temp_directory_path() / "dl_models_test2";
  fs::create_directories(dir);
  std::string p = (dir / "bad.safetensors").string();
  save_safetensors(p, {{"conv1.weight", ones({64, 1, 7, 7})}, {"extra.weight", ones({1})}});
  models::ResNet18 m(10);
  auto check = [&] {
    try {
      models::load_resnet18_weights(m, p);
      return std::string("no error");
    } catch (const dl::Error& e) {
      return std::string(e.what());
    }
  };
  std::string msg = check();
  CHECK(msg.find("conv1.weight") != std::string::npos);
  CHECK(msg.find("unexpected: extra.weight") != std::string::npos);
  CHECK(msg.find("missing: layer1.0.conv1.weight") != std::string::npos);
  CHECK_THROWS_WITH_AS(load_weights((dir / "nope.pth").string()), doctest::Contains("does not exist"), dl::Error);
  fs::remove_all(dir);
}
