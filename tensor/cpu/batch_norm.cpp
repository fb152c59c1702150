// CPU batch norm over dim 1 of x viewed as (N, C, S), forward and backward. Channels are split
// over OpenMP threads; each channel's statistics take one pass over its N planes (sums of the
// values shifted by the channel's first element, in double, so a large mean does not cancel the
// variance away), and the output takes a second; both passes walk a group of channels image by
// image (channel_groups). Small planes (S <= 36, (N, C) inputs included) run position-major instead
// (forward_small, backward_small below).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "tensor/cpu/cpu_info.h"
#include "tensor/cpu/loops.h"
#include "tensor/cpu/register.h"

namespace dl::cpu {
namespace {

struct NCS {
  int64_t N, C, S;
};
NCS ncs_of(const Tensor& x) {
  const auto& s = x.sizes();
  int64_t S = 1;
  for (size_t d = 2; d < s.size(); ++d) S *= s[d];
  return {s[0], s[1], S};
}

template <typename T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}
template <typename T>
T* mut_ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

// Channel sums in double (a float running sum of 10^5 values loses digits), kept per channel as 16 partial sums
// of each kind that every plane of the channel adds into: four vectors of 4 doubles a kind (acc[0, 4) and
// acc[4, 8); GCC's vector extensions: an AVX register each, two SSE registers in the baseline clone), loaded and
// stored once a plane and added together once a channel (lane_total). With one vector of partial sums (`omp simd
// reduction`) each addition waited for the one before and every plane ended in a horizontal sum: the statistics
// pass ran at about a value a cycle, under memory bandwidth. (Arrays of partial sums under `omp simd` stayed in
// memory, a store and a load an addition.) Measured on the Zen 4 guest (2 threads, AVX2, batch 64; bench_records/
// 2026-12-05T0135Z-session-bn-partial-sums-zen4): with the data in cache, forward and backward 1.25x faster on
// 128x8x8, 1.15x on 64x16x16, 1.06-1.08x on 64x32x32; with the caches flushed first 1.03-1.10x; in ResNet18's
// training step the forward (+ ReLU) 1.06x, the backward level. The loops are compiled for AVX-512 / AVX2 /
// baseline.
using Sum4 = double __attribute__((vector_size(32)));
// A channel's partial sums. Aligned by hand: the baseline target gives Sum4 16-byte alignment, and the AVX clones
// load them as 32-byte aligned.
struct alignas(64) ChannelSums {
  Sum4 v[8];
  double first() const;   // the sum of v[0, 4)
  double second() const;  // of v[4, 8)
};
// v = p[0, 4) in double (by reference: a vector passed by value would change the ABI between the clones)
template <typename T>
inline void load_sum4(const T* p, Sum4& v) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "float32 or float64");
  if constexpr (std::is_same_v<T, double>)
    std::memcpy(&v, p, sizeof v);
  else
    v = Sum4{static_cast<double>(p[0]), static_cast<double>(p[1]), static_cast<double>(p[2]),
             static_cast<double>(p[3])};
}

// lane j of acc[0, 4) += the values p[i] - shift with i % 16 == j, of acc[4, 8) their squares. (The partial sums
// are named variables, not an array: GCC kept an array of them on the stack.)
template <typename T>
DL_VECTOR_CLONES void sum_shifted(const T* p, int64_t n, double shift, Sum4* acc) {
  Sum4 a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3], b0 = acc[4], b1 = acc[5], b2 = acc[6], b3 = acc[7];
  const auto add = [&](const T* q, Sum4& a, Sum4& b) {
    Sum4 v;
    load_sum4(q, v);
    v -= shift;
    a += v;
    b += v * v;
  };
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    add(p + i, a0, b0), add(p + i + 4, a1, b1), add(p + i + 8, a2, b2), add(p + i + 12, a3, b3);
  acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3, acc[4] = b0, acc[5] = b1, acc[6] = b2, acc[7] = b3;
  for (int j = 0; i < n; ++i, ++j) {  // the last n % 16 values into the first lanes
    const double v = static_cast<double>(p[i]) - shift;
    acc[j / 4][j % 4] += v;
    acc[4 + j / 4][j % 4] += v * v;
  }
}

