#include "onnx/weights.h"

#include <mutex>

#include "autograd/node.h"
#include "models/resnet.h"
#include "models/scratch_cnn.h"
#include "onnx/onnx.h"
#include "onnx/proto_util.h"
#include "tensor/ops.h"

namespace dl::onnx {

namespace {

// torchvision's convs in forward order, with the batch norm after each.
std::vector<std::pair<std::string, std::string>> resnet18_convs() {
  std::vector<std::pair<std::string, std::string>> c{{"conv1", "bn1"}};
  for (int l = 1; l <= 4; ++l)
    for (int b = 0; b < 2; ++b) {
      std::string p = fmt::format("layer{}.{}.", l, b);
      c.emplace_back(p + "conv1", p + "bn1");
      c.emplace_back(p + "conv2", p + "bn2");
      if (l > 1 && b == 0) c.emplace_back(p + "downsample.0", p + "downsample.1");
    }
  return c;
}

bool has(const TensorDict& d, const std::string& k) { return find_tensor(d, k) != nullptr; }

// The initializer behind a value, looking through Identity nodes (torch.onnx.export writes one
// initializer per distinct value and Identity nodes for its duplicates, e.g. the zero biases of
// folded, untrained batch norms); undefined when the value is computed.
Tensor constant_value(const OnnxModel& m, const std::string& value) {
  std::string v = value;
  for (size_t hops = 0; hops <= m.nodes().size(); ++hops) {
    if (Tensor t = m.initializer(v); t.defined()) return t;
    const OnnxModel::NodeInfo* producer = nullptr;
    for (const auto& n : m.nodes())
      for (const auto& o : n.outputs)
        if (o == v) producer = &n;
    if (!producer || producer->op_type != "Identity" || producer->inputs.empty()) return Tensor();
    v = producer->inputs[0];
  }
  return Tensor();
}

// The first node of type `op` that reads `value`.
const OnnxModel::NodeInfo* consumer(const OnnxModel& m, const std::string& value, const std::string& op) {
  for (const auto& n : m.nodes())
    if (n.op_type == op)
      for (const auto& i : n.inputs)
        if (i == value) return &n;
  return nullptr;
}

TensorDict unfold_resnet18(OnnxModel& m, const std::string& path) {
  std::vector<const OnnxModel::NodeInfo*> convs;
  for (const auto& n : m.nodes())
    if (n.op_type == "Conv") convs.push_back(&n);
  auto expected = resnet18_convs();
  if (convs.size() != expected.size())
    fail("'{}' is neither named like a state_dict nor a ResNet18 graph: {} Conv nodes, ResNet18 has {}", path,
         convs.size(), expected.size());
  models::ResNet18 shapes(1000);
  TensorDict out;
  for (size_t i = 0; i < convs.size(); ++i) {
    const auto& [conv, bn] = expected[i];
    const auto& n = *convs[i];
    Tensor w = n.inputs.size() > 1 ? constant_value(m, n.inputs[1]) : Tensor();
    Shape want = shapes.get_parameter(conv + ".weight").sizes();
    if (!w.defined() || w.sizes() != want)
      fail("'{}': Conv node {} ('{}') should be ResNet18's {} with a weight of shape {}, but has {}", path, i, n.name,
           conv, shape_str(want), w.defined() ? shape_str(w.sizes()) : std::string("no constant weight"));
    out.emplace_back(conv + ".weight", w.detach());
    const int64_t C = want[0];
    if (const auto* b = consumer(m, n.outputs.at(0), "BatchNormalization")) {  // batch norm kept, names lost
      const char* parts[] = {"weight", "bias", "running_mean", "running_var"};
      for (int k = 0; k < 4; ++k) {
        Tensor t = b->inputs.size() > static_cast<size_t>(k + 1) ? constant_value(m, b->inputs[k + 1]) : Tensor();
        if (!t.defined() || t.sizes() != Shape{C})
          fail("'{}': BatchNormalization '{}' after {} lacks a constant {} of shape [{}]", path, b->name, conv, parts[k], C);
        out.emplace_back(bn + "." + parts[k], t.detach());
      }
      continue;
    }
    Tensor bias = n.inputs.size() > 2 ? constant_value(m, n.inputs[2]) : Tensor();
    if (!bias.defined() || bias.sizes() != Shape{C})
      fail("'{}': Conv node '{}' ({}) has neither a BatchNormalization after it nor a folded bias of shape [{}]", path,
           n.name, conv, C);
    // the folded batch norm: scale 1, shift b, statistics that normalise nothing
    out.emplace_back(bn + ".weight", ones({C}));
    out.emplace_back(bn + ".bias", bias.detach());
    out.emplace_back(bn + ".running_mean", zeros({C}));
    out.emplace_back(bn + ".running_var", full({C}, 1.0 - 1e-5));
  }
  // the head: a Gemm (or MatMul) with a constant weight of 512 inputs
  for (const auto& n : m.nodes()) {
    if ((n.op_type != "Gemm" && n.op_type != "MatMul") || n.inputs.size() < 2) continue;
    Tensor w = constant_value(m, n.inputs[1]);
    if (!w.defined() || w.dim() != 2) continue;
    bool trans_b = n.op_type == "Gemm" && w.size(1) == 512;  // torch writes transB=1, weight (classes, 512)
    if (!trans_b && w.size(0) != 512) continue;
    Tensor fw = trans_b ? w.detach() : ops::contiguous(ops::transpose(w.detach(), 0, 1));
    Tensor fb;
    if (n.op_type == "Gemm" && n.inputs.size() > 2) fb = constant_value(m, n.inputs[2]);
    else if (const auto* add = consumer(m, n.outputs.at(0), "Add"))
      for (const auto& i : add->inputs)
        if (Tensor t = constant_value(m, i); t.defined() && t.dim() == 1) fb = t;
    if (!fb.defined() || fb.sizes() != Shape{fw.size(0)})
      fail("'{}': the classifier head '{}' has no constant bias of shape [{}]", path, n.name, fw.size(0));
    out.emplace_back("fc.weight", fw);
    out.emplace_back("fc.bias", fb.detach());
    return out;
  }
  fail("'{}': no classifier head (a Gemm or MatMul with a constant 512-input weight) was found", path);
}

}  // namespace

TensorDict weights_from_onnx(const std::string& path) {
  std::shared_ptr<OnnxModel> m = load(path);
  TensorDict named;
  for (const auto& [k, t] : m->state_dict()) named.emplace_back(k, t.detach());
  const bool resnet_named = has(named, "layer4.1.bn2.running_var") && has(named, "fc.weight");
  const bool scratch_named = has(named, "block1.0.weight") && has(named, "fc.weight");
  TensorDict out = resnet_named || scratch_named ? named : unfold_resnet18(*m, path);
  if (scratch_named) return out;  // its input size and channels are the run's; it is checked on load

  // a ResNet18 built from these weights must compute what the ONNX graph computes
  const Tensor* fcw = find_tensor(out, "fc.weight");
  models::ResNet18 net(fcw->size(0));
  nn::StateDict sd(out.begin(), out.end());
  auto r = net.load_state_dict(sd, false);
  for (const auto& k : r.missing_keys)
    if (!k.ends_with("num_batches_tracked")) fail("'{}' lacks ResNet18 weight '{}'", path, k);
  if (!r.mismatched.empty() || !r.unexpected_keys.empty()) fail("'{}' does not fit ResNet18:\n{}", path, r.str());
  net.eval();
  // an input of the declared size (64x64 where the graph leaves it open)
  Shape s{1, 3, 64, 64};
  std::vector<int64_t> declared = m->input_shape(0);
  for (size_t d = 1; d < declared.size() && d < s.size(); ++d)
    if (declared[d] > 0) s[d] = declared[d];
  Generator g(7);
  Tensor x = randn(s, {}, &g);
  NoGradGuard ng;
  Tensor want = m->forward(x), got = net(x);
  OutputDifference d = output_difference(got, want);
  const double diff = d.max_abs, scale = d.scale;
  if (!d.close(1e-4))
    fail("'{}': a ResNet18 holding the weights read from this ONNX graph computes other logits (largest difference "
         "{:.3g}, largest logit {:.3g}); the graph is not torchvision's ResNet18",
         path, diff, scale);
  return out;
}

void register_weights_format() {
  static std::once_flag once;
  std::call_once(once, [] { register_weights_reader(".onnx", &weights_from_onnx); });
}

}  // namespace dl::onnx
