// Models exported here, run by ONNX Runtime (PyPI onnxruntime in the virtual environment that
// ./test.sh makes, found through DL_ORT_PYTHON): its outputs within 1e-4 of the framework's, at the
// batch size of the export and at another one (the batch dimension is dynamic).
#include <sys/stat.h>

#include <cstdlib>
#include <iostream>

#include "autograd/node.h"
#include "unit/file_test_util.h"
#include "models/resnet.h"
#include "models/scratch_cnn.h"
#include "onnx/onnx.h"
#include "tensor/ops.h"
#include "onnx_test_util.h"
#include "test_util.h"

using namespace dl;
using dl::test::TmpDir;

namespace {

// The interpreter with onnxruntime, or "" with the reason in `why`.
std::string ort_python(std::string* why) {
  const char* p = std::getenv("DL_ORT_PYTHON");
  struct stat st {};
  if (!p || !*p) {
    *why = "DL_ORT_PYTHON is unset (./test.sh makes a virtual environment with onnxruntime and sets it)";
    return "";
  }
  if (::stat(p, &st) != 0) {
    *why = std::string("DL_ORT_PYTHON is ") + p + ", which does not exist";
    return "";
  }
  return p;
}

// Exports `net` at the first batch size, then compares ONNX Runtime with the framework at each.
void check_against_onnxruntime(nn::Module& net, const Shape& sample, const std::vector<int64_t>& batches,
                               int64_t opset, const std::string& label) {
  std::string why;
  std::string py = ort_python(&why);
  if (py.empty()) DL_SKIP("onnxruntime not available: " << why);
  TmpDir tmp;
  const std::string model = tmp.path("m.onnx");
  Shape s0 = sample;
  s0.insert(s0.begin(), batches.at(0));
  dl::onnx::export_model(net, randn(s0), model, {.opset = opset});
  net.eval();
  for (int64_t b : batches) {
    Shape s = sample;
    s.insert(s.begin(), b);
    Tensor x = randn(s);
    Tensor y;
    {
      NoGradGuard ng;
      y = net(x);
    }
    dl::onnx::write_tensor_proto(tmp.path("x.pb"), x, "input");
    dl::onnx::write_tensor_proto(tmp.path("y.pb"), y, "output");
    auto r = dl::test::run_program({py, dl::test::source_dir() + "/tests/fixtures/onnxruntime_compare.py", model,
                                    tmp.path("x.pb"), tmp.path("y.pb"), "1e-4"},
                                   tmp.path("log.txt"));
    if (r.code == 77) DL_SKIP("onnxruntime cannot run here: " << r.output);
    MESSAGE(label, " opset ", opset, " batch ", b, ": ", r.output);
    CHECK(r.code == 0);
  }
}

}  // namespace

TEST_CASE("ONNX Runtime runs the exported scratch CNN as the framework does") {
  manual_seed(11);
  models::ScratchCnn net;  // the study's 1.45M-parameter architecture
  dl::test::randomize_batch_norms(net, 12);
  check_against_onnxruntime(net, {1, 28, 28}, {4, 1, 7}, 17, "scratch_cnn");
}

TEST_CASE("ONNX Runtime runs the exported ResNet18 as the framework does") {
  manual_seed(13);
  models::ResNet18 net(10);
  dl::test::randomize_batch_norms(net, 14);
  check_against_onnxruntime(net, {3, 64, 64}, {2, 3}, 13, "resnet18");
  check_against_onnxruntime(net, {3, 64, 64}, {1}, 17, "resnet18");
}

namespace {
struct Composite : nn::Module {
  Composite() : nn::Module("Composite") {
    conv = register_module("conv", std::make_shared<nn::Conv2d>(nn::Conv2dConfig{.in_channels = 3, .out_channels = 4, .kernel_size = 3, .stride = 2, .padding = 1, .groups = 1}));
    pool = register_module("pool", std::make_shared<nn::AvgPool2d>(3, 2, 1, true, false));
    lin = register_module("lin", std::make_shared<nn::Linear>(36, 6));
  }
  Tensor forward(const Tensor& x) override {
    Tensor h = (*pool)((*conv)(x).hardswish());  // 8x8 -> 4x4 -> 3x3 (ceil mode)
    h = h.flatten(1);
    h = (*lin)(h);
    h = h.silu() + h.gelu() * 0.5 - h.gelu("tanh") / 3.0;
    h = cat({h.leaky_relu(0.2), h.clamp(-0.5, 0.5).sigmoid(), (2.0 - h).tanh()}, 1);
    return h.log_softmax(1) + h.mean({1}, true) + h.sum({1}, true).pow(2.0) * 0.01;
  }
  std::shared_ptr<nn::Conv2d> conv;
  std::shared_ptr<nn::AvgPool2d> pool;
  std::shared_ptr<nn::Linear> lin;
};
}  // namespace

TEST_CASE("ONNX Runtime agrees on the composite activations, pooling and reductions, opsets 13 and 17") {
  manual_seed(15);
  Composite net;
  check_against_onnxruntime(net, {3, 8, 8}, {3, 2}, 13, "composite");
  check_against_onnxruntime(net, {3, 8, 8}, {3}, 17, "composite");
}
