#include <omp.h>
#include <immintrin.h>
#include <cstring>
#include <unistd.h>
#include "models/scratch_cnn.h"
#include "nn/layers.h"
#include "nn/optim/adam.h"
#include "tensor/nn_ops.h"
#include "autograd/functional.h"
#include <chrono>
#include <cstdio>
#include <algorithm>
#include <vector>
using namespace dl;
#include "tensor/dispatch.h"
static double now();
static void (*orig)(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Conv2dParams&);
static std::vector<double> in_step;
static bool first = false;
static void (*origw)(const Tensor&, const Tensor&, const Tensor&, const Conv2dParams&);
static void timedw(const Tensor& gw, const Tensor& go, const Tensor& x, const Conv2dParams& p) {
  double t0 = now(); origw(gw, go, x, p); double t1 = now();
  if (getenv("VERB") && p.C == 1) printf("dw conv1 gout %p %.3f ms\n", (void*)go.data_ptr<float>(), (t1-t0)*1e3);
}
static void timed(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p) {
  double t0 = now(); orig(out, x, w, b, p); double t1 = now();
  if (first) { in_step.push_back(t1 - t0); first = false; if (getenv("VERB")) printf("in-step conv1 out %p %.3f ms\n", (void*)out.data_ptr<float>(), (t1-t0)*1e3); }
}
static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
int main(int argc, char** argv) {
  int mode = argc > 1 ? atoi(argv[1]) : 0;
  manual_seed(0);
  auto m = std::make_shared<models::ScratchCnn>();
  m->train();
  optim::Adam opt(m->parameters(), optim::AdamOptions{});
  Tensor x = randn({64, 1, 28, 28});
  Tensor y = zeros({64}, DType::Int64);
  auto conv = std::dynamic_pointer_cast<nn::Conv2d>(m->block1->operator[](0));
  Conv2dParams p; p.stride = {1, 1}; p.padding = {1, 1};
  std::vector<double> a, b, st, fills;
  if (getenv("HOOK")) { orig = kernels(DeviceType::CPU).conv2d_forward; kernels(DeviceType::CPU).conv2d_forward = &timed; origw = kernels(DeviceType::CPU).conv2d_backward_weight; kernels(DeviceType::CPU).conv2d_backward_weight = &timedw; }
  const int iters = getenv("ITERS") ? atoi(getenv("ITERS")) : 25; for (int it = 0; it < iters; ++it) {
    double t0 = now();
    first = true;
    opt.zero_grad();
    Tensor loss = cross_entropy((*m)(x), y);
    if (mode != 7) loss.backward();
    if (mode != 6 && mode != 7) opt.step();
    loss = Tensor();
    if (mode == 1) {
#pragma omp parallel
      { volatile int z = 0; (void)z; }
    }
    if (mode == 2) { static std::vector<float> junk(16 << 20); for (size_t i = 0; i < junk.size(); i += 16) junk[i] += 1; }
    if (mode == 3) { opt.zero_grad(); }
    if (mode == 4) { Tensor t = zeros({64, 48, 28, 28}); }
    if (mode == 8) { Tensor t = empty({64, 48, 28, 28}); float* q = t.data_ptr<float>(); for (int64_t i = 0; i < t.numel(); i += 1024) q[i] = 0; }
    if (mode == 9) { Tensor t = empty({64, 48, 28, 28}); const float* q = t.data_ptr<float>(); volatile float z = 0; for (int64_t i = 0; i < t.numel(); i += 16) z += q[i]; }
    if (getenv("SLEEPUS")) usleep(atoi(getenv("SLEEPUS")));
    double tf0 = now();
    if (mode == 10 || mode == 11 || mode == 13 || mode == 15 || mode == 16) {
      Tensor t = empty({64, 48, 28, 28}); float* q = t.data_ptr<float>(); int64_t nn = t.numel();
      if (mode == 15 || mode == 16) {
#pragma omp parallel num_threads(2)
        if (omp_get_thread_num() == mode - 15) for (int64_t i = 0; i < nn; i += 8) _mm256_storeu_ps(q + i, _mm256_set1_ps(1.0f));
      } else if (mode == 13) {
        for (int64_t i = 0; i < nn; i += 8) _mm256_stream_ps(q + i, _mm256_set1_ps(1.0f));
        _mm_sfence();
      } else if (mode == 10) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < nn; ++i) q[i] = 1.0f;
      } else {
        for (int64_t i = 0; i < nn; i += 8) _mm256_storeu_ps(q + i, _mm256_set1_ps(1.0f));
      }
    }
    if (mode == 12) {  // reference: a block of our own, flushed
      static float* own = nullptr; static std::vector<float> junk(16 << 20);
      if (!own) { own = (float*)aligned_alloc(2 << 20, 10 << 20); memset(own, 0, 10 << 20); }
      for (size_t i = 0; i < junk.size(); i += 16) junk[i] += 1;
      tf0 = now();
      for (int64_t i = 0; i < 64*48*784; i += 8) _mm256_storeu_ps(own + i, _mm256_set1_ps(1.0f));
    }
    double tf1 = now();
    if (it >= 5 && (mode >= 10)) fills.push_back(tf1 - tf0);
    double t1 = now();
    Tensor w = conv->weight.detach(), bb = conv->bias.detach();
    double t2 = now();
    Tensor o1 = ops::conv2d_forward(x, w, bb, p);
    double t3 = now();
    Tensor o2 = ops::conv2d_forward(x, w, bb, p);
    double t4 = now();
    if (getenv("VERB") && it >= 20) printf("it %d after %.3f again %.3f o1 %p o2 %p x %p\n", it, (t3-t2)*1e3, (t4-t3)*1e3, (void*)o1.data_ptr<float>(), (void*)o2.data_ptr<float>(), (void*)x.data_ptr<float>());
    if (it >= 5) { st.push_back(t1 - t0); a.push_back(t3 - t2); b.push_back(t4 - t3); }
  }
  auto med = [](std::vector<double> v) { std::sort(v.begin(), v.end()); return v[v.size() / 2] * 1e3; };
  if (!in_step.empty()) printf("in step conv1 %.3f ms; ", med(std::vector<double>(in_step.begin() + 5, in_step.end())));
  if (!fills.empty()) printf("fill %.3f ms (%.1f GB/s); ", med(fills), 64*48*784*4/med(fills)*1e-6);
  printf("step %.2f ms, conv1 after step %.3f ms, again %.3f ms\n", med(st), med(a), med(b));
}
