// The predict program end to end: --input/--output through a torchvision-saved ResNet18 give
// torchvision's logits; wrong class counts and missing files are refused.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "models/weights.h"
#include "onnx/onnx.h"
#include "test_util.h"

using namespace dl;
namespace fs = std::filesystem;

namespace {
int run(const std::string& args) {
  std::string cmd = test::bin_dir() + "/predict " + args + " > /dev/null 2>&1";
  return std::system(cmd.c_str());
}
}  // namespace

TEST_CASE("predict --input/--output reproduces torchvision's logits") {
  fs::path dir = fs::temp_directory_path() / "dl_predict_test";
  fs::create_directories(dir);
  save_safetensors((dir / "in.safetensors").string(), {{"input", test::fixture("resnet", "input")}});
  std::string w = test::fixtures_dir() + "/resnet18_random.pth";
  REQUIRE(run("--weights " + w + " --input " + (dir / "in.safetensors").string() + " --output " +
              (dir / "out.safetensors").string()) == 0);
  auto out = load_weights((dir / "out.safetensors").string());
  const Tensor* logits = find_tensor(out, "logits");
  REQUIRE(logits != nullptr);
  Tensor expected = test::fixture("resnet", "logits");
  CHECK_CLOSE(*logits, expected, 1e-4, 1e-4 * expected.abs().max().item<double>());
  CHECK(run("--weights " + w + " --num-classes 10 --input " + (dir / "in.safetensors").string() + " --output " +
            (dir / "o2.safetensors").string()) != 0);
  CHECK(run("--weights " + (dir / "missing.pth").string() + " x.png") != 0);
  fs::remove_all(dir);
}

TEST_CASE("predict --weights takes torchvision's ResNet18 as ONNX (batch norms folded by torch.onnx.export)") {
  fs::path dir = fs::temp_directory_path() / ("dl_predict_onnx_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  for (const char* opset : {"resnet18_op9", "resnet18_op13"}) {
    fs::path f = fs::path(test::fixtures_dir()) / "onnx_import" / opset;
    if (!fs::exists(f / "model.onnx")) DL_SKIP("fixture " << (f / "model.onnx").string() << " is missing");
    Tensor x = dl::onnx::read_tensor_proto((f / "input.pb").string());
    Tensor expected = dl::onnx::read_tensor_proto((f / "output.pb").string());
    save_safetensors((dir / "in.safetensors").string(), {{"input", x}});
    INFO(std::string(opset));
    REQUIRE(run("--weights " + (f / "model.onnx").string() + " --input " + (dir / "in.safetensors").string() +
                " --output " + (dir / "out.safetensors").string()) == 0);
    auto out = load_weights((dir / "out.safetensors").string());
    const Tensor* logits = find_tensor(out, "logits");
    REQUIRE(logits != nullptr);
    CHECK_CLOSE(*logits, expected, 1e-4, 1e-4 * expected.abs().max().item<double>());
  }
  // an ONNX graph that is not a ResNet18 or scratch CNN is refused
  fs::path mixed = fs::path(test::fixtures_dir()) / "onnx_import" / "mixed_op13" / "model.onnx";
  if (fs::exists(mixed)) CHECK(run("--weights " + mixed.string() + " --input " + (dir / "in.safetensors").string() +
                                   " --output " + (dir / "o3.safetensors").string()) != 0);
  fs::remove_all(dir);
}
