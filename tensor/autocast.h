#pragma once
// Autocast: mixed precision the PyTorch way. Inside a scope
//
//     { auto scope = dl::autocast(kCPU, DType::BFloat16);  loss = loss_fn(model(x), y); }
//     loss.backward();
//
// matmul, linear and conv2d on float32 tensors of that device multiply in bfloat16 (float16 on CUDA):
// their GEMM operands are rounded to the low-precision type and the products are summed in float32,
// and their outputs stay float32. Everything else (batch norm, softmax, losses, reductions, the
// optimizer step) runs in float32 as before, parameters stay float32 (master weights), and float64
// tensors are never touched. The precision is fixed when an op runs forward: the autograd engine
// restores the state each node was recorded under while it runs that node's backward
// (autograd/engine.cpp), so the gradients of an op use the same precision as its forward, even
// when backward() is called outside the scope, as it should be.
//
// Scopes nest and restore what was there (per thread, like grad mode). CPU takes BFloat16; CUDA
// takes BFloat16 or Float16; DType::Float32 turns autocast off inside a scope.
#include "tensor/device.h"
#include "tensor/dtype.h"

namespace dl {

// What every device's autocast is set to on this thread (Float32 = off).
struct AutocastState {
  DType cpu = DType::Float32;
  DType cuda = DType::Float32;
  DType for_device(DeviceType d) const { return d == DeviceType::CUDA ? cuda : cpu; }
  bool operator==(const AutocastState&) const = default;
};

AutocastState autocast_state();
void set_autocast_state(const AutocastState& s);

// The dtype autocast multiplies in on `d` now (Float32 when off).
inline DType autocast_dtype(DeviceType d) { return autocast_state().for_device(d); }

// The low precision a GEMM on operands of dtype `t` on device `d` rounds them to now: autocast's
// dtype for float32 operands inside a scope, else Float32 (none). Kernels take it as `gemm_dtype`.
inline DType gemm_dtype_for(DType t, Device d) {
  return t == DType::Float32 ? autocast_dtype(d.type) : DType::Float32;
}

// Restores the state it found when it goes out of scope.
class AutocastStateGuard {
 public:
  explicit AutocastStateGuard(const AutocastState& s) : prev_(autocast_state()) { set_autocast_state(s); }
  ~AutocastStateGuard() { set_autocast_state(prev_); }
  AutocastStateGuard(const AutocastStateGuard&) = delete;
  AutocastStateGuard& operator=(const AutocastStateGuard&) = delete;

 private:
  AutocastState prev_;
};

// Sets `device`'s autocast dtype for the guard's lifetime; a dtype the device cannot autocast to
// (Float16 on the CPU, an integer type) is a dl::Error naming both. enabled = false turns the
// device's autocast off inside the scope (torch.autocast(..., enabled=False)).
class AutocastGuard {
 public:
  AutocastGuard(Device device, DType dtype, bool enabled = true);
  ~AutocastGuard() { set_autocast_state(prev_); }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  AutocastState prev_;
};

// dl::autocast(kCPU, DType::BFloat16): a scope, like torch.autocast("cpu", dtype=torch.bfloat16).
[[nodiscard]] inline AutocastGuard autocast(Device device, DType dtype, bool enabled = true) {
  return AutocastGuard(device, dtype, enabled);
}

// "fp32" | "bf16" | "fp16" (the programs' --precision) to the autocast dtype; anything else is a
// dl::Error listing the choices. precision_name is the inverse.
DType parse_precision(const std::string& s);
const char* precision_name(DType t);

}  // namespace dl
