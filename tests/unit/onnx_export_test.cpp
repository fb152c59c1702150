// ONNX export: what the written file holds (names, attributes, dynamic batch), that ONNX's checker
// accepts it, and the errors for what cannot be exported. The numbers are checked against ONNX
// Runtime in tests/reference/onnx_runtime_reference.cpp and against our importer in onnx_roundtrip_test.
#include <onnx/onnx_pb.h>

#include <set>

#include "file_test_util.h"
#include "models/resnet.h"
#include "models/scratch_cnn.h"
#include "onnx/onnx.h"
#include "test_util.h"

using namespace dl;
using dl::test::TmpDir;

namespace {
::onnx::ModelProto read_model(const std::string& path) {
  ::onnx::ModelProto m;
  std::string bytes = dl::test::read_file(path);
  REQUIRE(m.ParseFromString(bytes));
  return m;
}
std::set<std::string> initializer_names(const ::onnx::ModelProto& m) {
  std::set<std::string> s;
  for (const auto& t : m.graph().initializer()) s.insert(t.name());
  return s;
}
std::multiset<std::string> op_types(const ::onnx::ModelProto& m) {
  std::multiset<std::string> s;
  for (const auto& n : m.graph().node()) s.insert(n.op_type());
  return s;
}
const ::onnx::NodeProto* node_named(const ::onnx::ModelProto& m, const std::string& name) {
  for (const auto& n : m.graph().node())
    if (n.name() == name) return &n;
  return nullptr;
}
}  // namespace

TEST_CASE("ONNX export of ResNet18: torchvision's names as initializers, one node per layer, a dynamic batch") {
  manual_seed(3);
  models::ResNet18 net(10);
  net.train();  // export runs in eval and gives each module its own mode back
  net.bn1->eval();
  TmpDir tmp;
  dl::onnx::export_model(net, randn({2, 3, 32, 32}), tmp.path("r.onnx"));
  CHECK(net.is_training());
  CHECK(net.layer1->is_training());
  CHECK_FALSE(net.bn1->is_training());
  auto m = read_model(tmp.path("r.onnx"));
  CHECK(m.opset_import(0).version() == 17);
  auto inits = initializer_names(m);
  for (const char* k : {"conv1.weight", "bn1.running_mean", "bn1.running_var", "layer1.0.conv1.weight",
                        "layer2.0.downsample.0.weight", "layer4.1.bn2.bias", "fc.weight", "fc.bias"})
    CHECK_MESSAGE(inits.count(k) == 1, k);
  CHECK(inits.size() == 102);  // every parameter and running statistic, no num_batches_tracked
  auto ops = op_types(m);
  CHECK(ops.count("Conv") == 20);
  CHECK(ops.count("BatchNormalization") == 20);
  CHECK(ops.count("Relu") == 17);
  CHECK(ops.count("Add") == 8);
  CHECK(ops.count("MaxPool") == 1);
  CHECK(ops.count("GlobalAveragePool") == 1);
  CHECK(ops.count("Flatten") == 1);
  CHECK(ops.count("Gemm") == 1);
  CHECK(m.graph().node_size() == 20 + 20 + 17 + 8 + 4);
  // nodes are named after the module that ran them
  const auto* conv = node_named(m, "layer2.0.downsample.0/Conv");
  REQUIRE(conv != nullptr);
  CHECK(conv->input(1) == "layer2.0.downsample.0.weight");
  bool strided = false;
  for (const auto& a : conv->attribute())
    if (a.name() == "strides") strided = a.ints_size() == 2 && a.ints(0) == 2 && a.ints(1) == 2;
  CHECK(strided);
  CHECK(node_named(m, "layer1.0/Add") != nullptr);
  // the batch dimension is symbolic on both ends
  CHECK(m.graph().input(0).type().tensor_type().shape().dim(0).dim_param() == "batch");
  CHECK(m.graph().output(0).type().tensor_type().shape().dim(0).dim_param() == "batch");
  CHECK(m.graph().output(0).type().tensor_type().shape().dim(1).dim_value() == 10);
  CHECK(m.graph().output(0).name() == "output");
}

TEST_CASE("ONNX export of the scratch CNN: Dropout vanishes in eval, the fused BatchNorm+ReLU is two nodes") {
  manual_seed(4);
  models::ScratchCnn net({.channels = {4, 8, 8, 16}});
  TmpDir tmp;
  dl::onnx::export_model(net, randn({1, 1, 28, 28}), tmp.path("s.onnx"), {.opset = 13});
  auto m = read_model(tmp.path("s.onnx"));
  CHECK(m.opset_import(0).version() == 13);
  auto ops = op_types(m);
  CHECK(ops.count("Conv") == 4);
  CHECK(ops.count("BatchNormalization") == 4);
  CHECK(ops.count("Relu") == 4);
  CHECK(ops.count("MaxPool") == 3);
  CHECK(ops.count("Dropout") == 0);
  CHECK(ops.count("Gemm") == 1);
  CHECK(initializer_names(m).count("block1.1.running_var") == 1);
}