// lane j of acc[0, 4) += the values g[i] with i % 16 == j, of acc[4, 8) their g[i] * (x[i] - mean)
template <typename T>
DL_VECTOR_CLONES void sum_grad(const T* g, const T* x, int64_t n, double mean, Sum4* acc) {
  Sum4 a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3], b0 = acc[4], b1 = acc[5], b2 = acc[6], b3 = acc[7];
  const auto add = [&](int64_t at, Sum4& a, Sum4& b) {
    Sum4 gv, xv;
    load_sum4(g + at, gv);
    load_sum4(x + at, xv);
    a += gv;
    b += gv * (xv - mean);
  };
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) add(i, a0, b0), add(i + 4, a1, b1), add(i + 8, a2, b2), add(i + 12, a3, b3);
  acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3, acc[4] = b0, acc[5] = b1, acc[6] = b2, acc[7] = b3;
  for (int j = 0; i < n; ++i, ++j) {  // the last n % 16 values into the first lanes
    const double gv = static_cast<double>(g[i]);
    acc[j / 4][j % 4] += gv;
    acc[4 + j / 4][j % 4] += gv * (static_cast<double>(x[i]) - mean);
  }
}

// the sum of four vectors of partial sums, in a fixed order
double lane_total(const Sum4* v) {
  double r = 0;
  for (int k = 0; k < 4; ++k)
    for (int j = 0; j < 4; ++j) r += v[k][j];
  return r;
}
double ChannelSums::first() const { return lane_total(v); }
double ChannelSums::second() const { return lane_total(v + 4); }

// o = (p - mean) * scale + offset, then max(o, 0) when Relu; centring first keeps a large mean
// from cancelling. o never aliases p.
template <bool Relu, typename T>
DL_VECTOR_CLONES void normalize(T* o, const T* p, int64_t n, T mean, T scale, T offset) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const T v = (p[i] - mean) * scale + offset;
    o[i] = Relu ? (v > T(0) ? v : T(0)) : v;
  }
}

// o = max((p - mean) * scale + offset + r, 0): batch norm, residual add and ReLU of a ResNet block
template <typename T>
DL_VECTOR_CLONES void normalize_add_relu(T* o, const T* p, const T* r, int64_t n, T mean, T scale, T offset) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const T v = (p[i] - mean) * scale + offset;
    const T s = v + r[i];
    o[i] = s > T(0) ? s : T(0);
  }
}

// o = a * g - k * (x - mean) + c: the training input gradient
template <typename T>
DL_VECTOR_CLONES void grad_train(T* o, const T* g, const T* x, int64_t n, T a, T k, T c, T mean) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) o[i] = a * g[i] - k * (x[i] - mean) + c;
}

template <typename T>
DL_VECTOR_CLONES void scale_into(T* o, const T* g, int64_t n, T a) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) o[i] = a * g[i];
}

// ---- per channel: the statistics from the sums, and the input gradient's constants (both paths below) ----------

struct ChannelStats {
  double mean, invstd;
};

// Training: from the sums s of (x - shift) and ss of (x - shift)^2 over the channel's M values, the mean and
// 1 / sqrt(var + eps) (biased variance), the running statistics (when given) moved by momentum with the unbiased
// variance. Eval: from the running statistics.
template <typename T>
ChannelStats channel_stats(bool training, double s, double ss, double shift, int64_t M, double momentum, double eps,
                           T* rm, T* rv, int64_t c) {
  if (!training) return {static_cast<double>(rm[c]), 1.0 / std::sqrt(static_cast<double>(rv[c]) + eps)};
  const double dm = s / static_cast<double>(M);
  const double var = std::max(ss / static_cast<double>(M) - dm * dm, 0.0);  // biased
  const ChannelStats st{shift + dm, 1.0 / std::sqrt(var + eps)};
  if (rm) rm[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(rm[c]) + momentum * st.mean);
  if (rv) {
    const double unbiased = var * static_cast<double>(M) / static_cast<double>(M - 1);
    rv[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(rv[c]) + momentum * unbiased);
  }
  return st;
}

// Channel c's statistics (channel_stats) written to mean_out[c] and invstd_out[c], and the forward's constants,
// y = (x - mean) * scale + offset, into mean, scale and offset (both paths below).
template <typename T>
void channel_constants(bool training, double s, double ss, double shift, int64_t M, double momentum, double eps,
                       T* rm, T* rv, const T* w, const T* b, int64_t c, T* mean_out, T* invstd_out, T* mean, T* scale,
                       T* offset) {
  const ChannelStats st = channel_stats(training, s, ss, shift, M, momentum, eps, rm, rv, c);
  mean_out[c] = static_cast<T>(st.mean);
  invstd_out[c] = static_cast<T>(st.invstd);
  *mean = mean_out[c];
  *scale = static_cast<T>(st.invstd * (w ? static_cast<double>(w[c]) : 1.0));
  *offset = b ? b[c] : T(0);
}

