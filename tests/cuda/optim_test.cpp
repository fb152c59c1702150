// The fused optimizer steps of cuda/optim.h against nn/optim's fused CPU updates, step for step:
// SGD (plain, momentum with dampening, Nesterov, weight decay) and Adam / AdamW (with and without
// amsgrad), float32 and float64.
#include "cuda/optim.h"
#include "cuda_test_util.h"
#include "nn/nn.h"

using namespace dl;
using dl::test::to_gpu;

namespace {

// A parameter on each device with the same values and gradients set per step.
struct Pair {
  Tensor cpu, gpu;
};
Pair make_param(const Shape& s, DType dt, Generator& g) {
  Tensor p = test::uniform(s, dt, g);
  Pair r{p.clone(), to_gpu(p)};
  r.cpu.requires_grad_(true);
  return r;
}

}  // namespace

TEST_CASE("fused SGD step on the GPU matches torch.optim.SGD's update on the CPU") {
  DL_SKIP_WITHOUT_CUDA();
  Generator g(61);
  struct Config {
    double momentum, dampening, wd;
    bool nesterov;
  };
  for (DType dt : {DType::Float32, DType::Float64}) {
    for (const Config& c : std::vector<Config>{{0, 0, 0, false}, {0.9, 0, 1e-4, false}, {0.9, 0.2, 0, false},
                                               {0.8, 0, 1e-3, true}}) {
      CAPTURE(dtype_name(dt));
      CAPTURE(c.momentum);
      CAPTURE(c.nesterov);
      Pair p = make_param({37, 53}, dt, g);  // odd sizes
      optim::SGDOptions o;
      o.lr = 0.05;
      o.momentum = c.momentum;
      o.dampening = c.dampening;
      o.weight_decay = c.wd;
      o.nesterov = c.nesterov;
      optim::SGD opt({p.cpu}, o);
      Tensor buf = zeros(p.gpu.sizes(), {dt, test::gpu()});
      for (int step = 0; step < 4; ++step) {
        Tensor grad = test::uniform(p.cpu.sizes(), dt, g);
        p.cpu.set_grad(grad);
        opt.step();
        cuda::SGDStep s;
        s.lr = o.lr;
        s.momentum = c.momentum;
        s.dampening = c.dampening;
        s.weight_decay = c.wd;
        s.nesterov = c.nesterov;
        s.first = step == 0;
        cuda::fused_sgd_step(p.gpu, to_gpu(grad), c.momentum != 0 ? buf : Tensor(), s);
        CAPTURE(step);
        const double tol = dt == DType::Float32 ? 1e-6 : 1e-14;  // the GPU fuses multiply-adds
        CHECK_GPU_CLOSE(p.gpu, p.cpu.detach(), tol, tol);
      }
    }
  }
}

TEST_CASE("fused Adam / AdamW steps on the GPU match torch.optim's updates on the CPU") {
  DL_SKIP_WITHOUT_CUDA();
  Generator g(62);
  for (DType dt : {DType::Float32, DType::Float64}) {
    for (bool decoupled : {false, true}) {
      for (bool amsgrad : {false, true}) {
        CAPTURE(dtype_name(dt));
        CAPTURE(decoupled);
        CAPTURE(amsgrad);
        Pair p = make_param({1001}, dt, g);
        std::unique_ptr<optim::Optimizer> opt;
        const double lr = 1e-2, wd = decoupled ? 1e-2 : 1e-3;
        if (decoupled) {
          optim::AdamWOptions o;
          o.lr = lr;
          o.weight_decay = wd;
          o.amsgrad = amsgrad;
          opt = std::make_unique<optim::AdamW>(std::vector<Tensor>{p.cpu}, o);
        } else {
          optim::AdamOptions o;
          o.lr = lr;
          o.weight_decay = wd;
          o.amsgrad = amsgrad;
          opt = std::make_unique<optim::Adam>(std::vector<Tensor>{p.cpu}, o);
        }
        TensorOptions go{dt, test::gpu()};
        Tensor m = zeros(p.gpu.sizes(), go), v = zeros(p.gpu.sizes(), go), vmax = zeros(p.gpu.sizes(), go);
        for (int step = 1; step <= 5; ++step) {
          Tensor grad = test::uniform(p.cpu.sizes(), dt, g);
          p.cpu.set_grad(grad);
          opt->step();
          cuda::AdamStep s;
          s.lr = lr;
          s.weight_decay = wd;
          s.step = step;
          s.decoupled = decoupled;
          s.amsgrad = amsgrad;
          cuda::fused_adam_step(p.gpu, to_gpu(grad), m, v, amsgrad ? vmax : Tensor(), s);
          CAPTURE(step);
          const double tol = dt == DType::Float32 ? 2e-6 : 1e-13;
          CHECK_GPU_CLOSE(p.gpu, p.cpu.detach(), tol, tol);
          CHECK_GPU_CLOSE(m, opt->state(p.cpu).at("exp_avg"), tol, tol);
        }
      }
    }
  }
  // bad arguments are refused with messages
  Tensor p = zeros({3}, {DType::Float32, test::gpu()});
  cuda::AdamStep s;
  s.step = 0;
  CHECK_THROWS_WITH_AS(cuda::fused_adam_step(p, p, p, p, Tensor(), s), doctest::Contains("step must be >= 1"), Error);
  s.step = 1;
  CHECK_THROWS_WITH_AS(cuda::fused_adam_step(p, zeros({4}, {DType::Float32, test::gpu()}), p, p, Tensor(), s),
                       doctest::Contains("grad has shape [4]"), Error);
  CHECK_THROWS_WITH_AS(cuda::fused_sgd_step(p, zeros({3}), Tensor(), cuda::SGDStep{}),
                       doctest::Contains("expected a CUDA tensor"), Error);
}
