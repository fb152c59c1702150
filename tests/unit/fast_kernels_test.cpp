// The fast CPU paths against simple definitions on odd shapes: convolution (one image per GEMM, with and without
// the inference epilogue of scale, shift, residual and ReLU,
// several images per GEMM, 1x1, groups, strides, dilation, Winograd; one thread and two; the
// implicit GEMM on every GEMM kernel; the per-shape algorithm search and its cache file), the
// vectorised elementwise loops (in place, broadcast scalars, overlapping views, tails), the fused
// ReLU backward and batch norm + ReLU, the pooling fast paths (indexed and values only), the caching allocator and the
// engine's in-place gradient accumulation.
#include <unistd.h>

#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <limits>
#include <random>
#include <thread>
#include <vector>

#include "autograd/functional.h"
#include "autograd/node.h"
#include "tensor/cpu/conv.h"
#include "tensor/cpu/conv_direct.h"
#include "tensor/cpu/convert16.h"
#include "tensor/cpu/cpu_info.h"
#include "tensor/cpu/winograd.h"
#include "tensor/dispatch.h"
#include "tensor/nn_ops.h"
#include "tensor/ops.h"
#include "test_util.h"

#ifdef _OPENMP
#include <omp.h>
#endif

using namespace dl;
using dl::test::ScopedEnv;

namespace {

Tensor uniform(const Shape& s, uint64_t seed, DType dt, double lo = -1.0, double hi = 1.0) {
  Generator g(seed);
  return ops::to_dtype(ops::binary_scalar(ops::BinaryOp::Add,
                                          ops::binary_scalar(ops::BinaryOp::Mul, rand(s, DType::Float64, &g), hi - lo), lo),
                       dt);
}

void set_threads(int n) {
#ifdef _OPENMP
  omp_set_num_threads(n);
#else
  (void)n;
#endif
}

// Restores the convolution knobs and the thread count when a test case ends. The knobs steer the fixed rules,
// so the case runs them (DL_CONV_ALGO=heuristic) rather than the per-shape search. The direct convolution is
// off unless a case turns it on: the fixed rule would take it before the paths the other cases aim at.
struct ConvKnobs {
  ScopedEnv heuristic{"DL_CONV_ALGO", "heuristic"};
  cpu::ConvTuning saved = cpu::conv_tuning();
#ifdef _OPENMP
  int threads = omp_get_max_threads();
#endif
  ConvKnobs() {
    cpu::conv_tuning().direct = 0;
    cpu::conv_tuning().planar = 0;
  }
  ~ConvKnobs() {
    cpu::conv_tuning() = saved;
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
  }
};

struct ConvCase {
  int64_t N, C, H, W, O, kh, kw;
  Conv2dParams p;
};

int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t pad, int64_t d) { return (in + 2 * pad - d * (k - 1) - 1) / s + 1; }

// The definitions, as loops in double: forward, and the two gradients given grad_out.
struct DirectConv {
  ConvCase c;
  int64_t Ho, Wo;
  explicit DirectConv(const ConvCase& cc)
      : c(cc), Ho(out_size(cc.H, cc.kh, cc.p.stride[0], cc.p.padding[0], cc.p.dilation[0])),
        Wo(out_size(cc.W, cc.kw, cc.p.stride[1], cc.p.padding[1], cc.p.dilation[1])) {}
  // calls f(n, o, c, oh, ow, ih, iw, i, j) for every tap that lands inside the image
  template <typename F>
  void taps(F f) const {
    const int64_t G = c.p.groups, Cg = c.C / G, Og = c.O / G;
    for (int64_t n = 0; n < c.N; ++n)
      for (int64_t o = 0; o < c.O; ++o)
        for (int64_t ci = 0; ci < Cg; ++ci)
          for (int64_t oh = 0; oh < Ho; ++oh)
            for (int64_t ow = 0; ow < Wo; ++ow)
              for (int64_t i = 0; i < c.kh; ++i)
                for (int64_t j = 0; j < c.kw; ++j) {
                  const int64_t ih = oh * c.p.stride[0] - c.p.padding[0] + i * c.p.dilation[0];
                  const int64_t iw = ow * c.p.stride[1] - c.p.padding[1] + j * c.p.dilation[1];
                  if (ih < 0 || ih >= c.H || iw < 0 || iw >= c.W) continue;
                  f(n, o, (o / Og) * Cg + ci, ci, oh, ow, ih, iw, i, j);
                }
  }
  Tensor forward(const Tensor& x, const Tensor& w, const Tensor& b) const {
    auto xv = x.to_vector<double>(), wv = w.to_vector<double>();
    std::vector<double> out(static_cast<size_t>(c.N * c.O * Ho * Wo), 0.0);
    if (b.defined()) {
      auto bv = b.to_vector<double>();
      for (size_t k = 0; k < out.size(); ++k) out[k] = bv[(k / static_cast<size_t>(Ho * Wo)) % static_cast<size_t>(c.O)];
    }
    const int64_t Cg = c.C / c.p.groups;
    taps([&](int64_t n, int64_t o, int64_t ch, int64_t ci, int64_t oh, int64_t ow, int64_t ih, int64_t iw, int64_t i, int64_t j) {
      out[((n * c.O + o) * Ho + oh) * Wo + ow] +=
          xv[((n * c.C + ch) * c.H + ih) * c.W + iw] * wv[((o * Cg + ci) * c.kh + i) * c.kw + j];
    });
    return from_vector(out, {c.N, c.O, Ho, Wo});
  }
  Tensor grad_input(const Tensor& gout, const Tensor& w) const {
    auto gv = gout.to_vector<double>(), wv = w.to_vector<double>();
    std::vector<double> gx(static_cast<size_t>(c.N * c.C * c.H * c.W), 0.0);
    const int64_t Cg = c.C / c.p.groups;
    taps([&](int64_t n, int64_t o, int64_t ch, int64_t ci, int64_t oh, int64_t ow, int64_t ih, int64_t iw, int64_t i, int64_t j) {
      gx[((n * c.C + ch) * c.H + ih) * c.W + iw] +=
          gv[((n * c.O + o) * Ho + oh) * Wo + ow] * wv[((o * Cg + ci) * c.kh + i) * c.kw + j];
    });
    return from_vector(gx, {c.N, c.C, c.H, c.W});
  }
  Tensor grad_weight(const Tensor& gout, const Tensor& x) const {
    auto gv = gout.to_vector<double>(), xv = x.to_vector<double>();
    const int64_t Cg = c.C / c.p.groups;
    std::vector<double> gw(static_cast<size_t>(c.O * Cg * c.kh * c.kw), 0.0);
    taps([&](int64_t n, int64_t o, int64_t ch, int64_t ci, int64_t oh, int64_t ow, int64_t ih, int64_t iw, int64_t i, int64_t j) {
      gw[((o * Cg + ci) * c.kh + i) * c.kw + j] +=
          gv[((n * c.O + o) * Ho + oh) * Wo + ow] * xv[((n * c.C + ch) * c.H + ih) * c.W + iw];
    });
    return from_vector(gw, {c.O, Cg, c.kh, c.kw});
  }
};

// Every kernel of one case against the loops, in float64 (tight) and float32 (2e-5 relative and absolute: the
// sums have up to a few hundred terms of O(1); tol32 where a kernel rounds more, as Winograd F(4x4) does).
void check_conv_case(const ConvCase& cc, const char* what, double tol32 = 2e-5) {
  DirectConv d(cc);
  for (DType dt : {DType::Float64, DType::Float32}) {
    const double tol = dt == DType::Float64 ? 1e-11 : tol32;
    Tensor x = uniform({cc.N, cc.C, cc.H, cc.W}, 1, dt);
    Tensor w = uniform({cc.O, cc.C / cc.p.groups, cc.kh, cc.kw}, 2, dt);
    Tensor b = uniform({cc.O}, 3, dt);
    Tensor gout = uniform({cc.N, cc.O, d.Ho, d.Wo}, 4, dt);
    INFO(what << " dtype " << dtype_name(dt) << " N" << cc.N << " C" << cc.C << " " << cc.H << "x" << cc.W << " O"
              << cc.O << " k" << cc.kh << "x" << cc.kw << " s" << cc.p.stride[0] << "," << cc.p.stride[1] << " p"
              << cc.p.padding[0] << "," << cc.p.padding[1] << " d" << cc.p.dilation[0] << "," << cc.p.dilation[1]
              << " g" << cc.p.groups);
    Tensor y = ops::conv2d_forward(x, w, b, cc.p);
    CHECK_CLOSE(ops::to_dtype(y, DType::Float64), d.forward(x, w, b), tol, tol);
    Tensor y_nobias = ops::conv2d_forward(x, w, Tensor(), cc.p);
    CHECK_CLOSE(ops::to_dtype(y_nobias, DType::Float64), d.forward(x, w, Tensor()), tol, tol);
    // the inference epilogue (BatchNorm2d::forward_conv): scale, shift, residual and ReLU, each on or off
    Tensor scale = uniform({cc.O}, 5, dt, 0.5, 2.0), shift = uniform({cc.O}, 6, dt), res = uniform(y.sizes(), 7, dt);
    {  // a NaN in the residual: the ReLU makes it 0, as the framework's ReLU does; without ReLU it stays NaN
      auto rv = res.to_vector<double>();
      rv[rv.size() / 3] = std::nan("");
      res = ops::to_dtype(from_vector(rv, res.sizes()), dt);
    }
    const Tensor plain = d.forward(x, w, Tensor());
    for (int mask = 1; mask < 16; ++mask) {
      const bool with_scale = mask & 1, with_shift = mask & 2, with_res = mask & 4, relu = mask & 8;
      INFO("epilogue: scale " << with_scale << " shift " << with_shift << " residual " << with_res << " relu " << relu);
      Tensor expect = plain;
      const Shape per_channel{1, cc.O, 1, 1};
      if (with_scale) expect = expect * ops::to_dtype(scale, DType::Float64).view(per_channel);
      if (with_shift) expect = expect + ops::to_dtype(shift, DType::Float64).view(per_channel);
      if (with_res) expect = expect + ops::to_dtype(res, DType::Float64);
      if (relu) expect = expect.relu();
      Tensor got = ops::conv2d_forward_affine(x, w, with_scale ? scale : Tensor(), with_shift ? shift : Tensor(),
                                              with_res ? res : Tensor(), relu, cc.p);
      Tensor got64 = ops::to_dtype(got, DType::Float64);
      const size_t nan_at = static_cast<size_t>(res.numel() / 3);
      if (with_res) {
        const double v = got64.to_vector<double>()[nan_at], e = expect.to_vector<double>()[nan_at];
        CHECK((relu ? v == 0.0 : std::isnan(v)));
        CHECK((std::isnan(v) == std::isnan(e)));
        // compare the rest: put the same finite value at the NaN's place on both sides
        auto gv = got64.to_vector<double>(), ev = expect.to_vector<double>();
        gv[nan_at] = ev[nan_at] = 0.0;
        got64 = from_vector(gv, got64.sizes());
        expect = from_vector(ev, expect.sizes());
      }
      // the scale (up to 2) multiplies the convolution's own error
      CHECK_CLOSE(got64, expect, 2 * tol, 2 * tol);
    }
    CHECK_CLOSE(ops::to_dtype(ops::conv2d_backward_input(gout, w, x.sizes(), cc.p), DType::Float64),
                d.grad_input(gout, w), tol, tol);
    CHECK_CLOSE(ops::to_dtype(ops::conv2d_backward_weight(gout, x, w.sizes(), cc.p), DType::Float64),
                d.grad_weight(gout, x), tol, tol);
  }
}