// From the sums sg of g and sgx of g * (x - mean) over channel c's M values: gw[c] and gb[c] (where asked for), and
// the input gradient gx = ta * g - tk * (x - mean) + tc, i.e. a * (g - mean(g) - xhat * mean(g * xhat)) with
// a = invstd * w and xhat = (x - mean) * invstd (in eval only ta applies: gx = ta * g).
template <typename T>
void grad_constants(double sg, double sgx, double invstd, const T* w, int64_t M, int64_t c, T* gw, T* gb, T* ta,
                    T* tk, T* tc) {
  if (gw) gw[c] = static_cast<T>(sgx * invstd);
  if (gb) gb[c] = static_cast<T>(sg);
  const double a = invstd * (w ? static_cast<double>(w[c]) : 1.0);
  *ta = static_cast<T>(a);
  *tk = static_cast<T>(a * invstd * invstd * sgx / static_cast<double>(M));
  *tc = static_cast<T>(-a * sg / static_cast<double>(M));
}

// ---- small planes: runs of S <= kSmallPlane values (ResNet18's 4x4 and 2x2 at 64x64; S = 1 for (N, C) inputs) -
// Channel by channel, each (image, channel) run of a few values was a call of its own (a sum, a normalisation),
// and batch norm ran at a fraction of memory bandwidth. Here a block of whole channels is one run in each image:
// sums go into per-position accumulators (reduced per channel at the end), and the channels' constants are
// repeated S times into per-position arrays (channel_blocks below). A batch of one image takes the other path.
// The limit, measured on the Zen 4 guest (2 threads, AVX2, caches flushed before each call; batch 64): the channel
// groups below ran faster from 49 values a plane, more so with many channels (8x8: 128 channels backward 1.2-1.4x,
// forward 1.0-1.4x; 7x7: 96 channels level, 512 channels 1.35x and 1.25x); at 6x6 this path was faster with 128
// channels (1.25-1.35x) and level with 512; below that, faster or level.
constexpr int64_t kSmallPlane = 36;

template <typename T>
DL_VECTOR_CLONES void accumulate_shifted(const T* p, const double* shift, int64_t n, double* s, double* ss) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const double v = static_cast<double>(p[i]) - shift[i];
    s[i] += v;
    ss[i] += v * v;
  }
}

template <typename T>
DL_VECTOR_CLONES void accumulate_grad(const T* g, const T* x, const double* mean, int64_t n, double* sg, double* sgx) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const double gv = static_cast<double>(g[i]);
    sg[i] += gv;
    sgx[i] += gv * (static_cast<double>(x[i]) - mean[i]);
  }
}

// The same arithmetic as normalize / normalize_add_relu / grad_train / scale_into, with per-position constants.
template <bool Relu, typename T>
DL_VECTOR_CLONES void normalize_rows(T* o, const T* p, const T* r, int64_t n, const T* mean, const T* scale,
                                     const T* offset) {
  if (r) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const T s = (p[i] - mean[i]) * scale[i] + offset[i] + r[i];
      o[i] = s > T(0) ? s : T(0);
    }
    return;
  }
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const T v = (p[i] - mean[i]) * scale[i] + offset[i];
    o[i] = Relu ? (v > T(0) ? v : T(0)) : v;
  }
}

template <typename T>
DL_VECTOR_CLONES void grad_rows(T* o, const T* g, const T* x, int64_t n, const T* a, const T* k, const T* c,
                                const T* mean) {
  if (k) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) o[i] = a[i] * g[i] - k[i] * (x[i] - mean[i]) + c[i];
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) o[i] = a[i] * g[i];
  }
}

// f(c0, c1) on each thread's share of the channels, in blocks of whole channels of at most kBlock positions
// (kBlock / S channels): the callers take the block's sums over all the images, then its constants, then its
// outputs, so the second pass finds the block's data (kBlock values an image, 128 KB a tensor at batch 64) in L2,
// and its accumulators and constants (36 to 56 bytes a position: 18 to 28 KB) stay near L1 while the images stream
// through. With fewer channels than threads, some threads have none.
constexpr int64_t kBlock = 512;
static_assert(kSmallPlane <= kBlock, "a block holds at least one channel");
template <typename F>
void channel_blocks(NCS d, F f) {
#pragma omp parallel if (d.N * d.C * d.S > kParallelGrain)
  {
#ifdef _OPENMP
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
    const int64_t t = 0, nt = 1;
#endif
    const int64_t c0 = d.C * t / nt, c1 = d.C * (t + 1) / nt, per = kBlock / d.S;
    for (int64_t c = c0; c < c1; c += per) f(c, std::min(c1, c + per));
  }
}

