// Autocast's operand rounding (tensor/autocast.h): float32 values rounded to bfloat16 or float16
// (round to nearest even; NaN stays NaN; float16 overflows to +-inf), stored either in the 16-bit
// type (for cuBLAS / cuDNN) or widened back to float32 (for the float32 kernels, which then multiply
// the rounded operands exactly: a product of two 8- or 11-bit significands fits float32's 24 bits);
// and the widening of a 16-bit buffer back to float32.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda/device_utils.cuh"

namespace dl::cuda::k {
namespace {

template <typename H> __device__ H round_to(float v);
template <> __device__ __nv_bfloat16 round_to<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <> __device__ __half round_to<__half>(float v) { return __float2half_rn(v); }
__device__ float widen(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ float widen(__half v) { return __half2float(v); }

// out[(b R + r) C + c] = round(in[b sb + r sr + c sc]), Out = H (16-bit) or float (rounded, widened)
template <typename H, typename Out>
__global__ void round_kernel(Out* __restrict__ out, const float* __restrict__ in, int64_t B, int64_t R, int64_t C,
                             int64_t sb, int64_t sr, int64_t sc) {
  KERNEL_LOOP(t, B * R * C) {
    const int64_t c = t % C;
    const int64_t r = (t / C) % R;
    const int64_t b = t / (C * R);
    const H h = round_to<H>(in[b * sb + r * sr + c * sc]);
    if constexpr (std::is_same_v<Out, float>)
      out[t] = widen(h);
    else
      out[t] = h;
  }
}

template <typename H>
__global__ void widen_kernel(float* __restrict__ out, const H* __restrict__ in, int64_t n) {
  KERNEL_LOOP(t, n) out[t] = widen(in[t]);
}

template <typename H>
void round_typed(void* out, bool widened, const float* in, int64_t B, int64_t R, int64_t C, int64_t sb, int64_t sr,
                 int64_t sc) {
  const int64_t n = B * R * C;
  if (n == 0) return;
  if (widened)
    round_kernel<H, float><<<grid_1d(n), kThreads, 0, stream()>>>(static_cast<float*>(out), in, B, R, C, sb, sr, sc);
  else
    round_kernel<H, H><<<grid_1d(n), kThreads, 0, stream()>>>(static_cast<H*>(out), in, B, R, C, sb, sr, sc);
  DL_CUDA_LAUNCH_CHECK("round_kernel");
}

}  // namespace

void round_operand(DType to, bool widened, void* out, const float* in, int64_t B, int64_t R, int64_t C, int64_t sb,
                   int64_t sr, int64_t sc) {
  DL_CUDA_REQUIRE(to == DType::BFloat16 || to == DType::Float16, "round_operand: bfloat16 or float16 only");
  if (to == DType::BFloat16)
    round_typed<__nv_bfloat16>(out, widened, in, B, R, C, sb, sr, sc);
  else
    round_typed<__half>(out, widened, in, B, R, C, sb, sr, sc);
}

void widen_to_float(DType from, float* out, const void* in, int64_t n) {
  DL_CUDA_REQUIRE(from == DType::BFloat16 || from == DType::Float16, "widen_to_float: bfloat16 or float16 only");
  if (n == 0) return;
  if (from == DType::BFloat16)
    widen_kernel<<<grid_1d(n), kThreads, 0, stream()>>>(out, static_cast<const __nv_bfloat16*>(in), n);
  else
    widen_kernel<<<grid_1d(n), kThreads, 0, stream()>>>(out, static_cast<const __half*>(in), n);
  DL_CUDA_LAUNCH_CHECK("widen_kernel");
}

}  // namespace dl::cuda::k