ConvCase conv_case(int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh, int64_t kw, std::array<int64_t, 2> s,
                   std::array<int64_t, 2> pad, std::array<int64_t, 2> dil = {1, 1}, int64_t groups = 1) {
  Conv2dParams p;
  p.stride = s;
  p.padding = pad;
  p.dilation = dil;
  p.groups = groups;
  return {N, C, H, W, O, kh, kw, p};
}

std::vector<ConvCase> odd_conv_cases() {
  return {
      conv_case(5, 3, 7, 9, 4, 3, 3, {1, 1}, {1, 1}),                // "same" 3x3 (the shifted-row im2col)
      conv_case(5, 3, 7, 9, 4, 3, 2, {2, 1}, {1, 0}, {1, 2}),        // rectangular, strided, dilated
      conv_case(3, 6, 5, 6, 4, 1, 1, {1, 1}, {0, 0}, {1, 1}, 2),     // 1x1 (no im2col), two groups
      conv_case(4, 5, 9, 7, 3, 1, 1, {2, 2}, {0, 0}),                // 1x1 stride 2 (ResNet's downsample)
      conv_case(3, 4, 11, 10, 6, 7, 7, {2, 2}, {3, 3}),              // the stem's 7x7 / 2
      conv_case(7, 4, 3, 3, 6, 3, 3, {1, 1}, {1, 1}, {1, 1}, 2),     // 3x3 planes (tiny L), groups
      conv_case(2, 1, 1, 1, 3, 1, 1, {1, 1}, {0, 0}),                // one pixel
      conv_case(6, 34, 6, 5, 33, 3, 3, {1, 1}, {1, 1}),              // enough channels for Winograd, odd width
      conv_case(3, 32, 7, 8, 40, 3, 3, {1, 1}, {1, 1}),              // Winograd, odd height
  };
}

}  // namespace

TEST_CASE("fast conv: one image per GEMM, one and two threads, against the definition") {
  ConvKnobs knobs;
  cpu::conv_tuning().target_columns = 1;  // every image alone
  cpu::conv_tuning().winograd_min_channels = 0;
  for (int threads : {1, 2}) {
    set_threads(threads);
    for (const ConvCase& c : odd_conv_cases()) check_conv_case(c, threads == 1 ? "B=1, 1 thread" : "B=1, 2 threads");
  }
}

TEST_CASE("fast conv: several images per GEMM (gathered planes), against the definition") {
  ConvKnobs knobs;
  cpu::conv_tuning().target_columns = 1 << 20;  // as many images per GEMM as a thread has
  cpu::conv_tuning().winograd_min_channels = 0;
  for (int threads : {1, 2}) {
    set_threads(threads);
    for (const ConvCase& c : odd_conv_cases()) check_conv_case(c, "B>1");
  }
  // a column budget that splits a thread's images into uneven chunks
  cpu::conv_tuning().target_columns = 20;
  set_threads(1);
  check_conv_case(conv_case(7, 3, 4, 3, 5, 3, 3, {1, 1}, {1, 1}), "chunks of 2 images");
  cpu::conv_tuning().max_col_bytes = 1;  // the buffer cap wins: back to one image per GEMM
  check_conv_case(conv_case(7, 3, 4, 3, 5, 3, 3, {1, 1}, {1, 1}), "capped buffer");
}

TEST_CASE("fast conv: Winograd F(2x2, 3x3) and F(4x4, 3x3) against the definition") {
  ConvKnobs knobs;
  cpu::conv_tuning().winograd_min_channels = 1;  // every 3x3 / stride 1 case
  cpu::conv_tuning().winograd_max_channels = 1 << 20;
  cpu::conv_tuning().winograd_min_plane = 0;
  for (int tile : {2, 4}) {
    cpu::conv_tuning().winograd_tile = tile;
    INFO("output tile " << tile << "x" << tile);
    // F(4x4)'s transforms multiply the transformed sums' rounding by up to 8 (its A^T): 2.5x the float32 bound
    // (the largest error on these cases is 1.3x it; the next test measures the growth with the channels)
    const double tol32 = tile == 2 ? 2e-5 : 5e-5;
    for (int threads : {1, 2}) {
      set_threads(threads);
      for (const ConvCase& c : odd_conv_cases()) check_conv_case(c, "winograd", tol32);
      {  // blocks of 24 tiles (the least): blocks that end inside an image and blocks that span images
        cpu::conv_tuning().winograd_block_bytes = 1;
        for (const ConvCase& c : odd_conv_cases()) check_conv_case(c, "winograd, blocks of 24 tiles", tol32);
        cpu::conv_tuning().winograd_block_bytes = knobs.saved.winograd_block_bytes;
      }
      // planes that are and are not multiples of the tile, padding 0, 1 and 2 (the input gradient of
      // padding 0), more tiles than one block (30 x 30: 225 F(2x2) tiles an image), fewer images than
      // threads (the tiles split over the threads)
      check_conv_case(conv_case(3, 5, 9, 11, 7, 3, 3, {1, 1}, {0, 0}), "winograd, valid", tol32);
      check_conv_case(conv_case(2, 3, 16, 13, 4, 3, 3, {1, 1}, {1, 1}), "winograd, 16x13", tol32);
      check_conv_case(conv_case(2, 4, 10, 18, 5, 3, 3, {1, 1}, {2, 2}), "winograd, padding 2", tol32);
      check_conv_case(conv_case(2, 3, 3, 3, 4, 3, 3, {1, 1}, {0, 0}), "winograd, one output pixel", tol32);
      check_conv_case(conv_case(3, 6, 30, 30, 5, 3, 3, {1, 1}, {1, 1}), "winograd, several blocks", tol32);
      check_conv_case(conv_case(1, 6, 30, 30, 5, 3, 3, {1, 1}, {1, 1}), "winograd, one image", tol32);
      // channels and planes past a multiple of 8 (the AVX2 transposes' 8 x 8 blocks and their edges)
      check_conv_case(conv_case(2, 19, 10, 13, 17, 3, 3, {1, 1}, {1, 1}), "winograd, 19 -> 17 channels", tol32);
      // kernels transformed into the GEMMs' panels: more than one block of 32 rows, a last panel partly past the
      // output channels (16 or 32 columns a panel)
      check_conv_case(conv_case(2, 70, 6, 7, 37, 3, 3, {1, 1}, {1, 1}), "winograd, 70 -> 37 channels", tol32);
    }
    // the transforms' baseline x86-64 build (the AVX2 + FMA one ran above where the CPU has it)
    cpu::conv_tuning().winograd_avx2 = false;
    for (const ConvCase& c : odd_conv_cases()) check_conv_case(c, "winograd, baseline transforms", tol32);
    cpu::conv_tuning().winograd_avx2 = true;
  }
}

// The weight gradient as Winograd F(3x3, 2x2) (cpu::winograd_weight_grad, a candidate of the algorithm search),
// called directly on the 3x3 stride-1 single-group cases: float64 tight, float32 within check_conv_case's bound;
// planes odd and even, padding 0, 1 and 2, blocks of 24 tiles (spanning images), fewer images than threads, both
// builds of the transforms, the sums split by images and shared.
TEST_CASE("fast conv: Winograd F(3x3, 2x2) weight gradient against the definition") {
  ConvKnobs knobs;
  std::vector<ConvCase> cases;
  for (const ConvCase& c : odd_conv_cases())
    if (c.kh == 3 && c.kw == 3 && c.p.stride[0] == 1 && c.p.stride[1] == 1 && c.p.dilation[0] == 1 &&
        c.p.dilation[1] == 1 && c.p.groups == 1 && c.p.padding[0] == c.p.padding[1])
      cases.push_back(c);
  cases.push_back(conv_case(3, 5, 9, 11, 7, 3, 3, {1, 1}, {0, 0}));
  cases.push_back(conv_case(2, 4, 10, 18, 5, 3, 3, {1, 1}, {2, 2}));
  cases.push_back(conv_case(1, 6, 30, 30, 5, 3, 3, {1, 1}, {1, 1}));
  cases.push_back(conv_case(2, 3, 3, 3, 4, 3, 3, {1, 1}, {0, 0}));
  cases.push_back(conv_case(2, 19, 10, 13, 17, 3, 3, {1, 1}, {1, 1}));  // the 8 x 8 transposes and their edges
  REQUIRE(cases.size() >= 8);
  for (int64_t block_bytes : {knobs.saved.winograd_block_bytes, int64_t{1}})
    for (bool avx2 : {true, false})
      for (int threads : {1, 2})
      for (int split : {1, 2}) {
        cpu::conv_tuning().winograd_block_bytes = block_bytes;
        cpu::conv_tuning().winograd_avx2 = avx2;
        cpu::conv_tuning().winograd_dw_split = split;
        set_threads(threads);
        for (const ConvCase& cc : cases) {
          DirectConv d(cc);
          INFO("N" << cc.N << " C" << cc.C << " " << cc.H << "x" << cc.W << " O" << cc.O << " pad " << cc.p.padding[0]
                   << " threads " << threads << " avx2 " << avx2 << " block bytes " << block_bytes << " split "
                   << (split == 1 ? "by images" : "shared"));
          for (DType dt : {DType::Float64, DType::Float32}) {
            const double tol = dt == DType::Float64 ? 1e-11 : 2e-5;
            Tensor x = uniform({cc.N, cc.C, cc.H, cc.W}, 1, dt);
            Tensor gout = uniform({cc.N, cc.O, d.Ho, d.Wo}, 4, dt);
            Tensor gw = zeros({cc.O, cc.C, 3, 3}, dt);
            if (dt == DType::Float64)
              cpu::winograd_weight_grad(gw.data_ptr<double>(), x.data_ptr<double>(), gout.data_ptr<double>(), cc.N, cc.C,
                                        cc.H, cc.W, cc.O, cc.p.padding[0]);
            else
              cpu::winograd_weight_grad(gw.data_ptr<float>(), x.data_ptr<float>(), gout.data_ptr<float>(), cc.N, cc.C,
                                        cc.H, cc.W, cc.O, cc.p.padding[0]);
            CHECK_CLOSE(ops::to_dtype(gw, DType::Float64), d.grad_weight(gout, x), tol, tol);
          }
        }
      }
}