// v[k] for k < channels, each repeated over its S positions, into out
template <typename T, typename U>
void per_position(const U* v, int64_t channels, int64_t S, T* out) {
  for (int64_t k = 0; k < channels; ++k) std::fill_n(out + k * S, S, static_cast<T>(v[k]));
}

// the sum of a channel's per-position sums, in position order
double channel_sum(const double* v, int64_t S) {
  double r = 0;
  for (int64_t i = 0; i < S; ++i) r += v[i];
  return r;
}

template <bool Relu, typename T>
void forward_small(T* out, T* mean_out, T* invstd_out, const T* x, const T* res, const T* w, const T* b, T* rm, T* rv,
                   NCS d, bool training, double momentum, double eps) {
  const int64_t P = d.C * d.S, M = d.N * d.S;
  channel_blocks(d, [&](int64_t c0, int64_t c1) {
    const int64_t j0 = c0 * d.S, n = (c1 - c0) * d.S;
    alignas(64) double shift[kBlock], s[kBlock], ss[kBlock], shift_c[kBlock];
    alignas(64) T mt[kBlock], scale[kBlock], offset[kBlock], mp[kBlock], sp[kBlock], op[kBlock];
    for (int64_t c = c0; c < c1; ++c) shift_c[c - c0] = training && M > 0 ? static_cast<double>(x[c * d.S]) : 0.0;
    if (training) {
      per_position(shift_c, c1 - c0, d.S, shift);
      std::fill_n(s, n, 0.0), std::fill_n(ss, n, 0.0);
      for (int64_t i = 0; i < d.N; ++i) accumulate_shifted(x + i * P + j0, shift, n, s, ss);
    }
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t k = c - c0;
      const double sc = training ? channel_sum(s + k * d.S, d.S) : 0.0;
      const double ssc = training ? channel_sum(ss + k * d.S, d.S) : 0.0;
      channel_constants(training, sc, ssc, shift_c[k], M, momentum, eps, rm, rv, w, b, c, mean_out, invstd_out, &mt[k],
                        &scale[k], &offset[k]);
    }
    per_position(mt, c1 - c0, d.S, mp), per_position(scale, c1 - c0, d.S, sp), per_position(offset, c1 - c0, d.S, op);
    for (int64_t i = 0; i < d.N; ++i) {
      const int64_t at = i * P + j0;
      normalize_rows<Relu>(out + at, x + at, res ? res + at : nullptr, n, mp, sp, op);
    }
  });
}

template <typename T>
void backward_small(T* gx, T* gw, T* gb, const T* go, const T* x, const T* w, const T* mean_in, const T* invstd_in,
                    NCS d, bool training) {
  const int64_t P = d.C * d.S, M = d.N * d.S;
  const bool need_sums = gw || gb || (gx && training);
  channel_blocks(d, [&](int64_t c0, int64_t c1) {
    const int64_t j0 = c0 * d.S, n = (c1 - c0) * d.S;
    alignas(64) double mean[kBlock], a[kBlock], b[kBlock];
    alignas(64) T ta[kBlock], tk[kBlock], tc[kBlock], ap[kBlock], kp[kBlock], cp[kBlock], mp[kBlock];
    if (need_sums) {
      per_position(mean_in + c0, c1 - c0, d.S, mean);
      std::fill_n(a, n, 0.0), std::fill_n(b, n, 0.0);
      for (int64_t i = 0; i < d.N; ++i) accumulate_grad(go + i * P + j0, x + i * P + j0, mean, n, a, b);
    }
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t k = c - c0;
      const double sg = need_sums ? channel_sum(a + k * d.S, d.S) : 0.0;
      const double sgx = need_sums ? channel_sum(b + k * d.S, d.S) : 0.0;
      grad_constants(sg, sgx, static_cast<double>(invstd_in[c]), w, M, c, gw, gb, &ta[k], &tk[k], &tc[k]);
    }
    if (!gx) return;
    per_position(ta, c1 - c0, d.S, ap), per_position(tk, c1 - c0, d.S, kp), per_position(tc, c1 - c0, d.S, cp);
    per_position(mean_in + c0, c1 - c0, d.S, mp);
    for (int64_t i = 0; i < d.N; ++i) {
      const int64_t at = i * P + j0;
      grad_rows(gx + at, go + at, x + at, n, ap, training ? kp : nullptr, cp, mp);
    }
  });
}

