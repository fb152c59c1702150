#include "tensor/autocast.h"

namespace dl {

namespace {
thread_local AutocastState g_state;
}

AutocastState autocast_state() { return g_state; }
void set_autocast_state(const AutocastState& s) { g_state = s; }

AutocastGuard::AutocastGuard(Device device, DType dtype, bool enabled) : prev_(g_state) {
  // enabled = false turns the device's autocast off inside the scope, as torch.autocast(enabled=False)
  if (!enabled) dtype = DType::Float32;
  const bool ok = dtype == DType::Float32 || dtype == DType::BFloat16 ||
                  (dtype == DType::Float16 && device.is_cuda());
  if (!ok)
    fail("autocast: {} cannot autocast to {} (the CPU takes bfloat16, CUDA bfloat16 or float16; float32 turns "
         "autocast off)",
         device.str(), dtype_name(dtype));
  (device.is_cuda() ? g_state.cuda : g_state.cpu) = dtype;
}

DType parse_precision(const std::string& s) {
  if (s == "fp32" || s == "float32") return DType::Float32;
  if (s == "bf16" || s == "bfloat16") return DType::BFloat16;
  if (s == "fp16" || s == "float16") return DType::Float16;
  fail("unknown precision '{}': expected fp32, bf16 or fp16", s);
}

const char* precision_name(DType t) {
  switch (t) {
    case DType::BFloat16: return "bf16";
    case DType::Float16: return "fp16";
    default: return "fp32";
  }
}

}  // namespace dl