// Winograd's rounding error on the channel counts of ResNet18 (up to 512 x 9 products a sum), float32, against
// im2col + GEMM's on the same data: F(2x2) within 3x of it (measured 0.4-1.7x), F(4x4) within 20x (2.5x at 64
// channels, 5x at 256, 14x at 512) and under 1e-5 of the largest output.
TEST_CASE("fast conv: Winograd rounding error on wide layers, against im2col + GEMM") {
  ConvKnobs knobs;
  cpu::conv_tuning().winograd_min_channels = 1;
  cpu::conv_tuning().winograd_max_channels = 1 << 20;
  cpu::conv_tuning().winograd_min_plane = 0;
  set_threads(2);
  for (int64_t C : {64, 256, 512}) {
    const ConvCase cc = conv_case(2, C, 8, 8, 16, 3, 3, {1, 1}, {1, 1});
    DirectConv d(cc);
    Tensor x = uniform({cc.N, cc.C, cc.H, cc.W}, 1, DType::Float32);
    Tensor w = uniform({cc.O, cc.C, 3, 3}, 2, DType::Float32);
    const auto expect = d.forward(x, w, Tensor()).to_vector<double>();
    double scale = 0;
    for (double v : expect) scale = std::max(scale, std::abs(v));
    double err[5] = {};
    for (int tile : {0, 2, 4}) {  // 0: im2col + GEMM (Winograd off)
      cpu::conv_tuning().winograd_min_channels = tile ? 1 : 0;
      if (tile) cpu::conv_tuning().winograd_tile = tile;
      const auto got = ops::to_dtype(ops::conv2d_forward(x, w, Tensor(), cc.p), DType::Float64).to_vector<double>();
      for (size_t i = 0; i < got.size(); ++i) err[tile] = std::max(err[tile], std::abs(got[i] - expect[i]));
    }
    MESSAGE("C " << C << ": largest output " << scale << ", error GEMM " << err[0] << ", F(2x2) " << err[2] << ", F(4x4) " << err[4]);
    CHECK(err[0] > 0);  // the GEMM rounded (the comparisons below mean something)
    CHECK(err[2] <= 3 * err[0]);
    CHECK(err[4] <= 20 * err[0]);
    CHECK(err[4] <= 1e-5 * scale);
  }
}

TEST_CASE("fast conv: the im2col packed straight from the images (implicit GEMM), all three passes, against the definition") {
  ConvKnobs knobs;
  // every pass of every layer but 1x1 stride 1: the forward, the weight gradient, and the stride-1 single-group
  // input gradients as forwards of the output gradient
  cpu::conv_tuning().packed_forward = 2;
  cpu::conv_tuning().winograd_min_channels = 0;
  // wide planes (runs of 16+ pixels: masked loads, one or two runs per 16 lanes), stride 2 (even elements of
  // two loads), dilation (gathers), planes narrower than a panel (several images per panel), tails of panels
  // and chunks
  std::vector<ConvCase> cases = odd_conv_cases();
  cases.push_back(conv_case(3, 5, 19, 37, 6, 3, 3, {1, 1}, {1, 1}));
  cases.push_back(conv_case(2, 4, 17, 33, 5, 3, 3, {2, 2}, {1, 1}));
  cases.push_back(conv_case(3, 3, 12, 21, 4, 5, 3, {1, 1}, {2, 0}, {2, 1}));
  // the packer of every GEMM kernel this CPU has (their panel widths differ: AVX-512's takes the vector path)
  for (const char* kernel : {"", "avx2", "portable"}) {
    ScopedEnv k("DL_GEMM_KERNEL", *kernel ? kernel : nullptr);
    for (int64_t columns : {int64_t{1}, int64_t{20}, int64_t{1} << 20}) {
      cpu::conv_tuning().target_columns = columns;
      for (int threads : {1, 2}) {
        set_threads(threads);
        for (const ConvCase& c : cases) check_conv_case(c, "packed");
      }
    }
  }
  // the weight gradient's images walked once with the GEMMs on the threads (no partial gradients), as on small
  // planes with large gradients (ConvTuning::weight_grad_shared_*)
  cpu::conv_tuning().weight_grad_shared_bytes = 0;
  cpu::conv_tuning().weight_grad_shared_columns = int64_t{1} << 40;
  set_threads(2);
  for (int64_t columns : {int64_t{1}, int64_t{1} << 20}) {
    cpu::conv_tuning().target_columns = columns;
    for (const ConvCase& c : cases) check_conv_case(c, "packed, shared weight gradient");
  }
}

TEST_CASE("conv2d_forward_affine: the composition where a device has no fused kernel, and bad shapes named") {
  Conv2dParams p;
  p.padding = {1, 1};
  Tensor x = uniform({2, 3, 6, 6}, 1, DType::Float32), w = uniform({4, 3, 3, 3}, 2, DType::Float32);
  Tensor sc = uniform({4}, 3, DType::Float32, 0.5, 2.0), sh = uniform({4}, 4, DType::Float32);
  Tensor r = uniform({2, 4, 6, 6}, 5, DType::Float32);
  Tensor fused = ops::conv2d_forward_affine(x, w, sc, sh, r, true, p);
  {
    struct NoFusedKernel {  // as on a device without the fused kernel; restored however the scope ends
      decltype(KernelTable::conv2d_forward_affine)& entry = kernels(DeviceType::CPU).conv2d_forward_affine;
      decltype(KernelTable::conv2d_forward_affine) saved = entry;
      NoFusedKernel() { entry = nullptr; }
      ~NoFusedKernel() { entry = saved; }
    } none;
    Tensor composed = ops::conv2d_forward_affine(x, w, sc, sh, r, true, p);
    CHECK_CLOSE(fused, composed, 1e-6, 1e-6);
  }
  CHECK_THROWS_WITH_AS(ops::conv2d_forward_affine(x, w, ones({3}), sh, r, true, p),
                       doctest::Contains("the scale has shape [3]"), Error);
  CHECK_THROWS_WITH_AS(ops::conv2d_forward_affine(x, w, sc, ones({4, 1}), r, true, p),
                       doctest::Contains("the shift has shape [4, 1]"), Error);
  CHECK_THROWS_WITH_AS(ops::conv2d_forward_affine(x, w, sc, sh, ones({2, 4, 6, 5}), true, p),
                       doctest::Contains("the residual has shape [2, 4, 6, 5]"), Error);
  CHECK_THROWS_WITH_AS(ops::conv2d_forward_affine(x, w, ops::to_dtype(sc, DType::Float64), sh, r, true, p),
                       doctest::Contains("scale"), Error);
}

TEST_CASE("fast conv: the implicit GEMM computes the same sums as im2col + GEMM on random shapes") {
  // The same products in the same order: the forward and the weight gradient must match bit for bit; the
  // input gradient (a forward with flipped kernels, or for a strided layer a channels-last col2im, instead of
  // GEMM + col2im) sums in another order.
  ConvKnobs knobs;
  cpu::conv_tuning().winograd_min_channels = 0;
  std::mt19937 rng(20261202);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  int checked = 0;
  for (int it = 0; it < 150; ++it) {
    const int64_t G = pick(1, 3), N = pick(1, 9), C = G * pick(1, 6), O = G * pick(1, 6), kh = pick(1, 5),
                  kw = pick(1, 5), H = pick(kh, 20), W = pick(kw, 40);
    Conv2dParams p;
    p.stride = {pick(1, 3), pick(1, 3)};
    p.dilation = {pick(1, 2), pick(1, 2)};
    p.padding = {pick(0, static_cast<int>(kh)), pick(0, static_cast<int>(kw))};
    p.groups = G;
    const int64_t Ho = out_size(H, kh, p.stride[0], p.padding[0], p.dilation[0]),
                  Wo = out_size(W, kw, p.stride[1], p.padding[1], p.dilation[1]);
    if (Ho < 1 || Wo < 1) continue;
    set_threads(pick(1, 2));
    cpu::conv_tuning().target_columns = std::vector<int64_t>{1, 20, 512, 1 << 20}[static_cast<size_t>(pick(0, 3))];
    Tensor x = uniform({N, C, H, W}, 100 + it, DType::Float32), w = uniform({O, C / G, kh, kw}, 200 + it, DType::Float32);
    Tensor b = uniform({O}, 300 + it, DType::Float32), gout = uniform({N, O, Ho, Wo}, 400 + it, DType::Float32);
    auto passes = [&](int packed) {
      cpu::conv_tuning().packed_forward = packed;
      return std::array<Tensor, 3>{ops::conv2d_forward(x, w, b, p), ops::conv2d_backward_input(gout, w, x.sizes(), p),
                                   ops::conv2d_backward_weight(gout, x, w.sizes(), p)};
    };
    const auto im2col = passes(0), packed = passes(2);
    INFO("N" << N << " C" << C << " O" << O << " groups " << G << " k" << kh << "x" << kw << " " << H << "x" << W
              << " stride " << p.stride[0] << "," << p.stride[1] << " dilation " << p.dilation[0] << ","
              << p.dilation[1] << " padding " << p.padding[0] << "," << p.padding[1]);
    CHECK(packed[0].to_vector<float>() == im2col[0].to_vector<float>());
    CHECK_CLOSE(packed[1], im2col[1], 1e-5, 1e-5);
    CHECK(packed[2].to_vector<float>() == im2col[2].to_vector<float>());
    // the weight gradient's channels-last copy, the strided input gradient's way back and the forward's panels
    // (AVX2 packer) by the scalar loops
    cpu::conv_tuning().vector_im2col = false;
    CHECK(ops::conv2d_forward(x, w, b, p).to_vector<float>() == im2col[0].to_vector<float>());
    CHECK(ops::conv2d_backward_weight(gout, x, w.sizes(), p).to_vector<float>() == im2col[2].to_vector<float>());
    CHECK(ops::conv2d_backward_input(gout, w, x.sizes(), p).to_vector<float>() == packed[1].to_vector<float>());
    cpu::conv_tuning().vector_im2col = true;
    ++checked;
  }
  CHECK(checked > 100);
}

