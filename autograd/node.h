#pragma once
// The autograd graph. Every differentiable op that runs with grad mode on and an input that
// requires grad records one Node: its backward function plus one Edge per input, pointing at the
// node that produced that input (or at the AccumulateGrad node of a leaf). The engine
// (autograd/engine.cpp) walks these nodes in topological order, iteratively.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tensor/autocast.h"
#include "tensor/tensor.h"

namespace dl::autograd {

class Node;

struct Edge {
  std::shared_ptr<Node> fn;  // null: the input needs no gradient
  uint32_t input_nr = 0;     // which output of fn this edge feeds
  bool valid() const { return fn != nullptr; }
};

class Node : public std::enable_shared_from_this<Node> {
 public:
  // Releases the chain below iteratively: dropping the last reference to a 10,000-node graph
  // must not recurse 10,000 destructors deep.
  virtual ~Node();
  // grads: one per output of this node (undefined = zero). Returns one gradient per next edge.
  virtual std::vector<Tensor> apply(std::vector<Tensor>&& grads) = 0;
  virtual std::string name() const = 0;
  // Frees what forward saved for backward; a later apply() must then fail.
  virtual void release_saved() {}
  virtual int num_outputs() const { return 1; }

  std::vector<Edge> next_edges;
  bool released = false;
  bool needs_input_grad(size_t i) const { return i < next_edges.size() && next_edges[i].valid(); }
};

// Adds incoming gradients into a leaf's .grad.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(Tensor variable) : variable_(std::move(variable)) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override;
  std::string name() const override { return "AccumulateGrad"; }

  // Run, in order, right after a backward has added a gradient into the leaf's .grad (PyTorch's
  // register_post_accumulate_grad_hook); the argument is the leaf. The engine calls a leaf's node
  // once per backward, after every contribution to it is summed, so a hook fires at most once per
  // backward: DistributedDataParallel starts a bucket's all-reduce from here.
  std::vector<std::function<void(const Tensor&)>> post_hooks;

 private:
  Tensor variable_;
};

// The AccumulateGrad node of a leaf that requires grad, created if it has none yet. A leaf only
// holds it weakly (the graphs that use it hold it), so whoever adds post_hooks keeps it alive by
// holding the returned pointer, and every later graph then reaches the same node and hooks.
std::shared_ptr<AccumulateGrad> grad_accumulator(const Tensor& leaf);

// Runs `fn` once the backward now running has finished every node (PyTorch's
// Variable._execution_engine.queue_callback); outside a backward, a clear error. Callbacks run in
// the order queued, still inside backward() (an exception from one propagates out of it).
void queue_callback(std::function<void()> fn);

// ---- grad mode ---------------------------------------------------------------------------------
bool grad_mode_enabled();
void set_grad_mode(bool enabled);

}  // namespace dl::autograd

namespace dl {
// While alive, ops record no graph (evaluation, optimizer steps, backward itself).
class NoGradGuard {
 public:
  NoGradGuard() : prev_(autograd::grad_mode_enabled()) { autograd::set_grad_mode(false); }
  ~NoGradGuard() { autograd::set_grad_mode(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};
}  // namespace dl

namespace dl::autograd {

// Tells a backward function which inputs need a gradient, so it can skip the others.
struct NeedsGrad {
  const Node* node;
  bool operator[](size_t i) const { return node->needs_input_grad(i); }
};

using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad, const NeedsGrad& needs)>;

// A node whose backward is a closure; what the closure captured is what forward saved, and is
// freed by release_saved(). This is how every op in autograd/functions/ records itself. The
// closure runs under the autocast state the node was recorded under (tensor/autocast.h), so an
// op's gradient GEMMs use its forward's precision wherever backward() is called.
class FunctionNode final : public Node {
 public:
  FunctionNode(std::string name, BackwardFn fn)
      : name_(std::move(name)), fn_(std::move(fn)), autocast_(autocast_state()) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override;
  std::string name() const override { return name_; }
  void release_saved() override { fn_ = nullptr; }

 private:
  std::string name_;
  BackwardFn fn_;
  AutocastState autocast_;
};

// ---- tracing (ONNX export, onnx/export.cpp) -----------------------------------------------------
// What an op tells a tracer beyond its inputs and its output: its attributes (stride, axis, the
// scalar of `x * 2`) and the tensors it reads that are not differentiable inputs (batch norm's
// running statistics). Ops build it only on the recording path (after needs_graph), so it costs
// nothing when no graph is recorded.
struct OpAttr {
  std::string name;
  std::vector<int64_t> ints;
  std::vector<double> floats;
};
struct TraceInfo {
  TraceInfo() = default;
  TraceInfo(std::vector<OpAttr> a, std::vector<Tensor> e = {}) : attrs(std::move(a)), extra(std::move(e)) {}  // NOLINT
  std::vector<OpAttr> attrs;
  std::vector<Tensor> extra;
  const OpAttr* find(const std::string& n) const {
    for (const auto& a : attrs)
      if (a.name == n) return &a;
    return nullptr;
  }
};

// Sees every node record() makes on this thread while installed: its name ("Conv2dBackward"),
// output, inputs and TraceInfo. Module::operator() reports the module it runs, so a tracer can
// name what it saw after the module tree.
class Tracer {
 public:
  virtual ~Tracer() = default;
  virtual void on_op(const std::string& name, const Tensor& out, const std::vector<Tensor>& inputs,
                     const TraceInfo& info) = 0;
  virtual void enter_module(const void* /*module*/) {}
  virtual void leave_module() {}
};
Tracer* tracer();  // this thread's, or null
// The TraceInfo `make()` builds when a tracer is installed, else an empty one (no allocation):
// record(..., trace_info([&] { return TraceInfo{{{"axis", {d}, {}}}}; })).
template <typename F>
TraceInfo trace_info(F&& make) {
  return tracer() ? make() : TraceInfo{};
}
// Installs `t` for the guard's lifetime (the previous one is restored after).
class TracerGuard {
 public:
  explicit TracerGuard(Tracer* t);
  ~TracerGuard();
  TracerGuard(const TracerGuard&) = delete;
  TracerGuard& operator=(const TracerGuard&) = delete;

 private:
  Tracer* prev_;
};

// The edge by which a gradient for `t` enters the graph (its grad_fn, or its leaf accumulator).
Edge gradient_edge(const Tensor& t);

// Connects `result` to `inputs` through a new FunctionNode when grad mode is on and some input
// requires grad; otherwise returns result untouched. `backward` returns one gradient per input
// (undefined for inputs that need none).
// Closures must capture tensors through save(): a detached alias (same storage, no history), so a
// saved output never points back at its own node (no reference cycle, no graph kept alive).
// `info` goes to the tracer, when one is installed.
Tensor record(std::string name, Tensor result, const std::vector<Tensor>& inputs, BackwardFn backward,
              const TraceInfo& info = {});
Tensor save(const Tensor& t);

// True when an op on these inputs records a node: grad mode is on and some input requires grad.
// Ops ask it before they save anything for backward, so with grad mode off (backward closures,
// optimizer steps, evaluation) an op costs its raw kernel alone: no saved alias, no closure, no node.
template <typename... Ts>
bool needs_graph(const Ts&... inputs) {
  return grad_mode_enabled() && ((inputs.defined() && inputs.requires_grad()) || ...);
}

// How many backward passes this thread has started: a hook can tell a new backward from the one it
// saw last, even when that one ended in an exception before its callbacks ran.
uint64_t backward_sequence();

// Runs backward from `roots` with the given gradients (undefined = ones for scalars).
void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph);

}  // namespace dl::autograd
