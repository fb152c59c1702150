// The direct convolution's entry points (conv_direct.h): each hands the call to the kernels of the instruction set
// in use, compiled from conv_direct.inc in simd_avx512.cpp and simd_avx2.cpp. This file is compiled
// for the baseline ISA.
#include "tensor/cpu/conv_direct.h"

#include <algorithm>

#include <stdexcept>

#include "tensor/cpu/conv.h"
#include "tensor/cpu/cpu_info.h"

namespace dl::cpu {

int direct_best_isa() {
#if defined(__x86_64__) || defined(__i386__)
  static const int best = [] {
    if (cpu_has_avx512f() && cpu_has_avx512bw()) return 2;
    return cpu_has_avx2() ? 1 : 0;
  }();
  return best;
#else
  return 0;
#endif
}

const DirectKernels* direct_kernels() {
  const int best = direct_best_isa(), want = conv_tuning().direct_isa;
  const int isa = want > 0 && want <= best ? want : best;
  if (isa == 2) return &direct_kernels_avx512();
  if (isa == 1) return &direct_kernels_avx2();
  return nullptr;
}

namespace {
const DirectKernels& kernels() {
  const DirectKernels* k = direct_kernels();
  if (k == nullptr) throw std::runtime_error("the direct convolution needs AVX2 and FMA, which this CPU lacks");
  return *k;
}
}  // namespace

size_t direct_packed_weights_bytes(const DirectConvShape& s) { return kernels().packed_weights_bytes(s); }

void direct_pack_weights(const float* w, const DirectConvShape& s, void* wp, const DirectGradientTaps* from_gradient) {
  kernels().pack_weights(w, s, wp, from_gradient);
}

void direct_pack_phases(const float* w, int n, const DirectConvShape* s, void* const* wp,
                        const DirectGradientTaps* taps) {
  kernels().pack_phases(w, n, s, wp, taps);
}

void direct_conv_images(const float* x, int64_t n, const void* wp, const DirectConvShape& s,
                        const DirectStore& store, int part, int parts) {
  kernels().conv_images(x, n, wp, s, store, part, parts);
}

double direct_weight_grad_skipped_share(const DirectConvShape& s) { return kernels().weight_grad_skipped_share(s); }

bool direct_weight_grad_by_images(const DirectConvShape& s, int64_t n) { return kernels().weight_grad_by_images(s, n); }

size_t direct_weight_grad_bytes(const DirectConvShape& s, int64_t n) {
  const int64_t Hp = rows_padded(s), Wp = cols_padded(s);
  return static_cast<size_t>(n * (Hp * Wp * s.C + s.Ho * s.Wo * s.O)) * sizeof(float);
}

void direct_to_channels_last(const float* x, int64_t b, const DirectConvShape& s, float* xp, bool vector) {
  if (vector) {
    DirectConvShape f = s;
    f.bf16 = false;
    kernels().to_channels_last(x, b, f, xp);
    return;
  }
  const int64_t C = s.C, HW = s.H * s.W, Wp = cols_padded(s), image = rows_padded(s) * Wp * C;
  constexpr int64_t kCb = 8;  // channels a pass over a row: 8 source rows read, 8-value runs written
  std::fill(xp, xp + b * image, 0.0f);
  for (int64_t i = 0; i < b; ++i)
    for (int64_t h = 0; h < s.H; ++h) {
      float* row = xp + i * image + ((h + s.ph) * Wp + s.pw) * C;
      const float* sr = x + i * C * HW + h * s.W;
      for (int64_t c0 = 0; c0 < C; c0 += kCb)
        for (int64_t w = 0; w < s.W; ++w)
          for (int64_t c = c0; c < std::min(c0 + kCb, C); ++c) row[w * C + c] = sr[c * HW + w];
    }
}

void direct_from_channels_last(const float* src, int64_t lda, int64_t len, int64_t on, float* rows, int64_t ld,
                               bool vector) {
  if (vector && on % kernels().lanes == 0) {  // whole vectors: the transposes never read past a position's channels
    kernels().from_channels_last(src, lda, len, on, rows, ld);
    return;
  }
  for (int64_t o = 0; o < on; ++o)
    for (int64_t l = 0; l < len; ++l) rows[o * ld + l] = src[l * lda + o];
}

void direct_weight_grad(const float* x, const float* gout, int64_t n, const DirectConvShape& s, float* gw) {
  kernels().weight_grad(x, gout, n, s, gw);
}

bool direct_planar_applies(const DirectConvShape& s) {
  return direct_kernels() != nullptr && !s.bf16 && s.sh >= 1 && s.sw >= 1 && s.ph_end < 0 && s.pw_end < 0 &&
         s.Ho > 0 && s.Wo > 0;
}

void direct_planar_forward(const float* x, int64_t n, const float* w, const float* bias, const DirectConvShape& s,
                           int64_t o0, int64_t o1, float* out) {
  kernels().planar_forward(x, n, w, bias, s, o0, o1, out);
}

void direct_planar_weight_grad(const float* x, const float* gout, int64_t n, const DirectConvShape& s, int64_t o0,
                               int64_t o1, float* gw) {
  kernels().planar_weight_grad(x, gout, n, s, o0, o1, gw);
}

}  // namespace dl::cpu
