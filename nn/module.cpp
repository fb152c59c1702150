#include "nn/module.h"

#include <cxxabi.h>

#include <cmath>
#include <cstdlib>
#include <ostream>
#include <set>
#include <sstream>
#include <typeinfo>
#include <unordered_map>
#include <unordered_set>

#include "autograd/node.h"
#include "tensor/ops.h"

namespace dl::nn {

namespace {
std::string demangled_class_name(const std::type_info& ti) {
  int status = 0;
  char* raw = abi::__cxa_demangle(ti.name(), nullptr, nullptr, &status);
  std::string s = (status == 0 && raw) ? raw : ti.name();
  std::free(raw);
  // "dl::nn::Linear" -> "Linear", "(anonymous namespace)::Net" -> "Net"
  auto pos = s.rfind("::");
  return pos == std::string::npos ? s : s.substr(pos + 2);
}

// Replaces the contents of `slot` (keeping its TensorImpl, hence its identity) with `value`.
void rebind(const Tensor& slot, const Tensor& value) {
  if (value.is_same(slot)) return;
  TensorImpl& dst = slot.impl();
  const TensorImpl& src = value.impl();
  dst.storage = src.storage;
  dst.sizes = src.sizes;
  dst.strides = src.strides;
  dst.offset = src.offset;
  dst.dtype = src.dtype;
}

std::string indent_after_first_line(const std::string& s, int spaces) {
  std::string pad(spaces, ' ');
  std::string out;
  for (char c : s) {
    out += c;
    if (c == '\n') out += pad;
  }
  return out;
}
}  // namespace

std::string py_float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::string s = fmt::format("{}", v);  // shortest round trip, Python-style exponent ("1e-05")
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

std::string LoadResult::str() const {
  std::string s;
  if (!missing_keys.empty()) {
    s += "missing keys (in the module, not in the state_dict):";
    for (const auto& k : missing_keys) s += " " + k;
    s += "\n";
  }
  if (!unexpected_keys.empty()) {
    s += "unexpected keys (in the state_dict, not in the module):";
    for (const auto& k : unexpected_keys) s += " " + k;
    s += "\n";
  }
  for (const auto& m : mismatched)
    s += fmt::format("size mismatch for {}: the module has shape {}, the state_dict has {}\n", m.name,
                     shape_str(m.expected), shape_str(m.got));
  if (!s.empty()) s.pop_back();
  return s;
}

Module::Module(std::string type_name) : type_name_(std::move(type_name)) {}

std::string Module::name() const { return type_name_.empty() ? demangled_class_name(typeid(*this)) : type_name_; }

// ---- registration ---------------------------------------------------------------------------------

void Module::check_new_name(const std::string& name, const char* what) const {
  if (name.empty()) fail("{}: a {} name cannot be empty", this->name(), what);
  if (name.find('.') != std::string::npos) fail("{}: {} name '{}' must not contain '.'", this->name(), what, name);
  auto taken = [&](const std::string& n) {
    for (const auto& [k, v] : params_)
      if (k == n) return true;
    for (const auto& b : buffers_)
      if (b.name == n) return true;
    for (const auto& [k, v] : children_)
      if (k == n) return true;
    return false;
  };
  if (taken(name)) fail("{}: cannot register {} '{}': the name is already taken", this->name(), what, name);
}

Tensor Module::register_parameter(const std::string& name, Tensor t, bool requires_grad) {
  check_new_name(name, "parameter");
  if (!t.defined()) return t;
  if (!t.is_leaf())
    fail("{}: parameter '{}' must be a leaf tensor (it has a grad_fn); register t.detach()", this->name(), name);
  if (requires_grad && !is_floating(t.dtype()))
    fail("{}: parameter '{}' is {}, but only floating tensors can require grad", this->name(), name,
         dtype_name(t.dtype()));
  t.requires_grad_(requires_grad);
  params_.emplace_back(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t, bool persistent) {
  check_new_name(name, "buffer");
  if (!t.defined()) return t;
  buffers_.push_back({name, t, persistent});
  return t;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  check_new_name(name, "submodule");
  if (!m) fail("{}: submodule '{}' is null", this->name(), name);
  if (m.get() == this) fail("{}: a module cannot be its own submodule ('{}')", this->name(), name);
  children_.emplace_back(name, std::move(m));
}

void Module::replace_child(const std::string& name, std::shared_ptr<Module> m) {
  if (!m) fail("{}: replacement for submodule '{}' is null", this->name(), name);
  for (auto& [k, v] : children_)
    if (k == name) {
      std::shared_ptr<Module> old = std::exchange(v, m);
      child_replaced(old.get(), m);
      return;
    }
  fail("{}: cannot replace submodule '{}': there is no such submodule", this->name(), name);
}

Tensor Module::own_parameter(const std::string& name) const {
  for (const auto& [k, v] : params_)
    if (k == name) return v;
  return Tensor();
}

// ---- traversal ------------------------------------------------------------------------------------

// Calls fn(prefix, module) for this module and every module below it, depth first, each module
// once (the first path that reaches it), as torch's named_modules(memo) does.
template <typename Fn>
void Module::visit(const std::string& prefix, Fn&& fn) const {
  std::unordered_set<const Module*> seen;
  // explicit stack of (prefix, module); children pushed in reverse to keep PyTorch's order
  std::vector<std::pair<std::string, const Module*>> stack{{prefix, this}};
  while (!stack.empty()) {
    auto [p, m] = stack.back();
    stack.pop_back();
    if (!seen.insert(m).second) continue;
    fn(p, *m);
    for (auto it = m->children_.rbegin(); it != m->children_.rend(); ++it)
      stack.emplace_back(p.empty() ? it->first : p + "." + it->first, it->second.get());
  }
}

NamedTensors Module::named_parameters(bool recurse) const {
  NamedTensors out;
  std::unordered_set<const TensorImpl*> seen;
  auto add_own = [&](const std::string& p, const Module& m) {
    for (const auto& [k, v] : m.params_)
      if (seen.insert(v.impl_ptr().get()).second) out.emplace_back(p.empty() ? k : p + "." + k, v);
  };
  if (recurse)
    visit("", add_own);
  else
    add_own("", *this);
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [k, v] : named_parameters(recurse)) out.push_back(v);
  return out;
}

NamedTensors Module::named_buffers(bool recurse) const {
  NamedTensors out;
  std::unordered_set<const TensorImpl*> seen;
  auto add_own = [&](const std::string& p, const Module& m) {
    for (const auto& b : m.buffers_)
      if (seen.insert(b.tensor.impl_ptr().get()).second) out.emplace_back(p.empty() ? b.name : p + "." + b.name, b.tensor);
  };
  if (recurse)
    visit("", add_own);
  else
    add_own("", *this);
  return out;
}

std::vector<Tensor> Module::buffers(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [k, v] : named_buffers(recurse)) out.push_back(v);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_children() const { return children_; }

std::vector<std::shared_ptr<Module>> Module::children() const {
  std::vector<std::shared_ptr<Module>> out;
  for (const auto& [k, v] : children_) out.push_back(v);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_modules() const {
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> out;
  std::unordered_set<const Module*> seen{this};
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> stack;
  for (auto it = children_.rbegin(); it != children_.rend(); ++it) stack.push_back(*it);
  while (!stack.empty()) {
    auto [p, m] = stack.back();
    stack.pop_back();
    if (!seen.insert(m.get()).second) continue;
    out.emplace_back(p, m);
    for (auto it = m->children_.rbegin(); it != m->children_.rend(); ++it)
      stack.emplace_back(p + "." + it->first, it->second);
  }
  return out;
}

std::shared_ptr<Module> Module::get_submodule(const std::string& dotted) const {
  std::shared_ptr<Module> cur;
  const Module* m = this;
  std::string walked;
  size_t start = 0;
  while (start <= dotted.size()) {
    size_t dot = dotted.find('.', start);
    std::string part = dotted.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    std::shared_ptr<Module> next;
    for (const auto& [k, v] : m->children_)
      if (k == part) next = v;
    if (!next)
      fail("{}: no submodule '{}' (looking for '{}'{})", name(), part, dotted,
           walked.empty() ? "" : fmt::format(" inside '{}'", walked));
    walked = walked.empty() ? part : walked + "." + part;
    cur = next;
    m = next.get();
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return cur;
}

namespace {
std::pair<std::string, std::string> split_last(const std::string& dotted) {
  auto pos = dotted.rfind('.');
  if (pos == std::string::npos) return {"", dotted};
  return {dotted.substr(0, pos), dotted.substr(pos + 1)};
}
}  // namespace

Tensor Module::get_parameter(const std::string& dotted) const {
  auto [path, leaf] = split_last(dotted);
  const Module* m = path.empty() ? this : get_submodule(path).get();
  for (const auto& [k, v] : m->params_)
    if (k == leaf) return v;
  fail("{}: no parameter '{}'", name(), dotted);
}

Tensor Module::get_buffer(const std::string& dotted) const {
  auto [path, leaf] = split_last(dotted);
  const Module* m = path.empty() ? this : get_submodule(path).get();
  for (const auto& b : m->buffers_)
    if (b.name == leaf) return b.tensor;
  fail("{}: no buffer '{}'", name(), dotted);
}

// ---- mode -----------------------------------------------------------------------------------------

void Module::train(bool on) {
  training_ = on;
  for (auto& [k, c] : children_) c->train(on);
}

// ---- moving and converting ---------------------------------------------------------------------------

namespace {
template <typename Convert>
void convert_in_place(const Module& root, Convert&& convert) {
  std::unordered_set<const TensorImpl*> done;
  auto apply = [&](const Tensor& t) {
    if (!done.insert(t.impl_ptr().get()).second) return;
    Tensor g = t.grad();
    rebind(t, convert(t));
    if (g.defined()) {
      Tensor ng = convert(g);
      t.impl().autograd.grad = ng.is_same(g) ? g.impl_ptr() : ng.impl_ptr();
    }
  };
  for (auto& [k, p] : root.named_parameters()) apply(p);
  for (auto& [k, b] : root.named_buffers()) apply(b);
}
}  // namespace

Module& Module::to(Device device) {
  convert_in_place(*this, [&](const Tensor& t) { return ops::to_device(t, device); });
  return *this;
}

Module& Module::to(DType dtype) {
  if (is_low_precision(dtype))
    fail("{}.to({}): a module computes in float32 or float64; {} is a storage dtype (convert a state_dict's tensors with .to(DType::BFloat16) to save them in 16 bits)", name(), dtype_name(dtype), dtype_name(dtype));
  if (!is_floating(dtype)) fail("{}.to({}): modules can only be converted to a floating dtype", name(), dtype_name(dtype));
  convert_in_place(*this, [&](const Tensor& t) { return is_floating(t.dtype()) ? ops::to_dtype(t, dtype) : t; });
  return *this;
}

// ---- state ----------------------------------------------------------------------------------------------

StateDict Module::state_dict() const {
  StateDict out;
  // Like torch's state_dict: recursion without de-duplication, so a shared submodule is saved
  // under each of its names.
  std::vector<std::pair<std::string, const Module*>> stack{{"", this}};
  while (!stack.empty()) {
    auto [p, m] = stack.back();
    stack.pop_back();
    for (const auto& [k, v] : m->params_) out.emplace_back(p + k, v.detach());
    for (const auto& b : m->buffers_)
      if (b.persistent) out.emplace_back(p + b.name, b.tensor.detach());
    for (auto it = m->children_.rbegin(); it != m->children_.rend(); ++it)
      stack.emplace_back(p + it->first + ".", it->second.get());
  }
  return out;
}

LoadResult Module::load_state_dict(const StateDict& dict, bool strict) {
  std::unordered_map<std::string, const Tensor*> given;
  for (const auto& [k, v] : dict) {
    if (!given.emplace(k, &v).second) fail("{}.load_state_dict: key '{}' appears twice in the state_dict", name(), k);
    if (!v.defined()) fail("{}.load_state_dict: the state_dict's '{}' is an undefined tensor", name(), k);
  }
  StateDict own = state_dict();
  LoadResult r;
  std::vector<std::pair<Tensor, const Tensor*>> copies;
  std::unordered_set<std::string> own_keys;
  for (const auto& [k, dst] : own) {
    own_keys.insert(k);
    auto it = given.find(k);
    if (it == given.end()) {
      r.missing_keys.push_back(k);
      continue;
    }
    const Tensor& src = *it->second;
    if (src.sizes() != dst.sizes()) {
      r.mismatched.push_back({k, dst.sizes(), src.sizes()});
      continue;
    }
    copies.emplace_back(dst, &src);
  }
  for (const auto& [k, v] : dict)
    if (!own_keys.count(k)) r.unexpected_keys.push_back(k);
  if (strict && !r.ok())
    fail("{}.load_state_dict (strict): nothing was loaded because\n{}", name(), r.str());
  NoGradGuard no_grad;
  for (auto& [dst, src] : copies) ops::copy_(dst, *src);
  return r;
}

// ---- training helpers ------------------------------------------------------------------------------------

void Module::zero_grad() {
  for (auto& p : parameters()) p.zero_grad();
}

Module& Module::requires_grad_(bool on) {
  for (auto& p : parameters()) {
    if (on && !is_floating(p.dtype())) continue;
    p.requires_grad_(on);
  }
  return *this;
}

int64_t Module::num_parameters(bool trainable_only) const {
  int64_t n = 0;
  for (const auto& p : parameters())
    if (!trainable_only || p.requires_grad()) n += p.numel();
  return n;
}

// ---- forward and printing ------------------------------------------------------------------------------

Tensor Module::forward(const Tensor&) {
  fail("{} has no forward(const Tensor&); override Module::forward in the subclass", name());
}

std::string Module::repr() const {
  std::vector<std::string> extra_lines;
  std::string extra = extra_repr();
  if (!extra.empty()) {
    std::stringstream ss(extra);
    std::string line;
    while (std::getline(ss, line)) extra_lines.push_back(line);
  }
  std::vector<std::string> child_lines;
  for (const auto& [k, c] : children_) child_lines.push_back("(" + k + "): " + indent_after_first_line(c->repr(), 2));
  std::string s = name() + "(";
  if (!extra_lines.empty() || !child_lines.empty()) {
    if (extra_lines.size() == 1 && child_lines.empty()) {
      s += extra_lines[0];
    } else {
      for (const auto& l : extra_lines) s += "\n  " + l;
      for (const auto& l : child_lines) s += "\n  " + l;
      s += "\n";
    }
  }
  return s + ")";
}

std::ostream& operator<<(std::ostream& os, const Module& m) { return os << m.repr(); }

Tensor Module::operator()(const Tensor& x) {
  autograd::Tracer* t = autograd::tracer();
  if (!t) return forward(x);
  struct Scope {
    autograd::Tracer* t;
    ~Scope() { t->leave_module(); }
  } scope{t};
  t->enter_module(this);
  return forward(x);
}

}  // namespace dl::nn
