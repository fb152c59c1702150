// The hand-written convolution: im2col (cuda/conv.cu) + GEMM (host::gemm, i.e. the Gemm family's
// backend), over chunks of images so the column buffer stays below kColumnBudget.
//
// With K = C/G * kh * kw, L = Ho * Wo and R = C * kh * kw (the rows of all groups):
//   forward          out_n,g (O/G, L) = W_g (O/G, K) @ col_n,g (K, L)        one batched GEMM per group
//   backward input   col_n,g (K, L)   = W_g^T @ gout_n,g;  gx = col2im(col)    (gather, deterministic)
//   backward weight  gW_g (O/G, K)    = gout_g (O/G, nb L) @ col_g^T (nb L, K), the images of a
//                    chunk laid side by side so one GEMM with a long K dimension does them all
// A 1x1, stride-1, unpadded convolution needs no im2col in the first two. At the end of the file: the
// conv rows of the kernel table, which pick cuDNN or these.
#include <algorithm>

#include "cuda/host.h"
#include "tensor/error.h"

namespace dl::cuda::host {
namespace {

constexpr int64_t kColumnBudget = int64_t(256) << 20;  // bytes of scratch per chunk

int64_t images_per_chunk(int64_t per_image_elems, int64_t esize, int64_t N) {
  const int64_t per = std::max<int64_t>(1, per_image_elems * esize);
  return std::clamp<int64_t>(kColumnBudget / per, 1, N);
}

char* at(const Tensor& t, int64_t elems) { return static_cast<char*>(t.raw_data()) + elems * t.element_size(); }
char* at(void* base, int64_t elems, int64_t esize) { return static_cast<char*>(base) + elems * esize; }

}  // namespace

void conv2d_forward_handwritten(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias,
                                const Conv2dParams& g) {
  const DType dt = x.dtype();
  const int64_t es = x.element_size();
  const int64_t Cg = g.C / g.groups, Og = g.O / g.groups, K = Cg * g.kh * g.kw, L = g.Ho * g.Wo, R = g.C * g.kh * g.kw;
  if (g.pointwise()) {
    for (int64_t grp = 0; grp < g.groups; ++grp)
      gemm(dt, false, false, Og, L, K, 1.0, at(w, grp * Og * K), K, 0, at(x, grp * Cg * L), L, g.C * L, 0.0,
           at(out, grp * Og * L), L, g.O * L, g.N);
  } else {
    const int64_t nb = images_per_chunk(R * L, es, g.N);
    detail::Workspace col(static_cast<size_t>(nb * R * L * es));
    for (int64_t n0 = 0; n0 < g.N; n0 += nb) {
      const int64_t cnt = std::min(nb, g.N - n0);
      k::im2col(dt, x.raw_data(), col.ptr, g, n0, cnt, R * L, L);
      for (int64_t grp = 0; grp < g.groups; ++grp)
        gemm(dt, false, false, Og, L, K, 1.0, at(w, grp * Og * K), K, 0, at(col.ptr, grp * K * L, es), L, R * L, 0.0,
             at(out, (n0 * g.O + grp * Og) * L), L, g.O * L, cnt);
    }
  }
  if (bias.defined()) k::add_channel_bias(dt, out.raw_data(), bias.raw_data(), g.N, g.O, L);
}

void conv2d_backward_input_handwritten(const Tensor& gx, const Tensor& gout, const Tensor& w,
                                       const Conv2dParams& g) {
  const DType dt = gx.dtype();
  const int64_t es = gx.element_size();
  const int64_t Cg = g.C / g.groups, Og = g.O / g.groups, K = Cg * g.kh * g.kw, L = g.Ho * g.Wo, R = g.C * g.kh * g.kw;
  const int64_t HW = g.H * g.W;
  if (g.pointwise()) {
    for (int64_t grp = 0; grp < g.groups; ++grp)
      gemm(dt, true, false, K, L, Og, 1.0, at(w, grp * Og * K), K, 0, at(gout, grp * Og * L), L, g.O * L, 0.0,
           at(gx, grp * Cg * HW), L, g.C * HW, g.N);
    return;
  }
  const int64_t nb = images_per_chunk(R * L, es, g.N);
  detail::Workspace col(static_cast<size_t>(nb * R * L * es));
  for (int64_t n0 = 0; n0 < g.N; n0 += nb) {
    const int64_t cnt = std::min(nb, g.N - n0);
    for (int64_t grp = 0; grp < g.groups; ++grp)
      gemm(dt, true, false, K, L, Og, 1.0, at(w, grp * Og * K), K, 0, at(gout, (n0 * g.O + grp * Og) * L), L,
           g.O * L, 0.0, at(col.ptr, grp * K * L, es), L, R * L, cnt);
    k::col2im(dt, col.ptr, gx.raw_data(), g, n0, cnt, R * L, L);
  }
}

void conv2d_backward_weight_handwritten(const Tensor& gw, const Tensor& gout, const Tensor& x,
                                        const Conv2dParams& g) {
  const DType dt = x.dtype();
  const int64_t es = x.element_size();
  const int64_t Og = g.O / g.groups, K = (g.C / g.groups) * g.kh * g.kw, L = g.Ho * g.Wo, R = g.C * g.kh * g.kw;
  const int64_t nb = images_per_chunk((R + g.O) * L, es, g.N);
  detail::Workspace col(static_cast<size_t>(nb * R * L * es));    // (R, nb L)
  detail::Workspace gperm(static_cast<size_t>(nb * g.O * L * es));  // (O, nb L)
  for (int64_t n0 = 0; n0 < g.N; n0 += nb) {
    const int64_t cnt = std::min(nb, g.N - n0);
    const int64_t wide = cnt * L;
    // columns of image n at [n L, (n + 1) L) of every row
    k::im2col(dt, x.raw_data(), col.ptr, g, n0, cnt, L, wide);
    // gperm[o][n L + l] = gout[n0 + n][o][l]
    k::Iter it;
    it.nops = 2;
    it.ndim = 3;
    it.numel = g.O * cnt * L;
    const int64_t sizes[3] = {g.O, cnt, L}, dst[3] = {wide, L, 1}, src[3] = {L, g.O * L, 1};
    for (int d = 0; d < 3; ++d) {
      it.sizes[d] = sizes[d];
      it.strides[0][d] = dst[d];
      it.strides[1][d] = src[d];
    }
    k::copy(dt, dt, gperm.ptr, at(gout, n0 * g.O * L), it);
    for (int64_t grp = 0; grp < g.groups; ++grp)
      gemm(dt, false, true, Og, K, wide, 1.0, at(gperm.ptr, grp * Og * wide, es), wide, 0,
           at(col.ptr, grp * K * wide, es), wide, 0, n0 == 0 ? 0.0 : 1.0, at(gw, grp * Og * K), K, 0, 1);
  }
}

// ---- the conv rows of the kernel table: cuDNN when the Conv family's backend says so and cuDNN takes
// the case, else the hand-written kernels above -------------------------------------------------------
namespace {

bool library_conv() { return get_backend(OpFamily::Conv) == Backend::Library; }

// Autocast (p.gemm_dtype BFloat16 / Float16): float32 operands only. true when the GEMMs round.
bool check_precision(const Tensor& operand, const Conv2dParams& p) {
  if (p.gemm_dtype == DType::Float32) return false;
  if (p.gemm_dtype != DType::BFloat16 && p.gemm_dtype != DType::Float16)
    fail("conv2d on CUDA: autocast multiplies in bfloat16 or float16, not {}", dtype_name(p.gemm_dtype));
  if (operand.dtype() != DType::Float32)
    fail("conv2d on CUDA: autocast rounds float32 operands only, got {}", dtype_name(operand.dtype()));
  return true;
}

// Under autocast, cuDNN runs the rounded operands in 16-bit storage (cudnn.cpp); the hand-written
// path gets float32 copies holding the rounded values: the same products (exact in float32), summed
// in float32 as the CPU does.
void conv2d_forward_kernel(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias,
                           const Conv2dParams& p) {
  check_device(out, "conv2d");
  const bool lowp = check_precision(x, p);
  if (library_conv() && cudnn_conv2d_forward(out, x, w, bias, p)) return;
  if (lowp)
    conv2d_forward_handwritten(out, rounded_copy(x, p.gemm_dtype), rounded_copy(w, p.gemm_dtype), bias, p);
  else
    conv2d_forward_handwritten(out, x, w, bias, p);
}

void conv2d_backward_input_kernel(const Tensor& gx, const Tensor& gout, const Tensor& w, const Conv2dParams& p) {
  check_device(gx, "conv2d backward");
  const bool lowp = check_precision(gout, p);
  if (library_conv() && cudnn_conv2d_backward_input(gx, gout, w, p)) return;
  if (lowp)
    conv2d_backward_input_handwritten(gx, rounded_copy(gout, p.gemm_dtype), rounded_copy(w, p.gemm_dtype), p);
  else
    conv2d_backward_input_handwritten(gx, gout, w, p);
}

void conv2d_backward_weight_kernel(const Tensor& gw, const Tensor& gout, const Tensor& x, const Conv2dParams& p) {
  check_device(gw, "conv2d backward");
  const bool lowp = check_precision(x, p);
  if (library_conv() && cudnn_conv2d_backward_weight(gw, gout, x, p)) return;
  if (lowp)
    conv2d_backward_weight_handwritten(gw, rounded_copy(gout, p.gemm_dtype), rounded_copy(x, p.gemm_dtype), p);
  else
    conv2d_backward_weight_handwritten(gw, gout, x, p);
}

void conv2d_backward_bias_kernel(const Tensor& gb, const Tensor& gout) {
  check_device(gb, "conv2d backward");
  const auto& s = gout.sizes();
  k::channel_sum(gb.dtype(), gb.raw_data(), gout.raw_data(), s[0], s[1], s[2] * s[3]);
}

}  // namespace

void register_conv_kernels(KernelTable& t) {
  t.conv2d_forward = conv2d_forward_kernel;
  t.conv2d_backward_input = conv2d_backward_input_kernel;
  t.conv2d_backward_weight = conv2d_backward_weight_kernel;
  t.conv2d_backward_bias = conv2d_backward_bias_kernel;
}

}  // namespace dl::cuda::host
