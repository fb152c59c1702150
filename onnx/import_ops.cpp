// The ONNX ops the importer runs, each compiled once at load (attributes parsed and checked) into
// a closure over the framework's differentiable ops, so an imported model trains.
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include <fmt/ranges.h>

#include "autograd/functional.h"
#include "autograd/node.h"
#include "onnx/import_internal.h"

namespace dl::onnx::detail {
namespace {

using ::onnx::AttributeProto;
using ::onnx::NodeProto;
using ::onnx::TensorProto;
using Ins = std::vector<Tensor>;
using Outs = std::vector<Tensor>;
constexpr double kInf = std::numeric_limits<double>::infinity();

// ---- attributes ---------------------------------------------------------------------------------
// Reads a node's attributes by name and type; done() refuses any attribute that no reader asked
// for, so an attribute the importer does not implement is an error, never silently ignored.
class Attrs {
 public:
  explicit Attrs(const NodeContext& c) : c_(c) {
    for (const auto& a : c.node.attribute()) {
      if (a.name().empty()) fail("{}: an attribute without a name", c.where);
      if (!by_name_.emplace(a.name(), &a).second) fail("{}: attribute '{}' given twice", c.where, a.name());
    }
  }
  bool has(const std::string& n) const { return by_name_.count(n) != 0; }
  int64_t i(const std::string& n, int64_t def) {
    const AttributeProto* a = get(n, AttributeProto::INT);
    return a ? a->i() : def;
  }
  double f(const std::string& n, double def) {
    const AttributeProto* a = get(n, AttributeProto::FLOAT);
    return a ? a->f() : def;
  }
  std::string s(const std::string& n, const std::string& def) {
    const AttributeProto* a = get(n, AttributeProto::STRING);
    return a ? a->s() : def;
  }
  // `cap`: how many values make sense (pads, strides, axes: a few; Constant's value_ints: any)
  std::vector<int64_t> ints(const std::string& n, std::vector<int64_t> def = {}, int cap = 64) {
    const AttributeProto* a = get(n, AttributeProto::INTS);
    if (!a) return def;
    if (a->ints_size() > cap) fail("{}: attribute '{}' has {} values (at most {})", c_.where, n, a->ints_size(), cap);
    return {a->ints().begin(), a->ints().end()};
  }
  std::vector<float> floats(const std::string& n) {
    const AttributeProto* a = get(n, AttributeProto::FLOATS);
    if (!a) return {};
    return {a->floats().begin(), a->floats().end()};
  }
  const TensorProto* tensor(const std::string& n) {
    const AttributeProto* a = get(n, AttributeProto::TENSOR);
    return a ? &a->t() : nullptr;
  }
  // Marks an attribute as known and ignorable (e.g. Dropout's seed).
  void ignore(const std::string& n) { used_.insert(n); }
  // Refuses the attribute when present.
  void refuse(const std::string& n, const std::string& why) {
    if (has(n)) fail("{}: attribute '{}' is not supported ({})", c_.where, n, why);
  }
  void done() const {
    for (const auto& [n, a] : by_name_)
      if (!used_.count(n)) fail("{}: attribute '{}' is not supported", c_.where, n);
  }

 private:
  const AttributeProto* get(const std::string& n, AttributeProto::AttributeType type) {
    used_.insert(n);
    auto it = by_name_.find(n);
    if (it == by_name_.end()) return nullptr;
    const AttributeProto* a = it->second;
    if (a->type() != type && !(a->type() == AttributeProto::UNDEFINED && type_matches_undefined(*a, type)))
      fail("{}: attribute '{}' has type {}, expected {}", c_.where, n, AttributeProto::AttributeType_Name(a->type()),
           AttributeProto::AttributeType_Name(type));
    return a;
  }
  // Very old files leave `type` unset; accept them when the right field is filled.
  static bool type_matches_undefined(const AttributeProto& a, AttributeProto::AttributeType type) {
    switch (type) {
      case AttributeProto::INT: return a.has_i();
      case AttributeProto::FLOAT: return a.has_f();
      case AttributeProto::STRING: return a.has_s();
      case AttributeProto::INTS: return a.ints_size() > 0;
      case AttributeProto::FLOATS: return a.floats_size() > 0;
      case AttributeProto::TENSOR: return a.has_t();
      default: return false;
    }
  }
  const NodeContext& c_;
  std::map<std::string, const AttributeProto*> by_name_;
  std::set<std::string> used_;
};

// ---- runtime helpers ----------------------------------------------------------------------------
const Tensor& need(const Ins& in, size_t i, const char* what) {
  if (i >= in.size() || !in[i].defined()) fail("input {} ({}) is missing", i, what);
  return in[i];
}
bool given(const Ins& in, size_t i) { return i < in.size() && in[i].defined(); }

// An int64 (or int32-as-int64) tensor of at most 1 dim, as a vector (shapes, axes, pads).
std::vector<int64_t> ints_of(const Tensor& t, const char* what) {
  if (t.dtype() != DType::Int64) fail("{} must be int64, got {}", what, dtype_name(t.dtype()));
  if (t.dim() > 1) fail("{} must have at most 1 dim, got shape {}", what, shape_str(t.sizes()));
  if (t.numel() > 64) fail("{} has {} values (at most 64)", what, t.numel());
  return t.detach().to(kCPU).contiguous().to_vector<int64_t>();
}
double scalar_of(const Tensor& t, const char* what) {
  if (t.numel() != 1) fail("{} must hold one value, got shape {}", what, shape_str(t.sizes()));
  return t.detach().to(kCPU).item<double>();
}
int64_t wrap_axis(int64_t axis, int64_t rank, const char* what) {
  if (axis < -rank || axis >= rank) fail("{} {} is out of range for rank {}", what, axis, rank);
  return axis < 0 ? axis + rank : axis;
}
void check_elements(const Shape& s, const char* what) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d < 0) fail("{}: negative size in {}", what, shape_str(s));
    if (d != 0 && n > kMaxRunElements / d) fail("{}: result {} exceeds {} elements", what, shape_str(s), kMaxRunElements);
    n *= d;
  }
}
Shape broadcast_shape(const Shape& a, const Shape& b, const char* what) {
  const size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (size_t i = 0; i < r; ++i) {
    const int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    const int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    if (da != db && da != 1 && db != 1)
      fail("{}: shapes {} and {} do not broadcast", what, shape_str(a), shape_str(b));
    out[i] = da == 1 ? db : da;
  }
  return out;
}
// Puts two operands on one device: the accelerator's when one is on the CPU (constants and shape
// values live on the CPU and follow the activations), else the larger one's.
void same_device(Tensor& a, Tensor& b) {
  if (a.device() == b.device()) return;
  if (a.is_cpu()) a = a.to(b.device());
  else if (b.is_cpu()) b = b.to(a.device());
  else if (a.numel() <= b.numel()) a = a.to(b.device());
  else b = b.to(a.device());
}

