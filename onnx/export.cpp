// ONNX export: one traced forward pass becomes an onnx::ModelProto.
//
// The tracer (an autograd::Tracer) sees every node that autograd records while the module runs in
// eval mode on an example input that requires grad, so every op downstream of the input records
// itself, with its attributes (autograd::TraceInfo). Each recorded op is translated to one or a
// few ONNX nodes by the table in `emit` below; a tensor the graph reads that no recorded op
// produced is a parameter or buffer of the module (an initializer named by its state_dict key) or
// a constant of the forward pass (an initializer "constant_<k>"). An op the table does not know is
// an error naming it and the module that ran it. The result is checked by onnx::checker and ONNX
// shape inference before the file is written.
#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numbers>
#include <unordered_map>

#include "autograd/node.h"
#include "onnx/onnx.h"
#include "onnx/proto_util.h"
#include "tensor/ops.h"

namespace dl::onnx {

namespace {

using autograd::TraceInfo;

const std::vector<int64_t>& ints(const TraceInfo& info, const char* name) {
  const autograd::OpAttr* a = info.find(name);
  if (!a) fail("export_model: internal error: the traced op carries no attribute '{}'", name);
  return a->ints;
}
double float_attr(const TraceInfo& info, const char* name, size_t i = 0) {
  const autograd::OpAttr* a = info.find(name);
  if (!a || a->floats.size() <= i) fail("export_model: internal error: the traced op carries no attribute '{}'", name);
  return a->floats[i];
}

class ExportTracer final : public autograd::Tracer {
 public:
  ExportTracer(nn::Module& root, const ExportOptions& opt, ::onnx::GraphProto* graph)
      : opt_(opt), graph_(graph) {
    for (const auto& [name, t] : root.named_parameters()) named_[&t.impl()] = name;
    for (const auto& [name, t] : root.named_buffers()) named_[&t.impl()] = name;
    for (const auto& [name, m] : root.named_modules()) modules_[m.get()] = {name, m->name()};
    modules_[&root] = {"", root.name()};
  }

  // The graph input: the example tensor itself.
  void add_input(const Tensor& x) {
    values_[&x.impl()] = opt_.input_name;
    keep_.push_back(x);
    add_value_info(graph_->add_input(), opt_.input_name, x);
  }

  void add_output(const Tensor& y, const Tensor& x) {
    std::string v = value_of(y, "the module's output");
    bool produced = false;  // by a node (not the input itself, a parameter or a constant)
    for (const auto& n : graph_->node())
      for (const auto& o : n.output()) produced |= o == v;
    if (!produced) v = node("Identity", {v}, scope_name()).output(0);
    // the value takes the requested output name, wherever it appears
    for (auto& n : *graph_->mutable_node()) {
      for (auto& o : *n.mutable_output())
        if (o == v) o = opt_.output_name;
      for (auto& i : *n.mutable_input())
        if (i == v) i = opt_.output_name;
    }
    add_value_info(graph_->add_output(), opt_.output_name, y, y.dim() > 0 && x.dim() > 0 && y.size(0) == x.size(0));
  }

  void enter_module(const void* m) override { scope_.push_back(m); }
  void leave_module() override {
    if (!scope_.empty()) scope_.pop_back();
  }

  void on_op(const std::string& name, const Tensor& out, const std::vector<Tensor>& inputs,
             const TraceInfo& info) override {
    std::string result = emit(name, out, inputs, info);
    values_[&out.impl()] = result;
    keep_.push_back(out);
  }

 private:
  struct ModuleName {
    std::string path, type;
  };

  // ---- names ----------------------------------------------------------------------------------
  const ModuleName* current_module() const {
    if (scope_.empty()) return nullptr;
    auto it = modules_.find(static_cast<const nn::Module*>(scope_.back()));
    return it == modules_.end() ? nullptr : &it->second;
  }
  std::string scope_name() const {
    const ModuleName* m = current_module();
    return m ? m->path : "";
  }
  std::string where() const {
    const ModuleName* m = current_module();
    if (!m) return "outside any module";
    return m->path.empty() ? fmt::format("in the root module ({})", m->type)
                           : fmt::format("in module '{}' ({})", m->path, m->type);
  }
  // The module a parameter belongs to: "layer1.0.conv1" for "layer1.0.conv1.weight".
  std::string owner_of(const Tensor& param) const {
    auto it = named_.find(&param.impl());
    if (it == named_.end()) return scope_name();
    auto dot = it->second.rfind('.');
    return dot == std::string::npos ? "" : it->second.substr(0, dot);
  }
  std::string unique_node_name(const std::string& scope, const std::string& op) {
    std::string base = scope.empty() ? op : scope + "/" + op;
    int& k = node_count_[base];
    return k++ == 0 ? base : fmt::format("{}_{}", base, k - 1);
  }