// ---- large planes (and a single image) -------------------------------------------------------------------------
// Both passes (the sums, then the output) go over a group of channels at a time, image by image, so that in each
// image they read the group's planes as one contiguous run; the group's data is sized to half of this thread's
// share of L3, where the second pass finds it. One channel at a time, each plane (1-4 KB in ResNet's early
// layers) was a run of its own at a stride of C * S values: too short for the hardware prefetchers, and the pass
// that touches the data first waited on memory. Measured on the Zen 4 guest (2 threads, AVX2, 4 tensor sets in
// turn so that no call finds its data in L2): forward 16 -> 29 GB/s on 64x64x16x16, 12-17 -> 24-26 on
// 64x128x28x28, 16-18 -> 22-26 on 64x64x32x32; backward 17-18 -> 30-34, 15-21 -> 25, 17-22 -> 20-27 (sizes
// counted once per tensor read or written); groups sized to half of L2 gained only on 16x16. Large planes make
// small groups (the stem's output at 224, 3.2 MB a channel: 2 channels forward, 1 backward, as before). The sums
// per channel are added in the same order (image by image). Threads split the channels; f(g0, g1) runs each
// group. DL_BN_GROUP_BYTES=n sets the budget instead (read on every call; the tests use it for small groups).
template <typename T, typename F>
void channel_groups(NCS d, int tensors_read, F f) {
  int64_t cache = cpu_caches().l3.per_cpu_or(int64_t{4} << 20) / 2;
  if (const char* e = std::getenv("DL_BN_GROUP_BYTES"); e && std::atoll(e) > 0) cache = std::atoll(e);
  const int64_t per_channel = std::max<int64_t>(d.N * d.S * static_cast<int64_t>(sizeof(T)) * tensors_read, 1);
  const int64_t group = std::max<int64_t>(1, cache / per_channel);
#pragma omp parallel if (d.C > 1 && d.N * d.C * d.S > kParallelGrain)
  {
#ifdef _OPENMP
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
    const int64_t t = 0, nt = 1;
#endif
    const int64_t c0 = d.C * t / nt, c1 = d.C * (t + 1) / nt;
    for (int64_t g = c0; g < c1; g += group) f(g, std::min(c1, g + group));
  }
}

template <bool Relu, typename T>
void forward_typed(T* out, T* mean_out, T* invstd_out, const T* x, const T* res, const T* w, const T* b, T* rm, T* rv,
                   NCS d, bool training, double momentum, double eps) {
  if (d.S <= kSmallPlane && d.N > 1) {
    forward_small<Relu>(out, mean_out, invstd_out, x, res, w, b, rm, rv, d, training, momentum, eps);
    return;
  }
  const int64_t M = d.N * d.S;  // values per channel
  channel_groups<T>(d, 1, [&](int64_t c0, int64_t c1) {
    const size_t nc = static_cast<size_t>(c1 - c0);
    std::vector<T> mt(nc), scale(nc), offset(nc);
    std::vector<double> shift(nc, 0.0);
    std::vector<ChannelSums> acc(nc, ChannelSums{});  // zero outside training
    if (training && M > 0) {
      for (int64_t c = c0; c < c1; ++c) shift[static_cast<size_t>(c - c0)] = static_cast<double>(x[c * d.S]);
      for (int64_t n = 0; n < d.N; ++n)
        for (int64_t c = c0; c < c1; ++c) {
          const size_t i = static_cast<size_t>(c - c0);
          sum_shifted(x + (n * d.C + c) * d.S, d.S, shift[i], acc[i].v);
        }
    }
    for (int64_t c = c0; c < c1; ++c) {
      const size_t i = static_cast<size_t>(c - c0);
      channel_constants(training, acc[i].first(), acc[i].second(), shift[i], M, momentum, eps, rm, rv, w, b, c,
                        mean_out, invstd_out, &mt[i], &scale[i], &offset[i]);
    }
    for (int64_t n = 0; n < d.N; ++n)
      for (int64_t c = c0; c < c1; ++c) {
        const size_t i = static_cast<size_t>(c - c0);
        const int64_t at = (n * d.C + c) * d.S;
        if (res)
          normalize_add_relu(out + at, x + at, res + at, d.S, mt[i], scale[i], offset[i]);
        else
          normalize<Relu>(out + at, x + at, d.S, mt[i], scale[i], offset[i]);
      }
  });
}

