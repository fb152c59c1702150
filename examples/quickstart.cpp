// Define a model, train it, save it to safetensors, load it into a fresh model, predict.
#include <cstdio>
#include <memory>

#include "autograd/node.h"
#include "models/weights.h"
#include "nn/layers.h"
#include "nn/loss.h"
#include "nn/optim/adam.h"

using namespace dl;

int main() {
  manual_seed(0);
  // toy data: 512 points in the plane, class 1 when x0 + x1 > 0
  Tensor x = randn({512, 2});                                      // (N, 2)
  Tensor y = (x.select(1, 0) + x.select(1, 1)).gt(0.0).to(DType::Int64);  // (N,)

  auto model = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(2, 16), std::make_shared<nn::ReLU>(),
                                                std::make_shared<nn::Linear>(16, 2));
  nn::CrossEntropyLoss loss_fn;
  optim::Adam opt(model->parameters(), {.lr = 0.05});
  for (int step = 0; step < 100; ++step) {
    Tensor loss = loss_fn((*model)(x), y);
    opt.zero_grad();
    loss.backward();
    opt.step();
    if (step % 25 == 0) std::printf("step %d  loss %.4f\n", step, loss.item<float>());
  }

  save_safetensors("quickstart.safetensors", model->state_dict());
  auto loaded = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(2, 16), std::make_shared<nn::ReLU>(),
                                                 std::make_shared<nn::Linear>(16, 2));
  loaded->load_state_dict(load_weights("quickstart.safetensors"));  // strict: names and shapes must match
  loaded->eval();
  NoGradGuard no_grad;
  Tensor predicted = (*loaded)(x).argmax(1);                       // (N,)
  double accuracy = predicted.eq(y).to(DType::Float64).mean().item<double>();
  std::printf("accuracy after reloading: %.3f\n", accuracy);
  return accuracy > 0.95 ? 0 : 1;
}
