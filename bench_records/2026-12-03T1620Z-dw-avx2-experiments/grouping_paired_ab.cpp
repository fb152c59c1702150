// paired in-process A/B of the direct weight gradient: DL_GRAD_GROUP unset vs =4, alternating, per layer
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "tensor/cpu/conv.h"
#include "tensor/nn_ops.h"
#include "tensor/ops.h"
#include "tensor/tensor.h"
using namespace dl;
struct L { int64_t N, C, H, O; };
int main(int argc, char** argv) {
  const int pairs = argc > 1 ? atoi(argv[1]) : 15;
  setenv("DL_CONV_ALGO", "heuristic", 1);
  cpu::conv_tuning().direct = 2;
  std::vector<L> ls = {{128, 64, 16, 64}, {128, 128, 8, 128}, {128, 256, 4, 256}, {32, 64, 56, 64}, {32, 128, 28, 128}};
  for (const L& l : ls) {
    Conv2dParams p; p.stride = {1, 1}; p.padding = {1, 1};
    Tensor x = randn({l.N, l.C, l.H, l.H}), w = randn({l.O, l.C, 3, 3}), g = randn({l.N, l.O, l.H, l.H});
    auto timed = [&](bool grouped) {
      if (grouped) setenv("DL_GRAD_GROUP", "4", 1); else unsetenv("DL_GRAD_GROUP");
      auto t0 = std::chrono::steady_clock::now();
      for (int k = 0; k < 3; ++k) ops::conv2d_backward_weight(g, x, w.sizes(), p);
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 3;
    };
    timed(false); timed(true);
    std::vector<double> r, a, b;
    for (int i = 0; i < pairs; ++i) {
      const double ta = timed(false), tb = timed(true);
      r.push_back(ta / tb); a.push_back(ta); b.push_back(tb);
    }
    std::sort(r.begin(), r.end()); std::sort(a.begin(), a.end()); std::sort(b.begin(), b.end());
    const double fl = 2.0 * l.N * l.O * l.H * l.H * l.C * 9;
    printf("C%ld %ldx%ld O%ld N%ld: plain %.1f GF, grouped %.1f GF (medians); paired speed-up median %.3f, quartiles %.3f..%.3f, range %.3f..%.3f\n",
           l.C, l.H, l.H, l.O, l.N, fl / a[pairs / 2] / 1e9, fl / b[pairs / 2] / 1e9, r[pairs / 2], r[pairs / 4], r[3 * pairs / 4], r[0], r[pairs - 1]);
  }
}