TEST_CASE("fast conv: the vector im2col and col2im (shifted planes, phase planes, gathered narrow planes) match the scalar loops") {
  // im2col is a copy and col2im (vector form: stride 1) adds each value's terms in the same order: all three passes must match the
  // scalar loops bit for bit, in float32 and with bfloat16 operands: stride-1 same-width layers on planes from 1
  // wide to several vectors long (shifted), strided layers as wide as their phase planes (shifted) or with
  // narrow outputs (gathered).
  if (!cpu::cpu_has_avx512bw()) DL_SKIP("the vector im2col needs AVX-512BW, which this CPU lacks");
  ConvKnobs knobs;
  cpu::conv_tuning().winograd_min_channels = 0;
  cpu::conv_tuning().packed_forward = 0;  // the float32 forward through im2col too
  std::mt19937 rng(20261203);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  int checked = 0;
  for (int it = 0; it < 180; ++it) {
    const int64_t G = pick(1, 2), N = pick(1, 5), C = G * pick(1, 5), O = G * pick(1, 4);
    Conv2dParams p;
    p.dilation = {pick(1, 2), pick(1, 2)};
    const int64_t kh = pick(1, 5), kw = 2 * pick(0, 2) + 1;  // odd kw: some padding keeps Wo == W
    p.padding = {pick(0, static_cast<int>(kh)), static_cast<int>(p.dilation[1] * (kw - 1) / 2)};
    if (it % 10 == 9) p.padding[1] += 1;  // Wo != W: the scalar loops on both sides
    p.groups = G;
    const bool strided = it % 3 == 2;
    if (strided) {  // half keep "same" padding in width, so Wo = ceil(W / sw): the phase planes of the shifted form
      p.stride = {pick(1, 3), pick(2, 3)};
      p.padding[0] = pick(0, static_cast<int>(kh));
      if (it % 6 == 5) p.padding[1] = pick(0, static_cast<int>(kw));
    }
    const int64_t H = pick(1, 12), W = strided ? pick(1, 20) : pick(1, 40);
    const int64_t Ho = out_size(H, kh, p.stride[0], p.padding[0], p.dilation[0]),
                  Wo = out_size(W, kw, p.stride[1], p.padding[1], p.dilation[1]);
    if (H + 2 * p.padding[0] < p.dilation[0] * (kh - 1) + 1 || W + 2 * p.padding[1] < p.dilation[1] * (kw - 1) + 1)
      continue;  // the kernel does not fit (out_size's division truncates toward zero)
    p.gemm_dtype = it % 2 ? DType::BFloat16 : DType::Float32;
    set_threads(pick(1, 2));
    cpu::conv_tuning().target_columns = std::vector<int64_t>{1, 20, 512}[static_cast<size_t>(pick(0, 2))];
    Tensor x = uniform({N, C, H, W}, 500 + it, DType::Float32), w = uniform({O, C / G, kh, kw}, 600 + it, DType::Float32);
    Tensor gout = uniform({N, O, Ho, Wo}, 700 + it, DType::Float32);
    auto passes = [&](bool vector) {
      cpu::conv_tuning().vector_im2col = vector;
      return std::array<Tensor, 3>{ops::conv2d_forward(x, w, Tensor(), p),
                                   ops::conv2d_backward_weight(gout, x, w.sizes(), p),
                                   ops::conv2d_backward_input(gout, w, x.sizes(), p)};
    };
    const auto scalar = passes(false), vector = passes(true);
    INFO("N" << N << " C" << C << " O" << O << " groups " << G << " k" << kh << "x" << kw << " " << H << "x" << W
              << " stride " << p.stride[0] << "," << p.stride[1] << " dilation " << p.dilation[0] << ","
              << p.dilation[1] << " padding " << p.padding[0] << "," << p.padding[1]
              << (p.gemm_dtype == DType::BFloat16 ? " bf16" : " fp32"));
    CHECK(vector[0].to_vector<float>() == scalar[0].to_vector<float>());
    CHECK(vector[1].to_vector<float>() == scalar[1].to_vector<float>());
    CHECK(vector[2].to_vector<float>() == scalar[2].to_vector<float>());  // col2im: the same sums in the same order
    ++checked;
  }
  CHECK(checked > 120);
  // A column matrix larger than L2 (a stem-like 7x7 stride-2 layer): the forward runs in bands of columns.
  for (const DType gemm : {DType::Float32, DType::BFloat16}) {
    Conv2dParams p;
    p.stride = {2, 2};
    p.padding = {3, 3};
    p.gemm_dtype = gemm;
    set_threads(2);
    Tensor x = uniform({2, 3, 240, 230}, 900, DType::Float32), w = uniform({5, 3, 7, 7}, 901, DType::Float32);
    cpu::conv_tuning().vector_im2col = false;
    const Tensor scalar = ops::conv2d_forward(x, w, Tensor(), p);
    cpu::conv_tuning().vector_im2col = true;
    const Tensor banded = ops::conv2d_forward(x, w, Tensor(), p);
    CHECK_MESSAGE(banded.to_vector<float>() == scalar.to_vector<float>(), "stem-like layer, " << dtype_name(gemm));
  }
}

TEST_CASE("fast conv: the direct convolution on channels-last copies (forwards, input gradients by phases, weight gradients) against the definition") {
  // every instruction set the CPU runs: AVX2 (8 channels a vector, blocks of up to 3), then AVX-512 (16, up to 4)
  if (cpu::direct_best_isa() == 0) DL_SKIP("the direct convolution needs AVX2 and FMA, which this CPU lacks");
  ConvKnobs knobs;
  cpu::conv_tuning().direct = 2;
  cpu::conv_tuning().winograd_min_channels = 0;
  std::vector<ConvCase> cases = odd_conv_cases();
  cases.push_back(conv_case(3, 16, 5, 18, 33, 3, 3, {1, 1}, {1, 1}));   // 3 vectors, the last 1/16 full; W >= 16
  cases.push_back(conv_case(2, 35, 4, 4, 70, 3, 3, {1, 1}, {1, 1}));    // blocks of 3 + 2 vectors; 35 = 2 x 16 + 3
  cases.push_back(conv_case(2, 160, 3, 5, 40, 3, 3, {1, 1}, {1, 1}));   // two channel passes (128 + 32)
  cases.push_back(conv_case(1, 17, 52, 41, 20, 3, 3, {1, 1}, {1, 1}));  // 2,132 positions: chunks inside an image
                                                                         // (forward 512, weight gradient 1,024)
  cases.push_back(conv_case(300, 16, 2, 2, 24, 3, 3, {1, 1}, {1, 1}));  // 4-position planes: 128 images a forward
                                                                        // chunk; weight gradient chunks of 1,024
                                                                        // positions sorted by padding class
  cases.push_back(conv_case(3, 32, 9, 20, 200, 3, 3, {2, 2}, {1, 1}));  // stride 2; four blocks, a partial vector
  cases.push_back(conv_case(1, 32, 9, 21, 40, 3, 3, {2, 2}, {1, 1}));   // one image: on 2 threads the input
                                                                        // gradient's phases one by one, each split
  cases.push_back(conv_case(2, 3, 23, 21, 64, 7, 7, {2, 2}, {3, 3}));   // the stem's 7x7 / 2
  cases.push_back(conv_case(3, 32, 9, 8, 48, 1, 1, {2, 2}, {0, 0}));    // 1x1 / 2: input gradient phases with no tap
  cases.push_back(conv_case(2, 24, 1, 6, 40, 3, 3, {2, 2}, {1, 1}));    // one row: the input gradient's phase 1 empty
  cases.push_back(conv_case(2, 16, 8, 7, 24, 3, 3, {2, 3}, {0, 1}));    // the last input row reaches no output
  cases.push_back(conv_case(2, 20, 6, 7, 36, 2, 3, {1, 2}, {0, 2}));    // kh != kw, unequal strides and padding
  cases.push_back(conv_case(2, 160, 2, 3, 40, 3, 3, {1, 1}, {1, 1}));   // channel passes on a plane whose every
                                                                        // position skips padded taps
  cases.push_back(conv_case(2, 16, 3, 4, 20, 1, 1, {1, 1}, {1, 1}));    // padding past the kernel: the border's
                                                                        // outputs read no tap (zeros)
  cases.push_back(conv_case(3, 24, 5, 4, 32, 3, 3, {2, 1}, {2, 2}));    // 3x3 with padding 2
  cases.push_back(conv_case(2, 8, 9, 9, 40, 5, 5, {1, 1}, {2, 2}));     // 25 taps: the input gradient's weights
                                                                        // packed flipped in two runs of 16 taps
  cases.push_back(conv_case(2, 16, 2, 5, 24, 3, 3, {3, 3}, {1, 1}));    // kernel row 0 in the padding for every
                                                                        // output: its weight gradient is zero
  cases.push_back(conv_case(5, 128, 12, 12, 16, 3, 3, {1, 1}, {1, 1}));  // 110 KB of copies an image: split by
                                                                        // images, the weight gradient runs groups
                                                                        // of 2 (and 1) images on each thread
  for (int isa = 1; isa <= cpu::direct_best_isa(); ++isa) {
    cpu::conv_tuning().direct_isa = isa;
    REQUIRE(cpu::direct_kernels()->lanes == (isa == 2 ? 16 : 8));
    // how the set multiplies bfloat16 (what direct_applies and the bf16 runs' records read)
    const char* bf16 = cpu::direct_kernels()->bf16;
    CHECK(std::string(bf16 ? bf16 : "none") ==
          (isa == 1 ? "emulated" : cpu::has_avx512_bf16() ? "vdpbf16ps" : "none"));
    INFO("instruction set " << cpu::direct_kernels()->name);
    for (int threads : {1, 2}) {
      set_threads(threads);
      // the weight gradient split by images, then by tiles (the other passes run the same way both times)
      for (int split : {2, 1}) {
        cpu::conv_tuning().direct_grad_split = split;
        INFO("weight gradient split " << (split == 2 ? "by images" : "by tiles"));
        for (const ConvCase& c : cases) check_conv_case(c, threads == 1 ? "direct, 1 thread" : "direct, 2 threads");
      }
    }
  }
}

TEST_CASE("fast conv: the planar convolution (few input channels, vectors along the output plane) against the definition") {
  // Forwards (with every epilogue) and weight gradients (check_conv_case also runs the input gradient, through
  // the other algorithms), stride 1 and strided; every instruction set the CPU runs: AVX2 (8 positions a vector,
  // tiles of 4 output channels x 3 vectors), then AVX-512 (16, 4 x 4).
  if (cpu::direct_best_isa() == 0) DL_SKIP("the planar convolution needs AVX2 and FMA, which this CPU lacks");
  ConvKnobs knobs;
  cpu::conv_tuning().planar = 2;
  cpu::conv_tuning().winograd_min_channels = 0;
  const std::vector<ConvCase> cases = {
      conv_case(3, 1, 28, 28, 48, 3, 3, {1, 1}, {1, 1}),  // the scratch CNN's first layer: 784 positions, whole tiles
      conv_case(2, 1, 5, 7, 9, 3, 3, {1, 1}, {1, 1}),     // 35 positions: a tail tile ending in a partial vector;
                                                          // 9 channels: blocks of 4 + 4 + 1
      conv_case(1, 3, 9, 13, 6, 3, 3, {1, 1}, {1, 1}),    // 3 channels, one image (the forward splits the channels)
      conv_case(2, 2, 11, 10, 7, 5, 5, {1, 1}, {2, 2}),   // 5x5: kernel rows in tiles of 3 + 2
      conv_case(3, 1, 6, 9, 5, 2, 4, {1, 1}, {0, 1}),     // kh != kw, even kernel, Wo != W, kernel rows 2 (+ 0)
      conv_case(2, 4, 7, 3, 3, 1, 3, {1, 1}, {2, 0}),     // padding past the kernel: border rows read only zeros;
                                                          // Wo = 1 (every vector crosses rows)
      conv_case(2, 1, 1, 1, 3, 1, 1, {1, 1}, {0, 0}),     // one pixel
      conv_case(2, 5, 4, 21, 2, 4, 3, {1, 1}, {1, 1}),    // 4 kernel rows, 5 channels: 60 taps, tiles of 3
      conv_case(2, 3, 23, 21, 64, 7, 7, {2, 2}, {3, 3}),  // the stem's 7x7 / 2: 42 planes, rows by parity
      conv_case(1, 3, 12, 64, 8, 7, 7, {2, 2}, {3, 3}),   // ... 64 wide (ResNet18 at 64x64): plane rows of 32, in
                                                          // vectors of even values, the last 6-8 one by one
      conv_case(3, 1, 9, 10, 5, 3, 3, {2, 1}, {1, 1}),    // strided rows only
      conv_case(2, 2, 11, 8, 6, 5, 4, {3, 2}, {2, 1}),    // stride 3 x 2: phases with 2, 2 and 1 kernel rows
      conv_case(1, 1, 8, 9, 3, 3, 3, {2, 2}, {0, 0}),     // no padding; the last input row and column reach no output
      conv_case(2, 3, 40, 70, 4, 3, 3, {1, 1}, {1, 1}),   // 2800 positions: chunks of the plane (the last partial)
  };
  for (int isa = 1; isa <= cpu::direct_best_isa(); ++isa) {
    cpu::conv_tuning().direct_isa = isa;
    INFO("instruction set " << cpu::direct_kernels()->name);
    for (int threads : {1, 2}) {
      set_threads(threads);
      for (const ConvCase& c : cases) check_conv_case(c, threads == 1 ? "planar, 1 thread" : "planar, 2 threads");
    }
    // the weight gradient splits the output channels over the threads: the same bits for any number of them
    const ConvCase& c = cases[1];
    const DirectConv d(c);
    Tensor x = uniform({c.N, c.C, c.H, c.W}, 21, DType::Float32), gout = uniform({c.N, c.O, d.Ho, d.Wo}, 22, DType::Float32);
    set_threads(1);
    const auto one = ops::conv2d_backward_weight(gout, x, {c.O, c.C, c.kh, c.kw}, c.p).to_vector<float>();
    set_threads(2);
    CHECK(ops::conv2d_backward_weight(gout, x, {c.O, c.C, c.kh, c.kw}, c.p).to_vector<float>() == one);
  }
  // An infinite input in the last row: kernel row 0 never reaches it (padding 1), but the lanes past the last of
  // the 9 positions would (plane row 3 is image row 2): the tail's masked loads keep their products out, so row 0's
  // gradients stay finite and right. Fails if the tail loads the shifted plane unmasked.
  {
    const ConvCase c = conv_case(1, 1, 3, 3, 4, 3, 3, {1, 1}, {1, 1});
    const DirectConv d(c);
    std::vector<float> xv(9, 0.5f);
    xv[7] = std::numeric_limits<float>::infinity();
    const Tensor x = from_vector(xv, {1, 1, 3, 3}), gout = uniform({1, 4, 3, 3}, 23, DType::Float32);
    const auto got = ops::conv2d_backward_weight(gout, x, {4, 1, 3, 3}, c.p).to_vector<float>();
    const auto want = d.grad_weight(ops::to_dtype(gout, DType::Float64), ops::to_dtype(x, DType::Float64)).to_vector<double>();
    for (int o = 0; o < 4; ++o)
      for (int j = 0; j < 3; ++j) {
        INFO("output channel " << o << ", tap (0, " << j << ")");
        CHECK(std::isfinite(got[static_cast<size_t>(o * 9 + j)]));
        CHECK(got[static_cast<size_t>(o * 9 + j)] == doctest::Approx(want[static_cast<size_t>(o * 9 + j)]).epsilon(1e-5));
      }
  }
}

