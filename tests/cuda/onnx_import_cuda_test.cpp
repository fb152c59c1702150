// Imported ONNX models on the GPU: the PyTorch-exported fixtures (tests/fixtures/make_onnx_import.py)
// and the fuzz seed models are loaded twice, one copy moved with Module::to(gpu); both run the same
// input (the shape values, integer constants and folded constants stay on the CPU and must follow
// the activations), and the GPU's outputs and input gradients must match the CPU's.
#include <filesystem>
#include <fstream>

#include "cuda_test_util.h"
#include "onnx/onnx.h"

namespace fs = std::filesystem;
using namespace dl;

namespace {

void compare_on_gpu(const std::string& path, const Tensor& x) {
  INFO(path);
  auto cpu = onnx::load(path);
  auto gpu = onnx::load(path);
  gpu->to(test::gpu());
  Tensor xc = x.clone().requires_grad_(true);
  Tensor xg = test::to_gpu(x).requires_grad_(true);
  Tensor yc = cpu->forward(xc), yg = gpu->forward(xg);
  REQUIRE(yg.device() == test::gpu());
  CHECK_CLOSE(test::to_cpu(yg.detach()), yc.detach(), 1e-4, 1e-5);
  yc.sum().backward();
  yg.sum().backward();
  REQUIRE(xg.grad().defined());
  CHECK_CLOSE(test::to_cpu(xg.grad()), xc.grad(), 1e-4, 1e-5);
  for (const auto& [name, p] : gpu->named_parameters()) {
    INFO(name);
    REQUIRE(p.grad().defined());
    CHECK(p.grad().device() == test::gpu());
  }
}

}  // namespace

TEST_CASE("onnx import on the GPU: torch.onnx exports match the CPU (forward and gradients)") {
  DL_SKIP_WITHOUT_CUDA();
  const fs::path root = fs::path(test::fixtures_dir()) / "onnx_import";
  if (test::fixtures_dir().empty() || !fs::exists(root / "manifest.json"))
    DL_SKIP("fixture " << (root / "manifest.json").string() << " is absent (make_onnx_import.py)");
  int n = 0;
  for (const char* key : {"resnet18_op9", "mixed_op7", "mixed_op13", "elementwise_op11", "elementwise_op17"}) {
    if (!fs::exists(root / key / "model.onnx")) continue;
    compare_on_gpu((root / key / "model.onnx").string(), onnx::read_tensor_proto((root / key / "input.pb").string()));
    ++n;
  }
  CHECK(n >= 4);
}

TEST_CASE("onnx import on the GPU: the fuzz seed models match the CPU") {
  DL_SKIP_WITHOUT_CUDA();
  const fs::path dir = fs::path(test::source_dir()) / "fuzz" / "corpus" / "onnx";
  Generator g(3);
  for (const char* f : {"cnn_op9.onnx", "cnn_op13.onnx", "flatten_chain_op13.onnx", "slice_pad_clip_op13.onnx",
                        "constant_of_shape_op11.onnx"}) {
    const std::string name = f;
    const Shape s = name.rfind("cnn", 0) == 0             ? Shape{2, 2, 6, 6}
                    : name.rfind("flatten", 0) == 0       ? Shape{2, 2, 3}
                    : name.rfind("slice", 0) == 0         ? Shape{2, 3, 5}
                                                          : Shape{2, 3};
    compare_on_gpu((dir / f).string(), randn(s, {}, &g));
  }
}
