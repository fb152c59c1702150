// algo_ab C H W O k s pass reps N spec1 spec2 ...: spec = comma list of field=value over ConvTuning
// (direct, packed, columns, wino); alternates call by call; medians and paired ratios vs spec1
#include "tensor/nn_ops.h"
#include "tensor/cpu/conv.h"
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
using namespace dl; using dl::cpu::ConvTuning;
static void apply_spec(const std::string& spec, const ConvTuning& base) {
  ConvTuning& t = cpu::conv_tuning();
  t = base;
  for (const char* n : {"DL_TMP_CHUNK", "DL_TMP_A", "DL_TMP_B"}) unsetenv(n);
  size_t i = 0;
  while (i < spec.size()) {
    size_t j = spec.find(',', i); if (j == std::string::npos) j = spec.size();
    std::string kv = spec.substr(i, j - i); i = j + 1;
    auto e = kv.find('='); if (e == std::string::npos) continue;
    std::string k = kv.substr(0, e); long v = atol(kv.c_str() + e + 1);
    if (k == "direct") t.direct = v; else if (k == "planar") t.planar = v; else if (k == "packed") t.packed_forward = v;
    else if (k == "columns") t.target_columns = v; else if (k == "wino") t.winograd_min_channels = v;
    else if (k == "split") t.direct_grad_split = v; else if (k == "winomax") t.winograd_max_channels = v; else if (k == "winoplane") t.winograd_min_plane = v; else if (k == "wtile") t.winograd_tile = v; else if (k == "dwsplit") t.winograd_dw_split = v; else if (k == "colbytes") t.max_col_bytes = v << 10; else if (k == "wblock") t.winograd_block_bytes = v << 10;
    else if (k[0] == '@') setenv(k.c_str() + 1, kv.c_str() + e + 1, 1);
    else { fprintf(stderr, "unknown %s\n", k.c_str()); exit(1); }
  }
}
int main(int argc, char** argv) {
  setenv("DL_CONV_ALGO", "heuristic", 1);
  int64_t C = atoll(argv[1]), H = atoll(argv[2]), W = atoll(argv[3]), O = atoll(argv[4]), k = atoll(argv[5]), s = atoll(argv[6]);
  std::string pass = argv[7]; int reps = atoi(argv[8]); int64_t N = atoll(argv[9]);
  std::vector<std::string> vals(argv + 10, argv + argc);
  ConvTuning base = cpu::conv_tuning();
  Conv2dParams p; p.stride = {s, s}; p.padding = {k / 2, k / 2};
  Tensor x = randn({N, C, H, W}), w = randn({O, C, k, k});
  auto hw = ops::conv2d_output_size(x.shape(), w.shape(), p);
  Tensor go = randn({N, O, hw[0], hw[1]});
  double fl = 2.0 * N * O * hw[0] * hw[1] * C * k * k;
  auto run = [&] {
    if (pass == "fwd") ops::conv2d_forward(x, w, Tensor(), p);
    else if (pass == "dx") ops::conv2d_backward_input(go, w, x.shape(), p);
    else ops::conv2d_backward_weight(go, x, w.shape(), p);
  };
  size_t nv = vals.size();
  const bool flush = getenv("FLUSH") != nullptr;
  std::vector<float> junk(flush ? (size_t{64} << 20) / 4 : 0, 0.0f);
  std::vector<std::vector<double>> g(nv), ratio(nv);
  for (int r = -2; r < reps; ++r) {
    std::vector<double> t(nv);
    for (size_t v = 0; v < nv; ++v) {
      apply_spec(vals[v], base);
      double tt = 0;
      for (int k = 0; k < 2; ++k) {
        if (flush) { for (size_t i = 0; i < junk.size(); i += 16) junk[i] += 1.0f; }
        auto a = std::chrono::steady_clock::now(); run();
        tt += std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
      }
      t[v] = tt / 2;
    }
    if (r < 0) continue;
    for (size_t v = 0; v < nv; ++v) { g[v].push_back(fl / t[v] / 1e9); ratio[v].push_back(t[0] / t[v]); }
  }
  for (size_t v = 0; v < nv; ++v) {
    std::sort(g[v].begin(), g[v].end()); std::sort(ratio[v].begin(), ratio[v].end());
    printf("%-28s %6.1f GFLOP/s (%.0f-%.0f), paired vs first %.3f\n", vals[v].c_str(), g[v][reps / 2], g[v][0], g[v][reps-1], ratio[v][reps / 2]);
  }
}
