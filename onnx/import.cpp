// ONNX import: parse (protobuf, ONNX's own types), validate everything, sort the graph, fold
// constants, and build an nn::Module whose forward runs the nodes with the framework's ops.
#include <onnx/checker.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <queue>
#include <set>

#include <fmt/ranges.h>

#include "autograd/node.h"
#include "data/file_util.h"
#include "onnx/import_internal.h"
#include "onnx/onnx.h"

namespace dl::onnx {
using namespace detail;
namespace fs = std::filesystem;

struct OnnxModel::Impl {
  int64_t opset = 0;
  bool training = false;  // OnnxModel::train(); read by BatchNormalization when it runs
  std::vector<std::string> input_names, output_names;
  std::vector<NodeInfo> nodes;  // run (topological) order

  struct InputSpec {
    std::string name;
    DType dtype;
    bool has_shape;
    std::vector<int64_t> dims;  // -1 = symbolic / unknown
    int slot;
  };
  std::vector<InputSpec> inputs;
  std::vector<int> output_slots;
  int num_slots = 0;

  enum class Kind { Param, Buffer, Const };
  struct Init {
    std::string name;
    Tensor value;  // after registration: the live parameter / buffer
    Kind kind;
    int slot;
  };
  std::vector<Init> inits;
  std::vector<std::pair<int, Tensor>> folded;  // slot -> value computed at load

  struct Step {
    OpFn fn;
    std::vector<int> in, out;  // -1 = absent optional
    std::string where;
    std::vector<int> release;  // slots last read by this step (not graph outputs): dropped after it
  };
  std::vector<Step> steps;

