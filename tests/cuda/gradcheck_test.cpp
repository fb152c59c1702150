// Float64 gradient checks of the differentiable functions running on the GPU: the checker works
// on CPU tensors, so each function moves its inputs to the GPU (Tensor::to is differentiable),
// runs there, and brings the result back. The analytic gradients are therefore the CUDA backward
// kernels' (both backends where there are two); the numeric ones are central differences of the
// CUDA forward kernels.
#include "autograd/functional.h"
#include "cuda_test_util.h"

using namespace dl;

namespace {

GradcheckFn on_gpu(std::function<Tensor(const std::vector<Tensor>&)> f) {
  return [f](const std::vector<Tensor>& in) {
    std::vector<Tensor> moved;
    for (const Tensor& t : in) moved.push_back(t.defined() ? t.to(test::gpu()) : t);
    return f(moved).to(kCPU);
  };
}

Tensor leaf(const Shape& s, Generator& g, double lo = -2, double hi = 2) {
  Tensor t = test::uniform(s, DType::Float64, g, lo, hi);
  t.requires_grad_(true);
  return t;
}

}  // namespace

TEST_CASE("gradcheck on the GPU: conv2d (both backends)") {
  DL_SKIP_WITHOUT_CUDA();
  Generator g(41);
  for (cuda::Backend be : test::all_backends()) {
    test::AllBackends guard(be);
    CAPTURE(cuda::to_string(be));
    Conv2dParams o;
    o.stride = {2, 1};
    o.padding = {1, 1};
    o.groups = 2;
    CHECK_GRADCHECK(on_gpu([&](const std::vector<Tensor>& v) { return conv2d(v[0], v[1], v[2], o); }),
                    {leaf({2, 4, 5, 6}, g), leaf({6, 2, 3, 3}, g), leaf({6}, g)});
    Conv2dParams d;
    d.dilation = {2, 2};
    d.padding = {2, 1};
    CHECK_GRADCHECK(on_gpu([&](const std::vector<Tensor>& v) { return conv2d(v[0], v[1], Tensor(), d); }),
                    {leaf({1, 3, 7, 7}, g), leaf({2, 3, 3, 2}, g)});
  }
}

TEST_CASE("gradcheck on the GPU: batch norm in training (both backends) and eval") {
  DL_SKIP_WITHOUT_CUDA();
  Generator g(42);
  for (cuda::Backend be : test::all_backends()) {
    test::AllBackends guard(be);
    CAPTURE(cuda::to_string(be));
    CHECK_GRADCHECK(on_gpu([](const std::vector<Tensor>& v) {
                      return batch_norm(v[0], Tensor(), Tensor(), v[1], v[2], true, 0.1, 1e-5);
                    }),
                    {leaf({4, 3, 3, 3}, g), leaf({3}, g, 0.5, 1.5), leaf({3}, g)});
    Tensor rm = test::uniform({3}, DType::Float64, g), rv = test::uniform({3}, DType::Float64, g, 0.5, 2);
    CHECK_GRADCHECK(on_gpu([&](const std::vector<Tensor>& v) {
                      return batch_norm(v[0], test::to_gpu(rm), test::to_gpu(rv), v[1], v[2], false, 0.1, 1e-5);
                    }),
                    {leaf({4, 3, 2, 2}, g), leaf({3}, g, 0.5, 1.5), leaf({3}, g)});
  }
}

TEST_CASE("gradcheck on the GPU: pooling") {
  DL_SKIP_WITHOUT_CUDA();
  Generator g(43);
  Pool2dParams mp;
  mp.kernel = {3, 3};
  mp.stride = {2, 2};
  mp.padding = {1, 1};
  CHECK_GRADCHECK(on_gpu([&](const std::vector<Tensor>& v) { return max_pool2d(v[0], mp); }), {leaf({2, 3, 7, 7}, g)});
  Pool2dParams ap;
  ap.kernel = {3, 2};
  ap.stride = {2, 2};
  ap.padding = {1, 1};
  ap.ceil_mode = true;
  ap.count_include_pad = false;
  CHECK_GRADCHECK(on_gpu([&](const std::vector<Tensor>& v) { return avg_pool2d(v[0], ap); }), {leaf({2, 2, 7, 6}, g)});
  CHECK_GRADCHECK(on_gpu([](const std::vector<Tensor>& v) { return adaptive_avg_pool2d(v[0], {3, 2}); }),
                  {leaf({2, 2, 7, 5}, g)});
}

TEST_CASE("gradcheck on the GPU: softmax, log_softmax, cross entropy") {
  DL_SKIP_WITHOUT_CUDA();
  Generator g(44);
  CHECK_GRADCHECK(on_gpu([](const std::vector<Tensor>& v) { return v[0].softmax(1); }), {leaf({3, 5, 4}, g)});
  CHECK_GRADCHECK(on_gpu([](const std::vector<Tensor>& v) { return v[0].log_softmax(-1); }), {leaf({3, 5, 4}, g)});
  Tensor target = from_vector<int64_t>({0, 3, 1, 2, 3}, {5});
  Tensor weight = test::uniform({4}, DType::Float64, g, 0.2, 2);
  CHECK_GRADCHECK(on_gpu([&](const std::vector<Tensor>& v) {
                    CrossEntropyOptions o;
                    o.label_smoothing = 0.1;
                    o.weight = test::to_gpu(weight);
                    return cross_entropy(v[0], test::to_gpu(target), o);
                  }),
                  {leaf({5, 4}, g)});
}

TEST_CASE("gradcheck on the GPU: matmul (both backends), elementwise, reductions, gather") {
  DL_SKIP_WITHOUT_CUDA();
  Generator g(45);
  for (cuda::Backend be : test::all_backends()) {
    test::AllBackends guard(be);
    CAPTURE(cuda::to_string(be));
    CHECK_GRADCHECK(on_gpu([](const std::vector<Tensor>& v) { return v[0].matmul(v[1]); }),
                    {leaf({3, 4, 5}, g), leaf({5, 2}, g)});
    CHECK_GRADCHECK(on_gpu([](const std::vector<Tensor>& v) { return v[0].t().matmul(v[1].t()); }),
                    {leaf({5, 4}, g), leaf({3, 5}, g)});
  }
  CHECK_GRADCHECK(on_gpu([](const std::vector<Tensor>& v) {
                    return v[0].sigmoid() * v[1].tanh() + v[0].exp() / (v[1].pow(2.0) + 1.0) - v[0].abs().sqrt();
                  }),
                  {leaf({3, 4}, g, 0.5, 2), leaf({4}, g)});
  CHECK_GRADCHECK(on_gpu([](const std::vector<Tensor>& v) { return v[0].sum({1}) * v[0].mean() + v[0].max(1); }),
                  {leaf({4, 6}, g)});
  Tensor idx = from_vector<int64_t>({2, 0, 1, 1, 3, 0}, {3, 2});
  CHECK_GRADCHECK(on_gpu([&](const std::vector<Tensor>& v) {
                    return v[0].gather(1, test::to_gpu(idx)) + v[0].index_select(0, test::to_gpu(ops::slice(ops::view(idx, {-1}), 0, 0, 3, 1))).sum({1}, true);
                  }),
                  {leaf({3, 4}, g)});
}