template <typename T>
void backward_typed(T* gx, T* gw, T* gb, const T* go, const T* x, const T* w, const T* mean_in, const T* invstd_in,
                    NCS d, bool training) {
  if (d.S <= kSmallPlane && d.N > 1) {
    backward_small(gx, gw, gb, go, x, w, mean_in, invstd_in, d, training);
    return;
  }
  const int64_t M = d.N * d.S;
  const bool need_sums = gw || gb || (gx && training);
  channel_groups<T>(d, 2, [&](int64_t c0, int64_t c1) {
    const size_t nc = static_cast<size_t>(c1 - c0);
    // sums of g and of g * (x - mean) over each channel
    std::vector<ChannelSums> acc(nc, ChannelSums{});  // zero where the sums are not needed
    if (need_sums)
      for (int64_t n = 0; n < d.N; ++n)
        for (int64_t c = c0; c < c1; ++c) {
          const size_t i = static_cast<size_t>(c - c0);
          const int64_t at = (n * d.C + c) * d.S;
          sum_grad(go + at, x + at, d.S, static_cast<double>(mean_in[c]), acc[i].v);
        }
    std::vector<T> ta(nc), tk(nc), tc(nc);
    for (int64_t c = c0; c < c1; ++c) {
      const size_t i = static_cast<size_t>(c - c0);
      grad_constants(acc[i].first(), acc[i].second(), static_cast<double>(invstd_in[c]), w, M, c, gw, gb, &ta[i],
                     &tk[i], &tc[i]);
    }
    if (!gx) return;
    for (int64_t n = 0; n < d.N; ++n)
      for (int64_t c = c0; c < c1; ++c) {
        const size_t i = static_cast<size_t>(c - c0);
        const int64_t at = (n * d.C + c) * d.S;
        if (training)
          grad_train(gx + at, go + at, x + at, d.S, ta[i], tk[i], tc[i], mean_in[c]);
        else
          scale_into(gx + at, go + at, d.S, ta[i]);
      }
  });
}

template <bool Relu>
void batch_norm_forward_impl(const Tensor& out, const Tensor& mean, const Tensor& invstd, const Tensor& x,
                             const Tensor& residual, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                             const Tensor& running_var, bool training, double momentum, double eps) {
  DL_DISPATCH_FLOATING(x.dtype(), "batch_norm", [&] {
    forward_typed<Relu, scalar_t>(out.data_ptr<scalar_t>(), mean.data_ptr<scalar_t>(), invstd.data_ptr<scalar_t>(),
                                  x.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(residual), ptr_or_null<scalar_t>(weight),
                                  ptr_or_null<scalar_t>(bias), mut_ptr_or_null<scalar_t>(running_mean),
                                  mut_ptr_or_null<scalar_t>(running_var), ncs_of(x), training, momentum, eps);
  });
}

void batch_norm_forward_kernel(const Tensor& out, const Tensor& mean, const Tensor& invstd, const Tensor& x,
                               const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                               const Tensor& running_var, bool training, double momentum, double eps) {
  batch_norm_forward_impl<false>(out, mean, invstd, x, Tensor(), weight, bias, running_mean, running_var, training,
                                 momentum, eps);
}

void batch_norm_backward_kernel(const Tensor& grad_x, const Tensor& grad_w, const Tensor& grad_b,
                                const Tensor& grad_out, const Tensor& x, const Tensor& weight, const Tensor& mean,
                                const Tensor& invstd, bool training) {
  DL_DISPATCH_FLOATING(x.dtype(), "batch_norm backward", [&] {
    backward_typed<scalar_t>(mut_ptr_or_null<scalar_t>(grad_x), mut_ptr_or_null<scalar_t>(grad_w),
                             mut_ptr_or_null<scalar_t>(grad_b), grad_out.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(),
                             ptr_or_null<scalar_t>(weight), mean.data_ptr<scalar_t>(), invstd.data_ptr<scalar_t>(),
                             ncs_of(x), training);
  });
}

}  // namespace

void register_batch_norm_kernels(KernelTable& t) {
  t.batch_norm_forward = batch_norm_forward_kernel;
  t.batch_norm_relu_forward = batch_norm_forward_impl<true>;
  t.batch_norm_backward = batch_norm_backward_kernel;
}

}  // namespace dl::cpu