Tensor binary(char op, Tensor a, Tensor b) {
  if (a.dtype() != b.dtype())
    fail("operands have different dtypes, {} and {}", dtype_name(a.dtype()), dtype_name(b.dtype()));
  same_device(a, b);
  check_elements(broadcast_shape(a.sizes(), b.sizes(), "broadcast"), "broadcast");
  switch (op) {
    case '+': return a + b;
    case '-': return a - b;
    case '*': return a * b;
    default: return a / b;
  }
}

// Constant padding, any rank: begins/ends per dim (negative = crop), differentiable (cat/slice).
Tensor pad_constant(Tensor x, const std::vector<int64_t>& begins, const std::vector<int64_t>& ends, double value) {
  const int64_t r = x.dim();
  Shape out_shape = x.sizes();
  for (int64_t d = 0; d < r; ++d) {
    out_shape[d] += begins[d] + ends[d];
    if (out_shape[d] < 0) fail("pads {} and {} crop more than dim {} holds ({})", begins[d], ends[d], d, x.size(d));
  }
  check_elements(out_shape, "Pad");
  for (int64_t d = 0; d < r; ++d) {
    const int64_t b = begins[d], e = ends[d];
    if (b < 0) x = x.slice(d, -b, x.size(d));
    if (e < 0) x = x.slice(d, 0, x.size(d) + e);
    if (b <= 0 && e <= 0) continue;
    std::vector<Tensor> parts;
    auto block = [&](int64_t n) {
      Shape s = x.sizes();
      s[d] = n;
      return full(s, value, TensorOptions(x.dtype(), x.device()));
    };
    if (b > 0) parts.push_back(block(b));
    parts.push_back(x);
    if (e > 0) parts.push_back(block(e));
    x = cat(parts, d);
  }
  return x;
}

// erf with its gradient 2/sqrt(pi) exp(-x^2); computed on the CPU (there is no erf kernel).
Tensor erf(const Tensor& x) {
  if (!is_floating(x.dtype())) fail("Erf needs a floating input, got {}", dtype_name(x.dtype()));
  Tensor xc = x.detach().to(kCPU).to(DType::Float64).contiguous();
  std::vector<double> v = xc.to_vector<double>();
  for (double& e : v) e = std::erf(e);
  Tensor out = from_vector(v, x.sizes()).to(x.dtype()).to(x.device());
  if (!autograd::needs_graph(x)) return out;
  return autograd::record(
      "ErfBackward", out, {x}, [xs = autograd::save(x)](const Tensor& g, const autograd::NeedsGrad&) -> Outs {
        return {g * (xs * xs).neg().exp() * 1.1283791670955126};
      });
}

// 2-D spatial geometry shared by Conv and the pools: kernel, strides, dilations, pads (t, l, b, r).
struct Spatial {
  std::string auto_pad = "NOTSET";
  std::vector<int64_t> kernel, strides{1, 1}, dilations{1, 1}, pads{0, 0, 0, 0};
};
Spatial read_spatial(Attrs& a, const NodeContext& c, bool kernel_required) {
  Spatial s;
  s.auto_pad = a.s("auto_pad", "NOTSET");
  if (s.auto_pad != "NOTSET" && s.auto_pad != "VALID" && s.auto_pad != "SAME_UPPER" && s.auto_pad != "SAME_LOWER")
    fail("{}: auto_pad '{}' is not supported (NOTSET, VALID, SAME_UPPER, SAME_LOWER are)", c.where, s.auto_pad);
  s.kernel = a.ints("kernel_shape");
  if (kernel_required && s.kernel.empty()) fail("{}: kernel_shape is required", c.where);
  if (!s.kernel.empty() && s.kernel.size() != 2)
    fail("{}: kernel_shape {} has {} dims; only 2-D (NCHW) is supported", c.where, fmt::join(s.kernel, "x"),
         s.kernel.size());
  for (int64_t k : s.kernel)
    if (k <= 0 || k > 4096) fail("{}: kernel_shape {} is not positive and small", c.where, fmt::join(s.kernel, "x"));
  s.strides = a.ints("strides", {1, 1});
  s.dilations = a.ints("dilations", {1, 1});
  s.pads = a.ints("pads", {0, 0, 0, 0});
  if (s.strides.size() != 2) fail("{}: strides must have 2 values, got {}", c.where, s.strides.size());
  if (s.dilations.size() != 2) fail("{}: dilations must have 2 values, got {}", c.where, s.dilations.size());
  if (s.pads.size() != 4) fail("{}: pads must have 4 values, got {}", c.where, s.pads.size());
  for (int64_t v : s.strides)
    if (v <= 0 || v > 4096) fail("{}: strides must be positive, got {}", c.where, fmt::join(s.strides, ","));
  for (int64_t v : s.dilations)
    if (v <= 0 || v > 4096) fail("{}: dilations must be positive, got {}", c.where, fmt::join(s.dilations, ","));
  for (int64_t v : s.pads)
    if (v < 0 || v > 4096) fail("{}: pads must be non-negative, got {}", c.where, fmt::join(s.pads, ","));
  if (s.auto_pad != "NOTSET" && a.has("pads") && std::any_of(s.pads.begin(), s.pads.end(), [](int64_t p) { return p; }))
    fail("{}: pads given with auto_pad {}", c.where, s.auto_pad);
  return s;
}
// The pads (t, l, b, r) for an input of h x w.
std::array<int64_t, 4> resolve_pads(const Spatial& s, int64_t h, int64_t w, int64_t kh, int64_t kw) {
  if (s.auto_pad == "NOTSET") return {s.pads[0], s.pads[1], s.pads[2], s.pads[3]};
  if (s.auto_pad == "VALID") return {0, 0, 0, 0};
  std::array<int64_t, 4> p{};
  const int64_t in[2] = {h, w}, k[2] = {kh, kw};
  for (int i = 0; i < 2; ++i) {
    const int64_t out = (in[i] + s.strides[i] - 1) / s.strides[i];
    const int64_t total = std::max<int64_t>((out - 1) * s.strides[i] + (k[i] - 1) * s.dilations[i] + 1 - in[i], 0);
    const int64_t small = total / 2, big = total - small;
    p[i] = s.auto_pad == "SAME_UPPER" ? small : big;
    p[i + 2] = s.auto_pad == "SAME_UPPER" ? big : small;
  }
  return p;
}
void need_4d(const Tensor& x, const char* op) {
  if (x.dim() != 4) fail("{} supports 4-D (N, C, H, W) inputs only, got shape {}", op, shape_str(x.sizes()));
}