  // ---- values ---------------------------------------------------------------------------------
  // The ONNX name of a tensor the graph reads: a traced value, a named parameter or buffer
  // (added as an initializer on first use), or else a constant of the forward pass.
  std::string value_of(const Tensor& t, const char* what) {
    auto it = values_.find(&t.impl());
    if (it != values_.end()) return it->second;
    auto nt = named_.find(&t.impl());
    std::string name;
    if (nt != named_.end()) {
      name = nt->second;
    } else {
      if (t.requires_grad() && !t.is_leaf())
        fail("export_model: {} was computed by an op the tracer did not see {}", what, where());
      name = fmt::format("constant_{}", constant_count_++);
    }
    detail::tensor_to_proto(t, name, graph_->add_initializer());
    values_[&t.impl()] = name;
    keep_.push_back(t);
    return name;
  }
  std::string constant(const Tensor& t) {
    std::string name = fmt::format("constant_{}", constant_count_++);
    detail::tensor_to_proto(t, name, graph_->add_initializer());
    keep_.push_back(t);
    return name;
  }
  std::string scalar(double v, DType dt) { return constant(full({}, v, {dt, kCPU})); }
  std::string int64s(const std::vector<int64_t>& v) {
    Tensor t = empty({static_cast<int64_t>(v.size())}, {DType::Int64, kCPU});
    if (!v.empty()) std::memcpy(t.raw_data(), v.data(), v.size() * sizeof(int64_t));
    return constant(t);
  }

