#pragma once
// nn::Module: a node in a tree of layers that owns named parameters, buffers and children, the way
// torch.nn.Module does. Names, ordering and state_dict keys are PyTorch's ("layer1.0.conv1.weight",
// "0.weight" inside a Sequential, "bn.num_batches_tracked"), so weights move between the two by name.
//
// A module is always held by std::shared_ptr (children are shared, like PyTorch's submodules) and
// is not copyable. Parameters are Tensors whose TensorImpl is the module's "slot": to(), load and
// freezing change that impl in place, so a layer's `weight` member, the optimizer's list and the
// autograd graph keep pointing at the same parameter.
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace dl::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
// An ordered (name, tensor) list, e.g. a state_dict. Ordered like PyTorch's OrderedDict.
using StateDict = NamedTensors;

struct ShapeMismatch {
  std::string name;
  Shape expected;  // the module's tensor
  Shape got;       // the state_dict's tensor
};

// What load_state_dict did not load. Empty lists = everything matched.
struct LoadResult {
  std::vector<std::string> missing_keys;     // in the module, absent from the dict
  std::vector<std::string> unexpected_keys;  // in the dict, absent from the module
  std::vector<ShapeMismatch> mismatched;     // present in both with different shapes (not loaded)
  bool ok() const { return missing_keys.empty() && unexpected_keys.empty() && mismatched.empty(); }
  std::string str() const;  // one line per problem, "" when ok()
};

class Module {
 public:
  // `type_name` is what repr() and error messages call this module ("Linear", "Net"); when
  // empty, the C++ class name (without namespaces) is used.
  explicit Module(std::string type_name = "");
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // ---- registration ---------------------------------------------------------------------------
  // Registers `t` as a parameter (a leaf; requires_grad set as given) and returns the registered
  // tensor, which shares its impl with `t`. An undefined `t` registers nothing (like bias=None).
  Tensor register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  // Buffers are state that is not trained (running statistics); persistent ones are in state_dict.
  Tensor register_buffer(const std::string& name, Tensor t, bool persistent = true);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }
  // Puts `m` in the place of the existing submodule `name` (PyTorch: assigning model.fc = ...),
  // keeping its position in the traversal order. Throws when there is no such submodule.
  template <typename M>
  std::shared_ptr<M> replace_module(const std::string& name, std::shared_ptr<M> m) {
    replace_child(name, m);
    return m;
  }

  // ---- traversal (PyTorch's order: own entries first, then children, depth first) -----------
  // Shared tensors and modules are listed once (at their first name), as in PyTorch.
  NamedTensors named_parameters(bool recurse = true) const;
  std::vector<Tensor> parameters(bool recurse = true) const;
  NamedTensors named_buffers(bool recurse = true) const;
  std::vector<Tensor> buffers(bool recurse = true) const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const;
  std::vector<std::shared_ptr<Module>> children() const;
  // Every module below this one, with dotted names; this module itself is not included (it has
  // no shared_ptr of its own here), unlike PyTorch's named_modules() which lists it as "".
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_modules() const;
  // Look-ups by dotted name; throw dl::Error naming what is missing.
  Tensor get_parameter(const std::string& dotted) const;
  Tensor get_buffer(const std::string& dotted) const;
  std::shared_ptr<Module> get_submodule(const std::string& dotted) const;

  // ---- mode -----------------------------------------------------------------------------------
  virtual void train(bool on = true);  // this module and all below it
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // ---- moving and converting, in place (parameter identity is kept) -------------------------
  // to(Device) moves every parameter, gradient and buffer; to(DType) converts the floating ones
  // (integer buffers such as num_batches_tracked keep their dtype), as torch.nn.Module.to does.
  Module& to(Device device);
  Module& to(DType dtype);

  // ---- state ----------------------------------------------------------------------------------
  // Parameters then persistent buffers of each module, depth first: PyTorch's keys and order.
  // The tensors are detached aliases of the live ones (no copy), as in PyTorch.
  StateDict state_dict() const;
  // Copies values into the existing tensors (converting dtype and device). Strict: throws one
  // dl::Error listing every missing key, unexpected key and shape mismatch, and loads nothing.
  // Non-strict: loads what matches and returns the rest.
  LoadResult load_state_dict(const StateDict& dict, bool strict = true);

  // ---- training helpers -----------------------------------------------------------------------
  void zero_grad();                    // drops every parameter's gradient (sets it undefined)
  Module& requires_grad_(bool on);     // freezes (false) or unfreezes every parameter below
  int64_t num_parameters(bool trainable_only = false) const;

  // ---- forward --------------------------------------------------------------------------------
  virtual Tensor forward(const Tensor& x);
  // forward(x), reported to the autograd tracer when one is installed (ONNX export names what it
  // records after the module that ran it).
  Tensor operator()(const Tensor& x);

  // ---- printing -------------------------------------------------------------------------------
  std::string name() const;                 // "Linear", "Sequential", "Net"
  virtual std::string extra_repr() const { return ""; }
  std::string repr() const;                 // the tree, formatted like PyTorch's repr(module)

 protected:
  // Called when a child is registered; Sequential uses it to keep its index.
  void add_child(const std::string& name, std::shared_ptr<Module> m);
  void replace_child(const std::string& name, std::shared_ptr<Module> m);
  // Called when replace_child has put `m` where `old` was (Sequential keeps its run order in step).
  virtual void child_replaced(const Module* /*old*/, const std::shared_ptr<Module>& /*m*/) {}
  // The parameter slot registered under `name` in this module (not recursive), or undefined.
  Tensor own_parameter(const std::string& name) const;

 private:
  struct BufferEntry {
    std::string name;
    Tensor tensor;
    bool persistent;
  };
  void check_new_name(const std::string& name, const char* what) const;
  template <typename Fn> void visit(const std::string& prefix, Fn&& fn) const;

  std::string type_name_;
  bool training_ = true;
  NamedTensors params_;
  std::vector<BufferEntry> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

std::ostream& operator<<(std::ostream& os, const Module& m);

// Python's repr of a float ("1e-05", "0.1", "1.0"), for extra_repr().
std::string py_float(double v);

}  // namespace dl::nn