  void register_into(nn::Module& root);
  std::vector<Tensor> run(const std::vector<Tensor>& inputs) const;
};

namespace {

bool identifier_part(const std::string& p) {
  if (p.empty()) return false;
  if (std::all_of(p.begin(), p.end(), [](char c) { return c >= '0' && c <= '9'; })) return true;  // Sequential
  if (!(std::isalpha(static_cast<unsigned char>(p[0])) || p[0] == '_')) return false;
  return std::all_of(p.begin(), p.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

std::vector<std::string> split_dots(const std::string& s) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t dot = s.find('.', start);
    parts.push_back(s.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}

std::string sanitize(const std::string& n) {
  std::string s;
  for (char c : n) s += (std::isalnum(static_cast<unsigned char>(c)) || c == '_') ? c : '_';
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) s = "v_" + s;
  return s;
}

// The module tree the initializers are registered into, tracked alongside the real modules.
struct Scope {
  nn::Module* mod = nullptr;
  std::map<std::string, std::unique_ptr<Scope>> children;
  std::set<std::string> leaves;
  bool taken(const std::string& n) const { return leaves.count(n) || children.count(n); }
};

}  // namespace

void OnnxModel::Impl::register_into(nn::Module& root) {
  Scope top;
  top.mod = &root;
  for (Init& init : inits) {
    if (init.kind == Kind::Const) continue;
    const std::vector<std::string> parts = split_dots(init.name);
    bool ok = std::all_of(parts.begin(), parts.end(), identifier_part);
    if (ok) {  // feasible: no prefix is a leaf, and the last part is free
      const Scope* s = &top;
      for (size_t i = 0; i + 1 < parts.size() && s; ++i) {
        if (s->leaves.count(parts[i])) {
          ok = false;
          break;
        }
        auto it = s->children.find(parts[i]);
        s = it == s->children.end() ? nullptr : it->second.get();
      }
      if (ok && s && s->taken(parts.back())) ok = false;
    }
    Scope* s = &top;
    std::string leaf;
    if (ok) {
      for (size_t i = 0; i + 1 < parts.size(); ++i) {
        auto it = s->children.find(parts[i]);
        if (it == s->children.end()) {
          auto child = std::make_shared<nn::Module>("OnnxScope");
          s->mod->register_module(parts[i], child);
          auto sc = std::make_unique<Scope>();
          sc->mod = child.get();
          it = s->children.emplace(parts[i], std::move(sc)).first;
        }
        s = it->second.get();
      }
      leaf = parts.back();
    } else {
      leaf = sanitize(init.name);
      for (int k = 1; top.taken(leaf); ++k) leaf = sanitize(init.name) + "_" + std::to_string(k);
    }
    s->leaves.insert(leaf);
    init.value = init.kind == Kind::Param ? s->mod->register_parameter(leaf, init.value, true)
                                          : s->mod->register_buffer(leaf, init.value, true);
  }
}

std::vector<Tensor> OnnxModel::Impl::run(const std::vector<Tensor>& given) const {
  if (given.size() != inputs.size())
    fail("ONNX model: expects {} input(s) ({}), got {}", inputs.size(), fmt::join(input_names, ", "), given.size());
  std::vector<Tensor> slots(static_cast<size_t>(num_slots));
  for (const Init& i : inits) slots[i.slot] = i.value;
  for (const auto& [slot, t] : folded) slots[slot] = t;
  for (size_t k = 0; k < inputs.size(); ++k) {
    const InputSpec& spec = inputs[k];
    const Tensor& x = given[k];
    if (!x.defined()) fail("ONNX model: input '{}' is undefined", spec.name);
    if (x.dtype() != spec.dtype)
      fail("ONNX model: input '{}' must be {}, got {}", spec.name, dtype_name(spec.dtype), dtype_name(x.dtype()));
    if (spec.has_shape) {
      bool ok = x.dim() == static_cast<int64_t>(spec.dims.size());
      for (size_t d = 0; ok && d < spec.dims.size(); ++d) ok = spec.dims[d] < 0 || spec.dims[d] == x.size(d);
      if (!ok) {
        std::vector<std::string> want;
        for (int64_t d : spec.dims) want.push_back(d < 0 ? "?" : std::to_string(d));
        fail("ONNX model: input '{}' must have shape [{}], got {}", spec.name, fmt::join(want, ", "),
             shape_str(x.sizes()));
      }
    }
    slots[spec.slot] = x;
  }
  std::vector<Tensor> ins;
  for (const Step& s : steps) {
    ins.clear();
    for (int i : s.in) ins.push_back(i < 0 ? Tensor() : slots[i]);
    for (int i : s.release) slots[i] = Tensor();  // activations no later step reads (memory)
    std::vector<Tensor> outs;
    try {
      outs = s.fn(ins);
    } catch (const Error& e) {
      fail("{}: {}", s.where, e.what());
    }
    ins.clear();
    for (size_t k = 0; k < s.out.size(); ++k) {
      if (s.out[k] < 0) continue;
      if (k >= outs.size() || !outs[k].defined()) fail("{}: output {} was not produced", s.where, k);
      slots[s.out[k]] = outs[k];
    }
  }
  std::vector<Tensor> result;
  for (size_t k = 0; k < output_slots.size(); ++k) {
    if (!slots[output_slots[k]].defined()) fail("ONNX model: output '{}' was not computed", output_names[k]);
    result.push_back(slots[output_slots[k]]);
  }
  return result;
}

namespace {

std::string node_where(const ::onnx::NodeProto& n, int64_t index) {
  if (n.name().empty()) return fmt::format("unnamed node (#{}, {})", index, n.op_type());
  return fmt::format("node '{}' (#{}, {})", n.name(), index, n.op_type());
}

std::unique_ptr<OnnxModel::Impl> build(const ::onnx::ModelProto& model, const std::string& base_dir) {
  auto impl = std::make_unique<OnnxModel::Impl>();
  using Impl = OnnxModel::Impl;
  if (!model.has_ir_version() || model.ir_version() < 3)
    fail("ONNX model: ir_version {} is missing or too old (3 or later is supported)", model.ir_version());
  // ---- opsets
  int64_t opset = -1;
  for (const auto& imp : model.opset_import()) {
    if (imp.domain().empty() || imp.domain() == "ai.onnx") {
      if (opset >= 0) fail("ONNX model: the default domain is imported twice");
      opset = imp.version();
    }
  }
  if (opset < 0) fail("ONNX model: no opset of the default ONNX domain is imported");
  if (opset < 7 || opset > 17) fail("ONNX model: opset {} of the default domain is not supported (7 through 17 are)", opset);
  impl->opset = opset;
  if (!model.has_graph()) fail("ONNX model: no graph");
  const ::onnx::GraphProto& g = model.graph();
  if (g.sparse_initializer_size() > 0) fail("ONNX model: sparse initializers are not supported");

  // ---- values: every name gets a slot; each may be defined once
  std::map<std::string, int> slot_of;
  enum class Def { Init, Input, Node };
  std::map<std::string, Def> defined;
  auto new_slot = [&](const std::string& name) {
    const int s = impl->num_slots++;
    slot_of[name] = s;
    return s;
  };

  // ---- initializers
  int64_t external_budget = kMaxExternalBytes;
  std::map<std::string, size_t> init_index;
  for (int i = 0; i < g.initializer_size(); ++i) {
    const auto& t = g.initializer(i);
    if (t.name().empty()) fail("ONNX model: initializer #{} has no name", i);
    if (init_index.count(t.name())) fail("ONNX model: initializer '{}' is defined twice", t.name());
    Tensor v = tensor_from_proto(t, base_dir, fmt::format("initializer '{}'", t.name()), &external_budget);
    init_index[t.name()] = impl->inits.size();
    impl->inits.push_back({t.name(), v, is_floating(v.dtype()) ? Impl::Kind::Param : Impl::Kind::Const,
                           new_slot(t.name())});
    defined[t.name()] = Def::Init;
  }

  // ---- graph inputs (those that are also initializers are initializers: IR < 4 lists both)
  std::set<std::string> input_seen;
  for (const auto& in : g.input()) {
    if (in.name().empty()) fail("ONNX model: a graph input has no name");
    if (!input_seen.insert(in.name()).second) fail("ONNX model: graph input '{}' is listed twice", in.name());
    if (init_index.count(in.name())) continue;
    if (!in.has_type() || !in.type().has_tensor_type())
      fail("ONNX model: graph input '{}' is not a tensor", in.name());
    const auto& tt = in.type().tensor_type();
    Impl::InputSpec spec;
    spec.name = in.name();
    if (!dtype_of_elem_type(tt.elem_type(), &spec.dtype))
      fail("ONNX model: graph input '{}' has element type {}, which is not supported (FLOAT, DOUBLE, INT64, UINT8 are)",
           in.name(), data_type_name(tt.elem_type()));
    spec.has_shape = tt.has_shape();
    for (const auto& d : tt.shape().dim()) {
      if (d.has_dim_value() && d.dim_value() < 0)
        fail("ONNX model: graph input '{}' has a negative dim {}", in.name(), d.dim_value());
      spec.dims.push_back(d.has_dim_value() ? d.dim_value() : -1);
    }
    spec.slot = new_slot(in.name());
    defined[in.name()] = Def::Input;
    impl->input_names.push_back(spec.name);
    impl->inputs.push_back(std::move(spec));
  }

  // ---- nodes: compile each (op, attributes, arity), then check every value's definition
  const int n_nodes = g.node_size();
  std::vector<OpFn> fns(static_cast<size_t>(n_nodes));
  std::map<std::string, int> producer;
  for (int i = 0; i < n_nodes; ++i) {
    const auto& n = g.node(i);
    const std::string where = node_where(n, i);
    if (!n.domain().empty() && n.domain() != "ai.onnx")
      fail("{}: domain '{}' is not supported (only the default ONNX domain is)", where, n.domain());
    fns[i] = compile_node({n, opset, where, &impl->training});
    for (const auto& out : n.output()) {
      if (out.empty()) continue;
      if (defined.count(out))
        fail("{}: output '{}' is already defined (by an {})", where, out,
             defined[out] == Def::Init ? "initializer" : defined[out] == Def::Input ? "input" : "earlier node");
      defined[out] = Def::Node;
      producer[out] = i;
      new_slot(out);
    }
  }
  std::vector<int> deps(static_cast<size_t>(n_nodes), 0);
  std::vector<std::vector<int>> users(static_cast<size_t>(n_nodes));
  for (int i = 0; i < n_nodes; ++i) {
    const auto& n = g.node(i);
    std::set<int> from;
    for (int k = 0; k < n.input_size(); ++k) {
      const std::string& in = n.input(k);
      if (in.empty()) continue;
      if (!defined.count(in))
        fail("{}: input {} '{}' is never defined (not an initializer, graph input or node output)", node_where(n, i), k,
             in);
      auto p = producer.find(in);
      if (p != producer.end()) from.insert(p->second);
    }
    deps[i] = static_cast<int>(from.size());
    for (int p : from) users[p].push_back(i);
  }
  // ---- topological order (Kahn, file order among ready nodes): the file's order is not trusted
  std::priority_queue<int, std::vector<int>, std::greater<>> ready;
  for (int i = 0; i < n_nodes; ++i)
    if (deps[i] == 0) ready.push(i);
  std::vector<int> order;
  while (!ready.empty()) {
    const int i = ready.top();
    ready.pop();
    order.push_back(i);
    for (int u : users[i])
      if (--deps[u] == 0) ready.push(u);
  }
  if (static_cast<int>(order.size()) != n_nodes) {
    for (int i = 0; i < n_nodes; ++i)
      if (deps[i] > 0) fail("{}: the graph has a cycle through this node", node_where(g.node(i), i));
  }

  // ---- outputs
  std::set<std::string> out_seen;
  for (const auto& o : g.output()) {
    if (o.name().empty()) fail("ONNX model: a graph output has no name");
    if (!out_seen.insert(o.name()).second) fail("ONNX model: graph output '{}' is listed twice", o.name());
    if (!defined.count(o.name())) fail("ONNX model: graph output '{}' is never defined", o.name());
    impl->output_names.push_back(o.name());
    impl->output_slots.push_back(slot_of[o.name()]);
  }
  if (impl->output_names.empty()) fail("ONNX model: the graph has no outputs");

  // ---- ONNX's own checker, after our checks (whose messages name more)
  // (external tensors are checked by us above; ONNX's checker would look for their files in the
  // working directory, so it sees a copy with them inline)
  try {
    bool has_external = false;
    for (const auto& t : g.initializer())
      has_external |= t.has_data_location() && t.data_location() == ::onnx::TensorProto::EXTERNAL;
    // a file from a newer ONNX (IR version above this checker's) is checked as this version's
    const bool newer_ir = model.ir_version() > ::onnx::IR_VERSION;
    if (has_external || newer_ir) {
      ::onnx::ModelProto copy = model;
      if (newer_ir) copy.set_ir_version(::onnx::IR_VERSION);
      auto* inits = copy.mutable_graph()->mutable_initializer();
      for (int i = 0; i < inits->size(); ++i) {
        ::onnx::TensorProto* t = inits->Mutable(i);
        if (!t->has_data_location() || t->data_location() != ::onnx::TensorProto::EXTERNAL) continue;
        const std::string name = t->name();  // (tensor_to_proto clears *t first)
        tensor_to_proto(impl->inits[init_index.at(name)].value, name, t);
      }
      ::onnx::checker::check_model(copy);
    } else {
      ::onnx::checker::check_model(model);
    }
  } catch (const std::exception& e) {
    fail("ONNX model: onnx::checker refuses it: {}", e.what());
  }

  // ---- initializer kinds: running statistics are buffers; floating ones read only as plain
  // numbers (Clip's bounds, Pad's value, Pow's exponent) are constants, not parameters
  {
    std::vector<int> uses(impl->inits.size(), 0), scalar_uses(impl->inits.size(), 0);
    for (int i = 0; i < n_nodes; ++i) {
      const auto& n = g.node(i);
      for (int k = 0; k < n.input_size(); ++k) {
        auto it = init_index.find(n.input(k));
        if (it == init_index.end()) continue;
        ++uses[it->second];
        if (is_scalar_input(n.op_type(), static_cast<size_t>(k))) ++scalar_uses[it->second];
      }
    }
    for (size_t k = 0; k < impl->inits.size(); ++k)
      if (uses[k] > 0 && uses[k] == scalar_uses[k]) impl->inits[k].kind = Impl::Kind::Const;
  }
  for (int i = 0; i < n_nodes; ++i) {
    const auto& n = g.node(i);
    for (int k = 0; k < n.input_size(); ++k) {
      auto it = init_index.find(n.input(k));
      if (it != init_index.end() && is_running_stat_input(n.op_type(), static_cast<size_t>(k)) &&
          impl->inits[it->second].kind == Impl::Kind::Param)
        impl->inits[it->second].kind = Impl::Kind::Buffer;
    }
  }

  // ---- fold: nodes whose inputs are all constant run once here (small results only)
  std::vector<Tensor> statics(static_cast<size_t>(impl->num_slots));
  for (const auto& init : impl->inits)
    if (init.kind == Impl::Kind::Const) statics[init.slot] = init.value;
  int64_t folded_total = 0;
  for (int i : order) {
    const auto& n = g.node(i);
    const std::string where = node_where(n, i);
    impl->nodes.push_back({n.op_type(), n.name(), {n.input().begin(), n.input().end()},
                           {n.output().begin(), n.output().end()}});
    Impl::Step step{fns[i], {}, {}, where, {}};
    bool all_static = foldable(n.op_type());
    std::vector<Tensor> ins;
    for (const auto& in : n.input()) {
      step.in.push_back(in.empty() ? -1 : slot_of[in]);
      ins.push_back(in.empty() ? Tensor() : statics[slot_of[in]]);
      if (!in.empty() && !ins.back().defined()) all_static = false;
    }
    for (const auto& out : n.output()) step.out.push_back(out.empty() ? -1 : slot_of[out]);
    if (all_static) {
      const int64_t bound = fold_output_bound(n.op_type(), ins);
      if (bound <= kMaxFoldElements && folded_total + bound <= kMaxFoldTotal) {
        std::vector<Tensor> outs;
        {
          NoGradGuard ng;
          try {
            outs = step.fn(ins);
          } catch (const Error& e) {
            fail("{}: {}", where, e.what());
          }
        }
        for (size_t k = 0; k < step.out.size(); ++k) {
          if (step.out[k] < 0) continue;
          if (k >= outs.size() || !outs[k].defined()) fail("{}: output {} was not produced", where, k);
          folded_total += outs[k].numel();
          statics[step.out[k]] = outs[k];
          impl->folded.emplace_back(step.out[k], outs[k]);
        }
        continue;
      }
    }
    impl->steps.push_back(std::move(step));
  }
  // each computed value is dropped after the last step that reads it (graph outputs are kept)
  {
    std::vector<int> last(static_cast<size_t>(impl->num_slots), -1);
    for (size_t k = 0; k < impl->steps.size(); ++k)
      for (int i : impl->steps[k].in)
        if (i >= 0) last[i] = static_cast<int>(k);
    std::vector<bool> keep(static_cast<size_t>(impl->num_slots), false);
    for (int o : impl->output_slots) keep[o] = true;
    for (const auto& i : impl->inits) keep[i.slot] = true;
    for (const auto& f : impl->folded) keep[f.first] = true;
    for (int i = 0; i < impl->num_slots; ++i)
      if (last[i] >= 0 && !keep[i]) {
        auto& r = impl->steps[last[i]].release;
        if (std::find(r.begin(), r.end(), i) == r.end()) r.push_back(i);
      }
  }
  return impl;
}

}  // namespace

OnnxModel::OnnxModel(std::unique_ptr<Impl> impl) : nn::Module("OnnxModel"), impl_(std::move(impl)) {
  if (!impl_) fail("OnnxModel: no graph");
  impl_->register_into(*this);
  eval();  // ONNX's semantics: inference (see train())
}

void OnnxModel::train(bool on) {
  nn::Module::train(on);
  impl_->training = on;
}
OnnxModel::~OnnxModel() = default;

Tensor OnnxModel::forward(const Tensor& x) {
  if (impl_->inputs.size() != 1)
    fail("OnnxModel::forward: the model has {} inputs ({}); call run() with all of them", impl_->inputs.size(),
         fmt::join(impl_->input_names, ", "));
  return impl_->run({x})[0];
}
std::vector<Tensor> OnnxModel::run(const std::vector<Tensor>& inputs) { return impl_->run(inputs); }
const std::vector<std::string>& OnnxModel::input_names() const { return impl_->input_names; }
const std::vector<std::string>& OnnxModel::output_names() const { return impl_->output_names; }
int64_t OnnxModel::opset() const { return impl_->opset; }
std::vector<int64_t> OnnxModel::input_shape(size_t i) const {
  if (i >= impl_->inputs.size()) fail("ONNX model: input_shape({}) of a graph with {} inputs", i, impl_->inputs.size());
  return impl_->inputs[i].has_shape ? impl_->inputs[i].dims : std::vector<int64_t>{};
}
const std::vector<OnnxModel::NodeInfo>& OnnxModel::nodes() const { return impl_->nodes; }
Tensor OnnxModel::initializer(const std::string& onnx_name) const {
  for (const auto& i : impl_->inits)
    if (i.name == onnx_name) return i.value;
  return Tensor();
}

std::shared_ptr<OnnxModel> load_from_bytes(const std::string& bytes, const std::string& base_dir) {
  if (static_cast<int64_t>(bytes.size()) > kMaxModelBytes)
    fail("ONNX model: {} bytes is more than the {} a model may have", bytes.size(), kMaxModelBytes);
  ::onnx::ModelProto model;
  if (!model.ParseFromString(bytes))
    fail("ONNX model: the {} bytes do not parse as an onnx.ModelProto (not ONNX, or truncated)", bytes.size());
  return std::make_shared<OnnxModel>(build(model, base_dir));
}

std::shared_ptr<OnnxModel> load(const std::string& path) {
  std::string bytes;
  try {
    bytes = data::read_file(path, kMaxModelBytes);
  } catch (const Error& e) {
    fail("ONNX model: {}", e.what());
  }
  std::string base = fs::path(path).parent_path().string();
  if (base.empty()) base = ".";
  try {
    return load_from_bytes(bytes, base);
  } catch (const Error& e) {
    fail("'{}': {}", path, e.what());
  }
}

}  // namespace dl::onnx