// ---- the ops ------------------------------------------------------------------------------------
struct OpSpec {
  int min_in, max_in, max_out;
  int since;  // first opset with this op (within 7..17)
  std::function<OpFn(const NodeContext&, Attrs&)> compile;
};

OpFn unary(Tensor (*f)(const Tensor&)) {
  return [f](const Ins& in) -> Outs { return {f(need(in, 0, "X"))}; };
}

const std::map<std::string, OpSpec>& registry() {
  static const std::map<std::string, OpSpec> ops = [] {
    std::map<std::string, OpSpec> m;
    auto floating = [](const Tensor& x, const char* op) {
      if (!is_floating(x.dtype())) fail("{} needs a floating input, got {}", op, dtype_name(x.dtype()));
    };
    // -- elementwise
    m["Relu"] = {1, 1, 1, 1, [](const NodeContext&, Attrs&) {
                   return unary([](const Tensor& x) { return x.relu(); });
                 }};
    m["Sigmoid"] = {1, 1, 1, 1, [](const NodeContext&, Attrs&) {
                      return unary([](const Tensor& x) { return x.sigmoid(); });
                    }};
    m["Tanh"] = {1, 1, 1, 1, [](const NodeContext&, Attrs&) {
                   return unary([](const Tensor& x) { return x.tanh(); });
                 }};
    m["Exp"] = {1, 1, 1, 1, [](const NodeContext&, Attrs&) {
                  return unary([](const Tensor& x) { return x.exp(); });
                }};
    m["Log"] = {1, 1, 1, 1, [](const NodeContext&, Attrs&) {
                  return unary([](const Tensor& x) { return x.log(); });
                }};
    m["Sqrt"] = {1, 1, 1, 1, [](const NodeContext&, Attrs&) {
                   return unary([](const Tensor& x) { return x.sqrt(); });
                 }};
    m["Neg"] = {1, 1, 1, 1, [](const NodeContext&, Attrs&) {
                  return unary([](const Tensor& x) { return x.neg(); });
                }};
    m["Abs"] = {1, 1, 1, 1, [](const NodeContext&, Attrs&) {
                  return unary([](const Tensor& x) { return x.abs(); });
                }};
    m["Erf"] = {1, 1, 1, 9, [](const NodeContext&, Attrs&) {
                  return unary([](const Tensor& x) { return erf(x); });
                }};
    m["Identity"] = {1, 1, 1, 1, [](const NodeContext&, Attrs&) -> OpFn {
                       return [](const Ins& in) -> Outs { return {need(in, 0, "input")}; };
                     }};
    m["HardSwish"] = {1, 1, 1, 14, [](const NodeContext&, Attrs&) {
                        return unary([](const Tensor& x) { return x.hardswish(); });
                      }};
    m["LeakyRelu"] = {1, 1, 1, 1, [](const NodeContext&, Attrs& a) -> OpFn {
                        const double alpha = a.f("alpha", 0.01);
                        return [alpha](const Ins& in) -> Outs { return {need(in, 0, "X").leaky_relu(alpha)}; };
                      }};
    m["HardSigmoid"] = {1, 1, 1, 1, [](const NodeContext&, Attrs& a) -> OpFn {
                          const double alpha = a.f("alpha", 0.2), beta = a.f("beta", 0.5);
                          return [alpha, beta](const Ins& in) -> Outs {
                            return {(need(in, 0, "X") * alpha + beta).clamp(0.0, 1.0)};
                          };
                        }};
    m["Clip"] = {1, 3, 1, 1, [](const NodeContext& c, Attrs& a) -> OpFn {
                   if (c.opset < 11) {
                     const double lo = a.f("min", -kInf), hi = a.f("max", kInf);
                     if (c.node.input_size() > 1) fail("{}: Clip before opset 11 takes one input", c.where);
                     return [lo, hi](const Ins& in) -> Outs { return {need(in, 0, "input").clamp(lo, hi)}; };
                   }
                   return [](const Ins& in) -> Outs {
                     const double lo = given(in, 1) ? scalar_of(in[1], "Clip's min") : -kInf;
                     const double hi = given(in, 2) ? scalar_of(in[2], "Clip's max") : kInf;
                     return {need(in, 0, "input").clamp(lo, hi)};
                   };
                 }};
    m["Pow"] = {2, 2, 1, 1, [](const NodeContext&, Attrs&) -> OpFn {
                  return [](const Ins& in) -> Outs {
                    return {need(in, 0, "X").pow(scalar_of(need(in, 1, "Y"), "Pow's exponent (only a scalar one)"))};
                  };
                }};
    for (const char* name : {"Add", "Sub", "Mul", "Div"}) {
      const char op = name[0] == 'A' ? '+' : name[0] == 'S' ? '-' : name[0] == 'M' ? '*' : '/';
      m[name] = {2, 2, 1, 1, [op](const NodeContext&, Attrs& a) -> OpFn {
                   a.refuse("broadcast", "legacy broadcasting before opset 7");
                   a.refuse("axis", "legacy broadcasting before opset 7");
                   return [op](const Ins& in) -> Outs { return {binary(op, need(in, 0, "A"), need(in, 1, "B"))}; };
                 }};
    }
    m["Cast"] = {1, 1, 1, 1, [](const NodeContext& c, Attrs& a) -> OpFn {
                   const int64_t to = a.i("to", -1);
                   DType dt;
                   if (to > std::numeric_limits<int32_t>::max() || !dtype_of_elem_type(static_cast<int32_t>(to), &dt) ||
                       dt == DType::UInt8)
                     fail("{}: Cast to {} is not supported (FLOAT, DOUBLE, INT64 are)", c.where,
                          to < 0 ? std::string("nothing (no 'to')") : data_type_name(static_cast<int32_t>(to)));
                   a.ignore("saturate");
                   return [dt](const Ins& in) -> Outs { return {need(in, 0, "input").to(dt)}; };
                 }};
    // -- softmax family: before opset 13 the input is coerced to 2-D at `axis`
    for (const char* name : {"Softmax", "LogSoftmax"}) {
      const bool log = name[0] == 'L';
      m[name] = {1, 1, 1, 1, [log, floating](const NodeContext& c, Attrs& a) -> OpFn {
                   const bool legacy = c.opset < 13;
                   const int64_t axis = a.i("axis", legacy ? 1 : -1);
                   return [log, legacy, axis, floating](const Ins& in) -> Outs {
                     const Tensor& x = need(in, 0, "input");
                     floating(x, log ? "LogSoftmax" : "Softmax");
                     if (x.dim() == 0) fail("a 0-d input has no axis");
                     const int64_t ax = wrap_axis(axis, x.dim(), "axis");
                     if (!legacy) return {log ? x.log_softmax(ax) : x.softmax(ax)};
                     int64_t outer = 1, inner = 1;
                     for (int64_t d = 0; d < x.dim(); ++d) (d < ax ? outer : inner) *= x.size(d);
                     Tensor y = x.reshape({outer, inner});
                     y = log ? y.log_softmax(1) : y.softmax(1);
                     return {y.reshape(x.sizes())};
                   };
                 }};
    }
    // -- linear algebra
    m["MatMul"] = {2, 2, 1, 1, [](const NodeContext&, Attrs&) -> OpFn {
                     return [](const Ins& in) -> Outs {
                       Tensor a = need(in, 0, "A"), b = need(in, 1, "B");
                       same_device(a, b);
                       if (a.dim() >= 1 && b.dim() >= 2) {
                         Shape s = broadcast_shape(Shape(a.sizes().begin(), a.sizes().end() - 1),
                                                   Shape(b.sizes().begin(), b.sizes().end() - 2), "MatMul");
                         s.push_back(b.size(-1));
                         check_elements(s, "MatMul");
                       }
                       return {a.matmul(b)};
                     };
                   }};
    m["Gemm"] = {2, 3, 1, 1, [](const NodeContext& c, Attrs& a) -> OpFn {
                   const double alpha = a.f("alpha", 1.0), beta = a.f("beta", 1.0);
                   const bool ta = a.i("transA", 0) != 0, tb = a.i("transB", 0) != 0;
                   a.refuse("broadcast", "legacy broadcasting before opset 7");
                   if (c.opset < 11 && c.node.input_size() < 3) fail("{}: Gemm before opset 11 needs C", c.where);
                   return [=](const Ins& in) -> Outs {
                     Tensor A = need(in, 0, "A"), B = need(in, 1, "B");
                     if (A.dim() != 2 || B.dim() != 2)
                       fail("A and B must be 2-D, got {} and {}", shape_str(A.sizes()), shape_str(B.sizes()));
                     same_device(A, B);
                     if (ta) A = A.t();
                     if (tb) B = B.t();
                     check_elements({A.size(0), B.size(1)}, "Gemm");
                     const bool has_c = given(in, 2) && beta != 0.0;
                     if (!ta && tb && alpha == 1.0 && beta == 1.0 && has_c && in[2].dim() == 1 &&
                         in[2].size(0) == B.size(1) && in[2].device() == A.device())
                       return {linear(A, B.t(), in[2])};  // B.t(): the (N, K) weight, on A's device
                     Tensor y = A.matmul(B);
                     if (alpha != 1.0) y = y * alpha;
                     if (has_c) {
                       Tensor C = in[2];
                       if (beta != 1.0) C = C * beta;
                       y = binary('+', y, C);
                     }
                     return {y};
                   };
                 }};
    // -- convolution, normalization, pooling
    m["Conv"] = {2, 3, 1, 1, [](const NodeContext& c, Attrs& a) -> OpFn {
                   const Spatial s = read_spatial(a, c, false);
                   const int64_t group = a.i("group", 1);
                   if (group <= 0) fail("{}: group must be positive, got {}", c.where, group);
                   return [s, group](const Ins& in) -> Outs {
                     Tensor x = need(in, 0, "X");
                     const Tensor& w = need(in, 1, "W");
                     need_4d(x, "Conv");
                     if (w.dim() != 4) fail("W must be 4-D (O, C/group, kh, kw), got {}", shape_str(w.sizes()));
                     if (!s.kernel.empty() && (s.kernel[0] != w.size(2) || s.kernel[1] != w.size(3)))
                       fail("kernel_shape {} does not match W {}", fmt::join(s.kernel, "x"), shape_str(w.sizes()));
                     auto p = resolve_pads(s, x.size(2), x.size(3), w.size(2), w.size(3));
                     Conv2dParams cp;
                     cp.stride = {s.strides[0], s.strides[1]};
                     cp.dilation = {s.dilations[0], s.dilations[1]};
                     cp.groups = group;
                     if (p[0] == p[2] && p[1] == p[3]) {
                       cp.padding = {p[0], p[1]};
                     } else {
                       x = pad_constant(x, {0, 0, p[0], p[1]}, {0, 0, p[2], p[3]}, 0.0);
                     }
                     Tensor b = given(in, 2) ? in[2] : Tensor();
                     return {conv2d(x, w, b, cp)};
                   };
                 }};
    m["BatchNormalization"] = {5, 5, 1, 1, [](const NodeContext& c, Attrs& a) -> OpFn {
                                 const double eps = a.f("epsilon", 1e-5);
                                 const double momentum = a.f("momentum", 0.9);  // ONNX's: the running stats' weight
                                 const bool* training = c.training;
                                 if (c.opset < 9 && a.i("spatial", 1) != 1)
                                   fail("{}: spatial=0 (per-element statistics) is not supported", c.where);
                                 if (a.i("training_mode", 0) != 0)
                                   fail("{}: training_mode=1 is not supported (inference statistics only)", c.where);
                                 a.refuse("is_test", "opset 6 and earlier");
                                 return [eps, momentum, training](const Ins& in) -> Outs {
                                   Tensor x = need(in, 0, "X");
                                   if (x.dim() < 2) fail("X must have at least 2 dims, got {}", shape_str(x.sizes()));
                                   const Shape orig = x.sizes();
                                   if (x.dim() != 2 && x.dim() != 4) x = x.reshape({orig[0], orig[1], -1, 1});
                                   // train(): the batch's statistics, and the running ones updated in
                                   // place (PyTorch's momentum is 1 - ONNX's)
                                   const bool tr = training && *training;
                                   if (tr && !(momentum >= 0.0 && momentum <= 1.0))
                                     fail("momentum {} is not in [0, 1]; cannot update the running statistics", momentum);
                                   Tensor y = batch_norm(x, need(in, 3, "mean"), need(in, 4, "var"),
                                                         need(in, 1, "scale"), need(in, 2, "B"), tr, 1.0 - momentum, eps);
                                   return {y.dim() == static_cast<int64_t>(orig.size()) ? y : y.reshape(orig)};
                                 };
                               }};
    for (const char* name : {"MaxPool", "AveragePool"}) {
      const bool is_max = name[0] == 'M';
      m[name] = {1, 1, 1, 1, [is_max](const NodeContext& c, Attrs& a) -> OpFn {
                   const Spatial s = read_spatial(a, c, true);
                   if (s.dilations[0] != 1 || s.dilations[1] != 1)
                     fail("{}: dilations other than 1 are not supported", c.where);
                   const bool ceil = a.i("ceil_mode", 0) != 0;
                   bool include_pad = false;
                   if (is_max) {
                     if (a.i("storage_order", 0) != 0) fail("{}: storage_order=1 is not supported", c.where);
                   } else {
                     include_pad = a.i("count_include_pad", 0) != 0;
                   }
                   return [=](const Ins& in) -> Outs {
                     Tensor x = need(in, 0, "X");
                     need_4d(x, is_max ? "MaxPool" : "AveragePool");
                     auto p = resolve_pads(s, x.size(2), x.size(3), s.kernel[0], s.kernel[1]);
                     Pool2dParams pp;
                     pp.kernel = {s.kernel[0], s.kernel[1]};
                     pp.stride = {s.strides[0], s.strides[1]};
                     pp.ceil_mode = ceil;
                     pp.count_include_pad = include_pad;
                     if (p[0] == p[2] && p[1] == p[3]) {
                       pp.padding = {p[0], p[1]};
                     } else {
                       if (ceil) fail("asymmetric pads with ceil_mode are not supported");
                       if (!is_max && !include_pad) fail("asymmetric pads without count_include_pad are not supported");
                       x = pad_constant(x, {0, 0, p[0], p[1]}, {0, 0, p[2], p[3]}, is_max ? -kInf : 0.0);
                     }
                     return {is_max ? max_pool2d(x, pp) : avg_pool2d(x, pp)};
                   };
                 }};
    }
    m["GlobalAveragePool"] = {1, 1, 1, 1, [](const NodeContext&, Attrs&) -> OpFn {
                                return [](const Ins& in) -> Outs {
                                  const Tensor& x = need(in, 0, "X");
                                  if (x.dim() < 3) fail("X must have spatial dims, got {}", shape_str(x.sizes()));
                                  std::vector<int64_t> dims;
                                  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
                                  return {x.mean(dims, true)};
                                };
                              }};
    m["GlobalMaxPool"] = {1, 1, 1, 1, [](const NodeContext&, Attrs&) -> OpFn {
                            return [](const Ins& in) -> Outs {
                              Tensor x = need(in, 0, "X");
                              if (x.dim() < 3) fail("X must have spatial dims, got {}", shape_str(x.sizes()));
                              for (int64_t d = 2; d < x.dim(); ++d) x = x.max(d, true);
                              return {x};
                            };
                          }};
    m["Dropout"] = {1, 3, 2, 1, [](const NodeContext& c, Attrs& a) -> OpFn {
                      a.ignore("ratio");
                      a.ignore("seed");
                      a.refuse("is_test", "opset 6 and earlier");
                      return [](const Ins& in) -> Outs {
                        const Tensor& x = need(in, 0, "data");
                        if (given(in, 2) && scalar_of(in[2], "Dropout's training_mode") != 0.0)
                          fail("Dropout with training_mode=true is not supported (it is the identity here)");
                        return {x, ones(x.sizes(), TensorOptions(DType::UInt8, x.device()))};
                      };
                    }};
    // -- shapes
    m["Shape"] = {1, 1, 1, 1, [](const NodeContext&, Attrs& a) -> OpFn {
                    const bool has_start = a.has("start"), has_end = a.has("end");
                    const int64_t start = a.i("start", 0), end = a.i("end", 0);
                    return [=](const Ins& in) -> Outs {
                      const Shape& s = need(in, 0, "data").sizes();
                      const int64_t r = static_cast<int64_t>(s.size());
                      auto clampi = [r](int64_t v) { return std::clamp<int64_t>(v < 0 ? v + r : v, 0, r); };
                      const int64_t b = has_start ? clampi(start) : 0, e = has_end ? clampi(end) : r;
                      std::vector<int64_t> v(s.begin() + b, s.begin() + std::max(b, e));
                      return {from_vector(v, {static_cast<int64_t>(v.size())})};
                    };
                  }};
    m["Flatten"] = {1, 1, 1, 1, [](const NodeContext&, Attrs& a) -> OpFn {
                      const int64_t axis = a.i("axis", 1);
                      return [axis](const Ins& in) -> Outs {
                        const Tensor& x = need(in, 0, "input");
                        const int64_t r = x.dim();
                        if (axis < -r || axis > r) fail("axis {} is out of range for rank {}", axis, r);
                        const int64_t ax = axis < 0 ? axis + r : axis;
                        int64_t outer = 1, inner = 1;
                        for (int64_t d = 0; d < r; ++d) (d < ax ? outer : inner) *= x.size(d);
                        return {x.reshape({outer, inner})};
                      };
                    }};
    m["Reshape"] = {2, 2, 1, 5, [](const NodeContext&, Attrs& a) -> OpFn {
                      const bool allowzero = a.i("allowzero", 0) != 0;
                      return [allowzero](const Ins& in) -> Outs {
                        const Tensor& x = need(in, 0, "data");
                        std::vector<int64_t> s = ints_of(need(in, 1, "shape"), "Reshape's shape");
                        int infer = 0;
                        for (size_t i = 0; i < s.size(); ++i) {
                          if (s[i] == 0 && !allowzero) {
                            if (static_cast<int64_t>(i) >= x.dim())
                              fail("shape {} copies dim {} (0), but the input has rank {}", fmt::join(s, ","), i, x.dim());
                            s[i] = x.size(static_cast<int64_t>(i));
                          }
                          if (s[i] == -1 && ++infer > 1) fail("shape {} has more than one -1", fmt::join(s, ","));
                          if (s[i] < -1) fail("shape {} has a negative size", fmt::join(s, ","));
                        }
                        std::vector<int64_t> known;
                        for (int64_t d : s)
                          if (d != -1) known.push_back(d);
                        (void)checked_numel(known, kMaxRunElements, "Reshape's shape");  // no overflow below
                        return {x.reshape(Shape(s.begin(), s.end()))};
                      };
                    }};
    m["Transpose"] = {1, 1, 1, 1, [](const NodeContext&, Attrs& a) -> OpFn {
                        const bool has_perm = a.has("perm");
                        const std::vector<int64_t> perm = a.ints("perm");
                        return [=](const Ins& in) -> Outs {
                          const Tensor& x = need(in, 0, "data");
                          std::vector<int64_t> p = perm;
                          if (!has_perm)
                            for (int64_t d = x.dim() - 1; d >= 0; --d) p.push_back(d);
                          if (static_cast<int64_t>(p.size()) != x.dim())
                            fail("perm {} does not match rank {}", fmt::join(p, ","), x.dim());
                          return {x.permute(p)};
                        };
                      }};
    m["Concat"] = {1, 1 << 16, 1, 1, [](const NodeContext& c, Attrs& a) -> OpFn {
                     if (!a.has("axis")) fail("{}: Concat needs an axis", c.where);
                     const int64_t axis = a.i("axis", 0);
                     return [axis](const Ins& in) -> Outs {
                       std::vector<Tensor> xs;
                       Device dev = need(in, 0, "inputs").device();
                       int64_t total = 0;
                       for (size_t i = 0; i < in.size(); ++i) {
                         const Tensor& t = need(in, i, "inputs");
                         if (!t.is_cpu()) dev = t.device();
                         total += t.numel();
                       }
                       if (total > kMaxRunElements) fail("the result exceeds {} elements", kMaxRunElements);
                       for (const Tensor& t : in) xs.push_back(t.device() == dev ? t : t.to(dev));
                       if (xs[0].dim() == 0) fail("cannot concatenate 0-d tensors");
                       return {cat(xs, wrap_axis(axis, xs[0].dim(), "axis"))};
                     };
                   }};
    m["Gather"] = {2, 2, 1, 1, [](const NodeContext&, Attrs& a) -> OpFn {
                     const int64_t axis = a.i("axis", 0);
                     return [axis](const Ins& in) -> Outs {
                       const Tensor& x = need(in, 0, "data");
                       Tensor idx = need(in, 1, "indices");
                       if (idx.dtype() != DType::Int64) fail("indices must be int64, got {}", dtype_name(idx.dtype()));
                       if (x.dim() == 0) fail("cannot gather from a 0-d tensor");
                       const int64_t ax = wrap_axis(axis, x.dim(), "axis");
                       const int64_t n = x.size(ax);
                       check_elements({idx.numel(), x.numel() / std::max<int64_t>(n, 1)}, "Gather");
                       std::vector<int64_t> iv = idx.detach().to(kCPU).contiguous().to_vector<int64_t>();
                       for (int64_t& v : iv) {
                         if (v < -n || v >= n) fail("index {} is out of range for dim {} of size {}", v, ax, n);
                         if (v < 0) v += n;
                       }
                       Tensor flat = from_vector(iv, {static_cast<int64_t>(iv.size())}).to(x.device());
                       Tensor y = x.index_select(ax, flat);
                       Shape s(x.sizes().begin(), x.sizes().begin() + ax);
                       s.insert(s.end(), idx.sizes().begin(), idx.sizes().end());
                       s.insert(s.end(), x.sizes().begin() + ax + 1, x.sizes().end());
                       return {y.reshape(s)};
                     };
                   }};
    for (const char* name : {"Unsqueeze", "Squeeze"}) {
      const bool un = name[0] == 'U';
      m[name] = {1, 2, 1, 1, [un](const NodeContext& c, Attrs& a) -> OpFn {
                   const bool from_input = c.opset >= 13;
                   const bool has_attr = a.has("axes");
                   const std::vector<int64_t> attr_axes = from_input ? std::vector<int64_t>{} : a.ints("axes");
                   if (!from_input && c.node.input_size() > 1) fail("{}: axes is an attribute before opset 13", c.where);
                   if (un && !from_input && !has_attr) fail("{}: Unsqueeze needs axes", c.where);
                   return [=](const Ins& in) -> Outs {
                     Tensor x = need(in, 0, "data");
                     std::vector<int64_t> axes = attr_axes;
                     const bool have = from_input ? given(in, 1) : has_attr;
                     if (from_input && given(in, 1)) axes = ints_of(in[1], "axes");
                     if (un && from_input && !have) fail("Unsqueeze needs axes");
                     const int64_t r = un ? x.dim() + static_cast<int64_t>(axes.size()) : x.dim();
                     for (int64_t& ax : axes) ax = wrap_axis(ax, r, "axis");
                     std::sort(axes.begin(), axes.end());
                     if (std::adjacent_find(axes.begin(), axes.end()) != axes.end())
                       fail("axes {} repeat an axis", fmt::join(axes, ","));
                     if (un) {
                       for (int64_t ax : axes) x = x.unsqueeze(ax);
                       return {x};
                     }
                     if (!have) {
                       Shape s;
                       for (int64_t d : x.sizes())
                         if (d != 1) s.push_back(d);
                       return {x.reshape(s)};
                     }
                     for (auto it = axes.rbegin(); it != axes.rend(); ++it) {
                       if (x.size(*it) != 1) fail("cannot squeeze dim {} of size {}", *it, x.size(*it));
                       x = x.squeeze(*it);
                     }
                     return {x};
                   };
                 }};
    }
    m["ReduceMean"] = {1, 1, 1, 1, [floating](const NodeContext&, Attrs& a) -> OpFn {
                         const std::vector<int64_t> axes = a.ints("axes");
                         const bool keep = a.i("keepdims", 1) != 0;
                         return [=](const Ins& in) -> Outs {
                           const Tensor& x = need(in, 0, "data");
                           floating(x, "ReduceMean");
                           std::vector<int64_t> dims;
                           if (axes.empty())
                             for (int64_t d = 0; d < x.dim(); ++d) dims.push_back(d);
                           for (int64_t ax : axes) dims.push_back(wrap_axis(ax, x.dim(), "axis"));
                           if (dims.empty()) return {x};
                           return {x.mean(dims, keep)};
                         };
                       }};
    for (const char* name : {"ReduceSum", "ReduceMax", "ReduceMin"}) {
      const std::string op = name;
      m[name] = {1, 2, 1, 1, [op](const NodeContext& c, Attrs& a) -> OpFn {
                   const bool from_input = op == "ReduceSum" && c.opset >= 13;
                   const std::vector<int64_t> attr_axes = from_input ? std::vector<int64_t>{} : a.ints("axes");
                   if (!from_input && c.node.input_size() > 1) fail("{}: axes is an attribute here", c.where);
                   const bool keep = a.i("keepdims", 1) != 0;
                   const bool noop = a.i("noop_with_empty_axes", 0) != 0;
                   return [=](const Ins& in) -> Outs {
                     const Tensor& x = need(in, 0, "data");
                     std::vector<int64_t> axes = attr_axes;
                     if (from_input && given(in, 1)) axes = ints_of(in[1], "axes");
                     if (axes.empty() && noop) return {x};
                     std::vector<int64_t> dims;
                     if (axes.empty())
                       for (int64_t d = 0; d < x.dim(); ++d) dims.push_back(d);
                     for (int64_t ax : axes) dims.push_back(wrap_axis(ax, x.dim(), "axis"));
                     std::sort(dims.begin(), dims.end());
                     if (std::adjacent_find(dims.begin(), dims.end()) != dims.end())
                       fail("axes {} repeat an axis", fmt::join(axes, ","));
                     if (dims.empty()) return {x};
                     if (op == "ReduceSum") return {x.sum(dims, keep)};
                     // the minimum is computed as -max(-x): exact for floating data only (uint8
                     // negation wraps around, int64's overflows at its minimum)
                     if (op == "ReduceMin" && !is_floating(x.dtype()))
                       fail("ReduceMin of {} data is not supported (floating data only)", dtype_name(x.dtype()));
                     Tensor y = op == "ReduceMax" ? x : x.neg();
                     for (auto it = dims.rbegin(); it != dims.rend(); ++it) y = y.max(*it, keep);
                     return {op == "ReduceMax" ? y : y.neg()};
                   };
                 }};
    }
    for (const char* name : {"Max", "Min"}) {
      const bool is_max = name[1] == 'a';
      m[name] = {1, 1 << 16, 1, 8, [is_max](const NodeContext&, Attrs&) -> OpFn {
                   return [is_max](const Ins& in) -> Outs {
                     Tensor y = need(in, 0, "data_0");
                     if (!is_max && !is_floating(y.dtype()))  // -max(-a, -b) is exact for floating data only
                       fail("Min of {} data is not supported (floating data only)", dtype_name(y.dtype()));
                     if (!is_max) y = y.neg();
                     for (size_t i = 1; i < in.size(); ++i) {
                       Tensor b = need(in, i, "data");
                       if (b.dtype() != y.dtype())
                         fail("operands have different dtypes, {} and {}", dtype_name(y.dtype()), dtype_name(b.dtype()));
                       same_device(y, b);
                       check_elements(broadcast_shape(y.sizes(), b.sizes(), "broadcast"), "broadcast");
                       y = maximum(y, is_max ? b : b.neg());
                     }
                     return {is_max ? y : y.neg()};
                   };
                 }};
    }
    m["Pad"] = {1, 3, 1, 1, [](const NodeContext& c, Attrs& a) -> OpFn {
                  const std::string mode = a.s("mode", "constant");
                  if (mode != "constant") fail("{}: Pad mode '{}' is not supported (constant is)", c.where, mode);
                  const bool legacy = c.opset < 11;
                  const std::vector<int64_t> attr_pads = legacy ? a.ints("pads") : std::vector<int64_t>{};
                  const double attr_value = legacy ? a.f("value", 0.0) : 0.0;
                  if (legacy && !a.has("pads")) fail("{}: Pad needs pads", c.where);
                  if (legacy && c.node.input_size() > 1) fail("{}: pads is an attribute before opset 11", c.where);
                  return [=](const Ins& in) -> Outs {
                    const Tensor& x = need(in, 0, "data");
                    const std::vector<int64_t> pads = legacy ? attr_pads : ints_of(need(in, 1, "pads"), "pads");
                    const double value = legacy ? attr_value : given(in, 2) ? scalar_of(in[2], "constant_value") : 0.0;
                    if (static_cast<int64_t>(pads.size()) != 2 * x.dim())
                      fail("pads has {} values; rank {} needs {}", pads.size(), x.dim(), 2 * x.dim());
                    for (int64_t p : pads)
                      if (p > kMaxRunElements || p < -kMaxRunElements) fail("pad {} is out of range", p);
                    const auto r = static_cast<size_t>(x.dim());
                    return {pad_constant(x, std::vector<int64_t>(pads.begin(), pads.begin() + r),
                                         std::vector<int64_t>(pads.begin() + r, pads.end()), value)};
                  };
                }};
    m["ConstantOfShape"] = {1, 1, 1, 9, [](const NodeContext& c, Attrs& a) -> OpFn {
                              Tensor value = scalar_tensor(0.0, DType::Float32);
                              if (const TensorProto* tp = a.tensor("value")) {
                                value = tensor_from_proto(*tp, "", c.where + " value", nullptr);
                                if (value.numel() != 1) fail("{}: value must hold one element", c.where);
                              }
                              const double v = value.item<double>();
                              const DType dt = value.dtype();
                              return [v, dt](const Ins& in) -> Outs {
                                const std::vector<int64_t> s = ints_of(need(in, 0, "input"), "ConstantOfShape's shape");
                                const Shape shape(s.begin(), s.end());
                                check_elements(shape, "ConstantOfShape");
                                return {full(shape, v, dt)};
                              };
                            }};
    m["Slice"] = {1, 5, 1, 1, [](const NodeContext& c, Attrs& a) -> OpFn {
                    const bool legacy = c.opset < 10;
                    std::vector<int64_t> a_starts, a_ends, a_axes;
                    if (legacy) {
                      if (!a.has("starts") || !a.has("ends")) fail("{}: Slice needs starts and ends", c.where);
                      a_starts = a.ints("starts");
                      a_ends = a.ints("ends");
                      a_axes = a.ints("axes");
                      if (c.node.input_size() > 1) fail("{}: starts/ends are attributes before opset 10", c.where);
                    } else if (c.node.input_size() < 3) {
                      fail("{}: Slice needs data, starts and ends", c.where);
                    }
                    return [=](const Ins& in) -> Outs {
                      Tensor x = need(in, 0, "data");
                      std::vector<int64_t> starts = legacy ? a_starts : ints_of(need(in, 1, "starts"), "starts");
                      std::vector<int64_t> ends = legacy ? a_ends : ints_of(need(in, 2, "ends"), "ends");
                      std::vector<int64_t> axes = legacy ? a_axes : given(in, 3) ? ints_of(in[3], "axes") : std::vector<int64_t>{};
                      std::vector<int64_t> steps = !legacy && given(in, 4) ? ints_of(in[4], "steps") : std::vector<int64_t>{};
                      if (axes.empty())
                        for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
                      if (steps.empty()) steps.assign(starts.size(), 1);
                      if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size())
                        fail("starts, ends, axes and steps have different lengths");
                      std::set<int64_t> seen;
                      for (size_t i = 0; i < starts.size(); ++i) {
                        const int64_t ax = wrap_axis(axes[i], x.dim(), "axis");
                        if (!seen.insert(ax).second) fail("axis {} is sliced twice", ax);
                        const int64_t n = x.size(ax), step = steps[i];
                        if (step == 0) fail("a step of 0");
                        if (step > (int64_t{1} << 62) || step < -(int64_t{1} << 62)) fail("step {} is out of range", step);
                        auto norm = [n](int64_t v) { return v < 0 ? (v < -n ? -1 - n : v) + n : v; };
                        int64_t b = norm(starts[i]), e = norm(ends[i]);
                        int64_t len;
                        if (step > 0) {
                          b = std::clamp<int64_t>(b, 0, n);
                          e = std::clamp<int64_t>(e, 0, n);
                          len = e > b ? (e - b - 1) / step + 1 : 0;
                        } else {
                          b = std::clamp<int64_t>(b, -1, n - 1);
                          e = std::clamp<int64_t>(e, -1, n - 1);
                          len = b > e ? (b - e - 1) / (-step) + 1 : 0;
                        }
                        if (step == 1) {
                          x = x.narrow(ax, b, len);
                        } else {
                          std::vector<int64_t> idx(static_cast<size_t>(len));
                          for (int64_t k = 0; k < len; ++k) idx[k] = b + k * step;
                          x = x.index_select(ax, from_vector(idx, {len}).to(x.device()));
                        }
                      }
                      return {x};
                    };
                  }};
    m["Expand"] = {2, 2, 1, 8, [](const NodeContext&, Attrs&) -> OpFn {
                     return [](const Ins& in) -> Outs {
                       Tensor x = need(in, 0, "input");
                       const std::vector<int64_t> s = ints_of(need(in, 1, "shape"), "Expand's shape");
                       const Shape target = broadcast_shape(x.sizes(), Shape(s.begin(), s.end()), "Expand");
                       check_elements(target, "Expand");
                       if (x.dim() < static_cast<int64_t>(target.size())) {
                         Shape padded(target.size() - x.sizes().size(), 1);
                         padded.insert(padded.end(), x.sizes().begin(), x.sizes().end());
                         x = x.reshape(padded);
                       }
                       return {x.expand(target)};
                     };
                   }};
    m["Constant"] = {0, 0, 1, 1, [](const NodeContext& c, Attrs& a) -> OpFn {
                       int given_count = 0;
                       Tensor t;
                       for (const char* bad : {"sparse_value", "value_string", "value_strings"})
                         if (a.has(bad)) fail("{}: Constant's {} is not supported", c.where, bad);
                       if (const TensorProto* tp = a.tensor("value")) {
                         ++given_count;
                         t = tensor_from_proto(*tp, "", c.where + " value", nullptr);
                       }
                       if (a.has("value_float")) {
                         ++given_count;
                         t = scalar_tensor(a.f("value_float", 0), DType::Float32);
                       }
                       if (a.has("value_int")) {
                         ++given_count;
                         t = from_vector(std::vector<int64_t>{a.i("value_int", 0)}, {});
                       }
                       if (a.has("value_floats")) {
                         ++given_count;
                         const std::vector<float> v = a.floats("value_floats");
                         t = from_vector(v, {static_cast<int64_t>(v.size())});
                       }
                       if (a.has("value_ints")) {
                         ++given_count;
                         const std::vector<int64_t> v = a.ints("value_ints", {}, std::numeric_limits<int>::max());
                         t = from_vector(v, {static_cast<int64_t>(v.size())});
                       }
                       if (given_count != 1) fail("{}: Constant needs exactly one value, got {}", c.where, given_count);
                       return [t](const Ins&) -> Outs { return {t}; };
                     }};
    return m;
  }();
  return ops;
}

