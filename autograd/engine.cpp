// The backward engine: count dependencies with an iterative DFS, then a Kahn-style walk that
// runs each node once all the gradients flowing into it have arrived. No recursion anywhere, so
// a chain of any length back-propagates without growing the C++ stack.
#include <unordered_map>
#include <unordered_set>

#include "autograd/node.h"
#include "tensor/ops.h"

namespace dl::autograd {

namespace {
thread_local bool g_grad_mode = true;
thread_local uint64_t g_backward_sequence = 0;
// The callbacks queued (queue_callback) by the backward running on this thread; null outside one.
thread_local std::vector<std::function<void()>>* g_callbacks = nullptr;

// True when nothing but the caller's one reference can see t's values: no other Tensor shares its
// TensorImpl or its storage, and it covers its whole storage. Adding into such a tensor in place
// (or adopting it as a .grad) is invisible to everyone else.
// `refs`: the references the caller itself holds to t's TensorImpl.
bool exclusively_owned(const Tensor& t, long refs = 1) {
  return t.impl_ptr().use_count() == refs && t.storage() && t.storage().use_count() == 1 && t.is_contiguous() &&
         t.storage_offset() == 0 && t.storage()->nbytes() == static_cast<size_t>(t.numel() * t.element_size());
}

// a + b for two gradients of the same input. When the buffer's tensor `a` is its own, b is added
// into it in place (no allocation, one pass less); gradients returned by backward functions are
// often fresh tensors nobody else holds.
Tensor accumulate(Tensor&& a, const Tensor& b) {
  if (!a.defined()) return b;
  if (!b.defined()) return std::move(a);
  if (a.sizes() == b.sizes() && a.dtype() == b.dtype() && a.device() == b.device() && exclusively_owned(a)) {
    ops::add_(a, b, 1.0);
    return std::move(a);
  }
  return ops::binary(ops::BinaryOp::Add, a, b);
}
}  // namespace

Node::~Node() {
  thread_local bool releasing = false;
  thread_local std::vector<std::shared_ptr<Node>> pending;
  for (auto& e : next_edges)
    if (e.fn && e.fn.use_count() == 1) pending.push_back(std::move(e.fn));
  if (releasing) return;
  releasing = true;
  while (!pending.empty()) {
    std::shared_ptr<Node> n = std::move(pending.back());
    pending.pop_back();
    n.reset();  // its destructor queues its own children instead of recursing
  }
  releasing = false;
}

Tensor save(const Tensor& t) { return t.defined() ? ops::alias(t) : t; }

bool grad_mode_enabled() { return g_grad_mode; }
void set_grad_mode(bool enabled) { g_grad_mode = enabled; }

std::vector<Tensor> AccumulateGrad::apply(std::vector<Tensor>&& grads) {
  Tensor g = std::move(grads.at(0));
  if (!g.defined()) return {};
  auto& meta = variable_.impl().autograd;
  if (g.sizes() != variable_.sizes())
    fail("internal error: gradient of shape {} for a leaf of shape {}", shape_str(g.sizes()),
         shape_str(variable_.sizes()));
  if (g.dtype() != variable_.dtype()) g = ops::to_dtype(g, variable_.dtype());
  if (!meta.grad) {
    // a private copy when g may be shared with other edges or tensors; else g itself becomes .grad
    meta.grad = exclusively_owned(g) && !g.requires_grad() ? g.impl_ptr() : ops::clone(g).impl_ptr();
  } else if (Tensor old(meta.grad); exclusively_owned(old, 2) && old.dtype() == g.dtype()) {
    // nobody holds the old .grad but the leaf (a user's copy of it would see the change): add in place
    ops::add_(old, g, 1.0);
  } else {
    meta.grad = ops::binary(ops::BinaryOp::Add, Tensor(meta.grad), g).impl_ptr();
  }
  for (auto& hook : post_hooks) hook(variable_);
  return {};
}

std::shared_ptr<AccumulateGrad> grad_accumulator(const Tensor& leaf) {
  if (!leaf.defined() || !leaf.is_leaf() || !leaf.requires_grad())
    fail("grad_accumulator: expected a leaf tensor that requires grad");
  auto node = std::dynamic_pointer_cast<AccumulateGrad>(gradient_edge(leaf).fn);
  DL_CHECK(node != nullptr, "grad_accumulator: the leaf's gradient edge is not an AccumulateGrad");
  return node;
}

void queue_callback(std::function<void()> fn) {
  if (!g_callbacks) fail("queue_callback: no backward is running on this thread");
  g_callbacks->push_back(std::move(fn));
}

std::vector<Tensor> FunctionNode::apply(std::vector<Tensor>&& grads) {
  if (!fn_)
    fail("trying to backward through the graph a second time (node {}): its saved tensors were "
         "freed after the first backward; pass retain_graph=true to the first backward() to keep them",
         name_);
  AutocastStateGuard precision(autocast_);
  return fn_(grads.at(0), NeedsGrad{this});
}

Edge gradient_edge(const Tensor& t) {
  auto& meta = t.impl().autograd;
  if (meta.grad_fn) return {meta.grad_fn, meta.output_nr};
  if (!meta.requires_grad) return {};
  std::shared_ptr<Node> acc = meta.grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t);
    meta.grad_accumulator = acc;
  }
  return {acc, 0};
}