TEST_CASE("fast conv: the bfloat16 direct convolution (vdpbf16ps, or emulated on AVX2) against the definition on bfloat16-rounded operands") {
  // Autocast rounds x, w (and the output gradient) to bfloat16 and sums the products in float32: the float64
  // definition on the rounded operands differs only by float32 sums of up to ~2,600 terms of O(1). All three
  // passes (direct = 2 takes it for each).
  // Every instruction set the CPU runs: AVX2 (emulated: rounded float32 values, FMAs), then AVX-512 where the CPU
  // has AVX512_BF16 (vdpbf16ps).
  if (cpu::direct_best_isa() == 0)
    DL_SKIP("the bfloat16 direct convolution needs AVX2 and FMA (or AVX-512 with AVX512_BF16), which this CPU lacks");
  ConvKnobs knobs;
  cpu::conv_tuning().direct = 2;
  auto round = [](const Tensor& t) { return ops::to_dtype(ops::to_dtype(t, DType::BFloat16), DType::Float64); };
  std::vector<ConvCase> cases = {
      conv_case(5, 3, 7, 9, 4, 3, 3, {1, 1}, {1, 1}),       // 3 channels: a zero channel makes pairs
      conv_case(4, 5, 9, 7, 3, 1, 1, {2, 2}, {0, 0}),       // 1x1 / 2
      conv_case(3, 16, 5, 18, 33, 3, 3, {1, 1}, {1, 1}),    // W >= 16, a partial vector of outputs
      conv_case(2, 35, 4, 4, 70, 3, 3, {1, 1}, {1, 1}),     // odd channels, blocks of 3 + 2 vectors
      conv_case(2, 290, 3, 5, 40, 3, 3, {1, 1}, {1, 1}),    // channel passes (272 + 18)
      conv_case(1, 17, 52, 41, 20, 3, 3, {1, 1}, {1, 1}),   // chunks inside an image (weight gradient: 1,092 pairs)
      conv_case(3, 32, 9, 20, 200, 3, 3, {2, 2}, {1, 1}),   // stride 2
      conv_case(2, 3, 23, 21, 64, 7, 7, {2, 2}, {3, 3}),    // the stem
      conv_case(2, 20, 6, 7, 36, 2, 3, {1, 2}, {0, 2}),     // kh != kw, unequal strides and padding
      conv_case(5, 128, 12, 12, 16, 3, 3, {1, 1}, {1, 1}),  // weight gradient groups of 2 and 1 images
      conv_case(2, 290, 2, 3, 40, 3, 3, {1, 1}, {1, 1}),    // channel passes, every position skips padded taps
      conv_case(2, 16, 3, 4, 20, 1, 1, {1, 1}, {1, 1}),     // padding past the kernel: border outputs read no tap
      conv_case(3, 24, 5, 4, 32, 3, 3, {2, 1}, {2, 2}),     // 3x3 with padding 2
      conv_case(2, 16, 2, 5, 24, 3, 3, {3, 3}, {1, 1}),     // kernel row 0 in the padding for every output
      conv_case(2, 8, 9, 9, 40, 5, 5, {1, 1}, {2, 2}),      // 25 taps, packed flipped in two runs of 16
  };
  int sets = 0;
  for (int isa = 1; isa <= cpu::direct_best_isa(); ++isa) {
    if (isa == 2 && !cpu::has_avx512_bf16()) continue;
    ++sets;
    cpu::conv_tuning().direct_isa = isa;
    for (int threads : {1, 2})
      for (int split : {2, 1}) {  // the weight gradient split by images, then by tiles
        set_threads(threads);
        cpu::conv_tuning().direct_grad_split = split;
        for (ConvCase c : cases) {
          c.p.gemm_dtype = DType::BFloat16;
          DirectConv d(c);
          INFO("N" << c.N << " C" << c.C << " " << c.H << "x" << c.W << " O" << c.O << " k" << c.kh << "x" << c.kw
                    << " threads " << threads << " weight gradient split " << (split == 2 ? "by images" : "by tiles")
                    << " instruction set " << cpu::direct_kernels()->name);
          Tensor x = uniform({c.N, c.C, c.H, c.W}, 11, DType::Float32);
          Tensor w = uniform({c.O, c.C, c.kh, c.kw}, 12, DType::Float32);
          Tensor gout = uniform({c.N, c.O, d.Ho, d.Wo}, 13, DType::Float32);
          CHECK_CLOSE(ops::to_dtype(ops::conv2d_forward(x, w, Tensor(), c.p), DType::Float64),
                      d.forward(round(x), round(w), Tensor()), 2e-5, 2e-5);
          CHECK_CLOSE(ops::to_dtype(ops::conv2d_backward_input(gout, w, x.sizes(), c.p), DType::Float64),
                      d.grad_input(round(gout), round(w)), 2e-5, 2e-5);
          // the weight gradient sums pairs of neighbouring positions of a row (an odd row's last with a zero)
          CHECK_CLOSE(ops::to_dtype(ops::conv2d_backward_weight(gout, x, w.sizes(), c.p), DType::Float64),
                      d.grad_weight(round(gout), round(x)), 2e-5, 2e-5);
        }
      }
  }
  CHECK_MESSAGE(sets > 0, "no instruction set ran the bfloat16 direct convolution");
}

TEST_CASE("fast conv: the default tuning on ResNet-like layers matches the definition") {
  ConvKnobs knobs;
  cpu::conv_tuning() = knobs.saved;  // the direct convolution too, where the CPU has it
  set_threads(2);
  check_conv_case(conv_case(4, 64, 8, 8, 64, 3, 3, {1, 1}, {1, 1}), "defaults, Winograd (64 channels, 8x8)");
  check_conv_case(conv_case(2, 96, 20, 21, 100, 3, 3, {1, 1}, {1, 1}), "defaults, Winograd");
}

// ---- the per-shape algorithm search and its cache file (tensor/cpu/conv.h) ------------------------------