const std::set<std::string>& fold_ops() {
  static const std::set<std::string> s = {"Constant", "Identity", "Cast",    "Reshape", "Flatten", "Squeeze",
                                          "Unsqueeze", "Transpose", "Concat", "Gather",  "Shape",   "Add",
                                          "Sub",      "Mul",       "Div",     "Neg",     "Abs",     "Relu",
                                          "Sqrt",     "Exp",       "Sigmoid", "Tanh",    "Slice",   "ConstantOfShape"};
  return s;
}

}  // namespace

OpFn compile_node(const NodeContext& c) {
  const std::string& op = c.node.op_type();
  const auto& reg = registry();
  auto it = reg.find(op);
  if (it == reg.end()) fail("{}: op '{}' is not supported", c.where, op);
  const OpSpec& spec = it->second;
  if (c.opset < spec.since) fail("{}: {} needs opset {} or later; the model imports opset {}", c.where, op, spec.since, c.opset);
  // trailing empty names are absent optional inputs
  int n_in = c.node.input_size();
  while (n_in > 0 && c.node.input(n_in - 1).empty()) --n_in;
  if (n_in < spec.min_in || n_in > spec.max_in)
    fail("{}: {} takes {} to {} inputs, got {}", c.where, op, spec.min_in, spec.max_in, n_in);
  for (int i = 0; i < std::min(n_in, spec.min_in); ++i)
    if (c.node.input(i).empty()) fail("{}: required input {} is empty", c.where, i);
  int n_out = c.node.output_size();
  while (n_out > 0 && c.node.output(n_out - 1).empty()) --n_out;
  if (n_out < 1) fail("{}: no output", c.where);
  if (n_out > spec.max_out) {
    const char* what = op == "MaxPool" ? " (the Indices output is not supported)"
                       : op == "BatchNormalization" ? " (training-mode outputs are not supported)"
                                                    : "";
    fail("{}: {} has {} outputs; at most {} supported{}", c.where, op, n_out, spec.max_out, what);
  }
  Attrs attrs(c);
  OpFn fn = spec.compile(c, attrs);
  attrs.done();
  return fn;
}

