// The predict program end to end: --input/--output through a torchvision-saved ResNet18 give
// torchvision's logits; wrong class counts and missing files are refused.
#include <cstdlib>
#include <filesystem>

#include "models/weights.h"
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
