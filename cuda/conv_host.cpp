// The hand-written convolution: im2col (cuda/conv.cu) + GEMM (host::gemm, i.e. the Gemm family's
// backend), over chunks of images so the column buffer stays below kColumnBudget.
//
// With K = C/G * kh * kw, L = Ho * Wo and R = C * kh * kw (the rows of all groups):
//   forward          out_n,g (O/G, L) = W_g (O/G, K) @ col_n,g (K, L)        one batched GEMM per group
//   backward input   col_n,g (K, L)   = W_g^T @ gout_n,g;  gx = col2im(col)    (gather, deterministic)
//   backward weight  gW_g (O/G, K)    = gout_g (O/G, nb L) @ col_g^T (nb L, K), the images of a
//                    chunk laid side by side so one GEMM with a long K dimension does them all
// A 1x1, stride-1, unpadded convolution needs no im2col in the first two.
#include <algorithm>

#include "cuda/host.h"
#include "tensor/error.h"

namespace dl::cuda::host {
namespace {

constexpr int64_t kColumnBudget = int64_t(256) << 20;  // bytes of scratch per chunk

k::ConvGeom geom_of(const Shape& x, const Shape& w, const Shape& out, const ops::Conv2dParams& p) {
  return {x[0],        x[1],        x[2],         x[3],         w[0],         w[2],         w[3],        out[2],
          out[3],      p.stride[0], p.stride[1],  p.padding[0], p.padding[1], p.dilation[0], p.dilation[1], p.groups};
}

bool pointwise(const k::ConvGeom& g) {
  return g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0;
}

int64_t images_per_chunk(int64_t per_image_elems, int64_t esize, int64_t N) {
  const int64_t per = std::max<int64_t>(1, per_image_elems * esize);
  return std::clamp<int64_t>(kColumnBudget / per, 1, N);
}

char* at(const Tensor& t, int64_t elems) { return static_cast<char*>(t.raw_data()) + elems * t.element_size(); }
char* at(void* base, int64_t elems, int64_t esize) { return static_cast<char*>(base) + elems * esize; }

}  // namespace

void conv2d_forward_handwritten(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias,
                                const ops::Conv2dParams& p) {
  const k::ConvGeom g = geom_of(x.sizes(), w.sizes(), out.sizes(), p);
  const DType dt = x.dtype();
  const int64_t es = x.element_size();
  const int64_t Cg = g.C / g.G, Og = g.O / g.G, K = Cg * g.kh * g.kw, L = g.Ho * g.Wo, R = g.C * g.kh * g.kw;
  if (pointwise(g)) {
    for (int64_t grp = 0; grp < g.G; ++grp)
      gemm(dt, false, false, Og, L, K, 1.0, at(w, grp * Og * K), K, 0, at(x, grp * Cg * L), L, g.C * L, 0.0,
           at(out, grp * Og * L), L, g.O * L, g.N);
  } else {
    const int64_t nb = images_per_chunk(R * L, es, g.N);
    detail::Workspace col(static_cast<size_t>(nb * R * L * es));
    for (int64_t n0 = 0; n0 < g.N; n0 += nb) {
      const int64_t cnt = std::min(nb, g.N - n0);
      k::im2col(dt_of(dt), x.raw_data(), col.ptr, g, n0, cnt, R * L, L);
      for (int64_t grp = 0; grp < g.G; ++grp)
        gemm(dt, false, false, Og, L, K, 1.0, at(w, grp * Og * K), K, 0, at(col.ptr, grp * K * L, es), L, R * L, 0.0,
             at(out, (n0 * g.O + grp * Og) * L), L, g.O * L, cnt);
    }
  }
  if (bias.defined()) k::add_channel_bias(dt_of(dt), out.raw_data(), bias.raw_data(), g.N, g.O, L);
}

void conv2d_backward_input_handwritten(const Tensor& gx, const Tensor& gout, const Tensor& w,
                                       const ops::Conv2dParams& p) {
  const k::ConvGeom g = geom_of(gx.sizes(), w.sizes(), gout.sizes(), p);
  const DType dt = gx.dtype();
  const int64_t es = gx.element_size();
  const int64_t Cg = g.C / g.G, Og = g.O / g.G, K = Cg * g.kh * g.kw, L = g.Ho * g.Wo, R = g.C * g.kh * g.kw;
  const int64_t HW = g.H * g.W;
  if (pointwise(g)) {
    for (int64_t grp = 0; grp < g.G; ++grp)
      gemm(dt, true, false, K, L, Og, 1.0, at(w, grp * Og * K), K, 0, at(gout, grp * Og * L), L, g.O * L, 0.0,
           at(gx, grp * Cg * HW), L, g.C * HW, g.N);
    return;
  }
  const int64_t nb = images_per_chunk(R * L, es, g.N);
  detail::Workspace col(static_cast<size_t>(nb * R * L * es));
  for (int64_t n0 = 0; n0 < g.N; n0 += nb) {
    const int64_t cnt = std::min(nb, g.N - n0);
    for (int64_t grp = 0; grp < g.G; ++grp)
      gemm(dt, true, false, K, L, Og, 1.0, at(w, grp * Og * K), K, 0, at(gout, (n0 * g.O + grp * Og) * L), L,
           g.O * L, 0.0, at(col.ptr, grp * K * L, es), L, R * L, cnt);
    k::col2im(dt_of(dt), col.ptr, gx.raw_data(), g, n0, cnt, R * L, L);
  }
}

void conv2d_backward_weight_handwritten(const Tensor& gw, const Tensor& gout, const Tensor& x,
                                        const ops::Conv2dParams& p) {
  const k::ConvGeom g = geom_of(x.sizes(), gw.sizes(), gout.sizes(), p);
  const DType dt = x.dtype();
  const int64_t es = x.element_size();
  const int64_t Og = g.O / g.G, K = (g.C / g.G) * g.kh * g.kw, L = g.Ho * g.Wo, R = g.C * g.kh * g.kw;
  const int64_t nb = images_per_chunk((R + g.O) * L, es, g.N);
  detail::Workspace col(static_cast<size_t>(nb * R * L * es));    // (R, nb L)
  detail::Workspace gperm(static_cast<size_t>(nb * g.O * L * es));  // (O, nb L)
  for (int64_t n0 = 0; n0 < g.N; n0 += nb) {
    const int64_t cnt = std::min(nb, g.N - n0);
    const int64_t wide = cnt * L;
    // columns of image n at [n L, (n + 1) L) of every row
    k::im2col(dt_of(dt), x.raw_data(), col.ptr, g, n0, cnt, L, wide);
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
    k::copy(dt_of(dt), dt_of(dt), gperm.ptr, at(gout, n0 * g.O * L), it);
    for (int64_t grp = 0; grp < g.G; ++grp)
      gemm(dt, false, true, Og, K, wide, 1.0, at(gperm.ptr, grp * Og * wide, es), wide, 0,
           at(col.ptr, grp * K * wide, es), wide, 0, n0 == 0 ? 0.0 : 1.0, at(gw, grp * Og * K), K, 0, 1);
  }
}

}  // namespace dl::cuda::host
