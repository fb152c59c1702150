// Whole training steps of a small conv net on the GPU against the same steps on the CPU: forward
// (conv, batch norm, ReLU, max pool, strided conv, adaptive pool, linear), cross-entropy, backward
// through every layer, and SGD with momentum and weight decay (nn/optim's tensor-op path on the
// GPU, its fused loop on the CPU). Under the library backends and under the hand-written ones.
#include "cuda_test_util.h"
#include "nn/nn.h"

using namespace dl;

namespace {

std::shared_ptr<nn::Sequential> small_net() {
  return std::make_shared<nn::Sequential>(
      std::make_shared<nn::Conv2d>(nn::Conv2dConfig{.in_channels = 3, .out_channels = 8, .kernel_size = 3, .padding = 1}),
      std::make_shared<nn::BatchNorm2d>(8), std::make_shared<nn::ReLU>(), std::make_shared<nn::MaxPool2d>(2),
      std::make_shared<nn::Conv2d>(nn::Conv2dConfig{
          .in_channels = 8, .out_channels = 16, .kernel_size = 3, .stride = 2, .padding = 1, .bias = false}),
      std::make_shared<nn::BatchNorm2d>(16), std::make_shared<nn::ReLU>(), std::make_shared<nn::AdaptiveAvgPool2d>(1),
      std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(16, 10));
}

}  // namespace

TEST_CASE("three SGD steps of a small conv net on the GPU match the CPU (library and hand-written)") {
  DL_SKIP_WITHOUT_CUDA();
  for (cuda::Backend be : test::all_backends()) {
    test::AllBackends guard(be);
    CAPTURE(cuda::to_string(be));
    manual_seed(7);
    auto cpu_net = small_net();
    manual_seed(7);
    auto gpu_net = small_net();
    gpu_net->to(test::gpu());
    Generator g(51);
    Tensor x = randn({8, 3, 12, 12}, DType::Float32, &g);
    Tensor t = test::uniform({8}, DType::Int64, g, 0, 10);
    Tensor xg = test::to_gpu(x), tg = test::to_gpu(t);
    optim::SGDOptions o;
    o.lr = 0.1;
    o.momentum = 0.9;
    o.weight_decay = 1e-4;
    optim::SGD cpu_opt(cpu_net->parameters(), o), gpu_opt(gpu_net->parameters(), o);
    for (int step = 0; step < 3; ++step) {
      CAPTURE(step);
      cpu_opt.zero_grad();
      gpu_opt.zero_grad();
      Tensor lc = cross_entropy((*cpu_net)(x), t);
      Tensor lg = cross_entropy((*gpu_net)(xg), tg);
      CHECK(lg.device() == test::gpu());
      CHECK_GPU_CLOSE(lg, lc, 1e-5, 1e-6);
      lc.backward();
      lg.backward();
      // gradients of every parameter, before the update
      auto pc = cpu_net->named_parameters(), pg = gpu_net->named_parameters();
      REQUIRE(pc.size() == pg.size());
      for (size_t i = 0; i < pc.size(); ++i) {
        CAPTURE(pc[i].first);
        CHECK_GPU_CLOSE(pg[i].second.grad(), pc[i].second.grad(), 1e-3, 1e-5);
      }
      cpu_opt.step();
      gpu_opt.step();
    }
    // parameters and buffers (running statistics, num_batches_tracked) after three steps
    auto sc = cpu_net->state_dict(), sg = gpu_net->state_dict();
    REQUIRE(sc.size() == sg.size());
    for (size_t i = 0; i < sc.size(); ++i) {
      CAPTURE(sc[i].first);
      CHECK(sg[i].second.device() == test::gpu());
      CHECK_GPU_CLOSE(sg[i].second, sc[i].second, 1e-3, 1e-5);
    }
    // eval mode uses the running statistics on both
    cpu_net->eval();
    gpu_net->eval();
    CHECK_GPU_CLOSE((*gpu_net)(xg), (*cpu_net)(x), 1e-3, 1e-5);
  }
  MESSAGE(cuda::allocator_summary());
}