bool is_running_stat_input(const std::string& op_type, size_t input_index) {
  return op_type == "BatchNormalization" && (input_index == 3 || input_index == 4);
}

bool is_scalar_input(const std::string& op_type, size_t i) {
  return (op_type == "Clip" && (i == 1 || i == 2)) || (op_type == "Pad" && i == 2) || (op_type == "Pow" && i == 1) ||
         (op_type == "Dropout" && (i == 1 || i == 2));
}

bool foldable(const std::string& op_type) { return fold_ops().count(op_type) != 0; }

int64_t fold_output_bound(const std::string& op, const std::vector<Tensor>& inputs) {
  auto sat_add = [](int64_t a, int64_t b) { return a > kMaxRunElements - b ? kMaxRunElements : a + b; };
  int64_t bound = 0;
  if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div") {
    if (inputs.size() != 2 || !inputs[0].defined() || !inputs[1].defined()) return 0;
    Shape s;
    try {
      s = broadcast_shape(inputs[0].sizes(), inputs[1].sizes(), "fold");
    } catch (const Error&) {
      return 0;  // the op reports it at run time
    }
    int64_t n = 1;
    for (int64_t d : s) {
      if (d != 0 && n > kMaxRunElements / d) return kMaxRunElements;
      n *= d;
    }
    return n;
  }
  if (op == "ConstantOfShape") {
    if (inputs.empty() || !inputs[0].defined() || inputs[0].dtype() != DType::Int64 || inputs[0].numel() > 64) return 0;
    int64_t n = 1;
    for (int64_t d : inputs[0].detach().contiguous().to_vector<int64_t>()) {
      if (d < 0) return 0;  // refused when it runs
      if (d != 0 && n > kMaxRunElements / d) return kMaxRunElements;
      n *= d;
    }
    return n;
  }
  if (op == "Gather") {
    if (inputs.size() != 2 || !inputs[0].defined() || !inputs[1].defined()) return 0;
    const int64_t a = inputs[0].numel(), b = inputs[1].numel();
    return (a != 0 && b > kMaxRunElements / a) ? kMaxRunElements : a * b;
  }
  for (const Tensor& t : inputs)
    if (t.defined()) bound = op == "Concat" ? sat_add(bound, t.numel()) : std::max(bound, t.numel());
  return bound;
}

}  // namespace dl::onnx::detail