namespace {
// A module whose forward uses ops the exporter has to translate into several nodes, or cannot.
struct Activations : nn::Module {
  Activations() : nn::Module("Activations") { lin = register_module("lin", std::make_shared<nn::Linear>(6, 5)); }
  Tensor forward(const Tensor& x) override {
    Tensor h = (*lin)(x);
    h = h.silu() + h.gelu() * 0.5 - h.gelu("tanh").hardswish() / 3.0;
    h = cat({h.leaky_relu(0.2), h.clamp(-0.5, 0.5).sigmoid(), (2.0 - h).tanh()}, 1);
    return h.softmax(1).mean({1}, true) + h.sum({1}, true).pow(2.0);
  }
  std::shared_ptr<nn::Linear> lin;
};
struct Unexportable : nn::Module {
  Unexportable() : nn::Module("Unexportable") { inner = register_module("inner", std::make_shared<Inner>()); }
  struct Inner : nn::Module {
    Inner() : nn::Module("Inner") {}
    Tensor forward(const Tensor& x) override { return x.var({1}, true, false); }
  };
  Tensor forward(const Tensor& x) override { return (*inner)(x.relu()); }
  std::shared_ptr<Inner> inner;
};
}  // namespace

TEST_CASE("ONNX export writes composite activations out at opsets 13 and 17") {
  Activations net;
  TmpDir tmp;
  for (int64_t opset : {13, 17}) {
    std::string p = tmp.path("a" + std::to_string(opset) + ".onnx");
    dl::onnx::export_model(net, randn({3, 6}), p, {.opset = opset});
    auto ops = op_types(read_model(p));
    CHECK(ops.count("Erf") == 1);
    CHECK(ops.count("Concat") == 1);
    CHECK(ops.count("Clip") == 1);
    CHECK(ops.count("LeakyRelu") == 1);
    CHECK(ops.count("ReduceMean") == 1);
    CHECK(ops.count("ReduceSum") == 1);
    CHECK(ops.count("HardSwish") == (opset >= 14 ? 1 : 0));
    CHECK(ops.count("HardSigmoid") == (opset >= 14 ? 0 : 1));
  }
}

namespace {
// Forward passes whose values the tracer cannot see: they would enter the graph as constants.
struct Detaches : nn::Module {
  Detaches() : nn::Module("Detaches") {}
  Tensor forward(const Tensor& x) override { return x * x.detach().sum(); }
};
struct BatchTied : nn::Module {
  BatchTied() : nn::Module("BatchTied") {}
  Tensor forward(const Tensor& x) override { return x + ones({x.size(0), x.size(1)}); }
};
}  // namespace

TEST_CASE("ONNX export checks the file on a fresh input of another batch size before writing it") {
  TmpDir tmp;
  Detaches d;
  dl::test::check_throws_with([&] { dl::onnx::export_model(d, randn({2, 3}), tmp.path("d.onnx")); },
                              {"computes other outputs", "[3, 3]"});
  CHECK_FALSE(std::filesystem::exists(tmp.path("d.onnx")));
  BatchTied b;
  dl::test::check_throws_with([&] { dl::onnx::export_model(b, randn({2, 3}), tmp.path("b.onnx")); },
                              {"cannot run on a fresh input", "tied to the example's"});
  // without a dynamic batch the same graph is right (checked at the example's batch, new values)
  auto r = dl::onnx::export_model(b, randn({2, 3}), tmp.path("b.onnx"), {.dynamic_batch = false});
  CHECK(r.checked_batch == 2);
  CHECK(std::filesystem::exists(tmp.path("b.onnx")));
  models::ScratchCnn net({.channels = {4, 8, 8, 16}});
  auto rs = dl::onnx::export_model(net, randn({2, 1, 28, 28}), tmp.path("s.onnx"));
  CHECK(rs.checked_batch == 3);
  CHECK(rs.max_abs_difference <= 1e-5 * std::max(1.0, rs.max_abs_output));
}

TEST_CASE("ONNX export refuses what it cannot write, naming the op and the module") {
  TmpDir tmp;
  Unexportable net;
  dl::test::check_throws_with([&] { dl::onnx::export_model(net, randn({2, 3}), tmp.path("u.onnx")); },
                              {"Var", "module 'inner' (Inner)", "no ONNX form"});
  CHECK_FALSE(std::filesystem::exists(tmp.path("u.onnx")));
  nn::BatchNorm2d bn(3, 1e-5, 0.1, true, false);  // no running statistics: batch statistics even in eval
  dl::test::check_throws_with([&] { dl::onnx::export_model(bn, randn({2, 3, 4, 4}), tmp.path("b.onnx")); },
                              {"running mean and variance"});
  nn::Linear lin(3, 2);
  dl::test::check_throws_with([&] { dl::onnx::export_model(lin, randn({2, 3}), tmp.path("l.onnx"), {.opset = 9}); },
                              {"opset 9"});
  dl::test::check_throws_with([&] { dl::onnx::export_model(lin, randn({2, 3}), (tmp.dir / "no" / "such" / "dir" / "l.onnx").string()); },
                              {"l.onnx"});
}
