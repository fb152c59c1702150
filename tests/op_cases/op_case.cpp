// What the four op-case drivers share: inputs from the specs, the variants, and the JSON dump for the
// PyTorch side.
#include "op_case.h"

#include <fmt/format.h>

#include <stdexcept>

namespace dl::test::op_cases {

namespace {

// FNV-1a: a seed that depends on the entry's name only, so adding an entry changes no other's inputs.
uint64_t name_seed(const std::string& name) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : name) h = (h ^ ch) * 1099511628211ull;
  return h;
}

bool floating_spec(const In& s) { return s.dtype != DType::Int64; }

// Same values, non-contiguous layout: the last two dims transposed in memory, or (1-D, or a
// trailing size-1 dim) every second element of a buffer twice as wide. Differentiable.
Tensor strided_copy(const Tensor& x) {
  const int64_t d = x.dim();
  if (d >= 2 && x.size(d - 1) > 1 && x.size(d - 2) > 1) return x.transpose(d - 2, d - 1).contiguous().transpose(d - 2, d - 1);
  return stack({x, zeros_like(x)}, d).select(d, 0);
}

bool strides_apply(const In& s) {
  int64_t n = 1;
  for (int64_t v : s.shape) n *= v;
  return floating_spec(s) && !s.mutated && !s.shape.empty() && n > 1;
}

bool broadcast_applies(const OpCase& c) {
  if (c.inputs.empty()) return false;
  const In& s = c.inputs[0];
  return floating_spec(s) && !s.mutated && !s.shape.empty() && s.shape[0] > 1;
}

}  // namespace

const char* variant_name(Variant v) {
  switch (v) {
    case Variant::Plain: return "plain";
    case Variant::Strided: return "strided";
    case Variant::Broadcast: return "broadcast";
  }
  return "?";
}

std::vector<Variant> variants(const OpCase& c) {
  std::vector<Variant> out{Variant::Plain};
  bool any_strided = false;
  for (const In& s : c.inputs) any_strided = any_strided || strides_apply(s);
  if (any_strided && !*c.no_strided) out.push_back(Variant::Strided);
  if (broadcast_applies(c) && !*c.no_broadcast) out.push_back(Variant::Broadcast);
  return out;
}

V make_inputs(const OpCase& c, DType dtype) {
  V out;
  const uint64_t seed = name_seed(c.name);
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const In& s = c.inputs[i];
    Generator g(seed + i);
    Tensor u = rand(s.shape, DType::Float64, &g) * (s.hi - s.lo) + s.lo;
    // integers: values in [lo, hi) truncate towards zero, so lo must be >= 0 (indices, targets)
    Tensor t = floating_spec(s) ? u.to(dtype) : u.to(DType::Int64);
    if (floating_spec(s) && s.grad) t.requires_grad_();
    out.push_back(t);
  }
  return out;
}

void set_requires_grad(const OpCase& c, V& inputs) {
  for (size_t i = 0; i < inputs.size(); ++i)
    if (floating_spec(c.inputs[i]) && c.inputs[i].grad) inputs[i].requires_grad_();
}

V variant_leaves(const OpCase& c, Variant v, const V& plain) {
  V out;
  for (size_t i = 0; i < plain.size(); ++i) {
    Tensor t = plain[i].detach();
    t = (v == Variant::Broadcast && i == 0) ? t.narrow(0, 0, 1).clone() : t.clone();
    out.push_back(t);
  }
  set_requires_grad(c, out);
  return out;
}

V variant_inputs(const OpCase& c, Variant v, const V& leaves) {
  V out = leaves;
  if (v == Variant::Strided) {
    for (size_t i = 0; i < out.size(); ++i)
      if (strides_apply(c.inputs[i])) out[i] = strided_copy(out[i]);
  } else if (v == Variant::Broadcast) {
    out[0] = out[0].expand(c.inputs[0].shape);
  }
  return out;
}

std::string to_json() {
  std::string s = "{\"cases\": [\n";
  const auto& cases = all();
  for (size_t k = 0; k < cases.size(); ++k) {
    const OpCase& c = cases[k];
    s += fmt::format("  {{\"name\": \"{}\", \"reference\": {}, \"cuda\": {}, \"errors\": {}, \"variants\": [", c.name,
                     *c.no_reference ? "false" : "true", *c.no_cuda ? "false" : "true", c.errors.size());
    auto vs = variants(c);
    for (size_t i = 0; i < vs.size(); ++i) s += fmt::format("{}\"{}\"", i ? ", " : "", variant_name(vs[i]));
    s += "], \"inputs\": [";
    for (size_t i = 0; i < c.inputs.size(); ++i) {
      const In& in = c.inputs[i];
      s += fmt::format("{}{{\"shape\": [{}], \"dtype\": \"{}\", \"lo\": {}, \"hi\": {}, \"grad\": {}, \"mutated\": {}}}",
                       i ? ", " : "", fmt::join(in.shape, ", "), floating_spec(in) ? "float" : "int64", in.lo, in.hi,
                       in.grad && floating_spec(in) ? "true" : "false", in.mutated ? "true" : "false");
    }
    s += fmt::format("]}}{}\n", k + 1 < cases.size() ? "," : "");
  }
  return s + "]}\n";
}

const OpCase& find(const std::string& name) {
  for (const auto& c : all())
    if (c.name == name) return c;
  throw std::runtime_error("op case '" + name + "' is not in tests/op_cases/op_table.cpp");
}

}  // namespace dl::test::op_cases