namespace {

std::vector<std::string> file_lines(const std::filesystem::path& p) {
  std::vector<std::string> lines;
  std::ifstream in(p);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

void write_lines(const std::filesystem::path& p, const std::vector<std::string>& lines) {
  std::ofstream out(p, std::ios::trunc);
  for (const auto& l : lines) out << l << "\n";
}

std::string choice_for(const std::string& key_prefix) {
  for (const auto& [k, a] : cpu::conv_algo_choices())
    if (k.rfind(key_prefix, 0) == 0) return a;
  return "";
}

// A search-mode scope with its own cache file and no remembered choices.
struct SearchScope {
  std::filesystem::path file;
  ScopedEnv mode{"DL_CONV_ALGO", "search"};
  ScopedEnv cache;
  explicit SearchScope(const std::string& name)
      : file(std::filesystem::temp_directory_path() / (name + "-" + std::to_string(::getpid()) + ".tsv")),
        cache("DL_CONV_ALGO_CACHE", file.c_str()) {
    std::filesystem::remove(file);
    cpu::conv_algo_reset();
  }
  ~SearchScope() {
    std::filesystem::remove(file);
    cpu::conv_algo_reset();
  }
};

}  // namespace

TEST_CASE("conv algorithm search: every pass matches the definition, and the output is the chosen algorithm's") {
  ConvKnobs knobs;
  SearchScope scope("dl-conv-search");
  for (int threads : {1, 2}) {
    set_threads(threads);
    for (const ConvCase& c : odd_conv_cases()) check_conv_case(c, "search");
  }
  // every pass of every case was decided and written down, one line each
  const auto choices = cpu::conv_algo_choices();
  CHECK(choices.size() == file_lines(scope.file).size());
  CHECK(!choice_for("fwd float32").empty());
  CHECK(!choice_for("bwd_input float64").empty());
  CHECK(!choice_for("bwd_weight float32").empty());
  // Winograd and the GEMMs round differently: the first call (which timed the candidates) must leave the
  // chosen one's output, the same bits a later call (no timing) gives
  set_threads(2);
  Tensor x = uniform({6, 34, 6, 5}, 5, DType::Float32), w = uniform({33, 34, 3, 3}, 6, DType::Float32);
  Conv2dParams p;
  p.padding = {1, 1};
  cpu::conv_algo_reset();
  std::filesystem::remove(scope.file);
  Tensor first = ops::conv2d_forward(x, w, Tensor(), p);
  Tensor again = ops::conv2d_forward(x, w, Tensor(), p);
  CHECK(first.to_vector<float>() == again.to_vector<float>());
  Tensor gout = uniform({6, 33, 6, 5}, 7, DType::Float32);
  Tensor gfirst = ops::conv2d_backward_input(gout, w, x.sizes(), p);
  Tensor gagain = ops::conv2d_backward_input(gout, w, x.sizes(), p);
  CHECK(gfirst.to_vector<float>() == gagain.to_vector<float>());
}

TEST_CASE("conv algorithm search: the cache file is reused, and bad or foreign lines are not") {
  ConvKnobs knobs;
  // the fixed rule's choice is then gemm/512 on every CPU: with Winograd, two names sure to be candidates (column
  // targets that give the same images per GEMM are one candidate, so gemm/2048 may not be one)
  cpu::conv_tuning().packed_forward = 0;
  SearchScope scope("dl-conv-cache");
  set_threads(1);
  Tensor x = uniform({4, 34, 6, 5}, 5, DType::Float32), w = uniform({33, 34, 3, 3}, 6, DType::Float32);
  Conv2dParams p;
  p.padding = {1, 1};
  const Tensor expect = DirectConv(ConvCase{4, 34, 6, 5, 33, 3, 3, p}).forward(x, w, Tensor());
  auto forward = [&] {
    Tensor y = ops::conv2d_forward(x, w, Tensor(), p);
    CHECK_CLOSE(ops::to_dtype(y, DType::Float64), expect, 2e-5, 2e-5);
  };
  forward();
  auto lines = file_lines(scope.file);
  REQUIRE(lines.size() == 1);
  const std::string key = "fwd float32 float32 N=4 C=34 H=6 W=5 O=33 k=3x3 s=1x1 p=1x1 d=1x1 g=1 t=1 c=";
  REQUIRE(lines[0].find("\t" + key) != std::string::npos);
  const std::string head = lines[0].substr(0, lines[0].rfind('\t') + 1);  // everything but the algorithm

  SUBCASE("a later process takes the file's choice without measuring") {
    const std::string forced = choice_for("fwd") == "winograd" ? "gemm/512" : "winograd";
    write_lines(scope.file, {head + forced});
    cpu::conv_algo_reset();
    forward();
    CHECK(choice_for("fwd") == forced);
    CHECK(file_lines(scope.file).size() == 1);  // nothing measured, nothing appended
  }
  SUBCASE("a choice made among other candidates (another build) is measured anew") {
    const size_t c = head.find(" c=");
    REQUIRE(c != std::string::npos);
    write_lines(scope.file, {head.substr(0, c) + " c=deadbeef\tgemm/2048"});
    cpu::conv_algo_reset();
    forward();
    CHECK(file_lines(scope.file).size() == 2);
    // the profile's list holds the choice this process ran, not the file's stale line
    const auto choices = cpu::conv_algo_choices();
    REQUIRE(choices.size() == 1);
    const size_t at = head.find(key);  // head: "version \t CPU \t kernel \t key \t"
    CHECK(choices[0].first == head.substr(at, head.size() - 1 - at));
  }
  SUBCASE("a choice that cannot run the shape, another CPU's line and garbage are measured anew") {
    const std::string foreign = "dl-conv-algos-v1\tSome Other CPU\tavx2\t" + key + "00000000\tgemm/256";
    write_lines(scope.file, {head + "implicit", head + "gemm/77", foreign, "garbage", std::string("\x01\x02\t\t\t\t"), ""});
    cpu::conv_algo_reset();
    forward();
    const std::string chosen = choice_for("fwd");
    CHECK((chosen == "winograd" || chosen.rfind("gemm/", 0) == 0 || chosen.rfind("packed/", 0) == 0));
    CHECK(chosen != "gemm/77");
    const auto now = file_lines(scope.file);
    REQUIRE(now.size() == 7);  // the new measurement appended
    CHECK(now.back() == head + chosen);
  }
  SUBCASE("heuristic mode and an empty cache path write nothing") {
    std::filesystem::remove(scope.file);
    cpu::conv_algo_reset();
    {
      ScopedEnv h("DL_CONV_ALGO", "heuristic");
      forward();
    }
    CHECK(!std::filesystem::exists(scope.file));
    ScopedEnv none("DL_CONV_ALGO_CACHE", "");
    cpu::conv_algo_reset();
    forward();
    CHECK(!std::filesystem::exists(scope.file));
    CHECK(!choice_for("fwd").empty());  // still chosen, for this process
  }
}

// ---- elementwise ------------------------------------------------------------------------------------

TEST_CASE("fast elementwise: vectorised loops match scalar definitions on odd lengths, in place and broadcast") {
  for (int64_t n : {1, 7, 16, 17, 1000, 100003}) {
    INFO("n = " << n);
    Tensor a = uniform({n}, 11, DType::Float32), b = uniform({n}, 12, DType::Float32);
    auto av = a.to_vector<float>(), bv = b.to_vector<float>();
    auto check = [&](const Tensor& t, auto f) {
      auto tv = t.to_vector<float>();
      bool ok = true;
      for (int64_t i = 0; i < n; ++i) ok &= tv[static_cast<size_t>(i)] == f(i);
      CHECK(ok);
    };
    check(ops::unary(ops::UnaryOp::Relu, a), [&](int64_t i) { return av[i] > 0 ? av[i] : 0.0f; });
    check(ops::binary(ops::BinaryOp::Add, a, b), [&](int64_t i) { return av[i] + bv[i]; });
    check(ops::binary(ops::BinaryOp::Mul, a, b), [&](int64_t i) { return av[i] * bv[i]; });
    check(ops::binary_scalar(ops::BinaryOp::Sub, a, 0.25), [&](int64_t i) { return av[i] - 0.25f; });
    // broadcast scalar on the left: 2 - a
    check(ops::binary(ops::BinaryOp::Sub, full({}, 2.0), a), [&](int64_t i) { return 2.0f - av[i]; });
    Tensor mask = ops::binary(ops::BinaryOp::Gt, a, b);
    check(ops::where(mask, a, b), [&](int64_t i) { return av[i] > bv[i] ? av[i] : bv[i]; });
    check(ops::where(mask, a, zeros({})), [&](int64_t i) { return av[i] > bv[i] ? av[i] : 0.0f; });
    // in place: out is the first operand
    Tensor c = ops::clone(a);
    ops::add_(c, b, 1.0);
    check(c, [&](int64_t i) { return av[i] + bv[i]; });
    Tensor f = empty({n});
    ops::fill_(f, 3.5);
    check(f, [](int64_t) { return 3.5f; });
    // float -> double -> float copies are exact
    CHECK(ops::to_dtype(ops::to_dtype(a, DType::Float64), DType::Float32).to_vector<float>() == av);
  }
}

TEST_CASE("fast reductions: row sums over vector lanes equal a double loop") {
  for (int64_t cols : {1, 15, 16, 1001}) {
    Tensor x = uniform({3, cols}, 71, DType::Float32, -1.0, 3.0);
    auto xv = x.to_vector<double>();
    auto s = ops::reduce(ops::ReduceOp::Sum, x, {1}, false).to_vector<float>();
    auto m = ops::reduce(ops::ReduceOp::Mean, x, {1}, false).to_vector<float>();
    for (int64_t r = 0; r < 3; ++r) {
      double e = 0;
      for (int64_t c = 0; c < cols; ++c) e += xv[static_cast<size_t>(r * cols + c)];
      INFO("cols " << cols << " row " << r);
      // double lanes in any order: equal to the float rounding of the exact sum (1 ulp of slack)
      CHECK(s[static_cast<size_t>(r)] == doctest::Approx(e).epsilon(2e-7));
      CHECK(m[static_cast<size_t>(r)] == doctest::Approx(e / static_cast<double>(cols)).epsilon(2e-7));
    }
  }
  Tensor ints = arange(int64_t{1000});
  CHECK(ops::reduce(ops::ReduceOp::Sum, ints, {}, false).item<int64_t>() == 499500);
}

TEST_CASE("fast elementwise: overlapping views take the safe loop") {
  // a copy between overlapping views reads the source as it was before the call (memmove)
  Tensor x = arange(0.0, 10.0, 1.0);
  ops::copy_(ops::slice(x, 0, 1, 10, 1), ops::slice(x, 0, 0, 9, 1));
  CHECK(x.to_vector<float>() == std::vector<float>{0, 0, 1, 2, 3, 4, 5, 6, 7, 8});
  // a shifted in-place add runs element by element in order (never a vector of stale values)
  Tensor y = arange(0.0, 8.0, 1.0);
  Tensor y0 = ops::clone(y);
  ops::add_(ops::slice(y, 0, 1, 8, 1), ops::slice(y, 0, 0, 7, 1), 1.0);
  auto yv = y.to_vector<float>(), y0v = y0.to_vector<float>();
  CHECK(yv[0] == y0v[0]);
  for (size_t i = 1; i < yv.size(); ++i) CHECK(yv[i] == y0v[i] + yv[i - 1]);
}

TEST_CASE("fast relu backward: equals where(y > 0, g, 0), NaN included") {
  for (DType dt : {DType::Float32, DType::Float64}) {
    Tensor y = ops::unary(ops::UnaryOp::Relu, uniform({3, 5, 7}, 21, dt));
    Tensor g = uniform({3, 5, 7}, 22, dt);
    Tensor expect = ops::where(ops::binary_scalar(ops::BinaryOp::Gt, y, 0.0), g, zeros({}, dt));
    CHECK(max_difference(ops::relu_backward(g, y), expect).abs_diff == 0.0);
    // non-contiguous operands
    Tensor yt = ops::transpose(y, 0, 2), gt = ops::transpose(g, 0, 2);
    CHECK(max_difference(ops::relu_backward(gt, yt), ops::transpose(expect, 0, 2)).abs_diff == 0.0);
  }
  Tensor y = from_vector<float>({std::nanf(""), 1.0f, 0.0f, -1.0f}, {4});
  Tensor g = from_vector<float>({5.0f, 6.0f, 7.0f, 8.0f}, {4});
  CHECK(ops::relu_backward(g, y).to_vector<float>() == std::vector<float>{0.0f, 6.0f, 0.0f, 0.0f});
  CHECK_THROWS_WITH_AS(ops::relu_backward(g, zeros({5})), doctest::Contains("relu backward"), Error);
}

// Batch norm (and batch norm + residual + ReLU), train and eval, forward and backward, on two threads, against
// double loops, for x of shape (N, C, H, W) with values in [5, 7].
void check_batch_norm_two_threads(int64_t N, int64_t C, int64_t H, int64_t W) {
  ConvKnobs knobs;  // restores the thread count
  set_threads(2);
  const int64_t S = H * W;
  Tensor x = uniform({N, C, H, W}, 41, DType::Float32, 5.0, 7.0);
  Tensor r = uniform({N, C, H, W}, 42, DType::Float32), g = uniform({N, C, H, W}, 43, DType::Float32);
  Tensor w = uniform({C}, 44, DType::Float32), b = uniform({C}, 45, DType::Float32);
  const auto xv = x.to_vector<double>(), rv = r.to_vector<double>(), gv = g.to_vector<double>(),
             wv = w.to_vector<double>(), bv = b.to_vector<double>();
  auto at = [&](int64_t n, int64_t c, int64_t i) { return static_cast<size_t>((n * C + c) * S + i); };
  for (bool training : {true, false}) {
    for (bool fused : {false, true}) {
      Tensor rm = uniform({C}, 46, DType::Float32), rvar = uniform({C}, 47, DType::Float32, 0.5, 2.0);
      const auto rm0 = rm.to_vector<double>(), rv0 = rvar.to_vector<double>();
      Tensor xg = ops::clone(x).requires_grad_(), wg = ops::clone(w).requires_grad_(), bg = ops::clone(b).requires_grad_();
      Tensor y = fused ? batch_norm_relu(xg, rm, rvar, wg, bg, training, 0.1, 1e-5, r)
                       : batch_norm(xg, rm, rvar, wg, bg, training, 0.1, 1e-5);
      y.backward(g);
      std::vector<double> ey(xv.size()), egx(xv.size()), egw(static_cast<size_t>(C)), egb(static_cast<size_t>(C)),
          erm(static_cast<size_t>(C)), erv(static_cast<size_t>(C));
      for (int64_t c = 0; c < C; ++c) {
        double mean = 0, var = 0;
        for (int64_t n = 0; n < N; ++n)
          for (int64_t i = 0; i < S; ++i) mean += xv[at(n, c, i)];
        mean /= static_cast<double>(N * S);
        for (int64_t n = 0; n < N; ++n)
          for (int64_t i = 0; i < S; ++i) var += (xv[at(n, c, i)] - mean) * (xv[at(n, c, i)] - mean);
        var /= static_cast<double>(N * S);
        const size_t cc = static_cast<size_t>(c);
        erm[cc] = training ? 0.9 * rm0[cc] + 0.1 * mean : rm0[cc];
        erv[cc] = training ? 0.9 * rv0[cc] + 0.1 * var * static_cast<double>(N * S) / static_cast<double>(N * S - 1) : rv0[cc];
        if (!training) mean = rm0[cc], var = rv0[cc];
        const double invstd = 1.0 / std::sqrt(var + 1e-5);
        // the gradient reaching batch norm: g, masked by the ReLU when fused
        std::vector<double> gin(static_cast<size_t>(N * S));
        double sg = 0, sgx = 0;
        for (int64_t n = 0; n < N; ++n)
          for (int64_t i = 0; i < S; ++i) {
            const double xhat = (xv[at(n, c, i)] - mean) * invstd, v = xhat * wv[cc] + bv[cc];
            const double out = fused ? std::max(v + rv[at(n, c, i)], 0.0) : v;
            ey[at(n, c, i)] = out;
            const double gi = fused && out <= 0.0 ? 0.0 : gv[at(n, c, i)];
            gin[static_cast<size_t>(n * S + i)] = gi;
            sg += gi;
            sgx += gi * xhat;
          }
        egw[cc] = sgx, egb[cc] = sg;
        for (int64_t n = 0; n < N; ++n)
          for (int64_t i = 0; i < S; ++i) {
            const double xhat = (xv[at(n, c, i)] - mean) * invstd, gi = gin[static_cast<size_t>(n * S + i)];
            egx[at(n, c, i)] = training ? wv[cc] * invstd * (gi - sg / static_cast<double>(N * S) -
                                                             xhat * sgx / static_cast<double>(N * S))
                                        : wv[cc] * invstd * gi;
          }
      }
      INFO("training " << training << ", fused residual + relu " << fused);
      CHECK_CLOSE(y, from_vector(ey, {N, C, H, W}), 2e-5, 2e-5);
      CHECK_CLOSE(rm, from_vector(erm, {C}), 1e-5, 1e-5);
      CHECK_CLOSE(rvar, from_vector(erv, {C}), 1e-5, 1e-5);
      CHECK_CLOSE(xg.grad(), from_vector(egx, {N, C, H, W}), 1e-4, 1e-4);
      CHECK_CLOSE(wg.grad(), from_vector(egw, {C}), 1e-4, 1e-4);
      CHECK_CLOSE(bg.grad(), from_vector(egb, {C}), 1e-4, 1e-4);
    }
  }
}

TEST_CASE("fast batch norm: small planes (position-major path) on two threads against double loops") {
  // S = 9 values per plane, N * C * S above the parallel grain: the channels are split over two threads, 35 each,
  // one block a thread (512 / 9 = 56 channels a block)
  check_batch_norm_two_threads(64, 70, 3, 3);
  // S = 36 (the small-plane limit), 45 channels: blocks of 14 channels (504 positions), the last of a thread
  // shorter (22 and 23 a thread)
  check_batch_norm_two_threads(32, 45, 6, 6);
  // (N, C) inputs (S = 1): the positions are the channels; 1100 channels are 550 a thread, blocks of 512 and 38
  check_batch_norm_two_threads(64, 1100, 1, 1);
}

TEST_CASE("fast batch norm: large planes in groups of channels, image by image, on two threads against double loops") {
  // S = 100 (over the small-plane limit), 13 channels (6 and 7 a thread), N * C * S above the parallel grain; the
  // groups' budget (DL_BN_GROUP_BYTES) gives groups of one channel, of 3 (forward) and 1 (backward: two tensors
  // read), of 6 and 3 (the last group of a thread shorter), and the default (all of a thread's channels here).
  const int64_t N = 32, C = 13, H = 10, W = 10, plane_bytes = N * H * W * 4;
  for (const int64_t budget : {int64_t{1}, 3 * plane_bytes, 6 * plane_bytes, int64_t{0}}) {
    dl::test::ScopedEnv e("DL_BN_GROUP_BYTES", budget > 0 ? std::to_string(budget).c_str() : nullptr);
    INFO("DL_BN_GROUP_BYTES " << budget);
    check_batch_norm_two_threads(N, C, H, W);
  }
  // the sums' 16 partial sums a channel: planes of 64 values (none left over), of 49 and of 196 (ResNet's 7x7 and
  // 14x14: 1 and 4 left over), each above the parallel grain; and single images (the channel groups with batch 1,
  // on one thread) of 3x3 planes (only values left over) and of 6x5 (14 left over: the lanes up to the 14th)
  check_batch_norm_two_threads(16, 40, 8, 8);
  check_batch_norm_two_threads(16, 48, 7, 7);
  check_batch_norm_two_threads(8, 24, 14, 14);
  check_batch_norm_two_threads(1, 40, 3, 3);
  check_batch_norm_two_threads(1, 40, 6, 5);
}

TEST_CASE("fast batch norm + relu: equals batch_norm (+ residual) then relu, forward and backward, train and eval") {
  // planes of 15 values (the small-plane path) and of 72 (the channel groups), with and without the input's
  // gradient
  for (const Shape& shape : {Shape{4, 6, 5, 3}, Shape{3, 6, 8, 9}})
    for (bool training : {true, false})
      for (bool with_residual : {false, true})
        for (bool x_grad : {true, false}) {
          Tensor x = uniform(shape, 31, DType::Float64, -2.0, 3.0);
          Tensor w = uniform({6}, 32, DType::Float64), b = uniform({6}, 33, DType::Float64);
          Tensor r = uniform(shape, 38, DType::Float64);
          Tensor rm1 = uniform({6}, 34, DType::Float64), rv1 = uniform({6}, 35, DType::Float64, 0.5, 2.0);
          Tensor rm2 = ops::clone(rm1), rv2 = ops::clone(rv1);
          Tensor x1 = ops::clone(x).requires_grad_(x_grad), w1 = ops::clone(w).requires_grad_(),
                 b1 = ops::clone(b).requires_grad_();
          Tensor x2 = ops::clone(x).requires_grad_(x_grad), w2 = ops::clone(w).requires_grad_(),
                 b2 = ops::clone(b).requires_grad_();
          Tensor r1 = ops::clone(r).requires_grad_(), r2 = ops::clone(r).requires_grad_();
          Tensor y1 = batch_norm(x1, rm1, rv1, w1, b1, training);
          if (with_residual) y1 = y1 + r1;
          y1 = y1.relu();
          Tensor y2 = batch_norm_relu(x2, rm2, rv2, w2, b2, training, 0.1, 1e-5, with_residual ? r2 : Tensor());
          INFO("shape " << shape_str(shape) << ", training " << training << ", residual " << with_residual
                        << ", input gradient " << x_grad);
          CHECK_CLOSE(y2, y1, 1e-14, 1e-14);
          CHECK_CLOSE(rm2, rm1, 0.0, 0.0);
          CHECK_CLOSE(rv2, rv1, 0.0, 0.0);
          Tensor g = uniform(shape, 36, DType::Float64);
          y1.backward(g);
          y2.backward(g);
          if (x_grad) CHECK_CLOSE(x2.grad(), x1.grad(), 1e-13, 1e-13);
          CHECK(x2.grad().defined() == x_grad);
          CHECK_CLOSE(w2.grad(), w1.grad(), 1e-13, 1e-13);
          CHECK_CLOSE(b2.grad(), b1.grad(), 1e-13, 1e-13);
          if (with_residual) CHECK_CLOSE(r2.grad(), r1.grad(), 0.0, 0.0);
        }
  CHECK_THROWS_WITH_AS(batch_norm_relu(ones({2, 3, 4, 4}), Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-5,
                                       ones({2, 3, 4, 5})),
                       doctest::Contains("residual"), Error);
  // float32, large channel planes: the vectorised statistics against double loops
  Tensor x = uniform({3, 2, 41, 43}, 37, DType::Float32, 100.0, 101.0);  // a large mean
  auto f = ops::batch_norm_relu_forward(x, Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-5);
  auto xv = x.to_vector<double>();
  for (int64_t c = 0; c < 2; ++c) {
    double s = 0, ss = 0;
    const int64_t S = 41 * 43;
    for (int64_t n = 0; n < 3; ++n)
      for (int64_t i = 0; i < S; ++i) s += xv[static_cast<size_t>((n * 2 + c) * S + i)];
    const double mean = s / (3 * S);
    for (int64_t n = 0; n < 3; ++n)
      for (int64_t i = 0; i < S; ++i) {
        const double v = xv[static_cast<size_t>((n * 2 + c) * S + i)] - mean;
        ss += v * v;
      }
    CHECK(f.mean.to_vector<double>()[static_cast<size_t>(c)] == doctest::Approx(mean).epsilon(1e-7));
    CHECK(f.invstd.to_vector<double>()[static_cast<size_t>(c)] ==
          doctest::Approx(1.0 / std::sqrt(ss / (3 * S) + 1e-5)).epsilon(1e-5));
  }
  CHECK(ops::reduce(ops::ReduceOp::Min, f.out, {}, false).item<float>() >= 0.0f);
}

// ---- pooling -------------------------------------------------------------------------------------------

TEST_CASE("fast max pool with indices (2x2 and 3x3, AVX-512 or AVX2 stride 2): equals the window rule (ties, NaN, -inf, ceil mode)") {
  // brute force: first maximum in row-major order over the window's real elements, the last NaN wins
  auto brute = [](const Tensor& x, const Pool2dParams& p, int64_t Ho, int64_t Wo) {
    auto v = x.to_vector<float>();
    const int64_t P = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
    std::vector<float> out;
    std::vector<int64_t> idx;
    for (int64_t pl = 0; pl < P; ++pl)
      for (int64_t oh = 0; oh < Ho; ++oh)
        for (int64_t ow = 0; ow < Wo; ++ow) {
          float best = -std::numeric_limits<float>::infinity();
          int64_t bi = -1;
          bool nan = false;
          const int64_t h0 = oh * p.stride[0] - p.padding[0], w0 = ow * p.stride[1] - p.padding[1];
          for (int64_t h = std::max<int64_t>(h0, 0); h < std::min(h0 + p.kernel[0], H); ++h)
            for (int64_t w = std::max<int64_t>(w0, 0); w < std::min(w0 + p.kernel[1], W); ++w) {
              const float e = v[static_cast<size_t>((pl * H + h) * W + w)];
              if (bi < 0) bi = h * W + w;
              if (std::isnan(e)) {
                nan = true;
                best = e;
                bi = h * W + w;
              } else if (!nan && e > best) {
                best = e;
                bi = h * W + w;
              }
            }
          out.push_back(best);
          idx.push_back(bi);
        }
    return std::make_pair(out, idx);
  };
  struct Case {
    Shape x;
    int64_t k, sh, sw, pad;
    bool ceil;
  };
  const Case cases[] = {
      {{2, 3, 7, 9}, 2, 2, 2, 0, false},   {{2, 3, 7, 9}, 2, 2, 2, 0, true},    // odd sizes, ceil's overhang
      {{1, 2, 6, 70}, 2, 2, 2, 0, false},  {{2, 2, 5, 67}, 2, 2, 2, 0, true},   // 16-output blocks and a tail
      {{1, 2, 28, 28}, 2, 2, 2, 0, false},                                      // the scratch CNN's first pool
      {{2, 3, 11, 11}, 3, 2, 2, 1, false}, {{1, 2, 9, 70}, 3, 2, 2, 1, false},  // ResNet's stem pool, blocks
      {{2, 1, 5, 67}, 3, 2, 2, 0, true},   {{1, 2, 12, 33}, 3, 1, 2, 1, false}, // ceil; row stride 1
      {{1, 2, 13, 40}, 3, 3, 2, 1, true},  {{1, 1, 4, 5}, 2, 1, 1, 0, false},   // row stride 3; the scalar path
      {{1, 2, 32, 32}, 3, 2, 2, 1, false}, {{2, 1, 9, 37}, 2, 2, 2, 1, false},  // 2x2 with padding
      {{1, 2, 8, 35}, 2, 2, 2, 1, true}};
  // each kernel the CPU has: the best (AVX-512 or AVX2), AVX2, the scalar loops
  for (const char* kernel : {"", "avx2", "scalar"})
  for (const Case& c : cases) {
    ScopedEnv env{"DL_POOL_KERNEL", kernel};
    Tensor x = uniform(c.x, 41, DType::Float32);
    // ties (signs, so most windows hold several maxima), NaNs in every lane position, and a run of -inf
    // long enough to fill windows
    x = ops::binary_scalar(ops::BinaryOp::Div, ops::unary(ops::UnaryOp::Sign, x), 1.0);
    auto xv = x.to_vector<float>();
    for (size_t i = 5; i < xv.size(); i += 37) xv[i] = std::nanf("");
    // 3 x 3 blocks of -inf at the first plane's top-left corner (the padded first windows) and inside the last
    // plane: windows with nothing but -inf, whose index must be their first real element
    const int64_t H = c.x[2], W = c.x[3], last = (c.x[0] * c.x[1] - 1) * H * W;
    for (int64_t h = 0; h < std::min<int64_t>(3, H); ++h)
      for (int64_t w = 0; w < std::min<int64_t>(3, W); ++w) {
        xv[static_cast<size_t>(h * W + w)] = -std::numeric_limits<float>::infinity();
        xv[static_cast<size_t>(last + (H / 2 + h) % H * W + (W / 2 + w) % W)] = -std::numeric_limits<float>::infinity();
      }
    x = from_vector(xv, c.x);
    Pool2dParams p;
    p.kernel = {c.k, c.k};
    p.stride = {c.sh, c.sw};
    p.padding = {c.pad, c.pad};
    p.ceil_mode = c.ceil;
    auto [out, idx] = ops::max_pool2d_forward(x, p);
    auto [bo, bi] = brute(x, p, out.size(2), out.size(3));
    auto ov = out.to_vector<float>();
    bool same = ov.size() == bo.size();
    for (size_t i = 0; same && i < ov.size(); ++i) same = (ov[i] == bo[i]) || (std::isnan(ov[i]) && std::isnan(bo[i]));
    INFO("x " << shape_str(c.x) << " k " << c.k << " stride " << c.sh << "," << c.sw << " pad " << c.pad << " ceil " << c.ceil
              << " kernel '" << kernel << "'");
    CHECK(same);
    CHECK(idx.to_vector<int64_t>() == bi);
  }
}

TEST_CASE("fast global average pool: forward and backward against loops") {
  Tensor x = uniform({3, 5, 7, 6}, 51, DType::Float32);
  Tensor y = ops::adaptive_avg_pool2d_forward(x, {1, 1});
  auto xv = x.to_vector<double>();
  auto yv = y.to_vector<float>();
  for (int64_t p = 0; p < 15; ++p) {
    double s = 0;
    for (int64_t i = 0; i < 42; ++i) s += xv[static_cast<size_t>(p * 42 + i)];
    CHECK(yv[static_cast<size_t>(p)] == doctest::Approx(s / 42).epsilon(1e-6));
  }
  Tensor g = uniform({3, 5, 1, 1}, 52, DType::Float32);
  auto gx = ops::adaptive_avg_pool2d_backward(g, x.sizes()).to_vector<float>();
  auto gv = g.to_vector<float>();
  bool ok = true;
  for (int64_t i = 0; i < 15 * 42; ++i) ok &= gx[static_cast<size_t>(i)] == static_cast<float>(gv[static_cast<size_t>(i / 42)] / 42.0);
  CHECK(ok);
}

// ---- allocator and engine ------------------------------------------------------------------------------

TEST_CASE("caching allocator: reuse, alignment, statistics, release, limit, threads") {
  set_cpu_allocator_cache_limit(size_t{2048} << 20);
  cpu_allocator_release_cached();
  const auto s0 = cpu_allocator_stats();
  void* first = nullptr;
  {
    Tensor t = empty({1000, 37});
    first = t.raw_data();
    CHECK(reinterpret_cast<uintptr_t>(first) % 64 == 0);
  }
  CHECK(cpu_allocator_stats().cached_bytes > s0.cached_bytes);
  {
    Tensor t = empty({37, 1000});  // the same size class: the cached block comes back
    CHECK(t.raw_data() == first);
  }
  const auto s1 = cpu_allocator_stats();
  CHECK(s1.cache_hits > s0.cache_hits);
  CHECK(s1.str().find("served from the cache") != std::string::npos);
  {
    Tensor big = empty({int64_t{5} << 20});  // 20 MB: mmap'ed, 2 MB aligned
    CHECK(reinterpret_cast<uintptr_t>(big.raw_data()) % (2 << 20) == 0);
    ops::fill_(big, 1.0);
    CHECK(big.to_vector<float>().back() == 1.0f);
  }
  CHECK(cpu_allocator_release_cached() > 0);
  CHECK(cpu_allocator_stats().cached_bytes == 0);
  set_cpu_allocator_cache_limit(0);  // caching off: a freed block goes back to the system
  {
    Tensor t = empty({1000});
  }
  CHECK(cpu_allocator_stats().cached_bytes == 0);
  set_cpu_allocator_cache_limit(size_t{2048} << 20);
  // concurrent allocation and release from several threads keeps the books balanced
  const size_t in_use = cpu_allocator_stats().in_use_bytes;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([t] {
      for (int i = 0; i < 2000; ++i) {
        Tensor a = empty({(i * 7 + t) % 3000 + 1});
        a.data_ptr<float>()[0] = 1.0f;
      }
    });
  for (auto& th : threads) th.join();
  CHECK(cpu_allocator_stats().in_use_bytes == in_use);
}

TEST_CASE("engine: in-place accumulation never changes a tensor someone else holds") {
  // x feeds two branches whose gradients meet in x's buffer; y's own gradient is shared
  Tensor x = uniform({4, 5}, 61, DType::Float64).requires_grad_();
  Tensor y = (x * x + x.relu() + x).sum();
  y.backward();
  auto xv = x.detach().to_vector<double>();
  auto gv = x.grad().to_vector<double>();
  for (size_t i = 0; i < xv.size(); ++i) CHECK(gv[i] == doctest::Approx(2 * xv[i] + (xv[i] > 0 ? 1 : 0) + 1));
  // a .grad the user holds is not modified by the next backward (out of place then)
  Tensor held = x.grad();
  auto before = held.to_vector<double>();
  (x * 3.0).sum().backward();
  CHECK(held.to_vector<double>() == before);
  auto after = x.grad().to_vector<double>();
  for (size_t i = 0; i < after.size(); ++i) CHECK(after[i] == doctest::Approx(before[i] + 3.0));
  // a user's gradient passed to backward() is not adopted as .grad and not modified
  Tensor z = uniform({4, 5}, 62, DType::Float64).requires_grad_();
  Tensor seed = ones({4, 5}, DType::Float64);
  z.backward(seed);
  z.grad().add_(ones({4, 5}, DType::Float64));
  CHECK(seed.to_vector<double>() == std::vector<double>(20, 1.0));
  // a leaf's gradient that is also saved elsewhere (here: the output of an identity-like op) stays intact
  Tensor a = uniform({3}, 63, DType::Float64).requires_grad_();
  Tensor out = a * 1.0;
  out.backward(ones({3}, DType::Float64), true);
  out.backward(ones({3}, DType::Float64));
  CHECK(a.grad().to_vector<double>() == std::vector<double>(3, 2.0));
}

TEST_CASE("fast max pool 3x3 values only (no graph): equals the indexed kernel's values, NaN and -inf included") {
  // the inference path (no indices, a -inf bordered copy of each plane) against the indexed one,
  // which the op-case suite checks against PyTorch
  struct Case {
    Shape x;
    Pool2dParams p;
  };
  auto params = [](int64_t s, int64_t pad, bool ceil) {
    Pool2dParams p;
    p.kernel = {3, 3};
    p.stride = {s, s};
    p.padding = {pad, pad};
    p.ceil_mode = ceil;
    return p;
  };
  const Case cases[] = {{{2, 3, 11, 11}, params(2, 1, false)}, {{1, 4, 16, 16}, params(2, 1, false)},
                        {{2, 2, 9, 13}, params(2, 0, true)},   {{1, 3, 7, 8}, params(1, 1, false)},
                        {{1, 2, 12, 10}, params(3, 1, true)},  {{3, 1, 3, 3}, params(1, 0, false)},
                        // rows of several 16-output vector blocks and a tail (the AVX-512 stride-2 path)
                        {{1, 2, 9, 70}, params(2, 1, false)},  {{2, 1, 5, 67}, params(2, 0, true)}};
  // the best kernel the CPU has, AVX2, the scalar loops (the indexed reference runs the scalar loops)
  for (const char* kernel : {"", "avx2", "scalar"})
  for (const Case& c : cases) {
    INFO("kernel '" << kernel << "'");
    Tensor x = uniform(c.x, 77, DType::Float32);
    auto xv = x.to_vector<float>();
    xv[3] = std::nanf("");
    xv[xv.size() / 2] = -std::numeric_limits<float>::infinity();
    xv[xv.size() - 1] = std::nanf("");
    for (size_t i = 37; i < xv.size(); i += 101) xv[i] = std::nanf("");  // NaNs in every lane position
    x = from_vector(xv, c.x);
    Tensor indexed, values;
    {
      ScopedEnv scalar{"DL_POOL_KERNEL", "scalar"};
      indexed = ops::max_pool2d_forward(x, c.p, true).first;
    }
    {
      ScopedEnv env{"DL_POOL_KERNEL", kernel};
      NoGradGuard ng;
      values = max_pool2d(x, c.p);
    }
    REQUIRE(values.sizes() == indexed.sizes());
    auto a = values.to_vector<float>(), b = indexed.to_vector<float>();
    int64_t mismatches = 0;
    for (size_t i = 0; i < a.size(); ++i)
      mismatches += !(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i])));
    INFO("input " << shape_str(c.x) << ", stride " << c.p.stride[0] << ", padding " << c.p.padding[0] << ", ceil "
                  << c.p.ceil_mode);
    CHECK(mismatches == 0);
  }
}