namespace {
thread_local Tracer* g_tracer = nullptr;
}
Tracer* tracer() { return g_tracer; }
TracerGuard::TracerGuard(Tracer* t) : prev_(g_tracer) { g_tracer = t; }
TracerGuard::~TracerGuard() { g_tracer = prev_; }

Tensor record(std::string name, Tensor result, const std::vector<Tensor>& inputs, BackwardFn backward,
              const TraceInfo& info) {
  if (!g_grad_mode) return result;
  bool any = false;
  for (const auto& in : inputs) any |= in.defined() && in.requires_grad();
  if (!any) return result;
  for (const auto& in : inputs)
    if (in.defined() && in.is_same(result)) {
      result = ops::alias(result);  // never rewrite an input's own history
      break;
    }
  if (!is_floating(result.dtype())) return result;  // integer results carry no gradient
  auto node = std::make_shared<FunctionNode>(std::move(name), std::move(backward));
  node->next_edges.reserve(inputs.size());
  for (const auto& in : inputs) node->next_edges.push_back(in.defined() ? gradient_edge(in) : Edge{});
  auto& meta = result.impl().autograd;
  meta.requires_grad = true;
  meta.grad_fn = node;
  meta.output_nr = 0;
  if (g_tracer) g_tracer->on_op(node->name(), result, inputs, info);
  return result;
}

uint64_t backward_sequence() { return g_backward_sequence; }

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph) {
  ++g_backward_sequence;
  DL_CHECK(roots.size() == grads.size(), "run_backward: {} roots, {} grads", roots.size(), grads.size());
  std::vector<Edge> root_edges;
  std::vector<Tensor> root_grads;
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    if (!r.requires_grad())
      fail("backward() on a tensor that does not require grad and has no grad_fn (shape {}); "
           "did you compute it under NoGradGuard or from tensors without requires_grad?",
           shape_str(r.sizes()));
    Tensor g = grads[i];
    if (!g.defined()) {
      if (r.numel() != 1)
        fail("backward() without a gradient needs a scalar (one element), got shape {}; pass a gradient "
             "of the same shape", shape_str(r.sizes()));
      g = ones(r.sizes(), {r.dtype(), r.device()});
    } else if (g.sizes() != r.sizes()) {
      fail("backward(): gradient of shape {} for a tensor of shape {}", shape_str(g.sizes()), shape_str(r.sizes()));
    }
    root_edges.push_back(gradient_edge(r));
    root_grads.push_back(g);
  }

  // 1. dependencies: how many edges point at each reachable node
  std::unordered_map<Node*, int> deps;
  std::unordered_set<Node*> seen;
  std::vector<Node*> stack;
  for (const auto& e : root_edges)
    if (seen.insert(e.fn.get()).second) stack.push_back(e.fn.get());
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const auto& e : n->next_edges) {
      if (!e.valid()) continue;
      deps[e.fn.get()]++;
      if (seen.insert(e.fn.get()).second) stack.push_back(e.fn.get());
    }
  }

  // 2. input buffers, seeded with the root gradients
  std::unordered_map<Node*, std::vector<Tensor>> buffers;
  auto add_to_buffer = [&](const Edge& e, const Tensor& g) {
    auto& buf = buffers[e.fn.get()];
    if (buf.empty()) buf.resize(static_cast<size_t>(e.fn->num_outputs()));
    buf[e.input_nr] = accumulate(std::move(buf[e.input_nr]), g);
  };
  for (size_t i = 0; i < root_edges.size(); ++i) add_to_buffer(root_edges[i], root_grads[i]);

  // 3. run nodes whose inputs are complete; keep each node alive while it runs
  std::vector<std::shared_ptr<Node>> ready;
  for (const auto& e : root_edges)
    if (deps[e.fn.get()] == 0 && std::find(ready.begin(), ready.end(), e.fn) == ready.end()) ready.push_back(e.fn);

  NoGradGuard no_grad;  // backward formulas themselves are not recorded
  std::vector<std::function<void()>> callbacks;
  struct CallbackScope {  // restores the outer backward's list (a backward inside a hook) on any exit
    std::vector<std::function<void()>>* saved;
    explicit CallbackScope(std::vector<std::function<void()>>* mine) : saved(g_callbacks) { g_callbacks = mine; }
    ~CallbackScope() { g_callbacks = saved; }
  } scope(&callbacks);
  while (!ready.empty()) {
    std::shared_ptr<Node> node = ready.back();
    ready.pop_back();
    std::vector<Tensor> inputs = std::move(buffers[node.get()]);
    buffers.erase(node.get());
    bool any_defined = false;
    for (const auto& g : inputs) any_defined |= g.defined();
    std::vector<Tensor> outputs;
    if (any_defined) {
      outputs = node->apply(std::move(inputs));
      if (!retain_graph) {
        node->release_saved();
        node->released = true;
      }
    }
    for (size_t i = 0; i < node->next_edges.size(); ++i) {
      const Edge& e = node->next_edges[i];
      if (!e.valid()) continue;
      if (i < outputs.size() && outputs[i].defined()) add_to_buffer(e, outputs[i]);
      if (--deps[e.fn.get()] == 0) ready.push_back(e.fn);
    }
  }
  for (size_t i = 0; i < callbacks.size(); ++i) {  // by index: a callback may queue another
    auto fn = std::move(callbacks[i]);
    fn();
  }
}

}  // namespace dl::autograd