  // ---- nodes ----------------------------------------------------------------------------------
  ::onnx::NodeProto& node(const std::string& op, const std::vector<std::string>& in, const std::string& scope) {
    ::onnx::NodeProto* n = graph_->add_node();
    n->set_op_type(op);
    n->set_name(unique_node_name(scope, op));
    for (const auto& i : in) n->add_input(i);
    n->add_output(n->name() + "_output");
    return *n;
  }
  static void attr(::onnx::NodeProto& n, const char* name, const std::vector<int64_t>& v) {
    auto* a = n.add_attribute();
    a->set_name(name);
    a->set_type(::onnx::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
  }
  static void attr(::onnx::NodeProto& n, const char* name, int64_t v) {
    auto* a = n.add_attribute();
    a->set_name(name);
    a->set_type(::onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void attr_f(::onnx::NodeProto& n, const char* name, double v) {
    auto* a = n.add_attribute();
    a->set_name(name);
    a->set_type(::onnx::AttributeProto::FLOAT);
    a->set_f(static_cast<float>(v));
  }
  std::string unary(const char* op, const std::string& x, const std::string& scope) { return node(op, {x}, scope).output(0); }
  std::string binary(const char* op, const std::string& a, const std::string& b, const std::string& scope) {
    return node(op, {a, b}, scope).output(0);
  }

  // ---- the translation table --------------------------------------------------------------------
  std::string emit(const std::string& op, const Tensor& out, const std::vector<Tensor>& in, const TraceInfo& info) {
    const std::string scope = scope_name();
    auto input = [&](size_t i) { return value_of(in.at(i), "an op's input"); };
    const DType dt = out.dtype();

    if (op == "Conv2dBackward") {
      const Tensor& w = in.at(1);
      std::vector<std::string> args{input(0), input(1)};
      if (in.size() > 2 && in[2].defined()) args.push_back(input(2));
      auto& n = node("Conv", args, owner_of(w));
      auto pad = ints(info, "padding");
      attr(n, "kernel_shape", {w.size(2), w.size(3)});
      attr(n, "strides", ints(info, "strides"));
      attr(n, "pads", {pad[0], pad[1], pad[0], pad[1]});
      attr(n, "dilations", ints(info, "dilations"));
      attr(n, "group", ints(info, "group").at(0));
      return n.output(0);
    }
    if (op == "BatchNormBackward" || op == "BatchNormReluBackward") {
      if (ints(info, "training").at(0) != 0 || info.extra.size() != 2 || !info.extra[0].defined())
        fail("export_model: BatchNorm {} normalises with the batch's statistics (no running statistics); "
             "ONNX's BatchNormalization needs running mean and variance",
             where());
      const Tensor& x = in.at(0);
      const int64_t C = x.size(1);
      std::string scale = in.at(1).defined() ? input(1) : constant(full({C}, 1.0, {dt, kCPU}));
      std::string bias = in.at(2).defined() ? input(2) : constant(full({C}, 0.0, {dt, kCPU}));
      std::string mean = value_of(info.extra[0], "running_mean"), var = value_of(info.extra[1], "running_var");
      std::string bn_scope = in.at(1).defined() ? owner_of(in.at(1)) : owner_of(info.extra[0]);
      auto& n = node("BatchNormalization", {input(0), scale, bias, mean, var}, bn_scope);
      attr_f(n, "epsilon", float_attr(info, "epsilon"));
      std::string y = n.output(0);
      if (op == "BatchNormBackward") return y;
      if (in.size() > 3 && in[3].defined()) y = binary("Add", y, input(3), scope);
      return unary("Relu", y, scope);
    }
    if (op == "LinearBackward") {
      const Tensor& x = in.at(0);
      const bool has_bias = in.size() > 2 && in[2].defined();
      const std::string owner = owner_of(in.at(1));
      if (x.dim() == 2) {
        std::vector<std::string> args{input(0), input(1)};
        if (has_bias) args.push_back(input(2));
        auto& n = node("Gemm", args, owner);
        attr(n, "transB", 1);
        return n.output(0);
      }
      std::string wt = node("Transpose", {input(1)}, owner).output(0);
      std::string y = binary("MatMul", input(0), wt, owner);
      return has_bias ? binary("Add", y, input(2), owner) : y;
    }
    if (op == "MaxPool2dBackward" || op == "AvgPool2dBackward") {
      const bool max = op == "MaxPool2dBackward";
      auto& n = node(max ? "MaxPool" : "AveragePool", {input(0)}, scope);
      auto pad = ints(info, "padding");
      attr(n, "kernel_shape", ints(info, "kernel"));
      attr(n, "strides", ints(info, "strides"));
      attr(n, "pads", {pad[0], pad[1], pad[0], pad[1]});
      attr(n, "ceil_mode", ints(info, "ceil_mode").at(0));
      if (!max) attr(n, "count_include_pad", ints(info, "count_include_pad").at(0));
      return n.output(0);
    }
    if (op == "AdaptiveAvgPool2dBackward") {
      const Tensor& x = in.at(0);
      auto os = ints(info, "output_size");
      if (os[0] == 1 && os[1] == 1) return unary("GlobalAveragePool", input(0), scope);
      if (x.size(2) % os[0] != 0 || x.size(3) % os[1] != 0)
        fail("export_model: AdaptiveAvgPool2d {} from {}x{} to {}x{}: ONNX has no adaptive pooling, and these sizes "
             "do not divide into a fixed window",
             where(), x.size(2), x.size(3), os[0], os[1]);
      auto& n = node("AveragePool", {input(0)}, scope);
      attr(n, "kernel_shape", {x.size(2) / os[0], x.size(3) / os[1]});
      attr(n, "strides", {x.size(2) / os[0], x.size(3) / os[1]});
      return n.output(0);
    }
    // elementwise
    static const std::map<std::string, const char*> kUnary = {
        {"ReluBackward", "Relu"}, {"SigmoidBackward", "Sigmoid"}, {"TanhBackward", "Tanh"}, {"ExpBackward", "Exp"},
        {"LogBackward", "Log"},   {"SqrtBackward", "Sqrt"},       {"AbsBackward", "Abs"},   {"NegBackward", "Neg"},
        {"CloneBackward", "Identity"}, {"ToDeviceBackward", "Identity"}};
    if (auto it = kUnary.find(op); it != kUnary.end()) return unary(it->second, input(0), scope);
    static const std::map<std::string, const char*> kBinary = {
        {"AddBackward", "Add"}, {"SubBackward", "Sub"}, {"MulBackward", "Mul"}, {"DivBackward", "Div"},
        {"MatmulBackward", "MatMul"}, {"MaximumBackward", "Max"}};
    if (auto it = kBinary.find(op); it != kBinary.end()) return binary(it->second, input(0), input(1), scope);
    static const std::map<std::string, const char*> kScalar = {
        {"AddScalarBackward", "Add"}, {"MulScalarBackward", "Mul"}, {"DivScalarBackward", "Div"}};
    if (auto it = kScalar.find(op); it != kScalar.end())
      return binary(it->second, input(0), scalar(float_attr(info, "scalar"), dt), scope);
    if (op == "RsubBackward") return binary("Sub", scalar(float_attr(info, "scalar"), dt), input(0), scope);
    if (op == "PowBackward") return binary("Pow", input(0), scalar(float_attr(info, "exponent"), dt), scope);
    if (op == "LeakyReluBackward") {
      auto& n = node("LeakyRelu", {input(0)}, scope);
      attr_f(n, "alpha", float_attr(info, "alpha"));
      return n.output(0);
    }
    if (op == "SiluBackward") {
      std::string x = input(0);
      return binary("Mul", x, unary("Sigmoid", x, scope), scope);
    }
    if (op == "HardswishBackward") {
      if (opt_.opset >= 14) return unary("HardSwish", input(0), scope);
      std::string x = input(0);
      auto& n = node("HardSigmoid", {x}, scope);
      attr_f(n, "alpha", 1.0 / 6.0);
      attr_f(n, "beta", 0.5);
      return binary("Mul", x, n.output(0), scope);
    }
    if (op == "GeluBackward") {
      // ONNX has Gelu only from opset 20: write PyTorch's formulas out
      std::string x = input(0);
      std::string inner;
      if (ints(info, "tanh").at(0) == 0) {
        inner = unary("Erf", binary("Mul", x, scalar(1.0 / std::numbers::sqrt2, dt), scope), scope);
      } else {
        std::string x3 = binary("Mul", binary("Mul", x, x, scope), x, scope);
        std::string poly = binary("Add", x, binary("Mul", x3, scalar(0.044715, dt), scope), scope);
        inner = unary("Tanh", binary("Mul", poly, scalar(std::sqrt(2.0 / std::numbers::pi), dt), scope), scope);
      }
      std::string half_x = binary("Mul", x, scalar(0.5, dt), scope);
      return binary("Mul", half_x, binary("Add", inner, scalar(1.0, dt), scope), scope);
    }
    if (op == "ClampBackward") {
      return node("Clip", {input(0), scalar(float_attr(info, "bounds", 0), dt), scalar(float_attr(info, "bounds", 1), dt)}, scope)
          .output(0);
    }
    // shapes
    if (op == "ViewBackward" || op == "ReshapeBackward") {
      const Tensor& x = in.at(0);
      const bool same_batch = opt_.dynamic_batch && x.dim() >= 1 && out.dim() >= 1 && x.size(0) == out.size(0);
      if (same_batch && out.dim() == 2 && x.dim() >= 2) {
        auto& n = node("Flatten", {input(0)}, scope);
        attr(n, "axis", 1);
        return n.output(0);
      }
      std::vector<int64_t> shape = out.sizes();
      if (same_batch) shape[0] = 0;  // ONNX Reshape: 0 copies the input's dim (the dynamic batch)
      return binary("Reshape", input(0), int64s(shape), scope);
    }
    if ((op == "SqueezeBackward" || op == "UnsqueezeBackward") && in.at(0).sizes() == out.sizes())
      return unary("Identity", input(0), scope);  // squeeze(d) of a dim that is not 1 changes nothing
    if (op == "SqueezeBackward" || op == "UnsqueezeBackward") {
      const Shape& a = op == "SqueezeBackward" ? in.at(0).sizes() : out.sizes();  // the longer shape
      const Shape& b = op == "SqueezeBackward" ? out.sizes() : in.at(0).sizes();
      int64_t axis = static_cast<int64_t>(b.size());
      for (size_t i = 0; i < b.size(); ++i)
        if (a[i] != b[i]) {
          axis = static_cast<int64_t>(i);
          break;
        }
      return binary(op == "SqueezeBackward" ? "Squeeze" : "Unsqueeze", input(0), int64s({axis}), scope);
    }
    if (op == "PermuteBackward") {
      auto& n = node("Transpose", {input(0)}, scope);
      attr(n, "perm", ints(info, "perm"));
      return n.output(0);
    }
    if (op == "TransposeBackward") {
      auto d = ints(info, "dims");
      std::vector<int64_t> perm(static_cast<size_t>(in.at(0).dim()));
      for (size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<int64_t>(i);
      std::swap(perm[static_cast<size_t>(d.at(0))], perm[static_cast<size_t>(d.at(1))]);
      auto& n = node("Transpose", {input(0)}, scope);
      attr(n, "perm", perm);
      return n.output(0);
    }
    if (op == "CatBackward") {
      std::vector<std::string> args;
      for (size_t i = 0; i < in.size(); ++i) args.push_back(input(i));
      auto& n = node("Concat", args, scope);
      attr(n, "axis", ints(info, "axis").at(0));
      return n.output(0);
    }
    if (op == "SoftmaxBackward" || op == "LogSoftmaxBackward") {
      auto& n = node(op == "SoftmaxBackward" ? "Softmax" : "LogSoftmax", {input(0)}, scope);
      attr(n, "axis", ints(info, "axis").at(0));
      return n.output(0);
    }
    if (op == "MeanBackward" || op == "SumBackward") {
      std::vector<int64_t> axes = ints(info, "axes");
      if (axes.empty())
        for (int64_t d = 0; d < in.at(0).dim(); ++d) axes.push_back(d);
      const int64_t keep = ints(info, "keepdim").at(0);
      if (op == "MeanBackward") {  // ReduceMean takes axes as an attribute up to opset 17
        auto& n = node("ReduceMean", {input(0)}, scope);
        attr(n, "axes", axes);
        attr(n, "keepdims", keep);
        return n.output(0);
      }
      auto& n = node("ReduceSum", {input(0), int64s(axes)}, scope);  // an input from opset 13
      attr(n, "keepdims", keep);
      return n.output(0);
    }
    std::string plain = op.size() > 8 && op.ends_with("Backward") ? op.substr(0, op.size() - 8) : op;
    fail("export_model: the op {} (autograd node {}) {} has no ONNX form in this exporter; exportable ops: "
         "Conv2d, BatchNorm2d (eval), Linear, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, ReLU and the other "
         "activations, add/sub/mul/div, matmul, reshape/view/flatten, squeeze/unsqueeze, permute/transpose, cat, "
         "softmax/log_softmax, mean/sum, clamp, pow; Dropout is the identity in eval",
         plain, op, where());
  }

  void add_value_info(::onnx::ValueInfoProto* vi, const std::string& name, const Tensor& t, bool batch_dim = true) {
    vi->set_name(name);
    auto* tt = vi->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(onnx_elem_type(t.dtype()));
    auto* shape = tt->mutable_shape();
    for (int64_t d = 0; d < t.dim(); ++d) {
      auto* dim = shape->add_dim();
      if (d == 0 && opt_.dynamic_batch && batch_dim) dim->set_dim_param("batch");
      else dim->set_dim_value(t.size(d));
    }
  }

  const ExportOptions& opt_;
  ::onnx::GraphProto* graph_;
  std::unordered_map<const TensorImpl*, std::string> named_;  // parameters and buffers by state_dict key
  std::unordered_map<const nn::Module*, ModuleName> modules_;
  std::unordered_map<const TensorImpl*, std::string> values_;  // what the graph has produced or read
  std::vector<Tensor> keep_;                                    // keeps traced impls alive (no address reuse)
  std::vector<const void*> scope_;
  std::map<std::string, int> node_count_;
  int constant_count_ = 0;
};

}  // namespace

ExportReport export_model(nn::Module& module, const Tensor& example_input, const std::string& path,
                          const ExportOptions& options) {
  if (options.opset < 13 || options.opset > 17) fail("export_model: opset {} is not supported; use 13 through 17", options.opset);
  if (!example_input.defined()) fail("export_model: the example input is an undefined tensor");
  if (!is_floating(example_input.dtype()))
    fail("export_model: the example input must be float32 or float64, got {}", dtype_name(example_input.dtype()));
  if (path.empty()) fail("export_model: no output path given");

  ::onnx::ModelProto model;
  model.set_ir_version(8);
  model.set_producer_name("dl");
  model.set_producer_version("0.1");
  auto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(options.opset);
  auto* graph = model.mutable_graph();
  graph->set_name(module.name());

  // Each module's own mode is given back afterwards (a frozen batch norm in eval inside a model
  // in training stays so): train() is recursive, so the root first, then every submodule in
  // named_modules()'s pre-order, parents before their children.
  struct Restore {
    nn::Module& root;
    bool root_training;
    std::vector<std::pair<std::shared_ptr<nn::Module>, bool>> modes;
    ~Restore() {
      root.train(root_training);
      for (const auto& [m, training] : modes) m->train(training);
    }
  } restore{module, module.is_training(), {}};
  for (const auto& [name, m] : module.named_modules()) restore.modes.emplace_back(m, m->is_training());
  module.eval();

  Tensor x = example_input.detach();
  x.requires_grad_(true);  // every op downstream of the input then records itself
  ExportTracer tracer(module, options, graph);
  tracer.add_input(x);
  Tensor y;
  {
    bool grad_was = autograd::grad_mode_enabled();
    autograd::set_grad_mode(true);
    struct GradRestore {
      bool on;
      ~GradRestore() { autograd::set_grad_mode(on); }
    } grad_restore{grad_was};
    autograd::TracerGuard guard(&tracer);
    y = module(x);
  }
  if (!y.defined()) fail("export_model: the module returned an undefined tensor");
  tracer.add_output(y, x);

  try {
    ::onnx::checker::check_model(model);
    ::onnx::ShapeInferenceOptions strict{true, 1, false};  // check types, throw on any node's error
    ::onnx::shape_inference::InferShapes(model, ::onnx::OpSchemaRegistry::Instance(), strict);
  } catch (const std::exception& e) {
    fail("export_model: the traced graph does not pass ONNX's checker: {}", e.what());
  }

  // read back and run on a fresh input beside the module (still in eval mode here)
  std::string bytes;
  if (!model.SerializeToString(&bytes)) fail("export_model: could not serialise the model (over protobuf's 2 GiB?)");
  std::shared_ptr<OnnxModel> back;
  try {
    back = load_from_bytes(bytes);
  } catch (const std::exception& e) {
    fail("export_model: this framework's importer refuses the traced graph: {}", e.what());
  }
  back->to(x.device());
  Shape fresh_shape = x.sizes();
  if (options.dynamic_batch && !fresh_shape.empty()) fresh_shape[0] += 1;
  Generator gen(0x0a11);
  Tensor fresh = randn(fresh_shape, {}, &gen).to(x.dtype()).to(x.device());
  Tensor want, got;
  {
    NoGradGuard ng;
    want = module(fresh);
    try {
      got = back->forward(fresh);
    } catch (const std::exception& e) {
      fail("export_model: the exported graph cannot run on a fresh input of shape {} ({}): a size in it is tied to "
           "the example's (a tensor made inside forward from the example's shape enters the graph as a constant)",
           shape_str(fresh_shape), e.what());
    }
  }
  OutputDifference d = output_difference(got, want);
  if (!d.close(1e-4))
    fail("export_model: the exported graph computes other outputs than the module on a fresh input of shape {} "
         "(largest difference {:.3g}, largest output {:.3g}): the forward pass uses a value the tracer cannot see "
         "(a raw ops:: call, an integer result, a detached tensor), which entered the graph as a constant, or a "
         "size tied to the example's batch",
         shape_str(fresh_shape), d.max_abs, d.scale);
  write_model_atomically(model, path);
  ExportReport report;
  report.nodes = graph->node_size();
  report.initializers = graph->initializer_size();
  report.checked_batch = fresh_shape.empty() ? 0 : fresh_shape[0];
  report.max_abs_difference = d.max_abs;
  report.max_abs_output = d.scale;
  return report;
}

}  // namespace dl::onnx
